"""Metrics as stateful objects with Keras 3 semantics, computed with NumPy after each batch.

Mirrors ``keras/src/metrics``: ``update_state(y_true, y_pred, sample_weight=None, mask=None)``
adds a batch, ``result()`` gives the value over every batch since ``reset_state()``. The
catalog is Keras's ``ALL_OBJECTS_DICT``: every class name, snake_case name and alias.

- Mean-based metrics (``BinaryAccuracy`` with ``threshold=0.5``, ``CategoricalAccuracy``,
  ``SparseCategoricalAccuracy``, ``TopKCategoricalAccuracy``/``SparseTopKCategoricalAccuracy``
  with ``k=5``, ``MeanSquaredError``, ``MeanAbsoluteError``, every loss as a metric,
  ``LogCoshError`` (named ``logcosh``), ``CosineSimilarity`` (``+cos``, unlike the loss),
  ``PearsonCorrelation`` and ``ConcordanceCorrelation``) follow ``MeanMetricWrapper``:
  per-sample values (averaged over any axes beyond the weight's), weighted by ``sample_weight *
  mask`` (the mask as 0/1, not rescaled as the loss rescales it), then ``sum(values * w) /
  sum(w)``; without weights, the mean over samples. ``Mean``/``Sum`` take values;
  ``RootMeanSquaredError`` is the square root of a ``Mean`` of squared errors.
- ``Precision``, ``Recall`` (threshold 0.5, or ``thresholds``, ``top_k``, ``class_id``), the
  counts ``TruePositives``/``FalsePositives``/``TrueNegatives``/``FalseNegatives``
  (``thresholds``; one value for one threshold, else an array), the rates at a rate
  (``PrecisionAtRecall``, ``RecallAtPrecision``, ``SensitivityAtSpecificity``,
  ``SpecificityAtSensitivity``: ``num_thresholds=200`` from 0 to 1, ``class_id``) and ``AUC``
  (200 thresholds, ROC, interpolation; also PR, minoring/majoring, ``from_logits``) accumulate
  confusion counts as Keras does: a prediction is positive above a threshold, and with evenly
  spaced thresholds (3 or more; the rates' 2 too) each prediction, clipped to [0, 1], goes to
  the bucket ``ceil(p * (T - 1)) - 1``, so one above 1 is not above the threshold 1.
- ``F1Score``/``FBetaScore`` (``average`` None: one value per class, micro, macro, weighted;
  ``threshold``, else each row's largest prediction) and ``R2Score`` (``class_aggregation``,
  ``num_regressors``) take 2-D data; the IoUs (``IoU``, ``BinaryIoU``, ``MeanIoU``,
  ``OneHotIoU``, ``OneHotMeanIoU``) sum a confusion matrix of class ids as Keras's int32 metric
  does: float ids *and sample weights* are truncated to integers (float weights warn, as Keras
  warns).
- Masks apply only to the ``MeanMetricWrapper`` metrics, as in Keras; the others ignore them.
- In ``compile``, Keras's ``metrics=`` are *not* weighted by ``sample_weight`` (only
  ``weighted_metrics=`` are); the fit loop decides what to pass.
- ``"accuracy"``/``"acc"`` resolve as Keras's ``compile_utils.get_metric`` does, from the shapes
  of the labels and the predictions: binary when the prediction's last axis is 1, sparse when
  the labels have a lower rank or a last axis of 1 against several classes, else categorical.
  :func:`get_metric` takes the shapes, and the loss as a fallback when the label shape is not
  known. A string names the metric as given (``"acc"`` stays ``acc``), as ``compile`` does; a
  mapping without ``name`` gets the class's default name (``{type: log_cosh_error}``: ``logcosh``).
- ``direction`` (callbacks' ``mode="auto"``) is Keras's ``_direction``; ``None`` for ``Mean``,
  ``Sum`` and the four counts, for which Keras cannot tell either.

Differences: ``k`` larger than the number of classes counts every sample as a hit (Keras's
``top_k`` would fail). Totals accumulate in float64 (Keras: float32 variables), and per-sample
values are computed in float64, so long runs agree with Keras to float32 rounding of Keras's
own sums. ``CosineSimilarity`` takes only ``axis=-1``. ``FBetaScore``/``R2Score`` give 0.0
before their first batch (Keras's have no variables yet and fail). In ``fit`` with validation,
Keras 3.15 logs the validation counts (``TruePositives`` and kin) as the training counts too
(their ``result()`` is the count variable itself, which evaluation resets and refills); nnspec
logs each pass's own counts.
"""
from __future__ import annotations

