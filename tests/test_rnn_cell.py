"""Keras's base RNN layer over its built-in cells (SimpleRNNCell, LSTMCell, GRUCell): the same
numbers as the matching layer with the same weights, Keras's weight names and shapes, gradients
against finite differences and Keras, a model file against Keras, and the errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.specs.errors import ShapeMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import Case, GradSuite, close, fd_grads, keras_grads, model_matches_keras

# fmt: off
FORWARD = [  # (id, RNN attrs, the matching layer's type)
    ("lstm-cell", {"cell": {"type": "LSTMCell", "units": 4}}, "LSTM"),
    ("gru-cell-sequences-state", {"cell": {"type": "GRUCell", "units": 3, "reset_after": False},
                                  "return_sequences": True, "return_state": True}, "GRU"),
    ("simple-cell-backwards", {"cell": {"type": "SimpleRNNCell", "units": 5, "activation": "relu"},
                               "go_backwards": True, "return_sequences": True}, "SimpleRNN"),
]
# fmt: on
SHAPES = ((6, 3),)


def _as_layer(attrs: dict, layer_type: str) -> dict:
    cell = {k: v for k, v in attrs["cell"].items() if k != "type"}
    return {**cell, **{k: v for k, v in attrs.items() if k != "cell"}}


@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_rnn_over_a_cell_is_the_matching_layer(case):
    _, attrs, layer_type = case
    ins = kh.random_inputs(SHAPES)
    w = kh.nnspec_weights("RNN", attrs, SHAPES)
    got = kh.run_nnspec("RNN", attrs, ins, w)
    want = kh.run_nnspec(layer_type, _as_layer(attrs, layer_type), ins, w)
    assert len(got) == len(want)
    for g, k in zip(got, want):
        np.testing.assert_array_equal(g, k)


@pytest.mark.keras
@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_rnn_over_a_cell_matches_keras(case):
    from keras_ref import keras_layer_facts

    _, attrs, _ = case
    ins = kh.random_inputs(SHAPES)
    w = kh.nnspec_weights("RNN", attrs, SHAPES)
    got = kh.run_nnspec("RNN", attrs, ins, w)
    want = kh.run_keras("RNN", attrs, ins, w)
    for g, k in zip(got, want):
        close(g, k, 1e-4, "output")
    shapes, weights, count = keras_layer_facts("RNN", attrs, list(SHAPES))
    m = kh.build_nnspec("RNN", attrs, SHAPES)
    cell = attrs["cell"]["type"]
    scope = {"LSTMCell": "lstm_cell", "GRUCell": "gru_cell", "SimpleRNNCell": "simple_rnn_cell"}[cell]
    names = [p for p in m._weights().params if p.startswith("layer/")]
    assert names == [f"layer/{scope}/{n}" for n, _, _ in weights]
    assert [w.shape for w in m.get_weights()] == [s for _, s, _ in weights]
    assert m.count_params() == count
    assert [tuple(o.shape) for o in m.outputs] == shapes


@pytest.mark.keras
def test_bidirectional_over_rnn_cells_matches_keras():
    """Keras names the weights forward_rnn/lstm_cell/kernel...; the numbers are
    Bidirectional(LSTM)'s with the same weights."""
    from keras_ref import keras_layer_facts

    attrs = {"layer": {"type": "RNN", "cell": {"type": "LSTMCell", "units": 4}, "return_sequences": True},
             "merge_mode": "sum"}  # fmt: skip
    ins = kh.random_inputs(SHAPES)
    w = kh.nnspec_weights("Bidirectional", attrs, SHAPES)
    got = kh.run_nnspec("Bidirectional", attrs, ins, w)
    close(got[0], kh.run_keras("Bidirectional", attrs, ins, w)[0], 1e-4, "output")
    plain = {"layer": {"type": "LSTM", "units": 4, "return_sequences": True}, "merge_mode": "sum"}
    np.testing.assert_array_equal(got[0], kh.run_nnspec("Bidirectional", plain, ins, w)[0])
    _, weights, count = keras_layer_facts("Bidirectional", attrs, list(SHAPES))
    m = kh.build_nnspec("Bidirectional", attrs, SHAPES)
    names = [p.split("/", 1)[1] for p in m._weights().params]
    assert names == [f"{d}_rnn/lstm_cell/{n}" for d in ("forward", "backward") for n in ("kernel", "recurrent_kernel", "bias")]
    assert [x.shape for x in m.get_weights()] == [s for _, s, _ in weights] and m.count_params() == count


