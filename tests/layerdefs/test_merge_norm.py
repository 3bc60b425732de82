"""Merge and normalization layers against Keras 3: output shapes, masks, weights, counts, defaults."""

from __future__ import annotations

import ast
import sys
import warnings
from pathlib import Path

import pytest

from nnspec.layerdefs import REGISTRY, merge, normalization
from nnspec.layerdefs.base import ShapeError, TensorType, normalize_attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from keras_ref import keras_layer, keras_layer_facts

ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]
# What Keras (and torch under it) raise on a layer it cannot build or run.
KERAS_ERRORS = (ValueError, IndexError, TypeError, RuntimeError)
ALL_TYPES = ELEMENTWISE + [
    "Concatenate",
    "Dot",
    "BatchNormalization",
    "LayerNormalization",
    "RMSNormalization",
    "UnitNormalization",
]


# ----------------------------------------------------------------------------- helpers


def ours(type_name: str, attrs: dict, input_shapes: list, masked: list | None = None):
    """(output types, params) from our LayerDef, inputs given without the batch axis."""
    defn = REGISTRY[type_name]
    norm = normalize_attrs(defn, attrs)
    masked = masked or [False] * len(input_shapes)
    ins = [TensorType((None, *s), "float32", m) for s, m in zip(input_shapes, masked)]
    outs = defn.infer(norm, ins, None)
    return outs, defn.params(norm, ins, None)


def facts(type_name: str, attrs: dict, input_shapes: list):
    """Our answer in keras_layer_facts's form."""
    outs, params = ours(type_name, attrs, input_shapes)
    return (
        [o.shape for o in outs],
        [(p.name, p.shape, p.trainable) for p in params],
        sum(p.size for p in params),
    )


def keras_facts(type_name: str, attrs: dict, input_shapes: list):
    """Keras's answer; a merge layer always gets a list, even of one input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(input_shapes) == 1 and type_name in ELEMENTWISE + ["Concatenate", "Dot"]:
            import keras

            layer = keras_layer(type_name, attrs)
            out = layer([keras.Input(shape=tuple(input_shapes[0]))])
            return [tuple(out.shape)], [], layer.count_params()
        return keras_layer_facts(type_name, attrs, input_shapes)


def keras_runs_on_data(type_name: str, attrs: dict, input_shapes: list) -> bool:
    """Whether Keras computes the layer eagerly on arrays (None sizes become 2)."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrays = [np.ones((2, *(2 if d is None else d for d in s)), "float32") for s in input_shapes]
        try:
            layer = keras_layer(type_name, attrs)
            layer(arrays[0] if REGISTRY[type_name].arity == (1, 1) else arrays)
        except KERAS_ERRORS:
            return False
        return True


# ----------------------------------------------------------------------------- cases

