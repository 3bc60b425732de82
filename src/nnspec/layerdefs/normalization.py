"""Normalization layers: BatchNormalization, LayerNormalization, RMSNormalization,
UnitNormalization.

They keep the input's shape and (except RMSNormalization, as in Keras 3) its mask; the output dtype
is the layer's ``dtype`` attribute. Their weights have the sizes of the normalized axes, which must
therefore be known. None of them normalizes over the batch axis here: Keras refuses it where a
weight would get the batch's unknown size, and where it does not (UnitNormalization), a sample's
output would depend on the rest of its batch.

Not supported: BatchNormalization's batch renormalization (``renorm``, ``renorm_clipping``,
``renorm_momentum``) and ``synchronized`` (a TensorFlow-only training option).

Inference (kernels). BatchNormalization is ``(x - moving_mean) / sqrt(moving_variance + epsilon)
* gamma + beta`` per entry of ``axis``. LayerNormalization, RMSNormalization and
UnitNormalization reduce each sample over the set of axes ``axis`` names; their weights are read
in the order of those axes in the input (Keras reshapes its sorted-as-written weight to the
input's rank, so ``axis: [1, -1]`` on ``(None, 4, 5)`` has a ``(5, 4)`` gamma read as ``(4, 5)``).
Keras 3.15 on PyTorch mishandles some of these cases, where nnspec does what the layer is
documented to do: LayerNormalization and RMSNormalization over axes that are contiguous but not
the last ones (``axis: 1`` on ``(None, 4, 5)``) call ``torch``'s layer_norm/rms_norm with the
wrong trailing shape, which fails, or, when the sizes happen to agree, silently normalizes the
last axes instead; RMSNormalization over non-contiguous axes broadcasts its scale against the
trailing axes and fails.
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape, offset_grid

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = (
    "offset_grid", "_normalize_group", "_row_sum", "_row_sq", "_bn_weight", "_bn_moments", "_normalize_group_backward",
    "_gn_stats",
)  # fmt: skip

# Modes of the reducing kernels.
MODE_LAYER, MODE_LAYER_RMS_SCALING, MODE_RMS, MODE_UNIT = 0, 1, 2, 3
UNIT_EPSILON = 1e-12  # UnitNormalization: Keras's normalize(order=2, epsilon=1e-12)


def _out(attrs, x: TensorType, keep_mask: bool = True) -> list[TensorType]:
    return [TensorType(tuple(x.shape), attrs.get("dtype") or "float32", x.masked and keep_mask)]


def _axes(rule: str, axis, x: TensorType) -> list[int]:
    """``axis`` (an int or a list) as non-negative axes of ``x``, checked; in the order written."""
    raw = [axis] if isinstance(axis, int) else list(axis)
    if not raw:
        raise ShapeError(f"{rule}: axis must name at least one axis; input is {fmt_shape(x.shape)}")
    out = []
    for a in raw:
        if not -x.rank <= a < x.rank:
            raise ShapeError(f"{rule}: axis {a} is out of range for the input {fmt_shape(x.shape)}")
        a %= x.rank
        if a == 0:
            raise ShapeError(f"{rule} cannot normalize over the batch axis; input is {fmt_shape(x.shape)}")
        if a in out:
            raise ShapeError(f"{rule}: axis {axis} names axis {a} twice; input is {fmt_shape(x.shape)}")
        out.append(a)
    return out


def _weight_shape(rule: str, axis, x: TensorType) -> tuple[int, ...]:
    """The shape of a per-feature weight: the input's sizes on ``axis``.

    Keras sorts a list of axes as written, negative ones included, and reads the sizes in that
    order: ``axis: [1, -1]`` on ``(None, 4, 5)`` gives ``(5, 4)``. Mirrored, so that the weights
    have Keras's exact shape.
    """
    _axes(rule, axis, x)
    order = [axis] if isinstance(axis, int) else sorted(axis)
    shape = tuple(x.shape[a] for a in order)
    if None in shape:
        raise ShapeError(
            f"{rule} needs known sizes on the normalized axes (its weights have them); "
            f"got {fmt_shape(x.shape)}"
        )
    return shape


# Attributes of the learned offset (beta) and scale (gamma), shared by Batch and LayerNormalization.
def _center_scale_attrs() -> tuple[Attr, ...]:
    return (
        Attr("center", "bool", True, "Whether to add a learned offset (beta)."),
        Attr("scale", "bool", True, "Whether to multiply by a learned scale (gamma)."),
        Attr("beta_initializer", "initializer", "zeros", "Initializer of beta."),
        Attr("gamma_initializer", "initializer", "ones", "Initializer of gamma."),
    )


def _center_scale_penalty_attrs() -> tuple[Attr, ...]:
    return (
        Attr("beta_regularizer", "regularizer", None, "Penalty on beta.", nullable=True),
        Attr("gamma_regularizer", "regularizer", None, "Penalty on gamma.", nullable=True),
        Attr("beta_constraint", "constraint", None, "Constraint on beta.", nullable=True),
        Attr("gamma_constraint", "constraint", None, "Constraint on gamma.", nullable=True),
    )


def _gamma(attrs, shape) -> ParamSpec:
    return ParamSpec(
        "gamma",
        shape,
        attrs["gamma_initializer"],
        regularizer=attrs["gamma_regularizer"],
        constraint=attrs["gamma_constraint"],
    )


def _beta(attrs, shape) -> ParamSpec:
    return ParamSpec(
        "beta",
        shape,
        attrs["beta_initializer"],
        regularizer=attrs["beta_regularizer"],
        constraint=attrs["beta_constraint"],
    )


EPSILON_DOC = "Small constant added to the variance, against division by zero."

# ----------------------------------------------------------------------------- BatchNormalization


def _bn_rule(attrs) -> str:
    return f"BatchNormalization(axis={attrs['axis']})"


def _bn_infer(attrs, inputs, ctx):
    (x,) = inputs
    _weight_shape(_bn_rule(attrs), attrs["axis"], x)
    return _out(attrs, x)


def _bn_params(attrs, inputs, ctx):
    shape = _weight_shape(_bn_rule(attrs), attrs["axis"], inputs[0])
    out = []
    if attrs["scale"]:
        out.append(_gamma(attrs, shape))
    if attrs["center"]:
        out.append(_beta(attrs, shape))
    out.append(ParamSpec("moving_mean", shape, attrs["moving_mean_initializer"], trainable=False))
    out.append(ParamSpec("moving_variance", shape, attrs["moving_variance_initializer"], trainable=False))
    return out


def batch_norm_forward(x, y, gamma, beta, mean, var, eps, scale, center):
    """Inference batch normalization over 3-D (outer, channels, inner) views ``x`` and ``y``
    (``y`` may be ``x``): ``y = (x - mean) * (gamma / sqrt(var + eps)) + beta`` per channel,
    in float32 as Keras computes it (the per-channel factor in float64, then rounded)."""
    outer, chans, inner = x.shape
    mul = np.empty(chans, np.float32)
    add = np.zeros(chans, np.float32)
    for c in range(chans):
        m = 1.0 / math.sqrt(var[c] + eps)
        mul[c] = m * gamma[c] if scale else m
        if center:
            add[c] = beta[c]
    if inner == 1:  # channels last: the channel loop is the contiguous one (float32, vectorized)
        for o in range(outer):
            for c in range(chans):
                y[o, c, 0] = (x[o, c, 0] - mean[c]) * mul[c] + add[c]
        return
    for o in range(outer):
        for c in range(chans):
            m = mul[c]
            a = add[c]
            mu = mean[c]
            for i in range(inner):
                y[o, c, i] = (x[o, c, i] - mu) * m + a


def _view3(var: str, rows: str, outer: int, mid: int, inner: int) -> str:
    r = rows if outer == 1 else f"{rows} * {outer}"
    return f"{var}.reshape(({r}, {mid}, {inner}))"


def _bn_emit(e):
    (xs,) = e.x_shapes
    a = e.attrs
    ax = a["axis"] % (len(xs) + 1) - 1
    outer, chans, inner = math.prod(xs[:ax]), xs[ax], math.prod(xs[ax + 1 :])
    p = list(e.p)
    gamma = p.pop(0) if a["scale"] else e.empty
    beta = p.pop(0) if a["center"] else e.empty
    mean, var = p
    x3 = _view3(e.x[0], e.rows(), outer, chans, inner)
    y3 = _view3(e.y[0], e.rows(output=True), outer, chans, inner)
    return [
        e.call(
            batch_norm_forward, x3, y3, gamma, beta, mean, var, float(a["epsilon"]), a["scale"], a["center"]
        )
    ]


# Training. Keras 3 (``training and self.trainable``) normalizes with the batch's statistics:
# the mean and the biased variance over every axis but ``axis``, weighted by the input's mask
# when it has one (each divided by ``sum(mask) + 1e-7``, Keras's ``_moments``), and updates the
# moving statistics in place: ``moving = moving * momentum + batch * (1 - momentum)``. A frozen
# layer (``trainable: false``) runs as at inference. The backward pass recomputes the batch
# statistics from the input (the training plan keeps it) rather than saving them, and goes
# through them as autograd does through Keras's formula.

MASK_EPSILON = 1e-7  # Keras's backend.epsilon() in the masked moments
NO_GRAD = "np.zeros(0, np.float32)"  # a gradient not written (EMPTY is read-only in Numba)


def _bn_weight(m, o, c, i, outer_s, chans, inner, per_step):
    """The mask entry of element (o, c, i) of the (rows * outer_s, chans, inner) view: the mask
    (rows, steps) covers the first axis of each sample, ``per_step`` values each."""
    r = o // outer_s
    p = ((o % outer_s) * chans + c) * inner + i
    return m[r, p // per_step]


def _bn_moments(x, m, masked, outer_s, per_step, mean, var, div):
    """Per channel of the 3-D ``x`` (outer, channels, inner): the batch mean and biased variance
    (float64), and ``div`` the divisor they used."""
    outer, chans, inner = x.shape
    for c in range(chans):
        mean[c] = 0.0
        var[c] = 0.0
        div[c] = 0.0
    if not masked and inner == 1:  # channels last: the contiguous loop runs over the channels
        x2 = x.reshape((outer, chans))
        for o in range(outer):
            for c in range(chans):
                mean[c] += x2[o, c]
        for c in range(chans):
            div[c] = outer
            mean[c] /= div[c]
        for o in range(outer):
            for c in range(chans):
                d = x2[o, c] - mean[c]
                var[c] += d * d
        for c in range(chans):
            var[c] /= div[c]
        return
    if not masked:
        for o in range(outer):
            for c in range(chans):
                for i in range(inner):
                    mean[c] += x[o, c, i]
        for c in range(chans):
            div[c] = outer * inner
            mean[c] /= div[c]
        for o in range(outer):
            for c in range(chans):
                mu = mean[c]
                for i in range(inner):
                    d = x[o, c, i] - mu
                    var[c] += d * d
        for c in range(chans):
            var[c] /= div[c]
        return
    for o in range(outer):
        for c in range(chans):
            for i in range(inner):
                if _bn_weight(m, o, c, i, outer_s, chans, inner, per_step) != 0:
                    mean[c] += x[o, c, i]
                    div[c] += 1.0
    for c in range(chans):
        div[c] += MASK_EPSILON
        mean[c] /= div[c]
    for o in range(outer):
        for c in range(chans):
            for i in range(inner):
                if _bn_weight(m, o, c, i, outer_s, chans, inner, per_step) != 0:
                    d = x[o, c, i] - mean[c]
                    var[c] += d * d
    for c in range(chans):
        var[c] /= div[c]


def batch_norm_train(
    x, y, gamma, beta, mmean, mvar, eps, momentum, scale, center, m, masked, outer_s, per_step
):
    """Training batch normalization over 3-D (outer, channels, inner) views ``x``, ``y``: the
    batch's statistics (masked by ``m`` (rows, steps) if ``masked``) normalize ``x`` and update
    the moving ``mmean``, ``mvar`` in place."""
    outer, chans, inner = x.shape
    mean = np.empty(chans, np.float64)
    var = np.empty(chans, np.float64)
    div = np.empty(chans, np.float64)
    _bn_moments(x, m, masked, outer_s, per_step, mean, var, div)
    mul = np.empty(chans, np.float32)
    add = np.zeros(chans, np.float32)
    mu = np.empty(chans, np.float32)
    for c in range(chans):
        inv = 1.0 / math.sqrt(var[c] + eps)
        mul[c] = inv * gamma[c] if scale else inv
        if center:
            add[c] = beta[c]
        mu[c] = mean[c]
        mmean[c] = mmean[c] * momentum + mean[c] * (1.0 - momentum)
        mvar[c] = mvar[c] * momentum + var[c] * (1.0 - momentum)
    if inner == 1:
        x2 = x.reshape((outer, chans))
        y2 = y.reshape((outer, chans))
        for o in range(outer):
            for c in range(chans):
                y2[o, c] = (x2[o, c] - mu[c]) * mul[c] + add[c]
        return
    for o in range(outer):
        for c in range(chans):
            a = mul[c]
            b = add[c]
            u = mu[c]
            for i in range(inner):
                y[o, c, i] = (x[o, c, i] - u) * a + b


def batch_norm_backward(x, dy, dx, gamma, dgamma, dbeta, eps, scale, m, masked, outer_s, per_step, need_dx,
                        need_dgamma, need_dbeta):  # fmt: skip
    """The gradient of ``batch_norm_train`` through the batch statistics: adds into ``dx``
    (if ``need_dx``), ``dgamma`` and ``dbeta``. ``x``, ``dy``, ``dx`` are 3-D views."""
    outer, chans, inner = x.shape
    mean = np.empty(chans, np.float64)
    var = np.empty(chans, np.float64)
    div = np.empty(chans, np.float64)
    _bn_moments(x, m, masked, outer_s, per_step, mean, var, div)
    sdy = np.zeros(chans, np.float64)
    sdyx = np.zeros(chans, np.float64)
    swx = np.zeros(chans, np.float64)
    fast = inner == 1 and not masked  # channels last: the contiguous loops run over the channels
    if fast:
        x2 = x.reshape((outer, chans))
        dy2 = dy.reshape((outer, chans))
        for o in range(outer):
            for c in range(chans):
                g = dy2[o, c]
                sdy[c] += g
                sdyx[c] += g * (x2[o, c] - mean[c])
    for o in range(0 if fast else outer):
        for c in range(chans):
            mu = mean[c]
            for i in range(inner):
                g = dy[o, c, i]
                d = x[o, c, i] - mu
                sdy[c] += g
                sdyx[c] += g * d
                if masked and _bn_weight(m, o, c, i, outer_s, chans, inner, per_step) != 0:
                    swx[c] += d
    inv = np.empty(chans, np.float64)
    for c in range(chans):
        inv[c] = 1.0 / math.sqrt(var[c] + eps)
        if need_dgamma:
            dgamma[c] += sdyx[c] * inv[c]
        if need_dbeta:
            dbeta[c] += sdy[c]
    if not need_dx:
        return
    direct = np.empty(chans, np.float64)  # d y / d x at fixed statistics
    dmean = np.empty(chans, np.float64)  # d L / d mean, over the divisor
    dvar = np.empty(chans, np.float64)  # 2 * d L / d var, over the divisor
    for c in range(chans):
        g = gamma[c] if scale else 1.0
        direct[c] = g * inv[c]
        dv = -0.5 * g * inv[c] * inv[c] * inv[c] * sdyx[c]
        dmean[c] = (-g * inv[c] * sdy[c] - dv * 2.0 * swx[c] / div[c]) / div[c]
        dvar[c] = 2.0 * dv / div[c]
    if fast:
        x2 = x.reshape((outer, chans))
        dy2 = dy.reshape((outer, chans))
        dx2 = dx.reshape((outer, chans))
        for o in range(outer):
            for c in range(chans):
                dx2[o, c] += direct[c] * dy2[o, c] + dmean[c] + dvar[c] * (x2[o, c] - mean[c])
        return
    for o in range(outer):
        for c in range(chans):
            mu = mean[c]
            for i in range(inner):
                inside = True
                if masked:
                    inside = _bn_weight(m, o, c, i, outer_s, chans, inner, per_step) != 0
                v = direct[c] * dy[o, c, i]
                if inside:
                    v += dmean[c] + dvar[c] * (x[o, c, i] - mu)
                dx[o, c, i] += v


def batch_norm_inference_backward(dy, dx, gamma, var, eps, scale):
    """The gradient of ``batch_norm_forward`` (a frozen layer in training): ``dx += dy * gamma /
    sqrt(var + eps)`` per channel, over 3-D views."""
    outer, chans, inner = dy.shape
    mul = np.empty(chans, np.float32)
    for c in range(chans):
        mm = 1.0 / math.sqrt(var[c] + eps)
        mul[c] = mm * gamma[c] if scale else mm
    for o in range(outer):
        for c in range(chans):
            a = mul[c]
            for i in range(inner):
                dx[o, c, i] += dy[o, c, i] * a


def _bn_frozen(e) -> bool:
    """Whether the layer is frozen (``trainable: false``): Keras then runs it as at inference.
    Known from its gamma/beta being non-trainable; a layer with neither (``scale`` and ``center``
    false) cannot tell, and trains."""
    a = e.attrs
    k = int(bool(a["scale"])) + int(bool(a["center"]))
    if k == 0:
        return False
    params = {p.name: p for p in e._gen.plan.params}
    return not any(params[n].trainable for n in e.step.params[:k])


def _bn_parts(e):
    (xs,) = e.x_shapes
    a = e.attrs
    ax = a["axis"] % (len(xs) + 1) - 1
    outer, chans, inner = math.prod(xs[:ax]), xs[ax], math.prod(xs[ax + 1 :])
    p = list(e.p)
    gamma = p.pop(0) if a["scale"] else e.empty
    beta = p.pop(0) if a["center"] else e.empty
    mean, var = p
    m = e.m[0] if e.m and e.m[0] is not None else None
    per_step = math.prod(xs[1:])
    mask = f"{m}.reshape(({e.rows()}, -1))" if m is not None else "np.zeros((1, 1), np.float32)"
    return xs, outer, chans, inner, gamma, beta, mean, var, mask, m is not None, per_step


def _bn_emit_train(e):
    if _bn_frozen(e):
        return _bn_emit(e)
    a = e.attrs
    _, outer, chans, inner, gamma, beta, mean, var, mask, masked, per_step = _bn_parts(e)
    x3 = _view3(e.x[0], e.rows(), outer, chans, inner)
    y3 = _view3(e.y[0], e.rows(output=True), outer, chans, inner)
    return [
        e.call(batch_norm_train, x3, y3, gamma, beta, mean, var, float(a["epsilon"]), float(a["momentum"]),
               a["scale"], a["center"], mask, masked, outer, per_step)
    ]  # fmt: skip


def _bn_backward(e):
    a = e.attrs
    _, outer, chans, inner, gamma, _beta, _mean, var, mask, masked, per_step = _bn_parts(e)
    dx = e.dx[0]
    rows = e.rows()
    dy3 = _view3(e.dy[0], e.rows(output=True), outer, chans, inner)
    if _bn_frozen(e):
        if dx is None:
            return []
        dx3 = _view3(dx, rows, outer, chans, inner)
        return [e.call(batch_norm_inference_backward, dy3, dx3, gamma, var, float(a["epsilon"]), a["scale"])]
    dp = list(e.dp)
    dgamma = dp.pop(0) if a["scale"] else None
    dbeta = dp.pop(0) if a["center"] else None
    if dx is None and dgamma is None and dbeta is None:
        return []
    x3 = _view3(e.x[0], rows, outer, chans, inner)
    dx3 = _view3(dx, rows, outer, chans, inner) if dx is not None else x3  # x3: unused placeholder
    return [
        e.call(batch_norm_backward, x3, dy3, dx3, gamma, dgamma or NO_GRAD, dbeta or NO_GRAD,
               float(a["epsilon"]), a["scale"], mask, masked, outer, per_step, dx is not None,
               dgamma is not None, dbeta is not None)
    ]  # fmt: skip


def _bn_reference(attrs, inputs, params, masks=None):
    (x,) = inputs
    p = list(params)
    gamma = p.pop(0) if attrs["scale"] else 1.0
    beta = p.pop(0) if attrs["center"] else 0.0
    mean, var = p
    shape = [1] * x.ndim
    shape[attrs["axis"]] = x.shape[attrs["axis"]]

    def b(v):
        return np.reshape(v, shape) if isinstance(v, np.ndarray) else v

    return [(x - b(mean)) / np.sqrt(b(var) + attrs["epsilon"]) * b(gamma) + b(beta)]


BATCH_NORMALIZATION = LayerDef(
    name="BatchNormalization",
    attrs=(
        Attr("axis", "int", -1, "The feature axis (usually the channels); statistics are per entry of it."),
        Attr(
            "momentum",
            "float",
            0.99,
            "Weight of the old value in the moving averages' updates.",
            minimum=0.0,
            maximum=1.0,
        ),
        Attr("epsilon", "float", 1e-3, EPSILON_DOC, minimum=0.0, exclusive_minimum=True),
        *_center_scale_attrs(),
        Attr("moving_mean_initializer", "initializer", "zeros", "Initializer of the moving mean."),
        Attr("moving_variance_initializer", "initializer", "ones", "Initializer of the moving variance."),
        *_center_scale_penalty_attrs(),
        *COMMON_ATTRS,
    ),
    infer=_bn_infer,
    params=_bn_params,
    couples_batch=True,
    emit=_bn_emit,
    reference=_bn_reference,
    emit_train=_bn_emit_train,
    emit_backward=_bn_backward,
    uses_mask=True,  # the masked batch statistics of training
    extra={"inplace": True},  # element-wise per channel
    doc="Normalizes each feature (each entry of `axis`) to zero mean and unit variance, then "
    "scales by gamma and shifts by beta. Training uses the batch's statistics and updates moving "
    "averages of them; inference uses those moving averages, so it is a fixed affine map per "
    "feature. Weights: gamma, beta (trainable), moving_mean, moving_variance (not trainable). "
    "Passes the mask through.",
)

# ----------------------------------------------------------------------------- reducing kernels


def _normalize_group(x, y, r, base, offs, gamma, beta, mode, eps, use_gamma, use_beta):
    """Normalize the values ``x[r, base + offs[i]]`` into ``y`` (same positions); ``gamma[i]``
    and ``beta[i]`` go with ``offs[i]``. Statistics in float64; every value of the group is read
    before any is written, so ``y`` may be ``x``."""
    k = offs.shape[0]
    if mode == 0 or mode == 1:
        s = 0.0
        for i in range(k):
            s += x[r, base + offs[i]]
        mean = s / k
        ss = 0.0
        for i in range(k):
            d = x[r, base + offs[i]] - mean
            ss += d * d
        inv = 1.0 / math.sqrt(ss / k + eps)
        if mode == 1:  # rms_scaling: x / sqrt(var + eps), not centered
            mean = 0.0
    else:
        ss = 0.0
        for i in range(k):
            v = x[r, base + offs[i]]
            ss += v * v
        if mode == 2:
            inv = 1.0 / math.sqrt(ss / k + eps)
        else:
            inv = 1.0 / eps if ss <= eps * eps else 1.0 / math.sqrt(ss)
        mean = 0.0
    for i in range(k):
        v = (x[r, base + offs[i]] - mean) * inv
        if use_gamma:
            v *= gamma[i]
        if use_beta:
            v += beta[i]
        y[r, base + offs[i]] = v


def normalize_forward(
    x, y, gamma, beta, mode, eps, use_gamma, use_beta, a_shape, a_strides, b_shape, b_strides
):
    """Per row of the 2-D ``x`` and ``y`` (rows, values per sample): for every index of the
    kept axes (``b_shape``/``b_strides``), normalize the values over the reduced axes
    (``a_shape``/``a_strides``) by ``mode`` (MODE_*)."""
    offs = offset_grid(a_shape, a_strides)
    bases = offset_grid(b_shape, b_strides)
    for r in range(x.shape[0]):
        for g in range(bases.shape[0]):
            _normalize_group(x, y, r, bases[g], offs, gamma, beta, mode, eps, use_gamma, use_beta)


def _row_sum(x, r, k):
    """``sum(x[r, :k])`` in float64, four partial sums (the adds then overlap)."""
    s0 = s1 = s2 = s3 = 0.0
    i = 0
    while i + 4 <= k:
        s0 += x[r, i]
        s1 += x[r, i + 1]
        s2 += x[r, i + 2]
        s3 += x[r, i + 3]
        i += 4
    while i < k:
        s0 += x[r, i]
        i += 1
    return (s0 + s1) + (s2 + s3)


def _row_sq(x, r, k, c):
    """``sum((x[r, :k] - c) ** 2)`` in float64, four partial sums."""
    s0 = s1 = s2 = s3 = 0.0
    i = 0
    while i + 4 <= k:
        d0 = x[r, i] - c
        d1 = x[r, i + 1] - c
        d2 = x[r, i + 2] - c
        d3 = x[r, i + 3] - c
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        i += 4
    while i < k:
        d0 = x[r, i] - c
        s0 += d0 * d0
        i += 1
    return (s0 + s1) + (s2 + s3)


def normalize_rows(x, y, gamma, beta, mode, eps, use_gamma, use_beta):
    """``normalize_forward`` when the reduced axes are the last ones: each row of the 2-D
    ``x`` and ``y`` (groups, values per group) is one group. Statistics in float64 (two passes);
    the result ``(x - shift) * scale * gamma + beta`` in float32, as Keras computes it. The
    row is read whole before it is written, so ``y`` may be ``x``."""
    k = x.shape[1]
    for r in range(x.shape[0]):
        shift = 0.0
        if mode == 0 or mode == 1:
            mean = _row_sum(x, r, k) / k
            inv = 1.0 / math.sqrt(_row_sq(x, r, k, mean) / k + eps)
            if mode == 0:
                shift = mean
        else:
            ss = _row_sq(x, r, k, 0.0)
            if mode == 2:
                inv = 1.0 / math.sqrt(ss / k + eps)
            else:
                inv = 1.0 / eps if ss <= eps * eps else 1.0 / math.sqrt(ss)
        m = np.float32(shift)
        sc = np.float32(inv)
        if use_gamma and use_beta:
            for i in range(k):
                y[r, i] = (x[r, i] - m) * sc * gamma[i] + beta[i]
        elif use_gamma:
            for i in range(k):
                y[r, i] = (x[r, i] - m) * sc * gamma[i]
        elif use_beta:
            for i in range(k):
                y[r, i] = (x[r, i] - m) * sc + beta[i]
        else:
            for i in range(k):
                y[r, i] = (x[r, i] - m) * sc


def _normalize_group_backward(x, dy, dx, r, base, offs, gamma, dgamma, dbeta, mode, eps, use_gamma, need_dx,
                              need_dgamma, need_dbeta):  # fmt: skip
    """The gradient of ``_normalize_group`` for one group: adds into ``dx`` (same positions),
    ``dgamma`` and ``dbeta`` (indexed as ``offs``). Statistics recomputed in float64."""
    k = offs.shape[0]
    mean = 0.0
    clamped = False
    if mode == 0 or mode == 1:
        s = 0.0
        for i in range(k):
            s += x[r, base + offs[i]]
        mean = s / k
        ss = 0.0
        for i in range(k):
            d = x[r, base + offs[i]] - mean
            ss += d * d
        inv = 1.0 / math.sqrt(ss / k + eps)
    else:
        ss = 0.0
        for i in range(k):
            v = x[r, base + offs[i]]
            ss += v * v
        if mode == 2:
            inv = 1.0 / math.sqrt(ss / k + eps)
        else:
            clamped = ss <= eps * eps
            inv = 1.0 / eps if clamped else 1.0 / math.sqrt(ss)
    shift = mean if mode == 0 else 0.0  # the output is (x - shift) * inv * gamma + beta
    s1 = 0.0  # sum of dxh
    s2 = 0.0  # sum of dxh * (x - shift)
    for i in range(k):
        g = dy[r, base + offs[i]]
        xc = x[r, base + offs[i]] - shift
        if need_dgamma:
            dgamma[i] += g * xc * inv
        if need_dbeta:
            dbeta[i] += g
        dxh = g * gamma[i] if use_gamma else g
        s1 += dxh
        s2 += dxh * xc
    if not need_dx:
        return
    for i in range(k):
        g = dy[r, base + offs[i]]
        dxh = g * gamma[i] if use_gamma else g
        v = x[r, base + offs[i]]
        if mode == 0:  # inv * (dxh - mean(dxh) - xhat * mean(dxh * xhat))
            out = inv * (dxh - s1 / k - (v - mean) * inv * inv * s2 / k)
        elif mode == 1:  # y = x * inv, inv from the centered variance
            out = inv * dxh - inv * inv * inv * (v - mean) * s2 / k
        elif mode == 2:
            out = inv * dxh - inv * inv * inv * v * s2 / k
        elif clamped:
            out = inv * dxh
        else:
            out = inv * dxh - inv * inv * inv * v * s2
        dx[r, base + offs[i]] += out


def normalize_backward(x, dy, dx, gamma, dgamma, dbeta, mode, eps, use_gamma, need_dx, need_dgamma, need_dbeta,
                       a_shape, a_strides, b_shape, b_strides):  # fmt: skip
    """The gradient of ``normalize_forward`` (same layout arguments); adds into ``dx`` (if
    ``need_dx``; else pass any 2-D array), ``dgamma`` and ``dbeta``."""
    offs = offset_grid(a_shape, a_strides)
    bases = offset_grid(b_shape, b_strides)
    for r in range(x.shape[0]):
        for g in range(bases.shape[0]):
            _normalize_group_backward(x, dy, dx, r, bases[g], offs, gamma, dgamma, dbeta, mode, eps, use_gamma,
                                      need_dx, need_dgamma, need_dbeta)  # fmt: skip


def _normalize_backward_emit(e, mode: int, eps: float, gamma, dgamma, dbeta) -> list[str]:
    """The backward call of a reducing normalization; ``gamma``/``dgamma``/``dbeta`` are the
    variables (None where absent or not trainable)."""
    dx = e.dx[0]
    if dx is None and dgamma is None and dbeta is None:
        return []
    (xs,) = e.x_shapes
    xs = tuple(xs)
    axes = _reduced_axes(e.attrs["axis"], len(xs) + 1)
    k = math.prod(xs[a] for a in axes)
    ug = gamma is not None
    gamma = f"{gamma}.reshape(({k},))" if ug else e.empty
    dg = f"{dgamma}.reshape(({k},))" if dgamma is not None else NO_GRAD
    db = f"{dbeta}.reshape(({k},))" if dbeta is not None else NO_GRAD
    if axes == list(range(len(xs) - len(axes), len(xs))):  # the last axes: one group per row
        groups = math.prod(xs) // k if xs else 1
        rows = e.rows() if groups == 1 else f"{e.rows()} * {groups}"
        size = k
        layout = ((k,), (1,), (1,), (0,))
    else:
        strides = _row_major_strides(xs)
        kept = [d for d in range(len(xs)) if d not in axes]
        rows = e.rows()
        size = math.prod(xs)
        layout = (tuple(xs[a] for a in axes), tuple(strides[a] for a in axes),
                  tuple(xs[d] for d in kept) or (1,), tuple(strides[d] for d in kept) or (0,))  # fmt: skip
    x2 = f"{e.x[0]}.reshape(({rows}, {size}))"
    dy2 = f"{e.dy[0]}.reshape(({rows}, {size}))"
    dx2 = f"{dx}.reshape(({rows}, {size}))" if dx is not None else x2  # x2: unused placeholder
    return [
        e.call(normalize_backward, x2, dy2, dx2, gamma, dg, db, mode, eps, ug, dx is not None,
               dgamma is not None, dbeta is not None, *layout)
    ]  # fmt: skip


def _reduced_axes(axis, rank: int) -> list[int]:
    """The per-sample axes (0-based, batch excluded) ``axis`` names, in increasing order."""
    raw = [axis] if isinstance(axis, int) else list(axis)
    return sorted(a % rank - 1 for a in raw)


def _normalize_emit(e, mode: int, eps: float, gamma, beta) -> list[str]:
    (xs,) = e.x_shapes
    xs = tuple(xs)
    axes = _reduced_axes(e.attrs["axis"], len(xs) + 1)
    ug, ub = gamma is not None, beta is not None
    k = math.prod(xs[a] for a in axes)
    # Weights flat, in the input's axis order (Keras reshapes its sorted-as-written weights so).
    gamma = f"{gamma}.reshape(({k},))" if ug else e.empty
    beta = f"{beta}.reshape(({k},))" if ub else e.empty
    if axes == list(range(len(xs) - len(axes), len(xs))):  # the last axes: one group per row
        groups = math.prod(xs) // k if xs else 1
        rows = e.rows() if groups == 1 else f"{e.rows()} * {groups}"
        x2 = f"{e.x[0]}.reshape(({rows}, {k}))"
        y2 = f"{e.y[0]}.reshape(({rows}, {k}))"
        return [e.call(normalize_rows, x2, y2, gamma, beta, mode, eps, ug, ub)]
    strides = _row_major_strides(xs)
    kept = [d for d in range(len(xs)) if d not in axes]
    size = math.prod(xs)
    x2 = f"{e.x[0]}.reshape(({e.rows()}, {size}))"
    y2 = f"{e.y[0]}.reshape(({e.rows(output=True)}, {size}))"
    return [
        e.call(normalize_forward, x2, y2, gamma, beta, mode, eps, ug, ub,
               tuple(xs[a] for a in axes), tuple(strides[a] for a in axes),
               tuple(xs[d] for d in kept) or (1,), tuple(strides[d] for d in kept) or (0,))
    ]  # fmt: skip


def _row_major_strides(shape) -> tuple:
    out = []
    acc = 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def _normalize_reference(x, axis, mode: int, eps: float, gamma=None, beta=None):
    """The reducing normalizations in NumPy; weights laid out in the input's axis order."""
    axes = tuple(a + 1 for a in _reduced_axes(axis, x.ndim))
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    if mode == MODE_LAYER:
        y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    elif mode == MODE_LAYER_RMS_SCALING:
        y = x / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    elif mode == MODE_RMS:
        y = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    else:
        y = x / np.maximum(np.sqrt((x * x).sum(axis=axes, keepdims=True)), eps)
    if gamma is not None:
        y = y * np.reshape(gamma, shape)
    if beta is not None:
        y = y + np.reshape(beta, shape)
    return y


