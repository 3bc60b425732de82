"""Preprocessing layers that are part of a model's arithmetic: Rescaling, Normalization,
Resizing, CenterCrop, CategoryEncoding, Discretization.

``Rescaling`` is how Keras's image tutorials start a model (``Rescaling(1./255)`` on pixel
values): ``y = x * scale + offset``, computed in float32 as Keras does (the product rounded to
float32, then the offset added), for float or integer inputs (integer pixels become float32).

``Normalization`` standardizes features with a fixed mean and variance:
``(x - mean) / max(sqrt(variance), 1e-7)`` in float32 (``invert``: ``mean + x * that``), the
statistics kept per entry of ``axis`` and broadcast over the other axes. Given in the file
(``mean``, ``variance``), they are constants and the layer has no weights, as in Keras;
otherwise they are Keras's three non-trainable weights ``mean``, ``variance`` (zeros and ones
until set) and ``count`` (int32, kept at 0 as Keras 3 keeps it), which ``layer.adapt(data)``,
``set_weights`` or a weights file fill. Neither is ever trained.

``Resizing`` and ``CenterCrop`` resample images with the pooling family's resize kernels, as
Keras on PyTorch does (``interpolate`` with half-pixel centres; ``antialias``: PIL's filters as
wide as the scale when downsampling, as PyTorch's antialiased mode): a window of
the input (the whole image, its largest centred crop of the target's aspect ratio, or the image
padded with ``fill_value`` to that ratio) is resized to (height, width). CenterCrop takes the
centred (height, width) crop when the image is at least that large, and otherwise resizes its
largest centred crop of the target's aspect ratio (bilinear), as Keras's ``smart_resize``. Both
output float32; for integer images Resizing rounds (half to even) as Keras's computed output.

``CategoryEncoding`` turns integer ids into one-hot rows, or per sample a multi-hot or count
row over the last axis; ``Discretization`` buckets values by sorted ``bin_boundaries`` (the
bucket of ``x`` is the number of boundaries <= x) and encodes the buckets the same way. As in
Keras on PyTorch, float ids are truncated, negative ids give empty rows and an id >= the depth is
an error (here one naming the layer and the id). Neither passes a gradient (integer outputs, or
piecewise constant ones). Discretization's ``num_bins`` needs Keras's ``adapt`` (approximate
quantiles), which nnspec does not compute: a file gives ``bin_boundaries``.
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape, require_rank
from .embedding import embedding_id_text
from .conv import join_channels, split_channels
from .core import DATA_FORMAT_ATTR
from .pooling import ANTIALIAS, RESIZE_MODES, _static, _torch_taps, image_views, resize2d, resize2d_backward

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_normalization_tables", "_bucket")
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def rescale_forward(x, y, scale, offset):
    """``y = float32(x) * scale + offset`` over 2-D views, in float32 arithmetic."""
    rows, cols = x.shape
    s = np.float32(scale)
    o = np.float32(offset)
    for r in range(rows):
        for c in range(cols):
            y[r, c] = np.float32(x[r, c]) * s + o


def rescale_backward(dy, dx, scale):
    rows, cols = dy.shape
    s = np.float32(scale)
    for r in range(rows):
        for c in range(cols):
            dx[r, c] += dy[r, c] * s


def _rescaling_infer(attrs, inputs, ctx):
    (x,) = inputs
    return [TensorType(x.shape, "float32", x.masked)]


def _rescaling_emit(e):
    a = e.attrs
    return [
        e.call(
            rescale_forward,
            e.per_sample(e.x[0]),
            e.per_sample(e.y[0], True),
            float(a["scale"]),
            float(a["offset"]),
        )
    ]


def _rescaling_backward(e):
    if e.dx[0] is None:
        return []
    return [
        e.call(rescale_backward, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]), float(e.attrs["scale"]))
    ]


def _rescaling_reference(attrs, inputs, params, masks=None):
    import numpy

    return [numpy.asarray(inputs[0], numpy.float64) * attrs["scale"] + attrs["offset"]]


RESCALING = LayerDef(
    name="Rescaling",
    attrs=(
        Attr("scale", "float", doc="The factor inputs are multiplied by (1/255 for 8-bit pixels)."),
        Attr("offset", "float", 0.0, "Added after scaling."),
        *COMMON_ATTRS,
    ),
    infer=_rescaling_infer,
    emit=_rescaling_emit,
    emit_backward=_rescaling_backward,
    reference=_rescaling_reference,
    positional=("scale", "offset"),
    doc="`x * scale + offset`, in float32 (integer inputs such as 8-bit pixels become float32). "
    "Passes the mask through.",
)


# ----------------------------------------------------------------------------- Normalization

KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): the smallest standard deviation divided by


def _normalization_tables(mean, var, dims, mstrides, mb, db):
    """Per value of a sample (C order over ``dims``), its mean ``mb`` and standard deviation
    ``db`` = max(sqrt(variance), 1e-7), in float32; ``mstrides`` step through the flat kept-axes
    statistics (0 on the axes they are broadcast over)."""
    for i in range(mb.size):
        rem = i
        k = 0
        for a in range(len(dims) - 1, -1, -1):
            k += (rem % dims[a]) * mstrides[a]
            rem //= dims[a]
        mb[i] = np.float32(mean[k])
        db[i] = max(np.float32(math.sqrt(np.float32(var[k]))), np.float32(KERAS_EPSILON))


def normalization_forward(x, y, mean, var, dims, mstrides, invert):
    """``y = (x - mean) / std`` (``invert``: ``mean + x * std``) over (rows, values) views."""
    rows, n = x.shape
    mb = np.empty(n, np.float32)
    db = np.empty(n, np.float32)
    _normalization_tables(mean, var, dims, mstrides, mb, db)
    for r in range(rows):
        for i in range(n):
            v = np.float32(x[r, i])
            y[r, i] = mb[i] + v * db[i] if invert else (v - mb[i]) / db[i]


def normalization_backward(dy, dx, mean, var, dims, mstrides, invert):
    rows, n = dy.shape
    mb = np.empty(n, np.float32)
    db = np.empty(n, np.float32)
    _normalization_tables(mean, var, dims, mstrides, mb, db)
    for r in range(rows):
        for i in range(n):
            dx[r, i] += dy[r, i] * db[i] if invert else dy[r, i] / db[i]


def _norm_axes(attrs, x: TensorType) -> tuple[int, ...]:
    """The kept axes (sorted, batch included in the count), checked as Keras's build does."""
    axis = attrs["axis"]
    axes = () if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
    rank = x.rank
    bad = [a for a in axes if not -rank <= a < rank]
    if bad:
        raise ShapeError(f"Normalization(axis={axis}): axis {bad[0]} is out of range for an input of rank {rank} "
                         f"{fmt_shape(x.shape)}")  # fmt: skip
    keep = tuple(sorted({a % rank for a in axes}))
    unknown = [a for a in keep if x.shape[a] is None]
    if unknown:
        what = "the batch axis" if unknown[0] == 0 else f"axis {unknown[0]}"
        raise ShapeError(f"Normalization(axis={axis}) keeps statistics per entry of {what}, whose size is not known "
                         f"in {fmt_shape(x.shape)}; keep only axes of known size")  # fmt: skip
    return keep


