"""The JSON Schema (draft-07) of the model file, generated from the layer registry.

One source of truth: every layer's properties come from its ``LayerDef.attrs``. The generated
schema is committed as ``specs/schema.json`` (for editors: the YAML language server reads
draft-07) and a test fails when the committed file drifts from :func:`build_schema`. Regenerate
with ``nnspec schema -o src/nnspec/specs/schema.json``.
"""

from __future__ import annotations

import json
from functools import lru_cache

from ..layerdefs import ALIASES as LAYER_ALIASES
from ..layerdefs import PUBLIC_LIST as REGISTRY_LIST
from ..layerdefs.base import ACTIVATIONS, CONSTRAINTS, DTYPES, INITIALIZERS, REGULARIZERS, Attr
from .versions import CURRENT, KNOWN

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"
CLASS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # a custom layer type: a Python class name
BUILTIN_TYPES = tuple(d.name for d in REGISTRY_LIST) + tuple(LAYER_ALIASES)  # Keras's export aliases too
SCHEMA_ID = "https://nnspec.dev/schema/nnspec-1.json"

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta", "adamax", "nadam", "lion", "ftrl", "lamb",
              "adafactor")  # fmt: skip
LOSSES = (
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "hinge", "squared_hinge", "categorical_hinge", "huber",
    "log_cosh", "kl_divergence", "poisson", "cosine_similarity", "binary_focal_crossentropy",
    "categorical_focal_crossentropy", "categorical_generalized_cross_entropy",
    "mse", "mae", "mape", "msle", "kld", "kullback_leibler_divergence", "logcosh", "huber_loss",
    "MSE", "MAE", "MAPE", "MSLE", "KLD", "bce", "BCE",
    "crossentropy", "ce",  # resolved from the label and output shapes, as Keras's compile does
    # Keras's class names, which Keras's compile accepts as strings too
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError",
    "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "Hinge",
    "SquaredHinge", "CategoricalHinge", "Huber", "LogCosh", "KLDivergence", "Poisson", "CosineSimilarity",
    "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "CategoricalGeneralizedCrossEntropy",
)  # fmt: skip
METRICS = (
    "accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "mse", "mae",
    "mean_squared_error", "mean_absolute_error", "precision", "recall", "auc", "mean",
    "MSE", "MAE", "mape", "MAPE", "msle", "MSLE", "bce", "BCE",
    # a loss is also a metric (the mean of its values)
    "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "hinge", "squared_hinge",
    "categorical_hinge", "kl_divergence", "poisson",
    # Keras's class names, which Keras's compile accepts as strings too
    "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError",
    "Precision", "Recall", "AUC", "Mean", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError",
    "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "Hinge",
    "SquaredHinge", "CategoricalHinge", "KLDivergence", "Poisson",
    # the rest of Keras 3's metric catalog (keras.metrics), by snake_case and class name
    "sum", "root_mean_squared_error", "log_cosh_error", "cosine_similarity", "r2_score", "true_positives",
    "false_positives", "true_negatives", "false_negatives", "precision_at_recall", "recall_at_precision",
    "sensitivity_at_specificity", "specificity_at_sensitivity", "f1_score", "f_beta_score", "io_u", "binary_io_u",
    "mean_io_u", "one_hot_io_u", "one_hot_mean_io_u", "pearson_correlation", "concordance_correlation",
    "Sum", "RootMeanSquaredError", "LogCoshError", "CosineSimilarity", "R2Score", "TruePositives", "FalsePositives",
    "TrueNegatives", "FalseNegatives", "PrecisionAtRecall", "RecallAtPrecision", "SensitivityAtSpecificity",
    "SpecificityAtSensitivity", "F1Score", "FBetaScore", "IoU", "BinaryIoU", "MeanIoU", "OneHotIoU", "OneHotMeanIoU",
    "PearsonCorrelation", "ConcordanceCorrelation",
)  # fmt: skip


def _type_names(name: str) -> list[str]:
    """A layer type's class name and Keras's aliases of it."""
    return [name, *(a for a, t in LAYER_ALIASES.items() if t == name)]


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


def _call_attr_schemas() -> dict:
    """Keras's call arguments (``LayerDef.extra["call_attrs"]``), which a ``shares`` entry may
    give for its own call (which layer type takes which is checked when the graph is built)."""
    out: dict = {}
    for d in REGISTRY_LIST:
        for a in d.attrs:
            if a.name in d.extra.get("call_attrs", ()) and a.name not in out:
                out[a.name] = {k: v for k, v in attr_schema(a).items() if k != "default"}
    return dict(sorted(out.items()))


