"""``nnspec.losses`` and ``nnspec.metrics`` as Keras users write them: loss and metric objects
by Keras's class names and arguments (positional in Keras's order), and Keras's loss functions,
against Keras's own objects and functions."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec import losses, metrics

RNG = np.random.default_rng(7)


def _probs(n, k):
    e = np.exp(RNG.normal(size=(n, k)))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


CASES = [  # (class name, positional args, keyword args, kind of labels)
    ("MeanSquaredError", (), {}, "real"),
    ("MeanAbsoluteError", (), {"reduction": "sum"}, "real"),
    ("Huber", (0.5,), {}, "real"),
    ("LogCosh", (), {}, "real"),
    ("BinaryCrossentropy", (True, 0.1), {}, "binary"),
    ("CategoricalCrossentropy", (), {"label_smoothing": 0.2}, "onehot"),
    ("SparseCategoricalCrossentropy", (), {"from_logits": True}, "sparse"),
    ("BinaryFocalCrossentropy", (True, 0.3), {"gamma": 1.0}, "binary"),
    ("CategoricalFocalCrossentropy", (0.5,), {}, "onehot"),
    ("KLDivergence", (), {}, "onehot"),
    ("CosineSimilarity", (), {}, "real"),
]


def _data(kind):
    if kind == "real":
        return RNG.normal(size=(6, 3)).astype(np.float32), RNG.normal(size=(6, 3)).astype(np.float32)
    if kind == "binary":
        return RNG.integers(0, 2, (6, 3)).astype(np.float32), RNG.uniform(0.05, 0.95, (6, 3)).astype(
            np.float32
        )
    if kind == "sparse":
        return RNG.integers(0, 4, 6), RNG.normal(size=(6, 4)).astype(np.float32)
    return np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 6)], _probs(6, 4)


@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_loss_objects_are_keras_loss_objects(case):
    import keras
    import torch

    name, args, kwargs, kind = case
    yt, yp = _data(kind)
    sw = RNG.uniform(0.5, 2, 6).astype(np.float32)
    ours = getattr(losses, name)(*args, **kwargs)
    theirs = getattr(keras.losses, name)(*args, **kwargs)
    t = torch.tensor(yt)
    got, want = ours(yt, yp, sample_weight=sw), theirs(t, torch.tensor(yp), sample_weight=torch.tensor(sw))
    assert got == pytest.approx(float(want), rel=1e-5)
    fn = theirs.get_config()["name"]  # Keras's name of the loss function too
    assert ours.name == fn


@pytest.mark.keras
def test_loss_functions_give_each_samples_loss():
    import keras

    yt, yp = _data("binary")
    for name in ("mean_squared_error", "binary_crossentropy", "hinge", "poisson", "log_cosh"):
        want = np.asarray(getattr(keras.losses, name)(yt, yp))
        np.testing.assert_allclose(getattr(losses, name)(yt, yp), want, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(losses.mse(yt, yp), losses.mean_squared_error(yt, yp))
    np.testing.assert_allclose(losses.binary_crossentropy(yt, yp, label_smoothing=0.2),
                               np.asarray(keras.losses.binary_crossentropy(yt, yp, label_smoothing=0.2)), rtol=1e-5)  # fmt: skip
    with pytest.raises(TypeError, match="at most 1 positional"):
        losses.Huber(1.0, 2.0)


@pytest.mark.keras
def test_every_keras_metric_class_is_in_nnspec_metrics_and_compiles():
    import keras
    from keras.src.metrics import ALL_OBJECTS

    keras.utils.clear_session()  # Keras's default metric names, without the _1 of a name seen before
    base = {"Metric", "MeanMetricWrapper"}
    names = {c.__name__ for c in ALL_OBJECTS} - base
    missing = sorted(n for n in names if not hasattr(metrics, n))
    assert missing == []
    yt, yp = _data("onehot")
    for name, kw in [("AUC", {"num_thresholds": 20}), ("F1Score", {"average": "macro"}),
                     ("BinaryCrossentropy", {"label_smoothing": 0.1}), ("TopKCategoricalAccuracy", {"k": 2}),
                     ("OneHotMeanIoU", {"num_classes": 4})]:  # fmt: skip
        ours, theirs = getattr(metrics, name)(**kw), getattr(keras.metrics, name)(**kw)
        ours.update_state(yt, yp)
        theirs.update_state(yt, yp)
        np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-5, err_msg=name)
        assert ours.name == theirs.name
    inp = nnspec.Input((4,))
    m = nnspec.Model(inp, nnspec.layers.Dense(4, activation="softmax")(inp))
    m.compile(optimizer=nnspec.optimizers.SGD(), loss=losses.CategoricalCrossentropy(),
              metrics=[metrics.AUC(num_thresholds=20), metrics.F1Score(average="micro")])  # fmt: skip
    logs = m.evaluate(RNG.normal(size=(6, 4)).astype(np.float32), yt, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "auc", "f1_score"}
