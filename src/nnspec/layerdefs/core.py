"""Core layers: Dense, Activation, Masking, Dropout and noise, Flatten, Reshape, Permute,
RepeatVector, ActivityRegularization."""

from __future__ import annotations

import math

from . import activations
from .base import (
    COMMON_ATTRS,
    Attr,
    LayerDef,
    ParamSpec,
    ShapeError,
    TensorType,
    fmt_shape,
    same_type,
)

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("add_bias", "_dense_small", "_noise_index", "_step_kept")


DATA_FORMAT_ATTR = Attr(
    "data_format", "enum", "channels_last",
    "Order of the input's axes: channels_last (batch, ..., channels) or channels_first "
    "(batch, channels, ...).",
    choices=("channels_last", "channels_first"),
)  # fmt: skip


# The attributes shared by layers that own a kernel and a bias (Dense, Conv*, ...).
def kernel_bias_attrs(kernel_init: str = "glorot_uniform") -> tuple[Attr, ...]:
    return (
        Attr("use_bias", "bool", True, "Whether the layer adds a bias vector."),
        Attr("kernel_initializer", "initializer", kernel_init, "Initializer of the kernel."),
        Attr("bias_initializer", "initializer", "zeros", "Initializer of the bias."),
        Attr("kernel_regularizer", "regularizer", None, "Penalty on the kernel.", nullable=True),
        Attr("bias_regularizer", "regularizer", None, "Penalty on the bias.", nullable=True),
        Attr("activity_regularizer", "regularizer", None, "Penalty on the output.", nullable=True),
        Attr("kernel_constraint", "constraint", None, "Constraint on the kernel.", nullable=True),
        Attr("bias_constraint", "constraint", None, "Constraint on the bias.", nullable=True),
    )


# A gradient argument a kernel does not write (``EMPTY`` is a read-only global in Numba).
NO_GRAD = "np.zeros(0, np.float32)"

ACTIVATION_ATTR = Attr(
    "activation", "activation", "linear", "Activation applied to the output (null: linear).", nullable=True
)


def kernel_and_bias(attrs, kernel_shape, bias_shape) -> list[ParamSpec]:
    """The ``kernel`` and, if ``use_bias``, the ``bias`` of a layer, Keras's order."""
    out = [
        ParamSpec(
            "kernel", tuple(kernel_shape), attrs["kernel_initializer"],
            regularizer=attrs["kernel_regularizer"], constraint=attrs["kernel_constraint"],
        )
    ]  # fmt: skip
    if attrs["use_bias"]:
        out.append(
            ParamSpec(
                "bias", tuple(bias_shape), attrs["bias_initializer"],
                regularizer=attrs["bias_regularizer"], constraint=attrs["bias_constraint"],
            )
        )  # fmt: skip
    return out


# ----------------------------------------------------------------------------- Dense


def _dense_infer(attrs, inputs, ctx):
    (x,) = inputs
    if x.rank < 2:
        raise ShapeError(f"Dense expects an input of rank 2 or more; got {fmt_shape(x.shape)}")
    if x.shape[-1] is None:
        raise ShapeError(f"Dense needs a known last dimension; got {fmt_shape(x.shape)}")
    activations.check_fused(attrs.get("activation"), "Dense")
    return [TensorType(x.shape[:-1] + (attrs["units"],), "float32", x.masked)]


def _dense_params(attrs, inputs, ctx):
    d = inputs[0].shape[-1]
    return kernel_and_bias(attrs, (d, attrs["units"]), (attrs["units"],))


def add_bias(y, b):
    """``y += b`` over the last axis of the 2-D ``y``."""
    rows, cols = y.shape
    for i in range(rows):
        for j in range(cols):
            y[i, j] += b[j]


# A BLAS call costs about 0.15-0.2 us whatever its size (measured in Numba on the 2-core
# machine, single-row products are the slowest to set up); a plain loop beats it for a single
# row up to about 1000 multiply-adds (1x16x32: 0.11 us against 0.20; 1x32x32: 0.11 against
# 0.14; 1x64x64: BLAS wins). With two rows or more BLAS wins from the smallest sizes on.
SMALL_DENSE = 1024


def _dense_small(x, w, y):
    """``y = x @ w`` by plain loops, for tiny products (see SMALL_DENSE)."""
    rows, k = x.shape
    units = w.shape[1]
    for i in range(rows):
        for j in range(units):
            y[i, j] = 0.0
        for p in range(k):
            v = x[i, p]
            for j in range(units):
                y[i, j] += v * w[p, j]


def dense_forward(x, w, b, use_bias, act, y):
    """``y = act(x @ w + b)`` for 2-D ``x`` (rows, in); ``np.dot`` is a BLAS product."""
    if x.shape[0] == 1 and x.shape[1] * w.shape[1] <= SMALL_DENSE:
        _dense_small(x, w, y)
    else:
        np.dot(x, w, y)
    if use_bias:
        add_bias(y, b)
    activations.apply_activation(y, act)


def _dense_emit(e):
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    x2 = e.flat2(e.x[0], xs, e.rows())
    y2 = e.flat2(e.y[0], ys, e.rows(output=True))
    a = e.attrs
    b = e.p[1] if a["use_bias"] else e.empty
    return [e.call(dense_forward, x2, e.p[0], b, a["use_bias"], activations.code(a["activation"]), y2)]


