"""Expressions: the small, safe language of custom layers' ``call`` and of custom losses.

A Keras user writes a custom layer's ``call`` or a custom loss with ``keras.ops``::

    return ops.matmul(inputs, self.w) + self.b
    return ops.mean(ops.square(y_true - y_pred), axis=-1)

nnspec takes the same text, as a string in the model file, and reads it with Python's own
parser (``ast.parse``, which never executes anything), keeping only what this module knows:
numbers, the names the context declares (a layer's ``inputs``, weights and arguments; a loss's
``y_true`` and ``y_pred``), the operators ``+ - * / ** @`` and unary ``-``, and calls of the
functions in :data:`FUNCTIONS` (written ``f(...)``, ``ops.f(...)`` or ``keras.ops.f(...)``;
``self.w`` is ``w``). Anything else is refused with the column where it starts. Nothing in a
file is ever run as Python.

An expression becomes a list of :class:`Node` (a DAG in evaluation order, constants folded)
that every stage reads:

- :func:`infer`: the static shape of every node, with Keras's broadcasting (right-aligned; a
  size 1 stretches), the batch axis kept first;
- :func:`evaluate`: a plain NumPy reference;
- :func:`forward_lines` / :func:`backward_lines`: Numba source lines computing the value, and
  adding the gradient of every leaf that needs one, for generated plan functions. Array
  expressions compile to fused loops; matrix products go through BLAS (``np.dot``); the
  reductions, activations and broadcast gradients call the helpers below.

Gradients follow PyTorch's autograd on Keras's torch backend: ``maximum``/``minimum`` split a
tie evenly, ``clip`` passes the gradient at its bounds, ``abs'(0) = 0``, ``max``/``min`` over
axes share the gradient evenly among tied entries (``torch.amax``).
"""

from __future__ import annotations

import ast
import difflib
import math
from dataclasses import dataclass, field

from . import activations
from .base import offset_grid

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("offset_grid",)  # called by kernels: compiled in place by the runtime

# name -> (kind, the ops arguments it takes after the tensors)
UNARY = {
    "exp": "np.exp({})", "log": "np.log({})", "sqrt": "np.sqrt({})", "square": "np.square({})",
    "abs": "np.abs({})", "absolute": "np.abs({})", "negative": "np.negative({})", "tanh": "np.tanh({})",
    "sin": "np.sin({})", "cos": "np.cos({})", "log1p": "np.log1p({})", "expm1": "np.expm1({})",
    "sign": "np.sign({})", "rsqrt": "(np.float32(1.0) / np.sqrt({}))",
}  # fmt: skip
# keras.ops activation functions with their default arguments: computed by the activations kernel
ACTIVATION_FUNCTIONS = ("relu", "relu6", "sigmoid", "softplus", "softsign", "silu", "swish", "log_sigmoid",
                        "leaky_relu", "hard_sigmoid", "hard_silu", "hard_swish", "elu", "selu", "celu")  # fmt: skip
LAST_AXIS = ("softmax", "log_softmax")  # activations over one axis: only the last is supported
BINARY = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "true_divide": "/", "power": "**",
          "maximum": "np.maximum", "minimum": "np.minimum"}  # fmt: skip
REDUCTIONS = {"sum": 0, "mean": 1, "max": 2, "min": 3, "amax": 2, "amin": 3}
OTHER = ("matmul", "dot", "clip")
FUNCTIONS = tuple(sorted({*UNARY, *ACTIVATION_FUNCTIONS, *LAST_AXIS, *BINARY, *REDUCTIONS, *OTHER}))

_BINOPS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide", ast.Pow: "power",
           ast.MatMult: "matmul"}  # fmt: skip
MAX_NODES = 500


