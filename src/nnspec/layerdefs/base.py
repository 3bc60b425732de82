"""What a layer is, for every stage of nnspec.

A layer type is one frozen :class:`LayerDef`. It holds everything the project knows about the
type: its attributes (names, types, Keras's defaults, constraints: the JSON Schema is generated
from them), its shape rule, its parameters (names, shapes, initializers, in Keras's order), and,
as the runtime grows, its NumPy reference and its Numba kernels. Family modules (``core.py``,
``conv.py``, ...) define ``LayerDef`` values; ``layerdefs/__init__.py`` lists them in ``REGISTRY_LIST``.

Shapes include the batch dimension as ``None`` in front, as Keras prints them:
``(None, 62, 62, 16)``. ``None`` elsewhere is a dimension known only at run time.

This module imports only the standard library: the compile/summarize path must stay cheap.

Kernels. A family module also holds its layers' NumPy references and Numba kernels, as plain
functions written in the subset of Python and NumPy that Numba compiles. Importing NumPy costs
about 0.17 s here, more than the whole compile path, so family modules do not import it: each
has a module global ``np = None`` that :func:`bind_numpy` points at NumPy when the runtime (or
a test) first needs kernels. Numba reads a function's globals when it compiles it, so the
kernels see NumPy then. Small functions that kernels call are listed in the module's
``KERNEL_HELPERS``; the runtime compiles them in place before any kernel. ``LayerDef.emit`` writes the lines of the generated plan function
that call a layer's kernels (see ``nnspec.runtime.codegen.Emit``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

np = None  # NumPy, bound by bind_numpy when kernels are needed (offset_grid)

Shape = tuple  # tuple[int | None, ...], batch dimension first


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class ShapeError(ValueError):
    """A shape rule refused its inputs. The compiler adds the node, edge and file location."""


@dataclass(frozen=True)
class TensorType:
    """The static type of one value in the graph."""

    shape: Shape
    dtype: str = "float32"
    masked: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape: Sequence) -> TensorType:
        return TensorType(tuple(shape), self.dtype, self.masked)


# ----------------------------------------------------------------------------- attributes

# Attribute kinds. Each maps to a JSON Schema fragment in ``specs/schema.py`` and to a
# normalizer in ``normalize_attr``.
KINDS = (
    "int",  # integer, optional minimum/maximum
    "float",  # number, optional minimum/maximum
    "bool",
    "str",  # free string (names)
    "enum",  # one of ``choices``
    "ints",  # an int or a list of ``length`` ints (kernel_size, strides); normalized to a list
    "int_list",  # a list of ints (Permute dims, axes)
    "shape",  # a list of ints or null (target_shape accepts -1)
    "sizes",  # an int, or a list of ints or null (EinsumDense's output_shape); normalized to a list
    "axis",  # an int or a list of ints (normalization axes)
    "activation",  # an activation name, or null for linear
    "initializer",  # a name, or {type: name, ...arguments}
    "regularizer",  # null, a name, or {type: l1|l2|l1_l2, l1:, l2:}
    "constraint",  # null, a name, or {type: max_norm, ...arguments}
    "layer",  # a nested layer definition (wrappers)
    "cell",  # a nested layer definition or a list of them (RNN's cell, or stacked cells)
    "layers",  # a list of nested layer definitions (StackedRNNCells's cells)
    "model",  # the name of a sub-model in the document's ``models``
    "dtype",
    "numbers",  # a number or a (nested) list of numbers (Normalization's mean, bin boundaries)
    "factor",  # a number or a list of two numbers, each within minimum/maximum (augmentation factors)
    "floats",  # a list of ``length`` numbers (an augmentation layer's value_range)
    "any",
)


@dataclass(frozen=True)
class Attr:
    """One parameter of a layer type, as written in a model file."""

    name: str
    kind: str
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    length: int | None = None  # for "ints": how many ints a list must hold
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"attribute {self.name!r}: unknown kind {self.kind!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def ints(name: str, length: int, default: Any = REQUIRED, doc: str = "", nullable=False) -> Attr:
    return Attr(name, "ints", default, doc, length=length, minimum=1, nullable=nullable)


# ----------------------------------------------------------------------------- vocabularies

# Keras 3 activation names (``keras.activations``), with their aliases.
ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign",
    "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink",
    "threshold",
)  # fmt: skip

# Keras 3 initializer names; value is the list of arguments each accepts.
INITIALIZERS: dict[str, tuple[str, ...]] = {
    "zeros": (),
    "ones": (),
    "constant": ("value",),
    "random_normal": ("mean", "stddev", "seed"),
    "random_uniform": ("minval", "maxval", "seed"),
    "uniform": ("minval", "maxval", "seed"),  # Keras's alias of random_uniform (Embedding's default)
    "normal": ("mean", "stddev", "seed"),  # Keras's alias of random_normal
    "truncated_normal": ("mean", "stddev", "seed"),
    "glorot_normal": ("seed", "input_axes", "output_axes"),
    "glorot_uniform": ("seed", "input_axes", "output_axes"),
    "he_normal": ("seed", "input_axes", "output_axes"),
    "he_uniform": ("seed", "input_axes", "output_axes"),
    "lecun_normal": ("seed", "input_axes", "output_axes"),
    "lecun_uniform": ("seed", "input_axes", "output_axes"),
    "orthogonal": ("gain", "seed"),
    "identity": ("gain",),
    "variance_scaling": ("scale", "mode", "distribution", "seed", "input_axes", "output_axes"),
}
# The variance-scaling family: Keras 3 computes their fans over ``input_axes``/``output_axes``
# of the weight when given (EinsumDense and MultiHeadAttention give them), else as for a conv kernel.
VARIANCE_SCALING = ("glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
                    "lecun_uniform", "variance_scaling")  # fmt: skip


def with_fan_axes(init, input_axes, output_axes):
    """``init`` with its fans computed over the given weight axes, as Keras's EinsumDense sets
    them on a variance-scaling initializer that has none; other initializers unchanged."""
    spec = {"type": init} if isinstance(init, str) else dict(init)
    if spec["type"] not in VARIANCE_SCALING:
        return init
    if spec.get("input_axes") is not None and spec.get("output_axes") is not None:  # the file's own
        return init
    return {**spec, "input_axes": list(input_axes), "output_axes": list(output_axes)}

REGULARIZERS: dict[str, tuple[str, ...]] = {"l1": ("l1",), "l2": ("l2",), "l1_l2": ("l1", "l2")}

CONSTRAINTS: dict[str, tuple[str, ...]] = {
    "max_norm": ("max_value", "axis"),
    "non_neg": (),
    "unit_norm": ("axis",),
    "min_max_norm": ("min_value", "max_value", "rate", "axis"),
}

DTYPES = ("float32", "float64", "float16", "int32", "int64", "int8", "uint8", "bool")


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ParamSpec:
    """One weight array of a layer, in Keras's order and shape.

    ``initializer`` is the attribute value (a name or ``{type: ..., ...}``) used to fill it;
    ``regularizer``/``constraint`` are the attribute values that apply to it (or None).
    """

    name: str
    shape: tuple[int, ...]
    initializer: Any = "zeros"
    trainable: bool = True
    regularizer: Any = None
    constraint: Any = None
    dtype: str = "float32"  # what get_weights returns (held as float32 like every weight: int32 counters)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# ----------------------------------------------------------------------------- layer types


class InferContext:
    """What a shape rule can ask of the compiler besides its own attributes and inputs.

    Wrappers (TimeDistributed, Bidirectional) and the nested ``Model`` layer use it to type and
    count the parameters of what they wrap. The compiler provides the implementation.
    """

    def infer_layer(self, layer: Mapping, inputs: list[TensorType]) -> list[TensorType]:
        raise NotImplementedError

    def layer_params(self, layer: Mapping, inputs: list[TensorType]) -> list[ParamSpec]:
        raise NotImplementedError

    def layer_def(self, layer: Mapping) -> LayerDef:
        raise NotImplementedError

    def infer_model(self, model: str, inputs: list[TensorType]) -> list[TensorType]:
        """Output types of the document's sub-model ``model`` called on ``inputs``."""
        raise NotImplementedError

    def model_params(self, model: str) -> list[ParamSpec]:
        """Every weight of sub-model ``model``, named ``<layer>/<weight>``, in Keras's order."""
        raise NotImplementedError


