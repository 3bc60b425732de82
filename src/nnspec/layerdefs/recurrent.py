"""Recurrent layers: SimpleRNN, LSTM, GRU.

Each layer scans a (batch, time, features) input with one cell. A cell owns three weights, in
Keras's order: ``kernel`` (features, k*units), ``recurrent_kernel`` (units, k*units) and, with
``use_bias``, ``bias``, where k is the number of gates (1, 4 or 3). Keras stores them under the
cell (``lstm/lstm_cell/kernel``); nnspec names them after the layer (``kernel``), as for every
other layer.

Keras's ``use_cudnn`` argument is omitted on purpose: it only picks a backend implementation of
the same computation. So is ``implementation`` (a keyword argument choosing how the gate
products are batched). Initial states (Keras's ``initial_state`` call argument) are inputs after
the sequence (``x, h, c -> lstm``; the builder's ``lstm(x, initial_state=[h, c])``); the
backward pass adds the states' gradients into them. A call with initial states has two tensor
arguments, and Keras 3 then passes the layer no mask: its steps ignore the input's mask (the
sequence output still carries it), and nnspec does the same.

Training has kernels of its own (the forward pass with dropout and saved arrays, and
backpropagation through time: see the training section). At inference ``dropout`` and
``recurrent_dropout`` do nothing and ``unroll`` computes the same values. A ``stateful`` layer
needs its model input's ``batch_size``; its kernels are the ones of a call given initial states
(the kept ones: compiler.lower.lower_stateful), with the input's mask still applied. With
``go_backwards`` and ``return_sequences`` the output sequence is in processing order, that is
reversed, as in Keras.
"""

from __future__ import annotations

import math
from dataclasses import replace

from . import activations
from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape, snake_case
from .core import ACTIVATION_ATTR, kernel_and_bias, kernel_bias_attrs

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
# Called by kernels: compiled in place by the runtime.
KERNEL_HELPERS = (
    "_tanh", "_activate", "_rnn_setup", "_init_states", "_add_rows", "_copy_row", "_add_bias", "_mul2", "_mul3",
    "_add_into", "_add_mul", "_mul_add", "_reset_candidate", "_gate_sums", "_put_row", "_none_valid_yet",
    "_zero_output", "_rnn_output",
    "_rnn_outputs", "_draw", "_drop_seq", "_copy_cols", "_gate_blocks", "_train_setup", "_rec_forward",
    "_save_block", "_dact", "_sparsemax_back_row", "_act_back", "_act_back_saved", "_lstm_gate_grads",
    "_gru_gate_grads", "_dy_add", "_dy_step", "_init_grad", "_finish_step", "_add_state_grads", "_transpose_into",
    "_rec_backward", "_input_backward", "_recurrent_weights", "_backward_setup",
)  # fmt: skip

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
        x, *init = inputs
        if init and len(init) != n_states:
            raise ShapeError(
                f"{name} takes the sequence, then {n_states} initial state{'s' * (n_states > 1)} "
                f"({'h, c' if n_states > 1 else 'h'}); got {len(init)}"
            )
        for k, s in enumerate(init):
            if s.rank != 2 or s.shape[1] != attrs["units"]:
                units = attrs["units"]
                raise ShapeError(f"{name}'s initial state {k + 1} must be (batch, {units}); got {fmt_shape(s.shape)}")
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
            raise ShapeError(f"{name} with stateful=True needs a fixed batch size; got {fmt_shape(x.shape)}: "
                             "give the model's input a batch_size (Keras's batch_shape)")
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
        return [kernel, recurrent, *lstm_bias(attrs, bias, units)]

    return params


def lstm_bias(attrs, bias: list[ParamSpec], units: int) -> list[ParamSpec]:
    """``bias`` ([] or [the bias]) with LSTM's unit_forget_bias: Keras initializes the input gate
    with bias_initializer, the forget gate with ones, then the cell and output gates with
    bias_initializer again (also ConvLSTM's bias)."""
    if bias and attrs.get("unit_forget_bias") and attrs.get("use_bias"):
        init = attrs["bias_initializer"]
        blocks = {"type": "blocks", "blocks": [[init, units], ["ones", units], [init, 2 * units]]}
        b = bias[0]
        return [ParamSpec(b.name, b.shape, blocks, b.trainable, b.regularizer, b.constraint)]
    return bias


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
# combined with what is there by ``merge`` (see ``_put_row``); ``h_out``/``c_out`` (rows, u)
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


def _rnn_setup(x, w, b, use_bias, units, width, h_out, c_out, h0, c0, scratch):
    """Carve the scratch and project the inputs: ``xp = x @ w + b[:width]`` for every step.

    Scratch layout: input projection (rows*T, width), recurrent product (rows, 4u), five gate
    buffers (5, rows, u), room for a split recurrent kernel (3u*u), then h and c (rows, u) when
    ``h_out``/``c_out`` are empty. States start at ``h0``/``c0`` (Keras's ``initial_state``),
    or at zero where those are empty.
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
    _init_states(h, c, h0, c0)
    return xp, hp, g, us, h, c


def _init_states(h, c, h0, c0):
    """``h = h0``, ``c = c0`` (initial states given), zeros where those are empty."""
    rows, units = h.shape
    for r in range(rows):
        for j in range(units):
            h[r, j] = h0[r, j] if h0.shape[0] > 0 else 0.0
            c[r, j] = c0[r, j] if c0.shape[0] > 0 else 0.0


# tanh(x) ~ x * P(x^2) / Q(x^2) for |x| <= 9, +-1 beyond: a rational fit made for nnspec (weighted
# least squares iterated toward the minimax error), within 6e-8 of tanh in float64, exact near 0.
# Unlike libm's tanh it is branch-free arithmetic, so the loops over a gate buffer vectorize. It is
# evaluated in float32 (constants and all): 8 lanes a vector and single-precision division, 2.5x
# faster than in float64 (5 vs 12 us for a 256x64 gate buffer here), within 6 ulp (3.4e-7) of tanh
# over [-12, 12] against 1.8 ulp in float64; sigmoid(x) = (1 + tanh(x / 2)) / 2.
_TP1, _TP2, _TP3 = 0.12918601245614636, 0.0029200929020152294, 9.261631815856474e-06
_TP4, _TP5 = -1.276462412171463e-08, 1.8219180261878032e-11
_TQ1, _TQ2, _TQ3 = 0.46251890588518113, 0.0237604055261724, 0.0002280096306146203


def _tanh(v):
    f = np.float32  # every constant cast: the arithmetic stays in float32 (folded at compile time)
    v = min(max(f(v), f(-9.0)), f(9.0))
    z = v * v
    p = (((((f(_TP5) * z + f(_TP4)) * z + f(_TP3)) * z + f(_TP2)) * z + f(_TP1)) * z) + f(1.0)
    q = (((f(_TQ3) * z + f(_TQ2)) * z + f(_TQ1)) * z) + f(1.0)
    return min(max(v * p / q, f(-1.0)), f(1.0))


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
                y[r, c] = np.float32(0.5) * _tanh(np.float32(0.5) * y[r, c]) + np.float32(0.5)
    else:
        activations.apply_activation(y, code)


def _gate_sums(g, n, hv, xp, t, steps):
    """``g[k, r, j] = hv[r, k * units + j] + xp[r * steps + t, k * units + j]`` for the first ``n``
    gates: their pre-activations at input step ``t``. One pass reads each row's projection once
    (the rows are ``steps`` apart in ``xp``): a pass per gate re-read every row per gate, which
    measured 8x slower at 256 rows, the largest part of an LSTM's time at batch 256."""
    units = g.shape[2]
    for r in range(g.shape[1]):
        xr = r * steps + t
        for k in range(n):
            off = np.uint64(k * units)
            for j in range(np.uint64(units)):
                g[k, r, j] = hv[r, off + j] + xp[xr, off + j]


def _add_rows(dst, a, b):
    """``dst = a + b`` over 1-D views.

    Kernels index rows through views (``a[r, off:off + n]``, then ``[j]``) or with unsigned
    offsets (``a[r, np.uint64(off) + j]``, j unsigned), never as ``a[r, off + j]``: with a
    signed offset the index may be negative as far as Numba knows, and its wraparound check on
    every element keeps LLVM from vectorizing the loop (the training saves of an LSTM step ran
    4x slower). Views cost a few ns each: loops reading many arrays per row use offsets."""
    for j in range(dst.shape[0]):
        dst[j] = a[j] + b[j]


def _copy_row(dst, src):
    """``dst[:] = src`` over 1-D views (see ``_add_rows``)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


def _add_bias(a, b):
    """``a[r] += b`` for every row of 2-D ``a``."""
    n = b.shape[0]
    for r in range(a.shape[0]):
        ar = a[r]
        for j in range(n):
            ar[j] += b[j]


def _mul2(dst, a, b):
    """``dst = a * b`` over 1-D views."""
    for j in range(dst.shape[0]):
        dst[j] = a[j] * b[j]


def _mul3(dst, a, b, c):
    """``dst = a * b * c`` over 1-D views."""
    for j in range(dst.shape[0]):
        dst[j] = a[j] * b[j] * c[j]


def _add_into(dst, a):
    """``dst += a`` over 1-D views."""
    for j in range(dst.shape[0]):
        dst[j] += a[j]


def _add_mul(dst, a, b):
    """``dst += a * b`` over 1-D views."""
    for j in range(dst.shape[0]):
        dst[j] += a[j] * b[j]


def _mul_add(dst, a, b, c):
    """``dst = a * b + c`` over 1-D views."""
    for j in range(dst.shape[0]):
        dst[j] = a[j] * b[j] + c[j]


def _reset_candidate(dst, xh, rg, hh):
    """A GRU's candidate pre-activation with reset_after: ``dst = xh + rg * hh`` (1-D views)."""
    for j in range(dst.shape[0]):
        dst[j] = xh[j] + rg[j] * hh[j]


def _put_row(yr, hr, zero, merge):
    """Write one row of output (``hr``, or zeros): store (0), add (1), multiply (2) or average
    (3) with what ``yr`` holds."""
    n = yr.shape[0]
    if merge == 0:
        for j in range(n):
            yr[j] = 0.0 if zero else hr[j]
    elif merge == 1:
        if not zero:
            for j in range(n):
                yr[j] += hr[j]
    elif merge == 2:
        for j in range(n):
            yr[j] *= 0.0 if zero else hr[j]
    else:
        for j in range(n):
            yr[j] = (yr[j] + (0.0 if zero else hr[j])) * 0.5


