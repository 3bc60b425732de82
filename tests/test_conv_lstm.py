"""ConvLSTM1D, ConvLSTM2D and ConvLSTM3D, checked three ways.

- The compiled kernels (a one-layer model file run by the generated plan function) against the
  layer's float64 NumPy reference, and both against Keras on PyTorch with the same weights:
  outputs, states, Keras's weight names and shapes, parameter counts and output shapes.
- Gradients (grad_harness: one SGD(0) training step) against float64 finite differences of the
  reference and against torch autograd through the Keras layer with the same weights.
- Whole model files against Keras: parameter counts, summary rows, predictions and one SGD step
  (masked sequences through Embedding(mask_zero) and TimeDistributed(Reshape), returned states,
  TimeDistributed(ConvLSTM1D)).
- Dropout, which Keras cannot reproduce draw for draw: the training kernels called directly,
  their outputs and gradients against a torch float64 transcription of Keras's ConvLSTMCell with
  the masks the kernel drew (and saved), and the masks' count, shape and statistics against
  Keras's own.
- The errors: shapes and attributes Keras refuses, and what nnspec refuses, with their codes.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, activations, conv_recurrent
from nnspec.layerdefs.base import bind_numpy, normalize_attrs
from nnspec.specs.errors import SchemaError, ShapeMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import (
    Case,
    GradSuite,
    check_fd,
    check_keras,
    close,
    model_matches_keras,
    one_step_matches_keras,
)

bind_numpy([activations, conv_recurrent])

# fmt: off
FORWARD = [  # (id, type, attrs, input shape without the batch)
    ("2d-same-seq", "ConvLSTM2D", {"filters": 3, "kernel_size": 3, "padding": "same", "return_sequences": True},
     (4, 5, 6, 2)),
    ("2d-valid-strides-state", "ConvLSTM2D", {"filters": 2, "kernel_size": [3, 2], "strides": [2, 1],
                                              "return_state": True}, (3, 7, 6, 2)),
    ("2d-dilated-backwards", "ConvLSTM2D", {"filters": 2, "kernel_size": 2, "dilation_rate": 2, "padding": "same",
                                            "go_backwards": True, "return_sequences": True, "activation": "relu",
                                            "recurrent_activation": "hard_sigmoid"}, (3, 6, 5, 3)),
    ("2d-even-kernel-same", "ConvLSTM2D", {"filters": 2, "kernel_size": [2, 4], "padding": "same",
                                           "strides": 2}, (2, 5, 7, 1)),
    ("2d-channels-first", "ConvLSTM2D", {"filters": 3, "kernel_size": 3, "padding": "same",
                                         "data_format": "channels_first", "return_sequences": True,
                                         "return_state": True}, (3, 2, 5, 4)),
    ("2d-no-bias-unroll-gelu", "ConvLSTM2D", {"filters": 2, "kernel_size": 3, "use_bias": False, "unroll": True,
                                              "activation": "gelu", "recurrent_activation": "silu"}, (3, 5, 5, 2)),
    ("1d-same-seq", "ConvLSTM1D", {"filters": 4, "kernel_size": 3, "padding": "same", "return_sequences": True},
     (5, 8, 3)),
    ("1d-strided-backwards-state", "ConvLSTM1D", {"filters": 2, "kernel_size": 2, "strides": 2, "go_backwards": True,
                                                  "return_state": True}, (4, 9, 2)),
    ("3d-same-seq", "ConvLSTM3D", {"filters": 2, "kernel_size": 2, "padding": "same", "return_sequences": True},
     (3, 4, 3, 4, 2)),
    ("3d-channels-first-valid", "ConvLSTM3D", {"filters": 2, "kernel_size": [2, 3, 2], "data_format": "channels_first",
                                               "return_state": True}, (2, 2, 3, 4, 4)),
]
# fmt: on


@cache
def _run(case_id):
    """(inputs, weights, nnspec's outputs) of a FORWARD case, computed once for both checks."""
    _, type_name, attrs, shape = next(c for c in FORWARD if c[0] == case_id)
    ins = kh.random_inputs((shape,))
    w = kh.nnspec_weights(type_name, attrs, (shape,))
    return ins, w, kh.run_nnspec(type_name, attrs, ins, w)


@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_kernels_match_the_reference(case):
    case_id, type_name, attrs, _ = case
    ins, w, got = _run(case_id)
    want = kh.run_reference(type_name, attrs, ins, w)
    assert len(got) == len(want) == (3 if attrs.get("return_state") else 1)
    for g, r in zip(got, want):
        close(g, r, 2e-6, "output")


@pytest.mark.keras
@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_forward_matches_keras(case):
    from keras_ref import keras_layer_facts

    case_id, type_name, attrs, shape = case
    ins, w, got = _run(case_id)
    want = kh.run_keras(type_name, attrs, ins, w)
    assert len(got) == len(want)
    for g, k in zip(got, want):
        close(g, k, 1e-5, "output")
    shapes, weights, count = keras_layer_facts(type_name, attrs, [shape])
    m = kh.build_nnspec(type_name, attrs, (shape,))
    assert [p.split("/", 1)[1] for p in m._weights().params] == [n for n, _, _ in weights]
    assert [x.shape for x in m.get_weights()] == [s for _, s, _ in weights]
    assert m.count_params() == count
    assert [tuple(o.shape) for o in m.outputs] == shapes


# fmt: off
BIDIRECTIONAL = [  # (id, Bidirectional attrs, input shape without the batch)
    ("concat-seq", {"layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3, "padding": "same",
                              "return_sequences": True}}, (3, 4, 5, 2)),
    # Keras merges along the last axis whatever the data format: for channels_first, a spatial axis
    ("channels-first-concat-state", {"layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3,
                                               "padding": "same", "data_format": "channels_first",
                                               "return_state": True}}, (3, 2, 4, 5)),
    ("mul-seq-1d", {"layer": {"type": "ConvLSTM1D", "filters": 3, "kernel_size": 2, "return_sequences": True},
                    "merge_mode": "mul"}, (4, 6, 2)),
    ("none-seq-state-3d", {"layer": {"type": "ConvLSTM3D", "filters": 2, "kernel_size": 2, "padding": "same",
                                     "return_sequences": True, "return_state": True}, "merge_mode": None},
     (2, 3, 2, 3, 1)),
    ("explicit-backward-ave", {"layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3, "padding": "same"},
                               "backward_layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 1,
                                                  "go_backwards": True, "activation": "relu"},
                               "merge_mode": "ave"}, (3, 4, 4, 2)),
]
# fmt: on


