"""Preprocessing layers that are part of a model's arithmetic: Rescaling.

``Rescaling`` is how Keras's image tutorials start a model (``Rescaling(1./255)`` on pixel
values): ``y = x * scale + offset``, computed in float32 as Keras does (the product rounded to
float32, then the offset added), for float or integer inputs (integer pixels become float32).
"""

from __future__ import annotations

from .base import COMMON_ATTRS, Attr, LayerDef, TensorType

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ()


def rescale_forward(x, y, scale, offset):
    """``y = float32(x) * scale + offset`` over 2-D views, in float32 arithmetic."""
    rows, cols = x.shape
    s = np.float32(scale)
    o = np.float32(offset)
    for r in range(rows):
        for c in range(cols):
            y[r, c] = np.float32(x[r, c]) * s + o


def rescale_backward(dy, dx, scale):
    rows, cols = dy.shape
    s = np.float32(scale)
    for r in range(rows):
        for c in range(cols):
            dx[r, c] += dy[r, c] * s


def _rescaling_infer(attrs, inputs, ctx):
    (x,) = inputs
    return [TensorType(x.shape, "float32", x.masked)]


def _rescaling_emit(e):
    a = e.attrs
    return [
        e.call(
            rescale_forward,
            e.per_sample(e.x[0]),
            e.per_sample(e.y[0], True),
            float(a["scale"]),
            float(a["offset"]),
        )
    ]


def _rescaling_backward(e):
    if e.dx[0] is None:
        return []
    return [
        e.call(rescale_backward, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]), float(e.attrs["scale"]))
    ]


def _rescaling_reference(attrs, inputs, params, masks=None):
    import numpy

    return [numpy.asarray(inputs[0], numpy.float64) * attrs["scale"] + attrs["offset"]]


RESCALING = LayerDef(
    name="Rescaling",
    attrs=(
        Attr("scale", "float", doc="The factor inputs are multiplied by (1/255 for 8-bit pixels)."),
        Attr("offset", "float", 0.0, "Added after scaling."),
        *COMMON_ATTRS,
    ),
    infer=_rescaling_infer,
    emit=_rescaling_emit,
    emit_backward=_rescaling_backward,
    reference=_rescaling_reference,
    positional=("scale", "offset"),
    doc="`x * scale + offset`, in float32 (integer inputs such as 8-bit pixels become float32). "
    "Passes the mask through.",
)
