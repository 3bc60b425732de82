"""Keras-style optimizers for training nnspec models: ``nnspec.optimizers.Adam(learning_rate=1e-3)``.

The classes, their defaults and update rules are Keras 3's; they live in
:mod:`nnspec.runtime.optimizers`, where each optimizer is one compiled kernel over the model's
flat weights. Learning-rate schedules are in ``nnspec.optimizers.schedules``::

    from nnspec import optimizers
    opt = optimizers.SGD(learning_rate=optimizers.schedules.ExponentialDecay(0.1, 1000, 0.96), momentum=0.9)
    opt = optimizers.get("rmsprop")            # or {"type": "adam", "learning_rate": 1e-3}

Importing this module loads NumPy and Numba (``import nnspec`` alone does not).
"""

from __future__ import annotations

from .runtime import schedules
from .runtime.optimizers import (
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Ftrl,
    Lamb,
    Lion,
    Nadam,
    Optimizer,
    RMSprop,
    get_optimizer,
)

get = get_optimizer

__all__ = ["SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl", "Lamb", "Lion", "Nadam",
           "Optimizer", "RMSprop", "get", "get_optimizer", "schedules"]  # fmt: skip