# ----------------------------------------------------------------------------- LayerNormalization


def _ln_rule(attrs) -> str:
    return f"LayerNormalization(axis={attrs['axis']})"


def _ln_has_gamma(attrs) -> bool:
    return bool(attrs["scale"] or attrs["rms_scaling"])


def _ln_has_beta(attrs) -> bool:
    return bool(attrs["center"] and not attrs["rms_scaling"])


def _ln_infer(attrs, inputs, ctx):
    (x,) = inputs
    if _ln_has_gamma(attrs) or _ln_has_beta(attrs):
        _weight_shape(_ln_rule(attrs), attrs["axis"], x)
    else:
        _axes(_ln_rule(attrs), attrs["axis"], x)
    return _out(attrs, x)


def _ln_params(attrs, inputs, ctx):
    if not (_ln_has_gamma(attrs) or _ln_has_beta(attrs)):
        return []
    shape = _weight_shape(_ln_rule(attrs), attrs["axis"], inputs[0])
    out = []
    if _ln_has_gamma(attrs):
        out.append(_gamma(attrs, shape))
    if _ln_has_beta(attrs):
        out.append(_beta(attrs, shape))
    return out


def _ln_emit(e):
    a = e.attrs
    p = list(e.p)
    gamma = p.pop(0) if _ln_has_gamma(a) else None
    beta = p.pop(0) if _ln_has_beta(a) else None
    mode = MODE_LAYER_RMS_SCALING if a["rms_scaling"] else MODE_LAYER
    return _normalize_emit(e, mode, float(a["epsilon"]), gamma, beta)