@pytest.mark.keras
@pytest.mark.parametrize("case", BIDIRECTIONAL, ids=lambda c: c[0])
def test_bidirectional_matches_the_reference_and_keras(case):
    """Keras runs Bidirectional over a ConvLSTM: the same outputs (the backward sequence reversed,
    then merged), states (forward h, c, then backward h, c), weights named forward_conv_lstm2d/...
    (Keras's path without its cell scope) and parameter count."""
    from keras_ref import keras_layer_facts

    _, attrs, shape = case
    ins = kh.random_inputs((shape,))
    w = kh.nnspec_weights("Bidirectional", attrs, (shape,))
    got = kh.run_nnspec("Bidirectional", attrs, ins, w)
    want = kh.run_keras("Bidirectional", attrs, ins, w)
    ref = kh.run_reference("Bidirectional", attrs, ins, w)
    assert len(got) == len(want) == len(ref)
    for g, k, r in zip(got, want, ref):
        close(g, r, 2e-6, "output against the reference")
        close(g, k, 1e-5, "output against Keras")
    shapes, weights, count = keras_layer_facts("Bidirectional", attrs, [shape])
    m = kh.build_nnspec("Bidirectional", attrs, (shape,))
    inner = attrs["layer"]["type"].replace("ConvLSTM", "conv_lstm").lower()
    assert [p.split("/", 1)[1] for p in m._weights().params] == [
        f"{d}_{inner}/{n}" for d in ("forward", "backward") for n in ("kernel", "recurrent_kernel", "bias")
    ]
    assert [n for n, _, _ in weights] == ["kernel", "recurrent_kernel", "bias"] * 2
    assert [x.shape for x in m.get_weights()] == [s for _, s, _ in weights]
    assert m.count_params() == count
    assert [tuple(o.shape) for o in m.outputs] == shapes


def test_masked_steps_keep_the_states():
    """A masked step repeats the previous output (zeros before the first valid step, or zeros
    with zero_output_for_mask) and keeps both states: the reference says so by construction, the
    kernel must agree with it (called as the plan calls it, with the input's (rows, T) mask)."""
    for zofm in (False, True):
        a = normalize_attrs(REGISTRY["ConvLSTM2D"], {"filters": 2, "kernel_size": 3, "padding": "same",
                                                     "return_sequences": True, "zero_output_for_mask": zofm})  # fmt: skip
        rng = np.random.default_rng(3)
        x = rng.normal(0, 1, (3, 4, 4, 5, 2)).astype(np.float32)
        params = [rng.normal(0, 0.4, s).astype(np.float32) for s in ((3, 3, 2, 8), (3, 3, 2, 8), (8,))]
        mask = np.array([[1, 1, 0, 0], [0, 1, 0, 1], [1, 1, 1, 1]], np.float32)
        y, states, _ = kernel_train(a, x, params, mask)
        ref = conv_recurrent._reference(
            a, [x.astype(np.float64)], [p.astype(np.float64) for p in params], [mask]
        )
        close(y, ref[0], 2e-6, "masked output")
        assert np.all(y[1, 0] == 0.0)  # before the first valid step
        if zofm:
            assert np.all(y[0, 2:] == 0.0)
        else:
            np.testing.assert_array_equal(y[0, 3], y[0, 1])
        # states are kept on masked steps: the last valid step's h is the last output of row 0
        np.testing.assert_allclose(states[0][0], ref[0][0, 1], rtol=0, atol=2e-6)