def layer_schema(defn) -> dict:
    names = _type_names(defn.name)
    props = {"type": {"const": defn.name} if len(names) == 1 else {"enum": names}}
    for a in defn.attrs:
        props[a.name] = attr_schema(a)
    return {
        "type": "object",
        "description": defn.doc,
        "properties": props,
        "required": ["type", *[a.name for a in defn.attrs if a.required]],
        "additionalProperties": False,
    }


def _custom_layer_schema() -> dict:
    dim = {"type": ["integer", "string"], "minimum": 0}
    weight = {
        "type": "object",
        "required": ["shape"],
        "additionalProperties": False,
        "properties": {
            "shape": {"anyOf": [{"type": "array", "items": dim}, {"type": "string"}],
                      "description": "A list of integers or of expressions over the arguments and "
                      "input_shape (`input_shape[-1]`, `units * 2`), or one string as add_weight takes "
                      "it: `(input_shape[-1], self.units)`."},  # fmt: skip
            "initializer": {**attr_schema(Attr("initializer", "initializer")), "default": "glorot_uniform"},
            "trainable": {"type": "boolean", "default": True},
            "regularizer": attr_schema(Attr("regularizer", "regularizer", None)),
            "constraint": attr_schema(Attr("constraint", "constraint", None)),
        },
    }
    return {
        "type": "object",
        "required": ["call"],
        "additionalProperties": False,
        "properties": {
            "arguments": {
                "type": "object",
                "propertyNames": {"type": "string", "pattern": CLASS_PATTERN},
                "additionalProperties": {"type": ["number", "boolean", "string", "null"]},
                "description": "The constructor's arguments and their defaults; numbers can be used in "
                "`call` and in weight shapes.",
            },
            "weights": {
                "type": "object",
                "propertyNames": {"type": "string", "pattern": CLASS_PATTERN},
                "additionalProperties": weight,
                "description": "The weights, in Keras's add_weight order: name -> {shape, initializer, "
                "trainable, regularizer, constraint}.",
            },
            "call": {"type": "string", "description": "What `call(inputs)` returns, written with keras.ops."},
            "supports_masking": {"type": "boolean", "default": False, "description": "Keras's "
                                 "`self.supports_masking = True`: the layer passes its first input's mask on "
                                 "(its output keeps the input's batch and time axes)."},
            "doc": {"type": "string"},
        },
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
            "description": "Input name -> {shape, dtype[, batch_size]}. The batch dimension is implicit.",
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
            "anyOf": [
                port_ref,
                {"type": "array", "items": port_ref, "minItems": 1},
                {"type": "object", "minProperties": 1, "propertyNames": name, "additionalProperties": port_ref},
            ],
            "description": "The model's outputs: node names, or `node:port`; or a mapping key -> node, whose "
            "outputs come in sorted key order and are keyed by it (Keras's dict of outputs).",
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
        props["custom_layers"] = {
            "type": "object",
            "propertyNames": {"type": "string", "pattern": CLASS_PATTERN},
            "additionalProperties": {"$ref": "#/definitions/custom_layer"},
            "description": "Layer types of this file: name -> {arguments, weights, call}; a node uses one as "
            "`{type: Name, ...arguments}`.",
        }
        props["custom_losses"] = {
            "type": "object",
            "propertyNames": {"type": "string", "pattern": NAME_PATTERN},
            "additionalProperties": {"type": "string"},
            "description": "Losses of this file: name -> an expression over y_true and y_pred, named in "
            "`training.loss` like a built-in loss.",
        }
        required = ["format", "inputs", "layers"]
    else:
        props["format"] = {"enum": list(KNOWN)}
        required = ["inputs", "layers"]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def _names(known, strict: bool) -> dict:
    """A name from ``known``; in the published schema also any other name, since a file may
    declare its own (custom_layers, custom_losses) and JSON Schema cannot read the declarations:
    the published schema is strict again for a file without them (:func:`_builtin_names_only`)."""
    if strict:
        return {"enum": list(known)}
    return {"anyOf": [{"enum": list(known)}, {"type": "string", "pattern": NAME_PATTERN}]}


def _builtin_names_only() -> dict:
    """For the published schema: a file without ``custom_layers`` names only built-in layer types
    (its nodes and its inline sub-models' nodes; a wrapped layer's type is checked by nnspec), and
    one without ``custom_losses`` only built-in losses, as the strict schema nnspec checks with."""
    node = {"if": {"type": "object", "required": ["type"]}, "then": {"properties": {"type": {"enum": list(BUILTIN_TYPES)}}}}
    layers = {"properties": {"layers": {"additionalProperties": node}}}
    loss = {"enum": list(LOSSES)}
    item = {"anyOf": [loss, {"type": "object", "properties": {"type": loss}}]}
    metric = {"enum": list(METRICS)}
    metric = {"anyOf": [metric, {"type": "object", "properties": {"type": metric}}]}
    metrics = {"anyOf": [metric, {"type": "array", "items": metric}, {"type": "null"}]}

    def per_output(x):
        return {"anyOf": [x, {"type": "array", "items": x}, {"type": "object", "additionalProperties": x}]}

    return {
        "allOf": [
            {"if": {"not": {"required": ["custom_layers"]}},
             "then": {**layers, "properties": {**layers["properties"],
                                               "models": {"additionalProperties": layers}}}},
            {"if": {"not": {"required": ["custom_losses"]}},
             "then": {"properties": {"training": {"properties": {"loss": per_output(item),
                                                                  "metrics": per_output(metrics),
                                                                  "weighted_metrics": per_output(metrics)}}}}},
        ]
    }  # fmt: skip


def _training_schema(strict: bool) -> dict:
    optimizer = {
        "anyOf": [
            {"enum": list(OPTIMIZERS)},
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": list(OPTIMIZERS)}}},
        ]
    }
    loss = _names(LOSSES, strict)
    metric = _names(METRICS, strict)  # a custom loss is also a metric
    per_output = lambda item: {"anyOf": [item, {"type": "array", "items": item}, {"type": "object", "additionalProperties": item}]}  # noqa: E731
    # a name, or {type: name, ...arguments} (AUC's num_thresholds, top-k's k, a metric's name)
    metric = {"anyOf": [metric, {"type": "object", "required": ["type"], "properties": {"type": metric}}]}
    # per output: a metric, a list of them, or null (none for that output)
    metrics = per_output({"anyOf": [metric, {"type": "array", "items": metric}, {"type": "null"}]})
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "optimizer": optimizer,
            "loss": per_output({"anyOf": [loss, {"type": "object", "required": ["type"],
                                                 "properties": {"type": loss}}]}),  # fmt: skip
            "loss_weights": {"anyOf": [{"type": "array", "items": {"type": "number"}},
                                       {"type": "object", "additionalProperties": {"type": "number"}}]},  # fmt: skip
            "metrics": metrics,
            "weighted_metrics": metrics,
            "batch_size": {"type": "integer", "minimum": 1},
            "epochs": {"type": "integer", "minimum": 1},
        },
    }


