"""Cropping, mixing, elastic and tile-equalizing augmentation layers: RandomCrop, MixUp, CutMix,
RandomElasticTransform, ContrastLimitedAdaptiveHistogramEqualization (CLAHE).

Keras 3's ``keras.layers`` versions (``keras/src/layers/preprocessing/image_preprocessing/``),
computed as Keras computes them on its PyTorch backend (read in Keras 3.15.1's source and run):

- ``RandomCrop(height, width)`` outputs (height, width) images. In training (Keras's
  ``get_random_transformation`` and ``transform_images``): when the input is larger than the
  target along BOTH axes, ONE start is drawn per call (Keras: per batch, the same for every
  image), ``int(U(0, H - height + 1))`` then ``int(U(0, W - width + 1))``, and the
  (height, width) window at that start is the output. Otherwise the start is Keras's
  deterministic one, ``h0 = int((H - ch) / 2)``, ``w0 = int((W - cw) / 2)`` with
  ``ch = max(min(H, int(W * height / width)), 1)``, ``cw = max(min(W, int(H * width /
  height)), 1)``, and Keras slices ``[h0 : h0 + height, w0 : w0 + width]`` (the TARGET's size
  from that start, cut at the image's edge), then resizes the slice to (height, width)
  (bilinear, half-pixel centres, no antialiasing: ``keras.ops.image.resize``) when its size is
  not the target's. At inference nnspec does what Keras documents ("the input will be resized
  and cropped so as to return the largest possible window in the image that matches the target
  aspect ratio"), which is ``CenterCrop``'s computation (the centred crop when the image is at
  least the target's size, else the largest centred crop of the target's aspect ratio resized
  bilinearly): nnspec runs preprocessing.py's CenterCrop kernel. For an input of the target's
  size both are the identity, as Keras's prediction.
- ``MixUp(alpha)`` is the identity at inference. In training it draws a permutation ``p`` of
  the batch and per image ``w ~ Beta(alpha, alpha)`` (float32) and outputs
  ``w * x[i] + (1 - w) * x[p[i]]`` (float32, Keras's order). Only images are mixed: a model's
  MixUp gets the images alone (Keras mixes labels only when called on a dict holding them).
- ``CutMix(factor)`` is the identity at inference. In training it draws once per call
  ``a = U(factor) + 1e-6`` (a number ``f`` reads as [0, f], a pair its sorted values), per
  image ``w ~ Beta(a, a)``, ``r = sqrt(1 - w)``, a box of ``r * W`` by ``r * H`` pixels
  starting at ``U(0, 1) * (W - r * W)`` (and the same along the rows; float32), and a
  permutation ``p`` of the batch; pixels with ``x0 <= column < x1`` and ``y0 <= row < y1``
  come from image ``p[i]``, the others from image ``i``. Labels are not mixed (as MixUp).
- ``RandomElasticTransform`` is the identity at inference, and in training too when the high end
  of ``factor`` or ``scale`` is 0 (Keras draws nothing then and returns the images unclipped).
  Otherwise it draws per image whether to transform (``uniform() < U(factor)``), once per call
  (Keras: per batch) a distortion ``d = U(scale)`` (a number ``f`` reads as [0, f], a pair its
  sorted values), and per image two fields of standard normal noise (Keras's ``elastic_transform``
  draws them from torch's global generator). With ``alpha = max(H, W) * (0.1 d)`` and ``sigma =
  min(H, W) * (0.05 d)`` (float32), each field is multiplied by sigma and blurred by Keras's
  Gaussian of ``int(6 sigma) | 1`` taps (augmentation_geometry.py's kernel, zero padding);
  output pixel (i, j) reads the input point ``(i + alpha blur_y, j + alpha blur_x)`` (float32) as
  Keras's ``map_coordinates`` does: bilinear (float32 weights ``1 - t``, ``t``) or nearest (round
  half to even), outside points extended by ``fill_mode`` (reflect: d c b a | a b c d | d c b a,
  mirror: c d c b | a b c d | c b a b, wrap, nearest, or ``fill_value`` for constant; Keras's
  docstring says its torch backend reads reflect as mirror, its code reads reflect as here). EVERY
  image, transformed or not, is then clipped to ``value_range`` as written (``min(max(v, low),
  high)``). The step saves each image's choice, ``d`` and its input points.
- ``ContrastLimitedAdaptiveHistogramEqualization(value_range, clip_limit, tile_grid_size)`` is
  NOT random and acts at inference and in training alike (Keras's ``transform_images`` ignores
  ``training``). Per image and channel (float32, bit for bit as Keras): pixels are mapped from
  ``value_range`` as written to [0, 255] (skipped when it is [0, 255]); the image is cut into
  ``tile_grid_size`` tiles of ``ceil(H / rows)`` by ``ceil(W / columns)`` pixels, padded at the
  bottom and right by repeating the last row and column (Keras asks for ``symmetric`` padding,
  which its torch backend maps to ``replicate``); each tile's histogram counts
  ``clip(int32(t), 0, 255)`` (torch's int32 cast: NaN and values beyond int32 count in bin 0);
  when ``clip_limit > 0`` the counts are clipped at ``int(clip_limit * tile pixels / 256)``
  (Keras casts the limit to the int64 counts' dtype: truncated, so small tiles clip at 0 and
  equalize nothing but the integer part) and the excess is spread evenly over the 256 bins; the
  table is ``clip((cdf - cdf[0]) * 255 / (tile pixels - cdf[0]), 0, 255)`` (a zero denominator
  reads 1; the cumulative sum in float64 rounded, as torch's cumsum). Output pixel (i, j) blends
  the tables of the 4 tiles around it at ``int32(clip(t, 0, 255))`` bilinearly, with the
  position ``(i - tile / 2) / tile + 1`` in Keras's edge-padded grid of tables, and is mapped
  back. Its output has no autograd graph in Keras (integer bins, lookups): no gradient.

Random draws come from NumPy's generator inside Numba, seeded as the other augmentation layers'
(``nnspec.runtime.kernels.seed_kernels``, from fit's seed); a ``seed`` attribute is accepted but
selects no stream of its own: Keras's torch streams cannot be reproduced (Beta draws come from
two gamma draws in log space: NumPy's own beta underflows toward 0 for CutMix's tiny
parameters, where torch's is symmetric). A training step's
draws are saved for its backward pass, which gives the gradient of what the forward computed
(autograd's): the crop's or resize's adjoint; ``w dy`` to image ``i`` and ``(1 - w) dy`` to
image ``p[i]``; ``dy`` to image ``i`` outside the box and to image ``p[i]`` inside; the elastic
read's adjoint (none to ``fill_value``) where the clip passed the value (inclusive bounds, as
``torch.clip``) and 0 elsewhere. MixUp and CutMix couple the images of a batch and RandomCrop
draws one start per batch, so a training batch is never split over threads.

Differences from Keras: integer images are refused (as by the other augmentation layers).
RandomCrop's height and width must be at least 1 (Keras outputs empty images in training for 0).
RandomCrop at inference: Keras 3.15's ``transform_images`` returns the image UNCHANGED when
``training`` is false although its ``compute_output_shape`` declares (height, width) (a Keras
bug: a Keras model whose RandomCrop changes the size predicts the uncropped image, and fails
when a Flatten or Dense follows); nnspec returns the documented centred crop, so predictions
agree with Keras only for inputs of the target's size. MixUp's alpha must be positive (Keras
accepts any alpha and fails in training on alpha <= 0). CutMix's factor pair must lie in [0, 1]
element-wise (Keras's looser check accepts e.g. [-0.5, 0.5]); so must RandomElasticTransform's
factor and scale pairs. RandomElasticTransform needs images of at least 2 x 2 pixels (Keras's
``squeeze`` of the displacements breaks a single row or column; its mirror mode divides by zero
there). Its blur sums in float64 and rounds once, where torch's convolution sums in float32, so
the input points, and the bilinear outputs, differ from Keras's within float32 rounding (about
1e-6 of the pixel scale); a nearest read can then pick another pixel only for a point within
that rounding of a half-way position. CLAHE's tile_grid_size must be a list of two numbers of
at least 1 (Keras fails when called on others: an int, a zero); NaN pixels are not defined
(Keras's lookup fails on them; nnspec reads bin 0).
"""

