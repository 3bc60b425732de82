"""Forward kernels of the core, activation (and activation layers), merge, normalization and
embedding layers.

Each case runs one layer three ways (``kernel_harness``): nnspec's compiled plan, the layer's
NumPy reference in float64, and Keras 3 (PyTorch backend) with the same weights. Checked per
case: (1) kernels against the reference, rtol = atol = 1e-5 (float32 against float64); (2) the
kernels against Keras, within 1e-4 of the output's scale; (3) output shapes and dtypes.

Every activation is run in one plan (one input, one Activation node per name) so that the 30
names cost one compilation; masked merges and the Embedding's errors need models of more than
one layer and have their own tests.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, activations, core, embedding, merge, normalization
from nnspec.layerdefs.base import TensorType, normalize_attrs
from nnspec.specs.errors import InputError, ShapeMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh

RTOL = ATOL = 1e-5  # float32 kernels against float64 references
KERAS_TOL = 1e-4  # against Keras, relative to the output's scale (max |value|, at least 1)


@dataclass(frozen=True)
class Case:
    id: str
    type: str
    attrs: dict
    shapes: tuple  # per-sample input shapes
    dtypes: tuple | None = None
    batch: int = 3
    keras: str | None = None  # a reason to skip the Keras comparison
    int_high: int = 10  # integer inputs are drawn from [0, int_high)
    extra: dict = field(default_factory=dict)


# fmt: off
CASES = [
    # ---- core
    Case("dense-batch1-small", "Dense", {"units": 5, "activation": "tanh"}, ((4,),), batch=1),
    Case("dense-batch1-blas", "Dense", {"units": 40, "activation": "relu"}, ((32,),), batch=1),
    Case("dense-rank3-softmax", "Dense", {"units": 6, "activation": "softmax"}, ((4, 5),)),
    Case("dense-no-bias", "Dense", {"units": 3, "use_bias": False}, ((7,),)),
    Case("activation-rank3-relu", "Activation", {"activation": "relu"}, ((3, 4),)),
    Case("activation-rank3-softmax", "Activation", {"activation": "softmax"}, ((2, 3, 5),)),
    Case("activation-rank3-glu", "Activation", {"activation": "glu"}, ((3, 8),)),
    Case("masking-nothing-masked", "Masking", {}, ((4, 3),)),  # masked steps: test_masking.py
    Case("rescaling", "Rescaling", {"scale": 0.5, "offset": -1.25}, ((3, 4),)),
    Case("rescaling-uint8-pixels", "Rescaling", {"scale": 1 / 255}, ((4, 3),), dtypes=("uint8",), int_high=256),
    # ---- activation layers
    Case("relu-layer", "ReLU", {}, ((3, 4),)),
    Case("relu-max-slope-threshold", "ReLU", {"max_value": 1.0, "negative_slope": 0.2, "threshold": 0.3}, ((8,),)),
    Case("relu-threshold-only", "ReLU", {"threshold": 0.5}, ((8,),)),  # zero in (0, 0.5]
    Case("relu-max-only", "ReLU", {"max_value": 0.5}, ((8,),)),
    Case("leaky-relu", "LeakyReLU", {}, ((3, 4),)),
    Case("leaky-relu-slope", "LeakyReLU", {"negative_slope": 0.05}, ((6,),)),
    Case("prelu", "PReLU", {"alpha_initializer": "glorot_uniform"},
         ((3, 4),)),
    Case("prelu-shared", "PReLU", {"alpha_initializer": "glorot_uniform",
                                   "shared_axes": [1, 2]}, ((2, 3, 4),)),
    Case("elu", "ELU", {}, ((3, 4),)),
    Case("elu-alpha", "ELU", {"alpha": 0.3}, ((6,),)),
    Case("softmax-layer", "Softmax", {}, ((3, 5),)),
    Case("softmax-axis1", "Softmax", {"axis": 1}, ((4, 3),)),
    Case("softmax-middle-axis", "Softmax", {"axis": -2}, ((2, 4, 3),)),
    Case("permute-21", "Permute", {"dims": [2, 1]}, ((3, 4),)),
    Case("permute-312", "Permute", {"dims": [3, 1, 2]}, ((2, 3, 4),)),
    Case("permute-231", "Permute", {"dims": [2, 3, 1]}, ((2, 3, 4),)),
    Case("permute-identity", "Permute", {"dims": [1]}, ((5,),)),
    Case("repeat-vector", "RepeatVector", {"n": 3}, ((4,),)),
    Case("flatten-view", "Flatten", {}, ((3, 4),)),
    Case("flatten-cf-rank3", "Flatten", {"data_format": "channels_first"}, ((3, 4),)),
    Case("flatten-cf-rank4", "Flatten", {"data_format": "channels_first"}, ((2, 3, 4),)),
    Case("flatten-cf-rank2", "Flatten", {"data_format": "channels_first"}, ((5,),)),
    Case("reshape", "Reshape", {"target_shape": [-1, 2]}, ((3, 4),)),
    Case("dropout", "Dropout", {"rate": 0.5}, ((6,),)),
    Case("gaussian-noise", "GaussianNoise", {"stddev": 1.0}, ((6,),)),
    Case("gaussian-dropout", "GaussianDropout", {"rate": 0.3}, ((6,),)),
    Case("activity-regularization", "ActivityRegularization", {"l1": 0.1}, ((6,),)),
    # ---- merge
    Case("add", "Add", {}, ((3, 4), (3, 4))),
    Case("add-one-input", "Add", {}, ((3,),), extra={"keras_list": True}),
    Case("add-broadcast", "Add", {}, ((3, 4), (1, 4), (4,))),
    Case("subtract-broadcast", "Subtract", {}, ((3, 4), (3, 1))),
    Case("multiply-3", "Multiply", {}, ((2, 3), (2, 3), (2, 3))),
    Case("average-3", "Average", {}, ((2, 3), (2, 3), (1, 3))),
    Case("maximum-broadcast", "Maximum", {}, ((3, 4), (3, 1), (4,))),
    Case("minimum", "Minimum", {}, ((5,), (5,))),
    Case("concat-last", "Concatenate", {}, ((2, 3), (2, 5))),
    Case("concat-axis1", "Concatenate", {"axis": 1}, ((2, 3), (4, 3))),
    Case("concat-middle-3", "Concatenate", {"axis": 2}, ((2, 1, 3), (2, 2, 3), (2, 3, 3))),
    Case("dot-vectors", "Dot", {"axes": 1}, ((4,), (4,))),
    Case("dot-normalize", "Dot", {"axes": [2, 2], "normalize": True}, ((3, 4), (5, 4))),
    Case("dot-mixed-rank", "Dot", {"axes": [1, 2]}, ((4,), (3, 4))),
    Case("dot-middle-axes", "Dot", {"axes": [2, 1]}, ((2, 3, 4), (3, 5))),
    Case("dot-blas-transposed", "Dot", {"axes": [2, 2], "normalize": True}, ((40, 32), (50, 32))),
    Case("dot-blas", "Dot", {"axes": [2, 1]}, ((40, 32), (32, 50))),
    # ---- normalization
    Case("bn-last", "BatchNormalization", {}, ((5,),)),
    Case("bn-axis1", "BatchNormalization", {"axis": 1}, ((3, 4),)),
    Case("bn-rank4-last", "BatchNormalization", {"axis": -1, "epsilon": 0.01}, ((2, 3, 4),)),
    Case("bn-no-center", "BatchNormalization", {"axis": 1, "center": False}, ((3, 4),)),
    Case("bn-no-scale-center", "BatchNormalization", {"scale": False, "center": False}, ((4,),)),
    Case("ln-last", "LayerNormalization", {}, ((3, 6),)),
    Case("ln-two-last", "LayerNormalization", {"axis": [1, 2]}, ((3, 4),)),
    Case("ln-mixed-sign-axes", "LayerNormalization", {"axis": [1, -1]}, ((3, 4),)),
    Case("ln-apart-axes", "LayerNormalization", {"axis": [1, 3]}, ((2, 3, 4),)),
    Case("ln-axis1", "LayerNormalization", {"axis": 1}, ((3, 4),),
         keras="Keras 3.15 on torch calls layer_norm with the wrong trailing shape and fails"),
    Case("ln-no-center-scale", "LayerNormalization", {"center": False, "scale": False}, ((5,),)),
    Case("ln-rms-scaling", "LayerNormalization", {"rms_scaling": True}, ((6,),)),
    Case("rms-last", "RMSNormalization", {}, ((3, 6),)),
    Case("rms-two-last", "RMSNormalization", {"axis": [-2, -1]}, ((3, 4),)),
    Case("rms-axis1", "RMSNormalization", {"axis": 1}, ((3, 4),),
         keras="Keras 3.15 on torch calls rms_norm with the wrong trailing shape and fails"),
    Case("unit-last", "UnitNormalization", {}, ((3, 6),)),
    Case("unit-apart-axes", "UnitNormalization", {"axis": [1, 3]}, ((2, 3, 4),)),
    Case("unit-axis1", "UnitNormalization", {"axis": 1}, ((3, 4),)),
    Case("gn-last", "GroupNormalization", {"groups": 2, "gamma_initializer": "glorot_uniform",
                                           "beta_initializer": "glorot_uniform"}, ((4, 5, 6),)),
    Case("gn-instance-axis1", "GroupNormalization", {"groups": -1, "axis": 1, "center": False}, ((4, 5),)),
    Case("gn-middle-axis", "GroupNormalization", {"groups": 3, "axis": 2, "scale": False, "epsilon": 0.1},
         ((2, 6, 3),)),
    # ---- embedding
    Case("embedding-seq", "Embedding", {"input_dim": 12, "output_dim": 3}, ((5,),), ("int32",), int_high=12),
    Case("embedding-scalar-id", "Embedding", {"input_dim": 6, "output_dim": 4}, ((),), ("int64",), int_high=6),
    Case("embedding-rank2-ids", "Embedding", {"input_dim": 8, "output_dim": 2}, ((2, 3),), ("int32",),
         int_high=8),
    Case("embedding-float-ids", "Embedding", {"input_dim": 10, "output_dim": 3}, ((4,),), ("float32",),
         extra={"float_ids": True}),
    Case("embedding-mask-zero", "Embedding", {"input_dim": 5, "output_dim": 2, "mask_zero": True}, ((6,),),
         ("int32",), int_high=5),
]
# fmt: on

OWNED = {
    "Dense", "Activation", "Dropout", "GaussianNoise", "GaussianDropout", "ActivityRegularization", "Flatten",
    "Reshape", "Permute", "RepeatVector", "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum",
    "Minimum", "Dot", "BatchNormalization", "LayerNormalization", "RMSNormalization", "UnitNormalization",
    "GroupNormalization", "Embedding", "Masking", "Rescaling", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
}  # fmt: skip


def _inputs(case: Case) -> list:
    ins = kh.random_inputs(case.shapes, list(case.dtypes) if case.dtypes else None, batch=case.batch,
                           int_high=case.int_high)  # fmt: skip
    if case.extra.get("float_ids"):  # ids as floats, fractional ones included (Keras truncates)
        rng = np.random.default_rng(1)
        ins = [rng.uniform(0, 9.99, size=(case.batch, *s)).astype(np.float32) for s in case.shapes]
        ins[0][0, :2] = [0.0, 9.0]
    return ins


_RUNS: dict = {}


def _run(case: Case):
    """(inputs, weights, nnspec outputs), computed once per case."""
    if case.id not in _RUNS:
        dtypes = list(case.dtypes) if case.dtypes else None
        ins = _inputs(case)
        w = kh.nnspec_weights(case.type, case.attrs, case.shapes, dtypes)
        got = kh.run_nnspec(case.type, case.attrs, ins, w, dtypes)
        _RUNS[case.id] = (ins, w, got)
    return _RUNS[case.id]


def _expected_shapes(case: Case) -> list:
    defn = REGISTRY[case.type]
    dtypes = case.dtypes or ("float32",) * len(case.shapes)
    ins = [TensorType((None, *s), d) for s, d in zip(case.shapes, dtypes)]
    return [(case.batch, *t.shape[1:]) for t in defn.infer(normalize_attrs(defn, case.attrs), ins, None)]


def _close_to_keras(got, want) -> None:
    scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=KERAS_TOL * scale)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernels_match_reference(case):
    ins, w, got = _run(case)
    ref = kh.run_reference(case.type, case.attrs, ins, w)
    assert [g.shape for g in got] == _expected_shapes(case)
    assert all(g.dtype == np.float32 for g in got)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernels_match_keras(case):
    if case.keras:
        pytest.skip(case.keras)
    ins, w, got = _run(case)
    if case.extra.get("keras_list"):  # a merge of one input: Keras wants it in a list
        import keras

        inp = keras.Input(shape=ins[0].shape[1:])
        model = keras.Model(inp, getattr(keras.layers, case.type)(**case.attrs)([inp]))
        want = [np.asarray(model.predict(ins[0], verbose=0))]
    else:
        want = kh.run_keras(case.type, case.attrs, ins, w, list(case.dtypes) if case.dtypes else None)
    assert [g.shape for g in got] == [k.shape for k in want]
    for g, k in zip(got, want):
        _close_to_keras(g, k)


def test_every_owned_layer_has_a_case_and_a_reference():
    assert {c.type for c in CASES} == OWNED
    for name in OWNED:
        defn = REGISTRY[name]
        assert defn.reference is not None, name
        assert defn.emit is not None or defn.view or defn.training_only, name


# ----------------------------------------------------------------------------- activations

ACTIVATION_NAMES = sorted(set(activations.CODES) | {"glu"})


def _activation_input() -> np.ndarray:
    """Rows that reach every branch: a sweep, special points, random values, large values, and
    close values (a sparsemax support of several entries)."""
    rng = np.random.default_rng(7)
    rows = [
        np.linspace(-6, 6, 16),
        [0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 1e-4, -1e-4, 2e-3, -2e-3, 0.49, 0.51, -0.99, 20.0, -20.0],
        rng.normal(0, 2, 16),
        [30.0, -30.0, 45.0, -45.0, 10.0, -10.0, 8.0, -8.0, 5e-6, -5e-6, 1e-8, 0.7, -0.7, 2.5, -2.5, 0.0],
        np.linspace(0.1, 0.4, 16),
        rng.normal(0, 0.3, 16),
    ]
    return np.array(rows, dtype=np.float32)


def _activation_spec() -> dict:
    return {
        "format": "nnspec/1",
        "name": "activations",
        "inputs": {"x": {"shape": [16]}},
        "layers": {f"a_{n}": {"type": "Activation", "activation": n} for n in ACTIVATION_NAMES},
        "edges": [f"x -> a_{n}" for n in ACTIVATION_NAMES],
        "outputs": [f"a_{n}" for n in ACTIVATION_NAMES],
    }


@pytest.fixture(scope="module")
def activation_outputs():
    m = nnspec.Model.from_config(_activation_spec())
    x = _activation_input()
    return x, dict(zip(ACTIVATION_NAMES, m.predict_on_batch(x)))


@pytest.fixture(scope="module")
def keras_activation_outputs():
    from keras_from_spec import keras_model_from_spec

    model = keras_model_from_spec(json.dumps(_activation_spec()))
    outs = model.predict(_activation_input(), verbose=0)
    return dict(zip(ACTIVATION_NAMES, (np.asarray(o) for o in outs)))


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_matches_reference(name, activation_outputs):
    x, outs = activation_outputs
    got = outs[name]
    ref = activations.reference(name, x.astype(np.float64))
    assert got.dtype == np.float32
    assert got.shape == ((6, 8) if name == "glu" else (6, 16))
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def _keras_sparsemax_is_fixed() -> bool:
    import keras

    out = np.asarray(keras.ops.sparsemax(np.array([[0.0, 0.5, 1.0]], np.float32)))
    return abs(float(out.sum()) - 1.0) < 1e-5


@pytest.mark.keras
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_matches_keras(name, activation_outputs, keras_activation_outputs):
    if name == "sparsemax" and _keras_sparsemax_is_fixed():
        pytest.xfail(
            "this Keras has the fixed sparsemax (keras#23469): set activations.SPARSEMAX_KERAS_315 = False"
        )
    _, outs = activation_outputs
    _close_to_keras(outs[name], keras_activation_outputs[name])


def test_sparsemax_follows_keras_315_not_the_textbook():
    x = np.array([[0.0, 0.5, 1.0], [0.1, 0.2, 0.3]])
    keras315 = activations.reference("sparsemax", x)
    textbook = activations._sparsemax_reference(x, keras315=False)
    np.testing.assert_allclose(keras315[0], [0.0, 0.0, 0.25])  # keras#23425's example
    np.testing.assert_allclose(textbook[0], [0.0, 0.25, 0.75])
    np.testing.assert_allclose(textbook.sum(axis=-1), 1.0)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"type": "Activation", "activation": "threshold"}, "threshold"),
        ({"type": "Dense", "units": 4, "activation": "glu"}, "Activation layer"),
        ({"type": "Dense", "units": 4, "activation": "threshold"}, "threshold"),
        ({"type": "Activation", "activation": "glu"}, "even"),  # the input's last axis is 5
        ({"type": "Activation", "activation": "softmax"}, "batch axis"),  # on a (None,) input
    ],
)
def test_activations_refused(layer, message):
    shape = [] if layer.get("activation") == "softmax" else [5]
    spec = {"format": "nnspec/1", "name": "r", "inputs": {"x": {"shape": shape}}, "layers": {"l": layer},
            "edges": ["x -> l"], "outputs": ["l"]}  # fmt: skip
    with pytest.raises(ShapeMismatchError, match=message):
        nnspec.Model.from_config(spec)


# ----------------------------------------------------------------------------- in place


def test_activation_in_place_is_safe():
    """Activation may overwrite its input, but never a model input nor a value read later."""
    spec = {
        "format": "nnspec/1",
        "name": "inplace",
        "inputs": {"x": {"shape": [4]}},
        "layers": {
            "a": {"type": "Activation", "activation": "relu"},  # reads the model input
            "d": {"type": "Dense", "units": 4},
            "b": {"type": "Activation", "activation": "tanh"},  # may overwrite d's output
            "c": {"type": "Activation", "activation": "sigmoid"},  # d's output read again below
            "s": {"type": "Add"},
        },
        "edges": ["x -> a -> d -> b -> c", "d, c -> s"],
        "outputs": ["s", "a"],
    }
    m = nnspec.Model.from_config(spec)
    x = np.array([[-1.0, 2.0, -3.0, 4.0], [0.5, -0.5, 1.5, -1.5]], np.float32)
    x0 = x.copy()
    s, a = m.predict_on_batch(x)
    np.testing.assert_array_equal(x, x0)  # the caller's array is untouched
    w, b = m.get_weights()
    relu = np.maximum(x0.astype(np.float64), 0)
    d = relu @ w + b
    np.testing.assert_allclose(a, relu, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(s, d + 1 / (1 + np.exp(-np.tanh(d))), rtol=RTOL, atol=ATOL)
    assert any(st.inplace for st in m.plan().steps)


def test_inplace_flags():
    inplace = {d.name for d in REGISTRY.values() if d.extra.get("inplace") and d.name in OWNED}
    assert inplace == {"Activation", "BatchNormalization", "LayerNormalization", "RMSNormalization",
                       "UnitNormalization", "GroupNormalization", "ReLU", "LeakyReLU"}  # fmt: skip


# ----------------------------------------------------------------------------- masks

MASKED_MERGES = ["Multiply", "Maximum", "Minimum", "Add", "Average"]
COMBOS = ["both", "first", "second"]  # which inputs carry a mask: both, the first only, the second only
_MERGE_EDGES = {"both": "e1, e2", "first": "e1, e3", "second": "e3, e1"}


def _masked_merge_spec() -> dict:
    """Every merge type under every mask combination, in one model (one compilation): e1 and e2
    are Embedding(mask_zero) outputs, e3 is not masked."""
    layers = {
        "e1": {"type": "Embedding", "input_dim": 5, "output_dim": 3, "mask_zero": True},
        "e2": {"type": "Embedding", "input_dim": 5, "output_dim": 3, "mask_zero": True},
        "e3": {"type": "Embedding", "input_dim": 5, "output_dim": 3},
    }
    edges = ["ids -> e1", "ids2 -> e2", "ids2 -> e3"]
    for t in MASKED_MERGES:
        for c in COMBOS:
            layers[f"{t}_{c}"] = {"type": t}
            edges.append(f"{_MERGE_EDGES[c]} -> {t}_{c}")
    return {
        "format": "nnspec/1",
        "name": "masked",
        "inputs": {"ids": {"shape": [6], "dtype": "int32"}, "ids2": {"shape": [6], "dtype": "int32"}},
        "layers": layers,
        "edges": edges,
        "outputs": [f"{t}_{c}" for t in MASKED_MERGES for c in COMBOS],
    }


def _masked_data():
    ids = np.array([[1, 2, 0, 0, 3, 4], [0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 0, 0]], np.int32)
    ids2 = np.array([[0, 3, 1, 0, 0, 4], [2, 0, 0, 0, 2, 1], [3, 0, 4, 0, 1, 0]], np.int32)
    return ids, ids2


def _masked_weights():
    rng = np.random.default_rng(3)
    return [rng.normal(0, 1, (5, 3)).astype(np.float32) for _ in range(3)]


@pytest.fixture(scope="module")
def masked_merge_outputs():
    m = nnspec.Model.from_config(_masked_merge_spec())
    m.set_weights(_masked_weights())
    ids, ids2 = _masked_data()
    outs = m.predict_on_batch({"ids": ids, "ids2": ids2})
    names = [f"{t}_{c}" for t in MASKED_MERGES for c in COMBOS]
    return dict(zip(names, outs))


@pytest.mark.parametrize("merge_type", MASKED_MERGES)
@pytest.mark.parametrize("combo", COMBOS)
def test_masked_merges(merge_type, combo, masked_merge_outputs):
    w = _masked_weights()
    ids, ids2 = _masked_data()
    e = {"e1": (w[0][ids], ids != 0), "e2": (w[1][ids2], ids2 != 0), "e3": (w[2][ids2], None)}
    names = _MERGE_EDGES[combo].split(", ")
    xs = [e[n][0].astype(np.float64) for n in names]
    ms = [e[n][1] for n in names]
    ref_fn = REGISTRY[merge_type].reference
    (ref,) = ref_fn({}, xs, [], ms)
    got = masked_merge_outputs[f"{merge_type}_{combo}"]
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    (unmasked,) = ref_fn({}, xs, [], None)
    if merge_type in ("Multiply", "Maximum", "Minimum"):
        assert not np.allclose(unmasked, ref)  # the data makes the masks matter
    else:
        np.testing.assert_allclose(unmasked, ref)  # Add and Average ignore masks


@pytest.mark.keras
@pytest.mark.parametrize("merge_type", MASKED_MERGES)
@pytest.mark.parametrize("combo", COMBOS)
def test_masked_merges_match_keras(merge_type, combo, masked_merge_outputs, keras_masked_merge_outputs):
    name = f"{merge_type}_{combo}"
    _close_to_keras(masked_merge_outputs[name], keras_masked_merge_outputs[name])


@pytest.fixture(scope="module")
def keras_masked_merge_outputs():
    from keras_from_spec import keras_model_from_spec

    km = keras_model_from_spec(json.dumps(_masked_merge_spec()))
    for name, w in zip(("e1", "e2", "e3"), _masked_weights()):
        km.get_layer(name).set_weights([w])
    ids, ids2 = _masked_data()
    outs = km.predict({"ids": ids, "ids2": ids2}, verbose=0)
    names = [f"{t}_{c}" for t in MASKED_MERGES for c in COMBOS]
    return dict(zip(names, (np.asarray(o) for o in outs)))


def test_mask_not_equal_zero_kernel():
    from nnspec.runtime.kernels import jit

    ids = np.array([[0, 3, 0], [1, 0, 2]], np.int64)
    out = np.full((2, 3), 7.0, np.float32)
    jit(embedding.mask_not_equal_zero)(ids, out)
    np.testing.assert_array_equal(out, [[0, 1, 0], [1, 0, 1]])
    fids = np.array([0.0, 0.5, -0.0, 2.0], np.float32)
    fout = np.empty(4, np.float32)
    jit(embedding.mask_not_equal_zero)(fids, fout)
    np.testing.assert_array_equal(fout, [0, 1, 0, 1])  # 0.5 reads row 0 but is not masked, as in Keras


# ----------------------------------------------------------------------------- Embedding errors


def _embedding_model(dtype: str):
    spec = {"format": "nnspec/1", "name": "emb", "inputs": {"ids": {"shape": [3], "dtype": dtype}},
            "layers": {"lookup": {"type": "Embedding", "input_dim": 10, "output_dim": 2}},
            "edges": ["ids -> lookup"], "outputs": ["lookup"]}  # fmt: skip
    return nnspec.Model.from_config(spec)


@pytest.mark.parametrize(
    ("dtype", "ids", "shown"),
    [
        ("int32", [[1, 2, 3], [4, 10, 5]], "got 10"),
        ("int32", [[1, -1, 3], [4, 5, 6]], "got -1"),
        ("int64", [[1, 2, 3], [4, 5, 123456789012]], "got 123456789012"),
        ("float32", [[1.0, 10.5, 3.0], [4.0, 5.0, 6.0]], "got 10 (truncated from a float)"),
        ("float32", [[1.0, 2.0, -1.0], [4.0, 5.0, 6.0]], "got -1"),
        ("float32", [[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]], "got nan"),
        ("float32", [[1.0, 2.0, np.inf], [4.0, 5.0, 6.0]], "got inf"),
    ],
)
def test_embedding_ids_out_of_range(dtype, ids, shown):
    m = _embedding_model(dtype)
    with pytest.raises(InputError) as err:
        m.predict_on_batch(np.array(ids, dtype=dtype))
    msg = str(err.value)
    assert "Embedding 'lookup'" in msg and "[0, 10)" in msg and shown in msg, msg


def test_embedding_float_ids_truncate_like_keras():
    m = _embedding_model("float32")
    table = m.get_weights()[0]
    got = m.predict_on_batch(np.array([[-0.5, 9.99, 2.7]], np.float32))
    np.testing.assert_array_equal(got[0], table[[0, 9, 2]])


# ----------------------------------------------------------------------------- details


def test_unit_normalization_of_zeros_is_zero():
    spec = {"format": "nnspec/1", "name": "u", "inputs": {"x": {"shape": [4]}},
            "layers": {"u": {"type": "UnitNormalization"}}, "edges": ["x -> u"], "outputs": ["u"]}  # fmt: skip
    out = nnspec.Model.from_config(spec).predict_on_batch(np.zeros((2, 4), np.float32))
    np.testing.assert_array_equal(out, 0.0)


def test_dense_small_and_blas_paths_agree():
    """Batch 1 takes the loop (tiny product), batch 2 the BLAS product: same numbers."""
    case = Case("dense-paths", "Dense", {"units": 8, "activation": "linear"}, ((16,),), batch=2)
    ins = _inputs(case)
    w = kh.nnspec_weights(case.type, case.attrs, case.shapes)
    both = kh.run_nnspec(case.type, case.attrs, ins, w)[0]
    one = np.concatenate(
        [kh.run_nnspec(case.type, case.attrs, [x[i : i + 1] for x in ins], w)[0] for i in range(2)]
    )
    assert ins[0].shape[1] * 8 <= core.SMALL_DENSE
    np.testing.assert_allclose(one, both, rtol=1e-6, atol=1e-6)


def test_family_modules_follow_the_kernel_convention():
    """``np = None`` bound at run time, helpers listed, and no NumPy or Numba at import time."""
    import subprocess

    for mod in (core, activations, merge, normalization, embedding):
        assert hasattr(mod, "np") and hasattr(mod, "KERNEL_HELPERS")
        for name in mod.KERNEL_HELPERS:
            assert callable(getattr(mod, name)), (mod.__name__, name)
    code = (
        "import sys\n"
        "from nnspec.layerdefs import core, activations, merge, normalization, embedding\n"
        "print('numpy' in sys.modules, 'numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
