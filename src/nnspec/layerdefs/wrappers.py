"""Wrappers: TimeDistributed, Bidirectional, SpectralNormalization, and Model (a sub-model
used as a layer).

A wrapper's ``layer`` attribute is a nested layer definition, a mapping such as
``{type: LSTM, units: 64}``. The wrappers never read the registry themselves: they type and
count what they wrap through the :class:`~nnspec.layerdefs.base.InferContext` the compiler hands
them. Keras's ``Bidirectional(weights=...)`` (initial weight values) is not accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from . import conv_recurrent, recurrent
from .base import (
    COMMON_ATTRS,
    Attr,
    InferContext,
    LayerDef,
    ParamSpec,
    ShapeError,
    TensorType,
    fmt_shape,
    normalize_attrs,
    snake_case,
)
from .recurrent import RECURRENT_TYPES

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("_unit",)  # called by kernels: compiled in place by the runtime

MERGE_MODES = ("concat", "sum", "mul", "ave")

_LAYER_ATTR = Attr("layer", "layer", doc="The wrapped layer: a nested layer definition {type: ..., ...}.")

# ----------------------------------------------------------------------------- TimeDistributed


def _inner_type(mapping: Mapping) -> str:
    return str(mapping.get("type", "?")) if isinstance(mapping, Mapping) else repr(mapping)


def _td_step_input(x: TensorType) -> TensorType:
    if x.rank < 3:
        raise ShapeError(
            f"TimeDistributed expects an input of rank 3 or more (batch, time, ...); got {fmt_shape(x.shape)}"
        )
    return TensorType((x.shape[0], *x.shape[2:]), x.dtype, x.masked)


def _td_infer(attrs, inputs, ctx: InferContext):
    (x,) = inputs
    outs = ctx.infer_layer(attrs["layer"], [_td_step_input(x)])
    if len(outs) != 1:
        raise ShapeError(
            f"TimeDistributed can only wrap a layer with one output; "
            f"{_inner_type(attrs['layer'])} returns {len(outs)} here"
        )
    (y,) = outs
    if y.rank < 1:
        raise ShapeError(f"TimeDistributed: the wrapped {_inner_type(attrs['layer'])} returned a scalar")
    return [TensorType((y.shape[0], x.shape[1], *y.shape[1:]), y.dtype, x.masked)]


def _td_params(attrs, inputs, ctx: InferContext):
    return list(ctx.layer_params(attrs["layer"], [_td_step_input(inputs[0])]))


def _td_reference(attrs, inputs, params, masks=None):
    """The wrapped layer's reference applied to each time step (lowering runs the wrapped
    layer's own kernel on the time axis folded into the batch: there is no TimeDistributed
    kernel)."""
    from . import REGISTRY

    inner = dict(attrs["layer"])
    type_name = inner.pop("type")
    if type_name == "Model":
        raise NotImplementedError("TimeDistributed(Model): the sub-model is inlined by lowering; "
                                  "check it through the whole model")  # fmt: skip
    defn = REGISTRY[type_name]
    a = normalize_attrs(defn, inner)
    x = inputs[0]
    outs = [defn.reference(a, [x[:, i]], params, None)[0] for i in range(x.shape[1])]
    return [np.stack(outs, axis=1)]


# No kernels (emit, emit_train, emit_backward): lowering runs the wrapped layer's own steps on the
# time axis folded into the batch, in inference and in training alike.
TIME_DISTRIBUTED = LayerDef(
    name="TimeDistributed",
    attrs=(_LAYER_ATTR, *COMMON_ATTRS),
    infer=_td_infer,
    params=_td_params,
    reference=_td_reference,
    positional=("layer",),
    doc="Applies one layer, with one set of weights, to every time step of its input "
    "independently: axis 1 is the time axis, each (batch, *rest) slice goes through the wrapped "
    "layer, and the results are stacked back along axis 1. The input needs rank 3 or more; a "
    "variable time length is kept. The wrapped layer must have exactly one output. The input's "
    "mask passes through unchanged. The parameters are the wrapped layer's, under its own names.",
)

# ----------------------------------------------------------------------------- Bidirectional


def _recurrent_attrs(ctx: InferContext, mapping, role: str) -> dict:
    if not isinstance(mapping, Mapping):
        raise ShapeError(
            f"Bidirectional: {role} must be a layer definition {{type: ..., ...}}; got {mapping!r}"
        )
    defn = ctx.layer_def(mapping)
    if defn.name not in (*RECURRENT_TYPES, "RNN", *conv_recurrent.TYPES):
        raise ShapeError(
            f"Bidirectional can only wrap a recurrent layer ({', '.join(RECURRENT_TYPES)}, RNN, "
            f"{', '.join(conv_recurrent.TYPES)}); "
            f"its {role} is a {defn.name}"
        )
    attrs = normalize_attrs(defn, mapping)
    if defn.name == "RNN":
        recurrent.rnn_as_layer(attrs)  # one cell: a stack of cells is refused, with the reason
    return attrs


def _directions(attrs, ctx: InferContext) -> tuple[Mapping, Mapping]:
    """The forward and backward layer definitions, checked as Keras checks them."""
    fwd = attrs["layer"]
    fwd_attrs = _recurrent_attrs(ctx, fwd, "layer")
    bwd = attrs.get("backward_layer")
    if bwd is None:
        if fwd_attrs["go_backwards"]:
            # Keras copies the layer with go_backwards=True and then finds both directions equal.
            raise ShapeError(
                "Bidirectional: the wrapped layer must not set go_backwards=True (its backward "
                "copy would run the same direction); give a backward_layer instead"
            )
        bwd = {**fwd, "go_backwards": True}
    bwd_attrs = _recurrent_attrs(ctx, bwd, "backward_layer")
    if fwd_attrs["go_backwards"] == bwd_attrs["go_backwards"]:
        raise ShapeError(
            "Bidirectional: layer and backward_layer must have different go_backwards values; "
            f"both have go_backwards={fwd_attrs['go_backwards']}"
        )
    for a in ("stateful", "return_sequences", "return_state"):
        if fwd_attrs[a] != bwd_attrs[a]:
            raise ShapeError(
                f"Bidirectional: layer and backward_layer must agree on {a}; "
                f"got {fwd_attrs[a]} and {bwd_attrs[a]}"
            )
    return fwd, bwd


def _split_initial(attrs, inputs):
    """The sequence, then the forward and the backward layer's initial states: Keras's
    Bidirectional gives the first half of ``initial_state`` to the forward layer and the second
    half to the backward one. ``inputs`` may be types, arrays or a step's variables."""
    x, *init = inputs
    if not init:
        return x, [], []
    types = [t for t, _ in direction_attrs(attrs)]  # an RNN over a cell: the cell's layer
    states = {**recurrent.STATES, **dict.fromkeys(conv_recurrent.TYPES, 2)}
    n = states[types[0]]
    if states[types[1]] != n:  # Keras splits the list in halves
        raise ShapeError(
            f"Bidirectional: with initial states, {types[0]} and {types[1]} keep different states"
        )
    if len(init) != 2 * n:
        raise ShapeError(
            f"Bidirectional takes the sequence, then {2 * n} initial states (the forward layer's "
            f"{'h, c' if n > 1 else 'h'}, then the backward layer's); got {len(init)}"
        )
    return x, init[:n], init[n:]