class ExprError(ValueError):
    """An expression the language refuses: ``column`` (0-based, in the text) says where."""

    def __init__(self, message: str, column: int = 0, hint: str | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.hint = hint


@dataclass(frozen=True)
class Node:
    """One operation: ``op`` is ``"leaf"`` (``name``), ``"const"`` (``value``), or a function
    of :data:`FUNCTIONS` applied to the nodes ``args`` (indices of earlier nodes)."""

    op: str
    args: tuple = ()
    name: str = ""
    value: float = 0.0
    axes: tuple | None = None  # reductions: the axes (None: all); softmax: the axis
    keepdims: bool = False
    bounds: tuple = ()  # clip: (min, max)


@dataclass
class Expression:
    text: str
    nodes: list = field(default_factory=list)

    @property
    def root(self) -> int:
        return len(self.nodes) - 1

    def leaves(self) -> list[str]:
        return [n.name for n in self.nodes if n.op == "leaf"]


def did_you_mean(name: str, options) -> str | None:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


# ----------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, text: str, tensors, consts: dict) -> None:
        self.text = text
        self.tensors = tuple(tensors)
        self.consts = dict(consts)
        self.nodes: list[Node] = []
        self.memo: dict = {}

    def add(self, node: Node) -> int:
        if node in self.memo:  # a repeated sub-expression is computed once
            return self.memo[node]
        if len(self.nodes) >= MAX_NODES:
            raise ExprError(f"the expression is too long (more than {MAX_NODES} operations)")
        self.nodes.append(node)
        self.memo[node] = len(self.nodes) - 1
        return self.memo[node]

    def const_of(self, i: int) -> float | None:
        n = self.nodes[i]
        return n.value if n.op == "const" else None

    def name_of(self, e) -> str | None:
        """``w``, ``self.w``, ``inputs[1]`` -> the declared name, else None."""
        if isinstance(e, ast.Name):
            return e.id
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self":
            return e.attr
        if isinstance(e, ast.Subscript) and isinstance(e.value, ast.Name):
            sl = e.slice
            if isinstance(sl, ast.Constant) and isinstance(sl.value, int) and not isinstance(sl.value, bool):
                return f"{e.value.id}[{sl.value}]"
        return None

    def func_name(self, f) -> str | None:
        parts = []
        while isinstance(f, ast.Attribute):
            parts.append(f.attr)
            f = f.value
        if not isinstance(f, ast.Name):
            return None
        parts.append(f.id)
        parts.reverse()
        if len(parts) == 1 or parts[:-1] in (["ops"], ["keras", "ops"]):
            return parts[-1]
        return None

    def fail(self, e, message: str, hint: str | None = None):
        raise ExprError(message, getattr(e, "col_offset", 0), hint)

    def visit(self, e) -> int:
        if isinstance(e, ast.Constant):
            if isinstance(e.value, bool) or not isinstance(e.value, (int, float)):
                self.fail(e, f"only numbers can be constants; found {e.value!r}")
            return self.add(Node("const", value=float(e.value)))
        name = self.name_of(e)
        if name is not None:
            if name in self.tensors:
                return self.add(Node("leaf", name=name))
            if name in self.consts:
                return self.add(Node("const", value=float(self.consts[name])))
            known = [*self.tensors, *self.consts]
            hint = did_you_mean(name, known)
            self.fail(e, f"unknown name '{name}'" + ("" if hint else f"; the names here are {', '.join(known) or 'none'}"),
                      hint)  # fmt: skip
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, (ast.USub, ast.UAdd)):
            a = self.visit(e.operand)
            if isinstance(e.op, ast.UAdd):
                return a
            c = self.const_of(a)
            return self.add(Node("const", value=-c)) if c is not None else self.add(Node("negative", (a,)))
        if isinstance(e, ast.BinOp) and type(e.op) in _BINOPS:
            return self.apply(e, _BINOPS[type(e.op)], [self.visit(e.left), self.visit(e.right)], {})
        if isinstance(e, ast.Call):
            fn = self.func_name(e.func)
            if fn is None:
                self.fail(e, "only functions of keras.ops can be called (written f(...), ops.f(...) "
                             "or keras.ops.f(...))")  # fmt: skip
            if fn not in FUNCTIONS:
                hint = did_you_mean(fn, FUNCTIONS)
                self.fail(e, f"unknown function '{fn}'" + ("" if hint else f"; the functions are {', '.join(FUNCTIONS)}"),
                          hint)  # fmt: skip
            if any(isinstance(a, ast.Starred) for a in e.args) or any(k.arg is None for k in e.keywords):
                self.fail(e, f"{fn}: * and ** arguments are not supported")
            kwargs = {k.arg: k.value for k in e.keywords}
            return self.apply(e, fn, list(e.args), kwargs)
        what = type(e).__name__
        self.fail(e, f"{what} is not part of the expression language (numbers, names, + - * / ** @, "
                     "and calls of keras.ops functions)")  # fmt: skip

    def literal(self, e, fn: str, what: str):
        """A constant argument (axis, keepdims, clip bounds): a number, a bool, None, or a tuple
        or list of ints."""
        if isinstance(e, ast.Constant) and (e.value is None or isinstance(e.value, (int, float, bool))):
            return e.value
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub) and isinstance(e.operand, ast.Constant):
            v = e.operand.value
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
        if isinstance(e, (ast.Tuple, ast.List)):
            return tuple(self.literal(x, fn, what) for x in e.elts)
        name = self.name_of(e)
        if name in self.consts:
            return self.consts[name]
        self.fail(e, f"{fn}: {what} must be a constant")

    def apply(self, e, fn: str, args: list, kwargs: dict) -> int:
        def take(names, n_tensors):
            """Bind positional and keyword arguments to ``names``; the first n_tensors are tensors."""
            bound = {}
            if len(args) > len(names):
                self.fail(e, f"{fn} takes at most {len(names)} arguments; found {len(args)}")
            for nm, a in zip(names, args):
                bound[nm] = a
            for k, v in kwargs.items():
                if k not in names:
                    self.fail(e, f"{fn}: unknown argument '{k}'", did_you_mean(k, names))
                if k in bound:
                    self.fail(e, f"{fn}: argument '{k}' given twice")
                bound[k] = v
            for nm in names[:n_tensors]:
                if nm not in bound:
                    self.fail(e, f"{fn}: missing argument '{nm}'")
            return bound

        def tensor(a):
            return a if isinstance(a, int) else self.visit(a)

        if fn in BINARY or fn in ("matmul", "dot"):
            b = take(("x1", "x2"), 2)
            x1, x2 = tensor(b["x1"]), tensor(b["x2"])
            c1, c2 = self.const_of(x1), self.const_of(x2)
            op = "matmul" if fn == "dot" else ("divide" if fn == "true_divide" else fn)
            if c1 is not None and c2 is not None and op != "matmul":
                return self.add(Node("const", value=float(_fold(op, c1, c2))))
            if op == "matmul" and (c1 is not None or c2 is not None):
                self.fail(e, f"{fn}: both operands must be tensors")
            return self.add(Node(op, (x1, x2)))
        if fn in UNARY or fn in ACTIVATION_FUNCTIONS:
            b = take(("x",), 1)
            x = tensor(b["x"])
            c = self.const_of(x)
            if c is not None:
                import numpy as _np

                return self.add(Node("const", value=float(evaluate_node(fn, [_np.float32(c)], Node(fn)))))
            op = {"absolute": "abs", "swish": "silu", "hard_swish": "hard_silu"}.get(fn, fn)
            return self.add(Node(op, (x,)))
        if fn in LAST_AXIS:
            b = take(("x", "axis"), 1)
            axis = self.literal(b["axis"], fn, "axis") if "axis" in b else -1
            if not isinstance(axis, int) or isinstance(axis, bool):
                self.fail(e, f"{fn}: axis must be an integer")
            return self.add(Node(fn, (tensor(b["x"]),), axes=(axis,)))
        if fn in REDUCTIONS:
            b = take(("x", "axis", "keepdims"), 1)
            axis = self.literal(b["axis"], fn, "axis") if "axis" in b else None
            keep = self.literal(b["keepdims"], fn, "keepdims") if "keepdims" in b else False
            if not isinstance(keep, bool):
                self.fail(e, f"{fn}: keepdims must be True or False")
            if axis is not None:
                axis = axis if isinstance(axis, tuple) else (axis,)
                if not all(isinstance(a, int) and not isinstance(a, bool) for a in axis) or not axis:
                    self.fail(e, f"{fn}: axis must be None, an integer or a tuple of integers")
            op = {"amax": "max", "amin": "min"}.get(fn, fn)
            return self.add(Node(op, (tensor(b["x"]),), axes=axis, keepdims=keep))
        # clip
        b = take(("x", "x_min", "x_max"), 3)
        lo = self.literal(b["x_min"], fn, "x_min")
        hi = self.literal(b["x_max"], fn, "x_max")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            self.fail(e, "clip: x_min and x_max must be numbers")
        return self.add(Node("clip", (tensor(b["x"]),), bounds=(float(lo), float(hi))))


