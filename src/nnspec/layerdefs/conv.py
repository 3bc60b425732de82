"""Convolution layers: Conv1D/2D/3D, Conv1DTranspose/2DTranspose, SeparableConv1D/2D,
DepthwiseConv1D/2D.

Every layer here takes an input of rank ``rank + 2`` (batch, spatial axes, channels; or batch,
channels, spatial axes with ``data_format: channels_first``), needs a known channel dimension
(it sizes the kernel), lets unknown spatial dimensions through as ``None``, and drops the mask
(Keras's convolutions do not support masking).
"""

from __future__ import annotations

from .base import (
    COMMON_ATTRS,
    Attr,
    LayerDef,
    ParamSpec,
    ShapeError,
    TensorType,
    conv_output_length,
    fmt_shape,
    ints,
    require_rank,
)
from .core import ACTIVATION_ATTR, kernel_and_bias, kernel_bias_attrs

# ----------------------------------------------------------------------------- shared attributes

DATA_FORMAT_ATTR = Attr(
    "data_format", "enum", "channels_last",
    "Order of the input's axes: channels_last (batch, ..., channels) or channels_first "
    "(batch, channels, ...).",
    choices=("channels_last", "channels_first"),
)  # fmt: skip


def padding_attr(causal: bool = False) -> Attr:
    """The ``padding`` enum of convolutions and poolings (``causal`` for Conv1D only)."""
    choices = ("valid", "same", "causal") if causal else ("valid", "same")
    doc = "valid: no padding; same: pad so that output length = ceil(input length / stride)"
    if causal:
        doc += "; causal: pad on the left only, so output t never sees inputs after t"
    return Attr("padding", "enum", "valid", doc + ".", choices=choices)


def per_axis_default(value: int, rank: int):
    """Keras writes 1D defaults as an int and N-D defaults as a tuple (``strides=(1, 1)``)."""
    return value if rank == 1 else [value] * rank


def _ints_attr(name: str, rank: int, default: int, doc: str) -> Attr:
    return ints(name, rank, per_axis_default(default, rank), doc)


# ----------------------------------------------------------------------------- shared shape logic


def dims_str(dims) -> str:
    """``[5, 5]`` -> ``5x5``; ``None`` (unknown) prints as ``?``."""
    return "x".join("?" if d is None else str(d) for d in dims)


def split_channels(shape: tuple, data_format: str) -> tuple[tuple, int | None]:
    """(spatial dims, channel dim) of a shape with the batch first."""
    if data_format == "channels_first":
        return tuple(shape[2:]), shape[1]
    return tuple(shape[1:-1]), shape[-1]


def join_channels(batch, spatial, channels, data_format: str) -> tuple:
    if data_format == "channels_first":
        return (batch, channels, *spatial)
    return (batch, *spatial, channels)


def window_output(
    layer: str, what: str, x: TensorType, spatial, window, strides, padding, dilation=None
) -> tuple:
    """Output spatial dims of a sliding window (convolution or pooling), Keras's arithmetic.

    Raises ShapeError when a known dimension would come out zero or negative (``valid``
    padding with a window larger than the input).
    """
    dilation = dilation or [1] * len(window)
    out = tuple(
        conv_output_length(n, k, padding, s, d) for n, k, s, d in zip(spatial, window, strides, dilation)
    )
    if any(o is not None and o <= 0 for o in out):
        eff = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
        win = dims_str(window)
        if eff != list(window):
            win += f" dilated by {dims_str(dilation)} (effective {dims_str(eff)})"
        raise ShapeError(
            f"{layer}: {what} {win} does not fit input {dims_str(spatial)} with padding '{padding}' "
            f"(input shape {fmt_shape(x.shape)}, strides {dims_str(strides)})"
        )
    return out


def _check_strides_dilation(layer: str, attrs) -> None:
    if max(attrs["strides"]) > 1 and max(attrs["dilation_rate"]) > 1:
        raise ShapeError(
            f"{layer}: strides {list(attrs['strides'])} > 1 cannot be combined with dilation_rate "
            f"{list(attrs['dilation_rate'])} > 1"
        )


