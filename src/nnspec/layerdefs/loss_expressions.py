"""Custom losses as expressions: what a Keras loss function over ``(y_true, y_pred)`` returns,
checked as a loss (``runtime/custom_losses.py`` compiles it into a loss kernel; the model file's
check, ``specs/validate.py``, reads only this module).

See ``runtime/custom_losses.py`` for the contract of the kernel and how Keras reduces what the
function returns; this module decides, for an output of a given rank, whether an expression is
a loss and rewrites it for the kernel's 2-D ``(rows, k)`` view.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import expressions as ex

TENSORS = ("y_true", "y_pred")
WIDTH = "k"  # the symbol of the last axis's length, a variable of the generated kernel


@dataclass(frozen=True)
class LossExpression:
    """A custom loss checked for one output rank: ``expr`` is rewritten for the 2-D kernel
    (reductions over axis -1), ``shapes`` its node shapes over ``(BATCH, WIDTH)`` leaves, and
    ``per_entry`` whether the result has one value per entry (the row's loss is their mean)."""

    text: str
    expr: ex.Expression
    shapes: tuple
    per_entry: bool


def describe(err: ValueError) -> str:
    """An error of :func:`analyze` as one sentence (the column, for a parse error)."""
    if isinstance(err, ex.ExprError):
        return f"{err} (at column {err.column + 1} of the expression)"
    return str(err)


def min_rank(expr: ex.Expression) -> int:
    """The smallest output rank the expression's axes fit (2, or more for ``axis=2``...), the
    rank it is checked at before the output it scores is known."""
    axes = [a for n in expr.nodes for a in (n.axes or ()) if a >= 0]
    return max([2] + [a + 1 for a in axes])


def parse(text: str) -> ex.Expression:
    """The expression over ``y_true`` and ``y_pred``; raises ExprError."""
    return ex.parse(text, TENSORS)


def analyze(text: str, rank: int | None = None) -> LossExpression:
    """Check ``text`` as a loss of an output of ``rank`` axes, batch included (by default the
    smallest rank its axes fit). Raises ExprError (a parse error, with its column) or ValueError
    (a result Keras could not reduce as a loss, an axis other than the last)."""
    expr = parse(text)
    rank = max(2, rank or min_rank(expr))
    lead = (ex.BATCH,) + (None,) * (rank - 2)
    shapes = ex.infer(expr, {t: (*lead, WIDTH) for t in TENSORS})
    nodes = []
    for n in expr.nodes:
        if n.op in ex.REDUCTIONS or n.op in ex.LAST_AXIS:
            x = shapes[n.args[0]]  # axes are given: infer() refuses reducing the batch axis
            if ex._axes(n.op, n.axes, len(x)) != (len(x) - 1,):
                axis = n.axes[0] if len(n.axes) == 1 else n.axes
                raise ValueError(f"{n.op} over axis {axis} of a tensor {ex._fmt(x)}: a loss is computed per "
                                 "step of the output, so only the last axis can be reduced (axis=-1)")  # fmt: skip
            n = replace(n, axes=(-1,))
        nodes.append(n)
    out = shapes[-1]
    if out not in (lead, (*lead, 1), (*lead, WIDTH)):
        raise ValueError(f"the expression gives values of shape {ex._fmt(out)}; a loss gives one value per "
                         f"sample {ex._fmt(lead)} (a mean or a sum over axis=-1) or one per entry "
                         f"{ex._fmt((*lead, WIDTH))}")  # fmt: skip
    flat = ex.Expression(text, nodes)
    flat_shapes = ex.infer(flat, {t: (ex.BATCH, WIDTH) for t in TENSORS})
    return LossExpression(text, flat, tuple(flat_shapes), out != lead)


def values(le: LossExpression, y_true, y_pred):
    """The NumPy reference: each row's loss (float64) of 2-D ``(rows, k)`` data."""
    import numpy as np

    v = ex.evaluate(le.expr, {"y_true": y_true, "y_pred": y_pred})
    return np.asarray(v, np.float64).reshape(len(y_pred), -1).mean(-1)


