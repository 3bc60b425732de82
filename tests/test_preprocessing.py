"""The preprocessing layers a model computes with (Normalization here; Rescaling is in
test_kernels_core.py): kernels against the NumPy reference and Keras 3 (PyTorch backend) with the
same statistics, gradients against finite differences and Keras autograd, Keras's weights
(``mean``, ``variance``, int32 ``count``) and parameter counts, ``adapt`` against Keras's, a
model file, and the errors Keras raises.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec import layers
from nnspec.specs.errors import ShapeMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import Case, GradSuite, close, fd_grads, keras_grads

N = "Normalization"

# fmt: off
FORWARD = [  # (id, attrs, per-sample input shape); statistics from the file, or weights when absent
    ("features-weights", {}, (5,)),
    ("features-given", {"mean": [1.0, -2.0, 0.5], "variance": [4.0, 0.25, 9.0]}, (3,)),
    ("scalar-given-all-axes", {"axis": None, "mean": 2.0, "variance": 3.0}, (3, 4)),
    ("zero-variance-epsilon", {"mean": [0.0, 1.0], "variance": [0.0, 1.0]}, (2,)),
    ("middle-axis-weights", {"axis": 1}, (3, 4)),
    ("two-axes-weights", {"axis": [1, 3]}, (3, 2, 4)),
    ("two-axes-low-rank-mean", {"axis": [-2, -1], "mean": [1.0, 2.0, 3.0], "variance": [1.0, 4.0, 0.5]}, (2, 3)),
    ("invert-weights", {"invert": True}, (4,)),
    ("invert-given", {"axis": [1, 2], "mean": [[1.0, 2.0], [3.0, 4.0]], "variance": [[1.0, 2.0], [3.0, 4.0]],
                      "invert": True}, (2, 2)),
]
# fmt: on


def _stats_weights(attrs, shape, seed=0):
    """Random mean and positive variance for a layer that holds them as weights; [] otherwise."""
    if "mean" in attrs:
        return []
    m = kh.build_nnspec(N, attrs, (shape,))
    mean, var, count = m.get_weights()
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 2, mean.shape).astype(np.float32), rng.uniform(0.1, 5, var.shape).astype(np.float32),
            np.zeros((), np.int32)]  # fmt: skip


_RUNS: dict = {}


def _forward(case):
    cid, attrs, shape = case
    if cid not in _RUNS:
        ins = kh.random_inputs((shape,))
        w = _stats_weights(attrs, shape)
        _RUNS[cid] = (ins, w, kh.run_nnspec(N, attrs, ins, w))
    return _RUNS[cid]


@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_kernels_match_reference(case):
    ins, w, got = _forward(case)
    (ref,) = kh.run_reference(N, case[1], ins, w)
    np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.keras
@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_kernels_weights_and_params_match_keras(case):
    from keras_ref import keras_layer_facts

    _, attrs, shape = case
    ins, w, got = _forward(case)
    (want,) = kh.run_keras(N, attrs, ins, w)
    np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    _, weights, count = keras_layer_facts(N, attrs, [shape])
    m = kh.build_nnspec(N, attrs, (shape,))
    layer = m.get_layer("layer")
    assert [(n.split("/")[-1], w.shape, False) for n, w in zip(layer._weight_names(), layer.get_weights())] == weights
    assert m.count_params() == count


def test_given_statistics_are_constants_not_weights():
    m = kh.build_nnspec(N, {"mean": [1.0, 2.0], "variance": [1.0, 1.0]}, ((2,),))
    assert m.get_weights() == [] and m.count_params() == 0
    m = kh.build_nnspec(N, {}, ((7,),))
    assert [w.shape for w in m.get_weights()] == [(7,), (7,), ()]
    assert m.get_weights()[2].dtype == np.int32  # Keras's count is an int32 variable


def test_summary_counts_the_statistics_as_non_trainable(capsys):
    x = nnspec.Input((3, 4))
    m = nnspec.Model(x, layers.Normalization(axis=[1, 2])(x))
    m.summary()
    out = capsys.readouterr().out
    assert "Total params: 25 (100.00 B)" in out and "Non-trainable params: 25 (100.00 B)" in out
    assert "Trainable params: 0 (0.00 B)" in out


# ----------------------------------------------------------------------------- adapt


@pytest.mark.keras
@pytest.mark.parametrize("axis", [-1, [1, 2], None], ids=["features", "two-axes", "all"])
def test_adapt_matches_keras(axis):
    import keras

    rng = np.random.default_rng(3)
    data = rng.normal(2.0, 3.0, size=(40, 3, 4)).astype(np.float32)
    ours = layers.Normalization(axis=axis)
    ours.adapt(data)  # before the layer is in a model: kept until the model is built
    x = nnspec.Input((3, 4))
    m = nnspec.Model(x, ours(x))
    theirs = keras.layers.Normalization(axis=axis)
    theirs.adapt(data)
    for got, want in zip(m.get_weights(), theirs.get_weights()):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    probe = rng.normal(size=(5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(m.predict(probe), np.asarray(theirs(probe)), rtol=1e-5, atol=1e-5)


def test_adapt_in_a_model_and_from_batches():
    rng = np.random.default_rng(1)
    data = rng.normal(-1.0, 0.5, size=(30, 6)).astype(np.float32)
    x = nnspec.Input((6,))
    norm = layers.Normalization()
    nnspec.Model(x, layers.Dense(2)(norm(x)))  # the layer is in a model: adapt sets its weights there
    norm.adapt((data[i : i + 8], None) for i in range(0, 30, 8))  # a generator of (x, y) batches
    mean, var, count = norm.get_weights()
    np.testing.assert_allclose(mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(var, data.var(0), rtol=1e-5)
    assert count == 0  # Keras 3 leaves count at 0 too
    with pytest.raises(ValueError, match="does not fit"):
        norm.adapt(np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match="no adapt"):
        layers.Dense(3).adapt(data)
    with pytest.raises(ValueError, match="given as constants"):
        layers.Normalization(mean=0.0, variance=1.0).adapt(data)


# ----------------------------------------------------------------------------- gradient cases

# fmt: off
NORMALIZATION_CASES = [
    Case("normalization-given", N, {"mean": [0.5, -1.0, 2.0], "variance": [0.25, 4.0, 2.0]}, ((5, 3),)),
    Case("normalization-invert-all", N, {"axis": None, "mean": 1.0, "variance": 9.0, "invert": True}, ((4, 2),)),
    Case("normalization-two-axes", N, {"axis": [1, 2], "mean": [[1.0, 2.0], [3.0, 4.0]],
                                       "variance": [[0.5, 2.0], [3.0, 0.1]]}, ((2, 2),)),
    Case("normalization-weights", N, {}, ((3,),)),  # the initial weights: mean 0, variance 1
]
# fmt: on

# ----------------------------------------------------------------------------- a model file

MODEL = """
format: nnspec/1
name: standardized_mlp
inputs:
  features: {shape: [4]}
