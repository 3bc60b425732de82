"""Recurrent layers started from given states (Keras's ``initial_state``): an encoder-decoder
whose decoder starts from the encoder's final states, in a model file (``x, h, c -> decoder``),
from the builder (``layer(x, initial_state=[h, c])``) and read from a Keras model's JSON.

Checked three ways, as every layer: the gradients of the initial states (and so of whatever
made them) against float64 finite differences of the NumPy reference and against Keras's
autograd, layer by layer; whole models' predictions and one SGD step against Keras built from
the same file. One Keras 3 corner is kept: a call with ``initial_state`` has two tensor
arguments, and Keras then passes no mask to the layer, so its steps ignore the input's mask
(the sequence output still carries it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import Case, GradSuite, check_fd, check_keras, close, model_matches_keras, reference

# fmt: off
CASES = [
    Case("lstm-init-seq", "LSTM", {"units": 4, "return_sequences": True}, ((5, 3), (4,), (4,))),
    Case("lstm-init-bw", "LSTM", {"units": 3, "go_backwards": True}, ((4, 2), (3,), (3,))),
    Case("gru-init-last", "GRU", {"units": 4}, ((5, 3), (4,))),
    Case("gru-v1-init-seq", "GRU", {"units": 3, "reset_after": False, "return_sequences": True}, ((4, 2), (3,))),
    Case("simple-init-seq", "SimpleRNN", {"units": 4, "return_sequences": True}, ((5, 3), (4,))),
    # Bidirectional: the forward layer's states, then the backward layer's (Keras halves the list)
    Case("bi-lstm-init-concat-seq", "Bidirectional", {"layer": {"type": "LSTM", "units": 3, "return_sequences": True}},
         ((5, 2), (3,), (3,), (3,), (3,))),
    Case("bi-gru-init-sum-state", "Bidirectional",
         {"layer": {"type": "GRU", "units": 3, "return_state": True}, "merge_mode": "sum"}, ((4, 3), (3,), (3,))),
    Case("bi-simple-init-mul-seq", "Bidirectional",
         {"layer": {"type": "SimpleRNN", "units": 3, "return_sequences": True}, "merge_mode": "mul"},
         ((4, 2), (3,), (3,))),
    Case("bi-lstm-init-last-state", "Bidirectional", {"layer": {"type": "LSTM", "units": 2, "return_state": True}},
         ((4, 3), (2,), (2,), (2,), (2,))),
    Case("bi-gru-v1-init-ave-backward-layer", "Bidirectional",
         {"layer": {"type": "GRU", "units": 3, "reset_after": False, "return_sequences": True}, "merge_mode": "ave",
          "backward_layer": {"type": "GRU", "units": 3, "reset_after": False, "return_sequences": True,
                             "go_backwards": True, "activation": "relu"}},
         ((4, 2), (3,), (3,))),
    # ConvLSTM: states shaped as its returned ones (channels_first: filters first)
    Case("convlstm1d-init-seq", "ConvLSTM1D", {"filters": 2, "kernel_size": 3, "padding": "same",
                                               "return_sequences": True}, ((3, 5, 2), (5, 2), (5, 2))),
    Case("convlstm2d-cf-init-bw", "ConvLSTM2D", {"filters": 2, "kernel_size": 2, "data_format": "channels_first",
                                                 "go_backwards": True}, ((3, 2, 4, 4), (2, 3, 3), (2, 3, 3))),
    Case("bi-convlstm1d-init-concat-seq", "Bidirectional",
         {"layer": {"type": "ConvLSTM1D", "filters": 2, "kernel_size": 2, "return_sequences": True}},
         ((3, 4, 2), (3, 2), (3, 2), (3, 2), (3, 2))),
    Case("bi-convlstm2d-cf-init-sum-last", "Bidirectional",
         {"layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 2, "data_format": "channels_first",
                    "padding": "same"}, "merge_mode": "sum"},
         ((3, 1, 3, 3), (2, 3, 3), (2, 3, 3), (2, 3, 3), (2, 3, 3))),
    # RNN over a cell takes its cell's states; so does a Bidirectional around one
    Case("rnn-lstm-cell-init-seq", "RNN", {"cell": {"type": "LSTMCell", "units": 3}, "return_sequences": True},
         ((5, 2), (3,), (3,))),
    Case("bi-rnn-gru-cell-init-last", "Bidirectional", {"layer": {"type": "RNN", "cell": {"type": "GRUCell", "units": 3}}},
         ((4, 3), (3,), (3,))),
    # stacked cells: each cell's states in order (Keras's nested [[h1, c1], [h2]])
    Case("rnn-stacked-init-seq", "RNN", {"cell": [{"type": "LSTMCell", "units": 3}, {"type": "GRUCell", "units": 2}],
                                         "return_sequences": True}, ((5, 2), (3,), (3,), (2,))),
    Case("rnn-stacked-init-bw-state", "RNN",
         {"cell": {"type": "StackedRNNCells", "cells": [{"type": "SimpleRNNCell", "units": 2},
                                                         {"type": "LSTMCell", "units": 3}]},
          "go_backwards": True, "return_state": True}, ((4, 3), (2,), (3,), (3,))),
]
# fmt: on
SUITE = GradSuite(CASES)
IDS = [c.id for c in CASES]


@pytest.mark.parametrize("case_id", IDS)
def test_initial_state_gradients_against_finite_differences(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    ref_y = reference(case, [x.astype(np.float64) for x in r.inputs], [w.astype(np.float64) for w in r.weights],
                      r.masks)  # fmt: skip
    close(r.y, ref_y, 1e-5, "training forward")
    assert len(r.dx) == len(case.shapes) and all(g is not None and np.abs(g).max() > 0 for g in r.dx[1:])
    check_fd(case, r)


@pytest.mark.keras
@pytest.mark.parametrize("case_id", IDS)
def test_initial_state_gradients_against_keras_autograd(case_id):
    check_keras(SUITE.by_id[case_id], SUITE.result(case_id))


SEQ2SEQ = """
format: nnspec/1
name: seq2seq
inputs:
  source: {{shape: [6, 3]}}
  target: {{shape: [5, 4]}}