from __future__ import annotations

from .augmentation import (
    CONSTANT,
    INTERPOLATIONS,
    SEED_ATTR,
    _cf,
    _hw,
    _image_infer,
    _taps,
    _value_range_attr,
    factor_range,
)
from .augmentation_color import _from_255, _range32, _to_255, _to_int32, add_gradient, copy_images
from .augmentation_geometry import _blurred, _crop_bounds, _gauss_kernel, gaussian_taps
from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError, TensorType
from .conv import join_channels, split_channels
from .core import DATA_FORMAT_ATTR, _identity_reference
from .pooling import RESIZE_MODES, _static, image_views, resize2d, resize2d_backward
from .preprocessing import _resize_emit, _resize_reference

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_crop_bounds", "_in_box", "_taps", "_gauss_kernel", "_blurred", "_elastic_read", "elastic_coords",
                  "_to_255", "_from_255", "_range32", "_to_int32", "_clahe_tables", "_clahe_pixel", "_beta")  # fmt: skip

CROP_SIZE = 2  # row start, column start (the same for every image of a call)
MIXUP_SIZE = 2  # weight, partner image
CUTMIX_SIZE = 5  # x0, x1, y0, y1, partner image
# RandomElasticTransform's fill modes (Keras's map_coordinates): augmentation.py's four, then mirror
ELASTIC_FILL_MODES = ("constant", "nearest", "reflect", "wrap", "mirror")  # index: augmentation.py's codes


# ----------------------------------------------------------------------------- kernels


def draw_crop_starts(v, dh, dw):
    """One start for the whole batch, as Keras: ``int(U(0, dh + 1))`` rows, then columns."""
    hs = min(int(np.random.uniform(0.0, dh + 1.0)), dh)
    ws = min(int(np.random.uniform(0.0, dw + 1.0)), dw)
    for s in range(v.shape[0]):
        v[s, 0] = hs
        v[s, 1] = ws


def fill_crop_starts(v, hs, ws):
    """Keras's deterministic start (no draw), saved as the drawn ones are."""
    for s in range(v.shape[0]):
        v[s, 0] = hs
        v[s, 1] = ws


def crop_forward(x4, y4, v):
    """``y4`` = the window of ``x4`` (rows, H, W, C) at the start ``v[0]``, of ``y4``'s size."""
    if v.shape[0] == 0:
        return
    oy, ox = int(v[0, 0]), int(v[0, 1])
    for r in range(y4.shape[0]):
        for i in range(y4.shape[1]):
            for j in range(y4.shape[2]):
                for c in range(y4.shape[3]):
                    y4[r, i, j, c] = x4[r, i + oy, j + ox, c]


def crop_backward(dy4, dx4, v):
    """``dx4 +=`` the gradient of :func:`crop_forward`: ``dy4`` added into the window."""
    if v.shape[0] == 0:
        return
    oy, ox = int(v[0, 0]), int(v[0, 1])
    for r in range(dy4.shape[0]):
        for i in range(dy4.shape[1]):
            for j in range(dy4.shape[2]):
                for c in range(dy4.shape[3]):
                    dx4[r, i + oy, j + ox, c] += dy4[r, i, j, c]


def _beta(a, b):
    """A Beta(a, b) draw from two gamma draws in log space (Gamma(a) is Gamma(a + 1) U^(1/a)):
    NumPy's beta underflows for tiny a (Beta(1e-6, 1e-6) draws then have mean 0.0008, not 1/2);
    CutMix's a = U(factor) + 1e-6 can be that small."""
    lx = np.log(np.random.gamma(a + 1.0)) + np.log(1.0 - np.random.random()) / a
    ly = np.log(np.random.gamma(b + 1.0)) + np.log(1.0 - np.random.random()) / b
    return 1.0 / (1.0 + np.exp(ly - lx))


