"""Geometric and erasing augmentation layers: RandomShear, RandomErasing, RandomGaussianBlur,
RandomPerspective.

Keras 3's ``keras.layers`` versions (``keras/src/layers/preprocessing/image_preprocessing/``),
computed as Keras computes them on its PyTorch backend. All four are the identity at inference
(``training_only``: the plan makes them views), as in Keras. In training:

- ``RandomShear`` draws per image a sign (``-1`` when ``uniform() > 0.5``) and shears
  ``sx = U(x_factor)``, ``sy = U(y_factor)``, both times the sign, and reads the image through
  the affine transform ``(1, sx, 0, sy, 1, 0)`` (input point ``x = j + sx i``,
  ``y = sy j + i``: no centering, as Keras) with augmentation.py's affine kernel, interpolation
  and fill modes. A factor ``f`` reads as ``[-f, f]`` (Keras's reading, whatever its docstring
  says), a pair as its sorted values.
- ``RandomErasing`` draws per image ``rx = sqrt(U(scale))``, ``ry = sqrt(U(scale))``, a box of
  ``rx * W`` by ``ry * H`` pixels starting at ``U(0, 1) * (W - rx * W)`` (and the same along the
  rows; float32), and erases it (pixels with ``x0 <= column < x1`` and ``y0 <= row < y1``)
  when ``uniform() < U(factor)``. Erased pixels hold ``fill_value`` clipped to ``value_range``
  (a list of 3 numbers broadcasts along the last axis, as Keras's ``full_like``), or, when it is
  null, ``normal() * value_range[1]`` clipped to ``value_range``, a new draw per pixel. Keras's
  ``clip`` does not sort ``value_range``: ``min(max(v, low), high)``, as here.
- ``RandomGaussianBlur`` draws per image whether to blur (``uniform() < U(factor)``) and once
  per call (Keras: per batch) ``sigma = U(sigma) + 1e-6`` for each axis (``sigma[0]`` along the
  columns, ``sigma[1]`` along the rows). Blurred images are the depthwise correlation with the
  normalized outer product of the two 1-D Gaussians of ``kernel_size`` taps, zero-padded
  (float32 taps, Keras's ``gaussian_blur``). EVERY image, blurred or not, is then clipped to
  ``value_range`` (``min(max(v, low), high)``).
- ``RandomPerspective`` draws per image whether to transform (``uniform() < U(factor)``) and
  moves the 4 corners ``(0, 0), (W-1, 0), (0, H-1), (W-1, H-1)`` to ``c + c * U(-scale / 2,
  scale / 2)`` (per coordinate, float32). The homography mapping the moved corners back to the
  corners, ``(a0..a7)``, is solved from Keras's 8 x 8 system (in float64 by Gaussian
  elimination, rounded to float32; Keras solves it in float32), and each output pixel reads the
  input point ``x = (a0 j + a1 i + a2) / d``, ``y = (a3 j + a4 i + a5) / d``,
  ``d = a6 j + a7 i + 1`` (float32, Keras's order) with nearest or bilinear interpolation,
  points outside the image taking ``fill_value`` (Keras's ``perspective_transform`` always
  fills with a constant).

Random draws come from NumPy's generator inside Numba, seeded as the other augmentation layers'
(``nnspec.runtime.kernels.seed_kernels``, from fit's seed); a ``seed`` attribute is accepted but
selects no stream of its own: Keras's torch streams cannot be reproduced. A training step's
draws are saved for its backward pass, which gives the gradient of what the forward computed:
the affine or projective read's adjoint (each output's gradient added to the pixels it was read
from, with the same weights; none to ``fill_value``), nothing to erased pixels, the blur's
adjoint where the clip passed the value (inclusive bounds, as ``torch.clamp``) and 0 elsewhere.

Differences from Keras: integer images are refused (as by the other augmentation layers);
pairs of factors must lie in [0, 1] element-wise (Keras's looser check of RandomErasing's and
RandomGaussianBlur's pairs accepts e.g. [-0.5, 0.5]); RandomGaussianBlur's kernel_size must be
odd and square (Keras's torch backend fails on a non-square kernel in training); RandomErasing's
list fill_value needs images whose last axis is 3 (Keras fails on others in training);
RandomPerspective's homography comes from a float64 solve (Keras's float32 solve differs by
float32 rounding, so pixels read near an interpolation node may differ within ~1e-5).
"""