@lru_cache(maxsize=2)
def build_schema(strict: bool = False) -> dict:
    """The whole model-file schema, deterministic (same registry, same bytes).

    The published one (``nnspec schema``, committed as ``schema.json`` for editors) lets the
    names a file declares itself through (custom layer types, custom losses) where JSON Schema
    cannot check them against the declarations. nnspec checks with the ``strict`` one, after
    replacing the declared names in a copy of the document (``validate.py``), so an undeclared
    name is an error with a suggestion either way."""
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
                "batch_size": {"type": "integer", "minimum": 1, "description": "A fixed batch size (Keras's "
                               "batch_shape): shapes show it, every batch must have it, and a stateful "
                               "recurrent layer needs it."},
            },
        },
        "shared_call": {
            "type": "object",
            "required": ["shares"],
            "additionalProperties": False,
            "properties": {"shares": {"type": "string", "description": "Call the layer of this node again (same weights)."},
                           **_call_attr_schemas()},
        },
        "layer": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {**_names(BUILTIN_TYPES, strict), "description": "The layer class, or a type "
                                    "declared under custom_layers."}},
            "allOf": [
                {"if": {"required": ["type"], "properties": {"type": {"enum": _type_names(d.name)}}},
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
        "training": _training_schema(strict),
        "custom_layer": _custom_layer_schema(),
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
        **({} if strict else _builtin_names_only()),
        "definitions": defs,
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"
