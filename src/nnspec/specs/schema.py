"""The JSON Schema (draft-07) of the model file, generated from the layer registry.

One source of truth: every layer's properties come from its ``LayerDef.attrs``. The generated
schema is committed as ``specs/schema.json`` (for editors: the YAML language server reads
draft-07) and a test fails when the committed file drifts from :func:`build_schema`. Regenerate
with ``nnspec schema -o src/nnspec/specs/schema.json``.
"""

from __future__ import annotations

import json
from functools import lru_cache

from ..layerdefs import REGISTRY_LIST
from ..layerdefs.base import ACTIVATIONS, CONSTRAINTS, DTYPES, INITIALIZERS, REGULARIZERS, Attr
from .versions import CURRENT, KNOWN

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"
SCHEMA_ID = "https://nnspec.dev/schema/nnspec-1.json"

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta", "adamax", "nadam")
LOSSES = (
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "hinge", "squared_hinge", "categorical_hinge", "huber",
    "log_cosh", "kl_divergence", "poisson", "cosine_similarity",
    "mse", "mae", "mape", "msle", "kld", "kullback_leibler_divergence", "logcosh", "huber_loss",
)  # fmt: skip
METRICS = (
    "accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "mse", "mae",
    "mean_squared_error", "mean_absolute_error", "precision", "recall", "auc",
)  # fmt: skip


def _named_object(vocabulary: dict[str, tuple[str, ...]], what: str) -> dict:
    """A name from ``vocabulary``, or ``{type: name, <arguments>}``."""
    args = sorted({a for v in vocabulary.values() for a in v})
    props: dict = {"type": {"enum": sorted(vocabulary)}}
    for a in args:
        props[a] = (
            {} if a in ("axis", "mode", "distribution")
            else {"type": ["array", "null"], "items": {"type": "integer"}} if a in ("input_axes", "output_axes")
            else {"type": ["number", "null"]}
        )  # fmt: skip
    return {
        "description": f"A {what} name, or a mapping with its `type` and arguments.",
        "anyOf": [
            {"type": "string", "enum": sorted(vocabulary)},
            {"type": "object", "required": ["type"], "additionalProperties": False, "properties": props},
        ],
    }


def attr_schema(a: Attr) -> dict:
    """The JSON Schema of one layer attribute."""
    k = a.kind
    s: dict
    if k == "int":
        s = {"type": "integer"}
    elif k == "float":
        s = {"type": "number"}
    elif k == "bool":
        s = {"type": "boolean"}
    elif k in ("str", "model"):
        s = {"type": "string"}
    elif k == "enum":
        s = {"enum": list(a.choices)}
    elif k == "ints":
        item = {"type": "integer"} if a.minimum is None else {"type": "integer", "minimum": a.minimum}
        s = {"anyOf": [item, {"type": "array", "items": item, "minItems": a.length, "maxItems": a.length}]}
    elif k == "int_list":
        s = {"type": "array", "items": {"type": "integer"}}
    elif k == "shape":
        s = {"type": "array", "items": {"type": ["integer", "null"]}}
    elif k == "sizes":
        s = {"anyOf": [{"type": "integer", "minimum": 1},
                       {"type": "array", "items": {"type": ["integer", "null"], "minimum": 1}}]}  # fmt: skip
    elif k == "axis":
        s = {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}, "minItems": 1}]}
    elif k == "activation":
        s = {"$ref": "#/definitions/activation"}
    elif k == "initializer":
        s = {"$ref": "#/definitions/initializer"}
    elif k == "regularizer":
        s = {"$ref": "#/definitions/regularizer"}
    elif k == "constraint":
        s = {"$ref": "#/definitions/constraint"}
    elif k == "layer":
        s = {"$ref": "#/definitions/layer"}
    elif k in ("cell", "layers"):
        stack = {"type": "array", "items": {"$ref": "#/definitions/layer"}, "minItems": 1}
        s = {"anyOf": [{"$ref": "#/definitions/layer"}, stack]} if k == "cell" else stack
    elif k == "dtype":
        s = {"enum": list(DTYPES)}
    elif k == "numbers":
        s = {"$ref": "#/definitions/numbers"}
    elif k in ("factor", "floats"):
        item: dict = {"type": "number"}
        if a.minimum is not None:
            item["exclusiveMinimum" if a.exclusive_minimum else "minimum"] = a.minimum
        if a.maximum is not None:
            item["maximum"] = a.maximum
        n = 2 if k == "factor" else a.length
        pair = {"type": "array", "items": item, "minItems": n, "maxItems": n}
        s = {"anyOf": [item, pair]} if k == "factor" else pair
    else:
        s = {}
    if a.minimum is not None and k in ("int", "float"):
        s["exclusiveMinimum" if a.exclusive_minimum else "minimum"] = a.minimum
    if a.maximum is not None and k in ("int", "float"):
        s["maximum"] = a.maximum
    if a.nullable:
        s = {"anyOf": [s, {"type": "null"}]}
    if a.doc:
        s["description"] = a.doc
    if not a.required:
        s["default"] = a.default
    return s