# ----------------------------------------------------------------------------- stacked cells

# fmt: off
STACKED = [  # (id, RNN attrs); Keras wraps a list of cells in StackedRNNCells
    ("lstm-gru-sequences-states", {"cell": [{"type": "LSTMCell", "units": 4}, {"type": "GRUCell", "units": 2}],
                                   "return_sequences": True, "return_state": True}),
    ("three-cells-backwards", {"cell": [{"type": "SimpleRNNCell", "units": 3}, {"type": "LSTMCell", "units": 4},
                                        {"type": "LSTMCell", "units": 2}], "go_backwards": True}),
    ("explicit-stacked-cells", {"cell": {"type": "StackedRNNCells", "cells": [
        {"type": "GRUCell", "units": 3, "reset_after": False}, {"type": "GRUCell", "units": 5}]},
        "return_state": True}),
]
# fmt: on


@pytest.mark.keras
@pytest.mark.parametrize("case", STACKED, ids=lambda c: c[0])
def test_rnn_over_stacked_cells_matches_keras(case):
    """Outputs (the last cell's output, then every cell's states), weight names and shapes in
    Keras's order, and the parameter count, with the same weights; and the same numbers as
    the stacked layers (each but the last returning sequences) nnspec runs them as."""
    from keras_ref import keras_layer_facts

    _, attrs = case
    ins = kh.random_inputs(SHAPES)
    w = kh.nnspec_weights("RNN", attrs, SHAPES)
    got = kh.run_nnspec("RNN", attrs, ins, w)
    want = kh.run_keras("RNN", attrs, ins, w)
    assert len(got) == len(want)
    for g, k in zip(got, want):
        close(g, k, 1e-4, "output")
    ref = kh.run_reference("RNN", attrs, ins, w)
    for g, r in zip(got, ref):
        close(g, r, 1e-5, "reference")
    shapes, weights, count = keras_layer_facts("RNN", attrs, list(SHAPES))
    m = kh.build_nnspec("RNN", attrs, SHAPES)
    assert [w.shape for w in m.get_weights()] == [s for _, s, _ in weights]
    assert m.count_params() == count
    assert [tuple(o.shape) for o in m.outputs] == shapes


def test_stacked_cells_weights_are_named_as_keras_names_them():
    attrs = STACKED[1][1]
    m = kh.build_nnspec("RNN", attrs, SHAPES)
    names = [p for p in m._weights().params]
    assert names[::3] == ["layer/stacked_rnn_cells/simple_rnn_cell/kernel", "layer/stacked_rnn_cells/lstm_cell/kernel",
                          "layer/stacked_rnn_cells/lstm_cell_1/kernel"]  # fmt: skip


STACKED_MODEL = """
format: nnspec/1
name: stacked_cells
inputs:
  tokens: {shape: [7], dtype: int32}
layers:
  embed: {type: Embedding, input_dim: 30, output_dim: 6, mask_zero: true}
  encode: {type: RNN, cell: [{type: LSTMCell, units: 5}, {type: GRUCell, units: 4}], return_sequences: true}
  pool: {type: GlobalAveragePooling1D}
  probs: {type: Dense, units: 3, activation: softmax}
edges:
  - tokens -> embed -> encode -> pool -> probs
outputs: [probs]
"""


def test_builder_takes_a_list_of_cells_and_round_trips():
    from nnspec import Input, Model, layers

    x = Input((6, 3))
    rnn = layers.RNN([layers.LSTMCell(4), layers.SimpleRNNCell(2)], return_state=True)
    m = Model(x, rnn(x))
    assert [tuple(o.shape) for o in m.outputs] == [(None, 2), (None, 4), (None, 4), (None, 2)]
    again = Model.from_config(m.get_config())
    assert again.get_config() == m.get_config()
    again = nnspec.model_from_json(m.to_json())
    assert [w.shape for w in again.get_weights()] == [(3, 16), (4, 16), (16,), (4, 2), (2, 2), (2,)]