# (type, attrs, input shapes without batch) that both accept.
GOOD = [
    *[(t, {}, [(4, 5), (4, 5)]) for t in ELEMENTWISE],
    *[(t, {}, [(4, 5), (5,)]) for t in ELEMENTWISE],  # lower rank gains leading axes
    *[(t, {}, [(4, 1), (1, 5)]) for t in ELEMENTWISE],  # 1 stretches both ways
    *[(t, {}, [(None, 1), (1, 5)]) for t in ELEMENTWISE],  # None vs 1 stays None
    *[(t, {}, [(None, 3), (7, 3)]) for t in ELEMENTWISE],  # None vs known stays None
    *[(t, {}, [(1,), (3,)]) for t in ELEMENTWISE],
    *[(t, {}, [(4, 5), ()]) for t in ELEMENTWISE],  # per-sample scalars
    *[(t, {}, [(), (4,)]) for t in ELEMENTWISE],
    *[(t, {}, [(2, 1, 3), (4, 1), (3,)]) for t in ELEMENTWISE if t != "Subtract"],
    *[(t, {}, [(3,), (3,), (3,), (3,)]) for t in ELEMENTWISE if t != "Subtract"],
    *[(t, {}, [(3, None)]) for t in ELEMENTWISE if t != "Subtract"],  # a list of one input
    ("Concatenate", {}, [(3,), (4,)]),
    ("Concatenate", {"axis": -1}, [(2, 3), (2, 4), (2, 1)]),
    ("Concatenate", {"axis": 1}, [(2, 3), (5, 3)]),
    ("Concatenate", {"axis": -2}, [(2, 3), (5, 3)]),
    ("Concatenate", {"axis": 2}, [(6, 3, 6), (6, 5, 6)]),
    ("Concatenate", {"axis": 3}, [(6, 6, 3), (6, 6, 5)]),
    ("Concatenate", {"axis": -3}, [(2, 4, 8), (2, 4, 8)]),
    ("Concatenate", {"axis": 1}, [(None, 3), (5, 3)]),  # unknown on the axis -> unknown
    ("Concatenate", {"axis": 1}, [(None, 4), (5, None)]),  # off the axis: the first input's
    ("Concatenate", {"axis": -1}, [(None, 4), (5, 2)]),
    ("Concatenate", {"axis": -1}, [(5, 2), (None, 4)]),
    ("Concatenate", {}, [(7,)]),
    ("Dot", {"axes": 1}, [(3,), (3,)]),  # rank-1 result gets a trailing 1
    ("Dot", {"axes": 1}, [(None,), (None,)]),
    ("Dot", {"axes": -1}, [(3,), (3,)]),
    ("Dot", {"axes": [2, 1]}, [(4, 3), (3, 5)]),
    ("Dot", {"axes": [1, 2]}, [(3, 4), (5, 3)]),
    ("Dot", {"axes": [-1, -2]}, [(4, 3), (3, 5)]),
    ("Dot", {"axes": -1}, [(4, 3), (3,)]),
    ("Dot", {"axes": 2}, [(3, 4, 5), (3, 4)]),
    ("Dot", {"axes": [1, 1]}, [(3, 4, 5), (3, 4, 6)]),
    ("Dot", {"axes": [2, 2], "normalize": True}, [(None, 8), (None, 8)]),
    ("BatchNormalization", {}, [(5,)]),
    ("BatchNormalization", {}, [(4, 5)]),
    ("BatchNormalization", {}, [(None, None, 16)]),
    ("BatchNormalization", {"axis": 1}, [(3, None, None)]),
    ("BatchNormalization", {"axis": -2}, [(7, 2)]),
    ("BatchNormalization", {"center": False}, [(8,)]),
    ("BatchNormalization", {"scale": False}, [(8,)]),
    ("BatchNormalization", {"center": False, "scale": False}, [(8,)]),
    (
        "BatchNormalization",
        {"gamma_regularizer": "l2", "beta_constraint": "non_neg", "moving_variance_initializer": "zeros"},
        [(6, 6, 4)],
    ),
    ("LayerNormalization", {}, [(5,)]),
    ("LayerNormalization", {}, [(None, 5)]),
    ("LayerNormalization", {"axis": 1}, [(4, 5)]),
    ("LayerNormalization", {"axis": [1, 2]}, [(4, 5)]),
    ("LayerNormalization", {"axis": [2, 1]}, [(4, 5)]),
    ("LayerNormalization", {"axis": [1, -1]}, [(4, 5)]),  # Keras sorts as written: (5, 4)
    ("LayerNormalization", {"axis": [-1, -2]}, [(4, 5)]),
    ("LayerNormalization", {"axis": [-1, 1, 2]}, [(3, 4, 5)]),
    ("LayerNormalization", {"center": False}, [(5,)]),
    ("LayerNormalization", {"scale": False}, [(5,)]),
    ("LayerNormalization", {"center": False, "scale": False}, [(None, None)]),  # no weights
    ("LayerNormalization", {"rms_scaling": True, "scale": False}, [(4, 5)]),
    ("LayerNormalization", {"rms_scaling": True, "center": True}, [(5,)]),
    ("RMSNormalization", {}, [(4, 5)]),
    ("RMSNormalization", {"axis": [1, -1]}, [(4, 5)]),
    ("UnitNormalization", {}, [(5,)]),
    ("UnitNormalization", {"axis": [1, 2]}, [(None, None)]),
    ("UnitNormalization", {"axis": -2}, [(4, 5)]),
]

