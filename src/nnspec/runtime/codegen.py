"""Write a plan as the source text of one Numba function (a long plan: a few, see CHUNK_STEPS).

The generated module holds ``nnspec_run(in_0, ..., tp, ntp, ws, out_0, ...)``: it slices every
parameter out of the flat trainable (``tp``) and non-trainable (``ntp``) arrays, every
activation out of one workspace array ``ws`` (``n`` rows per sample, buffers at the offsets the
plan assigned), calls each step's kernels in order, and writes the outputs into the arrays the
caller passes (``Executor.new_outputs``; the last steps compute straight into them). Returning
nothing is cheaper than returning new arrays: boxing a returned array cost about a microsecond
per call, a third of the seed MLP's batch-1 time. The batch size ``n`` is read
from the first input at run time, so no batch size ever triggers a compilation. Each step's
lines come from its layer's ``LayerDef.emit`` (the family module knows its kernels); the few
plan-level ops (views, masks) are written here.
"""

from __future__ import annotations

import math
import re

from ..compiler.plan import Plan, Step, Value
from ..layerdefs import REGISTRY

_OP_TO_DEF = {d.op: d for d in REGISTRY.values()}

_NP_DTYPES = {"float32": "np.float32", "float64": "np.float64", "int32": "np.int32", "int64": "np.int64",
              "int8": "np.int8", "uint8": "np.uint8", "bool": "np.bool_", "float16": "np.float16"}  # fmt: skip


class CodegenError(RuntimeError):
    """A plan holds an op the runtime has no kernel for."""


def _literal(v) -> str:
    """A constant argument of a kernel call. Typed as a NumPy scalar, not a Python literal: Numba
    would otherwise compile a specialization of the kernel for every distinct constant."""
    if isinstance(v, bool):
        return "np.bool_(True)" if v else "np.bool_(False)"
    if isinstance(v, int):
        return f"np.int64({v})"
    if isinstance(v, float):
        if math.isinf(v):
            return "np.float64(np.inf)" if v > 0 else "np.float64(-np.inf)"
        return f"np.float64({v!r})"
    return repr(v)


class Emit:
    """What a layer's ``emit`` sees of one step, and the helpers it writes code with.

    Attributes:
        attrs: the step's attributes (the layer's, defaults filled).
        x, y, p: variable names of the inputs, outputs and parameters (arrays with their full
            shapes: a value's first axis has ``rows`` entries, parameters have Keras's shapes).
        m: per input, the variable name of its mask (float32 ``(rows, steps)``) or None.
        x_shapes, y_shapes: the static shapes, first axis excluded.
        x_dtypes: the inputs' dtypes.
    """

    def __init__(self, gen: "_Generator", step: Step, x, y, p, m, x_vals, y_vals) -> None:
        self._gen = gen
        self.step = step
        self.attrs = step.attrs
        self.x, self.y, self.p, self.m = x, y, p, m
        self.x_shapes = [tuple(v.shape[1:]) for v in x_vals]
        self.y_shapes = [tuple(v.shape[1:]) for v in y_vals]
        self.x_dtypes = [v.dtype for v in x_vals]
        self._x_vals, self._y_vals = x_vals, y_vals

    def rows(self, i: int = 0, output: bool = False) -> str:
        """The expression for the first-axis length of input (or output) ``i``."""
        v = (self._y_vals if output else self._x_vals)[i]
        return _rows(v)

    def call(self, fn, *args) -> str:
        """``kernel(arg, ...)``: a call of a family module's kernel function."""
        name = self._gen.kernel(fn)
        return f"{name}({', '.join(a if isinstance(a, str) else _literal(a) for a in args)})"

    def kernel_name(self, fn) -> str:
        """The name the generated code calls family-module kernel ``fn`` by."""
        return self._gen.kernel(fn)

    def fresh(self, prefix: str) -> str:
        """A new variable name of the generated function."""
        return self._gen.fresh(prefix)

    empty = "EMPTY"  # a zero-length float32 array, for an absent parameter (use_bias=False)

    def lit(self, v) -> str:
        return _literal(v)

    def tmp(self, shape: str, dtype: str = "np.float32") -> str:
        """Allocate a scratch array ``np.empty(shape, dtype)`` and return its name."""
        name = self._gen.fresh("t")
        self._gen.line(f"{name} = np.empty({shape}, {dtype})")
        return name

    def per_sample(self, var: str, output: bool = False, i: int = 0) -> str:
        """``var`` (input or output ``i``) seen as 2-D: (rows, values per sample)."""
        shape = (self.y_shapes if output else self.x_shapes)[i]
        return f"{var}.reshape(({self.rows(i, output)}, {math.prod(shape)}))"

    def flat2(self, var: str, shape: tuple, rows: str) -> str:
        """``var`` seen as 2-D: (rows * all but the last axis, last axis)."""
        lead = math.prod(shape[:-1]) if len(shape) > 1 else 1
        r = rows if lead == 1 else f"{rows} * {lead}"
        return f"{var}.reshape(({r}, {shape[-1] if shape else 1}))"


