"""Execution plans of the seeds: deterministic, serializable, and with sound memory reuse.

The checks here do not trust the planner's own bookkeeping: topological validity, value aliasing
through views, buffer liveness and the text form are recomputed from the plan's steps by an
independent checker.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import nnspec
from nnspec.api.model import Ref
from nnspec.compiler.plan import Plan

HERE = Path(__file__).resolve().parent
SPECS = HERE.parent / "specs"
SEED_FILES = sorted(SPECS.glob("*.yaml"))
SEED_IDS = [p.stem for p in SEED_FILES]


@pytest.fixture(scope="module")
def plans():
    """seed name -> its plan (compiled once for the module)."""
    return {p.stem: nnspec.load(p).plan() for p in SEED_FILES}


# ----------------------------------------------------------------------------- independent checker


def roots(plan: Plan) -> dict[int, int]:
    """value id -> the value whose memory it is (a view's output is its input's memory)."""
    root = {v.id: v.id for v in plan.values}
    for s in plan.steps:
        if s.view:
            assert len(s.inputs) >= 1, f"view step {s.node} has no input"
            for o in s.outputs:
                root[o] = root[s.inputs[0]]
    return root


def reads(step) -> tuple:
    """The values a step reads: its inputs, and the Keras masks it uses (-1: none)."""
    return tuple(step.inputs) + tuple(m for m in getattr(step, "masks", ()) if m >= 0)


def check_topology(plan: Plan) -> None:
    """Every step reads only values already available; every value is written once."""
    value_ids = {v.id for v in plan.values}
    assert len(value_ids) == len(plan.values), "duplicate value ids"
    available = {vid for _, vid in plan.inputs}
    param_names = {p.name for p in plan.params}
    assert len(param_names) == len(plan.params), "duplicate param names"
    for i, s in enumerate(plan.steps):
        for v in reads(s):
            assert v in available, f"step {i} ({s.op} {s.node}) reads %{v} before it is produced"
        for p in s.params:
            assert p in param_names, f"step {i} ({s.node}) reads unknown param @{p}"
        for o in s.outputs:
            assert o in value_ids, f"step {i} writes unknown value %{o}"
            assert o not in available, f"step {i} ({s.node}) writes %{o} a second time"
            available.add(o)
    for name, vid in plan.outputs:
        assert vid in available, f"output {name} (%{vid}) is never produced"


def live_ranges(plan: Plan) -> dict[int, tuple[int, int]]:
    """root value -> (step that writes it, last step during which its memory must hold it).

    Model inputs start at -1; model outputs (or views of them) live past the last step.
    """
    root = roots(plan)
    start: dict[int, int] = {vid: -1 for _, vid in plan.inputs}
    for i, s in enumerate(plan.steps):
        if not s.view:
            for o in s.outputs:
                start[o] = i
    end = dict(start)
    for i, s in enumerate(plan.steps):
        for v in reads(s):
            end[root[v]] = max(end[root[v]], i)
    for _, vid in plan.outputs:
        end[root[vid]] = len(plan.steps)
    return {r: (start[r], end[r]) for r in start}


def check_buffers(plan: Plan) -> None:
    """Aliasing is consistent, buffers are big enough, and no two live values share one."""
    root = roots(plan)
    vals = {v.id: v for v in plan.values}
    input_ids = {vid for _, vid in plan.inputs}
    buffer_size = {b.id: b.values_per_sample for b in plan.buffers}
    for v in plan.values:
        if root[v.id] in input_ids:
            assert v.buffer is None, f"%{v.id} is (a view of) a model input but is given buf{v.buffer}"
            continue
        assert v.buffer is not None, f"computed value %{v.id} has no buffer"
        assert v.buffer in buffer_size, f"%{v.id} lives in unknown buf{v.buffer}"
        assert v.buffer == vals[root[v.id]].buffer, f"view %{v.id} is not in its source's buffer"
        assert buffer_size[v.buffer] >= v.values_per_sample, f"buf{v.buffer} is too small for %{v.id}"

    ranges = live_ranges(plan)
    by_buffer: dict[int, list[int]] = {}
    for r in ranges:
        if r not in input_ids:
            by_buffer.setdefault(vals[r].buffer, []).append(r)
    for b, rs in by_buffer.items():
        rs.sort(key=lambda r: ranges[r])
        for i, a in enumerate(rs):
            a_start, a_end = ranges[a]
            for c in rs[i + 1 :]:
                c_start, c_end = ranges[c]
                if c_start > a_end:
                    continue
                # Touching is fine only for an in-place step overwriting its first input as it
                # reads it for the last time.
                step = plan.steps[c_start]
                handover = (
                    c_start == a_end
                    and step.inplace
                    and step.inputs
                    and root[step.inputs[0]] == a
                    and step.outputs[0] == c
                )
                assert handover, (
                    f"buf{b}: %{a} (live steps {a_start}..{a_end}) and %{c} (live {c_start}..{c_end}) "
                    "overlap in time"
                )


def check_outputs_kept(plan: Plan) -> None:
    """Once a model output is written, no later step writes into its buffer."""
    root = roots(plan)
    vals = {v.id: v for v in plan.values}
    written_at = {}
    for i, s in enumerate(plan.steps):
        for o in s.outputs:
            written_at[o] = i
    for name, vid in plan.outputs:
        b = vals[vid].buffer
        if b is None:
            continue  # an output that is a model input (or a view of one)
        r = root[vid]
        produced = written_at[r]
        for j in range(produced + 1, len(plan.steps)):
            s = plan.steps[j]
            if s.view:
                continue
            for o in s.outputs:
                assert vals[o].buffer != b, (
                    f"output {name} (%{vid}, buf{b}) is overwritten by step {j} ({s.node})"
                )


def value(plan: Plan, vid: int):
    return next(v for v in plan.values if v.id == vid)


_DTYPE = {"float32": "f32", "int32": "i32", "float64": "f64", "int64": "i64"}


def type_text(v) -> str:
    batch = "B" if v.fold == 1 else f"B*{v.fold}"
    return (
        f"{_DTYPE[v.dtype]}[" + ",".join([batch] + ["?" if d is None else str(d) for d in v.shape[1:]]) + "]"
    )


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_plan_json_is_deterministic(path, plans):
    again = nnspec.load(path).plan().to_json()
    assert again == plans[path.stem].to_json()
    assert nnspec.load(path).plan().hash() == plans[path.stem].hash()


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_plan_json_round_trips(path, plans):
    text = plans[path.stem].to_json()
    back = Plan.from_dict(json.loads(text))
    assert back.to_json() == text
    assert back == Plan.from_dict(json.loads(back.to_json()))


def test_plan_text_survives_json_round_trip(plans):
    """A plan read back from its JSON prints the same text as the plan the compiler made."""
    p = plans["mlp"]
    back = Plan.from_dict(json.loads(p.to_json()))
    assert back.to_text() == p.to_text()


def test_plan_from_dict_refuses_other_formats(plans):
    d = json.loads(plans["mlp"].to_json())
    d["format"] = "nnspec-plan/999"
    with pytest.raises(ValueError, match="nnspec-plan/999"):
        Plan.from_dict(d)


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_memory_reuse_never_costs_more(path, plans):
    p = plans[path.stem]
    assert 0 < p.planned_bytes_per_sample <= p.naive_bytes_per_sample
    # naive: every computed, non-view value counted once (4 bytes a float32 element).
    root = roots(p)
    inputs = {vid for _, vid in p.inputs}
    naive = sum(4 * v.values_per_sample for v in p.values if root[v.id] == v.id and v.id not in inputs)
    assert p.naive_bytes_per_sample == naive


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_steps_are_topologically_ordered(path, plans):
    check_topology(plans[path.stem])


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_no_two_live_values_share_a_buffer(path, plans):
    check_buffers(plans[path.stem])


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_outputs_are_never_overwritten(path, plans):
    check_outputs_kept(plans[path.stem])


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_plan_params_match_the_model(path, plans):
    p = plans[path.stem]
    m = nnspec.load(path)
    d = m.summary_dict()
    assert p.trainable_size == d["trainable_params"]
    assert p.non_trainable_size == d["non_trainable_params"]


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_text_form_has_one_line_per_step(path, plans):
    p = plans[path.stem]
    vals = {v.id: v for v in p.values}
    lines = p.to_text().splitlines()
    step_lines = [ln for ln in lines if re.match(r"^%\d+(, %\d+)* = ", ln)]
    assert len(step_lines) == len(p.steps)
    for line, s in zip(step_lines, p.steps):
        outs = ", ".join(f"%{o}" for o in s.outputs)
        assert line.startswith(f"{outs} = {s.op}("), line
        types = ", ".join(type_text(vals[o]) for o in s.outputs)
        assert f" : {types}  # {s.node}" in line, line
    assert lines[0] == f"plan nnspec-plan/1 model={path.stem}"
    assert sum(ln.startswith("input ") for ln in lines) == len(p.inputs)
    assert sum(ln.startswith("param @") for ln in lines) == len(p.params)
    assert [ln for ln in lines if ln.startswith("output ")] == [f"output {n} = %{v}" for n, v in p.outputs]


def test_mlp_plan_text_by_hand(plans):
    """The MLP's steps and types, worked out from the file: 32 -> 10 -> 20 -> 10 -> 1."""
    p = plans["mlp"]
    assert [(s.op, s.node) for s in p.steps] == [
        ("dense", "hidden1"), ("dense", "hidden2"), ("dense", "hidden3"), ("dense", "output")
    ]  # fmt: skip
    assert [type_text(value(p, s.outputs[0])) for s in p.steps] == [
        "f32[B,10]",
        "f32[B,20]",
        "f32[B,10]",
        "f32[B,1]",
    ]
    # A chain needs two ping-pong buffers; the larger holds 20 floats, the other 10.
    assert sorted(b.values_per_sample for b in p.buffers) == [10, 20]
    assert p.naive_bytes_per_sample == 4 * (10 + 20 + 10 + 1)


