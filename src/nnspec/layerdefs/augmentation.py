"""Image augmentation layers: RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness.

Keras 3 puts these at the start of image models (``layers.RandomFlip("horizontal")``,
``layers.RandomRotation(0.1)``). They are the identity at inference (``training_only``: the plan
makes them views), so a model's predictions are Keras's. In training each draws one random
transform per image, as Keras does, from NumPy's generator inside Numba (seeded like Dropout's
draws by ``nnspec.runtime.kernels.seed_kernels``; a layer's ``seed`` attribute is accepted but
selects no stream of its own: Keras's torch streams cannot be reproduced).

The geometric layers share one kernel: each image's transform is six numbers
``(a0, a1, a2, b0, b1, b2)`` (Keras's affine ``transform`` without its projective part) mapping
an output pixel (row ``i``, column ``j``) to the input point ``x = a0 j + a1 i + a2``,
``y = b0 j + b1 i + b2``, read with nearest or bilinear interpolation from the input extended
past its edges by ``fill_mode`` (``reflect``: d c b a | a b c d | d c b a; ``wrap``;
``nearest``: the edge pixel; ``constant``: ``fill_value``), each interpolation node extended
on its own, as ``keras.ops.image.affine_transform`` reads them. The training forward draws the
transforms into the step's saved array, and the backward pass adds each output's gradient to
the input pixels it was read from, with the same weights.

RandomCrop, MixUp, CutMix, RandomElasticTransform and CLAHE are in augmentation_mix.py (where
RandomCrop's inference, which Keras 3.15 gets wrong, is discussed); RandAugment and AugMix,
which chain this module's and the color family's operations, in augmentation_policy.py.
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError, TensorType, fmt_shape
from .conv import split_channels
from .core import DATA_FORMAT_ATTR, _identity_reference

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_fix_index", "_taps", "_affine", "_channel_means", "rotation_transform", "zoom_transform",
                  "translation_transform", "flip_transform")  # fmt: skip

# fill_mode and interpolation codes of the kernels
FILL_MODES = ("constant", "nearest", "reflect", "wrap")
CONSTANT, NEAREST, REFLECT, WRAP = range(4)
MIRROR = 4  # map_coordinates' mirror (c d c b | a b c d | c b a b), RandomElasticTransform's only
INTERPOLATIONS = ("nearest", "bilinear")
INTERP_NEAREST, INTERP_BILINEAR = range(2)

TRANSFORM_SIZE = 6  # a0, a1, a2, b0, b1, b2 per image


# ----------------------------------------------------------------------------- kernels


def _fix_index(i, size, fill):
    """The input index that the (possibly outside) index ``i`` of an axis of ``size`` reads
    under fill mode ``fill``; for ``constant`` an outside index is clipped (the caller uses
    ``fill_value`` there instead)."""
    if fill == WRAP:
        return i % size
    if fill == MIRROR:  # period 2 (size - 1)
        p = size - 1
        return abs((i + p) % (2 * p) - p)
    if fill == REFLECT:  # period 2 * size: a b c d d c b a
        m = i % (2 * size)
        return 2 * size - 1 - m if m >= size else m
    if i < 0:
        return 0
    if i >= size:
        return size - 1
    return i


def _taps(ys, xs, h, w, fill, interp, rows, cols, wts, inside):
    """The interpolation nodes of input point (``ys``, ``xs``): up to 4 (row, column, weight,
    inside the image) written into ``rows``, ``cols``, ``wts``, ``inside``; returns how many."""
    if interp == INTERP_NEAREST:
        r = int(np.rint(ys))
        c = int(np.rint(xs))
        rows[0] = _fix_index(r, h, fill)
        cols[0] = _fix_index(c, w, fill)
        wts[0] = 1.0
        inside[0] = 0 <= r < h and 0 <= c < w
        return 1
    fy = np.floor(ys)
    fx = np.floor(xs)
    wy1 = ys - fy
    wx1 = xs - fx
    r0 = int(fy)
    c0 = int(fx)
    k = 0
    for dr in range(2):
        r = r0 + dr
        wr = wy1 if dr else 1.0 - wy1
        for dc in range(2):
            c = c0 + dc
            rows[k] = _fix_index(r, h, fill)
            cols[k] = _fix_index(c, w, fill)
            wts[k] = wr * (wx1 if dc else 1.0 - wx1)
            inside[k] = 0 <= r < h and 0 <= c < w
            k += 1
    return 4


def _affine(src, dst, tr, cf, fill, interp, fill_value, adjoint):
    """Each image of ``src`` read through its transform ``tr[r]`` into ``dst`` (module
    docstring); with ``adjoint``, the gradient instead: ``src`` holds the outputs' gradients and
    each is added to the input pixels it was read from, with their weights (none to
    ``fill_value``). Images are (rows, H, W, C), or (rows, C, H, W) when ``cf``; ``tr``: (rows, 6)."""
    n = src.shape[0]
    if cf:
        ch, h, w = src.shape[1], src.shape[2], src.shape[3]
    else:
        h, w, ch = src.shape[1], src.shape[2], src.shape[3]
    rows = np.empty(4, np.int64)
    cols = np.empty(4, np.int64)
    wts = np.empty(4, np.float64)
    inside = np.empty(4, np.bool_)
    acc = np.empty(ch, np.float64)
    constant = fill == CONSTANT
    for s in range(n):
        a0, a1, a2 = np.float32(tr[s, 0]), np.float32(tr[s, 1]), np.float32(tr[s, 2])
        b0, b1, b2 = np.float32(tr[s, 3]), np.float32(tr[s, 4]), np.float32(tr[s, 5])
        for i in range(h):
            fi = np.float32(i)
            for j in range(w):
                fj = np.float32(j)
                # float32, in Keras's order: which pixel ``nearest`` picks at a tie depends on it
                k = _taps((fi * b1 + fj * b0) + b2, (fi * a1 + fj * a0) + a2, h, w, fill, interp, rows, cols, wts,
                          inside)  # fmt: skip
                if not adjoint:
                    acc[:] = 0.0
                for t in range(k):
                    wt = wts[t]
                    if constant and not inside[t]:
                        if not adjoint:
                            for c in range(ch):
                                acc[c] += wt * fill_value
                        continue
                    r, q = rows[t], cols[t]
                    if adjoint and cf:
                        for c in range(ch):
                            dst[s, c, r, q] += wt * src[s, c, i, j]
                    elif adjoint:
                        for c in range(ch):
                            dst[s, r, q, c] += wt * src[s, i, j, c]
                    elif cf:
                        for c in range(ch):
                            acc[c] += wt * src[s, c, r, q]
                    else:
                        for c in range(ch):
                            acc[c] += wt * src[s, r, q, c]
                if adjoint:
                    continue
                for c in range(ch):
                    if cf:
                        dst[s, c, i, j] = acc[c]
                    else:
                        dst[s, i, j, c] = acc[c]


def affine_forward(x, y, tr, cf, fill, interp, fill_value):
    """The geometric layers' training forward: ``y`` = ``x`` through the transforms ``tr``."""
    _affine(x, y, tr, cf, fill, interp, fill_value, False)


