"""Color augmentation layers: AutoContrast, Solarization, RandomGrayscale, RandomInvert,
Equalization, RandomPosterization, RandomColorDegeneration, RandomSaturation, RandomHue,
RandomSharpness, RandomColorJitter.

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
- ``Equalization(value_range, bins)`` acts only in training, as Keras's (``transform_images``
  does nothing when ``training`` is false; Keras cannot even hold it in a functional model: its
  ``compute_output_spec`` returns the input, "part of a cycle"). It equalizes each channel with
  ONE histogram over the whole batch (Keras's ``images[..., i]``), so a training batch is never
  split. Per channel: ``t = x * s1 + o1`` (Keras maps to [0, 255] even for [0, 255]: its
  ``value_range != (0, 255)`` compares a list with a tuple; ``s1``, ``o1`` Python floats used in
  float32), bin ``clip(int32((t * (bins - 1)) / 255), 0, bins - 1)`` (torch's int32 cast: NaN
  and values beyond int32 give -2**31, so bin 0), ``cdf`` the cumulative histogram, ``cmin`` its
  first nonzero value, the table ``clip(round(float32((cdf - cmin) * 255) / float32(max(N - cmin,
  1))), 0, 255)`` (half to even) read at ``int32(clip((t / 255) * (bins - 1), 0, bins - 1))``,
  mapped back by ``* s2 + o2``. A channel whose values fill at most one bin is kept (mapped there
  and back). The gradient is autograd's: 0 through the table (integer bins), ``(dy * s2) * s1``
  in a kept channel. NaN inputs are not defined (Keras's lookup fails on their index).
- ``RandomPosterization(factor)`` is the identity at inference. In training it draws per image
  a whole number of bits ``b`` in [low, high) (torch.randint: high excluded; ``low`` when they
  are equal; a number f reads as [1, f]), maps to [0, 255], casts to uint8 as torch does
  (truncation, modulo 256: -1.5 gives 255, 300 gives 44), clears the low ``8 - b`` bits and maps
  back. Keras's output has no autograd graph (the uint8 cast): no gradient reaches the input,
  and the backward adds nothing. A factor that is not whole is refused (torch.randint refuses
  it in Keras, in training).
- ``RandomColorDegeneration(factor)`` is the identity at inference. In training it draws per
  image ``f = U(low, high)`` (a number f reads as [-f, f], Keras's base rule) and returns
  ``clip(x + f * (gray - x), value_range)`` (sorted), ``gray`` Keras's rgb_to_grayscale; RGB
  images only (Keras's compute_output_shape refuses other channel counts in a model).
- ``RandomSaturation(factor)`` is the identity at inference. In training it draws per image
  ``u = U(low, high)`` (a number f reads as [-f, f]) and the factor ``u / (1 - u + 1e-7)`` (float32),
  converts each pixel with Keras's torch ``rgb_to_hsv`` (on the raw values: no value-range
  mapping; values below float32's eps in size read as 0), multiplies the saturation by the
  factor, clips it to value_range (sorted: for [0, 255] a saturation above 1 stays, as in
  Keras) and converts back with ``hsv_to_rgb``, float32 in Keras's order (bit for bit).
- ``RandomHue(factor)`` is the identity at inference. In training it draws per image a shift
  ``±U(low, high) / 2`` (negative when a first ``uniform() > 0.5``; a number f reads as [0, f]),
  maps value_range AS WRITTEN to [0, 1], adds the shift to the hue (wrapped once into [0, 1]),
  converts back, clips to [0, 1] and maps back.
- Both HSV layers' backward is autograd's through Keras's formulas: the selected ``where``
  branches, ``maximum``/``minimum`` sharing a tie evenly, ``abs`` (0 at 0), the clips (inclusive)
  and ``remainder`` (1); the gradient sums run in float64 (within 1e-6 of autograd's).
- ``RandomSharpness(factor)`` is the identity at inference. In training it draws per image
  ``f = U(low, high)`` (a number f reads as [0, f]) and returns ``clip(x + (1 - 2 f) (s - x),
  value_range)``, ``s`` Keras's 3x3 smoothing (1/13 around, 5/13 at the center, zero padding,
  per channel). nnspec sums the 9 products in float64: torch's convolution sums them in an order
  of its own, so about a fifth of the values differ from Keras's in the last bit.
- ``RandomColorJitter`` is the identity at inference. In training it applies the Keras
  sub-layers whose factor is given, in Keras's order, with their draws and kernels: RandomBrightness,
  RandomContrast (``nnspec.layerdefs.augmentation``), RandomSaturation, RandomHue, each given the
  jitter's value_range but not its data_format (Keras builds them channels_last, so
  ``data_format`` changes nothing; saturation and hue need 3 channels on the last axis). The
  training step saves the draws and each stage's output but the last; the backward chains the
  stages' backward kernels. Keras's brightness stage adds in place: torch refuses that when the
  jitter's input is a leaf tensor that needs a gradient (a Keras model's input does not).

Random draws come from NumPy's generator inside Numba, seeded as the other augmentation layers'
(``nnspec.runtime.kernels.seed_kernels``, from fit's seed); a ``seed`` attribute is accepted
but selects no stream of its own: Keras's torch streams cannot be reproduced. The draws of a
training step are saved for its backward pass, which gives the gradient of what the forward
computed: zero where clipping cut it, ``-dy`` where an image was inverted or solarized, the
grayscale weights times the sum of the 3 channels' gradients where an image became grayscale.

Differences from Keras: integer images are refused (as by the other augmentation layers); pairs
of factors must lie in the factor's bounds element-wise ([0, 1]; [1, 8] for RandomPosterization;
[-1, 1] for RandomColorDegeneration and RandomSaturation): Keras's loose check of a pair accepts
e.g. RandomInvert's [-0.5, 0.5] or RandomPosterization's [0, 3] (which zeroes images).
RandomSharpness's smoothing differs in the last bit (above). Equalization cannot be compared
with a Keras model (Keras cannot build one holding it).
"""

from __future__ import annotations

import math
from dataclasses import replace

