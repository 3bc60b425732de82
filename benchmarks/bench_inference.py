"""Inference speed of nnspec against eager PyTorch and ONNX Runtime, on every seed model.

    python benchmarks/bench_inference.py                    # every specs/*.yaml
    python benchmarks/bench_inference.py --models mlp cnn   # some seeds
    python benchmarks/bench_inference.py --quick            # fewer repetitions, smaller budgets

What it measures, per seed (seeds whose kernels nnspec lacks are skipped with the reason):

- batch-1 latency, median microseconds per call, over ``--repeats`` interleaved rounds (each
  round times a block of about 1 ms of back-to-back calls of every contender, in shuffled order,
  with the garbage collector off; the min over rounds is printed in brackets):
    * ``nnspec run``: the low-level call ``ex.run(*inputs, st.tp, st.ntp, ex.workspace(1), *outs)``
      (``outs = ex.new_outputs(1)``, made once: the plan writes into them);
    * ``nnspec pob``: ``m.predict_on_batch(x)`` (input checks and conversion included);
    * ``torch``: the eager module from ``torch_models.py`` under ``torch.inference_mode()``,
      ``torch.set_num_threads(2)``, on tensors made once with ``torch.from_numpy``;
    * ``ORT``: ONNX Runtime on the same module exported with ``torch.onnx.export(dynamo=False)``,
      2 intra-op threads, 1 inter-op thread, default graph optimizations, ``sess.run`` on NumPy
      arrays. Absent (with the reason printed) when onnxruntime cannot be imported or exported to.
- batch-256 throughput, samples per second: ``m.predict(x, batch_size=256)`` against one call
  of the torch module and of ORT on the 256 samples.
- the issue's targets: batch-1 ``nnspec run`` <= 0.5x ORT on every seed (and <= 3 us for the
  MLP); batch-256 throughput >= ORT.
- activation memory per sample from the plan (``m.plan().memory()``): planned (buffers after
  liveness reuse) against naive (every value its own buffer), for every seed.
- where the MLP's batch-1 time goes: the plan function called from Python against the same
  function called in a loop inside Numba (kernel time without the dispatcher), trivial ``njit``
  functions with the same number of array arguments, and the cost of ``np.dot`` for each Dense.
- time to first prediction in a fresh process (``--startup-models``, default mlp and cnn;
  ``--no-startup`` to skip): cold (``NNSPEC_CACHE_DIR`` a new empty folder), warm (the same
  folder, a second process; the kernels cache there too since 2026-11-27), and cold with
  ``NUMBA_CACHE_DIR`` new as well (only the runtime's few own jitted functions use it now);
  target warm <= 0.5 s. Broken down into Python
  start-up, imports, loading, ``import numba``, making the executor and the first call.

Inputs are floats in [-1, 1) and token ids in 1..9999: no id is 0, so the ``mask_zero``
embeddings of lstm_text and bilstm_tagger mask nothing, and the torch models (which have no mask
support) compute the same function. Each contender's outputs are checked against torch (max abs
difference printed: a sanity check, not a test).

Threads: torch 2 (``torch.set_num_threads``), ORT 2 intra-op; nnspec as configured: a batch with
enough work is split over ``NNSPEC_THREADS`` worker threads (default: every usable core), and
BLAS (``np.dot`` inside Numba) runs on one thread per part unless ``--blas-threads N``
(``OPENBLAS_NUM_THREADS``) says otherwise.
"""

from __future__ import annotations

import argparse
import functools
import gc
import glob
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

# --blas-threads must act before NumPy/SciPy load OpenBLAS: read it from argv here.
for _i, _a in enumerate(sys.argv):
    if _a.startswith("--blas-threads"):
        _n = _a.split("=", 1)[1] if "=" in _a else sys.argv[_i + 1]
        os.environ["OPENBLAS_NUM_THREADS"] = _n

import numpy as np
import torch
from torch_models import (
    UnsupportedLayer,
    as_list,
    build_torch_model,
    make_inputs,
    max_abs_diff,
    torch_inputs,
)

