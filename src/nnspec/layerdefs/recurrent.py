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
"""

from __future__ import annotations

from dataclasses import replace

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape
from .core import ACTIVATION_ATTR, kernel_and_bias, kernel_bias_attrs

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
        return [kernel, recurrent, *bias]

    return params


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