layers:
  norm: {type: Normalization, mean: [10.0, -3.0, 0.5, 1000.0], variance: [4.0, 1.0, 0.25, 10000.0]}
  hidden: {type: Dense, units: 8, activation: relu}
  out: {type: Dense, units: 3, activation: softmax}
"""


@pytest.mark.keras
def test_model_file_summary_predictions_and_training_step_match_keras():
    from grad_harness import model_matches_keras

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6, 4)) * [2, 1, 0.5, 100] + [10, -3, 0.5, 1000]).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(6) % 3]
    m, _, moved = model_matches_keras(MODEL, x, y, seed=2)
    assert m.count_params() == 4 * 8 + 8 + 8 * 3 + 3
    assert moved == 4  # the two Dense layers' kernels and biases


def test_model_file_round_trips_and_masks_pass_through():
    import yaml

    from nnspec.compiler import analyze
    from nnspec.specs.load import Document

    m = nnspec.Model.from_config(yaml.safe_load(MODEL))
    again = nnspec.model_from_json(m.to_json())
    assert again.get_layer("norm").attrs["mean"] == [10.0, -3.0, 0.5, 1000.0]
    again.set_weights(m.get_weights())  # the JSON holds the architecture, as Keras's does
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(again.predict(x), m.predict(x))
    spec = {"format": "nnspec/1", "inputs": {"ids": {"shape": [5], "dtype": "int32"}},
            "layers": {"emb": {"type": "Embedding", "input_dim": 9, "output_dim": 3, "mask_zero": True},
                       "norm": {"type": N, "axis": -1}},
            "edges": ["ids -> emb -> norm"], "outputs": ["norm"]}  # fmt: skip
    assert analyze(Document(spec)).nodes["norm"].out_types[0].masked


@pytest.mark.parametrize(
    "attrs, shape, message",
    [
        ({"mean": [1.0, 2.0]}, (2,), "give both `mean` and `variance`"),
        ({"mean": [1.0, 2.0], "variance": [1.0]}, (2,), "must match"),
        ({"mean": [1.0, 2.0, 3.0], "variance": [1.0, 2.0, 3.0]}, (2,), "does not fit the kept axes"),
        ({"mean": [[1.0, 2.0]], "variance": [[1.0, 2.0]]}, (2,), "more axes than `axis` keeps"),
        ({"axis": 3}, (2, 2), "out of range"),
        ({"axis": 0}, (2,), "the batch axis"),
        ({"axis": 1}, (None, 2), "axis 1, whose size is not known"),
    ],
)
def test_statistics_keras_refuses_are_shape_errors(attrs, shape, message):
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": list(shape)}},
            "layers": {"n": {"type": N, **attrs}}, "edges": ["x -> n"], "outputs": ["n"]}  # fmt: skip
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.Model.from_config(spec)
    assert "E300" in str(err.value) and message in str(err.value) and "'n'" in str(err.value)


# ----------------------------------------------------------------------------- Resizing, CenterCrop

CF = {"data_format": "channels_first"}

# fmt: off
IMAGE_FORWARD = [  # (id, type, attrs, per-sample input shape)
    ("resize-down-bilinear", "Resizing", {"height": 3, "width": 4}, (7, 9, 2)),
    ("resize-up-bilinear", "Resizing", {"height": 8, "width": 5}, (3, 4, 3)),
    ("resize-nearest", "Resizing", {"height": 5, "width": 3, "interpolation": "nearest"}, (7, 8, 2)),
    ("resize-bicubic-cf", "Resizing", {"height": 6, "width": 4, "interpolation": "bicubic", **CF}, (2, 4, 7)),
    ("resize-crop-aspect", "Resizing", {"height": 4, "width": 4, "crop_to_aspect_ratio": True}, (6, 9, 2)),
    ("resize-crop-aspect-tall", "Resizing", {"height": 2, "width": 5, "crop_to_aspect_ratio": True,
                                             "interpolation": "bicubic"}, (8, 6, 1)),
    ("resize-pad-aspect", "Resizing", {"height": 4, "width": 4, "pad_to_aspect_ratio": True, "fill_value": 2.5},
     (3, 8, 2)),
    ("resize-pad-aspect-odd-cf", "Resizing", {"height": 6, "width": 3, "pad_to_aspect_ratio": True, **CF},
     (2, 5, 4)),  # Keras pads each side by floor(extra / 2): one row fewer than the ratio asks
    ("resize-antialias-down", "Resizing", {"height": 3, "width": 4, "antialias": True}, (11, 13, 2)),
    ("resize-antialias-bicubic-up-cf", "Resizing", {"height": 7, "width": 3, "interpolation": "bicubic",
                                                    "antialias": True, **CF}, (2, 4, 9)),
    ("resize-antialias-crop-aspect", "Resizing", {"height": 3, "width": 3, "antialias": True,
                                                  "crop_to_aspect_ratio": True}, (8, 12, 1)),
    ("resize-antialias-nearest-ignored", "Resizing", {"height": 3, "width": 2, "interpolation": "nearest",
                                                      "antialias": True}, (7, 5, 2)),
    ("center-crop", "CenterCrop", {"height": 3, "width": 4}, (6, 7, 2)),
    ("center-crop-cf", "CenterCrop", {"height": 2, "width": 2, **CF}, (3, 5, 4)),
    ("center-crop-smaller-resizes", "CenterCrop", {"height": 6, "width": 4}, (4, 9, 2)),
]
# fmt: on

_IMAGE_RUNS: dict = {}


def _image_forward(case):
    cid, typ, attrs, shape = case
    if cid not in _IMAGE_RUNS:
        ins = kh.random_inputs((shape,))
        _IMAGE_RUNS[cid] = (ins, kh.run_nnspec(typ, attrs, ins, []))
    return _IMAGE_RUNS[cid]


@pytest.mark.parametrize("case", IMAGE_FORWARD, ids=lambda c: c[0])
def test_image_kernels_match_reference(case):
    _, typ, attrs, _ = case
    ins, got = _image_forward(case)
    (ref,) = kh.run_reference(typ, attrs, ins, [])
    assert got[0].shape == ref.shape
    np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.keras
@pytest.mark.parametrize("case", IMAGE_FORWARD, ids=lambda c: c[0])
def test_image_kernels_match_keras(case):
    from keras_ref import keras_layer_facts

    _, typ, attrs, shape = case
    ins, got = _image_forward(case)
    (want,) = kh.run_keras(typ, attrs, ins, [])
    assert got[0].shape == want.shape
    np.testing.assert_allclose(got[0], want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    out_shapes, weights, count = keras_layer_facts(typ, attrs, [shape])
    assert kh.build_nnspec(typ, attrs, (shape,)).outputs[0].shape == out_shapes[0]
    assert weights == [] and count == 0


@pytest.mark.keras
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_integer_images_are_rounded_as_keras_computes(interpolation, dtype):
    """Keras on PyTorch resizes an integer image in float32 and rounds back (half to even;
    uint8 bicubic clipped to 0-255); nnspec rounds its float64 sum. Where the exact value is a
    tie at .5, the two float sums can land on either side, so there (and only there, within
    1e-4 of a tie in Keras's float result) the two may differ by one."""
    import keras

    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(2, 7, 9, 3)).astype(dtype)
    attrs = {"height": 5, "width": 4, "interpolation": interpolation}
    (got,) = kh.run_nnspec("Resizing", attrs, [x], [], [dtype])
    (want,) = kh.run_keras("Resizing", attrs, [x], [], [dtype])
    floats = np.asarray(keras.layers.Resizing(**attrs)(x.astype(np.float32)))
    if dtype == "uint8" and interpolation == "bicubic":
        floats = np.clip(floats, 0, 255)
    near_tie = np.abs(np.abs(floats - np.floor(floats)) - 0.5) < 1e-4
    assert got.dtype == np.float32 and np.array_equal(got, np.round(got))
    diff = np.abs(got - want.astype(np.float64))
    assert (diff[~near_tie] == 0).all() and (diff[near_tie] <= 1).all()
    assert (diff == 0).mean() > 0.9