def _fold(op: str, a: float, b: float) -> float:
    import numpy as _np

    a32, b32 = _np.float32(a), _np.float32(b)
    with _np.errstate(all="ignore"):
        return {
            "add": lambda: a32 + b32, "subtract": lambda: a32 - b32, "multiply": lambda: a32 * b32,
            "divide": lambda: a32 / b32, "power": lambda: a32**b32, "maximum": lambda: max(a32, b32),
            "minimum": lambda: min(a32, b32),
        }[op]()  # fmt: skip


def parse(text: str, tensors, consts: dict | None = None) -> Expression:
    """Read ``text`` (a Python expression; a leading ``return`` is allowed) over the tensor
    names ``tensors`` and the numeric constants ``consts``. Raises :class:`ExprError`."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("the expression is empty")
    src = text.strip()
    offset = len(text) - len(text.lstrip())
    if src.startswith("return ") or src.startswith("return\t"):
        offset += 7
        src = src[7:].lstrip()
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as err:
        raise ExprError(f"not a valid expression: {err.msg}", offset + max(0, (err.offset or 1) - 1)) from None
    p = _Parser(src, tensors, consts or {})
    try:
        root = p.visit(tree.body)
    except ExprError as err:
        err.column += offset
        raise
    except RecursionError:
        raise ExprError("the expression is nested too deeply") from None
    expr = Expression(text, _reachable(p.nodes, root))
    if not any(n.op == "leaf" for n in expr.nodes):
        raise ExprError("the expression uses none of its tensors (" + ", ".join(tensors) + ")")
    return expr


def _reachable(nodes: list, root: int) -> list:
    """The nodes ``root`` depends on, renumbered in evaluation order, the root last."""
    need = set()
    stack = [root]
    while stack:
        i = stack.pop()
        if i not in need:
            need.add(i)
            stack.extend(nodes[i].args)
    order = sorted(need)
    order.remove(root)
    order.append(root)
    new = {old: k for k, old in enumerate(order)}
    return [_renumber(nodes[i], new) for i in order]


def _renumber(n: Node, new: dict) -> Node:
    from dataclasses import replace

    return replace(n, args=tuple(new[a] for a in n.args))


# ----------------------------------------------------------------------------- shapes

BATCH = "batch"  # marks the batch axis in a shape


def _broadcast(op: str, a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None or y is None:  # a run-time length against a fixed one: trust the input
            out.append(y if x is None else x)
        else:
            raise ValueError(f"{op}: cannot broadcast {_fmt(a)} and {_fmt(b)}")
    out.reverse()
    shape = tuple(out)
    if BATCH in shape[1:]:
        raise ValueError(f"{op}: {_fmt(a)} and {_fmt(b)} broadcast to {_fmt(shape)}, which moves the batch axis")
    return shape


def _fmt(shape: tuple) -> str:
    inner = ", ".join("None" if d in (None, BATCH) else str(d) for d in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


def _axes(op: str, axes, rank: int) -> tuple:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor of rank {rank}")
        out.append(a % rank)
    return tuple(sorted(set(out)))


def infer(expr: Expression, leaf_shapes: dict) -> list[tuple]:
    """The shape of every node, given each leaf's (``BATCH`` first for a batched tensor).
    Raises ValueError naming the function and the shapes."""
    shapes: list[tuple] = []
    for n in expr.nodes:
        if n.op == "leaf":
            shapes.append(tuple(leaf_shapes[n.name]))
        elif n.op == "const":
            shapes.append(())
        elif n.op in BINARY:
            shapes.append(_broadcast(n.op, shapes[n.args[0]], shapes[n.args[1]]))
        elif n.op == "matmul":
            a, b = shapes[n.args[0]], shapes[n.args[1]]
            if len(a) < 2 or len(b) < 2:
                raise ValueError(f"matmul: needs operands of rank 2 or more; got {_fmt(a)} and {_fmt(b)}")
            if a[-1] != b[-2] and None not in (a[-1], b[-2]):
                raise ValueError(f"matmul: {_fmt(a)} @ {_fmt(b)}: {a[-1]} columns against {b[-2]} rows")
            if BATCH in b and (len(a) != len(b) or BATCH not in a):
                raise ValueError(f"matmul: {_fmt(a)} @ {_fmt(b)}: a batched right operand needs a left one of "
                                 "the same rank")  # fmt: skip
            if len(b) > 2 and a[:-2] != b[:-2]:
                raise ValueError(f"matmul: {_fmt(a)} @ {_fmt(b)}: the leading axes must be equal")
            shapes.append(a[:-1] + (b[-1],))
        elif n.op in REDUCTIONS:
            x = shapes[n.args[0]]
            axes = tuple(range(len(x))) if n.axes is None else _axes(n.op, n.axes, len(x))
            if BATCH in x and x.index(BATCH) in axes:
                raise ValueError(f"{n.op}: reducing over the batch axis would mix the samples of a batch; "
                                 "give axis= without it")  # fmt: skip
            shapes.append(tuple(1 if i in axes else d for i, d in enumerate(x)) if n.keepdims
                          else tuple(d for i, d in enumerate(x) if i not in axes))  # fmt: skip
        elif n.op in LAST_AXIS:
            x = shapes[n.args[0]]
            if not x or _axes(n.op, n.axes, len(x)) != (len(x) - 1,):
                raise ValueError(f"{n.op}: only the last axis is supported")
            shapes.append(x)
        else:  # unary, activations, clip
            shapes.append(shapes[n.args[0]])
    return shapes


# ----------------------------------------------------------------------------- reference


def evaluate_node(op: str, vals: list, n: Node):
    """One node in plain NumPy (the reference of the kernels), in the operands' dtype."""
    x = vals[0] if vals else None
    npm = np_mod()
    f32 = npm.result_type(*vals).type if vals else npm.float32
    with npm.errstate(all="ignore"):
        if op in BINARY:
            a, b = vals
            r = {"add": lambda: a + b, "subtract": lambda: a - b, "multiply": lambda: a * b,
                 "divide": lambda: a / b, "power": lambda: npm.power(a, b), "maximum": lambda: npm.maximum(a, b),
                 "minimum": lambda: npm.minimum(a, b)}[op]()  # fmt: skip
        elif op == "matmul":
            r = npm.matmul(vals[0], vals[1])
        elif op in REDUCTIONS:
            axes = None if n.axes is None else tuple(a % x.ndim for a in n.axes)
            fn = {"sum": npm.sum, "mean": npm.mean, "max": npm.max, "min": npm.min}[op]
            r = fn(x, axis=axes, keepdims=n.keepdims)
        elif op == "clip":
            r = npm.clip(x, f32(n.bounds[0]), f32(n.bounds[1]))
        elif op in LAST_AXIS or op in ACTIVATION_FUNCTIONS or op in ("silu", "hard_silu"):
            r = activations.reference(op, x)
        elif op == "rsqrt":
            r = 1.0 / npm.sqrt(x)
        else:
            r = getattr(npm, {"abs": "abs"}.get(op, op))(x)
    return npm.asarray(r, dtype=f32)