layers:
  encoder: {{type: {cell}, units: 8, return_state: true}}
  decoder: {{type: {cell}, units: 8, return_sequences: true}}
  probs: {{type: Dense, units: 4, activation: softmax}}
edges:
  - source -> encoder
  - target, {states} -> decoder -> probs
outputs: [probs]
"""


@pytest.mark.keras
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_encoder_decoder_matches_keras(cell):
    """Keras's sequence-to-sequence example: the decoder starts from the encoder's states, so
    the encoder's weights learn only through the initial states' gradients."""
    states = "encoder:1, encoder:2" if cell == "LSTM" else "encoder:1"
    spec = SEQ2SEQ.format(cell=cell, states=states)
    rng = np.random.default_rng(3)
    x = [rng.normal(size=(6, 6, 3)).astype(np.float32), rng.normal(size=(6, 5, 4)).astype(np.float32)]
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (6, 5))]
    _, _, moved = model_matches_keras(spec, x, y, seed=5)
    assert moved == 8  # every weight: the encoder's three through the initial states alone


def test_encoder_decoder_from_the_builder_equals_the_file():
    states_spec = SEQ2SEQ.format(cell="LSTM", states="encoder:1, encoder:2")
    src = nnspec.Input(shape=(6, 3), name="source")
    tgt = nnspec.Input(shape=(5, 4), name="target")
    _, h, c = nnspec.layers.LSTM(8, return_state=True, name="encoder")(src)
    seq = nnspec.layers.LSTM(8, return_sequences=True, name="decoder")(tgt, initial_state=[h, c])
    out = nnspec.layers.Dense(4, activation="softmax", name="probs")(seq)
    built = nnspec.Model(inputs=[src, tgt], outputs=out, name="seq2seq")
    loaded = nnspec.load(states_spec, seed=0)
    assert built.count_params() == loaded.count_params()
    built.set_weights(loaded.get_weights())
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(2, 6, 3)).astype(np.float32), rng.normal(size=(2, 5, 4)).astype(np.float32)]
    np.testing.assert_array_equal(built.predict(x), loaded.predict(x))
    with pytest.raises(TypeError, match="initial_state"):
        nnspec.layers.Dense(3)(src, initial_state=[h])


@pytest.mark.keras
def test_keras_json_with_initial_state_and_a_mask_reads_as_keras_computes():
    """Read from a Keras model's JSON (``initial_state`` in the call's kwargs). The decoder reads
    a masked embedding: Keras passes no mask to a call with two tensor arguments, so the steps
    run over the padding, and the mask still reaches the loss."""
    import keras
    from keras import layers as L

    ids = keras.Input((6,), dtype="int32")
    z = keras.Input((3,))
    h0 = L.Dense(4, activation="tanh")(z)
    c0 = L.Dense(4)(z)
    seq = L.LSTM(4, return_sequences=True)(L.Embedding(10, 3, mask_zero=True)(ids), initial_state=[h0, c0])
    km = keras.Model([ids, z], L.Dense(2)(seq))
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    x = [np.array([[1, 2, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8], [0] * 6, [2, 2, 2, 0, 0, 0]], np.int32),
         np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)]  # fmt: skip
    want = km.predict(x, verbose=0)
    assert not np.allclose(want[0, 2], want[0, 3])  # the steps ran over the padding
    close(m.predict(x), want, 1e-4, "predictions")
    y = np.random.default_rng(2).normal(size=want.shape).astype(np.float32)
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="mse")
    theirs, ours = float(km.train_on_batch(x, y)), float(m.train_on_batch(x, y))
    assert abs(ours - theirs) <= 1e-4 * abs(theirs)
    for a, b in zip(m.get_weights(), km.get_weights()):
        close(a, b, 1e-4, "weights after the step")


@pytest.mark.keras
def test_bidirectional_encoder_states_start_a_decoder_as_in_keras():
    """The translation-model pattern: a Bidirectional LSTM encoder over masked tokens returns
    both directions' states, concatenated into the decoder's initial h and c."""
    import keras
    from keras import layers as L

    src, tgt = keras.Input((7,), dtype="int32"), keras.Input((5,), dtype="int32")
    _, fh, fc, bh, bc = L.Bidirectional(L.LSTM(4, return_state=True))(L.Embedding(20, 6, mask_zero=True)(src))
    h, c = L.Concatenate()([fh, bh]), L.Concatenate()([fc, bc])
    seq = L.LSTM(8, return_sequences=True)(L.Embedding(20, 6)(tgt), initial_state=[h, c])
    km = keras.Model([src, tgt], L.TimeDistributed(L.Dense(20, activation="softmax"))(seq))
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params()
    m.set_weights(km.get_weights())
    rng = np.random.default_rng(4)
    ids = np.array(
        [[1, 2, 3, 0, 0, 0, 0], [4, 5, 6, 7, 8, 9, 1], [3, 1, 0, 0, 0, 0, 0], [5, 6, 2, 2, 0, 0, 0]]
    )
    x = [ids.astype(np.int32), rng.integers(1, 20, size=(4, 5)).astype(np.int32)]
    close(m.predict(x), km.predict(x, verbose=0), 1e-4, "predictions")
    y = np.eye(20, dtype=np.float32)[rng.integers(0, 20, (4, 5))]
    km.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.5), loss="categorical_crossentropy")
    before = m.get_weights()
    theirs, ours = float(km.train_on_batch(x, y)), float(m.train_on_batch(x, y))
    assert abs(ours - theirs) <= 1e-4 * abs(theirs)
    for a, b, a0 in zip(m.get_weights(), km.get_weights(), before):
        close(a, b, 1e-4, "weights after the step")
        assert not np.array_equal(a, a0)  # the encoder's too, through the decoder's initial states


BI_SPEC = """
format: nnspec/1
name: bi_init
inputs:
  ids: {shape: [6], dtype: int32}
  context: {shape: [5]}
