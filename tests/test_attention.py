"""The attention layers (Attention, AdditiveAttention, MultiHeadAttention) against their NumPy
references, finite differences and Keras 3 (PyTorch backend).

- Forward cases run one layer three ways (``kernel_harness``): the compiled plan, the float64
  reference and Keras with the same weights (Keras's call arguments ``use_causal_mask`` and
  ``return_attention_scores`` are attributes in a model file and call arguments in Keras).
- Gradient cases (``CASES``, listed in test_registry_contract's GRADIENT_SUITES) go through the
  real train step and are checked against float64 finite differences and Keras autograd, masked
  query/value inputs (Embedding ``mask_zero``) included.
- Whole models built by nnspec and by Keras from the same file: a masked self-attention text
  classifier and a query/value model that outputs its attention scores; summary numbers,
  predictions and one SGD step.
- Dropout on the attention weights (random, so checked by its statistics), the builder's call
  forms, and the shape errors.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY
from nnspec.layerdefs.base import TensorType, normalize_attrs
from nnspec.specs.errors import ShapeMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import (
    Case,
    GradSuite,
    close,
    fd_grads,
    keras_grads,
    nnspec_and_keras,
    one_step_matches_keras,
)

RTOL = ATOL = 1e-5  # float32 kernels against float64 references
KERAS_TOL = 1e-4  # against Keras, relative to the output's scale
FD_TOL = 1e-3
TORCH_TOL = 1e-4

MHA = "MultiHeadAttention"
GQA = "GroupQueryAttention"


@dataclass(frozen=True)
class Fwd:
    id: str
    type: str
    attrs: dict
    shapes: tuple


# fmt: off
FORWARD = [
    Fwd("attention-dot", "Attention", {}, ((4, 3), (5, 3))),
    Fwd("attention-scale-causal-key-scores", "Attention",
        {"use_scale": True, "use_causal_mask": True, "return_attention_scores": True}, ((4, 3), (4, 2), (4, 3))),
    Fwd("attention-concat-scale", "Attention", {"score_mode": "concat", "use_scale": True}, ((4, 3), (5, 2), (5, 3))),
    Fwd("attention-blas-scores", "Attention", {}, ((20, 16), (24, 16))),  # above the loop/BLAS threshold
    Fwd("additive", "AdditiveAttention", {}, ((4, 3), (5, 3))),
    Fwd("additive-no-scale-scores", "AdditiveAttention", {"use_scale": False, "return_attention_scores": True},
        ((4, 3), (5, 3))),
    Fwd("mha", MHA, {"num_heads": 2, "key_dim": 3}, ((4, 5), (6, 3))),
    Fwd("mha-gate-key-output-shape-scores-causal", MHA,
        {"num_heads": 2, "key_dim": 3, "value_dim": 2, "use_gate": True, "output_shape": [2, 3],
         "return_attention_scores": True, "use_causal_mask": True}, ((4, 5), (4, 3), (4, 2))),
    Fwd("mha-no-bias-window", MHA, {"num_heads": 3, "key_dim": 2, "use_bias": False, "sliding_window": 2},
        ((5, 4), (5, 4))),
    Fwd("mha-rank4", MHA, {"num_heads": 2, "key_dim": 2, "output_shape": 3}, ((2, 3, 4), (3, 2, 4))),
    Fwd("gqa", GQA, {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2}, ((4, 5), (6, 5))),
    Fwd("gqa-one-kv-head-gate-causal-key-scores", GQA,
        {"head_dim": 2, "num_query_heads": 3, "num_key_value_heads": 1, "use_gate": True, "use_causal_mask": True,
         "return_attention_scores": True}, ((4, 5), (4, 5), (4, 2))),
]
# fmt: on

_RUNS: dict = {}


def _forward(case: Fwd):
    if case.id not in _RUNS:
        ins = kh.random_inputs(case.shapes)
        w = kh.nnspec_weights(case.type, case.attrs, case.shapes)
        _RUNS[case.id] = (ins, w, kh.run_nnspec(case.type, case.attrs, ins, w))
    return _RUNS[case.id]


@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c.id)
def test_kernels_match_reference(case):
    ins, w, got = _forward(case)
    ref = kh.run_reference(case.type, case.attrs, ins, w)
    defn = REGISTRY[case.type]
    types = defn.infer(normalize_attrs(defn, case.attrs), [TensorType((None, *s)) for s in case.shapes], None)
    assert [g.shape for g in got] == [(3, *t.shape[1:]) for t in types]
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.keras
@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c.id)
def test_kernels_match_keras(case):
    ins, w, got = _forward(case)
    want = kh.run_keras(case.type, case.attrs, ins, w)
    assert [g.shape for g in got] == [k.shape for k in want]
    for g, k in zip(got, want):
        scale = max(1.0, float(np.abs(k).max()))
        np.testing.assert_allclose(g, k, rtol=0, atol=KERAS_TOL * scale)


@pytest.mark.keras
@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c.id)
def test_weights_and_params_match_keras(case):
    from keras_ref import keras_layer_facts

    _, weights, count = keras_layer_facts(case.type, case.attrs, list(case.shapes))
    m = kh.build_nnspec(case.type, case.attrs, case.shapes)
    ours = m.get_layer("layer").get_weights()
    assert [w.shape for w in ours] == [s for _, s, _ in weights]
    assert m.count_params() == count
    store = m._weights()
    names = [p.split("/", 1)[1] for p in store.params if p.startswith("layer/")]
    keras_names = {  # Keras's paths end in the sublayer and weight names
        MHA: lambda: [f"{p}/{w}" for p in ("query", "key", "gate", "value", "attention_output") for w in ("kernel", "bias")],
    }
    if case.type in (MHA, GQA):
        assert names == [n for n in keras_names[MHA]() if n in names]
        assert [n.split("/")[-1] for n in names] == [n for n, _, _ in weights]
    else:
        assert names == [n for n, _, _ in weights]


# ----------------------------------------------------------------------------- gradients

# fmt: off
CASES = [
    Case("attention-dot", "Attention", {}, ((4, 3), (5, 3))),
    Case("attention-scale-causal-key", "Attention", {"use_scale": True, "use_causal_mask": True},
         ((4, 3), (4, 2), (4, 3))),
    Case("attention-concat-scale", "Attention", {"score_mode": "concat", "use_scale": True}, ((3, 3), (4, 3))),
    Case("attention-concat", "Attention", {"score_mode": "concat"}, ((3, 3), (4, 2), (4, 3))),
    Case("attention-masked", "Attention", {"use_scale": True}, ((5,), (6,)), masked=(1, 1), dim=3),
    Case("additive", "AdditiveAttention", {}, ((3, 4), (5, 4))),
    Case("additive-no-scale-key", "AdditiveAttention", {"use_scale": False}, ((3, 2), (4, 3), (4, 2))),
    Case("additive-masked-causal", "AdditiveAttention", {"use_causal_mask": True}, ((5,), (5,)), masked=(1, 1)),
    Case("mha", MHA, {"num_heads": 2, "key_dim": 3}, ((4, 5), (6, 3))),
    Case("mha-gate-key-output-shape", MHA,
         {"num_heads": 2, "key_dim": 2, "value_dim": 3, "use_gate": True, "output_shape": [2, 3]},
         ((4, 5), (4, 3), (4, 2))),
    Case("mha-causal-window-no-bias", MHA,
         {"num_heads": 2, "key_dim": 2, "use_causal_mask": True, "sliding_window": 2, "use_bias": False},
         ((5, 4), (5, 4))),
    Case("mha-masked", MHA, {"num_heads": 2, "key_dim": 2}, ((5,), (6,)), masked=(1, 1)),
    Case("mha-rank4", MHA, {"num_heads": 2, "key_dim": 2}, ((2, 3, 4), (3, 2, 4))),
    Case("mha-frozen", MHA, {"num_heads": 1, "key_dim": 3, "trainable": False}, ((3, 4), (3, 4))),
    Case("gqa", GQA, {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2}, ((4, 5), (6, 5))),
    Case("gqa-gate-key-window-no-bias", GQA,
         {"head_dim": 3, "num_query_heads": 2, "num_key_value_heads": 1, "use_gate": True, "sliding_window": 2,
          "use_bias": False}, ((4, 3), (5, 3), (5, 2))),
    Case("gqa-masked-causal", GQA, {"head_dim": 2, "num_query_heads": 2, "num_key_value_heads": 2,
                                    "use_causal_mask": True}, ((5,), (5,)), masked=(1, 1)),
]
# fmt: on

SUITE = GradSuite(CASES)


def _close_or_zero(got, ref, tol, floor, what):
    """``close``, except that a gradient zero in exact arithmetic (the key projection's bias
    shifts every score of a row equally, which the softmax ignores) is compared on ``floor``,
    the scale of the case's other gradients: float32 rounding leaves it ~1e-8 of that, not 0."""
    if np.abs(ref).max(initial=0.0) <= 1e-5 * floor:
        assert np.abs(got).max(initial=0.0) <= tol * floor, (what, np.abs(got).max())
        return
    close(got, ref, tol, what)