def _bidirectional_infer(attrs, inputs, ctx: InferContext):
    fwd, bwd = _directions(attrs, ctx)
    x, init_f, init_b = _split_initial(attrs, inputs)
    f_out = ctx.infer_layer(fwd, [x, *init_f])
    b_out = ctx.infer_layer(bwd, [x, *init_b])
    f_shapes = [t.shape for t in f_out]
    b_shapes = [t.shape for t in b_out]
    if f_shapes != b_shapes:
        raise ShapeError(
            "Bidirectional: the forward and backward layers must produce the same shapes; got "
            f"{', '.join(fmt_shape(s) for s in f_shapes)} and {', '.join(fmt_shape(s) for s in b_shapes)}"
        )
    y, y_rev = f_out[0], b_out[0]
    states = [*f_out[1:], *b_out[1:]]
    mode = attrs["merge_mode"]
    if mode is None:
        outputs = [y, y_rev]
    elif mode == "concat":
        last = None if y.shape[-1] is None else 2 * y.shape[-1]
        outputs = [y.with_shape((*y.shape[:-1], last))]
    elif mode in MERGE_MODES:
        outputs = [y]
    else:
        raise ShapeError(f"Bidirectional: unknown merge_mode {mode!r}; expected one of {MERGE_MODES} or null")
    return outputs + states


