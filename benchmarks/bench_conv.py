"""Conv2D speed: nnspec's kernels against PyTorch on every Conv2D layer shape of the seed models.

    python benchmarks/bench_conv.py                   # every seed Conv2D shape, batch 1 and 32
    python benchmarks/bench_conv.py --quick           # fewer rounds
    python benchmarks/bench_conv.py --batches 32 --blas-threads 1

The layer shapes are read from the seeds (``specs/*.yaml``): every ``conv2d`` step of their
plans, deduplicated by (input shape, filters, kernel, strides, padding, activation). For each
shape and batch size, with the same random input and weights:

- ``nnspec``: a one-layer nnspec model (the real generated plan function, activation fused),
  called at the low level, ``ex.run(x, tp, ntp, ws, y)``, as ``bench_inference.py`` does;
- ``torch``: ``torch.nn.functional.conv2d`` on channels_last tensors (input and weight), then
  the same activation, under ``torch.inference_mode()``, ``torch.set_num_threads(2)``
  (``--threads``).

Timing: interleaved rounds (each round times a block of back-to-back calls of each contender,
about ``--block`` seconds, in rotating order, garbage collector off); printed: the median time
per call over rounds, [the minimum], GFLOP/s of the median, and the ratio of medians
nnspec / torch (below 1: nnspec is faster). The machine's load average is printed too: on a
shared 2-core machine other processes change the numbers, and the minimum is the steadier one.

Threads: nnspec runs BLAS on one thread unless ``NNSPEC_THREADS``/``--blas-threads`` says
otherwise (``nnspec.runtime.numba_config``), and the convolution's tiles are sized for
OpenBLAS's single-threaded small-matrix path (see ``nnspec.layerdefs.conv``) anyway: nnspec's
convolution runs on one core. ``--threads 1`` gives torch one core too, the like-for-like
comparison; on a busy machine it is also the steadier one (torch's two OpenMP threads then
wait for each other, sometimes for milliseconds per call).
"""

from __future__ import annotations

import argparse
import gc
import glob
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# --blas-threads must act before NumPy/SciPy load OpenBLAS: read it from argv here.
for _i, _a in enumerate(sys.argv):
    if _a.startswith("--blas-threads"):
        _n = _a.split("=", 1)[1] if "=" in _a else sys.argv[_i + 1]
        os.environ["OPENBLAS_NUM_THREADS"] = _n

import numpy as np
import torch

import nnspec


def seed_conv_layers() -> list[dict]:
    """Every distinct Conv2D step of the seed models' plans."""
    out, seen = [], set()
    for path in sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml"))):
        m = nnspec.load(path, seed=0)
        plan = m.plan()
        vals = {v.id: v for v in plan.values}
        for s in plan.steps:
            if s.op != "conv2d":
                continue
            a = s.attrs
            shape = tuple(vals[s.inputs[0]].shape[1:])
            key = (shape, a["filters"], tuple(a["kernel_size"]), tuple(a["strides"]), a["padding"],
                   a["activation"], a["data_format"], tuple(a["dilation_rate"]), a["groups"])  # fmt: skip
            if key in seen:
                continue
            seen.add(key)
            out.append({"where": f"{os.path.basename(path)[:-5]}/{s.node}", "shape": shape, "attrs": dict(a)})
    return out


def layer_spec(shape, attrs) -> dict:
    keep = (
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "activation",
        "dilation_rate",
        "groups",
        "use_bias",
    )
    layer = {"type": "Conv2D", **{k: attrs[k] for k in keep if k in attrs}}
    return {"format": "nnspec/1", "name": "conv", "inputs": {"x": {"shape": list(shape)}},
            "layers": {"conv": layer}, "edges": ["x -> conv"], "outputs": ["conv"]}  # fmt: skip


def torch_fn(attrs, x, w, b):
    """The same layer in PyTorch, channels_last, activation included."""
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    bt = torch.from_numpy(b) if b is not None else None
    stride = tuple(attrs["strides"])
    dil = tuple(attrs["dilation_rate"])
    pad_args = {}
    if attrs["padding"] == "same":
        if stride != (1, 1):
            raise SystemExit("bench_conv: 'same' with strides is not benchmarked (no seed layer has it)")
        pad_args["padding"] = "same"
    act = {"relu": torch.relu, "linear": None, None: None}[attrs["activation"]]

    def run():
        with torch.inference_mode():
            y = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, dilation=dil, groups=attrs["groups"],
                                           **pad_args)  # fmt: skip
            return act(y) if act is not None else y

    return run


