"""The normalized model file: what ``to_json``/``get_config`` emit.

Normalized means: every layer attribute present with Keras's defaults filled, in the order the
layer defines them, ``type`` first; inputs with their dtype; sub-models inlined (a ``file:``
reference is replaced by the model it names); edges written as chains, one chain per run of
single-input nodes in file order; outputs as a list. Normalizing a normalized file changes
nothing, and reading it back builds the same model.
"""

from __future__ import annotations

from ..layerdefs import REGISTRY
from ..layerdefs.base import NESTED_LAYER_KEYS, map_nested, normalize_attrs
from ..specs.versions import CURRENT
from .graph import Graph, Node, Ref


def normalize_layer(spec: dict) -> dict:
    """``{type: Dense, units: 3}`` -> the full attribute mapping, nested layers included; a
    custom layer as the file writes it (``{type: CustomDense, units: 10, ...}``)."""
    if spec.get("type") == "CustomLayer":
        from ..layerdefs.custom import file_form

        return file_form(normalize_attrs(REGISTRY["CustomLayer"], {k: v for k, v in spec.items() if k != "type"})
                         | {"type": "CustomLayer"}, {})  # fmt: skip
    spec = dict(spec)
    type_name = spec.pop("type")
    defn = REGISTRY[type_name]
    attrs = normalize_attrs(defn, spec)
    for k in NESTED_LAYER_KEYS:
        if k in attrs:
            attrs[k] = map_nested(attrs[k], normalize_layer)
    return {"type": type_name, **attrs}


_ALIASES = {"uniform": "random_uniform", "normal": "random_normal"}  # Keras's initializer aliases


def minimal_layer(spec: dict) -> dict:
    """The inverse of :func:`normalize_layer` for reviewers: ``spec`` without the attributes
    that equal their defaults (nested layers likewise). Custom layers, ``shares`` and sub-model
    calls are returned as they are."""
    type_name = spec.get("type")
    defn = REGISTRY.get(type_name)
    if type_name == "Model":
        return {k: v for k, v in spec.items() if (k, v) not in (("trainable", True), ("dtype", "float32"))}
    if defn is None or type_name == "CustomLayer":
        return dict(spec)
    nested = {k: map_nested(v, lambda d: minimal_layer(d) if isinstance(d, dict) else d)
              for k, v in spec.items() if k in NESTED_LAYER_KEYS}  # fmt: skip
    plain = {k: v for k, v in spec.items() if k != "type" and k not in NESTED_LAYER_KEYS}
    required = {a.name for a in defn.attrs if a.required}
    try:
        full = normalize_attrs(defn, {**plain, **nested})
        defaults = normalize_attrs(defn, {k: v for k, v in {**plain, **nested}.items() if k in required})
    except Exception:  # an invalid value: leave the layer as written, its check reports it
        return dict(spec)

    def canon(v):
        return _ALIASES.get(v, v) if isinstance(v, str) else v

    def default(k, v):
        if k == "strides" and defaults.get(k) is None and "pool_size" in full:  # pooling: strides = pool_size
            return v == full["pool_size"]
        return canon(full.get(k)) == canon(defaults.get(k))

    out = {"type": type_name}
    for k, v in spec.items():
        if k == "type":
            continue
        if k in nested:
            if k in required or nested[k] is not None:
                out[k] = nested[k]
        elif k in required or not default(k, v):
            out[k] = v
    return out


def minimal_spec(spec: dict) -> dict:
    """A model file (normalized or not) with every layer as :func:`minimal_layer` writes it and
    inputs without their default dtype."""
    out = dict(spec)
    if isinstance(spec.get("models"), dict):
        out["models"] = {n: minimal_spec(m) if isinstance(m, dict) else m for n, m in spec["models"].items()}
    if isinstance(spec.get("inputs"), dict):
        out["inputs"] = {n: {k: v for k, v in d.items() if not (k == "dtype" and v == "float32")}
                         for n, d in spec["inputs"].items()}  # fmt: skip
    if isinstance(spec.get("layers"), dict):
        out["layers"] = {n: minimal_layer(d) if isinstance(d, dict) and "type" in d else d
                         for n, d in spec["layers"].items()}  # fmt: skip
    return out


