"""Color augmentation layers: AutoContrast, Solarization, RandomGrayscale, RandomInvert.

Keras 3's ``keras.layers`` versions (``keras/src/layers/preprocessing/image_preprocessing/``),
computed as Keras computes them in float32 on its PyTorch backend:

- ``AutoContrast(value_range)`` is deterministic and acts at inference and in training alike.
  Pixels are mapped from ``value_range`` (sorted) to [0, 255] (skipped when it is [0, 255]),
  then ``u = t * scale + offset`` with ``scale = 255 / (high - low)``, ``offset = -low * scale``,
  ``low``/``high`` the min and max of ``t`` over axes 1 and 2 of the batch, clipped to [0, 255]
  and mapped back. Keras reduces over axes 1 and 2 whatever ``data_format`` says: per image and
  channel for ``channels_last``, per image and COLUMN (over channels and rows) for
  ``channels_first``; nnspec does the same (``data_format`` is accepted and changes nothing).
  Where the result is NaN the input is kept: a constant group (``0 * inf``), a group holding a
  NaN or where ``-inf``/``inf`` make the formula NaN. The backward pass is PyTorch's autograd of
  that formula: through the clip (no gradient outside [0, 255]), ``scale``, ``offset`` and the
  min and max (shared evenly among tied elements, as ``torch.amin``/``amax``); so a constant
  group's gradient is NaN, as it is in Keras (``0 * inf`` in autograd).
- ``Solarization`` is the identity at inference. In training it draws per image an addition
  ``U(addition_factor[0], addition_factor[1] * 255)`` and a threshold
  ``U(threshold_factor[0], threshold_factor[1] * 255)`` (Keras scales only the upper bounds:
  a factor ``f`` reads as ``[0, f]``), maps the pixels to [0, 255], adds, clips to [0, 255],
  replaces ``r`` by ``255 - r`` where ``r >= threshold``, and maps back. The default factors
  (0, 0) solarize every pixel: ``value_range`` high + low minus the pixel.
- ``RandomGrayscale`` is the identity at inference. In training each image becomes, with
  probability ``factor`` (Keras: ``uniform() < factor``), ``0.2989 R + 0.587 G + 0.114 B``
  (float32, Keras's ``rgb_to_grayscale``) in each of its 3 channels; a 1-channel image stays as
  it is. Other channel counts are a shape error: Keras's ``rgb_to_grayscale`` refuses them in
  training (at inference Keras would return them unchanged).
- ``RandomInvert`` is the identity at inference. In training it draws per image a probability
  ``p = U(factor[0], factor[1])`` (a number ``f`` reads as ``[0, f]``: the default 1.0 inverts
  half of the images) and inverts the image when ``uniform() < p``: ``value_range[1] - x``
  (Keras uses the upper bound as written, and does not sort value_range here).

Random draws come from NumPy's generator inside Numba, seeded as the other augmentation layers'
(``nnspec.runtime.kernels.seed_kernels``, from fit's seed); a ``seed`` attribute is accepted
but selects no stream of its own: Keras's torch streams cannot be reproduced. The draws of a
training step are saved for its backward pass, which gives the gradient of what the forward
computed: zero where clipping cut it, ``-dy`` where an image was inverted or solarized, the
grayscale weights times the sum of the 3 channels' gradients where an image became grayscale.

Differences from Keras: integer images are refused (as by the other augmentation layers); pairs
of factors must lie in [0, 1] element-wise (Keras's loose check of RandomInvert's pair accepts
e.g. [-0.5, 0.5]).
"""

from __future__ import annotations

import math
from dataclasses import replace

from .augmentation import SEED_ATTR, _cf, _image_infer, _value_range_attr, draw_uniform, factor_range
from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError
from .core import DATA_FORMAT_ATTR, _identity_reference

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_to_255", "_from_255", "_clip255", "_range32", "_stats_arrays", "_autocontrast_stats")

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # Keras's rgb_to_grayscale (torch backend)


# ----------------------------------------------------------------------------- kernels


