"""The Masking layer against Keras: padded float sequences through recurrent layers, masked
pooling and a per-step loss.

Steps whose features all equal ``mask_value`` are masked: their output is zeros, a recurrent
layer keeps its state there, masked pooling leaves them out and a per-step loss is averaged
over the valid steps only. Each model is built by nnspec and by Keras 3 (PyTorch backend) from
the same file, with nnspec's weights; predictions, ``evaluate`` and one SGD training step must
agree. Per-layer kernel and gradient checks are in test_kernels_core.py / test_backward_core.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import close, nnspec_and_keras

POOLED = """
format: nnspec/1
name: pooled
inputs:
  x: {shape: [6, 3]}
layers:
  m: {type: Masking, mask_value: -1.0}
  l: {type: LSTM, units: 4, return_sequences: true}
  g: {type: GlobalAveragePooling1D}
  d: {type: Dense, units: 2}
edges:
  - x -> m -> l -> g -> d
outputs: [d]
"""

TAGGER = """
format: nnspec/1
name: tagger
inputs:
  x: {shape: [6, 3]}
layers:
  m: {type: Masking}
  b: {type: Bidirectional, layer: {type: GRU, units: 3, return_sequences: true}}
  t: {type: TimeDistributed, layer: {type: Dense, units: 4, activation: softmax}}
edges:
  - x -> m -> b -> t
outputs: [t]
"""


def _inputs(mask_value: float):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6, 3)).astype(np.float32)
    x[0, 3:] = mask_value  # padding at the end
    x[1, :2] = mask_value  # at the start
    x[2, 1] = mask_value  # one step inside
    x[3, 2, 0] = mask_value  # one feature only: not masked
    return x  # sample 4: nothing masked


def _pair(spec):
    return nnspec_and_keras(spec, 2)


@pytest.mark.keras
@pytest.mark.parametrize("spec,mask_value,loss", [(POOLED, -1.0, "mse"), (TAGGER, 0.0, "categorical_crossentropy")],
                         ids=["lstm-masked-pooling", "bigru-per-step-loss"])  # fmt: skip
def test_masked_sequences_match_keras(spec, mask_value, loss):
    import keras

    m, km = _pair(spec)
    x = _inputs(mask_value)
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")
    out_shape = (5, *m.outputs[0].shape[1:])
    rng = np.random.default_rng(1)
    if loss == "mse":
        y = rng.normal(size=out_shape).astype(np.float32)
    else:
        y = np.eye(out_shape[-1], dtype=np.float32)[rng.integers(0, out_shape[-1], out_shape[:-1])]
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.3), loss=loss)
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.3), loss=loss)
    ev, kev = m.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0)
    assert abs(ev - kev) <= 1e-5 * abs(kev), (ev, kev)
    ours, theirs = float(m.train_on_batch(x, y)), float(km.train_on_batch(x, y))
    assert abs(ours - theirs) <= 1e-5 * abs(theirs), (ours, theirs)
    for layer in m.layers[1:]:
        for k, (a, b) in enumerate(zip(layer.get_weights(), km.get_layer(layer.name).get_weights())):
            close(a, b, 1e-4, f"{layer.name} weight {k}")


def test_masked_steps_are_zeros_and_the_rest_pass():
    spec = """
format: nnspec/1
name: just_masking
inputs:
  x: {shape: [6, 3]}
layers:
  m: {type: Masking, mask_value: -1.0}
"""
    m = nnspec.load(spec)
    x = _inputs(-1.0)
    y = m.predict(x)
    masked = (x == -1.0).all(axis=-1)
    assert masked.sum() == 3 + 2 + 1  # samples 0, 1 and 2; sample 3's partial step is kept
    np.testing.assert_array_equal(y[masked], 0.0)
    np.testing.assert_array_equal(y[~masked], x[~masked])


def test_masking_needs_sequences():
    spec = """
format: nnspec/1
name: flat
inputs:
  x: {shape: [6]}
layers:
  m: {type: Masking}
"""
    with pytest.raises(SpecError, match=r"Masking expects an input of rank 3 \(batch, steps, features\)"):
        nnspec.load(spec)
