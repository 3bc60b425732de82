"""Training callbacks with Keras 3 behaviour, and checkpoint files that resume training exactly.

Mirrors ``keras/src/callbacks``: :class:`Callback` (Keras's hooks; ``on_train_batch_*`` call
``on_batch_*`` by default), :class:`CallbackList` (``fit`` appends a :class:`History` and, when
``verbose``, a :class:`~nnspec.runtime.progress.ProgbarLogger` after the user's callbacks),
:class:`History`, :class:`EarlyStopping`, :class:`ModelCheckpoint`, :class:`ReduceLROnPlateau`,
:class:`TerminateOnNaN`, :class:`CSVLogger`, :class:`LambdaCallback`.

How the fit loop calls us (the contract, kept simple and explicit):

- ``callbacks = CallbackList(user_callbacks, add_history=True, add_progbar=verbose != 0,
  model=model, verbose=verbose, epochs=epochs, steps=steps_per_epoch)``;
- ``on_train_begin()``; per epoch ``on_epoch_begin(epoch)``, per batch
  ``on_train_batch_begin(i)`` / ``on_train_batch_end(i, logs)`` with ``logs`` the running means
  of the epoch (``{"loss": ..., "accuracy": ...}``, Python floats), then validation (the test
  hooks), then ``on_epoch_end(epoch, logs)`` with ``val_*`` entries added; the loop stops after
  an epoch (or a batch) when ``model.stop_training`` is true; ``on_train_end(logs)``.
- The model object exposes ``get_weights()``/``set_weights()``, ``stop_training``,
  ``optimizer`` (an :class:`~nnspec.runtime.optimizers.Optimizer`), ``save_weights(path)``,
  optionally ``metrics`` (objects with ``name`` and ``direction``, which ``mode="auto"`` reads)
  and the weight names, from ``model.plan().params`` (``nnspec.Model``) or ``weight_names()``.

Keras details kept: a monitored value improves when ``value - min_delta`` beats the best (the
sign of ``min_delta`` follows the mode); ``mode="auto"`` minimizes losses and reads the metric's
direction, and fails when it cannot tell; EarlyStopping counts patience from ``start_from_epoch``,
never stops after the first epoch (``epoch > 0``), resets the wait with a ``baseline`` only on
beating it, and with ``restore_best_weights`` restores the best weights at the end of training
*whether or not it stopped early* (Keras 3); ReduceLROnPlateau writes ``learning_rate`` into the
epoch's logs (so History records it) and only reduces while ``lr > min_lr``; ModelCheckpoint
formats ``filepath`` with ``epoch`` (1-based) and the logs (``{epoch:02d}-{val_loss:.2f}``) and
saves every epoch, every ``save_freq`` batches, or only on improvement; CSVLogger writes the
sorted keys, adding ``val_`` columns when the first epoch has none.

Checkpoint files (ModelCheckpoint with ``save_weights_only=False``, :func:`save_checkpoint`,
:func:`load_checkpoint`) are one safetensors file written atomically: the model's weights under
the names ``save_weights`` uses (``<layer>/<weight>``), each optimizer slot as a flat tensor
``optimizer:<slot>`` (a name no layer can have), and a ``__metadata__`` entry ``checkpoint``
holding JSON: epoch, logs, the weight names in order, and the optimizer's class, config,
iterations, learning rate and scalar state (exact in JSON). ``save_weights_only=True`` writes the
plain weights file of ``model.save_weights``.
"""

from __future__ import annotations

import collections.abc
import csv
import json
import os
import struct
import sys
import warnings

import numpy as np

CHECKPOINT_FORMAT = "nnspec-checkpoint/1"
OPTIMIZER_PREFIX = "optimizer:"


