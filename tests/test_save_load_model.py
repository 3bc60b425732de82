"""``model.save`` and ``nnspec.models.load_model``, as Keras's: one file with the model, its
weights, its compile arguments and the optimizer's state, from which training resumes exactly;
ModelCheckpoint's files load the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec import layers
from nnspec.specs.errors import WeightsError

RNG = np.random.default_rng(5)
X = RNG.normal(size=(32, 4)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 32)]


def _classifier():
    inp = nnspec.Input((4,), name="x")
    h = layers.Dense(8, activation="relu", name="h")(inp)
    return nnspec.Model(inp, layers.Dense(3, activation="softmax", name="o")(h), name="clf")


@pytest.mark.parametrize(
    "loss",
    ["categorical_crossentropy", nnspec.losses.CategoricalCrossentropy(label_smoothing=0.1)],
    ids=["name", "object"],
)
def test_a_saved_model_loads_compiled_and_resumes_training_exactly(tmp_path, loss):
    m = _classifier()
    m.compile(optimizer=nnspec.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"])
    m.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    m.save(tmp_path / "clf.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["clf.keras"]  # one file, written atomically
    again = nnspec.models.load_model(tmp_path / "clf.keras")
    assert again.get_config() == m.get_config() and again.compiled
    np.testing.assert_array_equal(again.predict(X), m.predict(X))
    assert again.optimizer.iterations == m.optimizer.iterations == 8
    want = m.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0).history
    got = again.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0).history
    assert got == want  # the Adam moments came back too: the same step
    for a, b in zip(again.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    uncompiled = nnspec.models.load_model(tmp_path / "clf.keras", compile=False)
    assert not uncompiled.compiled


def test_checkpoint_files_load_as_models_and_weights_files_do_not(tmp_path):
    m = _classifier()
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    m.fit(
        X,
        Y,
        epochs=2,
        verbose=0,
        callbacks=[nnspec.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.keras"))],
    )
    second = nnspec.models.load_model(tmp_path / "ep2.keras")
    np.testing.assert_array_equal(second.predict(X), m.predict(X))
    m.save_weights(tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match="not a saved model"):
        nnspec.models.load_model(tmp_path / "w.safetensors")
    with pytest.raises(FileExistsError):
        m.save(tmp_path / "ep2.keras", overwrite=False)


def test_a_model_compiled_with_code_loads_uncompiled(tmp_path):
    """A Python loss function is code: the saved model keeps the architecture and the weights,
    and comes back uncompiled (compile it again), as a file never holds code."""
    m = _classifier()
    m.compile(
        optimizer="sgd",
        loss=lambda y_true, y_pred: nnspec.ops.mean(nnspec.ops.square(y_true - y_pred), axis=-1),
    )
    m.save(Path(tmp_path) / "m.keras")
    again = nnspec.models.load_model(Path(tmp_path) / "m.keras")
    assert not again.compiled
    np.testing.assert_array_equal(again.predict(X), m.predict(X))
