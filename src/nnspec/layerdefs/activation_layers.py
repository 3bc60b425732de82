"""Activation layers with arguments (Keras's "activation layers" catalog): ReLU, LeakyReLU,
PReLU, ELU and Softmax. The plain ``Activation`` layer, which takes only a function's name, is
in core.py.

Each follows Keras 3's formula exactly, including its corners: ``ReLU`` keeps ``x`` where
``x > threshold`` (else 0), clips to ``[0, max_value]`` only when a ``max_value`` is given,
then subtracts
``negative_slope * relu(threshold - x)``; ``PReLU`` learns one slope per entry of the input
(axes in ``shared_axes`` share theirs); ``Softmax`` normalizes over ``axis``. Keras's Softmax
adds ``(1 - mask) * -1e9`` to a masked input, which fails for every masked value a model can
feed it (a ``(batch, steps)`` mask against a ``(batch, steps, features)`` input), so a masked
input is refused here, with that reason.
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape, same_type
from .core import NO_GRAD

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_relu_value", "_relu_grad", "_alpha_offset")


# ----------------------------------------------------------------------------- ReLU, LeakyReLU


def _relu_value(v, max_value, has_max, slope, threshold):
    p = v if v > threshold else 0.0
    if has_max:
        p = min(max(p, 0.0), max_value)
    q = threshold - v
    if slope != 0.0 and q > 0.0:
        p -= slope * q
    return p


def _relu_grad(v, max_value, has_max, slope, threshold):
    """The derivative PyTorch's autograd gives for Keras's composition (keras.activations.relu),
    kinks included: with only a slope it is leaky_relu (the slope at 0); otherwise relu or
    ``where(x > threshold, x, 0)``, then relu6 for max_value 6 without threshold (0 at 6) or a
    clip (1 at its bounds), minus ``slope * relu(threshold - x)`` (0 at the threshold)."""
    if slope != 0.0 and not has_max and threshold == 0.0:
        return 1.0 if v > 0.0 else slope
    g = 0.0
    if v > threshold:
        if not has_max:
            g = 1.0
        elif threshold == 0.0 and max_value == 6.0:
            g = 1.0 if v < 6.0 else 0.0
        elif v <= max_value:
            g = 1.0
    if slope != 0.0 and threshold - v > 0.0:
        g += slope
    return g


def relu_forward(x, y, max_value, has_max, slope, threshold):
    """``y = relu(x)`` with Keras's arguments, on 2-D views."""
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            y[r, c] = _relu_value(x[r, c], max_value, has_max, slope, threshold)


def relu_backward(x, dy, dx, max_value, has_max, slope, threshold):
    """``dx += relu'(x) * dy``."""
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            dx[r, c] += _relu_grad(x[r, c], max_value, has_max, slope, threshold) * dy[r, c]


def _relu_args(attrs, name: str) -> tuple:
    if name == "LeakyReLU":
        return 0.0, False, float(attrs["negative_slope"]), 0.0
    mv = attrs["max_value"]
    return (
        (0.0 if mv is None else float(mv)),
        mv is not None,
        float(attrs["negative_slope"]),
        float(attrs["threshold"]),
    )


def _relu_emit(name: str):
    def emit(e):
        (xs,) = e.x_shapes
        x2 = e.flat2(e.x[0], xs, e.rows())
        y2 = e.flat2(e.y[0], xs, e.rows(output=True))
        return [e.call(relu_forward, x2, y2, *_relu_args(e.attrs, name))]

    return emit


def _relu_backward(name: str):
    def backward(e):
        if e.dx[0] is None:
            return []
        (xs,) = e.x_shapes
        rows = e.rows()
        args = (e.flat2(e.x[0], xs, rows), e.flat2(e.dy[0], xs, rows), e.flat2(e.dx[0], xs, rows))
        return [e.call(relu_backward, *args, *_relu_args(e.attrs, name))]

    return backward


def _relu_reference(name: str):
    def reference(attrs, inputs, params, masks=None):
        import numpy

        mv, has_max, slope, thr = _relu_args(attrs, name)
        x = numpy.asarray(inputs[0], numpy.float64)
        p = numpy.where(x > thr, x, 0.0)
        if has_max:
            p = numpy.clip(p, 0.0, mv)
        p = p - slope * numpy.maximum(thr - x, 0.0)
        return [p]

    return reference