from .augmentation import (
    SEED_ATTR,
    _brightness_range,
    _cf,
    _image_infer,
    _value_range,
    _value_range_attr,
    brightness_backward,
    brightness_forward,
    brightness_reference,
    contrast_backward,
    contrast_forward,
    contrast_reference,
    draw_uniform,
    factor_range,
)
from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError
from .core import DATA_FORMAT_ATTR, _identity_reference

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_to_255", "_from_255", "_clip255", "_range32", "_stats_arrays", "_autocontrast_stats", "_to_int32",
                  "_equalize_scales", "_equalize_tables", "_rgb_to_hsv", "_hsv_coefs", "_clip01", "_hsv_to_rgb",
                  "_hsv_pixel", "_to_unit", "_from_unit", "_half_max", "_rgb_to_hsv_backward", "_sign",
                  "_hsv_to_rgb_backward", "_pixel_at", "_smoothed", "_gray")  # fmt: skip

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


def _to_int32(v):
    """``v`` cast to int32 as torch does on x86: truncated; NaN and values beyond int32 give
    the integer indefinite ``-2**31``."""
    if not -2147483648.0 <= v < 2147483648.0:
        return -2147483648
    return int(v)


def _equalize_scales(vlo, vhi):
    """Equalization's float32 scale and offset to [0, 255] and back (Keras's ``_scale_values``
    with its Python-float scale and offset, applied even for [0, 255])."""
    s1 = 255.0 / (vhi - vlo)
    s2 = (vhi - vlo) / 255.0
    return np.float32(s1), np.float32(0.0 - vlo * s1), np.float32(s2), np.float32(vlo - 0.0 * s2)


def _equalize_tables(x, cf, bins, s1, o1):
    """Per channel of the whole batch: the lookup table (bins, float32) and whether the channel
    is kept (at most one nonzero histogram bin), as Keras's Equalization computes them."""
    ch = x.shape[1] if cf else x.shape[3]
    hist = np.zeros((ch, bins), np.int64)
    nb = np.float32(bins - 1)
    for s in range(x.shape[0]):
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(x.shape[3]):
                    t = x[s, i, j, q] * s1 + o1
                    k = min(max(_to_int32(((t - np.float32(0.0)) * nb) / np.float32(255.0)), 0), bins - 1)
                    hist[i if cf else q, k] += 1
    lut = np.zeros((ch, bins), np.float32)
    keep = np.zeros(ch, np.bool_)
    for c in range(ch):
        keep[c] = np.count_nonzero(hist[c]) <= 1
        cdf = np.cumsum(hist[c])
        cmin = cdf[np.nonzero(cdf)[0][0]]
        den = cdf[bins - 1] - cmin
        den = 1 if den == 0 else den
        for k in range(bins):
            r = np.rint(np.float32((cdf[k] - cmin) * 255) / np.float32(den))
            lut[c, k] = min(max(r, np.float32(0.0)), np.float32(255.0))
    return lut, keep


def equalize_forward(x, y, cf, bins, vlo, vhi):
    """Equalization (module docstring) of the batch ``x`` (rows, H, W, C), or (rows, C, H, W)
    when ``cf``, into ``y``: one histogram per channel over the whole batch."""
    s1, o1, s2, o2 = _equalize_scales(vlo, vhi)
    lut, keep = _equalize_tables(x, cf, bins, s1, o1)
    nb = np.float32(bins - 1)
    for s in range(x.shape[0]):
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(x.shape[3]):
                    c = i if cf else q
                    t = x[s, i, j, q] * s1 + o1
                    if not keep[c]:
                        v = min(max((t / np.float32(255.0)) * nb, np.float32(0.0)), nb)
                        t = lut[c, max(_to_int32(v), 0)]
                    y[s, i, j, q] = t * s2 + o2


def equalize_backward(x, dy, dx, cf, bins, vlo, vhi):
    """``dx +=`` autograd's gradient of :func:`equalize_forward`: ``(dy * s2) * s1`` (the two
    scalings) in the channels kept, 0 in the equalized ones (a table lookup by integer bins)."""
    s1, o1, s2, _ = _equalize_scales(vlo, vhi)
    keep = _equalize_tables(x, cf, bins, s1, o1)[1]
    for s in range(x.shape[0]):
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                for q in range(x.shape[3]):
                    if keep[i if cf else q]:
                        dx[s, i, j, q] += (dy[s, i, j, q] * s2) * s1


def draw_integers(v, low, high):
    """Per image ``v[r, 0]`` an integer uniform in [low, high) (``low`` when they are equal), as
    Keras's RandomPosterization draws its bit depths."""
    for s in range(v.shape[0]):
        v[s, 0] = low if low == high else np.random.randint(low, high)


def posterize_forward(x2, y2, bits, vlo, vhi):
    """RandomPosterization over (rows, values per image) keeping ``bits[r, 0]`` bits per image:
    to [0, 255], cast to uint8 as torch does (truncated, modulo 256), the low ``8 - bits`` bits
    cleared, back to ``value_range`` (float32)."""
    lo, width, ident = _range32(vlo, vhi)
    for s in range(x2.shape[0]):
        k = 8 - int(bits[s, 0])
        for i in range(x2.shape[1]):
            b = _to_int32(_to_255(x2[s, i], lo, width, ident)) & 255
            y2[s, i] = _from_255(np.float32((b >> k) << k), lo, width, ident)


def _gray(x, s, i, j, cf):
    """Keras's rgb_to_grayscale of pixel (i, j) of image ``s`` (float32, in its order)."""
    return (np.float32(GRAY_WEIGHTS[0]) * _pixel_at(x, s, i, j, 0, cf) + np.float32(GRAY_WEIGHTS[1]) * _pixel_at(
        x, s, i, j, 1, cf)) + np.float32(GRAY_WEIGHTS[2]) * _pixel_at(x, s, i, j, 2, cf)  # fmt: skip


def degenerate_forward(x, y, f, cf, vlo, vhi):
    """RandomColorDegeneration: ``x + f * (gray - x)`` per RGB image with its ``f[r, 0]``,
    ``gray`` Keras's rgb_to_grayscale, clipped to [vlo, vhi] (float32, Keras's order)."""
    lo, hi = np.float32(vlo), np.float32(vhi)
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    for s in range(x.shape[0]):
        k = np.float32(f[s, 0])
        for i in range(h):
            for j in range(w):
                g = _gray(x, s, i, j, cf)
                for c in range(3):
                    xc = _pixel_at(x, s, i, j, c, cf)
                    v = min(max(xc + k * (g - xc), lo), hi)
                    if cf:
                        y[s, c, i, j] = v
                    else:
                        y[s, i, j, c] = v


