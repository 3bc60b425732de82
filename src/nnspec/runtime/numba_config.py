"""Numba settings, read once, in one place.

- Kernels and plan functions compile with ``cache=True`` (so a second process loads machine
  code instead of compiling), ``nogil=True``, ``error_model="numpy"`` (no Python-style
  zero-division checks in inner loops) and ``fastmath=False`` (results must match the NumPy
  references and Keras to 1e-4; set ``NNSPEC_FASTMATH=1`` to trade that away, with a warning).
- Threads: the BLAS that ``np.dot`` calls inside Numba (SciPy's OpenBLAS) runs on one thread
  by default. Measured here, a second BLAS thread made the recurrent seeds 30-100x slower at
  batch 1 on a busy machine (each small per-time-step product waits for the second thread) and
  only helps large products on an idle one. Set ``NNSPEC_THREADS=2`` (or
  ``OPENBLAS_NUM_THREADS``) to choose otherwise; it applies to BLAS and Numba together. The
  setting must be made before SciPy's BLAS is loaded, so it is applied when this module is
  imported (through threadpoolctl afterwards, when it is installed).
- Compiled plan modules live in ``NNSPEC_CACHE_DIR`` (default: ``~/.cache/nnspec``, or a
  temporary folder when the home folder is not writable).
"""

from __future__ import annotations

import os
import sys
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


def _blas_threads() -> str:
    return os.environ.get("NNSPEC_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS") or "1"


# Before SciPy loads its OpenBLAS (Numba loads SciPy's BLAS when it first needs np.dot).
if "scipy" not in sys.modules:
    os.environ["OPENBLAS_NUM_THREADS"] = _blas_threads()


def set_threads() -> None:
    """Apply the thread policy (see the module docstring) to Numba, and to BLAS if SciPy was
    already loaded before nnspec's runtime."""
    n = int(_blas_threads())
    if os.environ.get("NNSPEC_THREADS"):
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "scipy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(n, user_api="blas")
        except ImportError:  # without threadpoolctl the limit set at import is what applies
            pass