def _dense_saved(attrs, x_shapes, y_shapes):
    """The pre-activation values, for activations whose derivative needs them (gelu, silu...)."""
    if activations.needs_input(activations.code(attrs["activation"])):
        return [(tuple(y_shapes[0]), "float32")]
    return []


def _dense_emit_train(e):
    c = activations.code(e.attrs["activation"])
    if not activations.needs_input(c):
        return _dense_emit(e)
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    x2 = e.flat2(e.x[0], xs, e.rows())
    y2 = e.flat2(e.y[0], ys, e.rows(output=True))
    s2 = e.flat2(e.s[0], ys, e.rows(output=True))
    a = e.attrs
    b = e.p[1] if a["use_bias"] else e.empty
    return [
        e.call(dense_forward, x2, e.p[0], b, a["use_bias"], 0, s2),
        e.call(activations.activation_forward, s2, y2, c),
    ]


def dense_grad_params(x, dz, dw, db, use_bias):
    """``dw += x^T @ dz`` (a BLAS product) and, with ``use_bias``, ``db += sum of dz's rows``."""
    k, units = dw.shape
    t = np.empty((k, units), np.float32)
    np.dot(x.T, dz, t)
    for p in range(k):
        for j in range(units):
            dw[p, j] += t[p, j]
    if use_bias:
        acc = np.zeros(units, np.float64)
        for i in range(dz.shape[0]):
            for j in range(units):
                acc[j] += dz[i, j]
        for j in range(units):
            db[j] += acc[j]


def dense_grad_input(dz, w, dx):
    """``dx += dz @ w^T`` (a BLAS product)."""
    rows, k = dx.shape
    t = np.empty((rows, k), np.float32)
    np.dot(dz, w.T, t)
    for i in range(rows):
        for p in range(k):
            dx[i, p] += t[i, p]


def _dense_backward(e):
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    a = e.attrs
    c = activations.code(a["activation"])
    rows = e.rows(output=True)
    y2 = e.flat2(e.y[0], ys, rows)
    dy2 = e.flat2(e.dy[0], ys, rows)
    dw = e.dp[0]
    db = e.dp[1] if a["use_bias"] else None
    if dw is None and db is None and e.dx[0] is None:
        return []
    lines = []
    if c == 0:
        dz = dy2
    else:
        dz = e.tmp(f"({rows} * {math.prod(ys[:-1])}, {ys[-1]})" if len(ys) > 1 else f"({rows}, {ys[-1]})")
        pre = e.flat2(e.s[0], ys, rows) if activations.needs_input(c) else y2
        lines.append(e.call(activations.activation_backward, pre, y2, dy2, dz, c, False))
    if dw is not None or db is not None:
        x2 = e.flat2(e.x[0], xs, e.rows())
        if dw is not None:
            db_arg = db if db is not None else NO_GRAD
            lines.append(e.call(dense_grad_params, x2, dz, dw, db_arg, db is not None))
        else:  # a frozen kernel with a trainable bias cannot happen (trainable is per layer)
            lines.append(e.call(bias_grad, dz, db))
    if e.dx[0] is not None:
        lines.append(e.call(dense_grad_input, dz, e.p[0], e.flat2(e.dx[0], xs, e.rows())))
    return lines


def bias_grad(dz, db):
    """``db += sum of dz's rows``."""
    for i in range(dz.shape[0]):
        for j in range(dz.shape[1]):
            db[j] += dz[i, j]


def _dense_reference(attrs, inputs, params, masks=None):
    (x,) = inputs
    y = x @ params[0]
    if attrs["use_bias"]:
        y = y + params[1]
    return [activations.reference(attrs["activation"], y)]


DENSE = LayerDef(
    name="Dense",
    attrs=(
        Attr("units", "int", doc="Dimensionality of the output space.", minimum=1),
        ACTIVATION_ATTR,
        *kernel_bias_attrs(),
        *COMMON_ATTRS,
    ),
    infer=_dense_infer,
    params=_dense_params,
    emit=_dense_emit,
    reference=_dense_reference,
    emit_train=_dense_emit_train,
    emit_backward=_dense_backward,
    saved=_dense_saved,
    positional=("units",),
    doc="Densely connected layer: `activation(dot(x, kernel) + bias)` over the last axis of an "
    "input of any rank >= 2. Passes the input's mask through.",
)

# ----------------------------------------------------------------------------- Activation