class Callback:
    """Base class: every hook does nothing; ``model`` and ``params`` are set by the fit loop."""

    def __init__(self) -> None:
        self.params: dict | None = None
        self.model = None

    def set_params(self, params) -> None:
        self.params = params

    def set_model(self, model) -> None:
        self.model = model

    def on_batch_begin(self, batch, logs=None) -> None:
        pass

    def on_batch_end(self, batch, logs=None) -> None:
        pass

    def on_epoch_begin(self, epoch, logs=None) -> None:
        pass

    def on_epoch_end(self, epoch, logs=None) -> None:
        pass

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None) -> None:
        pass

    def on_test_batch_end(self, batch, logs=None) -> None:
        pass

    def on_predict_batch_begin(self, batch, logs=None) -> None:
        pass

    def on_predict_batch_end(self, batch, logs=None) -> None:
        pass

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass

    def on_test_begin(self, logs=None) -> None:
        pass

    def on_test_end(self, logs=None) -> None:
        pass

    def on_predict_begin(self, logs=None) -> None:
        pass

    def on_predict_end(self, logs=None) -> None:
        pass


def _pythonify(logs):
    """Logs as plain Python numbers (Keras's ``pythonify_logs``)."""
    if not logs:
        return {} if logs is None else logs
    out = {}
    for k, v in logs.items():
        if isinstance(v, np.ndarray) and v.ndim == 0 or isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


_HOOKS = ("on_batch_begin", "on_batch_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
          "on_predict_batch_end", "on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
          "on_predict_begin", "on_predict_end")  # fmt: skip


class CallbackList(Callback):
    """Calls every callback's hook in order; adds History and the progress bar as Keras does."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, stream=None,
                 **params) -> None:  # fmt: skip
        super().__init__()
        self.callbacks = list(callbacks or [])
        from .progress import ProgbarLogger

        self._history = next((c for c in self.callbacks if isinstance(c, History)), None)
        self._progbar = next((c for c in self.callbacks if isinstance(c, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger(stream=stream)
            self.callbacks.append(self._progbar)
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def set_params(self, params) -> None:
        self.params = params
        for c in self.callbacks:
            c.set_params(params)

    def set_model(self, model) -> None:
        self.model = model
        if self._history is not None:
            model.history = self._history
        for c in self.callbacks:
            c.set_model(model)

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)


def _dispatch(name):
    if "batch" in name or "epoch" in name:  # hooks that take a batch or epoch index

        def hook(self, index, logs=None):
            logs = _pythonify(logs)
            for c in self.callbacks:
                getattr(c, name)(index, logs)

    else:

        def hook(self, logs=None):
            logs = _pythonify(logs)
            for c in self.callbacks:
                getattr(c, name)(logs)

    hook.__name__ = name
    return hook


for _name in _HOOKS:
    setattr(CallbackList, _name, _dispatch(_name))


class History(Callback):
    """Records the epoch logs: ``history.history["loss"]``, ``history.epoch``; sets ``model.history``."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict = {}
        self.epoch: list = []

    def on_train_begin(self, logs=None) -> None:
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self


# ------------------------------------------------------------------------------------ monitoring

_UP_WORDS = ("acc", "auc", "precision", "recall", "f1", "iou")


def _metric_direction(model, name: str) -> str | None:
    """Whether the metric logged as ``name`` improves up or down: the model's own metric object of
    that log name (as Keras looks it up among ``model.metrics``), else the metric that name resolves to."""
    built = [(label, m) for _, label, m, _ in getattr(model, "_metrics", None) or []]
    for label, m in built + [(getattr(m, "name", None), m) for m in getattr(model, "metrics", None) or []]:
        if label == name:
            d = getattr(m, "direction", None) or getattr(m, "_direction", None)
            if d in ("up", "down"):
                return d
    try:
        from .metrics import get_metric

        return get_metric(name).direction
    except (ValueError, TypeError):
        return None


