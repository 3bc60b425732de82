"""Build the graph of a validated model document, and check the graph rules.

A :class:`Graph` has inputs, nodes (one per layer *call*, in file order), and outputs. A node
names the layer that owns its weights: itself, or for ``shares: other`` the node it shares
with. Edges are parsed from their chain form (``a, b -> merge -> d``, ``lstm:1 -> d``).

Graph rules (each a diagnostic with a stable code, see ``specs/errors.py``): unknown
references (E200, with a did-you-mean), a node fed twice (E201), cycles with their path (E202),
wrong arity (E203), outputs unreachable from the inputs or nodes with no input (E204), a bad
``shares`` (E205), a bad ``models`` reference (E206), and unused nodes (W200, a warning).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..layerdefs import REGISTRY
from ..layerdefs.base import NESTED_LAYER_KEYS, normalize_attrs
from ..specs.errors import Diagnostic, GraphError, SpecError, did_you_mean
from ..specs.load import Document, format_path

_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)(?::([0-9]+))?$")


@dataclass(frozen=True)
class Ref:
    """An edge's source: a node or input, and which of its outputs (``lstm:1``)."""

    node: str
    port: int = 0

    def __str__(self) -> str:
        return self.node if self.port == 0 else f"{self.node}:{self.port}"


@dataclass(frozen=True)
class InputDecl:
    name: str
    shape: tuple  # without the batch dimension
    dtype: str = "float32"
    batch_size: int | None = None  # a fixed batch size (Keras's batch_shape), else any


@dataclass
class Node:
    """One call of a layer."""

    name: str
    layer: str  # the node that owns the weights (itself unless ``shares``)
    type: str
    attrs: dict  # normalized: every attribute present, Keras's defaults filled
    inputs: list[Ref] = field(default_factory=list)
    path: tuple = ()  # where the node is defined in the document
    input_paths: list[tuple] = field(default_factory=list)  # where each input edge is written

    @property
    def shared(self) -> bool:
        return self.layer != self.name


@dataclass
class Graph:
    name: str
    inputs: dict[str, InputDecl]
    nodes: dict[str, Node]
    outputs: list[Ref]
    submodels: dict[str, "Graph"] = field(default_factory=dict)
    sequential: bool = False
    description: str = ""
    training: dict | None = None
    doc: Document | None = None
    path: tuple = ()  # the document path of this (sub-)model
    warnings: list[Diagnostic] = field(default_factory=list)
    # `outputs` written as a mapping: its keys, sorted (the outputs are in this order, as Keras
    # flattens a dict of outputs); None when written as a list
    output_keys: list[str] | None = None
    output_paths: list[tuple] = field(default_factory=list)  # where each output is written

    @property
    def output_names(self) -> list[str]:
        """What losses, metrics, targets and predictions are keyed by: the keys, or the references."""
        return list(self.output_keys) if self.output_keys is not None else [str(r) for r in self.outputs]

    def producer_exists(self, name: str) -> bool:
        return name in self.inputs or name in self.nodes


def _split_offsets(text: str, sep: str, base: int) -> list[tuple[str, int]]:
    """Split ``text`` on ``sep``; each stripped piece with its offset (plus ``base``) in ``text``."""
    out = []
    pos = 0
    for piece in text.split(sep):
        lead = len(piece) - len(piece.lstrip())
        out.append((piece.strip(), base + pos + lead))
        pos += len(piece) + len(sep)
    return out


def parse_ref(text: str) -> Ref | None:
    m = _REF.match(text.strip())
    if not m:
        return None
    return Ref(m.group(1), int(m.group(2) or 0))


