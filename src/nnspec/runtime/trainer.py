"""Run training steps: the generated train_step, then the optimizer's kernel, then constraints.

A :class:`Trainer` is made per (model, loss configuration, input shapes). Its compiled module
is cached on disk like the inference executor's. Per batch size it keeps the workspaces (``ws``
and the gradient workspace ``gws`` of the same layout, the saved-for-backward arrays ``sws`` and
``iws``) and reuses them.

A batch with enough work is split into parts run at the same time on worker threads, as for
inference (``executor.split_counts``). Each part computes its loss and gradients with its own
workspaces, scaled by its shares (the last entries of the step's ``lw``, see train_codegen),
and the parts' losses and gradients are summed. That is the whole batch's loss and gradient
because every loss divides by its count of rows (``losses.combine_weights`` with Keras's
default reduction: a part's share is its share of the samples), weight penalties are the same
in every part (the shares sum to one), and activity penalties are divided by the batch size.
A loss over a masked output divides by its count of valid steps instead: a part's share of it
is counted from the mask before the step, which works when the mask is computed from a model
input (an Embedding's ``mask_zero`` over token ids, or a Masking layer right after the input).
A batch is not split when that does not hold: another kind of masked output, a layer whose
training couples the samples of a batch (``LayerDef.couples_batch``: batch statistics), and
random layers (``training_only``: they draw from the calling thread's generator, which would
make results depend on the threads).
"""

from __future__ import annotations

import numpy as np

from ..compiler.plan import Plan
from .codegen import _OP_TO_DEF
from .executor import _load_module, run_parts, split_counts, work_per_sample
from .kernels import bind
from .numba_config import set_threads, worker_threads
from .regularizers import apply_constraint, get_constraint
from .train_codegen import LossBinding, generate_train

_EMPTY = np.zeros(0, np.float32)