from __future__ import annotations

from .augmentation import (
    CONSTANT,
    FILL_ATTRS,
    INTERPOLATIONS,
    SEED_ATTR,
    _cf,
    _geometric_backward,
    _geometric_emit_train,
    _hw,
    _image_infer,
    _taps,
    _transform_saved,
    _value_range_attr,
    affine_reference,
    factor_range,
)
from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError
from .core import DATA_FORMAT_ATTR, _identity_reference

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_taps", "shear_transform", "_crop_bounds", "_erased", "_get", "_gauss_kernel", "_blurred",
                  "homography", "_projective_point", "_perspective")  # fmt: skip

ERASE_SIZE = 5  # x0, x1, y0, y1, applied per image
BLUR_SIZE = 3  # applied, sigma along the columns, sigma along the rows
PERSPECTIVE_SIZE = 9  # applied, a0..a7


# ----------------------------------------------------------------------------- kernels


def shear_transform(tr, s, sx, sy):
    """Row ``s`` of ``tr``: Keras's shear matrix ``(1, sx, 0, sy, 1, 0)``."""
    tr[s, 0] = 1.0
    tr[s, 1] = sx
    tr[s, 2] = 0.0
    tr[s, 3] = sy
    tr[s, 4] = 1.0
    tr[s, 5] = 0.0


def draw_shears(tr, x_low, x_high, y_low, y_high):
    """Per image a sign (-1 when ``uniform() > 0.5``) times the shears ``U(x_low, x_high)`` and
    ``U(y_low, y_high)`` (float32)."""
    for s in range(tr.shape[0]):
        sign = np.float32(-1.0) if np.random.random() > 0.5 else np.float32(1.0)
        sx = np.float32(np.random.uniform(x_low, x_high))
        sy = np.float32(np.random.uniform(y_low, y_high))
        shear_transform(tr, s, sx * sign, sy * sign)


def _crop_bounds(ratio, length):
    """Keras's ``_compute_crop_bounds`` for one image: (start, end) of a box of ``ratio * length``
    starting at ``U(0, 1) * (length - ratio * length)``, in float32."""
    n = np.float32(length)
    crop = np.float32(ratio) * n
    start = np.float32(np.random.random()) * (n - crop)
    return start, start + crop


def draw_erasures(v, s_low, s_high, f_low, f_high, h, w):
    """Per image (row of ``v``): the box ``x0, x1, y0, y1`` and whether it is erased
    (``uniform() < U(f_low, f_high)``)."""
    for s in range(v.shape[0]):
        rx = np.sqrt(np.float32(np.random.uniform(s_low, s_high)))
        ry = np.sqrt(np.float32(np.random.uniform(s_low, s_high)))
        v[s, 0], v[s, 1] = _crop_bounds(rx, w)
        v[s, 2], v[s, 3] = _crop_bounds(ry, h)
        p = np.random.uniform(f_low, f_high)
        v[s, 4] = 1.0 if np.random.random() < p else 0.0


def _erased(v, s, i, j):
    """Whether pixel (row ``i``, column ``j``) of image ``s`` is erased."""
    return v[s, 4] != 0.0 and v[s, 0] <= j < v[s, 1] and v[s, 2] <= i < v[s, 3]


def erase_forward(x, y, v, cf, f0, f1, f2, noise, low, high):
    """``y`` = ``x`` with each image's box erased (module docstring): the fill ``(f0, f1, f2)[q % 3]``
    (``q`` the last axis's index) or, with ``noise``, ``normal() * high``; clipped to [low, high]."""
    lo, hi = np.float32(low), np.float32(high)
    fills = np.empty(3, np.float32)
    fills[0], fills[1], fills[2] = np.float32(f0), np.float32(f1), np.float32(f2)
    for s in range(x.shape[0]):
        for a in range(x.shape[1]):
            for b in range(x.shape[2]):
                for q in range(x.shape[3]):
                    if not _erased(v, s, b if cf else a, q if cf else b):
                        y[s, a, b, q] = x[s, a, b, q]
                        continue
                    f = np.float32(np.random.standard_normal()) * hi if noise else fills[q % 3]
                    y[s, a, b, q] = min(max(f, lo), hi)


