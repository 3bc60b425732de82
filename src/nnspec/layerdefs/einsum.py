"""EinsumDense: a Dense layer whose product is an einsum equation (``ab,bc->ac``,
``...b,bc->...c``, ``abc,cd->abd``...), with Keras 3's weight shapes, bias axes and initializer fans.

The equation's letters sort into four roles, and the product is a batch of matrix products:
shared letters S (in the input, the kernel and the output: one product per value), free input
letters FX (input and output: the product's rows; the batch is one), contracted letters C (input
and kernel, or input only: summed) and free kernel letters FW (kernel and output: the columns).
Kernels gather each operand into (FX, C) and (C, FW) matrices through offset tables
(``base.offset_grid``), multiply with BLAS and scatter the result, so any equation Keras accepts
runs through one pair of kernels.
"""

from __future__ import annotations

import math
import re

from . import activations
from .base import (
    COMMON_ATTRS,
    Attr,
    LayerDef,
    ParamSpec,
    ShapeError,
    TensorType,
    fmt_shape,
    offset_grid,
    with_fan_axes,
)
from .core import ACTIVATION_ATTR, NO_GRAD, _dense_saved, kernel_bias_attrs

np = None  # bound by base.bind_numpy

KERNEL_HELPERS = ("offset_grid", "_gather", "_tables")

_FORMS = (
    (re.compile(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)"), None),
    (re.compile(r"\.\.\.([a-zA-Z]+),([a-zA-Z]+)->\.\.\.([a-zA-Z]+)"), "left"),
    (re.compile(r"([a-zA-Z]{2,})\.\.\.,([a-zA-Z]+)->([a-zA-Z]+)\.\.\."), "right"),
)


def analyze(attrs, x: TensorType) -> dict:
    """Everything about an EinsumDense call on ``x``: the equation with its ellipsis spelled
    out in letters (``full_in``, ``kernel``, ``full_out``), the output shape, the kernel and
    bias shapes, and the kernel's input/output axes (for its initializer's fans). Raises
    ShapeError for an equation or shape Keras would refuse, naming the problem."""
    eq = attrs["equation"].replace(" ", "")
    rule = f"EinsumDense('{eq}')"
    for pattern, elided_side in _FORMS:
        m = pattern.fullmatch(eq)
        if m:
            break
    else:
        raise ShapeError(f"{rule}: equations take the form ab,bc->ac, ...b,bc->...c or ab...,bc->ac...")
    ins, ker, outs = m.groups()
    for spec, what in ((ins, "input"), (ker, "kernel"), (outs, "output")):
        if len(set(spec)) != len(spec):
            raise ShapeError(f"{rule}: the {what} subscripts '{spec}' repeat a letter")
    n = x.rank
    elided = n - len(ins)
    if elided < 0 or (elided_side is None and elided != 0):
        raise ShapeError(f"{rule} needs an input of rank {len(ins)}{' or more' if elided_side else ''}; "
                         f"got {fmt_shape(x.shape)}")  # fmt: skip
    used = set(ins + ker + outs)
    extra = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used][:elided]
    el = "".join(extra)
    full_in = el + ins if elided_side == "left" else ins + el
    full_out = el + outs if elided_side == "left" else outs + el
    partial = attrs["output_shape"]
    partial = [partial] if isinstance(partial, int) or partial is None else list(partial)
    named = outs if elided_side == "left" else outs[1:]  # output letters the output_shape gives
    if len(partial) != len(named):
        raise ShapeError(f"{rule}: output_shape {attrs['output_shape']} must give {len(named)} size(s), one per "
                         f"output letter {'' if elided_side == 'left' else 'after the batch '}('{named}')")  # fmt: skip
    given = dict(zip(named, partial))
    in_dim = dict(zip(full_in, x.shape))
    out_shape = []
    for i, c in enumerate(full_out):
        if c in in_dim:
            d = in_dim[c]
            if given.get(c) is not None and d is not None and given[c] != d:
                raise ShapeError(f"{rule}: output_shape gives {given[c]} for '{c}', the input has {d}; got "
                                 f"{fmt_shape(x.shape)}")  # fmt: skip
            out_shape.append(d)
        elif c in ker:
            if given.get(c) is None:
                raise ShapeError(f"{rule}: output_shape must give the size of '{c}' (a kernel axis)")
            out_shape.append(given[c])
        else:
            raise ShapeError(f"{rule}: output letter '{c}' is neither in the input nor in the kernel")
    batch = full_in[0]
    if batch not in full_out or batch in ker:
        raise ShapeError(f"{rule}: the batch axis ('{batch}') must pass from the input to the output, not into "
                         "the kernel")  # fmt: skip
    out_dim = dict(zip(full_out, out_shape))
    kshape, in_axes, out_axes = [], [], []
    for i, c in enumerate(ker):
        if c in out_dim:  # Keras sizes these from output_shape, even where the input knows them
            if given.get(c) is None:
                raise ShapeError(f"{rule}: output_shape must give the size of '{c}' (a kernel axis); got "
                                 f"{attrs['output_shape']}")  # fmt: skip
            kshape.append(given[c])
            out_axes.append(i)
        elif c in in_dim:
            kshape.append(in_dim[c])
            in_axes.append(i)
        else:
            raise ShapeError(f"{rule}: kernel letter '{c}' is neither in the input nor in the output")
        if kshape[-1] is None:
            raise ShapeError(f"{rule}: the kernel's axis '{c}' needs a known size; got {fmt_shape(x.shape)}")
    bias_shape = None
    if attrs["bias_axes"]:
        for c in attrs["bias_axes"]:
            if c not in outs:
                raise ShapeError(f"{rule}: bias axis '{c}' is not in the output subscripts '{outs}'")
        first = min(outs.index(c) for c in attrs["bias_axes"])
        bias_shape = [out_dim[c] if c in attrs["bias_axes"] else 1 for c in outs[first:]]
        if elided_side == "right":
            bias_shape += [1] * elided
        if any(d is None for d in bias_shape):
            raise ShapeError(f"{rule}: the bias axes need known sizes")
    return {"in": full_in, "kernel": ker, "out": full_out, "out_shape": tuple(out_shape),
            "kernel_shape": tuple(kshape), "bias_shape": None if bias_shape is None else tuple(bias_shape),
            "input_axes": in_axes, "output_axes": out_axes}  # fmt: skip