import warnings

import numpy as np

from . import losses as _losses

F32 = np.float32
NEG_INF = F32(-1e10)  # Keras's metrics_utils.NEG_INF
KERAS_EPS = 1e-7  # Keras's backend.epsilon(), added to float32 values


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


def _accumulate(state: dict | None, parts: dict) -> dict:
    """``state`` (name -> float64 array) plus ``parts``; zeros of their shapes before the first batch."""
    if state is None:
        state = {k: np.zeros(np.shape(v)) for k, v in parts.items()}
    return {k: state[k] + v for k, v in parts.items()}


def _zeroed(state: dict | None) -> dict | None:
    """``state`` reset: the same shapes, all zeros (``None`` before the first batch)."""
    return None if state is None else {k: np.zeros_like(v) for k, v in state.items()}


def _value(a):
    """A result: a float, or a float64 array (per class, per threshold)."""
    a = np.asarray(a)
    return float(a) if a.ndim == 0 else a.astype(np.float64)


class Metric:
    """Base class. ``direction`` is ``"up"`` when larger is better, ``"down"`` when smaller is, and
    ``None`` where Keras's metric has no ``_direction`` (callbacks' ``mode="auto"`` then fails, as
    in Keras). ``get_config`` gives the attributes named in ``_config``."""

    direction: str | None = "up"
    default_name = "metric"
    _config: tuple[str, ...] = ("name",)

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
        return {k: getattr(self, k) for k in self._config}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _samplewise(values, sample_weight, reduce):
    """Keras's ``reduce_to_samplewise_values``: the values reduced (``reduce``: ``np.mean`` or
    ``np.sum``) to the weight's rank and weighted, then to one value per sample; and the weights."""
    values = np.asarray(values, np.float64)
    sw = None
    if sample_weight is not None:
        values, sw = _squeeze_or_expand(values, np.asarray(sample_weight, np.float64))
        wn, vn = sw.ndim, values.ndim
        if vn > wn:
            values = reduce(values, axis=tuple(range(wn, vn)))
        sw = np.broadcast_to(sw, values.shape)
        values = values * sw
        if wn > 1:
            sw = reduce(sw, axis=tuple(range(1, wn)))
    if values.ndim > 1:
        values = reduce(values, axis=tuple(range(1, values.ndim)))
    return values, sw


class Mean(Metric):
    """The weighted mean of values (Keras ``Mean``); the fit loop's loss tracker uses it with
    ``sample_weight`` = batch size."""

    direction = None
    default_name = "mean"

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None) -> None:
        values, sw = _samplewise(values, sample_weight, np.mean)
        self.total += float(values.sum())
        if sw is not None:
            self.count += float(np.sum(sw))
        else:
            self.count += values.shape[0] if values.ndim >= 1 else 1

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


class Sum(Metric):
    """The weighted sum of values (Keras ``Sum``): values summed over the axes beyond the weight's."""

    direction = None
    default_name = "sum"

    def reset_state(self) -> None:
        self.total = 0.0

    def update_state(self, values, sample_weight=None) -> None:
        self.total += float(_samplewise(values, sample_weight, np.sum)[0].sum())

    def result(self) -> float:
        return self.total


class RootMeanSquaredError(Mean):
    """``sqrt`` of the weighted mean of ``(y_pred - y_true) ** 2`` (Keras's is a ``Mean``, so
    masks do not apply)."""

    direction = "down"
    default_name = "root_mean_squared_error"

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        y_true, y_pred = _squeeze_or_expand(np.asarray(y_true, F32), np.asarray(y_pred, F32))
        super().update_state(np.square(y_pred.astype(np.float64) - y_true), sample_weight)

    def result(self) -> float:
        return float(np.sqrt(super().result()))


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
        if type(self) is LossMetric:  # the subclasses keep Keras's class default names
            self.default_name = self.loss.name if isinstance(loss, _losses.LossSpec) else self.loss.type
        super().__init__(name, **kwargs)

    def values(self, y_true, y_pred):
        return _losses.loss_values(self.loss, y_true, y_pred)

    def get_config(self) -> dict:
        config = super().get_config()
        if type(self) is LossMetric:  # which loss, for from_config (a custom loss as its resolved spec)
            config["loss"] = self.loss if self.loss.expression is not None else self.loss.type
        return config