def _nested_shape(v) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)):
        return ()
    inner = {_nested_shape(e) for e in v}
    if len(inner) != 1:
        raise ShapeError(f"a ragged list of numbers: {v!r}")
    return (len(v), *inner.pop())


def _given_stats_shape(attrs, x: TensorType, keep) -> tuple[int, ...] | None:
    """The shape of a given mean/variance, checked; None when the layer has weights instead."""
    mean, var = attrs["mean"], attrs["variance"]
    if (mean is None) != (var is None):
        raise ShapeError("Normalization: give both `mean` and `variance`, or neither (then they are weights that "
                         "adapt or a weights file sets)")  # fmt: skip
    if mean is None:
        return None
    shape, vshape = _nested_shape(mean), _nested_shape(var)
    if shape != vshape:
        raise ShapeError(f"Normalization: `mean` has shape {shape} and `variance` {vshape}; they must match")
    if len(shape) > len(keep):
        raise ShapeError(f"Normalization: `mean` of shape {shape} has more axes than `axis` keeps ({len(keep)})")
    kept = [x.shape[a] for a in keep]
    for d, want in zip(reversed(shape), reversed(kept)):
        if d != want:
            raise ShapeError(f"Normalization(axis={attrs['axis']}): `mean` of shape {shape} does not fit the kept "
                             f"axes of {fmt_shape(x.shape)}, of sizes {tuple(kept)} (aligned from the right)")  # fmt: skip
    return shape