def _prefixed(prefix: str, params: list[ParamSpec]) -> list[ParamSpec]:
    return [
        ParamSpec(
            f"{prefix}/{p.name}", p.shape, p.initializer, p.trainable,
            regularizer=p.regularizer, constraint=p.constraint,
        )
        for p in params
    ]  # fmt: skip


def _direction_name(mapping: Mapping, prefix: str) -> str:
    base = mapping.get("name") or snake_case(str(mapping["type"]))
    return base if base.startswith(prefix) else prefix + base


def bidirectional_scopes(attrs) -> tuple[str, str]:
    """The name scopes of the forward and backward layers' weights, as Keras names them:
    ``forward_<name>`` and ``backward_<name>``, where ``<name>`` is the nested definition's
    ``name`` or else its type in snake_case (``forward_lstm``). An explicit backward layer
    that has a ``name`` keeps it, as in Keras."""
    fwd = attrs["layer"]
    bwd = attrs.get("backward_layer")
    f = _direction_name(fwd, "forward_")
    if bwd is None:
        b = _direction_name(fwd, "backward_")
    elif bwd.get("name"):
        b = str(bwd["name"])
    else:
        b = "backward_" + snake_case(str(bwd["type"]))
    if f == b:
        raise ShapeError(f"Bidirectional: the forward and backward layers share the name {f!r}")
    return f, b


def _bidirectional_params(attrs, inputs, ctx: InferContext):
    fwd, bwd = _directions(attrs, ctx)
    f_scope, b_scope = bidirectional_scopes(attrs)
    return _prefixed(f_scope, ctx.layer_params(fwd, list(inputs[:1]))) + _prefixed(
        b_scope, ctx.layer_params(bwd, list(inputs[:1]))
    )


def direction_attrs(attrs) -> tuple[tuple[str, dict], tuple[str, dict]]:
    """(type, normalized attributes) of the forward and the backward layer, as Keras runs them:
    the backward layer is a copy of ``layer`` with go_backwards unless ``backward_layer`` is
    given, and both output zeros at masked steps exactly when they return sequences."""
    fwd = dict(attrs["layer"])
    bwd = attrs.get("backward_layer")
    bwd = dict(bwd) if bwd is not None else {**fwd, "go_backwards": True}
    defs = {d.name: d for d in (*recurrent.LAYERS, recurrent.RNN, *conv_recurrent.LAYERS)}
    out = []
    for d in (fwd, bwd):
        t = d["type"]
        a = normalize_attrs(defs[t], {k: v for k, v in d.items() if k != "type"})
        if t == "RNN":  # RNN over a cell runs as the cell's layer (its weights keep the cell's scope)
            t, a = recurrent.rnn_as_layer(a)
        a["zero_output_for_mask"] = a["return_sequences"]  # Keras forces it
        out.append((t, a))
    return out[0], out[1]


def _bidirectional_emit(e):
    (tf, af), (tb, ab) = direction_attrs(e.attrs)
    if tf in conv_recurrent.TYPES:
        return conv_recurrent.bidirectional_forward(e, af, ab, False)
    steps = e.x_shapes[0][0]
    rows = e.rows()
    seq = af["return_sequences"]
    tout = steps if seq else 1
    mode = e.attrs["merge_mode"]
    uf, ub = af["units"], ab["units"]
    if mode is None:
        yf = f"{e.y[0]}.reshape(({rows}, {tout}, {uf}))"
        yb = f"{e.y[1]}.reshape(({rows}, {tout}, {ub}))"
        col_b, states = 0, e.y[2:]
    else:
        width = uf + ub if mode == "concat" else uf
        yf = yb = f"{e.y[0]}.reshape(({rows}, {tout}, {width}))"
        col_b, states = (uf if mode == "concat" else 0), e.y[1:]
    nf = recurrent.STATES[tf] if af["return_state"] else 0
    parts = [recurrent.rnn_scratch_parts(steps, tf, uf), recurrent.rnn_scratch_parts(steps, tb, ub)]
    scratch = e.tmp(f"{rows} * {max(p[0] for p in parts)} + {max(p[1] for p in parts)}")
    n_pf = 3 if af["use_bias"] else 2
    mask = recurrent.step_mask(e)
    _, init_f, init_b = _split_initial(e.attrs, e.x)
    return [
        recurrent.emit_rnn_call(e, tf, af, None, e.p[:n_pf], mask, yf, 0, 0, False, seq, states[:nf], scratch,
                                init_f),
        recurrent.emit_rnn_call(e, tb, ab, None, e.p[n_pf:], mask, yb, col_b, recurrent.MERGES[mode], seq,
                                seq, states[nf:], scratch, init_b),
    ]  # fmt: skip


