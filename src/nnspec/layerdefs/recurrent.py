"""Recurrent layers: SimpleRNN, LSTM, GRU.

Each layer scans a (batch, time, features) input with one cell. A cell owns three weights, in
Keras's order: ``kernel`` (features, k*units), ``recurrent_kernel`` (units, k*units) and, with
``use_bias``, ``bias``, where k is the number of gates (1, 4 or 3). Keras stores them under the
cell (``lstm/lstm_cell/kernel``); nnspec names them after the layer (``kernel``), as for every
other layer.

Keras's ``use_cudnn`` argument is omitted on purpose: it only picks a backend implementation of
the same computation. So is ``implementation`` (a keyword argument choosing how the gate
products are batched). Passing initial states (Keras's ``initial_state`` call argument) is not
part of these definitions: a layer here takes exactly one input, the sequence.

At inference (the kernels below) ``dropout`` and ``recurrent_dropout`` do nothing, ``unroll``
computes the same values, and a ``stateful`` layer never compiles (it needs a fixed batch size,
which nnspec's inputs do not have). With ``go_backwards`` and ``return_sequences`` the output
sequence is in processing order, that is reversed, as in Keras.
"""

from __future__ import annotations

from dataclasses import replace

from . import activations
from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape
from .core import ACTIVATION_ATTR, kernel_and_bias, kernel_bias_attrs

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
# Called by kernels: compiled in place by the runtime.
KERNEL_HELPERS = ("_tanh", "_activate", "_rnn_setup", "_gate_sum", "_put", "_rnn_output", "_rnn_outputs")

# Gate blocks along the last axis of kernel, recurrent_kernel and bias, in Keras's order.
LSTM_GATES = ("i", "f", "c", "o")  # input, forget, cell candidate, output
GRU_GATES = ("z", "r", "h")  # update, reset, candidate

# The type names of the layers below; Bidirectional accepts only these.
RECURRENT_TYPES = ("SimpleRNN", "LSTM", "GRU")

# ----------------------------------------------------------------------------- attributes

_KB = {a.name: a for a in kernel_bias_attrs()}

_UNITS = Attr("units", "int", doc="Dimensionality of the output space (and of each state).", minimum=1)
_ACTIVATION = replace(
    ACTIVATION_ATTR, default="tanh", doc="Activation of the output/candidate (null: linear)."
)
_RECURRENT_ACTIVATION = replace(
    ACTIVATION_ATTR,
    name="recurrent_activation",
    default="sigmoid",
    doc="Activation of the gates (null: linear).",
)
_RECURRENT_INITIALIZER = Attr(
    "recurrent_initializer", "initializer", "orthogonal", "Initializer of the recurrent kernel."
)
_RECURRENT_REGULARIZER = Attr(
    "recurrent_regularizer", "regularizer", None, "Penalty on the recurrent kernel.", nullable=True
)
_RECURRENT_CONSTRAINT = Attr(
    "recurrent_constraint", "constraint", None, "Constraint on the recurrent kernel.", nullable=True
)
_DROPOUT = Attr(
    "dropout", "float", 0.0, "Fraction of the inputs dropped in training.", minimum=0.0, maximum=1.0
)
_RECURRENT_DROPOUT = Attr(
    "recurrent_dropout", "float", 0.0, "Fraction of the recurrent state dropped in training.",
    minimum=0.0, maximum=1.0,
)  # fmt: skip
_SEED = Attr("seed", "int", None, "Random seed of the dropout masks.", nullable=True)
_UNIT_FORGET_BIAS = Attr(
    "unit_forget_bias", "bool", True,
    "Add 1 to the forget gate's bias at initialization (the forget block of `bias` starts at ones).",
)  # fmt: skip
_RESET_AFTER = Attr(
    "reset_after", "bool", True,
    "Apply the reset gate after the recurrent matrix product (separate input and recurrent biases).",
)  # fmt: skip

