"""Run a plan: compile its generated function once (cached on disk), then call it per batch.

The generated module is written to the cache folder under a name made of the plan's hash and
the kernels' source hash, registered in ``sys.modules`` under that name before it is executed
(Numba needs that to find its cache again in the next process), and imported. Its ``run``
function is compiled with ``cache=True``: a second process loads machine code from disk.
The workspace for a batch size is allocated once and reused. The folder keeps the
``NNSPEC_CACHE_MAX_PLANS`` (default 256) most recently used plans; older ones are removed with
their compiled code when a new plan is written.
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
PREFIX = "nnspec_plan_"


def max_plans() -> int:
    """How many plan modules the cache folder keeps (``NNSPEC_CACHE_MAX_PLANS``, default 256)."""
    try:
        return max(1, int(os.environ.get("NNSPEC_CACHE_MAX_PLANS", "256")))
    except ValueError:
        return 256


def evict_plans(folder: str, keep: int, protect=()) -> list[str]:
    """Remove the least recently used plan modules of ``folder`` beyond ``keep``, with their
    compiled code in ``__pycache__``; never those named in ``protect``. Returns the removed
    module names. A plan's modification time is its last use (``_load_module`` touches it), so
    models in use stay; kernel edits and one-off models no longer pile up without bound."""
    try:
        mods = [f[:-3] for f in os.listdir(folder) if f.startswith(PREFIX) and f.endswith(".py")]
    except OSError:
        return []
    if len(mods) <= keep:
        return []

    def last_use(mod):
        try:
            return os.stat(os.path.join(folder, mod + ".py")).st_mtime
        except OSError:
            return 0.0

    mods.sort(key=last_use)
    victims = [m for m in mods[: len(mods) - keep] if m not in protect]
    pycache = os.path.join(folder, "__pycache__")
    try:
        compiled = os.listdir(pycache)
    except OSError:
        compiled = []
    by_module: dict[str, list[str]] = {}
    for f in compiled:
        by_module.setdefault(f.split(".", 1)[0], []).append(f)
    for mod in victims:
        for path in [os.path.join(folder, mod + ".py")] + [
            os.path.join(pycache, f) for f in by_module.get(mod, ())
        ]:
            try:
                os.remove(path)
            except OSError:  # gone already (another process), or not ours to remove
                pass
    return victims


def _load_module(source: str) -> object:
    key = hashlib.sha256((source + kernel_source_hash()).encode()).hexdigest()[:24]
    name = f"{PREFIX}{key}"
    mod = _MODULES.get(name) or sys.modules.get(name)
    if mod is not None:
        return mod
    folder = cache_dir()
    path = os.path.join(folder, name + ".py")
    for attempt in (0, 1):
        if os.path.exists(path):
            try:
                os.utime(path)  # its last use, for eviction
            except OSError:
                pass
        else:
            write_text_atomic(path, source)
            evict_plans(folder, max_plans(), protect=set(_MODULES) | {name})
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except FileNotFoundError:  # evicted by another process between the check and the load
            sys.modules.pop(name, None)
            if attempt:
                raise
            continue
        except BaseException:
            sys.modules.pop(name, None)
            raise
        break
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