import nnspec

STARTUP_MODELS = ("mlp", "cnn")


# ----------------------------------------------------------------------------- timing


def interleaved(contenders: dict, rounds: int, block_s: float, budget_s: float, min_rounds: int = 3,
                settle_s: float = 0.0) -> dict:  # fmt: skip
    """Per-call seconds of each contender, one entry per round.

    ``contenders``: name -> (fn, args). Each round runs, for every contender in an order shuffled
    round by round (seeded; a rotation would keep each contender behind the same one, and a
    contender whose threads spin after its calls, as torch's and ORT's do, would slow the same
    follower every round), a block of ``k`` back-to-back calls (``k`` chosen so a block lasts about
    ``block_s``) and records the mean call time of the block. Stops after ``rounds`` rounds, or
    once ``budget_s`` is spent and ``min_rounds`` are done. With ``settle_s``, each block starts
    after a pause that long (not counted in the budget): torch's and ORT's pool threads keep
    spinning for a while after a call, and a block started at once shared the cores with them
    (measured on the 2-core machine: nnspec's batch-256 throughput, which splits a batch over
    both cores, fell to its one-thread value right after ORT). Used for the batch-256 blocks
    only, which the caller makes at least 50 ms long: a block of many short calls pays for
    waking the threads once, not per call.
    """
    names = list(contenders)
    k = {}
    for name, (fn, args) in contenders.items():
        t0 = time.perf_counter()
        fn(*args)  # warm-up
        ts = [time.perf_counter() - t0]
        if ts[0] < max(block_s, 0.05):  # cheap enough to calibrate on a few more calls
            for _ in range(3):
                t0 = time.perf_counter()
                fn(*args)
                ts.append(time.perf_counter() - t0)
        k[name] = max(1, int(block_s / max(min(ts), 1e-9)))
    out = {n: [] for n in names}
    shuffle = random.Random(0)
    start = time.perf_counter()
    slept = 0.0  # the pauses do not count against the budget
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            order = list(names)
            shuffle.shuffle(order)
            for name in order:
                fn, args = contenders[name]
                kk = k[name]
                if settle_s > 0:
                    time.sleep(settle_s)
                    slept += settle_s
                t0 = time.perf_counter()
                for _ in range(kk):
                    fn(*args)
                out[name].append((time.perf_counter() - t0) / kk)
            if r + 1 >= min_rounds and time.perf_counter() - start - slept > budget_s:
                break
    finally:
        if gc_was:
            gc.enable()
    return out


def med(ts) -> float:
    return statistics.median(ts) if ts else math.nan


# ----------------------------------------------------------------------------- ONNX Runtime


def ort_status() -> tuple[object, str]:
    try:
        import onnxruntime as ort

        return ort, f"onnxruntime {ort.__version__}"
    except Exception as e:  # noqa: BLE001
        return (
            None,
            f"onnxruntime not importable ({type(e).__name__}: {e}); try `pip install onnxruntime onnx`",
        )


def ort_session(ort, tm, m, sample_inputs, folder, threads):
    """Export ``tm`` (legacy exporter, dynamic batch) and open an ORT session on it."""
    ins = list(m.get_config()["inputs"])
    outs = [f"output_{i}" for i in range(tm.n_outputs)]
    path = os.path.join(folder, f"{m.name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tm, tuple(torch_inputs(sample_inputs)), path, dynamo=False, input_names=ins,
                          output_names=outs, dynamic_axes={n: {0: "batch"} for n in ins + outs},
                          opset_version=17)  # fmt: skip
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess, ins


# ----------------------------------------------------------------------------- one model


def _pack(m, arrays):
    return arrays[0] if len(arrays) == 1 else arrays