def erase_backward(dy, dx, v, cf):
    """``dx += dy`` where the pixel was not erased."""
    for s in range(dy.shape[0]):
        for a in range(dy.shape[1]):
            for b in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    if not _erased(v, s, b if cf else a, q if cf else b):
                        dx[s, a, b, q] += dy[s, a, b, q]


def draw_blurs(v, f_low, f_high, s_low, s_high):
    """Per image whether to blur (``uniform() < U(f_low, f_high)``); ONE pair of sigmas
    ``U(s_low, s_high) + 1e-6`` for all rows (Keras: per batch), float32."""
    sx = np.float32(np.random.uniform(s_low, s_high)) + np.float32(1e-6)
    sy = np.float32(np.random.uniform(s_low, s_high)) + np.float32(1e-6)
    for s in range(v.shape[0]):
        p = np.random.uniform(f_low, f_high)
        v[s, 0] = 1.0 if np.random.random() < p else 0.0
        v[s, 1] = sx
        v[s, 2] = sy


def _gauss_kernel(size, sx, sy):
    """Keras's (torch) 2-D Gaussian: ``outer(g(sy), g(sx))``, ``g`` the normalized 1-D Gaussian
    of ``size`` taps, float32."""
    g = np.empty((2, size), np.float32)
    half = np.float32((size - 1) / 2)
    for axis in range(2):
        sigma = np.float32(sx if axis == 0 else sy)
        total = np.float32(0.0)
        for t in range(size):
            u = (np.float32(t) - half) / sigma
            g[axis, t] = np.exp(np.float32(-0.5) * (u * u))
            total += g[axis, t]
        for t in range(size):
            g[axis, t] = g[axis, t] / total
    k = np.empty((size, size), np.float32)
    for a in range(size):
        for b in range(size):
            k[a, b] = g[1, a] * g[0, b]
    return k


def _get(x, s, i, j, c, cf):
    return x[s, c, i, j] if cf else x[s, i, j, c]


def _blurred(x, s, i, j, c, cf, k, h, w):
    """The zero-padded correlation of image ``s``'s channel ``c`` with ``k`` at (``i``, ``j``)."""
    p = k.shape[0] // 2
    acc = 0.0
    for a in range(k.shape[0]):
        r = i + a - p
        if 0 <= r < h:
            for b in range(k.shape[1]):
                q = j + b - p
                if 0 <= q < w:
                    acc += k[a, b] * _get(x, s, r, q, c, cf)
    return np.float32(acc)


def blur_forward(x, y, v, cf, size, low, high):
    """``y`` = each image blurred where ``v[r, 0]`` says so (sigmas ``v[r, 1:3]``), every
    value then clipped to [low, high] (``min(max(v, low), high)``)."""
    lo, hi = np.float32(low), np.float32(high)
    ch, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cf else (x.shape[3], x.shape[1], x.shape[2])
    for s in range(x.shape[0]):
        applied = v[s, 0] != 0.0
        k = _gauss_kernel(size, v[s, 1], v[s, 2])
        for i in range(h):
            for j in range(w):
                for c in range(ch):
                    u = _blurred(x, s, i, j, c, cf, k, h, w) if applied else _get(x, s, i, j, c, cf)
                    u = min(max(u, lo), hi)
                    if cf:
                        y[s, c, i, j] = u
                    else:
                        y[s, i, j, c] = u


