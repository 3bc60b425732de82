"""Run one layer three ways: nnspec's compiled kernels, its NumPy reference, and Keras.

A layer case is ``(type_name, attrs, input_shapes, input_dtypes)``; input shapes exclude the
batch. The same random inputs and weights go to all three:

- :func:`run_nnspec`: a one-layer model file compiled by nnspec and run by the generated Numba
  function (the real codegen and executor), weights set with ``set_weights``;
- :func:`run_reference`: the layer's ``LayerDef.reference`` in float64;
- :func:`run_keras`: the same layer in Keras 3 on its PyTorch backend, same weights.
"""

from __future__ import annotations

import numpy as np

import nnspec
from nnspec.layerdefs import REGISTRY, activations
from nnspec.layerdefs.base import bind_numpy, normalize_attrs

bind_numpy([activations])


def one_layer_spec(type_name: str, attrs: dict, input_shapes, input_dtypes=None) -> dict:
    input_dtypes = input_dtypes or ["float32"] * len(input_shapes)
    names = [f"x{i}" for i in range(len(input_shapes))]
    return {
        "format": "nnspec/1",
        "name": "case",
        "inputs": {n: {"shape": list(s), "dtype": d} for n, s, d in zip(names, input_shapes, input_dtypes)},
        "layers": {"layer": {"type": type_name, **attrs}},
        "edges": [", ".join(names) + " -> layer"],
        "outputs": ["layer"] if _n_outputs(type_name, attrs, input_shapes, input_dtypes) == 1
        else [f"layer:{k}" for k in range(_n_outputs(type_name, attrs, input_shapes, input_dtypes))],
    }


def _n_outputs(type_name, attrs, input_shapes, input_dtypes) -> int:
    from nnspec.compiler import analyze
    from nnspec.specs.load import Document

    spec = {
        "format": "nnspec/1",
        "name": "probe",
        "inputs": {f"x{i}": {"shape": list(s), "dtype": d} for i, (s, d) in enumerate(zip(input_shapes, input_dtypes))},
        "layers": {"layer": {"type": type_name, **attrs}},
        "edges": [", ".join(f"x{i}" for i in range(len(input_shapes))) + " -> layer"],
        "outputs": ["layer"],
    }
    typed = analyze(Document(spec))
    return len(typed.nodes["layer"].out_types)


def random_inputs(input_shapes, input_dtypes=None, batch: int = 3, seed: int = 0, int_high: int = 10):
    rng = np.random.default_rng(seed)
    input_dtypes = input_dtypes or ["float32"] * len(input_shapes)
    out = []
    for s, d in zip(input_shapes, input_dtypes):
        if d.startswith(("int", "uint")):
            out.append(rng.integers(0, int_high, size=(batch, *s)).astype(d))
        else:
            out.append(rng.normal(0, 1, size=(batch, *s)).astype(np.float32))
    return out


def build_nnspec(type_name, attrs, input_shapes, input_dtypes=None, seed: int = 0):
    return nnspec.Model.from_config(one_layer_spec(type_name, attrs, input_shapes, input_dtypes))


def run_nnspec(type_name, attrs, inputs, weights, input_dtypes=None):
    """Outputs (a list) of the compiled one-layer model on ``inputs`` with ``weights``."""
    shapes = [a.shape[1:] for a in inputs]
    m = build_nnspec(type_name, attrs, shapes, input_dtypes)
    m.set_weights(weights)
    out = m.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
    return out if isinstance(out, list) else [out]


def nnspec_weights(type_name, attrs, input_shapes, input_dtypes=None, seed: int = 0):
    """Initial weights of the layer (Keras's initializers), perturbed so biases are not all 0."""
    m = build_nnspec(type_name, attrs, input_shapes, input_dtypes)
    m._seed = seed
    rng = np.random.default_rng(seed + 1)
    return [np.asarray(w + rng.normal(0, 0.1, size=w.shape).astype(np.float32)) for w in m.get_weights()]  # 0-d stays an array


def run_reference(type_name, attrs, inputs, weights, masks=None):
    defn = REGISTRY[type_name]
    a = normalize_attrs(defn, attrs)
    outs = defn.reference(a, [x.astype(np.float64) if x.dtype.kind == "f" else x for x in inputs],
                          [w.astype(np.float64) for w in weights], masks)  # fmt: skip
    return list(outs)


def run_keras(type_name, attrs, inputs, weights, input_dtypes=None):
    """Outputs of the same layer in Keras (PyTorch backend) with the same weights."""
    import keras
    from keras_ref import call_attrs, call_layer, flatten, keras_layer

    input_dtypes = input_dtypes or ["float32"] * len(inputs)
    ins = [keras.Input(shape=x.shape[1:], dtype=d) for x, d in zip(inputs, input_dtypes)]
    layer = keras_layer(type_name, dict(attrs))
    out = call_layer(layer, type_name, ins, call_attrs(type_name, attrs)[1])
    model = keras.Model(ins, out)
    layer.set_weights(weights)
    res = model.predict(inputs[0] if len(inputs) == 1 else inputs, verbose=0)
    return [np.asarray(r) for r in flatten(res)]
