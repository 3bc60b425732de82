"""nnspec: neural network architectures as reviewed model files.

Load, validate, shape-check, summarize and compile model files; build the same files from
Python with a Keras-like API::

    import nnspec
    m = nnspec.load("specs/cnn.yaml")
    m.summary()

Importing nnspec is cheap: the public names are loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "load": "nnspec.api.model",
    "Model": "nnspec.api.model",
    "Sequential": "nnspec.api.model",
    "model_from_json": "nnspec.api.model",
    "model_from_yaml": "nnspec.api.model",
    "Input": "nnspec.api.layer",
    "SpecError": "nnspec.specs.errors",
    "NnspecError": "nnspec.specs.errors",
    "InputError": "nnspec.specs.errors",
    "WeightsError": "nnspec.specs.errors",
    "Diagnostic": "nnspec.specs.errors",
}

__all__ = [*_API, "layers", "models", "ops", "optimizers", "losses", "metrics", "callbacks", "__version__"]


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in ("layers", "models", "ops", "optimizers", "losses", "metrics", "callbacks"):
        return importlib.import_module(f"nnspec.{name}")
    raise AttributeError(f"module 'nnspec' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