def _activation_infer(attrs, inputs, ctx):
    (x,) = inputs
    name = attrs["activation"] or "linear"
    if name == "threshold":
        raise ShapeError(f"activation 'threshold' {activations.UNSUPPORTED['threshold']}")
    if name in activations.ROW_WISE and x.rank < 2:
        raise ShapeError(
            f"activation {name!r} acts on the last axis, which for an input of shape {fmt_shape(x.shape)} "
            "is the batch axis; give each sample at least one axis"
        )
    if name == "glu":
        d = x.shape[-1]
        if d is None or d % 2:
            raise ShapeError(
                f"activation 'glu' splits the last axis in two equal halves; it must be known and even, "
                f"got {fmt_shape(x.shape)}"
            )
        return [x.with_shape((*x.shape[:-1], d // 2))]
    return [x]


def _activation_emit(e):
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    name = e.attrs["activation"] or "linear"
    c = activations.GLU if name == "glu" else activations.code(name)
    x2 = e.flat2(e.x[0], xs, e.rows())
    y2 = e.flat2(e.y[0], ys, e.rows(output=True))
    return [e.call(activations.activation_forward, x2, y2, c)]


def _activation_backward(e):
    if e.dx[0] is None:
        return []
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    name = e.attrs["activation"] or "linear"
    c = activations.GLU if name == "glu" else activations.code(name)
    # The training plan keeps the input, so every activation reads it there.
    x2 = e.flat2(e.x[0], xs, e.rows())
    y2 = e.flat2(e.y[0], ys, e.rows(output=True))
    dy2 = e.flat2(e.dy[0], ys, e.rows(output=True))
    dx2 = e.flat2(e.dx[0], xs, e.rows())
    return [e.call(activations.activation_backward, x2, y2, dy2, dx2, c, True)]


def _activation_reference(attrs, inputs, params, masks=None):
    return [activations.reference(attrs["activation"], inputs[0])]


ACTIVATION = LayerDef(
    name="Activation",
    attrs=(Attr("activation", "activation", doc="The activation function's name."), *COMMON_ATTRS),
    infer=_activation_infer,
    emit=_activation_emit,
    reference=_activation_reference,
    emit_backward=_activation_backward,
    positional=("activation",),
    # activation_forward reads each element before it writes its own (and, for glu, every later
    # one), so the output may overwrite the input.
    extra={"inplace": True},
    doc="Applies an activation function element-wise (softmax-like ones over the last axis). "
    "`glu` halves the last axis: `a * sigmoid(b)` for its two halves `a, b`. `threshold` is "
    "refused: Keras's string form cannot give its arguments. Passes the mask through.",
)


def _identity_reference(attrs, inputs, params, masks=None):
    """Training-only layers and ActivityRegularization: the identity at inference."""
    return [inputs[0]]


# ----------------------------------------------------------------------------- Masking
#
# Keras's Masking: a step whose features all equal ``mask_value`` is masked (its mask is False)
# and its output is zeros; the other steps pass unchanged. The mask, one value per (sample,
# step) like an Embedding's, is its own plan step (``mask_any_not_equal``, written by the
# compiler); the layer's kernel finds the masked steps again on its own.


def _masking_infer(attrs, inputs, ctx):
    (x,) = inputs
    if x.rank != 3:
        raise ShapeError(
            f"Masking expects an input of rank 3 (batch, steps, features), whose steps it masks; got "
            f"{fmt_shape(x.shape)} (nnspec's masks cover (batch, steps))"
        )
    return [TensorType(x.shape, x.dtype, True)]


def _step_kept(x, r, t, mask_value):
    """Whether step ``t`` of row ``r`` of ``x`` (rows, steps, features) has a feature other than
    ``mask_value`` (Keras's ``any(x != mask_value, axis=-1)``)."""
    for f in range(x.shape[2]):
        if x[r, t, f] != mask_value:
            return True
    return False


def masking_forward(x, y, mask_value):
    """``y = x`` on the kept steps, zeros on the masked ones; ``x``, ``y`` (rows, steps, features)."""
    rows, steps, feats = x.shape
    for r in range(rows):
        for t in range(steps):
            keep = _step_kept(x, r, t, mask_value)
            for f in range(feats):
                y[r, t, f] = x[r, t, f] if keep else 0.0


def mask_any_not_equal(x, mask_out, mask_value):
    """``mask_out[r, t] = 1.0`` on the kept steps of ``x``, 0.0 on the masked ones."""
    rows, steps, _ = x.shape
    for r in range(rows):
        for t in range(steps):
            mask_out[r, t] = 1.0 if _step_kept(x, r, t, mask_value) else 0.0


def masking_backward(x, dy, dx, mask_value):
    """``dx += dy`` on the kept steps (the mask itself has no gradient)."""
    rows, steps, feats = x.shape
    for r in range(rows):
        for t in range(steps):
            if _step_kept(x, r, t, mask_value):
                for f in range(feats):
                    dx[r, t, f] += dy[r, t, f]


def _seq3(e, var: str, output: bool = False) -> str:
    (xs,) = e.x_shapes
    return f"{var}.reshape(({e.rows(output=output)}, {xs[0]}, {xs[1]}))"


def _masking_emit(e):
    return [e.call(masking_forward, _seq3(e, e.x[0]), _seq3(e, e.y[0], True), float(e.attrs["mask_value"]))]


def _masking_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(masking_backward, _seq3(e, e.x[0]), _seq3(e, e.dy[0], True), _seq3(e, e.dx[0]),
                   float(e.attrs["mask_value"]))]  # fmt: skip


def _masking_reference(attrs, inputs, params, masks=None):
    x = inputs[0]
    keep = (x != attrs["mask_value"]).any(axis=-1, keepdims=True)
    return [x * keep]


MASKING = LayerDef(
    name="Masking",
    attrs=(Attr("mask_value", "float", 0.0, "Steps whose features all equal it are masked."), *COMMON_ATTRS),
    infer=_masking_infer,
    emit=_masking_emit,
    emit_backward=_masking_backward,
    reference=_masking_reference,
    positional=("mask_value",),
    doc="Masks the steps of a sequence (batch, steps, features) whose features all equal `mask_value`: "
    "their output is zeros and the layers after it that read masks (recurrent layers, masked pooling, "
    "merges) skip them, as after an Embedding with `mask_zero`.",
)


# ----------------------------------------------------------------------------- Dropout & noise
#
# In training these draw from NumPy's generator inside Numba (seeded by
# ``nnspec.runtime.kernels.seed_kernels``: ``fit`` seeds it from its ``seed`` or the model's). A
# layer's own ``seed`` attribute is accepted but does not select a stream of its own: Keras's
# streams (per-layer SeedGenerator on torch's generator) cannot be reproduced anyway.


DROPOUT_BITS = 1 << 24


def _noise_index(o, out_shape, noise_strides):
    """The position in one sample of the noise of the flat position ``o`` of one sample of the
    output (row-major ``out_shape``), stepping by ``noise_strides`` (0 on a broadcast axis)."""
    nd = len(out_shape)
    idx = 0
    rem = o
    for d in range(nd - 1, -1, -1):
        i = rem % out_shape[d]
        rem //= out_shape[d]
        idx += i * noise_strides[d]
    return idx


def dropout_train(x, y, m, rate, out_shape, noise_strides, noise_size, shared_batch, full):
    """Inverted dropout over 2-D (rows, values per sample) ``x``, ``y``: ``m`` (same shape)
    gets the keep mask (1.0 kept, 0.0 dropped), ``y = x / (1 - rate)`` where kept, else 0.
    The mask is drawn with probability ``1 - rate`` of keeping, per entry of the noise shape:
    ``noise_size`` values per sample (one draw for the whole batch when ``shared_batch``),
    broadcast along the axes whose ``noise_strides`` is 0; ``full``: the noise has the output's
    shape."""
    rows, size = x.shape
    keep = np.float32(1.0 - rate)  # float32 arithmetic, as Keras's ``inputs / keep_prob``
    if rate >= 1.0:
        for r in range(rows):
            for i in range(size):
                m[r, i] = 0.0
                y[r, i] = 0.0
        return
    # A uniform 24-bit integer below ``threshold`` keeps (probability 1 - rate to within 2^-24):
    # one 32-bit draw where ``np.random.random()`` takes two and costs four times as much.
    threshold = round((1.0 - rate) * DROPOUT_BITS)
    if full:
        for r in range(rows):
            for i in range(size):
                kept = np.random.randint(0, DROPOUT_BITS) < threshold
                m[r, i] = 1.0 if kept else 0.0
                y[r, i] = x[r, i] / keep if kept else 0.0
        return
    noise = np.empty((1 if shared_batch else rows, noise_size), np.float32)
    for r in range(noise.shape[0]):
        for i in range(noise_size):
            noise[r, i] = 1.0 if np.random.randint(0, DROPOUT_BITS) < threshold else 0.0
    for r in range(rows):
        nr = 0 if shared_batch else r
        for i in range(size):
            v = noise[nr, _noise_index(i, out_shape, noise_strides)]
            m[r, i] = v
            y[r, i] = x[r, i] / keep if v != 0 else 0.0


def dropout_backward(dy, dx, m, keep):
    """``dx += dy / keep`` where the keep mask ``m`` is set (float32 division, as the forward)."""
    rows, size = dy.shape
    k = np.float32(keep)
    for r in range(rows):
        for i in range(size):
            if m[r, i] != 0:
                dx[r, i] += dy[r, i] / k


def scale_backward(dy, dx, m, factor):
    """``dx += dy * m * factor`` over 2-D arrays (GaussianDropout: ``m`` the noise)."""
    rows, size = dy.shape
    for r in range(rows):
        for i in range(size):
            if m[r, i] != 0:
                dx[r, i] += dy[r, i] * m[r, i] * factor


def copy_values(x, y):
    """``y = x`` over 2-D arrays."""
    rows, size = x.shape
    for r in range(rows):
        for i in range(size):
            y[r, i] = x[r, i]


def add_into(dy, dx):
    """``dx += dy`` over 2-D arrays (the gradient of an identity)."""
    rows, size = dy.shape
    for r in range(rows):
        for i in range(size):
            dx[r, i] += dy[r, i]


def gaussian_noise_train(x, y, stddev):
    """``y = x + N(0, stddev)`` per entry (GaussianNoise in training)."""
    rows, size = x.shape
    for r in range(rows):
        for i in range(size):
            y[r, i] = x[r, i] + stddev * np.random.standard_normal()


def gaussian_dropout_train(x, y, noise, stddev):
    """``y = x * noise``, ``noise = N(1, stddev)`` per entry (GaussianDropout in training),
    kept for the backward pass."""
    rows, size = x.shape
    for r in range(rows):
        for i in range(size):
            v = 1.0 + stddev * np.random.standard_normal()
            noise[r, i] = v
            y[r, i] = x[r, i] * v


def _dropout_active(attrs) -> bool:
    return attrs["rate"] > 0  # Keras: ``if training and self.rate > 0``


def _noise_saved(active):
    """``saved`` of a random layer: its noise (or keep mask), shaped as its output, when active."""

    def saved(attrs, x_shapes, y_shapes):
        return [(tuple(y_shapes[0]), "float32")] if active(attrs) else []

    return saved


_dropout_saved = _noise_saved(_dropout_active)


def _dropout_emit_train(e):
    return _dropout_lines(e, e.attrs.get("noise_shape"))


def _spatial_noise_shape(attrs, rank: int) -> list:
    """SpatialDropout's noise shape, as Keras makes it: one draw per sample and channel."""
    if attrs.get("data_format") == "channels_first":
        return [None, None] + [1] * rank
    return [None] + [1] * rank + [None]


def _spatial_emit_train(rank: int):
    def emit_train(e):
        return _dropout_lines(e, _spatial_noise_shape(e.attrs, rank))

    return emit_train


def _dropout_lines(e, ns):
    """Dropout in training with noise shape ``ns`` (None: one draw per value)."""
    (xs,) = e.x_shapes
    x2 = e.per_sample(e.x[0])
    y2 = e.per_sample(e.y[0], True)
    if not _dropout_active(e.attrs):
        return [e.call(copy_values, x2, y2)]
    shape = tuple(xs) or (1,)
    full = True
    shared = False
    strides = _row_major_strides(shape)
    nsize = math.prod(shape)
    if ns is not None:
        # Keras fills a None entry with the input's size; an entry of 1 broadcasts.
        per = [d if (n is None or n != 1) else 1 for n, d in zip(ns[1:], xs)] or [1]
        shared = ns[0] == 1
        nsize = math.prod(per)
        nstr = _row_major_strides(tuple(per))
        strides = tuple(0 if (p == 1 and d != 1) else st for p, d, st in zip(per, shape, nstr))
        full = not shared and tuple(per) == shape
    m2 = e.per_sample(e.s[0], True)
    return [e.call(dropout_train, x2, y2, m2, float(e.attrs["rate"]), shape, strides, nsize, shared, full)]


def _dropout_backward(e):
    if e.dx[0] is None:
        return []
    dy2 = e.per_sample(e.dy[0], True)
    dx2 = e.per_sample(e.dx[0])
    rate = float(e.attrs["rate"])
    if not _dropout_active(e.attrs):
        return [e.call(add_into, dy2, dx2)]
    if rate >= 1.0:
        return []
    return [e.call(dropout_backward, dy2, dx2, e.per_sample(e.s[0], True), 1.0 - rate)]


def _gaussian_noise_emit_train(e):
    x2 = e.per_sample(e.x[0])
    y2 = e.per_sample(e.y[0], True)
    std = float(e.attrs["stddev"])
    if std > 0:  # Keras: ``if training and self.stddev > 0``
        return [e.call(gaussian_noise_train, x2, y2, std)]
    return [e.call(copy_values, x2, y2)]


def _identity_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(add_into, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]))]