# The attributes that hold a nested layer definition: a wrapper's ``layer`` and
# ``backward_layer``, an RNN's ``cell`` (or a list of cells), StackedRNNCells's ``cells`` (a list).
NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell", "cells")


def map_nested(v, fn):
    """``fn`` applied to a nested layer definition, or to each of a list of them."""
    if isinstance(v, dict):
        return fn(v)
    if isinstance(v, (list, tuple)):
        return [fn(e) if isinstance(e, dict) else e for e in v]
    return v


def _no_params(attrs: Mapping, inputs: list[TensorType], ctx: InferContext) -> list[ParamSpec]:
    return []


@dataclass(frozen=True)
class LayerDef:
    """Everything about one layer type.

    Attributes:
        name: the Keras class name, which is also the ``type`` in a model file.
        attrs: the parameters a model file may give, with Keras's defaults.
        infer: ``infer(attrs, inputs, ctx) -> outputs``, a pure shape rule over
            :class:`TensorType` (shape, dtype, mask). Raises :class:`ShapeError`.
        params: ``params(attrs, inputs, ctx) -> [ParamSpec]`` in Keras's weight order.
        arity: (min, max) number of inputs; max None for any number.
        positional: the attributes a Keras constructor takes positionally, in order
            (``Dense(64)``, ``Conv2D(32, 3)``), for the Python builder.
        doc: one paragraph for the reference docs and the schema's description.
        training_only: the layer is the identity at inference (Dropout, noise layers).
        couples_batch: in training, a sample's result depends on the other samples of its
            batch (batch statistics): a training batch is then never split over threads.
        view: at inference the output is the input's buffer seen with another shape
            (Flatten, Reshape): the plan assigns it no new buffer.
        emit: ``emit(e) -> [source lines]``: the inference code of one step in the generated
            plan function, calling this family's kernels through ``e.call(kernel, *args)``.
        reference: ``reference(attrs, inputs, params, masks) -> outputs``: plain NumPy, the
            obviously-right version the kernels are tested against.
        uses_mask: the kernels read the input's mask (recurrent layers, masked pooling).
        emit_train: like ``emit``, for the forward pass of training (Dropout active, batch
            statistics, and writing what the backward pass needs into ``e.s``); defaults to
            ``emit``.
        emit_backward: ``emit_backward(e) -> [source lines]``: given ``e.dy`` (gradients of the
            outputs), ADD the gradients of the inputs into ``e.dx`` (None where an input needs
            none) and of the weights into ``e.dp`` (None for non-trainable weights). Adding,
            never assigning, is what makes shared layers and fan-out correct.
        saved: ``saved(attrs, x_shapes, y_shapes) -> [(shape per row, dtype)]``: the arrays the
            training forward pass keeps for the backward pass (``e.s``), first axis excluded.
        random_training: ``random_training(attrs) -> bool``: the training step draws random
            numbers (an attention layer's dropout), so a training batch is never split over
            threads; layers that are ``training_only`` are random already.
    """

    name: str
    attrs: tuple[Attr, ...]
    infer: Callable[[Mapping, list[TensorType], InferContext], list[TensorType]]
    params: Callable[[Mapping, list[TensorType], InferContext], list[ParamSpec]] = _no_params
    arity: tuple[int, int | None] = (1, 1)
    positional: tuple[str, ...] = ()
    doc: str = ""
    training_only: bool = False
    couples_batch: bool = False
    view: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    emit: Callable | None = None
    reference: Callable | None = None
    uses_mask: bool = False
    emit_train: Callable | None = None
    emit_backward: Callable | None = None
    saved: Callable | None = None
    random_training: Callable | None = None

    def attr(self, name: str) -> Attr:
        for a in self.attrs:
            if a.name == name:
                return a
        raise KeyError(name)

    @property
    def attr_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attrs)

    @property
    def op(self) -> str:
        """The plan's op name: the type in snake_case (``Conv2D`` -> ``conv2d``)."""
        return snake_case(self.name)