def _infer(attrs, inputs, ctx):
    (x,) = inputs
    activations.check_fused(attrs.get("activation"), "EinsumDense")
    if not x.dtype.startswith("float"):
        raise ShapeError(f"EinsumDense takes a float input; got {x.dtype}")
    a = analyze(attrs, x)
    return [TensorType(a["out_shape"], "float32", False)]


def _params(attrs, inputs, ctx):
    a = analyze(attrs, inputs[0])
    init = with_fan_axes(attrs["kernel_initializer"], a["input_axes"], a["output_axes"])
    out = [ParamSpec("kernel", a["kernel_shape"], init, regularizer=attrs["kernel_regularizer"],
                     constraint=attrs["kernel_constraint"])]  # fmt: skip
    if a["bias_shape"] is not None:
        out.append(ParamSpec("bias", a["bias_shape"], attrs["bias_initializer"], regularizer=attrs["bias_regularizer"],
                             constraint=attrs["bias_constraint"]))  # fmt: skip
    return out


# ----------------------------------------------------------------------------- kernels


def _gather(src, base, rows_off, cols_off, out):
    """``out[i, j] = src[base + rows_off[i] + cols_off[j]]`` (``src`` 1-D)."""
    for i in range(rows_off.shape[0]):
        for j in range(cols_off.shape[0]):
            out[i, j] = src[base + rows_off[i] + cols_off[j]]


def _tables(w, g):
    """The offset tables of geometry ``g`` (per role, where each index lands in the input, the
    kernel and the output; the bias index of each output position) and the kernel gathered
    as (S, C, FW) matrices."""
    (s_sh, s_x, s_w, s_y, fx_sh, fx_x, fx_y, c_sh, c_x, c_w, fw_sh, fw_w, fw_y, y_sh, b_st) = g
    so_w, co_w, fwo_w = offset_grid(s_sh, s_w), offset_grid(c_sh, c_w), offset_grid(fw_sh, fw_w)
    kern = np.empty((so_w.shape[0], co_w.shape[0], fwo_w.shape[0]), np.float32)
    for s in range(so_w.shape[0]):
        _gather(w, so_w[s], co_w, fwo_w, kern[s])
    return (offset_grid(s_sh, s_x), so_w, offset_grid(s_sh, s_y), offset_grid(fx_sh, fx_x),
            offset_grid(fx_sh, fx_y), offset_grid(c_sh, c_x), co_w, fwo_w, offset_grid(fw_sh, fw_y),
            offset_grid(y_sh, b_st), kern)  # fmt: skip