# fmt: off
IMAGE_CASES = [
    Case("resizing-bilinear-down", "Resizing", {"height": 3, "width": 2}, ((5, 4, 2),)),
    Case("resizing-bicubic-up-cf", "Resizing", {"height": 5, "width": 4, "interpolation": "bicubic", **CF},
         ((2, 3, 3),)),
    Case("resizing-nearest-crop", "Resizing", {"height": 3, "width": 3, "interpolation": "nearest",
                                               "crop_to_aspect_ratio": True}, ((4, 6, 2),)),
    Case("resizing-pad", "Resizing", {"height": 4, "width": 4, "pad_to_aspect_ratio": True, "fill_value": 1.0},
         ((2, 5, 2),)),
    Case("resizing-antialias-down", "Resizing", {"height": 2, "width": 3, "antialias": True}, ((7, 8, 2),)),
    Case("resizing-antialias-bicubic", "Resizing", {"height": 3, "width": 5, "interpolation": "bicubic",
                                                    "antialias": True}, ((6, 4, 1),)),
    Case("center-crop", "CenterCrop", {"height": 2, "width": 3}, ((4, 5, 2),)),
    Case("center-crop-smaller", "CenterCrop", {"height": 4, "width": 3}, ((3, 5, 2),)),
]
# fmt: on

