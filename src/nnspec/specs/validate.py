"""Check a :class:`Document` against the format version and the generated JSON Schema.

jsonschema finds the problems; this module turns each into a :class:`Diagnostic` with a stable
code, the position of the offending key or value, what was expected, what was found, and a
did-you-mean where a name is close to a known one. Every independent problem is reported.
"""

from __future__ import annotations

import json
from functools import lru_cache

from .errors import Diagnostic, SchemaError, did_you_mean
from .load import Document, format_path
from .versions import CURRENT, FORMAT_PREFIX, KNOWN, migrate

_NAME_VOCABULARIES = ("activation", "initializer", "regularizer", "constraint")


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    from .schema import build_schema

    schema = build_schema(strict=True)  # declared names are replaced before checking
    return jsonschema.Draft7Validator(schema), schema


KERAS_MODEL_CLASSES = ("Functional", "Model", "Sequential")


def is_keras_config(obj) -> bool:
    """Whether ``obj`` (parsed JSON) is a Keras model config (``to_json()`` or ``get_config()``)
    rather than an nnspec model file."""
    if not isinstance(obj, dict) or "format" in obj:
        return False
    if obj.get("class_name") in KERAS_MODEL_CLASSES and isinstance(obj.get("config"), dict):
        return True
    layers = obj.get("layers")
    return isinstance(layers, list) and bool(layers) and all(isinstance(x, dict) and "class_name" in x
                                                             for x in layers)  # fmt: skip


def check_format(doc: Document) -> None:
    """Check ``format`` and migrate an older version in place. Raises SchemaError (E010)."""
    data = doc.data
    if "format" not in data:
        hint = None
        if is_keras_config(data):
            where = doc.file or "FILE"
            hint = f"this is a Keras model config: 'nnspec import {where} -o model.yaml' writes its model file"
        raise SchemaError([doc.diag("E010", f"missing 'format'; expected 'format: {CURRENT}' as the first key", (),
                                    hint=hint)])  # fmt: skip
    fmt = data["format"]
    if fmt not in KNOWN:
        hint = None
        if isinstance(fmt, str) and fmt.startswith(FORMAT_PREFIX):
            hint = f"this nnspec reads {', '.join(KNOWN)}; a newer nnspec may read this file"
        raise SchemaError(
            [doc.diag("E010", f"unknown format version {fmt!r}; expected {CURRENT!r}", ("format",),
                      hint=hint, expected=CURRENT, found=repr(fmt))]  # fmt: skip
        )
    if fmt != CURRENT:
        doc.data = migrate(data, fmt)


def _short(value) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _type_words(t) -> str:
    ts = t if isinstance(t, list) else [t]
    return " or ".join(_TYPE_NAMES.get(x, x) for x in ts)


def _found_type(v) -> str:
    if isinstance(v, bool):
        return f"{str(v).lower()} (a boolean)"
    if isinstance(v, int):
        return f"{v} (an integer)"
    if isinstance(v, float):
        return f"{v} (a number)"
    if isinstance(v, str):
        return f"'{v}' (a string)"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    if v is None:
        return "null"
    return type(v).__name__


def _where_word(path: tuple) -> str:
    """Describe what kind of thing is at ``path`` for messages."""
    if (len(path) >= 2 and path[-2] in ("layers", "cell", "cells")) or (len(path) >= 1 and path[-1] in ("layer", "backward_layer", "cell")):
        return "layer"
    return ""