def interleaved(contenders: dict, rounds: int, block_s: float, budget_s: float) -> dict:
    """Seconds per call of each contender, one entry per round (see the module docstring)."""
    names = list(contenders)
    k = {}
    for name, fn in contenders.items():
        fn()
        t0 = time.perf_counter()
        fn()
        k[name] = max(1, int(block_s / max(time.perf_counter() - t0, 1e-9)))
    out = {n: [] for n in names}
    start = time.perf_counter()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                fn = contenders[name]
                t0 = time.perf_counter()
                for _ in range(k[name]):
                    fn()
                out[name].append((time.perf_counter() - t0) / k[name])
            if r >= 2 and time.perf_counter() - start > budget_s:
                break
    finally:
        gc.enable()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block", type=float, default=0.02, help="seconds per timed block")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per layer shape and batch")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--blas-threads", type=int, default=None, help="OPENBLAS_NUM_THREADS for nnspec")
    ap.add_argument("--quick", action="store_true", help="5 rounds, 2 s budget")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.budget = 5, 2.0
    torch.set_num_threads(args.threads)
    from nnspec.runtime import numba_config  # applies nnspec's BLAS thread policy (before SciPy loads)

    layers = seed_conv_layers()
    print(f"nnspec {nnspec.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"nnspec BLAS threads {numba_config._blas_threads()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("median ms per call [min]; GFLOP/s of the median; ratio = nnspec / torch (medians)\n")
    head = f"{'layer':<28} {'input':>13} {'conv':>16} {'batch':>5} {'nnspec ms':>18} {'torch ms':>18} " \
           f"{'GF/s nn':>7} {'GF/s pt':>7} {'ratio':>6}"  # fmt: skip
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(0)
    ratios = []
    for layer in layers:
        shape, a = layer["shape"], layer["attrs"]
        m = nnspec.Model.from_config(layer_spec(shape, a))
        weights = [(rng.normal(0, 0.1, w.shape)).astype(np.float32) for w in m.get_weights()]
        m.set_weights(weights)
        ex = m._executor((tuple(shape),))
        st = m._weights()
        for n in args.batches:
            x = rng.uniform(-1, 1, (n, *shape)).astype(np.float32)
            ws = ex.workspace(n)
            (y,) = ex.new_outputs(n)
            ex.run(x, st.tp, st.ntp, ws, y)
            tfn = torch_fn(a, x, weights[0], weights[1] if a["use_bias"] else None)
            yt = tfn().permute(0, 2, 3, 1).numpy()
            err = float(np.max(np.abs(y - yt)))
            if err > 1e-3 * max(1.0, float(np.max(np.abs(yt)))):
                print(f"  WARNING: {layer['where']} batch {n}: nnspec and torch differ by {err:.2e}")

            def nn(ex=ex, x=x, st=st, ws=ws, y=y):
                return ex.run(x, st.tp, st.ntp, ws, y)

            res = interleaved({"nnspec": nn, "torch": tfn}, args.rounds, args.block, args.budget)
            flops = 2.0 * y.size * math.prod(a["kernel_size"]) * shape[-1] / a["groups"]
            mn, mt = statistics.median(res["nnspec"]), statistics.median(res["torch"])
            ratios.append(mn / mt)
            kern = f"{a['filters']} {'x'.join(map(str, a['kernel_size']))}" + (
                f" s{a['strides'][0]}" if max(a["strides"]) > 1 else "")  # fmt: skip
            print(f"{layer['where']:<28} {'x'.join(map(str, shape)):>13} {kern:>16} {n:>5} "
                  f"{mn * 1e3:>8.3f} [{min(res['nnspec']) * 1e3:>7.3f}] {mt * 1e3:>8.3f} [{min(res['torch']) * 1e3:>7.3f}] "
                  f"{flops / mn / 1e9:>7.1f} {flops / mt / 1e9:>7.1f} {mn / mt:>6.2f}", flush=True)  # fmt: skip
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\ngeometric mean of ratios: {geo:.2f}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