def bench_model(path: str, args, ort, ort_dir: str) -> dict:
    from nnspec.runtime.codegen import CodegenError

    name = os.path.splitext(os.path.basename(path))[0]
    res = {"name": name}
    m = nnspec.load(path, seed=0)
    res["model"] = m
    x1 = make_inputs(m, 1, seed=1)
    shapes = tuple(a.shape[1:] for a in x1)
    t0 = time.perf_counter()
    try:
        ex = m._executor(shapes)
        st = m._weights()
        ex.run(*x1, st.tp, st.ntp, ex.workspace(1), *ex.new_outputs(1))
    except CodegenError as e:
        res["skip"] = f"no kernel yet: {e}"
        return res
    except Exception as e:  # noqa: BLE001 - a kernel that landed half-way: report, go on
        res["skip"] = f"nnspec failed: {type(e).__name__}: {e}"
        return res
    res["first_call_s"] = time.perf_counter() - t0
    try:
        tm = build_torch_model(m)
    except UnsupportedLayer as e:
        res["skip"] = f"no torch equivalent: {e}"
        return res
    try:
        return _measure(res, m, tm, ex, st, x1, args, ort, ort_dir)
    except Exception as e:  # noqa: BLE001 - a contender failing on this model: report, go on
        return {"name": name, "model": m, "skip": f"failed while measuring: {type(e).__name__}: {e}"}


