"""Write a training plan as one Numba function: forward, losses, backward (a long plan: a few,
see codegen.CHUNK_STEPS).

``nnspec_train_step(in_..., tgt_..., sw_..., tp, ntp, g, ws, gws, sws, iws, lw, out)`` runs the
forward pass in training mode (Dropout active, batch statistics, every value kept), computes
each output's loss with its kernel from ``runtime/losses.py``, or the generated module of a custom
loss, which the plan imports by name (the kernel also writes the gradient of the weighted loss
into the output's gradient), then the backward pass in reverse step order,
each layer's ``emit_backward`` adding into the gradients of its inputs and weights. The
gradient of a value lives in ``gws`` at the same offset as the value in ``ws`` (a training plan
gives every value its own buffer), so views share gradients as they share values. Parameter
gradients go to ``g`` (the layout of ``tp``). ``lw`` holds the K outputs' loss weights, then
each output's share of the batch's loss divisor, then the share of the batch's samples (all 1
for a whole batch; a part of a batch split over threads gets its shares, ``runtime/trainer.py``).
``out[k]`` receives output k's loss value (times its share) and ``out[-1]`` the weighted total.
The optimizer update is one more compiled call (``runtime/optimizers.py``).
"""

from __future__ import annotations

from ..compiler.lower import MASK_OPS
from ..compiler.plan import Plan, Step
from . import codegen
from .codegen import _OP_TO_DEF, CodegenError, Emit, _Generator, _rows, _shape_expr


class LossBinding:
    """How output k is scored: the loss kernel, its extra arguments, and label layout."""

    def __init__(self, kernel, args: tuple, sparse: bool) -> None:
        self.kernel = kernel
        self.args = tuple(args)
        self.sparse = sparse


