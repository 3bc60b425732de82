"""Preprocessing layers that are part of a model's arithmetic: Rescaling, Normalization.

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
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_normalization_tables",)


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