def blur_backward(x, dy, dx, v, cf, size, low, high):
    """``dx +=`` the gradient of :func:`blur_forward`: ``dy`` where the value before clipping
    lies in [low, high] (0 elsewhere), through the blur's adjoint for blurred images."""
    lo, hi = np.float32(low), np.float32(high)
    ch, h, w = (x.shape[1], x.shape[2], x.shape[3]) if cf else (x.shape[3], x.shape[1], x.shape[2])
    for s in range(x.shape[0]):
        applied = v[s, 0] != 0.0
        k = _gauss_kernel(size, v[s, 1], v[s, 2])
        p = size // 2
        for i in range(h):
            for j in range(w):
                for c in range(ch):
                    u = _blurred(x, s, i, j, c, cf, k, h, w) if applied else _get(x, s, i, j, c, cf)
                    if not lo <= u <= hi:
                        continue
                    g = _get(dy, s, i, j, c, cf)
                    if not applied:
                        if cf:
                            dx[s, c, i, j] += g
                        else:
                            dx[s, i, j, c] += g
                        continue
                    for a in range(size):
                        r = i + a - p
                        for b in range(size):
                            q = j + b - p
                            if 0 <= r < h and 0 <= q < w:
                                if cf:
                                    dx[s, c, r, q] += k[a, b] * g
                                else:
                                    dx[s, r, q, c] += k[a, b] * g


def homography(v, s, ends, h, w):
    """``v[s, 1:9]``: the homography (a0..a7) mapping the 4 moved corners ``ends`` (4, 2: x, y)
    to the corners of an ``h`` x ``w`` image, from Keras's 8 x 8 system, solved in float64 by
    Gaussian elimination with partial pivoting and rounded to float32."""
    m = np.zeros((8, 9))
    for t in range(4):
        sx = (w - 1.0) if t % 2 == 1 else 0.0
        sy = (h - 1.0) if t >= 2 else 0.0
        ex, ey = np.float64(ends[t, 0]), np.float64(ends[t, 1])
        r = 2 * t
        for k in range(2):  # k = 0: x' = sx, columns 0-2; k = 1: y' = sy, columns 3-5
            target = sy if k else sx
            m[r + k, 3 * k], m[r + k, 3 * k + 1], m[r + k, 3 * k + 2] = ex, ey, 1.0
            m[r + k, 6], m[r + k, 7], m[r + k, 8] = -target * ex, -target * ey, target
    for col in range(8):
        piv = col
        for r in range(col + 1, 8):
            if abs(m[r, col]) > abs(m[piv, col]):
                piv = r
        for c in range(9):
            m[col, c], m[piv, c] = m[piv, c], m[col, c]
        for r in range(col + 1, 8):
            f = m[r, col] / m[col, col]
            for c in range(col, 9):
                m[r, c] -= f * m[col, c]
    for col in range(7, -1, -1):
        acc = m[col, 8]
        for c in range(col + 1, 8):
            acc -= m[col, c] * m[c, 8]
        m[col, 8] = acc / m[col, col]
    for t in range(8):
        v[s, 1 + t] = np.float32(m[t, 8])


def draw_perspectives(v, f_low, f_high, scale, h, w):
    """Per image whether to transform (``uniform() < U(f_low, f_high)``) and the homography of
    corners moved by ``c * U(-scale / 2, scale / 2)`` per coordinate (float32)."""
    ends = np.empty((4, 2), np.float32)
    for s in range(v.shape[0]):
        p = np.random.uniform(f_low, f_high)
        v[s, 0] = 1.0 if np.random.random() < p else 0.0
        for t in range(4):  # Keras's (4, 2) draws: per corner x, then y
            cx = np.float32(w - 1.0) if t % 2 == 1 else np.float32(0.0)
            ends[t, 0] = cx + cx * np.float32(np.random.uniform(-0.5 * scale, 0.5 * scale))
            cy = np.float32(h - 1.0) if t >= 2 else np.float32(0.0)
            ends[t, 1] = cy + cy * np.float32(np.random.uniform(-0.5 * scale, 0.5 * scale))
        homography(v, s, ends, h, w)