class MeanSquaredError(LossMetric):
    default_name = "mean_squared_error"

    def __init__(self, name=None) -> None:
        super().__init__("mean_squared_error", name)


class MeanAbsoluteError(LossMetric):
    default_name = "mean_absolute_error"

    def __init__(self, name=None) -> None:
        super().__init__("mean_absolute_error", name)


class LogCoshError(LossMetric):
    """The ``log_cosh`` loss as a metric, named ``logcosh`` as in Keras."""

    default_name = "logcosh"

    def __init__(self, name=None) -> None:
        super().__init__("log_cosh", name)


class CosineSimilarity(LossMetric):
    """``sum(normalize(y_true) * normalize(y_pred))`` over the last axis: the cosine similarity
    loss with its sign turned, so larger is better. Like Keras's, the config holds only the name."""

    default_name = "cosine_similarity"
    direction = "up"

    def __init__(self, name=None, axis=-1) -> None:
        if axis != -1:
            raise ValueError(f"CosineSimilarity: nnspec computes the similarity over the last axis only (axis=-1); "
                             f"got axis={axis!r}")  # fmt: skip
        super().__init__("cosine_similarity", name)

    def values(self, y_true, y_pred):
        return -super().values(y_true, y_pred)


# ------------------------------------------------------------------------------------ correlation


def _centered(y_true, y_pred, axis):
    """Both as float64 of the same rank, and each minus its mean over ``axis`` (with the means)."""
    y_true, y_pred = _squeeze_or_expand(np.asarray(y_true, F32).astype(np.float64),
                                        np.asarray(y_pred, F32).astype(np.float64))  # fmt: skip
    mt, mp = y_true.mean(axis, keepdims=True), y_pred.mean(axis, keepdims=True)
    return y_true, y_pred, mt, mp


class PearsonCorrelation(MeanMetricWrapper):
    """Per sample, the mean over ``axis`` of the product of both standardized (population std) along
    ``axis``; averaged with sample weights and masks. A constant row gives NaN, as in Keras."""

    default_name = "pearson_correlation"
    direction = "up"

    def __init__(self, name=None, axis=-1) -> None:
        self.axis = axis
        super().__init__(name, axis=axis)

    def values(self, y_true, y_pred):
        t, p, mt, mp = _centered(y_true, y_pred, self.axis)
        t, p = t - mt, p - mp
        with np.errstate(divide="ignore", invalid="ignore"):
            t, p = t / t.std(self.axis, keepdims=True), p / p.std(self.axis, keepdims=True)
            return (t * p).mean(self.axis)


class ConcordanceCorrelation(MeanMetricWrapper):
    """Per sample, Keras's ``mean(2 (y_true - mean(y_pred)) (y_pred - mean(y_pred)) / (var(y_true)
    + var(y_pred) + (mean(y_true) - mean(y_pred))**2 + epsilon))`` over ``axis``: note the first
    factor centers ``y_true`` on the *prediction's* mean, as Keras 3 does."""

    default_name = "concordance_correlation"
    direction = "up"

    def __init__(self, name=None, axis=-1) -> None:
        self.axis = axis
        super().__init__(name, axis=axis)

    def values(self, y_true, y_pred):
        t, p, mt, mp = _centered(y_true, y_pred, self.axis)
        norm = t.var(self.axis, keepdims=True) + p.var(self.axis, keepdims=True) + (mt - mp) ** 2
        return (2 * (t - mp) * (p - mp) / (norm + KERAS_EPS)).mean(self.axis)


# ------------------------------------------------------------------------------------ regression


