"""Kernel helpers are compiled per family module, when a kernel of the module is first needed
(runtime/kernels.py: ``jit`` -> ``bind_helpers``), not all at start-up.

That is only correct if binding a module also binds every helper its helpers call: Numba
compiles a helper against the globals of the module that defines it, and a global that is
still a plain Python function there is an "untyped global name" error at compile time, which
only a process with an empty Numba cache would meet. These tests check the property from the
functions' code, for every family module, without compiling anything.
"""

from __future__ import annotations

import types

import pytest

from nnspec.runtime import kernels

MODULES = kernels.family_modules()


def _plain(fn):
    return getattr(fn, "py_func", fn)


def _called_functions(fn):
    """(name, object) of the globals a helper's code names that are functions or modules."""
    f = _plain(fn)
    if not isinstance(f, types.FunctionType):
        return []
    out = []
    for name in f.__code__.co_names:
        g = f.__globals__.get(name)
        if isinstance(g, types.ModuleType) or isinstance(_plain(g), types.FunctionType):
            out.append((name, g))
    return out


@pytest.mark.parametrize("module", MODULES, ids=[m.__name__.rsplit(".", 1)[-1] for m in MODULES])
def test_binding_a_module_binds_every_helper_its_helpers_call(module):
    closure = kernels.helper_modules(module)
    assert closure[-1] is module
    family = set(MODULES)
    problems = []
    for d in closure:
        for name in getattr(d, "KERNEL_HELPERS", ()):
            helper = getattr(d, name)
            owner = kernels._defining_module(helper)
            assert owner in closure, (d.__name__, name)
            for called, g in _called_functions(helper):
                if isinstance(g, types.ModuleType):
                    if g in family and g not in closure:
                        problems.append(f"{owner.__name__}.{name} uses module {g.__name__}, not bound with it")
                    continue
                if kernels._defining_module(g) in family and called not in getattr(owner, "KERNEL_HELPERS", ()):
                    problems.append(f"{owner.__name__}.{name} calls {called}, which {owner.__name__} does not list "
                                    f"in KERNEL_HELPERS")  # fmt: skip
    assert not problems, problems


def test_jit_binds_the_kernels_module_and_what_it_needs():
    """The case that failed with an empty Numba cache when binding went by module alone:
    RandAugment's draw kernel calls augmentation_geometry's draw_shears, which calls that
    module's shear_transform."""
    from nnspec.layerdefs import augmentation_geometry, augmentation_policy

    assert augmentation_geometry in kernels.helper_modules(augmentation_policy)
    kernels.jit(augmentation_policy.draw_rand_augment)
    assert all(
        isinstance(getattr(m, n), kernels.numba.core.registry.CPUDispatcher)
        for m in kernels.helper_modules(augmentation_policy)
        for n in getattr(m, "KERNEL_HELPERS", ())
    )


def test_kernels_cache_under_the_source_hash():
    """Numba keys a function's cache on its own file only: a kernel compiled against another
    module's helper was reused after the helper changed. nnspec's kernels and helpers cache under
    NNSPEC_CACHE_DIR/kernels/<hash of every family module>, so any change compiles afresh; the
    user's Numba setting is left as it was."""
    import numba

    from nnspec.layerdefs import activations, core

    before = numba.config.CACHE_DIR
    d = kernels.jit(core.dense_forward)
    where = kernels.kernel_cache_dir()
    assert where is not None and where.endswith(kernels.kernel_source_hash())
    assert d._cache._cache_path.startswith(where)
    assert activations._softmax_row._cache._cache_path.startswith(where)  # a helper, bound by bind()
    assert numba.config.CACHE_DIR == before
