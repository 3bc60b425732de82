"""Metrics as stateful objects with Keras 3 semantics, computed with NumPy after each batch.

Mirrors ``keras/src/metrics``: ``update_state(y_true, y_pred, sample_weight=None, mask=None)``
adds a batch, ``result()`` gives the value over every batch since ``reset_state()``.

- Mean-based metrics (``BinaryAccuracy`` with ``threshold=0.5``, ``CategoricalAccuracy``,
  ``SparseCategoricalAccuracy``, ``TopKCategoricalAccuracy``/``SparseTopKCategoricalAccuracy``
  with ``k=5``, ``MeanSquaredError``, ``MeanAbsoluteError`` and every loss as a metric) follow
  ``MeanMetricWrapper``: per-sample values (averaged over any axes beyond the weight's), weighted
  by ``sample_weight * mask`` (the mask as 0/1, not rescaled as the loss rescales it), then
  ``sum(values * w) / sum(w)``; without weights, the mean over samples.
- ``Precision``, ``Recall`` (threshold 0.5, or ``thresholds``, ``top_k``, ``class_id``) and
  ``AUC`` (200 thresholds, ROC, interpolation; also PR, minoring/majoring, ``from_logits``)
  accumulate confusion counts as Keras does; with evenly spaced thresholds AUC buckets each
  prediction by ``ceil(p * (T - 1)) - 1``. Keras ignores masks for these; so do we.
- In ``compile``, Keras's ``metrics=`` are *not* weighted by ``sample_weight`` (only
  ``weighted_metrics=`` are); the fit loop decides what to pass. Masks always apply to the
  mean-based metrics.
- ``"accuracy"``/``"acc"`` resolve as Keras's ``compile_utils.get_metric`` does, from the shapes
  of the labels and the predictions: binary when the prediction's last axis is 1, sparse when
  the labels have a lower rank or a last axis of 1 against several classes, else categorical.
  :func:`get_metric` takes the shapes, and the loss as a fallback when the label shape is not
  known. The metric is named by the identifier string given (``"acc"`` stays ``acc``).

Differences: ``k`` larger than the number of classes counts every sample as a hit (Keras's
``top_k`` would fail). Totals accumulate in float64 (Keras: float32 variables), so long runs
agree with Keras to float32 rounding of Keras's own sums.
"""

from __future__ import annotations

import numpy as np

from . import losses as _losses

F32 = np.float32
NEG_INF = F32(-1e10)  # Keras's metrics_utils.NEG_INF


def _squeeze_or_expand(x1, x2, expand_rank_1=True):
    """Keras's ``squeeze_or_expand_to_same_rank``: fix a rank difference of one trailing axis of 1."""
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


class Metric:
    """Base class. ``direction`` is ``"up"`` when larger is better (used by callbacks' ``mode="auto"``)."""

    direction = "up"
    default_name = "metric"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.default_name
        self.reset_state()

    def reset_state(self) -> None:
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class Mean(Metric):
    """The weighted mean of values (Keras ``Mean``); the fit loop's loss tracker uses it with
    ``sample_weight`` = batch size."""

    direction = "down"
    default_name = "mean"

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None) -> None:
        values = np.asarray(values, np.float64)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, np.float64)
            values, sw = _squeeze_or_expand(values, sw)
            wn, vn = sw.ndim, values.ndim
            if vn > wn:
                values = values.mean(axis=tuple(range(wn, vn)))
            sw = np.broadcast_to(sw, values.shape)
            values = values * sw
            if wn > 1:
                sw = sw.mean(axis=tuple(range(1, wn)))
        if values.ndim > 1:
            values = values.mean(axis=tuple(range(1, values.ndim)))
        self.total += float(values.sum())
        if sample_weight is not None:
            self.count += float(np.sum(sw))
        else:
            self.count += values.shape[0] if values.ndim >= 1 else 1

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """A per-sample function averaged with sample weights and masks (Keras ``MeanMetricWrapper``)."""

    def __init__(self, name: str | None = None, **kwargs) -> None:
        self._kwargs = kwargs
        super().__init__(name)

    def values(self, y_true, y_pred) -> np.ndarray:
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        v = self.values(np.asarray(y_true), np.asarray(y_pred))
        if mask is not None:
            m = np.asarray(mask, np.float64)
            if sample_weight is not None:
                m, sw = _squeeze_or_expand(m, np.asarray(sample_weight, np.float64))
                sample_weight = sw * m
            else:
                sample_weight = m
        super().update_state(v, sample_weight)

    def get_config(self) -> dict:
        return {"name": self.name, **self._kwargs}