def test_video_classifier_folds_time_into_batch(plans):
    p = plans["video_classifier"]
    assert [s.op for s in p.steps] == ["fold_time", "dense", "dense", "dense", "unfold_time"]
    texts = [type_text(value(p, s.outputs[0])) for s in p.steps]
    assert texts == ["f32[B*20,784]", "f32[B*20,64]", "f32[B*20,64]", "f32[B*20,10]", "f32[B,20,10]"]
    # The sub-model's weights are stored once, under the layer that calls it.
    assert sum(prm.size for prm in p.params) == 55050


# Intermediate outputs: the steps each needs, worked out from the files' edges.
PARTIAL = [
    ("cnn", "conv2", ["conv1", "pool1", "conv2"]),
    ("headline", "aux_output", ["embed", "lstm_out", "aux_output"]),
    ("siamese_lstm", "encode_b", ["encode_b"]),
    ("multi_output_seq", "seq_out", ["extract", "seq_out"]),
    ("shared_feature_lstm", "interp2b", ["extract", "interp2a", "interp2b"]),
    ("multi_input_cnn", "flat2", ["conv21", "pool21", "conv22", "pool22", "flat2"]),
]


@pytest.mark.parametrize("seed, node, needed", PARTIAL, ids=[f"{s}:{n}" for s, n, _ in PARTIAL])
def test_plan_for_an_intermediate_node_keeps_only_needed_steps(seed, node, needed):
    m = nnspec.load(SPECS / f"{seed}.yaml")
    p = m.plan(outputs=[Ref(node)])
    assert [s.node for s in p.steps] == needed
    assert [name for name, _ in p.outputs] == [node]
    check_topology(p)
    check_buffers(p)
    check_outputs_kept(p)
    # Every parameter is still listed (the weights arrays do not depend on what is computed),
    # and the output has the node's summary shape.
    out_vid = p.outputs[0][1]
    row = next(r for r in m.summary_dict()["layers"] if r["name"] == m._typed.graph.nodes[node].layer)
    assert list(value(p, out_vid).shape) == row["output_shape"]
    assert Plan.from_dict(json.loads(p.to_json())).to_json() == p.to_json()