def _translate(doc: Document, err, prefix: tuple = ()) -> list[Diagnostic]:
    path = tuple(prefix) + tuple(err.absolute_path)
    v = err.validator
    if v in ("anyOf", "oneOf") and err.context:
        # Pick the branch that went deepest: the most specific explanation.
        import jsonschema.exceptions

        # A value that is not null failed every real branch: never explain it as "expected null".
        branches = [e for e in err.context if not (err.instance is not None and e.validator == "type"
                                                   and e.validator_value == "null")] or err.context  # fmt: skip
        # A value of a type some branch takes (kernel_size: 0, factor: 1.5) is explained by that
        # branch (out of range), not by the others' "expected a list".
        typed = [e for e in branches if not (e.validator == "type" and e.absolute_path == err.absolute_path)]
        branches = typed or branches
        best = jsonschema.exceptions.best_match(branches)
        # A nullable vocabulary value (activation: 'rleu'): report the name, not the branches.
        enums = [e for e in _all_context(err)
                 if e.validator in ("enum", "const") and tuple(prefix) + tuple(e.absolute_path) == path]  # fmt: skip
        if enums and isinstance(err.instance, str):
            best = enums[0]
        elif isinstance(err.instance, (list, dict)):
            # a list or mapping of names (metrics: [acuracy]): report the name that is wrong
            named = [e for e in _all_context(err) if e.validator in ("enum", "const") and isinstance(e.instance, str)
                     and len(e.absolute_path) > len(err.absolute_path)]  # fmt: skip
            if named:
                best = max(named, key=lambda e: len(e.absolute_path))
        return _translate(doc, best, prefix)
    if v == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extras = [k for k in err.instance if k not in allowed]
        owner = err.instance.get("type") if isinstance(err.instance, dict) else None
        out = []
        for k in extras:
            of = f" for {owner}" if isinstance(owner, str) else ""
            what = "parameter" if owner else "key"
            out.append(
                doc.diag("E101", f"unknown {what} '{k}'{of}", path + (k,), key=True,
                         hint=did_you_mean(k, allowed), found=k,
                         expected="one of " + ", ".join(allowed))  # fmt: skip
            )
        return out
    if v == "required":
        missing = err.validator_value
        have = err.instance if isinstance(err.instance, dict) else {}
        out = []
        for k in missing:
            if k in have:
                continue
            owner = have.get("type")
            of = f" of {owner}" if isinstance(owner, str) else ""
            out.append(doc.diag("E102", f"missing required parameter '{k}'{of}", path, key=True, expected=k))
        return out
    if v == "type":
        return [
            doc.diag("E100", f"expected {_type_words(err.validator_value)}; found {_found_type(err.instance)}", path,
                     expected=_type_words(err.validator_value), found=_short(err.instance))  # fmt: skip
        ]
    if v in ("enum", "const"):
        allowed = err.validator_value if v == "enum" else [err.validator_value]
        found = err.instance
        vocab = _vocabulary_name(err, path)
        if vocab:
            return [
                doc.diag("E104", f"unknown {vocab} {_short(found)}", path,
                         hint=did_you_mean(found, allowed), found=_short(found),
                         expected=f"a {vocab} name")  # fmt: skip
            ]
        listed = ", ".join(_short(a) for a in allowed[:12]) + (", ..." if len(allowed) > 12 else "")
        return [
            doc.diag("E103", f"expected one of {listed}; found {_short(found)}", path,
                     hint=did_you_mean(found, allowed), expected=listed, found=_short(found))  # fmt: skip
        ]
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return [
            doc.diag("E103", f"expected a value {words} {err.validator_value}; found {_short(err.instance)}", path,
                     expected=f"{words} {err.validator_value}", found=_short(err.instance))  # fmt: skip
        ]
    if v in ("minItems", "maxItems", "minProperties"):
        n = err.validator_value
        word = {"minItems": "at least", "maxItems": "at most", "minProperties": "at least"}[v]
        unit = "entries"
        return [doc.diag("E103", f"expected {word} {n} {unit}; found {len(err.instance)}", path,
                         expected=f"{word} {n} {unit}", found=str(len(err.instance)))]  # fmt: skip
    if v == "pattern" and "propertyNames" not in err.absolute_schema_path:
        return [
            doc.diag("E105", f"invalid name {_short(err.instance)}: names start with a letter or '_' and hold "
                     "letters, digits, '_', '.', '-'", path, found=_short(err.instance))  # fmt: skip
        ]
    if v == "propertyNames":
        bad = err.instance if not isinstance(err.instance, dict) else None
        return [doc.diag("E105", f"invalid name {_short(bad)}: {err.message}", path)]
    if "propertyNames" in err.absolute_schema_path and isinstance(err.instance, str):
        # jsonschema reports a bad key at its mapping's path; point at the key itself.
        return [
            doc.diag("E105", f"invalid name {_short(err.instance)}: names start with a letter or '_' and hold "
                     "letters, digits, '_', '.', '-'", path + (err.instance,), key=True, found=_short(err.instance))  # fmt: skip
        ]
    return [doc.diag("E100", err.message, path)]


def _all_context(err):
    """Every error nested in ``err``'s anyOf/oneOf branches, depth first."""
    for e in err.context or ():
        yield e
        yield from _all_context(e)