def _to_255(v, lo, width, ident):
    """Keras's ``_transform_value_range`` from [lo, lo + width] to [0, 255], in float32."""
    if ident:
        return v
    return ((v - lo) / width) * np.float32(255.0) + np.float32(0.0)


def _from_255(v, lo, width, ident):
    """Keras's ``_transform_value_range`` from [0, 255] back to [lo, lo + width], in float32."""
    if ident:
        return v
    return (v / np.float32(255.0)) * width + lo


def _clip255(v):
    """``v`` clipped to [0, 255] in float32; NaN stays NaN (as torch.clip)."""
    if v < np.float32(0.0):
        return np.float32(0.0)
    if v > np.float32(255.0):
        return np.float32(255.0)
    return v


def _range32(vlo, vhi):
    """(low end, width, whether the range is [0, 255]) of a sorted value range, in float32."""
    return np.float32(vlo), np.float32(vhi) - np.float32(vlo), vlo == 0.0 and vhi == 255.0


def _stats_arrays(c):
    """AutoContrast's per-group ``low``, ``high``, ``scale`` and ``offset`` for ``c`` groups (float32)."""
    return np.empty(c, np.float32), np.empty(c, np.float32), np.empty(c, np.float32), np.empty(c, np.float32)


def _autocontrast_stats(x, s, lo, width, ident, low, high, scale, offset):
    """``low``/``high`` (NaN-propagating, as torch.amin/amax), ``scale`` and ``offset`` per
    last-axis index of image ``s``, reduced over axes 1 and 2."""
    c = x.shape[3]
    for q in range(c):
        low[q] = _to_255(x[s, 0, 0, q], lo, width, ident)
        high[q] = low[q]
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            for q in range(c):
                t = _to_255(x[s, i, j, q], lo, width, ident)
                if not math.isnan(low[q]) and (t < low[q] or math.isnan(t)):
                    low[q] = t
                if not math.isnan(high[q]) and (t > high[q] or math.isnan(t)):
                    high[q] = t
    for q in range(c):
        scale[q] = (np.float32(1.0) / (high[q] - low[q])) * np.float32(255.0)  # torch: 255 / t is t.reciprocal() * 255
        offset[q] = -low[q] * scale[q]


def autocontrast_forward(x, y, vlo, vhi):
    """AutoContrast (module docstring) of ``x`` (rows, A, B, C) over axes A, B into ``y``."""
    lo, width, ident = _range32(vlo, vhi)
    c = x.shape[3]
    low, high, scale, offset = _stats_arrays(c)
    for s in range(x.shape[0]):
        _autocontrast_stats(x, s, lo, width, ident, low, high, scale, offset)
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(c):
                    u = _to_255(x[s, i, j, q], lo, width, ident) * scale[q] + offset[q]
                    r = _from_255(_clip255(u), lo, width, ident)
                    y[s, i, j, q] = x[s, i, j, q] if math.isnan(r) else r


