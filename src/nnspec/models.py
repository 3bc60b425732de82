"""Keras's ``keras.models`` names: ``nnspec.models.Sequential``, ``Model``,
``model_from_json``, ``clone_model``.

The model classes live in :mod:`nnspec.api.model`; this module gathers them where Keras code
looks for them.
"""

from __future__ import annotations

from .api.model import Model, Sequential, load, model_from_json, model_from_yaml


def clone_model(model, input_tensors=None, clone_function=None):
    """A new model of the same architecture, with new layer objects (the same names) and
    freshly initialized weights, as Keras's ``clone_model``; a Sequential model stays one, built
    or not. ``input_tensors`` and ``clone_function`` (Python hooks into the cloning) are not
    taken."""
    if input_tensors is not None or clone_function is not None:
        raise TypeError("clone_model: input_tensors and clone_function are not supported; "
                        "the clone is built from the model's config")  # fmt: skip
    if not isinstance(model, Model):
        raise TypeError(f"clone_model takes a Model; got {type(model).__name__}")
    if isinstance(model, Sequential) and not model.built:
        return Sequential(
            [type(layer).from_config(layer.get_config()) for layer in model.layers], name=model.name
        )
    return Model.from_config(model.get_config())


__all__ = ["Model", "Sequential", "clone_model", "load", "model_from_json", "model_from_yaml"]