def affine_backward(dy, dx, tr, cf, fill, interp):
    """``dx +=`` the gradient of :func:`affine_forward` with the same transforms."""
    _affine(dy, dx, tr, cf, fill, interp, 0.0, True)


def rotation_transform(tr, s, degrees, h, w):
    """Row ``s`` of ``tr``: a rotation by ``degrees`` (counter-clockwise for positive) about
    the image's center ((w - 1) / 2, (h - 1) / 2), as Keras's RandomRotation builds it."""
    theta = degrees * (math.pi / 180.0)
    cos, sin = math.cos(theta), math.sin(theta)
    cx = 0.5 * (w - 1)
    cy = 0.5 * (h - 1)
    tr[s, 0] = cos
    tr[s, 1] = -sin
    tr[s, 2] = cx - cx * cos + cy * sin
    tr[s, 3] = sin
    tr[s, 4] = cos
    tr[s, 5] = cy - cx * sin - cy * cos


def zoom_transform(tr, s, zx, zy, h, w):
    """Row ``s`` of ``tr``: a zoom about the image's center by ``zx`` along the width and
    ``zy`` along the height (above 1 zooms out: a larger part of the input fills the output)."""
    tr[s, 0] = zx
    tr[s, 1] = 0.0
    tr[s, 2] = 0.5 * (w - 1) * (1.0 - zx)
    tr[s, 3] = 0.0
    tr[s, 4] = zy
    tr[s, 5] = 0.5 * (h - 1) * (1.0 - zy)