# Attributes every layer accepts (Keras's base ``Layer`` arguments).
COMMON_ATTRS = (
    Attr("trainable", "bool", True, "Whether the layer's weights are updated by training."),
    Attr("dtype", "dtype", "float32", "The dtype of the layer's weights and computations."),
)


# ----------------------------------------------------------------------------- helpers


def snake_case(name: str) -> str:
    """``Conv2D`` -> ``conv2d``, ``GlobalMaxPooling1D`` -> ``global_max_pooling1d``,
    ``LSTM`` -> ``lstm``, ``SimpleRNN`` -> ``simple_rnn``: Keras's default layer names."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0:
            prev = name[i - 1]
            nxt = name[i + 1] if i + 1 < len(name) else ""
            if prev.islower() or (prev.isupper() and nxt.islower()):
                out.append("_")
        out.append(ch.lower())
    return "".join(out)


def one_input(inputs: list[TensorType]) -> TensorType:
    return inputs[0]


def require_rank(t: TensorType, ranks: Sequence[int] | int, what: str) -> None:
    """Raise ShapeError unless ``t`` has one of ``ranks`` (batch included)."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"{what} expects an input of rank {want} (batch included); got {fmt_shape(t.shape)}")


def same_type(attrs, inputs, ctx) -> list:
    """The shape rule of a layer whose output has its input's type (shape, dtype, mask)."""
    return [inputs[0]]


