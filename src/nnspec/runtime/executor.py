"""Run a plan: compile its generated function once (cached on disk), then call it per batch.

The generated module is written to the cache folder under a name made of the plan's hash and
the kernels' source hash, registered in ``sys.modules`` under that name before it is executed
(Numba needs that to find its cache again in the next process), and imported. Its ``run``
function is compiled with ``cache=True``: a second process loads machine code from disk.
The workspace for a batch size is allocated once and reused. A batch with enough work is split
into contiguous parts run at the same time on worker threads (the plan function releases the
GIL; each part has its own workspace): see :func:`split_counts`. The folder keeps the
``NNSPEC_CACHE_MAX_PLANS`` (default 256) most recently used plans; older ones are removed with
their compiled code when a new plan is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..compiler.plan import Plan
from ..specs.atomic import write_text_atomic
from . import codegen
from .kernels import bind, kernel_source_hash
from .numba_config import cache_dir, set_threads, worker_threads

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


LOOKUP_OPS = frozenset({"embedding"})


def work_per_sample(plan: Plan) -> int:
    """A rough count of one sample's multiply-adds in ``plan``, to decide whether a batch is
    worth splitting over threads: each weight matrix (or kernel) times the positions it is
    applied at (the non-channel axes of its step's input or output, whichever has more; time
    steps for a recurrent layer), plus one per value a step writes (the only cost counted for
    an embedding's table lookup). Deterministic (a property of the plan), so the same batch is
    split the same way in every run."""
    vals = {v.id: v for v in plan.values}
    sizes = {p.name: math.prod(p.shape) for p in plan.params if len(p.shape) >= 2}

    def positions(vid) -> int:
        v = vals[vid]
        inner = [d or 1 for d in v.shape[1:-1]]
        return max(1, math.prod(inner)) * max(1, v.fold or 1)

    total = 0
    for s in plan.steps:
        w = 0 if s.op in LOOKUP_OPS else sum(sizes.get(p, 0) for p in s.params)
        if w:
            total += w * max(positions(i) for i in (*s.inputs, *s.outputs))
        total += sum(max(1, vals[o].values_per_sample) for o in s.outputs)
    return total


# A part of a batch gets at least this much work (multiply-adds, see work_per_sample): about a
# tenth of a millisecond on one core here, several times what handing it to a thread costs.
MIN_PART_WORK = 4_000_000
_POOL: ThreadPoolExecutor | None = None


def split_counts(n: int, per_sample: int, threads: int) -> list[int]:
    """How a batch of ``n`` samples is split into parts run at the same time: at most
    ``threads`` parts, each of at least MIN_PART_WORK, sizes differing by at most one."""
    parts = min(threads, n, max(1, (n * per_sample) // MIN_PART_WORK))
    if parts <= 1:
        return [n]
    q, r = divmod(n, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


def pool() -> ThreadPoolExecutor:
    """The worker threads batches are split over (made on first use)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max(1, worker_threads() - 1), thread_name_prefix="nnspec")
    return _POOL


def run_parts(fn, counts: list[int]) -> list:
    """``[fn(start, count) for each part]``, the first part on the calling thread and the others
    on the pool's threads, at the same time."""
    starts = [sum(counts[:i]) for i in range(len(counts))]
    futures = [pool().submit(fn, s, c) for s, c in zip(starts[1:], counts[1:])]
    first = fn(starts[0], counts[0])
    return [first] + [f.result() for f in futures]


class Executor:
    """Runs one plan. ``executor(inputs, tp, ntp) -> outputs`` for a list of input arrays.

    Its workspaces are its own: one executor runs one batch at a time (as a Keras model does;
    the parts of a split batch each get their own)."""

    def __init__(self, plan: Plan) -> None:
        bind()
        set_threads()
        self.plan = plan
        self.source, self.ws_per_sample = codegen.generate(plan)
        self.module = _load_module(self.source)
        self.run = self.module.nnspec_run
        self._ws: dict[tuple, np.ndarray] = {}
        self.input_dtypes = [np.dtype(plan.values[vid].dtype) for _, vid in plan.inputs]
        self.work_per_sample = work_per_sample(plan)
        # a step whose result for one sample depends on the whole batch at inference too
        # (MelSpectrogram's decibel floor) keeps a batch in one piece
        coupled = any(getattr(codegen._OP_TO_DEF.get(s.op), "extra", {}).get("couples_batch_at_inference")
                      for s in plan.steps)  # fmt: skip
        self.threads = 1 if coupled else worker_threads()
        vals = {v.id: v for v in plan.values}
        self._out_specs = [
            (max(1, vals[vid].fold or 1), tuple(vals[vid].shape[1:]), np.dtype(vals[vid].dtype))
            for _, vid in plan.outputs
        ]

    def new_outputs(self, n: int) -> list[np.ndarray]:
        """Arrays for the outputs of a batch of ``n`` samples, for ``run`` to write into."""
        return [np.empty((n * fold, *shape), dtype) for fold, shape, dtype in self._out_specs]

    def workspace(self, n: int, part: int = 0) -> np.ndarray:
        """The workspace for ``n`` samples (a part of a split batch: one per part's start)."""
        ws = self._ws.get((n, part))
        if ws is None:
            if len(self._ws) > 8:  # keep a few batch sizes, not every size ever seen
                self._ws.clear()
            ws = np.empty(max(1, n * self.ws_per_sample), np.float32)
            self._ws[(n, part)] = ws
        return ws

    def __call__(self, inputs: list[np.ndarray], tp: np.ndarray, ntp: np.ndarray) -> list:
        n = inputs[0].shape[0] if inputs else 1
        outs = [np.empty((n * fold, *shape), dtype) for fold, shape, dtype in self._out_specs]
        if n * self.work_per_sample < 2 * MIN_PART_WORK or self.threads == 1 or not inputs:
            ws = self._ws.get((n, 0))
            self.run(*inputs, tp, ntp, ws if ws is not None else self.workspace(n), *outs)
            return outs
        counts = split_counts(n, self.work_per_sample, self.threads)
        folds = [fold for fold, _, _ in self._out_specs]

        def part(start: int, count: int) -> None:
            end = start + count
            self.run(*(a[start:end] for a in inputs), tp, ntp, self.workspace(count, start),
                     *(o[start * f : end * f] for o, f in zip(outs, folds)))  # fmt: skip

        if len(counts) == 1:
            part(0, n)
        else:
            run_parts(part, counts)
        return outs