# Training. Each direction runs its layer's training kernels (``recurrent.*_train`` and
# ``*_backward``) with its own saved arrays: the forward layer's, then the backward layer's (see
# ``recurrent.saved_layout``), then, for merge_mode mul, each direction's output (rows, T or 1,
# u), which the product's gradient needs. The backward kernels read their part of the merged
# output's gradient: their columns for concat, all of it for sum, half of it for ave; for mul,
# the gradient times the other direction's output.


def merge_mul_forward(y, a, b):
    """``y = a * b`` over (rows, T, u) arrays: the merged output of merge_mode mul."""
    rows, steps, units = a.shape
    for r in range(rows):
        for t in range(steps):
            for j in range(units):
                y[r, t, j] = a[r, t, j] * b[r, t, j]


def merge_mul_backward(dy, a, b, da, db):
    """The gradients of ``y = a * b``: ``da = dy * b``, ``db = dy * a`` (written, not added)."""
    rows, steps, units = a.shape
    for r in range(rows):
        for t in range(steps):
            for j in range(units):
                da[r, t, j] = dy[r, t, j] * b[r, t, j]
                db[r, t, j] = dy[r, t, j] * a[r, t, j]


def _bidirectional_layouts(attrs, x_shapes):
    (tf, af), (tb, ab) = direction_attrs(attrs)
    steps, d = x_shapes[0]
    return (recurrent.saved_layout(tf, af, steps, d), recurrent.saved_layout(tb, ab, steps, d))


def _bidirectional_saved(attrs, x_shapes, y_shapes):
    (tf, af), (_, ab) = direction_attrs(attrs)
    if tf in conv_recurrent.TYPES:
        return conv_recurrent.bidirectional_saved(af, ab, attrs["merge_mode"], x_shapes)
    lf, lb = _bidirectional_layouts(attrs, x_shapes)
    shapes = [shape for _, shape in lf + lb]
    if attrs["merge_mode"] == "mul":
        tout = x_shapes[0][0] if af["return_sequences"] else 1
        shapes += [(tout, af["units"]), (tout, ab["units"])]
    return [(shape, "float32") for shape in shapes]


def _bidirectional_parts(e):
    """What both training emits need: direction attributes, saved arrays by key, sizes."""
    (tf, af), (tb, ab) = direction_attrs(e.attrs)
    lf, lb = _bidirectional_layouts(e.attrs, e.x_shapes)
    sf = dict(zip([k for k, _ in lf], e.s[: len(lf)]))
    sb = dict(zip([k for k, _ in lb], e.s[len(lf) : len(lf) + len(lb)]))
    return (tf, af, sf), (tb, ab, sb), e.s[len(lf) + len(lb) :]


def _bidirectional_emit_train(e):
    (tf, af), (_, ab) = direction_attrs(e.attrs)
    if tf in conv_recurrent.TYPES:
        return conv_recurrent.bidirectional_forward(e, af, ab, True)
    (tf, af, sf), (tb, ab, sb), extra = _bidirectional_parts(e)
    steps, d = e.x_shapes[0]
    rows = e.rows()
    seq = af["return_sequences"]
    tout = steps if seq else 1
    mode = e.attrs["merge_mode"]
    uf, ub = af["units"], ab["units"]
    nf = recurrent.STATES[tf] if af["return_state"] else 0
    parts = [
        recurrent.rnn_train_scratch_parts(tf, af, steps, d),
        recurrent.rnn_train_scratch_parts(tb, ab, steps, d),
    ]
    scratch = e.tmp(recurrent.scratch_expr(rows, parts))
    n_pf = 3 if af["use_bias"] else 2
    if mode is None:
        yf = f"{e.y[0]}.reshape(({rows}, {tout}, {uf}))"
        yb = f"{e.y[1]}.reshape(({rows}, {tout}, {ub}))"
        col_b, merge, states = 0, 0, e.y[2:]
    elif mode == "mul":
        yf, yb = extra
        col_b, merge, states = 0, 0, e.y[1:]
    else:
        width = uf + ub if mode == "concat" else uf
        yf = yb = f"{e.y[0]}.reshape(({rows}, {tout}, {width}))"
        col_b, merge, states = (uf if mode == "concat" else 0), recurrent.MERGES[mode], e.y[1:]
    mask = recurrent.step_mask(e)
    _, init_f, init_b = _split_initial(e.attrs, e.x)
    lines = [
        recurrent.emit_rnn_train_call(e, tf, af, e.p[:n_pf], mask, yf, 0, 0, False, seq, states[:nf], sf, scratch,
                                      init_f),
        recurrent.emit_rnn_train_call(e, tb, ab, e.p[n_pf:], mask, yb, col_b, merge, seq, seq, states[nf:], sb,
                                      scratch, init_b),
    ]  # fmt: skip
    if mode == "mul":
        lines.append(e.call(merge_mul_forward, f"{e.y[0]}.reshape(({rows}, {tout}, {uf}))", yf, yb))
    return lines