def _projective_point(v, s, i, j):
    """The input point (y, x) output pixel (``i``, ``j``) of image ``s`` reads, in float32 as Keras."""
    fx, fy = np.float32(j), np.float32(i)
    a = v[s]
    d = (np.float32(a[7]) * fx + np.float32(a[8]) * fy) + np.float32(1.0)
    xs = ((np.float32(a[1]) * fx + np.float32(a[2]) * fy) + np.float32(a[3])) / d
    ys = ((np.float32(a[4]) * fx + np.float32(a[5]) * fy) + np.float32(a[6])) / d
    return ys, xs


def _perspective(src, dst, v, cf, interp, fill_value, adjoint):
    """The applied images of ``src`` read through their homographies into ``dst`` (constant fill);
    with ``adjoint``, each output's gradient added to the pixels it was read from. Images not
    applied are copied (added when ``adjoint``)."""
    ch, h, w = (src.shape[1], src.shape[2], src.shape[3]) if cf else (src.shape[3], src.shape[1], src.shape[2])
    rows = np.empty(4, np.int64)
    cols = np.empty(4, np.int64)
    wts = np.empty(4, np.float64)
    inside = np.empty(4, np.bool_)
    for s in range(src.shape[0]):
        if v[s, 0] == 0.0:
            if adjoint:
                dst[s] += src[s]
            else:
                dst[s] = src[s]
            continue
        for i in range(h):
            for j in range(w):
                ys, xs = _projective_point(v, s, i, j)
                k = _taps(np.float64(ys), np.float64(xs), h, w, CONSTANT, interp, rows, cols, wts, inside)
                for c in range(ch):
                    acc = 0.0
                    g = _get(src, s, i, j, c, cf)
                    for t in range(k):
                        if not inside[t]:
                            acc += wts[t] * fill_value
                        elif not adjoint:
                            acc += wts[t] * _get(src, s, rows[t], cols[t], c, cf)
                        elif cf:
                            dst[s, c, rows[t], cols[t]] += wts[t] * g
                        else:
                            dst[s, rows[t], cols[t], c] += wts[t] * g
                    if adjoint:
                        continue
                    if cf:
                        dst[s, c, i, j] = acc
                    else:
                        dst[s, i, j, c] = acc


def perspective_forward(x, y, v, cf, interp, fill_value):
    _perspective(x, y, v, cf, interp, fill_value, False)


def perspective_backward(dy, dx, v, cf, interp):
    """``dx +=`` the gradient of :func:`perspective_forward` with the same draws."""
    _perspective(dy, dx, v, cf, interp, 0.0, True)


# ----------------------------------------------------------------------------- NumPy references
#
# Keras's formulas in float64 with whole-array NumPy operations (the shear through
# augmentation.affine_reference, which pads the image by the fill mode).


def shear_matrix(sx, sy):
    """Keras's shear transform (6 numbers) for the shears ``sx``, ``sy`` (sign included)."""
    return [1.0, sx, 0.0, sy, 1.0, 0.0]


def shear_reference(x, shears, fill_mode="reflect", interpolation="bilinear", fill_value=0.0,
                    data_format="channels_last"):  # fmt: skip
    """RandomShear in training with the given per-image (sx, sy), in float64."""
    return affine_reference(x, [shear_matrix(*s) for s in shears], fill_mode, interpolation, fill_value, data_format)


def _spatial(x, data_format):
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def erasing_reference(x, boxes, fill, value_range, data_format="channels_last"):
    """RandomErasing with the given boxes (rows ``x0, x1, y0, y1, applied``) and fill (broadcast
    to ``x``: a number, a list along the last axis, or an array), in float64."""
    x = np.asarray(x, np.float64)
    boxes = np.asarray(boxes, np.float64)
    h, w = _spatial(x, data_format).shape[1:3]
    rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    b = boxes[:, :, None, None]
    mask = (cc >= b[:, 0]) & (cc < b[:, 1]) & (rr >= b[:, 2]) & (rr < b[:, 3]) & (b[:, 4] != 0)
    mask = mask[:, None] if data_format == "channels_first" else mask[..., None]
    fill = np.minimum(np.maximum(np.broadcast_to(np.asarray(fill, np.float64), x.shape), value_range[0]),
                      value_range[1])  # fmt: skip
    return np.where(mask, fill, x)