def _ln_backward(e):
    a = e.attrs
    p, dp = list(e.p), list(e.dp)
    gamma = dgamma = dbeta = None
    if _ln_has_gamma(a):
        gamma, dgamma = p.pop(0), dp.pop(0)
    if _ln_has_beta(a):
        dbeta = dp.pop(0)
    mode = MODE_LAYER_RMS_SCALING if a["rms_scaling"] else MODE_LAYER
    return _normalize_backward_emit(e, mode, float(a["epsilon"]), gamma, dgamma, dbeta)


def _ln_reference(attrs, inputs, params, masks=None):
    p = list(params)
    gamma = p.pop(0) if _ln_has_gamma(attrs) else None
    beta = p.pop(0) if _ln_has_beta(attrs) else None
    mode = MODE_LAYER_RMS_SCALING if attrs["rms_scaling"] else MODE_LAYER
    return [_normalize_reference(inputs[0], attrs["axis"], mode, attrs["epsilon"], gamma, beta)]


LAYER_NORMALIZATION = LayerDef(
    name="LayerNormalization",
    attrs=(
        Attr("axis", "axis", -1, "The axis or axes normalized over, per sample."),
        Attr("epsilon", "float", 1e-3, EPSILON_DOC, minimum=0.0, exclusive_minimum=True),
        *_center_scale_attrs(),
        *_center_scale_penalty_attrs(),
        Attr(
            "rms_scaling",
            "bool",
            False,
            "Deprecated in Keras 3 (divides by the variance rather than "
            "the root mean square; use RMSNormalization). Keeps gamma even if scale is false; drops beta.",
        ),
        *COMMON_ATTRS,
    ),
    infer=_ln_infer,
    params=_ln_params,
    emit=_ln_emit,
    reference=_ln_reference,
    emit_backward=_ln_backward,
    extra={"inplace": True},  # each group is read whole before it is written
    doc="Normalizes each sample over `axis` (by default its features) to zero mean and unit "
    "variance, with the sample's own statistics, then scales by gamma and shifts by beta, both "
    "shaped like the normalized axes. It behaves the same in training and inference. Passes the "
    "mask through.",
)

