"""Attention layers: Attention (Luong, dot or concat scores), AdditiveAttention (Bahdanau) and
MultiHeadAttention, with Keras 3's weights, masks and call options.

Keras's call arguments ``use_causal_mask`` and ``return_attention_scores`` describe the network,
so a model file gives them as attributes of the layer (``LayerDef.extra["call_attrs"]`` lists
them, for whoever builds the same layer in Keras). Masks follow Keras: the query's mask becomes
the output's mask; a masked value (or key) step gets ``-1e9`` added to its scores before the
softmax, so it takes no weight; Attention and AdditiveAttention zero the output at masked query
steps, MultiHeadAttention also masks the scores of masked query steps (its softmax then spreads
evenly: Keras's numbers, kept as they are).

Kernels work on one sample at a time: scores ``(Tq, Tv)`` per sample (and head), softmax, then
the weighted sum of the values. MultiHeadAttention's four projections are Dense products over
the whole batch (``core.dense_forward`` and its gradients, BLAS).
"""

from __future__ import annotations

import math

from . import activations
from .base import (
    COMMON_ATTRS,
    Attr,
    LayerDef,
    ParamSpec,
    ShapeError,
    TensorType,
    fmt_shape,
    with_fan_axes,
)
from .core import (
    DROPOUT_BITS,
    NO_GRAD,
    dense_forward,
    dense_grad_input,
    dense_grad_params,
)
from .recurrent import _bool, _int

np = None  # bound by base.bind_numpy

KERNEL_HELPERS = ("_softmax_into", "_softmax_grad", "_head", "_drop_into", "_attention_scores", "_mask_scores")

MASKED = 1.0e9  # Keras adds -1e9 to a masked score (float32; 65504 would be float16's)
CALL_ATTRS = ("use_causal_mask", "return_attention_scores")


def _fmt_all(inputs) -> str:
    return ", ".join(fmt_shape(t.shape) for t in inputs)


CAUSAL_ATTR = Attr(
    "use_causal_mask", "bool", False,
    "Keras's call argument: position i attends only to positions j <= i (decoder self-attention).",
)  # fmt: skip


SEED_ATTR = Attr("seed", "int", None, "Random seed of the dropout.", nullable=True)

RETURN_SCORES_ATTR = Attr(
    "return_attention_scores", "bool", False,
    "Keras's call argument: a second output holds the attention weights (after masking and softmax).",
)  # fmt: skip


def _floats(rule: str, inputs) -> None:
    for t in inputs:
        if not t.dtype.startswith("float"):
            raise ShapeError(f"{rule} takes float inputs; got {t.dtype} ({_fmt_all(inputs)})")


# ----------------------------------------------------------------------------- kernels


def _softmax_into(s, w):
    """``w[i, :] = softmax(s[i, :])`` for each row of the 2-D ``s`` (activations' row softmax)."""
    rows, cols = s.shape
    for i in range(rows):
        activations._softmax_row(s, w, i, cols, False)


def _softmax_grad(w, dw, ds):
    """``ds`` = the gradient of the scores whose row softmax is ``w``, given ``dw`` (2-D)."""
    rows, cols = w.shape
    for i in range(rows):
        dot = 0.0
        for j in range(cols):
            dot += dw[i, j] * w[i, j]
        for j in range(cols):
            ds[i, j] = w[i, j] * (dw[i, j] - dot)


def _head(x, r, h, width, out):
    """``out = x[r, :, h * width:(h + 1) * width]``: one head's slice of a projected value,
    contiguous for BLAS."""
    o = np.uint64(h * width)  # unsigned: no wraparound check per element (recurrent._add_rows)
    for i in range(out.shape[0]):
        for c in range(np.uint64(width)):
            out[i, c] = x[r, i, o + c]


def _drop_into(w, wd, keep, rate):
    """Dropout of the 2-D weights ``w`` into ``wd``: ``keep`` gets 1.0 (kept) or 0.0, drawn with
    probability ``1 - rate`` of keeping (core's 24-bit draw); kept weights are divided by
    ``1 - rate`` in float32, as Keras does."""
    kp = np.float32(1.0 - rate)
    threshold = round((1.0 - rate) * DROPOUT_BITS)
    rows, cols = w.shape
    for i in range(rows):
        for j in range(cols):
            if rate < 1.0 and np.random.randint(0, DROPOUT_BITS) < threshold:
                keep[i, j] = 1.0
                wd[i, j] = w[i, j] / kp
            else:
                keep[i, j] = 0.0
                wd[i, j] = 0.0


def _mask_scores(s, qm, vm, km, r, causal, window):
    """Add ``-1e9`` to the scores ``s`` (Tq, Tv) of sample ``r`` where query step i may not attend
    to value step j: a masked query step (``qm``), value or key step (``vm``, ``km``; a mask is
    absent when its first axis is empty), j > i with ``causal``, |i - j| >= ``window`` (> 0).
    One pass over the block: a call per pair cost 7x the whole attention at 200 steps."""
    tq, tv = s.shape
    neg = np.float32(MASKED)
    has_q, has_v, has_k = qm.shape[0] > 0, vm.shape[0] > 0, km.shape[0] > 0
    for i in range(tq):
        row_ok = not has_q or qm[r, i] != 0.0
        for j in range(tv):
            ok = row_ok and (not has_v or vm[r, j] != 0.0) and (not has_k or km[r, j] != 0.0)
            if ok and causal and j > i:
                ok = False
            if ok and window > 0 and abs(i - j) >= window:
                ok = False
            if not ok:
                s[i, j] = s[i, j] - neg


def _attention_scores(q, k, r, mode, scale, cw, s):
    """Scores of sample ``r`` into ``s`` (Tq, Tv). ``mode`` 0: ``q . k`` (times the scalar
    ``scale[0]`` if given); 1: ``cw[0] * sum(tanh(scale[0] * (q + k)))`` (Attention's concat);
    2: ``sum(scale * tanh(q + k))`` (AdditiveAttention, ``scale`` per feature). An absent
    ``scale`` is empty."""
    tq, d = q.shape[1], q.shape[2]
    tv = k.shape[1]
    has_scale = scale.shape[0] > 0
    if mode == 0:
        if tq * tv * d > 4096:
            np.dot(q[r], k[r].T, s)
        else:
            for i in range(tq):
                for j in range(tv):
                    acc = np.float32(0.0)
                    for c in range(d):
                        acc += q[r, i, c] * k[r, j, c]
                    s[i, j] = acc
        if has_scale:
            for i in range(tq):
                for j in range(tv):
                    s[i, j] = s[i, j] * scale[0]
        return
    for i in range(tq):
        for j in range(tv):
            acc = np.float32(0.0)
            for c in range(d):
                u = q[r, i, c] + k[r, j, c]
                if mode == 1:
                    if has_scale:
                        u = scale[0] * u
                    acc += np.float32(math.tanh(u))
                else:
                    t = np.float32(math.tanh(u))
                    acc += scale[c] * t if has_scale else t
            s[i, j] = cw[0] * acc if mode == 1 else acc


