"""Keras's eager programming model: layers called on arrays, and Sequential models built by the
first data they see (the Sequential guide, the RNN guide's cross-batch statefulness).

Each case is checked against Keras 3 on its PyTorch backend doing the same thing, with nnspec's
weights copied into it where the values depend on them.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # a test extra (pip install ".[test]"), after KERAS_BACKEND is set

import nnspec
from nnspec import layers
from nnspec.specs.errors import InputError

RNG = np.random.default_rng(11)


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _summary(m) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        m.summary()
    return buf.getvalue().strip()


def _batch_shape(km) -> tuple:
    return tuple(km.get_config()["layers"][0]["config"]["batch_shape"])


# ----------------------------------------------------------------------------- deferred build


def _pair(names=("layer1", "layer2", "layer3")):
    units = (2, 3, 4)
    acts = ("relu", "relu", None)
    ours = nnspec.Sequential([layers.Dense(u, activation=a, name=n) for u, a, n in zip(units, acts, names)],
                             name="seq")  # fmt: skip
    theirs = keras.Sequential([keras.layers.Dense(u, activation=a, name=n) for u, a, n in zip(units, acts, names)],
                              name="seq")  # fmt: skip
    return ours, theirs


def test_unbuilt_sequential_has_no_weights_and_prints_keras_summary():
    ours, theirs = _pair()
    ours.add(layers.Dropout(0.1, name="drop"))
    theirs.add(keras.layers.Dropout(0.1, name="drop"))
    assert ours.weights == [] and theirs.weights == []
    assert ours.get_weights() == [] and ours.trainable_weights == []
    assert _summary(ours) == _summary(theirs)  # "?" shapes, "0 (unbuilt)" for the weighted layers
    with pytest.raises(ValueError, match="not built yet"):
        ours.count_params()


def test_sequential_called_on_data_builds_as_keras():
    """The Sequential guide: ``model(x)`` builds the model with the batch's shape (the batch size
    included, Keras's ``batch_shape``); then summary, weights and outputs are Keras's."""
    ours, theirs = _pair()
    x = RNG.normal(size=(3, 3)).astype(np.float32)
    y = ours(x)
    theirs(x)
    assert _summary(ours) == _summary(theirs)
    assert ours.get_config()["inputs"] == {
        ours.inputs[0].name: {"shape": [3], "dtype": "float32", "batch_size": 3}
    }
    assert _batch_shape(theirs) == (3, 3)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(y, _np(theirs(x)), rtol=1e-5, atol=1e-6)
    more = RNG.normal(size=(5, 3)).astype(np.float32)  # another batch size still runs, as in Keras
    np.testing.assert_allclose(ours.predict(more), theirs.predict(more, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["fit", "predict", "evaluate", "train_on_batch", "predict_on_batch", "build"])
def test_the_first_data_sets_the_input_shape_as_in_keras(how):
    """Which batch size the input gets: fit/evaluate/predict take their first batch's (the
    batch size, or fewer samples), the *_on_batch calls the whole batch; build() what it is given."""
    ours, theirs = _pair()
    x = RNG.normal(size=(40, 3)).astype(np.float32)
    y = RNG.normal(size=(40, 4)).astype(np.float32)
    for m in (ours, theirs):
        m.compile(optimizer="sgd", loss="mse")  # before the model is built, as Keras allows
        if how == "fit":
            m.fit(x, y, batch_size=16, epochs=1, verbose=0)
        elif how == "predict":
            m.predict(x, verbose=0)
        elif how == "evaluate":
            m.evaluate(x[:20], y[:20], verbose=0)
        elif how == "train_on_batch":
            m.train_on_batch(x[:10], y[:10])
        elif how == "predict_on_batch":
            m.predict_on_batch(x[:7])
        else:
            m.build((None, 3))
    cfg = next(iter(ours.get_config()["inputs"].values()))
    assert (cfg.get("batch_size"), *cfg["shape"]) == _batch_shape(theirs)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]


def test_compile_then_fit_builds_and_trains_as_keras():
    ours, theirs = _pair()
    x = RNG.normal(size=(16, 3)).astype(np.float32)
    y = RNG.normal(size=(16, 4)).astype(np.float32)
    ours.build((None, 3))
    theirs.build((None, 3))
    theirs.set_weights(ours.get_weights())
    fresh, kfresh = _pair(("a", "b", "c"))
    for m, k in ((ours, theirs), (fresh, kfresh)):
        m.compile(optimizer="sgd", loss="mse")
        k.compile(optimizer="sgd", loss="mse")
    ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, _np(b), rtol=1e-4, atol=1e-6)
    fresh.fit(x, y, batch_size=8, epochs=1, verbose=0)  # compiled unbuilt, built by fit
    assert fresh.count_params() == 8 + 9 + 16


def test_layers_added_after_a_deferred_build_extend_the_model():
    ours = nnspec.Sequential([layers.Dense(2)])
    ours.add(layers.Dense(3))
    ours.build((None, 4))
    ours.add(layers.Dense(5))
    assert [w.shape for w in ours.get_weights()] == [(4, 2), (2,), (2, 3), (3,), (3, 5), (5,)]


def test_deferred_build_errors():
    m = nnspec.Sequential([layers.Dense(2)])
    with pytest.raises(ValueError, match=r"batch first, e.g. \(None, 4\)"):
        m.build((4,))
    with pytest.raises(InputError, match="needs a batch axis"):
        m(np.ones(3, np.float32))
    m.build((None, 4))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(None, 4\); build\(\) got \(None, 5\)"):
        m.build((None, 5))
    with pytest.raises(ValueError, match="no layers"):
        nnspec.Sequential().build((None, 4))


# ----------------------------------------------------------------------------- eager layer calls


def test_a_layer_called_on_an_array_is_built_and_computes():
    """The Sequential guide: ``layer.weights`` is empty until the layer is called on data; then
    it has Keras's weights and computes Keras's values (nested Python lists read as one array)."""
    d = layers.Dense(3)
    assert d.weights == []
    x = RNG.normal(size=(1, 4)).astype(np.float32)
    y = d(x)
    kernel, bias = d.get_weights()
    assert (kernel.shape, bias.shape) == ((4, 3), (3,))
    np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d(x.tolist()), y, rtol=1e-6)  # a list of lists: one input
    np.testing.assert_allclose(d(x.astype(np.float64)), y, rtol=1e-6)  # computed in float32
    assert d(np.ones((6, 4))).shape == (6, 3)  # another batch size: the same weights
    with pytest.raises(ValueError, match=r"has weights \[\(4, 3\), \(3,\)\] from its first call"):
        d(np.ones((2, 5), np.float32))
    with pytest.raises(TypeError, match="training=True is not supported"):
        layers.Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(layers.Dropout(0.5)(x, training=False), x)  # inference: the identity
    seq = nnspec.Sequential([nnspec.Input((4,)), layers.Dropout(0.5)])
    with pytest.raises(TypeError, match="training=True is not supported"):
        seq(x, training=True)  # a model too: not silently in inference mode
    assert d.calls == []  # an eager call adds no node (layer.output stays undefined, as in Keras)


@pytest.mark.parametrize(
    "case", ["add", "concatenate", "mha", "embedding", "gru-initial-state", "bidirectional"]
)
def test_eager_calls_match_keras(case):
    def f(*shape):
        return RNG.normal(size=shape).astype(np.float32)

    if case == "add":
        ours, theirs, args, kw = layers.Add(), keras.layers.Add(), ([f(2, 3), f(2, 3)],), {}
    elif case == "concatenate":
        ours, theirs, args, kw = (
            layers.Concatenate(axis=1),
            keras.layers.Concatenate(axis=1),
            ([f(2, 3), f(2, 2)],),
            {},
        )
    elif case == "mha":  # the query and value as separate arguments
        ours, theirs = layers.MultiHeadAttention(2, 4), keras.layers.MultiHeadAttention(2, 4)
        args, kw = (f(2, 5, 8), f(2, 6, 8)), {}
    elif case == "embedding":  # int64 ids from NumPy, a mask computed but not returned
        ours, theirs = layers.Embedding(10, 4, mask_zero=True), keras.layers.Embedding(10, 4, mask_zero=True)
        args, kw = (np.array([[1, 2, 0], [9, 0, 0]]),), {}
    elif case == "gru-initial-state":
        ours, theirs = layers.GRU(3), keras.layers.GRU(3)
        args, kw = (f(2, 4, 2),), {"initial_state": [f(2, 3)]}
    else:
        ours = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum")
        theirs = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), merge_mode="sum")
        args, kw = (f(2, 4, 2),), {}
    got = ours(*args, **kw)
    theirs(*args, **kw)  # builds Keras's layer
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(got, _np(theirs(*args, **kw)), rtol=1e-5, atol=1e-6)


def test_a_stateful_layer_called_on_arrays_carries_its_states():
    """The RNN guide's cross-batch statefulness: ``lstm(s)`` for sub-sequences in turn continues
    from the last states; ``reset_states()`` starts again from zeros."""
    paragraphs = [RNG.normal(size=(4, 6, 5)).astype(np.float32) for _ in range(3)]
    ours = layers.LSTM(8, stateful=True)
    theirs = keras.layers.LSTM(8, stateful=True)
    got = [ours(p) for p in paragraphs]
    theirs(paragraphs[0])
    theirs.set_weights(ours.get_weights())
    theirs.reset_states()
    want = [_np(theirs(p)) for p in paragraphs]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got[0], got[1])
    # the guide passes the kept states on: another layer starts from them
    existing = ours.states
    for a, b in zip(existing, theirs.states):
        np.testing.assert_allclose(a, _np(b), rtol=1e-4, atol=1e-6)
    fresh, kfresh = layers.LSTM(8), keras.layers.LSTM(8)
    got = fresh(paragraphs[0], initial_state=existing)
    kfresh(paragraphs[0], initial_state=[_np(s) for s in theirs.states])
    kfresh.set_weights(fresh.get_weights())
    want = kfresh(paragraphs[0], initial_state=[_np(s) for s in theirs.states])
    np.testing.assert_allclose(got, _np(want), rtol=1e-4, atol=1e-6)
    ours.reset_states()
    theirs.reset_states()
    assert all(not s.any() for s in ours.states)
    np.testing.assert_allclose(ours(paragraphs[2]), _np(theirs(paragraphs[2])), rtol=1e-4, atol=1e-6)


def test_an_eagerly_built_layer_shares_its_weights_with_the_models_built_from_it():
    d = layers.Dense(3)
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    first = d(x)
    inp = nnspec.Input((5,))
    m = nnspec.Model(inp, d(inp))
    np.testing.assert_allclose(m.predict(x), first, rtol=1e-6)  # the model starts from the layer's weights
    m.compile(optimizer="sgd", loss="mse")
    m.fit(x, np.zeros((4, 3), np.float32), epochs=3, verbose=0)
    after = d(x)  # the layer's weights are the model's, trained
    np.testing.assert_allclose(after, m.predict(x), rtol=1e-6)
    assert not np.allclose(after, first)


def test_a_custom_python_layer_called_on_an_array():
    class Linear(nnspec.layers.Layer):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")

        def call(self, inputs):
            return nnspec.ops.matmul(inputs, self.w)

    lin = Linear()
    x = RNG.normal(size=(2, 2)).astype(np.float32)
    y = lin(x)
    (w,) = lin.weights
    assert w.shape == (2, 3)
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda L: L.Dense(5), (None, 7)),
        (lambda L: L.Conv2D(4, 3, strides=2, padding="same"), (None, 9, 9, 3)),
        (lambda L: L.LSTM(6, return_sequences=True, return_state=True), (None, 8, 3)),
        (lambda L: L.Concatenate(axis=1), [(None, 2, 4), (None, 3, 4)]),
        (lambda L: L.Embedding(10, 3), (2, 5)),
    ],
    ids=["dense", "conv2d", "lstm-states", "concatenate", "embedding"],
)
def test_compute_output_shape_and_built_are_keras(make, shape):
    ours, theirs = make(layers), make(keras.layers)
    want = theirs.compute_output_shape(shape)
    norm = (
        [tuple(s) for s in want]
        if isinstance(want, (list, tuple)) and isinstance(want[0], (list, tuple))
        else tuple(want)
    )
    assert ours.compute_output_shape(shape) == norm
    assert not ours.built  # until called (test_a_layers_weights_by_trainability)


def test_a_layers_weights_by_trainability():
    d = layers.Dense(2)
    assert (d.built, d.trainable_weights, d.non_trainable_weights) == (False, [], [])
    d(np.ones((1, 3), np.float32))
    assert d.built and d.count_params() == 8
    assert [w.shape for w in d.trainable_weights] == [(3, 2), (2,)] and d.non_trainable_weights == []
    bn = layers.BatchNormalization()
    bn(np.ones((2, 3), np.float32))
    assert [w.shape for w in bn.trainable_weights] == [(3,), (3,)]  # gamma, beta
    assert [w.shape for w in bn.non_trainable_weights] == [(3,), (3,)]  # the moving statistics


def test_model_input_output_and_output_names_are_keras():
    """``Model(inputs=m.input, outputs=m.layers[-2].output)``, Keras's feature-extractor idiom,
    and the other model attributes Keras code reads."""

    def build(lib):
        L = lib.layers
        x = lib.Input((4,), name="x")
        h = L.Dense(3, name="h")(x)
        return x, h, lib.Model(x, {"b": L.Dense(1, name="e")(x), "a": L.Dense(2, name="d")(h)})

    _, _, theirs = build(keras)
    x, h, ours = build(nnspec)
    assert ours.input is x and ours.output_names == list(theirs.output_names) == ["d", "e"]
    assert isinstance(ours.output, dict) and sorted(ours.output) == sorted(theirs.output) == ["a", "b"]
    features = nnspec.Model(inputs=ours.input, outputs=ours.get_layer("h").output)
    assert features.output is features.outputs[0] and features.output_shape == (None, 3)
    assert len(ours.variables) == len(theirs.variables) == 6
    assert len(ours.trainable_variables) == 6 and ours.non_trainable_variables == []