def _normalization_infer(attrs, inputs, ctx):
    (x,) = inputs
    keep = _norm_axes(attrs, x)
    _given_stats_shape(attrs, x, keep)
    return [TensorType(x.shape, attrs.get("dtype") or "float32", x.masked)]


def _normalization_params(attrs, inputs, ctx):
    (x,) = inputs
    if attrs["mean"] is not None:
        return []
    shape = tuple(x.shape[a] for a in _norm_axes(attrs, x))
    return [
        ParamSpec("mean", shape, "zeros", trainable=False),
        ParamSpec("variance", shape, "ones", trainable=False),
        ParamSpec("count", (), "zeros", trainable=False, dtype="int32"),
    ]


def _normalization_stats(attrs, x: TensorType):
    """(kept shape, flat given mean, flat given variance) as Python floats (None: weights)."""
    import numpy

    keep = _norm_axes(attrs, x)
    kept = tuple(x.shape[a] for a in keep)
    shape = _given_stats_shape(attrs, x, keep)
    if shape is None:
        return kept, None, None
    full = (1,) * (len(kept) - len(shape)) + shape
    flat = [numpy.broadcast_to(numpy.reshape(numpy.asarray(attrs[k], numpy.float32), full), kept).ravel().tolist()
            for k in ("mean", "variance")]  # fmt: skip
    return kept, *flat


def _normalization_args(e) -> tuple:
    """The kernels' statistics and index arguments for one step."""
    x = TensorType((None, *e.x_shapes[0]), e.x_dtypes[0])
    keep = _norm_axes(e.attrs, x)
    kept, mean, var = _normalization_stats(e.attrs, x)
    if mean is None:
        size = math.prod(kept)
        mean, var = (f"{p}.reshape({size})" for p in e.p[:2])
    else:
        mean, var = (f"np.array({v!r}, np.float32)" for v in (mean, var))
    dims = list(e.x_shapes[0])
    stride, mstrides = 1, [0] * len(dims)
    for a in reversed(keep):  # kept axes count the batch as 0
        mstrides[a - 1] = stride
        stride *= dims[a - 1]
    return mean, var, tuple(dims) or (1,), tuple(mstrides) or (0,), bool(e.attrs["invert"])


def _normalization_emit(e):
    return [e.call(normalization_forward, e.per_sample(e.x[0]), e.per_sample(e.y[0], True), *_normalization_args(e))]


def _normalization_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(normalization_backward, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]), *_normalization_args(e))]


def _normalization_reference(attrs, inputs, params, masks=None):
    import numpy

    x = numpy.asarray(inputs[0], numpy.float64)
    keep = _norm_axes(attrs, TensorType((None, *x.shape[1:])))
    kept, mean, var = _normalization_stats(attrs, TensorType((None, *x.shape[1:])))
    if mean is None:
        mean, var = params[0], params[1]
    bshape = [x.shape[a] if a in keep else 1 for a in range(x.ndim)]
    mean = numpy.reshape(numpy.asarray(mean, numpy.float64), bshape)
    std = numpy.maximum(numpy.sqrt(numpy.reshape(numpy.asarray(var, numpy.float64), bshape)), KERAS_EPSILON)
    return [mean + x * std if attrs["invert"] else (x - mean) / std]


