"""Activation functions: Keras 3's definitions, a NumPy reference and one Numba kernel.

Every Keras activation name maps to a small integer code; layers with an ``activation``
attribute (Dense, Conv*, recurrent layers) call :func:`apply_activation` on their output with
that code, in place, over a 2-D view (rows, features): softmax-like activations act on the
last axis. Constants follow Keras 3: ``leaky_relu`` slope 0.2, ``elu``/``celu`` alpha 1,
``selu``'s alpha and scale, ``hard_sigmoid = relu6(x + 3) / 6``, exact-erf ``gelu``,
``hard_shrink``/``soft_shrink`` threshold 0.5, ``squareplus`` b = 4.

``glu`` halves the last axis and ``threshold`` needs arguments Keras's string form cannot
give; neither is accepted as a fused activation (the shape rules say so).
"""

from __future__ import annotations

import math

np = None  # NumPy, bound by nnspec.layerdefs.base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_softplus", "_sigmoid", "apply_activation")  # called by kernels: compiled in place by the runtime

CODES = {
    "linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4, "softplus": 5, "softsign": 6,
    "elu": 7, "selu": 8, "exponential": 9, "gelu": 10, "hard_sigmoid": 11, "hard_silu": 12,
    "hard_swish": 12, "silu": 13, "swish": 13, "mish": 14, "leaky_relu": 15, "relu6": 16,
    "log_softmax": 17, "log_sigmoid": 18, "celu": 19, "hard_shrink": 20, "soft_shrink": 21,
    "hard_tanh": 22, "sparse_plus": 23, "sparse_sigmoid": 24, "squareplus": 25, "tanh_shrink": 26,
    "sparsemax": 27,
}  # fmt: skip

UNSUPPORTED = {"glu": "halves the last axis", "threshold": "needs threshold and default_value arguments"}

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def code(name: str | None) -> int:
    return CODES[name or "linear"]


# ----------------------------------------------------------------------------- kernel


def _softplus(v):
    # log(1 + exp(v)) without overflow: max(v, 0) + log1p(exp(-|v|))
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def apply_activation(y, code):
    """Apply activation ``code`` in place to the 2-D float32 array ``y`` (rows, features)."""
    if code == 0:
        return
    rows, cols = y.shape
    if code == 4 or code == 17:  # softmax, log_softmax over the last axis
        for r in range(rows):
            mx = y[r, 0]
            for c in range(1, cols):
                if y[r, c] > mx:
                    mx = y[r, c]
            s = 0.0
            for c in range(cols):
                s += math.exp(y[r, c] - mx)
            if code == 4:
                inv = 1.0 / s
                for c in range(cols):
                    y[r, c] = math.exp(y[r, c] - mx) * inv
            else:
                ls = math.log(s)
                for c in range(cols):
                    y[r, c] = y[r, c] - mx - ls
        return
    if code == 27:  # sparsemax over the last axis (Martins & Astudillo, sort-based)
        z = np.empty(cols, np.float64)
        for r in range(rows):
            for c in range(cols):
                z[c] = y[r, c]
            zs = np.sort(z)[::-1]
            cum = 0.0
            k_sel = 0
            cum_sel = 0.0
            for k in range(cols):
                cum += zs[k]
                if 1.0 + (k + 1) * zs[k] > cum:
                    k_sel = k + 1
                    cum_sel = cum
            tau = (cum_sel - 1.0) / k_sel
            for c in range(cols):
                y[r, c] = max(z[c] - tau, 0.0)
        return
    for r in range(rows):
        for c in range(cols):
            v = y[r, c]
            if code == 1:
                out = v if v > 0 else 0.0
            elif code == 2:
                out = _sigmoid(v)
            elif code == 3:
                out = math.tanh(v)
            elif code == 5:
                out = _softplus(v)
            elif code == 6:
                out = v / (1.0 + abs(v))
            elif code == 7:
                out = v if v > 0 else math.expm1(v)
            elif code == 8:
                out = SELU_SCALE * (v if v > 0 else SELU_ALPHA * math.expm1(v))
            elif code == 9:
                out = math.exp(v)
            elif code == 10:
                out = 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))
            elif code == 11:
                out = min(max(v + 3.0, 0.0), 6.0) / 6.0
            elif code == 12:
                out = v * min(max(v + 3.0, 0.0), 6.0) / 6.0
            elif code == 13:
                out = v * _sigmoid(v)
            elif code == 14:
                out = v * math.tanh(_softplus(v))
            elif code == 15:
                out = v if v >= 0 else 0.2 * v
            elif code == 16:
                out = min(max(v, 0.0), 6.0)
            elif code == 18:
                out = -_softplus(-v)
            elif code == 19:
                out = max(v, 0.0) + min(0.0, math.expm1(v))
            elif code == 20:
                out = v if abs(v) > 0.5 else 0.0
            elif code == 21:
                out = v - 0.5 if v > 0.5 else (v + 0.5 if v < -0.5 else 0.0)
            elif code == 22:
                out = min(max(v, -1.0), 1.0)
            elif code == 23:
                out = 0.0 if v <= -1.0 else (v if v >= 1.0 else (v + 1.0) * (v + 1.0) / 4.0)
            elif code == 24:
                out = 0.0 if v <= -1.0 else (1.0 if v >= 1.0 else (v + 1.0) / 2.0)
            elif code == 25:
                out = (v + math.sqrt(v * v + 4.0)) / 2.0
            elif code == 26:
                out = v - math.tanh(v)
            else:
                out = v
            y[r, c] = out


