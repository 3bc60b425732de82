"""Activation functions: Keras 3's definitions, a NumPy reference and one Numba kernel.

Every Keras activation name that keeps its input's shape maps to a small integer code; layers
with an ``activation`` attribute (Dense, Conv*, recurrent layers) call :func:`apply_activation`
on their output with that code, in place, over a 2-D view (rows, features): softmax-like
activations act on the last axis. Constants follow Keras 3: ``leaky_relu`` slope 0.2,
``elu``/``celu`` alpha 1, ``selu``'s alpha and scale, ``hard_sigmoid = relu6(x + 3) / 6``,
exact-erf ``gelu``, ``hard_shrink``/``soft_shrink`` threshold 0.5, ``squareplus`` b = 4.

Two Keras names are special (checked against Keras 3.15 on PyTorch):

- ``glu`` splits the last axis in two halves ``a, b`` and returns ``a * sigmoid(b)``: the output
  has half the features. Keras's own shape inference does not know that (it reports the input's
  shape, so a layer built after it gets the wrong weights), which makes the fused form
  (``Dense(activation="glu")``) a trap; nnspec accepts ``glu`` only in the ``Activation`` layer,
  whose shape rule halves the last axis (so nnspec's summary shows the halved shape where
  Keras's shows the input's), and refuses it as a fused activation (layers call
  :func:`check_fused` in their shape rule).
- ``threshold`` needs ``threshold`` and ``default_value`` arguments that Keras's string form
  cannot give: Keras fails when the layer runs. nnspec refuses it everywhere, at shape checking.

``sparsemax`` follows Keras 3.15 exactly, which is not the textbook function: Keras takes the
threshold as ``tau = (sum of the cumulative sums over the support - 1) / k`` where Martins &
Astudillo use the k-th cumulative sum alone, so its outputs do not sum to 1 once two or more
entries are in the support (keras-team/keras#23425; the fix, #23469, is not in the Keras 3.15.1
installed here).
``SPARSEMAX_KERAS_315`` selects that behaviour; set it to False for the textbook function.
"""

from __future__ import annotations

import math

np = None  # NumPy, bound by nnspec.layerdefs.base.bind_numpy when kernels are needed
# Called by kernels: compiled in place by the runtime.
KERNEL_HELPERS = (
    "_softplus", "_sigmoid", "_tanh", "_act_scalar", "_exp_nonpositive", "_softmax_row", "_sparsemax_row", "activation_forward",
    "apply_activation", "_act_grad_scalar", "_sparsemax_backward_row", "activation_backward",
)  # fmt: skip

CODES = {
    "linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4, "softplus": 5, "softsign": 6,
    "elu": 7, "selu": 8, "exponential": 9, "gelu": 10, "hard_sigmoid": 11, "hard_silu": 12,
    "hard_swish": 12, "silu": 13, "swish": 13, "mish": 14, "leaky_relu": 15, "relu6": 16,
    "log_softmax": 17, "log_sigmoid": 18, "celu": 19, "hard_shrink": 20, "soft_shrink": 21,
    "hard_tanh": 22, "sparse_plus": 23, "sparse_sigmoid": 24, "squareplus": 25, "tanh_shrink": 26,
    "sparsemax": 27,
}  # fmt: skip
GLU = 28  # the Activation layer's code for glu (not a fused activation: it halves the last axis)
ROW_WISE = ("softmax", "log_softmax", "sparsemax", "glu")  # act on the whole last axis

UNSUPPORTED = {
    "glu": "halves the last axis, which Keras's own shape inference ignores; use an Activation layer "
    "with activation glu after this layer",
    "threshold": "needs threshold and default_value arguments that Keras's string form cannot give "
    "(Keras fails when the layer runs)",
}

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SPARSEMAX_KERAS_315 = True  # see the module docstring


def code(name: str | None) -> int:
    """The kernel code of a fused activation (``linear`` for None)."""
    name = name or "linear"
    if name in UNSUPPORTED:
        raise ValueError(f"activation {name!r} cannot be fused into a layer: it {UNSUPPORTED[name]}")
    return CODES[name]


def check_fused(name: str | None, layer: str) -> None:
    """Raise ShapeError when ``name`` cannot be a layer's fused ``activation``."""
    if name in UNSUPPORTED:
        from .base import ShapeError

        raise ShapeError(f"{layer} cannot take activation {name!r}: it {UNSUPPORTED[name]}")