def _bidirectional_emit_backward(e):
    (tf, af), (_, ab) = direction_attrs(e.attrs)
    if tf in conv_recurrent.TYPES:
        return conv_recurrent.bidirectional_backward(e, af, ab)
    (tf, af, sf), (tb, ab, sb), extra = _bidirectional_parts(e)
    steps, d = e.x_shapes[0]
    rows = e.rows()
    seq = af["return_sequences"]
    tout = steps if seq else 1
    mode = e.attrs["merge_mode"]
    uf, ub = af["units"], ab["units"]
    nf = recurrent.STATES[tf] if af["return_state"] else 0
    parts = [
        recurrent.rnn_backward_scratch_parts(tf, af, steps, d),
        recurrent.rnn_backward_scratch_parts(tb, ab, steps, d),
    ]
    scratch = e.tmp(recurrent.scratch_expr(rows, parts))
    n_pf = 3 if af["use_bias"] else 2
    lines = []
    col_b, scale = 0, 1.0
    if mode is None:
        dyf = f"{e.dy[0]}.reshape(({rows}, {tout}, {uf}))"
        dyb = f"{e.dy[1]}.reshape(({rows}, {tout}, {ub}))"
        dstates = e.dy[2:]
    elif mode == "mul":
        dy = f"{e.dy[0]}.reshape(({rows}, {tout}, {uf}))"
        dyf = e.tmp(f"({rows}, {tout}, {uf})")
        dyb = e.tmp(f"({rows}, {tout}, {ub})")
        lines.append(e.call(merge_mul_backward, dy, extra[0], extra[1], dyf, dyb))
        dstates = e.dy[1:]
    else:
        width = uf + ub if mode == "concat" else uf
        dyf = dyb = f"{e.dy[0]}.reshape(({rows}, {tout}, {width}))"
        col_b, scale = (uf if mode == "concat" else 0), (0.5 if mode == "ave" else 1.0)
        dstates = e.dy[1:]
    mask = recurrent.step_mask(e)
    _, dinit_f, dinit_b = _split_initial(e.attrs, e.dx)  # the states' gradient variables
    lines += [
        recurrent.emit_rnn_backward_call(e, tf, af, e.p[:n_pf], e.dp[:n_pf], mask, dyf, 0, scale, False, seq,
                                         dstates[:nf], sf, scratch, dinit_f),
        recurrent.emit_rnn_backward_call(e, tb, ab, e.p[n_pf:], e.dp[n_pf:], mask, dyb, col_b, scale, seq, seq,
                                         dstates[nf:], sb, scratch, dinit_b),
    ]  # fmt: skip
    return lines