# The sequence-handling arguments of Keras's base RNN layer.
_RNN_FLAGS = (
    Attr("return_sequences", "bool", False, "Return the output of every time step, not only the last."),
    Attr("return_state", "bool", False, "Also return the final state(s) after the output."),
    Attr("go_backwards", "bool", False, "Process the sequence from its end; the output stays reversed."),
    Attr(
        "stateful",
        "bool",
        False,
        "Carry the final states of a batch over as the next batch's initial states.",
    ),
    Attr("unroll", "bool", False, "Unroll the time loop (needs a known sequence length)."),
)
_ZERO_OUTPUT_FOR_MASK = Attr(
    "zero_output_for_mask", "bool", False,
    "With return_sequences, output zeros at masked time steps instead of repeating the last output.",
)  # fmt: skip


def _cell_attrs(*, gates: bool, unit_forget_bias: bool = False) -> tuple[Attr, ...]:
    """The cell's arguments in Keras's constructor order, up to ``recurrent_dropout``."""
    return (
        _UNITS,
        _ACTIVATION,
        *((_RECURRENT_ACTIVATION,) if gates else ()),
        _KB["use_bias"],
        _KB["kernel_initializer"],
        _RECURRENT_INITIALIZER,
        _KB["bias_initializer"],
        *((_UNIT_FORGET_BIAS,) if unit_forget_bias else ()),
        _KB["kernel_regularizer"],
        _RECURRENT_REGULARIZER,
        _KB["bias_regularizer"],
        _KB["activity_regularizer"],
        _KB["kernel_constraint"],
        _RECURRENT_CONSTRAINT,
        _KB["bias_constraint"],
        _DROPOUT,
        _RECURRENT_DROPOUT,
    )


# ----------------------------------------------------------------------------- rules


def _rnn_infer(name: str, n_states: int):
    def infer(attrs, inputs, ctx):
        (x,) = inputs
        if x.rank != 3:
            raise ShapeError(
                f"{name} expects an input of rank 3 (batch, time, features); got {fmt_shape(x.shape)}"
            )
        if x.shape[2] is None:
            raise ShapeError(f"{name} needs a known feature dimension; got {fmt_shape(x.shape)}")
        if attrs["unroll"] and x.shape[1] is None:
            raise ShapeError(
                f"{name} with unroll=True needs a known sequence length; got {fmt_shape(x.shape)}"
            )
        if attrs["stateful"] and x.shape[0] is None:
            raise ShapeError(f"{name} with stateful=True needs a fixed batch size; got {fmt_shape(x.shape)}")
        batch, units = x.shape[0], attrs["units"]
        if attrs["return_sequences"]:
            out = TensorType((batch, x.shape[1], units), "float32", x.masked)
        else:
            out = TensorType((batch, units), "float32", False)
        if not attrs["return_state"]:
            return [out]
        return [out] + [TensorType((batch, units), "float32", False) for _ in range(n_states)]

    return infer


def _rnn_params(gates: int, bias_shape):
    def params(attrs, inputs, ctx):
        units = attrs["units"]
        d = inputs[0].shape[-1]
        kernel, *bias = kernel_and_bias(attrs, (d, gates * units), bias_shape(attrs))
        recurrent = ParamSpec(
            "recurrent_kernel", (units, gates * units), attrs["recurrent_initializer"],
            regularizer=attrs["recurrent_regularizer"], constraint=attrs["recurrent_constraint"],
        )  # fmt: skip
        if bias and attrs.get("unit_forget_bias") and attrs.get("use_bias"):
            # Keras: bias_initializer for the input gate, ones for the forget gate, then
            # bias_initializer again for the cell and output gates.
            init = attrs["bias_initializer"]
            blocks = {"type": "blocks", "blocks": [[init, units], ["ones", units], [init, 2 * units]]}
            b = bias[0]
            bias = [ParamSpec(b.name, b.shape, blocks, b.trainable, b.regularizer, b.constraint)]
        return [kernel, recurrent, *bias]

    return params