def _vocabulary_name(err, path) -> str | None:
    """'layer type', 'activation', ... when an enum is a vocabulary of names."""
    path = list(path)
    ref_path = list(err.absolute_schema_path)
    metrics = "metrics" in path or "weighted_metrics" in path
    if path and path[-1] == "type":
        if "training" in path or "loss" in path:
            return "loss" if "loss" in path else "metric" if metrics else "optimizer"
        if any(p in _NAME_VOCABULARIES for p in ref_path):
            return next(p for p in ref_path if p in _NAME_VOCABULARIES)
        is_layer = (len(path) >= 3 and path[-3] in ("layers", "cell", "cells")) or (len(path) >= 2 and path[-2] in ("layer", "backward_layer", "cell"))
        if is_layer:
            return "layer type"
        parent = path[-2] if len(path) >= 2 else ""
        for name in _NAME_VOCABULARIES:
            if isinstance(parent, str) and parent.endswith(name):
                return name
        return "layer type"
    sch = err.schema
    acts = _validator()[1]["definitions"]["activation"]["enum"]
    if sch.get("enum") == acts:
        return "activation"
    defs = _validator()[1]["definitions"]
    for name in ("initializer", "regularizer", "constraint"):
        if sch.get("enum") == defs[name]["anyOf"][0]["enum"]:
            return name
    if "training" in path:
        if "loss" in path:
            return "loss"
        if metrics:
            return "metric"
        if "optimizer" in path:
            return "optimizer"
    return None


@lru_cache(maxsize=1)
def _split_validators():
    """The document's structure with layers checked only for a known ``type``, and one validator
    per layer type. Same schema, same errors; each layer is checked against its own type's
    definition instead of trying the conditions of every type (10x faster on the seeds)."""
    import jsonschema

    schema = _validator()[1]
    # a copy of the two levels that change (a deep copy of the whole schema took 10-28 ms)
    light_layer = {k: v for k, v in schema["definitions"]["layer"].items() if k != "allOf"}
    light = {**schema, "definitions": {**schema["definitions"], "layer": light_layer}}
    per_type = {
        name: jsonschema.Draft7Validator({"$ref": f"#/definitions/layers/{name}", "definitions": schema["definitions"]})
        for name in schema["definitions"]["layers"]
    }
    return jsonschema.Draft7Validator(light), per_type


def _layer_nodes(data) -> list[tuple[tuple, dict]]:
    """(path, mapping) of every layer definition at the top level and in inline sub-models."""
    out = []
    models = [((), data)]
    if isinstance(data.get("models"), dict):
        models += [(("models", k), m) for k, m in data["models"].items() if isinstance(m, dict)]
    for prefix, m in models:
        layers = m.get("layers")
        if isinstance(layers, dict):
            for k, node in layers.items():
                if isinstance(node, dict) and "shares" not in node:
                    out.append((prefix + ("layers", k), node))
    return out


def custom_types(data) -> dict:
    """The document's ``custom_layers`` (name -> declaration), or {}."""
    c = data.get("custom_layers") if isinstance(data, dict) else None
    return c if isinstance(c, dict) else {}


def _without_custom_nodes(data: dict, custom: dict) -> dict:
    """``data`` with every layer definition of a custom type (nested in wrappers too) replaced by
    a placeholder the schema accepts (custom nodes are checked by :func:`_custom_problems`);
    copies, ``data`` unchanged."""
    if not custom:
        return data
    from ..layerdefs.base import NESTED_LAYER_KEYS, map_nested

    def layer(v):
        if not isinstance(v, dict):
            return v
        if v.get("type") in custom:
            return {"type": "Identity"}
        return {k: (map_nested(e, layer) if k in NESTED_LAYER_KEYS else e) for k, e in v.items()}

    def strip(m):
        layers = m.get("layers")
        if not isinstance(layers, dict):
            return m
        return {**m, "layers": {k: layer(v) for k, v in layers.items()}}

    out = strip(data)
    if isinstance(data.get("models"), dict):
        out["models"] = {k: strip(m) if isinstance(m, dict) else m for k, m in data["models"].items()}
    return out


def _layer_definitions(data) -> list[tuple[tuple, dict]]:
    """(path, definition) of every layer definition: the nodes (in sub-models too) and the
    layers nested in wrappers; a custom type's node is not searched further."""
    from ..layerdefs.base import NESTED_LAYER_KEYS

    out = []

    def walk(path, node):
        if not isinstance(node, dict):
            return
        out.append((path, node))
        for k in NESTED_LAYER_KEYS:
            v = node.get(k)
            if isinstance(v, dict):
                walk(path + (k,), v)
            elif isinstance(v, list):
                for i, e in enumerate(v):
                    walk(path + (k, i), e)

    for path, node in _layer_nodes(data):
        walk(path, node)
    return out


def _canonical_types(data, custom: dict) -> None:
    """Write the class name where a layer definition names it by one of Keras's aliases
    (``MaxPool2D`` -> ``MaxPooling2D``), in place, as Keras's ``get_config`` would name it."""
    from ..layerdefs import ALIASES

    for _, node in _layer_definitions(data):
        t = node.get("type")
        if isinstance(t, str) and t in ALIASES and t not in custom:
            node["type"] = ALIASES[t]


