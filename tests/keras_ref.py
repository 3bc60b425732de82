"""Ask real Keras (on its PyTorch backend) what a layer does, to check our definitions against.

Tests call :func:`keras_layer_facts` with the same type name and attributes a model file holds.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")


def _keras():
    import keras

    return keras


def call_attrs(type_name: str, attrs: dict) -> tuple[dict, dict]:
    """(constructor arguments, call arguments): a model file gives Keras's call arguments
    (``use_causal_mask``...) as attributes of the layer; ``LayerDef.extra["call_attrs"]`` names them."""
    from nnspec.layerdefs import REGISTRY

    names = REGISTRY[type_name].extra.get("call_attrs", ()) if type_name in REGISTRY else ()
    return ({k: v for k, v in attrs.items() if k not in names}, {k: v for k, v in attrs.items() if k in names})


def call_layer(layer, type_name: str, ins: list, call_kwargs: dict):
    """Call a Keras layer on ``ins`` as Keras wants it: one tensor, a list, or (for
    MultiHeadAttention) separate positional tensors."""
    from nnspec.layerdefs import REGISTRY

    if type_name in REGISTRY and REGISTRY[type_name].extra.get("call_positional"):
        return layer(*ins, **call_kwargs)
    return layer(ins[0] if len(ins) == 1 else ins, **call_kwargs)


def keras_layer(type_name: str, attrs: dict):
    """Build a Keras layer from a model file's layer definition (wrappers' ``layer`` included),
    without its call arguments (see :func:`call_attrs`)."""
    keras = _keras()
    kwargs, _ = call_attrs(type_name, attrs)
    if isinstance(kwargs.get("layer"), dict):
        inner = dict(kwargs["layer"])
        kwargs["layer"] = keras_layer(inner.pop("type"), inner)
    for key in ("backward_layer", "cell", "cells"):
        if isinstance(kwargs.get(key), dict):
            inner = dict(kwargs[key])
            kwargs[key] = keras_layer(inner.pop("type"), inner)
        elif isinstance(kwargs.get(key), list):  # stacked cells
            kwargs[key] = [keras_layer(c["type"], {k: v for k, v in c.items() if k != "type"}) for c in kwargs[key]]
    cls = getattr(keras.layers, type_name)
    return cls(**kwargs)


def flatten(res) -> list:
    """Keras's nested outputs (an RNN over stacked LSTM cells returns each cell's states as a
    list) in order, as nnspec's flat output ports."""
    if isinstance(res, (list, tuple)):
        return [a for r in res for a in flatten(r)]
    return [res]


def keras_layer_facts(type_name: str, attrs: dict, input_shapes: list, input_dtypes: list | None = None):
    """Return (output shapes, [(weight path suffix, shape, trainable)], count_params) from Keras.

    ``input_shapes`` exclude the batch dimension, as ``keras.Input(shape=...)`` takes them.
    Output shapes are tuples with ``None`` for the batch, as Keras prints them.
    """
    keras = _keras()
    input_dtypes = input_dtypes or ["float32"] * len(input_shapes)
    ins = [keras.Input(shape=tuple(s), dtype=d) for s, d in zip(input_shapes, input_dtypes)]
    layer = keras_layer(type_name, attrs)
    out = call_layer(layer, type_name, ins, call_attrs(type_name, attrs)[1])
    shapes = [tuple(o.shape) for o in flatten(out)]
    weights = [(w.path.split("/")[-1], tuple(w.shape), w.trainable) for w in layer.weights]
    return shapes, weights, layer.count_params()