# ----------------------------------------------------------------------------- kernels
#
# One kernel per cell (``simple_rnn_forward``, ``lstm_forward``, ``gru_forward``, all with the
# same arguments) runs a layer over a whole sequence. The input projection of every time step
# is one BLAS product, (rows*T, features) x (features, k*units), before the time loop; each
# step then does one ``h @ recurrent_kernel`` product (two for a GRU with reset_after=False)
# and the gate math, in one scratch array the plan function allocates per call. Masks follow
# Keras: on a masked step the states are kept and the output repeats the previous output, which
# is always the hidden state h (zeros before the first valid step), or is zero with
# zero_output_for_mask. Three kernels rather than one: a plan function links the code of every
# kernel it calls, and a kernel for all cells made each plan's compilation seconds longer.
#
# Common arguments: ``x`` (rows, T, features); ``w`` (features, k*u); ``u`` (u, k*u); ``b``
# 1-D, (k*u,), or (2*k*u,) for a GRU with reset_after (input bias, then recurrent bias), empty
# without bias; ``mask`` (rows, T), 1 = valid step, or empty; ``act``/``ract`` activation codes;
# ``y`` (rows, T or 1, W): the output of processing step s goes to ``y[:, s]`` (``y[:, T-1-s]``
# with ``flip_output``), or the last output to ``y[:, 0]``, at columns ``col0:col0+u``,
# combined with what is there by ``merge`` (see ``_put``); ``h_out``/``c_out`` (rows, u)
# receive the final states, or are empty (the states then live in the scratch).

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}
MERGES = {"concat": 0, None: 0, "sum": 1, "mul": 2, "ave": 3}  # how a written output combines


def rnn_scratch_parts(steps: int, type_name: str, units: int) -> tuple[int, int]:
    """The scratch a kernel needs (see ``_rnn_setup``): (floats per row, fixed floats)."""
    return steps * GATES[type_name] * units + 11 * units, 3 * units * units


def rnn_scratch_size(rows: str, steps: int, type_name: str, units: int) -> str:
    """The expression of the scratch size a kernel needs."""
    per_row, fixed = rnn_scratch_parts(steps, type_name, units)
    return f"{rows} * {per_row} + {fixed}"


def _rnn_setup(x, w, b, use_bias, units, width, h_out, c_out, scratch):
    """Carve the scratch and project the inputs: ``xp = x @ w + b[:width]`` for every step.

    Scratch layout: input projection (rows*T, width), recurrent product (rows, 4u), five gate
    buffers (5, rows, u), room for a split recurrent kernel (3u*u), then h and c (rows, u) when
    ``h_out``/``c_out`` are empty. States start at zero.
    """
    rows = x.shape[0]
    steps = x.shape[1]
    o = rows * steps * width
    xp = scratch[:o].reshape((rows * steps, width))
    hp = scratch[o : o + rows * 4 * units]
    o += rows * 4 * units
    g = scratch[o : o + 5 * rows * units].reshape((5, rows, units))
    o += 5 * rows * units
    us = scratch[o : o + 3 * units * units]
    o += 3 * units * units
    if h_out.shape[0] == 0:
        h = scratch[o : o + rows * units].reshape((rows, units))
    else:
        h = h_out
    o += rows * units
    if c_out.shape[0] == 0:
        c = scratch[o : o + rows * units].reshape((rows, units))
    else:
        c = c_out
    np.dot(x.reshape((rows * steps, x.shape[2])), w, xp)
    if use_bias:
        for i in range(rows * steps):
            for j in range(width):
                xp[i, j] += b[j]
    for r in range(rows):
        for j in range(units):
            h[r, j] = 0.0
            c[r, j] = 0.0
    return xp, hp, g, us, h, c


# tanh(x) ~ x * P(x^2) / Q(x^2) for |x| <= 9, +-1 beyond: a rational fit made for nnspec (weighted
# least squares iterated toward the minimax error), within 6e-8 of tanh in float64 and 1.5 ulp once
# stored in float32, exact near 0. Unlike libm's tanh it is branch-free arithmetic, so the loops
# over a gate buffer vectorize: sigmoid and tanh gates cost ~1.5 ns instead of 12-17 ns a value.
# sigmoid(x) = (1 + tanh(x / 2)) / 2.
_TP1, _TP2, _TP3 = 0.12918601245614636, 0.0029200929020152294, 9.261631815856474e-06
_TP4, _TP5 = -1.276462412171463e-08, 1.8219180261878032e-11
_TQ1, _TQ2, _TQ3 = 0.46251890588518113, 0.0237604055261724, 0.0002280096306146203