def draw_mixup(v, alpha):
    """Per image a weight ``Beta(alpha, alpha)`` (float32) and its partner ``p[i]``, ``p`` a
    random permutation of the batch."""
    n = v.shape[0]
    perm = np.random.permutation(n)
    for s in range(n):
        v[s, 0] = np.float32(_beta(alpha, alpha))
        v[s, 1] = perm[s]


def mixup_forward(x2, y2, v):
    """``y[i] = w x[i] + (1 - w) x[p[i]]`` over (rows, values per image), float32 as Keras."""
    for s in range(x2.shape[0]):
        w = np.float32(v[s, 0])
        u = np.float32(1.0) - w
        p = int(v[s, 1])
        for i in range(x2.shape[1]):
            y2[s, i] = w * x2[s, i] + u * x2[p, i]


def mixup_backward(dy2, dx2, v):
    """``dx[i] += w dy[i]``, ``dx[p[i]] += (1 - w) dy[i]``."""
    for s in range(dy2.shape[0]):
        w = np.float32(v[s, 0])
        u = np.float32(1.0) - w
        p = int(v[s, 1])
        for i in range(dy2.shape[1]):
            dx2[s, i] += w * dy2[s, i]
            dx2[p, i] += u * dy2[s, i]


def draw_cutmix(v, f_low, f_high, h, w):
    """Keras's CutMix draws (module docstring): per image the box ``x0, x1, y0, y1`` and the
    partner image ``p[i]``."""
    n = v.shape[0]
    alpha = np.float32(np.random.uniform(f_low, f_high)) + np.float32(1e-6)
    perm = np.random.permutation(n)
    for s in range(n):
        m = np.float32(_beta(np.float64(alpha), np.float64(alpha)))
        ratio = np.sqrt(np.float32(1.0) - m)
        v[s, 0], v[s, 1] = _crop_bounds(ratio, w)
        v[s, 2], v[s, 3] = _crop_bounds(ratio, h)
        v[s, 4] = perm[s]


def _in_box(v, s, i, j):
    """Whether pixel (row ``i``, column ``j``) of image ``s`` lies in its box (float32 grid)."""
    fi, fj = np.float32(i), np.float32(j)
    return v[s, 0] <= fj < v[s, 1] and v[s, 2] <= fi < v[s, 3]


def cutmix_forward(x, y, v, cf):
    """``y[s]`` = ``x[p[s]]`` inside image ``s``'s box, ``x[s]`` outside."""
    for s in range(x.shape[0]):
        p = int(v[s, 4])
        for a in range(x.shape[1]):
            for b in range(x.shape[2]):
                for q in range(x.shape[3]):
                    inside = _in_box(v, s, b, q) if cf else _in_box(v, s, a, b)
                    y[s, a, b, q] = x[p, a, b, q] if inside else x[s, a, b, q]


def cutmix_backward(dy, dx, v, cf):
    """``dx +=`` the gradient of :func:`cutmix_forward`: ``dy[s]`` to image ``p[s]`` inside the
    box, to image ``s`` outside."""
    for s in range(dy.shape[0]):
        p = int(v[s, 4])
        for a in range(dy.shape[1]):
            for b in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    inside = _in_box(v, s, b, q) if cf else _in_box(v, s, a, b)
                    if inside:
                        dx[p, a, b, q] += dy[s, a, b, q]
                    else:
                        dx[s, a, b, q] += dy[s, a, b, q]


def elastic_coords(v, noise, d, h, w):
    """Row ``s`` of ``v`` from ``noise[s]`` (2, h, w: standard normals for x, then y) and the
    distortion ``d``: ``v[s, 1] = d`` and the input points (y at ``2 + i w + j``, x at
    ``2 + h w + i w + j``) ``i + alpha blur(sigma n_y)``, ``j + alpha blur(sigma n_x)``, with
    Keras's ``alpha = max(h, w) * (0.1 d)``, ``sigma = min(h, w) * (0.05 d)`` and blur (a Gaussian
    of ``int(6 sigma) | 1`` taps, zero padding), float32."""
    d32 = np.float32(d)
    alpha = np.float32(max(h, w)) * (np.float32(0.1) * d32)
    sigma = np.float32(min(h, w)) * (np.float32(0.05) * d32)
    size = int(np.float32(6.0) * sigma) | 1
    k = _gauss_kernel(size, sigma, sigma)
    field = np.empty((1, h, w, 1), np.float32)
    for s in range(v.shape[0]):
        v[s, 1] = d32
        for axis in range(2):  # 0: x (columns), 1: y (rows)
            for i in range(h):
                for j in range(w):
                    field[0, i, j, 0] = np.float32(noise[s, axis, i, j]) * sigma
            at = 2 + (h * w if axis == 0 else 0)
            for i in range(h):
                for j in range(w):
                    base = np.float32(j) if axis == 0 else np.float32(i)
                    v[s, at + i * w + j] = base + alpha * _blurred(field, 0, i, j, 0, False, k, h, w)


def draw_elastic(v, f_low, f_high, s_low, s_high, h, w):
    """Per image whether to transform (``uniform() < U(f_low, f_high)``) and its displacement
    field from standard normal noise; one distortion ``U(s_low, s_high)`` per call (Keras: per
    batch)."""
    n = v.shape[0]
    for s in range(n):
        p = np.random.uniform(f_low, f_high)
        v[s, 0] = 1.0 if np.random.random() < p else 0.0
    d = np.float32(np.random.uniform(s_low, s_high))
    noise = np.empty((n, 2, h, w), np.float32)
    for s in range(n):
        for axis in range(2):
            for i in range(h):
                for j in range(w):
                    noise[s, axis, i, j] = np.random.standard_normal()
    elastic_coords(v, noise, d, h, w)