@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.fd])
def test_gradients_against_finite_differences(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    dx, dw = fd_grads(case, r)
    _compare(r, dx, dw, FD_TOL)


def _compare(r, dx, dw, tol):
    """The step's input and weight gradients against ``dx``, ``dw`` (None: not compared)."""
    floor = max(float(np.abs(g).max()) for g in [*dx, *dw] if g is not None)
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if got is not None and ref is not None:
            close(got, ref, tol, f"input {i}")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            _close_or_zero(got, ref, tol, floor, f"weight {i}")


@pytest.mark.keras
@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.keras is None])
def test_gradients_against_keras_autograd(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    y, dx, dw, _ = keras_grads(case, r)
    close(r.y, y, TORCH_TOL, "training forward")
    _compare(r, dx, dw, TORCH_TOL)


# ----------------------------------------------------------------------------- whole models

CLASSIFIER = """
format: nnspec/1
name: attention_classifier
inputs:
  tokens: {shape: [7], dtype: int32}
layers:
  embed: {type: Embedding, input_dim: 20, output_dim: 8, mask_zero: true}
  self_attention: {type: MultiHeadAttention, num_heads: 2, key_dim: 4, use_causal_mask: true}
  add: {type: Add}
  norm: {type: LayerNormalization}
  pool: {type: GlobalAveragePooling1D}
  probs: {type: Dense, units: 3, activation: softmax}
edges:
  - tokens -> embed
  - embed, embed -> self_attention
  - embed, self_attention -> add -> norm -> pool -> probs
outputs: [probs]
"""

QUERY_VALUE = """
format: nnspec/1
name: query_value
inputs:
  query: {shape: [4, 6]}
  value: {shape: [5, 3]}
layers:
  q_proj: {type: Dense, units: 3, activation: tanh}
  attend: {type: Attention, use_scale: true, return_attention_scores: true}
  additive: {type: AdditiveAttention}
  both: {type: Concatenate}
  out: {type: Dense, units: 2}
edges:
  - query -> q_proj
  - q_proj, value, value -> attend
  - q_proj, attend -> additive
  - attend, additive -> both -> out
outputs: [out, attend:1]
"""


def _tokens(n=6, steps=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 20, size=(n, steps)).astype(np.int32)
    x[0, 4:] = 0  # padding at the end
    x[1, :2] = 0  # at the start
    x[2, 1::2] = 0
    return x


@pytest.mark.keras
def test_masked_self_attention_classifier_matches_keras():
    from keras_from_spec import keras_summary_facts

    m, km = nnspec_and_keras(CLASSIFIER, seed=3)
    facts = keras_summary_facts(km)
    assert m.count_params() == km.count_params() == facts["total"]
    x = _tokens()
    close(m.predict(x), km.predict(x, verbose=0), KERAS_TOL, "predictions")
    y = np.eye(3, dtype=np.float32)[np.arange(6) % 3]
    assert one_step_matches_keras(CLASSIFIER, x, y, seed=3) > 0


@pytest.mark.keras
def test_query_value_model_with_scores_matches_keras():
    m, km = nnspec_and_keras(QUERY_VALUE, seed=1)
    assert m.count_params() == km.count_params()
    rng = np.random.default_rng(2)
    x = [rng.normal(size=(4, 4, 6)).astype(np.float32), rng.normal(size=(4, 5, 3)).astype(np.float32)]
    ours, theirs = m.predict(x), km.predict(x, verbose=0)
    for a, b in zip(ours, theirs):
        close(a, b, KERAS_TOL, "predictions")
    np.testing.assert_allclose(ours[1].sum(-1), 1.0, rtol=1e-5)  # weights over the value steps
    y = [rng.normal(size=(4, 4, 2)).astype(np.float32), rng.uniform(size=(4, 4, 5)).astype(np.float32)]
    assert one_step_matches_keras(QUERY_VALUE, x, y, seed=1, loss="mse") > 0


# ----------------------------------------------------------------------------- dropout


def _dropout_model(type_name: str, attrs: dict, outputs: list):
    spec = {
        "format": "nnspec/1", "name": "drop",
        "inputs": {"q": {"shape": [3, 4]}, "v": {"shape": [5, 4]}},
        "layers": {"a": {"type": type_name, **attrs}},
        "edges": ["q, v -> a"], "outputs": outputs,
    }  # fmt: skip
    return nnspec.Model.from_config(spec)


def _train_outputs(m, x, targets):
    """The training-mode outputs of one ``train_on_batch`` (SGD with learning rate 0)."""
    from grad_harness import value_reader

    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.0), loss="mse")
    m.train_on_batch(x, targets)
    (tr,) = m._trainers.values()
    n = x[0].shape[0]
    read = value_reader(tr.plan, n)
    ws = tr.buffers(n)[0]
    return [read(ws, vid) for _, vid in tr.plan.outputs]


