"""ReversibleEmbedding, and call arguments given per call of a shared layer, against Keras 3
(PyTorch backend).

- Gradient cases (``CASES``, in test_registry_contract's GRADIENT_SUITES): the lookup and the
  reverse projection (tied and untied, with and without a soft cap), against float64 finite
  differences and Keras's autograd.
- A language-model-shaped Keras model (one layer called forward and in reverse) read from its
  JSON: counts, predictions and one SGD step as Keras; the file it writes.
- A shared MultiHeadAttention called with and without ``use_causal_mask``; what a ``shares``
  entry may not give.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import nnspec
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grad_harness import VOCAB, Case, GradSuite, check_fd, check_keras, close, positive_ids

R = "ReversibleEmbedding"
# fmt: off
CASES = [
    Case("lookup", R, {"input_dim": VOCAB, "output_dim": 3}, ((4,),), data=positive_ids, ids=True),
    Case("reverse-tied", R, {"input_dim": VOCAB, "output_dim": 3, "reverse": True}, ((2, 3),)),
    Case("reverse-untied-capped", R, {"input_dim": VOCAB, "output_dim": 3, "reverse": True, "tie_weights": False,
                                      "logit_soft_cap": 0.7}, ((3,),)),
    Case("reverse-tied-capped", R, {"input_dim": 5, "output_dim": 4, "reverse": True, "logit_soft_cap": 2.0},
         ((2, 4),)),
]
# fmt: on
SUITE = GradSuite(CASES)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_finite_differences(case_id):
    check_fd(SUITE.by_id[case_id], SUITE.result(case_id))


@pytest.mark.keras
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_keras_autograd(case_id):
    check_keras(SUITE.by_id[case_id], SUITE.result(case_id))


def _language_model(tie: bool, cap):
    import keras
    from keras import layers as KL

    t = keras.Input((6,), dtype="int32")
    emb = KL.ReversibleEmbedding(20, 8, mask_zero=True, tie_weights=tie, logit_soft_cap=cap, name="tokens")
    h = KL.Dense(8, activation="tanh", name="mix")(emb(t))
    return keras.Model(t, emb(h, reverse=True))


@pytest.mark.keras
@pytest.mark.parametrize("tie, cap", [(True, 3.0), (False, None)])
def test_a_language_model_reads_predicts_and_trains_as_keras(tie, cap):
    import keras

    km = _language_model(tie, cap)
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params() == 20 * 8 + (0 if tie else 8 * 20) + 72
    assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in km.weights]
    m.set_weights(km.get_weights())
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (3, 6)).astype("int32")
    ids[0, 3:] = 0  # masked steps: the mask reaches the reverse call, which passes none on
    close(m.predict(ids), km.predict(ids, verbose=0), 1e-5, "predictions")
    y = rng.normal(size=(3, 6, 20)).astype("float32")
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    m.compile(optimizer=nnspec.optimizers.SGD(0.1), loss="mse")
    np.testing.assert_allclose(m.train_on_batch(ids, y), km.train_on_batch(ids, y), rtol=1e-5)
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-7)
    spec = m.get_config()["layers"]
    assert spec["tokens.1"] == {"shares": "tokens", "reverse": True}


def test_the_builder_writes_the_reverse_call_as_a_shares_entry():
    tokens = nnspec.Input((5,), dtype="int32")
    emb = nnspec.layers.ReversibleEmbedding(11, 4, name="emb")
    logits = emb(nnspec.layers.Dense(4, name="d")(emb(tokens)), reverse=True)
    m = nnspec.Model(tokens, logits)
    assert m.output_shape == (None, 5, 11)
    assert m.count_params() == 11 * 4 + 20
    again = nnspec.model_from_json(m.to_json())
    assert again.get_config()["layers"]["emb.1"] == {"shares": "emb", "reverse": True}
    again.set_weights(m.get_weights())
    ids = np.random.default_rng(1).integers(0, 11, (2, 5)).astype("int32")
    table, kernel, bias = m.get_weights()
    want = (table[ids] @ kernel + bias) @ table.T  # d has no activation: plain products
    close(m.predict(ids), want, 1e-5, "numpy")
    close(again.predict(ids), want, 1e-5, "reloaded")


@pytest.mark.keras
def test_a_shared_attention_layer_with_a_causal_mask_on_one_call():
    import keras
    from keras import layers as KL

    q = keras.Input((5, 8))
    mha = KL.MultiHeadAttention(2, 4, name="mha")
    # the second call leaves use_causal_mask out: Keras's default (False) for that call, not the
    # first call's True
    km = keras.Model(q, [mha(q, q, use_causal_mask=True), mha(q, q)])
    m = nnspec.model_from_json(km.to_json())
    assert m.get_config()["layers"]["mha"]["use_causal_mask"] is True
    assert m.get_config()["layers"]["mha.1"] == {"shares": "mha", "use_causal_mask": False}
    m.set_weights(km.get_weights())
    x = np.random.default_rng(2).normal(size=(2, 5, 8)).astype("float32")
    got, want = m.predict(x), km.predict(x, verbose=0)
    for a, b in zip(got, want):
        close(a, b, 1e-5, "attention")
    assert np.abs(got[0] - got[1]).max() > 1e-3  # the two calls differ


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"shares": "lstm", "reverse": True}, "'reverse' is not a call argument of the shared layer (LSTM takes none)"),
        ({"shares": "lstm", "units": 3}, "units"),
    ],
)
def test_a_shares_entry_gives_only_call_arguments_of_its_layer(entry, message):
    spec = {"format": "nnspec/1", "inputs": {"a": {"shape": [4, 2]}, "b": {"shape": [4, 2]}},
            "layers": {"lstm": {"type": "LSTM", "units": 3}, "again": entry},
            "edges": ["a -> lstm", "b -> again"], "outputs": ["lstm", "again"]}  # fmt: skip
    with pytest.raises(SpecError, match="E101") as e:
        nnspec.Model.from_config(spec)
    assert message in str(e.value)
