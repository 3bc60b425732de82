"""Keras ops between layers (``x + 3.0``, ``keras.ops.mean(x, axis=1)``...) in functional models:
read from Keras's configs (api/keras_ops.py) and written with the builder's operators and
``nnspec.ops``, against Keras 3 on its PyTorch backend.

- A Keras model applying every op nnspec reads predicts, counts and trains as Keras does (one
  SGD step: loss and weights after).
- MobileNetV3's hard_sigmoid pattern, nested in a sub-model and called twice.
- The builder's ``x + 3.0`` against NumPy, and the file it writes against Keras's reading of the
  same code.
- Ops nnspec cannot read, and masks Keras records as ops, as before.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # a test extra (pip install ".[test]"), after KERAS_BACKEND is set
from keras import layers as KL
from keras import ops as K

import nnspec
from nnspec import layers, ops
from nnspec.specs.errors import KerasConfigError


def _every_op_model():
    i, j = keras.Input((6, 4), name="a"), keras.Input((6, 4), name="b")
    x = KL.Dense(4, name="dense")(i)
    outs = [
        K.transpose(x, (0, 2, 1)), K.expand_dims(x, 1), K.squeeze(K.expand_dims(x, -1), -1),
        K.softmax(x, axis=1), K.log_softmax(x), K.leaky_relu(x), K.elu(x), K.celu(x), K.selu(x),
        K.gelu(x), K.gelu(x, approximate=False), K.sqrt(abs(x)), K.cast(x, "float32"),
        K.matmul(x, K.transpose(x, (0, 2, 1))), K.hard_sigmoid(x), K.silu(x), K.hard_swish(x), K.relu6(x),
        -x, x**2, 2.0 - x, x / 3, K.maximum(x, 0.0), K.minimum(x, j), K.square(x), K.exp(x), K.sigmoid(x),
        K.tanh(x), K.softplus(x), K.softsign(x), K.log1p(K.abs(x)), K.mean(x * j, axis=1, keepdims=True) + j,
        K.concatenate([x, j], axis=-1), K.reshape(x, (-1, 24)), K.clip(x, -0.5, 0.5), K.sum(x, axis=[1, 2]),
        K.max(x, axis=1), K.min(x, axis=-1), KL.Dense(3, name="head")(x * 0.5 + 1),
    ]  # fmt: skip
    return keras.Model([i, j], outs)


def _inputs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (n, 6, 4)).astype("float32") for _ in range(2)]


def _weights_after_step_match(ours, keras_weights):
    """Weights after one training step, against Keras's: 1e-5 relative, and an absolute floor of
    1e-6 of each tensor's largest value. An element where the step nearly cancels the weight
    (w close to lr * g) differs by float32 rounding at the operands' scale, not the result's:
    seen in CI, 1.7e-7 at an element of 0.0019 in a tensor whose largest value is 0.64 (3 ulp of
    that scale), which a fixed 1e-7 floor rejected."""
    for a, b in zip(ours, keras_weights):
        b = np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(float(np.abs(b).max()), 1e-30))


def test_every_op_nnspec_reads_predicts_as_keras():
    km = _every_op_model()
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params() == 20 + 15
    m.set_weights(km.get_weights())
    x = _inputs()
    want, got = km.predict(x, verbose=0), m.predict(x)
    assert len(got) == len(want) == 39
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=f"output {k}")
    spec = m.get_config()
    adds = {d["call"] for k, d in spec["custom_layers"].items() if k.rstrip("0123456789") == "OpAdd"}
    assert adds == {"add(inputs[0], inputs[1])", "add(inputs, 1)"}  # one declaration per expression
    assert spec["custom_layers"]["OpGelu"]["call"].startswith("0.5 * inputs")
    # the structural ops on the data path became built-in layers (Keras numbers op names per
    # process, so they are found by type)
    types = [d.get("type") for d in spec["layers"].values()]
    assert types.count("Permute") == 2 and types.count("Reshape") == 4 and "Identity" in types  # 2 expand_dims
    assert types.count("Concatenate") == 1 and types.count("Softmax") == 1


def test_a_model_with_ops_trains_as_keras():
    keras.utils.set_random_seed(3)
    i = keras.Input((8,))
    x = KL.Dense(6, name="d1")(i)
    x = KL.ReLU(6.0)(x + 3.0) * (1.0 / 6.0) * x  # MobileNetV3's hard_swish, as it writes it
    y = KL.Dense(3, name="d2")(K.tanh(x) - K.mean(x, axis=-1, keepdims=True))
    km = keras.Model(i, [y, K.square(x) / 2.0])
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    rng = np.random.default_rng(1)
    xb = rng.normal(size=(5, 8)).astype("float32")
    yb = [rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 6)).astype("float32")]
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss=["mse", "mae"])
    m.compile(optimizer=nnspec.optimizers.SGD(0.1), loss=["mse", "mae"])
    want, got = km.train_on_batch(xb, yb), m.train_on_batch(xb, yb)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    _weights_after_step_match(m.get_weights(), km.get_weights())


def test_ops_inside_a_sub_model_called_twice():
    """MobileNetV3's pattern inside a nested model, which both inputs go through."""
    inner_in = keras.Input((5,))
    h = KL.Dense(5, name="inner_dense")(inner_in)
    inner = keras.Model(inner_in, KL.ReLU(6.0)(h + 3.0) * (1.0 / 6.0), name="inner")
    a, b = keras.Input((5,)), keras.Input((5,))
    km = keras.Model([a, b], KL.Dense(2)(inner(a) - inner(b) * 2.0))
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params()
    m.set_weights(km.get_weights())
    x = [np.random.default_rng(s).normal(size=(4, 5)).astype("float32") for s in (2, 3)]
    np.testing.assert_allclose(m.predict(x), km.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # the declarations of both models are numbered together: the outer x * 2.0 is not the inner's
    # multiplication by 1/6
    calls = {k: v["call"] for k, v in m.get_config()["custom_layers"].items()}
    assert calls["OpMultiply"] == "multiply(inputs, 0.16666666666666666)"
    assert calls["OpMultiply2"] == "multiply(inputs, 2.0)"
    assert len(set(calls.values())) == len(calls) == 4


def test_the_builders_operators_and_ops_compute_what_numpy_does():
    i = nnspec.Input((4,))
    x = layers.Dense(4, kernel_initializer="identity", bias_initializer="zeros")(i)
    y = layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    z = ops.mean(x, axis=-1, keepdims=True) - y
    w = -(abs(z) ** 2) + ops.tanh(z) / 2.0 + 1.0 / (z * z + 1.0)
    m = nnspec.Model(i, [y, w])
    v = np.random.default_rng(4).normal(size=(3, 4)).astype("float32") * 4
    yy = np.minimum(np.maximum(v + 3.0, 0.0), 6.0) * (1.0 / 6.0)
    zz = v.mean(-1, keepdims=True) - yy
    ww = -(np.abs(zz) ** 2) + np.tanh(zz) / 2.0 + 1.0 / (zz * zz + 1.0)
    got = m.predict(v)
    np.testing.assert_allclose(got[0], yy, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[1], ww, rtol=1e-5, atol=1e-6)
    # the file holds the ops as custom layers and loads without this code
    again = nnspec.model_from_json(m.to_json())
    np.testing.assert_allclose(again.predict(v)[1], got[1], rtol=0, atol=0)
    assert [r["type"] for r in m.get_config()["layers"].values()].count("Dense") == 1


def test_the_builders_file_equals_kerass_reading_of_the_same_code():
    def build(lib, L, o):
        i = lib.Input((6,))
        x = L.Dense(3, name="d")(i)
        return lib.Model(i, L.Dense(2, name="e")(o.sigmoid(x) * x - x / 4.0))

    km = build(keras, KL, K)
    nm = build(nnspec, layers, ops)
    nm.set_weights(km.get_weights())
    x = np.random.default_rng(5).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(nm.predict(x), km.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    read = nnspec.model_from_json(km.to_json())
    # the same layers (names numbered by each library's own counters, declarations by this
    # process's earlier models)
    kinds = lambda m: [(re.sub(r"_\d+$", "", layer.name), layer.class_name.rstrip("0123456789"))
                       for layer in m.layers]  # fmt: skip
    assert kinds(read) == kinds(nm)
    assert [k for _, k in kinds(nm)] == ["InputLayer", "Dense", "OpSigmoid", "OpMultiply", "OpTrueDivide",
                                         "OpSubtract", "Dense"]  # fmt: skip


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x: K.stack([x, x], axis=1), "ops.stack"),
        (lambda x: K.reshape(x, (3, 2, 2)), "fixing the batch size"),
        (lambda x: K.leaky_relu(x, 0.1), "negative_slope=0.1"),
        (lambda x: K.transpose(x), "moving the batch axis"),
        (lambda x: K.sum(x), "reduces every axis"),
        (lambda x: K.cumsum(x, axis=1), "'Cumsum'"),
    ],
)
def test_ops_nnspec_cannot_read_are_one_clear_error(make, message):
    x = keras.Input((4,))
    km = keras.Model(x, make(KL.Dense(4)(x)))
    with pytest.raises(KerasConfigError, match=message) as e:
        nnspec.model_from_json(km.to_json())
    assert "keras.ops call" in str(e.value)