def _gaussian_dropout_active(attrs) -> bool:
    return 0 < attrs["rate"] < 1  # Keras: ``if training and 0 < self.rate < 1``


_gaussian_dropout_saved = _noise_saved(_gaussian_dropout_active)


def _gaussian_dropout_emit_train(e):
    x2 = e.per_sample(e.x[0])
    y2 = e.per_sample(e.y[0], True)
    if not _gaussian_dropout_active(e.attrs):
        return [e.call(copy_values, x2, y2)]
    rate = float(e.attrs["rate"])
    std = math.sqrt(rate / (1.0 - rate))
    return [e.call(gaussian_dropout_train, x2, y2, e.per_sample(e.s[0], True), std)]


def _gaussian_dropout_backward(e):
    if not _gaussian_dropout_active(e.attrs):
        return _identity_backward(e)
    if e.dx[0] is None:
        return []
    return [e.call(scale_backward, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]),
                   e.per_sample(e.s[0], True), 1.0)]  # fmt: skip


def _view_backward(e):
    """Views (Reshape, Flatten over channels_last, ActivityRegularization) never get a backward
    step: their output shares its input's buffer, so it shares its gradient too (and
    ActivityRegularization's penalty gradient is added by the training code generator)."""
    return []


def _dropout_infer(attrs, inputs, ctx):
    (x,) = inputs
    ns = attrs.get("noise_shape")
    if ns is not None and len(ns) != x.rank:
        raise ShapeError(
            f"noise_shape {list(ns)} must have one entry per input axis (batch included); "
            f"input is {fmt_shape(x.shape)}"
        )
    return [x]


