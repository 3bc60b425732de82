"""The ``nnspec`` command line: validate, summarize, compile, schema; exit codes and output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from nnspec.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
CASES = Path(__file__).resolve().parent / "cases"
SEED_FILES = sorted(SPECS.glob("*.yaml"))
CASE_FILES = sorted(p for p in CASES.iterdir() if p.suffix in (".yaml", ".json"))

# FILE:LINE:COL: CODE message
DIAG_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>[EW]\d{3}) (?P<msg>\S.*)$")


def invoke(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    # A deliberate exit is a SystemExit; anything else is a crash of the command.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"nnspec {' '.join(map(str, args))} crashed: {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    return result


def seed(name: str) -> Path:
    return SPECS / name


def case(name: str) -> Path:
    return CASES / name


def test_seed_files_exist():
    assert len(SEED_FILES) >= 10, SEED_FILES
    assert seed("cnn.yaml") in SEED_FILES and seed("mlp.yaml") in SEED_FILES


# ---------------------------------------------------------------------------------- validate


def test_validate_all_seed_files():
    r = invoke("validate", *SEED_FILES)
    assert r.exit_code == 0, r.output
    for f in SEED_FILES:
        assert f"{f}: OK" in r.output
    assert f"{len(SEED_FILES)} of {len(SEED_FILES)} files valid" in r.output
    assert not any(DIAG_LINE.match(line) for line in r.output.splitlines()), r.output


def test_validate_bad_file_prints_located_diagnostics():
    bad = case("multiple_errors.yaml")
    r = invoke("validate", bad)
    assert r.exit_code == 1, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    parsed = [DIAG_LINE.match(line) for line in lines]
    assert all(parsed), lines  # every line is FILE:LINE:COL: CODE message
    assert {m["file"] for m in parsed} == {str(bad)}
    got = sorted((m["code"], int(m["line"]), int(m["col"])) for m in parsed)
    assert got == [("E100", 15, 42), ("E101", 12, 21), ("E101", 20, 3), ("E103", 14, 31), ("E104", 13, 44)]
    assert f"{bad}: OK" not in r.output


def test_validate_one_line_for_the_design_example():
    bad = case("e101_unknown_param.yaml")
    r = invoke("validate", bad)
    assert r.exit_code == 1
    assert r.output.strip() == (
        f"{bad}:9:26: E101 layers.hidden2.unit: unknown parameter 'unit' for Dense; did you mean 'units'?"
    )


def test_validate_good_and_bad_files_together():
    r = invoke("validate", seed("mlp.yaml"), case("e202_cycle.yaml"))
    assert r.exit_code == 1
    assert f"{seed('mlp.yaml')}: OK" in r.output
    assert "E202" in r.output
    assert "1 of 2 files valid" in r.output


def test_validate_missing_file_is_a_usage_error(tmp_path):
    r = invoke("validate", tmp_path / "does_not_exist.yaml")
    assert r.exit_code == 2, r.output


def test_validate_without_argument_is_a_usage_error():
    r = invoke("validate")
    assert r.exit_code == 2, r.output


def test_validate_unknown_option_is_a_usage_error():
    r = invoke("validate", "--no-such-option", seed("mlp.yaml"))
    assert r.exit_code == 2, r.output


def test_validate_format_json():
    bad = case("multiple_errors.yaml")
    r = invoke("validate", "--format", "json", bad)
    assert r.exit_code == 1
    objs = [json.loads(line) for line in r.output.splitlines() if line.strip()]
    assert len(objs) == 5
    for o in objs:
        assert {"code", "line", "column", "path", "message", "severity", "file"} <= set(o)
        assert o["file"] == str(bad) and o["severity"] == "error"
    got = sorted((o["code"], o["line"], o["column"], o["path"]) for o in objs)
    assert got == [
        ("E100", 15, 42, "layers.out.use_bias"),
        ("E101", 12, 21, "layers.h1.unit"),
        ("E101", 20, 3, "training.optimiser"),
        ("E103", 14, 31, "layers.drop.rate"),
        ("E104", 13, 44, "layers.h2.activation"),
    ]
    hint = next(o for o in objs if o["path"] == "layers.h1.unit")["hint"]
    assert hint == "did you mean 'units'?"


def test_validate_format_json_valid_file_prints_no_problem():
    r = invoke("validate", "--format", "json", seed("cnn.yaml"))
    assert r.exit_code == 0
    assert [line for line in r.output.splitlines() if line.strip()] == []


def test_strict_makes_a_warning_fail():
    unused = case("w200_unused_layer.yaml")
    r = invoke("validate", unused)
    assert r.exit_code == 0, r.output
    m = DIAG_LINE.match(r.output.splitlines()[0])
    assert m and m["code"] == "W200" and (m["line"], m["col"]) == ("9", "3")
    r = invoke("validate", "--strict", unused)
    assert r.exit_code == 1, r.output
    assert "W200" in r.output
    # --strict does not fail a file without warnings
    r = invoke("validate", "--strict", seed("mlp.yaml"))
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------------------------- summarize


def test_summarize_cnn_prints_the_keras_table():
    r = invoke("summarize", seed("cnn.yaml"))
    assert r.exit_code == 0, r.output
    out = r.output
    assert 'Model: "cnn"' in out
    assert "Layer (type)" in out and "Output Shape" in out and "Param #" in out
    assert "conv1 (Conv2D)" in out and "(None, 60, 60, 16)" in out
    assert "Total params: 610,570" in out
    assert "Trainable params: 610,570" in out
    assert "Non-trainable params: 0" in out


def test_summarize_json():
    r = invoke("summarize", "--json", seed("cnn.yaml"))
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) == {"name", "total_params", "trainable_params", "non_trainable_params", "layers"}
    assert d["name"] == "cnn"
    assert d["total_params"] == 610570
    assert d["trainable_params"] + d["non_trainable_params"] == d["total_params"]
    for layer in d["layers"]:
        assert {"name", "type", "output_shape", "params", "connected_to"} <= set(layer), layer
    assert sum(layer["params"] for layer in d["layers"]) == d["total_params"]
    names = [layer["name"] for layer in d["layers"]]
    assert names == ["image", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "flat", "hidden", "output"]
    conv1 = d["layers"][1]
    assert conv1["type"] == "Conv2D" and conv1["output_shape"] == [None, 60, 60, 16]
    assert conv1["params"] == 5 * 5 * 3 * 16 + 16 and conv1["connected_to"] == ["image[0][0]"]


def test_summarize_bad_file_exits_1_with_diagnostics():
    bad = case("e300_concat_mismatch.yaml")
    r = invoke("summarize", bad)
    assert r.exit_code == 1
    m = DIAG_LINE.match(r.output.splitlines()[0])
    assert m and m["code"] == "E300" and m["file"] == str(bad)
    assert "Total params" not in r.output


def test_summarize_missing_file_is_a_usage_error(tmp_path):
    r = invoke("summarize", tmp_path / "nope.yaml")
    assert r.exit_code == 2


def test_summarize_prints_warnings_and_succeeds():
    r = invoke("summarize", case("w200_unused_layer.yaml"))
    assert r.exit_code == 0
    assert "W200" in r.output and "Total params" in r.output


# ---------------------------------------------------------------------------------- compile


def test_compile_prints_the_text_plan():
    r = invoke("compile", seed("cnn.yaml"))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("plan nnspec-plan/1")
    step_lines = [line for line in lines if re.match(r"^%\d+ = \w+\(", line)]
    assert sum("conv2d(" in line for line in step_lines) == 3
    plan = json.loads(invoke("compile", "--json", seed("cnn.yaml")).output)
    assert len(step_lines) == len(plan["steps"])  # one line per step


def test_compile_output_file_is_versioned_and_deterministic(tmp_path):
    a, b = tmp_path / "a.plan.json", tmp_path / "b.plan.json"
    r1 = invoke("compile", seed("cnn.yaml"), "-o", a)
    r2 = invoke("compile", seed("cnn.yaml"), "-o", b)
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert f"wrote {a}" in r1.output
    data = json.loads(a.read_text(encoding="utf-8"))
    assert data["format"] == "nnspec-plan/1"
    assert data["model"] == "cnn" or data["model"].get("name") == "cnn"
    assert [s["op"] for s in data["steps"]].count("conv2d") == 3
    assert a.read_bytes() == b.read_bytes()


def test_compile_bad_file_exits_1_and_writes_nothing(tmp_path):
    out = tmp_path / "x.plan.json"
    r = invoke("compile", case("e202_cycle.yaml"), "-o", out)
    assert r.exit_code == 1
    assert "E202" in r.output
    assert not out.exists()


# ---------------------------------------------------------------------------------- schema


def test_schema_is_draft07_and_validates_every_seed_file():
    r = invoke("schema")
    assert r.exit_code == 0
    schema = json.loads(r.output)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for f in SEED_FILES:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == [], f"{f.name}: {errors}"
    # ... and is not vacuous: it refuses a misspelt parameter
    bad = yaml.safe_load(case("e101_unknown_param.yaml").read_text(encoding="utf-8"))
    assert not validator.is_valid(bad)


def test_schema_to_file(tmp_path):
    out = tmp_path / "nnspec.schema.json"
    r = invoke("schema", "-o", out)
    assert r.exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(invoke("schema").output)


# ---------------------------------------------------------------------------------- never a traceback


def _only_warnings(path: Path) -> bool:
    header = Path(str(path) + ".expect") if path.suffix == ".json" else path
    codes = re.findall(r"^# expect: ([EW]\d{3})", header.read_text(encoding="utf-8"), re.M)
    return bool(codes) and all(c.startswith("W") for c in codes)


def test_no_traceback_for_any_bad_file(tmp_path):
    r = invoke("validate", *CASE_FILES)
    assert r.exit_code == 1
    assert "E000" not in r.output  # no internal error turned into a diagnostic
    for f in CASE_FILES:
        want = 0 if _only_warnings(f) else 1
        for args in (("summarize", f), ("summarize", "--json", f), ("compile", f), ("compile", f, "-o", tmp_path / "p.json")):
            res = invoke(*args)
            assert res.exit_code == want, (args, res.output)
            if want:
                first = res.output.splitlines()[0] if res.output.strip() else ""
                assert first.startswith(str(f)), (args, res.output)


# ---------------------------------------------------------------------------------- real processes


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "torch")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, **kw)


def test_python_dash_m_nnspec():
    p = _run([sys.executable, "-m", "nnspec", "summarize", "specs/mlp.yaml"])
    assert p.returncode == 0, p.stderr
    assert "Total params: 771" in p.stdout


def test_console_script():
    exe = shutil.which("nnspec")
    assert exe is not None, "the nnspec console script is not on PATH"
    p = _run([exe, "summarize", "specs/mlp.yaml"])
    assert p.returncode == 0, p.stderr
    assert "Total params: 771" in p.stdout
    p = _run([exe, "validate", str(case("e202_cycle.yaml"))])
    assert p.returncode == 1
    assert "E202" in p.stdout and "Traceback" not in p.stdout + p.stderr


NUMBA_PROBE = r"""
import json, runpy, sys
codes = []
for argv in (["nnspec", "summarize", "specs/cnn.yaml"], ["nnspec", "compile", "specs/cnn.yaml"]):
    sys.argv = argv
    try:
        runpy.run_module("nnspec", run_name="__main__", alter_sys=True)
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code or 0)
print("PROBE " + json.dumps({"codes": codes, "numba": "numba" in sys.modules}))
"""


def test_summarize_and_compile_never_import_numba():
    p = _run([sys.executable, "-c", NUMBA_PROBE])
    assert p.returncode == 0, p.stderr
    assert "Total params: 610,570" in p.stdout and "conv2d(" in p.stdout  # both commands ran
    probe = json.loads(next(line for line in p.stdout.splitlines() if line.startswith("PROBE "))[6:])
    assert probe["codes"] == [0, 0]
    assert probe["numba"] is False


def test_summarize_show_trainable(tmp_path):
    """--show-trainable marks frozen layers N, training ones Y and weightless ones -."""
    spec = tmp_path / "frozen.yaml"
    spec.write_text(
        "format: nnspec/1\nname: frozen\ninputs:\n  x: {shape: [4]}\nlayers:\n"
        "  a: {type: Dense, units: 3, trainable: false}\n  act: {type: Activation, activation: relu}\n"
        "  b: {type: Dense, units: 2}\nedges:\n  - x -> a -> act -> b\n"
    )
    result = CliRunner().invoke(cli, ["summarize", "--show-trainable", str(spec)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line.rstrip("│ ").split("│")[-1].strip() for line in result.output.splitlines()
            if line.startswith("│")}  # fmt: skip
    assert (rows["a"], rows["act"], rows["b"]) == ("N", "-", "Y")
    assert "Trainable" in result.output.splitlines()[2]


def test_summarize_expand_nested(tmp_path):
    """--expand-nested follows a nested model's row with its layers' rows, indented."""
    spec = tmp_path / "nested.yaml"
    spec.write_text(
        "format: nnspec/1\nname: outer\nmodels:\n  enc:\n    inputs:\n      i: {shape: [4]}\n    layers:\n"
        "      e1: {type: Dense, units: 3}\n    edges:\n      - i -> e1\ninputs:\n  x: {shape: [4]}\nlayers:\n"
        "  enc: {type: Model, model: enc}\n  head: {type: Dense, units: 1}\nedges:\n  - x -> enc -> head\n"
    )
    plain = CliRunner().invoke(cli, ["summarize", str(spec)])
    result = CliRunner().invoke(cli, ["summarize", "--expand-nested", str(spec)])
    assert result.exit_code == 0, result.output
    names = [line.split("│")[1].rstrip() for line in result.output.splitlines() if line.startswith("│")]
    assert names == [" x (InputLayer)", " enc (Functional)", "    └ i (InputLayer)", "    └ e1 (Dense)", " head (Dense)"]
    assert " └ " not in plain.output and plain.output.count("│ e") == 1