class R2Score(Metric):
    """The coefficient of determination per output (the last axis of 2-D data), from weighted
    sums: ``1 - sum(w (y - p)^2) / (sum(w y^2) - sum(w y)^2 / sum(w))``, infinities as 0; then
    aggregated (``class_aggregation``) and adjusted for ``num_regressors`` over ``n`` = the number
    of entries seen. Masks do not apply (Keras's is not a ``MeanMetricWrapper``)."""

    default_name = "r2_score"
    direction = "up"
    _config = ("name", "class_aggregation", "num_regressors")

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name=None) -> None:
        choices = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in choices:
            raise ValueError(
                f"R2Score: class_aggregation must be one of {choices}; got {class_aggregation!r}"
            )
        if num_regressors < 0:
            raise ValueError(f"R2Score: num_regressors must be >= 0; got {num_regressors}")
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        super().__init__(name)

    def reset_state(self) -> None:
        self._state = _zeroed(getattr(self, "_state", None))

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        y_true, y_pred = _squeeze_or_expand(np.asarray(y_true, F32), np.asarray(y_pred, F32))
        if y_true.ndim != 2 or y_pred.ndim != 2:
            raise ValueError(f"R2Score expects 2-D inputs (batch_size, output_dim); got y_pred.shape={y_pred.shape} "
                             f"and y_true.shape={y_true.shape}")  # fmt: skip
        t, p = y_true.astype(np.float64), y_pred.astype(np.float64)
        w = np.ones(()) if sample_weight is None else np.asarray(sample_weight, F32).astype(np.float64)
        w = np.broadcast_to(w[:, None] if w.ndim == 1 else w, t.shape)
        self._state = _accumulate(self._state, {
            "sum": (w * t).sum(0), "squared_sum": (w * t * t).sum(0), "residual": (w * (t - p) ** 2).sum(0),
            "count": w.sum(0), "num_samples": np.float64(t.size)})  # fmt: skip

    def result(self):
        if self._state is None:
            return 0.0
        s = {k: v.astype(F32) for k, v in self._state.items()}
        with np.errstate(divide="ignore", invalid="ignore"):
            total = s["squared_sum"] - s["sum"] * (s["sum"] / s["count"])
            raw = F32(1) - s["residual"] / total
            raw = np.where(np.isinf(raw), F32(0), raw)
            if self.class_aggregation == "uniform_average":
                r2 = np.mean(raw)
            elif self.class_aggregation == "variance_weighted_average":
                r2 = np.sum(total * raw) / np.sum(total)
            else:
                r2 = raw
        n, p = s["num_samples"], self.num_regressors
        if p and p > n - 1:
            warnings.warn("More independent predictors than datapoints in adjusted R2 score. Falling back to "
                          "standard R2 score.", stacklevel=2)  # fmt: skip
        elif p and p == n - 1:
            warnings.warn(
                "Division by zero in Adjusted R2 score. Falling back to standard R2 score.", stacklevel=2
            )
        elif p:
            r2 = F32(1) - (F32(1) - r2) * (n - F32(1)) / (n - F32(p) - F32(1))
        return _value(r2)


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
        if y_pred.ndim == 1:
            raise ValueError(f"class_id needs y_pred of shape (num_samples, num_classes); got {y_pred.shape}")
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
    w = (
        np.ones(y_pred.shape, np.float64)
        if sw is None
        else np.broadcast_to(sw, y_pred.shape).astype(np.float64)
    )
    return (y_true != 0).reshape(-1), y_pred.reshape(-1), w.reshape(-1)


def _evenly_spaced(thresholds) -> bool:
    """Keras's ``is_evenly_distributed_thresholds``: at least 3, each ``i / (T - 1)`` to within epsilon."""
    n = len(thresholds)
    return n >= 3 and bool(np.allclose(thresholds, np.arange(n, dtype=F32) / (n - 1), atol=KERAS_EPS))


def _threshold_counts(label, pred, w, thresholds, even: bool):
    """Weighted true and false positives (``pred > t``) at each threshold, counted as Keras counts
    them: with evenly spaced thresholds, each prediction (clipped to [0, 1]) goes to the bucket
    ``ceil(p * (T - 1)) - 1`` (at least 0 when the end thresholds carry an epsilon, as AUC's do)."""
    n = len(thresholds)
    if not even:
        pos = pred[None, :] > thresholds[:, None]
        return (w * (label & pos)).sum(1), (w * (~label & pos)).sum(1)
    bucket = np.ceil(np.clip(pred, F32(0), F32(1)) * F32(n - 1)) - 1
    if thresholds[0] < 0 or thresholds[-1] > 1:
        bucket = np.maximum(bucket, 0)
    keep = bucket >= 0  # 0 is above no threshold
    b = bucket[keep].astype(np.int64)
    tp = np.bincount(b, weights=(w * label)[keep], minlength=n)
    fp = np.bincount(b, weights=(w * ~label)[keep], minlength=n)
    return np.cumsum(tp[::-1])[::-1], np.cumsum(fp[::-1])[::-1]