def _normalization_adapt(attrs, x: TensorType, data) -> list:
    """Keras's ``adapt``: the mean and (biased) variance of ``data`` over every axis but the kept
    ones, as the layer's three weights."""
    import numpy

    if attrs["mean"] is not None:
        raise ValueError("Normalization.adapt: this layer's mean and variance are given as constants")
    keep = _norm_axes(attrs, x)
    data = numpy.asarray(data, numpy.float64)
    if data.ndim != x.rank or any(data.shape[a] != x.shape[a] for a in keep):
        raise ValueError(f"Normalization.adapt: data of shape {data.shape} does not fit the layer's input "
                         f"{fmt_shape(x.shape)}")  # fmt: skip
    axes = tuple(a for a in range(data.ndim) if a not in keep)
    return [data.mean(axis=axes).astype(numpy.float32), data.var(axis=axes).astype(numpy.float32),
            numpy.zeros((), numpy.int32)]  # fmt: skip


NORMALIZATION = LayerDef(
    name="Normalization",
    attrs=(
        Attr("axis", "axis", -1, "The axis or axes with statistics per entry (usually the features); null: one "
             "mean and variance for everything.", nullable=True),  # fmt: skip
        Attr("mean", "numbers", None, "The mean to subtract (a number, or values per entry of the kept axes); "
             "null: weights set by adapt or a weights file.", nullable=True),  # fmt: skip
        Attr("variance", "numbers", None, "The variance to divide by the square root of; given with `mean`.",
             nullable=True),  # fmt: skip
        Attr("invert", "bool", False, "Undo the normalization instead: `mean + x * sqrt(variance)`."),
        *COMMON_ATTRS,
    ),
    infer=_normalization_infer,
    params=_normalization_params,
    emit=_normalization_emit,
    emit_backward=_normalization_backward,
    reference=_normalization_reference,
    positional=("axis", "mean", "variance", "invert"),
    extra={"adapt": _normalization_adapt},
    doc="Standardizes features: `(x - mean) / sqrt(variance)` (the square root at least 1e-7), with "
    "statistics per entry of `axis`. Given in the file, they are constants; otherwise the layer "
    "holds them as non-trainable weights `mean`, `variance` and `count`, which Python's "
    "`layer.adapt(data)` computes from data, as Keras's. Passes the mask through.",
)


# ----------------------------------------------------------------------------- Resizing, CenterCrop


def _resize_window(attrs, h: int, w: int) -> tuple:
    """(mode, window height, width, row and column offsets into the image, fill) for an image
    of h x w, as Keras computes crop_to_aspect_ratio, pad_to_aspect_ratio and CenterCrop."""
    th, tw = attrs["height"], attrs["width"]
    if "interpolation" not in attrs:  # CenterCrop
        if h >= th and w >= tw:
            return RESIZE_MODES["nearest"], th, tw, (h - th) // 2, (w - tw) // 2, 0.0
        crop = True
        mode = RESIZE_MODES["bilinear"]
    else:
        crop = attrs["crop_to_aspect_ratio"]
        mode = RESIZE_MODES[attrs["interpolation"]]
        if attrs["antialias"] and attrs["interpolation"] != "nearest":  # Keras ignores it for nearest
            mode += ANTIALIAS
    if crop:
        ch = max(min(h, int(float(w * th) / tw)), 1)
        cw = max(min(w, int(float(h * tw) / th)), 1)
        return mode, ch, cw, int(float(h - ch) / 2), int(float(w - cw) / 2), 0.0
    if attrs.get("pad_to_aspect_ratio"):
        ph = int(float(max(h, int(float(w * th) / tw)) - h) / 2)
        pw = int(float(max(w, int(float(h * tw) / th)) - w) / 2)
        return mode, h + 2 * ph, w + 2 * pw, -ph, -pw, float(attrs["fill_value"])
    return mode, h, w, 0, 0, 0.0


def _rounding(attrs, dtype: str) -> tuple:
    """(round, low, high): Resizing of integer images rounds half to even, as Keras on PyTorch
    casts back to the input's dtype; bicubic uint8 results are clipped to 0-255 first."""
    if "interpolation" not in attrs or dtype not in _INT_DTYPES:
        return False, 0.0, 0.0
    if dtype == "uint8" and attrs["interpolation"] == "bicubic":
        return True, 0.0, 255.0
    return True, -math.inf, math.inf


