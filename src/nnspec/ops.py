"""``keras.ops`` for nnspec's custom layers (and custom losses): the functions a custom layer's
``call`` may use, under Keras's names and argument names::

    from nnspec import layers, ops

    class Scale(layers.Layer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return ops.tanh(inputs) * self.s

They work on the symbolic tensors nnspec traces a layer with (``nnspec.api.custom``): each call
writes one term of the expression the model file stores, so the set is exactly what
``nnspec.layerdefs.expressions`` compiles (see docs/format.md#custom-layers).
"""

from __future__ import annotations

from .layerdefs.expressions import FUNCTIONS, Sym, render_call

__all__ = list(FUNCTIONS)


def _function(fn: str):
    def f(*args, **kwargs):
        from .api.layer import KerasTensor

        if any(isinstance(a, KerasTensor) for a in (*args, *kwargs.values())):  # between layers of a model
            from .api.keras_ops import tensor_op

            return tensor_op(fn, args, kwargs)
        if not any(isinstance(a, Sym) for a in (*args, *kwargs.values())):
            raise TypeError(f"nnspec.ops.{fn} builds the expression of a custom layer or loss: call it on the "
                            "tensors nnspec passes to call(), not on arrays")  # fmt: skip
        return render_call(fn, args, kwargs)

    f.__name__ = f.__qualname__ = fn
    f.__doc__ = f"``keras.ops.{fn}`` in a custom layer's or loss's expression."
    return f


globals().update({fn: _function(fn) for fn in FUNCTIONS})