def degenerate_backward(x, dy, dx, f, cf, vlo, vhi):
    """``dx +=`` the gradient of :func:`degenerate_forward`: ``g = dy`` where the value before
    clipping lies in [vlo, vhi] (else 0); ``dx_c += (1 - f) g_c + w_c f sum(g)``."""
    lo, hi = np.float32(vlo), np.float32(vhi)
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    g = np.empty(3, np.float32)
    for s in range(x.shape[0]):
        k = np.float32(f[s, 0])
        for i in range(h):
            for j in range(w):
                gray = _gray(x, s, i, j, cf)
                for c in range(3):
                    xc = _pixel_at(x, s, i, j, c, cf)
                    v = xc + k * (gray - xc)
                    g[c] = _pixel_at(dy, s, i, j, c, cf) if lo <= v <= hi else np.float32(0.0)
                t = k * (g[0] + g[1] + g[2])
                for c in range(3):
                    d = (g[c] - k * g[c]) + np.float32(GRAY_WEIGHTS[c]) * t
                    if cf:
                        dx[s, c, i, j] += d
                    else:
                        dx[s, i, j, c] += d


def _rgb_to_hsv(r, g, b):
    """Keras's torch ``rgb_to_hsv`` of one pixel, float32 (values below float32's eps in size read as 0)."""
    eps, zero, one = np.float32(1.1920929e-07), np.float32(0.0), np.float32(1.0)
    r = zero if abs(r) < eps else r
    g = zero if abs(g) < eps else g
    b = zero if abs(b) < eps else b
    value = max(max(r, g), b)
    rng = value - min(min(r, g), b)
    sat = rng / (value if value > zero else one) if value > zero else zero
    norm = one / (np.float32(6.0) * (rng if rng > zero else one))
    if value == r:
        hue = norm * (g - b)
    elif value == g:
        hue = norm * (b - r) + np.float32(2.0 / 6.0)
    else:
        hue = norm * (r - g) + np.float32(4.0 / 6.0)
    return (hue if rng > zero else zero) + (one if hue < zero else zero), sat, value


def _hsv_coefs(h):
    """``dh = remainder(h, 1) * 6`` and the three unclipped channel coefficients of Keras's
    ``hsv_to_rgb`` (float32; torch's remainder: fmod, plus 1 when negative)."""
    m = np.float32(np.fmod(h, np.float32(1.0)))
    if m < np.float32(0.0):
        m = m + np.float32(1.0)
    dh = m * np.float32(6.0)
    return dh, abs(dh - np.float32(3.0)) - np.float32(1.0), np.float32(2.0) - abs(dh - np.float32(2.0)), np.float32(
        2.0) - abs(dh - np.float32(4.0))  # fmt: skip


def _clip01(v):
    return min(max(v, np.float32(0.0)), np.float32(1.0))


def _hsv_to_rgb(h, s, v):
    """Keras's torch ``hsv_to_rgb`` of one pixel, float32."""
    _, ar, ag, ab = _hsv_coefs(h)
    oms = np.float32(1.0) - s
    return v * (oms + s * _clip01(ar)), v * (oms + s * _clip01(ag)), v * (oms + s * _clip01(ab))


def _hsv_pixel(r, g, b, k, hue, lo, hi, a, w, ident):
    """One pixel of RandomSaturation (``hue`` false: saturation times ``k``, clipped to [lo, hi])
    or RandomHue (``hue``: mapped to [0, 1] from [a, a + w], hue plus ``k`` wrapped into [0, 1],
    the result clipped to [0, 1] and mapped back), float32 as Keras."""
    if hue:
        r, g, b = _to_unit(r, a, w, ident), _to_unit(g, a, w, ident), _to_unit(b, a, w, ident)
    h, sat, v = _rgb_to_hsv(r, g, b)
    if hue:
        h = h + k
        h = h - np.float32(1.0) if h > np.float32(1.0) else h
        h = h + np.float32(1.0) if h < np.float32(0.0) else h
    else:
        sat = min(max(sat * k, lo), hi)
    r, g, b = _hsv_to_rgb(h, sat, v)
    if hue:
        r, g, b = _from_unit(_clip01(r), a, w, ident), _from_unit(_clip01(g), a, w, ident), _from_unit(
            _clip01(b), a, w, ident)  # fmt: skip
    return r, g, b


def _to_unit(v, a, w, ident):
    """Keras's ``_transform_value_range`` from [a, a + w] (as written) to [0, 1], float32."""
    return v if ident else ((v - a) / w) * np.float32(1.0) + np.float32(0.0)


def _from_unit(v, a, w, ident):
    return v if ident else (v / np.float32(1.0)) * w + a


def _half_max(g, a, b):
    """torch.maximum's backward: the gradient ``g`` to ``a`` (1, a half at a tie, 0)."""
    return g if a > b else (0.5 * g if a == b else 0.0)


def _rgb_to_hsv_backward(r0, g0, b0, dh, ds, dv, grads):
    """``grads`` (3, float64) = autograd's gradient of :func:`_rgb_to_hsv` at (r0, g0, b0) for
    output gradients (dh, ds, dv): through the selected where branches, maximum/minimum sharing a
    tie evenly, nothing through the eps test or ``hue < 0``."""
    eps, zero, one = np.float32(1.1920929e-07), np.float32(0.0), np.float32(1.0)
    r = zero if abs(r0) < eps else r0
    g = zero if abs(g0) < eps else g0
    b = zero if abs(b0) < eps else b0
    m1, n1 = max(r, g), min(r, g)
    value, mn = max(m1, b), min(n1, b)
    rng = value - mn
    sv = value if value > zero else one
    sr = rng if rng > zero else one
    norm = one / (np.float32(6.0) * sr)
    dr = dg = db = 0.0
    dhue = dh if rng > zero else 0.0
    if value == r:
        dnorm = dhue * (g - b)
        dg += dhue * norm
        db -= dhue * norm
    elif value == g:
        dnorm = dhue * (b - r)
        db += dhue * norm
        dr -= dhue * norm
    else:
        dnorm = dhue * (r - g)
        dr += dhue * norm
        dg -= dhue * norm
    drng = -dnorm * (norm * norm) * 6.0 if rng > zero else 0.0
    dvalue = dv
    if value > zero:
        drng += ds / sv
        dvalue += -ds * rng / (sv * sv)
    dvalue += drng
    dmn = -drng
    dm1 = _half_max(dvalue, m1, b)
    db += _half_max(dvalue, b, m1)
    dr += _half_max(dm1, r, g)
    dg += _half_max(dm1, g, r)
    dn1 = _half_max(dmn, -n1, -b)
    db += _half_max(dmn, -b, -n1)
    dr += _half_max(dn1, -r, -g)
    dg += _half_max(dn1, -g, -r)
    grads[0] = dr if abs(r0) >= eps else 0.0
    grads[1] = dg if abs(g0) >= eps else 0.0
    grads[2] = db if abs(b0) >= eps else 0.0


