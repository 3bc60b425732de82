"""The training commands: ``nnspec fit`` and ``nnspec evaluate``.

Both read a model file, take the optimizer, loss, loss weights and metrics from its ``training``
section (as ``Model.compile()`` with no arguments does; ``--optimizer``, ``--learning-rate``,
``--loss`` and ``--metric`` override parts of it), and read their data from a NumPy ``.npz``
archive whose arrays are named after the model's inputs (the features) and outputs (the
targets). Optional ``sample_weight`` arrays weight the samples: ``sample_weight`` for every
output, ``sample_weight:<output>`` for one output. For a model with one input and one output,
``x`` and ``y`` are accepted as well.

Exit codes are main.py's: 0 ok; 1 a problem in the user's files (model file, data file, weights
file), printed as one ``error:`` line; 2 a usage error (bad options). ``nnspec fit`` interrupted
with Ctrl-C exits 130 without writing ``--weights-out`` (files are only ever replaced
atomically, so previous weights files stay intact).

The runtime (NumPy, Numba) is imported inside the commands only, so registering them keeps
``nnspec --help``, ``summarize`` and ``compile`` free of Numba.
"""

from __future__ import annotations

import math
import os
import sys

import click

EXIT_INVALID = 1
EXIT_INTERRUPTED = 130
SAMPLE_WEIGHT = "sample_weight"
SW_PREFIX = "sample_weight:"


class _Problem(Exception):
    """A problem in the user's files: printed as one ``error:`` line, exit code 1."""


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)


# ---------------------------------------------------------------------------------- options


def _data_options(f):
    """Options shared by fit and evaluate (applied bottom-up, so listed here in reverse)."""
    f = click.option(
        "--metric",
        "metrics",
        multiple=True,
        metavar="NAME",
        help="A metric to report (repeatable); replaces the training section's metrics.",
    )(f)
    f = click.option(
        "--loss",
        "losses",
        multiple=True,
        metavar="NAME | OUTPUT=NAME",
        help="The loss: one name for every output, or OUTPUT=NAME (repeatable) to set one "
        "output's loss; overrides the training section's.",
    )(f)
    f = click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed for the initial weights (when no --weights) and for shuffling.",
    )(f)
    f = click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=None,
        help="Samples per batch. Default: the training section's batch_size, else 32.",
    )(f)
    return f