def gaussian_taps(size, sigma):
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    return g / g.sum()


def blur_reference(x, applied, sigmas, kernel_size, value_range, data_format="channels_last"):
    """RandomGaussianBlur with the given per-image choices and (sigma along the columns, along
    the rows), in float64: zero-padded correlation, then every image clipped."""
    x = _spatial(np.asarray(x, np.float64), data_format)
    k = np.outer(gaussian_taps(kernel_size, sigmas[1]), gaussian_taps(kernel_size, sigmas[0]))
    p = kernel_size // 2
    big = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    h, w = x.shape[1:3]
    blurred = sum(k[a, b] * big[:, a : a + h, b : b + w] for a in range(kernel_size) for b in range(kernel_size))
    out = np.where(np.reshape(applied, (-1, 1, 1, 1)).astype(bool), blurred, x)
    out = np.minimum(np.maximum(out, value_range[0]), value_range[1])
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


def corners(h, w):
    return np.array([[0.0, 0.0], [w - 1.0, 0.0], [0.0, h - 1.0], [w - 1.0, h - 1.0]])


def homography_reference(ends, h, w):
    """The homography (a0..a7) mapping ``ends`` (4, 2) to the image's corners, solved in float64
    from the projective equations ``(a0 x + a1 y + a2) / (a6 x + a7 y + 1) = X`` and so on."""
    rows, rhs = [], []
    for (ex, ey), (sx, sy) in zip(np.asarray(ends, np.float64), corners(h, w)):
        rows.append([ex, ey, 1, 0, 0, 0, -sx * ex, -sx * ey])
        rows.append([0, 0, 0, ex, ey, 1, -sy * ex, -sy * ey])
        rhs += [sx, sy]
    return np.linalg.solve(np.array(rows), np.array(rhs))


def perspective_reference(x, applied, coeffs, interpolation="bilinear", fill_value=0.0, data_format="channels_last"):
    """RandomPerspective with the given per-image choices and homographies, in float64 (input
    points computed in float32, as Keras)."""
    x = _spatial(np.asarray(x, np.float64), data_format)
    n, h, w, _ = x.shape
    out = x.copy()
    ii, jj = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    for s in range(n):
        if not applied[s]:
            continue
        a = np.asarray(coeffs[s], np.float32)
        d = (a[6] * jj + a[7] * ii) + np.float32(1.0)
        xs = (((a[0] * jj + a[1] * ii) + a[2]) / d).astype(np.float64)
        ys = (((a[3] * jj + a[4] * ii) + a[5]) / d).astype(np.float64)
        if interpolation == "nearest":
            nodes = [(np.rint(ys), np.rint(xs), 1.0)]
        else:
            fy, fx = np.floor(ys), np.floor(xs)
            nodes = [(fy + dr, fx + dc, (ys - fy if dr else 1 - (ys - fy)) * (xs - fx if dc else 1 - (xs - fx)))
                     for dr in (0, 1) for dc in (0, 1)]  # fmt: skip
        acc = np.zeros(x.shape[1:])
        for r, c, wt in nodes:
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            vals = x[s][np.clip(r, 0, h - 1).astype(np.int64), np.clip(c, 0, w - 1).astype(np.int64)]
            acc += np.asarray(wt)[..., None] * np.where(ok[..., None], vals, fill_value) * np.ones_like(vals)
        out[s] = acc
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


# ----------------------------------------------------------------------------- layer definitions


def _saved(size: int):
    def saved(attrs, x_shapes, y_shapes):
        return [((size,), "float32")]

    return saved


def _draw_shears(e, tr):
    return e.call(draw_shears, tr, *factor_range(e.attrs["x_factor"], -1.0), *factor_range(e.attrs["y_factor"], -1.0))


def _erasing_fills(attrs) -> tuple:
    """(f0, f1, f2, noise): the fill along the last axis, or noise when fill_value is null."""
    fv = attrs["fill_value"]
    if fv is None:
        return 0.0, 0.0, 0.0, True
    f = [float(fv)] * 3 if isinstance(fv, (int, float)) else [float(e) for e in fv]
    return f[0], f[1], f[2], False