def _elastic_read(x, s, i, j, c, cf, v, h, w, fill, interp, fill_value, rows, cols, wts, inside):
    """Output pixel (``i``, ``j``, channel ``c``) of image ``s`` before the clip; returns (value,
    number of taps) with the taps left in ``rows``, ``cols``, ``wts``, ``inside``."""
    ys = np.float64(np.float32(v[s, 2 + i * w + j]))
    xs = np.float64(np.float32(v[s, 2 + h * w + i * w + j]))
    k = _taps(ys, xs, h, w, fill, interp, rows, cols, wts, inside)
    acc = 0.0
    for t in range(k):
        if fill == CONSTANT and not inside[t]:
            acc += wts[t] * fill_value
        elif cf:
            acc += wts[t] * x[s, c, rows[t], cols[t]]
        else:
            acc += wts[t] * x[s, rows[t], cols[t], c]
    return np.float32(acc), k


def elastic_forward(x, y, v, cf, fill, interp, fill_value, low, high):
    """``y`` = each image read at its displaced points where ``v[s, 0]`` says so, else copied;
    every value then clipped to [low, high] (``min(max(v, low), high)``)."""
    lo, hi = np.float32(low), np.float32(high)
    ch, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cf else (x.shape[3], x.shape[1], x.shape[2])
    rows = np.empty(4, np.int64)
    cols = np.empty(4, np.int64)
    wts = np.empty(4, np.float64)
    inside = np.empty(4, np.bool_)
    for s in range(x.shape[0]):
        for i in range(h):
            for j in range(w):
                for c in range(ch):
                    if v[s, 0] != 0.0:
                        u, _ = _elastic_read(x, s, i, j, c, cf, v, h, w, fill, interp, fill_value, rows, cols, wts,
                                             inside)  # fmt: skip
                    else:
                        u = x[s, c, i, j] if cf else x[s, i, j, c]
                    u = min(max(u, lo), hi)
                    if cf:
                        y[s, c, i, j] = u
                    else:
                        y[s, i, j, c] = u


def elastic_backward(x, dy, dx, v, cf, fill, interp, fill_value, low, high):
    """``dx +=`` the gradient of :func:`elastic_forward`: where the value before the clip lies in
    [low, high] (inclusive, as torch.clip), ``dy`` through the read's adjoint (none to the fill) or
    straight for images not transformed."""
    lo, hi = np.float32(low), np.float32(high)
    ch, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cf else (x.shape[3], x.shape[1], x.shape[2])
    rows = np.empty(4, np.int64)
    cols = np.empty(4, np.int64)
    wts = np.empty(4, np.float64)
    inside = np.empty(4, np.bool_)
    for s in range(x.shape[0]):
        for i in range(h):
            for j in range(w):
                for c in range(ch):
                    g = dy[s, c, i, j] if cf else dy[s, i, j, c]
                    if v[s, 0] == 0.0:
                        u = x[s, c, i, j] if cf else x[s, i, j, c]
                        if lo <= u <= hi:
                            if cf:
                                dx[s, c, i, j] += g
                            else:
                                dx[s, i, j, c] += g
                        continue
                    u, k = _elastic_read(x, s, i, j, c, cf, v, h, w, fill, interp, fill_value, rows, cols, wts,
                                         inside)  # fmt: skip
                    if not lo <= u <= hi:
                        continue
                    for t in range(k):
                        if fill == CONSTANT and not inside[t]:
                            continue
                        if cf:
                            dx[s, c, rows[t], cols[t]] += wts[t] * g
                        else:
                            dx[s, rows[t], cols[t], c] += wts[t] * g


def _clahe_tables(x, s, c, cf, h, w, gh, gw, th, tw, lo, width, ident, clip_limit, tab):
    """``tab[gy, gx]``: the equalization table (256 float32 values) of each tile of channel ``c``
    of image ``s``, Keras's: the tile's histogram of ``clip(int32(t), 0, 255)`` (``t`` the value
    mapped to [0, 255]; rows and columns past the image repeat its last ones, Keras's torch
    padding), clipped at ``int(clip_limit * th * tw / 256)`` (Keras casts the limit to the int64
    counts' dtype: truncated) with the excess spread evenly over the 256 bins,
    its cumulative sum ``cdf`` (float64 sums rounded to float32, as torch's cumsum), and
    ``clip((cdf - cdf[0]) * 255 / (th * tw - cdf[0]), 0, 255)`` (a zero denominator reads 1)."""
    hist = np.empty(256, np.float32)
    limit = np.float32(int(clip_limit * (th * tw) / 256.0))  # Keras casts it to the int64 counts' dtype
    for gy in range(gh):
        for gx in range(gw):
            hist[:] = 0.0
            for a in range(th):
                i = min(gy * th + a, h - 1)
                for b in range(tw):
                    j = min(gx * tw + b, w - 1)
                    t = _to_255(x[s, c, i, j] if cf else x[s, i, j, c], lo, width, ident)
                    hist[min(max(_to_int32(t), 0), 255)] += np.float32(1.0)
            if clip_limit > 0:
                excess = 0.0
                for k in range(256):
                    kept = min(hist[k], limit)
                    excess += hist[k] - kept
                    hist[k] = kept
                redist = np.float32(excess) / np.float32(256.0)
                for k in range(256):
                    hist[k] = hist[k] + redist
            acc = 0.0
            lowest = np.float32(np.inf)
            for k in range(256):
                acc += hist[k]
                tab[gy, gx, k] = np.float32(acc)
                lowest = min(lowest, tab[gy, gx, k])
            den = np.float32(th * tw) - lowest
            if den == 0:
                den = np.float32(1.0)
            for k in range(256):
                v = ((tab[gy, gx, k] - lowest) * np.float32(255.0)) / den
                tab[gy, gx, k] = min(max(v, np.float32(0.0)), np.float32(255.0))


