"""Numba settings, read once, in one place.

- Kernels and plan functions compile with ``cache=True`` (so a second process loads machine
  code instead of compiling), ``nogil=True``, ``error_model="numpy"`` (no Python-style
  zero-division checks in inner loops) and ``fastmath=False`` (results must match the NumPy
  references and Keras to 1e-4; set ``NNSPEC_FASTMATH=1`` to trade that away, with a warning).
- Threads: a batch with enough arithmetic is split into parts that run at the same time on
  worker threads (``runtime/executor.py``: the plan functions release the GIL, each part has its
  own workspace); ``NNSPEC_THREADS`` sets how many (default: the cores this process may use;
  ``NNSPEC_THREADS=1`` runs every batch on the calling thread). Within a part, the BLAS that
  ``np.dot`` calls inside Numba (SciPy's OpenBLAS) runs on one thread unless
  ``OPENBLAS_NUM_THREADS`` says otherwise: measured here, a second BLAS thread made the
  recurrent seeds 30-100x slower at batch 1 on a busy machine (each small per-time-step product
  waits for the second thread to be scheduled), while splitting a batch costs one hand-off per
  part and never waits inside a product. The BLAS setting must be made before SciPy's BLAS is
  loaded, so it is applied when this module is imported, and through threadpoolctl (a
  dependency) when SciPy was imported first: without it, a user who imports SciPy before
  running a model would keep OpenBLAS's own threads under nnspec's parts, two threads per core.
- Compiled plan modules live in ``NNSPEC_CACHE_DIR`` (default: ``~/.cache/nnspec``, or a
  temporary folder when the home folder is not writable), and the kernels' compiled code in
  its ``kernels/<source hash>`` (``kernels.kernel_cache_dir``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

FASTMATH = os.environ.get("NNSPEC_FASTMATH", "0") == "1"
if FASTMATH:
    warnings.warn(
        "NNSPEC_FASTMATH=1: kernels may differ from Keras beyond 1e-4", RuntimeWarning, stacklevel=2
    )

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
        d = os.path.join(
            tempfile.gettempdir(), f"nnspec-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        )
        os.makedirs(d, exist_ok=True)
        return d


def _blas_threads() -> str:
    return os.environ.get("OPENBLAS_NUM_THREADS") or "1"


def worker_threads() -> int:
    """How many threads a batch may be split over (``NNSPEC_THREADS``, default: the cores this
    process may run on)."""
    raw = os.environ.get("NNSPEC_THREADS")
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ValueError(f"NNSPEC_THREADS must be a positive integer; got {raw!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# Before SciPy loads its OpenBLAS (Numba loads SciPy's BLAS when it first needs np.dot).
_SCIPY_FIRST = "scipy" in sys.modules
if not _SCIPY_FIRST:
    os.environ["OPENBLAS_NUM_THREADS"] = _blas_threads()
_LIMITED = False

_BLAS_MODULE = "scipy.linalg.cython_blas"


class _LinkBlasIntoLinalg:
    """A one-shot import hook: when ``scipy.linalg`` is imported after :func:`preload_blas`
    put its ``cython_blas`` in ``sys.modules``, set the package attribute as a normal import
    would have (``scipy.linalg.cython_blas`` then works in user code)."""

    def find_spec(self, name, path, target=None):
        if name != "scipy.linalg":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_link(module):
            exec_module(module)
            if _BLAS_MODULE in sys.modules:
                module.cython_blas = sys.modules[_BLAS_MODULE]

        spec.loader.exec_module = exec_and_link
        return spec


def preload_blas() -> None:
    """Load SciPy's ``cython_blas`` (the BLAS that ``np.dot`` calls inside Numba) by itself.

    Numba's first call of any compiled function, cached or not, runs ``import
    scipy.linalg.cython_blas``, which executes all of ``scipy.linalg`` first: measured here
    170-260 ms of a warm process's ~1 s to its first prediction (SciPy's array-API layer, its
    docstring parser, NumPy's f2py). Numba needs only the extension module, which depends on
    nothing else in SciPy, so it is loaded from its file under its own name; a later ``import
    scipy.linalg`` still runs normally (:class:`_LinkBlasIntoLinalg`). Anything unexpected
    (SciPy missing, another layout) leaves the normal import to Numba.
    """
    if _BLAS_MODULE in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        import glob
        import importlib.machinery
        import importlib.util

        import scipy

        found = glob.glob(os.path.join(os.path.dirname(scipy.__file__), "linalg", "cython_blas.*"))
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        found = [f for f in found if f.endswith(suffixes)]
        if len(found) != 1:
            return
        loader = importlib.machinery.ExtensionFileLoader(_BLAS_MODULE, found[0])
        spec = importlib.util.spec_from_file_location(_BLAS_MODULE, found[0], loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except Exception:  # noqa: BLE001 - any failure: Numba imports SciPy's BLAS the usual way
        return
    sys.modules[_BLAS_MODULE] = module
    sys.meta_path.insert(0, _LinkBlasIntoLinalg())


preload_blas()


def set_threads() -> None:
    """Apply the BLAS thread policy (see the module docstring) once, when SciPy was loaded
    before nnspec's runtime (otherwise the environment variable set at import did it)."""
    global _LIMITED
    if not _SCIPY_FIRST or _LIMITED:
        return
    _LIMITED = True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a broken install: the dependency is missing; BLAS keeps its threads
        return
    threadpool_limits(int(_blas_threads()), user_api="blas")


# The generated plan functions. Their names are what Numba calls their code libraries.
PLAN_FUNCTIONS = frozenset({"nnspec_run", "nnspec_train_step"})
PLAN_PART_PREFIX = ("nnspec_run_", "nnspec_train_step_")  # a long plan's parts (codegen.CHUNK_STEPS)
_LINK_POLICY = False


def link_plans_without_reoptimizing() -> None:
    """Compile plan functions without re-optimizing the kernels linked into them.

    When a jitted function calls other jitted functions, Numba links their (already optimized)
    LLVM IR into the caller's module and runs the full module optimizer over the whole again,
    then generates machine code for all of it. For a plan that is every kernel of the model:
    measured here, a new training plan of specs/lstm_text.yaml took 14.5 s to compile, 10.5 s
    without that second optimization, and the MLP 7.5 s against 4.9 s; the step times did not
    change (the kernels' code is the code they were optimized to on their own, and the plan's
    own lines still get Numba's per-function passes). What the plan loses is inlining kernels
    into it, which the one-call-per-layer shape of a plan does not need.

    This replaces a private method of Numba's CPU code library, for the plan functions only
    (by name); if a Numba version lacks it, plans compile the standard way.
    """
    global _LINK_POLICY
    if _LINK_POLICY:
        return
    _LINK_POLICY = True
    try:
        from numba.core.codegen import CPUCodeLibrary
    except ImportError:  # pragma: no cover - a Numba without this layout
        return
    original = getattr(CPUCodeLibrary, "_optimize_final_module", None)
    if original is None:  # pragma: no cover
        return

    def _optimize_final_module(self):
        if self.name in PLAN_FUNCTIONS or self.name.startswith(PLAN_PART_PREFIX):
            return None
        return original(self)

    CPUCodeLibrary._optimize_final_module = _optimize_final_module