# Dropout's and AlphaDropout's attributes (as Keras's constructors take them).
DROPOUT_ATTRS = (
    Attr("rate", "float", doc="Fraction of the inputs to drop.", minimum=0.0, maximum=1.0),
    Attr("noise_shape", "shape", None, "Shape of the binary dropout mask (null: the input's).", nullable=True),
    Attr("seed", "int", None, "Random seed.", nullable=True),
    *COMMON_ATTRS,
)

DROPOUT = LayerDef(
    name="Dropout",
    attrs=DROPOUT_ATTRS,
    infer=_dropout_infer,
    reference=_identity_reference,
    emit_train=_dropout_emit_train,
    emit_backward=_dropout_backward,
    saved=_dropout_saved,
    positional=("rate",),
    training_only=True,
    doc="Sets a random fraction `rate` of the inputs to 0 in training and scales the rest by "
    "1/(1-rate); the identity at inference.",
)


def _spatial_dropout_infer(rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        if x.rank != rank + 2:
            raise ShapeError(
                f"SpatialDropout{rank}D expects an input of rank {rank + 2} (batch, {rank} spatial axes and "
                f"channels); got {fmt_shape(x.shape)}"
            )
        return [x]

    return infer


def _spatial_dropout(rank: int) -> LayerDef:
    fmt = () if rank == 1 else (DATA_FORMAT_ATTR,)
    what = {1: "steps", 2: "rows and columns", 3: "the three spatial axes"}[rank]
    return LayerDef(
        name=f"SpatialDropout{rank}D",
        attrs=(
            Attr("rate", "float", doc="Fraction of the channels to drop.", minimum=0.0, maximum=1.0),
            *fmt,
            Attr("seed", "int", None, "Random seed.", nullable=True),
            *COMMON_ATTRS,
        ),
        infer=_spatial_dropout_infer(rank),
        reference=_identity_reference,
        emit_train=_spatial_emit_train(rank),
        emit_backward=_dropout_backward,
        saved=_dropout_saved,
        positional=("rate",),
        training_only=True,
        doc=f"Dropout of whole channels: in training each sample's channel is dropped or kept along all "
        f"{what} together (scaled by 1/(1-rate)), as Keras does for feature maps whose neighbouring "
        "entries are correlated; the identity at inference.",
    )


SPATIAL_DROPOUT1D = _spatial_dropout(1)
SPATIAL_DROPOUT2D = _spatial_dropout(2)
SPATIAL_DROPOUT3D = _spatial_dropout(3)


def alpha_dropout_affine(x, y, m, a, b, alpha_p):
    """AlphaDropout after the keep mask ``m`` is drawn: ``y = a * (x * m + alpha_p * (1 - m)) + b``."""
    rows, size = x.shape
    for r in range(rows):
        for i in range(size):
            k = m[r, i]
            y[r, i] = a * (x[r, i] * k + alpha_p * (1.0 - k)) + b


def _alpha_dropout_active(attrs) -> bool:
    return 0 < attrs["rate"] < 1  # Keras: ``if training and 0 < self.rate < 1``


def _alpha_dropout_coefficients(rate: float) -> tuple[float, float, float]:
    """Keras's affine correction (a, b) and the dropped value alpha_p (SELU's negative saturation)."""
    alpha_p = -activations.SELU_ALPHA * activations.SELU_SCALE
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    return a, -a * alpha_p * rate, alpha_p


def _alpha_dropout_emit_train(e):
    if not _alpha_dropout_active(e.attrs):
        return [e.call(copy_values, e.per_sample(e.x[0]), e.per_sample(e.y[0], True))]
    lines = _dropout_lines(e, e.attrs.get("noise_shape"))  # draws the keep mask into e.s[0]
    a, b, alpha_p = _alpha_dropout_coefficients(float(e.attrs["rate"]))
    lines.append(e.call(alpha_dropout_affine, e.per_sample(e.x[0]), e.per_sample(e.y[0], True),
                        e.per_sample(e.s[0], True), a, b, alpha_p))  # fmt: skip
    return lines


def _alpha_dropout_backward(e):
    if not _alpha_dropout_active(e.attrs):
        return _identity_backward(e)
    if e.dx[0] is None:
        return []
    a, _, _ = _alpha_dropout_coefficients(float(e.attrs["rate"]))
    return [e.call(scale_backward, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]),
                   e.per_sample(e.s[0], True), a)]  # fmt: skip