def _input_channels(layer: str, rank: int, x: TensorType, data_format: str) -> tuple[tuple, int]:
    """Check the input's rank and return (spatial dims, channels); channels must be known."""
    require_rank(x, rank + 2, layer)
    spatial, channels = split_channels(x.shape, data_format)
    if channels is None:
        axis = "first (after the batch)" if data_format == "channels_first" else "last"
        raise ShapeError(
            f"{layer} needs a known channel dimension ({axis} axis, data_format {data_format}); "
            f"got {fmt_shape(x.shape)}"
        )
    return spatial, channels


def _out_dtype(attrs) -> str:
    return attrs.get("dtype") or "float32"


# ----------------------------------------------------------------------------- Conv1D/2D/3D


def _conv_geometry(layer: str, rank: int, attrs, x: TensorType) -> tuple[tuple, int]:
    spatial, channels = _input_channels(layer, rank, x, attrs["data_format"])
    _check_strides_dilation(layer, attrs)
    groups, filters = attrs["groups"], attrs["filters"]
    if filters % groups:
        raise ShapeError(f"{layer}: filters ({filters}) must be divisible by groups ({groups})")
    if channels % groups:
        raise ShapeError(
            f"{layer}: the input's {channels} channels must be divisible by groups ({groups}); "
            f"input shape {fmt_shape(x.shape)}"
        )
    return spatial, channels


