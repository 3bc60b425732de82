"""Keras ops in a functional model's graph, read as nnspec layers.

Keras 3 lets a functional model apply ``keras.ops`` (and Python's operators) to symbolic
tensors between layers: MobileNetV3's ``hard_sigmoid`` is ``layers.ReLU(6.0)(x + 3.0) * (1.0 /
6.0)``. Its config then holds a node per op (``module`` ``keras.src.ops...``, the op's class name,
its arguments: tensors, numbers, lists of tensors). :func:`op_layer` makes each such node the
nnspec layer that computes the same:

- element-wise arithmetic, activations, ``clip``, ``matmul`` and reductions become a
  ``CustomLayer`` whose ``call`` is the op written in the expression language of custom layers
  (``layerdefs/expressions.py``), so it compiles into the plan and trains like any layer; the
  declaration is named ``Op<Class>`` (``OpAdd``, a numbered ``OpAdd2`` when another ``Add`` node
  computes something else, such as ``x + 3.0`` against ``x + y``);
- structural ops become built-in layers: ``concatenate`` a ``Concatenate``, ``reshape``,
  ``expand_dims`` and ``squeeze`` a ``Reshape`` (the batch axis kept), ``transpose`` with the
  batch axis first a ``Permute``, ``softmax`` along an axis a ``Softmax``, exact ``gelu`` an
  ``Activation``, ``cast`` to float32 an ``Identity``, and indexing (``GetItem``: integers,
  slices of step 1, ``...``) a chain of ``Reshape`` and ``Cropping2D`` layers
  (:func:`get_item_chain`).

Ops Keras records only to compute masks are left out by the reader (``keras_config.MASK_OPS``);
an op on the data path that has no equivalent here is an error naming it.
"""

from __future__ import annotations

import math

from .layer import layer_from_spec

UNARY = {
    "Abs": "abs", "Absolute": "abs", "Negative": "negative", "Square": "square", "Sqrt": "sqrt", "Rsqrt": "rsqrt",
    "Exp": "exp", "Log": "log", "Log1p": "log1p", "Expm1": "expm1", "Sin": "sin", "Cos": "cos", "Tanh": "tanh",
    "Sign": "sign", "Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Softplus": "softplus",
    "Softsign": "softsign", "Silu": "silu", "Swish": "silu", "LogSigmoid": "log_sigmoid",
    "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu", "HardSwish": "hard_silu", "Selu": "selu",
}  # fmt: skip
# ops whose only argument must keep Keras's default (the expression language's activations take none)
DEFAULTED = {"LeakyRelu": ("leaky_relu", "negative_slope", 0.2), "Elu": ("elu", "alpha", 1.0),
             "Celu": ("celu", "alpha", 1.0)}  # fmt: skip
BINARY = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "divide",
          "TrueDivide": "divide", "Power": "power", "Maximum": "maximum", "Minimum": "minimum",
          "Matmul": "matmul", "Dot": "matmul"}  # fmt: skip
REDUCTIONS = {"Sum": "sum", "Mean": "mean", "Max": "max", "Min": "min", "Amax": "max", "Amin": "min"}
STRUCTURAL = ("Concatenate", "Reshape", "ExpandDims", "Squeeze", "Transpose", "Softmax", "Gelu", "Cast", "GetItem")
SUPPORTED = (*UNARY, *DEFAULTED, *BINARY, *REDUCTIONS, "Clip", "LogSoftmax", *STRUCTURAL)


class OpError(ValueError):
    """A Keras op node nnspec cannot read (the reader adds where)."""


def is_tensor(v) -> bool:
    return isinstance(v, dict) and v.get("class_name") == "__keras_tensor__"