def translation_transform(tr, s, dx, dy):
    """Row ``s`` of ``tr``: the image moved by ``dx`` pixels right and ``dy`` pixels down."""
    tr[s, 0] = 1.0
    tr[s, 1] = 0.0
    tr[s, 2] = -dx
    tr[s, 3] = 0.0
    tr[s, 4] = 1.0
    tr[s, 5] = -dy


def flip_transform(tr, s, horizontal, vertical, h, w):
    """Row ``s`` of ``tr``: left-right (``horizontal``) and/or top-bottom (``vertical``) flip."""
    tr[s, 0] = -1.0 if horizontal else 1.0
    tr[s, 1] = 0.0
    tr[s, 2] = w - 1.0 if horizontal else 0.0
    tr[s, 3] = 0.0
    tr[s, 4] = -1.0 if vertical else 1.0
    tr[s, 5] = h - 1.0 if vertical else 0.0


def draw_rotations(tr, low, high, h, w):
    """Per image an angle uniform in [low, high) degrees (Keras: factor * 360)."""
    for s in range(tr.shape[0]):
        rotation_transform(tr, s, np.random.uniform(low, high), h, w)


def draw_zooms(tr, h_low, h_high, w_low, w_high, same, h, w):
    """Per image zooms ``1 + U(h_low, h_high)`` along the height and ``1 + U(w_low, w_high)``
    along the width, or the height's along both when ``same`` (no width_factor)."""
    for s in range(tr.shape[0]):
        zy = 1.0 + np.random.uniform(h_low, h_high)
        zx = zy if same else 1.0 + np.random.uniform(w_low, w_high)
        zoom_transform(tr, s, zx, zy, h, w)


def draw_translations(tr, h_low, h_high, w_low, w_high, h, w):
    """Per image a shift of ``U(h_low, h_high) * h`` rows and ``U(w_low, w_high) * w`` columns."""
    for s in range(tr.shape[0]):
        dy = np.random.uniform(h_low, h_high) * h
        dx = np.random.uniform(w_low, w_high) * w
        translation_transform(tr, s, dx, dy)


def draw_flips(tr, horizontal, vertical, h, w):
    """Per image, with probability 1/2 (Keras: ``uniform() <= 0.5``), the flip of the layer's
    mode; one draw per image for both axes, as Keras's ``horizontal_and_vertical`` does."""
    for s in range(tr.shape[0]):
        if np.random.random() <= 0.5:
            flip_transform(tr, s, horizontal, vertical, h, w)
        else:
            flip_transform(tr, s, False, False, h, w)


def draw_uniform(v, low, high, scale):
    """``v[r, 0] = U(low, high) * scale`` per image (a contrast factor, a brightness delta)."""
    for s in range(v.shape[0]):
        v[s, 0] = np.random.uniform(low, high) * scale