def np_mod():
    import numpy

    return numpy


def evaluate(expr: Expression, values: dict):
    """The expression's value in plain NumPy, given every leaf's array; computed in the leaves'
    float dtype (float64 leaves give a float64 reference, for finite differences)."""
    npm = np_mod()
    leaves = [npm.asarray(values[n.name]) for n in expr.nodes if n.op == "leaf"]
    dtype = npm.result_type(npm.float32, *[a.dtype for a in leaves if a.dtype.kind == "f"])
    vals = []
    for n in expr.nodes:
        if n.op == "leaf":
            vals.append(npm.asarray(values[n.name], dtype))
        elif n.op == "const":
            vals.append(dtype.type(n.value))
        else:
            vals.append(npm.asarray(evaluate_node(n.op, [vals[a] for a in n.args], n), dtype))
    return vals[-1]


# ----------------------------------------------------------------------------- kernels


def act_forward(x, code):
    """A new array ``act(x)`` (any rank, activations' code), over rows of the last axis."""
    y = np.empty(x.shape, np.float32)
    cols = x.shape[-1] if x.ndim > 0 else 1
    xc = np.ascontiguousarray(x)
    activations.activation_forward(xc.reshape((xc.size // max(cols, 1), cols)),
                                   y.reshape((y.size // max(cols, 1), cols)), code)  # fmt: skip
    return y


def act_backward(x, y, g, code):
    """A new array: the gradient through ``y = act(x)`` given ``g``, the gradient of ``y``."""
    dx = np.empty(x.shape, np.float32)
    cols = x.shape[-1] if x.ndim > 0 else 1
    rows = x.size // max(cols, 1)
    xc = np.ascontiguousarray(x)
    yc = np.ascontiguousarray(y)
    gc = np.ascontiguousarray(g)
    activations.activation_backward(xc.reshape((rows, cols)), yc.reshape((rows, cols)),
                                    gc.reshape((rows, cols)), dx.reshape((rows, cols)), code, False)  # fmt: skip
    return dx


def reduce_mid(x3, op):
    """Reduce the middle axis of ``x3`` (outer, mid, inner) with op 0 sum, 1 mean, 2 max, 3
    min: a new (outer, inner) array. Sums accumulate in float64."""
    outer, mid, inner = x3.shape
    y = np.empty((outer, inner), np.float32)
    acc = np.empty(inner, np.float64)
    for o in range(outer):
        for j in range(inner):
            acc[j] = 0.0 if op < 2 else x3[o, 0, j]
        for m in range(mid):
            for j in range(inner):
                v = x3[o, m, j]
                if op < 2:
                    acc[j] += v
                elif op == 2:
                    if v > acc[j] or v != v:
                        acc[j] = v
                elif v < acc[j] or v != v:
                    acc[j] = v
        for j in range(inner):
            y[o, j] = acc[j] / mid if op == 1 else acc[j]
    return y


def reduce_mid_backward(x3, y2, g2, op):
    """The gradient of :func:`reduce_mid` for ``x3``: a new (outer, mid, inner) array; max and
    min share each gradient evenly among the entries equal to the result."""
    outer, mid, inner = x3.shape
    dx = np.empty((outer, mid, inner), np.float32)
    for o in range(outer):
        for j in range(inner):
            if op < 2:
                v = g2[o, j] / mid if op == 1 else g2[o, j]
                for m in range(mid):
                    dx[o, m, j] = v
            else:
                ties = 0
                for m in range(mid):
                    if x3[o, m, j] == y2[o, j]:
                        ties += 1
                v = g2[o, j] / max(ties, 1)
                for m in range(mid):
                    dx[o, m, j] = v if x3[o, m, j] == y2[o, j] else 0.0
    return dx


def sum_to(g, gshape, tstrides, out):
    """``out += g`` summed over the axes where the target is broadcast: ``g`` flat over the
    index grid ``gshape``, ``out`` flat, ``tstrides`` its stride along each axis of the grid
    (0 where broadcast)."""
    offs = offset_grid(gshape, tstrides)
    for i in range(g.size):
        out[offs[i]] += g[i]


def bmm(a3, b3, ta, tb):
    """Batched product over the first axis of 3-D arrays, either operand transposed."""
    nb = a3.shape[0]
    m = a3.shape[2] if ta else a3.shape[1]
    k = b3.shape[1] if tb else b3.shape[2]
    y = np.empty((nb, m, k), np.float32)
    for i in range(nb):
        a = a3[i].T if ta else a3[i]
        b = b3[i].T if tb else b3[i]
        y[i] = np.dot(np.ascontiguousarray(a), np.ascontiguousarray(b))
    return y


KERNELS = (act_forward, act_backward, reduce_mid, reduce_mid_backward, sum_to, bmm)


# ----------------------------------------------------------------------------- code generation


class Writer:
    """What :func:`forward_lines` and :func:`backward_lines` need from the code generator: fresh
    variable names and the names of compiled kernels (``call(fn)`` -> the callable's name)."""

    def __init__(self, fresh, kernel) -> None:
        self.fresh = fresh
        self.kernel = kernel
        self.lines: list[str] = []

    def assign(self, expr: str, prefix: str = "ex") -> str:
        # "ex" (values) and "eg" (gradients): prefixes the plan generators never use
        v = self.fresh(prefix)
        self.lines.append(f"{v} = {expr}")
        return v


def _dims(shape: tuple, rows: str) -> list[str]:
    return [rows if d == BATCH else str(d) for d in shape]


def _tuple(dims: list[str]) -> str:
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _size(dims: list[str]) -> str:
    return " * ".join(dims) if dims else "1"


def _f32(v: float) -> str:
    if math.isinf(v):
        return "np.float32(np.inf)" if v > 0 else "np.float32(-np.inf)"
    if math.isnan(v):
        return "np.float32(np.nan)"
    return f"np.float32({v!r})"


def _split3(shape_dims: list[str], axes: tuple) -> tuple[str, str, str]:
    """(outer, mid, inner) of a contiguous run of ``axes``."""
    lo, hi = axes[0], axes[-1] + 1
    return _size(shape_dims[:lo]), _size(shape_dims[lo:hi]), _size(shape_dims[hi:])


def _runs(axes: tuple) -> list[tuple]:
    """Reduction axes as contiguous runs, the last run first (reducing it leaves earlier axes put)."""
    runs: list[list[int]] = []
    for a in axes:
        if runs and runs[-1][-1] == a - 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    return [tuple(r) for r in reversed(runs)]


def _reduce_axes(n: Node, rank: int) -> tuple:
    return tuple(range(rank)) if n.axes is None else _axes(n.op, n.axes, rank)


def forward_lines(w: Writer, expr: Expression, shapes: list, leaf_vars: dict, rows: str) -> list[str]:
    """Write the lines computing every node into ``w``; return each node's variable (a
    float32 array, or an ``np.float32`` for a constant)."""
    out: list[str] = []
    for i, n in enumerate(expr.nodes):
        dims = _dims(shapes[i], rows)
        args = [out[a] for a in n.args]
        if n.op == "leaf":
            out.append(leaf_vars[n.name])
        elif n.op == "const":
            out.append(_f32(n.value))
        elif n.op in BINARY:
            sym = BINARY[n.op]
            if sym.startswith("np."):
                out.append(w.assign(f"{sym}({args[0]}, {args[1]})"))
            else:
                out.append(w.assign(f"{args[0]} {sym} {args[1]}"))
        elif n.op in UNARY:
            out.append(w.assign(UNARY[n.op].format(args[0])))
        elif n.op == "negative":
            out.append(w.assign(f"-{args[0]}"))
        elif n.op in ACTIVATION_FUNCTIONS or n.op in LAST_AXIS or n.op in ("silu", "hard_silu"):
            out.append(w.assign(f"{w.kernel(act_forward)}({args[0]}, np.int64({_act_code(n.op)}))"))
        elif n.op == "clip":
            lo, hi = (_f32(b) for b in n.bounds)
            out.append(w.assign(f"np.minimum(np.maximum({args[0]}, {lo}), {hi})"))
        elif n.op == "matmul":
            out.append(_matmul(w, args[0], args[1], shapes[n.args[0]], shapes[n.args[1]], dims, rows, False, False))
        elif n.op in REDUCTIONS:
            out.append(_reduce(w, n, args[0], shapes[n.args[0]], dims, rows))
        else:  # pragma: no cover - parse() admits only the ops above
            raise AssertionError(n.op)
    return out


def _act_code(op: str) -> int:
    return activations.CODES[op]


def _contig(x: str) -> str:
    return f"np.ascontiguousarray({x})"


def _matmul(w: Writer, a: str, b: str, sa: tuple, sb: tuple, dims: list, rows: str, ta: bool, tb: bool) -> str:
    """``a @ b`` (shapes ``sa``, ``sb``, result dims ``dims``)."""
    da, db = _dims(sa, rows), _dims(sb, rows)
    if len(sb) == 2:
        a2 = f"{_contig(a)}.reshape(({_size(da[:-1])}, {da[-1]}))"
        return w.assign(f"np.dot({a2}, {b}).reshape({_tuple(dims)})")
    lead = _size(da[:-2])
    a3 = f"{_contig(a)}.reshape(({lead}, {da[-2]}, {da[-1]}))"
    b3 = f"{_contig(b)}.reshape(({lead}, {db[-2]}, {db[-1]}))"
    return w.assign(f"{w.kernel(bmm)}({a3}, {b3}, {ta}, {tb}).reshape({_tuple(dims)})")


def _reduce(w: Writer, n: Node, x: str, sx: tuple, dims: list, rows: str) -> str:
    code = REDUCTIONS[n.op]
    axes = _reduce_axes(n, len(sx))
    cur = _contig(x)
    cur_dims = _dims(sx, rows)
    count = None
    for run in _runs(axes):
        outer, mid, inner = _split3(cur_dims, run)
        op = 0 if code == 1 else code  # a mean is a sum divided once at the end
        cur = w.assign(f"{w.kernel(reduce_mid)}({cur}.reshape(({outer}, {mid}, {inner})), np.int64({op}))")
        cur_dims = cur_dims[: run[0]] + cur_dims[run[-1] + 1 :]
        count = mid if count is None else f"({count}) * ({mid})"
    if code == 1:
        cur = w.assign(f"({cur} / np.float32({count}))")
    return w.assign(f"{cur}.reshape({_tuple(dims)})")


def backward_lines(w: Writer, expr: Expression, shapes: list, vals: list, g_root: str, leaf_grads: dict,
                   rows: str) -> None:  # fmt: skip
    """Write the lines adding the gradient of every leaf in ``leaf_grads`` (name -> the variable
    of its gradient array, shaped as the leaf; accumulated into) given ``g_root``, the gradient
    of the root; ``vals`` are the node variables from :func:`forward_lines`."""
    need = [False] * len(expr.nodes)
    for i, n in enumerate(expr.nodes):
        need[i] = (n.op == "leaf" and leaf_grads.get(n.name) is not None) or any(need[a] for a in n.args)
    grads: list[str | None] = [None] * len(expr.nodes)
    grads[-1] = g_root
    if not need[-1]:
        return

    def add(i: int, g: str, gshape: tuple) -> None:
        """Send ``g`` (an array shaped ``gshape``) to node ``i``, summed over broadcast axes."""
        if not need[i]:
            return
        target = shapes[i]
        if tuple(gshape) != tuple(target):
            g = _sum_to(w, g, gshape, target, rows)
        if grads[i] is None:
            grads[i] = g
        else:
            grads[i] = w.assign(f"{grads[i]} + {g}", "eg")

    for i in range(len(expr.nodes) - 1, -1, -1):
        n = expr.nodes[i]
        g = grads[i]
        if g is None or n.op in ("leaf", "const"):
            continue
        s = shapes[i]
        args = [vals[a] for a in n.args]
        if n.op in BINARY:
            a, b = args
            ia, ib = n.args
            if n.op == "add":
                add(ia, g, s)
                add(ib, g, s)
            elif n.op == "subtract":
                add(ia, g, s)
                if need[ib]:
                    add(ib, w.assign(f"-{g}", "eg"), s)
            elif n.op == "multiply":
                if need[ia]:
                    add(ia, w.assign(f"{g} * {b}", "eg"), s)
                if need[ib]:
                    add(ib, w.assign(f"{g} * {a}", "eg"), s)
            elif n.op == "divide":
                if need[ia]:
                    add(ia, w.assign(f"{g} / {b}", "eg"), s)
                if need[ib]:
                    add(ib, w.assign(f"-{g} * {vals[i]} / {b}", "eg"), s)
            elif n.op == "power":
                if need[ia]:
                    add(ia, w.assign(f"{g} * {b} * np.power({a}, {b} - np.float32(1.0))", "eg"), s)
                if need[ib]:
                    add(ib, w.assign(f"{g} * {vals[i]} * np.log({a})", "eg"), s)
            else:  # maximum, minimum: the winner takes the gradient, a tie splits it
                cmp = ">" if n.op == "maximum" else "<"
                wa = w.assign(f"({a} {cmp} {b}).astype(np.float32) + ({a} == {b}).astype(np.float32) * np.float32(0.5)",
                              "eg")
                if need[ia]:
                    add(ia, w.assign(f"{g} * {wa}", "eg"), s)
                if need[ib]:
                    add(ib, w.assign(f"{g} * (np.float32(1.0) - {wa})", "eg"), s)
        elif n.op == "negative":
            add(n.args[0], w.assign(f"-{g}", "eg"), s)
        elif n.op in UNARY:
            x, y = args[0], vals[i]
            d = {
                "exp": f"{g} * {y}", "log": f"{g} / {x}", "sqrt": f"{g} * np.float32(0.5) / {y}",
                "square": f"{g} * np.float32(2.0) * {x}", "abs": f"{g} * np.sign({x})",
                "tanh": f"{g} * (np.float32(1.0) - {y} * {y})", "sin": f"{g} * np.cos({x})",
                "cos": f"-{g} * np.sin({x})", "log1p": f"{g} / ({x} + np.float32(1.0))",
                "expm1": f"{g} * ({y} + np.float32(1.0))", "sign": f"{g} * np.float32(0.0)",
                "rsqrt": f"{g} * np.float32(-0.5) * {y} / {x}",
            }[n.op]  # fmt: skip
            add(n.args[0], w.assign(d, "eg"), s)
        elif n.op in ACTIVATION_FUNCTIONS or n.op in LAST_AXIS or n.op in ("silu", "hard_silu"):
            add(n.args[0], w.assign(f"{w.kernel(act_backward)}({args[0]}, {vals[i]}, {g}, "
                                    f"np.int64({_act_code(n.op)}))", "eg"), s)  # fmt: skip
        elif n.op == "clip":
            lo, hi = (_f32(b) for b in n.bounds)
            x = args[0]
            add(n.args[0], w.assign(f"{g} * (({x} >= {lo}) & ({x} <= {hi})).astype(np.float32)", "eg"), s)
        elif n.op == "matmul":
            ia, ib = n.args
            sa, sb = shapes[ia], shapes[ib]
            a, b = args
            if len(sb) == 2:
                da, dg = _dims(sa, rows), _dims(s, rows)
                g2 = f"{_contig(g)}.reshape(({_size(dg[:-1])}, {dg[-1]}))"
                if need[ia]:
                    add(ia, w.assign(f"np.dot({g2}, {b}.T).reshape({_tuple(da)})", "eg"), sa)
                if need[ib]:
                    a2 = f"{_contig(a)}.reshape(({_size(da[:-1])}, {da[-1]}))"
                    add(ib, w.assign(f"np.dot({a2}.T, {g2})", "eg"), sb)
            else:
                if need[ia]:
                    add(ia, _matmul(w, g, b, s, sb, _dims(sa, rows), rows, False, True), sa)
                if need[ib]:
                    add(ib, _matmul(w, a, g, sa, s, _dims(sb, rows), rows, True, False), sb)
        elif n.op in REDUCTIONS:
            add(n.args[0], _reduce_backward(w, n, args[0], vals[i], g, shapes[n.args[0]], rows), shapes[n.args[0]])
        else:  # pragma: no cover
            raise AssertionError(n.op)
    for i, n in enumerate(expr.nodes):
        if n.op == "leaf" and grads[i] is not None and leaf_grads.get(n.name) is not None:
            dst = leaf_grads[n.name]
            src = grads[i]
            w.lines.append(f"np.add({dst}, {src}, {dst})")


def _reduce_backward(w: Writer, n: Node, x: str, y: str, g: str, sx: tuple, rows: str) -> str:
    """The gradient of a reduction for its input, run by run in the forward's order reversed."""
    code = REDUCTIONS[n.op]
    axes = _reduce_axes(n, len(sx))
    runs = _runs(axes)
    xd = _dims(sx, rows)
    if code in (2, 3) and len(runs) > 1:
        # max/min over axes in several runs: compare every entry with the result, broadcast back
        kept = tuple(1 if i in axes else d for i, d in enumerate(sx))
        kd = _dims(kept, rows)
        yk = f"{_contig(y)}.reshape({_tuple(kd)})"
        gk = f"{_contig(g)}.reshape({_tuple(kd)})"
        hit = w.assign(f"({x} == {yk}).astype(np.float32)", "eg")
        ties = w.assign(f"np.zeros({_tuple(kd)}, np.float32)", "eg")
        w.lines.append(f"{w.kernel(sum_to)}({hit}.reshape({hit}.size), {_tuple(xd)}, "
                       f"{_tuple(_strides(kept, sx, rows))}, {ties}.reshape({ties}.size))")  # fmt: skip
        return w.assign(f"{hit} * ({gk} / {ties})", "eg")
    # one run (or sum/mean over several): undo each run, innermost result first
    cur_dims = list(xd)
    stages = []  # (input dims of the stage, run)
    for run in runs:
        stages.append((list(cur_dims), run))
        cur_dims = cur_dims[: run[0]] + cur_dims[run[-1] + 1 :]
    grad = g
    if code == 1:
        total = " * ".join(f"({_split3(d, r)[1]})" for d, r in stages)
        grad = w.assign(f"{g} / np.float32({total})", "eg")
    for in_dims, run in reversed(stages):
        outer, mid, inner = _split3(in_dims, run)
        g2 = f"{_contig(grad)}.reshape(({outer}, {inner}))"
        if code in (2, 3):
            x3 = f"{_contig(x)}.reshape(({outer}, {mid}, {inner}))"
            y2 = f"{_contig(y)}.reshape(({outer}, {inner}))"
            grad = w.assign(f"{w.kernel(reduce_mid_backward)}({x3}, {y2}, {g2}, np.int64({code}))", "eg")
        else:
            grad = w.assign(f"{w.kernel(reduce_mid_backward)}(np.empty(({outer}, {mid}, {inner}), np.float32), "
                            f"np.empty(({outer}, {inner}), np.float32), {g2}, np.int64(0))", "eg")  # fmt: skip
    return w.assign(f"{grad}.reshape({_tuple(xd)})", "eg")


def _sum_to(w: Writer, g: str, gshape: tuple, target: tuple, rows: str) -> str:
    """``g`` (shaped ``gshape``) summed down to ``target``'s shape (broadcasting's adjoint)."""
    td = _dims(target, rows)
    out = w.assign(f"np.zeros({_tuple(td) if td else '(1,)'}, np.float32)", "eg")
    strides = _strides(target, gshape, rows)
    gd = _dims(gshape, rows)
    w.lines.append(f"{w.kernel(sum_to)}({_contig(g)}.reshape({_size(gd)}), {_tuple(gd)}, {_tuple(strides)}, "
                   f"{out}.reshape({out}.size))")  # fmt: skip
    if not td:
        return w.assign(f"{out}[0]", "eg")
    return out


def _strides(target: tuple, grid: tuple, rows: str) -> list[str]:
    """Row-major strides of ``target`` along each axis of ``grid`` (right-aligned; 0 where the
    target is broadcast or absent), as expressions: the batch axis's length is ``rows``."""
    padded = (1,) * (len(grid) - len(target)) + tuple(target)
    out = []
    acc = "1"
    for p, gdim in zip(reversed(padded), reversed(grid)):
        out.append("0" if (p == 1 and gdim != 1) else acc)
        acc = f"{acc} * {rows if p == BATCH else p}"
    out.reverse()
    return out

def eval_shape(value, names: dict) -> tuple:
    """A custom weight's shape: a list of dimensions (see :func:`eval_dim`), or one string
    written as Keras's ``add_weight(shape=...)`` takes it, ``"(input_shape[-1], self.units)"``."""
    if isinstance(value, str):
        try:
            tree = ast.parse(value.strip(), mode="eval")
        except SyntaxError as err:
            raise ExprError(f"not a valid expression: {err.msg}") from None
        body = tree.body
        if isinstance(body, (ast.Tuple, ast.List)):
            return tuple(eval_dim(ast.get_source_segment(value.strip(), e), names) for e in body.elts)
        return (eval_dim(value, names),)
    return tuple(eval_dim(v, names) for v in value)


def eval_dim(value, names: dict) -> int:
    """One entry of a custom weight's shape: an integer, or an expression over the layer's
    arguments and ``input_shape`` (Keras's ``build(input_shape)``: ``input_shape[-1]``, or
    ``input_shape[1][-1]`` for the second of several inputs) with ``+ - * //``. Raises
    ExprError (a dimension the input leaves unknown, a negative result, anything else)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ExprError(f"a dimension cannot be negative; found {value}")
        return value
    if not isinstance(value, str):
        raise ExprError(f"a dimension is an integer or an expression; found {value!r}")
    try:
        tree = ast.parse(value.strip(), mode="eval")
    except SyntaxError as err:
        raise ExprError(f"not a valid expression: {err.msg}") from None

    def ev(e):
        if isinstance(e, ast.Constant) and isinstance(e.value, int) and not isinstance(e.value, bool):
            return e.value
        if isinstance(e, ast.Name) or (isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                                       and e.value.id == "self"):  # fmt: skip
            nm = e.id if isinstance(e, ast.Name) else e.attr
            if nm not in names:
                raise ExprError(f"unknown name '{nm}'; the names here are {', '.join(names)}",
                                e.col_offset, did_you_mean(nm, names))  # fmt: skip
            return names[nm]
        if isinstance(e, ast.Subscript):
            seq = ev(e.value)
            idx = ev(e.slice)
            if not isinstance(seq, (tuple, list)) or not isinstance(idx, int):
                raise ExprError("only input_shape can be indexed, by an integer", e.col_offset)
            if not -len(seq) <= idx < len(seq):
                raise ExprError(f"index {idx} is out of range for a shape of {len(seq)} axes", e.col_offset)
            return seq[idx]
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
            v = ev(e.operand)
            return -v if isinstance(v, int) else v
        if isinstance(e, ast.BinOp) and isinstance(e.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
            a, b = ev(e.left), ev(e.right)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)):
                raise ExprError("a dimension computed from one that is not an integer (unknown until run time?)",
                                e.col_offset)  # fmt: skip
            if isinstance(e.op, ast.FloorDiv) and b == 0:
                raise ExprError("division by zero", e.col_offset)
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}.get(type(e.op)) if not isinstance(
                e.op, ast.FloorDiv) else a // b  # fmt: skip
        raise ExprError(f"{type(e).__name__} is not allowed in a dimension (integers, arguments, "
                        "input_shape[i], + - * //)", getattr(e, "col_offset", 0))  # fmt: skip

    v = ev(tree.body)
    if v is None:
        raise ExprError(f"'{value}' is not known until run time; a weight's shape must be fixed")
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ExprError(f"'{value}' gives {v!r}, not a dimension")
    return v


# ----------------------------------------------------------------------------- symbolic tensors
# Python code (a custom layer's ``call``, a loss function) run on these writes expression text:
# ``nnspec.ops`` and the operators build it, tracing in ``api/custom.py`` and ``runtime/losses.py``.


def text_of(v) -> str:
    """How a value is written in an expression: a symbolic value (a :class:`Sym`, or a traced
    number carrying its ``text``) by its text, a number by its literal, a tuple as a tuple."""
    if isinstance(getattr(v, "text", None), str) and isinstance(v, (Sym, int, float, tuple)):
        return v.text
    if isinstance(v, bool):
        return repr(v)
    if isinstance(v, (int, float)):
        return repr(float(v) if isinstance(v, float) else v)
    if isinstance(v, (tuple, list)):
        inner = ", ".join(text_of(e) for e in v)
        return f"({inner}{',' if len(v) == 1 else ''})"
    if v is None:
        return "None"
    raise TypeError(f"nnspec.ops: cannot use a {type(v).__name__} in a custom layer's call or a custom loss "
                    "(tensors, numbers, and the layer's numeric arguments only)")  # fmt: skip


class Sym:
    """A symbolic tensor while a custom layer's ``call`` or a loss function is traced: operators
    and ``nnspec.ops`` write the expression's text; what an expression cannot hold is refused."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _bin(self, op: str, other, reflected: bool = False) -> Sym:
        a, b = (text_of(other), self.text) if reflected else (self.text, text_of(other))
        return Sym(f"({a} {op} {b})")

    __add__ = lambda self, o: self._bin("+", o)  # noqa: E731
    __radd__ = lambda self, o: self._bin("+", o, True)  # noqa: E731
    __sub__ = lambda self, o: self._bin("-", o)  # noqa: E731
    __rsub__ = lambda self, o: self._bin("-", o, True)  # noqa: E731
    __mul__ = lambda self, o: self._bin("*", o)  # noqa: E731
    __rmul__ = lambda self, o: self._bin("*", o, True)  # noqa: E731
    __truediv__ = lambda self, o: self._bin("/", o)  # noqa: E731
    __rtruediv__ = lambda self, o: self._bin("/", o, True)  # noqa: E731
    __pow__ = lambda self, o: self._bin("**", o)  # noqa: E731
    __rpow__ = lambda self, o: self._bin("**", o, True)  # noqa: E731
    __matmul__ = lambda self, o: self._bin("@", o)  # noqa: E731
    __rmatmul__ = lambda self, o: self._bin("@", o, True)  # noqa: E731

    def __neg__(self) -> Sym:
        return Sym(f"(-{self.text})")

    def __pos__(self) -> Sym:
        return self

    def __getitem__(self, key):
        raise TypeError("nnspec expressions cannot index or slice tensors (inputs[i] of a custom layer with "
                        "several inputs is the only indexing they have)")  # fmt: skip

    def __bool__(self):
        raise TypeError("a custom layer's call or loss function cannot branch on tensor values: nnspec "
                        "traces it once into an expression")  # fmt: skip

    def _compare(self, other):
        raise TypeError("a custom layer's call or loss function cannot compare tensors (it cannot branch on "
                        "tensor values: nnspec traces it once into an expression; use ops.maximum, ops.clip...)")

    __lt__ = __le__ = __gt__ = __ge__ = _compare

    def __array__(self, *a, **k):
        raise TypeError("a custom layer's call or loss function cannot use NumPy on tensors: use nnspec.ops")

    def __repr__(self) -> str:
        return f"<symbolic tensor {self.text}>"


def render_call(fn: str, args, kwargs) -> Sym:
    """``fn(args..., key=value)`` as a symbolic tensor (``nnspec.ops``'s functions)."""
    parts = [text_of(a) for a in args] + [f"{k}={text_of(v)}" for k, v in kwargs.items()]
    return Sym(f"{fn}({', '.join(parts)})")