class MonitorCallback(Callback):
    """Shared by EarlyStopping, ReduceLROnPlateau and ModelCheckpoint: what counts as better."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0) -> None:
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3
            )
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None

    def _set_monitor_op(self) -> None:
        if self.mode == "min":
            self.monitor_op = np.less
        elif self.mode == "max":
            self.monitor_op = np.greater
        else:
            name = self.monitor.removeprefix("val_")
            direction = (
                "down" if name == "loss" or name.endswith("_loss") else _metric_direction(self.model, name)
            )
            if direction is None:
                raise ValueError(f"{type(self).__name__} callback received monitor={self.monitor}, but cannot tell "
                                 "whether that metric should be maximized or minimized; pass mode='max' or "
                                 "mode='min'")  # fmt: skip
            self.monitor_op = np.greater if direction == "up" else np.less
        if self.monitor_op is np.less:
            self.min_delta *= -1

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        return bool(self.monitor_op(value - self.min_delta, reference))


class EarlyStopping(MonitorCallback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (Keras 3 semantics)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0) -> None:  # fmt: skip
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.wait = 0
        self.stopped_epoch = 0
        self.restore_best_weights = restore_best_weights
        self.best_weights = None
        self.best_epoch = 0
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                          f"Available metrics are: {','.join(logs)}", stacklevel=3)  # fmt: skip
        return value


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, **kwargs) -> None:  # fmt: skip
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor = factor
        self.min_lr = min_lr
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None) -> None:
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}.", stacklevel=3)  # fmt: skip
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class TerminateOnNaN(Callback):
    """Stop training (or raise, with ``raise_error=True``) when a batch's loss is NaN or infinite."""

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and (np.isnan(loss) or np.isinf(loss)):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                                   "Terminating training immediately.")  # fmt: skip
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row (``epoch`` first, then the sorted keys)."""

    def __init__(self, filename, separator=",", append=False) -> None:
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None) -> None:
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")  # noqa: SIM115 (open for the whole run)
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}

        def value(v):
            if isinstance(v, str):
                return v
            if isinstance(v, collections.abc.Iterable) and not (isinstance(v, np.ndarray) and v.ndim == 0):
                return f'"[{", ".join(map(str, v))}]"'
            return v

        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend([f"val_{k}" for k in self.keys])
        if self.writer is None:
            sep = self.sep

            class Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys], dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, value(logs.get(k, "NA"))) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, **hooks) -> None:
        super().__init__()
        for name, fn in hooks.items():
            if name not in _HOOKS:
                raise ValueError(f"LambdaCallback: unknown hook '{name}'")
            setattr(self, name, fn)


# ------------------------------------------------------------------------------------ checkpoints


def _named_weights(model) -> tuple[list[str], list[np.ndarray]]:
    weights = list(model.get_weights())
    if hasattr(model, "weight_names"):
        names = list(model.weight_names())
    elif hasattr(model, "plan"):
        names = [p.name for p in model.plan().params]
    else:
        names = [f"weight_{i}" for i in range(len(weights))]
    if len(names) != len(weights):
        raise ValueError(f"the model has {len(weights)} weight arrays but {len(names)} weight names")
    return names, weights


def _json_logs(logs) -> dict:
    out = {}
    for k, v in (logs or {}).items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def save_checkpoint(path, model, optimizer=None, epoch=None, logs=None, extra=None) -> None:
    """Write the model's weights, the optimizer's state and the epoch to one safetensors file.

    ``optimizer`` defaults to ``model.optimizer``; ``extra`` is any JSON-serializable dict the fit
    loop wants back (a random generator's state, say).
    """
    from .weights import write_safetensors

    names, weights = _named_weights(model)
    tensors = dict(zip(names, weights))
    record: dict = {"epoch": epoch, "logs": _json_logs(logs), "weights": names, "extra": extra}
    if hasattr(model, "get_config") and getattr(model, "built", True):  # load_model rebuilds it from these
        record["config"] = model.get_config()
        record["compile"] = getattr(model, "_compile_record", None)
    opt = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    if opt is not None:
        state = opt.get_state()
        for slot, arr in state.pop("slots").items():
            tensors[OPTIMIZER_PREFIX + slot] = arr
        record["optimizer"] = state
    meta = {"format": CHECKPOINT_FORMAT, "model": getattr(model, "name", ""),
            "checkpoint": json.dumps(record, default=_json_default)}  # fmt: skip
    write_safetensors(path, tensors, meta)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} into a checkpoint")


def read_safetensors_metadata(path) -> dict:
    """The ``__metadata__`` mapping of a safetensors file (strings to strings)."""
    from ..specs.errors import WeightsError

    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WeightsError(f"{name}: not a safetensors file (too short)")
            (n,) = struct.unpack("<Q", head)
            if n > 100 * 1024 * 1024:
                raise WeightsError(f"{name}: not a safetensors file (header length {n})")
            header = json.loads(f.read(n))
    except OSError as e:
        raise WeightsError(f"{name}: cannot read the file: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError(f"{name}: not a safetensors file (unreadable header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Restore a :func:`save_checkpoint` file into ``model`` (and its optimizer).

    Returns the record: ``epoch`` (resume with ``initial_epoch = epoch + 1``), ``logs``, ``extra``,
    and ``optimizer``, the restored optimizer (``model.optimizer`` or ``optimizer``; built from
    the saved config when the model has none).
    """
    from ..specs.errors import WeightsError
    from .weights import read_safetensors

    name = os.fspath(path)
    meta = read_safetensors_metadata(name)
    if meta.get("format") != CHECKPOINT_FORMAT or "checkpoint" not in meta:
        raise WeightsError(f"{name}: not an nnspec checkpoint (format {meta.get('format')!r}); a weights file is "
                           "read with model.load_weights")  # fmt: skip
    record = json.loads(meta["checkpoint"])
    tensors = read_safetensors(name)
    names, current = _named_weights(model)
    missing = [n for n in names if n not in tensors]
    if missing:
        raise WeightsError(f"{name}: the checkpoint has no tensor '{missing[0]}' for this model")
    bad = [(n, tuple(c.shape), tuple(tensors[n].shape)) for n, c in zip(names, current)
           if tuple(c.shape) != tuple(tensors[n].shape)]  # fmt: skip
    if bad:
        n, want, got = bad[0]
        raise WeightsError(f"{name}: weight '{n}': expected shape {want}, found {got}")
    model.set_weights([tensors[n] for n in names])
    state = record.get("optimizer")
    opt = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    if state is not None:
        if opt is None:
            from .optimizers import get_optimizer

            opt = get_optimizer({"class_name": state["class_name"], "config": state["config"]})
        if (
            type(opt).__name__ != state["class_name"]
            and getattr(opt, "class_name", None) != state["class_name"]
        ):
            raise WeightsError(f"{name}: the checkpoint holds {state['class_name']} state; the optimizer is "
                               f"{type(opt).__name__}")  # fmt: skip
        slots = {k[len(OPTIMIZER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(OPTIMIZER_PREFIX)}
        opt.set_state({**state, "slots": slots})
    record["optimizer"] = opt
    return record


class ModelCheckpoint(MonitorCallback):
    """Save the model every epoch (or every ``save_freq`` batches), or only on improvement.

    ``filepath`` may hold ``{epoch}`` (1-based) and any log key (``{val_loss:.2f}``);
    ``save_weights_only=True`` writes ``model.save_weights``'s file, otherwise a checkpoint with the
    optimizer state (see :func:`save_checkpoint`).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None) -> None:  # fmt: skip
        super().__init__(monitor, mode, initial_value_threshold)
        self.verbose = verbose
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None
        self._current_epoch = 0
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)):
            raise ValueError(
                f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or integer values"
            )

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _should_save_on_batch(self, batch) -> bool:
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            add = batch + 1
        else:
            add = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += add
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _file_path(self, epoch, batch, logs) -> str:
        logs = logs or {}
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {e}'
            ) from None

    def _should_save(self, epoch, logs, filepath) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        if isinstance(current, np.ndarray) and current.ndim > 0:
            warnings.warn(f"Can save best model only when `monitor` is a scalar value. Received: {current}. "
                          "Falling back to `save_best_only=False`.", stacklevel=3)  # fmt: skip
            return True
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, saving model "
                      f"to {filepath}")  # fmt: skip
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save_model(self, epoch, batch, logs) -> None:
        filepath = self._file_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, filepath):
            return
        folder = os.path.dirname(filepath)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if os.path.isdir(filepath):
            raise OSError(f"Please specify a non-directory filepath for ModelCheckpoint. Filepath used is an existing "
                          f"directory: {filepath}")  # fmt: skip
        if self.save_weights_only:
            self.model.save_weights(filepath)
        else:
            save_checkpoint(filepath, self.model, epoch=epoch, logs=logs)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}", file=sys.stdout)