# ----------------------------------------------------------------------------- RMSNormalization


def _rms_infer(attrs, inputs, ctx):
    (x,) = inputs
    _weight_shape(f"RMSNormalization(axis={attrs['axis']})", attrs["axis"], x)
    return _out(attrs, x, keep_mask=False)


def _rms_params(attrs, inputs, ctx):
    shape = _weight_shape(f"RMSNormalization(axis={attrs['axis']})", attrs["axis"], inputs[0])
    return [ParamSpec("scale", shape, "ones")]


def _rms_emit(e):
    return _normalize_emit(e, MODE_RMS, float(e.attrs["epsilon"]), e.p[0], None)


def _rms_backward(e):
    return _normalize_backward_emit(e, MODE_RMS, float(e.attrs["epsilon"]), e.p[0], e.dp[0], None)


def _rms_reference(attrs, inputs, params, masks=None):
    return [_normalize_reference(inputs[0], attrs["axis"], MODE_RMS, attrs["epsilon"], params[0])]


RMS_NORMALIZATION = LayerDef(
    name="RMSNormalization",
    attrs=(
        Attr("axis", "axis", -1, "The axis or axes normalized over, per sample."),
        Attr(
            "epsilon",
            "float",
            1e-6,
            "Small constant added to the mean square, against division by zero.",
            minimum=0.0,
            exclusive_minimum=True,
        ),
        *COMMON_ATTRS,
    ),
    infer=_rms_infer,
    params=_rms_params,
    emit=_rms_emit,
    reference=_rms_reference,
    emit_backward=_rms_backward,
    extra={"inplace": True},  # each group is read whole before it is written
    doc="Divides each sample by the root of its mean square over `axis`, then multiplies by a "
    "learned `scale` (initialized to ones) shaped like the normalized axes. No centering. Drops "
    "the mask, as Keras 3 does.",
)

