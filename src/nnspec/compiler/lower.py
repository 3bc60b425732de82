"""Lowering: turn a typed graph into a linear :class:`Plan`.

- Nodes become steps in topological order (file order among independent nodes).
- A nested ``Model`` call is inlined: its steps read the sub-model's weights, which are shared
  by every call of that model.
- ``TimeDistributed`` folds the time axis into the batch (a view), runs the wrapped layer or
  model on the folded value, and unfolds it (a view); over a ``Dense`` it is one ``dense`` step,
  since Dense already acts on the last axis.
- ``Flatten``, ``Reshape`` and the training-only layers (``Dropout``...) are views: their output
  is their input's buffer.
- Buffers are assigned by liveness: a buffer is free again once the last step reading any
  value in it has run; an op that declares itself safe in place (``LayerDef.extra["inplace"]``) writes
  over its first input when that step is the input's last reader. Model outputs keep their
  buffers.
"""

from __future__ import annotations

from ..layerdefs import REGISTRY
from ..layerdefs.base import NESTED_LAYER_KEYS, map_nested
from ..layerdefs.recurrent import STATES
from .plan import Buffer, Param, Plan, Step, Value, activity_regularizer_of
from .shapes import TypedGraph, TypedNode, infer_types, returning_states

STATE_PREFIX = "state:"  # plan inputs and outputs holding a stateful layer's kept states

# Attributes that only matter to initialization or training bookkeeping: not part of a step.
_NOT_STEP_ATTRS = ("trainable", "dtype")
_NOT_STEP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def _nested_step_attrs(v: dict) -> dict:
    inner = dict(v)
    t = inner.pop("type", None)
    if t not in REGISTRY:
        return v
    from ..layerdefs.base import normalize_attrs

    return {"type": t, **step_attrs(t, normalize_attrs(REGISTRY[t], inner))}