# fmt: off
CASES = [
    Case("rnn-lstm-cell-masked-sequences", "RNN", {"cell": {"type": "LSTMCell", "units": 3},
                                                   "return_sequences": True}, ((5,),), masked=(1,)),
    Case("rnn-gru-cell-backwards", "RNN", {"cell": {"type": "GRUCell", "units": 3, "reset_after": False},
                                           "go_backwards": True}, ((4, 3),)),
    Case("rnn-simple-cell", "RNN", {"cell": {"type": "SimpleRNNCell", "units": 4}}, ((4, 3),)),
    Case("rnn-stacked-cells-masked", "RNN", {"cell": [{"type": "GRUCell", "units": 3}, {"type": "LSTMCell", "units": 2}],
                                             "return_sequences": True}, ((5,),), masked=(1,)),
    Case("rnn-stacked-cells-backwards", "RNN", {"cell": [{"type": "SimpleRNNCell", "units": 3},
                                                                {"type": "GRUCell", "units": 2}],
                                                       "go_backwards": True}, ((4, 3),)),
    Case("bidirectional-rnn-gru-cell", "Bidirectional",
         {"layer": {"type": "RNN", "cell": {"type": "GRUCell", "units": 3}, "return_sequences": True}},
         ((5,),), masked=(1,)),
]
# fmt: on
SUITE = GradSuite(CASES)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_finite_differences(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    dx, dw = fd_grads(case, r)
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if ref is not None:
            close(got, ref, 1e-3, f"input {i}")
    for i, (got, ref) in enumerate(zip(r.dw, dw)):
        close(got, ref, 1e-3, f"weight {i}")


@pytest.mark.keras
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_keras_autograd(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    y, dx, dw, _ = keras_grads(case, r)
    close(r.y, y, 1e-4, "training forward")
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if got is not None:
            close(got, ref, 1e-4, f"input {i}")
    for i, (got, ref) in enumerate(zip(r.dw, dw)):
        close(got, ref, 1e-4, f"weight {i}")


MODEL = """
format: nnspec/1
name: rnn_cells
inputs:
  tokens: {shape: [7], dtype: int32}
layers:
  embed: {type: Embedding, input_dim: 30, output_dim: 6, mask_zero: true}
  encode: {type: RNN, cell: {type: LSTMCell, units: 5}, return_sequences: true}
  summarize: {type: RNN, cell: {type: GRUCell, units: 4}}
  probs: {type: Dense, units: 3, activation: softmax}
edges:
  - tokens -> embed -> encode -> summarize -> probs
outputs: [probs]
"""


@pytest.mark.keras
@pytest.mark.parametrize("spec", ["MODEL", "STACKED_MODEL"])
def test_model_with_cells_matches_keras(spec):
    """Over masked tokens: RNN over one cell each, and an RNN over a stack of two cells."""
    from keras_from_spec import keras_summary_facts

    rng = np.random.default_rng(0)
    x = rng.integers(1, 30, size=(5, 7)).astype(np.int32)
    x[0, 4:] = 0
    x[1, :3] = 0
    y = np.eye(3, dtype=np.float32)[np.arange(5) % 3]
    m, km, moved = model_matches_keras(globals()[spec], x, y, seed=2)
    assert moved == 9  # embedding 1, LSTM (cell) 3, GRU (cell) 3, Dense 2
    facts = keras_summary_facts(km)
    assert [r["type"] for r in m.summary_dict()["layers"][1:]] == [t for _, t, _, _ in facts["layers"][1:]]


def test_builder_and_config_round_trip():
    from nnspec import Input, Model, layers

    x = Input((6, 3))
    rnn = layers.RNN(layers.LSTMCell(4), return_sequences=True)
    m = Model(x, rnn(x))
    assert tuple(m.outputs[0].shape) == (None, 6, 4)
    again = Model.from_config(m.get_config())
    assert again.get_config() == m.get_config()
    assert [w.shape for w in again.get_weights()] == [(3, 16), (4, 16), (16,)]


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"type": "LSTMCell", "units": 3}, "is a cell"),
        ({"type": "RNN", "cell": {"type": "Dense", "units": 3}}, "must be SimpleRNNCell, LSTMCell, GRUCell"),
        ({"type": "RNN", "cell": [{"type": "LSTMCell", "units": 2}, {"type": "Dense", "units": 3}]}, "got 'Dense'"),
        ({"type": "StackedRNNCells", "cells": [{"type": "LSTMCell", "units": 2}]}, "is a stack of cells"),
        ({"type": "Bidirectional", "layer": {"type": "RNN", "cell": [{"type": "LSTMCell", "units": 2},
                                                                    {"type": "LSTMCell", "units": 2}]}},
         "cannot be wrapped in Bidirectional"),
    ],
)
def test_cells_outside_rnn_and_other_cells_are_errors(layer, message):
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": [5, 3]}}, "layers": {"r": layer},
            "edges": ["x -> r"], "outputs": ["r"]}  # fmt: skip
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.Model.from_config(spec)
    assert "E300" in str(err.value) and message in str(err.value)
