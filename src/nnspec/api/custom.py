"""Custom layers written in Python, as Keras's subclassing guide writes them::

    class CustomDense(nnspec.layers.Layer):
        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")
            self.b = self.add_weight(shape=(self.units,), initializer="random_normal")

        def call(self, inputs):
            return nnspec.ops.matmul(inputs, self.w) + self.b

A model file cannot hold Python, so the first call of such a layer *traces* it into the
declaration a file's ``custom_layers`` holds (``layerdefs/custom.py``): ``build`` runs on a
symbolic ``input_shape`` whose entries remember where they came from (``input_shape[-1]``) and
with the constructor's numeric arguments symbolic too (``self.units`` is ``units``), so the
recorded weight shapes are expressions, not this instance's numbers; ``call`` runs on symbolic
tensors (:class:`Sym`), whose operators and ``nnspec.ops`` functions write the expression text.
The layer then is a ``CustomLayer`` of that declaration, with its arguments; the model it
belongs to writes the declaration into its file, so the file loads anywhere without the class.

What tracing cannot see is refused when the declaration is checked: Python control flow over
tensor values, NumPy on tensors, functions outside ``nnspec.ops``.
"""

from __future__ import annotations

import inspect

from ..layerdefs import expressions as ex
from ..layerdefs.expressions import Sym, text_of as _text

BASE_ARGS = ("self", "name", "trainable", "dtype", "kwargs", "args")


