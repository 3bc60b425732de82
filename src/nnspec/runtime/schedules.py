"""Learning-rate schedules with Keras 3 semantics: Python objects, encoded for the optimizer kernels.

Mirrors ``keras.optimizers.schedules``: :class:`ExponentialDecay`, :class:`PiecewiseConstantDecay`
and :class:`CosineDecay` (with its optional linear warm-up). As in Keras, a schedule is called
with the optimizer's ``iterations`` counter *before* the step is counted: the first update uses
``schedule(0)``, the second ``schedule(1)``; and the arithmetic is float32 (Keras converts the
initial rate to a float32 tensor and computes in that dtype), which we reproduce so that the
rates agree bit for bit or within one float32 rounding.

A schedule is encoded for the kernels as a float64 array (``schedule.encode()``): element 0 is
the kind (0 constant, 1 exponential, 2 piecewise, 3 cosine), the rest its parameters. The
optimizer kernels call ``schedule_lr(array, base_rate, step)`` (in :mod:`.optimizers`, beside the
kernels that call it: Numba's disk cache does not notice a change to a function in another file),
so a whole training step, the rate included, runs in one compiled call.

Python objects: ``schedule(step) -> float`` runs the kernel's formula, ``schedule.reference(step)``
is the NumPy float32 reference; ``get_config()`` / ``from_config()`` round-trip as Keras's do; :func:`get_schedule` reads a Keras-style
``{"class_name": ..., "config": ...}`` dict (with or without ``module``) or ``{"type": ...}``.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32
_PI32 = np.float32(math.pi)

KIND_CONSTANT, KIND_EXPONENTIAL, KIND_PIECEWISE, KIND_COSINE = 0, 1, 2, 3


class LearningRateSchedule:
    """Base class: ``schedule(step)`` gives the rate; ``encode()`` the kernels' array."""

    class_name = "LearningRateSchedule"

    def __call__(self, step) -> float:
        from .optimizers import schedule_lr

        return float(schedule_lr(self.encode(), 0.0, int(step)))

    def encode(self) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def serialize(self) -> dict:
        """Keras's serialized form (``{"module", "class_name", "config", "registered_name"}``)."""
        return {"module": "keras.optimizers.schedules", "class_name": self.class_name,
                "config": self.get_config(), "registered_name": None}  # fmt: skip

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored when ``staircase``)."""

    class_name = "ExponentialDecay"

    def __init__(
        self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"
    ):
        if decay_steps <= 0:
            raise ValueError(f"ExponentialDecay: decay_steps must be > 0; got {decay_steps}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def encode(self) -> np.ndarray:
        return np.array([KIND_EXPONENTIAL, self.initial_learning_rate, self.decay_steps, self.decay_rate,
                         1.0 if self.staircase else 0.0], np.float64)  # fmt: skip

    def reference(self, step) -> float:
        """NumPy float32 reference of the same formula."""
        p = F32(step) / F32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return float(F32(self.initial_learning_rate) * np.power(F32(self.decay_rate), p))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}  # fmt: skip


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` in ``(boundaries[i-1], boundaries[i]]``,
    ``values[-1]`` after the last boundary."""

    class_name = "PiecewiseConstantDecay"

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"PiecewiseConstantDecay: boundaries must have one entry fewer than values; got "
                             f"{len(boundaries)} boundaries and {len(values)} values")  # fmt: skip
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def encode(self) -> np.ndarray:
        n = len(self.boundaries)
        # boundaries are cast to the (integer) step's dtype, as Keras does: truncation
        return np.array([KIND_PIECEWISE, n, *[int(b) for b in self.boundaries], *self.values], np.float64)

    def reference(self, step) -> float:
        step = int(step)
        for b, v in zip(self.boundaries, self.values):
            if step <= int(b):
                return float(F32(v))
        return float(F32(self.values[-1]))

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` (or, after a linear warm-up of ``warmup_steps``,
    from ``warmup_target``) to ``alpha`` times that rate over ``decay_steps``; constant after."""

    class_name = "CosineDecay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):  # fmt: skip
        if decay_steps <= 0:
            raise ValueError(f"CosineDecay: decay_steps must be > 0; got {decay_steps}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_target = warmup_target
        self.warmup_steps = warmup_steps

    def encode(self) -> np.ndarray:
        has_warmup = self.warmup_target is not None
        return np.array([KIND_COSINE, self.initial_learning_rate, self.decay_steps, self.alpha,
                         1.0 if has_warmup else 0.0, self.warmup_target if has_warmup else 0.0,
                         self.warmup_steps], np.float64)  # fmt: skip

    def reference(self, step) -> float:
        s = F32(step)
        decay_steps = F32(self.decay_steps)
        initial = F32(self.initial_learning_rate)

        def decay(s, start):
            decayed = F32(0.5) * (F32(1.0) + np.cos(_PI32 * (s / decay_steps)))
            return float(start * (F32(1.0 - self.alpha) * decayed + F32(self.alpha)))

        if self.warmup_target is None:
            return decay(min(s, decay_steps), initial)
        target, warmup = F32(self.warmup_target), F32(self.warmup_steps)
        s = min(s, decay_steps + warmup)
        if s < warmup:
            return float((target - initial) * (s / warmup) + initial)
        return decay(s - warmup, target)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}  # fmt: skip


SCHEDULES = {c.class_name: c for c in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay)}
_SNAKE = {"exponential_decay": "ExponentialDecay", "piecewise_constant_decay": "PiecewiseConstantDecay",
          "cosine_decay": "CosineDecay"}  # fmt: skip


def get_schedule(identifier) -> LearningRateSchedule:
    """A schedule from an instance, ``{"class_name", "config"}`` (Keras) or ``{"type", ...}`` (nnspec)."""
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            name, config = identifier["class_name"], dict(identifier.get("config") or {})
        elif "type" in identifier:
            config = {k: v for k, v in identifier.items() if k != "type"}
            name = identifier["type"]
        else:
            raise ValueError(f"cannot read a learning-rate schedule from {identifier!r}: expected 'class_name' "
                             "and 'config' keys, or 'type'")  # fmt: skip
        cls = SCHEDULES.get(name) or SCHEDULES.get(_SNAKE.get(str(name), ""))
        if cls is None:
            from ..specs.errors import did_you_mean

            hint = did_you_mean(str(name), [*SCHEDULES, *_SNAKE])
            raise ValueError(f"unknown learning-rate schedule '{name}'; known: {', '.join(SCHEDULES)}"
                             + (f"; {hint}" if hint else ""))  # fmt: skip
        return cls.from_config(config)
    if type(identifier).__name__ in SCHEDULES and hasattr(
        identifier, "get_config"
    ):  # a Keras schedule object
        return SCHEDULES[type(identifier).__name__].from_config(identifier.get_config())
    raise TypeError(f"cannot use {identifier!r} as a learning-rate schedule")