def attention_forward(q, v, k, qm, vm, mode, scale, cw, causal, rate, out, w_pre, w_out, keep):
    """Attention / AdditiveAttention over 3-D (rows, steps, features) ``q``, ``v``, ``k``.

    ``qm``, ``vm``: (rows, steps) masks or empty. ``w_pre`` gets the softmax weights (a
    one-sample ``w_pre`` is scratch, overwritten per sample: no output keeps them); with
    ``rate`` > 0 (training) ``w_out`` gets them after dropout and ``keep`` the kept positions,
    otherwise pass ``w_pre`` as ``w_out``. ``out`` (rows, Tq, dv) = ``w_out . v``, zero at masked
    query steps."""
    rows, tq = q.shape[0], q.shape[1]
    tv = v.shape[1]
    dv = v.shape[2]
    none = np.empty((0, 0), np.float32)
    s = np.empty((tq, tv), np.float32)
    for r in range(rows):
        _attention_scores(q, k, r, mode, scale, cw, s)
        if vm.shape[0] > 0 or causal:
            _mask_scores(s, none, vm, none, r, causal, 0)
        wr = r if w_pre.shape[0] == rows else 0  # one sample of scratch when no output keeps them
        _softmax_into(s, w_pre[wr])
        if rate > 0.0:
            _drop_into(w_pre[wr], w_out[wr], keep[wr], rate)
        np.dot(w_out[wr], v[r], out[r])
        if qm.shape[0] > 0:
            for i in range(tq):
                if qm[r, i] == 0.0:
                    for c in range(dv):
                        out[r, i, c] = 0.0


def attention_backward(q, v, k, qm, mode, scale, cw, rate, w_pre, keep, dout, dscores,
                       dq, dv, dk, dscale, dcw, need_dq, need_dv, need_dk):  # fmt: skip
    """The gradient of ``attention_forward``: adds into ``dq``, ``dv``, ``dk`` (shaped as the
    inputs; ``dk`` may be ``dv`` when the key is the value), ``dscale`` and ``dcw`` (empty when
    absent or frozen). ``dscores`` is the gradient of the returned weights (``w_out``) or empty."""
    rows, tq, d = q.shape
    tv = v.shape[1]
    dvf = v.shape[2]
    kp = np.float32(1.0 - rate)
    has_scale = scale.shape[0] > 0
    g = np.empty((tq, dvf), np.float32)
    wd = np.empty((tq, tv), np.float32)
    dw = np.empty((tq, tv), np.float32)
    ds = np.empty((tq, tv), np.float64)
    t1 = np.empty((tv, dvf), np.float32)
    for r in range(rows):
        for i in range(tq):
            on = qm.shape[0] == 0 or qm[r, i] != 0.0
            for c in range(dvf):
                g[i, c] = dout[r, i, c] if on else 0.0
            for j in range(tv):
                wd[i, j] = w_pre[r, i, j] if rate == 0.0 else (w_pre[r, i, j] / kp if keep[r, i, j] != 0 else 0.0)
        if need_dv:
            np.dot(wd.T, g, t1)
            for j in range(tv):
                for c in range(dvf):
                    dv[r, j, c] += t1[j, c]
        np.dot(g, v[r].T, dw)
        for i in range(tq):
            for j in range(tv):
                x = dw[i, j]
                if dscores.shape[0] > 0:
                    x += dscores[r, i, j]
                if rate > 0.0:
                    x = x / kp if keep[r, i, j] != 0 else 0.0
                dw[i, j] = x
        _softmax_grad(w_pre[r], dw, ds)
        if mode == 0:
            a = scale[0] if has_scale else 1.0
            for i in range(tq):
                for j in range(tv):
                    x = ds[i, j]
                    if x == 0.0:
                        continue
                    if has_scale and dscale.shape[0] > 0:
                        qk = 0.0
                        for c in range(d):
                            qk += q[r, i, c] * k[r, j, c]
                        dscale[0] += x * qk
                    for c in range(d):
                        if need_dq:
                            dq[r, i, c] += a * x * k[r, j, c]
                        if need_dk:
                            dk[r, j, c] += a * x * q[r, i, c]
            continue
        for i in range(tq):
            for j in range(tv):
                x = ds[i, j]
                if mode == 1:
                    a = scale[0] if has_scale else 1.0
                    tsum = 0.0
                    for c in range(d):
                        u = q[r, i, c] + k[r, j, c]
                        t = math.tanh(np.float32(a * u))
                        tsum += t
                        gt = x * cw[0] * (1.0 - t * t)
                        if need_dq:
                            dq[r, i, c] += a * gt
                        if need_dk:
                            dk[r, j, c] += a * gt
                        if has_scale and dscale.shape[0] > 0:
                            dscale[0] += gt * u
                    if dcw.shape[0] > 0:
                        dcw[0] += x * tsum
                else:
                    for c in range(d):
                        t = math.tanh(np.float32(q[r, i, c] + k[r, j, c]))
                        a = scale[c] if has_scale else 1.0
                        gt = x * a * (1.0 - t * t)
                        if need_dq:
                            dq[r, i, c] += gt
                        if need_dk:
                            dk[r, j, c] += gt
                        if has_scale and dscale.shape[0] > 0:
                            dscale[c] += x * t


# ----------------------------------------------------------------------------- Attention layers


def _attention_infer(name: str):
    def infer(attrs, inputs, ctx):
        rule = name
        if len(inputs) not in (2, 3):
            raise ShapeError(f"{rule} takes [query, value] or [query, value, key]; got {len(inputs)} inputs")
        _floats(rule, inputs)
        for t in inputs:
            if t.rank != 3:
                raise ShapeError(f"{rule} expects inputs of rank 3 (batch, steps, features); got {_fmt_all(inputs)}")
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        for t in inputs:
            if t.shape[-1] is None:
                raise ShapeError(f"{rule} needs known feature sizes; got {_fmt_all(inputs)}")
        if k.shape[1] != v.shape[1]:
            raise ShapeError(f"{rule}: the key and the value need the same number of steps; got {_fmt_all(inputs)}")
        if q.shape[-1] != k.shape[-1]:
            raise ShapeError(
                f"{rule}: the query and the key need the same feature size (scores compare them); got "
                f"{_fmt_all(inputs)}"
            )
        outs = [TensorType((q.shape[0], q.shape[1], v.shape[-1]), "float32", q.masked)]
        if attrs["return_attention_scores"]:
            outs.append(TensorType((q.shape[0], q.shape[1], k.shape[1]), "float32", False))
        return outs

    return infer