# ----------------------------------------------------------------------------- UnitNormalization


def _unit_infer(attrs, inputs, ctx):
    (x,) = inputs
    _axes(f"UnitNormalization(axis={attrs['axis']})", attrs["axis"], x)
    return _out(attrs, x)


def _unit_emit(e):
    return _normalize_emit(e, MODE_UNIT, UNIT_EPSILON, None, None)


def _unit_backward(e):
    return _normalize_backward_emit(e, MODE_UNIT, UNIT_EPSILON, None, None, None)


def _unit_reference(attrs, inputs, params, masks=None):
    return [_normalize_reference(inputs[0], attrs["axis"], MODE_UNIT, UNIT_EPSILON)]


UNIT_NORMALIZATION = LayerDef(
    name="UnitNormalization",
    attrs=(Attr("axis", "axis", -1, "The axis or axes whose L2 norm becomes 1, per sample."), *COMMON_ATTRS),
    infer=_unit_infer,
    emit=_unit_emit,
    reference=_unit_reference,
    emit_backward=_unit_backward,
    extra={"inplace": True},  # each group is read whole before it is written
    doc="Scales each sample to unit L2 norm over `axis`. No weights, and the normalized sizes may "
    "be unknown. Passes the mask through.",
)

# ----------------------------------------------------------------------------- GroupNormalization
#
# Keras's GroupNormalization splits the channels (the entries of ``axis``) into ``groups``
# consecutive groups and normalizes each sample's group over all its values (every position,
# the group's channels), then scales and shifts per channel. The kernels see each sample as
# (outer, channels, inner) around the channel axis.


