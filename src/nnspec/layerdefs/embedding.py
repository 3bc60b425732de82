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

LAYERS = (EMBEDDING,)
