"""The rest of Keras 3's metrics catalog against keras.metrics (PyTorch backend) on the same batches:
RootMeanSquaredError, LogCoshError, CosineSimilarity, R2Score, Sum, the confusion counts, the
rates at a rate, F1Score/FBetaScore, the IoUs and the correlations; then every name of
``keras.src.metrics.ALL_OBJECTS_DICT``: its name, direction, config keys and config round trip.
Expected values always come from Keras."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from test_metrics import B, K, _batches, _compare, _softmax

from nnspec.runtime import metrics as M

pytestmark = [pytest.mark.keras, pytest.mark.filterwarnings("ignore:.*cast.*:UserWarning")]

RNG = np.random.default_rng(11)
BASES = ("Metric", "metric", "MeanMetricWrapper", "mean_metric_wrapper")
NEW = ("RootMeanSquaredError", "LogCoshError", "CosineSimilarity", "R2Score", "Sum", "TruePositives",
       "FalsePositives", "TrueNegatives", "FalseNegatives", "PrecisionAtRecall", "RecallAtPrecision",
       "SensitivityAtSpecificity", "SpecificityAtSensitivity", "F1Score", "FBetaScore", "IoU", "BinaryIoU",
       "MeanIoU", "OneHotIoU", "OneHotMeanIoU", "PearsonCorrelation", "ConcordanceCorrelation")  # fmt: skip
REQUIRED = {  # Keras's arguments without defaults
    "IoU": {"num_classes": K, "target_class_ids": [0, 2]}, "OneHotIoU": {"num_classes": K, "target_class_ids": [1]},
    "MeanIoU": {"num_classes": K}, "OneHotMeanIoU": {"num_classes": K}, "PrecisionAtRecall": {"recall": 0.5},
    "RecallAtPrecision": {"precision": 0.5}, "SensitivityAtSpecificity": {"specificity": 0.5},
    "SpecificityAtSensitivity": {"sensitivity": 0.5},
}  # fmt: skip


def _keras(cls, **kw):
    import keras

    return getattr(keras.metrics, cls)(**kw)


def _more_batches(kind, n=3):
    """Batches of kinds ``_batches`` lacks: predictions on the thresholds' edges, multi-label
    data, integer class ids (some out of range), segmentation maps with per-pixel integer weights."""
    out = []
    for i in range(n):
        sw = RNG.uniform(0, 2, B).astype(np.float32) if i != 1 else None
        if kind == "edges":
            yt = RNG.integers(0, 2, (B, 1)).astype(np.float32)
            yp = RNG.choice(np.float32([0, 0.25, 0.5, 0.75, 1, 0.3, 0.9, 1.2, -0.1]), (B, 1))
        elif kind == "multilabel":
            yt = RNG.integers(0, 2, (B, K)).astype(np.float32)
            yp = RNG.uniform(0, 1, (B, K)).astype(np.float32)
        elif kind == "ids":
            yt = RNG.integers(-1, K + 1, B)
            yp = RNG.integers(0, K, B)
            sw = RNG.integers(0, 3, B) if i != 1 else None
        elif kind == "segmentation":
            yt = RNG.integers(0, K, (B, 4))
            yp = _softmax(RNG.normal(size=(B, 4, K)))
            sw = RNG.integers(0, 3, (B, 4)) if i != 1 else None
        out.append((yt, yp, sw, None))
    return out


def _data(kind, masked=False):
    return (
        _more_batches(kind)
        if kind in ("edges", "multilabel", "ids", "segmentation")
        else _batches(kind, masked=masked)
    )


CASES = [
    ("root_mean_squared_error", "RootMeanSquaredError", {}, "regression"),
    ("log_cosh_error", "LogCoshError", {}, "regression"),
    ("cosine_similarity", "CosineSimilarity", {}, "regression"),
    ("pearson_correlation", "PearsonCorrelation", {}, "regression"),
    ("concordance_correlation", "ConcordanceCorrelation", {}, "regression"),
    ("true_positives", "TruePositives", {}, "binary"),
    ({"type": "false_positives", "thresholds": 0.3}, "FalsePositives", {"thresholds": 0.3}, "binary"),
    ({"type": "true_negatives", "thresholds": [0.0, 0.5, 1.0]}, "TrueNegatives", {"thresholds": [0.0, 0.5, 1.0]},
     "edges"),
    ({"type": "false_negatives", "thresholds": [0.1, 0.6, 0.9]}, "FalseNegatives",
     {"thresholds": [0.1, 0.6, 0.9]}, "binary"),
    # evenly spaced thresholds: Keras buckets the predictions; these sit on the thresholds
    ({"type": "precision", "thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "Precision",
     {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "edges"),
    ({"type": "precision_at_recall", "recall": 0.6}, "PrecisionAtRecall", {"recall": 0.6}, "binary"),
    ({"type": "recall_at_precision", "precision": 0.5, "num_thresholds": 7}, "RecallAtPrecision",
     {"precision": 0.5, "num_thresholds": 7}, "edges"),
    ({"type": "sensitivity_at_specificity", "specificity": 0.4, "num_thresholds": 1}, "SensitivityAtSpecificity",
     {"specificity": 0.4, "num_thresholds": 1}, "binary"),
    ({"type": "specificity_at_sensitivity", "sensitivity": 0.5, "class_id": 1},
     "SpecificityAtSensitivity", {"sensitivity": 0.5, "class_id": 1}, "categorical"),
    # two thresholds, 0 and 1, bucketed too: a prediction above 1 is not above the threshold 1
    ({"type": "precision_at_recall", "recall": 0.1, "num_thresholds": 2}, "PrecisionAtRecall",
     {"recall": 0.1, "num_thresholds": 2}, "edges"),
    ({"type": "SensitivityAtSpecificity", "specificity": 0.8, "class_id": 3}, "SensitivityAtSpecificity",
     {"specificity": 0.8, "class_id": 3}, "multilabel"),
    ("f1_score", "F1Score", {}, "categorical"),
    ({"type": "f1_score", "average": "micro"}, "F1Score", {"average": "micro"}, "multilabel"),
    ({"type": "f1_score", "average": "macro", "threshold": 0.3}, "F1Score", {"average": "macro", "threshold": 0.3},
     "multilabel"),
    ({"type": "f_beta_score", "beta": 2.0, "average": "weighted"}, "FBetaScore", {"beta": 2.0, "average": "weighted"},
     "multilabel"),
    ({"type": "FBetaScore", "beta": 0.5, "threshold": 0.5}, "FBetaScore", {"beta": 0.5, "threshold": 0.5},
     "categorical"),
    ({"type": "io_u", "num_classes": K, "target_class_ids": [0, 2], "sparse_y_pred": False}, "IoU",
     {"num_classes": K, "target_class_ids": [0, 2], "sparse_y_pred": False}, "sparse"),
    ({"type": "mean_io_u", "num_classes": K}, "MeanIoU", {"num_classes": K}, "ids"),
    ({"type": "mean_io_u", "num_classes": K, "ignore_class": 0, "sparse_y_pred": False}, "MeanIoU",
     {"num_classes": K, "ignore_class": 0, "sparse_y_pred": False}, "sparse"),
    ({"type": "mean_io_u", "num_classes": K, "sparse_y_pred": False}, "MeanIoU",
     {"num_classes": K, "sparse_y_pred": False}, "segmentation"),
    ({"type": "one_hot_io_u", "num_classes": K, "target_class_ids": [1, 3]}, "OneHotIoU",
     {"num_classes": K, "target_class_ids": [1, 3]}, "categorical"),
    ({"type": "one_hot_mean_io_u", "num_classes": K, "ignore_class": 2}, "OneHotMeanIoU",
     {"num_classes": K, "ignore_class": 2}, "categorical"),
    ("binary_io_u", "BinaryIoU", {}, "binary"),
    ({"type": "binary_io_u", "target_class_ids": [1], "threshold": 0.3}, "BinaryIoU",
     {"target_class_ids": [1], "threshold": 0.3}, "edges"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,masked",
    [
        (c, m)
        for c in CASES
        for m in ((False, True) if c[3] in ("regression", "binary", "categorical") else (False,))
    ],
    ids=lambda v: ("masked" if v else "plain") if isinstance(v, bool) else str(v[0])[:60],
)
def test_metrics_match_keras(case, masked):
    ident, cls, kw, kind = case
    ours = M.get_metric(ident)
    assert type(ours).__name__ == cls
    _compare(ours, _keras(cls, **kw), _data(kind, masked))


@pytest.mark.parametrize("cls", ["CosineSimilarity", "LogCoshError", "PearsonCorrelation", "ConcordanceCorrelation",
                                 "RootMeanSquaredError"])  # fmt: skip
def test_sequence_metrics_with_mask_match_keras(cls):
    batches = [(yt, yp, None if sw is None else np.repeat(sw[:, None], 4, 1), m)
               for yt, yp, sw, m in _batches("regression", masked=True, seq=True)]  # fmt: skip
    _compare(M.get_metric({"type": cls}), _keras(cls), batches)


def test_correlations_over_the_batch_axis():
    for cls in ("PearsonCorrelation", "ConcordanceCorrelation"):
        batches = [(yt, yp, None, None) for yt, yp, _, _ in _batches("regression")]
        _compare(M.get_metric({"type": cls, "axis": 0}), _keras(cls, axis=0), batches)


def test_array_results_per_class_and_per_threshold():
    for ident, cls, kw, kind, n in [
        ({"type": "f1_score"}, "F1Score", {}, "multilabel", K),
        ({"type": "true_positives", "thresholds": [0.2, 0.5, 0.7]}, "TruePositives", {"thresholds": [0.2, 0.5, 0.7]},
         "binary", 3),
    ]:  # fmt: skip
        ours, theirs = M.get_metric(ident), _keras(cls, **kw)
        _compare(ours, theirs, _data(kind))
        yt, yp, _, _ = _data(kind)[0]
        ours.update_state(yt, yp)
        assert np.shape(ours.result()) == (n,)


@pytest.mark.parametrize("kw", [{}, {"class_aggregation": None}, {"class_aggregation": "variance_weighted_average"},
                                {"num_regressors": 2}])  # fmt: skip
@pytest.mark.parametrize("shape", [(B, 3), (B, 1)])
def test_r2_score_matches_keras(kw, shape):
    import torch

    ours, theirs = M.get_metric({"type": "r2_score", **kw}), _keras("R2Score", **kw)
    for i in range(3):
        yt = RNG.normal(size=shape).astype(np.float32)
        yp = (yt + RNG.normal(size=shape) * 0.5).astype(np.float32)
        if shape[1] == 1 and i == 2:
            yt = yt[:, 0]  # labels (n,) against predictions (n, 1)
        sw = RNG.uniform(0, 2, B).astype(np.float32) if i != 1 else None
        ours.update_state(yt, yp, sample_weight=sw)
        theirs.update_state(torch.tensor(yt), torch.tensor(yp), None if sw is None else torch.tensor(sw))
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-6)
    ours.reset_state()
    theirs.reset_state()
    with np.errstate(all="ignore"), warnings.catch_warnings():  # nothing seen: 0 / 0
        warnings.simplefilter("ignore")
        np.testing.assert_equal(np.asarray(ours.result()), np.asarray(theirs.result()))


def test_r2_score_warns_and_falls_back_as_keras_does():
    yt, yp = np.float32([[1.0], [4.0], [3.0]]), np.float32([[2.0], [4.0], [4.0]])
    for p in (2, 5):
        m = M.R2Score(num_regressors=p)
        m.update_state(yt, yp)
        with pytest.warns(UserWarning, match="Falling back to standard R2 score"):
            assert m.result() == pytest.approx(float(_keras("R2Score")(yt, yp)), rel=1e-6)


@pytest.mark.parametrize("sw_shape", [None, (B,), (B, 3), (B, 1)])
def test_sum_matches_keras(sw_shape):
    values = RNG.normal(size=(B, 3)).astype(np.float32)
    sw = None if sw_shape is None else RNG.uniform(0, 2, sw_shape).astype(np.float32)
    ours, theirs = M.get_metric("sum"), _keras("Sum")
    for _ in range(2):
        ours.update_state(values, sw)
        theirs.update_state(values, sw)
    assert ours.result() == pytest.approx(float(theirs.result()), rel=1e-6)


def test_iou_truncates_float_weights_and_warns_as_keras_does():
    yt, yp = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    sw = np.float32([0.5, 1.7, 1.0, 2.2])
    theirs = _keras("MeanIoU", num_classes=3)
    with pytest.warns(UserWarning, match="integer"):
        theirs.update_state(yt, yp, sw)
    ours = M.MeanIoU(3)
    with pytest.warns(UserWarning, match="integer"):
        ours.update_state(yt, yp, sw)
    assert ours.result() == pytest.approx(float(theirs.result()), rel=1e-6)


def test_arguments_refused_as_keras_refuses_them():
    with pytest.raises(ValueError, match="axis=-1"):
        M.get_metric({"type": "cosine_similarity", "axis": 1})
    for cls, kw in [("FBetaScore", {"beta": 2}), ("F1Score", {"average": "samples"}), ("F1Score", {"threshold": 1}),
                    ("IoU", {"num_classes": 2, "target_class_ids": [2]}), ("R2Score", {"num_regressors": -1}),
                    ("R2Score", {"class_aggregation": "mean"}), ("PrecisionAtRecall", {"recall": 1.5}),
                    ("SensitivityAtSpecificity", {"specificity": 0.5, "num_thresholds": 0}),
                    ("TruePositives", {"thresholds": [0.5, 2.0]})]:  # fmt: skip
        with pytest.raises(ValueError):
            _keras(cls, **kw)
        with pytest.raises(ValueError):
            M.get_metric({"type": cls, **kw})
    with pytest.raises(ValueError, match="2-D"):
        M.F1Score().update_state(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))


# ------------------------------------------------------------------------------------ the catalog


def _catalog():
    from keras.src.metrics import ALL_OBJECTS_DICT

    return sorted((k, v) for k, v in ALL_OBJECTS_DICT.items() if k not in BASES)


def _sample(cls_name):
    """A batch ``cls_name`` takes: values for Mean and Sum, else (y_true, y_pred)."""
    if cls_name in ("Mean", "Sum"):
        return (RNG.normal(size=(B, 3)),)
    yt, yp, _, _ = _batches("binary" if cls_name == "BinaryIoU" else "sparse" if "Sparse" in cls_name else
                            "categorical", n=1)[0]  # fmt: skip
    if cls_name in ("IoU", "MeanIoU"):
        yt, yp = RNG.integers(0, K, B), RNG.integers(0, K, B)
    return yt, yp


def test_every_keras_metric_name_resolves_with_keras_name_direction_and_config():
    import torch
    from keras.src.trainers.compile_utils import get_metric as keras_compile_metric

    shapes = ((B, K), (B, K))
    for key, kcls in _catalog():
        args = REQUIRED.get(kcls.__name__, {})
        theirs = kcls(**args)
        ours = M.get_metric({"type": key, **args}, *shapes)
        assert ours.name == re.sub(r"_\d+$", "", theirs.name), key  # Keras numbers repeated names
        assert ours.direction == getattr(theirs, "_direction", None), key
        if key.lower() != "accuracy":
            assert type(ours).__name__ == kcls.__name__ or isinstance(ours, M.LossMetric), key
        if kcls.__name__ in NEW:
            assert set(ours.get_config()) == set(theirs.get_config()) - {"dtype"}, key
        if not args:  # a string, as compile takes it: named by the string
            yt, yp = torch.zeros(shapes[0]), torch.zeros(shapes[1])
            assert M.get_metric(key, *shapes).name == keras_compile_metric(key, yt, yp).name == key
        again = type(ours).from_config(ours.get_config())
        assert again.get_config() == ours.get_config(), key
        batch = _sample(kcls.__name__)
        ours.update_state(*batch)
        again.update_state(*batch)
        np.testing.assert_array_equal(np.asarray(again.result()), np.asarray(ours.result()), err_msg=key)


def test_loss_metric_config_round_trips_its_loss():
    m = M.get_metric({"type": "binary_crossentropy", "from_logits": True})
    again = M.LossMetric.from_config(m.get_config())
    assert again.loss.type == "binary_crossentropy" and again.get_config() == m.get_config()