def _gn_channels(attrs, x: TensorType) -> tuple[int, int]:
    """(the channel axis, non-negative; the number of groups), checked as Keras checks them."""
    rule = f"GroupNormalization(groups={attrs['groups']}, axis={attrs['axis']})"
    (a,) = _axes(rule, attrs["axis"], x)
    dim = x.shape[a]
    if dim is None:
        raise ShapeError(f"{rule} needs a known size on axis {attrs['axis']}; got {fmt_shape(x.shape)}")
    groups = dim if attrs["groups"] == -1 else attrs["groups"]
    if groups < 1 or groups > dim or dim % groups:
        raise ShapeError(f"{rule}: the {dim} channels of {fmt_shape(x.shape)} must split into groups "
                         f"of equal size ({attrs['groups']} groups; -1: one per channel)")  # fmt: skip
    if any(d is None for d in x.shape[1:]):
        raise ShapeError(f"{rule} needs every axis of its input known; got {fmt_shape(x.shape)}")
    return a, groups


def _gn_infer(attrs, inputs, ctx):
    _gn_channels(attrs, inputs[0])
    return _out(attrs, inputs[0])


def _gn_params(attrs, inputs, ctx):
    a, _ = _gn_channels(attrs, inputs[0])
    shape = (inputs[0].shape[a],)
    out = []
    if attrs["scale"]:
        out.append(_gamma(attrs, shape))
    if attrs["center"]:
        out.append(_beta(attrs, shape))
    return out