class Trainer:
    def __init__(self, plan: Plan, bindings: list[LossBinding | None]) -> None:
        bind()
        set_threads()
        self.plan = plan
        self.bindings = bindings
        self.source, self.ws_per_sample, self.sws_per_sample, self.iws_per_sample = generate_train(
            plan, bindings
        )
        self.module = _load_module(self.source)
        self.step = self.module.nnspec_train_step
        self._buffers: dict[int, tuple] = {}
        self.out = np.zeros(len(plan.outputs) + 1, np.float64)
        self.grads: np.ndarray | None = None
        self.constraints = [
            (p.name, get_constraint(p.constraint))
            for p in plan.params
            if p.constraint is not None and p.trainable
        ]
        vals = {v.id: v for v in plan.values}
        offsets = {}
        off = 0
        for b in plan.buffers:
            offsets[b.id] = off
            off += b.values_per_sample
        self._out_layout = [(offsets[vals[vid].buffer], vals[vid]) for _, vid in plan.outputs]
        self._split_masks = split_masks(plan, bindings)
        self.threads = 1 if self._split_masks is None else worker_threads()
        self.work_per_sample = 3 * work_per_sample(plan)  # forward, and backward's two products
        self._parts: list[tuple[int, int]] = []  # (start, count) of the last run's parts
        self._part_state: dict[int, tuple] = {}  # start -> (gradients, losses) of a part
        self._lw: dict[int, np.ndarray] = {}  # start -> the loss weights and share it is given

    def buffers(self, n: int, part: int = 0) -> tuple:
        """The workspaces for ``n`` samples (a part of a split batch: one set per part's start)."""
        b = self._buffers.get((n, part))
        if b is None:
            if len(self._buffers) > 8:
                self._buffers.clear()
            b = (
                np.empty(max(1, n * self.ws_per_sample), np.float32),
                np.empty(max(1, n * self.ws_per_sample), np.float32),
                np.empty(max(1, n * self.sws_per_sample), np.float32),
                np.empty(max(1, n * self.iws_per_sample), np.int32),
            )
            self._buffers[(n, part)] = b
        return b

    def run(self, inputs, targets, sample_weights, tp, ntp, loss_weights: np.ndarray) -> np.ndarray:
        """One forward and backward pass; the gradients land in ``self.grads``."""
        n = inputs[0].shape[0]
        if self.grads is None or self.grads.shape != tp.shape:
            self.grads = np.zeros_like(tp)
            self._part_state.clear()
        sw = [_EMPTY if w is None else w for w in sample_weights]
        counts = split_counts(n, self.work_per_sample, self.threads)
        starts = [sum(counts[:i]) for i in range(len(counts))]
        self._parts = list(zip(starts, counts))
        if len(counts) == 1:
            ws, gws, sws, iws = self.buffers(n)
            lw = self._loss_weights(0, loss_weights, None, 1.0)
            self.step(*inputs, *targets, *sw, tp, ntp, self.grads, ws, gws, sws, iws, lw, self.out)
            return self.out

        shares = self._divisor_shares(inputs, counts)

        def part(start: int, count: int) -> None:
            g, out = (self.grads, self.out) if start == 0 else self._state(start)
            ws, gws, sws, iws = self.buffers(count, start)
            end = start + count
            ins = [a[start:end] for a in inputs]
            tgt = [t[start:end] for t in targets]
            rsw = [w if not w.size else w[start * (w.shape[0] // n) : end * (w.shape[0] // n)] for w in sw]
            lw = self._loss_weights(start, loss_weights, shares.get(start), count / n)
            self.step(*ins, *tgt, *rsw, tp, ntp, g, ws, gws, sws, iws, lw, out)

        run_parts(part, counts)
        for start in starts[1:]:  # each part's loss and gradients are already weighted by its share
            g, out = self._state(start)
            np.add(self.grads, g, out=self.grads)
            np.add(self.out, out, out=self.out)
        return self.out

    def _divisor_shares(self, inputs, counts) -> dict[int, dict[int, float]]:
        """For each part (by start), each masked output's share of the batch's loss divisor:
        the part's valid (nonzero) token ids over the batch's (0 when the batch has none)."""
        out: dict[int, dict[int, float]] = {}
        if not self._split_masks:
            return out
        start = 0
        valid = {k: [] for k in self._split_masks}
        for c in counts:
            for k, (i, mask_value) in self._split_masks.items():
                part = inputs[i][start : start + c]
                if mask_value is not None:  # Masking: steps with some feature != mask_value
                    part = (part != np.float32(mask_value)).any(axis=-1)
                valid[k].append(int(np.count_nonzero(part)))
            start += c
        start = 0
        for j, c in enumerate(counts):
            out[start] = {k: (v[j] / sum(v) if sum(v) else 0.0) for k, v in valid.items()}
            start += c
        return out

    def _loss_weights(self, start: int, loss_weights: np.ndarray, divisor_shares, share: float) -> np.ndarray:
        """The step's ``lw``: the K outputs' loss weights, each output's share of the batch's loss
        divisor, the part's share of the batch's samples (see train_codegen); the divisor's share
        is the samples' share except for masked outputs (``divisor_shares``)."""
        k = loss_weights.shape[0]
        lw = self._lw.get(start)
        if lw is None or lw.shape[0] != 2 * k + 1:
            lw = self._lw[start] = np.empty(2 * k + 1, np.float64)
        lw[:k] = loss_weights
        lw[k:] = share
        for j, v in (divisor_shares or {}).items():
            lw[k + j] = v
        return lw

    def _state(self, start: int) -> tuple:
        """The gradients and losses of the part starting at ``start`` (> 0), kept and reused."""
        st = self._part_state.get(start)
        if st is None:
            st = (np.zeros_like(self.grads), np.zeros_like(self.out))
            self._part_state[start] = st
        return st

    def outputs(self, n: int) -> list[np.ndarray]:
        """The outputs the last ``run`` computed: views of its workspace (valid until the next
        run), joined when the batch was split."""
        per_part = []
        for start, count in self._parts or [(0, n)]:
            ws = self.buffers(count, start if len(self._parts) > 1 else 0)[0]
            views = []
            for off, v in self._out_layout:
                size = v.values_per_sample
                views.append(
                    ws[off * count : off * count + count * size].reshape(
                        (count * (v.fold or 1), *v.shape[1:])
                    )
                )
            per_part.append(views)
        if len(per_part) == 1:
            return per_part[0]
        return [np.concatenate([p[k] for p in per_part]) for k in range(len(self._out_layout))]

    def apply_constraints(self, store) -> None:
        for name, spec in self.constraints:
            apply_constraint(spec, store.view(name))


def split_masks(plan: Plan, bindings: list) -> dict[int, tuple] | None:
    """How a training batch of this plan may be split over threads (see the module doc): for
    each scored output with a mask, ``(input index, mask_value)``: the model input the mask is
    computed from, so a part's share of the loss divisor can be counted before the step (its
    nonzero token ids for an Embedding's ``mask_zero``, mask_value None; its steps with some
    feature other than ``mask_value`` for a Masking layer right after the input); ``{}`` when
    no scored output has a mask; None when the batch may not be split."""
    vals = {v.id: v for v in plan.values}
    for s in plan.steps:
        d = _OP_TO_DEF.get(s.op)
        if s.training_only or (d is not None and (d.couples_batch or d.training_only)):
            return None
        if d is not None and d.random_training is not None and d.random_training(s.attrs):
            return None
    producer = {o: s for s in plan.steps for o in s.outputs}
    inputs = [vid for _, vid in plan.inputs]
    masks = {}
    for k, ((_, vid), b) in enumerate(zip(plan.outputs, bindings)):
        mask = vals[vid].mask
        if b is None or mask is None:
            continue
        s = producer.get(mask)
        if s is None or s.inputs[0] not in inputs:
            return None
        if (
            s.op == "mask_not_equal_zero"
            and vals[mask].values_per_sample == vals[s.inputs[0]].values_per_sample
        ):
            masks[k] = (inputs.index(s.inputs[0]), None)
        elif s.op == "mask_any_not_equal":
            masks[k] = (inputs.index(s.inputs[0]), s.attrs["mask_value"])
        else:
            return None
    return masks