layers:
  embed: {type: Embedding, input_dim: 12, output_dim: 4, mask_zero: true}
  h: {type: Dense, units: 3, activation: tanh}
  c: {type: Dense, units: 3}
  bi: {type: Bidirectional, layer: {type: LSTM, units: 3, return_sequences: true}}
  probs: {type: Dense, units: 4, activation: softmax}
edges:
  - ids -> embed
  - context -> h
  - context -> c
  - embed, h, c, c, h -> bi -> probs
outputs: [probs]
"""


@pytest.mark.keras
def test_bidirectional_with_initial_states_matches_keras():
    """A Bidirectional LSTM started from states made by Dense layers (the forward layer's h, c,
    then the backward layer's), over masked tokens: predictions and one SGD step against Keras,
    the Dense layers learning through both directions' initial states."""
    rng = np.random.default_rng(6)
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9], [3, 1, 0, 0, 0, 0], [0] * 6, [5, 6, 2, 2, 11, 0]])
    x = [ids.astype(np.int32), rng.normal(size=(5, 5)).astype(np.float32)]
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (5, 6))]
    _, _, moved = model_matches_keras(BI_SPEC, x, y, seed=2)
    assert moved == 13  # every array: embed 1, h 2, c 2, bi 6, probs 2


CONV_SEQ2SEQ = """
format: nnspec/1
name: frames
inputs:
  past: {{shape: {past}}}
  future: {{shape: {future}}}
layers:
  encoder: {{type: ConvLSTM2D, filters: 3, kernel_size: 3, padding: same, return_state: true, data_format: {fmt}}}
  decoder: {{type: ConvLSTM2D, filters: 3, kernel_size: 3, padding: same, return_sequences: true,
    data_format: {fmt}}}
  out: {{type: Dense, units: 2}}
edges:
  - past -> encoder
  - future, encoder:1, encoder:2 -> decoder -> out
outputs: [out]
"""


