"""The execution plan: a versioned, JSON-serializable, printable list of steps over slots.

A :class:`Plan` is what the runtime executes. It holds

- ``values``: every tensor the plan computes or reads, each with its shape (batch first,
  ``None`` for the batch and run-time dimensions), its batch fold (a value inside
  ``TimeDistributed`` holds ``batch * fold`` rows), its dtype and the buffer it lives in;
- ``params``: every weight, with its offset in one of two flat float32 arrays (trainable and
  non-trainable), so the runtime keeps all weights in two arrays and views into them;
- ``steps``: ops in execution order, reading and writing value ids, reading params by name;
- ``buffers``: activation memory after liveness-based reuse, sized per sample.

The text form (``Plan.to_text``, ``nnspec compile``) prints one line per step::

    %3 = conv2d(%2, @conv2d_1/kernel, @conv2d_1/bias) strides=[1, 1] padding=valid : f32[B,60,60,16]  #buf1

Grammar (documented in docs/plan.md):

    plan    := header input* param* step* output* memory
    header  := "plan" FORMAT "model=" NAME
    input   := "input" VALUE "=" NAME ":" TYPE
    param   := "param" "@" NAME ":" TYPE ("trainable" | "non-trainable")
    step    := VALUE ("," VALUE)* "=" OP "(" ARGS ")" ATTR* ":" TYPE ("," TYPE)* COMMENT
    output  := "output" NAME "=" VALUE
    TYPE    := DTYPE "[" DIM ("," DIM)* "]"     DIM := "B" | "B*" INT | INT | "?"
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

PLAN_FORMAT = "nnspec-plan/1"

_DTYPE_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "int32": "i32", "int64": "i64",
                "int8": "i8", "uint8": "u8", "bool": "bool"}  # fmt: skip
_DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "int32": 4, "int64": 8, "int8": 1, "uint8": 1, "bool": 1}


@dataclass(frozen=True)
class Value:
    id: int
    shape: tuple  # batch first (None), None for run-time dims
    dtype: str = "float32"
    fold: int | None = 1  # rows per sample folded into the batch (TimeDistributed); None: run time
    buffer: int | None = None  # None: a model input (the caller's array)
    masked: bool = False
    mask: int | None = None  # the value holding this value's Keras mask, f32[B,T] (1 = valid step)

    @property
    def values_per_sample(self) -> int:
        """Elements per sample, run-time dimensions counted as 1."""
        return (self.fold or 1) * math.prod(d for d in self.shape[1:] if d is not None)

    @property
    def bytes_per_sample(self) -> int:
        return self.values_per_sample * _DTYPE_BYTES.get(self.dtype, 4)

    def type_text(self) -> str:
        batch = "B" if self.fold == 1 else f"B*{'?' if self.fold is None else self.fold}"
        dims = [batch] + ["?" if d is None else str(d) for d in self.shape[1:]]
        return f"{_DTYPE_SHORT.get(self.dtype, self.dtype)}[{','.join(dims)}]"


@dataclass(frozen=True)
class Param:
    name: str  # <layer>/<weight>, or <model>/<layer>/<weight> inside a sub-model
    shape: tuple
    trainable: bool
    offset: int  # into the flat trainable or non-trainable array
    initializer: object = "zeros"
    layer: str = ""
    regularizer: object = None  # penalty added to the training loss (l1, l2, l1_l2)
    constraint: object = None  # applied to the weight after each optimizer update
    dtype: str = "float32"  # the dtype get_weights returns (every weight is held as float32)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def activity_regularizer_of(op: str, attrs: dict, node: str = ""):
    """The activity regularizer (a regularizer spec, or None) of a plan step, applied to each of
    its outputs: its ``activity_regularizer`` attribute, or the ActivityRegularization layer's
    l1/l2.

    A Bidirectional step's comes from its recurrent layers: Keras calls each direction's layer,
    which adds its penalty of its own outputs (and states). With ``merge_mode`` concat or None
    that is the penalty of the step's outputs (L1 and L2 add over concatenated parts); the other
    merges mix the directions, so their penalties cannot be read from the step's outputs."""
    if op == "activity_regularization":
        return {"type": "l1_l2", "l1": attrs.get("l1", 0.0), "l2": attrs.get("l2", 0.0)}
    if op == "bidirectional":
        forward = (attrs.get("layer") or {}).get("activity_regularizer")
        backward = (attrs.get("backward_layer") or attrs.get("layer") or {}).get("activity_regularizer")
        if forward is None and backward is None:
            return None
        if forward == backward and attrs.get("merge_mode") in ("concat", None):
            return forward
        from ..specs.errors import NnspecError

        raise NnspecError(
            f"layer '{node}': nnspec trains an activity_regularizer in a Bidirectional layer only "
            f"with merge_mode concat or null and the same regularizer in both directions "
            f"(here merge_mode {attrs.get('merge_mode')!r}): with other merges Keras's penalties are "
            "of each direction's own outputs, which this layer does not keep"
        )
    return attrs.get("activity_regularizer")


@dataclass(frozen=True)
class Step:
    op: str
    node: str  # the model-file node this step comes from
    inputs: tuple  # value ids
    params: tuple  # param names
    outputs: tuple  # value ids
    attrs: dict = field(default_factory=dict)
    view: bool = False  # the output is the input's buffer under another shape (no copy)
    inplace: bool = False  # the output overwrites its first input's buffer
    training_only: bool = False  # the identity at inference
    masks: tuple = ()  # for layers that read masks: each input's mask value id, or -1

    @property
    def reads(self) -> tuple:
        """Every value the step reads: its inputs and the masks it uses."""
        return tuple(self.inputs) + tuple(m for m in self.masks if m >= 0)