def _gn_stats(x, r, c0, c1, eps):
    """Mean and 1/sqrt(var + eps) of sample ``r``'s channels ``c0 .. c1`` of ``x`` (rows, outer,
    channels, inner), in float64."""
    _, outer, _, inner = x.shape
    n = outer * (c1 - c0) * inner
    s = 0.0
    for o in range(outer):
        for c in range(c0, c1):
            for i in range(inner):
                s += x[r, o, c, i]
    mean = s / n
    ss = 0.0
    for o in range(outer):
        for c in range(c0, c1):
            for i in range(inner):
                d = x[r, o, c, i] - mean
                ss += d * d
    return mean, 1.0 / math.sqrt(ss / n + eps)


def group_norm_forward(x, y, gamma, beta, groups, eps, use_gamma, use_beta):
    """GroupNormalization of ``x`` into ``y`` (rows, outer, channels, inner); ``y`` may be ``x``."""
    rows, outer, chans, inner = x.shape
    cg = chans // groups
    for r in range(rows):
        for g in range(groups):
            mean, inv = _gn_stats(x, r, g * cg, (g + 1) * cg, eps)
            for o in range(outer):
                for c in range(g * cg, (g + 1) * cg):
                    sc = inv * gamma[c] if use_gamma else inv
                    sh = (beta[c] if use_beta else 0.0) - mean * sc
                    for i in range(inner):
                        y[r, o, c, i] = x[r, o, c, i] * sc + sh