# ----------------------------------------------------------------------------- reference


def reference(name: str | None, x):
    """Plain NumPy (float64-friendly) version of activation ``name`` over the last axis."""
    name = name or "linear"
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name in ("softmax", "log_softmax"):
        z = x - x.max(axis=-1, keepdims=True)
        ls = np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return np.exp(z - ls) if name == "softmax" else z - ls
    if name == "softplus":
        return np.logaddexp(0, x)
    if name == "softsign":
        return x / (1 + np.abs(x))
    if name == "elu":
        return np.where(x > 0, x, np.expm1(x))
    if name == "selu":
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))
    if name == "exponential":
        return np.exp(x)
    if name == "gelu":
        from math import erf

        return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))
    if name == "hard_sigmoid":
        return np.clip(x + 3, 0, 6) / 6
    if name in ("hard_silu", "hard_swish"):
        return x * np.clip(x + 3, 0, 6) / 6
    if name in ("silu", "swish"):
        return x / (1 + np.exp(-x))
    if name == "mish":
        return x * np.tanh(np.logaddexp(0, x))
    if name == "leaky_relu":
        return np.where(x >= 0, x, 0.2 * x)
    if name == "relu6":
        return np.clip(x, 0, 6)
    if name == "log_sigmoid":
        return -np.logaddexp(0, -x)
    if name == "celu":
        return np.maximum(x, 0) + np.minimum(0, np.expm1(x))
    if name == "hard_shrink":
        return np.where(np.abs(x) > 0.5, x, 0)
    if name == "soft_shrink":
        return np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0))
    if name == "hard_tanh":
        return np.clip(x, -1, 1)
    if name == "sparse_plus":
        return np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4))
    if name == "sparse_sigmoid":
        return np.where(x <= -1, 0, np.where(x >= 1, 1, (x + 1) / 2))
    if name == "squareplus":
        return (x + np.sqrt(x * x + 4)) / 2
    if name == "tanh_shrink":
        return x - np.tanh(x)
    if name == "sparsemax":
        z = np.sort(x, axis=-1)[..., ::-1]
        k = np.arange(1, x.shape[-1] + 1)
        cum = np.cumsum(z, axis=-1)
        support = 1 + k * z > cum
        k_sel = support.sum(axis=-1, keepdims=True)
        tau = (np.take_along_axis(cum, k_sel - 1, axis=-1) - 1) / k_sel
        return np.maximum(x - tau, 0)
    raise ValueError(f"activation {name!r} has no reference ({UNSUPPORTED.get(name, 'unknown')})")