def _attention_params(attrs, inputs, ctx):
    out = []
    if attrs["use_scale"]:
        out.append(ParamSpec("scale", (), "ones"))
    if attrs["score_mode"] == "concat":
        out.append(ParamSpec("concat_score_weight", (), "ones"))
    return out


def _additive_params(attrs, inputs, ctx):
    if not attrs["use_scale"]:
        return []
    return [ParamSpec("scale", (inputs[0].shape[-1],), "glorot_uniform")]


def _mode(e) -> int:
    if e.step.op == "additive_attention":
        return 2
    return 1 if e.attrs.get("score_mode") == "concat" else 0


def _scale_var(e, p) -> str:
    return f"{p}.reshape((1,))" if e.step.op == "attention" else p


def _attention_vars(e):
    """(q, v, k, qm, vm, scale, cw, dims) of an Attention step's emit."""
    qs, vs = e.x_shapes[0], e.x_shapes[1]
    q = e.x[0]
    v = e.x[1]
    k = e.x[2] if len(e.x) > 2 else v
    none2 = "np.empty((0, 0), np.float32)"
    qm = e.m[0] if e.m and e.m[0] is not None else none2
    vm = e.m[1] if e.m and len(e.m) > 1 and e.m[1] is not None else none2
    a = e.attrs
    i = 0
    scale = cw = e.empty
    if a["use_scale"]:
        scale = _scale_var(e, e.p[0])
        i = 1
    if _mode(e) == 1:
        cw = f"{e.p[i]}.reshape((1,))"
    return q, v, k, qm, vm, scale, cw, (qs[0], vs[0])


def _attention_saved(attrs, x_shapes, y_shapes):
    tq, tv = x_shapes[0][0], x_shapes[1][0]
    out = [((tq, tv), "float32")]  # the softmax weights
    if attrs["dropout"] > 0:
        out.append(((tq, tv), "float32"))  # the kept positions
    return out


def _attention_emit(e):
    q, v, k, qm, vm, scale, cw, (tq, tv) = _attention_vars(e)
    a = e.attrs
    rows = e.rows()
    training = getattr(e, "training", False)
    rate = float(a["dropout"]) if training else 0.0
    scores_out = e.y[1] if a["return_attention_scores"] else None
    if training:
        w_pre = e.s[0]
        keep = e.s[1] if rate > 0 else "np.empty((0, 0, 0), np.float32)"
        w_out = w_pre if rate == 0 else (scores_out or e.tmp(f"({rows}, {tq}, {tv})"))
    else:
        w_pre = scores_out or e.tmp(f"(1, {tq}, {tv})")  # the kernel reuses one sample's scratch
        w_out, keep = w_pre, "np.empty((0, 0, 0), np.float32)"
    lines = [
        e.call(attention_forward, q, v, k, qm, vm, _int(_mode(e)), scale, cw, _bool(a["use_causal_mask"]),
               rate, e.y[0], w_pre, w_out, keep)
    ]  # fmt: skip
    if training and scores_out and w_out != scores_out:  # the saved weights are also an output
        lines.append(f"{scores_out}[:] = {w_out}")
    return lines


def _attention_backward(e):
    q, v, k, qm, _, scale, cw, _ = _attention_vars(e)
    a = e.attrs
    need = [d is not None for d in e.dx]
    if not any(need) and all(d is None for d in e.dp):
        return []
    two = len(e.x) == 2
    rate = float(a["dropout"])
    keep = e.s[1] if rate > 0 else "np.empty((0, 0, 0), np.float32)"
    dscores = e.dy[1] if a["return_attention_scores"] else "np.empty((0, 0, 0), np.float32)"
    dq = e.dx[0] or NO_GRAD3
    dv = e.dx[1] or NO_GRAD3
    dk = dv if two else (e.dx[2] or NO_GRAD3)
    need_dk = need[1] if two else need[2]
    i = 0
    dscale = dcw = NO_GRAD
    if a["use_scale"]:
        dscale = _scale_var(e, e.dp[0]) if e.dp[0] is not None else NO_GRAD
        i = 1
    if _mode(e) == 1 and e.dp[i] is not None:
        dcw = f"{e.dp[i]}.reshape((1,))"
    return [
        e.call(attention_backward, q, v, k, qm, _int(_mode(e)), scale, cw, rate, e.s[0], keep, e.dy[0], dscores,
               dq, dv, dk, dscale, dcw, _bool(need[0]), _bool(need[1]), _bool(need_dk))
    ]  # fmt: skip


NO_GRAD3 = "np.zeros((0, 0, 0), np.float32)"


def _softmax_ref(s):
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def _attention_reference(attrs, inputs, params, masks=None, additive=False):
    q, v = inputs[0], inputs[1]
    k = inputs[2] if len(inputs) > 2 else v
    masks = list(masks or [None] * len(inputs))
    qm = masks[0] if masks else None
    vm = masks[1] if len(masks) > 1 else None
    i = 0
    scale = None
    if attrs["use_scale"]:
        scale = params[0]
        i = 1
    u = q[:, :, None, :] + k[:, None, :, :]  # (n, tq, tv, d)
    if additive:
        s = ((scale if scale is not None else 1.0) * np.tanh(u)).sum(-1)
    elif attrs["score_mode"] == "concat":
        s = params[i] * np.tanh((scale if scale is not None else 1.0) * u).sum(-1)
    else:
        s = np.einsum("nid,njd->nij", q, k) * (scale if scale is not None else 1.0)
    tq, tv = s.shape[1], s.shape[2]
    allowed = np.ones_like(s, dtype=bool)
    if vm is not None:
        allowed &= (np.asarray(vm) != 0)[:, None, :]
    if attrs["use_causal_mask"]:
        allowed &= np.tril(np.ones((tq, tv), bool))[None]
    s = np.where(allowed, s, s - MASKED)
    w = _softmax_ref(s)
    out = np.einsum("nij,njc->nic", w, v)
    if qm is not None:
        out = out * (np.asarray(qm) != 0)[:, :, None]
    return [out, w] if attrs["return_attention_scores"] else [out]