def _rows(v: Value) -> str:
    if v.fold == 1:
        return "n"
    if v.fold is None:  # the runtime specializes plans to the input's dimensions first
        raise CodegenError("a value folds a time axis known only at run time; specialize the plan first")
    return f"n * {v.fold}"


def _shape_expr(v: Value) -> str:
    dims = [_rows(v)] + [str(d) for d in v.shape[1:]]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


# Plans longer than this run as several compiled functions (see _Generator._chunks).
CHUNK_STEPS = 32
# variables bound once and read by later steps: values, parameters, and in training plans
# gradients of values (g), of parameters (dp) and saved arrays (s)
_DEF = re.compile(r"^([vpgs]\d+|dp\d+) = ")
_VAR = re.compile(r"\b([vpgs]\d+|dp\d+)\b")


class _Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.lines: list[str] = []
        self.defs: dict[str, int] = {}  # variable -> the index of the line binding it
        self.step_starts: list[int] = []  # the first line of each step
        self.imports: dict = {}  # kernel fn -> name
        self.module_aliases: dict = {}
        self.counter = 0
        self.vals = {v.id: v for v in plan.values}
        self.buffer_offsets: dict[int, int] = {}
        off = 0
        for b in plan.buffers:
            self.buffer_offsets[b.id] = off
            off += b.values_per_sample
        self.ws_per_sample = off
        # The caller passes the output arrays (``out_k``, shaped as the outputs). An output
        # computed by a non-view, non-in-place step is written straight into its array; the
        # others (views, inputs, an output named twice) are copied into theirs at the end.
        in_ids = {vid for _, vid in plan.inputs}
        fresh: dict[int, int] = {}  # value id -> the output array it is computed in
        for k, (_, vid) in enumerate(plan.outputs):
            if vid in in_ids or vid in fresh:
                continue
            step = next((st for st in plan.steps if vid in st.outputs), None)
            if step is not None and not step.view and not step.inplace:
                fresh[vid] = k
        self.fresh_outputs = fresh

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def line(self, text: str) -> None:
        found = _DEF.match(text)
        if found:  # where each value and parameter variable is bound, for chunked plans
            self.defs.setdefault(found.group(1), len(self.lines))
        self.lines.append("    " + text)

    def kernel(self, fn) -> str:
        if fn not in self.imports:
            mod = fn.__module__
            if mod not in self.module_aliases:
                self.module_aliases[mod] = f"_m{len(self.module_aliases)}"
            self.imports[fn] = (f"k_{fn.__name__}", self.module_aliases[mod], fn.__name__)
        return self.imports[fn][0]

    def value_var(self, vid: int) -> str:
        return f"v{vid}"

    def generate(self) -> str:
        plan = self.plan
        in_names = [f"in_{i}" for i in range(len(plan.inputs))]
        self.line(f"n = {in_names[0]}.shape[0]" if in_names else "n = 1")
        for (name, vid), var in zip(plan.inputs, in_names):
            self.line(f"{self.value_var(vid)} = {var}")
        params = {p.name: p for p in plan.params}
        used = []
        for s in plan.steps:
            for pn in s.params:
                if pn not in used:
                    used.append(pn)
        pvar = {}
        for i, pn in enumerate(used):
            p = params[pn]
            src = "tp" if p.trainable else "ntp"
            shape = ", ".join(str(d) for d in p.shape) + ("," if len(p.shape) == 1 else "")
            pvar[pn] = f"p{i}"
            self.line(f"p{i} = {src}[{p.offset}:{p.offset + p.size}].reshape(({shape}))  # {pn}")
        for s in plan.steps:
            self.emit_step(s, pvar)
        for k, (name, vid) in enumerate(plan.outputs):
            if self.fresh_outputs.get(vid) != k:  # a view, an input, or an output named twice
                self.line(f"out_{k}[:] = {self.value_var(vid)}")
        self.line("return")
        out_names = [f"out_{k}" for k in range(len(plan.outputs))]
        signature = ", ".join(in_names + ["tp", "ntp", "ws"] + out_names)
        decorator = "@njit(cache=True, nogil=True, error_model='numpy')"
        if len(plan.steps) > CHUNK_STEPS:
            body = self.chunks("nnspec_run", signature, decorator)
        else:
            body = [decorator, f"def nnspec_run({signature}):", *self.lines]
        header = [
            "# Generated by nnspec from a plan; do not edit. One function runs the whole plan.",
            "import numpy as np",
            "from numba import njit",
            "from nnspec.runtime.kernels import jit",
        ]
        for mod, alias in self.module_aliases.items():
            header.append(f"import {mod} as {alias}")
        for fn, (name, alias, attr) in self.imports.items():
            header.append(f"{name} = jit({alias}.{attr})")
        header.append("EMPTY = np.zeros(0, np.float32)")
        header.append("")
        header.append("")
        return "\n".join(header + body) + "\n"

    def chunks(self, fname: str, signature: str, decorator: str) -> list[str]:
        """A large plan as several compiled functions of CHUNK_STEPS steps each, which a Python
        ``fname`` calls in turn: the first holds the lines before the first step, and each
        re-binds the values and parameters it reads from earlier parts (views of ``ws``,
        ``tp``, ``ntp``, the inputs and outputs; cheap), so no state passes between them but
        the arrays. Numba compiles a function in time that grows faster than its length
        (measured: 40 steps 10 s, 160 steps 88 s in one function), so many short functions
        compile in far less time; the Python calls between them cost a few microseconds,
        against a plan that long runs for milliseconds."""
        bounds = [0, *self.step_starts[CHUNK_STEPS::CHUNK_STEPS], len(self.lines)]
        out: list[str] = []
        names = []
        for k in range(len(bounds) - 1):
            lo, hi = bounds[k], bounds[k + 1]
            lines = self.lines[lo:hi]
            needed: set[int] = set()
            todo = [name for line in lines for name in _VAR.findall(line)]
            while todo:
                var = todo.pop()
                at = self.defs.get(var)
                if at is None or lo <= at < hi or at in needed:
                    continue
                needed.add(at)
                todo += _VAR.findall(self.lines[at])
            first = [self.lines[0]] if lo > 0 else []  # n = ...
            rebound = first + [self.lines[i] for i in sorted(needed)]
            name = f"{fname}_{k}"
            names.append(name)
            body = rebound + lines
            if not body[-1].strip().startswith("return"):
                body.append("    return")
            out += [decorator, f"def {name}({signature}):", *body, "", ""]
        out.append(f"def {fname}({signature}):")
        out += [f"    {name}({signature})" for name in names]
        return out

    def bind_output(self, vid: int) -> str:
        v = self.vals[vid]
        var = self.value_var(vid)
        if vid in self.fresh_outputs:
            self.line(f"{var} = out_{self.fresh_outputs[vid]}")
            return var
        size = v.values_per_sample
        off = self.buffer_offsets[v.buffer]
        self.line(f"{var} = ws[{off} * n:{off} * n + n * {size}].reshape({_shape_expr(v)})")
        return var

    def emit_step(self, s: Step, pvar: dict) -> None:
        self.step_starts.append(len(self.lines))
        self.line(f"# {s.op} {s.node}")
        if s.view:
            src = self.value_var(s.inputs[0])
            for o in s.outputs:
                self.line(f"{self.value_var(o)} = {src}.reshape({_shape_expr(self.vals[o])})")
            return
        if s.op == "mask_not_equal_zero":
            (o,) = s.outputs
            var = self.bind_output(o)
            from ..layerdefs import embedding

            self.line(self._call(embedding.mask_not_equal_zero, self.value_var(s.inputs[0]), var))
            return
        if s.op == "mask_any_not_equal":  # Masking: steps whose features all equal mask_value
            (o,) = s.outputs
            var = self.bind_output(o)
            from ..layerdefs import core

            x = self.vals[s.inputs[0]]
            x3 = f"{self.value_var(s.inputs[0])}.reshape(({_rows(x)}, {x.shape[1]}, {x.shape[2]}))"
            self.line(self._call(core.mask_any_not_equal, x3, var, _literal(s.attrs["mask_value"])))
            return
        if s.op == "mask_or":
            (o,) = s.outputs
            var = self.bind_output(o)
            self.line(f"{var}[:] = {self.value_var(s.inputs[0])}")
            for i in s.inputs[1:]:
                self.line(f"np.maximum({var}, {self.value_var(i)}, {var})")
            return
        if s.op == "mask_concat":  # masks of sequences joined along time; "ones": unmasked inputs
            (o,) = s.outputs
            var = self.bind_output(o)
            col = 0
            for k, i in enumerate(s.inputs):
                steps = self.vals[i].shape[1]
                if k in s.attrs.get("ones", []):
                    self.line(f"{var}[:, {col}:{col + steps}] = 1.0")
                else:
                    self.line(f"{var}[:, {col}:{col + steps}] = {self.value_var(i)}")
                col += steps
            return
        defn = _OP_TO_DEF.get(s.op)
        if defn is None or defn.emit is None:
            raise CodegenError(f"no kernel for op '{s.op}' (node '{s.node}') in this version of nnspec")
        # An in-place step's output aliases its input only when buffer assignment gave both the
        # same buffer (it declines for model inputs and values still read later): binding the
        # output to its buffer then gives a view of the same memory, with the output's shape.
        ys = [self.bind_output(o) for o in s.outputs]
        xs = [self.value_var(i) for i in s.inputs]
        masks = [self.value_var(m) if m >= 0 else None for m in s.masks] if s.masks else [None] * len(xs)
        e = Emit(self, s, xs, ys, [pvar[p] for p in s.params], masks,
                 [self.vals[i] for i in s.inputs], [self.vals[o] for o in s.outputs])  # fmt: skip
        for text in defn.emit(e):
            self.line(text)

    def _call(self, fn, *args) -> str:
        return f"{self.kernel(fn)}({', '.join(args)})"


def generate(plan: Plan) -> tuple[str, int]:
    """The module source of ``plan``'s run function, and the workspace floats per sample."""
    g = _Generator(plan)
    src = g.generate()
    return src, g.ws_per_sample
