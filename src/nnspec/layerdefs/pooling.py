"""Pooling layers (MaxPooling1D/2D/3D, AveragePooling1D/2D/3D, GlobalMaxPooling1D/2D/3D,
GlobalAveragePooling1D/2D/3D) and the spatial padding, cropping and upsampling layers
(ZeroPadding1D/2D, Cropping1D/2D, UpSampling1D/2D).

None of them owns weights. Unknown (``None``) spatial dimensions pass through as ``None``, and
so does an unknown channel dimension. They all drop the mask, as Keras's do: only
GlobalAveragePooling1D reads one (it averages over the unmasked steps), and it outputs none.
"""

from __future__ import annotations

from .base import (
    COMMON_ATTRS,
    REQUIRED,
    Attr,
    LayerDef,
    ShapeError,
    TensorType,
    fmt_shape,
    ints,
    require_rank,
)
from .conv import (
    DATA_FORMAT_ATTR,
    dims_str,
    join_channels,
    padding_attr,
    per_axis_default,
    split_channels,
    window_output,
)

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _out_type(attrs, x: TensorType, shape) -> TensorType:
    """Keras casts floating inputs to the layer's dtype and leaves other dtypes alone."""
    dtype = (attrs.get("dtype") or "float32") if x.dtype in _FLOAT_DTYPES else x.dtype
    return TensorType(tuple(shape), dtype, False)


# ----------------------------------------------------------------------------- pooling


def _pool_infer(layer: str, rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, rank + 2, layer)
        fmt = attrs["data_format"]
        spatial, channels = split_channels(x.shape, fmt)
        pool = attrs["pool_size"]
        strides = attrs["strides"] if attrs["strides"] is not None else pool
        out = window_output(layer, "pool", x, spatial, pool, strides, attrs["padding"])
        return [_out_type(attrs, x, join_channels(x.shape[0], out, channels, fmt))]

    return infer


def _pool(kind: str, rank: int, doc: str) -> LayerDef:
    name = f"{kind}Pooling{rank}D"
    # MaxPooling* default to a window of 2; AveragePooling* require one (Keras 3).
    pool_default = per_axis_default(2, rank) if kind == "Max" else REQUIRED
    pool_size = ints("pool_size", rank, pool_default, "Size of the pooling window along each spatial axis.")
    return LayerDef(
        name=name,
        attrs=(
            pool_size,
            ints(
                "strides",
                rank,
                None,
                "Step of the window along each spatial axis (null: pool_size).",
                nullable=True,
            ),
            padding_attr(),
            DATA_FORMAT_ATTR,
            *COMMON_ATTRS,
        ),
        infer=_pool_infer(name, rank),
        positional=("pool_size", "strides", "padding"),
        doc=doc,
    )


MAX_POOLING1D = _pool(
    "Max",
    1,
    "Downsamples a sequence (batch, steps, channels) by taking the maximum over windows of "
    "`pool_size` steps, moved `strides` steps at a time (by default the window size, so windows "
    "do not overlap). With padding 'same' the output has ceil(steps / strides) steps.",
)
MAX_POOLING2D = _pool(
    "Max",
    2,
    "Downsamples images by taking the maximum of each channel over `pool_size` windows, moved "
    "`strides` apart (by default the window size). The classic 2x2 max pooling of CNNs halves "
    "both spatial dimensions (an odd last row or column is dropped with padding 'valid').",
)
MAX_POOLING3D = _pool(
    "Max",
    3,
    "Max pooling over the three spatial axes of a volume (batch, depth, rows, cols, channels), "
    "one channel at a time.",
)
AVERAGE_POOLING1D = _pool(
    "Average",
    1,
    "Downsamples a sequence by averaging each channel over windows of `pool_size` steps, moved "
    "`strides` steps apart (by default the window size). `pool_size` is required. With padding "
    "'same', windows that overhang the edges average only the values inside the input.",
)
AVERAGE_POOLING2D = _pool(
    "Average",
    2,
    "Downsamples images by averaging each channel over `pool_size` windows moved `strides` apart "
    "(by default the window size). `pool_size` is required. With padding 'same', edge windows "
    "average only the pixels inside the image.",
)
AVERAGE_POOLING3D = _pool(
    "Average",
    3,
    "Average pooling over the three spatial axes of a volume (batch, depth, rows, cols, "
    "channels). `pool_size` is required.",
)

# ----------------------------------------------------------------------------- global pooling


