"""Callbacks, checkpoints and the progress bar, driven by a tiny fake model and a fake fit loop;
where Keras has the same callback, both are fed the same logs and must act alike."""

from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest

from nnspec.runtime import callbacks as C
from nnspec.runtime import optimizers as O
from nnspec.runtime.progress import Progbar, ProgbarLogger
from nnspec.runtime.weights import read_safetensors, write_safetensors


class FakeModel:
    """What callbacks use of a model: weights, stop_training, optimizer, save_weights, metrics."""

    def __init__(self, optimizer=None) -> None:
        rng = np.random.default_rng(0)
        self.w = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
        self.stop_training = False
        self.optimizer = optimizer if optimizer is not None else O.SGD(learning_rate=0.1)
        self.name = "fake"
        self.metrics = []

    def weight_names(self):
        return ["dense/kernel", "dense/bias"]

    def get_weights(self):
        return [a.copy() for a in self.w]

    def set_weights(self, weights):
        self.w = [np.array(a, np.float32) for a in weights]

    def save_weights(self, path):
        write_safetensors(path, dict(zip(self.weight_names(), self.w)), {"format": "nnspec-weights/1"})


def fit(
    model, callbacks, val_losses=None, epoch_logs=None, steps=2, verbose=0, stream=None, batch_losses=None
):
    """A fit loop with the CallbackList contract; the weights move by +1 each epoch."""
    n = len(epoch_logs if epoch_logs is not None else val_losses)
    cbs = C.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model, stream=stream,
                         verbose=verbose, epochs=n, steps=steps)  # fmt: skip
    model.stop_training = False
    cbs.on_train_begin()
    logs = {}
    for epoch in range(n):
        cbs.on_epoch_begin(epoch)
        for b in range(steps):
            cbs.on_train_batch_begin(b)
            loss = batch_losses[epoch * steps + b] if batch_losses else 1.0 / (epoch + 1)
            cbs.on_train_batch_end(b, {"loss": np.float32(loss)})
            if model.stop_training:
                break
        model.set_weights([w + 1 for w in model.get_weights()])
        logs = (
            dict(epoch_logs[epoch])
            if epoch_logs is not None
            else {"loss": 1.0, "val_loss": val_losses[epoch]}
        )
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return model.history


class KerasFakeModel(FakeModel):
    """The same model for Keras's callbacks (Keras reads ``optimizer.learning_rate`` the same way)."""


def _drive_keras(callback, model, val_losses=None, epoch_logs=None):
    n = len(epoch_logs if epoch_logs is not None else val_losses)
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    for epoch in range(n):
        callback.on_epoch_begin(epoch)
        model.set_weights([w + 1 for w in model.get_weights()])
        logs = (
            dict(epoch_logs[epoch])
            if epoch_logs is not None
            else {"loss": 1.0, "val_loss": val_losses[epoch]}
        )
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback.on_train_end()


EARLY_CASES = [
    ([1.0, 0.9, 0.95, 0.97, 0.99, 0.8], {"patience": 2}),
    ([1.0, 0.9, 0.95, 0.97, 0.99, 0.8], {"patience": 2, "restore_best_weights": True}),
    ([1.0, 0.95, 0.9, 0.86, 0.85, 0.845], {"patience": 1, "min_delta": 0.03}),
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], {"patience": 1, "baseline": 0.65}),
    ([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], {"patience": 0}),
    ([1.0, 1.1, 0.5, 1.3, 1.4, 1.5], {"patience": 1, "start_from_epoch": 2, "restore_best_weights": True}),
    ([0.5, 0.6, 0.7, 0.6, 0.5, 0.4], {"patience": 2, "mode": "max", "restore_best_weights": True}),
    (
        [1.0, 0.9, 0.8, 0.85, 0.7, 0.6],
        {"patience": 3, "restore_best_weights": True},
    ),  # never stops: still restores
]


