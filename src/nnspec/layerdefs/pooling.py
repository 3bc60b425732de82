"""Pooling layers (MaxPooling1D/2D/3D, AveragePooling1D/2D/3D, GlobalMaxPooling1D/2D/3D,
GlobalAveragePooling1D/2D/3D, AdaptiveAveragePooling1D/2D/3D, AdaptiveMaxPooling1D/2D/3D) and the spatial padding, cropping and upsampling layers
(ZeroPadding1D/2D, Cropping1D/2D, UpSampling1D/2D).

None of them owns weights. Unknown (``None``) spatial dimensions pass through as ``None``, and
so does an unknown channel dimension. They all drop the mask, as Keras's do: only
GlobalAveragePooling1D reads one (it averages over the unmasked steps), and it outputs none.

Backward (``emit_backward``, adding into the input's gradient) follows Keras on PyTorch, where
it is defined by what autograd does with the ops Keras calls:

- Max pooling (``torch.nn.functional.max_pool*``): each window's gradient goes to one element,
  the first maximal one in scan order (depth, row, column), or the last NaN, the element
  PyTorch's kernel records as the argmax. The backward kernel finds it again from the input (no
  saved indices). Keras pads asymmetric 'same' windows by replicating the edge; a copy routes
  its gradient to the edge element, which is where ours goes too.
- Global max pooling (``torch.amax``): the gradient is split evenly among every element equal
  to the maximum (ties share it). Where the maximum is NaN, ours is split among the NaN elements
  (PyTorch's CPU kernel gives NaN to the whole row there).
- Average pooling: spread evenly over the taps inside the input (the forward's divisor). Keras
  on PyTorch differs for asymmetric 'same' padding, in the forward already (see pool_forward).
- Masked GlobalAveragePooling1D: ``dy / valid steps`` at the valid steps, 0 at masked ones (and
  0 everywhere for a sample with every step masked, as autograd through Keras's ``where``).
- Padding, cropping and nearest upsampling: the transposed copies; bilinear and bicubic
  upsampling: the transpose of the resize taps (each output's gradient added back into the
  input cells it was interpolated from, with the same weights).
"""

from __future__ import annotations

import itertools
import math

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
    conv_pads,
    dims_str,
    join_channels,
    kernel_call,
    padding_attr,
    per_axis_default,
    split_channels,
    window_output,
)

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_window", "_width_windows", "_cubic_weights", "_aa_filter", "_resize_width", "_resize_taps", "_resize_tables")  # called by kernels: compiled in place by the runtime

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _out_type(attrs, x: TensorType, shape) -> TensorType:
    """Keras casts floating inputs to the layer's dtype and leaves other dtypes alone."""
    dtype = (attrs.get("dtype") or "float32") if x.dtype in _FLOAT_DTYPES else x.dtype
    return TensorType(tuple(shape), dtype, False)


# ----------------------------------------------------------------------------- kernels
#
# Kernels see channels-last arrays with three spatial axes, (rows, D, H, W, C): a 1D layer's
# input is (rows, 1, 1, L, C), a 2D layer's (rows, 1, H, W, C). These layers treat channels
# independently, so a channels_first input (rows, C, *spatial) is seen, without a copy, as
# (rows * C, *spatial, 1).


def _window(o, n, k, s, p, adaptive):
    """The input range [start, end) of output position ``o`` along an axis of ``n`` entries.

    Fixed windows: ``k`` taps from ``o * s - p``, clipped to the input. Adaptive windows
    (``adaptive``: ``k`` is the output size): from floor(o * n / k) to ceil((o + 1) * n / k),
    as PyTorch's adaptive pooling and every Keras backend split an axis.
    """
    if adaptive:
        return (o * n) // k, ((o + 1) * n + k - 1) // k
    return max(o * s - p, 0), min(o * s - p + k, n)


def _width_windows(ow, w, kw, sw, pw, adaptive):
    """Every output column's input range along the width: (starts, ends), each (ow,) ints."""
    x0s = np.empty(ow, np.int64)
    x1s = np.empty(ow, np.int64)
    for xx in range(ow):
        x0s[xx], x1s[xx] = _window(xx, w, kw, sw, pw, adaptive)
    return x0s, x1s


def pool_forward(x, y, is_max, pool, strides, pads, adaptive):
    """Max or average pooling of ``x`` (rows, D, H, W, C) into ``y`` (rows, OD, OH, OW, C).

    Windows start at ``position * stride - pad``; taps outside the input are skipped, so an
    average divides by the number of taps inside the input (Keras on TensorFlow, JAX and NumPy)
    and a maximum ignores the padding. A NaN in a window makes the maximum NaN. ``adaptive``:
    windows split each axis into the output's size (see :func:`_window`; ``pool`` is then the
    output's spatial shape).

    One output row at a time: its (OW * C) results accumulate in float64 while the window's
    input rows are read in order, each input row once per output column it feeds (2x faster
    than window by window on the seeds' 2x2 pools, the same sums in the same order).
    """
    n, d, h, w, c = x.shape
    od, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    kd, kh, kw = pool
    sd, sh, sw = strides
    pd, ph, pw = pads
    x0s, x1s = _width_windows(ow, w, kw, sw, pw, adaptive)
    acc = np.empty(ow * c, np.float64)
    for b in range(n):
        for z in range(od):
            z0, z1 = _window(z, d, kd, sd, pd, adaptive)
            for yy in range(oh):
                y0, y1 = _window(yy, h, kh, sh, ph, adaptive)
                acc[:] = -np.inf if is_max else 0.0
                for iz in range(z0, z1):
                    for iy in range(y0, y1):
                        xr = x[b, iz, iy]
                        for xx in range(ow):
                            o = xx * c
                            for ix in range(x0s[xx], x1s[xx]):
                                if is_max:
                                    for j in range(c):
                                        v = xr[ix, j]
                                        if v > acc[o + j] or math.isnan(v):
                                            acc[o + j] = v
                                else:
                                    for j in range(c):
                                        acc[o + j] += xr[ix, j]
                yr = y[b, z, yy]
                for xx in range(ow):
                    o = xx * c
                    if is_max:
                        for j in range(c):
                            yr[xx, j] = acc[o + j]
                    else:
                        inv = 1.0 / ((z1 - z0) * (y1 - y0) * (x1s[xx] - x0s[xx]))
                        for j in range(c):
                            yr[xx, j] = acc[o + j] * inv