def _check_folder(path: str, option: str) -> None:
    """A file we will write at the end must have a writable folder now, not after training."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise click.BadParameter(f"the folder {folder} does not exist", param_hint=option)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"the folder {folder} is not writable", param_hint=option)


def _parse_pairs(values, option: str, key_type, value_type) -> dict:
    out = {}
    for text in values:
        key, sep, value = text.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key_type(key.strip())] = value_type(value.strip())
        except ValueError:
            raise click.BadParameter(f"expected KEY=VALUE, got '{text}'", param_hint=option) from None
    return out


# ---------------------------------------------------------------------------------- training config


def _training_config(
    model, file: str, optimizer, learning_rate, losses, metrics, need_optimizer=True
) -> dict:
    """The arguments of ``model.compile``: the file's training section with the options applied."""
    from ..specs.errors import did_you_mean

    section = dict(model._typed.graph.training or {})
    outputs = model._typed.graph.output_names

    # loss
    loss = section.get("loss")
    if losses:
        plain = [v for v in losses if "=" not in v]
        pairs = [v for v in losses if "=" in v]
        if plain and (len(plain) > 1 or pairs):
            raise click.BadParameter("give one loss name for every output, or OUTPUT=NAME for each output "
                                     "you set", param_hint="--loss")  # fmt: skip
        if plain:
            loss = plain[0]
            _check_loss_name(loss, model._custom_losses())
        else:
            per = _parse_pairs(pairs, "--loss", str, str)
            for out, name in per.items():
                if out not in outputs:
                    hint = did_you_mean(out, outputs)
                    raise click.BadParameter(f"'{out}' is not an output of model '{model.name}' (outputs: "
                                             f"{', '.join(outputs)})" + (f"; {hint}" if hint else ""),
                                             param_hint="--loss")  # fmt: skip
                _check_loss_name(name, model._custom_losses())
            base = _loss_per_output(loss, outputs)
            base.update(per)
            loss = {k: v for k, v in base.items() if v is not None}
    if loss is None:
        why = (f"{file} has no training section" if not section
               else f"the training section of {file} has no loss")  # fmt: skip
        raise _Problem(f"nothing to train with: {why}; give --loss (and --optimizer), or add a training "
                       "section with optimizer, loss and metrics to the model file")  # fmt: skip

    # optimizer
    opt = section.get("optimizer")
    from_options = optimizer is not None or learning_rate is not None
    if optimizer is not None:
        opt = optimizer
    if learning_rate is not None:
        base = opt if opt is not None else "rmsprop"
        args = dict(base) if isinstance(base, dict) else {"type": base}
        args["learning_rate"] = learning_rate
        opt = args
    if opt is None:
        opt = "rmsprop"  # Keras's compile() default
    if need_optimizer:
        from ..runtime.optimizers import get_optimizer

        try:
            get_optimizer(opt)
        except (ValueError, TypeError) as e:
            if from_options:
                raise click.BadParameter(str(e), param_hint="--optimizer") from None
            raise _Problem(f"{file}: training.optimizer: {e}") from None

    # metrics
    mets = section.get("metrics")
    if metrics:
        from ..runtime.metrics import get_metric

        for name in metrics:
            if name.lower() not in ("accuracy", "acc"):
                try:
                    get_metric(name, custom=model._custom_losses())
                except (ValueError, TypeError) as e:
                    raise click.BadParameter(str(e), param_hint="--metric") from None
        mets = {o: list(metrics) for o in outputs}  # every --metric for every output

    return {"optimizer": opt, "loss": loss, "metrics": mets, "loss_weights": section.get("loss_weights"),
            "weighted_metrics": section.get("weighted_metrics"),
            "batch_size": section.get("batch_size"), "epochs": section.get("epochs")}  # fmt: skip


