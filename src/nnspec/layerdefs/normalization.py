"""Normalization layers: BatchNormalization, LayerNormalization, RMSNormalization,
UnitNormalization.

They keep the input's shape and (except RMSNormalization, as in Keras 3) its mask; the output dtype
is the layer's ``dtype`` attribute. Their weights have the sizes of the normalized axes, which must
therefore be known. None of them normalizes over the batch axis here: Keras refuses it where a
weight would get the batch's unknown size, and where it does not (UnitNormalization), a sample's
output would depend on the rest of its batch.

Not supported: BatchNormalization's batch renormalization (``renorm``, ``renorm_clipping``,
``renorm_momentum``) and ``synchronized`` (a TensorFlow-only training option).
"""

from __future__ import annotations

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape


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
    doc="Normalizes each feature (each entry of `axis`) to zero mean and unit variance, then "
    "scales by gamma and shifts by beta. Training uses the batch's statistics and updates moving "
    "averages of them; inference uses those moving averages, so it is a fixed affine map per "
    "feature. Weights: gamma, beta (trainable), moving_mean, moving_variance (not trainable). "
    "Passes the mask through.",
)

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
    doc="Divides each sample by the root of its mean square over `axis`, then multiplies by a "
    "learned `scale` (initialized to ones) shaped like the normalized axes. No centering. Drops "
    "the mask, as Keras 3 does.",
)

# ----------------------------------------------------------------------------- UnitNormalization


def _unit_infer(attrs, inputs, ctx):
    (x,) = inputs
    _axes(f"UnitNormalization(axis={attrs['axis']})", attrs["axis"], x)
    return _out(attrs, x)


UNIT_NORMALIZATION = LayerDef(
    name="UnitNormalization",
    attrs=(Attr("axis", "axis", -1, "The axis or axes whose L2 norm becomes 1, per sample."), *COMMON_ATTRS),
    infer=_unit_infer,
    doc="Scales each sample to unit L2 norm over `axis`. No weights, and the normalized sizes may "
    "be unknown. Passes the mask through.",
)

LAYERS = (BATCH_NORMALIZATION, LAYER_NORMALIZATION, RMS_NORMALIZATION, UNIT_NORMALIZATION)
