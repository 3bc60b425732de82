"""Numba settings, read once, in one place.

- Kernels and plan functions compile with ``cache=True`` (so a second process loads machine
  code instead of compiling), ``nogil=True``, ``error_model="numpy"`` (no Python-style
  zero-division checks in inner loops) and ``fastmath=False`` (results must match the NumPy
  references and Keras to 1e-4; set ``NNSPEC_FASTMATH=1`` to trade that away, with a warning).
- Threads: BLAS (through SciPy, which ``np.dot`` calls inside Numba) is the only parallel part
  by default. Set ``NNSPEC_THREADS`` to change the thread count of BLAS and Numba together, so
  the two never oversubscribe the cores.
- Compiled plan modules live in ``NNSPEC_CACHE_DIR`` (default: ``~/.cache/nnspec``, or a
  temporary folder when the home folder is not writable).
"""

from __future__ import annotations

import os
import tempfile
import warnings

FASTMATH = os.environ.get("NNSPEC_FASTMATH", "0") == "1"
if FASTMATH:
    warnings.warn("NNSPEC_FASTMATH=1: kernels may differ from Keras beyond 1e-4", RuntimeWarning, stacklevel=2)

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": FASTMATH}


def cache_dir() -> str:
    d = os.environ.get("NNSPEC_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "nnspec")
    try:
        os.makedirs(d, exist_ok=True)
        probe = os.path.join(d, ".writable")
        with open(probe, "w") as f:
            f.write("ok")
        return d
    except OSError:
        d = os.path.join(tempfile.gettempdir(), f"nnspec-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
        os.makedirs(d, exist_ok=True)
        return d


def set_threads() -> None:
    n = os.environ.get("NNSPEC_THREADS")
    if not n:
        return
    import numba

    numba.set_num_threads(int(n))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(n))
    except ImportError:  # without threadpoolctl, OPENBLAS_NUM_THREADS set before start is the way
        pass