@pytest.mark.keras
@pytest.mark.parametrize("case", EARLY_CASES, ids=lambda c: str(c[1]))
def test_early_stopping_matches_keras(case):
    import keras

    losses, kw = case
    ours_model, theirs_model = FakeModel(), KerasFakeModel()
    ours = C.EarlyStopping(**kw)
    fit(ours_model, [ours], losses)
    theirs = keras.callbacks.EarlyStopping(**kw)
    _drive_keras(theirs, theirs_model, losses)
    assert ours.stopped_epoch == theirs.stopped_epoch
    assert ours.best == theirs.best and ours.wait == theirs.wait and ours.best_epoch == theirs.best_epoch
    for a, b in zip(ours_model.get_weights(), theirs_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(ours_model.history.epoch) == (ours.stopped_epoch + 1 if ours.stopped_epoch else len(losses))


@pytest.mark.keras
@pytest.mark.parametrize("kw", [{"patience": 1}, {"patience": 2, "factor": 0.5, "cooldown": 1},
                                {"patience": 1, "min_lr": 0.02, "factor": 0.5}, {"patience": 1, "min_delta": 0.2}])  # fmt: skip
def test_reduce_lr_on_plateau_matches_keras(kw):
    import keras

    losses = [1.0, 0.9, 0.92, 0.95, 0.97, 0.91, 0.99, 1.0, 1.01, 0.5, 0.6]
    ours_model = FakeModel(O.SGD(learning_rate=0.1))
    ours = C.ReduceLROnPlateau(**kw)
    history = fit(ours_model, [ours], losses)
    theirs_model = KerasFakeModel(O.SGD(learning_rate=0.1))
    theirs = keras.callbacks.ReduceLROnPlateau(**kw)
    rates = []
    theirs.set_model(theirs_model)
    theirs.on_train_begin()
    for epoch, v in enumerate(losses):
        logs = {"loss": 1.0, "val_loss": v}
        theirs.on_epoch_end(epoch, logs)
        rates.append(logs["learning_rate"])
    assert history.history["learning_rate"] == rates  # the rate the epoch ran with, written into the logs
    assert ours_model.optimizer.learning_rate == theirs_model.optimizer.learning_rate


def test_history_and_callback_list_order():
    seen = []
    lam = C.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(("epoch", epoch, dict(logs))),
                           on_batch_end=lambda batch, logs: seen.append(("batch", batch)))  # fmt: skip
    model = FakeModel()
    history = fit(model, [lam], epoch_logs=[{"loss": 0.5, "acc": 0.7}, {"loss": 0.4, "acc": 0.8}])
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [0.5, 0.4], "acc": [0.7, 0.8]}
    assert seen[:3] == [("batch", 0), ("batch", 1), ("epoch", 0, {"loss": 0.5, "acc": 0.7})]
    cbs = C.CallbackList([lam], add_history=True, add_progbar=True, model=model)
    assert [type(c).__name__ for c in cbs.callbacks] == ["LambdaCallback", "History", "ProgbarLogger"]
    with pytest.raises(ValueError, match="unknown hook"):
        C.LambdaCallback(on_epoch_ending=print)


def test_terminate_on_nan():
    model = FakeModel()
    term = C.TerminateOnNaN()
    history = fit(model, [term], val_losses=[1, 1, 1], batch_losses=[1.0, 2.0, float("nan"), 3.0, 4.0, 5.0])
    assert model.stop_training and history.epoch == [0, 1]
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        fit(FakeModel(), [C.TerminateOnNaN(raise_error=True)], val_losses=[1], batch_losses=[math.inf, 1.0])


@pytest.mark.keras
def test_csv_logger_matches_keras(tmp_path):
    import keras

    logs = [{"loss": 0.5, "acc": 0.25}, {"loss": 0.25, "acc": 0.5, "extra": [1, 2]}]
    ours_path, theirs_path = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    for sep, append in ((",", False), (";", True)):
        fit(FakeModel(), [C.CSVLogger(ours_path, separator=sep, append=append)], epoch_logs=logs)
        _drive_keras(keras.callbacks.CSVLogger(str(theirs_path), separator=sep, append=append), KerasFakeModel(),
                     epoch_logs=logs)  # fmt: skip
        assert ours_path.read_text() == theirs_path.read_text()
    assert ours_path.read_text().splitlines()[0] == "epoch,acc,loss,val_acc,val_loss"