def _sign(v):
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


def _hsv_to_rgb_backward(h, s, v, d, grads):
    """``grads`` (3, float64) = autograd's gradient of :func:`_hsv_to_rgb` at (h, s, v) for the
    output gradients ``d`` (3): through remainder (1), abs (sign, 0 at 0) and the clips."""
    dh, ar, ag, ab = _hsv_coefs(h)
    oms = np.float32(1.0) - s
    ks = (_clip01(ar), _clip01(ag), _clip01(ab))
    slopes = (_sign(dh - np.float32(3.0)), -_sign(dh - np.float32(2.0)), -_sign(dh - np.float32(4.0)))
    unclipped = (ar, ag, ab)
    g_h = g_s = g_v = 0.0
    for c in range(3):
        g_v += d[c] * (oms + s * ks[c])
        g_s += d[c] * v * (ks[c] - 1.0)
        if 0.0 <= unclipped[c] <= 1.0:
            g_h += d[c] * v * s * slopes[c] * 6.0
    grads[0], grads[1], grads[2] = g_h, g_s, g_v


def _pixel_at(x, s, i, j, c, cf):
    return x[s, c, i, j] if cf else x[s, i, j, c]


def hsv_forward(x, y, f, cf, hue, vlo, vhi, a, b):
    """RandomSaturation (``hue`` false; saturation times ``f[r, 0]`` clipped to [vlo, vhi]) or
    RandomHue (``hue``; hue plus ``f[r, 0]``, value range [a, b] as written) of each RGB image
    of ``x`` (rows, H, W, 3), or (rows, 3, H, W) when ``cf``, into ``y`` (float32)."""
    lo, hi = np.float32(vlo), np.float32(vhi)
    a32, w32 = np.float32(a), np.float32(b) - np.float32(a)
    ident = a == 0.0 and b == 1.0
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    for s in range(x.shape[0]):
        k = np.float32(f[s, 0])
        for i in range(h):
            for j in range(w):
                rgb = _hsv_pixel(_pixel_at(x, s, i, j, 0, cf), _pixel_at(x, s, i, j, 1, cf),
                                 _pixel_at(x, s, i, j, 2, cf), k, hue, lo, hi, a32, w32, ident)  # fmt: skip
                for c in range(3):
                    if cf:
                        y[s, c, i, j] = rgb[c]
                    else:
                        y[s, i, j, c] = rgb[c]


def hsv_backward(x, dy, dx, f, cf, hue, vlo, vhi, a, b):
    """``dx +=`` autograd's gradient of :func:`hsv_forward` with the same factors (module docstring)."""
    lo, hi = np.float32(vlo), np.float32(vhi)
    a32, w32 = np.float32(a), np.float32(b) - np.float32(a)
    ident = a == 0.0 and b == 1.0
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    d = np.empty(3, np.float64)
    g_hsv = np.empty(3, np.float64)
    g_rgb = np.empty(3, np.float64)
    t = np.empty(3, np.float32)
    for s in range(x.shape[0]):
        k = np.float32(f[s, 0])
        for i in range(h):
            for j in range(w):
                for c in range(3):
                    t[c] = _pixel_at(x, s, i, j, c, cf)
                    t[c] = _to_unit(t[c], a32, w32, ident) if hue else t[c]
                hh, sat, v = _rgb_to_hsv(t[0], t[1], t[2])
                if hue:
                    hh = hh + k
                    hh = hh - np.float32(1.0) if hh > np.float32(1.0) else hh
                    hh = hh + np.float32(1.0) if hh < np.float32(0.0) else hh
                    sat2 = sat
                else:
                    sat2 = min(max(sat * k, lo), hi)
                out = _hsv_to_rgb(hh, sat2, v)
                for c in range(3):
                    d[c] = _pixel_at(dy, s, i, j, c, cf)
                    if hue:  # the clip to [0, 1] and the two value-range maps
                        d[c] = d[c] * w32 / 1.0 if 0.0 <= out[c] <= 1.0 else 0.0
                _hsv_to_rgb_backward(hh, sat2, v, d, g_hsv)
                if not hue:
                    g_hsv[1] = g_hsv[1] * k if lo <= sat * k <= hi else 0.0
                _rgb_to_hsv_backward(t[0], t[1], t[2], g_hsv[0], g_hsv[1], g_hsv[2], g_rgb)
                for c in range(3):
                    g = g_rgb[c] / w32 if hue else g_rgb[c]
                    if cf:
                        dx[s, c, i, j] += g
                    else:
                        dx[s, i, j, c] += g


SHARP_WEIGHTS = (1.0 / 13.0, 5.0 / 13.0)  # Keras's smoothing kernel: 1/13 around, 5/13 at the center


def _smoothed(x, s, c, i, j, cf):
    """Keras's 3x3 smoothing (zero padding) of channel ``c`` of image ``s`` at (i, j), summed in
    float64 from float32 products (torch's convolution sums in an order of its own)."""
    h, w = (x.shape[2], x.shape[3]) if cf else (x.shape[1], x.shape[2])
    acc = 0.0
    for di in range(-1, 2):
        for dj in range(-1, 2):
            r, q = i + di, j + dj
            if 0 <= r < h and 0 <= q < w:
                wt = np.float32(SHARP_WEIGHTS[1] if di == 0 and dj == 0 else SHARP_WEIGHTS[0])
                acc += wt * _pixel_at(x, s, r, q, c, cf)
    return np.float32(acc)


