"""Keras-style layer classes for building models in Python: ``nnspec.layers.Dense(64)``.

Every registered layer type is here under its Keras name, made from its definition in
:mod:`nnspec.layerdefs` (so its arguments, defaults and checks are the model file's), plus
Keras's functional shortcuts ``concatenate``, ``add``, ``subtract``, ``multiply``, ``average``,
``maximum``, ``minimum`` and ``dot``::

    from nnspec import Input, Model, layers
    x = Input(shape=(32,))
    y = layers.Dense(1, activation="sigmoid")(layers.Dense(10, activation="relu")(x))
    model = Model(inputs=x, outputs=y, name="mlp")
"""

from __future__ import annotations

from .api.layer import Input, InputLayer, Layer, layer_class
from .layerdefs import ALIASES, PUBLIC_LIST

_TYPES = {d.name for d in PUBLIC_LIST}


def __getattr__(name: str):
    if name in _TYPES:
        return layer_class(name)
    if name in ALIASES:  # Keras's other names of the same class (MaxPool2D is MaxPooling2D)
        return layer_class(ALIASES[name])
    raise AttributeError(f"nnspec.layers has no layer {name!r}")


def __dir__():
    return sorted([*_TYPES, *ALIASES, *_FUNCTIONS, "Input", "InputLayer", "Layer"])


def _merge_function(type_name: str):
    def merge(inputs, **kwargs):
        return layer_class(type_name)(**kwargs)(inputs)

    merge.__name__ = type_name.lower()
    merge.__doc__ = f"Functional form of ``{type_name}``: ``{type_name.lower()}([a, b], **kwargs)``."
    return merge


concatenate = _merge_function("Concatenate")
add = _merge_function("Add")
subtract = _merge_function("Subtract")
multiply = _merge_function("Multiply")
average = _merge_function("Average")
maximum = _merge_function("Maximum")
minimum = _merge_function("Minimum")
dot = _merge_function("Dot")

_FUNCTIONS = ("concatenate", "add", "subtract", "multiply", "average", "maximum", "minimum", "dot")

__all__ = ["Input", "InputLayer", "Layer", *_FUNCTIONS]