RELU = LayerDef(
    name="ReLU",
    attrs=(
        Attr("max_value", "float", None, "Largest output (null: no limit).", minimum=0.0, nullable=True),
        Attr("negative_slope", "float", 0.0, "Slope below the threshold.", minimum=0.0),
        Attr(
            "threshold",
            "float",
            0.0,
            "Inputs above it pass; below it the negative slope applies.",
            minimum=0.0,
        ),
        *COMMON_ATTRS,
    ),
    infer=same_type,
    emit=_relu_emit("ReLU"),
    emit_backward=_relu_backward("ReLU"),
    reference=_relu_reference("ReLU"),
    positional=("max_value", "negative_slope", "threshold"),
    extra={"inplace": True},
    doc="Rectified linear unit with Keras's arguments: `x` where `x > threshold` (else 0), clipped to "
    "`[0, max_value]` when `max_value` is given, minus `negative_slope * relu(threshold - x)`. "
    "Passes the mask through.",
)

LEAKY_RELU = LayerDef(
    name="LeakyReLU",
    attrs=(Attr("negative_slope", "float", 0.3, "Slope for negative inputs.", minimum=0.0), *COMMON_ATTRS),
    infer=same_type,
    emit=_relu_emit("LeakyReLU"),
    emit_backward=_relu_backward("LeakyReLU"),
    reference=_relu_reference("LeakyReLU"),
    positional=("negative_slope",),
    extra={"inplace": True},
    doc="`x` for positive inputs, `negative_slope * x` for negative ones (Keras's default slope 0.3). "
    "Passes the mask through.",
)


# ----------------------------------------------------------------------------- ELU


def elu_forward(x, y, alpha):
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            v = x[r, c]
            y[r, c] = v if v > 0.0 else alpha * math.expm1(v)


def elu_backward(x, dy, dx, alpha):
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            v = x[r, c]
            dx[r, c] += dy[r, c] * (1.0 if v > 0.0 else alpha * math.exp(v))


def _elu_emit(e):
    (xs,) = e.x_shapes
    return [e.call(elu_forward, e.flat2(e.x[0], xs, e.rows()), e.flat2(e.y[0], xs, e.rows(output=True)),
                   float(e.attrs["alpha"]))]  # fmt: skip


def _elu_backward(e):
    if e.dx[0] is None:
        return []
    (xs,) = e.x_shapes
    rows = e.rows()
    return [e.call(elu_backward, e.flat2(e.x[0], xs, rows), e.flat2(e.dy[0], xs, rows),
                   e.flat2(e.dx[0], xs, rows), float(e.attrs["alpha"]))]  # fmt: skip


def _elu_reference(attrs, inputs, params, masks=None):
    import numpy

    x = numpy.asarray(inputs[0], numpy.float64)
    return [numpy.where(x > 0, x, attrs["alpha"] * numpy.expm1(x))]


ELU = LayerDef(
    name="ELU",
    attrs=(Attr("alpha", "float", 1.0, "Scale of the negative part."), *COMMON_ATTRS),
    infer=same_type,
    emit=_elu_emit,
    emit_backward=_elu_backward,
    reference=_elu_reference,
    positional=("alpha",),
    doc="Exponential linear unit: `x` for positive inputs, `alpha * (exp(x) - 1)` otherwise. Passes "
    "the mask through.",
)


# ----------------------------------------------------------------------------- PReLU


def _alpha_offset(f, dims, astr):
    """The offset in the flat alpha of per-sample position ``f`` (shared axes have stride 0)."""
    off = 0
    rem = f
    for a in range(dims.shape[0] - 1, -1, -1):
        i = rem % dims[a]
        rem //= dims[a]
        off += i * astr[a]
    return off