class _Builder:
    def __init__(self, doc: Document, base_dir: str | None, loading: tuple = ()) -> None:
        self.doc = doc
        self.base_dir = base_dir
        self.loading = loading  # files being loaded, to refuse recursive `file:` models
        self.diags: list[Diagnostic] = []
        self.broken: set[str] = set()  # nodes whose definition was refused (not re-reported)
        self.broken_models: set[str] = set()  # sub-models that failed to load (not re-reported)

    def error(self, code: str, message: str, path: tuple, **kw) -> None:
        self.diags.append(self.doc.diag(code, message, path, **kw))

    # ------------------------------------------------------------------ models

    def build(self, data: dict, path: tuple, submodels: dict[str, Graph]) -> Graph:
        name = data.get("name") or (str(path[-1]) if path else "model")
        inputs = {
            k: InputDecl(k, tuple(v["shape"]), v.get("dtype", "float32"), v.get("batch_size"))
            for k, v in data["inputs"].items()
        }
        nodes: dict[str, Node] = {}
        for k in data["layers"]:
            if k in inputs:
                self.error("E105", f"layer name '{k}' is already an input name", path + ("layers", k), key=True)
        for k, spec in data["layers"].items():
            node = self._node(k, spec, path + ("layers", k), data["layers"], submodels)
            if node is not None:
                nodes[k] = node
            else:
                self.broken.add(k)
        sequential = "edges" not in data
        if sequential:
            self._sequential_edges(inputs, nodes, data, path)
        else:
            self._edges(data["edges"], inputs, nodes, path)
        outputs, keys, opaths = self._outputs(data, inputs, nodes, path, sequential)
        g = Graph(name, inputs, nodes, outputs, submodels, sequential, data.get("description", ""),
                  data.get("training"), self.doc, path, output_keys=keys, output_paths=opaths)  # fmt: skip
        if not self._errors_in(path):
            self._check_graph(g, path)
        return g

    def _errors_in(self, path: tuple) -> bool:
        prefix = format_path(path)
        return any(d.severity == "error" and d.path.startswith(prefix) for d in self.diags)

    def _node(self, name: str, spec: dict, path: tuple, all_specs: dict, submodels) -> Node | None:
        if "shares" in spec:
            target = spec["shares"]
            seen = [name]
            while isinstance(target, str) and target in all_specs and "shares" in all_specs[target]:
                if target in seen:
                    self.error("E205", f"'shares' chain loops: {' -> '.join(seen + [target])}", path + ("shares",))
                    return None
                seen.append(target)
                target = all_specs[target]["shares"]
            if target not in all_specs:
                others = [k for k in all_specs if k != name]
                self.error("E205", f"'shares' refers to '{target}', which is not a layer of this model",
                           path + ("shares",), hint=did_you_mean(target, others), found=str(target))  # fmt: skip
                return None
            owner = all_specs[target]
            given = {k: v for k, v in spec.items() if k != "shares"}  # this call's own call arguments
            if given:
                allowed = REGISTRY[owner["type"]].extra.get("call_attrs", ()) if owner.get("type") in REGISTRY else ()
                bad = sorted(k for k in given if k not in allowed)
                if bad:
                    what = f"{owner.get('type')} takes " + (", ".join(allowed) if allowed else "none")
                    self.error("E101", f"'{bad[0]}' is not a call argument of the shared layer ({what}); an entry "
                               "with 'shares' takes the layer as it is", path + (bad[0],),
                               hint=did_you_mean(bad[0], allowed), found=bad[0])  # fmt: skip
                    return None
                owner = {**owner, **given}
            return Node(name, target, *self._typed(owner, path, submodels), path=path)
        return Node(name, name, *self._typed(spec, path, submodels), path=path)

    def _typed(self, spec: dict, path: tuple, submodels) -> tuple[str, dict]:
        """The node's registered type and attributes; the file's custom types (also nested in
        wrappers) become ``CustomLayer`` definitions holding their declaration
        (``layerdefs/custom.py``)."""
        declarations = self.doc.data.get("custom_layers") or {}
        if declarations:
            from ..layerdefs.custom import internal_form

            spec = internal_form(spec, declarations)
        return spec["type"], self._attrs(spec, path, submodels)

    def _attrs(self, spec: dict, path: tuple, submodels) -> dict:
        defn = REGISTRY[spec["type"]]
        attrs = normalize_attrs(defn, spec)
        self._check_nested(spec, path, submodels)
        return attrs

    def _check_nested(self, spec: dict, path: tuple, submodels) -> None:
        """Check the ``model:`` references of a Model layer, inside wrappers too."""
        if spec.get("type") == "Model":
            ref = spec.get("model")
            if ref not in submodels and ref not in self.broken_models:
                self.error("E206", f"unknown model '{ref}'; models are declared under 'models'",
                           path + ("model",), hint=did_you_mean(ref, submodels), found=str(ref))  # fmt: skip
        for key in NESTED_LAYER_KEYS:
            inner = spec.get(key)
            if isinstance(inner, dict):
                self._check_nested(inner, path + (key,), submodels)
            elif isinstance(inner, list):
                for i, e in enumerate(inner):
                    if isinstance(e, dict):
                        self._check_nested(e, path + (key, i), submodels)

    # ------------------------------------------------------------------ edges

    def _token_position(self, edge_path: tuple, text: str, offset: int) -> tuple:
        """Line and column of the character at ``offset`` of an edge string written on one line."""
        line, col = self.doc.where(edge_path)
        if self.doc.text is None or line is None or col is None:
            return line, col
        lines = self.doc.text.splitlines()
        if not 0 < line <= len(lines):
            return line, col
        raw = lines[line - 1]
        start = raw.find(text, col - 1)
        if start < 0:  # quoted, or written over several lines: point at the scalar
            return line, col
        return line, start + offset + 1

    def _edge_error(self, code, message, edge_path, text, offset, **kw) -> None:
        line, col = self._token_position(edge_path, text, offset)
        self.diags.append(Diagnostic(code, f"'{text}': {message}", format_path(edge_path), self.doc.file,
                                     line, col, **kw))  # fmt: skip

    def _edges(self, edges: list, inputs, nodes: dict[str, Node], path: tuple) -> None:
        fed: dict[str, tuple] = {}
        for i, text in enumerate(edges):
            epath = path + ("edges", i)
            groups = _split_offsets(text, "->", 0)
            if len(groups) < 2 or any(not g for g, _ in groups):
                self.error("E200", f"'{text}': an edge is a chain 'a -> b' (or 'a, b -> merge -> c')", epath)
                continue
            refs_per_group = []
            ok = True
            for gi, (group, goff) in enumerate(groups):
                refs = []
                for item, off in _split_offsets(group, ",", goff):
                    ref = parse_ref(item)
                    if ref is None:
                        self._edge_error("E105", f"'{item}' is not a node name (or node:port)", epath, text, off)
                        ok = False
                        continue
                    if not (ref.node in inputs or ref.node in nodes):
                        if ref.node in self.broken:
                            ok = False  # already reported where it is defined
                            continue
                        known = list(inputs) + list(nodes)
                        self._edge_error("E200", f"unknown node '{ref.node}'", epath, text, off,
                                         hint=did_you_mean(ref.node, known), found=ref.node)  # fmt: skip
                        ok = False
                        continue
                    if gi > 0:
                        if ref.port:
                            self._edge_error("E203", f"a port selects an output; '{item}' is fed, not read",
                                             epath, text, off)  # fmt: skip
                            ok = False
                        if ref.node in inputs:
                            self._edge_error("E200", f"'{ref.node}' is a model input and cannot be fed", epath,
                                             text, off)  # fmt: skip
                            ok = False
                    refs.append((ref, off))
                if gi > 0 and len(refs) > 1:
                    self._edge_error("E200", "only the first group of a chain may list several sources "
                                     "('a, b -> merge'); write one chain per destination", epath, text, goff)  # fmt: skip
                    ok = False
                refs_per_group.append(refs)
            if not ok:
                continue
            for gi in range(1, len(groups)):
                dst, dst_off = refs_per_group[gi][0]
                sources = [r for r, _ in refs_per_group[gi - 1]]
                if dst.node in fed:
                    first = format_path(fed[dst.node])
                    self._edge_error("E201", f"'{dst.node}' is already fed by {first}; a node has one set of "
                                     "inputs (to call a layer twice, add a node with 'shares')", epath, text,
                                     dst_off)  # fmt: skip
                    continue
                fed[dst.node] = epath
                nodes[dst.node].inputs = list(sources)
                nodes[dst.node].input_paths = [epath] * len(sources)

    def _sequential_edges(self, inputs, nodes: dict[str, Node], data: dict, path: tuple) -> None:
        if len(inputs) != 1:
            self.error("E204", f"a model without 'edges' is a chain from one input; this one has {len(inputs)} "
                       "inputs: add 'edges'", path + ("inputs",))  # fmt: skip
            return
        prev = Ref(next(iter(inputs)))
        for name, node in nodes.items():
            node.inputs = [prev]
            node.input_paths = [node.path]
            prev = Ref(name)

    def _outputs(self, data, inputs, nodes, path, sequential) -> tuple[list[Ref], list[str] | None, list[tuple]]:
        """The output references, the mapping's keys (sorted) if written as one, and their paths."""
        raw = data.get("outputs")
        if raw is None:
            if sequential:
                names = [list(nodes)[-1]] if nodes else []
            else:
                consumed = {r.node for n in nodes.values() for r in n.inputs}
                names = [n for n in nodes if n not in consumed]
            return [Ref(n) for n in names], None, [nodes[n].path for n in names]
        if isinstance(raw, dict):
            keys: list[str] | None = sorted(raw)
            items = [(raw[k], path + ("outputs", k)) for k in sorted(raw)]
        else:
            keys = None
            listed = [raw] if isinstance(raw, str) else raw
            items = [(t, path + ("outputs",) + (() if isinstance(raw, str) else (i,))) for i, t in enumerate(listed)]
        out, paths = [], []
        for text, opath in items:
            ref = parse_ref(text)
            if ref is not None and ref.node in self.broken:
                continue
            if ref is None or not (ref.node in nodes or ref.node in inputs):
                known = list(nodes) + list(inputs)
                name = ref.node if ref else text
                self.error("E200", f"unknown output '{name}'", opath, hint=did_you_mean(name, known), found=name)
                continue
            out.append(ref)
            paths.append(opath)
        return out, keys, paths

    # ------------------------------------------------------------------ graph rules

    def _check_graph(self, g: Graph, path: tuple) -> None:
        for n in g.nodes.values():
            defn = REGISTRY[n.type]
            lo, hi = defn.arity
            k = len(n.inputs)
            if k == 0:
                self.error("E204", f"node '{n.name}' has no input: no edge feeds it", n.path, key=True)
                continue
            if k < lo or (hi is not None and k > hi):
                want = str(lo) if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
                where = n.input_paths[0] if n.input_paths else n.path
                srcs = ", ".join(str(r) for r in n.inputs)
                self.error("E203", f"{n.type} '{n.name}' takes {want} input(s); it is fed {k} ({srcs})", where)
        if self._errors_in(path):
            return
        cycle = _find_cycle(g)
        if cycle:
            first = g.nodes[cycle[0]]
            where = first.input_paths[0] if first.input_paths else first.path
            self.error("E202", "the edges form a cycle: " + " -> ".join(cycle + [cycle[0]]), where)
            return
        reachable = set(g.inputs)
        for name in topo_order(g):
            n = g.nodes[name]
            if all(r.node in reachable for r in n.inputs):
                reachable.add(name)
        for ref, opath in zip(g.outputs, g.output_paths):
            if ref.node not in reachable:
                self.error("E204", f"output '{ref}' cannot be reached from the inputs", opath)
        needed = _ancestors(g, [r.node for r in g.outputs])
        for name, n in g.nodes.items():
            if name not in needed:
                self.diags.append(self.doc.diag("W200", f"layer '{name}' is not used by any output", n.path, key=True))


