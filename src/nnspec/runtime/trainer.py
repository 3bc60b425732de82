"""Run training steps: the generated train_step, then the optimizer's kernel, then constraints.

A :class:`Trainer` is made per (model, loss configuration, input shapes). Its compiled module
is cached on disk like the inference executor's. Per batch size it keeps the workspaces (``ws``
and the gradient workspace ``gws`` of the same layout, the saved-for-backward arrays ``sws`` and
``iws``) and reuses them.
"""

from __future__ import annotations

import numpy as np

from ..compiler.plan import Plan
from .executor import _load_module
from .kernels import bind
from .numba_config import set_threads
from .regularizers import apply_constraint, get_constraint
from .train_codegen import LossBinding, generate_train

_EMPTY = np.zeros(0, np.float32)


class Trainer:
    def __init__(self, plan: Plan, bindings: list[LossBinding | None]) -> None:
        bind()
        set_threads()
        self.plan = plan
        self.bindings = bindings
        self.source, self.ws_per_sample, self.sws_per_sample, self.iws_per_sample = generate_train(plan, bindings)
        self.module = _load_module(self.source)
        self.step = self.module.nnspec_train_step
        self._buffers: dict[int, tuple] = {}
        self.out = np.zeros(len(plan.outputs) + 1, np.float64)
        self.grads: np.ndarray | None = None
        self.constraints = [
            (p.name, get_constraint(p.constraint)) for p in plan.params if p.constraint is not None and p.trainable
        ]
        vals = {v.id: v for v in plan.values}
        offsets = {}
        off = 0
        for b in plan.buffers:
            offsets[b.id] = off
            off += b.values_per_sample
        self._out_layout = [(offsets[vals[vid].buffer], vals[vid]) for _, vid in plan.outputs]

    def buffers(self, n: int) -> tuple:
        b = self._buffers.get(n)
        if b is None:
            if len(self._buffers) > 4:
                self._buffers.clear()
            b = (
                np.empty(max(1, n * self.ws_per_sample), np.float32),
                np.empty(max(1, n * self.ws_per_sample), np.float32),
                np.empty(max(1, n * self.sws_per_sample), np.float32),
                np.empty(max(1, n * self.iws_per_sample), np.int32),
            )
            self._buffers[n] = b
        return b

    def run(self, inputs, targets, sample_weights, tp, ntp, loss_weights: np.ndarray) -> np.ndarray:
        """One forward and backward pass; the gradients land in ``self.grads``."""
        n = inputs[0].shape[0]
        if self.grads is None or self.grads.shape != tp.shape:
            self.grads = np.zeros_like(tp)
        ws, gws, sws, iws = self.buffers(n)
        sw = [_EMPTY if w is None else w for w in sample_weights]
        self.step(*inputs, *targets, *sw, tp, ntp, self.grads, ws, gws, sws, iws, loss_weights, self.out)
        return self.out

    def outputs(self, n: int) -> list[np.ndarray]:
        """Views of the outputs the last ``run`` computed (valid until the next run)."""
        ws = self.buffers(n)[0]
        out = []
        for off, v in self._out_layout:
            size = v.values_per_sample
            out.append(ws[off * n : off * n + n * size].reshape((n * (v.fold or 1), *v.shape[1:])))
        return out

    def apply_constraints(self, store) -> None:
        for name, spec in self.constraints:
            apply_constraint(spec, store.view(name))