def fmt_shape(shape: Sequence) -> str:
    """Keras's way of printing a shape: ``(None, 62, 62, 16)``, ``(None, 10)``."""
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    if len(shape) == 1:
        inner += ","
    return f"({inner})"


def known(d: int | None) -> bool:
    return d is not None


def conv_output_length(
    length: int | None, kernel: int, padding: str, stride: int, dilation: int = 1
) -> int | None:
    """Keras's output length of a convolution or pooling window along one axis."""
    if length is None:
        return None
    eff = (kernel - 1) * dilation + 1
    if padding in ("same", "causal"):
        out = (length + stride - 1) // stride
    else:
        out = (length - eff + stride) // stride
    return out


def normalize_attrs(defn: LayerDef, raw: Mapping) -> dict:
    """Fill Keras's defaults and put values in canonical form, for an already validated layer.

    ``ints`` attributes become lists of ``length`` ints (``3`` -> ``[3, 3]``); a null
    activation becomes ``"linear"``; initializer, regularizer and constraint names stay as
    written (a string, or a mapping with ``type``). ``type`` itself is not included.
    """
    out: dict = {}
    for a in defn.attrs:
        if a.name in raw:
            v = raw[a.name]
        elif a.required:
            raise KeyError(f"{defn.name}: missing required attribute {a.name!r}")
        else:
            v = a.default
        if a.kind == "ints" and v is not None:
            v = [int(v)] * a.length if isinstance(v, int) else [int(e) for e in v]
        elif a.kind == "sizes" and isinstance(v, int):
            v = [int(v)]
        elif a.kind in ("int_list", "shape", "sizes") and v is not None:
            v = [None if e is None else int(e) for e in v]
        elif a.kind == "axis" and isinstance(v, (list, tuple)):
            v = [int(e) for e in v]
        elif a.kind == "activation" and v is None:
            v = "linear"
        elif a.kind == "float" and v is not None:
            v = float(v)
        elif a.kind == "factor" and isinstance(v, (list, tuple)):
            v = [float(e) for e in v]
        elif a.kind == "floats" and v is not None:
            v = [float(e) for e in v]
        out[a.name] = v
    return out


def bind_numpy(modules) -> None:
    """Point the ``np`` global of each family module at NumPy (see the module docstring)."""
    import numpy

    for m in modules:
        if getattr(m, "np", None) is None:
            m.np = numpy


def offset_grid(shape, strides):
    """Every offset ``sum(i_d * strides[d])`` over the index grid ``shape``, row-major: for each
    flat position of one sample, where it reads in another array seen through ``strides`` (0
    on a broadcast axis). A kernel helper: family modules that call it import it and list it in
    their ``KERNEL_HELPERS``."""
    nd = len(shape)
    total = 1
    for d in range(nd):
        total *= shape[d]
    out = np.empty(total, np.int64)
    idx = np.zeros(nd, np.int64)
    off = 0
    for n in range(total):
        out[n] = off
        d = nd - 1
        while d >= 0:
            idx[d] += 1
            off += strides[d]
            if idx[d] < shape[d]:
                break
            off -= strides[d] * shape[d]
            idx[d] = 0
            d -= 1
    return out
