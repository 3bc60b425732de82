"""Keras-style metrics for training nnspec models: ``nnspec.metrics.AUC(num_thresholds=50)``.

``compile(metrics=...)`` takes Keras's names (``"accuracy"``, ``"AUC"``), mappings
(``{"type": "auc", "num_thresholds": 50}``) or metric objects made as Keras makes them: every
class of ``keras.metrics`` by its name, arguments and defaults (``metrics.F1Score(average="macro")``,
``metrics.BinaryCrossentropy(from_logits=True)`` for a loss as a metric). A metric object also
works alone, as Keras's do: ``update_state(y_true, y_pred, sample_weight=None)``, ``result()``,
``reset_state()``.

The metrics are computed with NumPy in :mod:`nnspec.runtime.metrics`, which documents their
semantics. Importing this module loads NumPy and Numba (a loss used as a metric runs its kernel).
"""

from __future__ import annotations

from .runtime.metrics import _ALIASES, _CLASSES, _LOSS_METRICS, MeanMetricWrapper, Metric, get_metric

get = get_metric


def _loss_metric(class_name: str, canonical: str):
    """Keras's metric class of a loss (``BinaryCrossentropy``...) as a constructor."""

    def make(name=None, **kwargs):
        return get_metric({"type": canonical, **kwargs, **({"name": name} if name is not None else {})})

    make.__name__ = make.__qualname__ = class_name
    make.__doc__ = f"Keras's ``keras.metrics.{class_name}``: the mean of the loss {canonical} over samples."
    return make


_OBJECTS = {
    **{cls.__name__: cls for cls in _CLASSES.values()},
    **{c: _loss_metric(c, t) for c, t in _ALIASES.items() if t in _LOSS_METRICS and c[:1].isupper() and c.isalpha()
       and not c.isupper()},
}  # fmt: skip
globals().update(_OBJECTS)

__all__ = ["Metric", "MeanMetricWrapper", "get", "get_metric"] + list(_OBJECTS)