def _measure(res, m, tm, ex, st, x1, args, ort, ort_dir) -> dict:
    # sanity checks on 4 samples
    xc = make_inputs(m, 4, seed=3)
    with torch.inference_mode():
        ref = as_list(tm(*torch_inputs(xc)))
    got = m.predict_on_batch(_pack(m, xc))
    res["diff_torch"] = max_abs_diff(got if isinstance(got, list) else [got], ref)
    sess = None
    if ort is not None:
        try:
            sess, ins = ort_session(ort, tm, m, xc, ort_dir, args.threads)
            res["diff_ort"] = max_abs_diff(sess.run(None, dict(zip(ins, xc))), ref)
        except Exception as e:  # noqa: BLE001
            res["ort_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            sess = None

    # batch 1
    tp, ntp = st.tp, st.ntp
    c1 = {
        "nnspec run": (ex.run, (*x1, tp, ntp, ex.workspace(1), *ex.new_outputs(1))),
        "nnspec pob": (m.predict_on_batch, (_pack(m, x1),)),
        "torch": (tm, tuple(torch_inputs(x1))),
    }
    if sess is not None:
        c1["ORT"] = (sess.run, (None, dict(zip(ins, x1))))
    with torch.inference_mode():
        res["b1"] = interleaved(c1, args.repeats, args.block, args.budget1)

    # batch B
    B = args.batch
    xb = make_inputs(m, B, seed=2)
    cb = {
        "nnspec predict": (functools.partial(m.predict, batch_size=B), (_pack(m, xb),)),
        "torch": (tm, tuple(torch_inputs(xb))),
    }
    if sess is not None:
        cb["ORT"] = (sess.run, (None, dict(zip(ins, xb))))
    with torch.inference_mode():
        # blocks of at least 50 ms: a model whose batch takes less (the MLP) runs several calls
        # per block, so that waking threads after the pause is not counted as a call's time
        res["bB"] = interleaved(cb, args.repeats, 0.05, args.budgetB, settle_s=args.settle)
    res["ex"] = ex
    res["x1"] = x1
    return res


# ----------------------------------------------------------------------------- reports


def _fmt_us(s) -> str:
    return "-" if s is None or math.isnan(s) else f"{s * 1e6:,.1f}"


def _fmt_rate(r) -> str:
    return "-" if r is None or math.isnan(r) else f"{r:,.0f}"


def _ratio(a, b) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def report(results: list, args) -> None:
    B = args.batch
    print()
    print("== batch-1 latency: median us per call (min in brackets), interleaved rounds")
    head = f"{'model':20s} {'nnspec run':>16s} {'nnspec pob':>16s} {'torch':>16s} {'ORT':>16s} " \
           f"{'run/torch':>9s} {'run/ORT':>8s}  target"  # fmt: skip
    print(head)
    for r in results:
        if "skip" in r:
            print(f"{r['name']:20s} skipped: {r['skip']}")
            continue
        b1 = r["b1"]

        def cell(k):
            ts = b1.get(k)
            return "-" if not ts else f"{_fmt_us(med(ts))} [{_fmt_us(min(ts))}]"

        run, tor, ortt = med(b1["nnspec run"]), med(b1["torch"]), med(b1.get("ORT", []))
        if math.isnan(ortt):
            verdict = "n/a (no ORT)"
        else:
            ok = run <= 0.5 * ortt
            verdict = ("MET" if ok else "MISSED") + " (<= 0.5x ORT)"
        if r["name"] == "mlp":
            verdict += f"; {'MET' if run <= 3e-6 else 'MISSED'} (MLP <= 3 us)"
        print(f"{r['name']:20s} {cell('nnspec run'):>16s} {cell('nnspec pob'):>16s} {cell('torch'):>16s} "
              f"{cell('ORT'):>16s} {_ratio(run, tor):>9s} {_ratio(run, ortt):>8s}  {verdict}")  # fmt: skip
    print()
    print(f"== batch-{B} throughput: samples/s from the median time of one batch (rounds in brackets)")
    print(f"{'model':20s} {'nnspec predict':>15s} {'torch':>12s} {'ORT':>12s} {'nnspec/torch':>12s} "
          f"{'nnspec/ORT':>10s}  target (>= ORT)")  # fmt: skip
    for r in results:
        if "skip" in r:
            print(f"{r['name']:20s} skipped")
            continue
        bB = r["bB"]
        rate = {k: B / med(v) for k, v in bB.items()}
        n, t, o = rate.get("nnspec predict"), rate.get("torch"), rate.get("ORT", math.nan)
        verdict = "n/a (no ORT)" if math.isnan(o) else ("MET" if n >= o else "MISSED")
        print(f"{r['name']:20s} {_fmt_rate(n):>15s} {_fmt_rate(t):>12s} {_fmt_rate(o):>12s} {_ratio(n, t):>12s} "
              f"{_ratio(n, o):>10s}  {verdict} [{len(bB['torch'])}]")  # fmt: skip
    print()
    print("== sanity: max abs difference of the outputs against torch (4 samples)")
    for r in results:
        if "skip" in r:
            continue
        parts = [f"nnspec {r['diff_torch']:.1e}" + (" (BEYOND 1e-4!)" if r["diff_torch"] > 1e-4 else "")]
        if "diff_ort" in r:
            parts.append(f"ORT {r['diff_ort']:.1e}")
        if "ort_error" in r:
            parts.append(f"ORT export/session failed: {r['ort_error']}")
        parts.append(f"nnspec first call (compile or cache load) {r['first_call_s']:.2f} s")
        print(f"{r['name']:20s} " + "; ".join(parts))


def memory_report(paths: list) -> None:
    print()
    print("== activation memory per sample, from the plan (run-time dims counted as 1)")
    print(f"{'model':20s} {'planned B':>12s} {'naive B':>12s} {'planned/naive':>13s} {'buffers':>7s} "
          f"{'planned at batch 256':>21s}")  # fmt: skip
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            plan = nnspec.load(path, seed=0).plan()
        except Exception as e:  # noqa: BLE001
            print(f"{name:20s} plan failed: {type(e).__name__}: {e}")
            continue
        mem = plan.memory()
        p, n = mem["planned_bytes_per_sample"], mem["naive_bytes_per_sample"]
        print(f"{name:20s} {p:>12,} {n:>12,} {p / n if n else math.nan:>13.2f} {len(plan.buffers):>7d} "
              f"{p * 256 / 2**20:>17.1f} MiB" + ("  (dynamic)" if mem["run_time_dims_counted_as_1"] else ""))  # fmt: skip


def dispatch_breakdown(r: dict, args) -> None:
    """Where a model's batch-1 call goes: Python->Numba dispatch against the work inside."""
    from numba import njit

    ex, m, x1 = r["ex"], r["model"], r["x1"]
    st = m._weights()
    ws = ex.workspace(1)
    cargs = (*x1, st.tp, st.ntp, ws, *ex.new_outputs(1))
    nargs = len(cargs)
    params = ", ".join(f"a{i}" for i in range(nargs))
    n_out = len(ex.plan.outputs)
    vals = {v.id: v for v in ex.plan.values}
    out_shapes = [vals[vid].shape[1:] for _, vid in ex.plan.outputs]
    allocs = ", ".join(
        f"np.empty((a0.shape[0], {', '.join(str(d) for d in s)}), np.float32)" for s in out_shapes
    )
    src = f"""
def noop({params}):
    return 0

def noop1(a0):
    return 0

def alloc({params}):
    return ({allocs},)

def loop(k, {params}):
    s = 0.0
    for i in range(k):
        run({params})
        s += a{nargs - 1}.ravel()[0]
    return s
"""
    ns = {"np": np, "run": ex.run}
    exec(src, ns)
    noop, noop1, alloc, loop = njit(ns["noop"]), njit(ns["noop1"]), njit(ns["alloc"]), njit(ns["loop"])
    loop(1, *cargs)

    # Dense steps: np.dot of (rows, in) x (in, units), as the kernel does, and a hand loop
    dense = []
    for s in ex.plan.steps:
        if s.op == "dense":
            kshape = next(p.shape for p in ex.plan.params if p.name == s.params[0])
            v = vals[s.inputs[0]]
            rows = v.fold * math.prod(v.shape[1:-1])
            dense.append((s.node, rows, kshape))

    @njit
    def dot_loop(k, x, w, y):
        for _ in range(k):
            np.dot(x, w, y)

    @njit
    def hand_loop(k, x, w, y):
        for _ in range(k):
            n, d = x.shape
            u = w.shape[1]
            for i in range(n):
                for j in range(u):
                    y[i, j] = 0.0
                for p in range(d):
                    a = x[i, p]
                    for j in range(u):
                        y[i, j] += a * w[p, j]

    def per_block(fn, *a):
        """(fn, args) calling ``fn``'s Numba loop for about 1 ms per call, and its k."""
        fn(1, *a)
        t0 = time.perf_counter()
        fn(1000, *a)
        k = max(1, int(1000 * 0.001 / max(time.perf_counter() - t0, 1e-9)))
        return (fn, (k, *a)), k

    contenders = {"plan run (Python call)": (ex.run, cargs), "njit noop, 1 array arg": (noop1, cargs[:1]),
                  f"njit noop, {nargs} array args": (noop, cargs),
                  f"njit, {nargs} array args, returns {n_out} new array(s)": (alloc, cargs)}  # fmt: skip
    loops = {}
    contenders["plan run inside a Numba loop"], loops["plan run inside a Numba loop"] = per_block(
        loop, *cargs
    )
    dense_names = []
    for node, rows, (d, u) in dense:
        x = np.random.rand(rows, d).astype(np.float32)
        w = np.random.rand(d, u).astype(np.float32)
        y = np.empty((rows, u), np.float32)
        for kind, fn in (("np.dot", dot_loop), ("loop", hand_loop)):
            key = f"{node} {kind}"
            contenders[key], loops[key] = per_block(fn, x, w, y)
        dense_names.append((node, rows, d, u))
    got = interleaved(contenders, args.repeats, args.block, 2 * args.budget1)
    for key, k in loops.items():
        got[key] = [t / k for t in got[key]]
    py = {
        k: v
        for k, v in got.items()
        if k
        in (
            "plan run (Python call)",
            "njit noop, 1 array arg",
            f"njit noop, {nargs} array args",
            f"njit, {nargs} array args, returns {n_out} new array(s)",
        )
    }
    inner = {"plan run inside a Numba loop": got["plan run inside a Numba loop"]}
    dense_rows = [
        (node, rows, d, u, got[f"{node} np.dot"], got[f"{node} loop"]) for node, rows, d, u in dense_names
    ]
    pre = interleaved({"m._prepare_inputs(x)": (m._prepare_inputs, (_pack(m, x1),)),
                       "m._executor(shapes) lookup": (m._executor, (tuple(a.shape[1:] for a in x1),)),
                       "m.predict_on_batch(x)": (m.predict_on_batch, (_pack(m, x1),))},
                      args.repeats, args.block, args.budget1)  # fmt: skip
    print()
    print(f"== where {r['name']}'s batch-1 call goes (us per call: median, min in brackets; Numba loops ~1 ms "
          "blocks, interleaved with the Python calls)")  # fmt: skip

    def cell(ts):
        return f"{_fmt_us(med(ts)):>7s} [{_fmt_us(min(ts))}]"

    for k, ts in {**py, **inner, **pre}.items():
        print(f"  {k:48s} {cell(ts)}")
    for stat, f in (("median", med), ("min", min)):
        run_py, run_nb = f(py["plan run (Python call)"]), f(inner["plan run inside a Numba loop"])
        print(
            f"  => by {stat}: Python->Numba dispatch + boxing {_fmt_us(run_py - run_nb)} us "
            f"({(run_py - run_nb) / run_py:.0%} of the call), work inside the plan function {_fmt_us(run_nb)} us"
        )
    if dense_rows:
        print("  Dense steps inside Numba: np.dot (BLAS) vs a hand-written loop, us per call, median [min]")
        for node, rows, d, u, tdot, thand in dense_rows:
            print(
                f"    {node:16s} ({rows}x{d}) @ ({d}x{u})".ljust(44)
                + f" np.dot {cell(tdot)}   loop {cell(thand)}"
            )
        print("    sum over Dense steps".ljust(44) + f" np.dot {_fmt_us(sum(med(r[4]) for r in dense_rows)):>7s}"
              f"{'':{len(' [x.x]')}s}   loop {_fmt_us(sum(med(r[5]) for r in dense_rows)):>7s}")  # fmt: skip


# ----------------------------------------------------------------------------- startup

_CHILD = r"""
import json, os, sys, time
t_start = time.time()
spawn = float(sys.argv[2])
import numpy as np
import nnspec
from nnspec.runtime.codegen import CodegenError
t_import = time.time()
m = nnspec.load(sys.argv[1], seed=0)
t_load = time.time()
import numba
t_numba = time.time()
xs = [np.ones((1, *t.shape[1:]), t.dtype) for t in m.inputs]
try:
    m._executor(tuple(x.shape[1:] for x in xs))
except CodegenError as e:
    print(json.dumps({"skip": str(e)}))
    sys.exit(0)
t_exec = time.time()
y = m.predict_on_batch(xs[0] if len(xs) == 1 else xs)
t_pred = time.time()
print(json.dumps({"python": t_start - spawn, "numpy+nnspec": t_import - t_start, "load": t_load - t_import,
                  "numba": t_numba - t_load, "executor": t_exec - t_numba, "1st call": t_pred - t_exec,
                  "ttfp": t_pred - spawn}))
"""


def _child(path: str, env: dict) -> dict:
    spawn = time.time()
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, path, repr(spawn)], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    d = json.loads(p.stdout.strip().splitlines()[-1])
    d["wall"] = wall
    return d