@dataclass(frozen=True)
class Buffer:
    id: int
    values_per_sample: int
    dtype: str = "float32"


@dataclass
class Plan:
    model: str
    inputs: list  # [(name, value id)]
    outputs: list  # [(name, value id)]
    values: list[Value]
    params: list[Param]
    steps: list[Step]
    buffers: list[Buffer]
    format: str = PLAN_FORMAT

    # ------------------------------------------------------------------ memory

    @property
    def planned_bytes_per_sample(self) -> int:
        return sum(b.values_per_sample * _DTYPE_BYTES.get(b.dtype, 4) for b in self.buffers)

    @property
    def naive_bytes_per_sample(self) -> int:
        """The sum of every computed value, as if no buffer were reused or viewed."""
        return sum(v.bytes_per_sample for v in self.values if v.buffer is not None and not self._is_view(v.id))

    def _is_view(self, vid: int) -> bool:
        return any(s.view and vid in s.outputs for s in self.steps)

    @property
    def dynamic(self) -> bool:
        """Whether some value has a run-time dimension (memory figures count it as 1)."""
        return any(d is None for v in self.values for d in v.shape[1:]) or any(v.fold is None for v in self.values)

    def memory(self) -> dict:
        return {
            "planned_bytes_per_sample": self.planned_bytes_per_sample,
            "naive_bytes_per_sample": self.naive_bytes_per_sample,
            "run_time_dims_counted_as_1": self.dynamic,
        }

    @property
    def trainable_size(self) -> int:
        return sum(p.size for p in self.params if p.trainable)

    @property
    def non_trainable_size(self) -> int:
        return sum(p.size for p in self.params if not p.trainable)

    # ------------------------------------------------------------------ forms

    def to_dict(self) -> dict:
        def clean(obj):
            d = asdict(obj)
            for k, v in list(d.items()):
                if isinstance(v, tuple):
                    d[k] = list(v)
            return d

        return {
            "format": self.format,
            "model": self.model,
            "inputs": [{"name": n, "value": v} for n, v in self.inputs],
            "outputs": [{"name": n, "value": v} for n, v in self.outputs],
            "values": [clean(v) for v in self.values],
            "params": [clean(p) for p in self.params],
            "steps": [clean(s) for s in self.steps],
            "buffers": [clean(b) for b in self.buffers],
            "memory": self.memory(),
        }

    def to_json(self) -> str:
        """Deterministic JSON: the same model file gives byte-identical text."""
        # Keys keep their (deterministic) order: step attributes stay in the layer's order.
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        if d.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a plan of format {PLAN_FORMAT}: {d.get('format')!r}")
        tup = lambda x: tuple(tuple(e) if isinstance(e, list) else e for e in x) if isinstance(x, list) else x  # noqa: E731
        values = [Value(**{**v, "shape": tuple(v["shape"])}) for v in d["values"]]
        params = [Param(**{**p, "shape": tuple(p["shape"])}) for p in d["params"]]
        steps = [Step(**{**s, "inputs": tup(s["inputs"]), "params": tup(s["params"]), "outputs": tup(s["outputs"]),
                         "masks": tup(s.get("masks", []))}) for s in d["steps"]]  # fmt: skip
        buffers = [Buffer(**b) for b in d["buffers"]]
        return cls(d["model"], [(i["name"], i["value"]) for i in d["inputs"]],
                   [(o["name"], o["value"]) for o in d["outputs"]], values, params, steps, buffers)  # fmt: skip

    def to_text(self) -> str:
        vals = {v.id: v for v in self.values}
        lines = [f"plan {self.format} model={self.model}"]
        for name, vid in self.inputs:
            lines.append(f"input %{vid} = {name} : {vals[vid].type_text()}")
        for p in self.params:
            kind = "trainable" if p.trainable else "non-trainable"
            lines.append(f"param @{p.name} : f32[{','.join(str(d) for d in p.shape)}] {kind}")
        for s in self.steps:
            outs = ", ".join(f"%{o}" for o in s.outputs)
            args = ", ".join([f"%{i}" for i in s.inputs] + [f"@{p}" for p in s.params]
                             + [f"mask=%{m}" for m in s.masks if m >= 0])  # fmt: skip
            attrs = " ".join(f"{k}={_attr_text(v)}" for k, v in s.attrs.items())
            types = ", ".join(vals[o].type_text() for o in s.outputs)
            notes = []
            if s.view:
                notes.append("view")
            if s.inplace:
                notes.append("in place")
            if s.training_only:
                notes.append("training only")
            bufs = sorted({vals[o].buffer for o in s.outputs if vals[o].buffer is not None})
            notes.append(" ".join(f"buf{b}" for b in bufs))
            head = f"{outs} = {s.op}({args})" + (f" {attrs}" if attrs else "")
            lines.append(f"{head} : {types}  # {s.node}; {', '.join(n for n in notes if n)}")
        for name, vid in self.outputs:
            lines.append(f"output {name} = %{vid}")
        m = self.memory()
        lines.append(
            f"# activation memory per sample: planned {m['planned_bytes_per_sample']:,} bytes in "
            f"{len(self.buffers)} buffers, naive {m['naive_bytes_per_sample']:,} bytes"
            + (" (run-time dimensions counted as 1)" if m["run_time_dims_counted_as_1"] else "")
        )
        return "\n".join(lines) + "\n"


def _attr_text(v) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