def test_plan_outputs_accept_node_names():
    """``Model.plan(outputs=[...])`` takes node names, as ``nnspec compile --output-node`` does."""
    m = nnspec.load(SPECS / "cnn.yaml")
    p = m.plan(outputs=["conv2"])
    assert [s.node for s in p.steps] == ["conv1", "pool1", "conv2"]


def test_plan_of_two_intermediate_outputs():
    m = nnspec.load(SPECS / "headline.yaml")
    p = m.plan(outputs=[Ref("lstm_out"), Ref("embed")])
    assert [s.node for s in p.steps] == ["embed", "lstm_out"]
    assert [n for n, _ in p.outputs] == ["lstm_out", "embed"]
    check_buffers(p)
    check_outputs_kept(p)


# ----------------------------------------------------------------------------- generated models


def test_generated_plans_are_sound():
    """The plan checks on the property test's generated models (a fixed set of seeds)."""
    sys.path.insert(0, str(HERE))
    from test_roundtrip import generate_model_file

    for seed in range(40):
        spec, _, _ = generate_model_file(seed)
        m = nnspec.Model.from_config(spec)
        p = m.plan()
        check_topology(p)
        check_buffers(p)
        check_outputs_kept(p)
        assert p.planned_bytes_per_sample <= p.naive_bytes_per_sample, json.dumps(spec)
        assert Plan.from_dict(json.loads(p.to_json())).to_json() == p.to_json()


# ----------------------------------------------------------------------------- the checker itself


def test_checker_catches_a_shared_live_buffer(plans):
    """The liveness checker is not vacuous: one buffer for everything must be refused."""
    import dataclasses

    from nnspec.compiler.plan import Buffer

    p = plans["headline"]  # aux_output is written before main_output's branch runs
    inputs = {vid for _, vid in p.inputs}
    big = max(b.values_per_sample for b in p.buffers)
    bad = dataclasses.replace(
        p,
        values=[v if v.id in inputs else dataclasses.replace(v, buffer=0) for v in p.values],
        buffers=[Buffer(0, big)],
    )
    with pytest.raises(AssertionError, match="overlap in time"):
        check_buffers(bad)
    with pytest.raises(AssertionError, match="overwritten"):
        check_outputs_kept(bad)


def test_checker_catches_a_step_out_of_order(plans):
    import dataclasses

    p = plans["mlp"]
    bad = dataclasses.replace(p, steps=[p.steps[1], p.steps[0], *p.steps[2:]])
    with pytest.raises(AssertionError, match="before it is produced"):
        check_topology(bad)