def _clahe_pixel(tab, t, i, j, gh, gw, th, tw):
    """Keras's bilinear blend of the tables of the 4 tiles around pixel (``i``, ``j``) at the value
    ``t`` (mapped to [0, 255]), in float32 in Keras's order."""
    one = np.float32(1.0)
    yg = (np.float32(i) - np.float32(th / 2.0)) / np.float32(th) + one
    xg = (np.float32(j) - np.float32(tw / 2.0)) / np.float32(tw) + one
    y0, x0 = np.floor(yg), np.floor(xg)
    wy, wx = yg - y0, xg - x0
    # padded tile k (Keras pads the tables by one tile on each side) is tile clip(k - 1, 0, n - 1)
    r0 = min(max(int(y0) - 1, 0), gh - 1)
    r1 = min(max(int(y0), 0), gh - 1)
    q0 = min(max(int(x0) - 1, 0), gw - 1)
    q1 = min(max(int(x0), 0), gw - 1)
    u = min(max(t, np.float32(0.0)), np.float32(255.0))
    k = _to_int32(u)
    k = max(k, 0)  # NaN (Keras's lookup fails on it)
    top = tab[r0, q0, k] * (one - wx) + tab[r0, q1, k] * wx
    bottom = tab[r1, q0, k] * (one - wx) + tab[r1, q1, k] * wx
    return top * (one - wy) + bottom * wy


def clahe_forward(x, y, cf, gh, gw, vlo, vhi, clip_limit):
    """ContrastLimitedAdaptiveHistogramEqualization (module docstring) of ``x`` into ``y``."""
    lo, width, ident = _range32(vlo, vhi)
    ch, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cf else (x.shape[3], x.shape[1], x.shape[2])
    th = (h + gh - 1) // gh
    tw = (w + gw - 1) // gw
    tab = np.empty((gh, gw, 256), np.float32)
    for s in range(x.shape[0]):
        for c in range(ch):
            _clahe_tables(x, s, c, cf, h, w, gh, gw, th, tw, lo, width, ident, clip_limit, tab)
            for i in range(h):
                for j in range(w):
                    t = _to_255(x[s, c, i, j] if cf else x[s, i, j, c], lo, width, ident)
                    u = _from_255(_clahe_pixel(tab, t, i, j, gh, gw, th, tw), lo, width, ident)
                    if cf:
                        y[s, c, i, j] = u
                    else:
                        y[s, i, j, c] = u


# ----------------------------------------------------------------------------- NumPy references
#
# Keras's formulas in float64 with whole-array NumPy operations, given the draws.


def _spatial(x, data_format):
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def keras_crop_window(height, width, h, w, random_start=None):
    """(row start, column start, slice rows, slice columns) of Keras's training crop of an h x w
    image: ``random_start`` (drawn) when the image is larger along both axes, else Keras's
    deterministic start; the slice is the target's size from the start, cut at the edge."""
    if h > height and w > width:
        hs, ws = random_start
    else:
        ch = max(min(h, int(float(w * height) / width)), 1)
        cw = max(min(w, int(float(h * width) / height)), 1)
        hs, ws = int(float(h - ch) / 2), int(float(w - cw) / 2)
    return int(hs), int(ws), min(h, hs + height) - hs, min(w, ws + width) - ws


def crop_reference(x, height, width, start=None, data_format="channels_last"):
    """RandomCrop in training (``start``: the drawn one, used when the image is larger along
    both axes), in float64: the slice, resized bilinearly (Resizing's reference) when its size
    is not the target's."""
    x = _spatial(np.asarray(x, np.float64), data_format)
    hs, ws, sh, sw = keras_crop_window(height, width, x.shape[1], x.shape[2], start)
    out = x[:, hs : hs + sh, ws : ws + sw]
    if (sh, sw) != (height, width):
        attrs = {"height": height, "width": width, "interpolation": "bilinear", "crop_to_aspect_ratio": False,
                 "pad_to_aspect_ratio": False, "antialias": False, "data_format": "channels_last"}  # fmt: skip
        out = _resize_reference(attrs, [out], [])[0]
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