def autocontrast_backward(x, dy, dx, vlo, vhi):
    """``dx +=`` PyTorch's autograd of :func:`autocontrast_forward` (module docstring)."""
    lo, width, ident = _range32(vlo, vhi)
    c = x.shape[3]
    low, high, scale, offset = _stats_arrays(c)
    g_scale = np.empty(c, np.float64)
    g_offset = np.empty(c, np.float64)
    n_low = np.empty(c, np.float32)
    n_high = np.empty(c, np.float32)
    share_low = np.empty(c, np.float32)
    share_high = np.empty(c, np.float32)
    g_t = np.empty(x.shape[1:], np.float32)
    zero, top = np.float32(0.0), np.float32(255.0)
    for s in range(x.shape[0]):
        _autocontrast_stats(x, s, lo, width, ident, low, high, scale, offset)
        g_scale[:] = 0.0
        g_offset[:] = 0.0
        n_low[:] = 0.0
        n_high[:] = 0.0
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(c):
                    t = _to_255(x[s, i, j, q], lo, width, ident)
                    u = t * scale[q] + offset[q]
                    r = _from_255(_clip255(u), lo, width, ident)
                    g = dy[s, i, j, q]
                    if math.isnan(r):  # the input kept: its gradient passes, the formula's is 0
                        dx[s, i, j, q] += g
                        g = np.float32(0.0)
                    g_r = g if ident else (g * width) / top
                    g_u = g_r if zero <= u <= top else np.float32(0.0)
                    g_t[i, j, q] = g_u * scale[q]
                    g_scale[q] += g_u * t
                    g_offset[q] += g_u
                    n_low[q] += np.float32(1.0) if t == low[q] else np.float32(0.0)
                    n_high[q] += np.float32(1.0) if t == high[q] else np.float32(0.0)
        for q in range(c):
            go = np.float32(g_offset[q])
            gs = np.float32(g_scale[q]) + go * -low[q]
            g_d = -gs * (scale[q] / (high[q] - low[q]))  # d(255 / d) / dd, as torch's div backward
            share_low[q] = (-(go * scale[q]) - g_d) / n_low[q]
            share_high[q] = g_d / n_high[q]
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(c):
                    t = _to_255(x[s, i, j, q], lo, width, ident)
                    # torch.amin/amax's backward: (grad / count) * mask, NaN for a NaN group
                    g = g_t[i, j, q] + share_low[q] * np.float32(t == low[q]) + share_high[q] * np.float32(
                        t == high[q])  # fmt: skip
                    dx[s, i, j, q] += g if ident else (g * top) / width


def solarize_forward(x2, y2, add, thr, vlo, vhi):
    """Solarization over (rows, values per image) with the per-image additions ``add[r, 0]``
    and thresholds ``thr[r, 0]`` (module docstring), float32."""
    lo, width, ident = _range32(vlo, vhi)
    top = np.float32(255.0)
    for s in range(x2.shape[0]):
        a, th = np.float32(add[s, 0]), np.float32(thr[s, 0])
        for i in range(x2.shape[1]):
            r = _clip255(_to_255(x2[s, i], lo, width, ident) + a)
            y2[s, i] = _from_255(r if r < th else top - r, lo, width, ident)


def solarize_backward(x2, dy2, dx2, add, thr, vlo, vhi):
    """``dx +=`` the gradient of :func:`solarize_forward` with the same draws: ``dy`` where the
    pixel is kept, ``-dy`` where solarized, 0 where the addition was clipped."""
    lo, width, ident = _range32(vlo, vhi)
    zero, top = np.float32(0.0), np.float32(255.0)
    for s in range(x2.shape[0]):
        a, th = np.float32(add[s, 0]), np.float32(thr[s, 0])
        for i in range(x2.shape[1]):
            v = _to_255(x2[s, i], lo, width, ident) + a
            if not zero <= v <= top:
                continue
            g = dy2[s, i] if ident else (dy2[s, i] * width) / top
            g = g if v < th else -g
            dx2[s, i] += g if ident else (g * top) / width


def draw_chances(v, low, high):
    """Per image ``v[r, 0] = 1`` when ``uniform() < p`` for ``p = U(low, high)``, else 0
    (RandomInvert's rule; RandomGrayscale's with ``low = high = factor``)."""
    for s in range(v.shape[0]):
        p = np.random.uniform(low, high)
        v[s, 0] = 1.0 if np.random.random() < p else 0.0