def sharpen_forward(x, y, f, cf, vlo, vhi):
    """RandomSharpness: ``x + (1 - 2 f) (smoothed - x)`` per image with its ``f[r, 0]``, clipped
    to [vlo, vhi] (float32 but for the smoothing's sum)."""
    lo, hi = np.float32(vlo), np.float32(vhi)
    ch, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cf else (x.shape[3], x.shape[1], x.shape[2])
    for s in range(x.shape[0]):
        k = np.float32(1.0) - np.float32(f[s, 0]) * np.float32(2.0)
        for c in range(ch):
            for i in range(h):
                for j in range(w):
                    v = _pixel_at(x, s, i, j, c, cf)
                    v = min(max(v + k * (_smoothed(x, s, c, i, j, cf) - v), lo), hi)
                    if cf:
                        y[s, c, i, j] = v
                    else:
                        y[s, i, j, c] = v


def sharpen_backward(x, dy, dx, f, cf, vlo, vhi):
    """``dx +=`` the gradient of :func:`sharpen_forward`: ``g = dy`` where the value before
    clipping lies in [vlo, vhi] (else 0), ``dx = (1 - k) g + k smoothed(g)`` (the smoothing is
    its own adjoint: a symmetric kernel, zero padding), ``k = 1 - 2 f``."""
    lo, hi = np.float32(vlo), np.float32(vhi)
    ch, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cf else (x.shape[3], x.shape[1], x.shape[2])
    g = np.empty(x.shape[1:], np.float32)
    for s in range(x.shape[0]):
        k = np.float32(1.0) - np.float32(f[s, 0]) * np.float32(2.0)
        for c in range(ch):
            for i in range(h):
                for j in range(w):
                    v = _pixel_at(x, s, i, j, c, cf)
                    v = v + k * (_smoothed(x, s, c, i, j, cf) - v)
                    gv = _pixel_at(dy, s, i, j, c, cf) if lo <= v <= hi else np.float32(0.0)
                    if cf:
                        g[c, i, j] = gv
                    else:
                        g[i, j, c] = gv
        g4 = g.reshape((1,) + g.shape)
        for c in range(ch):
            for i in range(h):
                for j in range(w):
                    gv = _pixel_at(g4, 0, i, j, c, cf)
                    d = (gv - k * gv) + k * _smoothed(g4, 0, c, i, j, cf)
                    if cf:
                        dx[s, c, i, j] += d
                    else:
                        dx[s, i, j, c] += d


def draw_saturations(v, low, high):
    """Per image Keras's saturation factor ``u / (1 - u + 1e-7)`` for ``u = U(low, high)`` (float32)."""
    for s in range(v.shape[0]):
        u = np.float32(np.random.uniform(low, high))
        v[s, 0] = u / ((np.float32(1.0) - u) + np.float32(1e-7))


def draw_hues(v, low, high):
    """Per image Keras's hue shift ``sign * U(low, high) * 0.5``, ``sign`` -1 when a first
    ``uniform() > 0.5`` (float32)."""
    for s in range(v.shape[0]):
        sign = np.float32(-1.0) if np.random.random() > 0.5 else np.float32(1.0)
        v[s, 0] = sign * np.float32(np.random.uniform(low, high)) * np.float32(0.5)


def copy_images(x2, y2):
    """``y = x`` (RandomColorJitter without factors)."""
    y2[:] = x2


def add_gradient(dy2, dx2):
    """``dx += dy``."""
    dx2 += dy2


def zero_images(a2):
    a2[:] = 0.0


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


def equalization_reference(x, value_range, bins, data_format="channels_last"):
    """Equalization in training of the batch ``x`` (one histogram per channel over the batch), float64."""
    x = np.asarray(x, np.float64)
    axis = 1 if data_format == "channels_first" else 3
    vr = sorted(float(v) for v in value_range)
    out = np.empty_like(x)
    for c in range(x.shape[axis]):
        t = _to_range(np.take(x, c, axis=axis), vr, (0.0, 255.0))
        hist = np.bincount(np.clip(np.trunc(t * (bins - 1) / 255.0), 0, bins - 1).astype(np.int64).ravel(),
                           minlength=bins)  # fmt: skip
        if np.count_nonzero(hist) > 1:
            cdf = np.cumsum(hist)
            cmin = cdf[cdf > 0][0]
            lut = np.clip(np.round((cdf - cmin) * 255.0 / max(cdf[-1] - cmin, 1)), 0, 255)
            t = lut[np.clip(t / 255.0 * (bins - 1), 0, bins - 1).astype(np.int64)]
        np.moveaxis(out, axis, 0)[c] = _to_range(t, (0.0, 255.0), vr)
    return out


def posterization_reference(x, bits, value_range):
    """RandomPosterization in training keeping ``bits[r]`` bits per image, in float64 (the
    uint8 cast truncates and wraps modulo 256, as torch's)."""
    x = np.asarray(x, np.float64)
    vr = sorted(float(v) for v in value_range)
    step = 2.0 ** (8 - np.reshape(bits, (-1,) + (1,) * (x.ndim - 1)))
    b = np.mod(np.trunc(_to_range(x, vr, (0.0, 255.0))), 256.0)
    return _to_range(np.floor(b / step) * step, (0.0, 255.0), vr)


def degeneration_reference(x, factors, value_range, data_format="channels_last"):
    """RandomColorDegeneration in training with the given per-image factors, in float64."""
    x = np.asarray(x, np.float64)
    gray = grayscale_reference(x, np.ones(len(x)), data_format)
    f = np.reshape(factors, (-1, 1, 1, 1))
    lo, hi = sorted(float(v) for v in value_range)
    return np.clip(x + f * (gray - x), lo, hi)