def step_attrs(type_name: str, attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if k in _NOT_STEP_ATTRS or (k.endswith(_NOT_STEP_SUFFIXES) and k != "activity_regularizer"):
            continue
        if k == "activity_regularizer" and v is None:
            continue
        if k in NESTED_LAYER_KEYS:
            v = map_nested(v, _nested_step_attrs)
        out[k] = v
    return out


class _Lowering:
    def __init__(self, training: bool = False) -> None:
        self.training = training
        self.values: list[Value] = []
        self.steps: list[Step] = []
        self.params: dict[str, Param] = {}
        self.offsets = {True: 0, False: 0}
        # stateful recurrent calls: (name, value) of the states each starts from and ends with
        self.state_inputs: list[tuple[str, int]] = []
        self.state_outputs: list[tuple[str, int]] = []

    def new_value(self, t, fold: int | None = 1, mask: int | None = None) -> int:
        vid = len(self.values)  # a plan takes any batch size, whatever batch the inputs declare
        self.values.append(Value(vid, (None, *t.shape[1:]), t.dtype, fold, 0, t.masked, mask))
        return vid

    def mask_of(self, vid: int) -> int | None:
        return self.values[vid].mask

    def set_masks(self, node, ins: list[int], outs: list[int], prefix: str) -> None:
        """Give each masked output its mask value, as Keras propagates masks."""
        wanted = [o for o in outs if self.values[o].masked]
        if not wanted:
            return
        masks = [self.mask_of(i) for i in ins]
        if node.type == "Embedding":
            m = self.new_value(_mask_type(self.values[ins[0]]))
            self.steps.append(Step("mask_not_equal_zero", prefix + node.name, (ins[0],), (), (m,)))
        elif node.type == "Masking":
            m = self.new_value(_mask_type(self.values[ins[0]]))
            self.steps.append(Step("mask_any_not_equal", prefix + node.name, (ins[0],), (), (m,),
                                   {"mask_value": float(node.attrs.get("mask_value", 0.0))}))  # fmt: skip
        elif "mask_from" in REGISTRY[node.type].extra:  # attention: the output has the query's mask
            m = masks[REGISTRY[node.type].extra["mask_from"]]
            if m is None:
                return
        elif node.type in _MERGES and len(ins) > 1:
            # Keras's merge layers: Concatenate treats an unmasked input as all valid, then ORs
            # (over the feature axis: any unmasked input makes every step valid; over the time
            # axis the masks are concatenated); the element-wise merges OR the masks when every
            # input has one, and drop the mask otherwise.
            rank = len(self.values[outs[0]].shape)
            axis = node.attrs.get("axis", -1) if node.type == "Concatenate" else None
            if axis is not None and rank == 3 and axis % rank == 1:
                ones = [i for i, mk in zip(ins, masks) if mk is None]
                m = self.new_value(_mask_type(self.values[outs[0]]))
                self.steps.append(Step("mask_concat", prefix + node.name,
                                       tuple(mk if mk is not None else i for i, mk in zip(ins, masks)), (), (m,),
                                       {"ones": [ins.index(i) for i in ones]}))  # fmt: skip
            elif any(mk is None for mk in masks):
                return
            else:
                sources = sorted(set(masks))
                m = sources[0]
                if len(sources) > 1:
                    m = self.new_value(_mask_type(self.values[sources[0]]))
                    self.steps.append(Step("mask_or", prefix + node.name, tuple(sources), (), (m,)))
        else:
            sources = sorted({mk for mk in masks if mk is not None})
            if not sources:
                return
            m = sources[0]
        for o in wanted:
            v = self.values[o]
            self.values[o] = Value(v.id, v.shape, v.dtype, v.fold, v.buffer, v.masked, m)

    def add_params(self, typed: TypedGraph, prefix: str) -> None:
        for layer, p in typed.params():
            name = f"{prefix}{layer}/{p.name}"
            if name in self.params:
                continue
            off = self.offsets[p.trainable]
            self.offsets[p.trainable] += p.size
            self.params[name] = Param(name, tuple(p.shape), p.trainable, off, p.initializer, prefix + layer,
                                      p.regularizer, p.constraint, p.dtype)  # fmt: skip

    def lower_graph(self, typed: TypedGraph, prefix: str, env: dict, fold: int | None) -> None:
        """Append the steps of ``typed``; ``env`` maps input names and refs to value ids."""
        owners = _model_owners(typed)
        for name, tn in typed.nodes.items():
            ins = [env[(r.node, r.port)] for r in tn.node.inputs]
            outs = self.lower_node(typed, tn, ins, prefix, owners, fold)
            for port, vid in enumerate(outs):
                env[(name, port)] = vid

    def lower_node(self, typed, tn: TypedNode, ins, prefix, owners, fold) -> list[int]:
        if tn.state_types:
            return self.lower_stateful(typed, tn, ins, prefix, owners, fold)
        node = tn.node
        defn = REGISTRY[node.type]
        attrs = node.attrs
        layer_prefix = f"{prefix}{node.layer}/"
        pnames = tuple(layer_prefix + p.name for p in tn.params)
        if node.type == "Model":
            return self.inline_model(typed, attrs["model"], tn.in_types, ins, prefix + owners[attrs["model"]] + "/", fold)
        if node.type == "TimeDistributed":
            return self.time_distributed(typed, tn, ins, prefix, owners, fold, pnames)
        if "lower_chain" in defn.extra:  # a chain of layers (RNN over stacked cells)
            chain = defn.extra["lower_chain"](attrs)
            if len(chain) > 1:
                return self.lower_chain(tn, chain, ins, prefix, pnames, fold)
        if "lower_as" in defn.extra:  # a layer that computes what another type computes (RNN(cell))
            lowered, attrs = defn.extra["lower_as"](attrs)
            defn = REGISTRY[lowered]
        outs = [self.new_value(t, fold) for t in tn.out_types]
        masks = tuple(-1 if self.mask_of(i) is None else self.mask_of(i) for i in ins) if defn.uses_mask else ()
        view = defn.view or (defn.training_only and not self.training)
        if node.type == "Flatten" and attrs.get("data_format") == "channels_first" and tn.in_types[0].rank > 2:
            view = False  # Keras moves channels last before flattening: a copy
        op = "reshape" if (view and not defn.training_only and node.type != "ActivityRegularization") else defn.op
        inplace = defn.extra.get("inplace", False) and not view and not self.training
        self.steps.append(
            Step(op, prefix + node.name, tuple(ins), pnames, tuple(outs), step_attrs(defn.name, attrs),
                 view=view, inplace=inplace, training_only=defn.training_only, masks=masks)  # fmt: skip
        )
        self.set_masks(node, ins, outs, prefix)
        return outs

    def lower_stateful(self, typed, tn: TypedNode, ins, prefix, owners, fold) -> list[int]:
        """A stateful recurrent call, as Keras runs one: it starts from the states the previous
        batch ended with (plan inputs ``state:<node>:<k>``; zeros at first, or after a reset),
        unless the call is given initial states, and its final states are kept (plan outputs of
        the same names). The step itself is the layer's with ``return_state`` on; ``stateful``
        in its attributes says its input mask still applies (Keras passes the mask to a call
        whose only tensor argument is the sequence, which a call given initial states is not)."""
        from dataclasses import replace

        node = tn.node
        names = [f"{STATE_PREFIX}{prefix}{node.name}:{k}" for k in range(len(tn.state_types))]
        own = len(ins) == 1
        if own:
            kept = [self.new_value(t) for t in tn.state_types]
            self.state_inputs += zip(names, kept)
            ins = [*ins, *kept]
        attrs = {**returning_states(node), "stateful": own}
        n_plain = len(tn.out_types) - (len(tn.state_types) if _returns_state(node) else 0)
        step_node = replace(node, attrs=attrs)
        step_tn = replace(tn, node=step_node, in_types=[*tn.in_types, *(tn.state_types if own else ())],
                          out_types=[*tn.out_types[:n_plain], *tn.state_types], state_types=[])  # fmt: skip
        outs = self.lower_node(typed, step_tn, ins, prefix, owners, fold)
        self.state_outputs += zip(names, outs[n_plain:])
        return outs if _returns_state(node) else outs[:n_plain]

    def lower_chain(self, tn: TypedNode, chain, ins, prefix, pnames, fold) -> list[int]:
        """One step per (layer type, attrs) of ``chain``, each reading the previous one's first
        output; the node's outputs are the last step's first output, then every step's other
        outputs in order (an RNN over stacked cells: the output, then each cell's states). The
        weights go to the steps by their scope (``.../stacked_rnn_cells/lstm_cell/kernel``). Initial
        states (the node's inputs after the sequence) go to the steps cell by cell."""
        node = tn.node
        outs = [self.new_value(t, fold) for t in tn.out_types]
        scopes: dict[str, list[str]] = {}
        for p in pnames:
            scopes.setdefault(p.rsplit("/", 1)[0], []).append(p)
        groups = list(scopes.values())
        x, x_type, extra = ins[0], tn.in_types[0], iter(outs[1:])
        init = list(zip(ins[1:], tn.in_types[1:]))
        for k, (t, attrs) in enumerate(chain):
            defn = REGISTRY[t]
            own, init = (init[: STATES[t]], init[STATES[t] :]) if init else ([], [])
            types = defn.infer(attrs, [x_type, *(ty for _, ty in own)], None)
            y = outs[0] if k == len(chain) - 1 else self.new_value(types[0], fold)
            step_outs = (y, *(next(extra) for _ in types[1:]))
            step_ins = (x, *(v for v, _ in own))
            masks = tuple(-1 if self.mask_of(i) is None else self.mask_of(i) for i in step_ins) if defn.uses_mask else ()
            sattrs = step_attrs(t, attrs)
            if node.attrs.get("stateful"):  # kept states, not given ones: the mask applies (step_mask)
                sattrs["stateful"] = True
            self.steps.append(Step(defn.op, prefix + node.name, step_ins, tuple(groups[k]),
                                   step_outs, sattrs, masks=masks))  # fmt: skip
            if y != outs[0] and types[0].masked and self.mask_of(x) is not None:
                v = self.values[y]
                self.values[y] = Value(v.id, v.shape, v.dtype, v.fold, v.buffer, v.masked, self.mask_of(x))
            x, x_type = y, types[0]
        self.set_masks(node, ins, outs, prefix)
        return outs

    def inline_model(self, typed, model: str, in_types, ins, prefix, fold) -> list[int]:
        sub_graph = typed.graph.submodels[model]
        sub_types = {n: t for n, t in zip(sub_graph.inputs, in_types)}
        sub = infer_types(sub_graph, input_types=sub_types)
        env = {(n, 0): vid for n, vid in zip(sub_graph.inputs, ins)}
        self.lower_graph(sub, prefix, env, fold)
        return [env[(r.node, r.port)] for r in sub_graph.outputs]

    def time_distributed(self, typed, tn: TypedNode, ins, prefix, owners, fold, pnames) -> list[int]:
        inner = dict(tn.node.attrs["layer"])
        x = tn.in_types[0]
        steps_t = x.shape[1]
        inner_fold = None if (steps_t is None or fold is None) else fold * steps_t
        if inner["type"] == "Dense":
            from ..layerdefs.base import normalize_attrs

            (out,) = [self.new_value(t, fold) for t in tn.out_types]
            a = normalize_attrs(REGISTRY["Dense"], {k: v for k, v in inner.items() if k != "type"})
            a = _without_activity_regularizer(a)
            self.steps.append(Step("dense", prefix + tn.node.name, tuple(ins), pnames, (out,), step_attrs("Dense", a)))
            self.set_masks(tn.node, ins, [out], prefix)
            return [out]
        folded_t = x.with_shape((None, *x.shape[2:]))
        folded = self.new_value(folded_t, inner_fold)
        self.steps.append(Step("fold_time", prefix + tn.node.name, tuple(ins), (), (folded,), {}, view=True))
        if inner["type"] == "Model":
            model = inner["model"]
            inner_outs = self.inline_model(typed, model, [folded_t], [folded], prefix + owners[model] + "/", inner_fold)
        else:
            from ..layerdefs.base import normalize_attrs

            idef = REGISTRY[inner["type"]]
            iattrs = _without_activity_regularizer(normalize_attrs(idef, {k: v for k, v in inner.items() if k != "type"}))
            if "lower_as" in idef.extra:
                lowered, iattrs = idef.extra["lower_as"](iattrs)
                idef = REGISTRY[lowered]
            otypes = [t.with_shape((None, *t.shape[2:])) for t in tn.out_types]
            inner_outs = [self.new_value(t, inner_fold) for t in otypes]
            self.steps.append(
                Step(idef.op, prefix + tn.node.name, (folded,), pnames, tuple(inner_outs),
                     step_attrs(idef.name, iattrs), training_only=idef.training_only,
                     view=idef.view or (idef.training_only and not self.training))  # fmt: skip
            )
        outs = []
        for vid, t in zip(inner_outs, tn.out_types):
            out = self.new_value(t, fold)
            self.steps.append(Step("unfold_time", prefix + tn.node.name, (vid,), (), (out,), {"steps": steps_t}, view=True))
            outs.append(out)
        self.set_masks(tn.node, ins, outs, prefix)
        return outs


def _returns_state(node) -> bool:
    a = node.attrs["layer"] if node.type == "Bidirectional" else node.attrs
    return bool(a.get("return_state"))


def _without_activity_regularizer(attrs: dict) -> dict:
    """A layer wrapped in TimeDistributed has no activity penalty: Keras's TimeDistributed runs
    the layer's ``call`` per time step, not the layer itself, so its activity regularizer is
    never applied (a sub-model's layers are called, so theirs are)."""
    return {**attrs, "activity_regularizer": None} if "activity_regularizer" in attrs else attrs


# Plan-level steps that compute masks: no kernel of a layer's own, and no gradient.
MASK_OPS = frozenset({"mask_not_equal_zero", "mask_any_not_equal", "mask_or", "mask_concat"})
_MERGES = ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot")


def _mask_type(v: Value):
    from ..layerdefs.base import TensorType

    return TensorType(tuple(v.shape[:2]), "float32")


def _model_owners(typed: TypedGraph) -> dict[str, str]:
    """Sub-model name -> the layer under whose name its weights are stored (its first call)."""
    owners: dict[str, str] = {}
    for layer, calls in typed.layer_nodes().items():
        a = calls[0].node.attrs
        if calls[0].node.type == "Model":
            owners.setdefault(a["model"], layer)
        elif calls[0].node.type == "TimeDistributed" and a["layer"].get("type") == "Model":
            owners.setdefault(a["layer"]["model"], layer)
    return owners


def _assign_buffers(low: _Lowering, input_ids: set[int], output_ids: set[int], reuse: bool = True) -> list[Buffer]:
    """Give every computed value a buffer; with ``reuse`` a buffer is reused once free.

    Training plans do not reuse: the backward pass reads the forward values.
    """
    values = low.values
    steps = low.steps
    root = {v.id: v.id for v in values}
    for s in steps:
        if s.view:
            for o in s.outputs:
                root[o] = root[s.inputs[0]]
    last_use: dict[int, int] = {}
    for i, s in enumerate(steps):
        for v in s.reads:
            last_use[root[v]] = i
    for v in output_ids:
        last_use[root[v]] = len(steps)  # outputs outlive every step
    buf_of: dict[int, int] = {}  # root value -> buffer id
    sizes: list[int] = []
    free: list[int] = []
    for i, s in enumerate(steps):
        if not s.view:
            for k, o in enumerate(s.outputs):
                need = values[o].values_per_sample
                src = root[s.inputs[0]] if s.inputs else None
                if (k == 0 and s.inplace and src is not None and src not in input_ids
                        and last_use.get(src) == i and src in buf_of):  # fmt: skip
                    b = buf_of[src]
                    last_use[src] = -1  # handed over: not freed below
                else:
                    fits = [b for b in free if sizes[b] >= need] if reuse else []
                    if not reuse:
                        free.clear()
                    if fits:
                        b = min(fits, key=lambda b: (sizes[b], b))
                    elif free:
                        b = max(free, key=lambda b: (sizes[b], -b))
                    else:
                        b = len(sizes)
                        sizes.append(0)
                    if b in free:
                        free.remove(b)
                sizes[b] = max(sizes[b], need)
                buf_of[o] = b
        for v in set(root[x] for x in s.reads):
            if last_use.get(v) == i and v in buf_of:
                free.append(buf_of[v])
    for idx, v in enumerate(values):
        r = root[v.id]
        b = buf_of.get(r)
        values[idx] = Value(v.id, v.shape, v.dtype, v.fold, b if r not in input_ids else None, v.masked, v.mask)
    return [Buffer(i, n) for i, n in enumerate(sizes)]


def lower(typed: TypedGraph, outputs: list | None = None, training: bool = False, activity: bool = False) -> Plan:
    """Lower ``typed`` to a plan computing ``outputs`` (default: the model's outputs).

    Steps that no requested output depends on are left out. A training plan runs the
    training-only layers (Dropout...) as steps and keeps every value for the backward pass.
    With ``activity``, the outputs of every step with an activity regularizer (sub-models'
    included) follow, named ``activity:<step>:<k>``, so evaluation can add their penalties.
    A stateful recurrent call adds inputs and outputs named ``state:<node>:<k>``, after the
    others: the states it starts from and the ones it ends with (``lower_stateful``).
    """
    low = _Lowering(training)
    g = typed.graph
    env: dict = {}
    inputs = []
    for name, t in typed.input_types.items():
        vid = low.new_value(t)
        env[(name, 0)] = vid
        inputs.append((name, vid))
    low.add_params(typed, "")
    low.lower_graph(typed, "", env, 1)
    named = [(str(r), r) for r in outputs] if outputs is not None else list(zip(g.output_names, g.outputs))
    out_ids = [(n, env[(r.node, r.port)]) for n, r in named]
    if activity:
        out_ids += [(f"activity:{st.node}:{k}", o) for st in low.steps
                    if activity_regularizer_of(st.op, st.attrs, st.node) is not None for k, o in enumerate(st.outputs)]  # fmt: skip
    _prune(low, {v for _, v in out_ids})
    # the stateful calls still computed: the states they start from and end with, last
    produced = {o for s in low.steps for o in s.outputs}
    read = {r for s in low.steps for r in s.reads}
    inputs += [(n, v) for n, v in low.state_inputs if v in read]
    out_ids += [(n, v) for n, v in low.state_outputs if v in produced]
    inputs, out_ids = _renumber(low, inputs, out_ids)
    buffers = _assign_buffers(low, {v for _, v in inputs}, {v for _, v in out_ids}, reuse=not training)
    return Plan(g.name, inputs, out_ids, low.values, list(low.params.values()), low.steps, buffers)


def _renumber(low: _Lowering, inputs, out_ids):
    """Number the values still used densely: inputs first, then in step order."""
    new: dict[int, int] = {}
    for _, v in inputs:
        new[v] = len(new)
    for s in low.steps:
        for v in (*s.reads, *s.outputs):
            new.setdefault(v, len(new))
    for _, v in out_ids:
        new.setdefault(v, len(new))
    old_values = {v.id: v for v in low.values}
    low.values = [Value(n, *_fields(old_values[o], new)) for o, n in sorted(new.items(), key=lambda kv: kv[1])]
    low.steps = [
        Step(s.op, s.node, tuple(new[i] for i in s.inputs), s.params, tuple(new[o] for o in s.outputs), s.attrs,
             s.view, s.inplace, s.training_only, tuple(new[m] if m >= 0 else -1 for m in s.masks))  # fmt: skip
        for s in low.steps
    ]
    return [(n, new[v]) for n, v in inputs], [(n, new[v]) for n, v in out_ids]


def _fields(v: Value, new: dict) -> tuple:
    return (v.shape, v.dtype, v.fold, v.buffer, v.masked, new.get(v.mask) if v.mask is not None else None)


def _prune(low: _Lowering, needed_values: set[int]) -> None:
    """Drop steps whose outputs nothing needed reads, keeping value ids stable."""
    needed = set(needed_values)
    keep = []
    for s in reversed(low.steps):
        if any(o in needed for o in s.outputs):
            keep.append(s)
            needed.update(s.reads)
    low.steps = list(reversed(keep))