def _tanh(v):
    v = min(max(v, -9.0), 9.0)
    z = v * v
    p = (((((_TP5 * z + _TP4) * z + _TP3) * z + _TP2) * z + _TP1) * z) + 1.0
    q = (((_TQ3 * z + _TQ2) * z + _TQ1) * z) + 1.0
    return min(max(v * p / q, -1.0), 1.0)


def _activate(y, code):
    """``activations.apply_activation(y, code)``, with branch-free tanh and sigmoid."""
    rows, cols = y.shape
    if code == 3:
        for r in range(rows):
            for c in range(cols):
                y[r, c] = _tanh(y[r, c])
    elif code == 2:
        for r in range(rows):
            for c in range(cols):
                y[r, c] = 0.5 * _tanh(0.5 * y[r, c]) + 0.5
    else:
        activations.apply_activation(y, code)


def _gate_sum(out, hv, xp, t, steps, off):
    """``out[r, j] = hv[r, off + j] + xp[r * steps + t, off + j]``: one gate's pre-activation."""
    rows, units = out.shape
    for r in range(rows):
        xr = r * steps + t
        for j in range(units):
            out[r, j] = hv[r, off + j] + xp[xr, off + j]


def _put(y, r, pos, col, v, merge):
    """Write one output value: store (0), add (1), multiply (2) or average (3) with what is there."""
    if merge == 0:
        y[r, pos, col] = v
    elif merge == 1:
        y[r, pos, col] += v
    elif merge == 2:
        y[r, pos, col] *= v
    else:
        y[r, pos, col] = (y[r, pos, col] + v) * 0.5


def _rnn_output(y, h, mask, t, pos, zero_output_for_mask, merge, col0):
    """Write the output of one step (input time ``t``) to ``y[:, pos, col0:]``."""
    rows, units = h.shape
    has_mask = mask.shape[0] > 0
    for r in range(rows):
        zero = zero_output_for_mask and has_mask and mask[r, t] == 0
        for j in range(units):
            _put(y, r, pos, col0 + j, 0.0 if zero else h[r, j], merge)


def _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0):
    """After processing step ``s``: write its output if the layer returns sequences, and the
    last output after the last step otherwise."""
    t = steps - 1 - s if go_backwards else s
    if return_sequences:
        _rnn_output(y, h, mask, t, steps - 1 - s if flip_output else s, zofm, merge, col0)
    elif s == steps - 1:
        _rnn_output(y, h, mask, t, 0, zofm, merge, col0)