IMAGE_MODEL = """
format: nnspec/1
name: resized_cnn
inputs:
  image: {shape: [12, 10, 3], dtype: uint8}
layers:
  resize: {type: Resizing, height: 8, width: 8, crop_to_aspect_ratio: true}
  scale: {type: Rescaling, scale: 0.00392156862745098}
  crop: {type: CenterCrop, height: 6, width: 6}
  conv: {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  pool: {type: GlobalAveragePooling2D}
  out: {type: Dense, units: 3, activation: softmax}
"""


@pytest.mark.keras
def test_image_model_summary_predictions_and_training_step_match_keras():
    from grad_harness import model_matches_keras

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 12, 10, 3)).astype(np.uint8)
    y = np.eye(3, dtype=np.float32)[np.arange(4) % 3]
    m, _, moved = model_matches_keras(IMAGE_MODEL, x, y, seed=1)
    assert m.count_params() == 3 * 3 * 3 * 4 + 4 + 4 * 3 + 3
    assert moved == 4


@pytest.mark.parametrize(
    "typ, attrs, message",
    [
        ("Resizing", {"height": 2, "width": 2, "interpolation": "lanczos3"}, "Keras on PyTorch refuses it"),
        ("Resizing", {"height": 2, "width": 2, "crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True},
         "exclude each other"),
    ],
)
def test_resizing_options_nnspec_refuses_are_shape_errors(typ, attrs, message):
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": [4, 4, 1]}},
            "layers": {"r": {"type": typ, **attrs}}, "edges": ["x -> r"], "outputs": ["r"]}  # fmt: skip
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.Model.from_config(spec)
    assert "E300" in str(err.value) and message in str(err.value) and "'r'" in str(err.value)