def layer_schema(defn) -> dict:
    props = {"type": {"const": defn.name}}
    for a in defn.attrs:
        props[a.name] = attr_schema(a)
    return {
        "type": "object",
        "description": defn.doc,
        "properties": props,
        "required": ["type", *[a.name for a in defn.attrs if a.required]],
        "additionalProperties": False,
    }


def _model_schema(top: bool) -> dict:
    name = {"type": "string", "pattern": NAME_PATTERN}
    port_ref = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_.\-]*(:[0-9]+)?$"}
    props = {
        "name": {"type": "string", "description": "The model's name."},
        "description": {"type": "string"},
        "inputs": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": name,
            "additionalProperties": {"$ref": "#/definitions/input"},
            "description": "Input name -> {shape, dtype}. The batch dimension is implicit.",
        },
        "layers": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": name,
            "additionalProperties": {"$ref": "#/definitions/node"},
            "description": "Node name -> layer definition, in order. A node is one call of a layer.",
        },
        "edges": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Chains `a -> b -> c`; `a, b -> merge` feeds several inputs in order; `n:1` is a port.",
        },
        "outputs": {
            "anyOf": [port_ref, {"type": "array", "items": port_ref, "minItems": 1}],
            "description": "The model's outputs: node names, or `node:port`.",
        },
    }
    if top:
        props["format"] = {"enum": list(KNOWN), "description": f"The format version; currently `{CURRENT}`."}
        props["models"] = {
            "type": "object",
            "propertyNames": name,
            "additionalProperties": {"$ref": "#/definitions/submodel"},
            "description": "Named sub-models, called by `{type: Model, model: name}`.",
        }
        props["training"] = {"$ref": "#/definitions/training"}
        required = ["format", "inputs", "layers"]
    else:
        props["format"] = {"enum": list(KNOWN)}
        required = ["inputs", "layers"]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def _training_schema() -> dict:
    optimizer = {
        "anyOf": [
            {"enum": list(OPTIMIZERS)},
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": list(OPTIMIZERS)}}},
        ]
    }
    loss = {"enum": list(LOSSES)}
    per_output = lambda item: {"anyOf": [item, {"type": "array", "items": item}, {"type": "object", "additionalProperties": item}]}  # noqa: E731
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "optimizer": optimizer,
            "loss": per_output({"anyOf": [loss, {"type": "object", "required": ["type"],
                                                 "properties": {"type": loss}}]}),  # fmt: skip
            "loss_weights": {"anyOf": [{"type": "array", "items": {"type": "number"}},
                                       {"type": "object", "additionalProperties": {"type": "number"}}]},  # fmt: skip
            "metrics": per_output({"anyOf": [{"enum": list(METRICS)}, {"type": "array", "items": {"enum": list(METRICS)}}]}),
            "batch_size": {"type": "integer", "minimum": 1},
            "epochs": {"type": "integer", "minimum": 1},
        },
    }


@lru_cache(maxsize=1)
def build_schema() -> dict:
    """The whole model-file schema, deterministic (same registry, same bytes)."""
    defs: dict = {
        "activation": {"enum": list(ACTIVATIONS), "description": "A Keras activation name."},
        "initializer": _named_object(INITIALIZERS, "Keras initializer"),
        "regularizer": _named_object(REGULARIZERS, "regularizer"),
        "constraint": _named_object(CONSTRAINTS, "constraint"),
        "input": {
            "type": "object",
            "required": ["shape"],
            "additionalProperties": False,
            "properties": {
                "shape": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
                    "description": "Shape without the batch dimension; null for a run-time dimension.",
                },
                "dtype": {"enum": list(DTYPES), "default": "float32"},
                "sparse": {"type": "boolean", "default": False},
            },
        },
        "shared_call": {
            "type": "object",
            "required": ["shares"],
            "additionalProperties": False,
            "properties": {"shares": {"type": "string", "description": "Call the layer of this node again (same weights)."}},
        },
        "layer": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": [d.name for d in REGISTRY_LIST], "description": "The layer class."}},
            "allOf": [
                {"if": {"required": ["type"], "properties": {"type": {"const": d.name}}},
                 "then": {"$ref": f"#/definitions/layers/{d.name}"}}
                for d in REGISTRY_LIST
            ],
        },
        "node": {
            "if": {"type": "object", "required": ["shares"]},
            "then": {"$ref": "#/definitions/shared_call"},
            "else": {"$ref": "#/definitions/layer"},
        },
        "submodel": {
            "if": {"type": "object", "required": ["file"]},
            "then": {"type": "object", "additionalProperties": False, "properties": {"file": {"type": "string"}}},
            "else": _model_schema(top=False),
        },
        "training": _training_schema(),
        "numbers": {
            "description": "A number or a list of numbers (lists may nest).",
            "anyOf": [{"type": "number"}, {"type": "array", "items": {"$ref": "#/definitions/numbers"}}],
        },
        "layers": {d.name: layer_schema(d) for d in REGISTRY_LIST},
    }
    top = _model_schema(top=True)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "nnspec model file",
        "description": "A neural network as a declarative file: inputs, layers, edges, outputs.",
        **top,
        "definitions": defs,
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"
