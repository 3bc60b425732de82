"""Keras-style training callbacks: ``nnspec.callbacks.EarlyStopping(patience=3)``.

The classes and their behaviour are Keras 3's; they live in :mod:`nnspec.runtime.callbacks`.
Subclass :class:`Callback` for your own.
"""

from __future__ import annotations

from .runtime.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from .runtime.progress import ProgbarLogger

__all__ = [
    "Callback",
    "CSVLogger",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]