def _conv_infer(layer: str, rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        spatial, _ = _conv_geometry(layer, rank, attrs, x)
        out = window_output(
            layer, "kernel", x, spatial, attrs["kernel_size"], attrs["strides"], attrs["padding"],
            attrs["dilation_rate"],
        )  # fmt: skip
        shape = join_channels(x.shape[0], out, attrs["filters"], attrs["data_format"])
        return [TensorType(shape, _out_dtype(attrs))]

    return infer


def _conv_params(layer: str, rank: int):
    def params(attrs, inputs, ctx):
        _, channels = _conv_geometry(layer, rank, attrs, inputs[0])
        kernel = (*attrs["kernel_size"], channels // attrs["groups"], attrs["filters"])
        return kernel_and_bias(attrs, kernel, (attrs["filters"],))

    return params


def _conv(rank: int, doc: str) -> LayerDef:
    name = f"Conv{rank}D"
    return LayerDef(
        name=name,
        attrs=(
            Attr("filters", "int", doc="Number of output channels (filters).", minimum=1),
            ints("kernel_size", rank, doc="Size of the convolution window along each spatial axis."),
            _ints_attr("strides", rank, 1, "Step of the window along each spatial axis."),
            padding_attr(causal=rank == 1),
            DATA_FORMAT_ATTR,
            _ints_attr("dilation_rate", rank, 1, "Spacing between kernel taps along each spatial axis."),
            Attr(
                "groups",
                "int",
                1,
                "Number of channel groups convolved separately; divides the input channels and filters.",
                minimum=1,
            ),
            ACTIVATION_ATTR,
            *kernel_bias_attrs(),
            *COMMON_ATTRS,
        ),
        infer=_conv_infer(name, rank),
        params=_conv_params(name, rank),
        positional=("filters", "kernel_size"),
        doc=doc,
    )


CONV1D = _conv(
    1,
    "1D convolution over a sequence (batch, steps, channels): slides `filters` kernels of "
    "`kernel_size` steps along the time axis, adds a bias and applies the activation. "
    "`padding: causal` pads on the left only, for autoregressive models. `groups` splits the "
    "channels into independent groups. Strides above 1 cannot be combined with a dilation rate "
    "above 1. Drops the mask.",
)

CONV2D = _conv(
    2,
    "2D convolution over images (batch, rows, cols, channels), or (batch, channels, rows, cols) "
    "with `data_format: channels_first`: cross-correlates `filters` kernels of shape "
    "`kernel_size` with the input, adds a bias and applies the activation. Supports strides, "
    "dilation (not both above 1) and grouped convolution. The kernel is "
    "(kh, kw, channels / groups, filters).",
)

CONV3D = _conv(
    3,
    "3D convolution over volumes (batch, depth, rows, cols, channels): the three-axis "
    "counterpart of Conv2D, with a kernel of shape (kd, kh, kw, channels / groups, filters).",
)

# ----------------------------------------------------------------------------- transposed


def transpose_output_length(length, kernel, padding, stride, dilation, output_padding):
    """Keras's output length of a transposed convolution along one axis."""
    if length is None:
        return None
    eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(eff, stride) - eff if output_padding is None else output_padding
        return (length - 1) * stride + eff + extra
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + eff % 2 + output_padding


def _transpose_geometry(layer: str, rank: int, attrs, x: TensorType) -> tuple[tuple, int]:
    spatial, channels = _input_channels(layer, rank, x, attrs["data_format"])
    _check_strides_dilation(layer, attrs)
    op = attrs["output_padding"]
    if op is not None and any(p >= s for p, s in zip(op, attrs["strides"])):
        raise ShapeError(
            f"{layer}: output_padding {list(op)} must be smaller than strides {list(attrs['strides'])} "
            "on every axis"
        )
    return spatial, channels


def _transpose_infer(layer: str, rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        spatial, _ = _transpose_geometry(layer, rank, attrs, x)
        op = attrs["output_padding"] or [None] * rank
        out = tuple(
            transpose_output_length(n, k, attrs["padding"], s, d, p)
            for n, k, s, d, p in zip(
                spatial, attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"], op
            )
        )
        if any(o is not None and o <= 0 for o in out):
            raise ShapeError(
                f"{layer}: kernel {dims_str(attrs['kernel_size'])} with padding '{attrs['padding']}' "
                f"and output_padding {attrs['output_padding']} gives an empty output {dims_str(out)} "
                f"for input {fmt_shape(x.shape)}"
            )
        shape = join_channels(x.shape[0], out, attrs["filters"], attrs["data_format"])
        return [TensorType(shape, _out_dtype(attrs))]

    return infer


def _transpose_params(layer: str, rank: int):
    def params(attrs, inputs, ctx):
        _, channels = _transpose_geometry(layer, rank, attrs, inputs[0])
        kernel = (*attrs["kernel_size"], attrs["filters"], channels)
        return kernel_and_bias(attrs, kernel, (attrs["filters"],))

    return params


def _conv_transpose(rank: int, doc: str) -> LayerDef:
    name = f"Conv{rank}DTranspose"
    return LayerDef(
        name=name,
        attrs=(
            Attr("filters", "int", doc="Number of output channels (filters).", minimum=1),
            ints("kernel_size", rank, doc="Size of the convolution window along each spatial axis."),
            _ints_attr("strides", rank, 1, "Upsampling factor along each spatial axis."),
            padding_attr(),
            Attr(
                "output_padding",
                "ints",
                None,
                "Extra size added to one side of each spatial "
                "axis of the output, below the stride (null: inferred).",
                length=rank,
                minimum=0,
                nullable=True,
            ),
            DATA_FORMAT_ATTR,
            _ints_attr("dilation_rate", rank, 1, "Spacing between kernel taps along each spatial axis."),
            ACTIVATION_ATTR,
            *kernel_bias_attrs(),
            *COMMON_ATTRS,
        ),
        infer=_transpose_infer(name, rank),
        params=_transpose_params(name, rank),
        positional=("filters", "kernel_size"),
        doc=doc,
    )


CONV1D_TRANSPOSE = _conv_transpose(
    1,
    "Transposed 1D convolution (sometimes called deconvolution): the gradient of Conv1D with "
    "respect to its input, used to upsample sequences by `strides`. The kernel is "
    "(k, filters, channels), output channels before input channels. `output_padding` picks "
    "among the output lengths that a forward Conv1D would map back to the input length.",
)

CONV2D_TRANSPOSE = _conv_transpose(
    2,
    "Transposed 2D convolution: maps each input pixel to a `kernel_size` patch of the output, "
    "spaced `strides` apart and summed where patches overlap; the usual upsampling block of "
    "decoders and generators. The kernel is (kh, kw, filters, channels). With padding 'same' "
    "and no `output_padding`, each spatial size is multiplied by the stride.",
)

# ----------------------------------------------------------------------------- depthwise & separable


def weight_attrs(kernels: tuple[str, ...], doc_names: dict[str, str]) -> tuple[Attr, ...]:
    """use_bias, then initializers, regularizers (with activity_regularizer before the
    constraints) and constraints of the named kernels and the bias, in Keras's order."""
    init = tuple(
        Attr(f"{k}_initializer", "initializer", "glorot_uniform", f"Initializer of the {doc_names[k]}.")
        for k in kernels
    )
    reg = tuple(
        Attr(f"{k}_regularizer", "regularizer", None, f"Penalty on the {doc_names[k]}.", nullable=True)
        for k in kernels
    )
    con = tuple(
        Attr(f"{k}_constraint", "constraint", None, f"Constraint on the {doc_names[k]}.", nullable=True)
        for k in kernels
    )
    return (
        Attr("use_bias", "bool", True, "Whether the layer adds a bias vector."),
        *init,
        Attr("bias_initializer", "initializer", "zeros", "Initializer of the bias."),
        *reg,
        Attr("bias_regularizer", "regularizer", None, "Penalty on the bias.", nullable=True),
        Attr("activity_regularizer", "regularizer", None, "Penalty on the output.", nullable=True),
        *con,
        Attr("bias_constraint", "constraint", None, "Constraint on the bias.", nullable=True),
    )


def _weight(attrs, name: str, prefix: str, shape) -> ParamSpec:
    return ParamSpec(
        name, tuple(shape), attrs[f"{prefix}_initializer"],
        regularizer=attrs[f"{prefix}_regularizer"], constraint=attrs[f"{prefix}_constraint"],
    )  # fmt: skip


def _depthwise_out_channels(attrs, channels: int, separable: bool) -> int:
    return attrs["filters"] if separable else channels * attrs["depth_multiplier"]


def _depthwise_infer(layer: str, rank: int, separable: bool):
    # Keras builds depthwise and separable convolutions with strides and dilation both above 1
    # (only Conv and ConvTranspose refuse the combination), so they are accepted here too.
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        spatial, channels = _input_channels(layer, rank, x, attrs["data_format"])
        out = window_output(
            layer, "kernel", x, spatial, attrs["kernel_size"], attrs["strides"], attrs["padding"],
            attrs["dilation_rate"],
        )  # fmt: skip
        c_out = _depthwise_out_channels(attrs, channels, separable)
        shape = join_channels(x.shape[0], out, c_out, attrs["data_format"])
        return [TensorType(shape, _out_dtype(attrs))]

    return infer


def _depthwise_params(layer: str, rank: int):
    def params(attrs, inputs, ctx):
        _, channels = _input_channels(layer, rank, inputs[0], attrs["data_format"])
        dm = attrs["depth_multiplier"]
        out = [_weight(attrs, "kernel", "depthwise", (*attrs["kernel_size"], channels, dm))]
        if attrs["use_bias"]:
            out.append(_weight(attrs, "bias", "bias", (channels * dm,)))
        return out

    return params


def _separable_params(layer: str, rank: int):
    def params(attrs, inputs, ctx):
        _, channels = _input_channels(layer, rank, inputs[0], attrs["data_format"])
        dm, filters = attrs["depth_multiplier"], attrs["filters"]
        out = [
            _weight(attrs, "depthwise_kernel", "depthwise", (*attrs["kernel_size"], channels, dm)),
            _weight(attrs, "pointwise_kernel", "pointwise", ((1,) * rank + (channels * dm, filters))),
        ]
        if attrs["use_bias"]:
            out.append(_weight(attrs, "bias", "bias", (filters,)))
        return out

    return params


_DEPTH_MULTIPLIER_DOC = "Number of depthwise output channels per input channel."


def _depthwise(rank: int, doc: str) -> LayerDef:
    name = f"DepthwiseConv{rank}D"
    return LayerDef(
        name=name,
        attrs=(
            ints("kernel_size", rank, doc="Size of the convolution window along each spatial axis."),
            _ints_attr("strides", rank, 1, "Step of the window along each spatial axis."),
            padding_attr(),
            Attr("depth_multiplier", "int", 1, _DEPTH_MULTIPLIER_DOC, minimum=1),
            DATA_FORMAT_ATTR,
            _ints_attr("dilation_rate", rank, 1, "Spacing between kernel taps along each spatial axis."),
            ACTIVATION_ATTR,
            *weight_attrs(("depthwise",), {"depthwise": "depthwise kernel"}),
            *COMMON_ATTRS,
        ),
        infer=_depthwise_infer(name, rank, separable=False),
        params=_depthwise_params(name, rank),
        positional=("kernel_size",),
        doc=doc,
    )


def _separable(rank: int, doc: str) -> LayerDef:
    name = f"SeparableConv{rank}D"
    return LayerDef(
        name=name,
        attrs=(
            Attr("filters", "int", doc="Number of output channels of the pointwise step.", minimum=1),
            ints("kernel_size", rank, doc="Size of the depthwise window along each spatial axis."),
            _ints_attr("strides", rank, 1, "Step of the depthwise window along each spatial axis."),
            padding_attr(),
            DATA_FORMAT_ATTR,
            _ints_attr("dilation_rate", rank, 1, "Spacing between kernel taps along each spatial axis."),
            Attr("depth_multiplier", "int", 1, _DEPTH_MULTIPLIER_DOC, minimum=1),
            ACTIVATION_ATTR,
            *weight_attrs(
                ("depthwise", "pointwise"),
                {"depthwise": "depthwise kernel", "pointwise": "pointwise kernel"},
            ),
            *COMMON_ATTRS,
        ),
        infer=_depthwise_infer(name, rank, separable=True),
        params=_separable_params(name, rank),
        positional=("filters", "kernel_size"),
        doc=doc,
    )


SEPARABLE_CONV1D = _separable(
    1,
    "Depthwise-separable 1D convolution: first convolves each input channel on its own with "
    "`depth_multiplier` kernels (`depthwise_kernel`, (k, channels, depth_multiplier)), then mixes "
    "the channels with a 1-wide convolution (`pointwise_kernel`, (1, channels * depth_multiplier, "
    "filters)), then adds the bias and applies the activation. Far fewer weights than a Conv1D "
    "of the same window.",
)

SEPARABLE_CONV2D = _separable(
    2,
    "Depthwise-separable 2D convolution, as in Xception and MobileNet: a per-channel spatial "
    "convolution (`depthwise_kernel`, (kh, kw, channels, depth_multiplier)) followed by a 1x1 "
    "convolution across channels (`pointwise_kernel`, (1, 1, channels * depth_multiplier, "
    "filters)), a bias of `filters` values and the activation.",
)

DEPTHWISE_CONV1D = _depthwise(
    1,
    "Depthwise 1D convolution: convolves each input channel separately with `depth_multiplier` "
    "kernels and concatenates the results, giving channels * depth_multiplier output channels; "
    "no mixing across channels. The weight is named `kernel`, shaped (k, channels, "
    "depth_multiplier); its initializer, regularizer and constraint are the `depthwise_*` "
    "attributes.",
)

DEPTHWISE_CONV2D = _depthwise(
    2,
    "Depthwise 2D convolution: a spatial convolution applied to every input channel on its own, "
    "`depth_multiplier` times, giving channels * depth_multiplier output channels. The weight is "
    "named `kernel`, shaped (kh, kw, channels, depth_multiplier), configured by the "
    "`depthwise_*` attributes; the bias has one value per output channel.",
)

LAYERS = (
    CONV1D,
    CONV2D,
    CONV3D,
    CONV1D_TRANSPOSE,
    CONV2D_TRANSPOSE,
    SEPARABLE_CONV1D,
    SEPARABLE_CONV2D,
    DEPTHWISE_CONV1D,
    DEPTHWISE_CONV2D,
)