def grayscale_forward(x, y, applied, cf):
    """Each image of ``x`` (rows, H, W, C), or (rows, C, H, W) when ``cf``, with
    ``applied[r, 0]`` and 3 channels becomes ``0.2989 R + 0.587 G + 0.114 B`` in every channel
    (float32, Keras's order); the others are copied."""
    w0, w1, w2 = np.float32(GRAY_WEIGHTS[0]), np.float32(GRAY_WEIGHTS[1]), np.float32(GRAY_WEIGHTS[2])
    ch = x.shape[1] if cf else x.shape[3]
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    for s in range(x.shape[0]):
        if applied[s, 0] == 0.0 or ch != 3:
            y[s] = x[s]
            continue
        for i in range(h):
            for j in range(w):
                if cf:
                    g = (w0 * x[s, 0, i, j] + w1 * x[s, 1, i, j]) + w2 * x[s, 2, i, j]
                    y[s, 0, i, j] = g
                    y[s, 1, i, j] = g
                    y[s, 2, i, j] = g
                else:
                    g = (w0 * x[s, i, j, 0] + w1 * x[s, i, j, 1]) + w2 * x[s, i, j, 2]
                    y[s, i, j, 0] = g
                    y[s, i, j, 1] = g
                    y[s, i, j, 2] = g


def grayscale_backward(dy, dx, applied, cf):
    """``dx +=`` the gradient of :func:`grayscale_forward`: for a grayscale image, each
    channel's weight times the sum of the 3 channels' ``dy``; ``dy`` for the others."""
    ch = dy.shape[1] if cf else dy.shape[3]
    h, w = (dy.shape[2], dy.shape[3]) if cf else (dy.shape[1], dy.shape[2])
    for s in range(dy.shape[0]):
        if applied[s, 0] == 0.0 or ch != 3:
            dx[s] += dy[s]
            continue
        for i in range(h):
            for j in range(w):
                if cf:
                    g = dy[s, 0, i, j] + dy[s, 1, i, j] + dy[s, 2, i, j]
                    for c in range(3):
                        dx[s, c, i, j] += np.float32(GRAY_WEIGHTS[c]) * g
                else:
                    g = dy[s, i, j, 0] + dy[s, i, j, 1] + dy[s, i, j, 2]
                    for c in range(3):
                        dx[s, i, j, c] += np.float32(GRAY_WEIGHTS[c]) * g


def invert_forward(x2, y2, applied, top):
    """``y = top - x`` for the images with ``applied[r, 0]``, ``x`` for the others (float32)."""
    t = np.float32(top)
    for s in range(x2.shape[0]):
        if applied[s, 0] != 0.0:
            for i in range(x2.shape[1]):
                y2[s, i] = t - x2[s, i]
        else:
            y2[s] = x2[s]


def invert_backward(dy2, dx2, applied):
    """``dx += -dy`` for the inverted images, ``dy`` for the others."""
    for s in range(dy2.shape[0]):
        if applied[s, 0] != 0.0:
            dx2[s] -= dy2[s]
        else:
            dx2[s] += dy2[s]


# ----------------------------------------------------------------------------- NumPy references
#
# Keras's formulas in float64, written with whole-array NumPy operations.


def _to_range(x, src, dst):
    if tuple(src) == tuple(dst):
        return x
    return (x - src[0]) / (src[1] - src[0]) * (dst[1] - dst[0]) + dst[0]


def autocontrast_reference(x, value_range):
    """AutoContrast of the batch ``x`` in float64 (min and max over axes 1 and 2, as Keras)."""
    x = np.asarray(x, np.float64)
    vr = sorted(float(v) for v in value_range)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = _to_range(x, vr, (0.0, 255.0))
        low = t.min(axis=(1, 2), keepdims=True)
        high = t.max(axis=(1, 2), keepdims=True)
        scale = 255.0 / (high - low)
        r = _to_range(np.clip(t * scale - low * scale, 0.0, 255.0), (0.0, 255.0), vr)
    return np.where(np.isnan(r), x, r)


def solarization_reference(x, additions, thresholds, value_range):
    """Solarization in training with the given per-image additions and thresholds, in float64."""
    x = np.asarray(x, np.float64)
    per_image = (-1,) + (1,) * (x.ndim - 1)
    vr = sorted(float(v) for v in value_range)
    r = np.clip(_to_range(x, vr, (0.0, 255.0)) + np.reshape(additions, per_image), 0.0, 255.0)
    r = np.where(r < np.reshape(thresholds, per_image), r, 255.0 - r)
    return _to_range(r, (0.0, 255.0), vr)


