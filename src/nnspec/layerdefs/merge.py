"""Merge layers: Concatenate, the element-wise merges (Add, Subtract, Multiply, Average, Maximum,
Minimum) and Dot.

They take a list of inputs (a node fed by ``a, b -> merge``). Keras 3 rules mirrored here:

- Element-wise merges broadcast the per-sample shapes (batch excluded) right-aligned, one pair
  at a time from the first input on: equal sizes stay, a 1 gives way to the other size, and a
  ``None`` on either side gives ``None`` (even against a known size). Inputs of lower rank are
  padded with leading axes after the batch.
- The batch sizes that are known must agree; the output's batch is that size, else ``None``.
- Masks: an element-wise merge's output is masked only when every input is; Concatenate's is
  masked when any input is; Dot drops masks.
- The output dtype is the layer's ``dtype`` attribute (Keras's compute dtype), whatever the
  inputs' dtypes.

Where Keras's symbolic shape check accepts what only works, or only makes sense, on one sample
at a time, these rules refuse it: Concatenate and Dot along the batch axis.
"""

from __future__ import annotations

from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError, TensorType, fmt_shape

# Arity of the element-wise merges and Concatenate: Keras 3 accepts a list of one input or more.
MANY_INPUTS = (1, None)
# Arity of Subtract and Dot.
TWO_INPUTS = (2, 2)


def _fmt_all(inputs) -> str:
    """``(None, 3) and (None, 4)``, ``(None, 3), (None, 4) and (None, 5)``."""
    shapes = [fmt_shape(t.shape) for t in inputs]
    if not shapes:
        return "none"
    if len(shapes) == 1:
        return shapes[0]
    return ", ".join(shapes[:-1]) + " and " + shapes[-1]


def _check_count(rule: str, inputs, arity) -> None:
    lo, hi = arity
    n = len(inputs)
    if n < lo or (hi is not None and n > hi):
        want = f"exactly {lo}" if lo == hi else f"at least {lo}"
        raise ShapeError(
            f"{rule} takes {want} input{'s' if (hi or lo) > 1 else ''}; got {n}: {_fmt_all(inputs)}"
        )


def _check_ranks(rule: str, inputs) -> None:
    for t in inputs:
        if t.rank < 1:
            raise ShapeError(f"{rule} needs inputs with a batch axis; got {_fmt_all(inputs)}")


def _batch(rule: str, inputs):
    """The batch size shared by the inputs: the one known size, else None."""
    sizes = {t.shape[0] for t in inputs} - {None}
    if len(sizes) > 1:
        raise ShapeError(f"{rule} needs inputs with the same batch size; got {_fmt_all(inputs)}")
    return sizes.pop() if sizes else None


def _out_dtype(attrs) -> str:
    return attrs.get("dtype") or "float32"


# ----------------------------------------------------------------------------- element-wise


def broadcast(rule: str, inputs) -> tuple:
    """The element-wise merge's output shape (batch included), by Keras 3's pairwise rule."""
    out = tuple(inputs[0].shape[1:])
    for t in inputs[1:]:
        a, b = out, tuple(t.shape[1:])
        if len(a) < len(b):
            a, b = b, a
        if not b:
            out = a
            continue
        head, tail = list(a[: len(a) - len(b)]), a[len(a) - len(b) :]
        for i, j in zip(tail, b):
            if i is None or j is None:
                head.append(None)
            elif i == 1:
                head.append(j)
            elif j == 1 or i == j:
                head.append(i)
            else:
                raise ShapeError(
                    f"{rule} needs shapes that broadcast (right-aligned, batch excluded: equal sizes, "
                    f"or 1); got {_fmt_all(inputs)}"
                )
        out = tuple(head)
    return (_batch(rule, inputs), *out)


def _elementwise_infer(name: str, arity):
    def infer(attrs, inputs, ctx):
        _check_count(name, inputs, arity)
        _check_ranks(name, inputs)
        shape = broadcast(name, inputs)
        masked = all(t.masked for t in inputs)
        return [TensorType(shape, _out_dtype(attrs), masked)]

    infer.__name__ = f"_{name.lower()}_infer"
    return infer


def _elementwise(name: str, doc: str, arity=MANY_INPUTS) -> LayerDef:
    return LayerDef(
        name=name,
        attrs=(*COMMON_ATTRS,),
        infer=_elementwise_infer(name, arity),
        arity=arity,
        doc=doc,
    )


_BROADCAST_DOC = (
    " Per-sample shapes broadcast right-aligned (a size 1 stretches to the other size; a lower "
    "rank input gains leading axes). The output is masked only when every input is."
)

ADD = _elementwise("Add", "Sums its inputs element by element." + _BROADCAST_DOC)
SUBTRACT = _elementwise(
    "Subtract",
    "Takes exactly two inputs and returns the first minus the second, element by element." + _BROADCAST_DOC,
    TWO_INPUTS,
)
MULTIPLY = _elementwise("Multiply", "Multiplies its inputs element by element." + _BROADCAST_DOC)
AVERAGE = _elementwise("Average", "The element-wise mean of its inputs." + _BROADCAST_DOC)
MAXIMUM = _elementwise("Maximum", "The element-wise maximum of its inputs." + _BROADCAST_DOC)
MINIMUM = _elementwise("Minimum", "The element-wise minimum of its inputs." + _BROADCAST_DOC)

