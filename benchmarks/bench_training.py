"""Training speed of nnspec against eager PyTorch, one training step per call, on every seed model.

    python benchmarks/bench_training.py                    # every specs/*.yaml
    python benchmarks/bench_training.py --models mlp cnn   # some seeds
    python benchmarks/bench_training.py --quick            # fewer rounds, smaller budgets

What it measures, per seed, at ``--batch`` (default 32) samples, median seconds per training
step over interleaved rounds (``bench_inference.interleaved``: shuffled order, blocks of
back-to-back calls, garbage collector off; the min over rounds in brackets):

- ``nnspec tob``: ``m.train_on_batch(x, y)``, the public call: input and target checks, the
  compiled forward + loss + backward function, the optimizer's kernel, the loss value back;
- ``nnspec step``: the same compiled train step and optimizer kernel called directly
  (``Trainer.run`` + ``optimizer.apply``), without the API's checks;
- ``torch``: the module from ``torch_models.py`` (same function, same weights) in training mode,
  ``torch.set_num_threads(2)``: ``zero_grad``, forward, the same loss, ``backward``, ``step``.

Both sides train with the same optimizer (``--optimizer``, default ``sgd``; ``rmsprop`` and
``adam`` with Keras's defaults on both sides) and the same loss: mean squared error on every
output (the seeds' own losses differ per output; mse keeps the torch side simple and costs the
same on both sides). Targets are random, of each output's shape. Dropout is the identity in the
torch models (``torch_models.py`` models inference), so torch does slightly less work than nnspec
on the seeds with Dropout.

Target (issue 5): nnspec's step <= 0.5x PyTorch's on every seed, the MLP <= 0.1x.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))

import numpy as np
import torch
from bench_inference import _loadavg, interleaved, med, seed_paths
from torch_models import UnsupportedLayer, build_torch_model, make_inputs, torch_inputs

import nnspec
from nnspec.runtime.codegen import CodegenError


def _targets(m, n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    plan = m.plan()
    return [
        rng.uniform(0, 1, size=(n, *plan.values[vid].shape[1:])).astype(np.float32) for _, vid in plan.outputs
    ]


def _torch_optimizer(name: str, params):
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "rmsprop":  # Keras's defaults: rho 0.9, epsilon 1e-7
        return torch.optim.RMSprop(params, lr=0.001, alpha=0.9, eps=1e-7)
    return torch.optim.Adam(params, lr=0.001, eps=1e-7)


def _nnspec_optimizer(name: str):
    o = nnspec.optimizers
    return {
        "sgd": lambda: o.SGD(learning_rate=0.01),
        "rmsprop": lambda: o.RMSprop(),
        "adam": lambda: o.Adam(),
    }[name]()


def bench_model(path: str, args) -> dict:
    name = os.path.splitext(os.path.basename(path))[0]
    res = {"name": name}
    m = nnspec.load(path, seed=0)
    try:
        tm = build_torch_model(m)
    except UnsupportedLayer as e:
        res["skip"] = f"torch model: {e}"
        return res
    xs = make_inputs(m, args.batch)
    ys = _targets(m, args.batch)
    x = xs if len(xs) > 1 else xs[0]
    y = ys if len(ys) > 1 else ys[0]
    m.compile(optimizer=_nnspec_optimizer(args.optimizer), loss="mse")
    t0 = time.perf_counter()
    try:
        m.train_on_batch(x, y)
    except CodegenError as e:  # a layer without a backward kernel: report, go on with the others
        res["skip"] = f"nnspec: {type(e).__name__}: {e}"
        return res
    res["compile_s"] = time.perf_counter() - t0
    (tr,) = m._trainers.values()
    store = m._weights()
    lw = np.ones(len(ys), np.float64)
    segments = m._segments()
    opt = m.optimizer
    no_w = [None] * len(ys)

    def step():
        tr.run(xs, ys, no_w, store.tp, store.ntp, lw)
        opt.apply(store.tp, tr.grads, segments)

    tm.train()
    for p in tm.parameters():  # built for inference: parameters come frozen
        p.requires_grad_(True)
    topt = _torch_optimizer(args.optimizer, tm.parameters())
    txs = torch_inputs(xs)
    tys = [torch.from_numpy(t) for t in ys]

    def torch_step():
        topt.zero_grad(set_to_none=True)
        outs = tm(*txs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        loss = sum(torch.nn.functional.mse_loss(o, t) for o, t in zip(outs, tys))
        loss.backward()
        topt.step()

    contenders = {"tob": (m.train_on_batch, (x, y)), "step": (step, ()), "torch": (torch_step, ())}
    times = interleaved(contenders, args.repeats, args.block, args.budget)
    for k, ts in times.items():
        res[k] = (med(ts), min(ts))
    return res


def _us(t) -> str:
    return f"{t * 1e6:10.1f}"


def report(results: list, args) -> None:
    print(f"\ntraining step at batch {args.batch}, optimizer {args.optimizer}, loss mse; microseconds: "
          "median [min]; ratio = nnspec / torch (medians)")  # fmt: skip
    print(f"{'model':22s} {'nnspec tob':>22s} {'nnspec step':>22s} {'torch':>22s} {'tob/torch':>10s} "
          f"{'step/torch':>10s}  target")  # fmt: skip
    for r in results:
        if "skip" in r:
            print(f"{r['name']:22s} skipped: {r['skip']}")
            continue
        target = 0.1 if r["name"] == "mlp" else 0.5
        cells = [f"{_us(r[k][0])} [{_us(r[k][1]).strip()}]" for k in ("tob", "step", "torch")]
        ratio_t, ratio_s = r["tob"][0] / r["torch"][0], r["step"][0] / r["torch"][0]
        verdict = "met" if ratio_t <= target else "NOT met"
        print(f"{r['name']:22s} {cells[0]:>22s} {cells[1]:>22s} {cells[2]:>22s} {ratio_t:10.2f} {ratio_s:10.2f}  "
              f"<= {target} {verdict} (first step incl. compile {r['compile_s']:.1f} s)")  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="*", help="seed names (default: every specs/*.yaml)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--optimizer", choices=["sgd", "rmsprop", "adam"], default="sgd")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (11 if args.quick else 41)
    args.block = 0.005
    args.budget = 3.0 if args.quick else 15.0
    torch.set_num_threads(args.threads)
    paths = seed_paths(ap, args.models)
    print(f"nnspec {nnspec.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} cores; load average at start: {_loadavg()}")  # fmt: skip
    results = []
    for path in paths:
        t0 = time.perf_counter()
        r = bench_model(path, args)
        results.append(r)
        print(
            f"  {r['name']:20s} {'skipped' if 'skip' in r else 'done'} ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    report(results, args)
    print(f"\nload average at end: {_loadavg()}")


if __name__ == "__main__":
    main()