def _channel_means(x, s, cf, means):
    """The mean over rows and columns of each channel of image ``s`` (float64 sums, float32 result)."""
    if cf:
        ch, h, w = x.shape[1], x.shape[2], x.shape[3]
    else:
        h, w, ch = x.shape[1], x.shape[2], x.shape[3]
    for c in range(ch):
        means[c] = 0.0
    for i in range(h):
        for j in range(w):
            for c in range(ch):
                means[c] += x[s, c, i, j] if cf else x[s, i, j, c]
    for c in range(ch):
        means[c] = np.float32(means[c] / (h * w))


def contrast_forward(x, y, f, cf, low, high):
    """``y = min(max((x - m) * f + m, low), high)`` per image and channel, ``m`` the channel's
    mean over the image and ``f = f[r, 0]`` (float32 arithmetic, as Keras)."""
    n = x.shape[0]
    ch = x.shape[1] if cf else x.shape[3]
    means = np.empty(ch, np.float64)
    lo, hi = np.float32(low), np.float32(high)
    for s in range(n):
        _channel_means(x, s, cf, means)
        k = np.float32(f[s, 0])
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(x.shape[3]):
                    m = np.float32(means[i if cf else q])
                    v = (x[s, i, j, q] - m) * k + m
                    y[s, i, j, q] = min(max(v, lo), hi)


def contrast_backward(x, dy, dx, f, cf, low, high):
    """``dx +=`` the gradient of :func:`contrast_forward`: ``g = dy`` where the value before
    clipping lies in [low, high] (0 where clipped), ``dx += f g + (1 - f) mean(g)`` over the
    channel's image."""
    n = x.shape[0]
    ch = x.shape[1] if cf else x.shape[3]
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    means = np.empty(ch, np.float64)
    gsum = np.empty(ch, np.float64)
    g = np.empty(x.shape[1:], np.float64)
    lo, hi = np.float32(low), np.float32(high)
    for s in range(n):
        _channel_means(x, s, cf, means)
        k = np.float32(f[s, 0])
        gsum[:] = 0.0
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(x.shape[3]):
                    c = i if cf else q
                    m = np.float32(means[c])
                    v = (x[s, i, j, q] - m) * k + m
                    gv = dy[s, i, j, q] if lo <= v <= hi else 0.0
                    g[i, j, q] = gv
                    gsum[c] += gv
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(x.shape[3]):
                    c = i if cf else q
                    dx[s, i, j, q] += k * g[i, j, q] + (1.0 - k) * gsum[c] / (h * w)


def brightness_forward(x2, y2, delta, low, high):
    """``y = min(max(x + delta[r, 0], low), high)`` over (rows, values per image), float32."""
    lo, hi = np.float32(low), np.float32(high)
    for s in range(x2.shape[0]):
        d = np.float32(delta[s, 0])
        for i in range(x2.shape[1]):
            y2[s, i] = min(max(x2[s, i] + d, lo), hi)


def brightness_backward(x2, dy2, dx2, delta, low, high):
    """``dx += dy`` where ``x + delta`` lies in [low, high] (clipping passes no gradient)."""
    lo, hi = np.float32(low), np.float32(high)
    for s in range(x2.shape[0]):
        d = np.float32(delta[s, 0])
        for i in range(x2.shape[1]):
            v = x2[s, i] + d
            if lo <= v <= hi:
                dx2[s, i] += dy2[s, i]


# ----------------------------------------------------------------------------- NumPy references
#
# Written against the definitions, not the kernels: the geometric one extends the image with
# np.pad by the fill mode and interpolates in the extended image; the kernels fix each index.

_PAD_MODES = {"reflect": "symmetric", "wrap": "wrap", "nearest": "edge", "constant": "constant"}


