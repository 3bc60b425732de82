"""The bridge from family modules' plain kernel functions to compiled Numba dispatchers.

``jit(fn)`` compiles a kernel once per process (memoized), after pointing the family modules'
``np`` global at NumPy. ``kernel_source_hash()`` fingerprints every family module's source, so
a compiled plan cached on disk is never reused after a kernel changes.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import sys
import time
import types
from functools import lru_cache

import numba
import numpy as np

from .. import layerdefs
from ..layerdefs.base import bind_numpy
from .numba_config import JIT_OPTIONS, cache_dir, link_plans_without_reoptimizing


@lru_cache(maxsize=1)
def family_modules() -> tuple:
    mods = {inspect.getmodule(d.infer) for d in layerdefs.REGISTRY_LIST}
    from ..layerdefs import activations, base, expressions

    mods.update({activations, base, expressions})
    return tuple(sorted((m for m in mods if m is not None), key=lambda m: m.__name__))


_BOUND = False
_HELPERS_BOUND: set = set()


def bind() -> None:
    """Give family modules NumPy, and compile the helpers of the modules any kernel may call
    (activations, base, expressions), once. The other family modules' helpers are compiled when
    a kernel of theirs is first asked for (:func:`jit`): wrapping all 190-odd helpers took
    ~28 ms of every process's first prediction, and a plan uses a few modules."""
    global _BOUND
    if _BOUND:
        return
    link_plans_without_reoptimizing()
    bind_numpy(family_modules())
    from ..layerdefs import activations, base, expressions

    for m in (activations, base, expressions):
        bind_helpers(m)
    _BOUND = True


def _defining_module(fn):
    return sys.modules.get(getattr(getattr(fn, "py_func", fn), "__module__", None) or "")


def helper_modules(module) -> list:
    """``module`` and the family modules whose helpers its kernels may call, dependencies first:
    those it reaches by module name (``conv_recurrent``'s ``conv.fill_patches``), and those that
    define the helpers it imports by name (a helper compiles against its own module's globals:
    ``augmentation_policy`` lists ``draw_shears``, which calls
    ``augmentation_geometry.shear_transform``), transitively."""
    family = family_modules()
    out: list = []
    seen: set = set()

    def visit(m) -> None:
        if m is None or m in seen:
            return
        seen.add(m)
        for v in list(vars(m).values()):
            if isinstance(v, types.ModuleType) and v in family:
                visit(v)
        for name in getattr(m, "KERNEL_HELPERS", ()):
            visit(_defining_module(getattr(m, name)))
        out.append(m)

    visit(module)
    return out


def bind_helpers(module) -> None:
    """Compile the ``KERNEL_HELPERS`` of ``module`` and of the modules it needs
    (:func:`helper_modules`) in place, once each."""
    if module is None or module in _HELPERS_BOUND:
        return
    for m in helper_modules(module):
        if m in _HELPERS_BOUND:
            continue
        _HELPERS_BOUND.add(m)
        for name in getattr(m, "KERNEL_HELPERS", ()):
            fn = getattr(m, name)
            if not isinstance(fn, numba.core.registry.CPUDispatcher):
                setattr(m, name, _njit(fn))


@lru_cache(maxsize=1)
def kernel_cache_dir() -> str | None:
    """Where the kernels' and helpers' compiled code is cached: ``NNSPEC_CACHE_DIR/kernels/<kernel
    source hash>`` (None if it cannot be made: Numba's own place then).

    Numba keys a function's cache on its own source file only, so a kernel compiled against a
    helper of another module was reused after that helper changed (an edited checkout, or a
    ``git pull`` that rewrites some files), and a new plan then linked the stale code. Keyed on
    every family module's bytes instead, a change anywhere compiles afresh."""
    root = os.path.join(cache_dir(), "kernels")
    d = os.path.join(root, kernel_source_hash())
    new = not os.path.isdir(d)
    try:
        os.makedirs(d, exist_ok=True)
    except OSError:
        return None
    try:
        os.utime(d)  # its last use, for evict_kernel_builds
    except OSError:
        pass
    if new:
        evict_kernel_builds(root, max_kernel_builds(), protect=os.path.basename(d))
    return d