def startup_report(paths: list, args) -> None:
    print()
    print("== time to first prediction in a fresh process (median s; ttfp = spawn -> first output)")
    n_cold, n_warm = (1, 2) if args.quick else (3, 5)
    print(f"   cold: NNSPEC_CACHE_DIR a new empty folder ({n_cold} runs); warm: the same folder again "
          f"({n_warm} runs); cold+kernels: NUMBA_CACHE_DIR new too ({n_cold} runs). Target: warm <= 0.5 s")  # fmt: skip
    print("   columns: python start-up; import numpy + nnspec; load the file; import numba; make the executor "
          "(bind kernels, generate and import the plan module); first predict_on_batch (compile or cache "
          "load); ttfp = spawn -> first output; wall = whole process")  # fmt: skip
    no_pyc = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    if no_pyc:
        print("   bytecode cached in a temporary PYTHONPYCACHEPREFIX; 'warm, no pyc': as this shell runs it "
              "(PYTHONDONTWRITEBYTECODE=1, every module compiled from source)")  # fmt: skip
    cols = ("python", "numpy+nnspec", "load", "numba", "executor", "1st call", "ttfp", "wall")
    print(f"  {'model':10s} {'cache':13s} " + " ".join(f"{c:>12s}" for c in cols))
    # Bytecode cached as for a normal install (this workplace's shell sets PYTHONDONTWRITEBYTECODE,
    # which makes every process compile nnspec from source): a temporary PYTHONPYCACHEPREFIX, filled first.
    asis_env = {k: v for k, v in os.environ.items() if k not in ("NNSPEC_CACHE_DIR", "NUMBA_CACHE_DIR")}
    base_env = {k: v for k, v in asis_env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base_env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="nnspec-pyc-")
    subprocess.run([sys.executable, "-c", "import numpy, numba, scipy.linalg, nnspec.api.model, "
                    "nnspec.runtime.executor, nnspec.runtime.codegen; import numba.np.arraymath"], env=base_env)  # fmt: skip
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        runs: dict = {"cold": [], "warm": [], "warm, no pyc": [], "cold+kernels": []}
        skip = None
        for _ in range(n_cold):
            with tempfile.TemporaryDirectory(prefix="nnspec-bench-") as d:
                env = {**base_env, "NNSPEC_CACHE_DIR": d}
                c = _child(path, env)
                if "skip" in c or "error" in c:
                    skip = c.get("skip") or c.get("error")
                    break
                runs["cold"].append(c)
                if not runs["warm"]:
                    for _ in range(n_warm):
                        runs["warm"].append(_child(path, env))
                        if no_pyc:
                            runs["warm, no pyc"].append(_child(path, {**asis_env, "NNSPEC_CACHE_DIR": d}))
            with tempfile.TemporaryDirectory(prefix="nnspec-bench-") as d, \
                 tempfile.TemporaryDirectory(prefix="numba-bench-") as nd:  # fmt: skip
                runs["cold+kernels"].append(
                    _child(path, {**base_env, "NNSPEC_CACHE_DIR": d, "NUMBA_CACHE_DIR": nd})
                )
        if skip:
            print(f"  {name:10s} skipped: {skip}")
            continue
        for kind, rs in runs.items():
            rs = [r for r in rs if "error" not in r]
            if not rs:
                continue
            cells = [f"{statistics.median(r[c] for r in rs):12.3f}" for c in cols]
            flag = ""
            if kind.startswith("warm"):
                flag = "  MET" if statistics.median(r["ttfp"] for r in rs) <= 0.5 else "  MISSED (<= 0.5 s)"
            print(f"  {name:10s} {kind:13s} " + " ".join(cells) + flag)
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=base_env)
        t.append(time.perf_counter() - t0)
    t2 = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numba"], env=base_env)
        t2.append(time.perf_counter() - t0)
    # Numba's own floor: a trivial njit(cache=True) function loaded from a warm cache
    t3 = []
    with tempfile.TemporaryDirectory(prefix="numba-floor-") as d:
        script = os.path.join(d, "floor.py")
        with open(script, "w") as f:
            f.write("import time, sys\nspawn = float(sys.argv[1])\nimport numpy as np\nfrom numba import njit\n\n"
                    "@njit(cache=True)\ndef f(x):\n    return x.sum()\n\nf(np.ones(3, np.float32))\n"
                    "print(time.time() - spawn)\n")  # fmt: skip
        env = {**base_env, "NUMBA_CACHE_DIR": d}
        for i in range(4):
            p = subprocess.run(
                [sys.executable, script, repr(time.time())], env=env, capture_output=True, text=True
            )
            if i and p.returncode == 0:
                t3.append(float(p.stdout.strip().splitlines()[-1]))
    import shutil

    shutil.rmtree(base_env["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    print(f"  for scale: `python -c pass` {statistics.median(t):.3f} s; `python -c 'import numba'` "
          f"{statistics.median(t2):.3f} s; spawn -> first result of a trivial njit(cache=True) function loaded "
          f"from a warm Numba cache {statistics.median(t3) if t3 else math.nan:.3f} s")  # fmt: skip


# ----------------------------------------------------------------------------- main


def seed_paths(ap, names) -> list[str]:
    """The seed files named (every ``specs/*.yaml`` when ``names`` is empty); unknown names are
    a usage error of ``ap``."""
    paths = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
    if not names:
        return paths
    known = {os.path.splitext(os.path.basename(p))[0]: p for p in paths}
    missing = [n for n in names if n not in known]
    if missing:
        ap.error(f"unknown models {missing}; seeds: {sorted(known)}")
    return [known[n] for n in names]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="*", help="seed names (default: every specs/*.yaml)")
    ap.add_argument(
        "--repeats", type=int, default=None, help="rounds per measurement (default 41; 11 with --quick)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="fewer rounds, smaller time budgets, fewer startup runs"
    )
    ap.add_argument("--batch", type=int, default=256, help="batch size of the throughput measurement")
    ap.add_argument("--threads", type=int, default=2, help="torch and ORT intra-op threads")
    ap.add_argument("--no-onnx", action="store_true", help="leave ONNX Runtime out")
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="OPENBLAS_NUM_THREADS for nnspec's np.dot (set before NumPy loads; default: nnspec's, one "
        "thread per part of a batch; NNSPEC_THREADS sets how many parts)",
    )
    ap.add_argument(
        "--no-startup", action="store_true", help="skip the fresh-process time to first prediction"
    )
    ap.add_argument("--startup-models", nargs="*", default=list(STARTUP_MODELS))
    ap.add_argument("--profile", nargs="*", default=["mlp"], help="models to break the batch-1 call down for")
    ap.add_argument("--settle", type=float, default=0.02,
                    help="seconds of pause before each batch-B block, for the other contenders' threads to stop "
                         "spinning (default 0.02; 0: none, as before 2026-11-27)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 15 if args.quick else 61
    args.block = 0.001  # seconds per block of batch-1 calls: short, so most blocks run unpreempted
    args.budget1 = 3.0 if args.quick else 15.0  # seconds per model for batch 1
    args.budgetB = 5.0 if args.quick else 40.0  # seconds per model for batch B

    torch.set_num_threads(args.threads)
    paths = seed_paths(ap, args.models)

    import numba

    print(f"nnspec {nnspec.__version__}, numpy {np.__version__}, numba {numba.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {sys.version.split()[0]}, {os.cpu_count()} cores")  # fmt: skip
    ort, why = (None, "left out (--no-onnx)") if args.no_onnx else ort_status()
    print(f"ONNX Runtime: {why}")
    print(f"NNSPEC_CACHE_DIR={os.environ.get('NNSPEC_CACHE_DIR', '(default)')}; NNSPEC_THREADS="
          f"{os.environ.get('NNSPEC_THREADS', '(unset)')}; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset: all cores)')}")  # fmt: skip
    print(f"load average at start: {_loadavg()} (the machine is shared: medians include preemption; the "
          "min, in brackets, is closer to the uncontended cost)")  # fmt: skip
    print("inputs: floats in [-1, 1); token ids 1..9999, never 0, so mask_zero embeddings (lstm_text, "
          "bilstm_tagger) mask nothing and the torch/ORT models need no mask support")  # fmt: skip

    results = []
    with tempfile.TemporaryDirectory(prefix="nnspec-onnx-") as ort_dir:
        for path in paths:
            t0 = time.perf_counter()
            r = bench_model(path, args, ort, ort_dir)
            results.append(r)
            status = f"skipped: {r['skip']}" if "skip" in r else "done"
            print(f"  {r['name']:20s} {status} ({time.perf_counter() - t0:.1f} s)", flush=True)
        report(results, args)
        memory_report(paths)
        for r in results:
            if r["name"] in (args.profile or []) and "skip" not in r:
                dispatch_breakdown(r, args)
    if not args.no_startup:
        sp = [os.path.join(ROOT, "specs", f"{n}.yaml") for n in args.startup_models]
        startup_report([p for p in sp if os.path.exists(p)], args)
    print(f"\nload average at end: {_loadavg()}")


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