def _resize_infer(layer: str):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, 4, layer)
        if attrs.get("interpolation") not in (None, *RESIZE_MODES):
            raise ShapeError(f"{layer}: interpolation '{attrs['interpolation']}' is not supported: Keras on PyTorch "
                             f"refuses it and its backends compute it differently; use one of "
                             f"{', '.join(RESIZE_MODES)}")  # fmt: skip
        if attrs.get("crop_to_aspect_ratio") and attrs.get("pad_to_aspect_ratio"):
            raise ShapeError(f"{layer}: crop_to_aspect_ratio and pad_to_aspect_ratio exclude each other")
        fmt = attrs["data_format"]
        _, channels = split_channels(x.shape, fmt)
        shape = join_channels(x.shape[0], (attrs["height"], attrs["width"]), channels, fmt)
        return [TensorType(shape, "float32", False)]

    return infer


def _resize_emit(layer: str):
    def emit(e):
        _static(e, layer)
        x4, y4, (h, w) = image_views(e, e.attrs["data_format"] == "channels_first")
        return [e.call(resize2d, x4, y4, *_resize_window(e.attrs, h, w), *_rounding(e.attrs, e.x_dtypes[0]))]

    return emit


def _resize_backward(layer: str):
    def backward(e):
        if e.dx[0] is None:
            return []
        _static(e, layer)
        dx4, dy4, (h, w) = image_views(e, e.attrs["data_format"] == "channels_first", e.dx[0], e.dy[0])
        mode, sh, sw, oy, ox, _ = _resize_window(e.attrs, h, w)
        return [e.call(resize2d_backward, dy4, dx4, mode, sh, sw, oy, ox)]

    return backward


def _antialias_taps(n_in: int, n_out: int, cubic: bool):
    """(indices, weights), each (n_out, taps): PyTorch's antialiased interpolate along one axis
    (PIL's filters: the window widens with the scale when downsampling, weights normalized)."""
    import numpy

    scale = n_in / n_out
    support = (2.0 if cubic else 1.0) * max(scale, 1.0)
    stretch = max(scale, 1.0)
    rows = []
    for o in range(n_out):
        center = scale * (o + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        d = numpy.abs((numpy.arange(lo, hi) - center + 0.5) / stretch)
        if cubic:  # Keys's cubic with a = -0.5
            w = numpy.where(d < 1, 1.5 * d**3 - 2.5 * d**2 + 1, numpy.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0))
        else:
            w = numpy.maximum(0.0, 1.0 - d)
        rows.append((numpy.arange(lo, hi), w / w.sum() if w.sum() != 0 else w))
    width = max(len(i) for i, _ in rows)
    idx = numpy.zeros((n_out, width), int)
    wts = numpy.zeros((n_out, width))
    for o, (i, w) in enumerate(rows):
        idx[o, : len(i)] = i
        wts[o, : len(w)] = w
    return idx, wts


