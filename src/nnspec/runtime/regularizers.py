"""Weight and activity regularizers, and weight constraints, with Keras 3 semantics.

Regularizers (``keras/src/regularizers``): ``l1`` (``l1 * sum(|x|)``), ``l2`` (``l2 * sum(x**2)``)
and ``l1_l2``; a bare name uses Keras's documented default factor 0.01 (``"l1_l2"``: 0.01 and
0.01, as nnspec's model files and Keras's docstring have it; Keras 3.15's own ``get`` does not
know the name ``"l1_l2"`` and its ``L1L2()`` defaults both factors to 0, which a mapping
``{type: l1_l2, l1: ...}`` follows: a factor it leaves out is 0). The penalty of a weight is
added to the loss as is; an *activity* penalty (``activity_regularizer``, the
``ActivityRegularization`` layer) is divided by the batch size (the first axis of the
activation, 0 for an empty batch) as Keras's ``Layer.__call__`` does. Every penalty is part of
the reported loss, in training and in evaluation.

Kernel: ``penalty = l1_l2_penalty(x, g, l1, l2, scale)`` over a flat float32 view ``x``
returns ``scale * (l1 * sum|x| + l2 * sum x^2)`` and *adds* ``scale * (l1 * sign(x) + 2 * l2 * x)``
into ``g`` (``sign(0) = 0``, the gradient autograd gives for ``abs``). Weights: ``scale = 1``,
``g`` the weight's slice of the flat gradient. Activities: ``scale = 1 / batch``, ``g`` the
gradient flowing into the activation.

Constraints (``keras/src/constraints``), applied to a weight after each optimizer update:
``max_norm`` (``max_value=2``, ``axis=0``), ``non_neg``, ``unit_norm`` (``axis=0``),
``min_max_norm`` (``min_value=0``, ``max_value=1``, ``rate=1``, ``axis=0``). Norms are taken
over ``axis`` (an int or a list of axes; they must be adjacent, as in every Keras use) and the
weight is seen as ``(outer, n, inner)``, the norm running over ``n``:
``spec.kernel(w.reshape(spec.view_shape(w.shape)), *spec.args)``; ``apply_constraint`` does it
from Python. Arithmetic is float32 as in Keras: ``w * (desired / (epsilon + norm))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from .numba_config import JIT_OPTIONS

jit = numba.njit(**JIT_OPTIONS)

EPS32 = np.float32(1e-7)
ZERO32 = np.float32(0.0)

# ------------------------------------------------------------------------------------ regularizers


@jit
def l1_l2_penalty(x, g, l1, l2, scale):
    """``scale * (l1 * sum|x| + l2 * sum x^2)``; adds its gradient into ``g`` (same shape as ``x``,
    or empty when nothing upstream needs it: the value still counts in the loss, as in Keras)."""
    s1 = 0.0
    s2 = 0.0
    grad = g.shape[0] > 0
    for i in range(x.shape[0]):
        v = float(x[i])
        s1 += abs(v)
        s2 += v * v
        if grad:
            g[i] += scale * (l1 * np.sign(v) + 2.0 * l2 * v)
    return scale * (l1 * s1 + l2 * s2)


@dataclass(frozen=True)
class RegularizerSpec:
    """A resolved regularizer: ``l1_l2_penalty(x, g, spec.l1, spec.l2, scale)``."""

    name: str
    l1: float
    l2: float
    kernel: object = l1_l2_penalty

    def penalty(self, x) -> float:
        """NumPy reference of the penalty (float64)."""
        x = np.asarray(x, np.float64)
        return float(self.l1 * np.abs(x).sum() + self.l2 * (x * x).sum())

    def gradient(self, x) -> np.ndarray:
        """NumPy reference of d penalty / d x."""
        x = np.asarray(x, np.float64)
        return self.l1 * np.sign(x) + 2.0 * self.l2 * x

    def get_config(self) -> dict:
        if self.name == "l1":
            return {"l1": self.l1}
        if self.name == "l2":
            return {"l2": self.l2}
        return {"l1": self.l1, "l2": self.l2}


_REG_NAMES = {
    "l1": "l1",
    "L1": "l1",
    "l2": "l2",
    "L2": "l2",
    "l1_l2": "l1_l2",
    "l1l2": "l1_l2",
    "L1L2": "l1_l2",
}


def get_regularizer(identifier) -> RegularizerSpec | None:
    """A name (``l1``, ``l2``, ``l1_l2``, Keras class names), ``{type: l1, l1: 0.1}``, Keras's
    ``{"class_name": "L2", "config": {...}}``, a spec, or None."""
    if identifier is None or isinstance(identifier, RegularizerSpec):
        return identifier
    if isinstance(identifier, str):
        kind = _reg_kind(identifier)
        return RegularizerSpec(kind, 0.01 if kind != "l2" else 0.0, 0.01 if kind != "l1" else 0.0)
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            name, config = identifier["class_name"], dict(identifier.get("config") or {})
        elif "type" in identifier:
            name, config = identifier["type"], {k: v for k, v in identifier.items() if k != "type"}
        else:
            raise ValueError(f"cannot read a regularizer from {identifier!r}: expected a 'type' key")
        kind = _reg_kind(name)
        allowed = {"l1": ("l1",), "l2": ("l2",), "l1_l2": ("l1", "l2")}[kind]
        extra = [k for k in config if k not in allowed]
        if extra:
            raise ValueError(f"regularizer '{kind}' takes {' and '.join(allowed)}; got '{extra[0]}'")
        default = 0.01 if kind != "l1_l2" else 0.0  # L1(), L2(): 0.01; L1L2(): 0 and 0 (Keras)
        l1 = _factor(config.get("l1"), default if kind != "l2" else 0.0, "l1")
        l2 = _factor(config.get("l2"), default if kind != "l1" else 0.0, "l2")
        return RegularizerSpec(kind, l1, l2)
    raise TypeError(f"cannot use {identifier!r} as a regularizer")


def _reg_kind(name) -> str:
    kind = _REG_NAMES.get(str(name))
    if kind is None:
        from ..specs.errors import did_you_mean

        hint = did_you_mean(str(name), ["l1", "l2", "l1_l2"])
        raise ValueError(
            f"unknown regularizer '{name}'" + (f"; {hint}" if hint else "; known: l1, l2, l1_l2")
        )
    return kind


def _factor(v, default: float, what: str) -> float:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v) or v < 0:
        raise ValueError(f"regularizer factor {what} must be a non-negative number; got {v!r}")
    return float(v)


def activity_scale(batch: int) -> float:
    """The ``scale`` of an activity penalty: ``1 / batch`` (0 for an empty batch, Keras's divide_no_nan)."""
    return 1.0 / batch if batch else 0.0


# ------------------------------------------------------------------------------------ constraints


@jit
def _norms(w3, o, i):
    acc = 0.0
    for j in range(w3.shape[1]):
        v = float(w3[o, j, i])
        acc += v * v
    return np.float32(math.sqrt(acc))


@jit
def max_norm(w3, max_value):
    """``w * (clip(norm, 0, max_value) / (epsilon + norm))`` along axis 1 of ``w3``."""
    mv = np.float32(max_value)
    for o in range(w3.shape[0]):
        for i in range(w3.shape[2]):
            norm = _norms(w3, o, i)
            f = min(max(norm, ZERO32), mv) / (EPS32 + norm)
            for j in range(w3.shape[1]):
                w3[o, j, i] = w3[o, j, i] * f


@jit
def unit_norm(w3):
    """``w / (epsilon + norm)`` along axis 1 of ``w3``."""
    for o in range(w3.shape[0]):
        for i in range(w3.shape[2]):
            d = EPS32 + _norms(w3, o, i)
            for j in range(w3.shape[1]):
                w3[o, j, i] = w3[o, j, i] / d


@jit
def min_max_norm(w3, min_value, max_value, rate):
    """``w * ((rate * clip(norm, min, max) + (1 - rate) * norm) / (epsilon + norm))``."""
    lo = np.float32(min_value)
    hi = np.float32(max_value)
    r = np.float32(rate)
    one_m_r = np.float32(1.0 - rate)
    for o in range(w3.shape[0]):
        for i in range(w3.shape[2]):
            norm = _norms(w3, o, i)
            desired = r * min(max(norm, lo), hi) + one_m_r * norm
            f = desired / (EPS32 + norm)
            for j in range(w3.shape[1]):
                w3[o, j, i] = w3[o, j, i] * f


@jit
def non_neg(w3):
    """``max(w, 0)``."""
    for o in range(w3.shape[0]):
        for j in range(w3.shape[1]):
            for i in range(w3.shape[2]):
                if w3[o, j, i] < 0:
                    w3[o, j, i] = 0.0


_CONSTRAINTS = {
    "max_norm": (max_norm, (("max_value", 2.0), ("axis", 0))),
    "non_neg": (non_neg, ()),
    "unit_norm": (unit_norm, (("axis", 0),)),
    "min_max_norm": (min_max_norm, (("min_value", 0.0), ("max_value", 1.0), ("rate", 1.0), ("axis", 0))),
}
_CON_NAMES = {"max_norm": "max_norm", "MaxNorm": "max_norm", "non_neg": "non_neg", "NonNeg": "non_neg",
              "unit_norm": "unit_norm", "UnitNorm": "unit_norm", "min_max_norm": "min_max_norm",
              "MinMaxNorm": "min_max_norm"}  # fmt: skip


@dataclass(frozen=True)
class ConstraintSpec:
    """A resolved constraint: ``kernel(w.reshape(view_shape(w.shape)), *args)`` updates ``w`` in place."""

    name: str
    kernel: object
    args: tuple
    axis: object = None  # int, tuple of ints, or None (all axes); unused by non_neg
    config: dict = field(default_factory=dict)

    def view_shape(self, shape) -> tuple:
        """``(outer, n, inner)``: the weight's shape with the norm axes merged into ``n``."""
        shape = tuple(int(d) for d in shape)
        if self.name == "non_neg":
            return (1, int(np.prod(shape)) if shape else 1, 1)
        rank = len(shape)
        axes = range(rank) if self.axis is None else [self.axis] if isinstance(self.axis, int) else self.axis
        norm_axes = sorted({a % rank if rank else 0 for a in axes}) if rank else []
        if not norm_axes:
            return (1, 1, 1)
        if norm_axes != list(range(norm_axes[0], norm_axes[-1] + 1)):
            raise ValueError(f"constraint '{self.name}': axes {self.axis} of a weight of shape {shape} are not "
                             "adjacent; nnspec supports norms over adjacent axes only")  # fmt: skip
        a, b = norm_axes[0], norm_axes[-1] + 1
        return (int(np.prod(shape[:a])), int(np.prod(shape[a:b])), int(np.prod(shape[b:])))

    def reference(self, w) -> np.ndarray:
        """NumPy float32 reference of the constrained weight."""
        w = np.asarray(w, np.float32)
        if self.name == "non_neg":
            return np.maximum(w, np.float32(0))
        w3 = w.reshape(self.view_shape(w.shape))
        norms = np.sqrt((w3.astype(np.float64) ** 2).sum(1, keepdims=True)).astype(np.float32)
        if self.name == "unit_norm":
            return (w3 / (EPS32 + norms)).reshape(w.shape)
        if self.name == "max_norm":
            desired = np.clip(norms, np.float32(0), np.float32(self.args[0]))
        else:
            lo, hi, rate = self.args
            desired = (
                np.float32(rate) * np.clip(norms, np.float32(lo), np.float32(hi))
                + np.float32(1 - rate) * norms
            )
        return (w3 * (desired / (EPS32 + norms))).reshape(w.shape)


def get_constraint(identifier) -> ConstraintSpec | None:
    """A name (``max_norm``, ``non_neg``, ``unit_norm``, ``min_max_norm``, Keras class names), a
    mapping ``{type: max_norm, max_value: 3}`` or Keras's ``{"class_name", "config"}``, a spec, or None."""
    if identifier is None or isinstance(identifier, ConstraintSpec):
        return identifier
    if isinstance(identifier, str):
        name, config = identifier, {}
    elif isinstance(identifier, dict):
        if "class_name" in identifier:
            name, config = identifier["class_name"], dict(identifier.get("config") or {})
        elif "type" in identifier:
            name, config = identifier["type"], {k: v for k, v in identifier.items() if k != "type"}
        else:
            raise ValueError(f"cannot read a constraint from {identifier!r}: expected a 'type' key")
    else:
        raise TypeError(f"cannot use {identifier!r} as a constraint")
    kind = _CON_NAMES.get(str(name))
    if kind is None:
        from ..specs.errors import did_you_mean

        hint = did_you_mean(str(name), list(_CONSTRAINTS))
        raise ValueError(
            f"unknown constraint '{name}'" + (f"; {hint}" if hint else f"; known: {', '.join(_CONSTRAINTS)}")
        )
    kernel, params = _CONSTRAINTS[kind]
    known = dict(params)
    extra = [k for k in config if k not in known]
    if extra:
        raise ValueError(f"constraint '{kind}' takes {', '.join(known) or 'no arguments'}; got '{extra[0]}'")
    values = {k: config.get(k, d) for k, d in params}
    for k, v in values.items():
        if v is None and k != "axis":
            values[k] = known[k]
    axis = values.pop("axis", None)
    if isinstance(axis, list):
        axis = tuple(axis)
    args = tuple(float(v) for v in values.values())
    return ConstraintSpec(kind, kernel, args, axis, {**values, **({"axis": axis} if "axis" in known else {})})


def apply_constraint(spec, w: np.ndarray) -> np.ndarray:
    """Constrain the float32 array ``w`` in place (and return it)."""
    spec = get_constraint(spec)
    w3 = w.reshape(spec.view_shape(w.shape))
    if not np.shares_memory(w3, w):
        raise ValueError("apply_constraint needs a contiguous float32 array")
    spec.kernel(w3, *spec.args)
    return w