def _div_no_nan(num, den):
    """``num / den`` in float32, 0 where ``den`` is 0 (Keras's ``divide_no_nan``)."""
    num, den = np.asarray(num, F32), np.asarray(den, F32)
    return np.where(den != 0, num / np.where(den != 0, den, F32(1)), F32(0)).astype(F32)


class _ThresholdCounts(Metric):
    """Weighted confusion counts ``tp``, ``fp``, ``tn``, ``fn`` at the thresholds ``_cuts``
    (``_even``: bucketed as Keras does for evenly spaced ones). Keras ignores masks for these."""

    _cuts: np.ndarray
    _even: bool

    def reset_state(self) -> None:
        self.tp, self.fp, self.tn, self.fn = (np.zeros(len(self._cuts)) for _ in range(4))

    def _count(self, label, pred, w) -> None:
        tp, fp = _threshold_counts(label, pred, w, self._cuts, self._even)
        self.tp += tp
        self.fp += fp
        self.tn += (w * ~label).sum() - fp
        self.fn += (w * label).sum() - tp


class _ConfusionMetric(_ThresholdCounts):
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
        self.thresholds = self._cuts = np.asarray(t, F32)
        self._even = _evenly_spaced(t)
        super().__init__(name)

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        self._count(*_confusion_inputs(y_true, y_pred, sample_weight, self.top_k, self.class_id))

    def _one_or_all(self, values):
        """One value for one threshold (a float), else one per threshold."""
        return _value(values[0] if len(self.thresholds) == 1 else values)

    def _out(self, num, den):
        return self._one_or_all(_div_no_nan(num, den))

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


class _Count(_ConfusionMetric):
    """One weighted confusion count at each threshold (Keras gives these no direction)."""

    direction = None
    _cell = ""

    def __init__(self, thresholds=None, name=None) -> None:
        super().__init__(thresholds, name=name)

    def result(self):
        return self._one_or_all(getattr(self, self._cell))

    def get_config(self) -> dict:
        return {"name": self.name, "thresholds": self.init_thresholds}


class TruePositives(_Count):
    default_name = "true_positives"
    _cell = "tp"


class FalsePositives(_Count):
    default_name = "false_positives"
    _cell = "fp"


class TrueNegatives(_Count):
    default_name = "true_negatives"
    _cell = "tn"


class FalseNegatives(_Count):
    default_name = "false_negatives"
    _cell = "fn"


class _RateAtRate(_ConfusionMetric):
    """The largest ``_sought`` rate among the thresholds where the ``_given`` rate is at least the
    value given (Keras's ``SensitivitySpecificityBase``): ``num_thresholds`` thresholds evenly from
    0 to 1 (one: 0.5), an optional ``class_id``; 0 when no threshold qualifies."""

    _given = _sought = ""

    def __init__(self, value, num_thresholds=200, class_id=None, name=None) -> None:
        if not 0 <= value <= 1:
            raise ValueError(f"{type(self).__name__}: {self._given} must be in [0, 1]; got {value}")
        if num_thresholds <= 0:
            raise ValueError(
                f"{type(self).__name__}: num_thresholds must be an integer > 0; got {num_thresholds}"
            )
        setattr(self, self._given, value)
        self.num_thresholds = num_thresholds
        inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        super().__init__([0.5] if num_thresholds == 1 else [0.0, *inner, 1.0], class_id=class_id, name=name)
        self._even = num_thresholds > 1  # Keras buckets two thresholds (0 and 1) too

    def result(self) -> float:
        recall = _div_no_nan(self.tp, self.tp + self.fn)
        rates = {"recall": recall, "sensitivity": recall, "precision": _div_no_nan(self.tp, self.tp + self.fp),
                 "specificity": _div_no_nan(self.tn, self.tn + self.fp)}  # fmt: skip
        ok = rates[self._given] >= F32(getattr(self, self._given))
        return float(np.max(np.where(ok, rates[self._sought], F32(0)), initial=F32(0)))

    def get_config(self) -> dict:
        return {"name": self.name, "class_id": self.class_id, "num_thresholds": self.num_thresholds,
                self._given: getattr(self, self._given)}  # fmt: skip