def grayscale_reference(x, applied, data_format="channels_last"):
    """RandomGrayscale in training with the given per-image choices, in float64."""
    x = np.asarray(x, np.float64)
    axis = 1 if data_format == "channels_first" else -1
    if x.shape[axis] != 3:
        return x
    gray = np.tensordot(np.moveaxis(x, axis, -1), np.array(GRAY_WEIGHTS), axes=1)
    gray = np.broadcast_to(np.expand_dims(gray, axis), x.shape)
    return np.where(np.reshape(applied, (-1, 1, 1, 1)).astype(bool), gray, x)


def invert_reference(x, applied, value_range):
    """RandomInvert in training with the given per-image choices, in float64."""
    x = np.asarray(x, np.float64)
    return np.where(np.reshape(applied, (-1,) + (1,) * (x.ndim - 1)).astype(bool), float(value_range[1]) - x, x)


# ----------------------------------------------------------------------------- layer definitions


def _sorted_range(attrs) -> tuple[float, float]:
    lo, hi = sorted(float(v) for v in attrs["value_range"])
    return lo, hi


def _infer(layer: str, channels: tuple = ()):
    """The shape rule of ``layer``: a batch of float images (augmentation's rule) with, when
    ``channels`` is given, one of those channel counts."""
    check = _image_infer(layer)

    def infer(attrs, inputs, ctx):
        out = check(attrs, inputs, ctx)
        ch = inputs[0].shape[1 if attrs.get("data_format") == "channels_first" else 3]
        if channels and ch not in channels:
            raise ShapeError(f"{layer} expects RGB (3 channels) or grayscale (1 channel) images, as Keras's "
                             f"rgb_to_grayscale; got {ch} channels")  # fmt: skip
        return out

    return infer


def _autocontrast_emit(e):
    return [e.call(autocontrast_forward, e.x[0], e.y[0], *_sorted_range(e.attrs))]


def _autocontrast_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(autocontrast_backward, e.x[0], e.dy[0], e.dx[0], *_sorted_range(e.attrs))]


def _autocontrast_reference(attrs, inputs, params, masks=None):
    return [autocontrast_reference(inputs[0], attrs["value_range"])]


def _solarization_emit_train(e):
    add, thr = e.s
    alo, ahi = factor_range(e.attrs["addition_factor"], 0.0)
    tlo, thi = factor_range(e.attrs["threshold_factor"], 0.0)
    x2, y2 = e.per_sample(e.x[0]), e.per_sample(e.y[0], True)
    return [e.call(draw_uniform, add, alo, ahi * 255.0, 1.0), e.call(draw_uniform, thr, tlo, thi * 255.0, 1.0),
            e.call(solarize_forward, x2, y2, add, thr, *_sorted_range(e.attrs))]  # fmt: skip


def _solarization_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(solarize_backward, e.per_sample(e.x[0]), e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]),
                   *e.s, *_sorted_range(e.attrs))]  # fmt: skip


def _grayscale_emit_train(e):
    f = float(e.attrs["factor"])
    return [e.call(draw_chances, e.s[0], f, f), e.call(grayscale_forward, e.x[0], e.y[0], e.s[0], _cf(e))]


def _grayscale_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(grayscale_backward, e.dy[0], e.dx[0], e.s[0], _cf(e))]


def _invert_emit_train(e):
    lo, hi = factor_range(e.attrs["factor"], 0.0)
    top = float(e.attrs["value_range"][1])
    return [e.call(draw_chances, e.s[0], lo, hi),
            e.call(invert_forward, e.per_sample(e.x[0]), e.per_sample(e.y[0], True), e.s[0], top)]  # fmt: skip


def _invert_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(invert_backward, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]), e.s[0])]


def _saved_draws(count: int):
    """``saved``: ``count`` numbers per image (its draws), each its own (rows, 1) array."""

    def saved(attrs, x_shapes, y_shapes):
        return [((1,), "float32")] * count

    return saved