def test_checkpoint_every_epoch_with_formatted_names(tmp_path):
    model = FakeModel()
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.safetensors")
    fit(model, [C.ModelCheckpoint(pattern)], [0.5, 0.25])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01-0.50.safetensors", "ckpt-02-0.25.safetensors"]
    meta = C.read_safetensors_metadata(tmp_path / "ckpt-02-0.25.safetensors")
    assert meta["format"] == C.CHECKPOINT_FORMAT
    with pytest.raises(KeyError, match="Failed to format"):
        fit(FakeModel(), [C.ModelCheckpoint(str(tmp_path / "{val_acc}.st"))], [0.5])


def test_checkpoint_best_only_and_weights_only(tmp_path):
    model = FakeModel()
    path = tmp_path / "best.weights.safetensors"
    cb = C.ModelCheckpoint(path, save_best_only=True, save_weights_only=True)
    saved = []
    lam = C.LambdaCallback(
        on_epoch_end=lambda e, logs: saved.append(read_safetensors(path)["dense/bias"].copy())
    )
    fit(model, [cb, lam], [1.0, 0.5, 0.7, 0.4, 0.9])
    # the file holds the weights of epochs 0, 1, 1, 3, 3 (weights are epoch + 1 above the start)
    start = FakeModel().w[1]
    for got, epoch in zip(saved, [0, 1, 1, 3, 3]):
        np.testing.assert_array_equal(got, start + epoch + 1)
    assert cb.best == 0.4
    maxed = C.ModelCheckpoint(tmp_path / "acc.st", monitor="val_accuracy", save_best_only=True)
    fit(
        FakeModel(), [maxed], epoch_logs=[{"val_accuracy": 0.5}, {"val_accuracy": 0.7}, {"val_accuracy": 0.6}]
    )
    assert maxed.best == 0.7  # "auto" reads the metric's direction: accuracy goes up


def test_checkpoint_save_freq_in_batches(tmp_path):
    cb = C.ModelCheckpoint(str(tmp_path / "b{epoch}-{batch}.st"), save_freq=3)
    fit(FakeModel(), [cb], [1.0, 1.0], steps=4)
    assert sorted(os.listdir(tmp_path)) == ["b1-3.st", "b2-2.st"]


def _train(model, data, steps, callbacks=(), start=0):
    """A real little training loop: linear least squares, one optimizer step per batch."""
    x, y = data
    for step in range(start, steps):
        k, b = model.w
        pred = x @ k + b
        g = 2 * (pred - y) / len(x)
        grads = np.concatenate([(x.T @ g).ravel(), g.sum(0)]).astype(np.float32)
        tp = np.concatenate([k.ravel(), b])
        model.optimizer.apply(tp, grads, segments=[(0, 6), (6, 2)])
        model.w = [tp[:6].reshape(3, 2), tp[6:]]
        for cb in callbacks:
            cb(step)


@pytest.mark.parametrize("opt", ["adam", "nadam", {"type": "sgd", "momentum": 0.9, "nesterov": True},
                                 {"type": "rmsprop", "centered": True, "momentum": 0.5}])  # fmt: skip