# ----------------------------------------------------------------------------- kernel


def _softplus(v):
    # log(1 + exp(v)) without overflow: max(v, 0) + log1p(t), t = exp(-|v|). log(1 + t) is
    # accurate to float32 precision for t >= 1e-8 and faster than log1p; below, log1p(t) = t.
    t = math.exp(-abs(v))
    return max(v, 0.0) + (t if t < 1e-8 else math.log(1.0 + t))


def _sigmoid(v):
    # In float64, exp(-v) overflows to inf for v < -709 and 1 / inf is 0: no branch needed,
    # which matters (a branch on the sign mispredicts half the time on real data).
    return 1.0 / (1.0 + math.exp(-v))


def _tanh(v):
    # (1 - e) / (1 + e) with e = exp(-2|v|): about 4x faster than math.tanh here, within 3e-8
    # of it; a short series below |v| = 1e-3, where 1 - e would lose relative precision.
    a = abs(v)
    if a < 1e-3:
        t = a * (1.0 - a * a / 3.0)
    else:
        e = math.exp(-2.0 * a)
        t = (1.0 - e) / (1.0 + e)
    return t if v >= 0 else -t


def _act_scalar(v, code):
    """One element of an element-wise activation (codes other than 0, 4, 17, 27)."""
    if code == 1:
        return max(v, 0.0)
    if code == 2:
        return _sigmoid(v)
    if code == 3:
        return _tanh(v)
    if code == 5:
        return _softplus(v)
    if code == 6:
        return v / (1.0 + abs(v))
    if code == 7:
        return v if v > 0 else math.expm1(v)
    if code == 8:
        return SELU_SCALE * (v if v > 0 else SELU_ALPHA * math.expm1(v))
    if code == 9:
        return math.exp(v)
    if code == 10:
        return 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
    if code == 11:
        return min(max(v + 3.0, 0.0), 6.0) / 6.0
    if code == 12:
        return v * min(max(v + 3.0, 0.0), 6.0) / 6.0
    if code == 13:
        return v * _sigmoid(v)
    if code == 14:
        return v * _tanh(_softplus(v))
    if code == 15:
        return v if v >= 0 else 0.2 * v
    if code == 16:
        return min(max(v, 0.0), 6.0)
    if code == 18:
        return -_softplus(-v)
    if code == 19:
        return max(v, 0.0) + min(0.0, math.expm1(v))
    if code == 20:
        return v if abs(v) > 0.5 else 0.0
    if code == 21:
        return v - 0.5 if v > 0.5 else (v + 0.5 if v < -0.5 else 0.0)
    if code == 22:
        return min(max(v, -1.0), 1.0)
    if code == 23:
        return 0.0 if v <= -1.0 else (v if v >= 1.0 else (v + 1.0) * (v + 1.0) * 0.25)
    if code == 24:
        return 0.0 if v <= -1.0 else (1.0 if v >= 1.0 else (v + 1.0) * 0.5)
    if code == 25:
        return (v + math.sqrt(v * v + 4.0)) * 0.5
    if code == 26:
        return v - _tanh(v)
    return v


def _exp_nonpositive(v):
    """``exp(v)`` for ``v <= 0`` (a softmax's ``x - max``) as a float64 within ~1e-13 relative,
    so correctly rounded once stored in float32 (measured: within 0.5 ulp over [-30, 0], where
    libm's expf is within 0.5015), NaN for NaN. Branch-free arithmetic: exp(v / 1024) by its
    Taylor series to degree 9 (error < 3e-17 for |v / 1024| <= 0.1), squared 10 times (x 1024
    relative error), so a loop over a row vectorizes; libm's expf is a call per element (2.3 ns
    here against 1 ns). Below -104 a float32 result is 0 either way."""
    z = np.float64(v)
    z = z if not (z < -104.0) else -104.0  # written so that NaN passes through
    y = z * (1.0 / 1024.0)
    p = 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (
        1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0 + y * (1.0 / 362880.0)))))))))
    for _ in range(10):
        p = p * p
    return p