def simple_rnn_forward(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
                       flip_output, zofm, merge, y, col0, h_out, c_out, scratch):  # fmt: skip
    """SimpleRNN over ``x``: ``h = act(x_t @ w + b + h @ u)`` (see the section's comment)."""
    steps = x.shape[1]
    units = u.shape[0]
    xp, hp, g, _us, h, _c = _rnn_setup(x, w, b, use_bias, units, units, h_out, c_out, scratch)
    rows = x.shape[0]
    hv = hp[: rows * units].reshape((rows, units))
    g0 = g[0]
    has_mask = mask.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        np.dot(h, u, hv)
        _gate_sum(g0, hv, xp, t, steps, 0)
        _activate(g0, act)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                h[r, j] = g0[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


def lstm_forward(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
                 flip_output, zofm, merge, y, col0, h_out, c_out, scratch):  # fmt: skip
    """LSTM over ``x``, gates i, f, c, o: ``c = f*c + i*act(cand)``, ``h = o*act(c)``."""
    steps = x.shape[1]
    units = u.shape[0]
    width = 4 * units
    xp, hp, g, _us, h, c = _rnn_setup(x, w, b, use_bias, units, width, h_out, c_out, scratch)
    rows = x.shape[0]
    hv = hp[: rows * width].reshape((rows, width))
    g0 = g[0]
    g1 = g[1]
    g2 = g[2]
    g3 = g[3]
    g4 = g[4]
    has_mask = mask.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        np.dot(h, u, hv)
        _gate_sum(g0, hv, xp, t, steps, 0)
        _gate_sum(g1, hv, xp, t, steps, units)
        _gate_sum(g2, hv, xp, t, steps, 2 * units)
        _gate_sum(g3, hv, xp, t, steps, 3 * units)
        _activate(g0, ract)
        _activate(g1, ract)
        _activate(g2, act)
        _activate(g3, ract)
        for r in range(rows):
            for j in range(units):
                cn = g1[r, j] * c[r, j] + g0[r, j] * g2[r, j]
                g2[r, j] = cn
                g4[r, j] = cn
        _activate(g4, act)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                c[r, j] = g2[r, j]
                h[r, j] = g3[r, j] * g4[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


def gru_forward(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
                flip_output, zofm, merge, y, col0, h_out, c_out, scratch):  # fmt: skip
    """GRU over ``x``, gates z, r, h: ``h = z*h + (1-z)*act(x_h + r*(h @ u_h + b_h))`` with
    reset_after, ``act(x_h + (r*h) @ u_h)`` without."""
    steps = x.shape[1]
    units = u.shape[0]
    width = 3 * units
    u2 = 2 * units
    xp, hp, g, us, h, _c = _rnn_setup(x, w, b, use_bias, units, width, h_out, c_out, scratch)
    rows = x.shape[0]
    hv = hp[: rows * width].reshape((rows, width))
    hzr = hp[: rows * u2].reshape((rows, u2))
    hh = hp[rows * u2 : rows * width].reshape((rows, units))
    uzr = us[: u2 * units].reshape((units, u2))
    uh = us[u2 * units :].reshape((units, units))
    if not reset_after:  # contiguous copies of the z|r and h blocks of u, for BLAS
        for i in range(units):
            for j in range(u2):
                uzr[i, j] = u[i, j]
            for j in range(units):
                uh[i, j] = u[i, u2 + j]
    g0 = g[0]
    g1 = g[1]
    g2 = g[2]
    has_mask = mask.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        if reset_after:
            np.dot(h, u, hv)
            if use_bias:
                for r in range(rows):
                    for j in range(width):
                        hv[r, j] += b[width + j]
            _gate_sum(g0, hv, xp, t, steps, 0)
            _gate_sum(g1, hv, xp, t, steps, units)
            _activate(g0, ract)
            _activate(g1, ract)
            for r in range(rows):
                xr = r * steps + t
                for j in range(units):
                    g2[r, j] = xp[xr, u2 + j] + g1[r, j] * hv[r, u2 + j]
        else:
            np.dot(h, uzr, hzr)
            _gate_sum(g0, hzr, xp, t, steps, 0)
            _gate_sum(g1, hzr, xp, t, steps, units)
            _activate(g0, ract)
            _activate(g1, ract)
            for r in range(rows):
                for j in range(units):
                    g2[r, j] = g1[r, j] * h[r, j]
            np.dot(g2, uh, hh)
            for r in range(rows):
                xr = r * steps + t
                for j in range(units):
                    g2[r, j] = xp[xr, u2 + j] + hh[r, j]
        _activate(g2, act)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                z = g0[r, j]
                h[r, j] = z * h[r, j] + (1.0 - z) * g2[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


KERNELS = {"SimpleRNN": simple_rnn_forward, "LSTM": lstm_forward, "GRU": gru_forward}


def emit_rnn_call(e, type_name, a, x, p, mask, y, col0, merge, flip, zofm, states, scratch) -> str:
    """The plan-function line running one recurrent layer (also one direction of Bidirectional).

    ``a``: the layer's normalized attributes; ``p``: its parameter variables; ``mask``: the
    input's mask variable or None; ``y``: the output variable seen as (rows, T or 1, W);
    ``states``: the state output variables (h[, c]) or (); ``scratch``: a float32 array of at
    least ``rnn_scratch_size`` elements.
    """
    none2 = f"{scratch}[:0].reshape((0, 0))"  # an empty, writable (0, 0) array: "absent"
    b = f"{scratch}[:0]"  # empty, and of the same type as a bias: one compiled kernel
    if a["use_bias"]:
        b = p[2]
        if type_name == "GRU" and a["reset_after"]:
            b = f"{p[2]}.reshape(({6 * a['units']},))"
    h_out = states[0] if states else none2
    c_out = states[1] if len(states) > 1 else none2
    return e.call(
        KERNELS[type_name], e.x[0] if x is None else x, p[0], p[1], b, mask or none2,
        _int(activations.code(a["activation"])), _int(activations.code(a.get("recurrent_activation"))),
        _bool(a["use_bias"]), _bool(a.get("reset_after", False)), _bool(a["go_backwards"]),
        _bool(a["return_sequences"]), _bool(flip), _bool(zofm), _int(merge), y, _int(col0), h_out, c_out,
        scratch,
    )  # fmt: skip


# Numba types a constant argument of a call between compiled functions as a literal and
# compiles one specialization per value: every combination of flags would cost a full compile
# of a kernel (10-15 s). Wrapped, they are plain int64/bool arguments: one compile, ever.
def _int(v) -> str:
    return f"np.int64({int(v)})"


def _bool(v) -> str:
    return f"np.bool_({bool(v)})"


def _rnn_emit(type_name):
    def emit(e):
        a = e.attrs
        (xs,) = e.x_shapes
        steps = xs[0]
        units = a["units"]
        rows = e.rows()
        y = f"{e.y[0]}.reshape(({rows}, {steps if a['return_sequences'] else 1}, {units}))"
        scratch = e.tmp(rnn_scratch_size(rows, steps, type_name, units))
        states = e.y[1:] if a["return_state"] else ()
        return [emit_rnn_call(e, type_name, a, None, e.p, e.m[0], y, 0, 0, False,
                              a["zero_output_for_mask"], states, scratch)]  # fmt: skip

    return emit


# ----------------------------------------------------------------------------- references


def _cell_reference(type_name, a, x_t, states, params):
    """One step of a cell in plain NumPy: (output, new states)."""
    act = lambda v: activations.reference(a["activation"], v)
    w, u = params[0], params[1]
    b = params[2] if a["use_bias"] else None
    n = a["units"]
    h_prev = states[0]
    if type_name == "SimpleRNN":
        h = act(x_t @ w + h_prev @ u + (0.0 if b is None else b))
        return h, [h]
    ract = lambda v: activations.reference(a["recurrent_activation"], v)
    if type_name == "LSTM":
        z = x_t @ w + h_prev @ u + (0.0 if b is None else b)
        i, f, cand, o = z[:, :n], z[:, n : 2 * n], z[:, 2 * n : 3 * n], z[:, 3 * n :]
        c = ract(f) * states[1] + ract(i) * act(cand)
        h = ract(o) * act(c)
        return h, [h, c]
    if a["reset_after"]:
        xb, hb = (0.0, 0.0) if b is None else (b[0], b[1])
        xm = x_t @ w + xb
        hm = h_prev @ u + hb
        z = ract(xm[:, :n] + hm[:, :n])
        r = ract(xm[:, n : 2 * n] + hm[:, n : 2 * n])
        cand = act(xm[:, 2 * n :] + r * hm[:, 2 * n :])
    else:
        xm = x_t @ w + (0.0 if b is None else b)
        z = ract(xm[:, :n] + h_prev @ u[:, :n])
        r = ract(xm[:, n : 2 * n] + h_prev @ u[:, n : 2 * n])
        cand = act(xm[:, 2 * n :] + (r * h_prev) @ u[:, 2 * n :])
    h = z * h_prev + (1.0 - z) * cand
    return h, [h]


def sequence_reference(type_name, a, x, params, mask=None, zero_output_for_mask=None):
    """A recurrent layer over ``x`` (batch, T, features) as Keras computes it: [output, states...].

    The output sequence is in processing order (reversed when go_backwards). On a masked step
    the states are kept and the output is the previous output (zeros at first), or zero with
    zero_output_for_mask.
    """
    zofm = a["zero_output_for_mask"] if zero_output_for_mask is None else zero_output_for_mask
    batch, steps, _ = x.shape
    states = [np.zeros((batch, a["units"])) for _ in range(STATES[type_name])]
    prev = np.zeros((batch, a["units"]))
    outs = []
    for t in reversed(range(steps)) if a["go_backwards"] else range(steps):
        out, new = _cell_reference(type_name, a, x[:, t], states, params)
        if mask is not None:
            m = np.asarray(mask)[:, t].astype(bool)[:, None]
            new = [np.where(m, s1, s0) for s1, s0 in zip(new, states)]
            out = np.where(m, out, 0.0 if zofm else prev)
        states, prev = new, out
        outs.append(out)
    y = np.stack(outs, axis=1) if a["return_sequences"] else outs[-1]
    return [y, *states] if a["return_state"] else [y]


def _rnn_reference(type_name):
    def reference(attrs, inputs, params, masks=None):
        mask = masks[0] if masks else None
        return sequence_reference(type_name, attrs, inputs[0], params, mask)

    return reference


# ----------------------------------------------------------------------------- layers

SIMPLE_RNN = LayerDef(
    name="SimpleRNN",
    attrs=(
        *_cell_attrs(gates=False),
        *_RNN_FLAGS,
        _SEED,
        _ZERO_OUTPUT_FOR_MASK,
        *COMMON_ATTRS,
    ),
    infer=_rnn_infer("SimpleRNN", 1),
    params=_rnn_params(1, lambda a: (a["units"],)),
    emit=_rnn_emit("SimpleRNN"),
    reference=_rnn_reference("SimpleRNN"),
    uses_mask=True,
    positional=("units",),
    doc="Fully connected recurrent layer: at each step the new state is "
    "`activation(x_t @ kernel + h_prev @ recurrent_kernel + bias)`, and the output is that state. "
    "Takes (batch, time, features); returns the last output (batch, units), or every output "
    "(batch, time, units) with return_sequences, followed by the final state with return_state. "
    "The sequence output keeps the input's mask; the state is never masked.",
)

LSTM = LayerDef(
    name="LSTM",
    attrs=(
        *_cell_attrs(gates=True, unit_forget_bias=True),
        _SEED,
        *_RNN_FLAGS,
        _ZERO_OUTPUT_FOR_MASK,
        *COMMON_ATTRS,
    ),
    infer=_rnn_infer("LSTM", 2),
    params=_rnn_params(4, lambda a: (4 * a["units"],)),
    emit=_rnn_emit("LSTM"),
    reference=_rnn_reference("LSTM"),
    uses_mask=True,
    positional=("units",),
    doc="Long short-term memory layer. The kernel, recurrent kernel and bias hold four blocks "
    "of `units` columns in the order input gate i, forget gate f, cell candidate c, output gate o; "
    "the gates use recurrent_activation, the candidate and the cell read-out use activation. With "
    "unit_forget_bias the forget block of the bias starts at ones whatever bias_initializer says. "
    "Returns the last output (or all of them with return_sequences), then the final hidden state "
    "h and cell state c with return_state. The sequence output keeps the input's mask; states "
    "are never masked.",
    extra={"gates": LSTM_GATES},
)

GRU = LayerDef(
    name="GRU",
    attrs=(
        *_cell_attrs(gates=True),
        _SEED,
        *_RNN_FLAGS,
        _RESET_AFTER,
        _ZERO_OUTPUT_FOR_MASK,
        *COMMON_ATTRS,
    ),
    infer=_rnn_infer("GRU", 1),
    params=_rnn_params(3, lambda a: (2, 3 * a["units"]) if a["reset_after"] else (3 * a["units"],)),
    emit=_rnn_emit("GRU"),
    reference=_rnn_reference("GRU"),
    uses_mask=True,
    positional=("units",),
    doc="Gated recurrent unit layer. The kernel, recurrent kernel and bias hold three blocks of "
    "`units` columns in the order update gate z, reset gate r, candidate h. With reset_after "
    "(Keras's default, the cuDNN form) the reset gate multiplies the recurrent product after the "
    "matrix multiply and the bias has shape (2, 3*units): row 0 for the input side, row 1 for the "
    "recurrent side; without it the reset gate scales the previous state first and the bias is "
    "(3*units,). Returns the last output (or all of them with return_sequences), then the final "
    "state with return_state. The sequence output keeps the input's mask; the state is never masked.",
    extra={"gates": GRU_GATES},
)

LAYERS = (SIMPLE_RNN, LSTM, GRU)