def _bidirectional_reference(attrs, inputs, params, masks=None):
    (tf, af), (tb, ab) = direction_attrs(attrs)
    _, init_f, init_b = _split_initial(attrs, inputs)
    # with initial states Keras passes none, unless they are a stateful step's kept ones
    mask = masks[0] if masks and (len(inputs) == 1 or attrs.get("stateful")) else None
    n_pf = 3 if af["use_bias"] else 2

    def run(t, a, p, init):
        if t in conv_recurrent.TYPES:
            return conv_recurrent._reference(a, [inputs[0], *init], p, masks)
        return recurrent.sequence_reference(t, a, inputs[0], p, mask, initial=init)

    fwd, bwd = run(tf, af, params[:n_pf], init_f), run(tb, ab, params[n_pf:], init_b)
    y, y_rev = fwd[0], bwd[0]
    if af["return_sequences"]:
        y_rev = y_rev[:, ::-1]
    mode = attrs["merge_mode"]
    if mode is None:
        outs = [y, y_rev]
    elif mode == "concat":
        outs = [np.concatenate([y, y_rev], axis=-1)]
    elif mode == "sum":
        outs = [y + y_rev]
    elif mode == "mul":
        outs = [y * y_rev]
    else:
        outs = [(y + y_rev) / 2]
    return outs + fwd[1:] + bwd[1:]


def _bidirectional_draws(attrs) -> bool:
    """Either direction draws dropout masks in training (see recurrent.dropout_draws)."""
    return any(recurrent.dropout_draws(a) for _, a in direction_attrs(attrs))


BIDIRECTIONAL = LayerDef(
    name="Bidirectional",
    attrs=(
        _LAYER_ATTR,
        Attr(
            "merge_mode",
            "enum",
            "concat",
            "How the two directions' outputs combine; null returns both.",
            choices=MERGE_MODES,
            nullable=True,
        ),
        Attr(
            "backward_layer",
            "layer",
            None,
            "The layer run backwards (must set go_backwards: true); null: a copy of `layer`.",
            nullable=True,
        ),
        *COMMON_ATTRS,
    ),
    infer=_bidirectional_infer,
    params=_bidirectional_params,
    arity=(1, 5),  # the sequence, then optionally both directions' initial states
    extra={"initial_state": True},  # the builder's layer(x, initial_state=[...])
    emit=_bidirectional_emit,
    emit_train=_bidirectional_emit_train,
    emit_backward=_bidirectional_emit_backward,
    random_training=_bidirectional_draws,
    saved=_bidirectional_saved,
    reference=_bidirectional_reference,
    uses_mask=True,
    positional=("layer", "merge_mode"),
    doc="Runs a recurrent layer (SimpleRNN, LSTM, GRU, RNN over a cell, or ConvLSTM1D/2D/3D) over the "
    "sequence in both directions and merges the two outputs: concatenated on the last axis (concat, the "
    "default; for a channels_first ConvLSTM that is the last spatial axis, as in Keras), added "
    "(sum), multiplied (mul), averaged (ave), or returned as two outputs (null). The backward "
    "layer is a copy of `layer` with go_backwards set unless backward_layer is given; with "
    "return_sequences its output is flipped back to forward time order before merging. With "
    "return_state the forward layer's final states follow the output(s), then the backward "
    "layer's. Sequence outputs keep the input's mask; states are never masked. The weights are "
    "the forward layer's, then the backward layer's, named `forward_<name>/<weight>` and "
    "`backward_<name>/<weight>`. Initial states (Keras's initial_state) are inputs after the "
    "sequence, the forward layer's then the backward layer's: "
    "`x, fh, fc, bh, bc -> bilstm`; with them the steps ignore the input's mask, as Keras 3 passes "
    "no mask to such a call.",
)

# ----------------------------------------------------------------------------- Model


def _model_infer(attrs, inputs, ctx: InferContext):
    return list(ctx.infer_model(attrs["model"], list(inputs)))


def _model_params(attrs, inputs, ctx: InferContext):
    return list(ctx.model_params(attrs["model"]))


# No kernels: lowering inlines the sub-model's steps, whose own backward kernels train it.
MODEL = LayerDef(
    name="Model",
    attrs=(
        Attr("model", "model", doc="Name of the sub-model, one of the document's `models`."),
        *COMMON_ATTRS,
    ),
    infer=_model_infer,
    params=_model_params,
    arity=(1, None),
    doc="Calls another model of the same document as a single layer, as Keras does when a "
    "model is applied to tensors: the inputs map in order onto the sub-model's inputs and its "
    "outputs become this layer's outputs. The sub-model's weights are shared by every call "
    "and listed as `<layer>/<weight>`.",
)

