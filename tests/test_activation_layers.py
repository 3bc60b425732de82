"""The activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax), and the other layers of Keras's
catalog added with them (Rescaling, GroupNormalization, 3D padding, cropping, upsampling and
transposed convolution), in whole models against Keras.

Per-layer forward and gradient checks are in test_kernels_core.py and test_backward_core.py;
here one model chains them (with a Dense before each PReLU so its slopes see both signs), and
its summary, its predictions and one SGD training step must match the same model in Keras 3
(PyTorch backend) built from the same file with nnspec's weights. Also: the errors Keras
would raise, raised when the file is loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import close, nnspec_and_keras, one_step_matches_keras

SPEC = """
format: nnspec/1
name: activations
inputs:
  x: {shape: [4, 6]}
layers:
  d1: {type: Dense, units: 6}
  relu: {type: ReLU, max_value: 1.5, negative_slope: 0.1, threshold: 0.2}
  leaky: {type: LeakyReLU}
  d2: {type: Dense, units: 6}
  prelu: {type: PReLU, alpha_initializer: glorot_uniform, shared_axes: [1]}
  elu: {type: ELU, alpha: 0.5}
  d3: {type: Dense, units: 5}
  prelu_full: {type: PReLU, alpha_initializer: glorot_uniform, alpha_regularizer: {type: l2, l2: 0.1}}
  soft_steps: {type: Softmax, axis: 1}
  flat: {type: Flatten}
  out: {type: Dense, units: 3}
  soft: {type: Softmax}
edges:
  - x -> d1 -> relu -> leaky -> d2 -> prelu -> elu -> d3 -> prelu_full -> soft_steps -> flat -> out -> soft
outputs: [soft]
"""


def _pair(spec):
    return nnspec_and_keras(spec, 3)


@pytest.mark.keras
def test_summary_predictions_and_a_training_step_match_keras():
    from keras_from_spec import keras_summary_facts

    m, km = _pair(SPEC)
    facts = keras_summary_facts(km)
    d = m.summary_dict()
    assert d["total_params"] == facts["total"]
    rows = {r["name"]: r for r in d["layers"]}
    for name, cls, shape, params in facts["layers"]:
        assert rows[name]["params"] == params and rows[name]["output_shape"] == list(shape), name
        assert rows[name]["type"] == cls, name
    assert rows["prelu"]["params"] == 6 and rows["prelu_full"]["params"] == 20  # (1, 6) shared; (4, 5)

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.5, size=(8, 4, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")

    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.5), loss="categorical_crossentropy")
    import keras

    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="categorical_crossentropy")
    before = m.get_weights()
    ours = float(m.train_on_batch(x, y))
    theirs = float(np.asarray(km.train_on_batch(x, y)))
    assert abs(ours - theirs) <= 1e-4 * abs(theirs)
    for layer in m.layers[1:]:  # the input has no weights
        for k, (a, b) in enumerate(zip(layer.get_weights(), km.get_layer(layer.name).get_weights())):
            close(a, b, 1e-4, f"{layer.name} weight {k}")
    moved = [not np.array_equal(a, b) for a, b in zip(before, m.get_weights())]
    assert all(moved), "every weight, the PReLU slopes included, takes a step"


PRELU_ENDS = """
format: nnspec/1
name: prelu_ends
inputs:
  x: {shape: [5]}
layers:
  first: {type: PReLU, alpha_initializer: glorot_uniform}
  d: {type: Dense, units: 4}
  frozen: {type: PReLU, alpha_initializer: glorot_uniform, trainable: false}
  out: {type: Dense, units: 3}
edges:
  - x -> first -> d -> frozen -> out