def _value_range(attrs) -> tuple[float, float]:
    lo, hi = attrs["value_range"]
    return float(lo), float(hi)


def _erasing_infer(attrs, inputs, ctx):
    out = _image_infer("RandomErasing")(attrs, inputs, ctx)
    fv = attrs.get("fill_value")
    if isinstance(fv, (list, tuple)):
        if len(fv) != 3 or not all(isinstance(e, (int, float)) for e in fv):
            raise ShapeError(f"RandomErasing's fill_value is a number or a list of 3 numbers, as Keras; got {fv}")
        if inputs[0].shape[-1] != 3:
            raise ShapeError("RandomErasing's list fill_value fills along the images' last axis (Keras's full_like), "
                             f"which must then be 3; got {inputs[0].shape[-1]}")  # fmt: skip
    return out


def _erasing_emit_train(e):
    a, v = e.attrs, e.s[0]
    return [e.call(draw_erasures, v, *factor_range(a["scale"], 0.0), *factor_range(a["factor"], 0.0), *_hw(e)),
            e.call(erase_forward, e.x[0], e.y[0], v, _cf(e), *_erasing_fills(a), *_value_range(a))]  # fmt: skip


def _erasing_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(erase_backward, e.dy[0], e.dx[0], e.s[0], _cf(e))]


def _blur_infer(attrs, inputs, ctx):
    out = _image_infer("RandomGaussianBlur")(attrs, inputs, ctx)
    k = list(attrs["kernel_size"]) if isinstance(attrs["kernel_size"], (list, tuple)) else [attrs["kernel_size"]] * 2
    if any(int(v) % 2 == 0 for v in k):
        raise ShapeError(f"RandomGaussianBlur's kernel_size must be odd, as Keras requires; got {k}")
    if k[0] != k[1]:
        raise ShapeError(f"RandomGaussianBlur's kernel_size must be square: Keras's torch backend fails on {k}")
    return out


def _blur_args(e):
    return _cf(e), int(e.attrs["kernel_size"][0]), *_value_range(e.attrs)


def _blur_emit_train(e):
    v = e.s[0]
    return [e.call(draw_blurs, v, *factor_range(e.attrs["factor"], 0.0), *factor_range(e.attrs["sigma"], 0.0)),
            e.call(blur_forward, e.x[0], e.y[0], v, *_blur_args(e))]  # fmt: skip


def _blur_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(blur_backward, e.x[0], e.dy[0], e.dx[0], e.s[0], *_blur_args(e))]


def _interp(e) -> int:
    return INTERPOLATIONS.index(e.attrs["interpolation"])


def _perspective_emit_train(e):
    a, v = e.attrs, e.s[0]
    lo, hi = factor_range(a["factor"], 0.0)
    return [e.call(draw_perspectives, v, lo, hi, float(a["scale"]), *_hw(e)),
            e.call(perspective_forward, e.x[0], e.y[0], v, _cf(e), _interp(e), float(a["fill_value"]))]  # fmt: skip


def _perspective_backward(e):
    if e.dx[0] is None:
        return []
    return [e.call(perspective_backward, e.dy[0], e.dx[0], e.s[0], _cf(e), _interp(e))]


def _random_layer(name, attrs, infer, emit_train, emit_backward, saved, positional, doc) -> LayerDef:
    """A layer that is the identity at inference and random in training."""
    return LayerDef(name=name, attrs=(*attrs, *COMMON_ATTRS), infer=infer, emit_train=emit_train,
                    emit_backward=emit_backward, reference=_identity_reference, saved=saved, training_only=True,
                    positional=positional, doc=doc)  # fmt: skip


_FILL = {a.name: a for a in FILL_ATTRS}

_PROBABILITY = Attr("factor", "factor", 1.0,
                    "The probability of transforming an image, drawn per image in [low, high]: a number `f` gives "
                    "[0, f] (so the default 1.0 transforms half of the images), a pair its sorted values.",
                    minimum=0.0, maximum=1.0)  # fmt: skip