# ----------------------------------------------------------------------------- SpectralNormalization
#
# Keras's SpectralNormalization wraps a layer with a `kernel` (or Embedding's `embeddings`) and
# adds the non-trainable `vector_u` (1, kernel.shape[-1]), listed right after the kernel. At
# inference it is the wrapped layer. In training, before the forward pass, it runs
# `power_iterations` steps of the power method on the kernel seen as (-1, units) and divides
# the kernel by the estimated largest singular value, writing both back (an all-zero kernel is
# left alone): the wrapped layer then runs, and is differentiated, with the kernel as a plain
# weight. The kernels here run the wrapped layer's own kernels through a view of the step
# without `vector_u`.

SPECTRAL_EPSILON = 1e-7  # keras.ops.normalize's floor on the norm (backend.epsilon())


def _unit(v):
    """``v * min(1 / ||v||, 1 / epsilon)``, Keras's L2 ``normalize``, in place (float64)."""
    ss = 0.0
    for i in range(v.size):
        ss += v[i] * v[i]
    inv = 1.0 / math.sqrt(ss) if ss > 0.0 else math.inf
    inv = min(inv, 1.0 / SPECTRAL_EPSILON)
    for i in range(v.size):
        v[i] *= inv


def spectral_normalize(w, u, iterations):
    """One training step's update: ``w`` (rows, units), the kernel (float32, rescaled in
    place), ``u`` (1, units), the power method's vector (replaced)."""
    rows, units = w.shape
    nonzero = False
    for i in range(rows):
        for j in range(units):
            if w[i, j] != 0.0:
                nonzero = True
    if not nonzero:
        return
    uu = np.empty(units, np.float64)
    vv = np.empty(rows, np.float64)
    for j in range(units):
        uu[j] = u[0, j]
    for _ in range(iterations):
        for i in range(rows):
            acc = 0.0
            for j in range(units):
                acc += w[i, j] * uu[j]
            vv[i] = acc
        _unit(vv)
        for j in range(units):
            uu[j] = 0.0
        for i in range(rows):
            for j in range(units):
                uu[j] += vv[i] * w[i, j]
        _unit(uu)
    sigma = 0.0
    for i in range(rows):
        for j in range(units):
            sigma += vv[i] * w[i, j] * uu[j]
    s32 = np.float32(sigma)
    for i in range(rows):
        for j in range(units):
            w[i, j] = w[i, j] / s32
    for j in range(units):
        u[0, j] = uu[j]


def _sn_inner(attrs) -> tuple:
    """(the wrapped layer's LayerDef, its normalized attributes)."""
    from . import REGISTRY

    inner = dict(attrs["layer"])
    defn = REGISTRY[inner.pop("type")]
    if "trainable" in attrs and not attrs["trainable"]:
        inner["trainable"] = False
    return defn, normalize_attrs(defn, inner)


def _sn_check(attrs, inputs, ctx: InferContext) -> list[ParamSpec]:
    inner = attrs["layer"]
    defn = ctx.layer_def(inner)
    if defn.name in ("TimeDistributed", "Bidirectional", "SpectralNormalization", "Model", "RNN") or defn.uses_mask:
        raise ShapeError(f"SpectralNormalization wraps a layer with a kernel such as Dense, Conv2D or Embedding; "
                         f"nnspec does not wrap {defn.name}")  # fmt: skip
    params = list(ctx.layer_params(inner, inputs))
    if not params or params[0].name not in ("kernel", "embeddings"):
        raise ShapeError(f"SpectralNormalization: {defn.name} has no weight 'kernel' nor 'embeddings' "
                         f"(it has {', '.join(p.name for p in params) or 'no weights'}), as Keras requires")  # fmt: skip
    return params


def _sn_infer(attrs, inputs, ctx: InferContext):
    _sn_check(attrs, inputs, ctx)
    outs = ctx.infer_layer(attrs["layer"], inputs)
    return [TensorType(t.shape, inputs[0].dtype, t.masked) for t in outs]  # Keras casts to the input's dtype


def _sn_params(attrs, inputs, ctx: InferContext):
    from dataclasses import replace

    inner = _sn_check(attrs, inputs, ctx)
    scope = snake_case(_inner_type(attrs["layer"]))
    out = []
    for p in inner:
        out.append(replace(p, name=f"{scope}/{p.name}"))
        if len(out) == 1:  # the kernel is the wrapped layer's first weight
            u_init = {"type": "truncated_normal", "mean": 0.0, "stddev": 0.02}
            out.append(ParamSpec("vector_u", (1, p.shape[-1]), u_init, trainable=False))
    return out


