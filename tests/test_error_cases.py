"""Golden error cases: every file in tests/cases/ declares the diagnostics it must produce.

A case is a small model file (``*.yaml``, or ``*.json``) whose expected diagnostics are
written as comment lines::

    # expect: E101 9:26 layers.hidden2.unit
    # expect-hint: did you mean 'units'?

one ``# expect:`` line per diagnostic (code, line:column, path; ``-`` for an empty path), each
optionally followed by an ``# expect-hint:`` line for the hint of that diagnostic. YAML cases
carry the lines at the top of the file; JSON has no comments, so a JSON case keeps them in a
sidecar ``<name>.json.expect``. Positions were counted by hand from the case files, not copied
from nnspec's output.

The case is loaded through the full pipeline (``analyze(load_file(path))``); the test asserts
that the diagnostics produced (raised, or the warnings of a successful analysis) are exactly
the declared ones.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest

from nnspec.compiler import analyze
from nnspec.specs.errors import (
    GraphError,
    SchemaError,
    ShapeMismatchError,
    SpecError,
    SpecSyntaxError,
)
from nnspec.specs.load import load_file

CASES_DIR = Path(__file__).parent / "cases"
CASE_FILES = sorted(p for p in CASES_DIR.iterdir() if p.suffix in (".yaml", ".json"))

_EXPECT = re.compile(r"^#\s*expect:\s*(?P<code>[EW]\d{3})\s+(?P<line>\d+):(?P<col>\d+)\s+(?P<path>\S.*?)\s*$")
_HINT = re.compile(r"^#\s*expect-hint:\s*(?P<hint>.*?)\s*$")


def expectations(case: Path) -> list[dict]:
    """The declared diagnostics of ``case``: dicts with code, line, column, path, hint."""
    header = Path(str(case) + ".expect") if case.suffix == ".json" else case
    out: list[dict] = []
    for raw in header.read_text(encoding="utf-8").splitlines():
        if not raw.startswith("#"):
            break  # the header is the leading block of comment lines
        m = _EXPECT.match(raw)
        if m:
            path = m["path"]
            out.append(
                {
                    "code": m["code"],
                    "line": int(m["line"]),
                    "column": int(m["col"]),
                    "path": "" if path == "-" else path,
                    "hint": None,
                }
            )
            continue
        h = _HINT.match(raw)
        if h:
            assert out, f"{header}: '# expect-hint:' before any '# expect:' line"
            out[-1]["hint"] = h["hint"]
    return out


def run_case(case: Path):
    """(diagnostics, raised exception or None) of loading and analyzing ``case``."""
    try:
        typed = analyze(load_file(str(case)))
    except SpecError as e:
        return list(e.diagnostics), e
    return list(typed.graph.warnings), None


def key(d) -> tuple:
    return (d.code, d.line, d.column, d.path)


def by_name(name: str) -> Path:
    return CASES_DIR / name


# ---------------------------------------------------------------------------------- the cases


def test_cases_are_collected_and_declare_something():
    assert len(CASE_FILES) >= 30, [p.name for p in CASE_FILES]
    assert any(p.suffix == ".json" for p in CASE_FILES)
    for case in CASE_FILES:
        assert expectations(case), f"{case.name} declares no '# expect:' line"


@pytest.mark.parametrize("case", CASE_FILES, ids=[p.name for p in CASE_FILES])
def test_golden_case(case: Path):
    want = expectations(case)
    got, raised = run_case(case)

    got_keys = sorted(key(d) for d in got)
    want_keys = sorted((w["code"], w["line"], w["column"], w["path"]) for w in want)
    shown = "\n".join(d.format() for d in got)
    assert got_keys == want_keys, f"diagnostics of {case.name}:\n{shown}"

    # Only warnings declared: the analysis must succeed; any error declared: it must raise.
    only_warnings = all(w["code"].startswith("W") for w in want)
    assert (raised is None) == only_warnings, f"{case.name}: raised {raised!r}"

    for d in got:
        assert d.file == str(case), f"{d.format()} does not name the file"
        assert d.message, d
        assert d.severity == ("warning" if d.code.startswith("W") else "error")

    for w in want:
        if w["hint"] is None:
            continue
        match = [d for d in got if key(d) == (w["code"], w["line"], w["column"], w["path"])]
        assert match and match[0].hint == w["hint"], f"{case.name}: hint of {w['code']}: {match[0].hint!r}"


# ---------------------------------------------------------------------------------- stages


@pytest.mark.parametrize(
    "name, exc",
    [
        ("e001_yaml_syntax.yaml", SpecSyntaxError),
        ("e001_invalid_json.json", SpecSyntaxError),
        ("e002_duplicate_keys.yaml", SpecSyntaxError),
        ("e003_alias_bomb.yaml", SpecSyntaxError),
        ("e004_top_level_list.yaml", SpecSyntaxError),
        ("e010_unknown_version.yaml", SchemaError),
        ("e101_unknown_param.yaml", SchemaError),
        ("e201_fed_twice.yaml", GraphError),
        ("e202_cycle.yaml", GraphError),
        ("e300_concat_mismatch.yaml", ShapeMismatchError),
        ("e301_dense_too_big.yaml", ShapeMismatchError),
    ],
)
def test_stage_exception_class(name, exc):
    _, raised = run_case(by_name(name))
    assert type(raised) is exc


def test_syntax_errors_come_from_the_loader_alone():
    for name in ("e001_yaml_syntax.yaml", "e001_invalid_json.json", "e002_duplicate_keys.yaml",
                 "e003_recursive_alias.yaml", "e004_empty.yaml"):  # fmt: skip
        with pytest.raises(SpecSyntaxError):
            load_file(str(by_name(name)))


# ---------------------------------------------------------------------------------- messages


def only(name: str, code: str | None = None):
    got, _ = run_case(by_name(name))
    if code is not None:
        got = [d for d in got if d.code == code]
    assert len(got) == 1, [d.format() for d in got]
    return got[0]


def test_message_unknown_parameter():
    d = only("e101_unknown_param.yaml")
    assert "'unit'" in d.message and "Dense" in d.message
    assert d.found == "unit"
    assert "units" in d.expected


def test_message_out_of_range():
    got, _ = run_case(by_name("e103_out_of_range.yaml"))
    units = next(d for d in got if d.path == "layers.hidden.units")
    rate = next(d for d in got if d.path == "layers.drop.rate")
    assert ">= 1" in units.message and "-5" in units.message
    assert units.found == "-5"
    assert "<= 1" in rate.message and "1.5" in rate.message
    assert rate.found == "1.5"


def test_message_bad_enum_lists_the_choices():
    d = only("e103_bad_enum.yaml")
    assert "'valid'" in d.message and "'same'" in d.message  # expected
    assert "'vaild'" in d.message  # found


def test_message_wrong_type():
    got, _ = run_case(by_name("e100_wrong_type.yaml"))
    units = next(d for d in got if d.path == "layers.hidden.units")
    shape = next(d for d in got if d.path == "inputs.x.shape")
    assert "integer" in units.message and "'ten'" in units.message
    assert "list" in shape.message and "32" in shape.message


def test_message_unknown_format_version():
    d = only("e010_unknown_version.yaml")
    assert "nnspec/2" in d.message and "nnspec/1" in d.message


def test_message_duplicate_key_names_the_first_line():
    got, _ = run_case(by_name("e002_duplicate_keys.yaml"))
    name = next(d for d in got if d.path == "name")
    units = next(d for d in got if d.path == "layers.hidden.units")
    assert "'name'" in name.message and "line 4" in name.message
    assert "'units'" in units.message and "line 9" in units.message


def test_message_alias_bomb_names_the_limit():
    d = only("e003_alias_bomb.yaml")
    assert "200,000" in d.message


def test_message_cycle_lists_the_path():
    d = only("e202_cycle.yaml")
    m = re.search(r"cycle: (.+)$", d.message)
    assert m, d.message
    names = [s.strip() for s in m.group(1).split("->")]
    assert names[0] == names[-1], names  # a closed path
    assert sorted(names[:-1]) == ["a", "b", "c", "merge"]
    flows = {("merge", "a"), ("a", "b"), ("b", "c"), ("c", "merge")}  # data flow in the file
    assert set(zip(names, names[1:])) == flows, names


def test_message_arity_and_port():
    d = only("e203_arity.yaml")
    assert "Subtract" in d.message and "'diff'" in d.message
    assert "2" in d.message and "3" in d.message and "a, b, c" in d.message
    d = only("e203_port.yaml")
    assert "lstm:3" in d.message and "3 output(s)" in d.message


def test_message_shape_mismatch_names_edge_layer_and_shapes():
    d = only("e300_concat_mismatch.yaml")
    assert "flat, pool -> merged -> out" in d.message  # the edge
    assert "Concatenate" in d.message and "'merged'" in d.message  # the layer
    assert "(None, 5408)" in d.message and "(None, 13, 13, 32)" in d.message  # both shapes


def test_message_too_many_parameters():
    d = only("e301_dense_too_big.yaml")
    assert "'big'" in d.message and "2,147,483,648" in d.message


def test_message_unknown_names_say_what_kind_of_name():
    got, _ = run_case(by_name("e104_unknown_names.yaml"))
    words = {d.path: d.message for d in got}
    assert "layer type" in words["layers.h1.type"] and "'Dens'" in words["layers.h1.type"]
    assert "activation" in words["layers.h2.activation"] and "'rleu'" in words["layers.h2.activation"]
    assert "initializer" in words["layers.h3.kernel_initializer"]
    # The kind of a `type` value depends on where it is, not on how the layer is named.
    d = only("e104_type_of_layer_named_activation.yaml")
    assert "layer type" in d.message, d.message


def test_message_unknown_node_and_model():
    d = only("e200_unknown_node.yaml")
    assert "'hiden1'" in d.message and d.found == "hiden1"
    d = only("e206_unknown_model.yaml")
    assert "'frame_clasifier'" in d.message


def test_formatted_line():
    d = only("e101_unknown_param.yaml")
    path = str(by_name("e101_unknown_param.yaml"))
    assert d.format() == f"{path}:9:26: E101 layers.hidden2.unit: {d.message}; did you mean 'units'?"


# ---------------------------------------------------------------------------------- limits, warnings


def test_alias_bomb_is_refused_quickly():
    t0 = time.perf_counter()
    with pytest.raises(SpecSyntaxError) as info:
        load_file(str(by_name("e003_alias_bomb.yaml")))
    assert info.value.code == "E003"
    assert time.perf_counter() - t0 < 5.0


def test_too_big_dense_is_refused_before_any_allocation():
    doc = load_file(str(by_name("e301_dense_too_big.yaml")))
    tracemalloc.start()
    try:
        with pytest.raises(ShapeMismatchError) as info:
            analyze(doc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "E301"
    assert peak < 64 * 1024 * 1024, f"peak {peak:,} bytes"


def test_unused_layer_is_a_warning_only():
    typed = analyze(load_file(str(by_name("w200_unused_layer.yaml"))))
    assert [(d.code, d.path, d.severity) for d in typed.graph.warnings] == [("W200", "layers.probe", "warning")]
    assert "probe" in typed.graph.warnings[0].message
    assert "out" in typed.nodes and "probe" in typed.nodes  # the model is still built, the layer typed


def test_several_independent_errors_are_all_reported():
    got, raised = run_case(by_name("multiple_errors.yaml"))
    assert isinstance(raised, SchemaError)
    assert len({d.path for d in got}) == 5
    assert [d.line for d in got] == sorted(d.line for d in got)  # in file order


def test_yaml_merge_keys_override_what_they_merge():
    """``{<<: *anchor, units: 20}``: the key written beside the merge wins, as YAML specifies (a
    duplicate key written twice is still E002)."""
    from nnspec.compiler import analyze
    from nnspec.specs.load import load_text

    text = """
format: nnspec/1
inputs:
  x: {shape: [4]}
layers:
  a: &relu_dense {type: Dense, units: 8, activation: relu}
  b: {<<: *relu_dense, units: 20}
"""
    typed = analyze(load_text(text, "merge.yaml"))
    assert typed.nodes["b"].node.attrs["units"] == 20 and typed.nodes["b"].node.attrs["activation"] == "relu"
    assert typed.nodes["a"].node.attrs["units"] == 8