def max_kernel_builds() -> int:
    """How many kernel builds the cache keeps (``NNSPEC_CACHE_MAX_KERNEL_BUILDS``, default 3)."""
    try:
        return max(1, int(os.environ.get("NNSPEC_CACHE_MAX_KERNEL_BUILDS", "3")))
    except ValueError:
        return 3


KERNEL_BUILD_IDLE = 7 * 24 * 3600  # seconds unused before a build beyond the limit is removed


def evict_kernel_builds(root: str, keep: int, protect: str, idle: float = KERNEL_BUILD_IDLE) -> list[str]:
    """Remove the least recently used kernel builds (``root/<source hash>`` folders, about 40 MB
    each) beyond ``keep`` that have not been used for ``idle`` seconds, never ``protect``. Every
    upgrade or edit of nnspec's kernels starts a build; without this the old ones stayed forever.
    A build's modification time is its last use (``kernel_cache_dir`` touches it in every
    process), so two installations sharing the cache keep theirs; the idle time spares a build
    that a long-running process still compiles into (Numba would fail to save to a removed
    folder). Returns the removed folder names."""
    try:
        builds = [b for b in os.listdir(root) if os.path.isdir(os.path.join(root, b))]
    except OSError:
        return []

    def last_use(b):
        try:
            return os.stat(os.path.join(root, b)).st_mtime
        except OSError:
            return 0.0

    builds.sort(key=last_use)
    now = time.time()
    victims = [b for b in builds[: max(0, len(builds) - keep)] if b != protect and now - last_use(b) >= idle]
    for b in victims:
        shutil.rmtree(os.path.join(root, b), ignore_errors=True)
    return victims


def _njit(fn):
    """``numba.njit(**JIT_OPTIONS)(fn)``, its cache in :func:`kernel_cache_dir` (Numba reads
    ``config.CACHE_DIR`` when the dispatcher is made; the user's setting is restored after)."""
    d = kernel_cache_dir()
    old = numba.config.CACHE_DIR
    if d:
        numba.config.CACHE_DIR = d
    try:
        return numba.njit(**JIT_OPTIONS)(fn)
    finally:
        numba.config.CACHE_DIR = old


_JITTED: dict = {}


def jit(fn):
    """The compiled form of a family module's kernel function (one dispatcher per function)."""
    d = _JITTED.get(fn)
    if d is None:
        bind()
        bind_helpers(_defining_module(fn))
        d = fn if isinstance(fn, numba.core.registry.CPUDispatcher) else _njit(fn)
        _JITTED[fn] = d
    return d


@lru_cache(maxsize=1)
def kernel_source_hash() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    import numpy

    h.update(numpy.__version__.encode())
    from . import codegen, losses, optimizers, regularizers, train_codegen

    # generated modules call into the last five too; Numba's cache would not notice their changes.
    # This module decides how kernels are compiled and cached, so it is part of the key as well.
    # The files' bytes, read directly (inspect.getsource took ~20 ms of a warm start for the same).
    this = sys.modules[__name__]
    for m in (*family_modules(), codegen, train_codegen, losses, optimizers, regularizers, this):
        h.update(m.__name__.encode())
        try:
            with open(m.__file__, "rb") as f:
                h.update(f.read())
        except (OSError, TypeError):  # no source file (a frozen or zipped install)
            h.update(str(getattr(m, "__loader__", "")).encode())
    return h.hexdigest()[:16]


@numba.njit(cache=True)
def _seed(s):
    np.random.seed(s)


def seed_kernels(seed: int) -> None:
    """Seed the random generator that compiled kernels use (Dropout, noise layers)."""
    _seed(int(seed))
