"""A model called as a layer shares its weights with the models that call it, both ways, as in
Keras (where they are the same variables): training or setting either is seen by the other,
whichever was built or used first. The functional guide's autoencoder is checked against Keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import nnspec
from nnspec import layers

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(21)


def _autoencoder(lib):
    """The functional guide's "all models are callable" autoencoder, small: an encoder model
    and a decoder model called on tensors inside a third."""
    L = lib.layers
    enc_in = lib.Input((12,), name="original")
    encoder = lib.Model(enc_in, L.Dense(3, activation="tanh", name="code")(L.Dense(6, activation="relu", name="e1")(enc_in)),
                        name="encoder")  # fmt: skip
    dec_in = lib.Input((3,), name="encoded")
    decoder = lib.Model(
        dec_in, L.Dense(12, name="d2")(L.Dense(6, activation="relu", name="d1")(dec_in)), name="decoder"
    )
    auto_in = lib.Input((12,), name="img")
    autoencoder = lib.Model(auto_in, decoder(encoder(auto_in)), name="autoencoder")
    return encoder, decoder, autoencoder


@pytest.mark.keras
def test_training_the_autoencoder_trains_the_encoder_as_in_keras():
    import keras

    keras.utils.set_random_seed(0)
    k_enc, _, k_auto = _autoencoder(keras)
    enc, dec, auto = _autoencoder(nnspec)
    k_auto.set_weights(auto.get_weights())
    x = RNG.normal(size=(32, 12)).astype(np.float32)
    for m, opt in ((auto, nnspec.optimizers.Adam(0.01)), (k_auto, keras.optimizers.Adam(0.01))):
        m.compile(optimizer=opt, loss="mse")
        m.fit(x, x, batch_size=8, epochs=2, shuffle=False, verbose=0)
    codes = enc.predict(x)  # the encoder object itself, after training the model around it
    np.testing.assert_allclose(codes, k_enc.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    for a, b in zip(enc.get_weights(), k_enc.get_weights()):
        np.testing.assert_allclose(a, keras.ops.convert_to_numpy(b), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dec.predict(codes), auto.predict(x), rtol=1e-5, atol=1e-6)


def test_setting_a_sub_models_weights_changes_the_model_around_it_and_back():
    enc, dec, auto = _autoencoder(nnspec)
    x = RNG.normal(size=(4, 12)).astype(np.float32)
    before = auto.predict(x)
    enc.set_weights([np.zeros_like(w) for w in enc.get_weights()])  # the codes become 0
    np.testing.assert_allclose(auto.predict(x), np.broadcast_to(dec.predict(np.zeros((1, 3), np.float32)), (4, 12)),
                               rtol=1e-6)  # fmt: skip
    assert not np.allclose(auto.predict(x), before)
    auto.get_layer("decoder").get_layer("d2").set_weights(
        [np.ones((6, 12), np.float32), np.zeros(12, np.float32)]
    )
    np.testing.assert_array_equal(dec.get_layer("d2").get_weights()[0], np.ones((6, 12), np.float32))
    weights = [RNG.normal(size=w.shape).astype(np.float32) for w in auto.get_weights()]
    auto.set_weights(weights)
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in enc.get_weights()]),
                                  np.concatenate([w.ravel() for w in weights[: len(enc.get_weights())]]))  # fmt: skip


def test_a_loaded_files_sub_model_computes_with_the_files_weights():
    """The video classifier's per-frame model, taken out of a loaded file: it computes what the
    file's model computes for each frame, whichever of the two is used first, and after the
    outer model trains."""
    for first in ("outer", "inner"):
        m = nnspec.load(ROOT / "specs" / "video_classifier.yaml", seed=3)
        frames = m.get_layer("per_frame").layer
        assert isinstance(frames, nnspec.Model)
        video = RNG.uniform(size=(2, 20, 784)).astype(np.float32)
        if first == "inner":
            per_frame = frames.predict(video.reshape(40, 784))
            whole = m.predict(video)
        else:
            whole = m.predict(video)
            per_frame = frames.predict(video.reshape(40, 784))
        np.testing.assert_allclose(per_frame.reshape(2, 20, 10), whole, rtol=1e-5, atol=1e-7)
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    m.train_on_batch(video, np.eye(10, dtype=np.float32)[RNG.integers(0, 10, (2, 20))])
    np.testing.assert_allclose(frames.predict(video.reshape(40, 784)).reshape(2, 20, 10), m.predict(video),
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    assert not np.allclose(m.predict(video), whole)


def test_freezing_a_sub_model_after_the_model_around_it_is_built():
    """Keras's transfer-learning idiom: ``base.trainable = False`` after the model is built
    freezes the base in that model too (its weight counts follow), and unfreezing undoes it."""
    base = nnspec.Sequential([nnspec.Input((4,)), layers.Dense(3, name="b1")], name="base")
    inp = nnspec.Input((4,))
    m = nnspec.Model(inp, layers.Dense(2, name="head")(base(inp)))
    assert [len(m.trainable_weights), len(m.non_trainable_weights)] == [4, 0]
    m.get_weights()  # the model's copy exists, then the base's changes: the freeze keeps the newest
    w = [RNG.normal(size=a.shape).astype(np.float32) for a in base.get_weights()]
    base.set_weights(w)
    base.trainable = False
    assert [len(m.trainable_weights), len(m.non_trainable_weights)] == [2, 2]
    for a, b in zip(m.non_trainable_weights, w):
        np.testing.assert_array_equal(a, b)
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    b0 = base.get_weights()
    m.compile(optimizer="sgd", loss="mse")
    m.train_on_batch(x, np.zeros((8, 2), np.float32))
    for a, b in zip(base.get_weights(), b0):
        np.testing.assert_array_equal(a, b)
    base.trainable = True
    assert [len(m.trainable_weights), len(m.non_trainable_weights)] == [4, 0]
    m.compile(optimizer="sgd", loss="mse")
    m.train_on_batch(x, np.zeros((8, 2), np.float32))
    assert not np.array_equal(base.get_weights()[0], b0[0])