def mixup_reference(x, weights, partners):
    """MixUp with the given per-image weights and partners, in float64."""
    x = np.asarray(x, np.float64)
    w = np.asarray(weights, np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    return w * x + (1 - w) * x[np.asarray(partners, np.int64)]


def cutmix_reference(x, boxes, partners, data_format="channels_last"):
    """CutMix with the given boxes (rows ``x0, x1, y0, y1``) and partners, in float64."""
    x = np.asarray(x, np.float64)
    boxes = np.asarray(boxes, np.float64)
    h, w = _spatial(x, data_format).shape[1:3]
    rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    b = boxes[:, :, None, None]
    mask = (cc >= b[:, 0]) & (cc < b[:, 1]) & (rr >= b[:, 2]) & (rr < b[:, 3])
    mask = mask[:, None] if data_format == "channels_first" else mask[..., None]
    return np.where(mask, x[np.asarray(partners, np.int64)], x)


def elastic_field_reference(noise, d, h, w):
    """(ys, xs), each (rows, h, w): Keras's displaced input points for standard normal ``noise``
    (rows, 2, h, w: x, then y) and distortion ``d``, in float64 (alpha, sigma and the taps'
    count from float32 as Keras; the blur a zero-padded 2-D correlation)."""
    d32 = np.float32(d)
    alpha = float(np.float32(max(h, w)) * (np.float32(0.1) * d32))
    sigma = float(np.float32(min(h, w)) * (np.float32(0.05) * d32))
    size = int(np.float32(6.0) * np.float32(sigma)) | 1
    k = np.outer(gaussian_taps(size, sigma), gaussian_taps(size, sigma))
    p = size // 2
    out = []
    for axis in range(2):
        big = np.pad(np.asarray(noise, np.float64)[:, axis] * sigma, ((0, 0), (p, p), (p, p)))
        blurred = sum(k[a, b] * big[:, a : a + h, b : b + w] for a in range(size) for b in range(size))
        out.append(alpha * blurred)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    return ii + out[1], jj + out[0]


def _fixed(i, size, mode):
    """Index ``i`` (an integer array) extended past an axis of ``size`` by ``mode``, from the modes'
    definitions (Keras's map_coordinates): constant and nearest clip (constant's outside nodes
    take the fill apart), wrap repeats, reflect repeats the axis and its mirror image
    (d c b a | a b c d | d c b a), mirror without repeating the edge (c d c b | a b c d | c b a b)."""
    if mode in ("constant", "nearest"):
        return np.clip(i, 0, size - 1)
    if mode == "wrap":
        return np.mod(i, size)
    if mode == "reflect":
        m = np.mod(i, 2 * size)
        return np.where(m < size, m, 2 * size - 1 - m)
    m = np.mod(i, 2 * size - 2)
    return np.where(m < size, m, 2 * size - 2 - m)


def elastic_reference(x, applied, ys, xs, interpolation="bilinear", fill_mode="reflect", fill_value=0.0,
                      value_range=(0, 255), data_format="channels_last"):  # fmt: skip
    """RandomElasticTransform in training with the given per-image choices and input points
    (rows, h, w), in float64: the chosen images read at the points, then every image clipped."""
    x = _spatial(np.asarray(x, np.float64), data_format)
    n, h, w, _ = x.shape
    out = x.copy()
    for s in range(n):
        if not applied[s]:
            continue
        y64, x64 = np.asarray(ys[s], np.float64), np.asarray(xs[s], np.float64)
        if interpolation == "nearest":
            nodes = [(np.rint(y64), np.rint(x64), np.ones_like(y64))]
        else:
            fy, fx = np.floor(y64), np.floor(x64)
            nodes = [(fy + dr, fx + dc, (y64 - fy if dr else 1 - (y64 - fy)) * (x64 - fx if dc else 1 - (x64 - fx)))
                     for dr in (0, 1) for dc in (0, 1)]  # fmt: skip
        acc = np.zeros(x.shape[1:])
        for r, c, wt in nodes:
            r, c = r.astype(np.int64), c.astype(np.int64)
            vals = x[s][_fixed(r, h, fill_mode), _fixed(c, w, fill_mode)]
            if fill_mode == "constant":
                ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                vals = np.where(ok[..., None], vals, fill_value)
            acc += wt[..., None] * vals
        out[s] = acc
    out = np.minimum(np.maximum(out, value_range[0]), value_range[1])
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


def clahe_reference(x, value_range=(0, 255), clip_limit=4.0, tile_grid_size=(8, 8), data_format="channels_last"):
    """ContrastLimitedAdaptiveHistogramEqualization, in float64 but for the mapping to [0, 255]
    (float32, as Keras: it decides the histogram bins): per tile histograms (np.bincount),
    clipping, cumulative sums, then per pixel the bilinear blend of the 4 nearest tiles' tables
    (tile centres at ``(k + 1/2) * tile``; the blend holds at the edges)."""
    x = _spatial(np.asarray(x, np.float32), data_format)
    n, h, w, ch = x.shape
    lo, hi = (np.float32(v) for v in value_range)
    ident = value_range[0] == 0 and value_range[1] == 255
    t = x if ident else ((x - lo) / (hi - lo)) * np.float32(255.0)
    gh, gw = tile_grid_size
    th, tw = -(-h // gh), -(-w // gw)
    rows = np.minimum(np.arange(gh * th), h - 1)  # Keras's torch pads by repeating the last row/column
    cols = np.minimum(np.arange(gw * tw), w - 1)
    big = t[:, rows][:, :, cols].astype(np.float64)
    bins = np.clip(np.trunc(np.nan_to_num(big, nan=0.0, posinf=-(2.0**31), neginf=-(2.0**31))), 0, 255).astype(int)
    tables = np.zeros((n, ch, gh, gw, 256))
    for s in range(n):
        for c in range(ch):
            for gy in range(gh):
                for gx in range(gw):
                    hist = np.bincount(bins[s, gy * th : (gy + 1) * th, gx * tw : (gx + 1) * tw, c].ravel(),
                                       minlength=256).astype(np.float64)  # fmt: skip
                    if clip_limit > 0:
                        limit = float(int(clip_limit * th * tw / 256.0))  # truncated, as Keras's int64 cast
                        kept = np.minimum(hist, limit)
                        hist = kept + (hist - kept).sum() / 256.0
                    cdf = np.cumsum(hist)
                    den = th * tw - cdf.min()
                    tables[s, c, gy, gx] = np.clip((cdf - cdf.min()) * 255.0 / (den if den != 0 else 1.0), 0, 255)
    pix = np.clip(np.nan_to_num(t.astype(np.float64)), 0, 255).astype(int)
    out = np.empty((n, h, w, ch))
    yg = (np.arange(h) - th / 2.0) / th  # position in tile units from the first tile's centre
    xg = (np.arange(w) - tw / 2.0) / tw
    y0, x0 = np.floor(yg).astype(int), np.floor(xg).astype(int)
    wy, wx = yg - y0, xg - x0
    r0, r1 = np.clip(y0, 0, gh - 1), np.clip(y0 + 1, 0, gh - 1)
    q0, q1 = np.clip(x0, 0, gw - 1), np.clip(x0 + 1, 0, gw - 1)
    for s in range(n):
        for c in range(ch):
            tab, p = tables[s, c], pix[s, :, :, c]
            ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")

            def at(r, q, ii=ii, jj=jj, tab=tab, p=p):
                return tab[r[ii], q[jj], p]

            top = at(r0, q0) * (1 - wx[jj]) + at(r0, q1) * wx[jj]
            bottom = at(r1, q0) * (1 - wx[jj]) + at(r1, q1) * wx[jj]
            out[s, :, :, c] = top * (1 - wy[ii]) + bottom * wy[ii]
    if not ident:
        out = out / 255.0 * (float(hi) - float(lo)) + float(lo)
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


# ----------------------------------------------------------------------------- layer definitions


def _saved(size: int):
    def saved(attrs, x_shapes, y_shapes):
        return [((size,), "float32")]

    return saved


def _crop_infer(attrs, inputs, ctx):
    _image_infer("RandomCrop")(attrs, inputs, ctx)
    (x,) = inputs
    fmt = attrs["data_format"]
    _, channels = split_channels(x.shape, fmt)
    return [TensorType(join_channels(x.shape[0], (attrs["height"], attrs["width"]), channels, fmt), x.dtype)]


def _crop_plan(e):
    """(random, row start, column start, slice rows, slice columns) of the training crop."""
    h, w = _hw(e)
    th, tw = e.attrs["height"], e.attrs["width"]
    random = h > th and w > tw
    return (random, *keras_crop_window(th, tw, h, w, (0, 0)))


def _crop_emit_train(e):
    _static(e, "RandomCrop")
    x4, y4, (h, w) = image_views(e, _cf(e))
    v = e.s[0]
    random, hs, ws, sh, sw = _crop_plan(e)
    th, tw = e.attrs["height"], e.attrs["width"]
    if random:
        return [e.call(draw_crop_starts, v, h - th, w - tw), e.call(crop_forward, x4, y4, v)]
    lines = [e.call(fill_crop_starts, v, hs, ws)]
    if (sh, sw) == (th, tw):
        return [*lines, e.call(crop_forward, x4, y4, v)]
    return [*lines, e.call(resize2d, x4, y4, RESIZE_MODES["bilinear"], sh, sw, hs, ws, 0.0, False, 0.0, 0.0)]


def _crop_backward(e):
    if e.dx[0] is None:
        return []
    dx4, dy4, _ = image_views(e, _cf(e), e.dx[0], e.dy[0])
    random, hs, ws, sh, sw = _crop_plan(e)
    if random or (sh, sw) == (e.attrs["height"], e.attrs["width"]):
        return [e.call(crop_backward, dy4, dx4, e.s[0])]
    return [e.call(resize2d_backward, dy4, dx4, RESIZE_MODES["bilinear"], sh, sw, hs, ws)]


def _crop_reference(attrs, inputs, params, masks=None):
    """At inference: CenterCrop's computation (what Keras documents)."""
    return _resize_reference(attrs, inputs, params, masks)


def _mixup_infer(attrs, inputs, ctx):
    return _image_infer("MixUp")(attrs, inputs, ctx)


def _mixup_emit_train(e):
    v = e.s[0]
    x2, y2 = e.per_sample(e.x[0]), e.per_sample(e.y[0], True)
    return [e.call(draw_mixup, v, float(e.attrs["alpha"])), e.call(mixup_forward, x2, y2, v)]


def _mixup_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(mixup_backward, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]), e.s[0])]