def test_masks_keras_records_as_ops_still_come_from_the_graph():
    """An Embedding's mask (NotEqual, an op) is left out; the data path's op is read."""
    t = keras.Input((5,), dtype="int32")
    e = KL.Embedding(10, 4, mask_zero=True)(t)
    km = keras.Model(t, KL.LSTM(3)(e * 2.0))
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    ids = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7]], dtype="int32")
    np.testing.assert_allclose(m.predict(ids), km.predict(ids, verbose=0), rtol=1e-5, atol=1e-6)


def test_convnexts_layer_scale_is_read_as_a_custom_layer():
    """keras.applications.convnext's own LayerScale (x * gamma): ConvNeXt's blocks end with it."""
    from keras.src.applications.convnext import LayerScale

    i = keras.Input((4, 4, 6))
    x = KL.Dense(6, name="pointwise")(i)
    km = keras.Model(i, i + LayerScale(1e-2, 6, name="scale")(x))  # ConvNeXt's residual branch
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params() == 42 + 6
    spec = m.get_config()
    assert spec["layers"]["scale"] == {"type": "LayerScale", "projection_dim": 6, "trainable": True, "dtype": "float32"}
    # Keras's initial gamma, from the declaration's constant initializer
    np.testing.assert_array_equal(m.get_layer("scale").get_weights()[0], np.full(6, 1e-2, np.float32))
    km.get_layer("scale").set_weights([np.linspace(-1, 1, 6).astype("float32")])
    m.set_weights(km.get_weights())
    v = np.random.default_rng(6).normal(size=(2, 4, 4, 6)).astype("float32")
    np.testing.assert_allclose(m.predict(v), km.predict(v, verbose=0), rtol=1e-5, atol=1e-6)


