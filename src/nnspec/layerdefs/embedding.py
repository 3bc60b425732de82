"""Embedding: integer indices to dense vectors.

Keras 3 dropped ``input_length``. Its ``weights`` (initial values), ``lora_rank``/``lora_alpha``
(low-rank fine-tuning) and ``quantization_config`` arguments are not model structure and are
not accepted here.

Inference: the kernel copies row ``id`` of the table for each id, ids given as integers or as
floats (Keras casts floats to int32, truncating toward zero: ``2.7`` reads row 2). An id outside
``[0, input_dim)`` (after that truncation; NaN included) stops the run with an error naming the
layer, the range and the id: Keras on PyTorch would raise an IndexError for a large id but read
``table[input_dim + id]`` for a negative one, which is never what a model means. With
``mask_zero`` the mask is ``id != 0`` on the ids as given (a float ``0.5`` is not masked, as in
Keras, although it reads row 0).
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ()


def _embedding_infer(attrs, inputs, ctx):
    (x,) = inputs
    if x.rank < 1:
        raise ShapeError(f"Embedding expects an input with a batch dimension; got {fmt_shape(x.shape)}")
    return [TensorType((*x.shape, attrs["output_dim"]), "float32", bool(attrs["mask_zero"]))]


def _embedding_params(attrs, inputs, ctx):
    return [
        ParamSpec(
            "embeddings", (attrs["input_dim"], attrs["output_dim"]), attrs["embeddings_initializer"],
            regularizer=attrs["embeddings_regularizer"], constraint=attrs["embeddings_constraint"],
        )
    ]  # fmt: skip


def embedding_forward(ids, table, y):
    """``y[i * cols + j, :] = table[ids[i, j], :]`` for 2-D ``ids`` (integers or floats,
    truncated toward zero) and 2-D ``y`` (ids.size, output_dim). Returns the flat position of
    the first id outside [0, input_dim), or -1; rows after a bad id are not written."""
    rows, cols = ids.shape
    n = table.shape[0]
    dim = table.shape[1]
    for i in range(rows):
        for j in range(cols):
            v = ids[i, j]
            if not (v > -1 and v < n):  # also catches NaN
                return i * cols + j
            k = int(v)
            o = i * cols + j
            for d in range(dim):
                y[o, d] = table[k, d]
    return -1


def embedding_id_text(ids, pos):
    """The id at flat position ``pos`` of the 2-D ``ids``, as text for an error message."""
    cols = ids.shape[1]
    v = ids[pos // cols, pos % cols]
    if math.isnan(v):
        return "nan"
    if abs(v) > 9.0e18:
        return "inf" if v > 0 else "-inf"
    k = int(v)
    if k == v:
        return str(k)
    return str(k) + " (truncated from a float)"


def mask_not_equal_zero(ids, mask_out):
    """``mask_out = (ids != 0)`` as 1.0/0.0, both arrays holding one entry per id."""
    if ids.size != mask_out.size:
        raise ValueError(
            "Embedding(mask_zero=True): nnspec's masks cover (batch, steps); the ids have more axes"
        )
    flat_ids = ids.reshape(ids.size)
    flat_mask = mask_out.reshape(mask_out.size)
    for i in range(flat_ids.shape[0]):
        flat_mask[i] = 1.0 if flat_ids[i] != 0 else 0.0


def _embedding_emit(e):
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    a = e.attrs
    ids = e.flat2(e.x[0], tuple(xs) or (1,), e.rows())
    y2 = e.flat2(e.y[0], ys, e.rows(output=True))
    bad = f"{e.y[0]}_bad"
    msg = f"Embedding '{e.step.node}': ids must lie in [0, {a['input_dim']}) (input_dim is {a['input_dim']}); got "
    return [
        f"{bad} = {e.call(embedding_forward, ids, e.p[0], y2)}",
        f"if {bad} >= 0:",
        f"    raise ValueError({e.lit(msg)} + {e.call(embedding_id_text, ids, bad)})",
    ]


def embedding_backward(ids, dy, dtable):
    """``dtable[ids[i, j], :] += dy[i * cols + j, :]``: the scatter-add of the lookup's gradient
    (ids truncated toward zero as in the forward pass, which already checked their range)."""
    rows, cols = ids.shape
    dim = dtable.shape[1]
    for i in range(rows):
        for j in range(cols):
            k = int(ids[i, j])
            o = i * cols + j
            for d in range(dim):
                dtable[k, d] += dy[o, d]


def _embedding_backward(e):
    # The ids get no gradient (they are indices); only the table does, when it is trainable.
    if e.dp[0] is None:
        return []
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    ids = e.flat2(e.x[0], tuple(xs) or (1,), e.rows())
    dy2 = e.flat2(e.dy[0], ys, e.rows(output=True))
    return [e.call(embedding_backward, ids, dy2, e.dp[0])]


def _embedding_reference(attrs, inputs, params, masks=None):
    (ids,) = inputs
    (table,) = params
    n = attrs["input_dim"]
    if not np.all((ids > -1) & (ids < n)):
        raise ValueError(f"Embedding: ids must lie in [0, {n})")
    return [table[np.trunc(ids).astype(np.int64)]]


EMBEDDING = LayerDef(
    name="Embedding",
    attrs=(
        Attr("input_dim", "int", doc="Size of the vocabulary: the largest index plus one.", minimum=1),
        Attr("output_dim", "int", doc="Length of each embedding vector.", minimum=1),
        Attr(
            "embeddings_initializer",
            "initializer",
            "uniform",
            "Initializer of the embedding matrix (Keras's `uniform`: RandomUniform(-0.05, 0.05)).",
        ),
        Attr(
            "embeddings_regularizer", "regularizer", None, "Penalty on the embedding matrix.", nullable=True
        ),
        Attr(
            "embeddings_constraint", "constraint", None, "Constraint on the embedding matrix.", nullable=True
        ),
        Attr("activity_regularizer", "regularizer", None, "Penalty on the output.", nullable=True),
        Attr(
            "mask_zero",
            "bool",
            False,
            "Treat index 0 as padding: the output carries a mask that is false where the input is 0.",
        ),
        *COMMON_ATTRS,
    ),
    infer=_embedding_infer,
    params=_embedding_params,
    emit=_embedding_emit,
    reference=_embedding_reference,
    emit_backward=_embedding_backward,
    positional=("input_dim", "output_dim"),
    doc="Looks up each index of its input in a trainable (input_dim, output_dim) table and "
    "returns the rows, adding an axis of length output_dim: (batch, ...) becomes "
    "(batch, ..., output_dim). Indices may arrive as integers or floats and must lie in "
    "[0, input_dim). With mask_zero the output carries a mask marking the non-zero indices, which "
    "is how padded sequences are skipped by the recurrent layers downstream; otherwise the output "
    "carries no mask, whatever the input had.",
)

# ----------------------------------------------------------------------------- ReversibleEmbedding
#
# Keras 3's ReversibleEmbedding (keras/src/layers/core/reversible_embedding.py): an Embedding
# that can also be called "in reverse" (call argument ``reverse=True``) to project vectors back
# onto the vocabulary: ``logits = x @ embeddings.T`` (``tie_weights``, the default) or ``x @
# reverse_embeddings`` (an own (output_dim, input_dim) weight, made with the embeddings'
# initializer, no regularizer or constraint), then, with ``logit_soft_cap`` c, ``tanh(logits /
# c) * c``. A language model calls one layer both ways; in a model file the second call is a
# ``shares`` entry with ``reverse: true``. The forward call is Embedding's (its kernels, its
# mask with ``mask_zero``); the reverse call passes no mask on (Keras's compute_mask gives None).
# ``reverse_dtype`` is accepted as null or float32 (nnspec computes in float32; Keras's other
# dtypes change the numbers). Keras's int8/int4 quantized variants are not model structure.


def _reversible_infer(attrs, inputs, ctx):
    if not attrs["reverse"]:
        return _embedding_infer(attrs, inputs, ctx)
    (x,) = inputs
    if x.rank < 2 or x.shape[-1] != attrs["output_dim"]:
        raise ShapeError(f"ReversibleEmbedding(reverse=True) expects vectors of output_dim = {attrs['output_dim']} "
                         f"on the last axis; got {fmt_shape(x.shape)}")  # fmt: skip
    return [TensorType((*x.shape[:-1], attrs["input_dim"]), "float32", False)]


def _reversible_params(attrs, inputs, ctx):
    out = _embedding_params(attrs, inputs, ctx)
    if not attrs["tie_weights"]:
        out.append(ParamSpec("reverse_embeddings", (attrs["output_dim"], attrs["input_dim"]),
                             attrs["embeddings_initializer"]))  # fmt: skip
    return out


def reverse_forward(x, table, rev, tie, cap, y):
    """``y = x @ table.T`` (``tie``) or ``x @ rev``, then ``tanh(y / cap) * cap`` when ``cap``
    is positive; 2-D ``x`` (rows, output_dim) and ``y`` (rows, input_dim)."""
    if tie:
        np.dot(x, table.T, y)
    else:
        np.dot(x, rev, y)
    if cap > 0.0:
        rows, cols = y.shape
        for i in range(rows):
            for j in range(cols):
                y[i, j] = np.tanh(y[i, j] / cap) * cap


def reverse_backward(x, y, dy, table, rev, tie, cap, dtable, drev, dx, want_w, want_x):
    """The reverse call's gradients, ADDED: the soft cap's ``1 - tanh^2`` (from ``y``), then
    ``dtable += dz.T @ x`` (``tie``) or ``drev += x.T @ dz``, and ``dx += dz @ table`` or
    ``dz @ rev.T`` (BLAS products)."""
    rows, cols = dy.shape
    dz = np.empty((rows, cols), np.float32)
    for i in range(rows):
        for j in range(cols):
            g = dy[i, j]
            if cap > 0.0:
                t = y[i, j] / cap
                g = g * (1.0 - t * t)
            dz[i, j] = g
    if want_w:
        if tie:
            dtable += np.dot(dz.T, x)
        else:
            drev += np.dot(x.T, dz)
    if want_x:
        if tie:
            dx += np.dot(dz, table)
        else:
            dx += np.dot(dz, rev.T)


def _cap(attrs) -> float:
    return float(attrs["logit_soft_cap"] or 0.0)


def _reversible_emit(e):
    a = e.attrs
    if not a["reverse"]:
        return _embedding_emit(e)
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    x2 = e.flat2(e.x[0], xs, e.rows())
    y2 = e.flat2(e.y[0], ys, e.rows(output=True))
    rev = e.p[0] if a["tie_weights"] else e.p[1]
    return [e.call(reverse_forward, x2, e.p[0], rev, bool(a["tie_weights"]), _cap(a), y2)]


def _reversible_backward(e):
    a = e.attrs
    if not a["reverse"]:
        return _embedding_backward(e)
    tie = bool(a["tie_weights"])
    dw = e.dp[0] if tie else e.dp[1]
    if dw is None and e.dx[0] is None:
        return []
    (xs,) = e.x_shapes
    (ys,) = e.y_shapes
    rows = e.rows(output=True)
    x2 = e.flat2(e.x[0], xs, e.rows())
    rev = e.p[0] if tie else e.p[1]
    none = "np.zeros((1, 1), np.float32)"
    dtable = (dw if tie else none) if dw is not None else none
    drev = (dw if not tie else none) if dw is not None else none
    dx = e.flat2(e.dx[0], xs, e.rows()) if e.dx[0] is not None else none
    return [e.call(reverse_backward, x2, e.flat2(e.y[0], ys, rows), e.flat2(e.dy[0], ys, rows), e.p[0], rev, tie,
                   _cap(a), dtable, drev, dx, dw is not None, e.dx[0] is not None)]  # fmt: skip


def _reversible_reference(attrs, inputs, params, masks=None):
    if not attrs["reverse"]:
        return _embedding_reference(attrs, inputs, params[:1], masks)
    (x,) = inputs
    kernel = params[0].T if attrs["tie_weights"] else params[1]
    logits = x @ kernel  # in the operands' dtype (float64 for finite differences)
    cap = _cap(attrs)
    if cap > 0:
        logits = np.tanh(logits / cap) * cap
    return [logits]


_EMBEDDING_ATTRS = {a.name: a for a in EMBEDDING.attrs}

REVERSIBLE_EMBEDDING = LayerDef(
    name="ReversibleEmbedding",
    attrs=(
        _EMBEDDING_ATTRS["input_dim"],
        _EMBEDDING_ATTRS["output_dim"],
        Attr("tie_weights", "bool", True, "The reverse projection uses the transposed embeddings (true) or an own "
             "(output_dim, input_dim) weight, reverse_embeddings (false)."),
        _EMBEDDING_ATTRS["embeddings_initializer"],
        _EMBEDDING_ATTRS["embeddings_regularizer"],
        _EMBEDDING_ATTRS["embeddings_constraint"],
        _EMBEDDING_ATTRS["activity_regularizer"],
        _EMBEDDING_ATTRS["mask_zero"],
        Attr("reverse_dtype", "enum", None, "The dtype of the reverse projection: nnspec computes in float32.",
             choices=("float32",), nullable=True),
        Attr("logit_soft_cap", "float", None, "With reverse: the logits become tanh(logits / c) * c.",
             nullable=True, minimum=0.0, exclusive_minimum=True),
        Attr("reverse", "bool", False, "Keras's call argument: project vectors of output_dim onto the vocabulary "
             "(logits of input_dim) instead of looking ids up. A shares entry may give its own."),
        *COMMON_ATTRS,
    ),
    infer=_reversible_infer,
    params=_reversible_params,
    emit=_reversible_emit,
    reference=_reversible_reference,
    emit_backward=_reversible_backward,
    positional=("input_dim", "output_dim"),
    extra={"call_attrs": ("reverse",)},
    doc="An Embedding that can also be called in reverse (Keras's call argument reverse=True, in a file "
    "`reverse: true`, usually on a `shares` entry): vectors of output_dim become logits over the "
    "vocabulary, `x @ embeddings.T` (tie_weights) or `x @ reverse_embeddings`, soft-capped by "
    "`tanh(logits / c) * c` with logit_soft_cap. Called forward it is an Embedding (mask_zero included); "
    "the reverse call passes no mask on.",
)

LAYERS = (EMBEDDING, REVERSIBLE_EMBEDDING)