def _cutmix_infer(attrs, inputs, ctx):
    return _image_infer("CutMix")(attrs, inputs, ctx)


def _cutmix_emit_train(e):
    v = e.s[0]
    return [e.call(draw_cutmix, v, *factor_range(e.attrs["factor"], 0.0), *_hw(e)),
            e.call(cutmix_forward, e.x[0], e.y[0], v, _cf(e))]  # fmt: skip


def _cutmix_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(cutmix_backward, e.dy[0], e.dx[0], e.s[0], _cf(e))]


def _elastic_saved(attrs, x_shapes, y_shapes):
    spatial, _ = split_channels((None, *x_shapes[0]), attrs["data_format"])
    return [((2 + 2 * spatial[0] * spatial[1],), "float32")]


def _elastic_infer(attrs, inputs, ctx):
    out = _image_infer("RandomElasticTransform")(attrs, inputs, ctx)
    spatial, _ = split_channels(inputs[0].shape, attrs["data_format"])
    if min(spatial) < 2:
        raise ShapeError("RandomElasticTransform needs images of at least 2 x 2 pixels (Keras's squeeze of the "
                         f"displacements fails on a single row or column); got {spatial[0]} x {spatial[1]}")
    return out


def _elastic_still(attrs) -> bool:
    """Keras draws nothing and returns the images (unclipped) when factor's or scale's high end is 0."""
    return factor_range(attrs["factor"], 0.0)[1] == 0 or factor_range(attrs["scale"], 0.0)[1] == 0


def _elastic_args(e):
    a = e.attrs
    lo, hi = a["value_range"]
    return (_cf(e), ELASTIC_FILL_MODES.index(a["fill_mode"]), INTERPOLATIONS.index(a["interpolation"]),
            float(a["fill_value"]), float(lo), float(hi))  # fmt: skip


def _elastic_emit_train(e):
    a = e.attrs
    if _elastic_still(a):
        return [e.call(copy_images, e.per_sample(e.x[0]), e.per_sample(e.y[0], True))]
    v = e.s[0]
    return [e.call(draw_elastic, v, *factor_range(a["factor"], 0.0), *factor_range(a["scale"], 0.0), *_hw(e)),
            e.call(elastic_forward, e.x[0], e.y[0], v, *_elastic_args(e))]  # fmt: skip


def _elastic_backward(e):
    if e.dx[0] is None:
        return []
    if _elastic_still(e.attrs):
        return [e.call(add_gradient, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]))]
    return [e.call(elastic_backward, e.x[0], e.dy[0], e.dx[0], e.s[0], *_elastic_args(e))]


def _clahe_infer(attrs, inputs, ctx):
    out = _image_infer("ContrastLimitedAdaptiveHistogramEqualization")(attrs, inputs, ctx)
    g = attrs["tile_grid_size"]
    if len(g) != 2 or min(g) < 1:
        raise ShapeError("ContrastLimitedAdaptiveHistogramEqualization's tile_grid_size is [rows, columns], each at "
                         f"least 1 (Keras fails on others when called); got {g}")
    return out


