"""Wall time of the ``nnspec`` command line on every seed model.

    python benchmarks/bench_cli.py              # every specs/*.yaml, 7 runs each
    python benchmarks/bench_cli.py --runs 15 --models cnn mlp
    python benchmarks/bench_cli.py --quick      # 3 runs

What it measures:

- ``nnspec summarize FILE`` and ``nnspec compile FILE`` as real processes (output discarded),
  median wall time of ``--runs`` runs, interleaved; target <= 0.3 s each. Python's bytecode
  cache is on (a temporary ``PYTHONPYCACHEPREFIX``, filled by a first run), as for a normal
  install; when the calling shell sets ``PYTHONDONTWRITEBYTECODE`` (this workplace does), the
  commands are also timed as that shell runs them, where every module of nnspec is compiled
  from source in every process. The
  console script next to this interpreter is run directly (a version manager's shim in front of
  it, like pyenv's, adds its own start-up: measured once, separately, when there is one).
- for scale: ``python -c pass`` and ``nnspec --version`` (click and the CLI module, no model).
- an in-process breakdown, in a fresh interpreter per run so imports are not yet cached in the
  process: import of the CLI module (click), of the model API (compiler, layer definitions,
  YAML), of jsonschema; then reading and parsing the file, the schema check, building the graph,
  typing it (shape inference), the Keras-like Model objects, the summary text, and lowering to
  a plan with its text form.
- with ``--importtime``: the slowest imports of ``nnspec compile`` (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET_S = 0.3


def _wall(cmd: list, env=None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode()[-300:]}")
    return dt


def _pyc_env(folder: str) -> dict:
    """The environment with bytecode caching on, into ``folder`` (the source tree stays clean)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = folder
    return env


def _console_script() -> tuple[list, str | None]:
    """The nnspec command to run directly, and a shim in front of it on PATH (or None)."""
    direct = os.path.join(os.path.dirname(sys.executable), "nnspec")
    on_path = shutil.which("nnspec")
    if os.path.exists(direct):
        cmd = [direct]
    else:  # no console script beside the interpreter: the module form runs the same code
        cmd = [sys.executable, "-m", "nnspec"]
    shim = on_path if on_path and os.path.realpath(on_path) != os.path.realpath(direct) else None
    return cmd, shim


_BREAKDOWN = r"""
import json, sys, time
t0 = time.perf_counter()
import nnspec.cli.main
t1 = time.perf_counter()
from nnspec.api.model import Model, load
from nnspec.compiler import build_graph, infer_types
from nnspec.specs.load import load_file
from nnspec.specs.validate import validate_document
t2 = time.perf_counter()
import jsonschema
t3 = time.perf_counter()
doc = load_file(sys.argv[1])
t4 = time.perf_counter()
validate_document(doc)
t5 = time.perf_counter()
graph = build_graph(doc)
t6 = time.perf_counter()
typed = infer_types(graph)
t7 = time.perf_counter()
m = Model(_typed=typed)
t8 = time.perf_counter()
from nnspec.compiler.summary import summary_text
text = summary_text(typed, None)
t9 = time.perf_counter()
plan = m.plan()
ptext = plan.to_text()
t10 = time.perf_counter()
print(json.dumps({"import CLI": t1 - t0, "import model API": t2 - t1, "import jsonschema": t3 - t2,
                  "read+parse": t4 - t3, "schema check": t5 - t4, "build graph": t6 - t5, "shape types": t7 - t6,
                  "Model objects": t8 - t7, "summary text": t9 - t8, "plan+text": t10 - t9,
                  "numba imported": "numba" in sys.modules}))
"""


def breakdown(path: str, runs: int, env: dict) -> dict:
    rows = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, "-c", _BREAKDOWN, path], capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-400:])
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "numba imported"}
    out["numba imported"] = any(r["numba imported"] for r in rows)
    return out


