"""Keras-style model summaries, as text and as a dict.

One row per layer (a weight owner: a shared layer is one row whose "Connected to" lists every
call, as Keras prints it), input layers first for a functional model, then layers in file
order; a model without ``edges`` prints as a Keras ``Sequential`` (no input rows, no
"Connected to" column). The footer gives Total / Trainable / Non-trainable params with their
sizes in bytes, as Keras computes them (4 bytes a float32 parameter, 1024-based units).
"""

from __future__ import annotations

from ..layerdefs import REGISTRY
from ..layerdefs.base import fmt_shape
from .shapes import TypedGraph


def readable_size(n_bytes: float) -> str:
    """Keras's memory size text: ``321.50 KB``, ``0.00 B``."""
    units = ["B", "KB", "MB", "GB", "TB"]
    size = float(n_bytes)
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.2f} {units[i]}"


def _shape_json(types) -> list:
    if len(types) == 1:
        return list(types[0].shape)
    return [list(t.shape) for t in types]


def _shape_text(types) -> str:
    if len(types) == 1:
        return fmt_shape(types[0].shape)
    return "[" + ", ".join(fmt_shape(t.shape) for t in types) + "]"


def layer_type_name(graph, node) -> str:
    if node.type == "Model":
        sub = graph.submodels[node.attrs["model"]]
        return "Sequential" if sub.sequential else "Functional"
    if node.type == "CustomLayer":
        return node.attrs["class_name"]
    return REGISTRY[node.type].extra.get("class_name", node.type) if node.type in REGISTRY else node.type


# Keras layers whose ``call`` takes ``mask``: called on a masked tensor, Keras passes the mask
# as a second argument of the call, so the node has two input tensors (Keras 3.15).
CALL_TAKES_MASK = frozenset({
    "AdditiveAttention", "Attention", "BatchNormalization", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
    "ConvLSTM3D", "GRU", "GlobalAveragePooling1D", "LSTM", "RNN", "SimpleRNN", "Softmax", "TimeDistributed",
    "Model",
})  # fmt: skip


def sequential_like(typed: TypedGraph) -> bool:
    """Whether Keras prints the model without a "Connected to" column: a Sequential model, or a
    functional one that is a plain chain (``keras/src/utils/summary_utils.py``): no node with
    several input tensors (a mask passed to the call counts as one), no layer called twice, and
    no two nodes at the same depth (the longest path to an output), so no branch. Input rows are
    printed either way for a functional model."""
    graph = typed.graph
    if graph.sequential:
        return True
    nodes = graph.nodes
    if any(len(n.inputs) > 1 for n in nodes.values()):
        return False
    for name, n in nodes.items():
        tn = typed.nodes.get(name)
        if n.type in CALL_TAKES_MASK and tn is not None and any(t.masked for t in tn.in_types):
            return False
    owners = [n.layer for n in nodes.values()]
    if len(owners) != len(set(owners)):
        return False
    readers: dict[str, list[str]] = {}
    for name, n in nodes.items():
        for r in n.inputs:
            readers.setdefault(r.node, []).append(name)
    # the longest path to an output, over the nodes in reverse topological order (Kahn's)
    pending = {name: len(n.inputs) for name, n in nodes.items()}
    order = list(graph.inputs)
    for name in order:
        for r in readers.get(name, ()):
            pending[r] -= 1
            if pending[r] == 0:
                order.append(r)
    depth: dict[str, int] = {}
    for name in reversed(order):
        depth[name] = max((depth[r] + 1 for r in readers.get(name, ())), default=0)
    seen = set()
    for name in order:
        d = depth[name]
        if d in seen:
            return False
        seen.add(d)
    return True


def summary_dict(typed: TypedGraph) -> dict:
    g = typed.graph
    layers = []
    # (layer name, node index among the layer's calls) of each producer, for "Connected to".
    call_index: dict[str, tuple[str, int]] = {name: (name, 0) for name in g.inputs}
    by_layer = typed.layer_nodes()
    for layer, calls in by_layer.items():
        for i, tn in enumerate(calls):
            call_index[tn.name] = (layer, i)
    for layer in typed.layer_order():  # Keras's order: an input's row where Keras puts it
        if layer in typed.input_types:
            if not g.sequential:
                layers.append({"name": layer, "type": "InputLayer", "output_shape": list(typed.input_types[layer].shape),
                               "params": 0, "connected_to": []})  # fmt: skip
            continue
        if layer not in by_layer:
            continue
        calls = by_layer[layer]
        first = calls[0]
        connected = []
        for tn in calls:
            for r in tn.node.inputs:
                src, idx = call_index[r.node]
                connected.append(f"{src}[{idx}][{r.port}]")
        layers.append(
            {
                "name": layer,
                "type": layer_type_name(g, first.node),
                "output_shape": _shape_json(calls[-1].out_types),  # Keras shows the last call's
                "params": first.param_count,
                "connected_to": connected,
                # Keras's show_trainable: whether the layer's weights train (None: it has none)
                "trainable": (any(p.trainable for p in first.params) if first.params else None),
            }
        )
    trainable, non_trainable = typed.count()
    return {
        "name": g.name,
        "total_params": trainable + non_trainable,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
        "layers": layers,
    }