def global_pool(x, y, is_max):
    """``y[i, c]`` = max or mean of ``x[i, :, c]`` for ``x`` (rows, steps, C), ``y`` (rows, C)."""
    n, s, c = x.shape
    acc = np.empty(c, np.float64)
    for i in range(n):
        for j in range(c):
            acc[j] = -np.inf if is_max else 0.0
        for t in range(s):
            if is_max:
                for j in range(c):
                    v = x[i, t, j]
                    if v > acc[j] or math.isnan(v):
                        acc[j] = v
            else:
                for j in range(c):
                    acc[j] += x[i, t, j]
        for j in range(c):
            y[i, j] = acc[j] if is_max else acc[j] / s


def global_average_masked(x, mask, y, channels_first):
    """Mean over the steps whose ``mask`` (rows, steps) is not 0, as Keras's
    GlobalAveragePooling1D: ``x`` (rows, steps, C), or (rows, C, steps) if ``channels_first``;
    ``y`` (rows, C). A sample with every step masked gets NaN (0 / 0, as in Keras)."""
    n = x.shape[0]
    c = y.shape[1]
    s = mask.shape[1]
    acc = np.empty(c, np.float64)
    for i in range(n):
        cnt = 0.0
        for j in range(c):
            acc[j] = 0.0
        for t in range(s):
            if mask[i, t] != 0:
                cnt += 1.0
                for j in range(c):
                    acc[j] += x[i, j, t] if channels_first else x[i, t, j]
        for j in range(c):
            y[i, j] = acc[j] / cnt


def window_copy(x, y, offsets):
    """``y[i, z, r, q] = x[i, z + oz, r + oy, q + ox]``, zero where that is outside ``x``: zero
    padding (negative offsets) and cropping (positive ones), on (rows, D, H, W, C) arrays."""
    n, d, h, w, c = x.shape
    od, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    oz, oy, ox = offsets
    q0 = max(0, -ox)  # first output column inside the input
    q1 = min(ow, w - ox)  # one past the last
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    o = 0
    for i in range(n):
        for z in range(od):
            iz = z + oz
            for r in range(oh):
                iy = r + oy
                a = np.uint64(o)
                if iz < 0 or iz >= d or iy < 0 or iy >= h or q1 <= q0:
                    for j in range(np.uint64(ow * c)):
                        yf[a + j] = 0.0
                else:
                    for j in range(np.uint64(q0 * c)):
                        yf[a + j] = 0.0
                    s = np.uint64((((i * d + iz) * h + iy) * w + q0 + ox) * c)
                    a1 = np.uint64(o + q0 * c)
                    for j in range(np.uint64((q1 - q0) * c)):
                        yf[a1 + j] = xf[s + j]
                    a2 = np.uint64(o + q1 * c)
                    for j in range(np.uint64((ow - q1) * c)):
                        yf[a2 + j] = 0.0
                o += ow * c