def _resize_reference(attrs, inputs, params, masks=None):
    import numpy

    cf = attrs["data_format"] == "channels_first"
    x = numpy.asarray(inputs[0], numpy.float64)
    x = numpy.moveaxis(x, 1, -1) if cf else x
    mode, sh, sw, oy, ox, fill = _resize_window(attrs, x.shape[1], x.shape[2])
    window = numpy.full((x.shape[0], sh, sw, x.shape[3]), fill)
    rows = numpy.arange(sh) + oy
    cols = numpy.arange(sw) + ox
    keep_r = numpy.flatnonzero((rows >= 0) & (rows < x.shape[1]))
    keep_c = numpy.flatnonzero((cols >= 0) & (cols < x.shape[2]))
    window[:, keep_r[:, None], keep_c[None, :]] = x[:, rows[keep_r][:, None], cols[keep_c][None, :]]
    y = window
    for ax, n_out in ((1, attrs["height"]), (2, attrs["width"])):
        n_in = y.shape[ax]
        if mode == RESIZE_MODES["nearest"]:
            y = numpy.take(y, numpy.minimum(numpy.floor((numpy.arange(n_out) + 0.5) * (n_in / n_out)).astype(int),
                                            n_in - 1), axis=ax)  # fmt: skip
            continue
        if mode >= ANTIALIAS:
            idx, wts = _antialias_taps(n_in, n_out, mode == ANTIALIAS + RESIZE_MODES["bicubic"])
        else:
            idx, wts = _torch_taps(n_in, n_out, mode == RESIZE_MODES["bicubic"])
        taken = numpy.take(y, idx, axis=ax)
        shape = [1] * taken.ndim
        shape[ax], shape[ax + 1] = wts.shape
        y = (taken * wts.reshape(shape)).sum(axis=ax + 1)
    if attrs.get("interpolation") is not None and numpy.asarray(inputs[0]).dtype.kind in "iu":
        y = numpy.round(y)
        if numpy.asarray(inputs[0]).dtype == numpy.uint8 and attrs["interpolation"] == "bicubic":
            y = numpy.clip(y, 0, 255)
    return [numpy.moveaxis(y, -1, 1) if cf else y]


_SIZE_ATTRS = (
    Attr("height", "int", doc="Height of the output images.", minimum=1),
    Attr("width", "int", doc="Width of the output images.", minimum=1),
)