def _find_cycle(g: Graph) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for r in g.nodes[name].inputs:
            if r.node not in g.nodes:
                continue
            s = state.get(r.node, 0)
            if s == 1:
                cyc = stack[stack.index(r.node) :]
                return list(reversed(cyc))  # in data-flow order
            if s == 0:
                found = visit(r.node)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in g.nodes:
        if state.get(name, 0) == 0:
            found = visit(name)
            if found:
                return found
    return None


def topo_order(g: Graph) -> list[str]:
    """Nodes in an order where every node comes after its producers; file order among equals."""
    order: list[str] = []
    done: set[str] = set(g.inputs)
    pending = list(g.nodes)
    while pending:
        progressed = False
        rest = []
        for name in pending:
            if all(r.node in done for r in g.nodes[name].inputs):
                order.append(name)
                done.add(name)
                progressed = True
            else:
                rest.append(name)
        pending = rest
        if not progressed:
            break
    return order


def keras_order(g: Graph) -> list[str]:
    """The model's inputs and layers (weight owners) in the order Keras lists them in
    ``model.layers``, and so in ``get_weights()`` and ``summary()``.

    Keras derives the order from the graph, not from the order the layers were made
    (``map_graph`` in keras/src/ops/function.py): a depth-first walk from the outputs, in order,
    numbers each layer when first reached; a call's depth is its longest path to an output (a
    layer called several times takes its deepest call's); layers come deepest first, ties in
    walk order. Inputs no output reads come first among depth 0. Layers no output reads (W200)
    are not in a Keras model at all; they follow, in file order.
    """
    def owner(n: str) -> str:
        return g.nodes[n].layer if n in g.nodes else n

    def parents(n: str) -> list[str]:
        return [r.node for r in g.nodes[n].inputs] if n in g.nodes else []

    walk: dict[str, int] = {}  # owner -> when first reached
    post: list[str] = []  # calls, each after its parents
    finished: set[str] = set()
    for ref in g.outputs:
        if ref.node in finished:
            continue
        walk.setdefault(owner(ref.node), len(walk))
        stack = [(ref.node, iter(parents(ref.node)))]
        while stack:
            n, it = stack[-1]
            p = next(it, None)
            if p is None:
                stack.pop()
                finished.add(n)
                post.append(n)
            elif p not in finished and all(p != m for m, _ in stack):
                walk.setdefault(owner(p), len(walk))
                stack.append((p, iter(parents(p))))
    node_depth: dict[str, int] = {}
    owner_depth: dict[str, int] = {}
    for n in reversed(post):
        d = max(node_depth.setdefault(n, 0), owner_depth.get(owner(n), 0))
        owner_depth[owner(n)] = node_depth[n] = d
        for p in parents(n):
            node_depth[p] = max(d + 1, node_depth.get(p, 0))
    for name in g.inputs:
        if name not in owner_depth:
            owner_depth[name], walk[name] = 0, -1
    ordered = sorted(owner_depth, key=lambda o: (-owner_depth[o], walk[o]))
    rest = [n.layer for n in g.nodes.values() if n.layer not in owner_depth]
    return ordered + list(dict.fromkeys(rest))