def importtime(cmd: list, path: str, env: dict, top: int = 12) -> list:
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    p = subprocess.run([*cmd, "compile", path], capture_output=True, text=True, env=env)
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = line.replace("import time:", "").split("|")
        rows.append((int(cum_us), int(self_us), name.rstrip()))
    tops = [r for r in rows if not r[2].startswith("  ")]  # top-level imports of the process
    return sorted(tops, reverse=True)[:top], sorted(rows, key=lambda r: -r[1])[:top]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Wall time of nnspec summarize / compile per seed.")
    ap.add_argument("--models", nargs="*", help="seed names (default: every specs/*.yaml)")
    ap.add_argument("--runs", type=int, default=None, help="runs per command and file (default 7; 3 with --quick)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--importtime", action="store_true", help="list the slowest imports of `nnspec compile`")
    args = ap.parse_args(argv)
    runs = args.runs or (3 if args.quick else 7)
    paths = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
    if args.models:
        paths = [p for p in paths if os.path.splitext(os.path.basename(p))[0] in args.models]
    cmd, shim = _console_script()
    print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} cores; command: {' '.join(cmd)}")

    pyc_dir = tempfile.mkdtemp(prefix="nnspec-pyc-")
    modes = {"pyc": _pyc_env(pyc_dir)}
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        modes["no pyc"] = dict(os.environ)
        print("note: this shell sets PYTHONDONTWRITEBYTECODE, so every process compiles nnspec's modules from "
              "source; 'pyc' runs unset it and cache bytecode in a temporary PYTHONPYCACHEPREFIX (warmed "
              "first), as a normal install would; the target is judged on 'pyc'")  # fmt: skip
    env = modes["pyc"]
    for c in ([sys.executable, "-c", "import nnspec.api.model, nnspec.cli.main, jsonschema"],
              [*cmd, "compile", paths[0]], [*cmd, "summarize", paths[0]]):  # fmt: skip
        _wall(c, env)  # fill the bytecode cache

    scale = {"python -c pass": [sys.executable, "-c", "pass"], "nnspec --version": [*cmd, "--version"],
             "python -c 'import numpy'": [sys.executable, "-c", "import numpy"]}  # fmt: skip
    if shim:
        scale[f"{shim} --version (shim)"] = [shim, "--version"]
    print("\n== for scale (median wall s, min in brackets)")
    print(f"  {'':48s} " + " ".join(f"{m:>16s}" for m in modes))
    for name, c in scale.items():
        cells = []
        for menv in modes.values():
            ts = [_wall(c, menv) for _ in range(max(runs, 5))]
            cells.append(f"{statistics.median(ts):.3f} [{min(ts):.3f}]")
        print(f"  {name:48s} " + " ".join(f"{x:>16s}" for x in cells))

    print(f"\n== real processes: median wall s of {runs} runs (min in brackets); target <= {TARGET_S} s each")
    heads = [f"{sub} ({m})" for m in modes for sub in ("summarize", "compile")]
    print(f"  {'model':20s} " + " ".join(f"{h:>20s}" for h in heads))
    worst = {"summarize": 0.0, "compile": 0.0}
    misses = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        ts = {(m, sub): [] for m in modes for sub in ("summarize", "compile")}
        for i in range(runs):
            keys = list(ts)
            keys = keys[i % len(keys):] + keys[: i % len(keys)]  # interleaved, rotating order
            for m, sub in keys:
                ts[(m, sub)].append(_wall([*cmd, sub, path], modes[m]))
        cells = []
        for (m, sub), t in ts.items():
            md = statistics.median(t)
            if m == "pyc":
                worst[sub] = max(worst[sub], md)
                if md > TARGET_S:
                    misses.append(f"{name} {sub}")
            cells.append(f"{md:.3f} [{min(t):.3f}]")
        print(f"  {name:20s} " + " ".join(f"{c:>20s}" for c in cells))
    print(f"  slowest median (pyc): summarize {worst['summarize']:.3f} s, compile {worst['compile']:.3f} s; "
          f"target {'MET' if not misses else 'MISSED'}" + (f" ({len(misses)} of {2 * len(paths)} commands)" if misses else ""))  # fmt: skip

    print(f"\n== in-process breakdown (fresh interpreter each run, bytecode cached, median ms of {runs})")
    rows = {}
    for path in paths:
        rows[os.path.splitext(os.path.basename(path))[0]] = breakdown(path, runs, env)
    keys = [k for k in next(iter(rows.values())) if k != "numba imported"]
    print(f"  {'model':20s} " + " ".join(f"{k:>{max(len(k), 6)}s}" for k in keys) + f" {'total':>7s}")
    for name, r in rows.items():
        total = sum(r[k] for k in keys)
        print(f"  {name:20s} " + " ".join(f"{r[k] * 1e3:>{max(len(k), 6)}.1f}" for k in keys) + f" {total * 1e3:7.1f}"
              + ("  (numba was imported!)" if r["numba imported"] else ""))  # fmt: skip

    if args.importtime:
        tops, selfs = importtime(cmd, paths[0], env)
        print(f"\n== slowest imports of `nnspec compile {os.path.basename(paths[0])}` (python -X importtime)")
        print("  top-level, cumulative ms:")
        for cum, _, name in tops:
            print(f"    {cum / 1e3:8.1f}  {name.strip()}")
        print("  any module, self ms:")
        for cum, self_us, name in selfs:
            print(f"    {self_us / 1e3:8.1f}  {name.strip()}")

    shutil.rmtree(pyc_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