def test_time_axis_may_vary():
    """A null time axis (Keras's (None, None, 5, 5, 1)): plans specialized per length, outputs as
    the reference computes them, and a training step runs."""
    attrs = {"filters": 2, "kernel_size": 3, "padding": "same", "return_sequences": True}
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": [None, 5, 5, 1]}},
            "layers": {"r": {"type": "ConvLSTM2D", **attrs}}, "edges": ["x -> r"], "outputs": ["r"]}  # fmt: skip
    m = nnspec.Model.from_config(spec)
    assert tuple(m.outputs[0].shape) == (None, None, 5, 5, 2)
    for steps in (3, 6):
        x = np.random.default_rng(steps).normal(size=(2, steps, 5, 5, 1)).astype(np.float32)
        close(
            m.predict(x), kh.run_reference("ConvLSTM2D", attrs, [x], m.get_weights())[0], 2e-6, f"T={steps}"
        )
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="mse")
    before = m.get_weights()
    assert np.isfinite(m.train_on_batch(x, np.zeros((2, 6, 5, 5, 2), np.float32)))
    assert all(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))


# ----------------------------------------------------------------------------- gradients

# fmt: off
CASES = [
    Case("convlstm2d-same-seq", "ConvLSTM2D", {"filters": 2, "kernel_size": 3, "padding": "same",
                                               "return_sequences": True}, ((3, 4, 4, 2),), batch=2),
    Case("convlstm2d-strided-last", "ConvLSTM2D", {"filters": 2, "kernel_size": [3, 2], "strides": 2},
         ((3, 5, 4, 2),), batch=2),
    Case("convlstm2d-dilated-backwards-nobias", "ConvLSTM2D", {"filters": 2, "kernel_size": 2, "dilation_rate": 2,
                                                               "padding": "same", "go_backwards": True,
                                                               "use_bias": False, "return_sequences": True},
         ((3, 5, 4, 1),), batch=2),
    Case("convlstm2d-channels-first", "ConvLSTM2D", {"filters": 2, "kernel_size": 3, "padding": "same",
                                                     "data_format": "channels_first", "return_sequences": True},
         ((3, 2, 4, 3),), batch=2),
    Case("convlstm2d-gelu-silu", "ConvLSTM2D", {"filters": 2, "kernel_size": 2, "activation": "gelu",
                                                "recurrent_activation": "silu"}, ((3, 4, 4, 2),), batch=2),
    Case("convlstm1d-same-seq", "ConvLSTM1D", {"filters": 3, "kernel_size": 3, "padding": "same",
                                               "return_sequences": True}, ((4, 6, 2),), batch=3),
    Case("convlstm1d-strided-backwards", "ConvLSTM1D", {"filters": 2, "kernel_size": 2, "strides": 2,
                                                        "go_backwards": True}, ((3, 7, 2),), batch=3),
    Case("convlstm3d-same-seq", "ConvLSTM3D", {"filters": 2, "kernel_size": 2, "padding": "same",
                                               "return_sequences": True}, ((2, 3, 3, 3, 1),), batch=2),
    Case("convlstm3d-channels-first", "ConvLSTM3D", {"filters": 2, "kernel_size": 2,
                                                     "data_format": "channels_first"}, ((2, 2, 3, 3, 3),), batch=2),
    Case("bi-convlstm2d-concat-seq", "Bidirectional", {"layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3,
                                                                 "padding": "same", "return_sequences": True}},
         ((3, 4, 4, 2),), batch=2),
    Case("bi-convlstm2d-channels-first-mul", "Bidirectional",
         {"layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 2, "data_format": "channels_first",
                    "return_sequences": True}, "merge_mode": "mul"}, ((3, 2, 4, 3),), batch=2),
    Case("bi-convlstm1d-ave-last", "Bidirectional", {"layer": {"type": "ConvLSTM1D", "filters": 2, "kernel_size": 2,
                                                               "strides": 2}, "merge_mode": "ave"},
         ((3, 7, 2),), batch=2),
]
# fmt: on
SUITE = GradSuite(CASES)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_finite_differences(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    close(r.y, kh.run_reference(case.type, case.attrs, r.inputs, r.weights)[0], 2e-6, "training forward")
    layer = case.attrs.get("layer", case.attrs)
    per_direction = 3 if layer.get("use_bias", True) else 2
    assert len(r.dw) == per_direction * (2 if case.type == "Bidirectional" else 1)
    assert all(g is not None for g in r.dw)
    check_fd(case, r)


@pytest.mark.keras
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_keras_autograd(case_id):
    check_keras(SUITE.by_id[case_id], SUITE.result(case_id))


# ----------------------------------------------------------------------------- model files

MODEL = """
format: nnspec/1
name: next_frame
inputs:
  frames: {shape: [4, 8, 8, 1]}
layers:
  encode: {type: ConvLSTM2D, filters: 4, kernel_size: 3, padding: same, return_sequences: true}
  norm: {type: BatchNormalization}
  summarize:
    type: ConvLSTM2D
    filters: 3
    kernel_size: 3
    strides: 2
    kernel_regularizer: {type: l2, l2: 0.01}
    recurrent_regularizer: {type: l1, l1: 0.01}
    bias_regularizer: {type: l1_l2, l1: 0.01, l2: 0.01}
    activity_regularizer: {type: l2, l2: 0.001}
    kernel_constraint: {type: max_norm, max_value: 0.5}
    recurrent_constraint: non_neg
    bias_constraint: {type: min_max_norm, min_value: 0.1, max_value: 1.0, axis: 0}
  flat: {type: Flatten}
  probs: {type: Dense, units: 3, activation: softmax}
edges:
  - frames -> encode -> norm -> summarize -> flat -> probs
outputs: [probs]
"""


MASKED_MODEL = """
format: nnspec/1
name: masked_frames
inputs:
  tokens: {shape: [5], dtype: int32}
layers:
  embed: {type: Embedding, input_dim: 10, output_dim: 8, mask_zero: true}
  frames: {type: TimeDistributed, layer: {type: Reshape, target_shape: [2, 4, 1]}}
  encode: {type: ConvLSTM2D, filters: 3, kernel_size: 2, padding: same, return_sequences: true}
  summarize: {type: ConvLSTM2D, filters: 2, kernel_size: 2, go_backwards: true}
  flat: {type: Flatten}
  probs: {type: Dense, units: 3, activation: softmax}
edges:
  - tokens -> embed -> frames -> encode -> summarize -> flat -> probs
outputs: [probs]
"""


STATE_MODEL = """
format: nnspec/1
name: states
inputs:
  x: {shape: [3, 6, 2]}
layers:
  scan: {type: ConvLSTM1D, filters: 2, kernel_size: 3, padding: same, return_sequences: true, return_state: true}
edges:
  - x -> scan
outputs: ["scan:0", "scan:1", "scan:2"]
"""

BIDIRECTIONAL_STATE_MODEL = """
format: nnspec/1
name: bidirectional_states
inputs:
  x: {shape: [3, 6, 2]}
layers:
  scan:
    type: Bidirectional
    layer: {type: ConvLSTM1D, filters: 2, kernel_size: 3, padding: same, return_sequences: true, return_state: true}
    merge_mode: null
edges:
  - x -> scan
outputs: ["scan:0", "scan:1", "scan:2", "scan:3", "scan:4", "scan:5"]
"""


@pytest.mark.keras
@pytest.mark.parametrize(("spec", "n_out", "moved"), [(STATE_MODEL, 3, 3), (BIDIRECTIONAL_STATE_MODEL, 6, 6)],
                         ids=["conv-lstm1d", "bidirectional"])  # fmt: skip
def test_returned_states_train_as_in_keras(spec, n_out, moved):
    """Gradients flow into the layer from its sequences and from every returned state."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, size=(3, 3, 6, 2)).astype(np.float32)
    n_seq = n_out // 3  # the sequence (one per direction), then h and c of each direction
    shapes = [(3, 3, 6, 2)] * n_seq + [(3, 6, 2)] * (2 * n_seq)
    ys = [rng.normal(0, 1, size=s).astype(np.float32) for s in shapes]
    assert one_step_matches_keras(spec, x, ys, seed=5, loss="mse") == moved


TD_MODEL = """
format: nnspec/1
name: td_conv_lstm
inputs:
  clips: {shape: [2, 3, 6, 2]}
layers:
  per_clip: {type: TimeDistributed, layer: {type: ConvLSTM1D, filters: 2, kernel_size: 3}}
  flat: {type: Flatten}
  out: {type: Dense, units: 3, activation: softmax}
edges:
  - clips -> per_clip -> flat -> out
outputs: [out]
"""


def _frames(rng):
    return rng.normal(0, 1, size=(4, 4, 8, 8, 1)).astype(np.float32)


def _padded_tokens(rng):
    """Right, left and middle padding, and a row with none."""
    x = rng.integers(1, 10, size=(4, 5)).astype(np.int32)
    x[0, 3:] = 0
    x[1, :2] = 0
    x[2, 2] = 0
    return x


def _clips(rng):
    return rng.normal(0, 1, size=(4, 2, 3, 6, 2)).astype(np.float32)


def _conv_lstm2d_params(c, f, k=9):
    return 4 * (k * c * f + k * f * f + f)


# (id, model file, inputs, weight arrays one SGD step moves, total parameters, non-trainable)
MODELS = [
    (
        "next-frame",
        MODEL,
        _frames,
        12,  # ConvLSTM2D 3 + 3, BatchNormalization 4 (moving statistics too), Dense 2
        _conv_lstm2d_params(1, 4) + 16 + _conv_lstm2d_params(4, 3) + 27 * 3 + 3,
        8,
    ),
    (
        "masked",
        MASKED_MODEL,
        _padded_tokens,
        9,  # Embedding 1, ConvLSTM2D 3 + 3, Dense 2 (summarize: (1, 3, 2))
        80 + _conv_lstm2d_params(1, 3, 4) + _conv_lstm2d_params(3, 2, 4) + 6 * 3 + 3,
        0,
    ),
    (
        "time-distributed",
        TD_MODEL,
        _clips,
        5,  # ConvLSTM1D 3, Dense 2
        4 * (3 * 2 * 2 + 3 * 2 * 2 + 2) + 16 * 3 + 3,
        0,
    ),
]


@pytest.mark.keras
@pytest.mark.parametrize("case", MODELS, ids=lambda c: c[0])
def test_model_files_match_keras(case):
    """Parameter counts, summary rows, predictions and one SGD step (next-frame: every
    regularizer and constraint of a ConvLSTM2D, applied in the step as Keras applies them). In
    the masked model Keras passes the (batch, time) mask through TimeDistributed to both
    ConvLSTM2D layers."""
    from keras_from_spec import keras_summary_facts

    _, spec, inputs, moved, total, frozen = case
    rng = np.random.default_rng(len(spec))
    x = inputs(rng)
    y = np.eye(3, dtype=np.float32)[np.arange(4) % 3]
    m, km, n_moved = model_matches_keras(spec, x, y, seed=3)
    assert n_moved == moved
    facts = keras_summary_facts(km)
    ours = m.summary_dict()
    assert (
        (ours["total_params"], ours["non_trainable_params"])
        == (facts["total"], facts["non_trainable"])
        == (total, frozen)
    )
    rows = [(r["name"], r["type"], tuple(r["output_shape"]), r["params"]) for r in ours["layers"][1:]]
    assert rows == [(n, t, tuple(s), p) for n, t, s, p in facts["layers"][1:]]


# ----------------------------------------------------------------------------- dropout


def kernel_train(a, x, params, mask=None, training=True):
    """The forward kernel as the training plan calls it, channels_last ConvLSTM2D input (rows, T,
    H, W, C): (y, [h, c], saved arrays by key); the saved arrays start as NaN."""
    from nnspec.runtime.kernels import jit

    rows, steps, hh, ww, c = x.shape
    f = a["filters"]
    geo = _geometry(a, x.shape)
    p = geo["npos"] * f
    layout = conv_recurrent._saved_layout(a, [x.shape[1:]]) if training else []
    saved = {k: np.full((rows, *s), np.nan, np.float32) for k, s in layout}
    y = np.full((rows, steps if a["return_sequences"] else 1, p), np.nan, np.float32)
    states = [np.full((rows, p), np.nan, np.float32) for _ in range(2)]
    e1, e2, e3 = np.empty(0, np.float32), np.empty((0, 0), np.float32), np.empty((0, 0, 0), np.float32)
    jit(conv_recurrent.conv_lstm_forward)(
        x.reshape(rows, steps, 1, hh, ww, c), params[0][None], params[1][None], params[2] if a["use_bias"] else e1,
        e2 if mask is None else mask, activations.code(a["activation"]),
        activations.code(a["recurrent_activation"]), a["use_bias"], a["go_backwards"], a["return_sequences"],
        a["zero_output_for_mask"], y, states[0], states[1], e2, e2, *geo["args"], float(a["dropout"]),
        float(a["recurrent_dropout"]), saved.get("dmx", e2), saved.get("dmh", e2), saved.get("sh", e3),
        saved.get("sa", e3), saved.get("sx", e3), saved.get("sp", e3),
    )  # fmt: skip
    full = (rows, *geo["out"], f)
    y = y.reshape((rows, steps, *full[1:])) if a["return_sequences"] else y.reshape(full)
    return y, [v.reshape(full) for v in states], saved


def kernel_backward(a, x, params, saved, dy, dstates):
    """The backward kernel as the plan calls it: (dx, [dkernel, drecurrent, dbias])."""
    from nnspec.runtime.kernels import jit

    rows, steps, hh, ww, c = x.shape
    geo = _geometry(a, x.shape)
    dx = np.zeros_like(x)
    grads = [np.zeros(p.shape, np.float32) for p in params]
    e2, e3 = np.empty((0, 0), np.float32), np.empty((0, 0, 0), np.float32)
    jit(conv_recurrent.conv_lstm_backward)(
        x.reshape(rows, steps, 1, hh, ww, c), params[0][None], params[1][None], e2,
        activations.code(a["activation"]), activations.code(a["recurrent_activation"]), a["go_backwards"],
        a["return_sequences"], a["zero_output_for_mask"],
        np.ascontiguousarray(dy.reshape(rows, steps if a["return_sequences"] else 1, -1), np.float32),
        *[np.ascontiguousarray(d.reshape(rows, -1), np.float32) for d in dstates], *geo["args"],
        saved.get("dmx", e2), saved.get("dmh", e2), saved["sh"], saved["sa"], saved["sx"], saved.get("sp", e3),
        dx.reshape(rows, steps, 1, hh, ww, c), grads[0].reshape(-1, params[0].shape[-1]),
        grads[1].reshape(-1, params[1].shape[-1]), grads[2], e2, e2,
    )  # fmt: skip
    return dx, grads


def _geometry(a, shape):
    """The kernels' geometry arguments for a channels_last ConvLSTM2D input of ``shape``."""
    from nnspec.layerdefs.conv import conv_pads

    hh, ww = shape[2], shape[3]
    k = a["kernel_size"]
    out = [len(range(0, n - ((kk - 1) * d + 1) + 1, s)) if a["padding"] == "valid" else -(-n // s)
           for n, kk, s, d in zip((hh, ww), k, a["strides"], a["dilation_rate"])]  # fmt: skip
    pads = conv_pads(a["padding"], (hh, ww), k, a["strides"], a["dilation_rate"])
    rpads = conv_pads("same", out, k, (1, 1), (1, 1))
    args = ((1, *out), (1, *a["strides"]), (1, *a["dilation_rate"]), (0, *pads), (0, *rpads))
    return {"npos": out[0] * out[1], "out": out, "args": args}


def torch_cell_reference(a, x, params, dmx, dmh):
    """Keras's ConvLSTMCell in training (keras/src/layers/rnn/conv_lstm.py, read, not copied), in
    torch float64 with the given masks: dmx (rows, 4*H*W*C), dmh (rows, 4*OH*OW*F), one per gate,
    shared by all steps. channels_last ConvLSTM2D; returns [output, h, c] as tensors."""
    import torch
    import torch.nn.functional as F

    rows, steps, hh, ww, c = x.shape
    f = a["filters"]
    out = _geometry(a, x.shape)["out"]
    w, u, b = params
    kh_, kw_ = a["kernel_size"]

    def conv(img, kernel, strides, dil, padding):  # channels_last img (rows, H, W, C), kernel (kh, kw, C, F)
        t = img.permute(0, 3, 1, 2)
        k = kernel.permute(3, 2, 0, 1)
        if padding == "same":
            pads = []
            for n, kk, s, d in ((t.shape[3], kw_, strides[1], dil[1]), (t.shape[2], kh_, strides[0], dil[0])):
                total = max(0, (-(-n // s) - 1) * s + (kk - 1) * d + 1 - n)
                pads += [total // 2, total - total // 2]
            t = F.pad(t, pads)
        return F.conv2d(t, k, stride=tuple(strides), dilation=tuple(dil)).permute(0, 2, 3, 1)

    xm = [dmx[:, q * hh * ww * c : (q + 1) * hh * ww * c].reshape(rows, hh, ww, c) if dmx.shape[1] else 1.0
          for q in range(4)]  # fmt: skip
    hm = [dmh[:, q * out[0] * out[1] * f : (q + 1) * out[0] * out[1] * f].reshape(rows, *out, f)
          if dmh.shape[1] else 1.0 for q in range(4)]  # fmt: skip
    act = torch.tanh
    h = torch.zeros((rows, *out, f), dtype=torch.float64)
    cs = torch.zeros_like(h)
    outs = []
    for t in reversed(range(steps)) if a["go_backwards"] else range(steps):
        z = [conv(x[:, t] * xm[q], w[..., q * f : (q + 1) * f], a["strides"], a["dilation_rate"], a["padding"])
             + b[q * f : (q + 1) * f] + conv(h * hm[q], u[..., q * f : (q + 1) * f], (1, 1), (1, 1), "same")
             for q in range(4)]  # fmt: skip
        cs = torch.sigmoid(z[1]) * cs + torch.sigmoid(z[0]) * act(z[2])
        h = torch.sigmoid(z[3]) * act(cs)
        outs.append(h)
    y = torch.stack(outs, 1) if a["return_sequences"] else outs[-1]
    return [y, h, cs]


DROPOUT_CASES = [
    ("input", {"dropout": 0.3}),
    ("recurrent-seq", {"recurrent_dropout": 0.4, "return_sequences": True}),
    (
        "both-backwards-strided",
        {"dropout": 0.25, "recurrent_dropout": 0.3, "go_backwards": True, "strides": 2},
    ),
]


@pytest.mark.parametrize(("case_id", "kw"), DROPOUT_CASES, ids=[c[0] for c in DROPOUT_CASES])
def test_dropout_follows_keras_cell_with_the_drawn_masks(case_id, kw):
    """Training forward and every gradient (input, kernel, recurrent kernel, bias; from the output
    and both states) against torch autograd of Keras's cell with the masks the kernel saved."""
    import torch

    from nnspec.runtime.kernels import seed_kernels

    a = normalize_attrs(REGISTRY["ConvLSTM2D"], {"filters": 2, "kernel_size": 3, "padding": "same", **kw})
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (3, 3, 5, 4, 2)).astype(np.float32)
    params = [rng.normal(0, 0.3, s).astype(np.float32) for s in ((3, 3, 2, 8), (3, 3, 2, 8), (8,))]
    seed_kernels(21)
    y, states, saved = kernel_train(a, x, params)
    dmx = saved.get("dmx", np.zeros((3, 0), np.float32))
    dmh = saved.get("dmh", np.zeros((3, 0), np.float32))
    assert (dmx.size == 0 or np.any(dmx == 0)) and (dmh.size == 0 or np.any(dmh == 0))
    assert dmx.size > 0 or dmh.size > 0
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    pt = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    want = torch_cell_reference(a, xt, pt, torch.tensor(dmx, dtype=torch.float64),
                                torch.tensor(dmh, dtype=torch.float64))  # fmt: skip
    got = [y, *states]
    for g, w in zip(got, want):
        close(g.reshape(w.shape), w.detach().numpy(), 1e-5, "training forward")
    ups = [rng.normal(0, 1, size=tuple(w.shape)) for w in want]
    sum((w * torch.tensor(up)).sum() for w, up in zip(want, ups)).backward()
    dx, grads = kernel_backward(a, x, params, saved, *[ups[0], ups[1:]])
    close(dx, xt.grad.numpy(), 1e-4, "input")
    for i, (g, p) in enumerate(zip(grads, pt)):
        close(g, p.grad.numpy(), 1e-4, f"weight {i}")


@pytest.mark.keras
def test_dropout_masks_are_keras_cells():
    """Keras's ConvLSTMCell draws four input masks shaped like one step's input and four state
    masks shaped like h, values 0 or 1/(1-rate), only for 0 < rate < 1; the kernel draws and saves
    the same number and shape, with those values and statistics, one per sequence, seeded."""
    import keras

    from nnspec.runtime.kernels import seed_kernels

    rate, rec = 0.3, 0.6
    layer = keras.layers.ConvLSTM2D(2, 3, padding="same", dropout=rate, recurrent_dropout=rec)
    layer.build((None, 2, 5, 4, 3))
    cell = layer.cell
    kx = cell.get_dropout_mask(keras.ops.ones((7, 5, 4, 3)))
    kh_masks = cell.get_recurrent_dropout_mask(keras.ops.ones((7, 5, 4, 2)))
    assert len(kx) == len(kh_masks) == 4
    for masks, r in ((kx, rate), (kh_masks, rec)):
        vals = np.unique(np.concatenate([np.asarray(m.cpu()).ravel() for m in masks]))
        np.testing.assert_allclose(vals, [0.0, 1.0 / (1.0 - r)], rtol=1e-6)
    a = normalize_attrs(REGISTRY["ConvLSTM2D"], {"filters": 2, "kernel_size": 3, "padding": "same",
                                                 "dropout": rate, "recurrent_dropout": rec})  # fmt: skip
    rows = 500
    x = np.random.default_rng(9).normal(0, 1, (rows, 2, 5, 4, 3)).astype(np.float32)
    params = [
        np.random.default_rng(10).normal(0, 0.3, s).astype(np.float32)
        for s in ((3, 3, 3, 8), (3, 3, 2, 8), (8,))
    ]
    seed_kernels(4)
    _, _, saved = kernel_train(a, x, params)
    for key, r, per in (("dmx", rate, 5 * 4 * 3), ("dmh", rec, 5 * 4 * 2)):
        m = saved[key]
        assert m.shape == (rows, 4 * per)
        assert set(np.unique(m)) <= {0.0, np.float32(1.0 / (1.0 - r))}
        kept = float(np.mean(m > 0))
        assert abs(kept - (1 - r)) < 4.5 * np.sqrt(r * (1 - r) / m.size), (key, kept)
        blocks = m.reshape(rows, 4, per)
        assert not np.array_equal(blocks[:, 0], blocks[:, 1])
    seed_kernels(4)
    _, _, again = kernel_train(a, x, params)
    np.testing.assert_array_equal(again["dmx"], saved["dmx"])
    # dropout 1.0 is not applied by Keras's cell (0 < rate < 1): no masks, the plain forward
    full = normalize_attrs(
        REGISTRY["ConvLSTM2D"], {"filters": 2, "kernel_size": 3, "padding": "same", "dropout": 1.0}
    )
    assert not [k for k, _ in conv_recurrent._saved_layout(full, [x.shape[1:]]) if k.startswith("dm")]


def test_inference_ignores_dropout():
    attrs = {"filters": 2, "kernel_size": 3, "padding": "same", "dropout": 0.5, "recurrent_dropout": 0.5}
    shape = (3, 5, 4, 2)
    ins = kh.random_inputs((shape,))
    w = kh.nnspec_weights("ConvLSTM2D", attrs, (shape,))
    plain = {k: v for k, v in attrs.items() if "dropout" not in k}
    np.testing.assert_array_equal(kh.run_nnspec("ConvLSTM2D", attrs, ins, w)[0],
                                  kh.run_nnspec("ConvLSTM2D", plain, ins, w)[0])  # fmt: skip


# ----------------------------------------------------------------------------- builder, errors


def test_builder_and_config_round_trip():
    from nnspec import Input, Model, layers

    x = Input((4, 8, 8, 3))
    y = layers.ConvLSTM2D(5, 3, padding="same", return_sequences=True)(x)
    z = layers.ConvLSTM2D(2, (3, 3), strides=2)(y)
    m = Model(x, z)
    assert tuple(m.outputs[0].shape) == (None, 3, 3, 2)  # (8 - 3) // 2 + 1
    assert [w.shape for w in m.get_weights()] == [(3, 3, 3, 20), (3, 3, 5, 20), (20,),
                                                  (3, 3, 5, 8), (3, 3, 2, 8), (8,)]  # fmt: skip
    # Keras: 4 * (9*3*5 + 9*5*5 + 5) and 4 * (9*5*2 + 9*2*2 + 2)
    assert m.count_params() == 4 * (135 + 225 + 5) + 4 * (90 + 36 + 2)
    again = Model.from_config(m.get_config())
    assert again.get_config() == m.get_config()


def test_initializers_follow_keras_fans():
    """kernel: glorot_uniform with a convolution's fans (receptive field 9 times 2 inputs, 9 times
    16 outputs); recurrent_kernel: orthogonal over (k*k*filters, 4*filters), as Keras flattens it."""
    m = kh.build_nnspec("ConvLSTM2D", {"filters": 4, "kernel_size": 3}, ((3, 6, 6, 2),))
    kernel, recurrent_kernel, _ = m.get_weights()
    limit = np.sqrt(6.0 / (9 * 2 + 9 * 16))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    u = recurrent_kernel.reshape(9 * 4, 16)
    np.testing.assert_allclose(u.T @ u, np.eye(16), atol=1e-5)


def test_unit_forget_bias_starts_the_forget_gate_at_one():
    m = kh.build_nnspec("ConvLSTM1D", {"filters": 3, "kernel_size": 2}, ((2, 5, 2),))
    bias = m.get_weights()[2]
    np.testing.assert_array_equal(bias, np.r_[np.zeros(3), np.ones(3), np.zeros(6)].astype(np.float32))
    m = kh.build_nnspec(
        "ConvLSTM1D", {"filters": 3, "kernel_size": 2, "unit_forget_bias": False}, ((2, 5, 2),)
    )
    np.testing.assert_array_equal(m.get_weights()[2], np.zeros(12, np.float32))


def _spec(layer: dict, shape) -> dict:
    return {"format": "nnspec/1", "inputs": {"x": {"shape": list(shape)}}, "layers": {"r": layer},
            "edges": ["x -> r"], "outputs": ["r"]}  # fmt: skip


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        ({"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3}, (4, 5, 2), "expects an input of rank 5"),
        ({"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3}, (4, None, 5, 2), "known spatial dimensions"),
        ({"type": "ConvLSTM1D", "filters": 2, "kernel_size": 3}, (4, 6, None), "known channel dimension"),
        (
            {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
            (4, 9, 9, 1),
            "cannot be combined with dilation_rate",
        ),
        ({"type": "ConvLSTM2D", "filters": 2, "kernel_size": 5}, (4, 3, 3, 1), "does not fit input 3x3"),
        (
            {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3, "stateful": True},
            (4, 5, 5, 1),
            "needs a fixed batch size",
        ),
        (
            {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3, "unroll": True},
            (None, 5, 5, 1),
            "needs a known sequence length",
        ),
        (
            {
                "type": "ConvLSTM2D",
                "filters": 2,
                "kernel_size": 3,
                "data_format": "channels_first",
                "activation": "softmax",
            },
            (4, 1, 5, 5),
            "acts along the last axis",
        ),
        (
            {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3, "recurrent_activation": "glu"},
            (4, 5, 5, 1),
            "cannot take activation 'glu'",
        ),
        (
            {
                "type": "TimeDistributed",
                "layer": {"type": "ConvLSTM1D", "filters": 2, "kernel_size": 3, "return_state": True},
            },
            (4, 5, 5, 1),
            "with one output",
        ),
        (
            {
                "type": "Bidirectional",
                "layer": {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3},
                "backward_layer": {
                    "type": "ConvLSTM2D",
                    "filters": 3,
                    "kernel_size": 3,
                    "go_backwards": True,
                },
            },
            (4, 5, 5, 1),
            "must produce the same shapes",
        ),
    ],
)
def test_shape_errors(layer, shape, message):
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.Model.from_config(_spec(layer, shape))
    assert "E300" in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "layer",
    [
        {"type": "ConvLSTM2D", "filters": 2},  # kernel_size is required
        {"type": "ConvLSTM2D", "filters": 0, "kernel_size": 3},
        {"type": "ConvLSTM2D", "filters": 2, "kernel_size": [3, 3, 3]},
        {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 3, "padding": "causal"},
        {"type": "ConvLSTM1D", "filters": 2, "kernel_size": 3, "dropout": 1.5},
    ],
)
def test_attribute_errors(layer):
    with pytest.raises(SchemaError) as err:
        nnspec.Model.from_config(_spec(layer, (4, 5, 5, 1) if layer["type"] == "ConvLSTM2D" else (4, 5, 1)))
    assert "E1" in str(err.value)