def summary_text(typed: TypedGraph, line_length: int | None = None, show_trainable: bool = False,
                 optimizer: tuple[int, int] | None = None, expand_nested: bool = False) -> str:  # fmt: skip
    """Keras's summary table. ``optimizer``: (values, bytes) of a built optimizer's variables,
    which Keras adds to the total and prints on an ``Optimizer params`` line. ``expand_nested``:
    each nested model's row is followed by its own layers' rows, indented (``   └ i1 (Dense)``),
    as Keras's ``summary(expand_nested=True)``."""
    d = summary_dict(typed)
    seq = sequential_like(typed)
    headers = ["Layer (type)", "Output Shape", "Param #"] + ([] if seq else ["Connected to"])
    if show_trainable:
        headers.append("Trainable")
    rows = _rows(typed, d, seq, show_trainable, expand_nested, 0)
    totals = (d["total_params"], d["trainable_params"], d["non_trainable_params"])
    return _table(d["name"], headers, rows, seq, show_trainable, line_length, totals, optimizer)


def _rows(typed: TypedGraph, d: dict, seq: bool, show_trainable: bool, expand_nested: bool, level: int) -> list:
    rows = []
    by_name = {layer: calls for layer, calls in typed.layer_nodes().items()}
    prefix = "   " * level + "└ " if level else ""
    for row in d["layers"]:
        if row["type"] == "InputLayer":
            shape = fmt_shape(row["output_shape"])
        else:
            shape = _shape_text(by_name[row["name"]][-1].out_types)
        cells = [f"{prefix}{row['name']} ({row['type']})", shape, f"{row['params']:,}"]
        if not seq:  # a nested layer's calls are not the outer model's nodes: Keras prints "-"
            cells.append(", ".join(row["connected_to"]) if not level and row["connected_to"] else "-")
        if show_trainable:
            cells.append({True: "Y", False: "N"}.get(row.get("trainable"), "-"))
        rows.append(cells)
        node = by_name[row["name"]][0].node if row["name"] in by_name else None
        if expand_nested and node is not None and node.type == "Model":
            sub = typed.submodels[node.attrs["model"]]
            rows += _rows(sub, summary_dict(sub), seq, show_trainable, True, level + 1)
    return rows


def unbuilt_summary_text(name: str, layers: list[tuple[str, str, bool]], line_length: int | None = None,
                         show_trainable: bool = False) -> str:  # fmt: skip
    """Keras's summary of a Sequential model not built yet (no input shape): a row per layer,
    ``(name, class name, whether it makes weights when built)``, with ``?`` for the shape and
    ``0 (unbuilt)`` params (a layer without weights is built from the start: ``0``); no weights
    yet, so the trainable column is ``-``."""
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    rows = [[f"{n} ({t})", "?", "0 (unbuilt)" if weighted else "0"] + (["-"] if show_trainable else [])
            for n, t, weighted in layers]  # fmt: skip
    return _table(name, headers, rows, True, show_trainable, line_length, (0, 0, 0), None)


def _table(name, headers, rows, seq, show_trainable, line_length, totals, optimizer) -> str:
    mins = [31, 22, 13] + ([] if seq else [27]) + ([9] if show_trainable else [])
    widths = [max([mins[i], len(headers[i])] + [len(r[i]) for r in rows]) for i in range(len(headers))]
    if line_length:
        extra = line_length - (sum(widths) + 3 * len(widths) + 1)
        if extra > 0:
            widths[0] += extra
    right = {2}

    def line(left, mid, rightc, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + rightc

    def cells_line(cells, bar):
        parts = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            if show_trainable and i == len(widths) - 1:
                parts.append(" " + c.center(w) + " ")
                continue
            parts.append(" " + (c.rjust(w) if i in right else c.ljust(w)) + " ")
        return bar + bar.join(parts) + bar

    out = [f'Model: "{name}"', line("┏", "┳", "┓", "━"), cells_line(headers, "┃"), line("┡", "╇", "┩", "━")]
    for i, r in enumerate(rows):
        if i:
            out.append(line("├", "┼", "┤", "─"))
        out.append(cells_line(r, "│"))
    out.append(line("└", "┴", "┘", "─"))
    total, tr, nt = totals
    opt_n, opt_bytes = optimizer or (0, 0)
    out.append(f" Total params: {total + opt_n:,} ({readable_size(total * 4 + opt_bytes)})")
    out.append(f" Trainable params: {tr:,} ({readable_size(tr * 4)})")
    out.append(f" Non-trainable params: {nt:,} ({readable_size(nt * 4)})")
    if optimizer is not None:
        out.append(f" Optimizer params: {opt_n:,} ({readable_size(opt_bytes)})")
    return "\n".join(out) + "\n"