def _none_valid_yet(mask, r, s, steps, go_backwards) -> bool:
    """Whether row ``r`` has had no valid step up to processing step ``s``."""
    for q in range(s + 1):
        if mask[r, steps - 1 - q if go_backwards else q] != 0:
            return False
    return True


def _zero_output(mask, r, t, s, steps, go_backwards, zero_output_for_mask) -> bool:
    """Whether the output of a masked step is zeros rather than the state: with
    zero_output_for_mask, or before the row's first valid step. Keras repeats the previous
    *output* on a masked step, and there is none before the first valid step: zeros, even when
    the layer started from nonzero states (a stateful layer's kept ones)."""
    if mask.shape[0] == 0 or mask[r, t] != 0:
        return False
    return zero_output_for_mask or _none_valid_yet(mask, r, s, steps, go_backwards)


def _rnn_output(y, h, mask, t, pos, zero_output_for_mask, merge, col0, s, steps, go_backwards):
    """Write the output of one step (input time ``t``, processing step ``s``) to ``y[:, pos, col0:]``."""
    rows, units = h.shape
    for r in range(rows):
        zero = _zero_output(mask, r, t, s, steps, go_backwards, zero_output_for_mask)
        _put_row(y[r, pos, col0 : col0 + units], h[r], zero, merge)


def _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0):
    """After processing step ``s``: write its output if the layer returns sequences, and the
    last output after the last step otherwise."""
    t = steps - 1 - s if go_backwards else s
    if return_sequences:
        _rnn_output(y, h, mask, t, steps - 1 - s if flip_output else s, zofm, merge, col0, s, steps, go_backwards)
    elif s == steps - 1:
        _rnn_output(y, h, mask, t, 0, zofm, merge, col0, s, steps, go_backwards)