def _custom_nodes(data, custom: dict) -> list[tuple[tuple, dict]]:
    """(path, definition) of every layer definition of a custom type, nested ones included."""
    return [(p, n) for p, n in _layer_definitions(data) if n.get("type") in custom]


def expression_diag(doc: Document, path: tuple, err: ValueError) -> Diagnostic:
    """E106 for an expression (a custom layer's ``call``, a custom loss) at ``path``: for a
    syntax or language error (``ExprError``), positioned at the offending column when the
    expression is written on one line, else at the value with the column in the message."""
    line, col = doc.where(path)
    column = getattr(err, "column", None)
    msg = str(err)
    if column is not None and line is not None and col is not None and doc.text is not None:
        lines = doc.text.splitlines()
        raw = lines[line - 1] if 0 < line <= len(lines) else ""
        text = doc.data
        for k in path:
            text = text.get(k) if isinstance(text, dict) else None
        start = col - 1 + (1 if raw[col - 1 : col] in ("'", '"') else 0)
        if isinstance(text, str) and "\n" not in text and raw[start : start + len(text)] == text:
            col = start + column + 1
        else:
            msg += f" (at column {column + 1} of the expression)"
    return Diagnostic("E106", msg, format_path(path), doc.file, line, col, hint=getattr(err, "hint", None))