def test_checkpoint_resumes_training_exactly(tmp_path, opt):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 2)).astype(np.float32)
    straight = FakeModel(O.get_optimizer(opt))
    _train(straight, data, 10)

    first = FakeModel(O.get_optimizer(opt))
    path = tmp_path / "resume.safetensors"
    _train(first, data, 6)
    first.optimizer.learning_rate = first.optimizer.learning_rate  # a rate set by hand survives too
    C.save_checkpoint(path, first, epoch=5, logs={"loss": np.float32(0.5)}, extra={"rng": [1, 2]})

    resumed = FakeModel(optimizer=None)
    resumed.optimizer = None
    record = C.load_checkpoint(path, resumed)
    resumed.optimizer = record["optimizer"]
    assert record["epoch"] == 5 and record["logs"] == {"loss": 0.5} and record["extra"] == {"rng": [1, 2]}
    assert resumed.optimizer.iterations == 6
    _train(resumed, data, 10, start=6)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    tensors = read_safetensors(path)
    assert set(tensors) == {
        "dense/kernel",
        "dense/bias",
        *(f"optimizer:{s}" for s in straight.optimizer.slot_names()),
    }


def test_checkpoint_errors(tmp_path):
    model = FakeModel()
    model.save_weights(tmp_path / "w.st")
    with pytest.raises(Exception, match="not an nnspec checkpoint"):
        C.load_checkpoint(tmp_path / "w.st", model)
    C.save_checkpoint(tmp_path / "c.st", FakeModel(O.Adam()))
    with pytest.raises(Exception, match="holds Adam state"):
        C.load_checkpoint(tmp_path / "c.st", FakeModel(O.SGD()))


def test_monitor_mode_auto_needs_a_direction():
    with pytest.raises(ValueError, match="mode='max'"):
        fit(FakeModel(), [C.EarlyStopping(monitor="val_zebra")], epoch_logs=[{"val_zebra": 1.0}])

    class Up:
        name, direction = "zebra", "up"

    model = FakeModel()
    model.metrics = [Up()]
    es = C.EarlyStopping(monitor="val_zebra", patience=0)
    fit(model, [es], epoch_logs=[{"val_zebra": 1.0}, {"val_zebra": 0.5}, {"val_zebra": 0.2}])
    assert es.stopped_epoch == 1  # lower is worse for a metric that goes up
    with pytest.warns(UserWarning, match="not available"):
        fit(FakeModel(), [C.EarlyStopping(monitor="val_loss")], epoch_logs=[{"loss": 1.0}])


# ------------------------------------------------------------------------------ progress


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_progbar_verbose_1_without_a_terminal_writes_one_line_per_epoch():
    out = io.StringIO()
    fit(FakeModel(), [], epoch_logs=[{"loss": 0.5, "acc": 0.25}, {"loss": 0.0001, "acc": 0.5}], steps=3,
        verbose=1, stream=out)  # fmt: skip
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert lines[1].startswith("3/3 " + "━" * 20 + " ") and "/step - loss: 0.5000 - acc: 0.2500" in lines[1]
    assert lines[3].endswith("- loss: 1.0000e-04 - acc: 0.5000")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_progbar_verbose_1_on_a_terminal_redraws_in_place():
    out = TTY()
    logger = ProgbarLogger(stream=out)
    logger.set_params({"verbose": 1, "epochs": 1, "steps": 4})
    logger.on_train_begin()
    logger.on_epoch_begin(0)
    for b in range(4):
        logger.progbar.interval = 0.0  # draw every update
        logger.on_train_batch_end(b, {"loss": 1.0 / (b + 1)})
    logger.on_epoch_end(0, {"loss": 0.25})
    text = out.getvalue()
    assert text.count("\r") >= 4 and text.endswith("\n") and "\x1b[32m" in text
    first = text.split("\r")[1]
    assert "1/4" in first and "loss: 1.0000" in first  # the running value, with an ETA
    assert "Epoch" not in text  # one epoch: no epoch header


def test_progbar_verbose_2_and_unknown_target():
    out = io.StringIO()
    fit(FakeModel(), [], epoch_logs=[{"loss": 0.5}], steps=12, verbose=2, stream=out)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("12/12 - ") and line.endswith("/step - loss: 0.5000")
    bar = Progbar(None, stream=io.StringIO(), verbose=1)
    bar.update(5, [("loss", 0.1)], finalize=True)
    assert bar.stream.getvalue().startswith("      5/Unknown")