def _rgb_to_hsv64(x, axis):
    """Keras's rgb_to_hsv formulas in float64 (hue, saturation, value planes)."""
    r, g, b = (np.take(x, c, axis=axis) for c in range(3))
    v = np.maximum(np.maximum(r, g), b)
    rng = v - np.minimum(np.minimum(r, g), b)
    s = np.where(v > 0, rng / np.where(v > 0, v, 1.0), 0.0)
    norm = 1.0 / (6.0 * np.where(rng > 0, rng, 1.0))
    h = np.where(v == r, norm * (g - b), np.where(v == g, norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0))
    return np.where(rng > 0, h, 0.0) + (h < 0), s, v


def _hsv_to_rgb64(h, s, v, axis):
    dh = np.mod(h, 1.0) * 6.0
    ks = (np.abs(dh - 3.0) - 1.0, 2.0 - np.abs(dh - 2.0), 2.0 - np.abs(dh - 4.0))
    return np.stack([v * (1.0 - s + s * np.clip(k, 0.0, 1.0)) for k in ks], axis=axis)


def saturation_reference(x, factors, value_range, data_format="channels_last"):
    """RandomSaturation in training with the given per-image factors (after Keras's
    ``u / (1 - u + 1e-7)``), in float64."""
    x = np.asarray(x, np.float64)
    axis = 1 if data_format == "channels_first" else 3
    h, s, v = _rgb_to_hsv64(x, axis)
    lo, hi = sorted(float(t) for t in value_range)
    return _hsv_to_rgb64(h, np.clip(s * np.reshape(factors, (-1, 1, 1)), lo, hi), v, axis)


def hue_reference(x, shifts, value_range, data_format="channels_last"):
    """RandomHue in training with the given per-image hue shifts, in float64."""
    x = np.asarray(x, np.float64)
    axis = 1 if data_format == "channels_first" else 3
    vr = [float(t) for t in value_range]
    h, s, v = _rgb_to_hsv64(_to_range(x, vr, (0.0, 1.0)), axis)
    h = h + np.reshape(shifts, (-1, 1, 1))
    h = np.where(h > 1.0, h - 1.0, h)
    h = np.where(h < 0.0, h + 1.0, h)
    return _to_range(np.clip(_hsv_to_rgb64(h, s, v, axis), 0.0, 1.0), (0.0, 1.0), vr)


def sharpness_reference(x, factors, value_range, data_format="channels_last"):
    """RandomSharpness in training with the given per-image factors, in float64."""
    x = np.asarray(x, np.float64)
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, 3)
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    sm = sum(pad[:, 1 + di : 1 + di + h, 1 + dj : 1 + dj + w] * (5.0 if di == dj == 0 else 1.0)
             for di in (-1, 0, 1) for dj in (-1, 0, 1)) / 13.0  # fmt: skip
    k = 1.0 - 2.0 * np.reshape(factors, (-1, 1, 1, 1))
    lo, hi = sorted(float(v) for v in value_range)
    out = np.clip(x + k * (sm - x), lo, hi)
    return np.moveaxis(out, 3, 1) if data_format == "channels_first" else out


def color_jitter_reference(x, value_range, brightness=None, contrast=None, saturation=None, hue=None):
    """RandomColorJitter in training with the given per-image draws of each stage (None: no
    stage): brightness deltas, contrast factors, saturation factors, hue shifts, applied in
    Keras's order and channels_last, in float64."""
    vr = [float(v) for v in value_range]
    x = np.asarray(x, np.float64)
    if brightness is not None:
        x = brightness_reference(x, brightness, vr)
    if contrast is not None:
        x = contrast_reference(x, contrast, vr)
    if saturation is not None:
        x = saturation_reference(x, saturation, vr)
    if hue is not None:
        x = hue_reference(x, hue, vr)
    return x


# ----------------------------------------------------------------------------- layer definitions


def _sorted_range(attrs) -> tuple[float, float]:
    lo, hi = sorted(float(v) for v in attrs["value_range"])
    return lo, hi


def _infer(layer: str, channels: tuple = (), integer_factor: bool = False):
    """The shape rule of ``layer``: a batch of float images (augmentation's rule) with, when
    ``channels`` is given, one of those channel counts; with ``integer_factor``, a factor of
    whole numbers."""
    check = _image_infer(layer)

    def infer(attrs, inputs, ctx):
        out = check(attrs, inputs, ctx)
        ch = inputs[0].shape[1 if attrs.get("data_format") == "channels_first" else 3]
        if channels and ch not in channels:
            kinds = "RGB (3 channels) or grayscale (1 channel)" if 1 in channels else "RGB (3 channels)"
            raise ShapeError(f"{layer} expects {kinds} images, as Keras; got {ch} channels")
        if integer_factor and any(float(v) != int(v) for v in factor_range(attrs["factor"], 1.0)):
            raise ShapeError(f"{layer}'s factor must hold whole numbers (Keras draws them with torch.randint); "
                             f"got {attrs['factor']}")  # fmt: skip
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


def _equalization_args(e):
    lo, hi = _sorted_range(e.attrs)
    return _cf(e), int(e.attrs["bins"]), lo, hi


def _equalization_emit_train(e):
    return [e.call(equalize_forward, e.x[0], e.y[0], *_equalization_args(e))]


def _equalization_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(equalize_backward, e.x[0], e.dy[0], e.dx[0], *_equalization_args(e))]


def _posterization_emit_train(e):
    lo, hi = factor_range(e.attrs["factor"], 1.0)
    return [e.call(draw_integers, e.s[0], int(lo), int(hi)),
            e.call(posterize_forward, e.per_sample(e.x[0]), e.per_sample(e.y[0], True), e.s[0],
                   *_sorted_range(e.attrs))]  # fmt: skip


def _no_gradient(e):
    """Keras's result is cast through uint8: autograd gives the input no gradient (0)."""
    return []


def _degeneration_emit_train(e):
    lo, hi = factor_range(e.attrs["factor"], -1.0)
    return [e.call(draw_uniform, e.s[0], lo, hi, 1.0),
            e.call(degenerate_forward, e.x[0], e.y[0], e.s[0], _cf(e), *_sorted_range(e.attrs))]  # fmt: skip


def _degeneration_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(degenerate_backward, e.x[0], e.dy[0], e.dx[0], e.s[0], _cf(e), *_sorted_range(e.attrs))]