@pytest.mark.keras
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv_lstm_encoder_decoder_matches_keras(fmt):
    """Next frames from past frames: a ConvLSTM2D decoder starts from the encoder's h and c
    (images, channels last or first); predictions and one SGD step against Keras."""
    cf = fmt == "channels_first"
    past, future = ([3, 2, 5, 4], [2, 2, 5, 4]) if cf else ([3, 5, 4, 2], [2, 5, 4, 2])
    spec = CONV_SEQ2SEQ.format(past=past, future=future, fmt=fmt)
    rng = np.random.default_rng(9)
    x = [rng.normal(size=(3, *past)).astype(np.float32), rng.normal(size=(3, *future)).astype(np.float32)]
    y_shape = (3, 2, 3, 5, 2) if cf else (3, 2, 5, 4, 2)
    y = rng.normal(size=y_shape).astype(np.float32)
    _, _, moved = model_matches_keras(spec, x, y, seed=1, loss="mse")
    assert moved == 8  # the encoder's three arrays learn through the decoder's initial states


def test_bidirectional_initial_states_from_the_builder_equal_the_file():
    ids = nnspec.Input(shape=(6,), dtype="int32", name="ids")
    ctx = nnspec.Input(shape=(5,), name="context")
    seq = nnspec.layers.Embedding(12, 4, mask_zero=True, name="embed")(ids)
    h = nnspec.layers.Dense(3, activation="tanh", name="h")(ctx)
    c = nnspec.layers.Dense(3, name="c")(ctx)
    bi = nnspec.layers.Bidirectional(nnspec.layers.LSTM(3, return_sequences=True), name="bi")
    out = nnspec.layers.Dense(4, activation="softmax", name="probs")(bi(seq, initial_state=[[h, c], (c, h)]))
    built = nnspec.Model(inputs=[ids, ctx], outputs=out, name="bi_init")
    loaded = nnspec.load(BI_SPEC, seed=0)
    assert built.count_params() == loaded.count_params()
    built.set_weights(loaded.get_weights())
    rng = np.random.default_rng(0)
    x = [rng.integers(0, 12, size=(3, 6)).astype(np.int32), rng.normal(size=(3, 5)).astype(np.float32)]
    np.testing.assert_array_equal(built.predict(x), loaded.predict(x))


