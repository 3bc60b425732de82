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


def load_model(filepath, compile: bool = True):
    """The model ``Model.save`` (or ``ModelCheckpoint``) wrote, as Keras's ``load_model``: built
    from its config, with its weights; with ``compile``, compiled as it was (when its compile
    arguments were data; or from its file's training section) with the optimizer's state
    restored, so training resumes where it stopped. Loading runs no code from the file."""
    import json
    import os

    from .runtime.callbacks import CHECKPOINT_FORMAT, load_checkpoint, read_safetensors_metadata
    from .runtime.optimizers import get_optimizer
    from .specs.errors import WeightsError

    name = os.fspath(filepath)
    meta = read_safetensors_metadata(name)
    record = (
        json.loads(meta["checkpoint"])
        if meta.get("format") == CHECKPOINT_FORMAT and "checkpoint" in meta
        else {}
    )
    if not isinstance(record.get("config"), dict):
        raise WeightsError(f"{name}: not a saved model (Model.save writes one); a weights file is read with "
                           "model.load_weights, into a model built from its model file")  # fmt: skip
    model = Model.from_config(record["config"])
    state = record.get("optimizer")
    if compile and record.get("compile") is not None:
        optimizer = (
            get_optimizer({"class_name": state["class_name"], "config": state["config"]}) if state else None
        )
        model.compile(optimizer=optimizer, **record["compile"])
    elif compile and model.get_config().get("training"):
        model.compile()
    load_checkpoint(name, model)
    return model


__all__ = ["Model", "Sequential", "clone_model", "load", "load_model", "model_from_json", "model_from_yaml"]
