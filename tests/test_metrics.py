"""Metrics against keras.metrics on the same batches (several update_state calls), accuracy
resolution as Keras's compile does it, and the Mean tracker."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nnspec.runtime import metrics as M

RNG = np.random.default_rng(5)
B, K = 16, 6


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _batches(kind, n=3, weighted=True, masked=False, seq=False):
    out = []
    lead = (B, 4) if seq else (B,)
    for i in range(n):
        if kind == "binary":
            yt = RNG.integers(0, 2, (*lead, 1)).astype(np.float32)
            yp = RNG.uniform(0, 1, (*lead, 1)).astype(np.float32)
            yp.reshape(-1)[0] = 0.5  # at the threshold: not positive
        elif kind == "categorical":
            yt = np.eye(K, dtype=np.float32)[RNG.integers(0, K, lead)]
            yp = _softmax(RNG.normal(size=(*lead, K)))
        elif kind == "sparse":
            yt = RNG.integers(0, K, lead)
            yp = _softmax(RNG.normal(size=(*lead, K)))
        elif kind == "regression":
            yt = RNG.normal(size=(*lead, 3)).astype(np.float32)
            yp = RNG.normal(size=(*lead, 3)).astype(np.float32)
        sw = RNG.uniform(0, 2, B).astype(np.float32) if weighted and i != 1 else None
        mask = (RNG.uniform(size=lead) > 0.3).astype(np.float32) if masked else None
        out.append((yt, yp, sw, mask))
    return out


def _compare(ours, theirs, batches, rtol=1e-6):
    import torch
    from keras.src import backend

    for yt, yp, sw, mask in batches:
        ours.update_state(yt, yp, sample_weight=sw, mask=mask)
        p = torch.tensor(yp)
        if mask is not None:
            backend.set_keras_mask(p, torch.tensor(mask.astype(bool)))
        theirs.update_state(torch.tensor(yt), p, None if sw is None else torch.tensor(sw))
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=rtol, atol=1e-7)
    ours.reset_state()
    theirs.reset_state()
    assert np.all(np.asarray(ours.result()) == 0.0)


MEAN_CASES = [
    ("accuracy", "BinaryAccuracy", {}, "binary", ((B, 1), (B, 1))),
    ({"type": "binary_accuracy", "threshold": 0.7}, "BinaryAccuracy", {"threshold": 0.7}, "binary", None),
    ("acc", "CategoricalAccuracy", {}, "categorical", ((B, K), (B, K))),
    ("accuracy", "SparseCategoricalAccuracy", {}, "sparse", ((B,), (B, K))),
    ("categorical_accuracy", "CategoricalAccuracy", {}, "categorical", None),
    ("sparse_categorical_accuracy", "SparseCategoricalAccuracy", {}, "sparse", None),
    ("top_k_categorical_accuracy", "TopKCategoricalAccuracy", {}, "categorical", None),
    (
        {"type": "top_k_categorical_accuracy", "k": 2},
        "TopKCategoricalAccuracy",
        {"k": 2},
        "categorical",
        None,
    ),
    ("sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy", {}, "sparse", None),
    (
        {"type": "sparse_top_k_categorical_accuracy", "k": 3},
        "SparseTopKCategoricalAccuracy",
        {"k": 3},
        "sparse",
        None,
    ),
    ("mse", "MeanSquaredError", {}, "regression", None),
    ("mae", "MeanAbsoluteError", {}, "regression", None),
    ("binary_crossentropy", "BinaryCrossentropy", {}, "binary", None),
    ("categorical_crossentropy", "CategoricalCrossentropy", {}, "categorical", None),
]


@pytest.mark.keras
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("case", MEAN_CASES, ids=lambda c: str(c[0])[:40] + "-" + c[1])
def test_mean_metrics_match_keras(case, masked):
    import keras

    ident, cls, kw, kind, shapes = case
    ours = M.get_metric(ident, *(shapes or (None, None)))
    assert type(ours).__name__ == cls or isinstance(ours, M.LossMetric)
    _compare(ours, getattr(keras.metrics, cls)(**kw), _batches(kind, masked=masked))


@pytest.mark.keras
@pytest.mark.parametrize("kind,cls", [("sparse", "SparseCategoricalAccuracy"), ("categorical", "CategoricalAccuracy"),
                                      ("regression", "MeanSquaredError")])  # fmt: skip
def test_sequence_metrics_with_mask_match_keras(kind, cls):
    import keras

    rng_sw = [(yt, yp, None if sw is None else np.repeat(sw[:, None], 4, 1), m)
              for yt, yp, sw, m in _batches(kind, masked=True, seq=True)]  # fmt: skip
    ours = M.get_metric({"type": cls})
    _compare(ours, getattr(keras.metrics, cls)(), rng_sw)


CONFUSION_CASES = [
    ("precision", "Precision", {}, "binary"),
    ("recall", "Recall", {}, "binary"),
    ({"type": "precision", "thresholds": [0.3, 0.6]}, "Precision", {"thresholds": [0.3, 0.6]}, "binary"),
    ({"type": "recall", "thresholds": 0.8}, "Recall", {"thresholds": 0.8}, "binary"),
    ({"type": "recall", "class_id": 2}, "Recall", {"class_id": 2}, "categorical"),
    ({"type": "precision", "top_k": 2}, "Precision", {"top_k": 2}, "categorical"),
    ("auc", "AUC", {}, "binary"),
    ({"type": "auc", "curve": "PR"}, "AUC", {"curve": "PR"}, "binary"),
    ({"type": "auc", "num_thresholds": 7, "summation_method": "minoring"}, "AUC",
     {"num_thresholds": 7, "summation_method": "minoring"}, "binary"),
    ({"type": "auc", "summation_method": "majoring", "curve": "PR"}, "AUC",
     {"summation_method": "majoring", "curve": "PR"}, "binary"),
    ({"type": "auc", "thresholds": [0.1, 0.5, 0.77]}, "AUC", {"thresholds": [0.1, 0.5, 0.77]}, "binary"),
    ({"type": "auc", "from_logits": True}, "AUC", {"from_logits": True}, "regression"),
    ("auc", "AUC", {}, "categorical"),
]  # fmt: skip


@pytest.mark.keras
@pytest.mark.parametrize("case", CONFUSION_CASES, ids=lambda c: str(c[0])[:50])
def test_confusion_metrics_match_keras(case):
    import keras

    ident, cls, kw, kind = case
    batches = _batches(kind)
    if kind == "regression":  # logits against 0/1 labels
        batches = [((yt > 0).astype(np.float32), yp, sw, m) for yt, yp, sw, m in batches]
    _compare(M.get_metric(ident), getattr(keras.metrics, cls)(**kw), batches)


def test_accuracy_resolution_like_compile():
    assert type(M.get_metric("accuracy", (8, 1), (8, 1))) is M.BinaryAccuracy
    assert type(M.get_metric("accuracy", (8,), (8, 1))) is M.BinaryAccuracy
    assert type(M.get_metric("accuracy", (8,), (8, 4))) is M.SparseCategoricalAccuracy
    assert type(M.get_metric("accuracy", (8, 1), (8, 4))) is M.SparseCategoricalAccuracy
    assert type(M.get_metric("accuracy", (8, 4), (8, 4))) is M.CategoricalAccuracy
    assert type(M.get_metric("accuracy", (8, 5, 3), (8, 5, 3))) is M.CategoricalAccuracy
    assert type(M.get_metric("accuracy", (8, 5), (8, 5, 3))) is M.SparseCategoricalAccuracy
    # Keras 3 decides by shapes: binary crossentropy over several outputs gives categorical accuracy
    assert type(M.get_metric("accuracy", (8, 4), (8, 4), loss="binary_crossentropy")) is M.CategoricalAccuracy
    # without the label shape, the loss stands in
    assert type(M.get_metric("acc", None, (8, 4), loss="sparse_categorical_crossentropy")) is (
        M.SparseCategoricalAccuracy
    )
    assert type(M.get_metric("acc", None, None, loss="binary_crossentropy")) is M.BinaryAccuracy
    assert type(M.get_metric("accuracy")) is M.Accuracy
    assert M.get_metric("acc", (8, 1), (8, 1)).name == "acc"
    # compile names a metric by the identifier string given, whatever it resolves to
    assert M.get_metric("mse").name == "mse" and M.get_metric("MeanSquaredError").name == "MeanSquaredError"
    assert M.get_metric({"type": "mse"}).name == "mean_squared_error"
    assert M.get_metric({"type": "auc", "name": "my_auc"}).name == "my_auc"
    with pytest.raises(ValueError, match="did you mean 'precision'"):
        M.get_metric("precison")


def test_directions():
    for name, d in [("acc", "up"), ("auc", "up"), ("precision", "up"), ("recall", "up"), ("mse", "down"),
                    ("mae", "down"), ("binary_crossentropy", "down"), ("top_k_categorical_accuracy", "up")]:  # fmt: skip
        assert M.get_metric(name, (4, 3), (4, 3)).direction == d


def test_mean_tracker_weighted_by_batch_size():
    m = M.Mean(name="loss")
    m.update_state(1.0, sample_weight=32)
    m.update_state(4.0, sample_weight=8)
    assert m.result() == pytest.approx((32 + 32) / 40)
    m.reset_state()
    assert m.result() == 0.0
    m.update_state(np.array([1.0, 2.0, 3.0]))
    assert m.result() == pytest.approx(2.0)


def test_top_k_larger_than_classes_counts_every_sample():
    m = M.get_metric("sparse_top_k_categorical_accuracy")
    m.update_state(np.array([0, 1, 2]), _softmax(RNG.normal(size=(3, 3))))
    assert m.result() == 1.0


@pytest.mark.keras
def test_metric_names_resolve_as_keras_does():
    import keras

    for name in ("mse", "mae", "MSE", "precision", "recall", "auc", "binary_accuracy", "categorical_accuracy",
                 "binary_crossentropy", "kl_divergence", "poisson", "hinge"):  # fmt: skip
        keras_name = re.sub(r"_\d+$", "", keras.metrics.get(name).name)  # Keras numbers repeated auto names
        assert keras_name == M.get_metric({"type": name}).name