def affine_reference(x, transforms, fill_mode="reflect", interpolation="bilinear", fill_value=0.0,
                     data_format="channels_last"):  # fmt: skip
    """The geometric layers in training with the given per-image ``transforms`` (rows of 6),
    in float64."""
    x = np.asarray(x, np.float64)
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    n, h, w, _ = x.shape
    out = np.empty_like(x)
    ii, jj = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    for s in range(n):
        a0, a1, a2, b0, b1, b2 = np.asarray(transforms[s][:6], np.float32)
        # the input points in float32, as Keras computes them (nearest's choice at a tie depends on it)
        xs = ((ii * a1 + jj * a0) + a2).astype(np.float64)
        ys = ((ii * b1 + jj * b0) + b2).astype(np.float64)
        if interpolation == "nearest":
            nodes = [(np.rint(ys), np.rint(xs), np.ones_like(xs))]
        else:
            fy, fx = np.floor(ys), np.floor(xs)
            wy, wx = ys - fy, xs - fx
            nodes = [(fy + dr, fx + dc, (wy if dr else 1 - wy) * (wx if dc else 1 - wx))
                     for dr in (0, 1) for dc in (0, 1)]  # fmt: skip
        rows = np.concatenate([nd[0].ravel() for nd in nodes])
        cols = np.concatenate([nd[1].ravel() for nd in nodes])
        pad_r = int(max(0, -rows.min(), rows.max() - (h - 1))) + 1
        pad_c = int(max(0, -cols.min(), cols.max() - (w - 1))) + 1
        mode = _PAD_MODES[fill_mode]
        kw = {"constant_values": fill_value} if mode == "constant" else {}
        big = np.pad(x[s], ((pad_r, pad_r), (pad_c, pad_c), (0, 0)), mode=mode, **kw)
        acc = np.zeros((h, w, x.shape[-1]))
        for r, c, wt in nodes:
            acc += wt[..., None] * big[r.astype(np.int64) + pad_r, c.astype(np.int64) + pad_c]
        out[s] = acc
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


def contrast_reference(x, factors, value_range, data_format="channels_last"):
    """RandomContrast in training with the given per-image contrast factors, in float64."""
    x = np.asarray(x, np.float64)
    axes = (2, 3) if data_format == "channels_first" else (1, 2)
    mean = x.mean(axis=axes, keepdims=True)
    f = np.asarray(factors, np.float64).reshape(-1, 1, 1, 1)
    return np.minimum(np.maximum((x - mean) * f + mean, value_range[0]), value_range[1])