class PrecisionAtRecall(_RateAtRate):
    default_name = "precision_at_recall"
    _given, _sought = "recall", "precision"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None) -> None:
        super().__init__(recall, num_thresholds, class_id, name)


class RecallAtPrecision(_RateAtRate):
    default_name = "recall_at_precision"
    _given, _sought = "precision", "recall"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None) -> None:
        super().__init__(precision, num_thresholds, class_id, name)


class SensitivityAtSpecificity(_RateAtRate):
    default_name = "sensitivity_at_specificity"
    _given, _sought = "specificity", "sensitivity"

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None) -> None:
        super().__init__(specificity, num_thresholds, class_id, name)


class SpecificityAtSensitivity(_RateAtRate):
    default_name = "specificity_at_sensitivity"
    _given, _sought = "sensitivity", "specificity"

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None) -> None:
        super().__init__(sensitivity, num_thresholds, class_id, name)


class AUC(_ThresholdCounts):
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
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
            even = _evenly_spaced([0.0, *inner, 1.0])
        else:
            if num_thresholds <= 1:
                raise ValueError(f"AUC: num_thresholds must be > 1; got {num_thresholds}")
            self.num_thresholds = num_thresholds
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            even = True
        self._init_thresholds = thresholds
        self._cuts = np.array([0.0 - 1e-7, *inner, 1.0 + 1e-7], F32)
        self._even = even
        self.curve = str(curve).upper()
        self.summation_method = summation_method
        self.from_logits = from_logits
        super().__init__(name)

    @property
    def thresholds(self) -> list:
        return [float(t) for t in self._cuts]

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        y_pred = np.asarray(y_pred, F32)
        if self.from_logits:
            y_pred = (1 / (1 + np.exp(-y_pred.astype(np.float64)))).astype(F32)
        self._count(*_confusion_inputs(y_true, y_pred, sample_weight))

    def result(self) -> float:
        tp, fp, tn, fn = (a.astype(F32) for a in (self.tp, self.fp, self.tn, self.fn))
        n = self.num_thresholds
        div = _div_no_nan
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


# ------------------------------------------------------------------------------------ F-scores


class FBetaScore(Metric):
    """``(1 + beta^2) p r / (beta^2 p + r)`` per class of 2-D data, from weighted counts; a
    prediction is positive above ``threshold``, or (``threshold=None``) where it is its row's
    largest and not ~0. ``average``: ``None`` (one value per class), ``"micro"`` (counts over all
    classes), ``"macro"`` (the mean) or ``"weighted"`` (by each class's weighted label sum). Masks
    do not apply (Keras's is not a ``MeanMetricWrapper``)."""

    default_name = "fbeta_score"
    direction = "up"
    _config = ("name", "average", "beta", "threshold")

    def __init__(self, average=None, beta=1.0, threshold=None, name=None) -> None:
        kind = type(self).__name__
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(
                f"{kind}: average must be one of None, 'micro', 'macro', 'weighted'; got {average!r}"
            )
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"{kind}: beta must be a Python float > 0; got {beta!r}")
        if threshold is not None and (not isinstance(threshold, float) or not 0.0 < threshold <= 1.0):
            raise ValueError(f"{kind}: threshold must be None or a Python float with 0 < threshold <= 1; "
                             f"got {threshold!r}")  # fmt: skip
        self.average = average
        self.beta = beta
        self.threshold = threshold
        super().__init__(name)

    def reset_state(self) -> None:
        self._state = _zeroed(getattr(self, "_state", None))

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        y_true, y_pred = np.asarray(y_true, F32), np.asarray(y_pred, F32)
        if y_true.ndim != 2 or y_pred.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects 2-D inputs (batch_size, output_dim); got "
                             f"y_pred.shape={y_pred.shape} and y_true.shape={y_true.shape}")  # fmt: skip
        if self.threshold is None:
            pos = (y_pred >= y_pred.max(-1, keepdims=True)) & (np.abs(y_pred) > F32(1e-9))
        else:
            pos = y_pred > F32(self.threshold)
        pred, t = pos.astype(np.float64), y_true.astype(np.float64)
        w = 1.0 if sample_weight is None else np.asarray(sample_weight, F32).astype(np.float64).reshape(-1, 1)
        axis = None if self.average == "micro" else 0
        parts = {"tp": pred * t, "fp": pred * (1 - t), "fn": (1 - pred) * t, "support": t}
        self._state = _accumulate(self._state, {k: (v * w).sum(axis) for k, v in parts.items()})

    def result(self):
        if self._state is None:
            return 0.0
        tp, fp, fn, support = (self._state[k].astype(F32) for k in ("tp", "fp", "fn", "support"))
        eps, b2 = F32(KERAS_EPS), F32(self.beta**2)
        precision, recall = tp / (tp + fp + eps), tp / (tp + fn + eps)
        f = precision * recall / (b2 * precision + recall + eps) * F32(1 + self.beta**2)
        if self.average == "weighted":
            f = np.sum(f * (support / (np.sum(support) + eps)))
        elif self.average is not None:
            f = np.mean(f)
        return _value(f)