def _check_loss_name(name: str, custom: dict) -> None:
    """A built-in loss name, or one of the model file's ``custom_losses``."""
    if name.lower() in ("crossentropy", "ce"):  # resolved from the shapes at training time
        return
    from ..runtime.losses import get_loss

    try:
        get_loss(name, custom=custom)
    except (ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--loss") from None


def _loss_per_output(loss, outputs: list[str]) -> dict:
    if loss is None:
        return {}
    if isinstance(loss, dict) and "type" not in loss and "class_name" not in loss:
        return dict(loss)
    if isinstance(loss, (list, tuple)):
        return dict(zip(outputs, loss))
    return {o: loss for o in outputs}


def _compile(model, file: str, cfg: dict, with_optimizer: bool = True) -> None:
    try:
        model.compile(optimizer=cfg["optimizer"] if with_optimizer else None, loss=cfg["loss"],
                      metrics=cfg["metrics"], loss_weights=cfg["loss_weights"],
                      weighted_metrics=cfg["weighted_metrics"])  # fmt: skip
    except (ValueError, TypeError) as e:
        raise _Problem(f"{file}: training: {e}") from None


# ---------------------------------------------------------------------------------- data


def _read_npz(path: str) -> dict:
    """Every array of an .npz archive; never unpickles; a bad file is one clear problem."""
    import zipfile

    import numpy as np

    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise _Problem(f"{path}: cannot read the file: {e.strerror or e}") from None
    if magic.startswith(b"\x93NUMPY"):
        raise _Problem(f"{path}: a single .npy array; give an .npz archive (numpy.savez) with arrays named "
                       "after the model's inputs and outputs")  # fmt: skip
    if not magic.startswith(b"PK"):
        raise _Problem(f"{path}: not an .npz file (a NumPy archive written by numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise _Problem(f"{path}: cannot read the .npz file: {e}") from None


def _split_arrays(model, path: str, arrays: dict, required_targets: list[str]):
    """(x, y, sample_weight) for the model from the archive's arrays, by name.

    Raises a problem naming every missing array and listing the arrays found; warns about
    arrays that are none of the model's inputs, targets or sample weights.
    """
    from ..specs.errors import did_you_mean

    inputs = list(model._typed.graph.inputs)
    outputs = model._typed.graph.output_names
    names = set(inputs) | set(outputs)
    used: set[str] = set()
    x: dict = {}
    y: dict = {}
    missing = []
    for name in inputs:
        if name in arrays:
            x[name] = arrays[name]
            used.add(name)
        elif len(inputs) == 1 and "x" in arrays and "x" not in names:
            x[name] = arrays["x"]
            used.add("x")
        else:
            missing.append(f"'{name}' (input)")
    for name in outputs:
        if name in arrays:
            y[name] = arrays[name]
            used.add(name)
        elif len(outputs) == 1 and "y" in arrays and "y" not in names:
            y[name] = arrays["y"]
            used.add("y")
        elif name in required_targets:
            missing.append(f"'{name}' (target of output '{name}')")
    if missing:
        found = ", ".join(arrays) if arrays else "no arrays"
        raise _Problem(f"{path}: missing array{'s' if len(missing) > 1 else ''} {', '.join(missing)}; the file "
                       f"has: {found} (model '{model.name}' takes inputs {', '.join(inputs)} and targets "
                       f"{', '.join(required_targets)})")  # fmt: skip
    plain = None
    per: dict = {}
    for key, arr in arrays.items():
        if key in used:
            continue
        if key == SAMPLE_WEIGHT and key not in names:
            plain = arr
        elif key.startswith(SW_PREFIX):
            out = key[len(SW_PREFIX) :]
            if out not in outputs:
                hint = did_you_mean(out, outputs)
                raise _Problem(f"{path}: array '{key}': '{out}' is not an output of model '{model.name}' (outputs: "
                               f"{', '.join(outputs)})" + (f"; {hint}" if hint else ""))  # fmt: skip
            per[out] = arr
        else:
            hint = did_you_mean(key, sorted(names - used))
            click.echo(f"warning: {path}: ignoring array '{key}': not an input, target or sample weight of model "
                       f"'{model.name}'" + (f"; {hint}" if hint else ""), err=True)  # fmt: skip
    if per:
        sw = {o: per.get(o, plain) for o in outputs}
    else:
        sw = plain
    return x, y, sw


def _check_data(model, path: str, x, y, sw):
    """Check the data against the model before any training; return (samples, log names).

    Uses the same preparation as ``fit`` does, so its messages (InputError naming the input or
    the output whose targets do not fit) are the runtime's own.
    """

    from ..specs.errors import NnspecError

    try:
        xs = model._prepare_inputs(x)
        n = xs[0].shape[0]
        if n == 0:
            raise _Problem(f"{path}: the arrays hold no samples")
        ys = model._prepare_targets(y, n)
        sws = model._sample_weights(sw, None, ys, n)
        for k, w in enumerate(sws):
            model._rows_weight(w, k, n)
        specs = model._loss_specs_for(ys)
    except (NnspecError, ValueError, TypeError) as e:
        raise _Problem(f"{path}: {e}") from None
    outputs = model._typed.graph.output_names
    try:
        metric_names = [label for _, label, _, _ in model._build_metrics(ys, specs)]
    except (ValueError, TypeError) as e:
        raise _Problem(f"{path}: {e}") from None
    logs = ["loss"]
    if len(outputs) > 1:
        logs += [f"{o}_loss" for o, s in zip(outputs, specs) if s is not None]
    return n, logs + metric_names


def _plain(v):
    """A logged value as JSON and CSV hold it: a float, or a list of floats for a metric with one
    value per class or threshold (``F1Score``)."""
    import numpy as np

    a = np.asarray(v, dtype=np.float64)
    return float(a) if a.ndim == 0 else a.tolist()


def _format_value(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_format_value(x) for x in v) + "]"
    return "nan" if v is None else f"{v:.6g}"


def _json_value(v):
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


# ---------------------------------------------------------------------------------- fit


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Training data: an .npz with an array per input and per output (the targets), named "
    "after them; optional sample_weight or sample_weight:<output> arrays.",
)
@click.option(
    "--validation-data",
    type=click.Path(exists=True, dir_okay=False),
    help="Validation data, an .npz like --data; its loss and metrics are logged as val_*.",
)
@click.option(
    "--validation-split",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="Hold out this fraction of --data (its last samples, before shuffling) for validation.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs to train. Default: the training section's epochs, else 1.",
)
@_data_options
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Start from these weights (a safetensors file). Default: initialized from --seed.",
)
@click.option(
    "--weights-out",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Write the trained weights here (safetensors, atomically) when training ends.",
)
@click.option(
    "--optimizer",
    default=None,
    metavar="NAME",
    help="sgd, rmsprop, adam, adamw, adagrad, adadelta, adamax, nadam, lion, ftrl, lamb or adafactor, with its "
    "defaults; overrides the training section's optimizer.",
)
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="The optimizer's learning rate (overrides the training section's).",
)
@click.option(
    "--class-weight",
    "class_weights",
    multiple=True,
    metavar="CLASS=WEIGHT",
    help="Weight the samples of a class in the loss (repeatable), as Keras's class_weight.",
)
@click.option(
    "--verbose",
    type=click.IntRange(0, 2),
    default=1,
    show_default=True,
    help="0: silent; 1: a progress bar per epoch; 2: one line per epoch.",
)
@click.option(
    "--shuffle/--no-shuffle", default=True, show_default=True, help="Shuffle the samples every epoch."
)
@click.option(
    "--initial-epoch",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Epoch to start from (0-based), to resume a run: epochs counts up to --epochs.",
)
@click.option(
    "--history-out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the loss and metrics of every epoch here: .csv or .json (rewritten after every epoch).",
)
@click.option("--checkpoint", type=click.Path(dir_okay=False), metavar="PATH",
              help="Save the weights here after every epoch (safetensors); PATH may hold {epoch:02d} or "
                   "{val_loss:.3f}.")  # fmt: skip