# (type, attrs, input shapes): we raise ShapeError and Keras refuses to build.
BAD_SYMBOLIC = [
    *[(t, {}, [(4,), (3,)]) for t in ELEMENTWISE],
    *[(t, {}, [(2, 3), (4, 3)]) for t in ELEMENTWISE],
    *[(t, {}, [(4, 3), (2,)]) for t in ELEMENTWISE],
    ("Subtract", {}, [(4,), (4,), (4,)]),
    ("Concatenate", {}, [(5408,), (13, 13, 32)]),
    ("Concatenate", {"axis": -1}, [(2, 3), (4, 3)]),
    ("Concatenate", {"axis": -1}, [(1, 4), (3, 4)]),
    ("Concatenate", {"axis": 1}, [(2, 3), (2, 4)]),
    ("Concatenate", {"axis": 2}, [(3, 4), (3, 4, 1)]),
    ("Concatenate", {"axis": 3}, [(3, 4), (3, 4)]),
    ("Concatenate", {"axis": -4}, [(3, 4), (3, 4)]),
    ("Dot", {"axes": 1}, [(3,), (4,)]),
    ("Dot", {"axes": 1}, [(None,), (3,)]),  # Keras: a None matches only a None
    ("Dot", {"axes": [1, 2]}, [(3, 4), (3, 4)]),
    ("Dot", {"axes": 1}, [(3,), (3,), (3,)]),
    ("BatchNormalization", {"axis": 1}, [(None, 5)]),
    ("BatchNormalization", {}, [(4, None)]),
    ("BatchNormalization", {"axis": 3}, [(4, 5)]),
    ("BatchNormalization", {"axis": 0}, [(4, 5)]),
    ("BatchNormalization", {"axis": -3}, [(4, 5)]),
    ("BatchNormalization", {}, [()]),
    ("LayerNormalization", {}, [(4, None)]),
    ("LayerNormalization", {"axis": [1, 2]}, [(None, 5)]),
    ("LayerNormalization", {"axis": 0}, [(4, 5)]),
    ("LayerNormalization", {"axis": 3}, [(4, 5)]),
    ("RMSNormalization", {}, [(None,)]),
    ("UnitNormalization", {"axis": 5}, [(4, 5)]),
]

# We raise ShapeError; Keras builds the layer symbolically but fails on data.
BAD_ON_DATA = [
    ("Dot", {"axes": 0}, [(3,), (3,)]),
    ("Dot", {"axes": [-2, 1]}, [(3,), (3,)]),
    ("LayerNormalization", {"axis": [2, -1]}, [(4, 5)]),
    ("RMSNormalization", {"axis": [2, -1]}, [(4, 5)]),
    ("UnitNormalization", {"axis": [1, 1]}, [(4, 5)]),
]

# Deliberate departures: Keras accepts these (they work on batch axis data), we refuse.
BATCH_AXIS = [
    ("Concatenate", {"axis": 0}, [(3,), (3,)]),
    ("Concatenate", {"axis": -3}, [(3, 4), (3, 4)]),
    ("UnitNormalization", {"axis": 0}, [(4, 5)]),
]


def _id(case) -> str:
    t, a, s = case
    return f"{t}-{a}-{s}".replace(" ", "")


# ----------------------------------------------------------------------------- against Keras


@pytest.mark.keras
@pytest.mark.parametrize("case", GOOD, ids=[_id(c) for c in GOOD])
def test_matches_keras(case):
    t, attrs, shapes = case
    assert facts(t, attrs, shapes) == keras_facts(t, attrs, shapes)