def _node_spec(node: Node, nodes: dict) -> dict:
    if node.shared:
        owner = nodes[node.layer].attrs
        call_names = REGISTRY[node.type].extra.get("call_attrs", ()) if node.type in REGISTRY else ()
        return {"shares": node.layer, **{k: node.attrs[k] for k in call_names if node.attrs.get(k) != owner.get(k)}}
    return normalize_layer({"type": node.type, **node.attrs})


def custom_layers(graph: Graph) -> dict:
    """The custom layer declarations ``graph`` and its sub-models use, by class name."""
    out: dict = {}
    for sub in _flatten_models(graph).values():
        out.update(custom_layers(sub))
    from ..layerdefs.custom import file_form

    for node in graph.nodes.values():
        if not node.shared:
            file_form({"type": node.type, **node.attrs}, out)
    return out


def edge_chains(graph: Graph) -> list[str]:
    """Edges as chains: a node with one plain input continues the chain its input ended."""
    chains: list[list[str]] = []
    last_of_chain: dict[str, int] = {}  # node name -> index of the chain it currently ends
    for name, node in graph.nodes.items():
        ins = node.inputs
        if len(ins) == 1 and ins[0].port == 0 and ins[0].node in last_of_chain:
            i = last_of_chain.pop(ins[0].node)
            chains[i].append(name)
            last_of_chain[name] = i
            continue
        chains.append([", ".join(str(r) for r in ins), name])
        last_of_chain[name] = len(chains) - 1
    return [" -> ".join(c) for c in chains]


def model_spec(graph: Graph, *, top: bool = True) -> dict:
    out: dict = {}
    if top:
        out["format"] = CURRENT
    out["name"] = graph.name
    if graph.description:
        out["description"] = graph.description
    if top and custom_layers(graph):
        out["custom_layers"] = custom_layers(graph)
    if top and graph.submodels:
        out["models"] = {k: model_spec(sub, top=False) for k, sub in graph.submodels.items()}
    out["inputs"] = {k: {"shape": list(d.shape), "dtype": d.dtype, **({"batch_size": d.batch_size} if d.batch_size else {})}
                     for k, d in graph.inputs.items()}  # fmt: skip
    out["layers"] = {k: _node_spec(n, graph.nodes) for k, n in graph.nodes.items()}
    if not graph.sequential:
        out["edges"] = edge_chains(graph)
    if graph.output_keys is not None:
        out["outputs"] = {k: str(r) for k, r in zip(graph.output_keys, graph.outputs)}
    else:
        out["outputs"] = [str(r) for r in graph.outputs]
    if top and graph.doc is not None and graph.doc.data.get("custom_losses"):
        out["custom_losses"] = dict(graph.doc.data["custom_losses"])
    if top and graph.training is not None:
        out["training"] = graph.training
    return out


def _flatten_models(graph: Graph) -> dict:
    """All sub-models reachable from ``graph``, nested ones first, for the top-level ``models``."""
    out: dict = {}
    for name, sub in graph.submodels.items():
        out.update(_flatten_models(sub))
        out[name] = sub
    return out


def normalized_spec(graph: Graph) -> dict:
    """The normalized model file of ``graph`` (see the module docstring)."""
    spec = model_spec(graph)
    subs = _flatten_models(graph)
    if subs:
        models = {k: model_spec(sub, top=False) for k, sub in subs.items()}
        rest = {k: v for k, v in spec.items() if k not in ("format", "name", "description", "custom_layers", "models")}
        head = {k: spec[k] for k in ("format", "name", "description", "custom_layers") if k in spec}
        spec = {**head, "models": models, **rest}
    return spec


__all__ = ["normalized_spec", "normalize_layer", "edge_chains", "Ref"]