def simple_rnn_forward(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
                       flip_output, zofm, merge, y, col0, h_out, c_out, h0, c0, scratch):  # fmt: skip
    """SimpleRNN over ``x``: ``h = act(x_t @ w + b + h @ u)`` (see the section's comment)."""
    steps = x.shape[1]
    units = u.shape[0]
    xp, hp, g, _us, h, _c = _rnn_setup(x, w, b, use_bias, units, units, h_out, c_out, h0, c0, scratch)
    rows = x.shape[0]
    hv = hp[: rows * units].reshape((rows, units))
    g0 = g[0]
    has_mask = mask.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        np.dot(h, u, hv)
        _gate_sums(g, 1, hv, xp, t, steps)
        _activate(g0, act)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                h[r, j] = g0[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


def lstm_forward(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
                 flip_output, zofm, merge, y, col0, h_out, c_out, h0, c0, scratch):  # fmt: skip
    """LSTM over ``x``, gates i, f, c, o: ``c = f*c + i*act(cand)``, ``h = o*act(c)``."""
    steps = x.shape[1]
    units = u.shape[0]
    width = 4 * units
    xp, hp, g, _us, h, c = _rnn_setup(x, w, b, use_bias, units, width, h_out, c_out, h0, c0, scratch)
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
        _gate_sums(g, 4, hv, xp, t, steps)
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
                flip_output, zofm, merge, y, col0, h_out, c_out, h0, c0, scratch):  # fmt: skip
    """GRU over ``x``, gates z, r, h: ``h = z*h + (1-z)*act(x_h + r*(h @ u_h + b_h))`` with
    reset_after, ``act(x_h + (r*h) @ u_h)`` without."""
    steps = x.shape[1]
    units = u.shape[0]
    width = 3 * units
    u2 = 2 * units
    xp, hp, g, us, h, _c = _rnn_setup(x, w, b, use_bias, units, width, h_out, c_out, h0, c0, scratch)
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
                _add_bias(hv, b[width:])
            _gate_sums(g, 2, hv, xp, t, steps)
            _activate(g0, ract)
            _activate(g1, ract)
            for r in range(rows):
                _reset_candidate(g2[r], xp[r * steps + t, u2:width], g1[r], hv[r, u2:width])
        else:
            np.dot(h, uzr, hzr)
            _gate_sums(g, 2, hzr, xp, t, steps)
            _activate(g0, ract)
            _activate(g1, ract)
            for r in range(rows):
                for j in range(units):
                    g2[r, j] = g1[r, j] * h[r, j]
            np.dot(g2, uh, hh)
            for r in range(rows):
                _add_rows(g2[r], xp[r * steps + t, u2:width], hh[r])
        _activate(g2, act)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                z = g0[r, j]
                h[r, j] = z * h[r, j] + (1.0 - z) * g2[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


KERNELS = {"SimpleRNN": simple_rnn_forward, "LSTM": lstm_forward, "GRU": gru_forward}


def emit_rnn_call(e, type_name, a, x, p, mask, y, col0, merge, flip, zofm, states, scratch, init=()) -> str:
    """The plan-function line running one recurrent layer (also one direction of Bidirectional).

    ``a``: the layer's normalized attributes; ``p``: its parameter variables; ``mask``: the
    input's mask variable or None; ``y``: the output variable seen as (rows, T or 1, W);
    ``states``: the state output variables (h[, c]) or (); ``scratch``: a float32 array of at
    least ``rnn_scratch_size`` elements; ``init``: the initial state variables (h[, c]) or ().
    """
    none2 = f"{scratch}[:0].reshape((0, 0))"  # an empty, writable (0, 0) array: "absent"
    b = f"{scratch}[:0]"  # empty, and of the same type as a bias: one compiled kernel
    if a["use_bias"]:
        b = p[2]
        if type_name == "GRU" and a["reset_after"]:
            b = f"{p[2]}.reshape(({6 * a['units']},))"
    h_out = states[0] if states else none2
    c_out = states[1] if len(states) > 1 else none2
    h0, c0 = _init_vars(init, none2)
    return e.call(
        KERNELS[type_name], e.x[0] if x is None else x, p[0], p[1], b, mask or none2,
        _int(activations.code(a["activation"])), _int(activations.code(a.get("recurrent_activation"))),
        _bool(a["use_bias"]), _bool(a.get("reset_after", False)), _bool(a["go_backwards"]),
        _bool(a["return_sequences"]), _bool(flip), _bool(zofm), _int(merge), y, _int(col0), h_out, c_out,
        h0, c0, scratch,
    )  # fmt: skip


def step_mask(e):
    """The mask the steps follow: the input's, except when initial states are given. Keras 3
    passes a layer's input mask to its call only when the call has one tensor argument; with
    ``initial_state`` the steps ignore the mask (its sequence output still carries it on). A
    stateful step's own kept states (``stateful`` in its attributes: lower.lower_stateful)
    are not given ones: the mask applies."""
    return e.m[0] if len(e.x) == 1 or e.attrs.get("stateful") else None


def _init_vars(init, none2) -> tuple[str, str]:
    """The initial-state (or initial-state gradient) arguments: given variables, else empties."""
    return (init[0] if init and init[0] else none2), (init[1] if len(init) > 1 and init[1] else none2)


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
        xs = e.x_shapes[0]
        steps = xs[0]
        units = a["units"]
        rows = e.rows()
        y = f"{e.y[0]}.reshape(({rows}, {steps if a['return_sequences'] else 1}, {units}))"
        scratch = e.tmp(rnn_scratch_size(rows, steps, type_name, units))
        states = e.y[1:] if a["return_state"] else ()
        return [emit_rnn_call(e, type_name, a, None, e.p, step_mask(e), y, 0, 0, False,
                              a["zero_output_for_mask"], states, scratch, e.x[1:])]  # fmt: skip

    return emit


# ----------------------------------------------------------------------------- training
#
# Training runs its own kernels, so the inference kernels above stay as they are: ``*_train``
# is the forward pass that also draws Keras's dropout masks and keeps what backpropagation
# through time needs; ``*_backward`` walks the steps in reverse. The saved arrays of one layer
# (one direction of a Bidirectional), per row, indexed by input time t (not processing order,
# so that products over all steps line up with x):
#
#   sh (T, u)          the state h entering the step at t
#   sa (T, k*u)        the gates after their activations (LSTM i f c o, GRU z r h, SimpleRNN h)
#   sx                 LSTM (T, 2u): c entering the step, act(c after it); GRU with reset_after
#                      (T, u): the recurrent product of the candidate block, bias included
#   sp (T, k*u [+u])   pre-activations (and the LSTM's new c), only when an activation's
#                      derivative needs its input (codes outside ``_FROM_OUTPUT``)
#   dmx (ndx*d,)       input dropout masks, values 0 or 1/(1-rate); dmh (ndh*u,) recurrent ones
#
# Dropout follows Keras (``keras/src/layers/rnn/{simple_rnn,lstm,gru}.py``): one mask per
# sequence, shared by all steps. SimpleRNN draws one input mask (dropout > 0) and one state mask
# (recurrent_dropout > 0). LSTM and GRU apply dropout only for 0 < rate < 1; with a nonzero
# recurrent_dropout the cell switches to Keras's implementation 1 and draws one mask per gate for
# the inputs and one per gate for the state, otherwise one input mask shared by the gates. The
# state mask scales h only where it enters a matrix product (GRU's z*h keeps the plain h). The
# masks come from NumPy's generator inside Numba (seeded by ``nnspec.runtime.kernels.seed_kernels``);
# the layer's ``seed`` attribute selects no stream of its own, as for Dropout. One difference from
# Keras on purpose: with dropout=1.0 an LSTM or GRU drops nothing (Keras's cells), where Keras's
# fused whole-sequence path (unmasked input, no recurrent_dropout) zeroes the inputs instead.
#
# Backward: per step, the gradient of h (and c) after the step gets the output's gradient
# (unless the step is masked with zero_output_for_mask), the gate gradients go to a per-step
# buffer, one (rows, k*u) x (k*u, u) product carries them to h before the step, and they are
# stored by time. After the loop the weight gradients are one product each over all steps:
# dW = x^T dG, dU = h_prev^T dG_h, dx = dG W^T (per gate block when per-gate dropout masks make
# the gates see different inputs). A masked step passes the state gradients through unchanged
# and contributes no gate gradient, as its forward step kept the states.

# Activation codes whose derivative is computed from the output alone: linear, relu, sigmoid,
# tanh, softmax, exponential, log_softmax.
_FROM_OUTPUT = (0, 1, 2, 3, 4, 9, 17)
_EXTRA = {"SimpleRNN": 0, "LSTM": 2, "GRU": 1}  # sx width in units (GRU: with reset_after)


def dropout_counts(type_name: str, a) -> tuple[int, int]:
    """How many input and recurrent dropout masks Keras draws per sequence in training."""
    d, rd = a["dropout"], a["recurrent_dropout"]
    if type_name == "SimpleRNN":
        return (1 if d > 0 else 0), (1 if rd > 0 else 0)
    k = GATES[type_name]
    ndx = (k if rd != 0.0 else 1) if 0.0 < d < 1.0 else 0
    return ndx, (k if 0.0 < rd < 1.0 else 0)


def _needs_pre(type_name: str, a) -> bool:
    codes = [activations.code(a["activation"])]
    if type_name != "SimpleRNN":
        codes.append(activations.code(a["recurrent_activation"]))
    return any(c not in _FROM_OUTPUT for c in codes)


def saved_layout(type_name: str, a, steps: int, features: int) -> list[tuple[str, tuple]]:
    """(key, shape per row) of the arrays one recurrent layer saves in training (see above)."""
    u, k = a["units"], GATES[type_name]
    ndx, ndh = dropout_counts(type_name, a)
    out = [("sh", (steps, u)), ("sa", (steps, k * u))]
    extra = _EXTRA[type_name] if type_name != "GRU" or a["reset_after"] else 0
    if extra:
        out.append(("sx", (steps, extra * u)))
    if _needs_pre(type_name, a):
        out.append(("sp", (steps, (k + (type_name == "LSTM")) * u)))
    if ndx:
        out.append(("dmx", (ndx * features,)))
    if ndh:
        out.append(("dmh", (ndh * u,)))
    return out


def rnn_train_scratch_parts(type_name: str, a, steps: int, features: int) -> tuple[int, int]:
    """(floats per row, fixed floats) of a training forward kernel's scratch (``_train_setup``)."""
    u, k = a["units"], GATES[type_name]
    ndx, _ = dropout_counts(type_name, a)
    per_row = steps * k * u + k * u + 9 * u + (steps * (features + u) if ndx else 0)
    return per_row, k * u * u + 2 * u * u + features * u


def rnn_backward_scratch_parts(type_name: str, a, steps: int, features: int) -> tuple[int, int]:
    """(floats per row, fixed floats) of a backward kernel's scratch (``_backward_setup``)."""
    u, k, d = a["units"], GATES[type_name], features
    per_row = steps * (2 * k * u + 2 * d + 2 * u) + 2 * k * u + 9 * u
    return per_row, (d + u) * k * u + k * u * u + u * u + 2 * d * u


def _draw(m, rate):
    """Fill a dropout mask: 1/(1-rate) with probability 1-rate, else 0 (Keras's inverted dropout)."""
    keep = 1.0 - rate
    scale = 1.0 / keep if keep > 0.0 else 0.0
    rows, cols = m.shape
    for r in range(rows):
        for j in range(cols):
            m[r, j] = scale if np.random.random() < keep else 0.0


def _drop_seq(dst, x2, m, off, steps):
    """``dst[i, j] = x2[i, j] * m[i // steps, off + j]``: a per-sequence mask over all its steps."""
    n, cols = dst.shape
    for i in range(n):
        d = dst[i]
        xi = x2[i]
        mr = m[i // steps, off : off + cols]
        for j in range(cols):
            d[j] = xi[j] * mr[j]


def _copy_cols(dst, src, off):
    """``dst = src[:, off:off + dst.shape[1]]``, into a contiguous array (for BLAS)."""
    n, cols = dst.shape
    for i in range(n):
        _copy_row(dst[i], src[i, off : off + cols])


def _gate_blocks(ub, u, q0):
    """``ub[q] = u[:, (q0 + q) * units:...]``: contiguous copies of the gate blocks of a kernel."""
    nb, units, _ = ub.shape
    for q in range(nb):
        _copy_cols(ub[q], u, (q0 + q) * units)


def _train_setup(x, w, b, use_bias, units, h_out, c_out, h0, c0, rate, rec_rate, dmx, dmh, scratch):
    """Carve a training kernel's scratch, draw the dropout masks, project the inputs.

    Layout: input projection (rows*T, width), recurrent product (rows, width), five gate
    buffers, the dropped state (rows, u), a product block (rows, u), h and c (rows, u) when
    ``h_out``/``c_out`` are empty, and with input dropout the dropped inputs (rows*T, d) and one
    gate's projection (rows*T, u); fixed: the kernel's gate blocks (k, u, u), room for the GRU's
    split kernel (2u*u), and one gate block of w (d, u).
    """
    rows, steps, d = x.shape
    width = w.shape[1]
    k = width // units
    n = rows * steps
    o = 0
    xp = scratch[o : o + n * width].reshape((n, width))
    o += n * width
    hv = scratch[o : o + rows * width]
    o += rows * width
    g = scratch[o : o + 5 * rows * units].reshape((5, rows, units))
    o += 5 * rows * units
    hd = scratch[o : o + rows * units].reshape((rows, units))
    o += rows * units
    pg = scratch[o : o + rows * units].reshape((rows, units))
    o += rows * units
    h = h_out
    if h_out.shape[0] == 0:
        h = scratch[o : o + rows * units].reshape((rows, units))
    o += rows * units
    c = c_out
    if c_out.shape[0] == 0:
        c = scratch[o : o + rows * units].reshape((rows, units))
    o += rows * units
    ndx = dmx.shape[1] // d
    nx = n if ndx > 0 else 0
    xd = scratch[o : o + nx * d].reshape((nx, d))
    o += nx * d
    pxg = scratch[o : o + nx * units].reshape((nx, units))
    o += nx * units
    ub = scratch[o : o + k * units * units].reshape((k, units, units))
    o += k * units * units
    us = scratch[o : o + 2 * units * units]
    o += 2 * units * units
    wg = scratch[o : o + d * units].reshape((d, units))
    if dmx.shape[1] > 0:
        _draw(dmx, rate)
    if dmh.shape[1] > 0:
        _draw(dmh, rec_rate)
    x2 = x.reshape((n, d))
    if ndx == 0:
        np.dot(x2, w, xp)
    elif ndx == 1:
        _drop_seq(xd, x2, dmx, 0, steps)
        np.dot(xd, w, xp)
    else:
        for q in range(ndx):
            _drop_seq(xd, x2, dmx, q * d, steps)
            _copy_cols(wg, w, q * units)
            np.dot(xd, wg, pxg)
            for i in range(n):
                _copy_row(xp[i, q * units : (q + 1) * units], pxg[i])
    if use_bias:
        for i in range(n):
            for j in range(width):
                xp[i, j] += b[j]
    _init_states(h, c, h0, c0)
    return xp, hv, g, hd, pg, ub, us, h, c


def _rec_forward(h, u, dmh, nblk, hv, hd, ub, pg):
    """``hv = h @ u`` for the first ``nblk`` gate blocks, h scaled by the recurrent dropout mask of
    each block (one mask for all, or one per gate block, taken from ``ub``)."""
    rows, units = h.shape
    ndh = dmh.shape[1] // units
    if ndh == 0:
        np.dot(h, u, hv)
    elif ndh == 1:
        _drop_seq(hd, h, dmh, 0, 1)
        np.dot(hd, u, hv)
    else:
        for q in range(nblk):
            _drop_seq(hd, h, dmh, q * units, 1)
            np.dot(hd, ub[q], pg)
            for r in range(rows):
                _copy_row(hv[r, q * units : (q + 1) * units], pg[r])


def _save_block(dst, t, off, src):
    """``dst[:, t, off:off + cols] = src``."""
    rows, cols = src.shape
    for r in range(rows):
        _copy_row(dst[r, t, off : off + cols], src[r])


def simple_rnn_train(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
                     flip_output, zofm, merge, y, col0, h_out, c_out, h0, c0, rate, rec_rate, dmx, dmh, sh, sa, sx, sp,
                     scratch):  # fmt: skip
    """``simple_rnn_forward`` in training: dropout, and the saved arrays (see the section)."""
    rows, steps, _ = x.shape
    units = u.shape[0]
    xp, hp, g, hd, pg, ub, _us, h, _c = _train_setup(x, w, b, use_bias, units, h_out, c_out, h0, c0, rate, rec_rate,
                                                     dmx, dmh, scratch)  # fmt: skip
    hv = hp.reshape((rows, units))
    g0 = g[0]
    has_mask = mask.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        _save_block(sh, t, 0, h)
        _rec_forward(h, u, dmh, 1, hv, hd, ub, pg)
        _gate_sums(g, 1, hv, xp, t, steps)
        if sp.shape[0] > 0:
            _save_block(sp, t, 0, g0)
        _activate(g0, act)
        _save_block(sa, t, 0, g0)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                h[r, j] = g0[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


def lstm_train(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
               flip_output, zofm, merge, y, col0, h_out, c_out, h0, c0, rate, rec_rate, dmx, dmh, sh, sa, sx, sp,
               scratch):  # fmt: skip
    """``lstm_forward`` in training: dropout, and the saved arrays (see the section)."""
    rows, steps, _ = x.shape
    units = u.shape[0]
    width = 4 * units
    xp, hp, g, hd, pg, ub, _us, h, c = _train_setup(x, w, b, use_bias, units, h_out, c_out, h0, c0, rate, rec_rate,
                                                    dmx, dmh, scratch)  # fmt: skip
    if dmh.shape[1] > units:
        _gate_blocks(ub, u, 0)
    hv = hp.reshape((rows, width))
    g0 = g[0]
    g1 = g[1]
    g2 = g[2]
    g3 = g[3]
    g4 = g[4]
    has_mask = mask.shape[0] > 0
    has_pre = sp.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        _save_block(sh, t, 0, h)
        _save_block(sx, t, 0, c)
        _rec_forward(h, u, dmh, 4, hv, hd, ub, pg)
        _gate_sums(g, 4, hv, xp, t, steps)
        if has_pre:
            for q in range(4):
                _save_block(sp, t, q * units, g[q])
        _activate(g0, ract)
        _activate(g1, ract)
        _activate(g2, act)
        _activate(g3, ract)
        for q in range(4):
            _save_block(sa, t, q * units, g[q])
        for r in range(rows):
            for j in range(units):
                cn = g1[r, j] * c[r, j] + g0[r, j] * g2[r, j]
                g2[r, j] = cn
                g4[r, j] = cn
        if has_pre:
            _save_block(sp, t, 4 * units, g2)
        _activate(g4, act)
        _save_block(sx, t, units, g4)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                c[r, j] = g2[r, j]
                h[r, j] = g3[r, j] * g4[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


def gru_train(x, w, u, b, mask, act, ract, use_bias, reset_after, go_backwards, return_sequences,
              flip_output, zofm, merge, y, col0, h_out, c_out, h0, c0, rate, rec_rate, dmx, dmh, sh, sa, sx, sp,
              scratch):  # fmt: skip
    """``gru_forward`` in training: dropout, and the saved arrays (see the section)."""
    rows, steps, _ = x.shape
    units = u.shape[0]
    width = 3 * units
    u2 = 2 * units
    xp, hp, g, hd, pg, ub, us, h, _c = _train_setup(x, w, b, use_bias, units, h_out, c_out, h0, c0, rate, rec_rate,
                                                    dmx, dmh, scratch)  # fmt: skip
    hv = hp.reshape((rows, width))
    hzr = hp[: rows * u2].reshape((rows, u2))
    hh = hp[rows * u2 :].reshape((rows, units))
    uzr = us.reshape((units, u2))
    ndh = dmh.shape[1] // units
    if ndh > 0 or not reset_after:
        _gate_blocks(ub, u, 0)
    if not reset_after:
        _copy_cols(uzr, u, 0)
    g0 = g[0]
    g1 = g[1]
    g2 = g[2]
    has_mask = mask.shape[0] > 0
    has_pre = sp.shape[0] > 0
    for s in range(steps):
        t = steps - 1 - s if go_backwards else s
        _save_block(sh, t, 0, h)
        if reset_after:
            _rec_forward(h, u, dmh, 3, hv, hd, ub, pg)
            if use_bias:
                _add_bias(hv, b[width:])
            _gate_sums(g, 2, hv, xp, t, steps)
            if has_pre:
                _save_block(sp, t, 0, g0)
                _save_block(sp, t, units, g1)
            _activate(g0, ract)
            _activate(g1, ract)
            for r in range(rows):
                _copy_row(sx[r, t], hv[r, u2:width])
                _reset_candidate(g2[r], xp[r * steps + t, u2:width], g1[r], hv[r, u2:width])
        else:
            _rec_forward(h, uzr, dmh, 2, hzr, hd, ub, pg)
            _gate_sums(g, 2, hzr, xp, t, steps)
            if has_pre:
                _save_block(sp, t, 0, g0)
                _save_block(sp, t, units, g1)
            _activate(g0, ract)
            _activate(g1, ract)
            for r in range(rows):
                if ndh > 0:
                    _mul3(g2[r], g1[r], h[r], dmh[r, u2:width])
                else:
                    _mul2(g2[r], g1[r], h[r])
            np.dot(g2, ub[2], hh)
            for r in range(rows):
                _add_rows(g2[r], xp[r * steps + t, u2:width], hh[r])
        if has_pre:
            _save_block(sp, t, u2, g2)
        _activate(g2, act)
        _save_block(sa, t, 0, g0)
        _save_block(sa, t, units, g1)
        _save_block(sa, t, u2, g2)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                z = g0[r, j]
                h[r, j] = z * h[r, j] + (1.0 - z) * g2[r, j]
        _rnn_outputs(y, h, mask, s, steps, go_backwards, return_sequences, flip_output, zofm, merge, col0)


TRAIN_KERNELS = {"SimpleRNN": simple_rnn_train, "LSTM": lstm_train, "GRU": gru_train}


def _dact(v, y, code):
    """The derivative of element-wise activation ``code`` at input ``v`` with output ``y`` (for
    the codes in ``_FROM_OUTPUT``, ``v`` is ``y``: only the output is read)."""
    if code == 1:
        return 1.0 if y > 0.0 else 0.0
    if code == 2:
        return y * (1.0 - y)
    if code == 3:
        return 1.0 - y * y
    if code == 5:
        return activations._sigmoid(v)
    if code == 6:
        a = 1.0 + abs(v)
        return 1.0 / (a * a)
    if code == 7 or code == 19:  # elu, celu (alpha 1)
        return 1.0 if v > 0.0 else math.exp(v)
    if code == 8:
        return (
            activations.SELU_SCALE
            if v > 0.0
            else activations.SELU_SCALE * activations.SELU_ALPHA * math.exp(v)
        )
    if code == 9:
        return y
    if code == 10:
        return (
            0.5 * (1.0 + math.erf(v * 0.7071067811865476)) + v * math.exp(-0.5 * v * v) * 0.3989422804014327
        )
    if code == 11:
        return 1.0 / 6.0 if -3.0 < v < 3.0 else 0.0
    if code == 12:
        return 0.0 if v < -3.0 else (1.0 if v > 3.0 else (2.0 * v + 3.0) / 6.0)
    if code == 13:
        sg = activations._sigmoid(v)
        return sg * (1.0 + v * (1.0 - sg))
    if code == 14:
        th = activations._tanh(activations._softplus(v))
        return th + v * (1.0 - th * th) * activations._sigmoid(v)
    if code == 15:
        return 1.0 if v > 0.0 else 0.2
    if code == 16:
        return 1.0 if 0.0 < v < 6.0 else 0.0
    if code == 18:
        return activations._sigmoid(-v)
    if code == 20 or code == 21:  # hard_shrink, soft_shrink
        return 1.0 if abs(v) > 0.5 else 0.0
    if code == 22:
        return 1.0 if -1.0 < v < 1.0 else 0.0
    if code == 23:
        return 0.0 if v <= -1.0 else (1.0 if v >= 1.0 else (v + 1.0) * 0.5)
    if code == 24:
        return 0.5 if -1.0 < v < 1.0 else 0.0
    if code == 25:
        return 0.5 * (1.0 + v / math.sqrt(v * v + 4.0))
    if code == 26:
        th = activations._tanh(v)
        return th * th
    return 1.0


def _sparsemax_back_row(dz, pre, out, r, cols, keras315):
    """Sparsemax's vector-Jacobian product on row ``r``, for the threshold as Keras 3.15 computes
    it (``keras315``, see ``activations``) or the textbook one. Entries are ranked by pairwise
    comparison rather than sorted: rows are one gate's units, and no sort is compiled."""
    order = np.empty(cols, np.int64)
    for c in range(cols):
        rank = 0
        v = pre[r, c]
        for c2 in range(cols):
            v2 = pre[r, c2]
            if v2 > v or (v2 == v and c2 < c):
                rank += 1
        order[rank] = c
    supp = np.zeros(cols, np.bool_)
    cum = 0.0
    k = 0
    last = 0
    for j in range(cols):
        v = pre[r, order[j]]
        cum += v
        if v - (cum - 1.0) / (j + 1) > 0:
            supp[j] = True
            k += 1
            last = j
    total = 0.0
    for c in range(cols):
        if out[r, c] > 0.0:
            total += dz[r, c]
    after = 0
    res = np.empty(cols, np.float64)
    for j in range(cols - 1, -1, -1):
        if supp[j]:
            after += 1
        c = order[j]
        dtau = after / k if keras315 else (1.0 / k if j <= last else 0.0)
        res[c] = (dz[r, c] if out[r, c] > 0.0 else 0.0) - total * dtau
    for c in range(cols):
        dz[r, c] = res[c]


def _act_back(dz, pre, out, code):
    """``dz = dz * act'(pre)`` in place over 2-D (rows, cols), the vector-Jacobian product for the
    row-wise activations; ``pre`` is ``out`` for the codes in ``_FROM_OUTPUT``."""
    rows, cols = dz.shape
    if code == 0:
        return
    if code == 2:
        for r in range(rows):
            for c in range(cols):
                y = out[r, c]
                dz[r, c] *= y * (1.0 - y)
    elif code == 3:
        for r in range(rows):
            for c in range(cols):
                y = out[r, c]
                dz[r, c] *= 1.0 - y * y
    elif code == 4:
        for r in range(rows):
            acc = 0.0
            for c in range(cols):
                acc += dz[r, c] * out[r, c]
            for c in range(cols):
                dz[r, c] = out[r, c] * (dz[r, c] - acc)
    elif code == 17:
        for r in range(rows):
            acc = 0.0
            for c in range(cols):
                acc += dz[r, c]
            for c in range(cols):
                dz[r, c] -= math.exp(out[r, c]) * acc
    elif code == 27:
        for r in range(rows):
            _sparsemax_back_row(dz, pre, out, r, cols, activations.SPARSEMAX_KERAS_315)
    else:
        for r in range(rows):
            for c in range(cols):
                dz[r, c] *= _dact(pre[r, c], out[r, c], code)


def _act_back_saved(dz, zoff, n, out, soff, pre, poff, t, code):
    """``_act_back`` on ``dz[:, zoff:zoff + n]``, the activation's output saved at
    ``out[:, t, soff:soff + n]`` and its input at ``pre[:, t, poff:poff + n]`` (``pre`` empty:
    not saved). Sigmoid and tanh, the gates' usual pair, index with unsigned offsets: on the
    strided views ``_act_back`` takes they ran 3x slower."""
    rows = dz.shape[0]
    a = np.uint64(zoff)
    b = np.uint64(soff)
    if code == 2:
        for r in range(rows):
            for j in range(np.uint64(n)):
                y = out[r, t, b + j]
                dz[r, a + j] *= y * (1.0 - y)
    elif code == 3:
        for r in range(rows):
            for j in range(np.uint64(n)):
                y = out[r, t, b + j]
                dz[r, a + j] *= 1.0 - y * y
    else:
        post = out[:, t, soff : soff + n]
        _act_back(dz[:, zoff : zoff + n], pre[:, t, poff : poff + n] if pre.shape[0] > 0 else post, post, code)


def _lstm_gate_grads(dgs, dcf, dc, dca, dh, sa, sx, t):
    """An LSTM step's gate gradients ``dgs`` (rows, 4u: i, f, c, o) at input step ``t``, from
    ``dct = dc + dca`` (dca: through h = o * act(c)) and the saved gates ``sa`` (i, f, c, o)
    and ``sx`` (the previous cell, act(c)); ``dcf = dct * f`` for the previous cell.

    Column offsets are unsigned: 13 views per row (``_add_rows``'s way) cost more than the
    arithmetic here (6.7 against 1.5 us per step at 32 rows of 64 units)."""
    rows, units = dc.shape
    u1 = np.uint64(units)
    u2 = np.uint64(2 * units)
    u3 = np.uint64(3 * units)
    for r in range(rows):
        for j in range(u1):
            dct = dc[r, j] + dca[r, j]
            dgs[r, j] = dct * sa[r, t, u2 + j]
            dgs[r, u1 + j] = dct * sx[r, t, j]
            dgs[r, u2 + j] = dct * sa[r, t, j]
            dgs[r, u3 + j] = dh[r, j] * sx[r, t, u1 + j]
            dcf[r, j] = dct * sa[r, t, u1 + j]


def _gru_gate_grads(dgs, dh, sh, sa, t):
    """A GRU step's gradients of z and of the candidate (``dgs`` blocks 0 and 2) at input step
    ``t``, from ``dh`` and ``h = z * hprev + (1 - z) * cand`` (``sh``, ``sa``; unsigned column
    offsets, see ``_lstm_gate_grads``)."""
    rows, units = dh.shape
    u2 = np.uint64(2 * units)
    for r in range(rows):
        for j in range(np.uint64(units)):
            dgs[r, j] = dh[r, j] * (sh[r, t, j] - sa[r, t, u2 + j])
            dgs[r, u2 + j] = dh[r, j] * (1.0 - sa[r, t, j])


def _dy_add(dh, dy, mask, t, pos, zofm, col0, scale, s, steps, go_backwards):
    """``dh += scale * dy[:, pos, col0:]``, except on masked rows whose output was zeros."""
    rows, units = dh.shape
    for r in range(rows):
        if _zero_output(mask, r, t, s, steps, go_backwards, zofm):
            continue
        d = dh[r]
        dyr = dy[r, pos, col0 : col0 + units]
        for j in range(units):
            d[j] += scale * dyr[j]


def _dy_step(dh, dy, mask, s, steps, go_backwards, return_sequences, flip, zofm, col0, scale):
    """The output's gradient at processing step ``s`` (see ``_rnn_outputs``) into ``dh``."""
    t = steps - 1 - s if go_backwards else s
    if return_sequences:
        _dy_add(dh, dy, mask, t, steps - 1 - s if flip else s, zofm, col0, scale, s, steps, go_backwards)
    elif s == steps - 1:
        _dy_add(dh, dy, mask, t, 0, zofm, col0, scale, s, steps, go_backwards)


def _init_grad(d, given):
    """The gradient of a final state: the state output's gradient, or zeros."""
    rows, units = d.shape
    for r in range(rows):
        for j in range(units):
            d[r, j] = given[r, j] if given.shape[0] > 0 else 0.0


def _finish_step(dgs, dg, t, mask, dh):
    """Masked rows: no gate gradient, the state's gradient passes on. Others: the gate gradients
    are stored at time ``t`` and ``dh`` restarts at 0 for the recurrent product to add into."""
    rows, width = dgs.shape
    units = dh.shape[1]
    has_mask = mask.shape[0] > 0
    for r in range(rows):
        if has_mask and mask[r, t] == 0:
            for j in range(width):
                dgs[r, j] = 0.0
        else:
            for j in range(units):
                dh[r, j] = 0.0
        for j in range(width):
            dg[r, t, j] = dgs[r, j]


def _add_state_grads(dh0, dh, dc0, dc):
    """After the last backward step ``dh``/``dc`` are the gradients of the states entering the
    first step: ADD them into those of the initial states (empty: none were given)."""
    units = dh.shape[1]
    for r in range(dh0.shape[0]):
        for j in range(units):
            dh0[r, j] += dh[r, j]
    for r in range(dc0.shape[0]):
        for j in range(units):
            dc0[r, j] += dc[r, j]


def _transpose_into(dst, src):
    """``dst = src.T``, a contiguous copy."""
    rows, cols = src.shape
    for i in range(rows):
        for j in range(cols):
            dst[j, i] = src[i, j]


def _rec_backward(dgs, ut, dmh, nblk, dh, tmp, gq):
    """``dh += (dgs @ u.T) * mask``: the inverse of ``_rec_forward``. ``ut`` is ``u.T`` made
    contiguous (``_transpose_into``): BLAS took twice as long on the transposed view (19 against
    10 us per LSTM(64) step at 32 rows)."""
    rows, units = dh.shape
    ndh = dmh.shape[1] // units
    if ndh <= 1:
        np.dot(dgs, ut[: nblk * units], tmp)
        for r in range(rows):
            if ndh == 1:
                _add_mul(dh[r], tmp[r], dmh[r])
            else:
                _add_into(dh[r], tmp[r])
    else:
        for q in range(nblk):
            _copy_cols(gq, dgs, q * units)
            np.dot(gq, ut[q * units : (q + 1) * units], tmp)
            for r in range(rows):
                _add_mul(dh[r], tmp[r], dmh[r, q * units : (q + 1) * units])


def _input_backward(x, w, dmx, dg2, dx, dw, db, tmpx, tmpw, xd, gq, wg, pq):
    """Gradients of the input projection from the gate gradients of all steps (``dg2``, rows*T
    by width): ``db += sum dg2``, ``dw += x^T dg2``, ``dx += dg2 w^T``, per gate block when each
    gate saw its own dropped inputs."""
    rows, steps, d = x.shape
    n = rows * steps
    width = w.shape[1]
    x2 = x.reshape((n, d))
    ndx = dmx.shape[1] // d
    if db.shape[0] > 0:
        for i in range(n):
            for j in range(width):
                db[j] += dg2[i, j]
    has_dw = dw.shape[0] > 0
    has_dx = dx.shape[0] > 0
    dx2 = dx.reshape((dx.shape[0] * dx.shape[1], d))
    if ndx == 0:
        if has_dw:
            np.dot(x2.T, dg2, tmpw)
            for i in range(d):
                for j in range(width):
                    dw[i, j] += tmpw[i, j]
        if has_dx:
            np.dot(dg2, w.T, tmpx)
            for i in range(n):
                for j in range(d):
                    dx2[i, j] += tmpx[i, j]
        return
    units = width // ndx
    for q in range(ndx):
        if ndx == 1:
            src = dg2
            wq = w
            pw = tmpw
            width_q = width
        else:
            _copy_cols(gq, dg2, q * units)
            _copy_cols(wg, w, q * units)
            src = gq
            wq = wg
            pw = pq.reshape((d, units))
            width_q = units
        if has_dw:
            _drop_seq(xd, x2, dmx, q * d, steps)
            np.dot(xd.T, src, pw)
            for i in range(d):
                _add_into(dw[i, q * units : q * units + width_q], pw[i])
        if has_dx:
            np.dot(src, wq.T, tmpx)
            for i in range(n):
                _add_mul(dx2[i], tmpx[i], dmx[i // steps, q * d : (q + 1) * d])


def _recurrent_weights(sh, dg2, dmh, nblk, du, tmpu, hin, gq, pq):
    """``du[:, :nblk*u] += h_prev^T dg2`` over all steps (per gate block with dropout masks, or
    when dg2 has more columns than the blocks asked for)."""
    rows, steps, units = sh.shape
    n = rows * steps
    ndh = dmh.shape[1] // units
    sh2 = sh.reshape((n, units))
    if ndh == 0 and dg2.shape[1] == nblk * units:
        np.dot(sh2.T, dg2, tmpu)
        for i in range(units):
            for j in range(nblk * units):
                du[i, j] += tmpu[i, j]
        return
    for q in range(nblk):
        if ndh > 0:
            _drop_seq(hin, sh2, dmh, (q if ndh > 1 else 0) * units, steps)
        else:
            _copy_cols(hin, sh2, 0)
        _copy_cols(gq, dg2, q * units)
        np.dot(hin.T, gq, pq)
        for i in range(units):
            for j in range(units):
                du[i, q * units + j] += pq[i, j]


def _backward_setup(rows, steps, d, units, k, scratch):
    """Carve a backward kernel's scratch (sizes in ``rnn_backward_scratch_parts``)."""
    n = rows * steps
    kw = k * units
    o = 0
    dg = scratch[o : o + n * kw].reshape((rows, steps, kw))
    o += n * kw
    dgh = scratch[o : o + n * kw].reshape((rows, steps, kw))
    o += n * kw
    tmpx = scratch[o : o + n * d].reshape((n, d))
    o += n * d
    xd = scratch[o : o + n * d].reshape((n, d))
    o += n * d
    hin = scratch[o : o + n * units].reshape((n, units))
    o += n * units
    gqn = scratch[o : o + n * units].reshape((n, units))
    o += n * units
    dgs = scratch[o : o + rows * kw].reshape((rows, kw))
    o += rows * kw
    dghs = scratch[o : o + rows * kw].reshape((rows, kw))
    o += rows * kw
    dgzr = scratch[o : o + rows * 2 * units].reshape((rows, 2 * units))
    o += rows * 2 * units
    st = scratch[o : o + 7 * rows * units].reshape((7, rows, units))
    o += 7 * rows * units
    tmpw = scratch[o : o + d * kw].reshape((d, kw))
    o += d * kw
    tmpu = scratch[o : o + units * kw].reshape((units, kw))
    o += units * kw
    ut = scratch[o : o + k * units * units].reshape((k * units, units))
    o += k * units * units
    wg = scratch[o : o + d * units].reshape((d, units))
    o += d * units
    pqd = scratch[o : o + d * units]
    o += d * units
    pqu = scratch[o : o + units * units].reshape((units, units))
    return dg, dgh, tmpx, xd, hin, gqn, dgs, dghs, dgzr, st, tmpw, tmpu, ut, wg, pqd, pqu


def simple_rnn_backward(x, w, u, mask, act, ract, reset_after, go_backwards, return_sequences, flip, zofm, dy,
                        col0, scale, dh_out, dc_out, dmx, dmh, sh, sa, sx, sp, dx, dw, du, db, dh0, dc0,
                        scratch):  # fmt: skip
    """Backpropagation through ``simple_rnn_train``: ADD into dx, dw, du, db (empty: not wanted).

    ``dy`` (rows, T or 1, W): the output's gradient, read at columns ``col0:col0+u`` times
    ``scale`` (at position T-1-s for step s with ``flip``); ``dh_out``/``dc_out``: the gradients
    of the returned states, or empty."""
    rows, steps, d = x.shape
    units = u.shape[0]
    dg, _dgh, tmpx, xd, hin, gqn, dgs, _dghs, _dgzr, st, tmpw, tmpu, ut, wg, pqd, pqu = _backward_setup(
        rows, steps, d, units, 1, scratch)  # fmt: skip
    _transpose_into(ut, u)
    dh = st[0]
    _init_grad(dh, dh_out)
    for s in range(steps - 1, -1, -1):
        t = steps - 1 - s if go_backwards else s
        _dy_step(dh, dy, mask, s, steps, go_backwards, return_sequences, flip, zofm, col0, scale)
        for r in range(rows):
            for j in range(units):
                dgs[r, j] = dh[r, j]
        _act_back_saved(dgs, 0, units, sa, 0, sp, 0, t, act)
        _finish_step(dgs, dg, t, mask, dh)
        _rec_backward(dgs, ut, dmh, 1, dh, st[1], st[2])
    _add_state_grads(dh0, dh, dc0, dh)
    dg2 = dg.reshape((rows * steps, units))
    _input_backward(x, w, dmx, dg2, dx, dw, db, tmpx, tmpw, xd, gqn, wg, pqd)
    if du.shape[0] > 0:
        _recurrent_weights(sh, dg2, dmh, 1, du, tmpu, hin, gqn, pqu)


def lstm_backward(x, w, u, mask, act, ract, reset_after, go_backwards, return_sequences, flip, zofm, dy,
                  col0, scale, dh_out, dc_out, dmx, dmh, sh, sa, sx, sp, dx, dw, du, db, dh0, dc0, scratch):  # fmt: skip
    """Backpropagation through ``lstm_train`` (arguments as ``simple_rnn_backward``)."""
    rows, steps, d = x.shape
    units = u.shape[0]
    dg, _dgh, tmpx, xd, hin, gqn, dgs, _dghs, _dgzr, st, tmpw, tmpu, ut, wg, pqd, pqu = _backward_setup(
        rows, steps, d, units, 4, scratch)  # fmt: skip
    _transpose_into(ut, u)
    dh = st[0]
    dc = st[1]
    t1 = st[2]
    t2 = st[3]
    _init_grad(dh, dh_out)
    _init_grad(dc, dc_out)
    has_mask = mask.shape[0] > 0
    u1 = units
    for s in range(steps - 1, -1, -1):
        t = steps - 1 - s if go_backwards else s
        _dy_step(dh, dy, mask, s, steps, go_backwards, return_sequences, flip, zofm, col0, scale)
        for r in range(rows):
            _mul2(t1[r], dh[r], sa[r, t, 3 * u1 :])
        _act_back_saved(t1, 0, u1, sx, u1, sp, 4 * u1, t, act)
        _lstm_gate_grads(dgs, t2, dc, t1, dh, sa, sx, t)
        for q in range(4):
            _act_back_saved(dgs, q * u1, u1, sa, q * u1, sp, q * u1, t, act if q == 2 else ract)
        for r in range(rows):
            if not (has_mask and mask[r, t] == 0):
                for j in range(units):
                    dc[r, j] = t2[r, j]
        _finish_step(dgs, dg, t, mask, dh)
        _rec_backward(dgs, ut, dmh, 4, dh, st[4], st[5])
    _add_state_grads(dh0, dh, dc0, dc)
    dg2 = dg.reshape((rows * steps, 4 * units))
    _input_backward(x, w, dmx, dg2, dx, dw, db, tmpx, tmpw, xd, gqn, wg, pqd)
    if du.shape[0] > 0:
        _recurrent_weights(sh, dg2, dmh, 4, du, tmpu, hin, gqn, pqu)


def gru_backward(x, w, u, mask, act, ract, reset_after, go_backwards, return_sequences, flip, zofm, dy,
                 col0, scale, dh_out, dc_out, dmx, dmh, sh, sa, sx, sp, dx, dw, du, db, dh0, dc0, scratch):  # fmt: skip
    """Backpropagation through ``gru_train`` (arguments as ``simple_rnn_backward``)."""
    rows, steps, d = x.shape
    units = u.shape[0]
    u1 = units
    u2 = 2 * units
    dg, dgh, tmpx, xd, hin, gqn, dgs, dghs, dgzr, st, tmpw, tmpu, ut, wg, pqd, pqu = _backward_setup(
        rows, steps, d, units, 3, scratch)  # fmt: skip
    _transpose_into(ut, u)
    dh = st[0]
    t1 = st[1]
    t2 = st[2]
    _init_grad(dh, dh_out)
    ndh = dmh.shape[1] // units
    has_mask = mask.shape[0] > 0
    for s in range(steps - 1, -1, -1):
        t = steps - 1 - s if go_backwards else s
        _dy_step(dh, dy, mask, s, steps, go_backwards, return_sequences, flip, zofm, col0, scale)
        _gru_gate_grads(dgs, dh, sh, sa, t)
        _act_back_saved(dgs, u2, u1, sa, u2, sp, u2, t, act)
        if reset_after:
            for r in range(rows):
                _mul2(dgs[r, u1:u2], dgs[r, u2:], sx[r, t])
                _mul2(dghs[r, u2:], dgs[r, u2:], sa[r, t, u1:u2])
        else:
            _copy_cols(st[3], dgs, u2)
            np.dot(st[3], ut[u2:], t1)  # the gradient of r * h (dropped)
            for r in range(rows):
                if ndh > 0:
                    _mul3(dgs[r, u1:u2], t1[r], sh[r, t], dmh[r, u2:])
                    _mul3(t2[r], t1[r], sa[r, t, u1:u2], dmh[r, u2:])
                else:
                    _mul2(dgs[r, u1:u2], t1[r], sh[r, t])
                    _mul2(t2[r], t1[r], sa[r, t, u1:u2])
        for q in range(2):
            _act_back_saved(dgs, q * u1, u1, sa, q * u1, sp, q * u1, t, ract)
        for r in range(rows):  # the direct paths to h before the step: z * h, and r * h
            if has_mask and mask[r, t] == 0:
                continue
            if reset_after:
                _mul2(t1[r], dh[r], sa[r, t, :u1])
            else:
                _mul_add(t1[r], dh[r], sa[r, t, :u1], t2[r])
        _finish_step(dgs, dg, t, mask, dh)
        for r in range(rows):
            if has_mask and mask[r, t] == 0:
                continue
            for j in range(units):
                dh[r, j] = t1[r, j]
        if reset_after:
            for r in range(rows):
                for j in range(u2):
                    dghs[r, j] = dgs[r, j]
                if has_mask and mask[r, t] == 0:
                    dghs[r, u2:] = 0.0
                for j in range(3 * units):
                    dgh[r, t, j] = dghs[r, j]
            _rec_backward(dghs, ut, dmh, 3, dh, st[4], st[5])
        else:
            _copy_cols(dgzr, dgs, 0)
            _rec_backward(dgzr, ut, dmh, 2, dh, st[4], st[5])
    _add_state_grads(dh0, dh, dc0, dh)
    n = rows * steps
    dg2 = dg.reshape((n, 3 * units))
    _input_backward(x, w, dmx, dg2, dx, dw, db, tmpx, tmpw, xd, gqn, wg, pqd)
    if reset_after:
        dgh2 = dgh.reshape((n, 3 * units))
        if db.shape[0] > 0:
            for i in range(n):
                _add_into(db[3 * units :], dgh2[i])
        if du.shape[0] > 0:
            _recurrent_weights(sh, dgh2, dmh, 3, du, tmpu, hin, gqn, pqu)
    elif du.shape[0] > 0:
        _recurrent_weights(sh, dg2, dmh, 2, du, tmpu, hin, gqn, pqu)
        sh2 = sh.reshape((n, units))
        sa2 = sa.reshape((n, 3 * units))
        for i in range(n):  # the candidate block saw r * h (dropped)
            if ndh > 0:
                _mul3(hin[i], sa2[i, u1:u2], sh2[i], dmh[i // steps, u2:])
            else:
                _mul2(hin[i], sa2[i, u1:u2], sh2[i])
        _copy_cols(gqn, dg2, u2)
        np.dot(hin.T, gqn, pqu)
        for i in range(units):
            _add_into(du[i, u2:], pqu[i])


BACKWARD_KERNELS = {"SimpleRNN": simple_rnn_backward, "LSTM": lstm_backward, "GRU": gru_backward}


def _empty(scratch: str, ndim: int) -> str:
    """An empty array of ``ndim`` dimensions, of the scratch's type: "absent"."""
    return f"{scratch}[:0].reshape(({', '.join(['0'] * ndim)}{',' if ndim == 1 else ''}))"


def _empties(e, scratch: str) -> tuple[str, str, str]:
    """Variables holding empty 1-, 2- and 3-D arrays, made once per step: the generated function
    stays small (each reshape expression is code, and a plan function's compile time grows
    faster than its length)."""
    names = []
    for ndim in (1, 2, 3):
        name = e._gen.fresh("z")
        e._gen.line(f"{name} = {_empty(scratch, ndim)}")
        names.append(name)
    return tuple(names)


def _bias_var(type_name, a, p):
    if type_name == "GRU" and a["reset_after"]:
        return f"{p}.reshape(({6 * a['units']},))"
    return p


def emit_rnn_train_call(e, type_name, a, p, mask, y, col0, merge, flip, zofm, states, saved, scratch,
                        init=()) -> str:  # fmt: skip
    """The plan-function line of one recurrent layer's training forward pass (also one direction
    of Bidirectional): ``emit_rnn_call``'s arguments, and ``saved``, the saved array variables
    by their key in ``saved_layout``."""
    none1, none2, none3 = _empties(e, scratch)
    b = _bias_var(type_name, a, p[2]) if a["use_bias"] else none1
    h0, c0 = _init_vars(init, none2)
    return e.call(
        TRAIN_KERNELS[type_name], e.x[0], p[0], p[1], b, mask or none2,
        _int(activations.code(a["activation"])), _int(activations.code(a.get("recurrent_activation"))),
        _bool(a["use_bias"]), _bool(a.get("reset_after", False)), _bool(a["go_backwards"]),
        _bool(a["return_sequences"]), _bool(flip), _bool(zofm), _int(merge), y, _int(col0),
        states[0] if states else none2, states[1] if len(states) > 1 else none2, h0, c0,
        e.lit(float(a["dropout"])), e.lit(float(a["recurrent_dropout"])),
        saved.get("dmx", none2), saved.get("dmh", none2), saved["sh"], saved["sa"], saved.get("sx", none3),
        saved.get("sp", none3), scratch,
    )  # fmt: skip


def emit_rnn_backward_call(
    e, type_name, a, p, dp, mask, dy, col0, scale, flip, zofm, dstates, saved, scratch, dinit=()
):
    """The plan-function line of one recurrent layer's backward pass: ``dy`` the output's gradient
    seen as (rows, T or 1, W), read at ``col0`` times ``scale``; ``dp`` the weight gradient
    variables (None: not trainable); ``dstates`` the gradients of the returned states or ();
    ``dinit`` those of the initial states given as inputs (None where not wanted) or ()."""
    none1, none2, none3 = _empties(e, scratch)
    dh0, dc0 = _init_vars(dinit, none2)
    db = none1
    if a["use_bias"] and dp[2] is not None:
        db = _bias_var(type_name, a, dp[2])
    return e.call(
        BACKWARD_KERNELS[type_name], e.x[0], p[0], p[1], mask or none2,
        _int(activations.code(a["activation"])), _int(activations.code(a.get("recurrent_activation"))),
        _bool(a.get("reset_after", False)), _bool(a["go_backwards"]), _bool(a["return_sequences"]), _bool(flip),
        _bool(zofm), dy, _int(col0), e.lit(float(scale)),
        dstates[0] if dstates else none2, dstates[1] if len(dstates) > 1 else none2,
        saved.get("dmx", none2), saved.get("dmh", none2), saved["sh"], saved["sa"], saved.get("sx", none3),
        saved.get("sp", none3), e.dx[0] or none3, dp[0] or none2, dp[1] or none2, db, dh0, dc0, scratch,
    )  # fmt: skip


def scratch_expr(rows: str, parts) -> str:
    """The size of a scratch big enough for each of ``parts`` ((per row, fixed) pairs)."""
    return f"{rows} * {max(p[0] for p in parts)} + {max(p[1] for p in parts)}"


def _rnn_saved(type_name):
    def saved(attrs, x_shapes, y_shapes):
        steps, d = x_shapes[0]
        return [(shape, "float32") for _, shape in saved_layout(type_name, attrs, steps, d)]

    return saved


def _rnn_emit_train(type_name):
    def emit(e):
        a = e.attrs
        steps, d = e.x_shapes[0]
        rows = e.rows()
        y = f"{e.y[0]}.reshape(({rows}, {steps if a['return_sequences'] else 1}, {a['units']}))"
        scratch = e.tmp(scratch_expr(rows, [rnn_train_scratch_parts(type_name, a, steps, d)]))
        saved = dict(zip([k for k, _ in saved_layout(type_name, a, steps, d)], e.s))
        states = e.y[1:] if a["return_state"] else ()
        return [emit_rnn_train_call(e, type_name, a, e.p, step_mask(e), y, 0, 0, False, a["zero_output_for_mask"],
                                    states, saved, scratch, e.x[1:])]  # fmt: skip

    return emit


def _rnn_emit_backward(type_name):
    def emit(e):
        a = e.attrs
        steps, d = e.x_shapes[0]
        rows = e.rows()
        dy = f"{e.dy[0]}.reshape(({rows}, {steps if a['return_sequences'] else 1}, {a['units']}))"
        scratch = e.tmp(scratch_expr(rows, [rnn_backward_scratch_parts(type_name, a, steps, d)]))
        saved = dict(zip([k for k, _ in saved_layout(type_name, a, steps, d)], e.s))
        dstates = e.dy[1:] if a["return_state"] else ()
        return [emit_rnn_backward_call(e, type_name, a, e.p, e.dp, step_mask(e), dy, 0, 1.0, False,
                                       a["zero_output_for_mask"], dstates, saved, scratch, e.dx[1:])]  # fmt: skip

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


def sequence_reference(type_name, a, x, params, mask=None, zero_output_for_mask=None, initial=()):
    """A recurrent layer over ``x`` (batch, T, features) as Keras computes it: [output, states...].

    The output sequence is in processing order (reversed when go_backwards). On a masked step
    the states are kept and the output is the previous output (zeros at first), or zero with
    zero_output_for_mask. The states start at ``initial`` (h[, c]) when given, else at zero.
    """
    zofm = a["zero_output_for_mask"] if zero_output_for_mask is None else zero_output_for_mask
    batch, steps, _ = x.shape
    states = [np.asarray(s, np.float64) for s in initial] or [
        np.zeros((batch, a["units"])) for _ in range(STATES[type_name])
    ]
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
        mask = masks[0] if masks and (len(inputs) == 1 or attrs.get("stateful")) else None  # see step_mask
        return sequence_reference(type_name, attrs, inputs[0], params, mask, initial=inputs[1:])

    return reference


# ----------------------------------------------------------------------------- layers

def dropout_draws(attrs) -> bool:
    """A recurrent layer's training step draws dropout masks (so a batch is never split over
    threads: the draws would come from the threads' generators)."""
    return 0.0 < attrs["dropout"] < 1.0 or 0.0 < attrs["recurrent_dropout"] < 1.0


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
    arity=(1, 2),  # the sequence, then optionally the initial states (Keras's initial_state)
    extra={"initial_state": True},
    params=_rnn_params(1, lambda a: (a["units"],)),
    emit=_rnn_emit("SimpleRNN"),
    emit_train=_rnn_emit_train("SimpleRNN"),
    emit_backward=_rnn_emit_backward("SimpleRNN"),
    saved=_rnn_saved("SimpleRNN"),
    random_training=dropout_draws,
    reference=_rnn_reference("SimpleRNN"),
    uses_mask=True,
    positional=("units",),
    doc="Fully connected recurrent layer: at each step the new state is "
    "`activation(x_t @ kernel + h_prev @ recurrent_kernel + bias)`, and the output is that state. "
    "Takes (batch, time, features); returns the last output (batch, units), or every output "
    "(batch, time, units) with return_sequences, followed by the final state with return_state. "
    "The sequence output keeps the input's mask; the state is never masked. An initial state "
    "(Keras's initial_state) is an input after the sequence: `x, h0 -> rnn` ((batch, units)); with "
    "it the steps ignore the input's mask, as Keras 3 passes no mask to such a call.",
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
    arity=(1, 3),  # the sequence, then optionally the initial states (Keras's initial_state)
    params=_rnn_params(4, lambda a: (4 * a["units"],)),
    emit=_rnn_emit("LSTM"),
    emit_train=_rnn_emit_train("LSTM"),
    emit_backward=_rnn_emit_backward("LSTM"),
    saved=_rnn_saved("LSTM"),
    random_training=dropout_draws,
    reference=_rnn_reference("LSTM"),
    uses_mask=True,
    positional=("units",),
    doc="Long short-term memory layer. The kernel, recurrent kernel and bias hold four blocks "
    "of `units` columns in the order input gate i, forget gate f, cell candidate c, output gate o; "
    "the gates use recurrent_activation, the candidate and the cell read-out use activation. With "
    "unit_forget_bias the forget block of the bias starts at ones whatever bias_initializer says. "
    "Returns the last output (or all of them with return_sequences), then the final hidden state "
    "h and cell state c with return_state. The sequence output keeps the input's mask; states "
    "are never masked. Initial states (Keras's initial_state) are inputs after the sequence: "
    "`x, h0, c0 -> lstm` (each (batch, units)); with them the steps ignore the input's mask, as "
    "Keras 3 passes no mask to such a call.",
    extra={"gates": LSTM_GATES, "initial_state": True},  # the builder's layer(x, initial_state=[h, c])
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
    arity=(1, 2),  # the sequence, then optionally the initial states (Keras's initial_state)
    params=_rnn_params(3, lambda a: (2, 3 * a["units"]) if a["reset_after"] else (3 * a["units"],)),
    emit=_rnn_emit("GRU"),
    emit_train=_rnn_emit_train("GRU"),
    emit_backward=_rnn_emit_backward("GRU"),
    saved=_rnn_saved("GRU"),
    random_training=dropout_draws,
    reference=_rnn_reference("GRU"),
    uses_mask=True,
    positional=("units",),
    doc="Gated recurrent unit layer. The kernel, recurrent kernel and bias hold three blocks of "
    "`units` columns in the order update gate z, reset gate r, candidate h. With reset_after "
    "(Keras's default, the cuDNN form) the reset gate multiplies the recurrent product after the "
    "matrix multiply and the bias has shape (2, 3*units): row 0 for the input side, row 1 for the "
    "recurrent side; without it the reset gate scales the previous state first and the bias is "
    "(3*units,). Returns the last output (or all of them with return_sequences), then the final "
    "state with return_state. The sequence output keeps the input's mask; the state is never masked. "
    "An initial state (Keras's initial_state) is an input after the sequence: `x, h0 -> gru` "
    "((batch, units)); with it the steps ignore the input's mask, as Keras 3 passes no mask to "
    "such a call.",
    extra={"gates": GRU_GATES, "initial_state": True},
)



# ----------------------------------------------------------------------------- RNN(cell)
#
# Keras's base RNN layer over one of its built-in cells computes exactly what the matching
# layer computes (LSTM(...) is RNN(LSTMCell(...)) with a cuDNN path): nnspec types the cell,
# runs the matching layer's kernels (lowering asks ``extra["lower_as"]``) and names the weights
# as Keras does, ``<node>/lstm_cell/kernel``.

_CELL_LAYER = {"SimpleRNNCell": SIMPLE_RNN, "LSTMCell": LSTM, "GRUCell": GRU}


def _cell_only(defn: LayerDef) -> tuple[Attr, ...]:
    """A cell's arguments in Keras's constructor order: the layer's cell arguments and seed (and
    reset_after for GRU), without activity_regularizer (a cell has none)."""
    names = [a.name for a in defn.attrs]
    keep = names[: names.index("recurrent_dropout") + 1] + ["seed"] + (["reset_after"] if defn is GRU else [])
    return tuple(a for a in defn.attrs if a.name in keep and a.name != "activity_regularizer")


def _cell_infer(name: str):
    def infer(attrs, inputs, ctx):
        raise ShapeError(
            f"{name} is a cell, one time step: run it over a sequence with "
            f"{{type: RNN, cell: {{type: {name}, ...}}}} (or use {_CELL_LAYER[name].name})"
        )

    return infer


def _cell(name: str) -> LayerDef:
    layer = _CELL_LAYER[name]
    return LayerDef(
        name=name,
        attrs=(*_cell_only(layer), *COMMON_ATTRS),
        infer=_cell_infer(name),
        positional=("units",),
        doc=f"One time step of {layer.name}, for `RNN`'s `cell` (same arguments as {layer.name}'s "
        "cell part, same weights). Not a layer of its own in a graph.",
    )


SIMPLE_RNN_CELL = _cell("SimpleRNNCell")
LSTM_CELL = _cell("LSTMCell")
GRU_CELL = _cell("GRUCell")


def rnn_cells(attrs) -> list[dict]:
    """The cells an RNN runs: one, or a stack (a list, or ``{type: StackedRNNCells, cells: [...]}``)."""
    cell = attrs["cell"]
    if isinstance(cell, dict) and cell.get("type") == "StackedRNNCells":
        cell = cell.get("cells")
    cells = list(cell) if isinstance(cell, (list, tuple)) else [cell]
    for c in cells:
        t = c.get("type") if isinstance(c, dict) else None
        if t not in _CELL_LAYER:
            raise ShapeError(f"RNN's cells must be {', '.join(_CELL_LAYER)} (or a list of them, StackedRNNCells); "
                             f"got {t!r}")  # fmt: skip
    if not cells:
        raise ShapeError("RNN: StackedRNNCells needs at least one cell")
    return cells


def rnn_as_layers(attrs) -> list[tuple[str, dict]]:
    """(layer type, its normalized attributes) of each cell of an RNN, as a chain of layers:
    stacked cells are stacked layers, each but the last returning sequences, the first reading
    the input backwards when ``go_backwards`` (the others then read its reversed outputs in
    order), each returning its states when ``return_state``."""
    from .base import normalize_attrs

    cells = rnn_cells(attrs)
    flags = {a.name: attrs[a.name] for a in (*_RNN_FLAGS, _ZERO_OUTPUT_FOR_MASK)}
    out = []
    for k, c in enumerate(cells):
        cell = dict(c)
        layer = _CELL_LAYER[cell.pop("type")]
        last = k == len(cells) - 1
        own = {**flags, "return_sequences": flags["return_sequences"] or not last,
               "go_backwards": flags["go_backwards"] and k == 0,
               "zero_output_for_mask": flags["zero_output_for_mask"] and last}  # fmt: skip
        merged = {**cell, **own, "trainable": attrs["trainable"] and cell.get("trainable", True)}
        out.append((layer.name, normalize_attrs(layer, {k2: v for k2, v in merged.items() if k2 != "dtype"})))
    return out


def rnn_as_layer(attrs) -> tuple[str, dict]:
    """(layer type, its normalized attributes): what an RNN over one cell computes."""
    chain = rnn_as_layers(attrs)
    if len(chain) != 1:
        raise ShapeError("a stack of cells (StackedRNNCells) cannot be wrapped in Bidirectional or "
                         "TimeDistributed here; wrap stacked recurrent layers instead")  # fmt: skip
    return chain[0]


def _cell_scopes(attrs) -> list[str]:
    """Each cell's weight scope, as Keras names them: ``lstm_cell`` for one cell;
    ``stacked_rnn_cells/lstm_cell``, ``stacked_rnn_cells/lstm_cell_1``... for a stack."""
    cells = rnn_cells(attrs)
    if isinstance(attrs["cell"], dict) and attrs["cell"].get("type") in _CELL_LAYER:
        return [snake_case(cells[0]["type"])]
    seen: dict[str, int] = {}
    out = []
    for c in cells:
        base = snake_case(c["type"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(f"stacked_rnn_cells/{base}" + (f"_{n}" if n else ""))
    return out


def cell_states(attrs, init: list) -> list[list]:
    """The initial states given to an RNN, split among its cells in order (each cell's h, then
    its c for an LSTM cell), as Keras's nested ``initial_state=[[h1, c1], [h2]]`` flattened;
    [] per cell when none were given."""
    chain = rnn_as_layers(attrs)
    if not init:
        return [[] for _ in chain]
    counts = [STATES[t] for t, _ in chain]
    if len(init) != sum(counts):
        names = ", ".join(f"{c['type']} {n}" for c, n in zip(rnn_cells(attrs), counts))
        raise ShapeError(f"RNN takes the sequence, then {sum(counts)} initial states, each cell's in order "
                         f"({names}); got {len(init)}")  # fmt: skip
    out, k = [], 0
    for n in counts:
        out.append(list(init[k : k + n]))
        k += n
    return out


def _rnn_chain(attrs, x, ctx, init=()):
    """[(layer def, attrs, input type, output types)] of the chain over input type ``x``, each
    cell's layer given its initial states (types) when ``init`` holds them."""
    chain = rnn_as_layers(attrs)
    if len(chain) > 1 and attrs["go_backwards"] and x.masked:
        raise ShapeError("RNN over stacked cells with go_backwards cannot read a masked input in nnspec (the "
                         "reversed outputs between the cells would need the reversed mask); stack "
                         "recurrent layers instead")  # fmt: skip
    layers = {d.name: d for d in _CELL_LAYER.values()}
    out = []
    for cell, (t, a), own in zip(rnn_cells(attrs), chain, cell_states(attrs, list(init))):
        defn = layers[t]
        try:
            types = defn.infer(a, [x, *own], ctx)
        except ShapeError as e:
            raise ShapeError(f"RNN({cell['type']}): {e}") from None
        out.append((defn, a, x, types))
        x = types[0]
    return out


def _rnn_wrapper_infer(attrs, inputs, ctx):
    x, *init = inputs  # initial states: each cell's, checked as its layer checks them
    chain = _rnn_chain(attrs, x, ctx, init)
    return [chain[-1][3][0], *(t for _, _, _, types in chain for t in types[1:])]


def _rnn_wrapper_params(attrs, inputs, ctx):
    out = []
    for scope, (defn, a, x, _) in zip(_cell_scopes(attrs), _rnn_chain(attrs, inputs[0], ctx)):
        out += [replace(p, name=f"{scope}/{p.name}") for p in defn.params(a, [x], ctx)]
    return out


def _rnn_wrapper_reference(attrs, inputs, params, masks=None):
    from .base import TensorType as _T

    x, *init = inputs
    chain = _rnn_chain(attrs, _T((None, *x.shape[1:]), "float32", bool(masks and masks[0] is not None)), None)
    states = []
    for (defn, a, _, types), own in zip(chain, cell_states(attrs, init)):
        n = len(defn.params(a, [_T((None, *x.shape[1:]))], None))
        outs = defn.reference(a, [x, *own], params[:n], masks)
        params = params[n:]
        x = outs[0]
        states += list(outs[1:])
    return [x, *states]


RNN = LayerDef(
    name="RNN",
    attrs=(
        Attr("cell", "cell", doc="The cell run at every step: `{type: LSTMCell, units: 32}` (SimpleRNNCell, "
             "LSTMCell or GRUCell), or a stack of them: a list, or `{type: StackedRNNCells, cells: [...]}`."),
        *_RNN_FLAGS,
        _ZERO_OUTPUT_FOR_MASK,
        *COMMON_ATTRS,
    ),  # fmt: skip
    infer=_rnn_wrapper_infer,
    params=_rnn_wrapper_params,
    reference=_rnn_wrapper_reference,
    positional=("cell",),
    uses_mask=True,
    arity=(1, None),  # the sequence, then optionally every cell's initial states
    extra={"lower_as": rnn_as_layer, "lower_chain": rnn_as_layers, "initial_state": True},
    doc="Keras's base recurrent layer over a built-in cell: RNN over an LSTMCell computes what an "
    "LSTM with the same arguments computes, and runs its kernels; the weights are named after the "
    "cell (`lstm_cell/kernel`, `lstm_cell/recurrent_kernel`, `lstm_cell/bias`), as Keras names them. "
    "Outputs, states and masks as the matching layer's. Over stacked cells (a list, Keras's "
    "StackedRNNCells) each step feeds one cell's output to the next: the output is the last cell's, "
    "the states (return_state) every cell's in order, the weights "
    "`stacked_rnn_cells/lstm_cell/kernel`, `stacked_rnn_cells/lstm_cell_1/kernel`... Initial states "
    "(Keras's initial_state) are inputs after the sequence, each cell's in order (h, then c for an "
    "LSTMCell): Keras's nested `[[h1, c1], [h2]]` flattened.",
)


def _stacked_infer(attrs, inputs, ctx):
    raise ShapeError("StackedRNNCells is a stack of cells, one time step: run it over a sequence with "
                     "{type: RNN, cell: {type: StackedRNNCells, cells: [...]}}")  # fmt: skip


STACKED_RNN_CELLS = LayerDef(
    name="StackedRNNCells",
    attrs=(
        Attr("cells", "layers", doc="The cells, first to last: `[{type: LSTMCell, units: 32}, ...]`."),
        *COMMON_ATTRS,
    ),
    infer=_stacked_infer,
    positional=("cells",),
    doc="Cells run one after the other at every time step (each cell's output is the next one's "
    "input), for `RNN`'s `cell`. Not a layer of its own in a graph.",
)


LAYERS = (SIMPLE_RNN, LSTM, GRU)