class Accuracy(MeanMetricWrapper):
    """Exact equality of labels and predictions."""

    default_name = "accuracy"
    direction = "up"

    def values(self, y_true, y_pred):
        y_pred = np.asarray(y_pred, F32)
        y_true, y_pred = _squeeze_or_expand(np.asarray(y_true, F32), y_pred)
        return (y_true == y_pred).astype(np.float64)


class BinaryAccuracy(MeanMetricWrapper):
    """``y_true == (y_pred > threshold)``."""

    default_name = "binary_accuracy"
    direction = "up"

    def __init__(self, name=None, threshold=0.5) -> None:
        self.threshold = threshold
        super().__init__(name, threshold=threshold)

    def values(self, y_true, y_pred):
        y_true, y_pred = _squeeze_or_expand(y_true, np.asarray(y_pred, F32))
        pred = (y_pred > F32(self.threshold)).astype(y_true.dtype)
        return (y_true == pred).astype(np.float64)


class CategoricalAccuracy(MeanMetricWrapper):
    """``argmax(y_true) == argmax(y_pred)`` (the first index among ties)."""

    default_name = "categorical_accuracy"
    direction = "up"

    def values(self, y_true, y_pred):
        return (np.argmax(y_true, -1) == np.argmax(y_pred, -1)).astype(np.float64)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """``y_true == argmax(y_pred)`` for integer labels ``(n,)`` or ``(n, 1)``."""

    default_name = "sparse_categorical_accuracy"
    direction = "up"

    def values(self, y_true, y_pred):
        y_true = np.asarray(y_true, F32)
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        m = (y_true == np.argmax(y_pred, -1).astype(F32)).astype(np.float64)
        if m.ndim > 1 and m.shape[-1] == 1:
            m = m[..., 0]
        return m


def _in_top_k(labels, y_pred, k):
    """Keras ``in_top_k``: the label's score is at least the k-th largest (ties count as hits)."""
    y_pred = np.asarray(y_pred, F32).reshape(-1, y_pred.shape[-1])
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    k = min(k, y_pred.shape[-1])
    kth = -np.partition(-y_pred, k - 1, axis=-1)[:, k - 1]
    return (y_pred[np.arange(len(labels)), labels] >= kth).astype(np.float64)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """Whether ``argmax(y_true)`` is among the ``k`` highest predictions."""

    default_name = "top_k_categorical_accuracy"
    direction = "up"

    def __init__(self, k=5, name=None) -> None:
        self.k = k
        super().__init__(name, k=k)

    def values(self, y_true, y_pred):
        labels = np.argmax(y_true, -1)
        return _in_top_k(labels, y_pred, self.k).reshape(labels.shape)


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """Whether the integer label is among the ``k`` highest predictions."""

    default_name = "sparse_top_k_categorical_accuracy"
    direction = "up"

    def __init__(self, k=5, name=None) -> None:
        self.k = k
        super().__init__(name, k=k)

    def values(self, y_true, y_pred):
        y_true = np.asarray(y_true)
        return _in_top_k(y_true, y_pred, self.k).reshape(y_true.shape)


class LossMetric(MeanMetricWrapper):
    """A loss function's per-sample values as a metric (Keras's ``MeanSquaredError`` metric and kin)."""

    direction = "down"

    def __init__(self, loss, name=None, **kwargs) -> None:
        # a built-in loss's name, or a resolved LossSpec (a custom loss: an expression)
        self.loss = loss if isinstance(loss, _losses.LossSpec) else _losses.get_loss({"type": loss, **kwargs})
        self.default_name = self.loss.name if isinstance(loss, _losses.LossSpec) else self.loss.type
        super().__init__(name, **kwargs)

    def values(self, y_true, y_pred):
        return _losses.loss_values(self.loss, y_true, y_pred)


