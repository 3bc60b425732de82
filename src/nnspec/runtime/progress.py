"""Progress output of ``fit``/``evaluate``/``predict``: a Keras-like progress bar.

Mirrors Keras's ``ProgbarLogger`` and ``keras.utils.Progbar``:

- ``verbose=1``: ``Epoch 3/10`` (when there are several epochs), then per epoch
  ``32/32 ━━━━━━━━━━━━━━━━━━━━ 1s 3ms/step - accuracy: 0.9123 - loss: 0.2345 - val_loss: ...``.
  On a terminal the bar is redrawn in place (``\\r``, at most every 0.05 s) with an ETA while the
  epoch runs; on anything else (a file, a pipe, a CI log) only the finished line is written, once
  per epoch, so logs do not fill with partial bars. Colours are used on a terminal only.
- ``verbose=2``: one line per epoch, ``32/32 - 1s - 3ms/step - loss: 0.2345``.
- values print as Keras prints them: 4 decimals, or scientific notation when ``|v| <= 1e-3``.

The logs a callback receives are already the running means since the start of the epoch, so
the bar shows them as they are (Keras's ``stateless_metrics=set()``).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from .callbacks import Callback


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_value(v) -> str:
    if np.ndim(v) > 0:  # a metric with one value per class or threshold: its mean, as Keras's bar shows it
        v = np.mean(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return f" {v}"
    return f" {f:.4f}" if abs(f) > 1e-3 else f" {f:.4e}"


def format_time(seconds_per_unit: float, unit: str = "step") -> str:
    if seconds_per_unit >= 1 or seconds_per_unit == 0:
        return f" {seconds_per_unit:.0f}s/{unit}"
    if seconds_per_unit >= 1e-3:
        return f" {seconds_per_unit * 1e3:.0f}ms/{unit}"
    return f" {seconds_per_unit * 1e6:.0f}us/{unit}"


def format_eta(eta: float) -> str:
    if eta > 3600:
        return f"{int(eta // 3600)}:{int((eta % 3600) // 60):02d}:{int(eta % 60):02d}"
    if eta > 60:
        return f"{int(eta // 60)}:{int(eta % 60):02d}"
    return f"{int(eta)}s"


class Progbar:
    """A progress bar over ``target`` steps (``None`` when unknown) written to ``stream``.

    ``dynamic``: redraw in place (default: when ``stream`` is a terminal).
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, stream=None, unit_name="step",
                 dynamic=None) -> None:  # fmt: skip
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.stream = stream if stream is not None else sys.stdout
        self.unit_name = unit_name
        self.dynamic = _is_tty(self.stream) if dynamic is None else dynamic
        self._values: dict = {}
        self._start = time.time()
        self._last_update = 0.0
        self._after_first_step = None
        self._prev_width = 0
        self._seen = 0

    def _time_per_unit(self, current: int, now: float) -> float:
        if not current:
            return 0.0
        if self._after_first_step is not None and current > 1:
            tpu = (now - self._after_first_step) / (current - 1)
        else:
            tpu = (now - self._start) / current
        if current == 1:
            self._after_first_step = now
        return tpu

    def _info(self) -> str:
        return "".join(f" - {k}:{format_value(v)}" for k, v in self._values.items())

    def update(self, current: int, values=None, finalize: bool | None = None) -> None:
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k, v in values or []:
            self._values[k] = v
        self._seen = current
        now = time.time()
        tpu = self._time_per_unit(current, now)
        if self.verbose == 1:
            if not self.dynamic and not finalize:
                return
            if self.dynamic and not finalize and now - self._last_update < self.interval:
                return
            self._last_update = now
            line = self._line(current, now, tpu, finalize)
            if self.dynamic:
                pad = " " * max(0, self._prev_width - len(line))
                self._prev_width = len(line)
                coloured = self._line(current, now, tpu, finalize, colour=True)
                self.stream.write("\r" + coloured + pad + ("\n" if finalize else ""))
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        elif self.verbose == 2 and finalize:
            if self.target is not None and self.target > 0:
                digits = int(math.log10(self.target)) + 1
                count = f"{current:>{digits}}/{self.target}"
            else:
                count = f"{current}"
            line = f"{count} - {now - self._start:.0f}s -{format_time(tpu, self.unit_name)}{self._info()}"
            self.stream.write(line + "\n")
            self.stream.flush()

    def _line(self, current: int, now: float, tpu: float, finalize: bool, colour: bool = False) -> str:
        if self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            filled = int(self.width * min(current, self.target) / self.target)
            count = f"{current:>{digits}}/{self.target}"
            done, todo = "━" * filled, "━" * (self.width - filled)
            if colour:  # Keras's terminal colours: bold counter, green done part, grey rest
                count = f"\x1b[1m{count}\x1b[0m"
                done = f"\x1b[32m{done}\x1b[0m" if filled else ""
                todo = f"\x1b[37m{todo}\x1b[0m"
            bar = f"{count} {done}{todo}"
        else:
            bar = f"{current:7d}/Unknown"
        if self.target is not None and self.target > 0 and not finalize:
            when = format_eta(tpu * (self.target - current))
        else:
            when = f"{now - self._start:.0f}s"
        return f"{bar} {when}{format_time(tpu, self.unit_name)}{self._info()}"


class ProgbarLogger(Callback):
    """The callback ``fit`` adds when ``verbose`` is 1 or 2 (``params``: verbose, epochs, steps)."""

    def __init__(self, stream=None) -> None:
        super().__init__()
        self.stream = stream
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def _write(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def set_params(self, params) -> None:
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None) -> None:
        self._called_in_fit = True

    def on_test_begin(self, logs=None) -> None:
        if not self._called_in_fit:
            self._reset()

    def on_predict_begin(self, logs=None) -> None:
        self._reset()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._reset()
        if self.verbose and self.epochs > 1:
            self._write(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._update(batch, logs)

    def on_test_batch_end(self, batch, logs=None) -> None:
        if not self._called_in_fit:
            self._update(batch, logs)

    def on_predict_batch_end(self, batch, logs=None) -> None:
        self._update(batch, None)

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._finalize(logs)

    def on_test_end(self, logs=None) -> None:
        if not self._called_in_fit:
            self._finalize(logs)

    def on_predict_end(self, logs=None) -> None:
        self._finalize(logs)

    def _reset(self) -> None:
        """A new bar (its clock starts now), as Keras makes one per epoch, evaluation or prediction."""
        self.seen = 0
        self.progbar = None
        self._bar()

    def _bar(self) -> Progbar:
        if self.progbar is None:
            self.progbar = Progbar(self.target, verbose=self.verbose, stream=self.stream)
        return self.progbar

    def _update(self, batch, logs) -> None:
        self.seen = batch + 1
        if self.verbose == 1:
            self._bar().update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize(self, logs) -> None:
        bar = self._bar()
        if self.target is None:
            self.target = self.seen
            bar.target = self.seen
        bar.update(self.target, list((logs or {}).items()), finalize=True)