def test_attention_dropout_drops_weights_in_training_only():
    """Keras's Attention returns the weights after dropout: each is 0 or the inference weight
    over (1 - rate), about half are kept, and the output is their sum of values. Inference has
    no dropout."""
    rng = np.random.default_rng(0)
    m = _dropout_model("Attention", {"dropout": 0.5, "return_attention_scores": True}, ["a", "a:1"])
    n = 400
    x = [np.repeat(rng.normal(size=(1, 3, 4)).astype(np.float32), n, 0),
         np.repeat(rng.normal(size=(1, 5, 4)).astype(np.float32), n, 0)]  # fmt: skip
    _, w_inf = m.predict(x)
    np.testing.assert_allclose(w_inf.sum(-1), 1.0, rtol=1e-5)
    y, w = _train_outputs(m, x, [np.zeros((n, 3, 4), np.float32), np.zeros((n, 3, 5), np.float32)])
    kept = w != 0
    np.testing.assert_allclose(w[kept], (w_inf / 0.5)[kept], rtol=1e-6)
    assert 0.45 < kept.mean() < 0.55
    np.testing.assert_allclose(y, np.einsum("nij,njc->nic", w, x[1]), rtol=1e-5, atol=1e-6)


def test_mha_dropout_is_unbiased_and_keeps_the_batch_whole():
    """Dropout on MultiHeadAttention's weights: the training output differs per sample but its
    mean over many copies of one sample is the inference output; the returned scores are the
    weights before dropout (Keras's). A random layer: the trainer never splits its batch."""
    from nnspec.runtime.trainer import split_masks

    rng = np.random.default_rng(1)
    m = _dropout_model(MHA, {"num_heads": 2, "key_dim": 3, "dropout": 0.3, "return_attention_scores": True},
                       ["a", "a:1"])  # fmt: skip
    n = 3000
    x = [np.repeat(rng.normal(size=(1, 3, 4)).astype(np.float32), n, 0),
         np.repeat(rng.normal(size=(1, 5, 4)).astype(np.float32), n, 0)]  # fmt: skip
    y_inf, s_inf = m.predict(x)
    y, s = _train_outputs(m, x, [np.zeros((n, 3, 4), np.float32), np.zeros((n, 2, 3, 5), np.float32)])
    np.testing.assert_allclose(s, s_inf, rtol=1e-5, atol=1e-7)
    assert np.abs(y - y_inf).max() > 1e-2  # dropped in training
    # The mean of n independent draws is within 5 standard errors of the expectation (a false
    # failure has a chance below 1e-5 over the 12 values).
    se = y.std(0) / np.sqrt(n)
    assert (np.abs(y.mean(0) - y_inf[0]) <= 5 * se + 1e-6).all(), np.abs(y.mean(0) - y_inf[0]) / se
    (tr,) = m._trainers.values()
    assert split_masks(tr.plan, [None, None]) is None