@pytest.mark.keras
def test_keras_json_of_a_bidirectional_and_rnns_with_initial_states():
    import keras
    from keras import layers as L

    seq, z = keras.Input((5, 3)), keras.Input((4,))
    states = [L.Dense(2, activation="tanh")(z), L.Dense(2)(z)]
    y = L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode="sum")(seq, initial_state=states)
    y = L.RNN(L.SimpleRNNCell(3), return_sequences=True)(y, initial_state=[L.Dense(3)(z)])
    stacked = [[L.Dense(2)(z), L.Dense(2)(z)], [L.Dense(3)(z)]]  # nested per cell, as Keras takes them
    y = L.RNN([L.LSTMCell(2), L.GRUCell(3)], return_sequences=True)(y, initial_state=stacked)
    km = keras.Model([seq, z], y)
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    rng = np.random.default_rng(8)
    x = [rng.normal(size=(3, 5, 3)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)]
    close(m.predict(x), km.predict(x, verbose=0), 1e-4, "predictions")


@pytest.mark.parametrize(
    "layer, edge, message",
    [
        ("{type: LSTM, units: 8}", "target, encoder:1 -> decoder", "takes the sequence, then 2 initial states"),
        ("{type: LSTM, units: 8}", "target, encoder:1, encoder:2, encoder:1 -> decoder", "takes 1 to 3 input"),
        ("{type: LSTM, units: 8}", "target, short, encoder:2 -> decoder", r"initial state 1 must be \(batch, 8\)"),
        ("{type: Bidirectional, layer: {type: LSTM, units: 8}}", "target, encoder:1, encoder:2 -> decoder",
         r"Bidirectional takes the sequence, then 4 initial states \(the forward layer's h, c, then"),
        ("{type: Bidirectional, layer: {type: GRU, units: 8}}", "target, encoder:1, short -> decoder",
         r"GRU's initial state 1 must be \(batch, 8\)"),
        ("{type: ConvLSTM1D, filters: 8, kernel_size: 3}", "frames, encoder:1, encoder:2 -> decoder",
         r"ConvLSTM1D's initial state 1 must be \(None, 4, 8\); got \(None, 8\)"),
        ("{type: RNN, cell: [{type: LSTMCell, units: 8}, {type: GRUCell, units: 8}]}", "target, encoder:1 -> decoder",
         r"RNN takes the sequence, then 3 initial states, each cell's in order \(LSTMCell 2, GRUCell 1\); got 1"),
        ("{type: RNN, cell: [{type: GRUCell, units: 8}, {type: GRUCell, units: 4}]}",
         "target, encoder:1, encoder:1 -> decoder", r"RNN\(GRUCell\): GRU's initial state 1 must be \(batch, 4\)"),
        ("{type: Bidirectional, layer: {type: LSTM, units: 8}, backward_layer: {type: GRU, units: 8, go_backwards: true}}",
         "target, encoder:1, encoder:2, encoder:1 -> decoder", "LSTM and GRU keep different states"),
    ],
)  # fmt: skip
def test_bad_initial_states_are_refused_when_loading(layer, edge, message):
    spec = f"""
format: nnspec/1
name: bad
inputs:
  source: {{shape: [6, 3]}}
  target: {{shape: [5, 4]}}
  short: {{shape: [5]}}
  frames: {{shape: [5, 6, 4]}}
layers:
  encoder: {{type: LSTM, units: 8, return_state: true}}
  decoder: {layer}
edges:
  - source -> encoder
  - {edge}
outputs: [decoder]
"""
    with pytest.raises(SpecError, match=message):
        nnspec.load(spec)