def _clahe_args(e):
    gh, gw = e.attrs["tile_grid_size"]
    lo, hi = e.attrs["value_range"]
    return _cf(e), int(gh), int(gw), float(lo), float(hi), float(e.attrs["clip_limit"])


def _clahe_emit(e):
    return [e.call(clahe_forward, e.x[0], e.y[0], *_clahe_args(e))]


def _no_gradient(e):
    """Keras's output comes from histograms of integer bins and table lookups: it has no autograd
    graph, so the input gets no gradient (0)."""
    return []


def _clahe_reference(attrs, inputs, params, masks=None):
    a = attrs
    return [clahe_reference(inputs[0], a["value_range"], a["clip_limit"], a["tile_grid_size"], a["data_format"])]


def _always(attrs) -> bool:
    return True


RANDOM_CROP = LayerDef(
    name="RandomCrop",
    attrs=(
        Attr("height", "int", doc="Height of the output images.", minimum=1),
        Attr("width", "int", doc="Width of the output images.", minimum=1),
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_crop_infer,
    emit=_resize_emit("RandomCrop"),
    emit_train=_crop_emit_train,
    emit_backward=_crop_backward,
    reference=_crop_reference,
    saved=_saved(CROP_SIZE),
    random_training=_always,
    positional=("height", "width"),
    doc="In training crops a random (height, width) window, the same for the whole batch, from images larger "
    "than that along both axes (otherwise Keras's fixed window, resized bilinearly when it is not of the target's "
    "size); at inference the centred crop of CenterCrop (what Keras documents; Keras 3.15 returns the image "
    "uncropped).",
)

MIX_UP = LayerDef(
    name="MixUp",
    attrs=(
        Attr("alpha", "float", 0.2, "The Beta(alpha, alpha) distribution of each image's mixing weight: smaller "
             "values mix less.", minimum=0.0, exclusive_minimum=True),
        DATA_FORMAT_ATTR,
        SEED_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_mixup_infer,
    emit_train=_mixup_emit_train,
    emit_backward=_mixup_backward,
    reference=_identity_reference,
    saved=_saved(MIXUP_SIZE),
    training_only=True,
    couples_batch=True,
    positional=("alpha",),
    doc="In training blends each image with another image of the batch (a random permutation), "
    "`w x[i] + (1 - w) x[p[i]]` with `w ~ Beta(alpha, alpha)`; the identity at inference. Labels are not mixed.",
)

CUT_MIX = LayerDef(
    name="CutMix",
    attrs=(
        Attr("factor", "factor", 1.0,
             "The range of the Beta parameter drawn once per batch: a number `f` gives [0, f], a pair its sorted "
             "values; each image's box covers 1 - w of it, w ~ Beta(a, a).", minimum=0.0, maximum=1.0),
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_cutmix_infer,
    emit_train=_cutmix_emit_train,
    emit_backward=_cutmix_backward,
    reference=_identity_reference,
    saved=_saved(CUTMIX_SIZE),
    training_only=True,
    couples_batch=True,
    positional=("factor",),
    doc="In training pastes into each image a random box of another image of the batch (a random permutation); "
    "the identity at inference. Labels are not mixed.",
)

_ELASTIC_RANGE = ("drawn in [low, high]: a number `f` gives [0, f], a pair its sorted values")

RANDOM_ELASTIC_TRANSFORM = LayerDef(
    name="RandomElasticTransform",
    attrs=(
        Attr("factor", "factor", 1.0, "The probability of transforming an image, drawn per image, " + _ELASTIC_RANGE
             + " (so the default 1.0 transforms half of the images).", minimum=0.0, maximum=1.0),
        Attr("scale", "factor", 1.0, "The distortion d, drawn once per batch, " + _ELASTIC_RANGE + "; the "
             "displacements are max(H, W) * 0.1 d times noise blurred with sigma min(H, W) * 0.05 d.",
             minimum=0.0, maximum=1.0),
        Attr("interpolation", "enum", "bilinear", "How the input is read between pixels.",
             choices=("bilinear", "nearest")),
        Attr("fill_mode", "enum", "reflect",
             "How points outside the input are read: reflect (d c b a | a b c d | d c b a), mirror "
             "(c d c b | a b c d | c b a b), wrap, nearest (the edge pixel), constant (fill_value).",
             choices=ELASTIC_FILL_MODES),
        Attr("fill_value", "float", 0.0, "The value of points outside the input when fill_mode is constant."),
        _value_range_attr("every image is clipped to it in training (low, high as written)."),
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_elastic_infer,
    emit_train=_elastic_emit_train,
    emit_backward=_elastic_backward,
    reference=_identity_reference,
    saved=_elastic_saved,
    training_only=True,
    positional=("factor", "scale"),
    doc="In training displaces each image's pixels, with a random probability, by a smooth random field "
    "(Gaussian-blurred noise), and clips every image to `value_range`; the identity at inference.",
)

CLAHE = LayerDef(
    name="ContrastLimitedAdaptiveHistogramEqualization",
    attrs=(
        _value_range_attr("pixels are mapped from it (as written) to [0, 255], equalized and mapped back."),
        Attr("clip_limit", "float", 4.0, "Each tile's histogram is clipped at clip_limit * (tile pixels) / 256 and "
             "the excess spread over the 256 bins; 0 or less: no clipping."),
        Attr("tile_grid_size", "int_list", [8, 8], "[rows, columns]: the number of tiles along each axis (each at "
             "least 1)."),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_clahe_infer,
    emit=_clahe_emit,
    emit_backward=_no_gradient,
    reference=_clahe_reference,
    positional=("value_range", "clip_limit", "tile_grid_size"),
    doc="Equalizes each channel's histogram per tile of a grid with contrast limiting, blending the tiles' "
    "tables bilinearly (CLAHE), as Keras; at inference and in training alike. No gradient flows through it "
    "(Keras's integer bins and lookups).",
)

LAYERS = (RANDOM_CROP, MIX_UP, CUT_MIX, RANDOM_ELASTIC_TRANSFORM, CLAHE)