def upsample_nearest(x, y, factors):
    """Repeat every element of ``x`` (rows, D, H, W, C) ``factors`` times along each spatial
    axis into ``y`` (rows, D*fd, H*fh, W*fw, C)."""
    n, d, h, w, c = x.shape
    fd, fh, fw = factors
    od, oh, ow = d * fd, h * fh, w * fw
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    o = 0
    for i in range(n):
        for z in range(od):
            for r in range(oh):
                base = (((i * d + z // fd) * h + r // fh) * w) * c
                for q in range(ow):
                    s = np.uint64(base + (q // fw) * c)
                    a = np.uint64(o)
                    for j in range(np.uint64(c)):
                        yf[a + j] = xf[s + j]
                    o += c


def _cubic_weights(t):
    """PyTorch's bicubic convolution weights (A = -0.75) of the 4 taps around offset ``t``
    (float32 in, float32 out)."""
    a = np.float32(-0.75)
    one = np.float32(1.0)
    two = np.float32(2.0)
    x1 = t + one
    x2 = one - t
    x3 = two - t
    w0 = ((a * x1 - np.float32(5.0) * a) * x1 + np.float32(8.0) * a) * x1 - np.float32(4.0) * a
    w1 = ((a + two) * t - (a + np.float32(3.0))) * t * t + one
    w2 = ((a + two) * x2 - (a + np.float32(3.0))) * x2 * x2 + one
    w3 = ((a * x3 - np.float32(5.0) * a) * x3 + np.float32(8.0) * a) * x3 - np.float32(4.0) * a
    return w0, w1, w2, w3


RESIZE_MODES = {"bilinear": 0, "bicubic": 1, "nearest": 2}  # the kernels' ``mode``
ANTIALIAS = 3  # added to bilinear's or bicubic's mode: PyTorch's antialiased resize


def _aa_filter(x, cubic):
    """PyTorch's antialiasing filters: the triangle, or the cubic with a = -0.5."""
    x = abs(x)
    if not cubic:
        return max(0.0, 1.0 - x)
    a = -0.5
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


def _resize_width(size_in, size_out, mode):
    """How many taps an output index reads along an axis (the tables' width)."""
    if mode < ANTIALIAS:
        return 4 if mode == 1 else (1 if mode == 2 else 2)
    scale = size_in / size_out
    support = (2.0 if mode == ANTIALIAS + 1 else 1.0) * max(scale, 1.0)
    return int(math.ceil(support)) * 2 + 1


def _resize_taps(size_in, size_out, mode, idx, wts):
    """For each output index along one axis: its input indices (clamped) and weights, as
    PyTorch's interpolate computes them with align_corners=False: bilinear (mode 0, 2 taps),
    bicubic (1, 4 taps), nearest-exact (2, 1 tap: the input cell under the output's centre), or
    antialiased bilinear or bicubic (3, 4: a filter as wide as the scale, normalized, as PIL).
    Source positions and weights in float32 arithmetic, as PyTorch's float kernels (it decides
    which way a value lands when an integer image's result is rounded). Unused taps have
    weight 0."""
    scale = np.float32(size_in) / np.float32(size_out)
    half = np.float32(0.5)
    for o in range(size_out):
        for k in range(idx.shape[1]):
            idx[o, k] = 0
            wts[o, k] = 0.0
        src = scale * (np.float32(o) + half) - half
        if mode >= ANTIALIAS:
            cubic = mode == ANTIALIAS + 1
            support = (2.0 if cubic else 1.0) * (scale if scale >= 1.0 else 1.0)
            invscale = 1.0 / scale if scale >= 1.0 else 1.0
            center = scale * (np.float32(o) + half)
            lo = max(int(center - support + 0.5), 0)
            n = min(int(center + support + 0.5), size_in) - lo
            total = 0.0
            for k in range(n):
                w = _aa_filter((k + lo - center + 0.5) * invscale, cubic)
                idx[o, k] = lo + k
                wts[o, k] = w
                total += w
            if total != 0.0:
                for k in range(n):
                    wts[o, k] /= total
        elif mode == 1:
            i0 = math.floor(src)
            w0, w1, w2, w3 = _cubic_weights(src - np.float32(i0))
            wts[o, 0] = w0
            wts[o, 1] = w1
            wts[o, 2] = w2
            wts[o, 3] = w3
            for k in range(4):
                idx[o, k] = min(max(i0 - 1 + k, 0), size_in - 1)
        elif mode == 2:
            idx[o, 0] = min(int(math.floor((np.float32(o) + half) * scale)), size_in - 1)
            wts[o, 0] = 1.0
        else:
            src = max(src, np.float32(0.0))
            i0 = int(src)
            i1 = i0 + 1 if i0 < size_in - 1 else i0
            lam = src - np.float32(i0)
            idx[o, 0] = i0
            idx[o, 1] = i1
            wts[o, 0] = np.float32(1.0) - lam
            wts[o, 1] = lam


def _resize_tables(sh, sw, oh, ow, mode):
    """Both axes' taps (indices into the source window, weights), each (outputs, width)."""
    ky = _resize_width(sh, oh, mode)
    kx = _resize_width(sw, ow, mode)
    iy = np.empty((oh, ky), np.int64)
    wy = np.empty((oh, ky), np.float64)
    ix = np.empty((ow, kx), np.int64)
    wx = np.empty((ow, kx), np.float64)
    _resize_taps(sh, oh, mode, iy, wy)
    _resize_taps(sw, ow, mode, ix, wx)
    return iy, wy, ix, wx


def resize2d(x, y, mode, sh, sw, oy, ox, fill, rnd, lo, hi):
    """Resize of an (sh, sw) window of ``x`` (rows, H, W, C) into ``y`` (rows, OH, OW, C) with
    PyTorch's half-pixel sampling (align_corners=False, no antialiasing; ``mode`` as in
    :data:`RESIZE_MODES`), as Keras's UpSampling2D and Resizing on its PyTorch backend. Window
    cell (r, q) is ``x[r + oy, q + ox]``, or ``fill`` where that is outside ``x`` (the padding
    of pad_to_aspect_ratio; a crop is a window inside ``x``). ``rnd``: results rounded half to
    even (from the float64 sum) and clipped to [lo, hi], as an integer image's."""
    n, h, w, c = x.shape
    oh, ow = y.shape[1], y.shape[2]
    iy, wy, ix, wx = _resize_tables(sh, sw, oh, ow, mode)
    acc = np.empty(c, np.float64)
    for i in range(n):
        for r in range(oh):
            for q in range(ow):
                for j in range(c):
                    acc[j] = 0.0
                for a in range(iy.shape[1]):
                    ya = iy[r, a] + oy
                    for b in range(ix.shape[1]):
                        wgt = wy[r, a] * wx[q, b]
                        xb = ix[q, b] + ox
                        if 0 <= ya < h and 0 <= xb < w:
                            for j in range(c):
                                acc[j] += wgt * x[i, ya, xb, j]
                        else:
                            for j in range(c):
                                acc[j] += wgt * fill
                if rnd:
                    for j in range(c):
                        y[i, r, q, j] = min(max(np.rint(acc[j]), lo), hi)
                else:
                    for j in range(c):
                        y[i, r, q, j] = acc[j]


# ----------------------------------------------------------------------------- backward kernels


def pool_backward(x, dy, dx, is_max, pool, strides, pads, adaptive):
    """Add the gradient of :func:`pool_forward` into ``dx``: ``x`` and ``dx`` (rows, D, H, W, C),
    ``dy`` (rows, OD, OH, OW, C). Max: each window's ``dy`` goes to its first maximal element in
    scan order (the last NaN if any), found again from ``x``, as PyTorch's max_pool picks it.
    Average: ``dy`` over the number of taps inside the input, to each of them. One output row
    at a time, as the forward."""
    n, d, h, w, c = x.shape
    od, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    kd, kh, kw = pool
    sd, sh, sw = strides
    pd, ph, pw = pads
    x0s, x1s = _width_windows(ow, w, kw, sw, pw, adaptive)
    best = np.empty(ow * c, np.float64)
    # where each maximum is: its window row (in scan order) and column. The gradient then goes
    # out in a second pass over the window, adding where an input is its window's maximum:
    # scattering it through one decoded flat index per output cost four integer divisions
    # each, and through (row, column) pairs still twice the streaming pass.
    argr = np.empty(ow * c, np.int64)
    argx = np.empty(ow * c, np.int64)
    for b in range(n):
        for z in range(od):
            z0, z1 = _window(z, d, kd, sd, pd, adaptive)
            for yy in range(oh):
                y0, y1 = _window(yy, h, kh, sh, ph, adaptive)
                dyr = dy[b, z, yy]
                if is_max:
                    for xx in range(ow):
                        for j in range(c):
                            best[xx * c + j] = -np.inf
                            argr[xx * c + j] = 0
                            argx[xx * c + j] = x0s[xx]
                    t = 0
                    for iz in range(z0, z1):
                        for iy in range(y0, y1):
                            xr = x[b, iz, iy]
                            for xx in range(ow):
                                o = xx * c
                                for ix in range(x0s[xx], x1s[xx]):
                                    for j in range(c):
                                        v = xr[ix, j]
                                        if v > best[o + j] or math.isnan(v):
                                            best[o + j] = v
                                            argr[o + j] = t
                                            argx[o + j] = ix
                            t += 1
                    t = 0
                    for iz in range(z0, z1):
                        for iy in range(y0, y1):
                            dxr = dx[b, iz, iy]
                            for xx in range(ow):
                                o = xx * c
                                for ix in range(x0s[xx], x1s[xx]):
                                    for j in range(c):
                                        if argr[o + j] == t and argx[o + j] == ix:
                                            dxr[ix, j] += dyr[xx, j]
                            t += 1
                else:
                    for iz in range(z0, z1):
                        for iy in range(y0, y1):
                            dxr = dx[b, iz, iy]
                            for xx in range(ow):
                                inv = 1.0 / ((z1 - z0) * (y1 - y0) * (x1s[xx] - x0s[xx]))
                                for ix in range(x0s[xx], x1s[xx]):
                                    for j in range(c):
                                        dxr[ix, j] += dyr[xx, j] * inv


def global_pool_backward(x, dy, dx, is_max):
    """Add the gradient of :func:`global_pool` into ``dx`` (rows, steps, C), given ``dy``
    (rows, C). Max: ``dy`` split evenly among the steps equal to the maximum (``torch.amax``'s
    gradient; the NaN steps where the maximum is NaN). Average: ``dy / steps`` to every step."""
    n, s, c = x.shape
    if not is_max:
        inv = 1.0 / s
        for i in range(n):
            for t in range(s):
                for j in range(c):
                    dx[i, t, j] += dy[i, j] * inv
        return
    best = np.empty(c, np.float64)
    cnt = np.empty(c, np.float64)
    for i in range(n):
        for j in range(c):
            best[j] = -np.inf
            cnt[j] = 0.0
        for t in range(s):
            for j in range(c):
                v = x[i, t, j]
                if v > best[j] or math.isnan(v):
                    best[j] = v
        for t in range(s):
            for j in range(c):
                v = x[i, t, j]
                if v == best[j] or (math.isnan(v) and math.isnan(best[j])):
                    cnt[j] += 1.0
        for t in range(s):
            for j in range(c):
                v = x[i, t, j]
                if v == best[j] or (math.isnan(v) and math.isnan(best[j])):
                    dx[i, t, j] += dy[i, j] / cnt[j]


def global_average_masked_backward(mask, dy, dx, channels_first):
    """Add the gradient of :func:`global_average_masked` into ``dx`` (rows, steps, C), or (rows,
    C, steps) if ``channels_first``: ``dy / valid steps`` at the steps whose ``mask`` is not 0.
    A sample with every step masked gets none (its output is NaN)."""
    n = dx.shape[0]
    c = dy.shape[1]
    s = mask.shape[1]
    for i in range(n):
        cnt = 0.0
        for t in range(s):
            if mask[i, t] != 0:
                cnt += 1.0
        if cnt == 0.0:
            continue
        inv = 1.0 / cnt
        for t in range(s):
            if mask[i, t] != 0:
                for j in range(c):
                    if channels_first:
                        dx[i, j, t] += dy[i, j] * inv
                    else:
                        dx[i, t, j] += dy[i, j] * inv


def window_copy_backward(dy, dx, offsets):
    """Add the gradient of :func:`window_copy` into ``dx`` (rows, D, H, W, C):
    ``dx[i, z + oz, r + oy, q + ox] += dy[i, z, r, q]`` wherever that is inside ``dx`` (the
    gradient of padding is the crop of ``dy``; of cropping, ``dy`` placed back in the middle)."""
    n, d, h, w, c = dx.shape
    od, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    oz, oy, ox = offsets
    q0 = max(0, -ox)
    q1 = min(ow, w - ox)
    if q1 <= q0:
        return
    dxf = dx.reshape(dx.size)
    dyf = dy.reshape(dy.size)
    for i in range(n):
        for z in range(od):
            iz = z + oz
            if iz < 0 or iz >= d:
                continue
            for r in range(oh):
                iy = r + oy
                if iy < 0 or iy >= h:
                    continue
                s = np.uint64((((i * d + iz) * h + iy) * w + q0 + ox) * c)
                a = np.uint64((((i * od + z) * oh + r) * ow + q0) * c)
                for j in range(np.uint64((q1 - q0) * c)):
                    dxf[s + j] += dyf[a + j]


def upsample_nearest_backward(dy, dx, factors):
    """Add the gradient of :func:`upsample_nearest` into ``dx`` (rows, D, H, W, C): each input
    cell gets the sum of ``dy`` over the block of outputs it was repeated into."""
    n, d, h, w, c = dx.shape
    fd, fh, fw = factors
    od, oh, ow = d * fd, h * fh, w * fw
    dxf = dx.reshape(dx.size)
    dyf = dy.reshape(dy.size)
    o = 0
    for i in range(n):
        for z in range(od):
            for r in range(oh):
                base = (((i * d + z // fd) * h + r // fh) * w) * c
                for q in range(ow):
                    s = np.uint64(base + (q // fw) * c)
                    a = np.uint64(o)
                    for j in range(np.uint64(c)):
                        dxf[s + j] += dyf[a + j]
                    o += c


def resize2d_backward(dy, dx, mode, sh, sw, oy, ox):
    """Add the gradient of :func:`resize2d` into ``dx`` (rows, H, W, C), given ``dy`` (rows, OH,
    OW, C): the transpose of the resize, each output's gradient added into the input cells it
    read with the same weights (clamped taps at the edges add into the edge cells; the fill
    has no gradient)."""
    n, h, w, c = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    iy, wy, ix, wx = _resize_tables(sh, sw, oh, ow, mode)
    acc = np.zeros((sh, sw, c), np.float64)
    for i in range(n):
        acc[:] = 0.0
        for r in range(oh):
            for q in range(ow):
                for a in range(iy.shape[1]):
                    for b in range(ix.shape[1]):
                        wgt = wy[r, a] * wx[q, b]
                        ya = iy[r, a]
                        xb = ix[q, b]
                        for j in range(c):
                            acc[ya, xb, j] += wgt * dy[i, r, q, j]
        for p in range(max(0, -oy), min(sh, h - oy)):
            for q in range(max(0, -ox), min(sw, w - ox)):
                for j in range(c):
                    dx[i, p + oy, q + ox, j] += acc[p, q, j]


# ----------------------------------------------------------------------------- emit


def _static(e, what: str) -> None:
    for s in list(e.x_shapes) + list(e.y_shapes):
        if any(d is None for d in s):
            from ..runtime.codegen import CodegenError

            raise CodegenError(
                f"{what} (node '{e.step.node}') needs every dimension known when the plan is compiled; "
                f"got input {e.x_shapes[0]} and output {e.y_shapes[0]} (batch excluded)"
            )


def _spatial_views(e, rank: int, channels_first: bool, x: str | None = None, y: str | None = None):
    """Input and output as (rows, D, H, W, C) views (channels_first: (rows * C, ..., 1)); ``x``
    and ``y`` name other arrays of the input's and output's shapes (their gradients)."""
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    r = e.rows()
    if channels_first:
        c, sp, osp = xs[0], xs[1:], ys[1:]
        r, ch = f"{r} * {c}", 1
    else:
        ch, sp, osp = xs[-1], xs[:-1], ys[:-1]
    fill = (1,) * (3 - rank)
    d_in, d_out = fill + tuple(sp), fill + tuple(osp)
    x5 = f"{x or e.x[0]}.reshape(({r}, {d_in[0]}, {d_in[1]}, {d_in[2]}, {ch}))"
    y5 = f"{y or e.y[0]}.reshape(({r}, {d_out[0]}, {d_out[1]}, {d_out[2]}, {ch}))"
    return x5, y5, tuple(sp)


def _pool_window(a, rank: int, spatial) -> tuple:
    """(pool, strides, pads before, adaptive) as the kernels' three axes. Adaptive pooling
    passes its output size as the pool (see :func:`_window`)."""
    fill = (1,) * (3 - rank)
    if "output_size" in a:
        return fill + tuple(a["output_size"]), (1, 1, 1), (0, 0, 0), True
    pool = list(a["pool_size"])
    strides = list(a["strides"]) if a["strides"] is not None else pool
    pads = conv_pads(a["padding"], spatial, pool, strides, [1] * rank)
    return fill + tuple(pool), fill + tuple(strides), (0,) * (3 - rank) + tuple(pads), False


def _pool_emit(layer: str, kind: str, rank: int):
    def emit(e):
        _static(e, layer)
        a = e.attrs
        x5, y5, sp = _spatial_views(e, rank, a["data_format"] == "channels_first")
        return [kernel_call(e, pool_forward, x5, y5, kind == "Max", *_pool_window(a, rank, sp))]

    return emit


def _pool_backward(layer: str, kind: str, rank: int):
    def backward(e):
        if e.dx[0] is None:
            return []
        _static(e, layer)
        a = e.attrs
        cf = a["data_format"] == "channels_first"
        x5, _, sp = _spatial_views(e, rank, cf)
        dx5, dy5, _ = _spatial_views(e, rank, cf, e.dx[0], e.dy[0])
        return [kernel_call(e, pool_backward, x5, dy5, dx5, kind == "Max", *_pool_window(a, rank, sp))]

    return backward


def _global_emit(kind: str, rank: int):
    def emit(e):
        _static(e, f"Global{kind}Pooling{rank}D")
        (xs,) = e.x_shapes
        r = e.rows()
        cf = e.attrs["data_format"] == "channels_first"
        c = xs[0] if cf else xs[-1]
        s = math.prod(xs) // c
        mask = e.m[0] if e.m else None
        if mask is not None and kind == "Average" and rank == 1:
            return [e.call(global_average_masked, e.x[0], mask, f"{e.y[0]}.reshape(({r}, {c}))", cf)]
        if cf:
            x3, y2 = f"{e.x[0]}.reshape(({r} * {c}, {s}, 1))", f"{e.y[0]}.reshape(({r} * {c}, 1))"
        else:
            x3, y2 = f"{e.x[0]}.reshape(({r}, {s}, {c}))", f"{e.y[0]}.reshape(({r}, {c}))"
        return [e.call(global_pool, x3, y2, kind == "Max")]

    return emit


def _global_backward(kind: str, rank: int):
    def backward(e):
        if e.dx[0] is None:
            return []
        _static(e, f"Global{kind}Pooling{rank}D")
        (xs,) = e.x_shapes
        r = e.rows()
        cf = e.attrs["data_format"] == "channels_first"
        c = xs[0] if cf else xs[-1]
        s = math.prod(xs) // c
        mask = e.m[0] if e.m else None
        if mask is not None and kind == "Average" and rank == 1:
            dy2 = f"{e.dy[0]}.reshape(({r}, {c}))"
            return [e.call(global_average_masked_backward, mask, dy2, e.dx[0], cf)]
        if cf:
            x3, dx3 = (f"{v}.reshape(({r} * {c}, {s}, 1))" for v in (e.x[0], e.dx[0]))
            dy2 = f"{e.dy[0]}.reshape(({r} * {c}, 1))"
        else:
            x3, dx3 = (f"{v}.reshape(({r}, {s}, {c}))" for v in (e.x[0], e.dx[0]))
            dy2 = f"{e.dy[0]}.reshape(({r}, {c}))"
        return [e.call(global_pool_backward, x3, dy2, dx3, kind == "Max")]

    return backward


def _pad_crop_emit(layer: str, rank: int, sign: int, attr: str, has_format: bool):
    def emit(e):
        _static(e, layer)
        a = e.attrs
        cf = has_format and a["data_format"] == "channels_first"
        x5, y5, _ = _spatial_views(e, rank, cf)
        pairs = _pairs(a[attr], rank, layer, attr)
        before = tuple(p[0] for p in pairs)
        offsets = (0,) * (3 - rank) + tuple(-b if sign > 0 else b for b in before)
        return [kernel_call(e, window_copy, x5, y5, offsets)]

    return emit


def _pad_crop_backward(layer: str, rank: int, sign: int, attr: str, has_format: bool):
    def backward(e):
        if e.dx[0] is None:
            return []
        _static(e, layer)
        a = e.attrs
        cf = has_format and a["data_format"] == "channels_first"
        dx5, dy5, _ = _spatial_views(e, rank, cf, e.dx[0], e.dy[0])
        pairs = _pairs(a[attr], rank, layer, attr)
        before = tuple(p[0] for p in pairs)
        offsets = (0,) * (3 - rank) + tuple(-b if sign > 0 else b for b in before)
        return [kernel_call(e, window_copy_backward, dy5, dx5, offsets)]

    return backward


def image_views(e, channels_first: bool, x: str | None = None, y: str | None = None):
    """Input and output of a 2D image step as (rows, H, W, C) views for the resize kernels
    (channels_first: (rows * C, H, W, 1)), and the input's (H, W); ``x`` and ``y`` name other
    arrays of their shapes (the gradients)."""
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    r = e.rows()
    if channels_first:
        r, ch, isp, osp = f"{r} * {xs[0]}", 1, xs[1:], ys[1:]
    else:
        ch, isp, osp = xs[-1], xs[:-1], ys[:-1]
    x4 = f"{x or e.x[0]}.reshape(({r}, {isp[0]}, {isp[1]}, {ch}))"
    y4 = f"{y or e.y[0]}.reshape(({r}, {osp[0]}, {osp[1]}, {ch}))"
    return x4, y4, tuple(isp)


def _upsampling_emit(rank: int):
    def emit(e):
        _static(e, f"UpSampling{rank}D")
        a = e.attrs
        cf = a.get("data_format") == "channels_first"
        size = [a["size"]] if rank == 1 else list(a["size"])
        interp = a.get("interpolation", "nearest")
        if interp == "nearest":
            x5, y5, _ = _spatial_views(e, rank, cf)
            return [kernel_call(e, upsample_nearest, x5, y5, (1,) * (3 - rank) + tuple(size))]
        x4, y4, isp = image_views(e, cf)
        return [e.call(resize2d, x4, y4, RESIZE_MODES[interp], isp[0], isp[1], 0, 0, 0.0, False, 0.0, 0.0)]

    return emit


def _upsampling_backward(rank: int):
    def backward(e):
        if e.dx[0] is None:
            return []
        _static(e, f"UpSampling{rank}D")
        a = e.attrs
        cf = a.get("data_format") == "channels_first"
        size = [a["size"]] if rank == 1 else list(a["size"])
        interp = a.get("interpolation", "nearest")
        if interp == "nearest":
            dx5, dy5, _ = _spatial_views(e, rank, cf, e.dx[0], e.dy[0])
            return [kernel_call(e, upsample_nearest_backward, dy5, dx5, (1,) * (3 - rank) + tuple(size))]
        dx4, dy4, isp = image_views(e, cf, e.dx[0], e.dy[0])
        return [e.call(resize2d_backward, dy4, dx4, RESIZE_MODES[interp], isp[0], isp[1], 0, 0)]

    return backward


# ----------------------------------------------------------------------------- references


def _to_last(x, attrs):
    return np.moveaxis(x, 1, -1) if attrs.get("data_format") == "channels_first" else x


def _from_last(y, attrs):
    return np.moveaxis(y, -1, 1) if attrs.get("data_format") == "channels_first" else y


def _pool_reference(kind: str):
    def reference(attrs, inputs, params, masks=None):
        x = _to_last(inputs[0], attrs)
        rank = x.ndim - 2
        pool = list(attrs["pool_size"])
        strides = list(attrs["strides"]) if attrs["strides"] is not None else pool
        pads = []
        for n, k, s in zip(x.shape[1:-1], pool, strides):
            if attrs["padding"] == "valid":
                pads.append((0, 0))
            else:
                total = max(0, (-(-n // s) - 1) * s + k - n)
                pads.append((total // 2, total - total // 2))
        width = [(0, 0), *pads, (0, 0)]
        xp = np.pad(x, width, constant_values=-np.inf if kind == "Max" else 0.0)
        ones = np.pad(np.ones(x.shape), width)
        out = [(xp.shape[1 + i] - pool[i]) // strides[i] + 1 for i in range(rank)]
        taps = []
        counts = []
        for tap in itertools.product(*(range(k) for k in pool)):
            sl = (slice(None),) + tuple(
                slice(t, t + (o - 1) * s + 1, s) for t, o, s in zip(tap, out, strides)
            )
            taps.append(xp[sl])
            counts.append(ones[sl])
        if kind == "Max":
            y = np.max(taps, axis=0)
        else:
            y = np.sum(taps, axis=0) / np.sum(counts, axis=0)
        return [_from_last(y, attrs)]

    return reference


def _global_reference(kind: str):
    def reference(attrs, inputs, params, masks=None):
        x = _to_last(inputs[0], attrs)
        axes = tuple(range(1, x.ndim - 1))
        mask = masks[0] if masks else None
        if mask is not None and kind == "Average":
            m = (np.asarray(mask) != 0).astype(np.float64)[:, :, None]
            with np.errstate(invalid="ignore"):  # every step masked: 0 / 0 = NaN, as in Keras
                y = np.where(m > 0, x, 0.0).sum(axis=1) / m.sum(axis=1)
        elif kind == "Max":
            y = x.max(axis=axes)
        else:
            y = x.mean(axis=axes)
        if attrs["keepdims"]:
            y = _from_last(y.reshape((y.shape[0],) + (1,) * len(axes) + (y.shape[-1],)), attrs)
        return [y]

    return reference


def _adaptive_reference(kind: str):
    def reference(attrs, inputs, params, masks=None):
        x = _to_last(inputs[0], attrs)
        reduce = np.max if kind == "Max" else np.mean
        ranges = []
        for n, k in zip(x.shape[1:-1], attrs["output_size"]):
            ranges.append([(math.floor(i * n / k), math.ceil((i + 1) * n / k)) for i in range(k)])
        y = np.empty((x.shape[0], *attrs["output_size"], x.shape[-1]), x.dtype)
        for pos in itertools.product(*(range(k) for k in attrs["output_size"])):
            window = (slice(None),) + tuple(slice(*ranges[a][i]) for a, i in enumerate(pos))
            y[(slice(None), *pos)] = reduce(x[window], axis=tuple(range(1, x.ndim - 1)))
        return [_from_last(y, attrs)]

    return reference


def _pad_crop_reference(rank: int, sign: int, attr: str, has_format: bool):
    def reference(attrs, inputs, params, masks=None):
        x = _to_last(inputs[0], attrs) if has_format else inputs[0]
        pairs = _pairs(attrs[attr], rank, "", attr)
        if sign > 0:
            y = np.pad(x, [(0, 0), *pairs, (0, 0)])
        else:
            sl = tuple(slice(a, x.shape[1 + i] - b) for i, (a, b) in enumerate(pairs))
            y = x[(slice(None), *sl)]
        return [_from_last(y, attrs) if has_format else y]

    return reference


def _torch_taps(n_in: int, n_out: int, cubic: bool):
    """(indices, weights), each (n_out, taps): PyTorch's interpolate along one axis."""
    scale = n_in / n_out
    src = scale * (np.arange(n_out) + 0.5) - 0.5
    if cubic:
        i0 = np.floor(src).astype(int)
        t = src - i0
        a = -0.75

        def near(v):  # |v| <= 1
            return ((a + 2) * v - (a + 3)) * v * v + 1

        def far(v):  # 1 < |v| < 2
            return ((a * v - 5 * a) * v + 8 * a) * v - 4 * a

        w = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
        idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
        return idx, w
    src = np.maximum(src, 0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    return np.stack([i0, i1], axis=1), np.stack([1 - lam, lam], axis=1)


def _upsampling_reference(rank: int):
    def reference(attrs, inputs, params, masks=None):
        cf = attrs.get("data_format") == "channels_first"
        x = np.moveaxis(inputs[0], 1, -1) if cf else inputs[0]
        size = [attrs["size"]] if rank == 1 else list(attrs["size"])
        interp = attrs.get("interpolation", "nearest")
        if interp == "nearest":
            y = x
            for ax, f in enumerate(size):
                y = np.repeat(y, f, axis=1 + ax)
        else:
            y = x
            for ax, f in enumerate(size):
                n_in = y.shape[1 + ax]
                idx, w = _torch_taps(n_in, n_in * f, interp == "bicubic")
                taken = np.take(y, idx, axis=1 + ax)  # (..., n_out, taps, ...)
                shape = [1] * taken.ndim
                shape[1 + ax], shape[2 + ax] = w.shape
                y = (taken * w.reshape(shape)).sum(axis=2 + ax)
        return [np.moveaxis(y, -1, 1) if cf else y]

    return reference


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
        emit=_pool_emit(name, kind, rank),
        emit_backward=_pool_backward(name, kind, rank),
        reference=_pool_reference(kind),
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
        emit=_global_emit(kind, rank),
        emit_backward=_global_backward(kind, rank),
        reference=_global_reference(kind),
        uses_mask=kind == "Average" and rank == 1,
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

# ----------------------------------------------------------------------------- adaptive pooling


def _adaptive_infer(layer: str, rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, rank + 2, layer)
        fmt = attrs["data_format"]
        _, channels = split_channels(x.shape, fmt)
        return [_out_type(attrs, x, join_channels(x.shape[0], tuple(attrs["output_size"]), channels, fmt))]

    return infer


def _adaptive(kind: str, rank: int, doc: str) -> LayerDef:
    name = f"Adaptive{kind}Pooling{rank}D"
    return LayerDef(
        name=name,
        attrs=(
            ints("output_size", rank, REQUIRED, "Size of the output along each spatial axis."),
            DATA_FORMAT_ATTR,
            *COMMON_ATTRS,
        ),
        infer=_adaptive_infer(name, rank),
        emit=_pool_emit(name, kind, rank),
        emit_backward=_pool_backward(name, kind, rank),
        reference=_adaptive_reference(kind),
        positional=("output_size",),
        doc=doc
        + " Output position i of an axis of n entries pools entries floor(i * n / size) to "
        "ceil((i + 1) * n / size) - 1, as PyTorch's adaptive pooling: windows differ by at most "
        "one entry and may overlap; an output larger than the input repeats entries.",
    )


ADAPTIVE_AVERAGE_POOLING1D = _adaptive(
    "Average", 1, "Averages a sequence (batch, steps, channels) into `output_size` steps, whatever its length."
)
ADAPTIVE_AVERAGE_POOLING2D = _adaptive(
    "Average", 2, "Averages images into an `output_size` grid of cells per channel, whatever their size."
)
ADAPTIVE_AVERAGE_POOLING3D = _adaptive(
    "Average", 3, "Averages volumes into an `output_size` grid of cells per channel, whatever their size."
)
ADAPTIVE_MAX_POOLING1D = _adaptive(
    "Max", 1, "Takes the maximum of a sequence over `output_size` windows of steps, whatever its length."
)
ADAPTIVE_MAX_POOLING2D = _adaptive(
    "Max", 2, "Takes each channel's maximum over an `output_size` grid of image cells, whatever the image's size."
)
ADAPTIVE_MAX_POOLING3D = _adaptive(
    "Max", 3, "Takes each channel's maximum over an `output_size` grid of volume cells, whatever the volume's size."
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


def pairs_nd(value, rank: int, layer: str, attr: str) -> tuple[tuple[int, int], ...]:
    """Padding or cropping amounts for ``rank`` spatial axes as (before, after) pairs: ``1`` ->
    ((1, 1), ...); ``[1, 2]`` -> ((1, 1), (2, 2)); ``[[0, 1], [2, 3]]`` as is. Each entry may
    itself be an int or a pair (``[1, [2, 3]]``), as Keras allows."""
    if _is_count(value):
        return ((value, value),) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank:
        pairs = tuple(_as_pair(v) for v in value)
        if all(p is not None for p in pairs):
            return pairs
    names = ("rows", "cols") if rank == 2 else ("dim1", "dim2", "dim3")
    sides = ("[top, bottom], [left, right]" if rank == 2 else
             "[left_dim1, right_dim1], [left_dim2, right_dim2], [left_dim3, right_dim3]")  # fmt: skip
    raise ShapeError(
        f"{layer}: {attr} must be an int, [{', '.join(names)}] or [{sides}] of non-negative ints; got {value!r}"
    )


def pairs_2d(value, layer: str, attr: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """:func:`pairs_nd` for images."""
    return pairs_nd(value, 2, layer, attr)


def _pairs(value, rank: int, layer: str, attr: str) -> tuple[tuple[int, int], ...]:
    return (tuple(value),) if rank == 1 else pairs_nd(value, rank, layer, attr)


def _spatial_pad_infer(layer: str, rank: int, sign: int, attr: str, has_format: bool):
    """ZeroPadding (sign +1) and Cropping (sign -1): add or remove rows/steps on each side."""

    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, rank + 2, layer)
        fmt = attrs["data_format"] if has_format else "channels_last"
        spatial, channels = split_channels(x.shape, fmt)
        pairs = _pairs(attrs[attr], rank, layer, attr)
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
    emit=_pad_crop_emit("ZeroPadding1D", 1, +1, "padding", has_format=True),
    emit_backward=_pad_crop_backward("ZeroPadding1D", 1, +1, "padding", has_format=True),
    reference=_pad_crop_reference(1, +1, "padding", has_format=True),
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
    emit=_pad_crop_emit("ZeroPadding2D", 2, +1, "padding", has_format=True),
    emit_backward=_pad_crop_backward("ZeroPadding2D", 2, +1, "padding", has_format=True),
    reference=_pad_crop_reference(2, +1, "padding", has_format=True),
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
    emit=_pad_crop_emit("Cropping1D", 1, -1, "cropping", has_format=False),
    emit_backward=_pad_crop_backward("Cropping1D", 1, -1, "cropping", has_format=False),
    reference=_pad_crop_reference(1, -1, "cropping", has_format=False),
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
    emit=_pad_crop_emit("Cropping2D", 2, -1, "cropping", has_format=True),
    emit_backward=_pad_crop_backward("Cropping2D", 2, -1, "cropping", has_format=True),
    reference=_pad_crop_reference(2, -1, "cropping", has_format=True),
    positional=("cropping",),
    doc="Removes rows at the top and bottom and columns at the left and right of images, by the "
    "amounts in `cropping`. At least one row and one column must remain.",
)

_PAD3D_DOC = (
    "An int (every side), [dim1, dim2, dim3] (symmetric per axis) or "
    "[[before, after], [before, after], [before, after]]."
)

ZERO_PADDING3D = LayerDef(
    name="ZeroPadding3D",
    attrs=(
        Attr("padding", "any", [[1, 1], [1, 1], [1, 1]], "Zeros added around the volume. " + _PAD3D_DOC),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_spatial_pad_infer("ZeroPadding3D", 3, +1, "padding", has_format=True),
    emit=_pad_crop_emit("ZeroPadding3D", 3, +1, "padding", has_format=True),
    emit_backward=_pad_crop_backward("ZeroPadding3D", 3, +1, "padding", has_format=True),
    reference=_pad_crop_reference(3, +1, "padding", has_format=True),
    positional=("padding",),
    doc="Adds zeros before and after each of the three spatial axes of volumes "
    "(batch, dim1, dim2, dim3, channels), by the amounts in `padding`.",
)

CROPPING3D = LayerDef(
    name="Cropping3D",
    attrs=(
        Attr("cropping", "any", [[1, 1], [1, 1], [1, 1]], "Entries removed. " + _PAD3D_DOC),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_spatial_pad_infer("Cropping3D", 3, -1, "cropping", has_format=True),
    emit=_pad_crop_emit("Cropping3D", 3, -1, "cropping", has_format=True),
    emit_backward=_pad_crop_backward("Cropping3D", 3, -1, "cropping", has_format=True),
    reference=_pad_crop_reference(3, -1, "cropping", has_format=True),
    positional=("cropping",),
    doc="Removes entries before and after each of the three spatial axes of volumes, by the "
    "amounts in `cropping`. At least one entry must remain along each axis.",
)

# ----------------------------------------------------------------------------- upsampling


def _upsampling_infer(layer: str, rank: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        require_rank(x, rank + 2, layer)
        interp = attrs.get("interpolation", "nearest")
        if interp.startswith("lanczos"):
            raise ShapeError(
                f"{layer}: interpolation '{interp}' is not supported: Keras computes it differently on "
                "each backend (its PyTorch backend refuses it); use nearest, bilinear or bicubic"
            )
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
    emit=_upsampling_emit(1),
    emit_backward=_upsampling_backward(1),
    reference=_upsampling_reference(1),
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
    emit=_upsampling_emit(2),
    emit_backward=_upsampling_backward(2),
    reference=_upsampling_reference(2),
    positional=("size",),
    doc="Enlarges images by integer factors along rows and columns: 'nearest' repeats each "
    "pixel into a size[0] x size[1] block; the other interpolations resize the image smoothly "
    "to the same output size.",
)

UP_SAMPLING3D = LayerDef(
    name="UpSampling3D",
    attrs=(
        ints("size", 3, [2, 2, 2], "Upsampling factor along each spatial axis."),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_upsampling_infer("UpSampling3D", 3),
    emit=_upsampling_emit(3),
    emit_backward=_upsampling_backward(3),
    reference=_upsampling_reference(3),
    positional=("size",),
    doc="Enlarges volumes (batch, dim1, dim2, dim3, channels) by repeating each entry "
    "size[0] x size[1] x size[2] times.",
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
    ADAPTIVE_AVERAGE_POOLING1D,
    ADAPTIVE_AVERAGE_POOLING2D,
    ADAPTIVE_AVERAGE_POOLING3D,
    ADAPTIVE_MAX_POOLING1D,
    ADAPTIVE_MAX_POOLING2D,
    ADAPTIVE_MAX_POOLING3D,
    ZERO_PADDING1D,
    ZERO_PADDING2D,
    CROPPING1D,
    CROPPING2D,
    ZERO_PADDING3D,
    CROPPING3D,
    UP_SAMPLING1D,
    UP_SAMPLING2D,
    UP_SAMPLING3D,
)