def _global_infer(layer: str, rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, rank + 2, layer)
        fmt = attrs["data_format"]
        _, channels = split_channels(x.shape, fmt)
        if attrs["keepdims"]:
            shape = join_channels(x.shape[0], (1,) * rank, channels, fmt)
        else:
            shape = (x.shape[0], channels)
        return [_out_type(attrs, x, shape)]

    return infer


def _global(kind: str, rank: int, doc: str) -> LayerDef:
    name = f"Global{kind}Pooling{rank}D"
    return LayerDef(
        name=name,
        attrs=(
            DATA_FORMAT_ATTR,
            Attr("keepdims", "bool", False, "Keep the spatial axes, with size 1."),
            *COMMON_ATTRS,
        ),
        infer=_global_infer(name, rank),
        doc=doc,
    )


GLOBAL_MAX_POOLING1D = _global(
    "Max",
    1,
    "Reduces a sequence (batch, steps, channels) to (batch, channels) by taking the maximum of "
    "each channel over all steps; with `keepdims`, to (batch, 1, channels). Ignores (and drops) "
    "a mask: masked steps take part in the maximum.",
)
GLOBAL_MAX_POOLING2D = _global(
    "Max",
    2,
    "Reduces images to one value per channel, the maximum over all rows and columns: "
    "(batch, channels), or (batch, 1, 1, channels) with `keepdims`.",
)
GLOBAL_MAX_POOLING3D = _global(
    "Max",
    3,
    "Reduces volumes to one value per channel, the maximum over the three spatial axes: "
    "(batch, channels), or (batch, 1, 1, 1, channels) with `keepdims`.",
)
GLOBAL_AVERAGE_POOLING1D = _global(
    "Average",
    1,
    "Reduces a sequence (batch, steps, channels) to (batch, channels) by averaging each channel "
    "over the steps; with `keepdims`, to (batch, 1, channels). If the input carries a mask "
    "(from Embedding(mask_zero) or Masking), the average is over the unmasked steps only. "
    "The output carries no mask.",
)
GLOBAL_AVERAGE_POOLING2D = _global(
    "Average",
    2,
    "Reduces images to one value per channel, the mean over all rows and columns: "
    "(batch, channels), or (batch, 1, 1, channels) with `keepdims`. The usual head of a CNN "
    "classifier before its last Dense layer.",
)
GLOBAL_AVERAGE_POOLING3D = _global(
    "Average",
    3,
    "Reduces volumes to one value per channel, the mean over the three spatial axes: "
    "(batch, channels), or (batch, 1, 1, 1, channels) with `keepdims`.",
)

# ----------------------------------------------------------------------------- padding, cropping


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _as_pair(v):
    """An int n -> (n, n); a list of two ints as a tuple; anything else -> None."""
    if _is_count(v):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_count(e) for e in v):
        return (v[0], v[1])
    return None