class _TrainGenerator(_Generator):
    def __init__(self, plan: Plan, losses: list[LossBinding | None]) -> None:
        super().__init__(plan)
        self.fresh_outputs = {}  # outputs stay in the workspace: backward reads them
        self.losses = losses
        self.needs_grad = self._needs_grad()
        self.saved_f32 = 0
        self.saved_i32 = 0
        self.saved_vars: dict[int, list[str]] = {}

    def _needs_grad(self) -> set[int]:
        """Values whose gradient matters: downstream of a trainable weight."""
        trainable = {p.name for p in self.plan.params if p.trainable}
        need: set[int] = set()
        for s in self.plan.steps:
            if s.op in MASK_OPS:  # masks carry no gradient
                continue
            if any(p in trainable for p in s.params) or any(i in need for i in s.inputs):
                need.update(s.outputs)
        return need

    def grad_var(self, vid: int) -> str:
        return f"g{vid}"

    def bind_grad(self, vid: int) -> str:
        v = self.vals[vid]
        off = self.buffer_offsets[v.buffer]
        var = self.grad_var(vid)
        self.line(f"{var} = gws[{off} * n:{off} * n + n * {v.values_per_sample}].reshape({_shape_expr(v)})")
        return var

    def generate_train(self) -> str:
        plan = self.plan
        ins = [f"in_{i}" for i in range(len(plan.inputs))]
        tgts = [f"tgt_{k}" for k in range(len(plan.outputs))]
        sws = [f"sw_{k}" for k in range(len(plan.outputs))]
        self.line(f"n = {ins[0]}.shape[0]")
        self.line(f"gws[: n * {self.ws_per_sample}] = 0.0")
        self.line("g[:] = 0.0")
        for (name, vid), var in zip(plan.inputs, ins):
            self.line(f"{self.value_var(vid)} = {var}")
        params = {p.name: p for p in plan.params}
        pvar, gvar = {}, {}
        used = []
        for s in plan.steps:
            for pn in s.params:
                if pn not in used:
                    used.append(pn)
        for i, pn in enumerate(used):
            p = params[pn]
            shape = ", ".join(str(d) for d in p.shape) + ("," if len(p.shape) == 1 else "")
            src = "tp" if p.trainable else "ntp"
            pvar[pn] = f"p{i}"
            self.line(f"p{i} = {src}[{p.offset}:{p.offset + p.size}].reshape(({shape}))  # {pn}")
            if p.trainable:
                gvar[pn] = f"dp{i}"
                self.line(f"dp{i} = g[{p.offset}:{p.offset + p.size}].reshape(({shape}))")
        for s in plan.steps:
            self.emit_train_step(s, pvar)
        # losses: each writes the gradient of its weighted value into the output's gradient
        from . import losses as _losses

        self.module_aliases.setdefault("nnspec.runtime.losses", "_L")
        self.line("total = 0.0")
        self.line(f"share = lw[{2 * len(plan.outputs)}]")
        for k, ((name, vid), lb) in enumerate(zip(plan.outputs, self.losses)):
            if lb is None:
                self.line(f"out[{k}] = 0.0")
                continue
            v = self.vals[vid]
            last = v.shape[-1] if len(v.shape) > 1 else 1
            rows = f"({_rows(v)}) * {v.values_per_sample // max(1, v.fold) // max(1, last)}"
            y2 = f"{self.value_var(vid)}.reshape(({rows}, {last}))"
            gy = self.bind_grad(vid) if vid in self.needs_grad else None
            dy2 = f"{gy}.reshape(({rows}, {last}))" if gy else f"np.empty(({rows}, {last}), np.float32)"
            t2 = f"{tgts[k]}.reshape(({rows},))" if lb.sparse else f"{tgts[k]}.reshape(({rows}, {last}))"
            mask = f"{self.value_var(v.mask)}.reshape(({rows},))" if v.mask is not None else "EMPTY"
            self.line(f"w{k} = np.empty({rows}, np.float32)")
            self.line(f"div{k} = _L.combine_weights({sws[k]}, {mask}, w{k}, 0)")
            self.line(f"scale{k} = lw[{k}] * lw[{len(plan.outputs) + k}] / div{k} if div{k} > 0 else 0.0")
            args = "".join(f", {a!r}" for a in lb.args)
            self.line(f"tot{k} = {self.kernel(lb.kernel)}({t2}, {y2}, w{k}, {dy2}, scale{k}{args})")
            self.line(f"out[{k}] = lw[{len(plan.outputs) + k}] * _L.finish(tot{k}, div{k})")
            self.line(f"total += lw[{k}] * out[{k}]")
        assert _losses is not None
        self.emit_penalties(params, pvar, gvar)
        self.line(f"out[{len(plan.outputs)}] = total")
        for s in reversed(plan.steps):
            self.emit_backward_step(s, pvar, gvar)
        self.line("return")
        header = [
            "# Generated by nnspec from a training plan; do not edit.",
            "import numpy as np",
            "from numba import njit",
            "from nnspec.runtime.kernels import jit",
        ]
        for mod, alias in self.module_aliases.items():
            header.append(f"import {mod} as {alias}")
        for fn, (kname, alias, attr) in self.imports.items():
            header.append(f"{kname} = jit({alias}.{attr})")
        header += ["EMPTY = np.zeros(0, np.float32)", "", ""]
        args = ", ".join(ins + tgts + sws + ["tp", "ntp", "g", "ws", "gws", "sws", "iws", "lw", "out"])
        decorator = "@njit(cache=True, nogil=True, error_model='numpy')"
        if len(plan.steps) > codegen.CHUNK_STEPS:  # forward steps, the losses (with the last part's), backward
            body = self.chunks("nnspec_train_step", args, decorator)
        else:
            body = [decorator, f"def nnspec_train_step({args}):", *self.lines]
        return "\n".join(header + body) + "\n"

    def emit_penalties(self, params: dict, pvar: dict, gvar: dict) -> None:
        """Weight penalties (as they are) and activity penalties (over the batch size), added to the
        total loss with their gradients, as Keras adds ``model.losses``."""
        from ..compiler.plan import activity_regularizer_of
        from .regularizers import get_regularizer

        self.module_aliases.setdefault("nnspec.runtime.regularizers", "_R")
        for name, p in params.items():
            if p.regularizer is None or not p.trainable or name not in pvar:
                continue
            r = get_regularizer(p.regularizer)
            self.line(
                f"total += _R.l1_l2_penalty({pvar[name]}.ravel(), {gvar[name]}.ravel(), {r.l1!r}, {r.l2!r}, share)"
            )
        for s in self.plan.steps:
            spec = activity_regularizer_of(s.op, s.attrs, s.node)
            if spec is None:
                continue
            r = get_regularizer(spec)
            for o in s.outputs:
                y = self.value_var(o)
                # no layer before it trains: the penalty is still part of the loss Keras reports
                gy = self.bind_grad(o) if o in self.needs_grad else "np.zeros(0, np.float32)"
                self.line(
                    f"total += _R.l1_l2_penalty({y}.ravel(), {gy}.ravel(), {r.l1!r}, {r.l2!r}, share / n if n else 0.0)"
                )

    def _saved(self, s: Step, defn) -> list[str]:
        if defn.saved is None:
            return []
        x_shapes = [tuple(self.vals[i].shape[1:]) for i in s.inputs]
        y_shapes = [tuple(self.vals[o].shape[1:]) for o in s.outputs]
        names = []
        rows = _rows(self.vals[s.outputs[0]])
        for shape, dtype in defn.saved(s.attrs, x_shapes, y_shapes):
            size = 1
            for d in shape:
                size *= d
            fold = self.vals[s.outputs[0]].fold
            per_sample = size * fold
            name = self.fresh("s")
            dims = ", ".join([rows] + [str(d) for d in shape])
            if dtype == "int32":
                off = self.saved_i32
                self.saved_i32 += per_sample
                self.line(f"{name} = iws[{off} * n:{off} * n + n * {per_sample}].reshape(({dims},))")
            else:
                off = self.saved_f32
                self.saved_f32 += per_sample
                self.line(f"{name} = sws[{off} * n:{off} * n + n * {per_sample}].reshape(({dims},))")
            names.append(name)
        return names

    def emit_train_step(self, s: Step, pvar: dict) -> None:
        self.step_starts.append(len(self.lines))
        self.line(f"# {s.op} {s.node}")
        defn = _OP_TO_DEF.get(s.op)
        if s.view:
            src = self.value_var(s.inputs[0])
            for o in s.outputs:
                self.line(f"{self.value_var(o)} = {src}.reshape({_shape_expr(self.vals[o])})")
            return
        if defn is None:
            self.step_starts.pop()  # emit_step records the step itself
            self.emit_step(s, pvar)  # plan-level ops (masks)
            return
        emit = defn.emit_train or defn.emit
        if emit is None:
            raise CodegenError(f"no training kernel for op '{s.op}' (node '{s.node}')")
        ys = [self.bind_output(o) for o in s.outputs]
        e = self._emit(s, pvar, ys)
        e.s = self._saved(s, defn)
        self.saved_vars[id(s)] = e.s
        for text in emit(e):
            self.line(text)

    def _emit(self, s: Step, pvar: dict, ys) -> Emit:
        xs = [self.value_var(i) for i in s.inputs]
        masks = [self.value_var(m) if m >= 0 else None for m in s.masks] if s.masks else [None] * len(xs)
        e = Emit(self, s, xs, ys, [pvar[p] for p in s.params], masks,
                 [self.vals[i] for i in s.inputs], [self.vals[o] for o in s.outputs])  # fmt: skip
        e.training = True
        return e

    def emit_backward_step(self, s: Step, pvar: dict, gvar: dict) -> None:
        if s.view or not any(o in self.needs_grad for o in s.outputs):
            return
        defn = _OP_TO_DEF.get(s.op)
        if defn is None or defn.emit_backward is None:
            raise CodegenError(
                f"no backward kernel for op '{s.op}' (node '{s.node}') in this version of nnspec"
            )
        self.step_starts.append(len(self.lines))
        self.line(f"# backward {s.op} {s.node}")
        e = self._emit(s, pvar, [self.value_var(o) for o in s.outputs])
        e.s = self.saved_vars.get(id(s), [])
        e.dy = [self.bind_grad(o) for o in s.outputs]
        e.dx = [self.bind_grad(i) if i in self.needs_grad else None for i in s.inputs]
        e.dp = [gvar.get(p) for p in s.params]
        for text in defn.emit_backward(e):
            self.line(text)


def generate_train(plan: Plan, losses: list[LossBinding | None]) -> tuple[str, int, int, int]:
    """Source of ``plan``'s train_step, and per-sample sizes of ws (and gws), sws and iws."""
    g = _TrainGenerator(plan, losses)
    src = g.generate_train()
    return src, g.ws_per_sample, g.saved_f32, g.saved_i32