def _custom_problems(doc: Document, custom: dict) -> list[Diagnostic]:
    """Problems of the custom layer declarations (their ``call`` and names) and of the nodes that
    use them (unknown arguments)."""
    from ..layerdefs import ALIASES, REGISTRY
    from ..layerdefs import expressions as ex

    out = []
    for cname, decl in custom.items():
        path = ("custom_layers", cname)
        if cname in REGISTRY or cname in ALIASES:
            out.append(doc.diag("E105", f"custom layer '{cname}' has the name of a built-in layer type", path,
                                key=True))  # fmt: skip
        if not isinstance(decl, dict) or not isinstance(decl.get("call"), str):
            continue  # the schema reports it
        args = decl.get("arguments") if isinstance(decl.get("arguments"), dict) else {}
        weights = decl.get("weights") if isinstance(decl.get("weights"), dict) else {}
        for wname in weights:
            if wname in args:
                out.append(doc.diag("E105", f"weight '{wname}' has the name of an argument", path + ("weights", wname),
                                    key=True))  # fmt: skip
        numeric = {k: 1.0 for k, v in args.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        tensors = ["inputs"] + [f"inputs[{i}]" for i in range(16)] + [w for w in weights if w not in numeric]
        try:
            ex.parse(decl["call"], tensors, numeric)
        except ex.ExprError as err:
            out.append(expression_diag(doc, path + ("call",), err))
    for path, node in _custom_nodes(doc.data, custom):
        t = node["type"]
        if not isinstance(custom[t], dict):
            continue
        declared = custom[t].get("arguments") if isinstance(custom[t].get("arguments"), dict) else {}
        allowed = [*declared, "trainable", "dtype", "name"]
        for k, v in node.items():
            if k == "type":
                continue
            if k not in allowed:
                out.append(doc.diag("E101", f"unknown parameter '{k}' for custom layer {t}", path + (k,), key=True,
                                    hint=did_you_mean(k, allowed), found=k))  # fmt: skip
            elif k == "trainable" and not isinstance(v, bool):
                out.append(doc.diag("E100", f"expected a boolean; found {_short(v)}", path + (k,)))
            elif k not in ("trainable", "dtype", "name") and not (v is None or isinstance(v, (int, float, str))):
                out.append(doc.diag("E100", f"expected a number, a boolean, a string or null; found {_short(v)}",
                                    path + (k,)))  # fmt: skip
    return out


def declared_losses(data) -> dict:
    """The document's ``custom_losses`` (name -> expression), or {}."""
    c = data.get("custom_losses") if isinstance(data, dict) else None
    return c if isinstance(c, dict) else {}


def _with_builtin_losses(data: dict, declared: dict) -> dict:
    """``data`` with every use of a declared custom loss in ``training.loss`` and
    ``training.metrics`` replaced by a built-in name the schema accepts (the declarations are checked by
    :func:`_custom_loss_problems`); shallow copies, ``data`` unchanged."""
    training = data.get("training")
    if not declared or not isinstance(training, dict):
        return data

    def builtin(v):
        if isinstance(v, str) and v in declared:
            return "mean_squared_error"
        if isinstance(v, dict) and isinstance(v.get("type"), str) and v["type"] in declared:
            return {**v, "type": "mean_squared_error"}
        return v

    def per_output(v):
        if isinstance(v, list):
            return [builtin(e) for e in v]
        if isinstance(v, dict) and "type" not in v:  # per output
            return {k: per_output(e) for k, e in v.items()}
        return builtin(v)

    # a custom loss is also a metric (the mean of its values), as a loss function is in Keras
    return {**data, "training": {**training, **{k: per_output(training[k]) for k in ("loss", "metrics", "weighted_metrics")
                                                if k in training}}}  # fmt: skip


def _custom_loss_problems(doc: Document, declared: dict) -> list[Diagnostic]:
    """Problems of the custom loss declarations: a built-in loss's name, an expression that is not
    a loss over ``y_true`` and ``y_pred`` (checked at the smallest output rank its axes fit; the
    output it scores is checked when training resolves it)."""
    from ..layerdefs import loss_expressions as custom_losses
    from .schema import LOSSES

    out = []
    for name, text in declared.items():
        path = ("custom_losses", name)
        if name in LOSSES:
            out.append(doc.diag("E105", f"custom loss '{name}' has the name of a built-in loss", path,
                                key=True))  # fmt: skip
        if not isinstance(text, str):
            continue  # the schema reports it
        try:
            custom_losses.analyze(text)
        except ValueError as err:
            out.append(expression_diag(doc, path, err))
    return out


def _hint_custom_losses(d: Diagnostic, declared: dict) -> Diagnostic:
    """An unknown loss or metric name under ``training`` is checked against the declared custom
    losses too (a custom loss is also a metric)."""
    if not declared or d.code != "E104" or d.found is None:
        return d
    from dataclasses import replace

    from .schema import LOSSES, METRICS

    if d.path.startswith("training.loss"):
        known = LOSSES
    elif d.path.startswith(("training.metrics", "training.weighted_metrics")):
        known = METRICS
    else:
        return d
    return replace(d, hint=did_you_mean(d.found.strip("'"), [*declared, *known]))


def validate_document(doc: Document) -> None:
    """Raise :class:`SchemaError` with every schema problem of ``doc``; migrate old formats."""
    check_format(doc)
    structure, per_type = _split_validators()
    diags: list[Diagnostic] = []
    seen = set()
    custom = custom_types(doc.data)
    _canonical_types(doc.data, custom)
    losses = declared_losses(doc.data)
    data = _without_custom_nodes(doc.data, custom)  # custom nodes: checked by _custom_problems
    errors = [((), e) for e in structure.iter_errors(_with_builtin_losses(data, losses))]
    for path, node in _layer_nodes(data):
        t = node.get("type")
        v = per_type.get(t) if isinstance(t, str) else None
        if v is not None:
            errors.extend((path, e) for e in v.iter_errors(node))
    for prefix, err in errors:
        for d in _translate(doc, err, prefix):
            key = (d.code, d.path, d.message)
            if key not in seen:
                seen.add(key)
                diags.append(d)
    diags.extend(_custom_problems(doc, custom))
    diags = [_hint_custom_losses(d, losses) for d in diags] + _custom_loss_problems(doc, losses)
    # 'unit' misspelt for 'units' is one mistake: drop the "missing 'units'" it also causes.
    suggested = {(d.path.rsplit(".", 1)[0] if "." in d.path else "", d.hint) for d in diags
                 if d.code == "E101" and d.hint}  # fmt: skip
    diags = [d for d in diags if not (d.code == "E102" and (d.path, f"did you mean '{d.expected}'?") in suggested)]
    if diags:
        diags.sort(key=lambda d: (d.line or 0, d.column or 0))
        raise SchemaError(diags)


@lru_cache(maxsize=1)
def _layer_validator():
    import jsonschema

    schema = _validator()[1]
    return jsonschema.Draft7Validator({"$ref": "#/definitions/layer", "definitions": schema["definitions"]})


def layer_problems(doc: Document) -> list[str]:
    """Schema problems of one layer definition (``doc.data`` is ``{type: ..., ...}``), as text.

    Used by the Python API to refuse bad arguments when a layer is constructed, as Keras does.
    """
    out = []
    v = _split_validators()[1].get(doc.data.get("type")) if isinstance(doc.data.get("type"), str) else None
    for err in (v or _layer_validator()).iter_errors(doc.data):
        for d in _translate(doc, err):
            out.append(f"{d.path}: {d.message}" + (f"; {d.hint}" if d.hint else "") if d.path else d.message)
    return out