_alpha_dropout_saved = _noise_saved(_alpha_dropout_active)


ALPHA_DROPOUT = LayerDef(
    name="AlphaDropout",
    attrs=DROPOUT_ATTRS,
    infer=_dropout_infer,
    reference=_identity_reference,
    emit_train=_alpha_dropout_emit_train,
    emit_backward=_alpha_dropout_backward,
    saved=_alpha_dropout_saved,
    positional=("rate",),
    training_only=True,
    doc="Dropout for SELU networks: in training, dropped inputs take SELU's negative saturation "
    "value and an affine correction keeps the mean and variance (Keras's formula); active only for "
    "0 < rate < 1; the identity at inference.",
)


GAUSSIAN_NOISE = LayerDef(
    name="GaussianNoise",
    attrs=(
        Attr("stddev", "float", doc="Standard deviation of the noise.", minimum=0.0),
        Attr("seed", "int", None, "Random seed.", nullable=True),
        *COMMON_ATTRS,
    ),
    infer=same_type,
    reference=_identity_reference,
    positional=("stddev",),
    training_only=True,
    emit_train=_gaussian_noise_emit_train,
    emit_backward=_identity_backward,
    doc="Adds zero-centered Gaussian noise in training; the identity at inference.",
)

GAUSSIAN_DROPOUT = LayerDef(
    name="GaussianDropout",
    attrs=(
        Attr("rate", "float", doc="Drop probability, as for Dropout.", minimum=0.0, maximum=1.0),
        Attr("seed", "int", None, "Random seed.", nullable=True),
        *COMMON_ATTRS,
    ),
    infer=same_type,
    reference=_identity_reference,
    positional=("rate",),
    training_only=True,
    emit_train=_gaussian_dropout_emit_train,
    emit_backward=_gaussian_dropout_backward,
    saved=_gaussian_dropout_saved,
    doc="Multiplies by 1-centered Gaussian noise of stddev sqrt(rate/(1-rate)) in training; "
    "the identity at inference.",
)

