"""Shape inference: type every value of a graph and count every parameter.

The result is a :class:`TypedGraph`: per node, its input and output :class:`TensorType`
(shape with ``None`` for the batch and run-time dimensions, dtype, mask) and the parameters of
the layer it calls. Shape rules live with the layers (``LayerDef.infer``); this module runs
them in topological order, provides the :class:`InferContext` that wrappers and nested models
use, and turns a rule's :class:`ShapeError` into a diagnostic that names the edge, the layer
and every input shape (E300). Independent shape errors are all reported.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..layerdefs import REGISTRY
from ..layerdefs.base import InferContext, ParamSpec, ShapeError, TensorType, fmt_shape, normalize_attrs
from ..specs.errors import Diagnostic, ShapeMismatchError
from .graph import Graph, Node, Ref, keras_order, topo_order

MAX_PARAMS = 2**31  # per layer and per model: refused before anything is allocated
MAX_VALUES_PER_SAMPLE = 2**31


@dataclass
class TypedNode:
    node: Node
    in_types: list[TensorType]
    out_types: list[TensorType]
    params: list[ParamSpec]  # the weights of the layer this node calls (the owner's)
    # a stateful recurrent call: the states it carries from batch to batch (its final states'
    # types, as return_state gives them); empty for any other call
    state_types: list[TensorType] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def param_count(self) -> int:
        return sum(p.size for p in self.params)


@dataclass
class TypedGraph:
    graph: Graph
    input_types: dict[str, TensorType]
    nodes: dict[str, TypedNode]  # in topological order
    submodels: dict[str, "TypedGraph"] = field(default_factory=dict)

    def type_of(self, ref: Ref) -> TensorType:
        if ref.node in self.input_types:
            return self.input_types[ref.node]
        return self.nodes[ref.node].out_types[ref.port]

    @property
    def output_types(self) -> list[TensorType]:
        return [self.type_of(r) for r in self.graph.outputs]

    def layer_order(self) -> list[str]:
        """Inputs and layers in Keras's ``model.layers`` order (graph.keras_order)."""
        memo = self.__dict__.get("_layer_order")
        if memo is None:
            memo = self.__dict__["_layer_order"] = keras_order(self.graph)
        return memo

    def layer_nodes(self) -> dict[str, list[TypedNode]]:
        """Layer (weight owner) name -> its calls (in file order), owners in Keras's order."""
        calls: dict[str, list[TypedNode]] = {}
        for name in self.graph.nodes:
            if name in self.nodes:
                tn = self.nodes[name]
                calls.setdefault(tn.node.layer, []).append(tn)
        return {layer: calls[layer] for layer in self.layer_order() if layer in calls}

    def params(self) -> list[tuple[str, ParamSpec]]:
        """Every weight, ``(layer name, ParamSpec)``, layers in Keras's order, each owner once.

        A sub-model called several times is counted once, at its first call, as a Keras
        model object reused as a layer is.
        """
        out = []
        seen_models: set[str] = set()
        for layer, calls in self.layer_nodes().items():
            model = _called_model(calls[0].node.attrs) if calls[0].node.type in ("Model", "TimeDistributed") else None
            if model is not None:
                if model in seen_models:
                    continue
                seen_models.add(model)
            out.extend((layer, p) for p in calls[0].params)
        return out

    def count(self) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts."""
        tr = sum(p.size for _, p in self.params() if p.trainable)
        nt = sum(p.size for _, p in self.params() if not p.trainable)
        return tr, nt


def _called_model(attrs: dict) -> str | None:
    if "model" in attrs and isinstance(attrs.get("model"), str):
        return attrs["model"]
    inner = attrs.get("layer")
    if isinstance(inner, dict) and inner.get("type") == "Model":
        return inner.get("model")
    return None


class _Context(InferContext):
    def __init__(self, graph: Graph, typed_submodels: dict[str, TypedGraph]) -> None:
        self.graph = graph
        self.typed_submodels = typed_submodels

    def layer_def(self, layer):
        return REGISTRY[layer["type"]]

    def _norm(self, layer):
        defn = self.layer_def(layer)
        return defn, normalize_attrs(defn, layer)

    def infer_layer(self, layer, inputs):
        defn, attrs = self._norm(layer)
        _check_arity(defn, len(inputs))
        return defn.infer(attrs, inputs, self)

    def layer_params(self, layer, inputs):
        defn, attrs = self._norm(layer)
        return frozen_if_untrainable(attrs, defn.params(attrs, inputs, self))

    def infer_model(self, model, inputs):
        sub = self.graph.submodels[model]
        decl = list(sub.inputs.values())
        if len(inputs) != len(decl):
            raise ShapeError(f"model '{model}' takes {len(decl)} input(s); got {len(inputs)}")
        types = {}
        for d, t in zip(decl, inputs):
            want = (None, *d.shape)
            if len(want) != t.rank or any(w is not None and g is not None and w != g for w, g in zip(want, t.shape)):
                raise ShapeError(
                    f"model '{model}' input '{d.name}' expects {fmt_shape(want)}; got {fmt_shape(t.shape)}"
                )
            # Keep the more specific of the declared and the given dimensions.
            shape = tuple(g if g is not None else w for w, g in zip(want, t.shape))
            types[d.name] = TensorType(shape, d.dtype, t.masked)
        typed = infer_types(sub, input_types=types)
        return typed.output_types

    def model_params(self, model):
        typed = self.typed_submodels[model]
        return [
            ParamSpec(f"{layer}/{p.name}", p.shape, p.initializer, p.trainable, p.regularizer, p.constraint)
            for layer, p in typed.params()
        ]


def frozen_if_untrainable(attrs, params: list[ParamSpec]) -> list[ParamSpec]:
    """A layer with ``trainable: false`` has only non-trainable weights, as in Keras."""
    if attrs.get("trainable", True):
        return params
    return [dataclasses.replace(p, trainable=False) for p in params]


def _check_arity(defn, k: int) -> None:
    lo, hi = defn.arity
    if k < lo or (hi is not None and k > hi):
        raise ShapeError(f"{defn.name} takes {lo}{'+' if hi is None else ''} input(s); got {k}")


def _declared_types(graph: Graph) -> dict[str, TensorType]:
    return {k: TensorType((d.batch_size, *d.shape), d.dtype) for k, d in graph.inputs.items()}


def _values(t: TensorType) -> int:
    return math.prod(d for d in t.shape[1:] if d is not None)


def infer_types(graph: Graph, input_types: dict[str, TensorType] | None = None) -> TypedGraph:
    """Type every node of ``graph``. Raises ShapeMismatchError with every shape problem."""
    typed_subs: dict[str, TypedGraph] = {}
    diags: list[Diagnostic] = []
    for name, sub in graph.submodels.items():
        try:
            typed_subs[name] = infer_types(sub)
        except ShapeMismatchError as e:
            diags.extend(e.diagnostics)
    if diags:
        raise ShapeMismatchError(diags)
    ctx = _Context(graph, typed_subs)
    doc = graph.doc
    types = dict(input_types) if input_types is not None else _declared_types(graph)
    typed = TypedGraph(graph, dict(types), {}, typed_subs)
    failed: set[str] = set()
    owner_params: dict[str, tuple[list[ParamSpec], TypedNode]] = {}
    for name in topo_order(graph):
        node = graph.nodes[name]
        if any(r.node in failed for r in node.inputs):
            failed.add(name)
            continue
        defn = REGISTRY[node.type]
        try:
            in_types = []
            for r in node.inputs:
                src = typed.type_of(r)  # may raise IndexError for a bad port
                in_types.append(src)
        except IndexError:
            bad = next(r for r in node.inputs if r.node in typed.nodes and r.port >= len(typed.nodes[r.node].out_types))
            n_out = len(typed.nodes[bad.node].out_types)
            diags.append(_diag(doc, node, "E203", f"'{bad}' selects output {bad.port}, but '{bad.node}' has "
                                                  f"{n_out} output(s) (ports 0..{n_out - 1})"))  # fmt: skip
            failed.add(name)
            continue
        try:
            outs = defn.infer(node.attrs, in_types, ctx)
            params = frozen_if_untrainable(node.attrs, defn.params(node.attrs, in_types, ctx))
        except ShapeError as e:
            diags.append(_shape_diag(doc, node, str(e), in_types))
            failed.add(name)
            continue
        for p in params:
            if p.size > MAX_PARAMS:
                diags.append(_diag(doc, node, "E301", f"weight '{p.name}' of {node.type} '{name}' would hold "
                                                      f"{p.size:,} values (shape {p.shape}), over nnspec's limit of "
                                                      f"{MAX_PARAMS:,}; refusing to build it"))  # fmt: skip
                failed.add(name)
        for t in outs:
            if _values(t) > MAX_VALUES_PER_SAMPLE:
                diags.append(_diag(doc, node, "E301", f"output of {node.type} '{name}' would hold {_values(t):,} values "
                                                      f"per sample ({fmt_shape(t.shape)}); refusing to build it"))  # fmt: skip
                failed.add(name)
        if name in failed:
            continue
        if node.shared:
            first = owner_params.get(node.layer)
            if first is not None and [p.shape for p in first[0]] != [p.shape for p in params]:
                was = ", ".join(f"{p.name} {p.shape}" for p in first[0])
                now = ", ".join(f"{p.name} {p.shape}" for p in params)
                diags.append(_shape_diag(doc, node, f"shares the weights of '{node.layer}' ({was}) but its input "
                                                    f"would need {now}", in_types))  # fmt: skip
                failed.add(name)
                continue
        owner_params.setdefault(node.layer, (params, None))
        states = carried_state_types(node, in_types, ctx) if is_stateful(node) else []
        typed.nodes[name] = TypedNode(node, in_types, outs, owner_params[node.layer][0], states)
    total = sum(p.size for _, p in typed.params()) if not diags else 0
    if total > MAX_PARAMS:
        diags.append(doc.diag("E301", f"the model would hold {total:,} parameters, over nnspec's limit of "
                                      f"{MAX_PARAMS:,}; refusing to build it", graph.path + ("layers",)))  # fmt: skip
    if diags:
        raise ShapeMismatchError(sorted(diags, key=lambda d: (d.line or 0, d.column or 0)))
    return typed


def is_stateful(node: Node) -> bool:
    """A recurrent call with ``stateful=True`` (a Bidirectional's: its layers')."""
    if not REGISTRY[node.type].extra.get("initial_state"):
        return False
    if node.type == "Bidirectional":
        return bool(node.attrs["layer"].get("stateful"))
    return bool(node.attrs.get("stateful"))


def returning_states(node: Node, on: bool = True) -> dict:
    """The node's attributes with ``return_state`` set (a Bidirectional's: on both layers)."""
    if node.type == "Bidirectional":
        return {**node.attrs, **{k: {**node.attrs[k], "return_state": on}
                                 for k in ("layer", "backward_layer") if isinstance(node.attrs.get(k), dict)}}  # fmt: skip
    return {**node.attrs, "return_state": on}


def carried_state_types(node: Node, in_types: list[TensorType], ctx) -> list[TensorType]:
    """The types of the final states a stateful call keeps for the next batch."""
    defn = REGISTRY[node.type]
    n_plain = len(defn.infer(returning_states(node, False), in_types, ctx))
    return defn.infer(returning_states(node), in_types, ctx)[n_plain:]


def _diag(doc, node: Node, code: str, message: str) -> Diagnostic:
    where = node.input_paths[0] if node.input_paths and not node.shared else node.path
    return doc.diag(code, message, where)


def _shape_diag(doc, node: Node, message: str, in_types: list[TensorType]) -> Diagnostic:
    edge = node.input_paths[0] if node.input_paths else node.path
    fed = ", ".join(f"{r} {fmt_shape(t.shape)}" for r, t in zip(node.inputs, in_types))
    text = ""
    if edge and edge[-2:-1] == ("edges",) and doc is not None:
        data = doc.data
        for p in edge:
            data = data[p]
        text = f"'{data}': " if isinstance(data, str) else ""
    return doc.diag(
        "E300",
        f"{text}{node.type} '{node.name}': {message} (inputs: {fed})",
        edge,
        expected=None,
        found=fed,
    )