def _number(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise OpError(f"takes {v!r} where nnspec reads a tensor or a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise OpError(f"takes the number {v!r}, which a model file cannot hold")
    return repr(v)


class OpReader:
    """Turns op nodes into layers; one per Keras config, so the ``Op<Class>`` declarations of
    nested models are numbered together (a file holds them once, at its top)."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}  # call expression -> declared type name
        self.count: dict[str, int] = {}

    def layer(self, cls: str, cfg: dict, node: dict):
        """(the nnspec layer computing the op node, its tensor arguments in call order)."""
        args = list(node.get("args") or [])
        kwargs = dict(node.get("kwargs") or {})
        if cls == "Concatenate" or cls == "Stack":
            tensors = args[0] if args and isinstance(args[0], list) else args
            if not all(is_tensor(t) for t in tensors):
                raise OpError("concatenates something other than tensors")
            if cls == "Stack":
                raise OpError("is ops.stack, which nnspec has no layer for; expand each input with "
                              "layers.Reshape and use layers.Concatenate")  # fmt: skip
            return {"type": "Concatenate", "axis": cfg.get("axis", 0)}, tensors
        for k, v in kwargs.items():  # ops take their tensors positionally; a named one is read in order
            if k in ("x", "x1", "x2", "inputs"):
                args.append(v)
            else:
                raise OpError(f"is given the argument '{k}', which nnspec does not read")
        tensors = [a for a in args if is_tensor(a)]
        if not tensors:
            raise OpError("has no tensor argument")
        if cls in STRUCTURAL:
            return self._structural(cls, cfg, args), tensors
        names = {}
        for a in args:
            if is_tensor(a) and id(a) not in names:
                names[id(a)] = "inputs" if len(tensors) == 1 else f"inputs[{len(names)}]"
        terms = [names[id(a)] if is_tensor(a) else _number(a) for a in args]
        return self._custom(cls, self._expression(cls, cfg, terms)), tensors

    def _expression(self, cls: str, cfg: dict, terms: list[str]) -> str:
        if cls in UNARY:
            return f"{UNARY[cls]}({terms[0]})"
        if cls in DEFAULTED:
            fn, arg, default = DEFAULTED[cls]
            if float(cfg.get(arg, default)) != default:
                raise OpError(f"has {arg}={cfg[arg]!r}: nnspec reads ops.{fn} with its default ({default}) only; "
                              f"use the layer (LeakyReLU, ELU) instead")  # fmt: skip
            return f"{fn}({terms[0]})"
        if cls in BINARY:
            if len(terms) != 2:
                raise OpError(f"takes {len(terms)} arguments; nnspec reads it with 2")
            return f"{BINARY[cls]}({terms[0]}, {terms[1]})"
        if cls in REDUCTIONS:
            if cfg.get("initial") is not None:
                raise OpError("has an 'initial' value, which nnspec does not read")
            axis = cfg.get("axis")
            if axis is None:
                raise OpError("reduces every axis, the batch axis included; nnspec keeps the batch axis")
            return f"{REDUCTIONS[cls]}({terms[0]}, axis={axis!r}, keepdims={bool(cfg.get('keepdims', False))})"
        if cls == "Clip":
            return f"clip({terms[0]}, {_number(cfg.get('x_min'))}, {_number(cfg.get('x_max'))})"
        if cls == "LogSoftmax":
            if cfg.get("axis", -1) != -1:
                raise OpError("is a log_softmax along an axis other than the last, which nnspec does not read")
            return f"log_softmax({terms[0]})"
        raise OpError("is not one nnspec reads")

    def _custom(self, cls: str, expr: str):
        type_name = self.types.get(expr)
        if type_name is None:
            n = self.count[cls] = self.count.get(cls, 0) + 1
            type_name = self.types[expr] = f"Op{cls}" + (str(n) if n > 1 else "")
        definition = {"arguments": {}, "weights": {}, "call": expr}
        return {"type": "CustomLayer", "class_name": type_name, "definition": definition, "arguments": {}}

    def _structural(self, cls: str, cfg: dict, args: list) -> dict | list:
        x = args[0]
        shape = list((x.get("config") or {}).get("shape") or [])
        if cls == "GetItem":
            return get_item_chain(shape, [_index_item(v) for v in _as_list(args[1] if len(args) > 1 else None)])
        if cls == "Softmax":
            return {"type": "Softmax", "axis": cfg.get("axis", -1)}
        if cls == "Gelu":
            if cfg.get("approximate", True):
                c = repr(math.sqrt(2.0 / math.pi))
                return self._custom(cls, f"0.5 * inputs * (1.0 + tanh({c} * (inputs + 0.044715 * inputs ** 3)))")
            return {"type": "Activation", "activation": "gelu"}
        if cls == "Cast":
            if cfg.get("dtype") not in ("float32", None):
                raise OpError(f"casts to {cfg.get('dtype')!r}; nnspec computes in float32")
            return {"type": "Identity"}
        if cls == "Transpose":
            axes = cfg.get("axes")
            rank = len(shape)
            if axes is None:
                axes = list(range(rank))[::-1]
            axes = [a % rank for a in axes]
            if not axes or axes[0] != 0:
                raise OpError(f"transposes with axes {cfg.get('axes')!r}, moving the batch axis; nnspec keeps it first")
            return {"type": "Permute", "dims": axes[1:]}
        if not shape or any(d is None for d in shape[1:]):
            raise OpError(f"reshapes a tensor of shape {shape!r}; nnspec needs every axis but the batch known")
        dims = shape[1:]
        if cls == "Reshape":
            new = list(cfg.get("newshape") or [])
            if not new or new[0] not in (-1, None):
                raise OpError(f"reshapes to {new!r}, fixing the batch size; nnspec reshapes with the batch axis first "
                              "left free (-1)")  # fmt: skip
            target = new[1:]
            if new[0] == -1 and -1 in target:
                raise OpError(f"reshapes to {new!r}: two unknown sizes")
            return {"type": "Reshape", "target_shape": target}
        if cls == "ExpandDims":
            axes = cfg.get("axis")
            axes = axes if isinstance(axes, list) else [axes]
            out = list(shape)
            for a in sorted(a % (len(shape) + len(axes)) for a in axes):
                if a == 0:
                    raise OpError("adds an axis before the batch axis; nnspec keeps the batch axis first")
                out.insert(a, 1)
            return {"type": "Reshape", "target_shape": out[1:]}
        # Squeeze
        axis = cfg.get("axis")
        axes = None if axis is None else {a % len(shape) for a in (axis if isinstance(axis, list) else [axis])}
        if axes is not None and (0 in axes or any(shape[a] != 1 for a in axes)):
            raise OpError(f"squeezes axis {axis!r} of shape {shape!r}, which is not of size 1 (or is the batch axis)")
        kept = [d for i, d in enumerate(dims, start=1) if (d != 1 if axes is None else i not in axes)]
        return {"type": "Reshape", "target_shape": kept}


# Layers that Keras's applications define for themselves (keras.applications.convnext's
# LayerScale): not in keras.layers, but plain enough to be custom layer declarations.
APPLICATION_MODULES = ("keras.src.applications.", "keras.applications.")


def application_layer(reader: OpReader, cls: str, module: str, cfg: dict) -> dict | None:
    """The custom layer computing a Keras application's own layer class, or None."""
    if not module.startswith(APPLICATION_MODULES):
        return None
    if cls == "LayerScale":  # ConvNeXt: x * gamma, gamma (projection_dim,) starting at init_values
        init, dim = cfg.get("init_values"), cfg.get("projection_dim")
        if not isinstance(dim, int) or isinstance(init, bool) or not isinstance(init, (int, float)):
            return None
        weights = {"gamma": {"shape": ["projection_dim"], "initializer": {"type": "constant", "value": float(init)}}}
        definition = {"arguments": {"projection_dim": dim}, "weights": weights, "call": "inputs * self.gamma"}
        key = repr(definition)
        type_name = reader.types.get(key)
        if type_name is None:
            n = reader.count[cls] = reader.count.get(cls, 0) + 1
            type_name = reader.types[key] = cls + (str(n) if n > 1 else "")
        return {"type": "CustomLayer", "class_name": type_name, "definition": definition,
                "arguments": {"projection_dim": dim}}  # fmt: skip
    return None


def _as_list(v) -> list:
    if isinstance(v, dict) and v.get("class_name") == "__tuple__":
        v = (v.get("config") or {}).get("value")
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _index_item(v):
    """One entry of a Keras GetItem index: an int, a ``slice``, ``Ellipsis`` or None (new axis)."""
    if isinstance(v, dict) and v.get("class_name") == "__slice__":
        c = v.get("config") or {}
        return slice(c.get("start"), c.get("stop"), c.get("step"))
    if isinstance(v, dict) and v.get("class_name") == "__ellipsis__":
        return Ellipsis
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise OpError(f"indexes with {v!r}; nnspec reads integers, slices and ...")


def get_item_chain(shape: list, index: list) -> list:
    """``x[index]`` (the batch axis kept whole) as layers: for each axis a slice narrows, a
    Reshape to (before, axis, after) and a Cropping2D of that axis; then a Reshape to the
    result's shape, which drops the axes an integer picks. Slices take step 1 only."""
    rank = len(shape)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        if Ellipsis in index[at + 1:]:
            raise OpError("indexes with two ellipses")
        index = index[:at] + [slice(None)] * (rank - len(index) + 1) + index[at + 1:]
    if None in index:
        raise OpError("adds an axis with None in an index; use ops.expand_dims")
    if len(index) > rank:
        raise OpError(f"indexes {len(index)} axes of a tensor of rank {rank}")
    index = index + [slice(None)] * (rank - len(index))
    if index[0] != slice(None):
        raise OpError("indexes the batch axis; nnspec keeps the batch axis whole")
    dims, keep, ranges = list(shape[1:]), [], []
    for a, (item, d) in enumerate(zip(index[1:], dims)):
        if item == slice(None):
            keep.append(True)
            ranges.append(None)
            continue
        if d is None:
            raise OpError(f"indexes axis {a + 1}, whose size is not known")
        if isinstance(item, int):
            k = item + d if item < 0 else item
            if not 0 <= k < d:
                raise OpError(f"indexes {item} on an axis of size {d}")
            keep.append(False)
            ranges.append((k, k + 1))
            continue
        if item.step not in (None, 1):
            raise OpError(f"slices with step {item.step}; nnspec reads slices of step 1")
        lo, hi, _ = item.indices(d)
        if hi <= lo:
            raise OpError(f"slices {lo}:{hi} of an axis of size {d}: an empty tensor")
        keep.append(True)
        ranges.append((lo, hi))
    if any(d is None for d in dims) and any(r is not None for r in ranges):
        raise OpError(f"slices a tensor of shape {shape!r}; nnspec needs every axis but the batch known")
    chain, cur = [], list(dims)
    for a, r in enumerate(ranges):
        if r is None or r == (0, cur[a]):
            continue
        before, after = math.prod(cur[:a]), math.prod(cur[a + 1:])
        chain.append({"type": "Reshape", "target_shape": [before, cur[a], after]})
        chain.append({"type": "Cropping2D", "cropping": [[0, 0], [r[0], cur[a] - r[1]]],
                      "data_format": "channels_last"})  # fmt: skip
        cur[a] = r[1] - r[0]
    out = [d for d, k in zip(cur, keep) if k]
    if not out:
        raise OpError("picks one value per sample (an index on every axis); nnspec keeps a feature axis")
    chain.append({"type": "Reshape", "target_shape": out})
    return chain


def make_layer(spec: dict, name: str):
    """The layer object of ``spec`` (from :meth:`OpReader.layer`) named as Keras named the op."""
    return layer_from_spec(spec, name=name)


def apply_op(spec: dict | list, name: str, ins: list):
    """Call the layer(s) of an op node on its input tensors: a chain (GetItem) is named
    ``<name>_part1``, ``<name>_part2``... up to its last layer, which has the op's name."""
    if isinstance(spec, dict):
        return make_layer(spec, name)(ins if len(ins) > 1 else ins[0])
    x = ins[0]
    for k, one in enumerate(spec):
        x = make_layer(one, name if k == len(spec) - 1 else f"{name}_part{k + 1}")(x)
    return x


_BUILDER = OpReader()  # the Op<Class> declarations of ops applied to KerasTensors in this process


def tensor_op(fn: str, args, kwargs):
    """``fn(*args, **kwargs)`` (an operator or an ``nnspec.ops`` function) applied to KerasTensors
    of the functional builder: a call of an op layer, as Keras records ``x + 3.0`` in a graph."""
    from ..layerdefs.expressions import Sym, render_call
    from .layer import KerasTensor, unique_name

    tensors: list = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, KerasTensor) and not any(a is t for t in tensors):
            tensors.append(a)
    syms = {id(t): Sym("inputs" if len(tensors) == 1 else f"inputs[{i}]") for i, t in enumerate(tensors)}
    sub = lambda v: syms[id(v)] if isinstance(v, KerasTensor) else v
    expr = render_call(fn, [sub(a) for a in args], {k: sub(v) for k, v in kwargs.items()}).text
    cls = "".join(p.capitalize() for p in fn.split("_"))
    layer = make_layer(_BUILDER._custom(cls, expr), unique_name(fn))
    return layer(tensors if len(tensors) > 1 else tensors[0])


def tensor_get_item(x, key):
    """``x[key]`` on a KerasTensor of the builder, as Keras's GetItem (see get_item_chain)."""
    from .layer import unique_name

    items = list(key) if isinstance(key, tuple) else [key]
    try:
        chain = get_item_chain([None, *x.shape[1:]], items)
    except OpError as e:
        raise ValueError(f"{x.name}[...] {e}") from None
    return apply_op(chain, unique_name("get_item"), [x])