def einsum_dense_forward(x, w, b, y, g):
    """``y = einsum(x, w) (+ b)`` per sample of the 2-D (rows, values per sample) ``x`` and ``y``,
    ``w`` and ``b`` flat. ``g`` holds the geometry's (shape, strides) pairs, see ``_geometry``."""
    so_x, _, so_y, fxo_x, fxo_y, co_x, _, fwo_w, fwo_y, bo, kern = _tables(w, g)
    ns, nfx, nc, nfw = so_x.shape[0], fxo_x.shape[0], co_x.shape[0], fwo_w.shape[0]
    a = np.empty((nfx, nc), np.float32)
    o = np.empty((nfx, nfw), np.float32)
    rows = x.shape[0]
    for r in range(rows):
        xr = x[r]
        yr = y[r]
        for s in range(ns):
            _gather(xr, so_x[s], fxo_x, co_x, a)
            np.dot(a, kern[s], o)
            for i in range(nfx):
                for j in range(nfw):
                    yr[so_y[s] + fxo_y[i] + fwo_y[j]] = o[i, j]
    if b.shape[0] > 0:
        for r in range(rows):
            for p in range(bo.shape[0]):
                y[r, p] += b[bo[p]]


def einsum_dense_backward(x, w, dz, dx, dw, db, g, need_dx, need_dw):
    """The gradient of ``einsum_dense_forward`` given ``dz`` (the pre-activation's): adds into
    ``dx`` (2-D like ``x``), ``dw`` and ``db`` (flat; empty when not needed)."""
    so_x, so_w, so_y, fxo_x, fxo_y, co_x, co_w, fwo_w, fwo_y, bo, kern = _tables(w, g)
    ns, nfx, nc, nfw = so_x.shape[0], fxo_x.shape[0], co_x.shape[0], fwo_w.shape[0]
    dkern = np.zeros((ns, nc, nfw), np.float32)
    a = np.empty((nfx, nc), np.float32)
    gy = np.empty((nfx, nfw), np.float32)
    da = np.empty((nfx, nc), np.float32)
    dk = np.empty((nc, nfw), np.float32)
    rows = x.shape[0]
    for r in range(rows):
        for s in range(ns):
            _gather(dz[r], so_y[s], fxo_y, fwo_y, gy)
            if need_dx:
                np.dot(gy, kern[s].T, da)
                for i in range(nfx):
                    for c in range(nc):
                        dx[r, so_x[s] + fxo_x[i] + co_x[c]] += da[i, c]
            if need_dw:
                _gather(x[r], so_x[s], fxo_x, co_x, a)
                np.dot(a.T, gy, dk)
                for c in range(nc):
                    for j in range(nfw):
                        dkern[s, c, j] += dk[c, j]
    if need_dw:
        for s in range(ns):
            for c in range(nc):
                for j in range(nfw):
                    dw[so_w[s] + co_w[c] + fwo_w[j]] += dkern[s, c, j]
    if db.shape[0] > 0:
        for r in range(rows):
            for p in range(bo.shape[0]):
                db[bo[p]] += dz[r, p]


def _strides(shape) -> list:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def _geometry(attrs, x_shape) -> tuple:
    """The kernels' ``g``: for each letter role, its sizes and its strides in the operands (per
    sample for the input and output; the batch letter is the row), and the bias's strides over
    one sample of the output. An empty role is one axis of size 1."""
    a = analyze(attrs, TensorType((None, *x_shape)))
    full_in, ker, full_out = a["in"], a["kernel"], a["out"]
    xs, ys = tuple(x_shape), a["out_shape"][1:]
    x_st = dict(zip(full_in[1:], _strides(xs)))
    y_st = dict(zip(full_out[1:], _strides(ys)))
    w_st = dict(zip(ker, _strides(a["kernel_shape"])))
    dims = dict(zip(full_in[1:], xs)) | dict(zip(full_out[1:], ys)) | dict(zip(ker, a["kernel_shape"]))
    inner_in = full_in[1:]
    roles = {
        "s": [c for c in inner_in if c in ker and c in full_out],
        "fx": [c for c in inner_in if c not in ker and c in full_out],
        "c": [c for c in inner_in if c not in full_out],
        "fw": [c for c in ker if c not in full_in],
    }

    def grid(letters, *strides):
        if not letters:
            return ((1,),) + tuple((0,) for _ in strides)
        return (tuple(dims[c] for c in letters),) + tuple(tuple(st.get(c, 0) for c in letters) for st in strides)

    s = grid(roles["s"], x_st, w_st, y_st)
    fx = grid(roles["fx"], x_st, y_st)
    c = grid(roles["c"], x_st, w_st)
    fw = grid(roles["fw"], w_st, y_st)
    ysh = tuple(ys) or (1,)
    if a["bias_shape"] is None:
        b_st = tuple(0 for _ in ysh)
    else:
        bshape = a["bias_shape"]
        bst = _strides(bshape)
        pad = len(ysh) - len(bshape)
        b_st = tuple(0 if k < pad or bshape[k - pad] == 1 else bst[k - pad] for k in range(len(ysh)))
    return (*s, *fx, *c, *fw, ysh, b_st)