# ----------------------------------------------------------------------------- CategoryEncoding, Discretization

# fmt: off
ENCODE_FORWARD = [  # (id, type, attrs, per-sample input shape, dtype, values: low, high)
    ("multi-hot", "CategoryEncoding", {"num_tokens": 6}, (4,), "int32", (-1, 6)),
    ("count", "CategoryEncoding", {"num_tokens": 5, "output_mode": "count"}, (7,), "int32", (0, 5)),
    ("one-hot-squeezed", "CategoryEncoding", {"num_tokens": 4, "output_mode": "one_hot"}, (1,), "int32", (-1, 4)),
    ("one-hot-rows", "CategoryEncoding", {"num_tokens": 4, "output_mode": "one_hot"}, (2, 3), "int32", (0, 4)),
    ("binary-float-ids", "CategoryEncoding", {"num_tokens": 3, "output_mode": "binary"}, (5,), "float32", (0, 3)),
    ("buckets", "Discretization", {"bin_boundaries": [-0.5, 0.0, 0.7]}, (3, 4), "float32", None),
    ("buckets-one-hot", "Discretization", {"bin_boundaries": [0.0, 1.0], "output_mode": "one_hot"}, (5,),
     "float32", None),
    ("buckets-count", "Discretization", {"bin_boundaries": [-1.0, 0.0, 0.25, 1.0], "output_mode": "count"}, (6,),
     "float32", None),
]
# fmt: on


