"""Ask real Keras (on its PyTorch backend) what a layer does, to check our definitions against.

Tests call :func:`keras_layer_facts` with the same type name and attributes a model file holds.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")


def _keras():
    import keras

    return keras


def keras_layer(type_name: str, attrs: dict):
    """Build a Keras layer from a model file's layer definition (wrappers' ``layer`` included)."""
    keras = _keras()
    kwargs = dict(attrs)
    if isinstance(kwargs.get("layer"), dict):
        inner = dict(kwargs["layer"])
        kwargs["layer"] = keras_layer(inner.pop("type"), inner)
    if isinstance(kwargs.get("backward_layer"), dict):
        inner = dict(kwargs["backward_layer"])
        kwargs["backward_layer"] = keras_layer(inner.pop("type"), inner)
    cls = getattr(keras.layers, type_name)
    return cls(**kwargs)


def keras_layer_facts(type_name: str, attrs: dict, input_shapes: list, input_dtypes: list | None = None):
    """Return (output shapes, [(weight path suffix, shape, trainable)], count_params) from Keras.

    ``input_shapes`` exclude the batch dimension, as ``keras.Input(shape=...)`` takes them.
    Output shapes are tuples with ``None`` for the batch, as Keras prints them.
    """
    keras = _keras()
    input_dtypes = input_dtypes or ["float32"] * len(input_shapes)
    ins = [keras.Input(shape=tuple(s), dtype=d) for s, d in zip(input_shapes, input_dtypes)]
    layer = keras_layer(type_name, attrs)
    out = layer(ins[0] if len(ins) == 1 else ins)
    outs = out if isinstance(out, (list, tuple)) else [out]
    shapes = [tuple(o.shape) for o in outs]
    weights = [(w.path.split("/")[-1], tuple(w.shape), w.trainable) for w in layer.weights]
    return shapes, weights, layer.count_params()