ACTIVITY_REGULARIZATION = LayerDef(
    name="ActivityRegularization",
    attrs=(
        Attr("l1", "float", 0.0, "L1 penalty factor on the activity.", minimum=0.0),
        Attr("l2", "float", 0.0, "L2 penalty factor on the activity.", minimum=0.0),
        *COMMON_ATTRS,
    ),
    infer=same_type,
    reference=_identity_reference,
    emit_backward=_view_backward,
    view=True,
    doc="The identity, adding an L1/L2 penalty on its input to the training loss.",
)

# ----------------------------------------------------------------------------- reshaping


def _flatten_infer(attrs, inputs, ctx):
    (x,) = inputs
    # With channels_first, Keras moves axis 1 last before flattening (a copy, see _flatten_emit);
    # the size is the same.
    rest = x.shape[1:]
    size = None if any(d is None for d in rest) else math.prod(rest)
    return [TensorType((x.shape[0], size), x.dtype)]


def _row_major_strides(shape) -> tuple:
    out = []
    acc = 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def permute_forward(x, y, out_shape, in_strides):
    """Per row of the 2-D ``x`` and ``y`` (rows, values per sample), ``y``'s sample is ``x``'s
    with its axes permuted: output axis ``i`` has size ``out_shape[i]`` and steps through the
    input by ``in_strides[i]`` values. The last output axis is the inner loop."""
    rows = x.shape[0]
    size = y.shape[1]
    nd = len(out_shape)
    last = out_shape[nd - 1]
    step = in_strides[nd - 1]
    idx = np.zeros(nd, np.int64)
    for r in range(rows):
        for d in range(nd):
            idx[d] = 0
        base = 0
        o = 0
        while o < size:
            for j in range(last):
                y[r, o + j] = x[r, base + j * step]
            o += last
            d = nd - 2
            while d >= 0:
                idx[d] += 1
                base += in_strides[d]
                if idx[d] < out_shape[d]:
                    break
                base -= in_strides[d] * out_shape[d]
                idx[d] = 0
                d -= 1


def permute_backward(dy, dx, out_shape, in_strides):
    """The gradient of ``permute_forward``: ``dx`` gets ``dy`` added back at the input
    positions its values came from (same arguments as the forward, with ``dy`` for ``y``)."""
    rows = dx.shape[0]
    size = dy.shape[1]
    nd = len(out_shape)
    last = out_shape[nd - 1]
    step = in_strides[nd - 1]
    idx = np.zeros(nd, np.int64)
    for r in range(rows):
        for d in range(nd):
            idx[d] = 0
        base = 0
        o = 0
        while o < size:
            for j in range(last):
                dx[r, base + j * step] += dy[r, o + j]
            o += last
            d = nd - 2
            while d >= 0:
                idx[d] += 1
                base += in_strides[d]
                if idx[d] < out_shape[d]:
                    break
                base -= in_strides[d] * out_shape[d]
                idx[d] = 0
                d -= 1


def _permute_backward_call(e, axes) -> list:
    if e.dx[0] is None:
        return []
    (xs,) = e.x_shapes
    strides = _row_major_strides(xs)
    size = math.prod(xs)
    out_shape = tuple(xs[a] for a in axes)
    in_strides = tuple(strides[a] for a in axes)
    dy2 = e.flat2(e.dy[0], (size,), e.rows(output=True))
    dx2 = e.flat2(e.dx[0], (size,), e.rows())
    return [e.call(permute_backward, dy2, dx2, out_shape, in_strides)]


def _permute_call(e, axes) -> str:
    """The call that writes e.y[0] as e.x[0]'s samples with their axes in order ``axes`` (0-based)."""
    (xs,) = e.x_shapes
    strides = _row_major_strides(xs)
    size = math.prod(xs)
    out_shape = tuple(xs[a] for a in axes)
    in_strides = tuple(strides[a] for a in axes)
    x2 = e.flat2(e.x[0], (size,), e.rows())
    y2 = e.flat2(e.y[0], (size,), e.rows(output=True))
    return e.call(permute_forward, x2, y2, out_shape, in_strides)


def _flatten_emit(e):
    # Only reached when lowering made Flatten a step (channels_first on rank > 2); otherwise it
    # is a view. Keras moves the channels (axis 1) last, then flattens.
    (xs,) = e.x_shapes
    return [_permute_call(e, (*range(1, len(xs)), 0))]


def _flatten_backward(e):
    # Reached only for the channels_first copy (see _flatten_emit); as a view Flatten shares its
    # input's gradient.
    (xs,) = e.x_shapes
    return _permute_backward_call(e, (*range(1, len(xs)), 0))


def _flatten_reference(attrs, inputs, params, masks=None):
    (x,) = inputs
    if attrs["data_format"] == "channels_first" and x.ndim > 2:
        x = np.moveaxis(x, 1, -1)
    return [x.reshape(x.shape[0], -1)]


FLATTEN = LayerDef(
    name="Flatten",
    attrs=(
        Attr(
            "data_format",
            "enum",
            "channels_last",
            "Order of the input's axes.",
            choices=("channels_last", "channels_first"),
        ),
        *COMMON_ATTRS,
    ),
    infer=_flatten_infer,
    emit=_flatten_emit,
    reference=_flatten_reference,
    emit_backward=_flatten_backward,
    view=True,
    doc="Flattens every axis but the batch (with channels_first, after moving the channels last, "
    "as Keras does: a copy, not a view). Drops the mask.",
)


