"""Learning-rate schedules with Keras 3 semantics: Python objects, encoded for the optimizer kernels.

Mirrors ``keras.optimizers.schedules``: :class:`ExponentialDecay` (``staircase``),
:class:`PiecewiseConstantDecay`, :class:`PolynomialDecay` (``end_learning_rate``, ``power``,
``cycle``), :class:`InverseTimeDecay` (``staircase``), :class:`CosineDecay` (with its optional
linear warm-up to ``warmup_target`` over ``warmup_steps``) and :class:`CosineDecayRestarts`
(SGDR: ``t_mul``, ``m_mul``, ``alpha``). As in Keras, a schedule is called
with the optimizer's ``iterations`` counter *before* the step is counted: the first update uses
``schedule(0)``, the second ``schedule(1)``; and the arithmetic is float32 (Keras converts the
initial rate to a float32 tensor and computes in that dtype), which we reproduce so that the
rates agree bit for bit or within one float32 rounding.

A schedule is encoded for the kernels as a float64 array (``schedule.encode()``): element 0 is
the kind (0 constant, 1 exponential, 2 piecewise, 3 cosine, 4 polynomial, 5 inverse time, 6 cosine
with restarts), the rest its parameters. The
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
KIND_POLYNOMIAL, KIND_INVERSE_TIME, KIND_COSINE_RESTARTS = 4, 5, 6


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


def _check_steps(owner: str, arg: str, value) -> None:
    if value <= 0:
        raise ValueError(f"{owner}: {arg} must be > 0; got {value}")


class _RateDecay(LearningRateSchedule):
    """The arguments ExponentialDecay and InverseTimeDecay share (Keras's names and order)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        _check_steps(self.class_name, "decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = self.class_name if name is None else name

    def encode(self) -> np.ndarray:
        return np.array([self.kind, self.initial_learning_rate, self.decay_steps, self.decay_rate,
                         1.0 if self.staircase else 0.0], np.float64)  # fmt: skip

    def _p(self, step):
        p = F32(step) / F32(self.decay_steps)
        return np.floor(p) if self.staircase else p

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}  # fmt: skip


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored when ``staircase``)."""

    class_name = "ExponentialDecay"
    kind = KIND_EXPONENTIAL

    def reference(self, step) -> float:
        """NumPy float32 reference of the same formula."""
        return float(F32(self.initial_learning_rate) * np.power(F32(self.decay_rate), self._p(step)))


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored when ``staircase``)."""

    class_name = "InverseTimeDecay"
    kind = KIND_INVERSE_TIME

    def reference(self, step) -> float:
        return float(F32(self.initial_learning_rate) / (F32(1.0) + F32(self.decay_rate) * self._p(step)))


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


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - step / decay_steps) ** power + end``, then ``end_learning_rate``; with
    ``cycle``, ``decay_steps`` grows to the first multiple of itself not below ``step``."""

    class_name = "PolynomialDecay"

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):  # fmt: skip
        _check_steps(self.class_name, "decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def encode(self) -> np.ndarray:
        return np.array([KIND_POLYNOMIAL, self.initial_learning_rate, self.decay_steps, self.end_learning_rate,
                         self.power, 1.0 if self.cycle else 0.0], np.float64)  # fmt: skip

    def reference(self, step) -> float:
        s, steps = F32(step), F32(self.decay_steps)
        if self.cycle:
            steps = steps * (F32(1.0) if s == 0 else np.ceil(s / steps))
        else:
            s = min(s, steps)
        end = F32(self.end_learning_rate)
        decayed = np.power(F32(1.0) - s / steps, F32(self.power))
        return float((F32(self.initial_learning_rate) - end) * decayed + end)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}  # fmt: skip


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` (or, after a linear warm-up of ``warmup_steps``,
    from ``warmup_target``) to ``alpha`` times that rate over ``decay_steps``; constant after."""

    class_name = "CosineDecay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):  # fmt: skip
        _check_steps(self.class_name, "decay_steps", decay_steps)
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


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): period ``i`` lasts ``first_decay_steps * t_mul ** i``
    steps and starts from ``initial_learning_rate * m_mul ** i``; each decays to ``alpha`` times that."""

    class_name = "CosineDecayRestarts"

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0,
                 name="SGDRDecay"):  # fmt: skip
        _check_steps(self.class_name, "first_decay_steps", first_decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self.t_mul = t_mul
        self.m_mul = m_mul
        self.alpha = alpha
        self.name = name

    def encode(self) -> np.ndarray:
        return np.array([KIND_COSINE_RESTARTS, self.initial_learning_rate, self.first_decay_steps, self.t_mul,
                         self.m_mul, self.alpha], np.float64)  # fmt: skip

    def reference(self, step) -> float:
        one, t_mul, alpha = F32(1.0), F32(self.t_mul), F32(self.alpha)
        fraction = F32(step) / F32(self.first_decay_steps)
        if t_mul == one:
            i = np.floor(fraction)
            fraction = fraction - i
        else:
            i = np.floor(np.log(one - fraction * (one - t_mul)) / np.log(t_mul))
            fraction = (fraction - (one - np.power(t_mul, i)) / (one - t_mul)) / np.power(t_mul, i)
        decayed = F32(0.5) * np.power(F32(self.m_mul), i) * (one + np.cos(_PI32 * fraction))
        return float(F32(self.initial_learning_rate) * ((one - alpha) * decayed + alpha))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "first_decay_steps": self.first_decay_steps,
                "t_mul": self.t_mul, "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}  # fmt: skip


SCHEDULES = {c.class_name: c for c in (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay,
                                       CosineDecay, CosineDecayRestarts)}  # fmt: skip
_SNAKE = {"exponential_decay": "ExponentialDecay", "piecewise_constant_decay": "PiecewiseConstantDecay",
          "polynomial_decay": "PolynomialDecay", "inverse_time_decay": "InverseTimeDecay",
          "cosine_decay": "CosineDecay", "cosine_decay_restarts": "CosineDecayRestarts"}  # fmt: skip


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