def _emit_parts(e):
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    g = _geometry(e.attrs, xs)
    b = e.p[1] + ".ravel()" if len(e.p) > 1 else e.empty
    return xs, ys, g, b


def _emit(e, pre=None):
    _, ys, g, b = _emit_parts(e)
    y = pre or e.y[0]
    lines = [e.call(einsum_dense_forward, e.per_sample(e.x[0]), e.p[0] + ".ravel()", b,
                    f"{y}.reshape(({e.rows(output=True)}, {math.prod(ys)}))", g)]  # fmt: skip
    c = activations.code(e.attrs["activation"])
    if pre is not None:
        lines.append(e.call(activations.activation_forward, e.flat2(pre, ys, e.rows(output=True)),
                            e.flat2(e.y[0], ys, e.rows(output=True)), c))  # fmt: skip
    elif c:
        lines.append(e.call(activations.apply_activation, e.flat2(e.y[0], ys, e.rows(output=True)), c))
    return lines


def _emit_train(e):
    c = activations.code(e.attrs["activation"])
    return _emit(e, e.s[0] if activations.needs_input(c) else None)


def _backward(e):
    _, ys, g, _ = _emit_parts(e)
    dw = e.dp[0]
    db = e.dp[1] if len(e.dp) > 1 else None
    if dw is None and db is None and e.dx[0] is None:
        return []
    rows = e.rows(output=True)
    c = activations.code(e.attrs["activation"])
    lines = []
    dz = e.per_sample(e.dy[0], True)
    if c:
        t = e.tmp(f"({rows} * {math.prod(ys[:-1])}, {ys[-1]})")
        pre = e.s[0] if activations.needs_input(c) else e.y[0]
        lines.append(e.call(activations.activation_backward, e.flat2(pre, ys, rows), e.flat2(e.y[0], ys, rows),
                            e.flat2(e.dy[0], ys, rows), t, c, False))  # fmt: skip
        dz = f"{t}.reshape(({rows}, {math.prod(ys)}))"
    dx = e.per_sample(e.dx[0]) if e.dx[0] is not None else e.per_sample(e.x[0])
    lines.append(e.call(einsum_dense_backward, e.per_sample(e.x[0]), e.p[0] + ".ravel()", dz, dx,
                        dw + ".ravel()" if dw is not None else NO_GRAD, db + ".ravel()" if db is not None else NO_GRAD,
                        g, e.dx[0] is not None, dw is not None))  # fmt: skip
    return lines


def _reference(attrs, inputs, params, masks=None):
    (x,) = inputs
    y = np.einsum(attrs["equation"].replace(" ", ""), x, params[0])
    if len(params) > 1:
        y = y + params[1]
    return [activations.reference(attrs["activation"], y)]


_BIAS_ATTRS = kernel_bias_attrs()[1:]  # Keras's EinsumDense has bias_axes instead of use_bias

EINSUM_DENSE = LayerDef(
    name="EinsumDense",
    attrs=(
        Attr("equation", "str", doc="The einsum equation: `ab,bc->ac`, `...b,bc->...c` or `ab...,bc->ac...` "
             "(input, kernel -> output; the input's first letter, or the ellipsis, holds the batch)."),
        Attr("output_shape", "sizes", doc="The output's sizes after the batch (or after the leading ellipsis); "
             "null where the input gives the size. One int for one axis."),
        ACTIVATION_ATTR,
        Attr("bias_axes", "str", None, "Output letters the bias varies along (null: no bias).", nullable=True),
        *_BIAS_ATTRS,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_infer,
    params=_params,
    emit=_emit,
    emit_train=_emit_train,
    emit_backward=_backward,
    saved=_dense_saved,
    reference=_reference,
    positional=("equation", "output_shape"),
    doc="A Dense layer whose product is an einsum equation, as Keras's EinsumDense: the kernel's "
    "shape follows from the equation, the input's shape and `output_shape`; a bias along "
    "`bias_axes`. Its output carries no mask. Where `output_shape` gives null, nnspec takes the "
    "size from the input (Keras's summary prints None there; the values are the same).",
)