class F1Score(FBetaScore):
    """:class:`FBetaScore` with ``beta=1``."""

    default_name = "f1_score"
    _config = ("name", "average", "threshold")

    def __init__(self, average=None, threshold=None, name=None) -> None:
        super().__init__(average, 1.0, threshold, name)


# ------------------------------------------------------------------------------------ IoU


class IoU(Metric):
    """Intersection over union, ``tp / (tp + fp + fn)``, averaged over ``target_class_ids`` with a
    nonzero denominator, from a confusion matrix of integer class ids (labels and predictions
    flattened; one-hot ones turned to ids by argmax over ``axis`` unless ``sparse_y_*``). Ids outside
    ``[0, num_classes)`` and labels equal to ``ignore_class`` do not count. As in Keras (an int32
    metric) the ids and the sample weights are truncated to integers: float weights warn."""

    default_name = "io_u"
    direction = "up"
    _config = ("name", "num_classes", "target_class_ids", "ignore_class", "sparse_y_true", "sparse_y_pred",
               "axis")  # fmt: skip

    def __init__(self, num_classes, target_class_ids, name=None, ignore_class=None, sparse_y_true=True,
                 sparse_y_pred=True, axis=-1) -> None:  # fmt: skip
        if max(target_class_ids) >= num_classes:
            raise ValueError(
                f"Target class id {max(target_class_ids)} is out of range, which is [0, {num_classes})."
            )
        self.num_classes = num_classes
        self.target_class_ids = list(target_class_ids)
        self.ignore_class = ignore_class
        self.sparse_y_true = sparse_y_true
        self.sparse_y_pred = sparse_y_pred
        self.axis = axis
        super().__init__(name)

    def reset_state(self) -> None:
        self.total_cm = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if not self.sparse_y_true:
            y_true = np.argmax(y_true, axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = np.argmax(y_pred, axis=self.axis)
        t, p = y_true.astype(np.int32).reshape(-1), y_pred.astype(np.int32).reshape(-1)
        if sample_weight is None:
            w = np.ones(t.shape, np.int32)
        else:
            sw = np.asarray(sample_weight)
            if np.issubdtype(sw.dtype, np.floating):
                warnings.warn(f"{type(self).__name__}: the sample weights are cast to integers, as Keras's int "
                              "confusion matrix casts them; pass integer weights", stacklevel=2)  # fmt: skip
            w = np.broadcast_to(
                sw.astype(np.int32).reshape(-1) if sw.ndim > 1 else sw.astype(np.int32), t.shape
            )
        n = self.num_classes
        ok = (t >= 0) & (t < n) & (p >= 0) & (p < n)
        if self.ignore_class is not None:
            ok &= t != self.ignore_class
        np.add.at(self.total_cm, (t[ok], p[ok]), w[ok])

    def result(self) -> float:
        cm = self.total_cm
        tp = np.diag(cm)
        ids = self.target_class_ids
        den = (cm.sum(0) + cm.sum(1) - tp)[ids].astype(F32)
        valid = den > F32(1e-9)
        iou = np.where(valid, tp[ids].astype(F32) / (den + F32(KERAS_EPS)), F32(0))
        return float(np.sum(iou) / (F32(valid.sum()) + F32(KERAS_EPS)))


class BinaryIoU(IoU):
    """:class:`IoU` of 2 classes from binary labels and probabilities (positive at ``>= threshold``)."""

    default_name = "binary_io_u"
    _config = ("target_class_ids", "threshold", "name")

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None) -> None:
        self.threshold = threshold
        super().__init__(2, target_class_ids, name=name)

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        pred = (np.asarray(y_pred, F32) >= F32(self.threshold)).astype(np.int32)
        super().update_state(y_true, pred, sample_weight)