def _softmax_row(x, y, r, cols, log):
    # One exp per element: y holds exp(x - max) until it is scaled. x[r, c] is read before
    # y[r, c] is written, so y may be x. The exponentials are one loop (it vectorizes) and
    # their sum, in float64 and in order, another.
    mx = x[r, 0]
    for c in range(1, cols):
        mx = max(mx, x[r, c])
    s = 0.0
    if log:
        for c in range(cols):
            s += _exp_nonpositive(x[r, c] - mx)
        sub = mx + math.log(s)
        for c in range(cols):
            y[r, c] = x[r, c] - sub
    else:
        for c in range(cols):
            y[r, c] = _exp_nonpositive(x[r, c] - mx)
        for c in range(cols):
            s += y[r, c]
        inv = 1.0 / s
        for c in range(cols):
            y[r, c] = y[r, c] * inv


def _sparsemax_row(x, y, r, cols, z, keras315):
    for c in range(cols):
        z[c] = x[r, c]
    zs = np.sort(z)  # ascending: walk it from the end
    cum = 0.0
    k = 0
    acc = 0.0  # Keras 3.15: the sum of the cumulative sums over the support
    cum_k = 0.0  # textbook: the cumulative sum at the last index of the support
    for j in range(cols):
        v = zs[cols - 1 - j]
        cum += v
        if v - (cum - 1.0) / (j + 1) > 0:
            k += 1
            acc += cum
            cum_k = cum
    tau = ((acc if keras315 else cum_k) - 1.0) / k
    for c in range(cols):
        y[r, c] = max(z[c] - tau, 0.0)


def activation_forward(x, y, code):
    """``y = act(x)`` over 2-D (rows, features) arrays; ``y`` may be ``x`` itself (in place).

    For glu (``GLU``), ``y`` has half of ``x``'s columns; in place is still safe, since an
    element is written only after every element of ``x`` at or before its position is read.
    """
    rows = x.shape[0]
    cols = x.shape[1]
    if code == 0:
        for r in range(rows):
            for c in range(cols):
                y[r, c] = x[r, c]
    elif code == 4 or code == 17:
        if cols > 0:
            for r in range(rows):
                _softmax_row(x, y, r, cols, code == 17)
    elif code == 27:
        if cols > 0:
            z = np.empty(cols, np.float64)
            for r in range(rows):
                _sparsemax_row(x, y, r, cols, z, SPARSEMAX_KERAS_315)
    elif code == 28:
        h = cols // 2
        for r in range(rows):
            for c in range(h):
                y[r, c] = x[r, c] * _sigmoid(x[r, c + h])
    # The common codes get a loop each: going through _act_scalar's chain of tests costs about
    # half as much again per element (measured on sigmoid: 6.7 ms against 4.4 per 1e6 values).
    elif code == 1:
        for r in range(rows):
            for c in range(cols):
                y[r, c] = max(x[r, c], 0.0)  # NaN stays NaN, as in Keras
    elif code == 2:
        for r in range(rows):
            for c in range(cols):
                y[r, c] = _sigmoid(x[r, c])
    elif code == 3:
        for r in range(rows):
            for c in range(cols):
                y[r, c] = _tanh(x[r, c])
    elif code == 13:
        for r in range(rows):
            for c in range(cols):
                v = x[r, c]
                y[r, c] = v * _sigmoid(v)
    elif code == 10:
        for r in range(rows):
            for c in range(cols):
                v = x[r, c]
                y[r, c] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
    else:
        for r in range(rows):
            for c in range(cols):
                y[r, c] = _act_scalar(x[r, c], code)


def apply_activation(y, code):
    """Apply activation ``code`` in place to the 2-D float32 array ``y`` (rows, features)."""
    if code != 0:
        activation_forward(y, y, code)


# ----------------------------------------------------------------------------- backward
#
# ``activation_backward`` gives ``dy * act'(x)``. Where the derivative is a function of the output
# it is computed from ``y`` alone (relu, sigmoid, tanh, softmax, log_softmax, elu, selu, celu,
# softplus, softsign, log_sigmoid, exponential, the piecewise-linear ones, sparse_plus,
# squareplus...); the others need the input ``x``, which a layer with a fused activation must
# keep for the backward pass (``needs_input``). At the kinks the derivative is PyTorch's for the
# function Keras calls (Keras 3 on its PyTorch backend under autograd): relu'(0) = 0,
# leaky_relu'(0) = 0.2, relu6, hard_tanh and hard_sigmoid 0 at both ends, hard_shrink and
# soft_shrink 0 at +-0.5, hard_silu 0 at -3 and 1 at 3, sparse_plus 0 at -1, sparse_sigmoid
# 0 at +-1, sparsemax's clamp passing the gradient where ``x - tau >= 0``.