def group_norm_backward(x, dy, dx, gamma, dgamma, dbeta, groups, eps, use_gamma, need_dx, need_dgamma, need_dbeta):
    """The gradient of :func:`group_norm_forward`: adds into ``dx`` (when ``need_dx``),
    ``dgamma`` and ``dbeta``. With ``xhat`` the normalized input and ``g = dy * gamma``:
    ``dx = inv * (g - mean(g) - xhat * mean(g * xhat))`` over each sample's group."""
    rows, outer, chans, inner = x.shape
    cg = chans // groups
    n = outer * cg * inner
    for r in range(rows):
        for g in range(groups):
            c0, c1 = g * cg, (g + 1) * cg
            mean, inv = _gn_stats(x, r, c0, c1, eps)
            sg = 0.0
            sgx = 0.0
            for o in range(outer):
                for c in range(c0, c1):
                    gm = gamma[c] if use_gamma else 1.0
                    for i in range(inner):
                        xh = (x[r, o, c, i] - mean) * inv
                        d = dy[r, o, c, i]
                        sg += d * gm
                        sgx += d * gm * xh
                        if need_dgamma:
                            dgamma[c] += d * xh
                        if need_dbeta:
                            dbeta[c] += d
            if need_dx:
                mg = sg / n
                mgx = sgx / n
                for o in range(outer):
                    for c in range(c0, c1):
                        gm = gamma[c] if use_gamma else 1.0
                        for i in range(inner):
                            xh = (x[r, o, c, i] - mean) * inv
                            dx[r, o, c, i] += inv * (dy[r, o, c, i] * gm - mg - xh * mgx)


def _gn_view(e, var: str, output: bool = False) -> str:
    (xs,) = e.x_shapes
    a, _ = _gn_channels(e.attrs, TensorType((None, *xs)))
    outer, inner = math.prod(xs[: a - 1]), math.prod(xs[a:])
    return f"{var}.reshape(({e.rows(output=output)}, {outer}, {xs[a - 1]}, {inner}))"


def _gn_emit(e):
    a = e.attrs
    p = list(e.p)
    gamma = p.pop(0) if a["scale"] else e.empty
    beta = p.pop(0) if a["center"] else e.empty
    _, groups = _gn_channels(a, TensorType((None, *e.x_shapes[0])))
    return [e.call(group_norm_forward, _gn_view(e, e.x[0]), _gn_view(e, e.y[0], True), gamma, beta, groups,
                   float(a["epsilon"]), bool(a["scale"]), bool(a["center"]))]  # fmt: skip


def _gn_backward(e):
    a = e.attrs
    p, dp = list(e.p), list(e.dp)
    gamma, dgamma = (p.pop(0), dp.pop(0)) if a["scale"] else (e.empty, None)
    dbeta = dp.pop(0) if a["center"] else None
    dx = e.dx[0]
    if dx is None and dgamma is None and dbeta is None:
        return []
    _, groups = _gn_channels(a, TensorType((None, *e.x_shapes[0])))
    x4 = _gn_view(e, e.x[0])
    return [e.call(group_norm_backward, x4, _gn_view(e, e.dy[0], True), _gn_view(e, dx) if dx is not None else x4,
                   gamma, dgamma if dgamma is not None else NO_GRAD, dbeta if dbeta is not None else NO_GRAD,
                   groups, float(a["epsilon"]), bool(a["scale"]), dx is not None, dgamma is not None,
                   dbeta is not None)]  # fmt: skip


def _gn_reference(attrs, inputs, params, masks=None):
    x = inputs[0]
    a, groups = _gn_channels(attrs, TensorType((None, *x.shape[1:])))
    xm = np.moveaxis(x, a, -1)
    shp = xm.shape
    xg = xm.reshape(shp[:-1] + (groups, shp[-1] // groups))
    axes = tuple(range(1, xg.ndim - 2)) + (xg.ndim - 1,)
    mean = xg.mean(axis=axes, keepdims=True)
    var = xg.var(axis=axes, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + attrs["epsilon"])).reshape(shp)
    p = list(params)
    if attrs["scale"]:
        y = y * p.pop(0)
    if attrs["center"]:
        y = y + p.pop(0)
    return [np.moveaxis(y, -1, a)]


GROUP_NORMALIZATION = LayerDef(
    name="GroupNormalization",
    attrs=(
        Attr("groups", "int", 32, "Number of groups the channels are split into (-1: one per channel)."),
        Attr("axis", "int", -1, "The channel axis."),
        Attr("epsilon", "float", 1e-3, EPSILON_DOC, minimum=0.0, exclusive_minimum=True),
        *_center_scale_attrs(),
        *_center_scale_penalty_attrs(),
        *COMMON_ATTRS,
    ),
    infer=_gn_infer,
    params=_gn_params,
    emit=_gn_emit,
    emit_backward=_gn_backward,
    reference=_gn_reference,
    positional=("groups", "axis", "epsilon"),
    extra={"inplace": True},  # each group's statistics are taken before it is written
    doc="Splits the channels into `groups` groups and normalizes each sample's group over all its "
    "positions and channels, then scales by gamma and shifts by beta per channel (GroupNormalization; "
    "groups -1 is instance normalization). Weights: gamma, beta. Passes the mask through.",
)

LAYERS = (BATCH_NORMALIZATION, LAYER_NORMALIZATION, RMS_NORMALIZATION, UNIT_NORMALIZATION, GROUP_NORMALIZATION)