class Dim(int):
    """A number that remembers its expression: an entry of the traced ``input_shape``, or a
    numeric constructor argument (``self.units``). Arithmetic with integers keeps the text."""

    def __new__(cls, value, text: str):
        obj = super().__new__(cls, value if value is not None else 0)
        obj.text = text
        obj.known = value is not None
        return obj

    def _op(self, other, sym: str, fn, reflected=False):
        if isinstance(other, Sym):
            return other._bin(sym, self, not reflected)
        if not isinstance(other, int) or isinstance(other, bool):
            return fn(int(self), other) if not reflected else fn(other, int(self))
        a, b = (other, self) if reflected else (self, other)
        return Dim(fn(int(a), int(b)), f"({_text(a)} {sym} {_text(b)})")

    __add__ = lambda s, o: s._op(o, "+", lambda a, b: a + b)  # noqa: E731
    __radd__ = lambda s, o: s._op(o, "+", lambda a, b: a + b, True)  # noqa: E731
    __sub__ = lambda s, o: s._op(o, "-", lambda a, b: a - b)  # noqa: E731
    __rsub__ = lambda s, o: s._op(o, "-", lambda a, b: a - b, True)  # noqa: E731
    __mul__ = lambda s, o: s._op(o, "*", lambda a, b: a * b)  # noqa: E731
    __rmul__ = lambda s, o: s._op(o, "*", lambda a, b: a * b, True)  # noqa: E731
    __floordiv__ = lambda s, o: s._op(o, "//", lambda a, b: a // b)  # noqa: E731
    __rfloordiv__ = lambda s, o: s._op(o, "//", lambda a, b: a // b, True)  # noqa: E731


class FloatArg(float):
    """A float constructor argument during tracing: in ``call`` it is written by name."""

    def __new__(cls, value, text: str):
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


class ShapeArg(tuple):
    """The traced ``input_shape``: indexing gives a :class:`Dim` named as the code indexed it
    (``input_shape[-1]``), so the recorded shape holds for inputs of the same rank."""

    def __new__(cls, dims, text: str):
        obj = super().__new__(cls, dims)
        obj.text = text
        return obj

    def __getitem__(self, i):
        v = tuple.__getitem__(self, i)
        if isinstance(i, int):
            return Dim(v, f"{self.text}[{i}]") if not isinstance(v, ShapeArg) else ShapeArg(v, f"{self.text}[{i}]")
        return v


def constructor_arguments(layer) -> tuple[dict, dict]:
    """(declared arguments with their defaults, this instance's values): the parameters of the
    class's ``__init__`` (Keras's base arguments excluded), valued from the attributes of the
    same name, as Keras custom layers keep them (``self.units = units``)."""
    sig = inspect.signature(type(layer).__init__)
    defaults, values = {}, {}
    for p in sig.parameters.values():
        if p.name in BASE_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(layer, p.name):
            raise TypeError(f"{type(layer).__name__}: argument '{p.name}' is not kept as self.{p.name}; nnspec "
                            "writes a custom layer's arguments into the model file from those attributes")  # fmt: skip
        v = getattr(layer, p.name)
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise TypeError(f"{type(layer).__name__}: argument '{p.name}' is a {type(v).__name__}; a model file "
                            "holds numbers, booleans, strings or null")  # fmt: skip
        default = p.default if p.default is not p.empty else v
        defaults[p.name] = default
        if v != default or p.default is p.empty:
            values[p.name] = v
    return defaults, values


class _Recorder:
    """Collects ``add_weight`` calls during ``build``."""

    def __init__(self) -> None:
        self.weights: dict = {}

    def add(self, shape, initializer, trainable, name, regularizer, constraint) -> Sym:
        if name is None:
            k = len(self.weights)
            name = "variable" if k == 0 else f"variable_{k}"
        if name in self.weights:
            raise ValueError(f"add_weight: two weights are named '{name}'")
        dims = [_text(d) if isinstance(d, int) and not isinstance(d, bool) else _bad_dim(d) for d in (shape or ())]
        decl: dict = {"shape": [int(d) if d.lstrip("-").isdigit() else d for d in dims]}
        if initializer is not None:
            decl["initializer"] = initializer if isinstance(initializer, (str, dict)) else _config_of(initializer)
        if not trainable:
            decl["trainable"] = False
        if regularizer is not None:
            decl["regularizer"] = regularizer if isinstance(regularizer, (str, dict)) else _config_of(regularizer)
        if constraint is not None:
            decl["constraint"] = constraint if isinstance(constraint, (str, dict)) else _config_of(constraint)
        self.weights[name] = decl
        return Sym(name)


def _bad_dim(d):
    raise TypeError(f"add_weight: a shape entry must be an integer or come from input_shape or the layer's "
                    f"arguments; got {d!r}")  # fmt: skip


def _config_of(obj):
    get = getattr(obj, "get_config", None)
    if get is None:
        raise TypeError(f"add_weight: give initializers, regularizers and constraints as names or "
                        f"{{type: ..., ...}} mappings; got {obj!r}")  # fmt: skip
    return {"type": getattr(obj, "name", type(obj).__name__), **get()}


def trace(layer, in_types) -> dict:
    """The declaration (``arguments``, ``weights``, ``call``) of a Python custom layer called on
    inputs of types ``in_types``; this instance's argument values go to ``layer._given``."""
    defaults, given = constructor_arguments(layer)
    saved = {}
    for k in defaults:
        cur = getattr(layer, k)
        saved[k] = cur
        if isinstance(cur, int) and not isinstance(cur, bool):
            setattr(layer, k, Dim(cur, k))
        elif isinstance(cur, float):
            setattr(layer, k, FloatArg(cur, k))
    rec = _Recorder()
    layer._recorder = rec
    try:
        if len(in_types) == 1:
            input_shape = ShapeArg(in_types[0].shape, "input_shape")
        else:
            input_shape = [ShapeArg(t.shape, f"input_shape[{j}]") for j, t in enumerate(in_types)]
        build = getattr(type(layer), "build", None)
        if build is not None:
            build(layer, input_shape)
        names = ["inputs"] if len(in_types) == 1 else [f"inputs[{i}]" for i in range(len(in_types))]
        syms = [Sym(n) for n in names]
        out = type(layer).call(layer, syms[0] if len(syms) == 1 else syms)
    finally:
        layer._recorder = None
        for k, v in saved.items():
            setattr(layer, k, v)
    if not isinstance(out, Sym):
        raise TypeError(f"{type(layer).__name__}.call must return one tensor computed from its inputs; got "
                        f"{type(out).__name__}")  # fmt: skip
    layer._given = given
    decl: dict = {}
    if defaults:
        decl["arguments"] = defaults
    if rec.weights:
        decl["weights"] = rec.weights
    decl["call"] = out.text[1:-1] if out.text.startswith("(") and _balanced(out.text[1:-1]) else out.text
    ex.parse(decl["call"], names + list(rec.weights), {k: 1.0 for k in defaults})  # a bad trace fails here
    if getattr(layer, "supports_masking", False) is True:  # Keras's flag, set in __init__
        decl["supports_masking"] = True
    return decl


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0
