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
    """Call a Keras layer on ``ins`` as Keras wants it: one tensor, a list, (for
    MultiHeadAttention) separate positional tensors, or (for a recurrent layer) the sequence with
    ``initial_state``."""
    from nnspec.layerdefs import REGISTRY

    if type_name in REGISTRY and REGISTRY[type_name].extra.get("call_positional"):
        return layer(*ins, **call_kwargs)
    if type_name in REGISTRY and REGISTRY[type_name].extra.get("initial_state") and len(ins) > 1:
        from keras_from_spec import keras_initial_state

        return layer(ins[0], initial_state=keras_initial_state(layer, ins[1:]), **call_kwargs)
    return layer(ins[0] if len(ins) == 1 else ins, **call_kwargs)


def keras_custom_class(class_name: str, definition: dict):
    """A Keras ``Layer`` subclass doing what a ``custom_layers`` declaration says, written as
    Keras's subclassing guide writes one: ``add_weight`` in ``build``, and ``call`` running the
    declaration's text as Python over ``keras.ops`` (test code evaluating its own fixtures; the
    names of keras.ops are also given bare, as nnspec accepts ``matmul(...)`` for
    ``ops.matmul(...)``)."""
    keras = _keras()
    ops = keras.ops
    defaults = dict(definition.get("arguments") or {})
    weights = dict(definition.get("weights") or {})

    class Custom(keras.layers.Layer):
        def __init__(self, **kwargs):
            own = {k: kwargs.pop(k, v) for k, v in defaults.items()}
            super().__init__(**kwargs)
            self.__dict__.update(own)
            self._args = own

        def build(self, input_shape):
            env = {"input_shape": input_shape, "self": self, **self._args}
            for wname, decl in weights.items():
                shape = decl["shape"]
                shape = eval(shape, {}, env) if isinstance(shape, str) else [
                    eval(d, {}, env) if isinstance(d, str) else d for d in shape]  # fmt: skip
                init = decl.get("initializer", "glorot_uniform")
                w = self.add_weight(shape=tuple(shape), initializer=init if isinstance(init, str) else "zeros",
                                    trainable=decl.get("trainable", True), name=wname)  # fmt: skip
                setattr(self, wname, w)

        def compute_output_shape(self, input_shape):  # TimeDistributed asks for it
            from keras.src import backend

            many = isinstance(input_shape, list)
            specs = [keras.KerasTensor(s) for s in input_shape] if many else keras.KerasTensor(input_shape)
            return backend.compute_output_spec(self.call, specs).shape

        def call(self, inputs):
            env = {n: getattr(ops, n) for n in dir(ops) if not n.startswith("_")}
            env.update(ops=ops, keras=keras, self=self, inputs=inputs, **self._args)
            env.update({w: getattr(self, w) for w in weights})
            text = definition["call"].strip()
            return eval(text[7:] if text.startswith("return ") else text, env)

    Custom.__name__ = class_name
    return Custom


def keras_custom_loss(name: str, text: str):
    """The Keras loss function a ``custom_losses`` declaration stands for: its text run as
    Python over ``keras.ops`` (test code evaluating its own fixtures), named ``name``."""
    keras = _keras()
    env = {n: getattr(keras.ops, n) for n in dir(keras.ops) if not n.startswith("_")}
    env.update(ops=keras.ops, keras=keras)
    fn = eval(f"lambda y_true, y_pred: {text}", env)
    fn.__name__ = name
    return fn


def keras_layer(type_name: str, attrs: dict):
    """Build a Keras layer from a model file's layer definition (wrappers' ``layer`` included),
    without its call arguments (see :func:`call_attrs`)."""
    keras = _keras()
    if type_name == "CustomLayer":
        return keras_custom_class(attrs["class_name"], attrs["definition"])(**attrs.get("arguments", {}))
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