_ATTENTION_DOC = (
    " Inputs: `query, value` or `query, value, key` (the value is the key when none is given), "
    "each of rank 3 (batch, steps, features); output (batch, Tq, value features), masked as the "
    "query. Masked value steps take no weight; the output is zero at masked query steps."
)
DROPOUT_ATTRS_ATTENTION = (
    Attr("dropout", "float", 0.0, "Fraction of the attention weights dropped in training.", minimum=0.0, maximum=1.0),
)

# What every attention layer declares: masks in, the query's mask out, Keras's call arguments,
# and random draws in training when it drops weights.
_ATTENTION_COMMON = dict(arity=(2, 3), uses_mask=True, random_training=lambda attrs: attrs["dropout"] > 0)
_ATTENTION_EXTRA = {"call_attrs": CALL_ATTRS, "mask_from": 0}
# Attention and AdditiveAttention share their kernels (``_mode`` tells them apart).
_SINGLE_HEAD = dict(
    _ATTENTION_COMMON,
    extra=_ATTENTION_EXTRA,
    emit=_attention_emit,
    emit_train=_attention_emit,
    emit_backward=_attention_backward,
    saved=_attention_saved,
)

ATTENTION = LayerDef(
    name="Attention",
    attrs=(
        Attr("use_scale", "bool", False, "Learn a scalar `scale` that multiplies the scores."),
        Attr("score_mode", "enum", "dot", "How scores are computed: `dot` (query . key) or `concat` "
             "(`concat_score_weight * sum(tanh(scale * (query + key)))`).", choices=("dot", "concat")),
        *DROPOUT_ATTRS_ATTENTION,
        SEED_ATTR,
        CAUSAL_ATTR,
        RETURN_SCORES_ATTR,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_attention_infer("Attention"),
    params=_attention_params,
    reference=lambda attrs, inputs, params, masks=None: _attention_reference(attrs, inputs, params, masks),
    **_SINGLE_HEAD,
    doc="Dot-product (Luong-style) attention: `softmax(query . key) . value`." + _ATTENTION_DOC,
)

ADDITIVE_ATTENTION = LayerDef(
    name="AdditiveAttention",
    attrs=(
        Attr("use_scale", "bool", True, "Learn a per-feature `scale` of the tanh terms."),
        *DROPOUT_ATTRS_ATTENTION,
        SEED_ATTR,
        CAUSAL_ATTR,
        RETURN_SCORES_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_attention_infer("AdditiveAttention"),
    params=_additive_params,
    reference=lambda attrs, inputs, params, masks=None: _attention_reference(
        attrs, inputs, params, masks, additive=True
    ),
    **_SINGLE_HEAD,
    doc="Additive (Bahdanau-style) attention: scores `sum(scale * tanh(query + key))`." + _ATTENTION_DOC,
)


# ----------------------------------------------------------------------------- MultiHeadAttention


def scale_values(x, f):
    """``x *= f`` in float32 (Keras scales the projected query by ``1 / sqrt(key_dim)``)."""
    g = np.float32(f)
    rows, cols = x.shape
    for i in range(rows):
        for j in range(cols):
            x[i, j] = x[i, j] * g


def multiply_into(a, b, out):
    """``out = a * b`` element by element (2-D)."""
    rows, cols = a.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] = a[i, j] * b[i, j]


def gate_backward(dog, o, g, do, dgate):
    """Through ``og = o * g`` with ``g = sigmoid(pre)``: ``do = dog * g`` and
    ``dgate = dog * o * g * (1 - g)`` (the gradient of the gate's pre-activation)."""
    rows, cols = dog.shape
    for i in range(rows):
        for j in range(cols):
            gv = g[i, j]
            do[i, j] = dog[i, j] * gv
            dgate[i, j] = dog[i, j] * o[i, j] * gv * (1.0 - gv)


def mha_attend(Q, K, V, qm, vm, km, causal, window, heads, kv_heads, kd, vd, rate, O, w_pre, w_out, keep):
    """The attention of MultiHeadAttention, per sample and head, over projected 3-D values:
    ``Q`` (rows, Tq, heads * kd), already scaled; ``K`` (rows, Tv, kv_heads * kd); ``V`` (rows,
    Tv, kv_heads * vd); query head h reads key/value head ``h // (heads // kv_heads)``
    (GroupQueryAttention's repeat; MultiHeadAttention has ``kv_heads == heads``). Scores of pairs the masks exclude (``_mask_scores``) get ``-1e9`` added;
    ``w_pre`` (rows, heads, Tq, Tv; or one sample of scratch) gets the softmax, ``w_out`` (``w_pre`` itself unless
    ``rate`` > 0) the weights after dropout, ``O`` (rows, Tq, heads * vd) their sum of values."""
    rows, tq = Q.shape[0], Q.shape[1]
    tv = K.shape[1]
    qh = np.empty((tq, kd), np.float32)
    kh = np.empty((tv, kd), np.float32)
    vh = np.empty((tv, vd), np.float32)
    s = np.empty((tq, tv), np.float32)
    oh = np.empty((tq, vd), np.float32)
    rep = heads // kv_heads
    masked = qm.shape[0] > 0 or vm.shape[0] > 0 or km.shape[0] > 0 or causal or window > 0
    for r in range(rows):
        for h in range(heads):
            _head(Q, r, h, kd, qh)
            _head(K, r, h // rep, kd, kh)
            _head(V, r, h // rep, vd, vh)
            np.dot(qh, kh.T, s)
            if masked:
                _mask_scores(s, qm, vm, km, r, causal, window)
            wr = r if w_pre.shape[0] == rows else 0  # one sample of scratch when no output keeps them
            _softmax_into(s, w_pre[wr, h])
            if rate > 0.0:
                _drop_into(w_pre[wr, h], w_out[wr, h], keep[wr, h], rate)
            np.dot(w_out[wr, h], vh, oh)
            o = np.uint64(h * vd)
            for i in range(tq):
                for c in range(np.uint64(vd)):
                    O[r, i, o + c] = oh[i, c]


def mha_attend_backward(Q, K, V, w_pre, keep, rate, dO, dscores, heads, kv_heads, kd, vd, inv, dQ, dK, dV):
    """The gradient of ``mha_attend``: WRITES ``dQ`` (the gradient of the unscaled projected
    query: times ``inv``), ``dK`` and ``dV`` (the sum over the query heads that share a key/value
    head), shaped as ``Q``, ``K``, ``V``. ``dscores`` is the gradient of the returned ``w_pre``,
    or empty."""
    rows, tq = Q.shape[0], Q.shape[1]
    tv = K.shape[1]
    kp = np.float32(1.0 - rate)
    qh = np.empty((tq, kd), np.float32)
    kh = np.empty((tv, kd), np.float32)
    vh = np.empty((tv, vd), np.float32)
    doh = np.empty((tq, vd), np.float32)
    wd = np.empty((tq, tv), np.float32)
    dw = np.empty((tq, tv), np.float32)
    ds = np.empty((tq, tv), np.float32)
    dqh = np.empty((tq, kd), np.float32)
    dkh = np.empty((tv, kd), np.float32)
    dvh = np.empty((tv, vd), np.float32)
    rep = heads // kv_heads
    for r in range(rows):
        dK[r] = 0.0
        dV[r] = 0.0
        for h in range(heads):
            g = h // rep
            _head(Q, r, h, kd, qh)
            _head(dO, r, h, vd, doh)
            _head(K, r, g, kd, kh)
            _head(V, r, g, vd, vh)
            w = w_pre[r, h]
            for i in range(tq):
                for j in range(tv):
                    if rate == 0.0:
                        wd[i, j] = w[i, j]
                    else:
                        wd[i, j] = w[i, j] / kp if keep[r, h, i, j] != 0 else 0.0
            np.dot(wd.T, doh, dvh)
            np.dot(doh, vh.T, dw)
            for i in range(tq):
                for j in range(tv):
                    x = dw[i, j]
                    if rate > 0.0:
                        x = x / kp if keep[r, h, i, j] != 0 else 0.0
                    if dscores.shape[0] > 0:
                        x += dscores[r, h, i, j]
                    dw[i, j] = x
            _softmax_grad(w, dw, ds)
            np.dot(ds, kh, dqh)
            np.dot(ds.T, qh, dkh)
            oq = np.uint64(h * kd)
            ok = np.uint64(g * kd)
            ov = np.uint64(g * vd)
            for i in range(tq):
                for c in range(np.uint64(kd)):
                    dQ[r, i, oq + c] = dqh[i, c] * inv
            for j in range(tv):
                for c in range(np.uint64(kd)):
                    dK[r, j, ok + c] += dkh[j, c]
                for c in range(np.uint64(vd)):
                    dV[r, j, ov + c] += dvh[j, c]


def _mha_dims(attrs, inputs) -> tuple:
    """(query heads, key/value heads, key_dim, value_dim, output dims) of a MultiHeadAttention or
    a GroupQueryAttention (whose heads are all ``head_dim`` wide and whose output has the
    query's features)."""
    if "num_query_heads" in attrs:
        hd = attrs["head_dim"]
        return attrs["num_query_heads"], attrs["num_key_value_heads"], hd, hd, (inputs[0].shape[-1],)
    heads, kd = attrs["num_heads"], attrs["key_dim"]
    vd = attrs["value_dim"] or kd
    out = attrs["output_shape"]
    if out is None:
        out = [inputs[0].shape[-1]]
    elif isinstance(out, int):
        out = [out]
    return heads, heads, kd, vd, tuple(out)


def _mha_infer(attrs, inputs, ctx):
    gqa = "num_query_heads" in attrs
    rule = "GroupQueryAttention" if gqa else "MultiHeadAttention"
    if len(inputs) not in (2, 3):
        raise ShapeError(f"{rule} takes query, value or query, value, key; got {len(inputs)} inputs")
    _floats(rule, inputs)
    q, v = inputs[0], inputs[1]
    k = inputs[2] if len(inputs) > 2 else v
    if q.rank < 3 or any(t.rank != q.rank for t in inputs):
        raise ShapeError(
            f"{rule} expects inputs of one rank, 3 or more (batch, steps..., features); got {_fmt_all(inputs)}"
        )
    if any(t.shape[-1] is None for t in inputs):
        raise ShapeError(f"{rule} needs known feature sizes; got {_fmt_all(inputs)}")
    if v.shape[1:-1] != k.shape[1:-1]:
        raise ShapeError(
            f"{rule}: all dimensions of the value and the key but the last must be equal; got {_fmt_all(inputs)}"
        )
    rank = q.rank
    if gqa:
        if rank != 3:
            raise ShapeError(f"{rule} expects inputs of rank 3 (batch, steps, features); got {_fmt_all(inputs)}")
        if q.shape[-1] != v.shape[-1]:
            raise ShapeError(f"{rule}: the query and the value need the same feature size; got {_fmt_all(inputs)}")
        if attrs["num_query_heads"] % attrs["num_key_value_heads"]:
            raise ShapeError(
                f"{rule}: num_query_heads ({attrs['num_query_heads']}) must be a multiple of "
                f"num_key_value_heads ({attrs['num_key_value_heads']})"
            )
    axes = attrs.get("attention_axes")
    if axes is not None:
        axes = [axes] if isinstance(axes, int) else list(axes)
        norm = []
        for a in axes:
            if not -rank <= a < rank:
                raise ShapeError(f"{rule}: attention axis {a} is out of range for inputs of rank {rank}")
            norm.append(a % rank)
        if sorted(set(norm)) != list(range(1, rank - 1)):
            raise ShapeError(
                f"{rule}: attention_axes={attrs['attention_axes']} attends over part of the axes between "
                f"the batch and the features; nnspec supports attention over all of them "
                f"({list(range(1, rank - 1))}, the default)"
            )
    if rank > 3 and (any(t.masked for t in inputs) or attrs["use_causal_mask"] or attrs["sliding_window"]):
        raise ShapeError(
            f"{rule}: masks, use_causal_mask and sliding_window need inputs of rank 3 (batch, steps, "
            f"features); got {_fmt_all(inputs)}"
        )
    heads, _, _, _, out = _mha_dims(attrs, inputs)
    if any(d < 1 for d in out):
        raise ShapeError(f"{rule}: output_shape must hold sizes >= 1; got {attrs.get('output_shape')}")
    outs = [TensorType((q.shape[0], *q.shape[1:-1], *out), "float32", q.masked)]
    if attrs["return_attention_scores"]:
        outs.append(TensorType((q.shape[0], heads, *q.shape[1:-1], *v.shape[1:-1]), "float32", False))
    return outs


def _mha_param_names(attrs) -> list[str]:
    names = []
    for part in ("query", "key", "gate", "value", "attention_output"):
        if part == "gate" and not attrs["use_gate"]:
            continue
        names.append(f"{part}/kernel")
        if attrs["use_bias"]:
            names.append(f"{part}/bias")
    return names


def _mha_params(attrs, inputs, ctx):
    q, v = inputs[0], inputs[1]
    k = inputs[2] if len(inputs) > 2 else v
    heads, kv, kd, vd, out = _mha_dims(attrs, inputs)
    shapes = {
        "query": ((q.shape[-1], heads, kd), (heads, kd)),
        "key": ((k.shape[-1], kv, kd), (kv, kd)),
        "gate": ((q.shape[-1], heads, vd), (heads, vd)),
        "value": ((v.shape[-1], kv, vd), (kv, vd)),
        "attention_output": ((heads, vd, *out), out),
    }
    specs = []
    for name in _mha_param_names(attrs):
        part, w = name.split("/")
        if w == "kernel":
            # Keras's EinsumDense sublayers compute the kernel's fans over its input and output
            # axes: (features | heads, dim) for the projections, (heads, dim | output) for the last.
            n_in = 2 if part == "attention_output" else 1
            rank = len(shapes[part][0])
            init = with_fan_axes(attrs["kernel_initializer"], range(n_in), range(n_in, rank))
            specs.append(ParamSpec(name, shapes[part][0], init,
                                   regularizer=attrs["kernel_regularizer"], constraint=attrs["kernel_constraint"]))  # fmt: skip
        else:
            specs.append(ParamSpec(name, tuple(shapes[part][1]), attrs["bias_initializer"],
                                   regularizer=attrs["bias_regularizer"], constraint=attrs["bias_constraint"]))  # fmt: skip
    return specs


def _mha_geometry(e) -> dict:
    """Names and sizes an MHA step's emit needs."""
    a = e.attrs
    ins = [TensorType((None, *s)) for s in e.x_shapes]
    heads, kv, kd, vd, out = _mha_dims(a, ins)
    qs, vs = e.x_shapes[0], e.x_shapes[1]
    ks = e.x_shapes[2] if len(e.x) > 2 else vs
    tq, tv = math.prod(qs[:-1]), math.prod(vs[:-1])
    rows = e.rows()
    g = {"heads": heads, "kv": kv, "kd": kd, "vd": vd, "dout": math.prod(out), "tq": tq, "tv": tv, "rows": rows}
    g["q2"] = f"{e.x[0]}.reshape(({rows} * {tq}, {qs[-1]}))"
    g["v2"] = f"{e.x[1]}.reshape(({rows} * {tv}, {vs[-1]}))"
    kx = e.x[2] if len(e.x) > 2 else e.x[1]
    g["k2"] = f"{kx}.reshape(({rows} * {tv}, {ks[-1]}))"
    g["dims_in"] = {"query": qs[-1], "key": ks[-1], "gate": qs[-1], "value": vs[-1], "attention_output": heads * vd}
    g["width"] = {"query": heads * kd, "key": kv * kd, "gate": heads * vd, "value": kv * vd,
                  "attention_output": g["dout"]}  # fmt: skip
    g["p"] = dict(zip(_mha_param_names(a), e.p))
    g["y2"] = f"{e.y[0]}.reshape(({rows} * {tq}, {g['dout']}))"
    return g


def _w2(g, part, var=None) -> str:
    """A projection's kernel (or its gradient ``var``) seen as 2-D (in, out)."""
    return f"{var or g['p'][part + '/kernel']}.reshape(({g['dims_in'][part]}, {g['width'][part]}))"


def _b1(g, part, var=None) -> str:
    v = var or g["p"].get(part + "/bias")
    return f"{v}.reshape(({g['width'][part]},))" if v is not None else "EMPTY"


def _mha_saved(attrs, x_shapes, y_shapes):
    ins = [TensorType((None, *s)) for s in x_shapes]
    heads, kv, kd, vd, _ = _mha_dims(attrs, ins)
    tq, tv = math.prod(x_shapes[0][:-1]), math.prod(x_shapes[1][:-1])
    out = [((tq, heads * kd), "float32"), ((tv, kv * kd), "float32"), ((tv, kv * vd), "float32"),
           ((heads, tq, tv), "float32"), ((tq, heads * vd), "float32")]  # fmt: skip
    if attrs["use_gate"]:
        out += [((tq, heads * vd), "float32"), ((tq, heads * vd), "float32")]
    if attrs["dropout"] > 0:
        out.append(((heads, tq, tv), "float32"))
    return out


def _mha_buffers(e, g, training: bool) -> dict:
    """The step's intermediate arrays: saved ones in training, scratch at inference."""
    rows, tq, tv, heads, kv, kd, vd = g["rows"], g["tq"], g["tv"], g["heads"], g["kv"], g["kd"], g["vd"]
    a = e.attrs
    if training:
        s = list(e.s)
        names = ["Q", "K", "V", "W", "O"] + (["G", "Og"] if a["use_gate"] else []) + (["keep"] if a["dropout"] > 0 else [])
        b = dict(zip(names, s))
        for n in ("Q", "O", "G", "Og"):
            if n in b:
                b[n] = f"{b[n]}.reshape(({rows} * {tq}, {b[n]}.shape[2]))"
        for n in ("K", "V"):
            b[n] = f"{b[n]}.reshape(({rows} * {tv}, {b[n]}.shape[2]))"
        return b
    b = {
        "Q": e.tmp(f"({rows} * {tq}, {heads * kd})"),
        "K": e.tmp(f"({rows} * {tv}, {kv * kd})"),
        "V": e.tmp(f"({rows} * {tv}, {kv * vd})"),
        "O": e.tmp(f"({rows} * {tq}, {heads * vd})"),
    }
    if a["return_attention_scores"]:
        b["W"] = f"{e.y[1]}.reshape(({rows}, {heads}, {tq}, {tv}))"
    else:
        b["W"] = e.tmp(f"(1, {heads}, {tq}, {tv})")  # the kernel reuses one sample's scratch
    if a["use_gate"]:
        b["G"] = e.tmp(f"({rows} * {tq}, {heads * vd})")
        b["Og"] = e.tmp(f"({rows} * {tq}, {heads * vd})")
    return b


def _mha_masks(e) -> tuple:
    none2 = "np.empty((0, 0), np.float32)"
    m = list(e.m) if e.m else []
    m += [None] * (3 - len(m))
    return tuple(x if x is not None else none2 for x in m[:3])


def _mha_emit(e):
    a = e.attrs
    training = getattr(e, "training", False)
    g = _mha_geometry(e)
    b = _mha_buffers(e, g, training)
    rows, tq, tv, heads, kv, kd, vd = g["rows"], g["tq"], g["tv"], g["heads"], g["kv"], g["kd"], g["vd"]
    rate = float(a["dropout"]) if training else 0.0
    ub = a["use_bias"]
    lines = [
        e.call(dense_forward, g["q2"], _w2(g, "query"), _b1(g, "query"), ub, 0, b["Q"]),
        e.call(scale_values, b["Q"], 1.0 / math.sqrt(kd)),
        e.call(dense_forward, g["k2"], _w2(g, "key"), _b1(g, "key"), ub, 0, b["K"]),
        e.call(dense_forward, g["v2"], _w2(g, "value"), _b1(g, "value"), ub, 0, b["V"]),
    ]
    if a["use_gate"]:
        lines.append(e.call(dense_forward, g["q2"], _w2(g, "gate"), _b1(g, "gate"), ub,
                            activations.code("sigmoid"), b["G"]))  # fmt: skip
    qm, vm, km = _mha_masks(e)
    w_out = b["W"]
    keep = "np.empty((0, 0, 0, 0), np.float32)"
    if rate > 0:
        keep = b["keep"]
        w_out = e.tmp(f"({rows}, {heads}, {tq}, {tv})")
    lines.append(
        e.call(mha_attend, f"{b['Q']}.reshape(({rows}, {tq}, {heads * kd}))",
               f"{b['K']}.reshape(({rows}, {tv}, {kv * kd}))", f"{b['V']}.reshape(({rows}, {tv}, {kv * vd}))",
               qm, vm, km, _bool(a["use_causal_mask"]), _int(a["sliding_window"] or 0), _int(heads), _int(kv),
               _int(kd), _int(vd), rate, f"{b['O']}.reshape(({rows}, {tq}, {heads * vd}))", b["W"], w_out, keep)
    )  # fmt: skip
    o = b["O"]
    if a["use_gate"]:
        lines.append(e.call(multiply_into, b["O"], b["G"], b["Og"]))
        o = b["Og"]
    lines.append(e.call(dense_forward, o, _w2(g, "attention_output"), _b1(g, "attention_output"), ub, 0, g["y2"]))
    if training and a["return_attention_scores"]:
        lines.append(f"{e.y[1]}.reshape(({rows}, {heads}, {tq}, {tv}))[:] = {b['W']}")
    return lines


def _mha_backward(e):
    a = e.attrs
    if all(d is None for d in e.dx) and all(d is None for d in e.dp):
        return []
    g = _mha_geometry(e)
    b = _mha_buffers(e, g, True)
    rows, tq, tv, heads, kv, kd, vd = g["rows"], g["tq"], g["tv"], g["heads"], g["kv"], g["kd"], g["vd"]
    dp = dict(zip(_mha_param_names(a), e.dp))
    lines = []

    def grads(part, x2, dz, dx):
        dw = dp.get(part + "/kernel")
        if dw is not None:
            db = dp.get(part + "/bias")
            lines.append(e.call(dense_grad_params, x2, dz, _w2(g, part, dw), _b1(g, part, db) if db else NO_GRAD,
                                db is not None))  # fmt: skip
        if dx is not None:
            lines.append(e.call(dense_grad_input, dz, _w2(g, part), dx))

    def zeros(shape: str) -> str:
        t = e.tmp(shape)
        lines.append(f"{t}[:] = 0.0")
        return t

    dy2 = f"{e.dy[0]}.reshape(({rows} * {tq}, {g['dout']}))"
    dog = zeros(f"({rows} * {tq}, {heads * vd})")
    grads("attention_output", b["Og"] if a["use_gate"] else b["O"], dy2, dog)
    dq2 = f"{e.dx[0]}.reshape(({rows} * {tq}, {e.x_shapes[0][-1]}))" if e.dx[0] is not None else None
    do = dog
    if a["use_gate"]:
        do = e.tmp(f"({rows} * {tq}, {heads * vd})")
        dgate = e.tmp(f"({rows} * {tq}, {heads * vd})")
        lines.append(e.call(gate_backward, dog, b["O"], b["G"], do, dgate))
        grads("gate", g["q2"], dgate, dq2)
    dQ = e.tmp(f"({rows} * {tq}, {heads * kd})")
    dK = e.tmp(f"({rows} * {tv}, {kv * kd})")
    dV = e.tmp(f"({rows} * {tv}, {kv * vd})")
    rate = float(a["dropout"])
    keep = b["keep"] if rate > 0 else "np.empty((0, 0, 0, 0), np.float32)"
    dscores = (f"{e.dy[1]}.reshape(({rows}, {heads}, {tq}, {tv}))" if a["return_attention_scores"]
               else "np.empty((0, 0, 0, 0), np.float32)")  # fmt: skip
    lines.append(
        e.call(mha_attend_backward, f"{b['Q']}.reshape(({rows}, {tq}, {heads * kd}))",
               f"{b['K']}.reshape(({rows}, {tv}, {kv * kd}))", f"{b['V']}.reshape(({rows}, {tv}, {kv * vd}))",
               b["W"], keep, rate, f"{do}.reshape(({rows}, {tq}, {heads * vd}))", dscores, _int(heads), _int(kv),
               _int(kd), _int(vd), 1.0 / math.sqrt(kd), f"{dQ}.reshape(({rows}, {tq}, {heads * kd}))",
               f"{dK}.reshape(({rows}, {tv}, {kv * kd}))", f"{dV}.reshape(({rows}, {tv}, {kv * vd}))")
    )  # fmt: skip
    three = len(e.x) > 2
    dv2 = f"{e.dx[1]}.reshape(({rows} * {tv}, {e.x_shapes[1][-1]}))" if e.dx[1] is not None else None
    dk_in = e.dx[2] if three else e.dx[1]
    dk2 = f"{dk_in}.reshape(({rows} * {tv}, {e.x_shapes[-1][-1]}))" if dk_in is not None else None
    grads("query", g["q2"], dQ, dq2)
    grads("key", g["k2"], dK, dk2)
    grads("value", g["v2"], dV, dv2)
    return lines


def _mha_reference(attrs, inputs, params, masks=None):
    q, v = inputs[0], inputs[1]
    k = inputs[2] if len(inputs) > 2 else v
    n = q.shape[0]
    ins = [TensorType((None, *x.shape[1:])) for x in inputs]
    heads, kv, kd, vd, out = _mha_dims(attrs, ins)
    p = dict(zip(_mha_param_names(attrs), params))
    tq, tv = math.prod(q.shape[1:-1]), math.prod(v.shape[1:-1])
    q3, v3, k3 = q.reshape(n, tq, -1), v.reshape(n, tv, -1), k.reshape(n, tv, -1)

    def proj(x, part):
        y = np.einsum("ntd,dhe->nthe", x, p[part + "/kernel"])
        return y + p[part + "/bias"] if attrs["use_bias"] else y

    Q = proj(q3, "query") / math.sqrt(kd)
    K, V = proj(k3, "key"), proj(v3, "value")
    K, V = np.repeat(K, heads // kv, axis=2), np.repeat(V, heads // kv, axis=2)  # GroupQueryAttention
    s = np.einsum("nihe,njhe->nhij", Q, K)
    allowed = np.ones(s.shape, bool)
    masks = list(masks or [None] * len(inputs))
    masks += [None] * (3 - len(masks))
    if masks[0] is not None:
        allowed &= (np.asarray(masks[0]) != 0)[:, None, :, None]
    for m in masks[1:3] if len(inputs) > 2 else masks[1:2]:
        if m is not None:
            allowed &= (np.asarray(m) != 0)[:, None, None, :]
    i, j = np.arange(tq)[:, None], np.arange(tv)[None, :]
    if attrs["use_causal_mask"]:
        allowed &= (j <= i)[None, None]
    if attrs["sliding_window"]:
        allowed &= (np.abs(i - j) < attrs["sliding_window"])[None, None]
    w = _softmax_ref(np.where(allowed, s, s - MASKED))
    o = np.einsum("nhij,njhe->nihe", w, V)
    if attrs["use_gate"]:
        o = o * (1.0 / (1.0 + np.exp(-proj(q3, "gate"))))
    y = np.einsum("nihe,heo->nio", o, p["attention_output/kernel"].reshape(heads, vd, -1))
    if attrs["use_bias"]:
        y = y + p["attention_output/bias"].reshape(-1)
    y = y.reshape((n, *q.shape[1:-1], *out))
    if attrs["return_attention_scores"]:
        return [y, w.reshape((n, heads, *q.shape[1:-1], *v.shape[1:-1]))]
    return [y]


# What MultiHeadAttention and GroupQueryAttention share: every rule and kernel (``_mha_dims``
# tells them apart).
_MULTI_HEAD = dict(
    _ATTENTION_COMMON,
    infer=_mha_infer,
    params=_mha_params,
    emit=_mha_emit,
    emit_train=_mha_emit,
    emit_backward=_mha_backward,
    saved=_mha_saved,
    reference=_mha_reference,
)

MULTI_HEAD_ATTENTION = LayerDef(
    name="MultiHeadAttention",
    attrs=(
        Attr("num_heads", "int", doc="Number of attention heads.", minimum=1),
        Attr("key_dim", "int", doc="Size of each head's query and key projections.", minimum=1),
        Attr("value_dim", "int", None, "Size of each head's value projection (null: key_dim).", minimum=1,
             nullable=True),
        *DROPOUT_ATTRS_ATTENTION,
        Attr("use_bias", "bool", True, "Whether the projections add biases."),
        Attr("output_shape", "axis", None, "Size(s) of the output's last axes (null: the query's features).",
             nullable=True),
        Attr("attention_axes", "axis", None, "Axes attended over (null: every axis between the batch and the "
             "features; nnspec supports only that set).", nullable=True),
        Attr("sliding_window", "int", None, "Attend only to positions closer than this (null: all).", minimum=1,
             nullable=True),
        Attr("kernel_initializer", "initializer", "glorot_uniform", "Initializer of the projection kernels."),
        Attr("bias_initializer", "initializer", "zeros", "Initializer of the projection biases."),
        Attr("kernel_regularizer", "regularizer", None, "Penalty on the projection kernels.", nullable=True),
        Attr("bias_regularizer", "regularizer", None, "Penalty on the projection biases.", nullable=True),
        Attr("kernel_constraint", "constraint", None, "Constraint on the projection kernels.", nullable=True),
        Attr("bias_constraint", "constraint", None, "Constraint on the projection biases.", nullable=True),
        Attr("use_gate", "bool", False, "Gate the attention output by `sigmoid(query . gate/kernel + "
             "gate/bias)` per head."),
        SEED_ATTR,
        CAUSAL_ATTR,
        RETURN_SCORES_ATTR,
        *COMMON_ATTRS,
    ),  # fmt: skip
    positional=("num_heads", "key_dim"),
    **_MULTI_HEAD,
    extra={**_ATTENTION_EXTRA, "call_positional": True},
    doc="Multi-head attention (Vaswani et al.), as Keras's: the query, key and value are projected "
    "per head (`query/kernel` (features, heads, key_dim), ...), scaled dot-product attention runs per "
    "head, and `attention_output` projects the heads back. Inputs: `query, value` or `query, value, "
    "key` (the value is the key when none is given), of one rank >= 3; the output has the query's "
    "shape (last axis: `output_shape`, default the query's features) and the query's mask. Masked "
    "query, value and key steps, `use_causal_mask` and `sliding_window` take scores out of the softmax. "
    "`activity_regularizer` (Keras applies it to each projection) and `flash_attention` (an "
    "implementation choice) are not accepted. The scores output is (batch, heads, Tq..., Tv...) "
    "as Keras computes it (Keras's summary types it with Tq twice).",
)

GROUP_QUERY_ATTENTION = LayerDef(
    name="GroupQueryAttention",
    attrs=(
        Attr("head_dim", "int", doc="Size of each attention head.", minimum=1),
        Attr("num_query_heads", "int", doc="Number of query heads.", minimum=1),
        Attr("num_key_value_heads", "int", doc="Number of key and value heads; divides num_query_heads.",
             minimum=1),
        *DROPOUT_ATTRS_ATTENTION,
        Attr("use_bias", "bool", True, "Whether the projections add biases."),
        Attr("sliding_window", "int", None, "Attend only to positions closer than this (null: all).", minimum=1,
             nullable=True),
        *[a for a in MULTI_HEAD_ATTENTION.attrs if a.name.endswith(("_initializer", "_regularizer", "_constraint"))],
        Attr("use_gate", "bool", False, "Gate the attention output by `sigmoid(query . gate/kernel + "
             "gate/bias)` per query head."),
        SEED_ATTR,
        CAUSAL_ATTR,
        RETURN_SCORES_ATTR,
        *COMMON_ATTRS,
    ),  # fmt: skip
    positional=("head_dim", "num_query_heads", "num_key_value_heads"),
    **_MULTI_HEAD,
    extra={**_ATTENTION_EXTRA, "call_positional": True, "class_name": "GroupedQueryAttention"},
    doc="Grouped-query attention (Ainslie et al.), as Keras's `keras.layers.GroupQueryAttention` (class "
    "GroupedQueryAttention, the name its summary prints): MultiHeadAttention whose `num_query_heads` "
    "share `num_key_value_heads` key and value heads (each key/value head serves "
    "`num_query_heads / num_key_value_heads` consecutive query heads), all `head_dim` wide; inputs of "
    "rank 3; the output has the query's shape and mask. `activity_regularizer` and `flash_attention` "
    "are not accepted (see MultiHeadAttention).",
)

LAYERS = (ATTENTION, ADDITIVE_ATTENTION, MULTI_HEAD_ATTENTION, GROUP_QUERY_ATTENTION)