@pytest.mark.keras
@pytest.mark.parametrize("case", BAD_SYMBOLIC, ids=[_id(c) for c in BAD_SYMBOLIC])
def test_bad_shapes_refused_by_both(case):
    t, attrs, shapes = case
    with pytest.raises(ShapeError) as err:
        facts(t, attrs, shapes)
    assert t in str(err.value)
    with pytest.raises(KERAS_ERRORS):
        keras_facts(t, attrs, shapes)


@pytest.mark.keras
@pytest.mark.parametrize("case", BAD_ON_DATA, ids=[_id(c) for c in BAD_ON_DATA])
def test_refused_where_keras_fails_on_data(case):
    t, attrs, shapes = case
    with pytest.raises(ShapeError):
        facts(t, attrs, shapes)
    assert not keras_runs_on_data(t, attrs, shapes)


@pytest.mark.keras
@pytest.mark.parametrize("case", BATCH_AXIS, ids=[_id(c) for c in BATCH_AXIS])
def test_batch_axis_refused(case):
    t, attrs, shapes = case
    with pytest.raises(ShapeError, match="batch axis"):
        facts(t, attrs, shapes)
    assert keras_runs_on_data(t, attrs, shapes)  # a documented departure from Keras


MASK_COMBOS = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.keras
@pytest.mark.parametrize("combo", MASK_COMBOS)
@pytest.mark.parametrize("t", ELEMENTWISE + ["Concatenate", "Dot"])
def test_merge_masks_match_keras(t, combo):
    import keras

    attrs = {"axes": 2} if t == "Dot" else {}
    shapes = [(4, 3), (4, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ins = []
        for m in combo:
            x = keras.Input(shape=(4, 3))
            ins.append(keras.layers.Masking()(x) if m else x)
        out = keras_layer(t, attrs)(ins)
    (ours_out,), _ = ours(t, attrs, shapes, list(combo))
    assert ours_out.masked == (getattr(out, "_keras_mask", None) is not None)


@pytest.mark.keras
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize(
    "t", ["BatchNormalization", "LayerNormalization", "RMSNormalization", "UnitNormalization"]
)
def test_normalization_masks_match_keras(t, masked):
    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = keras.Input(shape=(4, 3))
        out = keras_layer(t, {})(keras.layers.Masking()(x) if masked else x)
    (ours_out,), _ = ours(t, {}, [(4, 3)], [masked])
    assert ours_out.masked == (getattr(out, "_keras_mask", None) is not None)


@pytest.mark.keras
@pytest.mark.parametrize("t", ALL_TYPES)
def test_defaults_are_keras_defaults(t):
    """Passing every default of ours explicitly gives Keras's default configuration."""
    defn = REGISTRY[t]
    required = {"axes": 1} if t == "Dot" else {}
    explicit = {a.name: a.default for a in defn.attrs if not a.required}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = keras_layer(t, {**required, "name": "n"}).get_config()
        mine = keras_layer(t, {**required, **explicit, "name": "n"}).get_config()
    assert mine == ref


@pytest.mark.keras
@pytest.mark.parametrize("t", ALL_TYPES)
def test_output_dtype_is_layer_dtype(t):
    import keras

    attrs = {"axes": 1} if t == "Dot" else {}
    n = 1 if REGISTRY[t].arity == (1, 1) else 2
    for dtype in ("float32", "float64"):
        layer = keras_layer(t, {**attrs, "dtype": dtype})
        ins = [keras.Input(shape=(3,), dtype="int32") for _ in range(n)]
        out = layer(ins[0] if n == 1 else ins)
        defn = REGISTRY[t]
        norm = normalize_attrs(defn, {**attrs, "dtype": dtype})
        (mine,) = defn.infer(norm, [TensorType((None, 3), "int32")] * n, None)
        assert mine.dtype == out.dtype == dtype


# ----------------------------------------------------------------------------- our own contract


def test_concatenate_message():
    with pytest.raises(ShapeError) as err:
        ours("Concatenate", {}, [(5408,), (13, 13, 32)])
    assert str(err.value) == (
        "Concatenate(axis=-1) needs equal shapes except on axis -1; got (None, 5408) and (None, 13, 13, 32)"
    )


def test_broadcast_message_names_every_input():
    with pytest.raises(ShapeError) as err:
        ours("Add", {}, [(3,), (3,), (4,)])
    assert "Add" in str(err.value) and "(None, 3), (None, 3) and (None, 4)" in str(err.value)


def test_dot_message_names_axes_and_sizes():
    with pytest.raises(ShapeError) as err:
        ours("Dot", {"axes": [2, 1]}, [(4, 3), (5, 6)])
    msg = str(err.value)
    assert "Dot(axes=[2, 1])" in msg and "(None, 4, 3)" in msg and "(None, 5, 6)" in msg


def test_known_batch_sizes_must_agree():
    d = REGISTRY["Add"]
    norm = normalize_attrs(d, {})
    (out,) = d.infer(norm, [TensorType((8, 3)), TensorType((None, 3))], None)
    assert out.shape == (8, 3)
    with pytest.raises(ShapeError, match="batch size"):
        d.infer(norm, [TensorType((8, 3)), TensorType((4, 3))], None)


def test_arity_and_positional():
    for t in ("Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        assert REGISTRY[t].arity == (1, None)
    assert REGISTRY["Subtract"].arity == (2, 2)
    assert REGISTRY["Dot"].arity == (2, 2)
    assert REGISTRY["Concatenate"].positional == ("axis",)
    assert REGISTRY["Dot"].positional == ("axes",)
    for t in ("BatchNormalization", "LayerNormalization", "RMSNormalization", "UnitNormalization"):
        assert REGISTRY[t].arity == (1, 1)


def test_infer_checks_input_count():
    with pytest.raises(ShapeError, match="exactly 2"):
        ours("Subtract", {}, [(3,)])
    with pytest.raises(ShapeError, match="exactly 2"):
        ours("Dot", {"axes": 1}, [(3,)])
    with pytest.raises(ShapeError, match="at least 1 input; got 0"):
        ours("Add", {}, [])
    with pytest.raises(ShapeError, match="at least 1 input; got 0"):
        ours("Concatenate", {}, [])


def test_common_attrs_last_and_docs():
    from nnspec.layerdefs.base import COMMON_ATTRS

    for mod in (merge, normalization):
        for d in mod.LAYERS:
            assert d.attrs[-len(COMMON_ATTRS) :] == COMMON_ATTRS
            assert d.doc and d.name in REGISTRY and REGISTRY[d.name] is d


def test_batch_norm_params_detail():
    attrs = {
        "gamma_regularizer": {"type": "l2", "l2": 0.01},
        "beta_constraint": "non_neg",
        "moving_mean_initializer": {"type": "constant", "value": 0.5},
    }
    _, params = ours("BatchNormalization", attrs, [(6, 6, 4)])
    gamma, beta, mean, var = params
    assert (gamma.initializer, gamma.regularizer, gamma.constraint) == (
        "ones",
        attrs["gamma_regularizer"],
        None,
    )
    assert (beta.initializer, beta.regularizer, beta.constraint) == ("zeros", None, "non_neg")
    assert (mean.initializer, mean.trainable) == (attrs["moving_mean_initializer"], False)
    assert (var.initializer, var.trainable) == ("ones", False)
    assert all(p.shape == (4,) for p in params)


def test_normalization_keeps_none_dims_off_the_axis():
    (out,), params = ours("LayerNormalization", {}, [(None, None, 8)], [True])
    assert out.shape == (None, None, None, 8) and out.masked
    assert [p.shape for p in params] == [(8,), (8,)]


def test_layers_import_only_stdlib_and_siblings():
    for mod in (merge, normalization):
        tree = ast.parse(Path(mod.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 1 or node.module == "__future__", node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in sys.stdlib_module_names, alias.name