class MeanSquaredError(LossMetric):
    default_name = "mean_squared_error"

    def __init__(self, name=None) -> None:
        super().__init__("mean_squared_error", name)


class MeanAbsoluteError(LossMetric):
    default_name = "mean_absolute_error"

    def __init__(self, name=None) -> None:
        super().__init__("mean_absolute_error", name)


# ------------------------------------------------------------------------------------ confusion


def _confusion_inputs(y_true, y_pred, sample_weight, top_k=None, class_id=None):
    y_true = np.asarray(y_true, F32)
    y_pred = np.asarray(y_pred, F32)
    y_pred, y_true = _squeeze_or_expand(y_pred, y_true)
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, F32)[..., None]
        _, sw = _squeeze_or_expand(y_true, sw, expand_rank_1=False)
    if top_k is not None:  # Keras's _filter_top_k: all but the k largest become NEG_INF
        order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :top_k]
        keep = np.zeros(y_pred.shape, bool)
        np.put_along_axis(keep, order, True, axis=-1)
        y_pred = np.where(keep, y_pred, NEG_INF)
    if class_id is not None:
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
    w = (
        np.ones(y_pred.shape, np.float64)
        if sw is None
        else np.broadcast_to(sw, y_pred.shape).astype(np.float64)
    )
    return (y_true != 0).reshape(-1), y_pred.reshape(-1), w.reshape(-1)


class _ConfusionMetric(Metric):
    direction = "up"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None) -> None:
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        default = 0.5 if top_k is None else NEG_INF
        t = [default] if thresholds is None else [thresholds] if np.isscalar(thresholds) else list(thresholds)
        for v in t:
            if not (v == NEG_INF or 0.0 <= v <= 1.0):
                raise ValueError(f"{type(self).__name__}: thresholds must be in [0, 1]; got {v}")
        self.thresholds = np.asarray(t, F32)
        super().__init__(name)

    def reset_state(self) -> None:
        n = len(self.thresholds)
        self.tp = np.zeros(n)
        self.fp = np.zeros(n)
        self.fn = np.zeros(n)

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        label, pred, w = _confusion_inputs(y_true, y_pred, sample_weight, self.top_k, self.class_id)
        pos = pred[None, :] > self.thresholds[:, None]
        self.tp += (w * (label & pos)).sum(1)
        self.fp += (w * (~label & pos)).sum(1)
        self.fn += (w * (label & ~pos)).sum(1)

    def _out(self, num, den):
        num, den = num.astype(F32), den.astype(F32)
        r = np.where(den > 0, num / np.where(den > 0, den, 1), 0).astype(F32)
        return float(r[0]) if len(self.thresholds) == 1 else r.astype(np.float64)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "thresholds": self.init_thresholds,
            "top_k": self.top_k,
            "class_id": self.class_id,
        }


class Precision(_ConfusionMetric):
    """``tp / (tp + fp)`` at each threshold (one value for one threshold)."""

    default_name = "precision"

    def result(self):
        return self._out(self.tp, self.tp + self.fp)


class Recall(_ConfusionMetric):
    """``tp / (tp + fn)`` at each threshold."""

    default_name = "recall"

    def result(self):
        return self._out(self.tp, self.tp + self.fn)