_SHEAR_DOC = ("drawn per image in [low, high] as a fraction of the image (Keras's reading: a number `f` gives "
              "[-f, f], a pair its sorted values), times a random sign shared with the other axis.")  # fmt: skip

RANDOM_SHEAR = _random_layer(
    "RandomShear",
    (Attr("x_factor", "factor", 0.0, "The horizontal shear (input column j + s * row), " + _SHEAR_DOC,
          minimum=0.0, maximum=1.0),
     Attr("y_factor", "factor", 0.0, "The vertical shear (input row i + s * column), " + _SHEAR_DOC,
          minimum=0.0, maximum=1.0),
     _FILL["interpolation"], _FILL["fill_mode"], _FILL["fill_value"], DATA_FORMAT_ATTR, SEED_ATTR),
    _image_infer("RandomShear"), _geometric_emit_train(_draw_shears), _geometric_backward, _transform_saved,
    ("x_factor", "y_factor"),
    "In training shears each image by random amounts along x and y (no centering, as Keras), filling "
    "by `fill_mode`; the identity at inference.",
)  # fmt: skip

RANDOM_ERASING = _random_layer(
    "RandomErasing",
    (_PROBABILITY,
     Attr("scale", "factor", [0.02, 0.33],
          "The box's side as a fraction of the image's, squared: drawn per image and axis in [low, high] "
          "(a number `f` gives [0, f]) and square-rooted.", minimum=0.0, maximum=1.0),
     Attr("fill_value", "numbers", None,
          "The erased pixels' value (a number, or 3 along the last axis); null: normal noise times "
          "value_range[1]; clipped to value_range.", nullable=True),
     _value_range_attr("erased values are clipped to it (low, high as written)."),
     SEED_ATTR, DATA_FORMAT_ATTR),
    _erasing_infer, _erasing_emit_train, _erasing_backward, _saved(ERASE_SIZE), ("factor", "scale", "fill_value"),
    "In training erases, with a random probability, one random box of each image (a constant or noise); "
    "the identity at inference.",
)  # fmt: skip

RANDOM_GAUSSIAN_BLUR = _random_layer(
    "RandomGaussianBlur",
    (_PROBABILITY,
     Attr("kernel_size", "ints", 3, "The Gaussian's taps along each axis: odd, and the same along both.",
          length=2, minimum=1),
     Attr("sigma", "factor", 1.0,
          "The Gaussian's standard deviation, drawn once per batch and axis in [low, high] (+ 1e-6): a number "
          "`f` gives [0, f], a pair its sorted values.", minimum=0.0, maximum=1.0),
     _value_range_attr("every image is clipped to it in training (low, high as written)."),
     DATA_FORMAT_ATTR, SEED_ATTR),
    _blur_infer, _blur_emit_train, _blur_backward, _saved(BLUR_SIZE), ("factor", "kernel_size", "sigma"),
    "In training blurs each image, with a random probability, with a Gaussian of random width, and clips "
    "to `value_range`; the identity at inference.",
)  # fmt: skip

RANDOM_PERSPECTIVE = _random_layer(
    "RandomPerspective",
    (_PROBABILITY,
     Attr("scale", "float", 1.0, "How far the corners move: each coordinate by up to scale / 2 of itself.",
          minimum=0.0, maximum=1.0),
     _FILL["interpolation"],
     Attr("fill_value", "float", 0.0, "The value of points outside the input."),
     SEED_ATTR, DATA_FORMAT_ATTR),
    _image_infer("RandomPerspective"), _perspective_emit_train, _perspective_backward, _saved(PERSPECTIVE_SIZE),
    ("factor", "scale"),
    "In training warps each image, with a random probability, by the homography of randomly moved "
    "corners (outside points: `fill_value`); the identity at inference.",
)  # fmt: skip

LAYERS = (RANDOM_SHEAR, RANDOM_ERASING, RANDOM_GAUSSIAN_BLUR, RANDOM_PERSPECTIVE)