@click.option("--save-best-only", is_flag=True, help="With --checkpoint: save only when --monitor improves.")
@click.option("--monitor", default=None,
              help="The logged value --save-best-only and early stopping watch. Default: val_loss with "
                   "validation data, else loss.")  # fmt: skip
@click.option(
    "--mode",
    type=click.Choice(["auto", "min", "max"]),
    default="auto",
    show_default=True,
    help="Whether --monitor improves by going down (min) or up (max); auto: from its name.",
)
@click.option(
    "--early-stopping-patience",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Stop when --monitor has not improved for N epochs.",
)
@click.option(
    "--restore-best-weights",
    is_flag=True,
    help="With early stopping: end with the weights of the best epoch.",
)
def fit(file, data, validation_data, validation_split, epochs, batch_size, seed, losses, metrics, weights,
        weights_out, optimizer, learning_rate, class_weights, verbose, shuffle, initial_epoch, history_out,
        checkpoint, save_best_only, monitor, mode, early_stopping_patience, restore_best_weights) -> None:  # fmt: skip
    """Train a model on arrays from an .npz file and write its weights.

    The optimizer, loss, loss weights and metrics come from the model file's training section
    (--optimizer, --learning-rate, --loss, --metric override them). The arrays of --data are
    named after the model's inputs and outputs.

    \b
    Examples:
      nnspec fit specs/headline.yaml --data train.npz --epochs 5 --weights-out w.safetensors
      nnspec fit specs/mlp.yaml --data train.npz --loss binary_crossentropy --optimizer adam \\
          --validation-split 0.2 --early-stopping-patience 3 --restore-best-weights \\
          --checkpoint best.safetensors --save-best-only --history-out history.csv \\
          --weights-out mlp.safetensors
    """
    from .main import _load

    # usage checks first: nothing is loaded or trained for a command line that cannot work
    if validation_data and validation_split:
        raise click.UsageError("give --validation-data or --validation-split, not both")
    has_validation = bool(validation_data or validation_split)
    if save_best_only and not checkpoint:
        raise click.UsageError("--save-best-only needs --checkpoint")
    if restore_best_weights and early_stopping_patience is None:
        raise click.UsageError("--restore-best-weights needs --early-stopping-patience")
    if monitor is not None and not checkpoint and early_stopping_patience is None:
        raise click.UsageError("--monitor is used by --checkpoint --save-best-only and --early-stopping-patience; "
                               "give one of them")  # fmt: skip
    watched = monitor or ("val_loss" if has_validation else "loss")
    if (
        watched.startswith("val_")
        and not has_validation
        and (save_best_only or early_stopping_patience is not None)
    ):
        raise click.UsageError(
            f"--monitor {watched} needs validation data (--validation-data or --validation-split)"
        )
    if history_out and not history_out.lower().endswith((".csv", ".json")):
        raise click.BadParameter("write the history as .csv or .json", param_hint="--history-out")
    _check_folder(weights_out, "--weights-out")
    if history_out:
        _check_folder(history_out, "--history-out")
    cw = _parse_pairs(class_weights, "--class-weight", int, float) if class_weights else None

    model = _load(file)
    model._seed = seed
    try:
        cfg = _training_config(model, file, optimizer, learning_rate, losses, metrics)
        epochs = epochs or cfg["epochs"] or 1
        batch_size = batch_size or cfg["batch_size"] or 32
        if initial_epoch >= epochs:
            raise click.BadParameter(f"{initial_epoch} leaves no epoch to train: it must be below --epochs "
                                     f"({epochs})", param_hint="--initial-epoch")  # fmt: skip
        train = _read_npz(data)
        val = _read_npz(validation_data) if validation_data else None
        _compile(model, file, cfg)
        _load_weights(model, weights)
        required = _required_targets(model)
        x, y, sw = _split_arrays(model, data, train, required)
        n, log_names = _check_data(model, data, x, y, sw)
        if val is not None:
            vx, vy, vsw = _split_arrays(model, validation_data, val, required)
            n_val, _ = _check_data(model, validation_data, vx, vy, vsw)
            validation = (vx, vy, vsw) if vsw is not None else (vx, vy)
        else:
            validation = None
            n_val = n - int(n * (1.0 - validation_split)) if validation_split else 0
            if validation_split and (n_val == 0 or n_val == n):
                raise click.BadParameter(f"{validation_split} of {n} samples leaves "
                                         f"{'no validation' if n_val == 0 else 'no training'} samples",
                                         param_hint="--validation-split")  # fmt: skip
    except _Problem as e:
        _fail(str(e))
    known = log_names + ([f"val_{k}" for k in log_names] if has_validation else [])
    if (save_best_only or early_stopping_patience is not None) and watched not in known:
        raise click.BadParameter(f"'{watched}' is not logged; the logged values are: {', '.join(known)}",
                                 param_hint="--monitor")  # fmt: skip
    if checkpoint:
        _check_checkpoint_path(checkpoint, known)

    callbacks, progress = _callbacks(verbose, history_out, checkpoint, save_best_only, watched, mode,
                                     early_stopping_patience, restore_best_weights)  # fmt: skip
    if verbose:
        n_train = n - n_val if validation_split else n
        click.echo(
            f"Train on {n_train} samples" + (f", validate on {n_val} samples" if has_validation else "")
        )
    history = _run_fit(model, weights_out, progress, x=x, y=y, sample_weight=sw, batch_size=batch_size,
                       epochs=epochs, verbose=verbose, callbacks=callbacks, validation_split=validation_split or 0.0,
                       validation_data=validation, shuffle=shuffle, class_weight=cw, initial_epoch=initial_epoch,
                       seed=seed)  # fmt: skip
    try:
        model.save_weights(weights_out)
    except OSError as e:
        _fail(f"{weights_out}: cannot write the weights: {e.strerror or e}")
    done = len(history.epoch)
    last = {k: v[-1] for k, v in history.history.items() if v}
    stopper = next((c for c in callbacks if type(c).__name__ == "EarlyStopping"), None)
    notes = []
    if stopper is not None and stopper.stopped_epoch > 0:
        notes.append(f"stopped early after epoch {stopper.stopped_epoch + 1}")
    if restore_best_weights and stopper is not None and stopper.best_weights is not None:
        notes.append(f"weights of epoch {stopper.best_epoch + 1}, the best {watched}")
    values = " - ".join(
        f"{k}: {_format_value(_json_value(last[k]))}" for k in ("loss", "val_loss") if k in last
    )
    click.echo(f"wrote {weights_out}: {model.count_params():,} parameters after {done} epoch{'s' if done != 1 else ''}"
               + (f" ({'; '.join(notes)})" if notes else "") + (f"; last epoch: {values}" if values else ""))  # fmt: skip
    loss = last.get("loss")
    if loss is not None and not math.isfinite(loss):
        click.echo(f"warning: the loss is {loss} at the end of training; the weights written may be unusable",
                   err=True)  # fmt: skip