# Codes whose derivative needs the activation's input (the rest read the output).
_NEEDS_INPUT = ("gelu", "hard_silu", "silu", "mish", "tanh_shrink", "sparsemax")


def needs_input(code: int) -> bool:
    """Whether ``activation_backward`` for ``code`` reads the input ``x`` (else only ``y``)."""
    return code == GLU or any(CODES[n] == code for n in _NEEDS_INPUT)


def _act_grad_scalar(x, y, code):
    """``act'`` at one element of an element-wise activation, from its output ``y`` (and its
    input ``x`` for the codes ``needs_input`` names)."""
    if code == 1:
        return 1.0 if y > 0 else 0.0
    if code == 2:
        return y * (1.0 - y)
    if code == 3:
        return 1.0 - y * y
    if code == 5:  # sigmoid(x) = 1 - exp(-softplus(x))
        return -math.expm1(-y)
    if code == 6:  # 1 / (1 + |x|)^2 = (1 - |y|)^2
        a = 1.0 - abs(y)
        return a * a
    if code == 7 or code == 19:  # elu, celu (alpha 1): exp(x) = y + 1 below 0
        return 1.0 if y > 0 else y + 1.0
    if code == 8:
        return SELU_SCALE if y > 0 else y + SELU_SCALE * SELU_ALPHA
    if code == 9:
        return y
    if code == 10:
        return (
            0.5 * (1.0 + math.erf(x * 0.7071067811865476)) + x * math.exp(-0.5 * x * x) * 0.3989422804014327
        )
    if code == 11:
        return 1.0 / 6.0 if (y > 0 and y < 1) else 0.0
    if code == 12:  # PyTorch's hardswish backward: 0 up to -3, 1 from 3 on
        if x <= -3.0:
            return 0.0
        if x < 3.0:
            return x / 3.0 + 0.5
        return 1.0
    if code == 13:
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if code == 14:
        t = _tanh(_softplus(x))
        return t + x * (1.0 - t * t) * _sigmoid(x)
    if code == 15:
        return 1.0 if y > 0 else 0.2
    if code == 16:
        return 1.0 if (y > 0 and y < 6) else 0.0
    if code == 18:  # sigmoid(-x) = 1 - exp(log_sigmoid(x))
        return -math.expm1(y)
    if code == 20 or code == 21:
        return 1.0 if y != 0 else 0.0
    if code == 22:
        return 1.0 if (y > -1 and y < 1) else 0.0
    if code == 23:  # (x + 1) / 2 = sqrt(y) inside (-1, 1)
        return math.sqrt(y) if y < 1 else 1.0
    if code == 24:
        return 0.5 if (y > 0 and y < 1) else 0.0
    if code == 25:  # (1 + x / sqrt(x^2 + 4)) / 2 = y^2 / (y^2 + 1)
        return y * y / (y * y + 1.0)
    if code == 26:
        t = _tanh(x)
        return t * t
    return 1.0


def _sparsemax_backward_row(x, y, dy, dx, r, cols, z, w, keras315, accumulate):
    """One row of sparsemax's backward: ``dx = active * dy - w * sum(active * dy)``, ``active``
    where ``x - tau >= 0`` and ``w = dtau/dx`` (``(k - rank + 1) / k`` over the support for
    Keras 3.15's tau, ``1 / k`` for the textbook one; rank 1 is the largest entry)."""
    for c in range(cols):
        z[c] = x[r, c]
    order = np.argsort(-z, kind="mergesort")
    cum = 0.0
    k = 0
    acc = 0.0
    cum_k = 0.0
    for j in range(cols):
        v = z[order[j]]
        cum += v
        if v - (cum - 1.0) / (j + 1) > 0:
            k += 1
            acc += cum
            cum_k = cum
    tau = ((acc if keras315 else cum_k) - 1.0) / k
    for c in range(cols):
        w[c] = 0.0
    for j in range(k):
        w[order[j]] = (k - j) / k if keras315 else 1.0 / k
    g = 0.0
    for c in range(cols):
        if z[c] - tau >= 0:
            g += dy[r, c]
    for c in range(cols):
        v = (dy[r, c] if z[c] - tau >= 0 else 0.0) - w[c] * g
        if accumulate:
            dx[r, c] += v
        else:
            dx[r, c] = v