def brightness_reference(x, deltas, value_range):
    """RandomBrightness in training with the given per-image deltas, in float64."""
    x = np.asarray(x, np.float64)
    d = np.asarray(deltas, np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    lo, hi = sorted(value_range)
    return np.minimum(np.maximum(x + d, lo), hi)


def affine_matrix(layer: str, attrs, params, h: int, w: int):
    """The transform (6 numbers) of one image of ``layer`` for the given random draws, as the
    training kernels compute it: RandomRotation (degrees,), RandomZoom (zx, zy),
    RandomTranslation (dx, dy), RandomFlip (flipped,). For tests and the reference."""
    tr = np.zeros((1, TRANSFORM_SIZE))
    if layer == "RandomRotation":
        rotation_transform(tr, 0, params[0], h, w)
    elif layer == "RandomZoom":
        zoom_transform(tr, 0, params[0], params[1], h, w)
    elif layer == "RandomTranslation":
        translation_transform(tr, 0, params[0], params[1])
    else:
        horizontal, vertical = _flip_axes(attrs["mode"])
        flip_transform(tr, 0, horizontal and params[0], vertical and params[0], h, w)
    return tr[0]


# ----------------------------------------------------------------------------- layer definitions


def factor_range(value, lowest: float) -> tuple[float, float]:
    """Keras's (lower, upper) of a factor: a number ``f`` gives (max(-|f|, lowest), |f|), a
    pair its sorted values."""
    if isinstance(value, (list, tuple)):
        lo, hi = sorted(float(v) for v in value)
        return lo, hi
    f = abs(float(value))
    return max(-f, lowest), f


def _image_infer(layer: str):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        if x.rank != 4:
            raise ShapeError(
                f"{layer} expects a batch of images of rank 4 (batch, rows, cols, channels) or, "
                f"channels_first, (batch, channels, rows, cols); got {fmt_shape(x.shape)}"
            )
        if any(d is None for d in x.shape[1:]):
            raise ShapeError(f"{layer} needs known image dimensions; got {fmt_shape(x.shape)}")
        if not x.dtype.startswith("float"):
            raise ShapeError(
                f"{layer} expects float images; got {x.dtype} (give the input dtype float32, as the "
                "images' pixel values)"
            )
        return [TensorType(x.shape, x.dtype)]  # drops a mask, as Keras's image layers do

    return infer


def _hw(e) -> tuple[int, int]:
    spatial, _ = split_channels((None, *e.x_shapes[0]), e.attrs.get("data_format", "channels_last"))
    return int(spatial[0]), int(spatial[1])


def _cf(e) -> bool:
    return e.attrs.get("data_format") == "channels_first"


def _transform_saved(attrs, x_shapes, y_shapes):
    return [((TRANSFORM_SIZE,), "float32")]


def _scalar_saved(attrs, x_shapes, y_shapes):
    return [((1,), "float32")]


def _geometric_emit_train(draw_call):
    """The training forward of a geometric layer: ``draw_call(e, tr)`` is the line that draws
    the transforms into the saved array ``tr``; then the affine kernel."""

    def emit_train(e):
        a = e.attrs
        tr = e.s[0]
        fill = FILL_MODES.index(a.get("fill_mode", "nearest"))
        interp = INTERPOLATIONS.index(a.get("interpolation", "nearest"))
        fv = float(a.get("fill_value", 0.0))
        return [draw_call(e, tr), e.call(affine_forward, e.x[0], e.y[0], tr, _cf(e), fill, interp, fv)]

    return emit_train


def _geometric_backward(e):
    if e.dx[0] is None:
        return []
    a = e.attrs
    fill = FILL_MODES.index(a.get("fill_mode", "nearest"))
    interp = INTERPOLATIONS.index(a.get("interpolation", "nearest"))
    return [e.call(affine_backward, e.dy[0], e.dx[0], e.s[0], _cf(e), fill, interp)]


def _flip_axes(mode: str) -> tuple[bool, bool]:
    return mode in ("horizontal", "horizontal_and_vertical"), mode in ("vertical", "horizontal_and_vertical")


def _draw_flips(e, tr):
    h, w = _hw(e)
    return e.call(draw_flips, tr, *_flip_axes(e.attrs["mode"]), h, w)


def _draw_rotations(e, tr):
    h, w = _hw(e)
    lo, hi = factor_range(e.attrs["factor"], -1.0)
    return e.call(draw_rotations, tr, lo * 360.0, hi * 360.0, h, w)


def _draw_zooms(e, tr):
    h, w = _hw(e)
    hl, hh = factor_range(e.attrs["height_factor"], -1.0)
    wf = e.attrs["width_factor"]
    wl, wh = (hl, hh) if wf is None else factor_range(wf, -1.0)
    return e.call(draw_zooms, tr, hl, hh, wl, wh, wf is None, h, w)


def _draw_translations(e, tr):
    h, w = _hw(e)
    hl, hh = factor_range(e.attrs["height_factor"], -1.0)
    wl, wh = factor_range(e.attrs["width_factor"], -1.0)
    return e.call(draw_translations, tr, hl, hh, wl, wh, h, w)


SEED_ATTR = Attr("seed", "int", None, "Random seed (accepted; nnspec's draws follow fit's seed).", nullable=True)

FILL_ATTRS = (
    Attr("fill_mode", "enum", "reflect",
         "How points outside the input are filled: reflect (d c b a | a b c d | d c b a), wrap "
         "(a b c d | a b c d | a b c d), constant (fill_value), nearest (a a a a | a b c d | d d d d).",
         choices=("reflect", "wrap", "constant", "nearest")),
    Attr("interpolation", "enum", "bilinear", "How the input is read between pixels.",
         choices=("bilinear", "nearest")),
    SEED_ATTR,
    Attr("fill_value", "float", 0.0, "The value of points outside the input when fill_mode is constant."),
    DATA_FORMAT_ATTR,
)  # fmt: skip

_GEOMETRIC = {
    "reference": _identity_reference,
    "emit_backward": _geometric_backward,
    "saved": _transform_saved,
    "training_only": True,
}

RANDOM_FLIP = LayerDef(
    name="RandomFlip",
    attrs=(
        Attr("mode", "enum", "horizontal_and_vertical",
             "Which flip: horizontal (left-right), vertical (top-bottom), or horizontal_and_vertical "
             "(both together, from one draw per image, as Keras).",
             choices=("horizontal", "vertical", "horizontal_and_vertical")),
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_image_infer("RandomFlip"),
    emit_train=_geometric_emit_train(_draw_flips),
    positional=("mode",),
    doc="In training flips each image with probability 1/2 (left-right, top-bottom, or both at "
    "once); the identity at inference.",
    **_GEOMETRIC,
)

RANDOM_ROTATION = LayerDef(
    name="RandomRotation",
    attrs=(
        Attr("factor", "factor",
             doc="The rotation range as a fraction of a full turn: `f` draws angles in "
             "[-f * 360, f * 360] degrees, [low, high] in [low * 360, high * 360]; positive is "
             "counter-clockwise.", minimum=-1.0, maximum=1.0),
        *FILL_ATTRS,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_image_infer("RandomRotation"),
    emit_train=_geometric_emit_train(_draw_rotations),
    positional=("factor",),
    doc="In training rotates each image by a random angle about its center, filling the corners "
    "by `fill_mode`; the identity at inference.",
    **_GEOMETRIC,
)

_ZOOM_DOC = ("drawn in [1 + low, 1 + high]: a number `f` gives [-f, f], a pair [low, high] that "
             "range; positive zooms out, negative zooms in.")  # fmt: skip

RANDOM_ZOOM = LayerDef(
    name="RandomZoom",
    attrs=(
        Attr("height_factor", "factor", doc="The vertical zoom, " + _ZOOM_DOC,
             minimum=-1.0, exclusive_minimum=True, maximum=1.0),
        Attr("width_factor", "factor", None,
             "The horizontal zoom, as height_factor; null: the vertical zoom, keeping the aspect ratio.",
             minimum=-1.0, exclusive_minimum=True, maximum=1.0, nullable=True),
        *FILL_ATTRS,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_image_infer("RandomZoom"),
    emit_train=_geometric_emit_train(_draw_zooms),
    positional=("height_factor", "width_factor"),
    doc="In training zooms each image in or out about its center by random factors; the "
    "identity at inference.",
    **_GEOMETRIC,
)

_SHIFT_DOC = ("as a fraction of the image's size: a number `f` draws shifts in [-f, f], a pair "
              "[low, high] in that range.")  # fmt: skip

RANDOM_TRANSLATION = LayerDef(
    name="RandomTranslation",
    attrs=(
        Attr("height_factor", "factor", doc="The vertical shift (positive: down), " + _SHIFT_DOC,
             minimum=-1.0, maximum=1.0),
        Attr("width_factor", "factor", doc="The horizontal shift (positive: right), " + _SHIFT_DOC,
             minimum=-1.0, maximum=1.0),
        *FILL_ATTRS,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_image_infer("RandomTranslation"),
    emit_train=_geometric_emit_train(_draw_translations),
    positional=("height_factor", "width_factor"),
    doc="In training shifts each image by a random number of rows and columns, filling the "
    "uncovered part by `fill_mode`; the identity at inference.",
    **_GEOMETRIC,
)


# ---- color


def _value_range(attrs) -> tuple[float, float]:
    lo, hi = attrs["value_range"]
    return float(lo), float(hi)


def _contrast_emit_train(e):
    f = e.s[0]
    lo, hi = factor_range(e.attrs["factor"], 0.0)
    vlo, vhi = _value_range(e.attrs)
    return [e.call(draw_uniform, f, 1.0 - lo, 1.0 + hi, 1.0),
            e.call(contrast_forward, e.x[0], e.y[0], f, _cf(e), vlo, vhi)]  # fmt: skip


def _contrast_backward(e):
    if e.dx[0] is None:
        return []
    vlo, vhi = _value_range(e.attrs)
    return [e.call(contrast_backward, e.x[0], e.dy[0], e.dx[0], e.s[0], _cf(e), vlo, vhi)]


def _brightness_range(attrs) -> tuple[float, float]:
    lo, hi = _value_range(attrs)
    return min(lo, hi), max(lo, hi)  # Keras sorts RandomBrightness's value_range


def _brightness_emit_train(e):
    d = e.s[0]
    lo, hi = factor_range(e.attrs["factor"], -1.0)
    vlo, vhi = _brightness_range(e.attrs)
    x2, y2 = e.per_sample(e.x[0]), e.per_sample(e.y[0], True)
    return [e.call(draw_uniform, d, lo, hi, vhi - vlo), e.call(brightness_forward, x2, y2, d, vlo, vhi)]


def _brightness_backward(e):
    if e.dx[0] is None:
        return []
    vlo, vhi = _brightness_range(e.attrs)
    return [e.call(brightness_backward, e.per_sample(e.x[0]), e.per_sample(e.dy[0], True),
                   e.per_sample(e.dx[0]), e.s[0], vlo, vhi)]  # fmt: skip


def _value_range_attr(what: str) -> Attr:
    return Attr("value_range", "floats", [0.0, 255.0],
                f"[low, high]: the range of the pixel values; {what}", length=2)  # fmt: skip


# one random number per image (saved for the backward pass)
_COLOR = {"reference": _identity_reference, "saved": _scalar_saved, "positional": ("factor",), "training_only": True}

RANDOM_CONTRAST = LayerDef(
    name="RandomContrast",
    attrs=(
        Attr("factor", "factor",
             doc="The contrast range: each image's factor is drawn in [1 - low, 1 + high], where a "
             "number `f` gives low = 0, high = f (Keras's reading), a pair its sorted values.",
             minimum=0.0, maximum=1.0),
        _value_range_attr("outputs are clipped to it (in training)."),
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_image_infer("RandomContrast"),
    emit_train=_contrast_emit_train,
    emit_backward=_contrast_backward,
    **_COLOR,
    doc="In training scales each image's distance to its per-channel mean by a random factor, "
    "`(x - mean) * factor + mean`, clipped to `value_range`; the identity at inference.",
)

RANDOM_BRIGHTNESS = LayerDef(
    name="RandomBrightness",
    attrs=(
        Attr("factor", "factor",
             doc="The brightness range as a fraction of value_range's width: a number `f` draws "
             "each image's shift in [-f, f], a pair [low, high] in that range.",
             minimum=-1.0, maximum=1.0),
        _value_range_attr("shifts are scaled by its width and outputs clipped to it (in training)."),
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_image_infer("RandomBrightness"),
    emit_train=_brightness_emit_train,
    emit_backward=_brightness_backward,
    **_COLOR,
    doc="In training adds one random value to every pixel of each image and clips to "
    "`value_range`; the identity at inference.",
)

LAYERS = (RANDOM_FLIP, RANDOM_ROTATION, RANDOM_ZOOM, RANDOM_TRANSLATION, RANDOM_CONTRAST, RANDOM_BRIGHTNESS)
