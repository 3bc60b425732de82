"""Convolutional recurrent layers: ConvLSTM1D, ConvLSTM2D, ConvLSTM3D.

An LSTM whose input and recurrent transformations are convolutions (Keras's ``ConvLSTM``): the
input is a sequence of images (batch, time, *spatial, channels), or (batch, time, channels,
*spatial) with ``data_format: channels_first``; at each step the four gates (i, f, c, o, Keras's
order, as LSTM) are ``conv(x_t, kernel) + bias + conv(h, recurrent_kernel)``, where the input
convolution has the layer's strides, padding and dilation and the recurrent one stride 1 and
padding ``same`` over the state h, which has the input convolution's output shape
(*out_spatial, filters). Weights, in Keras's order: ``kernel`` (*kernel_size, channels,
4*filters), ``recurrent_kernel`` (*kernel_size, filters, 4*filters) and, with ``use_bias``,
``bias`` (4*filters,). As for LSTM (see ``recurrent.py``), nnspec names them after the layer,
where Keras stores them under its cell (``conv_lstm2d/conv_lstm_cell/kernel``).

Keras needs the spatial dimensions known (they size the state); the time axis may vary. Masks
are (batch, time), as for every recurrent layer: a masked step keeps both states and repeats
the previous output (zeros with ``zero_output_for_mask``). Dropout follows Keras's
``ConvLSTMCell``: only for 0 < rate < 1, four masks (one per gate) over a step's whole input
(batch, *spatial, channels), shared by all steps, and four over the state h for
``recurrent_dropout``. Initial states (Keras's ``initial_state``) are inputs after the sequence,
shaped as the returned h and c; channels_first ones are transposed into the kernels' layout, and
their gradients transposed back. ``stateful`` works as for LSTM (kept states are initial states,
the input's batch_size needed); ``unroll`` computes the same values. TimeDistributed folds time into the batch as for any layer;
Bidirectional runs these kernels for each direction (see its section below).
"""

from __future__ import annotations

import math

from . import activations, conv, recurrent
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
)
from .conv import (
    _check_strides_dilation,
    _pad3,
    _ref_conv,
    conv_backward,
    conv_bias_grad,
    conv_forward,
    conv_pads,
    conv_tile_rows,
    join_channels,
    kernel_call,
    padding_attr,
    split_channels,
    window_output,
)
from .core import DATA_FORMAT_ATTR, kernel_and_bias
from .recurrent import (
    _RNN_FLAGS,
    dropout_draws,
    _SEED,
    _ZERO_OUTPUT_FOR_MASK,
    _act_back,
    _activate,
    _add_state_grads,
    _bool,
    _cell_attrs,
    _draw,
    _drop_seq,
    _dy_step,
    _finish_step,
    _init_grad,
    _int,
    _rnn_outputs,
    lstm_bias,
)

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
# Called by kernels: compiled in place by the runtime (the conv and recurrent helpers are
# compiled here again under this module's names, as plain functions of their modules).
KERNEL_HELPERS = (
    "conv_forward", "conv_backward", "conv_bias_grad", "conv_tile_rows", "_act_back", "_activate", "_draw",
    "_drop_seq", "_dy_step", "_finish_step", "_init_grad", "_rnn_outputs", "_add_state_grads",
    "_conv_into", "_gate_w", "_add_block", "_input_conv", "_rec_conv", "_rec_grad", "_input_grads",
    "_recurrent_grads",
)  # fmt: skip

TYPES = ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")  # Bidirectional runs these with the kernels below

# ----------------------------------------------------------------------------- attributes


def _attrs(rank: int) -> tuple[Attr, ...]:
    """Keras's constructor order: the convolution's arguments, LSTM's cell arguments without
    ``units``, seed, then the base RNN's flags."""
    cell = [a for a in _cell_attrs(gates=True, unit_forget_bias=True) if a.name != "units"]
    return (
        Attr("filters", "int", doc="Number of filters: channels of the output and of each state.", minimum=1),
        ints("kernel_size", rank, doc="Size of the convolution window along each spatial axis (input and "
             "recurrent convolutions)."),
        ints("strides", rank, 1, "Step of the input convolution's window along each spatial axis."),
        padding_attr(),
        DATA_FORMAT_ATTR,
        ints("dilation_rate", rank, 1, "Spacing between the input convolution's kernel taps."),
        *cell,
        _SEED,
        *_RNN_FLAGS,
        _ZERO_OUTPUT_FOR_MASK,
        *COMMON_ATTRS,
    )  # fmt: skip


# ----------------------------------------------------------------------------- rules


def _geometry(name: str, rank: int, attrs, x: TensorType) -> tuple[tuple, int, tuple]:
    """(input spatial dims, channels, output spatial dims), checked as Keras checks them."""
    if x.rank != rank + 3:
        order = "channels, *spatial" if attrs["data_format"] == "channels_first" else "*spatial, channels"
        other = f", or use ConvLSTM{x.rank - 3}D" if 1 <= x.rank - 3 <= 3 else ""
        raise ShapeError(
            f"{name} expects an input of rank {rank + 3} (batch, time, {order}; {rank} spatial axes); "
            f"got {fmt_shape(x.shape)}: give the input a time axis and {rank} spatial axes{other}"
        )
    step = (x.shape[0], *x.shape[2:])
    spatial, channels = split_channels(step, attrs["data_format"])
    if channels is None:
        raise ShapeError(
            f"{name} needs a known channel dimension (it sizes the kernel); got {fmt_shape(x.shape)}: "
            "write it in the input's shape"
        )
    if any(d is None for d in spatial):
        raise ShapeError(
            f"{name} needs known spatial dimensions (they size the states, as in Keras); got "
            f"{fmt_shape(x.shape)}: write them in the input's shape (only the time axis may be null)"
        )
    _check_strides_dilation(name, attrs)
    out = window_output(name, "kernel", TensorType(step), spatial, attrs["kernel_size"], attrs["strides"],
                        attrs["padding"], attrs["dilation_rate"])  # fmt: skip
    return spatial, channels, out


