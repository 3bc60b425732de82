"""Convolution layers: Conv1D/2D/3D, Conv1DTranspose/2DTranspose, SeparableConv1D/2D,
DepthwiseConv1D/2D.

Every layer here takes an input of rank ``rank + 2`` (batch, spatial axes, channels; or batch,
channels, spatial axes with ``data_format: channels_first``), needs a known channel dimension
(it sizes the kernel), lets unknown spatial dimensions through as ``None``, and drops the mask
(Keras's convolutions do not support masking).
"""

from __future__ import annotations

import itertools
import math

from . import activations
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
from .core import ACTIVATION_ATTR, DATA_FORMAT_ATTR, kernel_and_bias, kernel_bias_attrs

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = (
    "add_bias_act",
    "window_rows",
    "fill_patches",
    "planar_load",
    "planar_gather",
    "scatter_patches",
    "add_into",
)  # called by kernels: compiled in place by the runtime

# ----------------------------------------------------------------------------- shared attributes



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


# ----------------------------------------------------------------------------- kernels
#
# Every kernel works on channels-last arrays with three spatial axes: (rows, D, H, W, C). A 1D
# layer's input is seen as (rows, 1, 1, L, C) and a 2D layer's as (rows, 1, H, W, C) (views, no
# copy), so one kernel serves the three ranks. channels_first inputs are transposed into
# scratch, run channels-last, and transposed back.
#
# Convolution is a product over patches through BLAS: the patches of a tile of consecutive
# output positions are copied into a scratch matrix (tile, kd*kh*kw*C), by contiguous runs of
# kw*C floats (one kernel row in channels-last order) where the window lies inside the input,
# then one ``np.dot`` writes the tile's rows of the output, then bias and activation run on
# them while they are in cache (conv_forward). Inputs with few channels (kw*C <= 16, the
# first layer of an image model) would copy runs too short to be fast; they take
# conv_planar_forward, which gathers transposed patches from a planar copy of each image, in
# runs of one output row. Measured choices (2-core machine, see benchmarks/bench_conv.py):
# - copies index with unsigned ints: with signed ones Numba's negative-index wraparound keeps
#   LLVM from vectorizing them (3x slower);
# - the convolution runs on one core: its products are sized for OpenBLAS's single-threaded
#   small-matrix path (below). Splitting tiles over cores with a Numba prange was about 1.7x
#   faster at batch 1 (on a busy machine) but took 13 s to compile and added about 8 s to
#   the compilation of every plan calling it.
# - Winograd F(2,3) for 3x3 stride-1 layers (16 products of (tiles, C) x (C, F), half the
#   multiply-adds) only broke even on the largest seed layer (123x123x32 -> 32) and lost on
#   the others: its transforms cost what the product saves. Not used.

# Tile sizes, measured on the 2-core machine (OpenBLAS 0.3.30, SkylakeX kernels, one thread):
# products of up to 1e6 multiply-adds (M*N*K) take OpenBLAS's small-matrix path, without
# packing and without threads, at 100-130 GFLOP/s; just above, the packed path runs at about
# 80 per thread and wakes a second thread per call, which costs milliseconds per call when
# the other core is busy. So a tile of output positions is sized to stay on the small path
# (and its patches in L2); for layers too big for that, it holds about 1 MiB of patches.
SMALL_GEMM = 1_000_000
CONV_TILE_FLOATS = 65536  # at most this many floats of patches (256 KiB) on the small path
BIG_TILE_FLOATS = 262144  # patches per tile when even 32 positions exceed SMALL_GEMM