def _sn_kernel_index(e) -> int:
    return next(i for i, n in enumerate(e.step.params) if n.rsplit("/", 1)[-1] in ("kernel", "embeddings"))


class _WrappedStep:
    """The step as the wrapped layer's kernels see it: its attributes, and its weights (and
    their gradients) without ``vector_u``."""

    def __init__(self, e, attrs) -> None:
        self._e = e
        self.attrs = attrs
        u = _sn_kernel_index(e) + 1
        self.p = [v for i, v in enumerate(e.p) if i != u]
        if hasattr(e, "dp"):
            self.dp = [v for i, v in enumerate(e.dp) if i != u]

    def __getattr__(self, name):
        return getattr(self._e, name)


def truncate(y):
    """Round toward zero in place, over a 2-D view (a float cast to an integer dtype)."""
    rows, cols = y.shape
    for r in range(rows):
        for c in range(cols):
            y[r, c] = np.trunc(y[r, c])


def _int_ids(e) -> bool:
    """Keras casts the wrapped layer's output to the input's dtype: integer ids (Embedding)
    give outputs truncated to integers, through which no gradient flows."""
    return not e.x_dtypes[0].startswith(("float", "bfloat"))


def _sn_emit(e):
    defn, attrs = _sn_inner(e.attrs)
    lines = defn.emit(_WrappedStep(e, attrs))
    return lines + ([e.call(truncate, e.per_sample(e.y[0], True))] if _int_ids(e) else [])


def _sn_emit_train(e):
    defn, attrs = _sn_inner(e.attrs)
    k = _sn_kernel_index(e)
    kernel = e.p[k]
    units = f"{kernel}.shape[{kernel}.ndim - 1]"
    update = e.call(spectral_normalize, f"{kernel}.reshape(({kernel}.size // {units}, {units}))", e.p[k + 1],
                    int(e.attrs["power_iterations"]))  # fmt: skip
    inner = _WrappedStep(e, attrs)
    lines = [update, *(defn.emit_train or defn.emit)(inner)]
    return lines + ([e.call(truncate, e.per_sample(e.y[0], True))] if _int_ids(e) else [])


def _sn_backward(e):
    if _int_ids(e):
        return []
    defn, attrs = _sn_inner(e.attrs)
    return defn.emit_backward(_WrappedStep(e, attrs))


def _sn_saved(attrs, x_shapes, y_shapes):
    defn, inner = _sn_inner(attrs)
    return defn.saved(inner, x_shapes, y_shapes) if defn.saved is not None else []


def _sn_reference(attrs, inputs, params, masks=None):
    """Inference: the wrapped layer's reference with its own weights (``vector_u`` dropped)."""
    defn, inner = _sn_inner(attrs)
    (y,) = defn.reference(inner, inputs, [params[0], *params[2:]], masks)  # the kernel is first
    return [y if np.asarray(inputs[0]).dtype.kind == "f" else np.trunc(y)]


SPECTRAL_NORMALIZATION = LayerDef(
    name="SpectralNormalization",
    attrs=(
        _LAYER_ATTR,
        Attr("power_iterations", "int", 1, "Power-method steps per training step.", minimum=1),
        *COMMON_ATTRS,
    ),
    infer=_sn_infer,
    params=_sn_params,
    emit=_sn_emit,
    emit_train=_sn_emit_train,
    emit_backward=_sn_backward,
    saved=_sn_saved,
    reference=_sn_reference,
    couples_batch=True,  # the training update of the kernel runs once per batch, never per part
    positional=("layer", "power_iterations"),
    doc="Wraps a layer with a kernel (Dense, convolutions, Embedding) and keeps its spectral norm "
    "near 1: in each training step, before the forward pass, one or more power-method steps "
    "estimate the kernel's largest singular value (over the kernel seen as (-1, units)) and the "
    "kernel is divided by it, as Keras's. At inference it is the wrapped layer. Weights: the "
    "wrapped layer's, with the non-trainable `vector_u` (1, units) after the kernel. As Keras, the "
    "output is cast to the input's dtype: over integer ids (Embedding) it is truncated to integers "
    "and passes no gradient.",
)

LAYERS = (TIME_DISTRIBUTED, BIDIRECTIONAL, MODEL)