class MeanIoU(IoU):
    """:class:`IoU` over every class."""

    default_name = "mean_io_u"
    _config = ("num_classes", "name", "ignore_class", "sparse_y_true", "sparse_y_pred", "axis")

    def __init__(self, num_classes, name=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True,
                 axis=-1) -> None:  # fmt: skip
        super().__init__(
            num_classes, range(num_classes), name, ignore_class, sparse_y_true, sparse_y_pred, axis
        )


class OneHotIoU(IoU):
    """:class:`IoU` with one-hot labels."""

    default_name = "one_hot_io_u"
    _config = ("num_classes", "target_class_ids", "name", "ignore_class", "sparse_y_pred", "axis")

    def __init__(self, num_classes, target_class_ids, name=None, ignore_class=None, sparse_y_pred=False,
                 axis=-1) -> None:  # fmt: skip
        super().__init__(num_classes, target_class_ids, name, ignore_class, False, sparse_y_pred, axis)


class OneHotMeanIoU(MeanIoU):
    """:class:`MeanIoU` with one-hot labels."""

    default_name = "one_hot_mean_io_u"
    _config = ("num_classes", "name", "ignore_class", "sparse_y_pred", "axis")

    def __init__(self, num_classes, name=None, ignore_class=None, sparse_y_pred=False, axis=-1) -> None:
        super().__init__(num_classes, name, ignore_class, False, sparse_y_pred, axis)


# ------------------------------------------------------------------------------------ registry

_CLASSES = {
    "accuracy": Accuracy, "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy, "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy, "mean_squared_error": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "precision": Precision, "recall": Recall, "auc": AUC, "mean": Mean,
    "sum": Sum, "root_mean_squared_error": RootMeanSquaredError, "log_cosh_error": LogCoshError,
    "cosine_similarity": CosineSimilarity, "r2_score": R2Score, "true_positives": TruePositives,
    "false_positives": FalsePositives, "true_negatives": TrueNegatives, "false_negatives": FalseNegatives,
    "precision_at_recall": PrecisionAtRecall, "recall_at_precision": RecallAtPrecision,
    "sensitivity_at_specificity": SensitivityAtSpecificity, "specificity_at_sensitivity": SpecificityAtSensitivity,
    "f1_score": F1Score, "f_beta_score": FBetaScore, "io_u": IoU, "binary_io_u": BinaryIoU, "mean_io_u": MeanIoU,
    "one_hot_io_u": OneHotIoU, "one_hot_mean_io_u": OneHotMeanIoU, "pearson_correlation": PearsonCorrelation,
    "concordance_correlation": ConcordanceCorrelation,
}  # fmt: skip
_LOSS_METRICS = ("mean_absolute_percentage_error", "mean_squared_logarithmic_error", "binary_crossentropy",
                 "categorical_crossentropy", "sparse_categorical_crossentropy", "hinge", "squared_hinge",
                 "categorical_hinge", "kl_divergence", "poisson")  # fmt: skip
_ALIASES = {
    **{cls.__name__: key for key, cls in _CLASSES.items()},
    "mse": "mean_squared_error", "MSE": "mean_squared_error", "mae": "mean_absolute_error",
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
        return cls(name=display or str(name).lower(), **config)  # {type: Accuracy} is named accuracy
    canonical = _ALIASES.get(name, name)
    if canonical in _CLASSES:  # unnamed: the class's default name, as Keras names it (LogCoshError: logcosh)
        return _CLASSES[canonical](name=display or None, **config)
    if canonical in _LOSS_METRICS:
        return LossMetric(canonical, name=display or canonical, **config)
    from ..specs.errors import did_you_mean

    known = [*_CLASSES, *_LOSS_METRICS, *_ALIASES, "acc"]
    hint = did_you_mean(str(name), known)
    raise ValueError(f"unknown metric '{name}'" + (f"; {hint}" if hint else ""))