def _reshape_infer(attrs, inputs, ctx):
    (x,) = inputs
    target = list(attrs["target_shape"])
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"target_shape {target} may hold at most one -1")
    if any(d is not None and d != -1 and d < 1 for d in target):
        raise ShapeError(f"target_shape {target} holds a dimension below 1 (only -1 is allowed)")
    rest = x.shape[1:]
    size = None if any(d is None for d in rest) else math.prod(rest)
    if -1 in target:
        known_part = math.prod(d for d in target if d != -1)
        if size is None:
            target = [None if d == -1 else d for d in target]
        elif size % known_part:
            raise ShapeError(
                f"cannot reshape {fmt_shape(x.shape)} ({size} values per sample) to "
                f"target_shape {list(attrs['target_shape'])}: {size} is not a multiple of {known_part}"
            )
        else:
            target = [size // known_part if d == -1 else d for d in target]
    elif size is not None and math.prod(target) != size:
        raise ShapeError(
            f"cannot reshape {fmt_shape(x.shape)} ({size} values per sample) to "
            f"target_shape {target} ({math.prod(target)} values)"
        )
    return [TensorType((x.shape[0], *target), x.dtype)]


def _reshape_reference(attrs, inputs, params, masks=None):
    (x,) = inputs
    return [x.reshape((x.shape[0], *attrs["target_shape"]))]


RESHAPE = LayerDef(
    name="Reshape",
    attrs=(
        Attr("target_shape", "shape", doc="Shape of the output, batch excluded; one entry may be -1."),
        *COMMON_ATTRS,
    ),
    infer=_reshape_infer,
    reference=_reshape_reference,
    emit_backward=_view_backward,
    positional=("target_shape",),
    view=True,
    doc="Reshapes each sample to `target_shape` (batch excluded); one dimension may be -1.",
)


IDENTITY = LayerDef(
    name="Identity",
    attrs=COMMON_ATTRS,
    infer=same_type,
    reference=_identity_reference,
    emit_backward=_view_backward,
    view=True,
    doc="Returns its input unchanged (a view, no copy). Passes the mask through.",
)


def _permute_infer(attrs, inputs, ctx):
    (x,) = inputs
    dims = list(attrs["dims"])
    n = x.rank - 1
    if sorted(dims) != list(range(1, n + 1)):
        raise ShapeError(
            f"dims {dims} must be a permutation of 1..{n} for an input of shape {fmt_shape(x.shape)}"
        )
    return [TensorType((x.shape[0], *(x.shape[d] for d in dims)), x.dtype, x.masked)]


def _permute_emit(e):
    return [_permute_call(e, tuple(d - 1 for d in e.attrs["dims"]))]


def _permute_backward(e):
    return _permute_backward_call(e, tuple(d - 1 for d in e.attrs["dims"]))


def _permute_reference(attrs, inputs, params, masks=None):
    (x,) = inputs
    return [np.transpose(x, (0, *attrs["dims"]))]


PERMUTE = LayerDef(
    name="Permute",
    attrs=(
        Attr("dims", "int_list", doc="Permutation of the axes, 1-based, batch excluded."),
        *COMMON_ATTRS,
    ),
    infer=_permute_infer,
    emit=_permute_emit,
    reference=_permute_reference,
    emit_backward=_permute_backward,
    positional=("dims",),
    doc="Permutes the axes of each sample: `dims=[2, 1]` swaps the first two.",
)


def _repeat_infer(attrs, inputs, ctx):
    (x,) = inputs
    if x.rank != 2:
        raise ShapeError(
            f"RepeatVector expects an input of rank 2 (batch, features); got {fmt_shape(x.shape)}"
        )
    return [TensorType((x.shape[0], attrs["n"], x.shape[1]), x.dtype)]


def repeat_vector_forward(x, y):
    """``y[r, k, :] = x[r, :]`` for every k: x is (rows, features), y (rows, n, features)."""
    rows, feats = x.shape
    n = y.shape[1]
    for r in range(rows):
        for k in range(n):
            for j in range(feats):
                y[r, k, j] = x[r, j]


def _repeat_emit(e):
    return [e.call(repeat_vector_forward, e.x[0], e.y[0])]


def repeat_vector_backward(dy, dx):
    """``dx[r, :] += sum over k of dy[r, k, :]``."""
    rows, n, feats = dy.shape
    for r in range(rows):
        for k in range(n):
            for j in range(feats):
                dx[r, j] += dy[r, k, j]


def _repeat_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(repeat_vector_backward, e.dy[0], e.dx[0])]


def _repeat_reference(attrs, inputs, params, masks=None):
    (x,) = inputs
    return [np.repeat(x[:, None, :], attrs["n"], axis=1)]


REPEAT_VECTOR = LayerDef(
    name="RepeatVector",
    attrs=(Attr("n", "int", doc="How many times to repeat.", minimum=1), *COMMON_ATTRS),
    infer=_repeat_infer,
    emit=_repeat_emit,
    reference=_repeat_reference,
    emit_backward=_repeat_backward,
    positional=("n",),
    doc="Repeats a (batch, features) input n times: (batch, n, features).",
)

LAYERS = (
    DENSE,
    ACTIVATION,
    DROPOUT,
    GAUSSIAN_NOISE,
    GAUSSIAN_DROPOUT,
    ACTIVITY_REGULARIZATION,
    FLATTEN,
    RESHAPE,
    PERMUTE,
    REPEAT_VECTOR,
)