def _infer(name: str, rank: int):
    def infer(attrs, inputs, ctx):
        x, *init = inputs
        _, _, out = _geometry(name, rank, attrs, x)
        for key in ("activation", "recurrent_activation"):
            activations.check_fused(attrs[key], name)
            if attrs["data_format"] == "channels_first" and attrs[key] in activations.ROW_WISE:
                raise ShapeError(
                    f"{name}: {key} {attrs[key]!r} acts along the last axis, which is a spatial axis with "
                    "data_format channels_first; use channels_last, or an element-wise activation"
                )
        if attrs["unroll"] and x.shape[1] is None:
            raise ShapeError(
                f"{name} with unroll=True needs a known sequence length; got {fmt_shape(x.shape)}"
            )
        if attrs["stateful"] and x.shape[0] is None:
            raise ShapeError(f"{name} with stateful=True needs a fixed batch size; got {fmt_shape(x.shape)}: "
                             "give the model's input a batch_size (Keras's batch_shape)")
        batch = x.shape[0]
        state = join_channels(batch, out, attrs["filters"], attrs["data_format"])
        if init and len(init) != 2:
            raise ShapeError(f"{name} takes the sequence, then 2 initial states (h, c); got {len(init)}")
        for k, t in enumerate(init):
            if t.rank != len(state) or tuple(t.shape[1:]) != tuple(state[1:]):
                raise ShapeError(f"{name}'s initial state {k + 1} must be {fmt_shape((None, *state[1:]))}; "
                                 f"got {fmt_shape(t.shape)}")  # fmt: skip
        if attrs["return_sequences"]:
            y = TensorType((batch, x.shape[1], *state[1:]), "float32", x.masked)
        else:
            y = TensorType(state, "float32", False)
        if not attrs["return_state"]:
            return [y]
        return [y, TensorType(state), TensorType(state)]

    return infer


def _params(name: str, rank: int):
    def params(attrs, inputs, ctx):
        _, channels, _ = _geometry(name, rank, attrs, inputs[0])
        f, k = attrs["filters"], tuple(attrs["kernel_size"])
        kernel, *bias = kernel_and_bias(attrs, (*k, channels, 4 * f), (4 * f,))
        recurrent_kernel = ParamSpec(
            "recurrent_kernel", (*k, f, 4 * f), attrs["recurrent_initializer"],
            regularizer=attrs["recurrent_regularizer"], constraint=attrs["recurrent_constraint"],
        )  # fmt: skip
        return [kernel, recurrent_kernel, *lstm_bias(attrs, bias, f)]

    return params


# ----------------------------------------------------------------------------- kernels
#
# Channels-last throughout, with three spatial axes as the conv kernels (a 1D layer's images are
# (1, 1, L), a 2D layer's (1, H, W)): ``x`` (rows, T, D, H, W, C). The input convolution of all
# steps is one conv_forward over rows*T images before the time loop (four, one per gate block,
# with input dropout); each step then runs the recurrent convolution of h (rows, OD, OH, OW, F),
# stride 1, padding same, and LSTM's gate math on (rows*positions, F) blocks. States, outputs and
# saved arrays are per row (rows, [T,] positions*width), so recurrent.py's output, gradient and
# mask helpers serve them unchanged. Saved for training, per row and input time t:
#   sh (T, P*F)   h entering the step       sa (T, P*4F)  the gates after their activations
#   sx (T, P*2F)  per position: c entering the step, act(c after it)
#   sp (T, P*5F)  pre-activations and the new c, when an activation's derivative needs its input
#   dmx (4*S*C,), dmh (4*P*F,): the dropout masks (S input positions, P output positions)
# Backward walks the steps in reverse: the gate gradients of a step go through the transposed
# recurrent convolution to h before it; after the loop the kernel, recurrent kernel and input
# gradients are one conv_backward each over all rows*T images (per gate block with dropout).


def _conv_into(x5, w, y5, strides, dil, pads):
    """``y5 = conv(x5, w)``, no bias, linear; all channels-last 5-D, ``w`` (kd, kh, kw, C, F)."""
    k = w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
    f = w.shape[4]
    patches = np.empty((conv_tile_rows(k, f), k), np.float32)
    nob = np.empty(0, np.float32)
    wg = np.empty((0, k, f), np.float32)
    yg = np.empty((0, f), np.float32)
    conv_forward(x5, w, nob, False, 0, y5, patches, wg, yg, 1, strides, dil, pads)


def _gate_w(w, q):
    """A contiguous copy of gate block ``q`` of a kernel (..., 4F): (kd, kh, kw, C, F)."""
    kd, kh, kw, c, f4 = w.shape
    f = f4 // 4
    out = np.empty((kd, kh, kw, c, f), np.float32)
    for a in range(kd):
        for b in range(kh):
            for e in range(kw):
                for i in range(c):
                    for j in range(f):
                        out[a, b, e, i, j] = w[a, b, e, i, q * f + j]
    return out


def _add_block(dst, src, q, scale):
    """``dst[:, q*F:(q+1)*F] += scale * src`` on 2-D (positions, 4F) and (positions, F) arrays."""
    n, f = src.shape
    for i in range(n):
        for j in range(f):
            dst[i, q * f + j] += scale * src[i, j]