def _required_targets(model) -> list[str]:
    """Outputs that need targets: those with a loss (all of them, unless the loss is per output)."""
    outputs = model._typed.graph.output_names
    ids = getattr(model, "_loss_ids", None)
    if ids is None:
        return outputs
    return [o for o, lid in zip(outputs, ids) if lid is not None]


def _load_weights(model, weights) -> None:
    from ..specs.errors import WeightsError

    if weights:
        try:
            model.load_weights(weights)
        except WeightsError as e:
            raise _Problem(str(e)) from None


def _check_checkpoint_path(path: str, known: list[str]) -> None:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(path) if f is not None]
    except ValueError as e:
        raise click.BadParameter(f"'{path}': {e}", param_hint="--checkpoint") from None
    for f in fields:
        key = f.split(".")[0].split("[")[0]
        if key not in ("epoch", *known):
            raise click.BadParameter(f"'{path}': '{{{f}}}' is not a logged value; use {{epoch}} or one of: "
                                     f"{', '.join(known)}", param_hint="--checkpoint")  # fmt: skip


def _callbacks(verbose, history_out, checkpoint, save_best_only, watched, mode, patience, restore):
    from ..runtime.callbacks import Callback, EarlyStopping, ModelCheckpoint
    from ..runtime.progress import ProgbarLogger

    class Progress(Callback):
        """Where training is, for the message after Ctrl-C."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = None
            self.saved = None

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.epoch = epoch

    class HistoryWriter(Callback):
        """The epochs' logs, rewritten atomically after every epoch (.csv or .json)."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path
            self.rows: list = []

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.rows.append((epoch, dict(logs or {})))
            _write_history(self.path, self.rows)

    progress = Progress()
    cbs: list = [progress]
    if verbose:
        # before the checkpoint and early stopping, so that their messages follow the epoch's line
        cbs.append(ProgbarLogger())
    if checkpoint:

        class Checkpoint(ModelCheckpoint):
            """ModelCheckpoint (weights only), with one short line per save and the last path kept."""

            def _should_save(self, epoch, logs, filepath) -> bool:
                before = self.best
                self._saving = super()._should_save(epoch, logs, filepath)
                if self._saving and self.save_best_only and before is not None:
                    self._why = f" ({self.monitor} improved from {before:.5f} to {self.best:.5f})"
                elif not self._saving:
                    self._why = f"{self.monitor} did not improve from {self.best:.5f}"
                else:
                    self._why = ""
                return self._saving

            def _save_model(self, epoch, batch, logs) -> None:
                super()._save_model(epoch, batch, logs)
                path = self._file_path(epoch, batch, logs)
                if self._saving:
                    progress.saved = path
                if verbose:
                    click.echo(
                        f"Epoch {epoch + 1}: " + (f"saved {path}{self._why}" if self._saving else self._why)
                    )

        cbs.append(Checkpoint(checkpoint, monitor=watched, verbose=0, save_best_only=save_best_only,
                              save_weights_only=True, mode=mode))  # fmt: skip
    if patience is not None:
        cbs.append(EarlyStopping(monitor=watched, patience=patience, mode=mode, restore_best_weights=restore,
                                 verbose=1 if verbose else 0))  # fmt: skip
    if history_out:
        cbs.append(HistoryWriter(history_out))
    return cbs, progress