def _hsv_args(e, hue: bool):
    """hsv_forward's arguments after the factors: the layout, the mode, the saturation clip
    range (value_range sorted) and the hue layer's value range (as written)."""
    lo, hi = _sorted_range(e.attrs)
    a, b = (float(v) for v in e.attrs["value_range"])
    return (_cf(e), hue, lo, hi, a, b) if hue else (_cf(e), hue, lo, hi, 0.0, 1.0)


def _hsv_emit_train(draw, lowest: float, hue: bool):
    def emit_train(e):
        return [e.call(draw, e.s[0], *factor_range(e.attrs["factor"], lowest)),
                e.call(hsv_forward, e.x[0], e.y[0], e.s[0], *_hsv_args(e, hue))]  # fmt: skip

    return emit_train


def _hsv_backward(hue: bool):
    def emit_backward(e):
        if e.dx[0] is None:
            return []
        return [e.call(hsv_backward, e.x[0], e.dy[0], e.dx[0], e.s[0], *_hsv_args(e, hue))]

    return emit_backward


def _sharpness_emit_train(e):
    return [e.call(draw_uniform, e.s[0], *factor_range(e.attrs["factor"], 0.0), 1.0),
            e.call(sharpen_forward, e.x[0], e.y[0], e.s[0], _cf(e), *_sorted_range(e.attrs))]  # fmt: skip


def _sharpness_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(sharpen_backward, e.x[0], e.dy[0], e.dx[0], e.s[0], _cf(e), *_sorted_range(e.attrs))]


JITTER_STAGES = ("brightness", "contrast", "saturation", "hue")  # Keras's order


def _jitter_stages(attrs) -> list[str]:
    return [k for k in JITTER_STAGES if attrs[f"{k}_factor"] is not None]


def _jitter_saved(attrs, x_shapes, y_shapes):
    """Per image: one draw per stage, then each stage's output but the last (the next stage's
    input, for the backward pass), then up to two gradient buffers between stages."""
    n = len(_jitter_stages(attrs))
    image = (tuple(x_shapes[0]), "float32")
    return [((1,), "float32")] * n + [image] * max(n - 1, 0) + [image] * min(max(n - 1, 0), 2)


def _jitter_stage(e, stage, k, src, dst, backward=False, grad=None):
    """The line of stage ``stage`` (its draw in ``e.s[k]``) reading ``src`` and writing ``dst``
    (or, ``backward``, adding the gradient ``grad`` of its output into ``dst``). Keras's
    sub-layers get the jitter's value_range but not its data_format: channels_last always."""
    d = e.s[k]
    if stage == "brightness":
        args = _brightness_range(e.attrs)
        if backward:
            return e.call(brightness_backward, e.per_sample(src), e.per_sample(grad), e.per_sample(dst), d, *args)
        return e.call(brightness_forward, e.per_sample(src), e.per_sample(dst), d, *args)
    if stage == "contrast":
        if backward:
            return e.call(contrast_backward, src, grad, dst, d, False, *_value_range(e.attrs))
        return e.call(contrast_forward, src, dst, d, False, *_value_range(e.attrs))
    hue = stage == "hue"
    lo, hi = _sorted_range(e.attrs)
    a, b = _value_range(e.attrs) if hue else (0.0, 1.0)
    if backward:
        return e.call(hsv_backward, src, grad, dst, d, False, hue, lo, hi, a, b)
    return e.call(hsv_forward, src, dst, d, False, hue, lo, hi, a, b)


def _jitter_draw(e, stage, k):
    a = e.attrs
    f = a[f"{stage}_factor"]
    if stage == "brightness":
        lo, hi = _brightness_range(a)
        return e.call(draw_uniform, e.s[k], *factor_range(f, -1.0), hi - lo)
    if stage == "contrast":
        lo, hi = factor_range(f, 0.0)
        return e.call(draw_uniform, e.s[k], 1.0 - lo, 1.0 + hi, 1.0)
    if stage == "saturation":
        return e.call(draw_saturations, e.s[k], *factor_range(f, -1.0))
    return e.call(draw_hues, e.s[k], *factor_range(f, 0.0))


def _jitter_emit_train(e):
    stages = _jitter_stages(e.attrs)
    n = len(stages)
    if n == 0:
        return [e.call(copy_images, e.per_sample(e.x[0]), e.per_sample(e.y[0], True))]
    lines, src = [], e.x[0]
    for k, stage in enumerate(stages):
        dst = e.y[0] if k == n - 1 else e.s[n + k]
        lines += [_jitter_draw(e, stage, k), _jitter_stage(e, stage, k, src, dst)]
        src = dst
    return lines


def _jitter_backward(e):
    if e.dx[0] is None:
        return []
    stages = _jitter_stages(e.attrs)
    n = len(stages)
    if n == 0:
        return [e.call(add_gradient, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]))]
    lines, grad = [], e.dy[0]
    for k in range(n - 1, -1, -1):
        src = e.x[0] if k == 0 else e.s[n + k - 1]
        if k == 0:
            dst = e.dx[0]
        else:
            dst = e.s[2 * n - 1 + (n - 1 - k) % 2]
            lines.append(e.call(zero_images, e.per_sample(dst)))
        lines.append(_jitter_stage(e, stages[k], k, src, dst, backward=True, grad=grad))
        grad = dst
    return lines


def _jitter_infer(attrs, inputs, ctx):
    out = _image_infer("RandomColorJitter")(attrs, inputs, ctx)
    if (attrs["saturation_factor"] is not None or attrs["hue_factor"] is not None) and inputs[0].shape[3] != 3:
        raise ShapeError("RandomColorJitter's saturation and hue need RGB images with 3 channels on the last axis "
                         f"(Keras's sub-layers read channels_last whatever data_format); got {inputs[0].shape[3]}")
    return out


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

