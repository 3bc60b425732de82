"""Run a plan: compile its generated function once (cached on disk), then call it per batch.

The generated module is written to the cache folder under a name made of the plan's hash and
the kernels' source hash, registered in ``sys.modules`` under that name before it is executed
(Numba needs that to find its cache again in the next process), and imported. Its ``run``
function is compiled with ``cache=True``: a second process loads machine code from disk.
The workspace for a batch size is allocated once and reused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

import numpy as np

from ..compiler.plan import Plan
from ..specs.atomic import write_text_atomic
from . import codegen
from .kernels import bind, kernel_source_hash
from .numba_config import cache_dir, set_threads

_MODULES: dict[str, object] = {}


def _load_module(source: str) -> object:
    key = hashlib.sha256((source + kernel_source_hash()).encode()).hexdigest()[:24]
    name = f"nnspec_plan_{key}"
    mod = _MODULES.get(name) or sys.modules.get(name)
    if mod is not None:
        return mod
    folder = cache_dir()
    path = os.path.join(folder, name + ".py")
    if not os.path.exists(path):
        write_text_atomic(path, source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _MODULES[name] = mod
    return mod


class Executor:
    """Runs one plan. ``executor(inputs, tp, ntp) -> outputs`` for a list of input arrays."""

    def __init__(self, plan: Plan) -> None:
        bind()
        set_threads()
        self.plan = plan
        self.source, self.ws_per_sample = codegen.generate(plan)
        self.module = _load_module(self.source)
        self.run = self.module.nnspec_run
        self._ws: dict[int, np.ndarray] = {}
        self.input_dtypes = [np.dtype(plan.values[vid].dtype) for _, vid in plan.inputs]

    def workspace(self, n: int) -> np.ndarray:
        ws = self._ws.get(n)
        if ws is None:
            if len(self._ws) > 8:  # keep a few batch sizes, not every size ever seen
                self._ws.clear()
            ws = np.empty(max(1, n * self.ws_per_sample), np.float32)
            self._ws[n] = ws
        return ws

    def __call__(self, inputs: list[np.ndarray], tp: np.ndarray, ntp: np.ndarray) -> tuple:
        n = inputs[0].shape[0] if inputs else 1
        return self.run(*inputs, tp, ntp, self.workspace(n))
