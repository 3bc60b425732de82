"""Embedding: integer indices to dense vectors.

Keras 3 dropped ``input_length``. Its ``weights`` (initial values), ``lora_rank``/``lora_alpha``
(low-rank fine-tuning) and ``quantization_config`` arguments are not model structure and are
not accepted here.
"""

from __future__ import annotations

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape


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
    positional=("input_dim", "output_dim"),
    doc="Looks up each index of its input in a trainable (input_dim, output_dim) table and "
    "returns the rows, adding an axis of length output_dim: (batch, ...) becomes "
    "(batch, ..., output_dim). Indices may arrive as integers or floats and must lie in "
    "[0, input_dim). With mask_zero the output carries a mask marking the non-zero indices, which "
    "is how padded sequences are skipped by the recurrent layers downstream; otherwise the output "
    "carries no mask, whatever the input had.",
)

LAYERS = (EMBEDDING,)