def _ancestors(g: Graph, names: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in g.nodes:
            todo.extend(r.node for r in g.nodes[n].inputs)
    return seen


def build_graph(doc: Document, *, _loading: tuple = ()) -> Graph:
    """Build and check the graph of a schema-valid document (sub-models included).

    Raises :class:`GraphError` with every graph problem; warnings are kept on ``graph.warnings``.
    """
    from ..specs.load import load_file
    from ..specs.validate import validate_document

    base_dir = os.path.dirname(doc.file) if doc.file else None
    b = _Builder(doc, base_dir, _loading)
    submodels: dict[str, Graph] = {}
    for mname, mspec in doc.data.get("models", {}).items():
        mpath = ("models", mname)
        if "file" in mspec:
            ref = mspec["file"]
            full = os.path.normpath(os.path.join(base_dir or ".", ref))
            if full in _loading or (doc.file and os.path.abspath(full) == os.path.abspath(doc.file)):
                b.error("E206", f"model file '{ref}' includes itself", mpath + ("file",))
                b.broken_models.add(mname)
                continue
            try:
                sub_doc = load_file(full)
                validate_document(sub_doc)
                sub = build_graph(sub_doc, _loading=_loading + (os.path.abspath(doc.file or ""),))
            except SpecError as e:
                b.diags.append(doc.diag("E206", f"model file '{ref}' is invalid: {e.first.format()}",
                                        mpath + ("file",)))  # fmt: skip
                b.broken_models.add(mname)
                continue
            sub.name = mname
            b.diags.extend(sub.warnings)
            submodels[mname] = sub
        else:
            sub = b.build(mspec, mpath, dict(submodels))
            if "name" not in mspec:
                sub.name = mname
            submodels[mname] = sub
    g = b.build(doc.data, (), submodels)
    errors = [d for d in b.diags if d.severity == "error"]
    if errors:
        raise GraphError(sorted(b.diags, key=lambda d: (d.severity != "error", d.line or 0, d.column or 0)))
    g.warnings = [d for d in b.diags if d.severity == "warning"]
    return g
