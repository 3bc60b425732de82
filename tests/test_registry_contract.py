"""Every registered layer type keeps the contract of a LayerDef.

One row per registered type; a layer added without a doc, a schema entry, a NumPy reference
or a way to run at inference fails here, by name.
"""

from __future__ import annotations

import pytest

from nnspec.layerdefs import REGISTRY, REGISTRY_LIST
from nnspec.layerdefs.base import COMMON_ATTRS, snake_case
from nnspec.specs.schema import build_schema

# Layer types that lowering turns into something else instead of running a kernel of their own.
LOWERED = {
    "Model": "inlined: its steps are the sub-model's",
    "TimeDistributed": "folds time into the batch and runs the wrapped layer's kernel",
}

NAMES = [d.name for d in REGISTRY_LIST]


def test_registry_names_are_unique_and_keyed_by_name():
    assert len(NAMES) == len(set(NAMES))
    assert all(REGISTRY[n].name == n for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_layer_definition_is_complete(name):
    d = REGISTRY[name]
    assert d.doc.strip(), f"{name} has no doc"
    attr_names = [a.name for a in d.attrs]
    assert len(attr_names) == len(set(attr_names)), f"{name} defines an attribute twice"
    assert attr_names[-len(COMMON_ATTRS) :] == [a.name for a in COMMON_ATTRS], f"{name}: common attrs go last"
    assert set(d.positional) <= set(attr_names), f"{name}: positional names must be attributes"
    lo, hi = d.arity
    assert lo >= 1 and (hi is None or hi >= lo)
    assert d.op == snake_case(name)


@pytest.mark.parametrize("name", NAMES)
def test_layer_is_in_the_schema(name):
    layers = build_schema()["definitions"]["layers"]
    assert name in layers
    props = layers[name]["properties"]
    assert set(props) == {"type", *(a.name for a in REGISTRY[name].attrs)}


@pytest.mark.parametrize("name", NAMES)
def test_layer_can_run_at_inference(name):
    """A kernel (emit) and a NumPy reference, unless the layer is a view, an identity or lowered."""
    d = REGISTRY[name]
    if name in LOWERED:
        return
    assert d.reference is not None, f"{name} has no NumPy reference"
    if d.view or d.training_only:
        return
    assert d.emit is not None, f"{name} has no inference kernel (LayerDef.emit)"