EQUALIZATION = LayerDef(
    name="Equalization",
    attrs=(
        _value_range_attr("pixels are mapped to [0, 255], equalized and mapped back (in training)."),
        Attr("bins", "int", 256, "The number of histogram bins over [0, 255].", minimum=1),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_infer("Equalization"),
    emit_train=_equalization_emit_train,
    emit_backward=_equalization_backward,
    reference=_identity_reference,
    training_only=True,
    couples_batch=True,
    positional=("value_range", "bins"),
    doc="In training equalizes the histogram of each channel over the whole batch, as Keras (a channel "
    "whose values fill at most one bin is kept); the identity at inference (Keras's training=False).",
)

def _factor_layer(name, factor_doc, bounds, range_doc, emit_train, emit_backward, doc, infer=None) -> LayerDef:
    """A layer of Keras's signature ``(factor, value_range, data_format, seed)`` drawing one number
    per image in training; ``bounds`` are the factor's (minimum, maximum)."""
    attrs = (Attr("factor", "factor", doc=factor_doc, minimum=bounds[0], maximum=bounds[1]),
             _value_range_attr(range_doc), DATA_FORMAT_ATTR, SEED_ATTR)  # fmt: skip
    return _random_layer(name, attrs, emit_train, emit_backward, 1, ("factor", "value_range"), doc,
                         infer=infer or _infer(name, channels=(3,)))  # fmt: skip


RANDOM_POSTERIZATION = _factor_layer(
    "RandomPosterization",
    "The bits kept per pixel, drawn per image as a whole number in [low, high) (high excluded, as torch.randint; "
    "low when they are equal): a number `f` gives [1, f], a pair its sorted values.", (1.0, 8.0),
    "pixels are mapped to [0, 255], posterized and mapped back (in training).",
    _posterization_emit_train, _no_gradient,
    "In training reduces each image's pixels (cast to 8-bit integers) to a random number of high bits; "
    "the identity at inference. No gradient flows through it (Keras's integer cast).",
    infer=_infer("RandomPosterization", integer_factor=True),
)  # fmt: skip

RANDOM_COLOR_DEGENERATION = _factor_layer(
    "RandomColorDegeneration",
    "The blend toward grayscale, drawn per image in [low, high]: a number `f` gives [-f, f] (Keras's reading; "
    "negative values move away from gray), a pair its sorted values.", (-1.0, 1.0),
    "outputs are clipped to it (in training).",
    _degeneration_emit_train, _degeneration_backward,
    "In training blends each RGB image with its grayscale by a random factor, `x + f * (gray - x)`, clipped "
    "to `value_range`; the identity at inference.",
)  # fmt: skip

RANDOM_SATURATION = _factor_layer(
    "RandomSaturation",
    "Each image's saturation is multiplied by `u / (1 - u + 1e-7)`, `u` drawn in [low, high]: a number `f` gives "
    "[-f, f] (Keras's reading; u <= 0 makes the image gray), a pair its sorted values.", (-1.0, 1.0),
    "the scaled saturation is clipped to it (Keras's rule; saturation itself lies in [0, 1]).",
    _hsv_emit_train(draw_saturations, -1.0, False), _hsv_backward(False),
    "In training scales the saturation of each RGB image (Keras's float32 HSV conversions) by a random "
    "factor; the identity at inference.",
)  # fmt: skip

RANDOM_HUE = _factor_layer(
    "RandomHue",
    "The hue shift, `U(low, high) / 2` of a full turn with a random sign: a number `f` gives [0, f], a pair its "
    "sorted values.", (0.0, 1.0),
    "pixels are mapped from it (as written) to [0, 1], shifted, clipped and mapped back.",
    _hsv_emit_train(draw_hues, 0.0, True), _hsv_backward(True),
    "In training rotates the hue of each RGB image (Keras's float32 HSV conversions) by a random amount; "
    "the identity at inference.",
)  # fmt: skip

RANDOM_SHARPNESS = _factor_layer(
    "RandomSharpness",
    "The sharpness, drawn per image in [low, high]: 0 blurs (Keras's 3x3 smoothing), 0.5 keeps the image, "
    "1 sharpens; a number `f` gives [0, f], a pair its sorted values.", (0.0, 1.0),
    "outputs are clipped to it (in training).",
    _sharpness_emit_train, _sharpness_backward,
    "In training blends each image with its 3x3 smoothing, `x + (1 - 2 f) (smoothed - x)` for a random `f`, "
    "clipped to `value_range`; the identity at inference.",
    infer=_infer("RandomSharpness"),
)  # fmt: skip


_JITTER_FACTOR = "Keras's {}'s factor (null: no {} stage): {}"

RANDOM_COLOR_JITTER = LayerDef(
    name="RandomColorJitter",
    attrs=(
        _value_range_attr("given to each stage as Keras does (brightness and saturation sort it)."),
        Attr("brightness_factor", "factor", None, _JITTER_FACTOR.format(
            "RandomBrightness", "brightness", "shifts drawn in [-f, f] times value_range's width"),
             minimum=-1.0, maximum=1.0, nullable=True),
        Attr("contrast_factor", "factor", None, _JITTER_FACTOR.format(
            "RandomContrast", "contrast", "factors drawn in [1 - f, 1 + f]"), minimum=0.0, maximum=1.0, nullable=True),
        Attr("saturation_factor", "factor", None, _JITTER_FACTOR.format(
            "RandomSaturation", "saturation", "u drawn in [-f, f]"), minimum=-1.0, maximum=1.0, nullable=True),
        Attr("hue_factor", "factor", None, _JITTER_FACTOR.format(
            "RandomHue", "hue", "shifts of U(0, f) / 2 with a random sign"), minimum=0.0, maximum=1.0, nullable=True),
        SEED_ATTR,
        replace(DATA_FORMAT_ATTR, doc="Accepted as Keras does; changes nothing: Keras's stages read channels_last."),
        *COMMON_ATTRS,
    ),
    infer=_jitter_infer,
    emit_train=_jitter_emit_train,
    emit_backward=_jitter_backward,
    reference=_identity_reference,
    saved=_jitter_saved,
    training_only=True,
    positional=("value_range", "brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"),
    doc="In training applies, in Keras's order, RandomBrightness, RandomContrast, RandomSaturation and RandomHue "
    "(those whose factor is given) to each image with draws of their own; the identity at inference.",
)  # fmt: skip


LAYERS = (AUTO_CONTRAST, SOLARIZATION, RANDOM_GRAYSCALE, RANDOM_INVERT, EQUALIZATION, RANDOM_POSTERIZATION,
          RANDOM_COLOR_DEGENERATION, RANDOM_SATURATION, RANDOM_HUE, RANDOM_SHARPNESS, RANDOM_COLOR_JITTER)  # fmt: skip