# ----------------------------------------------------------------------------- Concatenate


def _concat_infer(attrs, inputs, ctx):
    axis = attrs["axis"]
    rule = f"Concatenate(axis={axis})"
    _check_count(rule, inputs, MANY_INPUTS)
    _check_ranks(rule, inputs)
    rank = inputs[0].rank
    mismatch = ShapeError(f"{rule} needs equal shapes except on axis {axis}; got {_fmt_all(inputs)}")
    if any(t.rank != rank for t in inputs):
        raise mismatch
    if not -rank <= axis < rank:
        raise ShapeError(
            f"{rule}: axis {axis} is out of range for inputs of rank {rank}; got {_fmt_all(inputs)}"
        )
    ax = axis % rank
    if ax == 0:
        raise ShapeError(f"{rule} cannot join along the batch axis; got {_fmt_all(inputs)}")
    for d in range(rank):
        if d == ax:
            continue
        sizes = {t.shape[d] for t in inputs} - {None}
        if len(sizes) > 1:
            raise mismatch
    # Keras's rule: every axis but the joined one is the first input's (None stays None).
    out = list(inputs[0].shape)
    sizes = [t.shape[ax] for t in inputs]
    out[ax] = None if None in sizes else sum(sizes)
    out[0] = _batch(rule, inputs)
    return [TensorType(tuple(out), _out_dtype(attrs), any(t.masked for t in inputs))]


CONCATENATE = LayerDef(
    name="Concatenate",
    attrs=(
        Attr("axis", "int", -1, "The axis to join along (negative counts from the end; not the batch axis)."),
        *COMMON_ATTRS,
    ),
    infer=_concat_infer,
    arity=MANY_INPUTS,
    positional=("axis",),
    doc="Joins its inputs end to end along one axis. All inputs have the same rank and the same "
    "sizes on every other axis; the output's size on the axis is the sum of theirs. The output "
    "is masked when any input is.",
)

# ----------------------------------------------------------------------------- Dot


def _dot_axes(attrs, inputs) -> tuple[int, int]:
    """The two contracted axes, non-negative, checked against the inputs."""
    raw = attrs["axes"]
    axes = [raw, raw] if isinstance(raw, int) else list(raw)
    rule = f"Dot(axes={raw})"
    if len(axes) != 2:
        raise ShapeError(f"{rule}: axes must be one int or a list of two ints")
    out = []
    for a, t in zip(axes, inputs):
        if not -t.rank <= a < t.rank:
            raise ShapeError(
                f"{rule}: axis {a} is out of range for an input of rank {t.rank}; got {_fmt_all(inputs)}"
            )
        a %= t.rank
        if a == 0:
            raise ShapeError(f"{rule} cannot contract the batch axis; got {_fmt_all(inputs)}")
        out.append(a)
    return out[0], out[1]


def _dot_infer(attrs, inputs, ctx):
    rule = f"Dot(axes={attrs['axes']})"
    _check_count(rule, inputs, TWO_INPUTS)
    x, y = inputs
    if x.rank < 2 or y.rank < 2:
        raise ShapeError(f"{rule} needs inputs of rank 2 or more (batch included); got {_fmt_all(inputs)}")
    a, b = _dot_axes(attrs, inputs)
    # Keras compares the two sizes as they are: a None only matches a None.
    if x.shape[a] != y.shape[b]:
        raise ShapeError(
            f"{rule} needs equal sizes on the contracted axes; got {fmt_shape(x.shape)} (axis {a}: "
            f"{x.shape[a]}) and {fmt_shape(y.shape)} (axis {b}: {y.shape[b]})"
        )
    batch = _batch(rule, inputs)
    shape = [batch] + [d for i, d in enumerate(x.shape) if i not in (0, a)]
    shape += [d for i, d in enumerate(y.shape) if i not in (0, b)]
    if len(shape) == 1:
        shape.append(1)
    return [TensorType(tuple(shape), _out_dtype(attrs), False)]


DOT = LayerDef(
    name="Dot",
    attrs=(
        Attr(
            "axes",
            "ints",
            doc="The axis contracted in each input: one int for both, or a list of two (not the batch axis).",
            length=2,
        ),
        Attr(
            "normalize", "bool", False, "L2-normalize both inputs along their axes first (cosine similarity)."
        ),
        *COMMON_ATTRS,
    ),
    infer=_dot_infer,
    arity=TWO_INPUTS,
    positional=("axes",),
    doc="Per-sample dot product of two inputs: sums the product over one axis of each. The output "
    "holds the first input's remaining axes, then the second's (batch once); a rank-1 result gets "
    "a trailing axis of size 1. The output carries no mask.",
)

LAYERS = (CONCATENATE, ADD, SUBTRACT, MULTIPLY, AVERAGE, MAXIMUM, MINIMUM, DOT)