def _random_layer(name, attrs, emit_train, emit_backward, draws, positional, doc, infer=None) -> LayerDef:
    """A layer that is the identity at inference and draws ``draws`` numbers per image in training."""
    return LayerDef(name=name, attrs=(*attrs, *COMMON_ATTRS), infer=infer or _infer(name), emit_train=emit_train,
                    emit_backward=emit_backward, reference=_identity_reference, saved=_saved_draws(draws),
                    training_only=True, positional=positional, doc=doc)  # fmt: skip


_SOLARIZE_FACTOR = ("drawn per image in [low, high * 255] on the [0, 255] scale (Keras scales only the upper "
                    "bound): a number `f` gives [0, f * 255], a pair [low, high] its sorted values.")  # fmt: skip

_AUTO_CONTRAST_DATA_FORMAT = replace(
    DATA_FORMAT_ATTR,
    doc="Accepted as Keras does; changes nothing: Keras takes the min and max over axes 1 and 2 whatever the "
    "data format (per channel for channels_last, per column for channels_first).",
)

AUTO_CONTRAST = LayerDef(
    name="AutoContrast",
    attrs=(
        _value_range_attr("the min of each group maps to its low end, the max to its high end."),
        _AUTO_CONTRAST_DATA_FORMAT,
        *COMMON_ATTRS,
    ),
    infer=_infer("AutoContrast"),
    emit=_autocontrast_emit,
    emit_backward=_autocontrast_backward,
    reference=_autocontrast_reference,
    positional=("value_range",),
    doc="Stretches each image's values per channel so its min becomes `value_range`'s low end and its "
    "max the high end, as Keras (min and max over axes 1 and 2, so per column for channels_first; a "
    "constant channel is kept); at inference and in training.",
)

SOLARIZATION = _random_layer(
    "Solarization",
    (Attr("addition_factor", "factor", 0.0, "The value added to every pixel of an image, " + _SOLARIZE_FACTOR,
          minimum=0.0, maximum=1.0),
     Attr("threshold_factor", "factor", 0.0, "The threshold at and above which pixels are inverted, "
          + _SOLARIZE_FACTOR, minimum=0.0, maximum=1.0),
     _value_range_attr("pixels are mapped to [0, 255], solarized and mapped back (in training)."),
     SEED_ATTR, DATA_FORMAT_ATTR),
    _solarization_emit_train, _solarization_backward, 2, ("addition_factor", "threshold_factor", "value_range"),
    "In training adds a random value to each image's pixels, clips them to `value_range` and inverts "
    "(`high + low - v`) those at or above a random threshold; the identity at inference.",
)  # fmt: skip

RANDOM_GRAYSCALE = _random_layer(
    "RandomGrayscale",
    (Attr("factor", "float", 0.5, "The probability that an image becomes grayscale.", minimum=0.0, maximum=1.0),
     DATA_FORMAT_ATTR, SEED_ATTR),
    _grayscale_emit_train, _grayscale_backward, 1, ("factor",),
    "In training turns each RGB image, with probability `factor`, into its grayscale "
    "`0.2989 R + 0.587 G + 0.114 B` in all 3 channels; the identity at inference.",
    infer=_infer("RandomGrayscale", channels=(1, 3)),
)  # fmt: skip

RANDOM_INVERT = _random_layer(
    "RandomInvert",
    (Attr("factor", "factor", 1.0,
          "The inversion probability, drawn per image in [low, high]: a number `f` gives [0, f] (so an "
          "image is inverted with probability f / 2), a pair its sorted values.", minimum=0.0, maximum=1.0),
     _value_range_attr("an inverted pixel is its high end minus the pixel (in training)."),
     SEED_ATTR, DATA_FORMAT_ATTR),
    _invert_emit_train, _invert_backward, 1, ("factor", "value_range"),
    "In training inverts each image (`value_range[1] - x`) with a random probability drawn in "
    "`factor`'s range; the identity at inference.",
)  # fmt: skip

LAYERS = (AUTO_CONTRAST, SOLARIZATION, RANDOM_GRAYSCALE, RANDOM_INVERT)