def prelu_forward(x, alpha, dims, astr, y):
    """``y = x`` where positive, ``alpha * x`` elsewhere; ``x``, ``y`` (rows, per-sample size)."""
    rows, size = x.shape
    for f in range(size):
        a = alpha[_alpha_offset(f, dims, astr)]
        for r in range(rows):
            v = x[r, f]
            y[r, f] = v if v > 0.0 else a * v


def prelu_backward(x, alpha, dims, astr, dy, dx, dalpha, need_dx, need_dalpha):
    rows, size = x.shape
    for f in range(size):
        o = _alpha_offset(f, dims, astr)
        a = alpha[o]
        acc = 0.0
        for r in range(rows):
            v = x[r, f]
            if v > 0.0:
                if need_dx:
                    dx[r, f] += dy[r, f]
            elif v < 0.0:  # at 0 no gradient: Keras computes relu(x) - alpha * relu(-x)
                if need_dx:
                    dx[r, f] += a * dy[r, f]
                acc += v * dy[r, f]
        if need_dalpha:
            dalpha[o] += acc


def _alpha_shape(attrs, x: TensorType) -> tuple:
    shape = list(x.shape[1:])
    for ax in attrs["shared_axes"] or ():
        if not 1 <= ax <= len(shape):
            raise ShapeError(f"PReLU: shared axis {ax} is not an axis of an input of shape {fmt_shape(x.shape)} "
                             f"(axes 1..{len(shape)}; 0 is the batch)")  # fmt: skip
        shape[ax - 1] = 1
    if any(d is None for d in shape):
        raise ShapeError(f"PReLU needs every axis of its input known, or shared; got {fmt_shape(x.shape)}")
    return tuple(shape)


def _prelu_infer(attrs, inputs, ctx):
    _alpha_shape(attrs, inputs[0])
    return [inputs[0]]


def _prelu_params(attrs, inputs, ctx):
    return [ParamSpec("alpha", _alpha_shape(attrs, inputs[0]), attrs["alpha_initializer"],
                      regularizer=attrs["alpha_regularizer"], constraint=attrs["alpha_constraint"])]  # fmt: skip


def _prelu_geometry(e) -> tuple[str, str]:
    """The per-sample dims and alpha's strides along them (0 along a shared axis), as code."""
    (xs,) = e.x_shapes
    ashape = _alpha_shape(e.attrs, TensorType((None, *xs)))
    strides = [0 if d == 1 else math.prod(ashape[a + 1 :]) for a, d in enumerate(ashape)]
    return f"np.array({list(xs)}, np.int64)", f"np.array({strides}, np.int64)"


def _prelu_emit(e):
    dims, astr = _prelu_geometry(e)
    return [e.call(prelu_forward, e.per_sample(e.x[0]), f"{e.p[0]}.ravel()", dims, astr,
                   e.per_sample(e.y[0], True))]  # fmt: skip


def _prelu_backward(e):
    need_dx, need_da = e.dx[0] is not None, e.dp[0] is not None
    if not (need_dx or need_da):
        return []
    dims, astr = _prelu_geometry(e)
    dx = e.per_sample(e.dx[0]) if need_dx else f"{NO_GRAD}.reshape((0, 0))"  # written: not the read-only EMPTY
    da = f"{e.dp[0]}.ravel()" if need_da else NO_GRAD
    return [e.call(prelu_backward, e.per_sample(e.x[0]), f"{e.p[0]}.ravel()", dims, astr,
                   e.per_sample(e.dy[0], True), dx, da, need_dx, need_da)]  # fmt: skip


def _prelu_reference(attrs, inputs, params, masks=None):
    import numpy

    x = numpy.asarray(inputs[0], numpy.float64)
    a = numpy.asarray(params[0], numpy.float64)
    return [numpy.where(x > 0, x, a * x)]