class AUC(Metric):
    """Area under the ROC (or PR) curve from confusion counts at ``num_thresholds`` thresholds."""

    default_name = "auc"
    direction = "up"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None,
                 from_logits=False) -> None:  # fmt: skip
        if multi_label or label_weights is not None:
            raise NotImplementedError("AUC: multi_label and label_weights are not supported by nnspec")
        if str(curve).upper() not in ("ROC", "PR"):
            raise ValueError(f"AUC: curve must be 'ROC' or 'PR'; got {curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"AUC: summation_method must be interpolation, minoring or majoring; got "
                             f"{summation_method!r}")  # fmt: skip
        eps = float(np.float32(1e-7))
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
            full = np.array([0.0, *inner, 1.0])
            even = np.allclose(full, np.arange(len(full), dtype=F32) / (len(full) - 1), atol=eps)
        else:
            if num_thresholds <= 1:
                raise ValueError(f"AUC: num_thresholds must be > 1; got {num_thresholds}")
            self.num_thresholds = num_thresholds
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            even = True
        self._init_thresholds = thresholds
        self._thresholds = np.array([0.0 - 1e-7, *inner, 1.0 + 1e-7], F32)
        self._even = even
        self.curve = str(curve).upper()
        self.summation_method = summation_method
        self.from_logits = from_logits
        super().__init__(name)

    @property
    def thresholds(self) -> list:
        return [float(t) for t in self._thresholds]

    def reset_state(self) -> None:
        n = self.num_thresholds
        self.tp, self.fp, self.tn, self.fn = (np.zeros(n) for _ in range(4))

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        y_pred = np.asarray(y_pred, F32)
        if self.from_logits:
            y_pred = (1 / (1 + np.exp(-y_pred.astype(np.float64)))).astype(F32)
        label, pred, w = _confusion_inputs(y_true, y_pred, sample_weight)
        t = self.num_thresholds
        if self._even:
            p = np.clip(pred, F32(0), F32(1))
            bucket = np.maximum(np.ceil(p * F32(t - 1)) - 1, 0).astype(np.int64)  # thresholds carry epsilon
            tp_b = np.bincount(bucket, weights=w * label, minlength=t)
            fp_b = np.bincount(bucket, weights=w * ~label, minlength=t)
            tp = np.cumsum(tp_b[::-1])[::-1]
            fp = np.cumsum(fp_b[::-1])[::-1]
        else:
            pos = pred[None, :] > self._thresholds[:, None]
            tp = (w * (label & pos)).sum(1)
            fp = (w * (~label & pos)).sum(1)
        self.tp += tp
        self.fp += fp
        self.tn += (w * ~label).sum() - fp
        self.fn += (w * label).sum() - tp

    def result(self) -> float:
        tp, fp, tn, fn = (a.astype(F32) for a in (self.tp, self.fp, self.tn, self.fn))
        n = self.num_thresholds

        def div(a, b):
            return np.where(b != 0, a / np.where(b != 0, b, 1), 0).astype(F32)

        if self.curve == "PR" and self.summation_method == "interpolation":
            dtp = tp[: n - 1] - tp[1:]
            p = tp + fp
            dp = p[: n - 1] - p[1:]
            slope = div(dtp, np.maximum(dp, 0))
            intercept = tp[1:] - slope * p[1:]
            ok = (p[: n - 1] > 0) & (p[1:] > 0)
            ratio = np.where(ok, div(p[: n - 1], np.maximum(p[1:], 0)), F32(1))
            inc = div(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0))
            return float(np.sum(inc, dtype=F32))
        recall = div(tp, tp + fn)
        if self.curve == "ROC":
            x, y = div(fp, fp + tn), recall
        else:
            x, y = recall, div(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[: n - 1] + y[1:]) / F32(2)
        elif self.summation_method == "minoring":
            heights = np.minimum(y[: n - 1], y[1:])
        else:
            heights = np.maximum(y[: n - 1], y[1:])
        return float(np.sum((x[: n - 1] - x[1:]) * heights, dtype=F32))

    def get_config(self) -> dict:
        config = {"name": self.name, "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "from_logits": self.from_logits}  # fmt: skip
        if self._init_thresholds is not None:
            config["thresholds"] = list(self._init_thresholds)
        return config


# ------------------------------------------------------------------------------------ registry

_CLASSES = {
    "accuracy": Accuracy, "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy, "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy, "mean_squared_error": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "precision": Precision, "recall": Recall, "auc": AUC, "mean": Mean,
}  # fmt: skip
_LOSS_METRICS = ("mean_absolute_percentage_error", "mean_squared_logarithmic_error", "binary_crossentropy",
                 "categorical_crossentropy", "sparse_categorical_crossentropy", "hinge", "squared_hinge",
                 "categorical_hinge", "kl_divergence", "poisson")  # fmt: skip
_ALIASES = {
    "Accuracy": "accuracy", "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy", "TopKCategoricalAccuracy": "top_k_categorical_accuracy",
    "SparseTopKCategoricalAccuracy": "sparse_top_k_categorical_accuracy", "MeanSquaredError": "mean_squared_error",
    "MeanAbsoluteError": "mean_absolute_error", "Precision": "precision", "Recall": "recall", "AUC": "auc",
    "Mean": "mean", "mse": "mean_squared_error", "MSE": "mean_squared_error", "mae": "mean_absolute_error",
    "MAE": "mean_absolute_error", "mape": "mean_absolute_percentage_error", "MAPE": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error", "MSLE": "mean_squared_logarithmic_error", "bce": "binary_crossentropy",
    "BCE": "binary_crossentropy", "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
    "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error", "BinaryCrossentropy": "binary_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy", "Hinge": "hinge", "SquaredHinge": "squared_hinge",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy", "CategoricalHinge": "categorical_hinge",
    "KLDivergence": "kl_divergence", "Poisson": "poisson",
}  # fmt: skip


def resolve_accuracy(y_true_shape=None, y_pred_shape=None, loss=None) -> type:
    """Which accuracy ``"accuracy"`` means in ``compile``.

    Keras decides from the shapes of the labels and the predictions; when the label shape is
    not known, the loss stands in for it (sparse crossentropy means integer labels).
    """
    if y_true_shape is not None and y_pred_shape is not None:
        binary, sparse = _losses._binary_or_sparse(y_true_shape, y_pred_shape)
    elif y_pred_shape is None and loss is None:
        return Accuracy
    else:
        lt = _losses.get_loss(loss).type if loss is not None else None
        sparse = lt == "sparse_categorical_crossentropy"
        binary = y_pred_shape[-1] == 1 if y_pred_shape is not None else lt == "binary_crossentropy"
    return BinaryAccuracy if binary else SparseCategoricalAccuracy if sparse else CategoricalAccuracy


def get_metric(identifier, y_true_shape=None, y_pred_shape=None, loss=None, custom=None) -> Metric:
    """A metric object from a name, a mapping (``{type: auc, num_thresholds: 100}`` or Keras's
    ``{"class_name", "config"}``) or an instance, resolved and named as Keras's ``compile`` does.

    As in Keras, a loss function is a metric too (the mean of its values): a custom loss, by a
    name of the model file's ``custom_losses`` (``custom``: name -> expression), as an
    ``nnspec.losses.Expression``, or as a Python function over ``nnspec.ops``."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, _losses.Expression) or (callable(identifier) and not isinstance(identifier, type)):
        spec = _losses.get_loss(identifier, None, y_pred_shape)
        return LossMetric(spec, name=spec.name)
    if isinstance(identifier, str) and custom and identifier in custom:
        return LossMetric(_losses.get_loss(identifier, None, y_pred_shape, custom), name=identifier)
    config: dict = {}
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            name, config = identifier["class_name"], dict(identifier.get("config") or {})
        elif "type" in identifier:
            name, config = identifier["type"], {k: v for k, v in identifier.items() if k != "type"}
        else:
            raise ValueError(f"cannot read a metric from {identifier!r}: expected a 'type' key")
        display = config.pop("name", None)
    elif isinstance(identifier, str):
        name = display = identifier
    else:
        raise TypeError(f"cannot use {identifier!r} as a metric")
    config.pop("dtype", None)
    if str(name).lower() in ("accuracy", "acc"):
        cls = resolve_accuracy(y_true_shape, y_pred_shape, loss)
        return cls(name=display or str(name), **config)
    canonical = _ALIASES.get(name, name)
    if canonical in _CLASSES:
        return _CLASSES[canonical](name=display or canonical, **config)
    if canonical in _LOSS_METRICS:
        return LossMetric(canonical, name=display or canonical, **config)
    from ..specs.errors import did_you_mean

    known = [*_CLASSES, *_LOSS_METRICS, *_ALIASES, "acc"]
    hint = did_you_mean(str(name), known)
    raise ValueError(f"unknown metric '{name}'" + (f"; {hint}" if hint else ""))