def pairs_2d(value, layer: str, attr: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``1`` -> ((1, 1), (1, 1)); ``[1, 2]`` -> ((1, 1), (2, 2)); ``[[0, 1], [2, 3]]`` as is.

    Each of the two entries may itself be an int or a pair (``[1, [2, 3]]``), as Keras allows.
    """
    if _is_count(value):
        return ((value, value), (value, value))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        rows, cols = _as_pair(value[0]), _as_pair(value[1])
        if rows is not None and cols is not None:
            return (rows, cols)
    raise ShapeError(
        f"{layer}: {attr} must be an int, [rows, cols] or [[top, bottom], [left, right]] of "
        f"non-negative ints; got {value!r}"
    )


def _spatial_pad_infer(layer: str, rank: int, sign: int, attr: str, has_format: bool):
    """ZeroPadding (sign +1) and Cropping (sign -1): add or remove rows/steps on each side."""

    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, rank + 2, layer)
        fmt = attrs["data_format"] if has_format else "channels_last"
        spatial, channels = split_channels(x.shape, fmt)
        pairs = (tuple(attrs[attr]),) if rank == 1 else pairs_2d(attrs[attr], layer, attr)
        if rank == 1 and any(e < 0 for e in pairs[0]):
            raise ShapeError(f"{layer}: {attr} must be non-negative; got {list(pairs[0])}")
        out = tuple(None if n is None else n + sign * (a + b) for n, (a, b) in zip(spatial, pairs))
        if any(o is not None and o <= 0 for o in out):
            raise ShapeError(
                f"{layer}: {attr} {[list(p) for p in pairs] if rank > 1 else list(pairs[0])} removes "
                f"all of input {dims_str(spatial)} (input shape {fmt_shape(x.shape)})"
            )
        return [_out_type(attrs, x, join_channels(x.shape[0], out, channels, fmt))]

    return infer


_PAD2D_DOC = "An int (every side), [rows, cols] (symmetric per axis) or [[top, bottom], [left, right]]."

ZERO_PADDING1D = LayerDef(
    name="ZeroPadding1D",
    attrs=(
        Attr(
            "padding",
            "ints",
            1,
            "Zeros added at the start and end of the steps axis: an int (both ends) or [start, end].",
            length=2,
            minimum=0,
        ),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_spatial_pad_infer("ZeroPadding1D", 1, +1, "padding", has_format=True),
    positional=("padding",),
    doc="Adds rows of zeros at the start and end of a sequence (batch, steps, channels), "
    "lengthening the steps axis by the total padding.",
)

ZERO_PADDING2D = LayerDef(
    name="ZeroPadding2D",
    attrs=(
        Attr("padding", "any", [1, 1], "Zeros added around the image. " + _PAD2D_DOC),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_spatial_pad_infer("ZeroPadding2D", 2, +1, "padding", has_format=True),
    positional=("padding",),
    doc="Adds rows and columns of zeros around images (batch, rows, cols, channels): at the top "
    "and bottom, and at the left and right, by the amounts in `padding`.",
)

CROPPING1D = LayerDef(
    name="Cropping1D",
    attrs=(
        Attr(
            "cropping",
            "ints",
            [1, 1],
            "Steps removed at the start and end: an int (both ends) or [start, end].",
            length=2,
            minimum=0,
        ),
        *COMMON_ATTRS,
    ),
    infer=_spatial_pad_infer("Cropping1D", 1, -1, "cropping", has_format=False),
    positional=("cropping",),
    doc="Removes steps at the start and end of a sequence (batch, steps, channels). At least "
    "one step must remain.",
)

CROPPING2D = LayerDef(
    name="Cropping2D",
    attrs=(
        Attr("cropping", "any", [[0, 0], [0, 0]], "Rows and columns removed. " + _PAD2D_DOC),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_spatial_pad_infer("Cropping2D", 2, -1, "cropping", has_format=True),
    positional=("cropping",),
    doc="Removes rows at the top and bottom and columns at the left and right of images, by the "
    "amounts in `cropping`. At least one row and one column must remain.",
)

# ----------------------------------------------------------------------------- upsampling


def _upsampling_infer(layer: str, rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, rank + 2, layer)
        fmt = attrs.get("data_format", "channels_last")
        spatial, channels = split_channels(x.shape, fmt)
        size = [attrs["size"]] if rank == 1 else attrs["size"]
        out = tuple(None if n is None else n * f for n, f in zip(spatial, size))
        return [_out_type(attrs, x, join_channels(x.shape[0], out, channels, fmt))]

    return infer


UP_SAMPLING1D = LayerDef(
    name="UpSampling1D",
    attrs=(
        Attr("size", "int", 2, "How many times each step is repeated.", minimum=1),
        *COMMON_ATTRS,
    ),
    infer=_upsampling_infer("UpSampling1D", 1),
    positional=("size",),
    doc="Repeats every step of a sequence (batch, steps, channels) `size` times in place: "
    "(batch, steps * size, channels).",
)

UP_SAMPLING2D = LayerDef(
    name="UpSampling2D",
    attrs=(
        ints("size", 2, [2, 2], "Upsampling factor for rows and columns."),
        DATA_FORMAT_ATTR,
        Attr(
            "interpolation",
            "enum",
            "nearest",
            "How new pixels are computed.",
            choices=("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5"),
        ),
        *COMMON_ATTRS,
    ),
    infer=_upsampling_infer("UpSampling2D", 2),
    positional=("size",),
    doc="Enlarges images by integer factors along rows and columns: 'nearest' repeats each "
    "pixel into a size[0] x size[1] block; the other interpolations resize the image smoothly "
    "to the same output size.",
)

LAYERS = (
    MAX_POOLING1D,
    MAX_POOLING2D,
    MAX_POOLING3D,
    AVERAGE_POOLING1D,
    AVERAGE_POOLING2D,
    AVERAGE_POOLING3D,
    GLOBAL_MAX_POOLING1D,
    GLOBAL_MAX_POOLING2D,
    GLOBAL_MAX_POOLING3D,
    GLOBAL_AVERAGE_POOLING1D,
    GLOBAL_AVERAGE_POOLING2D,
    GLOBAL_AVERAGE_POOLING3D,
    ZERO_PADDING1D,
    ZERO_PADDING2D,
    CROPPING1D,
    CROPPING2D,
    UP_SAMPLING1D,
    UP_SAMPLING2D,
)