def _encode_inputs(shape, dtype, values):
    rng = np.random.default_rng(11)
    if values is None:  # around the boundaries, a few exactly on them
        x = rng.normal(0, 1, size=(4, *shape)).astype(np.float32)
        x.flat[::5] = 0.0
        return x
    x = rng.integers(*values, size=(4, *shape))
    if dtype.startswith("float"):
        x = x + rng.uniform(0, 0.9, size=x.shape)  # truncated to the ids below
    return x.astype(dtype)


@pytest.mark.parametrize("case", ENCODE_FORWARD, ids=lambda c: c[0])
def test_encoding_matches_reference(case):
    _, typ, attrs, shape, dtype, values = case
    x = _encode_inputs(shape, dtype, values)
    (got,) = kh.run_nnspec(typ, attrs, [x], [], [dtype])
    np.testing.assert_array_equal(got, kh.run_reference(typ, attrs, [x], [])[0])


@pytest.mark.keras
@pytest.mark.parametrize("case", ENCODE_FORWARD, ids=lambda c: c[0])
def test_encoding_matches_keras(case):
    _, typ, attrs, shape, dtype, values = case
    x = _encode_inputs(shape, dtype, values)
    (got,) = kh.run_nnspec(typ, attrs, [x], [], [dtype])
    (want,) = kh.run_keras(typ, attrs, [x], [], [dtype])
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_encoding_types_and_an_id_too_large():
    m = kh.build_nnspec("Discretization", {"bin_boundaries": [0.0]}, ((3,),))
    assert m.outputs[0].dtype == "int32" and m.count_params() == 0
    m = kh.build_nnspec("CategoryEncoding", {"num_tokens": 3}, ((2,),), ["int32"])
    with pytest.raises(nnspec.InputError, match=r"CategoryEncoding 'layer': ids must lie below num_tokens \(3\); got 3"):
        m.predict(np.array([[0, 3]], np.int32))


@pytest.mark.parametrize(
    "typ, attrs, shape, message",
    [
        ("Discretization", {"num_bins": 4}, (3,), "nnspec does not compute"),
        ("Discretization", {"bin_boundaries": [0.0], "num_bins": 2}, (3,), "not both"),
        ("Discretization", {"bin_boundaries": [1.0, 0.0]}, (3,), "sorted in increasing order"),
        ("Discretization", {}, (3,), "needs bin_boundaries"),
        ("CategoryEncoding", {"num_tokens": 4}, (2, 3), "needs an input (batch, values)"),
        ("CategoryEncoding", {"num_tokens": 4, "sparse": True}, (3,), "no sparse tensors"),
    ],
)
def test_encodings_nnspec_refuses_are_shape_errors(typ, attrs, shape, message):
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": list(shape)}},
            "layers": {"e": {"type": typ, **attrs}}, "edges": ["x -> e"], "outputs": ["e"]}  # fmt: skip
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.Model.from_config(spec)
    assert "E300" in str(err.value) and message in str(err.value) and "'e'" in str(err.value)


# ----------------------------------------------------------------------------- gradients, every case

CASES = NORMALIZATION_CASES + IMAGE_CASES
SUITE = GradSuite(CASES)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_finite_differences(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    dx, _ = fd_grads(case, r)
    close(r.dx[0], dx[0], 1e-3, "input")
    assert all(g is None for g in r.dw)  # no trainable weights: Normalization's statistics never train


@pytest.mark.keras
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_keras_autograd(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    y, dx, _, _ = keras_grads(case, r)
    close(r.y, y, 1e-4, "training forward")
    close(r.dx[0], dx[0], 1e-4, "input")
