"""Forward kernels of the recurrent layers (SimpleRNN, LSTM, GRU) and the wrappers (Bidirectional,
TimeDistributed).

Three groups of checks:

- The kernels called directly, as the plan function calls them, over a grid of flags (direction,
  sequences or last output, masks, zero_output_for_mask, bias, returned states) and every
  activation code, against the float64 references. No plan is compiled for these, so the grid
  is cheap.
- One-layer models through the whole pipeline (``kernel_harness``): nnspec's compiled plan,
  the layer's reference, and Keras 3 (PyTorch backend) with the same weights.
- Masked models, ``Embedding(mask_zero) -> layer``, with padding at the end, in the middle, at
  the start, and a row that is all padding, against the reference and Keras.

Tolerances: kernels against the float64 references rtol = atol = 1e-5; against Keras 1e-4 of
the output's scale (max |value|, at least 1).
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, activations, recurrent, wrappers
from nnspec.layerdefs.base import bind_numpy, normalize_attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh

bind_numpy([activations, recurrent, wrappers])

RTOL = ATOL = 1e-5  # float32 kernels against float64 references
KERAS_TOL = 1e-4  # against Keras, relative to the output's scale (max |value|, at least 1)

OWNED = {"SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed", "Model"}


def _close_to_keras(got, want) -> None:
    scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=KERAS_TOL * scale)


# ----------------------------------------------------------------------------- kernels, directly

# (row, step) pairs that are padding: row 0 right-padded, row 1 padded in the middle, row 2
# left-padded, row 3 all padding, row 4 none.
STEPS = 6
MASK = np.ones((5, STEPS), np.float32)
MASK[0, 4:] = 0
MASK[1, 2:4] = 0
MASK[2, :3] = 0
MASK[3, :] = 0

CELLS = {
    "simple": ("SimpleRNN", {}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "gru_v1": ("GRU", {"reset_after": False}),
}


def _attrs(type_name: str, **kw) -> dict:
    return normalize_attrs(REGISTRY[type_name], {"units": 4, **kw})


def _params(type_name: str, a: dict, features: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    k = recurrent.GATES[type_name] * a["units"]
    shapes = [(features, k), (a["units"], k)]
    if a["use_bias"]:
        shapes.append((2, k) if type_name == "GRU" and a["reset_after"] else (k,))
    return [rng.normal(0, 0.5, s).astype(np.float32) for s in shapes]


def run_kernel(type_name, a, x, params, mask=None, *, zofm=None, flip=False, merge=0, y=None, col0=0,
               states=True):  # fmt: skip
    """Call the layer's kernel as the plan function does; returns [y, h(, c)] (no states when
    ``states`` is false: the kernel keeps them in its scratch)."""
    from nnspec.runtime.kernels import jit

    rows, steps, _ = x.shape
    u = a["units"]
    per_row, fixed = recurrent.rnn_scratch_parts(steps, type_name, u)
    scratch = np.full(rows * per_row + fixed, np.nan, np.float32)
    if y is None:
        y = np.full((rows, steps if a["return_sequences"] else 1, u), np.nan, np.float32)
    none2 = np.zeros((0, 0), np.float32)
    n_states = recurrent.STATES[type_name] if states else 0
    outs = [np.full((rows, u), np.nan, np.float32) for _ in range(n_states)]
    b = params[2].reshape(-1) if a["use_bias"] else np.zeros(0, np.float32)
    kernel = jit(recurrent.KERNELS[type_name])
    kernel(x, params[0], params[1], b, none2 if mask is None else mask, activations.code(a["activation"]),
           activations.code(a.get("recurrent_activation")), a["use_bias"], a.get("reset_after", False),
           a["go_backwards"], a["return_sequences"], flip, a["zero_output_for_mask"] if zofm is None else zofm,
           merge, y, col0, outs[0] if outs else none2, outs[1] if len(outs) > 1 else none2, none2, none2,
           scratch)  # fmt: skip
    return [y, *outs]


GRID = list(
    itertools.product(CELLS, [False, True], [False, True], [False, True], [False, True], [False, True])
)


@pytest.mark.parametrize(
    ("cell", "backwards", "sequences", "masked", "zofm", "bias"),
    GRID,
    ids=["-".join([c, *(f for f, on in zip(("bw", "seq", "mask", "zofm", "bias"), rest) if on)])
         for c, *rest in GRID],
)  # fmt: skip
def test_kernel_grid(cell, backwards, sequences, masked, zofm, bias):
    type_name, extra = CELLS[cell]
    a = _attrs(type_name, go_backwards=backwards, return_sequences=sequences, zero_output_for_mask=zofm,
               use_bias=bias, return_state=True, **extra)  # fmt: skip
    x = np.random.default_rng(1).normal(0, 1, (5, STEPS, 3)).astype(np.float32)
    params = _params(type_name, a, 3)
    mask = MASK if masked else None
    states = not (masked and zofm)  # also run with the states kept in the scratch
    got = run_kernel(type_name, a, x, params, mask, states=states)
    if not states:
        a = {**a, "return_state": False}
    want = recurrent.sequence_reference(type_name, a, x.astype(np.float64), [p.astype(np.float64) for p in params],
                                        mask)  # fmt: skip
    got[0] = got[0] if sequences else got[0][:, 0]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


ACT_NAMES = sorted(activations.CODES)


@pytest.mark.parametrize("role", ["activation", "recurrent_activation"])
@pytest.mark.parametrize("name", ACT_NAMES)
def test_kernel_activations(name, role):
    """Every activation code, as the cell activation (LSTM, SimpleRNN) and as the gates' (LSTM,
    both GRU forms), with a mask."""
    x = np.random.default_rng(2).normal(0, 1, (5, STEPS, 3)).astype(np.float32)
    cells = ["simple", "lstm", "gru", "gru_v1"] if role == "activation" else ["lstm", "gru", "gru_v1"]
    for cell in cells:
        type_name, extra = CELLS[cell]
        a = _attrs(type_name, return_sequences=True, return_state=True, **{role: name}, **extra)
        params = [p * 0.3 for p in _params(type_name, a, 3, seed=3)]  # keep exponential from exploding
        got = run_kernel(type_name, a, x, params, MASK)
        want = recurrent.sequence_reference(type_name, a, x.astype(np.float64),
                                            [p.astype(np.float64) for p in params], MASK)  # fmt: skip
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"{cell} {role}={name}")


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
def test_kernel_merge_writes(merge_mode):
    """A backward pass written over a forward pass, flipped, as Bidirectional's plan step does."""
    a_f = _attrs("LSTM", return_sequences=True, zero_output_for_mask=True)
    a_b = {**a_f, "go_backwards": True}
    x = np.random.default_rng(4).normal(0, 1, (5, STEPS, 3)).astype(np.float32)
    pf, pb = _params("LSTM", a_f, 3, seed=5), _params("LSTM", a_f, 3, seed=6)
    width = 8 if merge_mode == "concat" else 4
    y = np.full((5, STEPS, width), np.nan, np.float32)
    run_kernel("LSTM", a_f, x, pf, MASK, y=y, states=False)
    run_kernel("LSTM", a_b, x, pb, MASK, y=y, col0=4 if merge_mode == "concat" else 0,
               merge=recurrent.MERGES[merge_mode], flip=True, states=False)  # fmt: skip
    ref = wrappers.BIDIRECTIONAL.reference(
        normalize_attrs(wrappers.BIDIRECTIONAL, {"layer": {"type": "LSTM", "units": 4, "return_sequences": True},
                                                 "merge_mode": merge_mode}),
        [x.astype(np.float64)], [p.astype(np.float64) for p in pf + pb], [MASK],
    )  # fmt: skip
    np.testing.assert_allclose(y, ref[0], rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- one-layer models


@dataclass(frozen=True)
class Case:
    id: str
    type: str
    attrs: dict
    shapes: tuple  # per-sample input shapes
    batch: int = 3


def _bi(layer: dict, **kw) -> dict:
    return {"layer": layer, **kw}


# fmt: off
CASES = [
    Case("simple_rnn-relu", "SimpleRNN", {"units": 5, "activation": "relu"}, ((6, 3),)),
    Case("simple_rnn-seq-backwards-state-nobias", "SimpleRNN",
         {"units": 4, "return_sequences": True, "go_backwards": True, "return_state": True, "use_bias": False},
         ((5, 3),)),
    Case("lstm-last-unroll", "LSTM", {"units": 6, "unroll": True}, ((7, 4),)),
    Case("lstm-seq-state-backwards", "LSTM",
         {"units": 4, "return_sequences": True, "return_state": True, "go_backwards": True}, ((6, 3),)),
    Case("lstm-activations-nobias-batch1", "LSTM",
         {"units": 5, "activation": "relu", "recurrent_activation": "hard_sigmoid", "use_bias": False},
         ((6, 3),), batch=1),
    Case("lstm-dropout-inference", "LSTM", {"units": 4, "dropout": 0.5, "recurrent_dropout": 0.3,
                                             "return_sequences": True}, ((5, 3),)),
    Case("lstm-blas-sizes", "LSTM", {"units": 32, "return_sequences": True}, ((12, 16),), batch=9),
    Case("gru-seq", "GRU", {"units": 5, "return_sequences": True}, ((6, 3),)),
    Case("gru-v1-state-backwards", "GRU", {"units": 4, "reset_after": False, "return_state": True,
                                            "go_backwards": True}, ((6, 3),)),
    Case("gru-nobias-tanh-gates", "GRU", {"units": 4, "use_bias": False, "recurrent_activation": "tanh",
                                           "return_state": True}, ((6, 3),)),
    Case("bi-lstm-concat-seq", "Bidirectional", _bi({"type": "LSTM", "units": 4, "return_sequences": True}),
         ((6, 3),)),
    Case("bi-gru-sum-state", "Bidirectional",
         _bi({"type": "GRU", "units": 4, "return_state": True}, merge_mode="sum"), ((6, 3),)),
    Case("bi-simple-none-seq-state", "Bidirectional",
         _bi({"type": "SimpleRNN", "units": 3, "return_sequences": True, "return_state": True}, merge_mode=None),
         ((5, 3),)),
    Case("bi-lstm-gru-v1-ave", "Bidirectional",
         _bi({"type": "LSTM", "units": 3, "return_sequences": True}, merge_mode="ave",
             backward_layer={"type": "GRU", "units": 3, "return_sequences": True, "go_backwards": True,
                             "reset_after": False}), ((6, 3),)),
    Case("bi-lstm-mul-last-state", "Bidirectional",
         _bi({"type": "LSTM", "units": 3, "return_state": True}, merge_mode="mul"), ((6, 3),)),
    Case("bi-swapped-directions-concat-seq", "Bidirectional",  # Keras flips backward_layer's output anyway
         _bi({"type": "GRU", "units": 3, "return_sequences": True, "go_backwards": True},
             backward_layer={"type": "SimpleRNN", "units": 3, "return_sequences": True}), ((5, 2),)),
    Case("td-lstm", "TimeDistributed", {"layer": {"type": "LSTM", "units": 3, "return_sequences": True}},
         ((4, 5, 2),)),
    Case("td-dense", "TimeDistributed", {"layer": {"type": "Dense", "units": 3, "activation": "tanh"}}, ((4, 2),)),
    Case("td-conv2d", "TimeDistributed",
         {"layer": {"type": "Conv2D", "filters": 3, "kernel_size": 2, "activation": "relu"}}, ((4, 5, 5, 2),)),
]
# fmt: on


_RUNS: dict = {}


def _run(case: Case):
    """(inputs, weights, nnspec outputs, declared output shapes), computed once per case."""
    if case.id not in _RUNS:
        ins = kh.random_inputs(case.shapes, batch=case.batch)
        w = kh.nnspec_weights(case.type, case.attrs, case.shapes)
        m = kh.build_nnspec(case.type, case.attrs, case.shapes)
        m.set_weights(w)
        out = m.predict_on_batch(ins[0])
        got = out if isinstance(out, list) else [out]
        shapes = m.output_shape if isinstance(m.output_shape, list) else [m.output_shape]
        _RUNS[case.id] = (ins, w, got, [(case.batch, *s[1:]) for s in shapes])
    return _RUNS[case.id]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_layer_matches_reference(case):
    ins, w, got, shapes = _run(case)
    ref = kh.run_reference(case.type, case.attrs, ins, w)
    assert [g.shape for g in got] == shapes
    assert all(g.dtype == np.float32 for g in got)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_layer_matches_keras(case):
    ins, w, got, _ = _run(case)
    want = kh.run_keras(case.type, case.attrs, ins, w)
    assert [g.shape for g in got] == [k.shape for k in want]
    for g, k in zip(got, want):
        _close_to_keras(g, k)


# ----------------------------------------------------------------------------- masked models

# Token ids: row 0 right-padded, row 1 padded in the middle, row 2 left-padded, row 3 all
# padding (Keras keeps the zero states and outputs zeros), row 4 no padding.
IDS = np.array(
    [[3, 1, 4, 1, 5, 0, 0], [2, 6, 0, 0, 5, 3, 5], [0, 0, 0, 8, 9, 7, 9], [0] * 7, [3, 2, 3, 8, 4, 6, 2]],
    np.int32,
)

# fmt: off
MASKED = {
    "lstm-seq": ("LSTM", {"units": 4, "return_sequences": True}),
    "lstm-last-backwards-state": ("LSTM", {"units": 4, "go_backwards": True, "return_state": True}),
    "gru-seq-zofm-state": ("GRU", {"units": 4, "return_sequences": True, "zero_output_for_mask": True,
                                   "return_state": True}),
    "gru-v1-seq-backwards": ("GRU", {"units": 3, "reset_after": False, "return_sequences": True,
                                     "go_backwards": True}),
    "simple_rnn-last-zofm": ("SimpleRNN", {"units": 3, "zero_output_for_mask": True}),
    "bi-lstm-concat-seq": ("Bidirectional", _bi({"type": "LSTM", "units": 4, "return_sequences": True})),
    "bi-gru-sum-last-state": ("Bidirectional", _bi({"type": "GRU", "units": 3, "return_state": True},
                                                   merge_mode="sum")),
    "bi-simple-none-seq": ("Bidirectional", _bi({"type": "SimpleRNN", "units": 3, "return_sequences": True,
                                                 "zero_output_for_mask": False}, merge_mode=None)),
}
# fmt: on


def _masked_spec(type_name: str, attrs: dict) -> dict:
    probe = kh.build_nnspec(type_name, attrs, [(IDS.shape[1], 5)])
    n_out = len(probe.outputs)
    return {
        "format": "nnspec/1",
        "name": "masked",
        "inputs": {"ids": {"shape": [IDS.shape[1]], "dtype": "int32"}},
        "layers": {
            "embed": {"type": "Embedding", "input_dim": 10, "output_dim": 5, "mask_zero": True},
            "rnn": {"type": type_name, **attrs},
        },
        "edges": ["ids -> embed -> rnn"],
        "outputs": ["rnn"] if n_out == 1 else [f"rnn:{k}" for k in range(n_out)],
    }


_MASKED_RUNS: dict = {}


def _masked_run(key: str):
    if key not in _MASKED_RUNS:
        type_name, attrs = MASKED[key]
        spec = _masked_spec(type_name, attrs)
        m = nnspec.Model.from_config(spec)
        rng = np.random.default_rng(8)
        w = [(x + rng.normal(0, 0.2, x.shape)).astype(np.float32) for x in m.get_weights()]
        m.set_weights(w)
        out = m.predict_on_batch(IDS)
        _MASKED_RUNS[key] = (spec, w, out if isinstance(out, list) else [out])
    return _MASKED_RUNS[key]


@pytest.mark.parametrize("key", MASKED)
def test_masked_layer_matches_reference(key):
    type_name, attrs = MASKED[key]
    _, w, got = _masked_run(key)
    emb = w[0].astype(np.float64)[IDS]
    defn = REGISTRY[type_name]
    ref = defn.reference(
        normalize_attrs(defn, attrs), [emb], [p.astype(np.float64) for p in w[1:]], [IDS != 0]
    )
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.keras
@pytest.mark.parametrize("key", MASKED)
def test_masked_layer_matches_keras(key):
    from keras_from_spec import keras_model_from_spec

    spec, w, got = _masked_run(key)
    km = keras_model_from_spec(json.dumps(spec))
    km.get_layer("embed").set_weights(w[:1])
    km.get_layer("rnn").set_weights(w[1:])
    want = km.predict(IDS, verbose=0)
    want = [np.asarray(k) for k in (want if isinstance(want, (list, tuple)) else [want])]
    assert [g.shape for g in got] == [k.shape for k in want]
    for g, k in zip(got, want):
        _close_to_keras(g, k)


def test_bidirectional_zeroes_masked_steps_only_with_sequences():
    """Keras forces zero_output_for_mask = return_sequences on both directions, whatever the
    wrapped layer says: zeros at padded steps of a sequence, the last valid output otherwise."""
    _, _, (seq,) = _masked_run("bi-lstm-concat-seq")
    assert np.all(seq[IDS == 0] == 0) and np.all(np.abs(seq[IDS != 0]).sum(axis=-1) > 0)
    _, _, (fwd, bwd) = _masked_run("bi-simple-none-seq")
    assert np.all(fwd[IDS == 0] == 0) and np.all(bwd[IDS == 0] == 0)


# ----------------------------------------------------------------------------- contract


def test_every_owned_layer_has_cases_and_references():
    assert {c.type for c in CASES} | {"Model"} == OWNED
    for name in OWNED - {"Model", "TimeDistributed"}:  # lowering inlines those two
        defn = REGISTRY[name]
        assert defn.reference is not None and defn.emit is not None, name
        assert defn.uses_mask, name
    assert REGISTRY["TimeDistributed"].reference is not None