# ----------------------------------------------------------------------------- builder and errors


@pytest.mark.keras
def test_summary_prints_keras_class_names():
    """Keras exports GroupedQueryAttention as ``keras.layers.GroupQueryAttention``: a model file
    names the export, the summary prints the class, as Keras's does."""
    from nnspec import Input, Model, layers

    x = Input((4, 6))
    m = Model(x, layers.GroupQueryAttention(2, 4, 2, name="gqa")(x, x))
    lines = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "gqa (GroupedQueryAttention)" in text
    import keras

    kx = keras.Input((4, 6))
    km = keras.Model(kx, keras.layers.GroupQueryAttention(2, 4, 2, name="gqa")(kx, kx))
    klines = []
    km.summary(line_length=150, print_fn=lambda s, **kw: klines.append(s))
    assert "gqa (GroupedQueryAttention)" in "\n".join(klines)
    assert m.count_params() == km.count_params()


def test_builder_takes_keras_call_forms():
    from nnspec import Input, Model, layers

    q, v = Input((4, 6)), Input((5, 3))
    mha = layers.MultiHeadAttention(2, 3)
    y = mha(q, v, use_causal_mask=True)
    att = layers.Attention(use_scale=True)
    out, scores = att([q, layers.Dense(6)(v)], return_attention_scores=True)
    m = Model([q, v], [y, out, scores])
    assert [tuple(t.shape) for t in (y, out, scores)] == [(None, 4, 6), (None, 4, 6), (None, 4, 5)]
    cfg = m.get_config()
    again = Model.from_config(cfg)
    assert again.get_config() == cfg
    assert mha.get_config()["use_causal_mask"] is True
    with pytest.raises(TypeError, match="one list"):
        att(q, v)
    # a second call with other call arguments keeps them for itself: a shares entry with them
    y2 = mha(q, v, use_causal_mask=False)
    m2 = Model([q, v], [y, y2])
    shared = [d for d in m2.get_config()["layers"].values() if "shares" in d]
    assert shared == [{"shares": mha.name, "use_causal_mask": False}]
    assert mha.get_config()["use_causal_mask"] is True  # the layer keeps its first call's
    with pytest.raises(TypeError, match="unexpected"):
        layers.Dense(3)(q, use_causal_mask=True)