RESIZING = LayerDef(
    name="Resizing",
    attrs=(
        *_SIZE_ATTRS,
        Attr("interpolation", "enum", "bilinear", "How output pixels are sampled (lanczos3, lanczos5 and area are "
             "refused: Keras on PyTorch refuses them).",
             choices=("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5", "area")),  # fmt: skip
        Attr("crop_to_aspect_ratio", "bool", False, "Resize the largest centred crop with the output's aspect ratio "
             "instead of stretching."),  # fmt: skip
        Attr("pad_to_aspect_ratio", "bool", False, "Pad the image with `fill_value` to the output's aspect ratio "
             "(centred) instead of stretching."),  # fmt: skip
        Attr("fill_mode", "enum", "constant", "How padding is filled (Keras on PyTorch supports only 'constant').",
             choices=("constant",)),  # fmt: skip
        Attr("fill_value", "float", 0.0, "The value of the padding of pad_to_aspect_ratio."),
        Attr("antialias", "bool", False, "Filter as PyTorch's antialiased interpolate (PIL's filters, as wide "
             "as the scale when downsampling); ignored with nearest, as Keras ignores it."),  # fmt: skip
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_resize_infer("Resizing"),
    emit=_resize_emit("Resizing"),
    emit_backward=_resize_backward("Resizing"),
    reference=_resize_reference,
    positional=("height", "width"),
    doc="Resizes images (batch, rows, cols, channels) to (height, width) by bilinear, nearest or "
    "bicubic interpolation (PyTorch's half-pixel sampling, as Keras on PyTorch); optionally the "
    "largest centred crop, or the image padded with `fill_value`, of the output's aspect ratio. "
    "Integer images give rounded values, as Keras computes them.",
)

CENTER_CROP = LayerDef(
    name="CenterCrop",
    attrs=(*_SIZE_ATTRS, DATA_FORMAT_ATTR, *COMMON_ATTRS),
    infer=_resize_infer("CenterCrop"),
    emit=_resize_emit("CenterCrop"),
    emit_backward=_resize_backward("CenterCrop"),
    reference=_resize_reference,
    positional=("height", "width"),
    doc="Crops the centre (height, width) of images; an image smaller than that in either "
    "dimension is instead resized (bilinear) from its largest centred crop of the target's "
    "aspect ratio, as Keras's smart_resize. The output is float32.",
)


# ----------------------------------------------------------------------------- CategoryEncoding, Discretization

ENCODINGS = {"one_hot": 0, "multi_hot": 1, "count": 2, "int": 3}  # the kernel's ``mode``


def _bucket(v, bounds):
    """How many of the sorted float32 ``bounds`` are <= ``v`` (torch.bucketize, right=True)."""
    lo = 0
    hi = bounds.size
    x = np.float32(v)
    while lo < hi:
        mid = (lo + hi) // 2
        if bounds[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def categorical(x, y, bounds, bucketize, mode, depth):
    """Encode the ids of ``x`` (rows, width), or their buckets by ``bounds`` (``bucketize``),
    into ``y``: (rows * width, depth) one-hot (mode 0); (rows, depth) multi-hot (1) or counts
    (2); (rows, width) the bucket ids themselves (3). Float ids are truncated; negative ids
    give nothing. Returns the flat position of the first id >= ``depth``, or -1."""
    rows, width = x.shape
    if mode != 3:
        y[:] = 0.0
    for r in range(rows):
        for j in range(width):
            v = x[r, j]
            if bucketize:
                k = _bucket(v, bounds)
            else:
                if not (v < depth):  # also catches NaN
                    return r * width + j
                k = int(v)
            if mode == 3:
                y[r, j] = k
            elif k >= 0:
                if mode == 0:
                    y[r * width + j, k] = 1.0
                elif mode == 1:
                    y[r, k] = 1.0
                else:
                    y[r, k] += 1.0
    return -1


def _encoding(attrs) -> str:
    mode = attrs["output_mode"]
    return "multi_hot" if mode == "binary" else mode  # Keras's older name


def _depth(attrs) -> int:
    return attrs["num_tokens"] if "num_tokens" in attrs else len(attrs["bin_boundaries"]) + 1


def _encode_infer(layer: str):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        if attrs.get("sparse"):
            raise ShapeError(f"{layer}: sparse outputs are not supported (nnspec has no sparse tensors)")
        if layer == "Discretization":
            _check_boundaries(attrs)
        mode, depth = _encoding(attrs), _depth(attrs)
        if mode == "int":
            return [TensorType(x.shape, "int32", False)]
        if mode == "one_hot":
            shape = x.shape[:-1] if x.rank >= 2 and x.shape[-1] == 1 else x.shape  # (..., 1): one id per row
            return [TensorType((*shape, depth), attrs.get("dtype") or "float32", False)]
        if x.rank != 2:
            raise ShapeError(f"{layer}: output_mode '{mode}' needs an input (batch, values), one row of ids per "
                             f"sample; got {fmt_shape(x.shape)} (Keras's backends disagree on other ranks)")  # fmt: skip
        return [TensorType((x.shape[0], depth), attrs.get("dtype") or "float32", False)]

    return infer


def _check_boundaries(attrs) -> None:
    bounds, bins = attrs["bin_boundaries"], attrs["num_bins"]
    if bounds is None:
        raise ShapeError("Discretization needs bin_boundaries: num_bins alone is filled in by Keras's adapt "
                         "(approximate quantiles of data), which nnspec does not compute"
                         if bins is not None else "Discretization needs bin_boundaries")  # fmt: skip
    if bins is not None:
        raise ShapeError("Discretization: give bin_boundaries or num_bins, not both (as Keras)")
    if not isinstance(bounds, list) or any(isinstance(b, list) for b in bounds):
        raise ShapeError(f"Discretization: bin_boundaries must be a list of numbers; got {bounds!r}")
    if any(b > a for a, b in zip(bounds[1:], bounds)):
        raise ShapeError(f"Discretization: bin_boundaries must be sorted in increasing order; got {bounds}")


def _encode_emit(layer: str):
    def emit(e):
        a = e.attrs
        (xs,) = e.x_shapes
        mode, depth = _encoding(a), _depth(a)
        x2 = e.flat2(e.x[0], tuple(xs) or (1,), e.rows())
        ys = e.y_shapes[0]
        y2 = e.flat2(e.y[0], tuple(ys), e.rows(output=True))
        bucketize = layer == "Discretization"
        bounds = f"np.array({[float(b) for b in a['bin_boundaries']]!r}, np.float32)" if bucketize else e.empty
        bad = f"{e.y[0]}_bad"
        msg = f"{layer} '{e.step.node}': ids must lie below num_tokens ({depth}); got "
        return [
            f"{bad} = {e.call(categorical, x2, y2, bounds, bucketize, ENCODINGS[mode], depth)}",
            f"if {bad} >= 0:",
            f"    raise ValueError({e.lit(msg)} + {e.call(embedding_id_text, x2, bad)})",
        ]

    return emit


def _no_gradient(e):
    """Integer ids, or a piecewise-constant function of the input: no gradient flows back."""
    return []


def _encode_reference(layer: str):
    def reference(attrs, inputs, params, masks=None):
        import numpy

        x = numpy.asarray(inputs[0])
        mode, depth = _encoding(attrs), _depth(attrs)
        if layer == "Discretization":
            ids = numpy.searchsorted(numpy.asarray(attrs["bin_boundaries"], numpy.float32), x.astype(numpy.float32),
                                     side="right")  # fmt: skip
        else:
            ids = numpy.trunc(x).astype(numpy.int64)
            if (ids >= depth).any():
                raise ValueError(f"an id >= {depth}")
        if mode == "int":
            return [ids]
        hot = (ids[..., None] == numpy.arange(depth)).astype(numpy.float64)  # negative ids: empty rows
        if mode == "one_hot":
            return [hot[..., 0, :] if x.ndim >= 2 and x.shape[-1] == 1 else hot]
        return [hot.max(axis=1) if mode == "multi_hot" else hot.sum(axis=1)]

    return reference


_SPARSE = Attr("sparse", "bool", False, "Sparse outputs (refused: nnspec has no sparse tensors).")

CATEGORY_ENCODING = LayerDef(
    name="CategoryEncoding",
    attrs=(
        Attr("num_tokens", "int", doc="How many distinct ids: inputs lie in [0, num_tokens).", minimum=1),
        Attr("output_mode", "enum", "multi_hot", "one_hot: a row per id; multi_hot: per sample, 1 for each id "
             "present; count: per sample, how often each id occurs ('binary' is Keras's older name for "
             "multi_hot).", choices=("multi_hot", "one_hot", "count", "binary")),  # fmt: skip
        _SPARSE,
        *COMMON_ATTRS,
    ),
    infer=_encode_infer("CategoryEncoding"),
    emit=_encode_emit("CategoryEncoding"),
    emit_backward=_no_gradient,
    reference=_encode_reference("CategoryEncoding"),
    positional=("num_tokens", "output_mode"),
    doc="Encodes integer ids as one-hot rows, or each sample's ids (batch, values) as one multi-hot "
    "or count row of num_tokens entries. Float ids are truncated, negative ones ignored; an id of "
    "num_tokens or more is an error, as in Keras on PyTorch.",
)

DISCRETIZATION = LayerDef(
    name="Discretization",
    attrs=(
        Attr("bin_boundaries", "numbers", None, "Sorted boundaries: x falls in bucket i when "
             "boundaries[i-1] <= x < boundaries[i] (bucket 0 below the first, len(boundaries) from the last).",
             nullable=True),  # fmt: skip
        Attr("num_bins", "int", None, "How many buckets Keras's adapt would choose (refused: give bin_boundaries).",
             minimum=0, nullable=True),  # fmt: skip
        Attr("epsilon", "float", 0.01, "The error tolerance of Keras's adapt (unused: nnspec does not adapt it)."),
        Attr("output_mode", "enum", "int", "int: the bucket ids; one_hot, multi_hot or count: encoded as "
             "CategoryEncoding encodes ids.", choices=("int", "one_hot", "multi_hot", "count")),  # fmt: skip
        _SPARSE,
        *COMMON_ATTRS,
    ),
    infer=_encode_infer("Discretization"),
    emit=_encode_emit("Discretization"),
    emit_backward=_no_gradient,
    reference=_encode_reference("Discretization"),
    positional=("bin_boundaries", "num_bins", "epsilon", "output_mode"),
    doc="Buckets numbers by sorted bin_boundaries (int32 bucket ids, or their one-hot, multi-hot "
    "or count encoding). Passes no gradient.",
)