def activation_backward(x, y, dy, dx, code, accumulate):
    """``dx = dy * act'(x)`` (``accumulate``: ``dx += ...``) over 2-D (rows, features) arrays.

    ``y`` is the forward output; ``x`` the forward input, read only for the codes that
    ``needs_input`` names (pass ``y`` in its place otherwise). Softmax-like codes act on whole
    rows. ``dx`` may be ``dy`` itself (not for glu, whose ``x`` and ``dx`` have twice ``y``'s
    columns)."""
    rows = dy.shape[0]
    cols = dy.shape[1]
    if code == 4 or code == 17:
        for r in range(rows):
            s = 0.0
            if code == 4:
                for c in range(cols):
                    s += dy[r, c] * y[r, c]
            else:
                for c in range(cols):
                    s += dy[r, c]
            for c in range(cols):
                if code == 4:
                    v = y[r, c] * (dy[r, c] - s)
                else:
                    v = dy[r, c] - math.exp(y[r, c]) * s
                if accumulate:
                    dx[r, c] += v
                else:
                    dx[r, c] = v
    elif code == 27:
        if cols > 0:
            z = np.empty(cols, np.float64)
            w = np.empty(cols, np.float64)
            for r in range(rows):
                _sparsemax_backward_row(x, y, dy, dx, r, cols, z, w, SPARSEMAX_KERAS_315, accumulate)
    elif code == 28:
        for r in range(rows):
            for c in range(cols):
                s = _sigmoid(x[r, c + cols])
                g = dy[r, c]
                da = g * s
                db = g * x[r, c] * s * (1.0 - s)
                if accumulate:
                    dx[r, c] += da
                    dx[r, c + cols] += db
                else:
                    dx[r, c] = da
                    dx[r, c + cols] = db
    elif code == 0:
        for r in range(rows):
            for c in range(cols):
                if accumulate:
                    dx[r, c] += dy[r, c]
                else:
                    dx[r, c] = dy[r, c]
    elif code == 1:
        for r in range(rows):
            for c in range(cols):
                v = dy[r, c] if y[r, c] > 0 else 0.0
                if accumulate:
                    dx[r, c] += v
                else:
                    dx[r, c] = v
    # The common smooth codes get a loop each, as in activation_forward.
    elif code == 2 or code == 3:
        for r in range(rows):
            for c in range(cols):
                o = y[r, c]
                d = o * (1.0 - o) if code == 2 else 1.0 - o * o
                if accumulate:
                    dx[r, c] += dy[r, c] * d
                else:
                    dx[r, c] = dy[r, c] * d
    elif code == 10:
        # Phi(x) = y / x saves the erf of the textbook derivative Phi(x) + x * phi(x).
        for r in range(rows):
            for c in range(cols):
                v = x[r, c]
                if abs(v) < 1e-3:
                    cdf = 0.5 + 0.3989422804014327 * v
                else:
                    cdf = y[r, c] / v
                d = cdf + v * math.exp(-0.5 * v * v) * 0.3989422804014327
                if accumulate:
                    dx[r, c] += dy[r, c] * d
                else:
                    dx[r, c] = dy[r, c] * d
    else:
        for r in range(rows):
            for c in range(cols):
                v = dy[r, c] * _act_grad_scalar(x[r, c], y[r, c], code)
                if accumulate:
                    dx[r, c] += v
                else:
                    dx[r, c] = v


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
        return _sparsemax_reference(x, SPARSEMAX_KERAS_315)
    if name == "glu":
        a, b = np.split(x, 2, axis=-1)
        return a / (1 + np.exp(-b))
    raise ValueError(f"activation {name!r} has no reference ({UNSUPPORTED.get(name, 'unknown')})")


def _sparsemax_reference(x, keras315: bool):
    """Sparsemax over the last axis: sort descending, find the support, shift, clip at 0."""
    z = -np.sort(-x, axis=-1)
    k = np.arange(1, x.shape[-1] + 1)
    cum = np.cumsum(z, axis=-1)
    support = z - (cum - 1) / k > 0
    size = support.sum(axis=-1, keepdims=True)
    if keras315:
        total = np.where(support, cum, 0).sum(axis=-1, keepdims=True)
    else:
        total = np.take_along_axis(cum, size - 1, axis=-1)
    return np.maximum(x - (total - 1) / size, 0)