outputs: [out]
"""


def test_prelu_on_the_input_and_frozen_trains_as_in_keras():
    """Found by fuzzing imported Keras models: a PReLU whose input gradient is not needed (it
    reads the model input) or whose slopes are frozen passed Numba a read-only array to write."""
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1.5, size=(6, 5)).astype(np.float32)
    y = rng.normal(size=(6, 3)).astype(np.float32)
    moved = one_step_matches_keras(PRELU_ENDS, x, y, seed=3, loss="mse")
    assert moved == 5  # the first PReLU's slopes, both Dense layers' kernels and biases; not the frozen slopes


@pytest.mark.parametrize(
    "layer,message",
    [
        ("{type: ReLU, threshold: -0.5}", "threshold"),  # Keras refuses a negative threshold
        ("{type: ReLU, max_value: -1}", "max_value"),
        ("{type: LeakyReLU, negative_slope: -0.1}", "negative_slope"),
        ("{type: PReLU, shared_axes: [3]}", "shared axis 3 is not an axis"),
        ("{type: Softmax, axis: 0}", "the batch axis cannot be normalized over"),
    ],
)
def test_bad_arguments_are_refused_when_loading(layer, message):
    spec = f"""
format: nnspec/1
name: bad
inputs:
  x: {{shape: [4, 6]}}
layers:
  a: {layer}
"""
    with pytest.raises(SpecError, match=message):
        nnspec.load(spec)


def test_softmax_refuses_a_masked_input():
    """Keras adds the (batch, steps) mask to a (batch, steps, features) input and fails."""
    spec = """
format: nnspec/1
name: masked
inputs:
  ids: {shape: [5], dtype: int32}
layers:
  e: {type: Embedding, input_dim: 10, output_dim: 4, mask_zero: true}
  s: {type: Softmax}
"""
    with pytest.raises(SpecError, match="Softmax: a masked input"):
        nnspec.load(spec)


CNN_2D = """
format: nnspec/1
name: cnn_2d
inputs:
  img: {shape: [8, 8, 3]}
layers:
  scale: {type: Rescaling, scale: 0.00392156862745098, offset: -0.5}
  conv: {type: Conv2D, filters: 4, kernel_size: 3}
  gn: {type: GroupNormalization, groups: 2, gamma_initializer: glorot_uniform, beta_initializer: glorot_uniform}
  act: {type: PReLU, shared_axes: [1, 2], alpha_initializer: glorot_uniform}
  up: {type: Conv2DTranspose, filters: 2, kernel_size: 3, strides: 2}
  flat: {type: Flatten}
  out: {type: Dense, units: 3}
  soft: {type: Softmax}
edges:
  - img -> scale -> conv -> gn -> act -> up -> flat -> out -> soft
outputs: [soft]
"""

CNN_3D = """
format: nnspec/1
name: cnn_3d
inputs:
  vol: {shape: [3, 4, 3, 2]}
layers:
  pad: {type: ZeroPadding3D, padding: [1, [0, 1], 1]}
  convt: {type: Conv3DTranspose, filters: 3, kernel_size: 2, strides: [1, 2, 1], activation: elu}
  crop: {type: Cropping3D, cropping: [[1, 0], 1, [0, 1]]}
  up: {type: UpSampling3D, size: [1, 2, 1]}
  pool: {type: GlobalAveragePooling3D}
  out: {type: Dense, units: 2}
edges:
  - vol -> pad -> convt -> crop -> up -> pool -> out
outputs: [out]
"""


@pytest.mark.keras
@pytest.mark.parametrize(
    "spec", [CNN_2D, CNN_3D], ids=["rescaling-groupnorm-prelu-2d", "padding-transpose-3d"]
)
def test_catalog_layers_in_a_model_match_keras(spec):
    """The newer catalog layers inside convolutional models: summary, predictions and one SGD
    step against Keras."""
    import keras

    m, km = _pair(spec)
    assert m.count_params() == km.count_params()
    rng = np.random.default_rng(5)
    shape = (6, *m.inputs[0].shape[1:])
    x = (
        rng.integers(0, 256, shape).astype(np.float32)
        if spec is CNN_2D
        else rng.normal(size=shape).astype(np.float32)
    )
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")
    y = rng.normal(size=(6, *m.outputs[0].shape[1:])).astype(np.float32)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="mse")
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    ours, theirs = float(m.train_on_batch(x, y)), float(np.asarray(km.train_on_batch(x, y)))
    assert abs(ours - theirs) <= 1e-4 * abs(theirs)
    for layer in m.layers[1:]:
        for k, (a, b) in enumerate(zip(layer.get_weights(), km.get_layer(layer.name).get_weights())):
            close(a, b, 1e-4, f"{layer.name} weight {k}")