def _write_history(path: str, rows: list) -> None:
    import csv
    import io
    import json

    from ..specs.atomic import write_text_atomic

    keys: list[str] = []
    for _, logs in rows:
        keys += [k for k in logs if k not in keys]
    if path.lower().endswith(".json"):
        doc = {"epoch": [e for e, _ in rows]}
        doc.update({k: [_json_value(_plain(logs[k]) if k in logs else None) for _, logs in rows] for k in keys})
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
        write_text_atomic(path, "{\n" + body + "\n}\n")
        return
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = sorted(keys)
    w.writerow(["epoch", *keys])
    for epoch, logs in rows:
        w.writerow([epoch, *(_csv_value(_plain(logs[k])) if k in logs else "" for k in keys)])
    write_text_atomic(path, buf.getvalue())


def _csv_value(v) -> str:
    return repr(v) if not isinstance(v, list) else "[" + ", ".join(_csv_value(x) for x in v) + "]"


def _run_fit(model, weights_out, progress, **kwargs):
    """``model.fit(**kwargs)``; Ctrl-C and errors end the command with one message, never a traceback."""
    from ..runtime.codegen import CodegenError
    from ..specs.errors import NnspecError

    try:
        return model.fit(**kwargs)
    except KeyboardInterrupt:
        where = f" during epoch {progress.epoch + 1}/{kwargs['epochs']}" if progress.epoch is not None else ""
        saved = f"; the last checkpoint is {progress.saved}" if progress.saved else ""
        click.echo(f"\ninterrupted{where}: {weights_out} was not written{saved}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException:
        raise
    except (NnspecError, CodegenError, ValueError, TypeError, NotImplementedError, OSError) as e:
        _fail(f"training failed: {e}")
    except Exception as e:  # noqa: BLE001 (a bug in nnspec: still one line, never a traceback)
        _fail(f"internal error while training (please report it): {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------- evaluate


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Test data: an .npz with an array per input and per output (the targets), named after "
    "them; optional sample_weight or sample_weight:<output> arrays.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False),
    help="The weights to evaluate (safetensors). Without it, weights are initialized from --seed.",
)
@_data_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one 'name: value' line each; json: one object.",
)
def evaluate(file, data, weights, batch_size, seed, losses, metrics, fmt) -> None:
    """Print a model's loss and metrics on arrays from an .npz file.

    The loss and metrics come from the model file's training section (--loss, --metric override
    them); the names printed are Keras's evaluate(return_dict=True) names.

    \b
    Examples:
      nnspec evaluate specs/headline.yaml --data test.npz --weights w.safetensors
      nnspec evaluate specs/mlp.yaml --data test.npz --weights mlp.safetensors --loss mse --format json
    """
    import json

    from ..runtime.codegen import CodegenError
    from ..specs.errors import NnspecError
    from .main import _load

    model = _load(file)
    model._seed = seed
    try:
        cfg = _training_config(model, file, None, None, losses, metrics, need_optimizer=False)
        batch_size = batch_size or cfg["batch_size"] or 32
        arrays = _read_npz(data)
        _compile(model, file, cfg, with_optimizer=False)
        _load_weights(model, weights)
        x, y, sw = _split_arrays(model, data, arrays, _required_targets(model))
        _check_data(model, data, x, y, sw)
    except _Problem as e:
        _fail(str(e))
    if not weights:
        click.echo(f"note: no --weights given; using initial weights from seed {seed}", err=True)
    try:
        logs = model.evaluate(x, y, batch_size=batch_size, sample_weight=sw, return_dict=True, verbose=0)
    except (NnspecError, CodegenError, ValueError, TypeError, NotImplementedError) as e:
        _fail(f"evaluation failed: {e}")
    except Exception as e:  # noqa: BLE001 (a bug in nnspec: still one line, never a traceback)
        _fail(f"internal error while evaluating (please report it): {type(e).__name__}: {e}")
    if fmt == "json":
        click.echo(json.dumps({k: _json_value(_plain(v)) for k, v in logs.items()}, indent=2))
    else:
        for k, v in logs.items():
            click.echo(f"{k}: {_format_value(_json_value(_plain(v)))}")