def _input_conv(x5, w, b, use_bias, xp, dmx, steps, strides, dil, pads):
    """The gates' input projections of every step: ``xp`` (rows*T, OD, OH, OW, 4F)."""
    n = x5.shape[0]
    per = x5.shape[1] * x5.shape[2] * x5.shape[3] * x5.shape[4]
    f4 = w.shape[4]
    f = f4 // 4
    xp2 = xp.reshape((xp.size // f4, f4))
    if dmx.shape[1] == 0:
        _conv_into(x5, w, xp, strides, dil, pads)
    else:
        xd = np.empty(x5.shape, np.float32)
        yq = np.empty((n, xp.shape[1], xp.shape[2], xp.shape[3], f), np.float32)
        for i in range(xp2.shape[0]):
            for j in range(f4):
                xp2[i, j] = 0.0
        for q in range(4):
            _drop_seq(xd.reshape((n, per)), x5.reshape((n, per)), dmx, q * per, steps)
            _conv_into(xd, _gate_w(w, q), yq, strides, dil, pads)
            _add_block(xp2, yq.reshape((xp2.shape[0], f)), q, 1.0)
    if use_bias:
        for i in range(xp2.shape[0]):
            for j in range(f4):
                xp2[i, j] += b[j]


def _rec_conv(h, u, ub, dmh, hv, hd, hq, rpads):
    """``hv = conv(h, u)`` (stride 1, same): h (rows, OD, OH, OW, F), scaled per gate block by
    the recurrent dropout masks when there are any (``ub``: the kernel's gate blocks)."""
    one = np.int64(1)
    ones = (one, one, one)
    rows = h.shape[0]
    pf = h.size // rows
    if dmh.shape[1] == 0:
        _conv_into(h, u, hv, ones, ones, rpads)
        return
    f4 = u.shape[4]
    hv2 = hv.reshape((hv.size // f4, f4))
    for i in range(hv2.shape[0]):
        for j in range(f4):
            hv2[i, j] = 0.0
    for q in range(4):
        _drop_seq(hd.reshape((rows, pf)), h.reshape((rows, pf)), dmh, q * pf, 1)
        _conv_into(hd, ub[q], hq, ones, ones, rpads)
        _add_block(hv2, hq.reshape((hv2.shape[0], f4 // 4)), q, 1.0)


def conv_lstm_forward(x, w, u, b, mask, act, ract, use_bias, go_backwards, return_sequences, zofm, y, h_out,
                      c_out, h0, c0, osp, strides, dil, pads, rpads, rate, rec_rate, dmx, dmh, sh, sa, sx,
                      sp):  # fmt: skip
    """ConvLSTM over ``x`` (rows, T, D, H, W, C), inference and training alike.

    ``y`` (rows, T or 1, P*F): the output of processing step s at ``y[:, s]`` (the last one at
    ``y[:, 0]``); ``h_out``/``c_out`` (rows, P*F) the final states, or empty; ``h0``/``c0``
    (rows, P*F) the initial states (Keras's initial_state), or empty for zeros; ``osp`` the output's
    (OD, OH, OW); ``pads``/``rpads`` the zeros before each axis of the input and the recurrent
    convolution. Training: ``dmx``/``dmh`` (rows, 4*S*C)/(rows, 4*P*F) are drawn here when not
    empty, and the saved arrays (see the section) are written when not empty."""
    rows, steps = x.shape[0], x.shape[1]
    f4 = w.shape[4]
    f = f4 // 4
    od, oh, ow = osp
    npos = od * oh * ow
    pf = npos * f
    n = rows * steps
    m = rows * npos
    x5 = x.reshape((n, x.shape[2], x.shape[3], x.shape[4], x.shape[5]))
    if dmx.shape[1] > 0:
        _draw(dmx, rate)
    if dmh.shape[1] > 0:
        _draw(dmh, rec_rate)
    xp = np.empty((n, od, oh, ow, f4), np.float32)
    _input_conv(x5, w, b, use_bias, xp, dmx, steps, strides, dil, pads)
    xp3 = xp.reshape((n, npos, f4))
    h = h_out if h_out.shape[0] > 0 else np.empty((rows, pf), np.float32)
    c = c_out if c_out.shape[0] > 0 else np.empty((rows, pf), np.float32)
    if h0.shape[0] > 0:
        h[:] = h0
    else:
        h[:] = 0.0
    if c0.shape[0] > 0:
        c[:] = c0
    else:
        c[:] = 0.0
    h5 = h.reshape((rows, od, oh, ow, f))
    hv = np.empty((rows, od, oh, ow, f4), np.float32)
    hv3 = hv.reshape((rows, npos, f4))
    hd = np.empty((rows, od, oh, ow, f), np.float32)
    hq = np.empty((rows, od, oh, ow, f), np.float32)
    ub = np.empty((4 if dmh.shape[1] > 0 else 0, u.shape[0], u.shape[1], u.shape[2], f, f), np.float32)
    for q in range(ub.shape[0]):
        ub[q] = _gate_w(u, q)
    g = np.empty((5, m, f), np.float32)
    has_mask = mask.shape[0] > 0
    saving = sh.shape[0] > 0
    has_pre = sp.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        if saving:
            for r in range(rows):
                for p in range(npos):
                    for j in range(f):
                        sh[r, t, p * f + j] = h[r, p * f + j]
                        sx[r, t, p * 2 * f + j] = c[r, p * f + j]
        _rec_conv(h5, u, ub, dmh, hv, hd, hq, rpads)
        for r in range(rows):
            xr = r * steps + t
            for p in range(npos):
                i = r * npos + p
                for q in range(4):
                    for j in range(f):
                        g[q, i, j] = hv3[r, p, q * f + j] + xp3[xr, p, q * f + j]
                        if has_pre:
                            sp[r, t, p * 5 * f + q * f + j] = g[q, i, j]
        _activate(g[0], ract)
        _activate(g[1], ract)
        _activate(g[2], act)
        _activate(g[3], ract)
        for i in range(m):
            for j in range(f):
                r = i // npos
                p = i - r * npos
                cn = g[1, i, j] * c[r, p * f + j] + g[0, i, j] * g[2, i, j]
                if saving:
                    for q in range(4):
                        sa[r, t, p * f4 + q * f + j] = g[q, i, j]
                    if has_pre:
                        sp[r, t, p * 5 * f + 4 * f + j] = cn
                g[2, i, j] = cn
                g[4, i, j] = cn
        _activate(g[4], act)
        for r in range(rows):
            keep = not (has_mask and mask[r, t] == 0)
            for p in range(npos):
                i = r * npos + p
                for j in range(f):
                    if saving:
                        sx[r, t, p * 2 * f + f + j] = g[4, i, j]
                    if keep:
                        c[r, p * f + j] = g[2, i, j]
                        h[r, p * f + j] = g[3, i, j] * g[4, i, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, False, zofm, 0, 0)


def _rec_grad(dgs, u, ub, dmh, dh, tmp, dgq, rpads):
    """``dh += conv^T(dgs, u)`` (each gate block's part times its dropout mask, if any): the
    adjoint of ``_rec_conv``; dgs (rows, OD, OH, OW, 4F), dh (rows, P*F)."""
    one = np.int64(1)
    ones = (one, one, one)
    rows, od, oh, ow, f4 = dgs.shape
    f = f4 // 4
    pf = od * oh * ow * f
    k = u.shape[0] * u.shape[1] * u.shape[2] * f
    tile = conv_tile_rows(k, f4)
    nodw = np.empty((k, f4), np.float32)
    h5 = dh.reshape((rows, od, oh, ow, f))
    if dmh.shape[1] == 0:
        conv_backward(h5, u, dgs, h5, nodw, True, False, tile, 1, ones, ones, rpads)
        return
    nodwq = np.empty((k, f), np.float32)
    dgs2 = dgs.reshape((rows * od * oh * ow, f4))
    dgq2 = dgq.reshape((rows * od * oh * ow, f))
    tmp2 = tmp.reshape((rows, pf))
    for q in range(4):
        for i in range(dgq2.shape[0]):
            for j in range(f):
                dgq2[i, j] = dgs2[i, q * f + j]
        tmp2[:] = 0.0
        conv_backward(tmp, ub[q], dgq, tmp, nodwq, True, False, tile, 1, ones, ones, rpads)
        for r in range(rows):
            for j in range(pf):
                dh[r, j] += tmp2[r, j] * dmh[r, q * pf + j]


def _input_grads(x5, w, dmx, dg5, dx, dw, steps, strides, dil, pads):
    """Add the gradients of the input convolution of all steps (``dg5`` its output's, rows*T
    images by 4F) into ``dx`` (like x, or empty) and ``dw`` (k, 4F, or empty)."""
    n = x5.shape[0]
    per = x5.shape[1] * x5.shape[2] * x5.shape[3] * x5.shape[4]
    f4 = w.shape[4]
    f = f4 // 4
    k = w.size // f4
    need_dx = dx.shape[0] > 0
    need_dw = dw.shape[0] > 0
    dx5 = dx.reshape(x5.shape) if need_dx else x5
    if dmx.shape[1] == 0:
        dwv = dw if need_dw else np.empty((k, f4), np.float32)
        conv_backward(x5, w, dg5, dx5, dwv, need_dx, need_dw, conv_tile_rows(k, f4), 1, strides, dil, pads)
        return
    npos = dg5.shape[1] * dg5.shape[2] * dg5.shape[3]
    dg2 = dg5.reshape((n * npos, f4))
    dgq = np.empty((n, dg5.shape[1], dg5.shape[2], dg5.shape[3], f), np.float32)
    dgq2 = dgq.reshape((n * npos, f))
    xd = np.empty(x5.shape, np.float32)
    dxq = np.empty(x5.shape, np.float32)
    dwq = np.empty((k, f), np.float32)
    for q in range(4):
        for i in range(n * npos):
            for j in range(f):
                dgq2[i, j] = dg2[i, q * f + j]
        _drop_seq(xd.reshape((n, per)), x5.reshape((n, per)), dmx, q * per, steps)
        dxq[:] = 0.0
        dwq[:] = 0.0
        conv_backward(xd, _gate_w(w, q), dgq, dxq, dwq, need_dx, need_dw, conv_tile_rows(k, f), 1, strides,
                      dil, pads)  # fmt: skip
        if need_dw:
            _add_block(dw, dwq, q, 1.0)
        if need_dx:
            dxf = dx5.reshape((n, per))
            dxqf = dxq.reshape((n, per))
            for i in range(n):
                r = i // steps
                for j in range(per):
                    dxf[i, j] += dxqf[i, j] * dmx[r, q * per + j]


def _recurrent_grads(sh5, u, dmh, dg5, du, steps, rpads):
    """``du += `` the recurrent kernel's gradient over all steps: sh5 (rows*T, OD, OH, OW, F) the
    states entering the steps, dg5 the gate gradients (rows*T images by 4F)."""
    one = np.int64(1)
    ones = (one, one, one)
    n = sh5.shape[0]
    f4 = u.shape[4]
    f = f4 // 4
    k = u.size // f4
    pf = sh5.size // n
    if dmh.shape[1] == 0:
        conv_backward(sh5, u, dg5, sh5, du, False, True, conv_tile_rows(k, f4), 1, ones, ones, rpads)
        return
    npos = pf // f
    dg2 = dg5.reshape((n * npos, f4))
    dgq = np.empty((n, dg5.shape[1], dg5.shape[2], dg5.shape[3], f), np.float32)
    dgq2 = dgq.reshape((n * npos, f))
    hd = np.empty(sh5.shape, np.float32)
    dwq = np.empty((k, f), np.float32)
    for q in range(4):
        for i in range(n * npos):
            for j in range(f):
                dgq2[i, j] = dg2[i, q * f + j]
        _drop_seq(hd.reshape((n, pf)), sh5.reshape((n, pf)), dmh, q * pf, steps)
        dwq[:] = 0.0
        conv_backward(
            hd, _gate_w(u, q), dgq, hd, dwq, False, True, conv_tile_rows(k, f), 1, ones, ones, rpads
        )
        _add_block(du, dwq, q, 1.0)


def conv_lstm_backward(x, w, u, mask, act, ract, go_backwards, return_sequences, zofm, dy, dh_out, dc_out,
                       osp, strides, dil, pads, rpads, dmx, dmh, sh, sa, sx, sp, dx, dw, du, db, dh0,
                       dc0):  # fmt: skip
    """Backpropagation through ``conv_lstm_forward`` in training: ADD into ``dx`` (like x), ``dw``
    (k, 4F), ``du`` (k_u, 4F), ``db`` (4F,), ``dh0``/``dc0`` (rows, P*F, the initial states'),
    each empty when not wanted. ``dy`` (rows, T or 1, P*F): the output's gradient;
    ``dh_out``/``dc_out`` (rows, P*F): the returned states', or empty."""
    rows, steps = x.shape[0], x.shape[1]
    f4 = w.shape[4]
    f = f4 // 4
    od, oh, ow = osp
    npos = od * oh * ow
    pf = npos * f
    n = rows * steps
    m = rows * npos
    dh = np.empty((rows, pf), np.float32)
    dc = np.empty((rows, pf), np.float32)
    _init_grad(dh, dh_out)
    _init_grad(dc, dc_out)
    dg = np.zeros((rows, steps, npos * f4), np.float32)
    dgs = np.empty((rows, npos * f4), np.float32)
    dgs5 = dgs.reshape((rows, od, oh, ow, f4))
    gd = np.empty((4, m, f), np.float32)
    post = np.empty((5, m, f), np.float32)
    pre = np.empty((5, m, f), np.float32)
    t1 = np.empty((m, f), np.float32)
    tmp = np.empty((rows, od, oh, ow, f), np.float32)
    dgq = np.empty((rows, od, oh, ow, f), np.float32)
    ub = np.empty((4 if dmh.shape[1] > 0 else 0, u.shape[0], u.shape[1], u.shape[2], f, f), np.float32)
    for q in range(ub.shape[0]):
        ub[q] = _gate_w(u, q)
    has_mask = mask.shape[0] > 0
    has_pre = sp.shape[0] > 0
    for s in range(steps - 1, -1, -1):
        t = steps - 1 - s if go_backwards else s
        _dy_step(dh, dy, mask, s, steps, go_backwards, return_sequences, False, zofm, 0, 1.0)
        for i in range(m):
            r = i // npos
            p = i - r * npos
            for j in range(f):
                for q in range(4):
                    post[q, i, j] = sa[r, t, p * f4 + q * f + j]
                    pre[q, i, j] = sp[r, t, p * 5 * f + q * f + j] if has_pre else post[q, i, j]
                post[4, i, j] = sx[r, t, p * 2 * f + f + j]
                pre[4, i, j] = sp[r, t, p * 5 * f + 4 * f + j] if has_pre else post[4, i, j]
                t1[i, j] = dh[r, p * f + j] * post[3, i, j]
        _act_back(t1, pre[4], post[4], act)
        for i in range(m):
            r = i // npos
            p = i - r * npos
            keep = not (has_mask and mask[r, t] == 0)
            for j in range(f):
                dct = dc[r, p * f + j] + t1[i, j]
                gd[0, i, j] = dct * post[2, i, j]
                gd[1, i, j] = dct * sx[r, t, p * 2 * f + j]
                gd[2, i, j] = dct * post[0, i, j]
                gd[3, i, j] = dh[r, p * f + j] * post[4, i, j]
                if keep:
                    dc[r, p * f + j] = dct * post[1, i, j]
        for q in range(4):
            _act_back(gd[q], pre[q], post[q], act if q == 2 else ract)
        for i in range(m):
            r = i // npos
            p = i - r * npos
            for q in range(4):
                for j in range(f):
                    dgs[r, p * f4 + q * f + j] = gd[q, i, j]
        _finish_step(dgs, dg, t, mask, dh)
        _rec_grad(dgs5, u, ub, dmh, dh, tmp, dgq, rpads)
    _add_state_grads(dh0, dh, dc0, dc)
    dg5 = dg.reshape((n, od, oh, ow, f4))
    if db.shape[0] > 0:
        conv_bias_grad(dg.reshape((n * npos, f4)), db)
    x5 = x.reshape((n, x.shape[2], x.shape[3], x.shape[4], x.shape[5]))
    _input_grads(x5, w, dmx, dg5, dx, dw, steps, strides, dil, pads)
    if du.shape[0] > 0:
        _recurrent_grads(sh.reshape((n, od, oh, ow, f)), u, dmh, dg5, du, steps, rpads)


# ----------------------------------------------------------------------------- emit


class _Geo:
    """One step's static geometry (sizes, the kernels' three-axis tuples) and the channels-last
    views the kernels take; channels_first values go through transposed scratch."""

    def __init__(self, e, a=None):
        from ..runtime.codegen import CodegenError

        a = e.attrs if a is None else a
        self.e = e
        xs = e.x_shapes[0]
        if any(d is None for d in xs):
            raise CodegenError(f"{e.step.node}: ConvLSTM needs the sequence length known when the plan is "
                               f"compiled; got input {xs} (batch excluded)")  # fmt: skip
        self.cf = a["data_format"] == "channels_first"
        self.steps = xs[0]
        spatial, self.c, osp = _step_geometry(a, xs)
        self.f = a["filters"]
        self.npos = math.prod(osp)
        self.pf = self.npos * self.f
        self.s_in = math.prod(spatial)
        self.rows = e.rows()
        self.tout = self.steps if a["return_sequences"] else 1
        ones = [1] * len(spatial)
        k = a["kernel_size"]
        self.k = math.prod(k)
        self.strides = _pad3(a["strides"], 1)
        self.dil = _pad3(a["dilation_rate"], 1)
        self.pads = _pad3(conv_pads(a["padding"], spatial, k, a["strides"], a["dilation_rate"]), 0)
        self.rpads = _pad3(conv_pads("same", osp, k, ones, ones), 0)
        self.osp3 = _pad3(osp, 1)
        self.sp3 = _pad3(spatial, 1)
        self.k3 = _pad3(k, 1)

    def kernel(self, var: str, cin: int) -> str:
        return f"{var}.reshape(({', '.join(str(d) for d in self.k3)}, {cin}, {4 * self.f}))"

    def x6(self, var: str) -> str:
        d = self.sp3
        return f"{var}.reshape(({self.rows}, {self.steps}, {d[0]}, {d[1]}, {d[2]}, {self.c}))"

    def x_last(self, lines: list) -> str:
        """The input as (rows, T, D, H, W, C), transposed into scratch for channels_first."""
        e, r = self.e, self.rows
        if not self.cf:
            return self.x6(e.x[0])
        xl = e.tmp(f"({r} * {self.steps}, {self.s_in}, {self.c})")
        lines.append(
            e.call(conv.swap_last2, f"{e.x[0]}.reshape(({r} * {self.steps}, {self.c}, {self.s_in}))", xl)
        )
        return self.x6(xl)

    def seq(self, var: str, steps: int | None, moves: list, into: bool) -> str:
        """An output (or its gradient) ``var`` as the kernels' (rows, steps, P*F), or (rows, P*F) for
        a state (``steps`` None). channels_first: scratch, and ``moves`` gets the transposition of
        the scratch into ``var`` (``into``: an output the kernel writes) or the caller's lines get
        the one from ``var`` (a gradient the kernel reads)."""
        e, r = self.e, self.rows
        lead = f"{r}, {steps}" if steps else f"{r}"
        if not self.cf:
            return f"{var}.reshape(({lead}, {self.pf}))"
        n = f"{r} * {steps or 1}"
        t = e.tmp(f"({n}, {self.npos}, {self.f})")
        pair = (t, f"{var}.reshape(({n}, {self.f}, {self.npos}))")
        moves.append(e.call(conv.swap_last2, *(pair if into else pair[::-1])))
        return f"{t}.reshape(({lead}, {self.pf}))"

    def common(self) -> tuple:
        """The kernels' geometry arguments: osp, strides, dil, pads, rpads."""
        return self.osp3, self.strides, self.dil, self.pads, self.rpads


def _step_geometry(attrs, xs) -> tuple[tuple, int, tuple]:
    """(input spatial dims, channels, output spatial dims) of one step, from the input's shape
    without the batch (time first)."""
    spatial, c = split_channels((None, *xs[1:]), attrs["data_format"])
    osp = tuple(conv_output_length(n, k, attrs["padding"], s, d)
                for n, k, s, d in zip(spatial, attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"]))  # fmt: skip
    return tuple(spatial), c, osp


def _saved_layout(attrs, x_shapes):
    """(key, shape per row) of the arrays one layer saves in training (see the kernels' section)."""
    xs = x_shapes[0]
    spatial, c, osp = _step_geometry(attrs, xs)
    steps = xs[0]
    pf = math.prod(osp) * attrs["filters"]
    out = [("sh", (steps, pf)), ("sa", (steps, 4 * pf)), ("sx", (steps, 2 * pf))]
    if recurrent._needs_pre("LSTM", attrs):
        out.append(("sp", (steps, 5 * pf)))
    if 0.0 < attrs["dropout"] < 1.0:
        out.append(("dmx", (4 * math.prod(spatial) * c,)))
    if 0.0 < attrs["recurrent_dropout"] < 1.0:
        out.append(("dmh", (4 * pf,)))
    return out


def _saved(attrs, x_shapes, y_shapes):
    return [(shape, "float32") for _, shape in _saved_layout(attrs, x_shapes)]


def _saved_args(saved: dict, z2: str, z3: str) -> list[str]:
    """dmx, dmh, sh, sa, sx, sp: the saved arrays in training (by key), empty stand-ins otherwise."""
    return [saved.get(k, z2) for k in ("dmx", "dmh")] + [saved.get(k, z3) for k in ("sh", "sa", "sx", "sp")]


def _codes(a) -> tuple[str, str]:
    return _int(activations.code(a["activation"])), _int(activations.code(a["recurrent_activation"]))


def _empties(e) -> tuple[str, str, str]:
    return e.tmp("(0,)"), e.tmp("(0, 0)"), e.tmp("(0, 0, 0)")


def _forward_call(e, g, a, x, p, y, states, saved, z, init=None) -> str:
    """The line running one layer (or one direction of Bidirectional) forward: ``p`` its weight
    variables, ``y`` its (rows, T or 1, P*F) output, ``states`` (h, c) or stand-ins, ``saved``
    its saved arrays by key (empty at inference), ``z`` the empty stand-ins, ``init`` the initial
    states (h, c) as (rows, P*F), or None."""
    z1, z2, z3 = z
    return kernel_call(
        e, conv_lstm_forward, x, g.kernel(p[0], g.c), g.kernel(p[1], g.f), p[2] if a["use_bias"] else z1,
        recurrent.step_mask(e) or z2, *_codes(a), _bool(a["use_bias"]), _bool(a["go_backwards"]),
        _bool(a["return_sequences"]), _bool(a["zero_output_for_mask"]), y, *states, *(init or (z2, z2)),
        *g.common(), e.lit(float(a["dropout"])),
        e.lit(float(a["recurrent_dropout"])), *_saved_args(saved, z2, z3),
    )  # fmt: skip


def _backward_call(e, g, a, x, p, dp, dy, dstates, saved, dx, z, dinit=None) -> str:
    """The line running one layer's (or direction's) backward kernel: ``dp`` its weight gradient
    variables (None: frozen), ``dy`` its output's gradient (rows, T or 1, P*F), ``dx`` the input's
    gradient as (rows, T, D, H, W, C) or a stand-in, ``dinit`` the initial states' gradients as
    (rows, P*F) (stand-ins where not wanted), or None."""
    z1, z2, z3 = z
    dw = f"{dp[0]}.reshape(({g.k * g.c}, {4 * g.f}))" if dp[0] is not None else z2
    du = f"{dp[1]}.reshape(({g.k * g.f}, {4 * g.f}))" if dp[1] is not None else z2
    db = dp[2] if a["use_bias"] and dp[2] is not None else z1
    return kernel_call(
        e, conv_lstm_backward, x, g.kernel(p[0], g.c), g.kernel(p[1], g.f), recurrent.step_mask(e) or z2,
        *_codes(a), _bool(a["go_backwards"]), _bool(a["return_sequences"]), _bool(a["zero_output_for_mask"]), dy,
        *dstates, *g.common(), *_saved_args(saved, z2, z3), dx, dw, du, db, *(dinit or (z2, z2)),
    )  # fmt: skip


def _input_grad(e, g, lines: list, moves: list) -> str:
    """The input's gradient as the kernels' (rows, T, D, H, W, C): the gradient variable itself,
    zeroed transposed scratch for channels_first (``moves`` adds it back), or a stand-in."""
    if e.dx[0] is None:
        return e.tmp("(0, 1, 1, 1, 1, 1)")
    if not g.cf:
        return g.x6(e.dx[0])
    dxl = e.tmp(f"({g.rows} * {g.steps}, {g.s_in}, {g.c})")
    lines.append(f"{dxl}[:] = 0.0")
    moves.append(
        e.call(conv.swap_last2_add, dxl, f"{e.dx[0]}.reshape(({g.rows} * {g.steps}, {g.c}, {g.s_in}))")
    )
    return g.x6(dxl)


def _state_grad(e, g, var, z, lines: list, moves: list) -> str:
    """An initial state's gradient as the kernels' (rows, P*F), which the kernel adds into: the
    variable itself, zeroed transposed scratch for channels_first (``moves`` adds it back), or a
    stand-in when not wanted."""
    if var is None:
        return z[1]
    if not g.cf:
        return f"{var}.reshape(({g.rows}, {g.pf}))"
    t = e.tmp(f"({g.rows}, {g.npos}, {g.f})")
    lines.append(f"{t}[:] = 0.0")
    moves.append(e.call(conv.swap_last2_add, t, f"{var}.reshape(({g.rows}, {g.f}, {g.npos}))"))
    return f"{t}.reshape(({g.rows}, {g.pf}))"


def _saved_by_key(e, training: bool) -> dict:
    return dict(zip([k for k, _ in _saved_layout(e.attrs, e.x_shapes)], e.s)) if training else {}


def _forward_lines(e, training: bool) -> list[str]:
    g = _Geo(e)
    a = e.attrs
    lines: list[str] = []
    x = g.x_last(lines)
    moves: list[str] = []
    z = _empties(e)
    y = g.seq(e.y[0], g.tout, moves, True)
    states = [g.seq(v, None, moves, True) for v in e.y[1:]] if a["return_state"] else [z[1], z[1]]
    init = [g.seq(v, None, lines, False) for v in e.x[1:]] or None  # Keras's initial_state (h, c)
    lines.append(_forward_call(e, g, a, x, e.p, y, states, _saved_by_key(e, training), z, init))
    return lines + moves


def _emit(e):
    return _forward_lines(e, False)


def _emit_train(e):
    return _forward_lines(e, True)


def _emit_backward(e):
    g = _Geo(e)
    a = e.attrs
    lines: list[str] = []
    x = g.x_last(lines)
    z = _empties(e)
    dy = g.seq(e.dy[0], g.tout, lines, False)
    dstates = [g.seq(v, None, lines, False) for v in e.dy[1:]] if a["return_state"] else [z[1], z[1]]
    moves: list[str] = []
    dx = _input_grad(e, g, lines, moves)
    dinit = [_state_grad(e, g, v, z, lines, moves) for v in e.dx[1:]] or None
    lines.append(_backward_call(e, g, a, x, e.p, e.dp, dy, dstates, _saved_by_key(e, True), dx, z, dinit))
    return lines + moves


# ----------------------------------------------------------------------------- Bidirectional
#
# Bidirectional over a ConvLSTM (``wrappers.py`` hands its steps here): each direction runs the
# kernels above into its own output, in the merge's layout (the layer's own: channels_first
# outputs are transposed first, since Keras merges along the last axis whatever the data format);
# then one pass merges them, the backward direction's sequence reversed in time (Keras's
# ``ops.flip``). Backward: one pass splits the merged gradient into the two directions'
# (reversing the backward one's), each runs its backward kernel, both adding into the input's
# gradient. Training saves each direction's arrays (``_saved_layout``), then for merge_mode mul
# both directions' outputs.

BIDI_MODES = {"concat": 0, "sum": 1, "mul": 2, "ave": 3, None: 4}  # 4: two outputs


def bidi_merge(a, b, y, mode, flip):
    """The merged output from the directions' ``a``, ``b`` (rows, T, M, L), ``b`` read at T-1-t
    with ``flip``: concat (y's last axis 2L), sum, mul, ave, or (4) ``y = b``."""
    rows, steps, m, width = a.shape
    for r in range(rows):
        for t in range(steps):
            tb = steps - 1 - t if flip else t
            for i in range(m):
                for j in range(width):
                    u = a[r, t, i, j]
                    v = b[r, tb, i, j]
                    if mode == 0:
                        y[r, t, i, j] = u
                        y[r, t, i, width + j] = v
                    elif mode == 1:
                        y[r, t, i, j] = u + v
                    elif mode == 2:
                        y[r, t, i, j] = u * v
                    elif mode == 3:
                        y[r, t, i, j] = (u + v) * 0.5
                    else:
                        y[r, t, i, j] = v


def bidi_split(dy, a, b, da, db, mode, flip):
    """The adjoint of :func:`bidi_merge`: write the directions' gradients ``da``, ``db`` from the
    merged one ``dy`` (for mode 4, ``db`` from ``dy`` alone; ``a``, ``b`` are read for mul)."""
    rows, steps, m, width = da.shape
    for r in range(rows):
        for t in range(steps):
            tb = steps - 1 - t if flip else t
            for i in range(m):
                for j in range(width):
                    if mode == 0:
                        da[r, t, i, j] = dy[r, t, i, j]
                        db[r, tb, i, j] = dy[r, t, i, width + j]
                    elif mode == 1:
                        da[r, t, i, j] = dy[r, t, i, j]
                        db[r, tb, i, j] = dy[r, t, i, j]
                    elif mode == 2:
                        da[r, t, i, j] = dy[r, t, i, j] * b[r, tb, i, j]
                        db[r, tb, i, j] = dy[r, t, i, j] * a[r, t, i, j]
                    elif mode == 3:
                        da[r, t, i, j] = 0.5 * dy[r, t, i, j]
                        db[r, tb, i, j] = 0.5 * dy[r, t, i, j]
                    else:
                        db[r, tb, i, j] = dy[r, t, i, j]


def bidirectional_saved(af, ab, mode, x_shapes) -> list:
    """The arrays Bidirectional over ConvLSTM saves: each direction's, then for mul both outputs."""
    shapes = [s for _, s in _saved_layout(af, x_shapes) + _saved_layout(ab, x_shapes)]
    if mode == "mul":
        _, _, osp = _step_geometry(af, x_shapes[0])
        tout = x_shapes[0][0] if af["return_sequences"] else 1
        shapes += [(tout, math.prod(osp) * af["filters"])] * 2
    return [(s, "float32") for s in shapes]


class _Bidi:
    """What the Bidirectional emits share: both directions' geometry, weights and saved arrays,
    and the merge's 4-D views (rows, T or 1, M, L) of the directions' outputs."""

    def __init__(self, e, af, ab, training: bool):
        self.e, self.af, self.ab = e, af, ab
        self.gf, self.gb = _Geo(e, af), _Geo(e, ab)
        g = self.gf
        self.mode = e.attrs["merge_mode"]
        self.n = 3 if af["use_bias"] else 2
        lf, lb = _saved_layout(af, e.x_shapes), _saved_layout(ab, e.x_shapes)
        s = list(e.s) if training else []
        self.sf = dict(zip([k for k, _ in lf], s[: len(lf)])) if s else {}
        self.sb = dict(zip([k for k, _ in lb], s[len(lf) : len(lf) + len(lb)])) if s else {}
        self.extra = s[len(lf) + len(lb) :]
        self.ns = 2 if af["return_state"] else 0
        ys = e.y if hasattr(e, "y") else []
        self.states = ys[(2 if self.mode is None else 1) :]
        # the merge's last axis: the filters, or the last spatial axis for channels_first
        last = _step_geometry(af, e.x_shapes[0])[2][-1] if g.cf else g.f
        self.width = last
        self.m = g.pf // last
        self.lead = f"{g.rows}, {g.tout}"
        self.z = _empties(e)

    def view(self, var: str, width: int | None = None) -> str:
        return f"{var}.reshape(({self.lead}, {self.m}, {width or self.width}))"

    def direction_out(self, k: int, lines_after: list) -> tuple[str, str]:
        """(the kernel's output argument, the merge-layout variable) of direction ``k``."""
        g = self.gf
        if self.mode == "mul" and self.extra:
            ym = self.extra[k]
        else:
            ym = self.e.tmp(f"({g.rows}, {g.tout}, {g.pf})")
        if not g.cf:
            return f"{ym}.reshape(({self.lead}, {g.pf}))", ym
        t = self.e.tmp(f"({g.rows} * {g.tout}, {g.npos}, {g.f})")
        lines_after.append(
            self.e.call(conv.swap_last2, t, f"{ym}.reshape(({g.rows} * {g.tout}, {g.f}, {g.npos}))")
        )
        return f"{t}.reshape(({self.lead}, {g.pf}))", ym

    def merged(self) -> tuple[str, ...]:
        """The merged output variables as the merge kernel's y: one, or two for mode None."""
        e = self.e
        if self.mode is None:
            return self.view(e.y[0]), self.view(e.y[1])
        return (self.view(e.y[0], 2 * self.width if self.mode == "concat" else None),)


def bidirectional_forward(e, af, ab, training: bool) -> list[str]:
    bd = _Bidi(e, af, ab, training)
    g = bd.gf
    lines: list[str] = []
    x = g.x_last(lines)
    outs = []
    for k, (a, p, saved, gk) in enumerate(((af, e.p[: bd.n], bd.sf, bd.gf), (ab, e.p[bd.n :], bd.sb, bd.gb))):
        after: list[str] = []
        yk, ym = bd.direction_out(k, after)
        st = bd.states[k * bd.ns : (k + 1) * bd.ns]
        states = [gk.seq(v, None, after, True) for v in st] if st else [bd.z[1], bd.z[1]]
        init = [gk.seq(v, None, lines, False) for v in e.x[1 + 2 * k : 3 + 2 * k]] or None  # h, c per direction
        lines.append(_forward_call(e, gk, a, x, p, yk, states, saved, bd.z, init))
        lines += after
        outs.append(bd.view(ym))
    flip = _bool(af["return_sequences"])
    merged = bd.merged()
    if bd.mode is None:
        lines.append(e.call(bidi_merge, outs[1], outs[0], merged[0], _int(4), _bool(False)))
        lines.append(e.call(bidi_merge, outs[0], outs[1], merged[1], _int(4), flip))
    else:
        lines.append(e.call(bidi_merge, outs[0], outs[1], merged[0], _int(BIDI_MODES[bd.mode]), flip))
    return lines


def bidirectional_backward(e, af, ab) -> list[str]:
    bd = _Bidi(e, af, ab, True)
    g = bd.gf
    lines: list[str] = []
    x = g.x_last(lines)
    moves: list[str] = []
    dx = _input_grad(e, g, lines, moves)
    flip = _bool(af["return_sequences"])
    dm = [e.tmp(f"({g.rows}, {g.tout}, {g.pf})") for _ in range(2)]
    dmv = [bd.view(v) for v in dm]
    if bd.mode is None:
        dys = [bd.view(e.dy[0]), bd.view(e.dy[1])]
        lines.append(e.call(bidi_split, dys[0], dmv[1], dmv[0], dmv[1], dmv[0], _int(4), _bool(False)))
        lines.append(e.call(bidi_split, dys[1], dmv[0], dmv[1], dmv[0], dmv[1], _int(4), flip))
    else:
        dy = bd.view(e.dy[0], 2 * bd.width if bd.mode == "concat" else None)
        a, b = (bd.view(v) for v in bd.extra) if bd.mode == "mul" else (dmv[0], dmv[1])
        lines.append(e.call(bidi_split, dy, a, b, dmv[0], dmv[1], _int(BIDI_MODES[bd.mode]), flip))
    dstates_all = e.dy[(2 if bd.mode is None else 1) :]
    for k, (a_, p, dp, saved, gk) in enumerate(((af, e.p[: bd.n], e.dp[: bd.n], bd.sf, bd.gf),
                                                (ab, e.p[bd.n :], e.dp[bd.n :], bd.sb, bd.gb))):  # fmt: skip
        dyk = gk.seq(dm[k], g.tout, lines, False)
        st = dstates_all[k * bd.ns : (k + 1) * bd.ns]
        dstates = [gk.seq(v, None, lines, False) for v in st] if st else [bd.z[1], bd.z[1]]
        dinit = [_state_grad(e, gk, v, bd.z, lines, moves) for v in e.dx[1 + 2 * k : 3 + 2 * k]] or None
        lines.append(_backward_call(e, gk, a_, x, p, dp, dyk, dstates, saved, dx, bd.z, dinit))
    return lines + moves


# ----------------------------------------------------------------------------- reference


def _reference(attrs, inputs, params, masks=None):
    """Keras's ConvLSTM in plain NumPy (float64): [output, h, c] as the layer returns them. Given
    initial states (inputs after the sequence), the steps start from them and ignore the mask."""
    x, *init = inputs
    cf = attrs["data_format"] == "channels_first"
    if cf:
        x = np.moveaxis(x, 2, -1)
        init = [np.moveaxis(v, 1, -1) for v in init]
    rank = x.ndim - 3
    w, u = params[0], params[1]
    b = params[2] if attrs["use_bias"] else 0.0
    f = attrs["filters"]
    act = lambda v: activations.reference(attrs["activation"], v)
    ract = lambda v: activations.reference(attrs["recurrent_activation"], v)
    ones = [1] * rank

    def in_conv(xt):
        return _ref_conv(xt, w, attrs["strides"], attrs["dilation_rate"], attrs["padding"], 1) + b

    z0 = in_conv(x[:, 0])
    h = np.zeros(z0.shape[:-1] + (f,))
    c = np.zeros_like(h)
    if init:
        h, c = (np.asarray(v, np.float64) for v in init)
    prev = np.zeros_like(h)
    given = init and not attrs.get("stateful")  # given states, not a stateful step's kept ones
    mask = None if not masks or masks[0] is None or given else np.asarray(masks[0]).astype(bool)
    outs = []
    steps = x.shape[1]
    for t in reversed(range(steps)) if attrs["go_backwards"] else range(steps):
        z = in_conv(x[:, t]) + _ref_conv(h, u, ones, ones, "same", 1)
        i, fg, cand, o = (z[..., q * f : (q + 1) * f] for q in range(4))
        c_new = ract(fg) * c + ract(i) * act(cand)
        h_new = ract(o) * act(c_new)
        out = h_new
        if mask is not None:
            m = mask[:, t].reshape((-1,) + (1,) * (h.ndim - 1))
            c_new = np.where(m, c_new, c)
            h_new = np.where(m, h_new, h)
            out = np.where(m, h_new, 0.0 if attrs["zero_output_for_mask"] else prev)
        h, c, prev = h_new, c_new, out
        outs.append(out)
    back = (lambda v: np.moveaxis(v, -1, 1)) if cf else (lambda v: v)
    y = np.stack([back(o) for o in outs], axis=1) if attrs["return_sequences"] else back(outs[-1])
    return [y, back(h), back(c)] if attrs["return_state"] else [y]


# ----------------------------------------------------------------------------- layers


def _conv_lstm(rank: int, doc: str) -> LayerDef:
    name = f"ConvLSTM{rank}D"
    return LayerDef(
        name=name,
        attrs=_attrs(rank),
        infer=_infer(name, rank),
        params=_params(name, rank),
        emit=_emit,
        emit_train=_emit_train,
        emit_backward=_emit_backward,
        saved=_saved,
        reference=_reference,
        uses_mask=True,
        random_training=dropout_draws,
        positional=("filters", "kernel_size"),
        doc=doc,
        arity=(1, 3),  # the sequence, then optionally the initial states h, c (Keras's initial_state)
        extra={"gates": recurrent.LSTM_GATES, "initial_state": True},
    )


_COMMON_DOC = (
    "The gates (i, f, c, o, as LSTM) are the convolution of the step's input with `kernel` "
    "(strides, padding, dilation_rate as Conv{r}D's) plus the bias plus the convolution of the hidden "
    "state with `recurrent_kernel` (stride 1, padding same). kernel is (*kernel_size, channels, 4*filters), "
    "recurrent_kernel (*kernel_size, filters, 4*filters), bias (4*filters,). Returns the last output "
    "(batch, {out}), or every output (batch, time, {out}) with return_sequences, then the final h and c "
    "with return_state. Spatial dimensions must be known; the time axis may vary. The sequence output keeps "
    "the input's (batch, time) mask; states are never masked. Initial states (Keras's initial_state) "
    "are inputs after the sequence, `x, h0, c0 -> convlstm`, each shaped as the returned states; with "
    "them the steps ignore the input's mask, as Keras 3 passes no mask to such a call."
)

CONV_LSTM1D = _conv_lstm(
    1,
    "Convolutional LSTM over a sequence of 1D signals (batch, time, steps, channels). "
    + _COMMON_DOC.format(r=1, out="new_steps, filters"),
)
CONV_LSTM2D = _conv_lstm(
    2,
    "Convolutional LSTM over a sequence of images (batch, time, rows, cols, channels), or (batch, time, "
    "channels, rows, cols) with data_format channels_first. "
    + _COMMON_DOC.format(r=2, out="new_rows, new_cols, filters"),
)
CONV_LSTM3D = _conv_lstm(
    3,
    "Convolutional LSTM over a sequence of volumes (batch, time, depth, rows, cols, channels). "
    + _COMMON_DOC.format(r=3, out="new_depth, new_rows, new_cols, filters"),
)

LAYERS = (CONV_LSTM1D, CONV_LSTM2D, CONV_LSTM3D)