def test_indexing_reads_and_trains_as_keras():
    """x[..., 0], x[:, 1:3], x[:, -1]...: Keras's GetItem becomes Reshape and Cropping2D layers
    (a Reshape to (before, axis, after), a crop of that axis, a Reshape dropping picked axes)."""
    keras.utils.set_random_seed(4)
    i = keras.Input((5, 6, 7))
    x = KL.Dense(7, name="d")(i)
    outs = [x[..., 0], x[:, :4, -2:], x[:, 2, :, 3], KL.Dense(2, name="e")(KL.Flatten()(x[:, 1:3, :, :2]))]
    km = keras.Model(i, outs)
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params()
    m.set_weights(km.get_weights())
    v = np.random.default_rng(8).normal(size=(3, 5, 6, 7)).astype("float32")
    for k, (a, b) in enumerate(zip(m.predict(v), km.predict(v, verbose=0))):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=f"output {k}")
    ys = [np.random.default_rng(9).normal(size=(3, *o.shape[1:])).astype("float32") for o in km.outputs]
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    m.compile(optimizer=nnspec.optimizers.SGD(0.1), loss="mse")
    np.testing.assert_allclose(m.train_on_batch(v, ys), km.train_on_batch(v, ys), rtol=1e-5)
    _weights_after_step_match(m.get_weights(), km.get_weights())
    # the builder indexes the same way; a KerasTensor stays not iterable
    t = nnspec.Input((5, 6, 7))
    assert [tuple(u.shape) for u in (t[..., 0], t[:, 1:3], t[:, 2, :, 3])] == [(None, 5, 6), (None, 2, 6, 7), (None, 6)]
    with pytest.raises(TypeError, match="not iterable"):
        list(t)


@pytest.mark.parametrize(
    "key, message",
    [((slice(None), slice(None, None, 2)), "step 2"), (0, "batch axis"), ((slice(None), None), "expand_dims"),
     ((slice(None), 9), "indexes 9 on an axis of size 5"), ((slice(None), 0, 0, 0), "one value per sample")],
)
def test_indexing_nnspec_cannot_read_is_one_clear_error(key, message):
    with pytest.raises(ValueError, match=message):
        nnspec.Input((5, 6, 7))[key]