PRELU = LayerDef(
    name="PReLU",
    attrs=(
        Attr("alpha_initializer", "initializer", "zeros", "Initializer of the learned slopes."),
        Attr("alpha_regularizer", "regularizer", None, "Penalty on the slopes.", nullable=True),
        Attr("alpha_constraint", "constraint", None, "Constraint on the slopes.", nullable=True),
        Attr(
            "shared_axes",
            "int_list",
            None,
            "Axes (1 = the first after the batch) along which one slope is shared.",
            nullable=True,
        ),
        *COMMON_ATTRS,
    ),
    infer=_prelu_infer,
    params=_prelu_params,
    emit=_prelu_emit,
    emit_backward=_prelu_backward,
    reference=_prelu_reference,
    positional=("alpha_initializer", "alpha_regularizer", "alpha_constraint", "shared_axes"),
    doc="Parametric ReLU: `x` for positive inputs, `alpha * x` otherwise, with `alpha` learned per entry "
    "of the input (shape: the input's without the batch, 1 along `shared_axes`). Weight: alpha. "
    "Passes the mask through.",
)


# ----------------------------------------------------------------------------- Softmax


def softmax_forward(x, y):
    """Softmax over the middle axis of ``x`` (outer, length, inner)."""
    outer, length, inner = x.shape
    for o in range(outer):
        for i in range(inner):
            mx = -np.inf
            for k in range(length):
                mx = max(mx, x[o, k, i])
            s = 0.0
            for k in range(length):
                ev = math.exp(x[o, k, i] - mx)
                y[o, k, i] = ev
                s += ev
            for k in range(length):
                y[o, k, i] = y[o, k, i] / s


def softmax_backward(y, dy, dx):
    """``dx += y * (dy - sum(dy * y))`` over the middle axis."""
    outer, length, inner = y.shape
    for o in range(outer):
        for i in range(inner):
            s = 0.0
            for k in range(length):
                s += dy[o, k, i] * y[o, k, i]
            for k in range(length):
                dx[o, k, i] += y[o, k, i] * (dy[o, k, i] - s)


def _softmax_axis(attrs, rank: int) -> int:
    ax = attrs["axis"]
    a = ax + rank if ax < 0 else ax
    if not 1 <= a < rank:
        raise ShapeError(f"Softmax: axis {ax} is not an axis of a sample of a rank-{rank} input "
                         "(the batch axis cannot be normalized over)")  # fmt: skip
    return a


def _softmax_infer(attrs, inputs, ctx):
    (x,) = inputs
    a = _softmax_axis(attrs, x.rank)
    if x.masked:
        raise ShapeError(
            f"Softmax: a masked input of shape {fmt_shape(x.shape)}: Keras adds the (batch, steps) mask to the "
            "input, which does not line up with it (Keras fails when the layer runs)"
        )
    if x.shape[a] is None:
        raise ShapeError(f"Softmax: the axis normalized over must be known; got {fmt_shape(x.shape)}")
    return [x]


def _softmax_view(e, var: str, rows: str) -> str:
    (xs,) = e.x_shapes
    a = _softmax_axis(e.attrs, len(xs) + 1) - 1
    outer = math.prod(xs[:a])
    return f"{var}.reshape(({rows} * {outer}, {xs[a]}, {math.prod(xs[a + 1 :])}))"


def _softmax_emit(e):
    return [
        e.call(
            softmax_forward, _softmax_view(e, e.x[0], e.rows()), _softmax_view(e, e.y[0], e.rows(output=True))
        )
    ]


def _softmax_backward(e):
    if e.dx[0] is None:
        return []
    rows = e.rows()
    return [e.call(softmax_backward, _softmax_view(e, e.y[0], rows), _softmax_view(e, e.dy[0], rows),
                   _softmax_view(e, e.dx[0], rows))]  # fmt: skip


def _softmax_reference(attrs, inputs, params, masks=None):
    import numpy

    x = numpy.asarray(inputs[0], numpy.float64)
    ax = attrs["axis"]
    z = numpy.exp(x - x.max(axis=ax, keepdims=True))
    return [z / z.sum(axis=ax, keepdims=True)]


SOFTMAX = LayerDef(
    name="Softmax",
    attrs=(Attr("axis", "int", -1, "The axis normalized over."), *COMMON_ATTRS),
    infer=_softmax_infer,
    emit=_softmax_emit,
    emit_backward=_softmax_backward,
    reference=_softmax_reference,
    positional=("axis",),
    doc="Softmax over `axis` (not the batch). A masked input is refused: Keras adds its (batch, steps) "
    "mask to the input, which does not line up with it.",
)