def _spec(layer: dict, shapes: list, dtypes=None) -> str:
    dtypes = dtypes or ["float32"] * len(shapes)
    names = [f"x{i}" for i in range(len(shapes))]
    ins = "\n".join(f"  {n}: {{shape: {list(s)}, dtype: {d}}}" for n, s, d in zip(names, shapes, dtypes))
    attrs = ", ".join(f"{k}: {v}" for k, v in layer.items())
    return (f"format: nnspec/1\ninputs:\n{ins}\nlayers:\n  a: {{{attrs}}}\nedges:\n  - {', '.join(names)} -> a\n"
            "outputs: [a]\n")  # fmt: skip


@pytest.mark.parametrize(
    "layer, shapes, dtypes, message",
    [
        ({"type": "Attention"}, [(4, 3), (5, 2)], None, "same feature size"),
        ({"type": "Attention"}, [(4, 3), (5, 3), (6, 3)], None, "same number of steps"),
        ({"type": "Attention"}, [(3,), (3,)], None, "rank 3"),
        ({"type": "AdditiveAttention"}, [(4, 3), (5, 3)], [None, "int32"], "float inputs"),
        ({"type": MHA, "num_heads": 2, "key_dim": 2}, [(4, 3), (5, 2, 3)], None, "one rank"),
        ({"type": MHA, "num_heads": 2, "key_dim": 2}, [(4, 3), (5, 3), (6, 3)], None, "but the last must be equal"),
        ({"type": MHA, "num_heads": 2, "key_dim": 2, "attention_axes": [1]}, [(2, 3, 4), (2, 3, 4)], None,
         "all of them"),
        ({"type": MHA, "num_heads": 2, "key_dim": 2, "use_causal_mask": "true"}, [(2, 3, 4), (2, 3, 4)], None,
         "rank 3"),
        ({"type": GQA, "head_dim": 2, "num_query_heads": 3, "num_key_value_heads": 2}, [(4, 3), (4, 3)], None,
         "multiple of num_key_value_heads"),
        ({"type": GQA, "head_dim": 2, "num_query_heads": 2, "num_key_value_heads": 2}, [(4, 3), (4, 2)], None,
         "same feature size"),
    ],
)
def test_shape_errors_name_the_layer_and_the_inputs(layer, shapes, dtypes, message):
    dtypes = [d or "float32" for d in dtypes] if dtypes else None
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.load(_spec(layer, shapes, dtypes))
    text = str(err.value)
    assert "E300" in text and message in text and "'a'" in text