def conv_tile_rows(k: int, f: int) -> int:
    """Output positions per tile, for patches of ``k`` floats and ``f`` filters."""
    k = max(k, 1)
    rows = SMALL_GEMM // (k * max(f, 1))
    if rows >= 32:
        return min(rows, max(32, CONV_TILE_FLOATS // k))
    return max(64, BIG_TILE_FLOATS // k)


def add_bias_act(y2, b, use_bias, act):
    """``y2 = act(y2 + b)`` on a 2-D block of output rows."""
    if use_bias:
        rows, cols = y2.shape
        for i in range(rows):
            for j in range(cols):
                y2[i, j] += b[j]
    activations.apply_activation(y2, act)


def window_rows(p, geo, rowsrc):
    """For output position ``p`` (flat over batch, OD, OH, OW): the offsets in the flat input of
    the kd*kh input rows its window reads, into ``rowsrc`` (-1 for a row in the padding); returns
    the position's column ``x0`` along OW. Shared by the patch gather and its adjoint."""
    d, h, w, c, od, oh, ow, kd, kh, _, sd, sh, _, dd, dh, _, pd, ph, _ = geo
    q = p // ow
    x0 = p - q * ow
    yy = q % oh
    q //= oh
    zz = q % od
    bb = q // od
    t = 0
    for kz in range(kd):
        iz = zz * sd - pd + kz * dd
        for ky in range(kh):
            iy = yy * sh - ph + ky * dh
            if iz < 0 or iz >= d or iy < 0 or iy >= h:
                rowsrc[t] = -1
            else:
                rowsrc[t] = ((bb * d + iz) * h + iy) * w * c
            t += 1
    return x0


def fill_patches(xf, pf, m, k, pos0, geo, c0, cg, rowsrc):
    """Copy the patches of output positions ``pos0 .. pos0+m`` into rows of ``pf`` (flat, row
    length ``k``), input channels ``c0 .. c0+cg``; taps outside the input are zeros.

    Positions are walked one output row at a time: the input rows a window reads are found
    once per output row (``rowsrc``, scratch of kd*kh ints: their offsets in ``xf``, -1 when
    outside the input), then each position copies one run of kw*cg floats per kernel row
    where the window lies inside the input, one run of cg floats per tap elsewhere. Copies
    index with unsigned ints (no negative-index wraparound), so that LLVM vectorizes them.
    """
    w, c, ow, kd, kh, kw, sw, dw, pw = (
        geo[2],
        geo[3],
        geo[6],
        geo[7],
        geo[8],
        geo[9],
        geo[12],
        geo[15],
        geo[18],
    )
    run = kw * cg
    fast = cg == c and dw == 1
    lo = (pw + sw - 1) // sw  # positions lo .. hi-1 see no padding along the width
    hi = min(ow, (w + pw - (kw - 1) * dw - 1) // sw + 1)
    nrow = kd * kh
    p = pos0
    r = 0
    while r < m:
        x0 = window_rows(p, geo, rowsrc)
        seg = min(ow - x0, m - r)
        col = r * k
        for ox in range(x0, x0 + seg):
            ix0 = ox * sw - pw
            if fast and ox >= lo and ox < hi:
                for t in range(nrow):
                    s = rowsrc[t]
                    a = np.uint64(col)
                    if s < 0:
                        for j in range(np.uint64(run)):
                            pf[a + j] = 0.0
                    else:
                        u = np.uint64(s + ix0 * c)
                        for j in range(np.uint64(run)):
                            pf[a + j] = xf[u + j]
                    col += run
            else:
                for t in range(nrow):
                    s = rowsrc[t]
                    for kx in range(kw):
                        ix = ix0 + kx * dw
                        a = np.uint64(col)
                        if s < 0 or ix < 0 or ix >= w:
                            for j in range(np.uint64(cg)):
                                pf[a + j] = 0.0
                        else:
                            u = np.uint64(s + ix * c + c0)
                            for j in range(np.uint64(cg)):
                                pf[a + j] = xf[u + j]
                        col += cg
        r += seg
        p += seg


def conv_forward(x, w, b, use_bias, act, y, patches, wg, yg, groups, strides, dil, pads):
    """Convolution of ``x`` (rows, D, H, W, C) with ``w`` (kd, kh, kw, C/groups, F) into ``y``
    (rows, OD, OH, OW, F), then bias and activation ``act``.

    ``pads`` are the zeros before each spatial axis (those after follow from the shapes).
    Scratch: ``patches`` (tile, kd*kh*kw*C/groups); with groups > 1, ``wg`` (groups, K, F/groups)
    and ``yg`` (tile, F/groups).
    """
    n, d, h, wd, c = x.shape
    kd, kh, kw, cg, f = w.shape
    od, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    k = kd * kh * kw * cg
    total = n * od * oh * ow
    y2 = y.reshape((total, f))
    w2 = w.reshape((k, f))
    if (kd * kh * kw == 1 and groups == 1 and strides[0] == 1 and strides[1] == 1 and strides[2] == 1
            and pads[0] == 0 and pads[1] == 0 and pads[2] == 0):  # fmt: skip
        # 1x1 convolution: the input is its own patch matrix
        x2 = x.reshape((total, c))
        tile = patches.shape[0]
        for p0 in range(0, total, tile):
            m = min(tile, total - p0)
            np.dot(x2[p0 : p0 + m], w2, y2[p0 : p0 + m])
            add_bias_act(y2[p0 : p0 + m], b, use_bias, act)
        return
    fg = f // groups
    if groups > 1:
        for g in range(groups):
            for i in range(k):
                for j in range(fg):
                    wg[g, i, j] = w2[i, g * fg + j]
    xf = x.reshape(x.size)
    tile = patches.shape[0]
    pf = patches.reshape(patches.size)
    geo = (d, h, wd, c, od, oh, ow, kd, kh, kw, strides[0], strides[1], strides[2],
           dil[0], dil[1], dil[2], pads[0], pads[1], pads[2])  # fmt: skip
    rowsrc = np.empty(kd * kh, np.int64)
    for p0 in range(0, total, tile):
        m = min(tile, total - p0)
        for g in range(groups):
            fill_patches(xf, pf, m, k, p0, geo, g * cg, cg, rowsrc)
            if groups == 1:
                np.dot(patches[:m], w2, y2[p0 : p0 + m])
            else:
                np.dot(patches[:m], wg[g], yg[:m])
                for i in range(m):
                    for j in range(fg):
                        y2[p0 + i, g * fg + j] = yg[i, j]
        add_bias_act(y2[p0 : p0 + m], b, use_bias, act)


def conv_planar_forward(x, w, b, use_bias, act, y, xp, pt, strides, dil, pads):
    """Convolution for inputs with few channels (groups = 1), where channels-last patch runs
    (kw*C floats) would be too short to copy fast: same arguments and result as
    :func:`conv_forward`, with other scratch.

    Each image is first copied into ``xp`` (C, Dp, Hp, sw, Wq): channel planes, zero-padded,
    each row split into its ``sw`` phases, so that the inputs one tap reads along an output
    row are one contiguous run of OW floats. Tiles of whole output rows are then gathered
    transposed, ``pt`` holding (taps*C, positions) (flat scratch), and multiplied as
    ``pt.T @ w``, which BLAS takes as a transposed operand.
    """
    n, c = x.shape[0], x.shape[4]
    kd, kh, kw, _, f = w.shape
    od, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    k = kd * kh * kw * c
    w2 = w.reshape((k, f))
    npos = od * oh * ow
    y2 = y.reshape((n * npos, f))
    rows_per_tile = max(1, pt.size // (k * ow))
    xpf = xp.reshape(xp.size)
    for j in range(xp.size):  # the padding stays zero: images only overwrite the inside
        xpf[j] = 0.0
    for i in range(n):
        planar_load(x, i, xp, xpf, pads)
        for r0 in range(0, od * oh, rows_per_tile):
            nr = min(rows_per_tile, od * oh - r0)
            m = nr * ow
            p = pt[: k * m]
            planar_gather(xp, xpf, p, r0, nr, m, oh, ow, kd, kh, kw, strides, dil)
            p0 = i * npos + r0 * ow
            np.dot(p.reshape((k, m)).T, w2, y2[p0 : p0 + m])
            add_bias_act(y2[p0 : p0 + m], b, use_bias, act)


def planar_load(x, i, xp, xpf, pads):
    """Copy image ``i`` of ``x`` (rows, D, H, W, C) into the inside of the planar, padded,
    phase-split ``xp`` (C, Dp, Hp, sw, Wq) (``xpf``: its flat view); see conv_planar_forward."""
    _, d, h, wd, c = x.shape
    dp, hp, sw, wq = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    pd, ph, pw = pads
    plane = dp * hp * sw * wq
    for z in range(d):
        for yy in range(h):
            row = ((z + pd) * hp + yy + ph) * sw * wq
            phase = pw % sw
            col = pw // sw
            for xx in range(wd):
                base = row + phase * wq + col
                for ci in range(c):
                    xpf[ci * plane + base] = x[i, z, yy, xx, ci]
                phase += 1
                if phase == sw:
                    phase = 0
                    col += 1


def planar_gather(xp, xpf, p, r0, nr, m, oh, ow, kd, kh, kw, strides, dil):
    """The transposed patches of output rows ``r0 .. r0+nr`` (``m`` = nr*OW positions) of the
    image in ``xp`` into ``p`` (flat, (taps*C, m)), in runs of OW floats."""
    c, dp, hp, sw, wq = xp.shape[0], xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    sd, sh = strides[0], strides[1]
    dd, dh, dw = dil
    t = 0
    for kz in range(kd):
        for ky in range(kh):
            for kx in range(kw):
                off = kx * dw
                for ci in range(c):
                    for rr in range(nr):
                        q = r0 + rr
                        src = (((ci * dp + (q // oh) * sd + kz * dd) * hp + (q % oh) * sh + ky * dh) * sw
                               + off % sw) * wq + off // sw  # fmt: skip
                        a = np.uint64(t * m + rr * ow)
                        u = np.uint64(src)
                        for jj in range(np.uint64(ow)):
                            p[a + jj] = xpf[u + jj]
                    t += 1


def depthwise_forward(x, w, b, use_bias, act, y, strides, dil, pads):
    """Depthwise convolution: ``x`` (rows, D, H, W, C), ``w`` (kd, kh, kw, C, dm), ``y``
    (rows, OD, OH, OW, C*dm) with output channel ``c*dm + m`` from input channel ``c``."""
    n, d, h, wd, c = x.shape
    kd, kh, kw, _, dm = w.shape
    od, oh, ow, co = y.shape[1], y.shape[2], y.shape[3], y.shape[4]
    sd, sh, sw = strides
    dd, dh, dw = dil
    pd, ph, pw = pads
    for b_ in range(n):
        for z in range(od):
            for yy in range(oh):
                yrow = y[b_, z, yy]  # (ow, co)
                for xx in range(ow):
                    for j in range(co):
                        yrow[xx, j] = b[j] if use_bias else 0.0
                for kz in range(kd):
                    iz = z * sd - pd + kz * dd
                    if iz < 0 or iz >= d:
                        continue
                    for ky in range(kh):
                        iy = yy * sh - ph + ky * dh
                        if iy < 0 or iy >= h:
                            continue
                        xrow = x[b_, iz, iy]  # (W, C)
                        for kx in range(kw):
                            wt = w[kz, ky, kx]  # (C, dm)
                            for xx in range(ow):
                                ix = xx * sw - pw + kx * dw
                                if ix < 0 or ix >= wd:
                                    continue
                                if dm == 1:
                                    for ci in range(c):
                                        yrow[xx, ci] += xrow[ix, ci] * wt[ci, 0]
                                else:
                                    for ci in range(c):
                                        v = xrow[ix, ci]
                                        for mi in range(dm):
                                            yrow[xx, ci * dm + mi] += v * wt[ci, mi]
                activations.apply_activation(yrow, act)


def conv_transpose_forward(x, w, b, use_bias, act, y, wt, z, strides, dil, crops):
    """Transposed convolution: ``x`` (rows, D, H, W, C), ``w`` (kd, kh, kw, F, C), ``y``
    (rows, OD, OH, OW, F). Input position ``i`` and tap ``k`` add ``x[i] . w[k]`` to output
    position ``i*stride + k*dilation - crop`` (dropped when outside the output).

    Each tile of input positions is multiplied by all taps at once through BLAS (``wt``,
    (C, taps*F), scratch) into ``z`` (tile, taps*F), whose rows are then added into ``y``.
    """
    n, d, h, wd, c = x.shape
    kd, kh, kw, f, _ = w.shape
    od, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    sd, sh, sw = strides
    dd, dh, dw = dil
    cd, ch, cw = crops
    taps = kd * kh * kw
    w3 = w.reshape((taps, f, c))
    for t in range(taps):
        for j in range(f):
            for ci in range(c):
                wt[ci, t * f + j] = w3[t, j, ci]
    total_in = n * d * h * wd
    total_out = n * od * oh * ow
    y2 = y.reshape((total_out, f))
    for i in range(total_out):
        for j in range(f):
            y2[i, j] = b[j] if use_bias else 0.0
    x2 = x.reshape((total_in, c))
    tile = z.shape[0]
    for p0 in range(0, total_in, tile):
        m = min(tile, total_in - p0)
        np.dot(x2[p0 : p0 + m], wt, z[:m])
        for r in range(m):
            q = p0 + r
            ix = q % wd
            q //= wd
            iy = q % h
            q //= h
            iz = q % d
            b_ = q // d
            t = 0
            for kz in range(kd):
                oz = iz * sd + kz * dd - cd
                for ky in range(kh):
                    oy = iy * sh + ky * dh - ch
                    for kx in range(kw):
                        ox = ix * sw + kx * dw - cw
                        if 0 <= oz < od and 0 <= oy < oh and 0 <= ox < ow:
                            dst = ((b_ * od + oz) * oh + oy) * ow + ox
                            for j in range(f):
                                y2[dst, j] += z[r, t * f + j]
                        t += 1
    activations.apply_activation(y2, act)


def swap_last2(src, dst):
    """``dst[i, b, a] = src[i, a, b]`` for 3-D arrays (channels_first <-> channels_last)."""
    n, a, bb = src.shape
    blk = 32
    for i in range(n):
        for a0 in range(0, a, blk):
            a1 = min(a, a0 + blk)
            for b0 in range(0, bb, blk):
                b1 = min(bb, b0 + blk)
                for p in range(a0, a1):
                    for q in range(b0, b1):
                        dst[i, q, p] = src[i, p, q]


def activation_last_axis(y2, act):
    """Apply activation ``act`` in place over the rows of ``y2`` (for channels_first outputs,
    whose row-wise activations act on the last spatial axis, as in Keras)."""
    activations.apply_activation(y2, act)


# ----------------------------------------------------------------------------- backward kernels
#
# The backward pass mirrors the forward: the gradient of the kernel is patches^T @ dz and that of
# the input is col2im(dz @ kernel^T), both through BLAS on the same tiles of output positions (and
# the same patch copies: channels-last runs, or the planar gather for few input channels) as the
# forward. For stride-1 convolutions with at least as many channels as filters, the input
# gradient is instead the forward convolution of dz with the flipped kernel (a gather, no
# read-modify-write scatter; see _gather_dx). The activation's derivative and the bias gradient
# take one pass over dz before (conv_grad_out). Every kernel ADDS into its gradients (a value
# read by two layers, or a shared layer, gets the sum); a gradient that is not wanted (a frozen
# layer, an input needing none) is skipped with its flag and given a stand-in array that is
# never written.


def add_into(dst, src):
    """``dst += src`` for 2-D arrays of one shape."""
    rows, cols = src.shape
    for i in range(rows):
        for j in range(cols):
            dst[i, j] += src[i, j]


def scatter_patches(dxf, pf, m, k, pos0, geo, c0, cg, rowsrc):
    """The adjoint of :func:`fill_patches`: add the rows of ``pf`` (patch gradients of output
    positions ``pos0 .. pos0+m``, channels ``c0 .. c0+cg``) into the input gradient ``dxf`` (flat,
    channels-last) at the taps they were copied from; taps in the padding are dropped."""
    w, c, ow, kd, kh, kw, sw, dw, pw = (
        geo[2],
        geo[3],
        geo[6],
        geo[7],
        geo[8],
        geo[9],
        geo[12],
        geo[15],
        geo[18],
    )
    run = kw * cg
    fast = cg == c and dw == 1
    lo = (pw + sw - 1) // sw
    hi = min(ow, (w + pw - (kw - 1) * dw - 1) // sw + 1)
    nrow = kd * kh
    p = pos0
    r = 0
    while r < m:
        x0 = window_rows(p, geo, rowsrc)
        seg = min(ow - x0, m - r)
        col = r * k
        for ox in range(x0, x0 + seg):
            ix0 = ox * sw - pw
            if fast and ox >= lo and ox < hi:
                for t in range(nrow):
                    s = rowsrc[t]
                    if s >= 0:
                        a = np.uint64(col)
                        u = np.uint64(s + ix0 * c)
                        for j in range(np.uint64(run)):
                            dxf[u + j] += pf[a + j]
                    col += run
            else:
                for t in range(nrow):
                    s = rowsrc[t]
                    for kx in range(kw):
                        ix = ix0 + kx * dw
                        if s >= 0 and ix >= 0 and ix < w:
                            a = np.uint64(col)
                            u = np.uint64(s + ix * c + c0)
                            for j in range(np.uint64(cg)):
                                dxf[u + j] += pf[a + j]
                        col += cg
        r += seg
        p += seg


def conv_grad_out(pre, y, dy, dz, act, db, need_db):
    """``dz = dy * act'`` (from ``y``, or from ``pre`` for the activations that need their
    input) and, with ``need_db``, ``db += sum of dz's rows``: one pass over (positions, F)
    arrays, by blocks of rows, the bias summed while the block is in cache."""
    rows, f = dy.shape
    acc = np.zeros(f, np.float64)
    blk = 256
    for r0 in range(0, rows, blk):
        r1 = min(rows, r0 + blk)
        if act != 0:
            activations.activation_backward(pre[r0:r1], y[r0:r1], dy[r0:r1], dz[r0:r1], act, False)
        if need_db:
            for i in range(r0, r1):
                for j in range(f):
                    acc[j] += dz[i, j]
    if need_db:
        for j in range(f):
            db[j] += acc[j]


def conv_bias_grad(dz, db):
    """``db += sum of dz's rows`` (dz: (positions, filters)), summed in float64."""
    f = dz.shape[1]
    acc = np.zeros(f, np.float64)
    for i in range(dz.shape[0]):
        for j in range(f):
            acc[j] += dz[i, j]
    for j in range(f):
        db[j] += acc[j]


def conv_backward(x, w, dz, dx, dw, need_dx, need_dw, tile, groups, strides, dil, pads):
    """Gradients of :func:`conv_forward` (before bias and activation): given ``dz`` (rows, OD,
    OH, OW, F), add ``patches^T @ dz`` into ``dw`` ((kd*kh*kw*C/groups, F), with ``need_dw``) and
    ``col2im(dz @ w^T)`` into ``dx`` (shaped as ``x``, with ``need_dx``), by tiles of ``tile``
    output positions (the forward's)."""
    n, d, h, wd, c = x.shape
    kd, kh, kw, cg, f = w.shape
    od, oh, ow = dz.shape[1], dz.shape[2], dz.shape[3]
    k = kd * kh * kw * cg
    total = n * od * oh * ow
    dz2 = dz.reshape((total, f))
    w2 = w.reshape((k, f))
    fg = f // groups
    tw = np.empty((k, fg), np.float32)
    dpatch = np.empty((tile if need_dx else 1, k), np.float32)
    if (kd * kh * kw == 1 and groups == 1 and strides[0] == 1 and strides[1] == 1 and strides[2] == 1
            and pads[0] == 0 and pads[1] == 0 and pads[2] == 0):  # fmt: skip
        # 1x1 convolution: the input is its own patch matrix
        x2 = x.reshape((total, c))
        dx2 = dx.reshape((total, c))
        for p0 in range(0, total, tile):
            m = min(tile, total - p0)
            if need_dw:
                np.dot(x2[p0 : p0 + m].T, dz2[p0 : p0 + m], tw)
                add_into(dw, tw)
            if need_dx:
                np.dot(dz2[p0 : p0 + m], w2.T, dpatch[:m])
                add_into(dx2[p0 : p0 + m], dpatch[:m])
        return
    patches = np.empty((tile if need_dw else 1, k), np.float32)
    wg = np.empty((groups if groups > 1 else 0, k, fg), np.float32)
    dzg = np.empty((tile if groups > 1 else 0, fg), np.float32)
    for g in range(wg.shape[0]):
        for i in range(k):
            for j in range(fg):
                wg[g, i, j] = w2[i, g * fg + j]
    xf = x.reshape(x.size)
    dxf = dx.reshape(dx.size)
    pf = patches.reshape(patches.size)
    dpf = dpatch.reshape(dpatch.size)
    geo = (d, h, wd, c, od, oh, ow, kd, kh, kw, strides[0], strides[1], strides[2],
           dil[0], dil[1], dil[2], pads[0], pads[1], pads[2])  # fmt: skip
    rowsrc = np.empty(kd * kh, np.int64)
    for p0 in range(0, total, tile):
        m = min(tile, total - p0)
        if groups == 1:
            if need_dw:
                fill_patches(xf, pf, m, k, p0, geo, 0, c, rowsrc)
                np.dot(patches[:m].T, dz2[p0 : p0 + m], tw)
                add_into(dw, tw)
            if need_dx:
                np.dot(dz2[p0 : p0 + m], w2.T, dpatch[:m])
                scatter_patches(dxf, dpf, m, k, p0, geo, 0, c, rowsrc)
            continue
        for g in range(groups):
            for i in range(m):
                for j in range(fg):
                    dzg[i, j] = dz2[p0 + i, g * fg + j]
            if need_dw:
                fill_patches(xf, pf, m, k, p0, geo, g * cg, cg, rowsrc)
                np.dot(patches[:m].T, dzg[:m], tw)
                for i in range(k):
                    for j in range(fg):
                        dw[i, g * fg + j] += tw[i, j]
            if need_dx:
                np.dot(dzg[:m], wg[g].T, dpatch[:m])
                scatter_patches(dxf, dpf, m, k, p0, geo, g * cg, cg, rowsrc)


def conv_grad_input_s1(w, dz, dx, tile, dil, pads):
    """``dx += col2im(dz @ w^T)`` for stride-1 convolutions with groups = 1, computed as the
    convolution of ``dz`` (rows, OD, OH, OW, F) with the kernel flipped along every spatial axis
    and transposed (``(kd, kh, kw, F, C)``), with ``(k-1)*dilation - pad`` zeros before each
    axis: the patches are gathered from ``dz`` as the forward gathers them from ``x``, and each
    tile's product is added into ``dx`` while in cache (no scatter)."""
    n, d, h, wd, c = dx.shape
    kd, kh, kw, _, f = w.shape
    od, oh, ow = dz.shape[1], dz.shape[2], dz.shape[3]
    k = kd * kh * kw * f
    wf = np.empty((kd, kh, kw, f, c), np.float32)
    for a in range(kd):
        for b in range(kh):
            for t in range(kw):
                src = w[kd - 1 - a, kh - 1 - b, kw - 1 - t]
                dst = wf[a, b, t]
                for ci in range(c):
                    for j in range(f):
                        dst[j, ci] = src[ci, j]
    wf2 = wf.reshape((k, c))
    total = n * d * h * wd
    dx2 = dx.reshape((total, c))
    patches = np.empty((tile, k), np.float32)
    out = np.empty((tile, c), np.float32)
    pf = patches.reshape(patches.size)
    dzf = dz.reshape(dz.size)
    geo = (od, oh, ow, f, d, h, wd, kd, kh, kw, 1, 1, 1, dil[0], dil[1], dil[2],
           (kd - 1) * dil[0] - pads[0], (kh - 1) * dil[1] - pads[1], (kw - 1) * dil[2] - pads[2])  # fmt: skip
    rowsrc = np.empty(kd * kh, np.int64)
    for p0 in range(0, total, tile):
        m = min(tile, total - p0)
        fill_patches(dzf, pf, m, k, p0, geo, 0, f, rowsrc)
        np.dot(patches[:m], wf2, out[:m])
        add_into(dx2[p0 : p0 + m], out[:m])


def conv_planar_grad_w(x, w, dz, dw, xp, pt, strides, dil, pads):
    """``dw += patches^T @ dz`` for the layers :func:`conv_planar_forward` runs (few input
    channels, groups = 1), with the same planar copies and transposed patch tiles (scratch
    ``xp`` and ``pt`` as there); ``dw`` is (kd*kh*kw*C, F)."""
    n, c = x.shape[0], x.shape[4]
    kd, kh, kw, _, f = w.shape
    od, oh, ow = dz.shape[1], dz.shape[2], dz.shape[3]
    k = kd * kh * kw * c
    npos = od * oh * ow
    dz2 = dz.reshape((n * npos, f))
    tw = np.empty((k, f), np.float32)
    rows_per_tile = max(1, pt.size // (k * ow))
    xpf = xp.reshape(xp.size)
    for j in range(xp.size):
        xpf[j] = 0.0
    for i in range(n):
        planar_load(x, i, xp, xpf, pads)
        for r0 in range(0, od * oh, rows_per_tile):
            nr = min(rows_per_tile, od * oh - r0)
            m = nr * ow
            p = pt[: k * m]
            planar_gather(xp, xpf, p, r0, nr, m, oh, ow, kd, kh, kw, strides, dil)
            p0 = i * npos + r0 * ow
            np.dot(p.reshape((k, m)), dz2[p0 : p0 + m], tw)
            add_into(dw, tw)


def depthwise_backward(x, w, dz, dx, dw, need_dx, need_dw, strides, dil, pads):
    """Gradients of :func:`depthwise_forward` (before bias and activation): ``dz`` (rows, OD,
    OH, OW, C*dm); adds into ``dx`` (shaped as ``x``) and ``dw`` (shaped as ``w``)."""
    n, d, h, wd, c = x.shape
    kd, kh, kw, _, dm = w.shape
    od, oh, ow = dz.shape[1], dz.shape[2], dz.shape[3]
    sd, sh, sw = strides
    dd, dh, dwl = dil
    pd, ph, pw = pads
    acc = np.zeros((kd, kh, kw, c, dm) if need_dw else (0, 0, 0, 0, 0), np.float64)
    for b_ in range(n):
        for z in range(od):
            for yy in range(oh):
                drow = dz[b_, z, yy]  # (ow, c*dm)
                for kz in range(kd):
                    iz = z * sd - pd + kz * dd
                    if iz < 0 or iz >= d:
                        continue
                    for ky in range(kh):
                        iy = yy * sh - ph + ky * dh
                        if iy < 0 or iy >= h:
                            continue
                        xrow = x[b_, iz, iy]  # (W, C)
                        dxrow = dx[b_, iz, iy]
                        for kx in range(kw):
                            wt = w[kz, ky, kx]  # (C, dm)
                            for xx in range(ow):
                                ix = xx * sw - pw + kx * dwl
                                if ix < 0 or ix >= wd:
                                    continue
                                if need_dw:
                                    at = acc[kz, ky, kx]
                                    for ci in range(c):
                                        v = xrow[ix, ci]
                                        for mi in range(dm):
                                            at[ci, mi] += v * drow[xx, ci * dm + mi]
                                if need_dx:
                                    for ci in range(c):
                                        s = 0.0
                                        for mi in range(dm):
                                            s += drow[xx, ci * dm + mi] * wt[ci, mi]
                                        dxrow[ix, ci] += s
    if need_dw:
        for kz in range(kd):
            for ky in range(kh):
                for kx in range(kw):
                    for ci in range(c):
                        for mi in range(dm):
                            dw[kz, ky, kx, ci, mi] += acc[kz, ky, kx, ci, mi]


def conv_transpose_backward(x, w, dz, dx, dw, need_dx, need_dw, tile, strides, dil, crops):
    """Gradients of :func:`conv_transpose_forward` (before bias and activation): for each tile of
    input positions, the output gradients every tap reads are gathered into ``zt`` (tile,
    taps*F), the adjoint of the forward's scatter; then ``dx += zt @ wt^T`` and
    ``dwt += x^T @ zt`` through BLAS (``wt`` (C, taps*F) as in the forward)."""
    n, d, h, wd, c = x.shape
    kd, kh, kw, f, _ = w.shape
    od, oh, ow = dz.shape[1], dz.shape[2], dz.shape[3]
    sd, sh, sw = strides
    dd, dh, dwl = dil
    cd, ch, cw = crops
    taps = kd * kh * kw
    tf = taps * f
    w3 = w.reshape((taps, f, c))
    wt = np.empty((c, tf), np.float32)
    for t in range(taps):
        for j in range(f):
            for ci in range(c):
                wt[ci, t * f + j] = w3[t, j, ci]
    total_in = n * d * h * wd
    total_out = n * od * oh * ow
    dz2 = dz.reshape((total_out, f))
    x2 = x.reshape((total_in, c))
    dx2 = dx.reshape((total_in, c))
    zt = np.empty((tile, tf), np.float32)
    tdx = np.empty((tile if need_dx else 0, c), np.float32)
    tw = np.empty((c, tf), np.float32)
    dwt = np.zeros((c, tf) if need_dw else (0, 0), np.float32)
    for p0 in range(0, total_in, tile):
        m = min(tile, total_in - p0)
        for r in range(m):
            q = p0 + r
            ix = q % wd
            q //= wd
            iy = q % h
            q //= h
            iz = q % d
            b_ = q // d
            t = 0
            for kz in range(kd):
                oz = iz * sd + kz * dd - cd
                for ky in range(kh):
                    oy = iy * sh + ky * dh - ch
                    for kx in range(kw):
                        ox = ix * sw + kx * dwl - cw
                        if 0 <= oz < od and 0 <= oy < oh and 0 <= ox < ow:
                            src = ((b_ * od + oz) * oh + oy) * ow + ox
                            for j in range(f):
                                zt[r, t * f + j] = dz2[src, j]
                        else:
                            for j in range(f):
                                zt[r, t * f + j] = 0.0
                        t += 1
        if need_dx:
            np.dot(zt[:m], wt.T, tdx[:m])
            add_into(dx2[p0 : p0 + m], tdx[:m])
        if need_dw:
            np.dot(x2[p0 : p0 + m].T, zt[:m], tw)
            add_into(dwt, tw)
    if need_dw:
        dw3 = dw.reshape((taps, f, c))
        for t in range(taps):
            for j in range(f):
                for ci in range(c):
                    dw3[t, j, ci] += dwt[ci, t * f + j]


def swap_last2_add(src, dst):
    """``dst[i, b, a] += src[i, a, b]`` for 3-D arrays (a channels-last gradient added into a
    channels_first one)."""
    n, a, bb = src.shape
    blk = 32
    for i in range(n):
        for a0 in range(0, a, blk):
            a1 = min(a, a0 + blk)
            for b0 in range(0, bb, blk):
                b1 = min(bb, b0 + blk)
                for p in range(a0, a1):
                    for q in range(b0, b1):
                        dst[i, q, p] += src[i, p, q]


# ----------------------------------------------------------------------------- emit helpers


def kernel_call(e, fn, *args) -> str:
    """``e.call(fn, *args)`` with tuples of ints written as tuples of ``np.int64``: Numba types
    a literal tuple ``(1, 2, 2)`` by its values and would compile the kernel again for every
    distinct stride, dilation or padding."""
    conv = [("(" + ", ".join(e.lit(int(v)) for v in a) + ("," if len(a) == 1 else "") + ")")
            if isinstance(a, tuple) else a for a in args]  # fmt: skip
    return e.call(fn, *conv)


def no_bias(e) -> str:
    """A zero-length writable array for an absent bias. (``e.empty`` is a module global, which
    Numba types as read-only: a kernel would be compiled a second time for layers without bias.)"""
    return e.tmp("(0,)")


def _static(e, what: str) -> None:
    """Refuse shapes known only at run time: the kernels' scratch is sized when emitting."""
    for s in list(e.x_shapes) + list(e.y_shapes):
        if any(d is None for d in s):
            from ..runtime.codegen import CodegenError

            raise CodegenError(
                f"{what} (node '{e.step.node}') needs every dimension known when the plan is compiled; "
                f"got input {e.x_shapes[0]} and output {e.y_shapes[0]} (batch excluded)"
            )


def _pad3(values, fill: int) -> tuple:
    """Per-axis values of a rank-1/2/3 layer as the kernels' three axes (D, H, W)."""
    return (fill,) * (3 - len(values)) + tuple(int(v) for v in values)


def same_pad_before(length: int, kernel: int, stride: int, dilation: int) -> int:
    """Zeros before an axis for padding 'same' (Keras: the odd one goes after)."""
    eff = (kernel - 1) * dilation + 1
    out = (length + stride - 1) // stride
    total = max(0, (out - 1) * stride + eff - length)
    return total // 2


def conv_pads(padding: str, spatial, kernel, strides, dilation) -> tuple:
    """Zeros before each spatial axis for padding valid, same or causal."""
    if padding == "valid":
        return tuple(0 for _ in spatial)
    if padding == "causal":
        return tuple((k - 1) * d for k, d in zip(kernel, dilation))
    return tuple(same_pad_before(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilation))


def transpose_crops(spatial, kernel, strides, dilation, padding, output_padding) -> tuple:
    """Per axis, how far into the full transposed output (length (L-1)*s + eff) Keras's output
    starts; negative: it starts before, with zeros (output_padding beyond the kernel)."""
    out = []
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilation)):
        op = None if output_padding is None else output_padding[i]
        eff = (k - 1) * d + 1
        if padding == "valid":
            left = eff - 1
        else:
            total = s + eff - 2 if op is None else eff + eff % 2 - 2 + op
            left = min(total // 2 + total % 2, eff - 1)
        out.append(eff - 1 - left)
    return tuple(out)


class _Layout:
    """Spatial dims and channels of one step's input and output, and their 5-D views.

    ``y``: the variable the forward writes (the step's output, or in training the saved
    pre-activation when the backward pass needs it)."""

    def __init__(self, e, rank: int, y: str | None = None):
        self.e = e
        self.rank = rank
        self.cf = e.attrs.get("data_format", "channels_last") == "channels_first"
        (xs,) = e.x_shapes
        (ys,) = e.y_shapes
        if self.cf:
            self.c, self.sp = xs[0], tuple(xs[1:])
            self.f, self.osp = ys[0], tuple(ys[1:])
        else:
            self.c, self.sp = xs[-1], tuple(xs[:-1])
            self.f, self.osp = ys[-1], tuple(ys[:-1])
        self.rows = e.rows()
        self.y = e.y[0] if y is None else y

    @staticmethod
    def five(var: str, rows: str, spatial, ch) -> str:
        d = _pad3(spatial, 1)
        return f"{var}.reshape(({rows}, {d[0]}, {d[1]}, {d[2]}, {ch}))"

    def channels_last_io(self, lines: list) -> tuple[str, str, str | None]:
        """(input, output, transposed-output) as channels-last 5-D views; for channels_first,
        the input is transposed into scratch first and the caller transposes the output back
        with :meth:`finish`."""
        e, r = self.e, self.rows
        s_out = math.prod(self.osp)
        if not self.cf:
            return self.five(e.x[0], r, self.sp, self.c), self.five(self.y, r, self.osp, self.f), None
        yt = e.tmp(f"({r}, {s_out}, {self.f})")
        return self.x_last(lines), self.five(yt, r, self.osp, self.f), yt

    def x_last(self, lines: list) -> str:
        """The input as a channels-last 5-D view (transposed into scratch for channels_first)."""
        e, r = self.e, self.rows
        if not self.cf:
            return self.five(e.x[0], r, self.sp, self.c)
        s_in = math.prod(self.sp)
        xt = e.tmp(f"({r}, {s_in}, {self.c})")
        lines.append(e.call(swap_last2, f"{e.x[0]}.reshape(({r}, {self.c}, {s_in}))", xt))
        return self.five(xt, r, self.sp, self.c)

    def finish(self, lines: list, yt: str | None, act_name: str) -> None:
        """Transpose a channels_first output back, then apply a row-wise activation there."""
        if yt is None:
            return
        e, r = self.e, self.rows
        s_out = math.prod(self.osp)
        lines.append(e.call(swap_last2, yt, f"{self.y}.reshape(({r}, {self.f}, {s_out}))"))
        if act_name in activations.ROW_WISE:
            last = self.osp[-1]
            lines.append(
                e.call(activation_last_axis, f"{self.y}.reshape(({r} * {self.f * s_out // last}, {last}))",
                       activations.code(act_name))
            )  # fmt: skip

    def fused_act(self, act_name: str) -> int:
        """The activation code the channels-last kernel applies (row-wise ones wait for
        channels_first outputs, whose last axis is not the channels)."""
        if self.cf and act_name in activations.ROW_WISE:
            return 0
        return activations.code(act_name)

    # ---- backward

    def grad_out(self, lines: list, saved: dict, db: str | None) -> tuple[str, str]:
        """The gradient of the pre-activation, channels-last, as (5-D view, 2-D (positions, F)
        view): ``dy * act'`` (from the output, or from the saved pre-activation for the
        activations that need it) into the saved ``dz``, in the output's own layout (row-wise
        activations of channels_first outputs act on its last axis), then transposed for
        channels_first. Adds the bias gradient into ``db`` (unless None) on the way."""
        e, r = self.e, self.rows
        c = activations.code(e.attrs["activation"])
        (ys,) = e.y_shapes
        s_out = math.prod(self.osp)
        fused_db = db is not None and not self.cf  # channels-last: summed in the same pass
        dzn = e.dy[0] if c == 0 else saved["dz"]
        if c != 0 or fused_db:
            src = saved["pre"] if activations.needs_input(c) else e.y[0]
            dbv = db if fused_db else no_bias(e)
            lines.append(e.call(conv_grad_out, e.flat2(src, ys, r), e.flat2(e.y[0], ys, r), e.flat2(e.dy[0], ys, r),
                                e.flat2(dzn, ys, r), c, dbv, fused_db))  # fmt: skip
        if self.cf:
            dzt = e.tmp(f"({r}, {s_out}, {self.f})")
            lines.append(e.call(swap_last2, f"{dzn}.reshape(({r}, {self.f}, {s_out}))", dzt))
            dzn = dzt
        dz2 = f"{dzn}.reshape(({r} * {s_out}, {self.f}))"
        if db is not None and not fused_db:
            lines.append(e.call(conv_bias_grad, dz2, db))
        return self.five(dzn, r, self.osp, self.f), dz2

    def grad_in(self, lines: list, x5: str) -> tuple[str, str | None]:
        """(5-D channels-last view the kernels add the input gradient into, scratch to add back
        into a channels_first gradient with :meth:`finish_grad_in`). Without an input gradient,
        ``x5`` stands in (the kernels are told not to write it)."""
        e, r = self.e, self.rows
        if e.dx[0] is None:
            return x5, None
        if not self.cf:
            return self.five(e.dx[0], r, self.sp, self.c), None
        dxt = e.tmp(f"({r}, {math.prod(self.sp)}, {self.c})")
        lines.append(f"{dxt}[:] = 0.0")
        return self.five(dxt, r, self.sp, self.c), dxt

    def finish_grad_in(self, lines: list, dxt: str | None) -> None:
        if dxt is not None:
            e, r = self.e, self.rows
            s_in = math.prod(self.sp)
            lines.append(e.call(swap_last2_add, dxt, f"{e.dx[0]}.reshape(({r}, {self.c}, {s_in}))"))


PLANAR_MAX_RUN = 16  # use conv_planar_forward when a kernel row holds at most this many floats


def _planar(groups: int, k_per_group: int, geometry, strides, pads) -> bool:
    """Whether :func:`conv_planar_forward` runs this convolution (few channels per kernel row)."""
    if geometry is None or groups != 1:
        return False
    _, _, ks = geometry
    cg = k_per_group // math.prod(ks)
    pointwise = math.prod(ks) == 1 and strides == (1, 1, 1) and pads == (0, 0, 0)  # no patches at all
    return ks[2] * cg <= PLANAR_MAX_RUN and not pointwise


def _planar_scratch(e, geometry, k_per_group: int, fg: int, strides, dil, pads) -> tuple[str, str]:
    """The scratch of conv_planar_forward: the planar image ``xp`` and the patch tile ``pt``."""
    sp, osp, ks = geometry
    cg = k_per_group // math.prod(ks)
    ext = [
        max(n + p, (o - 1) * s + (k - 1) * d + 1) for n, p, o, s, k, d in zip(sp, pads, osp, strides, ks, dil)
    ]
    xp = e.tmp(f"({cg}, {ext[0]}, {ext[1]}, {strides[2]}, {-(-ext[2] // strides[2])})")
    rows = max(1, conv_tile_rows(k_per_group, fg) // osp[2])
    pt = e.tmp(f"({k_per_group * rows * osp[2]},)")
    return xp, pt


def _conv_call(
    e, lines, x5, y5, w5, b, use_bias, act, groups, k_per_group, fg, strides, dil, pads, geometry=None
):
    """The call of :func:`conv_forward`, or of :func:`conv_planar_forward` for inputs with few
    channels (``geometry``: input spatial dims, output spatial dims, kernel size, as 3 axes)."""
    if _planar(groups, k_per_group, geometry, strides, pads):
        xp, pt = _planar_scratch(e, geometry, k_per_group, fg, strides, dil, pads)
        lines.append(
            kernel_call(e, conv_planar_forward, x5, w5, b, use_bias, act, y5, xp, pt, strides, dil, pads)
        )
        return
    tile = conv_tile_rows(k_per_group, fg)
    patches = e.tmp(f"({tile}, {k_per_group})")
    if groups > 1:
        wg = e.tmp(f"({groups}, {k_per_group}, {fg})")
        yg = e.tmp(f"({tile}, {fg})")
    else:
        wg = e.tmp("(1, 1, 1)")
        yg = e.tmp("(1, 1)")
    lines.append(kernel_call(e, conv_forward, x5, w5, b, use_bias, act, y5, patches, wg, yg, groups,
                        strides, dil, pads))  # fmt: skip


def _gather_dx(taps: int, c: int, f: int) -> bool:
    """GATHER_DX: whether the input gradient of a stride-1 convolution goes through
    :func:`conv_grad_input_s1` (a product with C columns, then an add per tile) rather than the
    scatter of :func:`conv_backward` (a product with K = F, then a read-modify-write per tap).
    Measured on the 2-core machine at batch 32, 3x3 kernels (ms, scatter / gather): C=F=32 at
    123x123 186 / 138, at 40x40 20 / 15; C=32, F=16: 6.7 / 5.0; C=16, F=32: 5.9 / 6.2; C=8, F=32:
    3.6 / 3.9; C=F=64 (past BLAS's small-matrix path): 31 / 36; 5x5, C=4, F=8: 0.5 / 1.3. So:
    at least as many input channels as filters, and tiles on the small-matrix path."""
    return c >= f and taps * f * c * 32 <= SMALL_GEMM


def _conv_backward_call(e, lines, x5, w5, dz5, dx5, dw2, need_dx, need_dw, groups, k_per_group, fg,
                        strides, dil, pads, geometry=None):  # fmt: skip
    """The calls of :func:`conv_backward`, or of the faster special cases: the kernel gradient
    of the layers the planar forward runs (:func:`conv_planar_grad_w`), and the input gradient
    of stride-1 convolutions without groups through a gather (:func:`conv_grad_input_s1`)
    where it beats the scatter (see GATHER_DX)."""
    tile = conv_tile_rows(k_per_group, fg)
    if need_dw and _planar(groups, k_per_group, geometry, strides, pads):
        xp, pt = _planar_scratch(e, geometry, k_per_group, fg, strides, dil, pads)
        lines.append(kernel_call(e, conv_planar_grad_w, x5, w5, dz5, dw2, xp, pt, strides, dil, pads))
        need_dw = False
    taps = math.prod(geometry[2]) if geometry is not None else 1
    pointwise = taps == 1 and strides == (1, 1, 1) and pads == (0, 0, 0)  # conv_backward's 1x1 path
    c = k_per_group // taps
    if need_dx and groups == 1 and strides == (1, 1, 1) and not pointwise and _gather_dx(taps, c, fg):
        # the product is (positions, taps*F) @ (taps*F, C): tiles sized as a forward with F inputs
        gtile = conv_tile_rows(taps * fg, c)
        lines.append(kernel_call(e, conv_grad_input_s1, w5, dz5, dx5, gtile, dil, pads))
        need_dx = False
    if need_dx or need_dw:
        lines.append(kernel_call(e, conv_backward, x5, w5, dz5, dx5, dw2, need_dx, need_dw, tile, groups,
                                 strides, dil, pads))  # fmt: skip


def _saved_layout(attrs, x_shapes, y_shapes, separable: bool) -> list:
    """The arrays a layer keeps in training, by name, with their shapes per row:

    - ``mid`` (separable layers): the depthwise step's output, channels-last;
    - ``pre``: the pre-activation, for activations whose derivative needs it (gelu, silu...);
    - ``dz`` (any activation but linear): room for ``dy * act'``, which the backward pass writes
      and the kernels then read. Not kept from the forward pass: it is scratch, held here because
      saved arrays persist across steps. A temporary allocated in each step costs page faults
      when it is large (glibc maps blocks from 32 MiB afresh): measured +32 ms per step for the
      60 MB of sequential_cnn's second layer at batch 32 (49 ms against 17 for the pass itself).
    """
    out = []
    if separable:
        _, c = split_channels((None, *x_shapes[0]), attrs["data_format"])
        osp, _ = split_channels((None, *y_shapes[0]), attrs["data_format"])
        out.append(("mid", (math.prod(osp), c * attrs["depth_multiplier"])))
    code = activations.code(attrs["activation"])
    if activations.needs_input(code):
        out.append(("pre", tuple(y_shapes[0])))
    if code != 0:
        out.append(("dz", tuple(y_shapes[0])))
    return out


def _saved(separable: bool):
    def saved(attrs, x_shapes, y_shapes):
        return [(shape, "float32") for _, shape in _saved_layout(attrs, x_shapes, y_shapes, separable)]

    return saved


def _saved_vars(e, separable: bool) -> dict:
    """The step's saved arrays (``e.s``) by name (see _saved_layout)."""
    names = [k for k, _ in _saved_layout(e.attrs, e.x_shapes, e.y_shapes, separable)]
    return dict(zip(names, getattr(e, "s", None) or []))


def _train_emit(body, separable: bool = False):
    """emit_train from a forward body ``body(e, y, act_name)``: with an activation whose
    derivative needs its input, the body writes the pre-activation into the saved ``pre`` and
    the activation runs from there into the output (in the output's own layout: channels_first
    row-wise activations act on its last axis, as in the forward)."""

    def emit_train(e):
        c = activations.code(e.attrs["activation"])
        pre = _saved_vars(e, separable).get("pre")
        if pre is None:
            return body(e, e.y[0], e.attrs["activation"])
        lines = body(e, pre, "linear")
        (ys,) = e.y_shapes
        r = e.rows(output=True)
        lines.append(e.call(activations.activation_forward, e.flat2(pre, ys, r), e.flat2(e.y[0], ys, r), c))
        return lines

    return emit_train


def _no_dw(e) -> str:
    """A stand-in for a kernel gradient that is not wanted (a frozen layer)."""
    return e.tmp("(0, 0)")


def _conv_body(rank: int):
    def body(e, y, act_name):
        _static(e, f"Conv{rank}D")
        a = e.attrs
        lay = _Layout(e, rank, y)
        lines: list = []
        x5, y5, yt = lay.channels_last_io(lines)
        ks = list(a["kernel_size"])
        pads = conv_pads(a["padding"], lay.sp, ks, a["strides"], a["dilation_rate"])
        groups = a["groups"]
        cg = lay.c // groups
        k = math.prod(ks) * cg
        w5 = f"{e.p[0]}.reshape(({', '.join(str(v) for v in _pad3(ks, 1))}, {cg}, {lay.f}))"
        b = e.p[1] if a["use_bias"] else no_bias(e)
        geometry = (_pad3(lay.sp, 1), _pad3(lay.osp, 1), _pad3(ks, 1))
        _conv_call(e, lines, x5, y5, w5, b, a["use_bias"], lay.fused_act(act_name), groups, k,
                   lay.f // groups, _pad3(a["strides"], 1), _pad3(a["dilation_rate"], 1), _pad3(pads, 0),
                   geometry)  # fmt: skip
        lay.finish(lines, yt, act_name)
        return lines

    return body


def _conv_emit(rank: int):
    body = _conv_body(rank)
    return lambda e: body(e, e.y[0], e.attrs["activation"])


def _grad_prologue(e, what: str, rank: int, n_kernels: int = 1, separable: bool = False):
    """The shared start of a convolution's backward: None when no gradient is wanted at all;
    else (layout, lines, dz5, the kernels' gradients), the lines computing ``dz`` (the output
    gradient through the activation) and adding the bias gradient already written."""
    a = e.attrs
    dks = list(e.dp[:n_kernels])
    db = e.dp[n_kernels] if a["use_bias"] else None
    if all(d is None for d in dks) and db is None and e.dx[0] is None:
        return None
    _static(e, what)
    lay = _Layout(e, rank)
    lines: list = []
    dz5, _ = lay.grad_out(lines, _saved_vars(e, separable), db)
    return lay, lines, dz5, dks


def _conv_backward(rank: int):
    def backward(e):
        start = _grad_prologue(e, f"Conv{rank}D", rank)
        if start is None:
            return []
        a = e.attrs
        lay, lines, dz5, (dw,) = start
        if dw is None and e.dx[0] is None:
            return lines
        ks = list(a["kernel_size"])
        pads = conv_pads(a["padding"], lay.sp, ks, a["strides"], a["dilation_rate"])
        groups = a["groups"]
        cg = lay.c // groups
        k = math.prod(ks) * cg
        w5 = f"{e.p[0]}.reshape(({', '.join(str(v) for v in _pad3(ks, 1))}, {cg}, {lay.f}))"
        # the input is read for the kernel gradient only; otherwise its gradient's view stands in
        x5 = lay.x_last(lines) if dw is not None else None
        dx5, dxt = lay.grad_in(lines, x5)
        x5 = x5 or dx5
        dw2 = f"{dw}.reshape(({k}, {lay.f}))" if dw is not None else _no_dw(e)
        geometry = (_pad3(lay.sp, 1), _pad3(lay.osp, 1), _pad3(ks, 1))
        _conv_backward_call(e, lines, x5, w5, dz5, dx5, dw2, e.dx[0] is not None, dw is not None, groups, k,
                            lay.f // groups, _pad3(a["strides"], 1), _pad3(a["dilation_rate"], 1),
                            _pad3(pads, 0), geometry)  # fmt: skip
        lay.finish_grad_in(lines, dxt)
        return lines

    return backward


def _transpose_body(rank: int):
    def body(e, y, act_name):
        _static(e, f"Conv{rank}DTranspose")
        a = e.attrs
        lay = _Layout(e, rank, y)
        lines: list = []
        x5, y5, yt = lay.channels_last_io(lines)
        ks = list(a["kernel_size"])
        crops = transpose_crops(
            lay.sp, ks, a["strides"], a["dilation_rate"], a["padding"], a["output_padding"]
        )
        taps = math.prod(ks)
        w5 = f"{e.p[0]}.reshape(({', '.join(str(v) for v in _pad3(ks, 1))}, {lay.f}, {lay.c}))"
        wt = e.tmp(f"({lay.c}, {taps * lay.f})")
        tile = conv_tile_rows(lay.c, taps * lay.f)
        z = e.tmp(f"({tile}, {taps * lay.f})")
        b = e.p[1] if a["use_bias"] else no_bias(e)
        lines.append(kernel_call(e, conv_transpose_forward, x5, w5, b, a["use_bias"], lay.fused_act(act_name), y5,
                            wt, z, _pad3(a["strides"], 1), _pad3(a["dilation_rate"], 1), _pad3(crops, 0)))  # fmt: skip
        lay.finish(lines, yt, act_name)
        return lines

    return body


def _transpose_emit(rank: int):
    body = _transpose_body(rank)
    return lambda e: body(e, e.y[0], e.attrs["activation"])


def _transpose_backward(rank: int):
    def backward(e):
        start = _grad_prologue(e, f"Conv{rank}DTranspose", rank)
        if start is None:
            return []
        a = e.attrs
        lay, lines, dz5, (dw,) = start
        if dw is None and e.dx[0] is None:
            return lines
        ks = list(a["kernel_size"])
        crops = transpose_crops(
            lay.sp, ks, a["strides"], a["dilation_rate"], a["padding"], a["output_padding"]
        )
        taps = math.prod(ks)
        w5 = f"{e.p[0]}.reshape(({', '.join(str(v) for v in _pad3(ks, 1))}, {lay.f}, {lay.c}))"
        x5 = lay.x_last(lines) if dw is not None else None
        dx5, dxt = lay.grad_in(lines, x5)
        x5 = x5 or dx5
        dw5 = w5.replace(e.p[0], dw, 1) if dw is not None else f"{e.tmp('(0, 0)')}.reshape((0, 0, 0, 0, 0))"
        tile = conv_tile_rows(lay.c, taps * lay.f)
        lines.append(kernel_call(e, conv_transpose_backward, x5, w5, dz5, dx5, dw5, e.dx[0] is not None,
                                 dw is not None, tile, _pad3(a["strides"], 1), _pad3(a["dilation_rate"], 1),
                                 _pad3(crops, 0)))  # fmt: skip
        lay.finish_grad_in(lines, dxt)
        return lines

    return backward


def _depthwise_body(rank: int, separable: bool):
    def body(e, y, act_name):
        _static(e, ("SeparableConv" if separable else "DepthwiseConv") + f"{rank}D")
        a = e.attrs
        lay = _Layout(e, rank, y)
        lines: list = []
        x5, y5, yt = lay.channels_last_io(lines)
        ks = list(a["kernel_size"])
        dm = a["depth_multiplier"]
        pads = conv_pads(a["padding"], lay.sp, ks, a["strides"], a["dilation_rate"])
        dw5 = f"{e.p[0]}.reshape(({', '.join(str(v) for v in _pad3(ks, 1))}, {lay.c}, {dm}))"
        geo = (_pad3(a["strides"], 1), _pad3(a["dilation_rate"], 1), _pad3(pads, 0))
        act = lay.fused_act(act_name)
        if not separable:
            b = e.p[1] if a["use_bias"] else no_bias(e)
            lines.append(kernel_call(e, depthwise_forward, x5, dw5, b, a["use_bias"], act, y5, *geo))
        else:
            cm = lay.c * dm
            # in training the depthwise output is kept (the first saved array) for the backward pass
            mid = _saved_vars(e, True).get("mid") if getattr(e, "training", False) else None
            if mid is None:
                mid = e.tmp(f"({lay.rows}, {math.prod(lay.osp)}, {cm})")
            mid5 = lay.five(mid, lay.rows, lay.osp, cm)
            lines.append(kernel_call(e, depthwise_forward, x5, dw5, no_bias(e), False, 0, mid5, *geo))
            b = e.p[2] if a["use_bias"] else no_bias(e)
            pw5 = f"{e.p[1]}.reshape((1, 1, 1, {cm}, {lay.f}))"
            _conv_call(
                e, lines, mid5, y5, pw5, b, a["use_bias"], act, 1, cm, lay.f, (1, 1, 1), (1, 1, 1), (0, 0, 0)
            )
        lay.finish(lines, yt, act_name)
        return lines

    return body


def _depthwise_emit(rank: int, separable: bool):
    body = _depthwise_body(rank, separable)
    return lambda e: body(e, e.y[0], e.attrs["activation"])


def _depthwise_backward(rank: int, separable: bool):
    def backward(e):
        name = ("SeparableConv" if separable else "DepthwiseConv") + f"{rank}D"
        start = _grad_prologue(e, name, rank, 2 if separable else 1, separable)
        if start is None:
            return []
        a = e.attrs
        lay, lines, dz5, _ = start
        ks = list(a["kernel_size"])
        dm = a["depth_multiplier"]
        pads = conv_pads(a["padding"], lay.sp, ks, a["strides"], a["dilation_rate"])
        geo = (_pad3(a["strides"], 1), _pad3(a["dilation_rate"], 1), _pad3(pads, 0))
        shape5 = f"({', '.join(str(v) for v in _pad3(ks, 1))}, {lay.c}, {dm})"
        dw5 = f"{e.p[0]}.reshape({shape5})"
        ddw = e.dp[0]
        if separable:
            cm = lay.c * dm
            mid5 = lay.five(_saved_vars(e, True)["mid"], lay.rows, lay.osp, cm)
            pw5 = f"{e.p[1]}.reshape((1, 1, 1, {cm}, {lay.f}))"
            dpw = e.dp[1]
            need_mid = ddw is not None or e.dx[0] is not None
            if dpw is not None or need_mid:
                dmid = e.tmp(f"({lay.rows}, {math.prod(lay.osp)}, {cm})") if need_mid else None
                if dmid is not None:
                    lines.append(f"{dmid}[:] = 0.0")
                dmid5 = lay.five(dmid, lay.rows, lay.osp, cm) if dmid is not None else mid5
                dpw2 = f"{dpw}.reshape(({cm}, {lay.f}))" if dpw is not None else _no_dw(e)
                _conv_backward_call(e, lines, mid5, pw5, dz5, dmid5, dpw2, need_mid, dpw is not None, 1, cm,
                                    lay.f, (1, 1, 1), (1, 1, 1), (0, 0, 0))  # fmt: skip
            if not need_mid:
                return lines
            dz5 = dmid5
        elif ddw is None and e.dx[0] is None:
            return lines
        x5 = lay.x_last(lines) if ddw is not None else None
        dx5, dxt = lay.grad_in(lines, x5)
        x5 = x5 or dx5
        ddw5 = (
            f"{ddw}.reshape({shape5})" if ddw is not None else f"{e.tmp('(0, 0)')}.reshape((0, 0, 0, 0, 0))"
        )
        lines.append(kernel_call(e, depthwise_backward, x5, dw5, dz5, dx5, ddw5, e.dx[0] is not None,
                                 ddw is not None, *geo))  # fmt: skip
        lay.finish_grad_in(lines, dxt)
        return lines

    return backward


# ----------------------------------------------------------------------------- references


def _ref_pads(padding, spatial, kernel, strides, dilation) -> list:
    """(before, after) zeros per spatial axis, computed from Keras's output length."""
    out = []
    for n, k, s, d in zip(spatial, kernel, strides, dilation):
        eff = (k - 1) * d + 1
        if padding == "valid":
            out.append((0, 0))
        elif padding == "causal":
            out.append((eff - 1, 0))
        else:
            n_out = -(-n // s)
            total = max(0, (n_out - 1) * s + eff - n)
            out.append((total // 2, total - total // 2))
    return out


def _to_last(x, attrs):
    return np.moveaxis(x, 1, -1) if attrs.get("data_format") == "channels_first" else x


def _from_last(y, attrs):
    return np.moveaxis(y, -1, 1) if attrs.get("data_format") == "channels_first" else y


def _ref_conv(x, kernel, strides, dilation, padding, groups):
    """Grouped cross-correlation of channels-last ``x`` (batch, *spatial, C) with ``kernel``
    (*window, C/groups, F), by a sum over the window's taps."""
    rank = x.ndim - 2
    window = kernel.shape[:rank]
    pads = _ref_pads(padding, x.shape[1:-1], window, strides, dilation)
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    out_sp = [(xp.shape[1 + i] - (window[i] - 1) * dilation[i] - 1) // strides[i] + 1 for i in range(rank)]
    cg = kernel.shape[-2]
    f = kernel.shape[-1]
    fg = f // groups
    y = np.zeros((x.shape[0], *out_sp, f))
    for tap in itertools.product(*(range(k) for k in window)):
        sl = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, s, o in zip(tap, dilation, strides, out_sp)
        )
        patch = xp[(slice(None), *sl)]
        for g in range(groups):
            y[..., g * fg : (g + 1) * fg] += (
                patch[..., g * cg : (g + 1) * cg] @ kernel[tap][:, g * fg : (g + 1) * fg]
            )
    return y


def _finish_ref(y, attrs, bias):
    if bias is not None:
        y = y + bias
    return [activations.reference(attrs["activation"], _from_last(y, attrs))]


def _conv_reference(attrs, inputs, params, masks=None):
    x = _to_last(inputs[0], attrs)
    y = _ref_conv(x, params[0], attrs["strides"], attrs["dilation_rate"], attrs["padding"], attrs["groups"])
    return _finish_ref(y, attrs, params[1] if attrs["use_bias"] else None)


def _ref_depthwise(x, kernel, attrs):
    c, dm = kernel.shape[-2:]
    k = kernel.reshape(kernel.shape[:-2] + (1, c * dm))  # output channel c*dm + m
    return _ref_conv(x, k, attrs["strides"], attrs["dilation_rate"], attrs["padding"], c)


def _depthwise_reference(attrs, inputs, params, masks=None):
    y = _ref_depthwise(_to_last(inputs[0], attrs), params[0], attrs)
    return _finish_ref(y, attrs, params[1] if attrs["use_bias"] else None)


def _separable_reference(attrs, inputs, params, masks=None):
    mid = _ref_depthwise(_to_last(inputs[0], attrs), params[0], attrs)
    pw = params[1]
    y = mid @ pw.reshape(pw.shape[-2:])
    return _finish_ref(y, attrs, params[2] if attrs["use_bias"] else None)


def _transpose_reference(attrs, inputs, params, masks=None):
    """Scatter every input position times every tap into the full output, then take Keras's
    window of it (see ``backend/common/backend_utils.py`` in Keras for the window's start)."""
    x = _to_last(inputs[0], attrs)
    kernel = params[0]  # (*window, F, C)
    rank = x.ndim - 2
    window = kernel.shape[:rank]
    strides, dil, op = attrs["strides"], attrs["dilation_rate"], attrs["output_padding"]
    sp = x.shape[1:-1]
    full_sp = [(n - 1) * s + (k - 1) * d + 1 for n, s, k, d in zip(sp, strides, window, dil)]
    f = kernel.shape[-2]
    full = np.zeros((x.shape[0], *full_sp, f))
    for tap in itertools.product(*(range(k) for k in window)):
        sl = tuple(slice(t * d, t * d + (n - 1) * s + 1, s) for t, d, s, n in zip(tap, dil, strides, sp))
        full[(slice(None), *sl)] += x @ kernel[tap].T
    out = []
    for i in range(rank):
        eff = (window[i] - 1) * dil[i] + 1
        p = None if op is None else op[i]
        if attrs["padding"] == "valid":
            n_out = (sp[i] - 1) * strides[i] + eff + (max(eff, strides[i]) - eff if p is None else p)
            left = eff - 1
        else:
            n_out = sp[i] * strides[i] if p is None else (sp[i] - 1) * strides[i] + eff % 2 + p
            total = strides[i] + eff - 2 if p is None else eff + eff % 2 - 2 + p
            left = min(total // 2 + total % 2, eff - 1)
        start = eff - 1 - left
        out.append((start, n_out))
    # take full[start : start + n_out] per axis, with zeros outside the full output
    pads = [(0, 0)] + [(max(0, -st), max(0, st + n - fs)) for (st, n), fs in zip(out, full_sp)] + [(0, 0)]
    full = np.pad(full, pads)
    sl = tuple(slice(st + max(0, -st), st + max(0, -st) + n) for st, n in out)
    y = full[(slice(None), *sl)]
    return _finish_ref(y, attrs, params[1] if attrs["use_bias"] else None)


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
        activations.check_fused(attrs.get("activation"), layer)
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
        emit=_conv_emit(rank),
        emit_train=_train_emit(_conv_body(rank)),
        emit_backward=_conv_backward(rank),
        saved=_saved(False),
        reference=_conv_reference,
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
        activations.check_fused(attrs.get("activation"), layer)
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
    output_padding = Attr(
        "output_padding",
        "ints",
        None,
        "Extra size added to one side of each spatial axis of the output, below the stride (null: inferred).",
        length=rank,
        minimum=0,
        nullable=True,
    )
    return LayerDef(
        name=name,
        attrs=(
            Attr("filters", "int", doc="Number of output channels (filters).", minimum=1),
            ints("kernel_size", rank, doc="Size of the convolution window along each spatial axis."),
            _ints_attr("strides", rank, 1, "Upsampling factor along each spatial axis."),
            padding_attr(),
            # Keras's constructors: Conv3DTranspose takes data_format before output_padding
            *((DATA_FORMAT_ATTR, output_padding) if rank == 3 else (output_padding, DATA_FORMAT_ATTR)),
            _ints_attr("dilation_rate", rank, 1, "Spacing between kernel taps along each spatial axis."),
            ACTIVATION_ATTR,
            *kernel_bias_attrs(),
            *COMMON_ATTRS,
        ),
        infer=_transpose_infer(name, rank),
        params=_transpose_params(name, rank),
        emit=_transpose_emit(rank),
        emit_train=_train_emit(_transpose_body(rank)),
        emit_backward=_transpose_backward(rank),
        saved=_saved(False),
        reference=_transpose_reference,
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

CONV3D_TRANSPOSE = _conv_transpose(
    3,
    "Transposed 3D convolution: the 3D counterpart of Conv2DTranspose, upsampling volumes "
    "(batch, depth, rows, cols, channels) by `strides`. The kernel is (kd, kh, kw, filters, channels).",
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
        activations.check_fused(attrs.get("activation"), layer)
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
        emit=_depthwise_emit(rank, separable=False),
        emit_train=_train_emit(_depthwise_body(rank, separable=False)),
        emit_backward=_depthwise_backward(rank, separable=False),
        saved=_saved(False),
        reference=_depthwise_reference,
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
        emit=_depthwise_emit(rank, separable=True),
        emit_train=_train_emit(_depthwise_body(rank, separable=True), separable=True),
        emit_backward=_depthwise_backward(rank, separable=True),
        saved=_saved(True),
        reference=_separable_reference,
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
    CONV3D_TRANSPOSE,
    SEPARABLE_CONV1D,
    SEPARABLE_CONV2D,
    DEPTHWISE_CONV1D,
    DEPTHWISE_CONV2D,
)
