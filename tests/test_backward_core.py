"""Training forward and backward kernels of the core, activation, merge, normalization and
embedding layers, and training end to end.

Gradient cases run through the real compiled train step: the layer under test is fed by a linear
``Dense`` with an identity kernel (so its input is exactly the test's input, and the input's
gradient is a value in the gradient workspace), or by an ``Embedding(mask_zero=True)`` for masked
inputs, scored with ``mse`` against a random target and trained one step with
``SGD(learning_rate=0)``. From the trainer we read the layer's output ``y`` (computed in
training mode), its upstream gradient ``dy`` (what the loss wrote), the gradient of every float
input and of every trainable weight. Each is then checked

1. against float64 central finite differences of ``sum(dy * reference(x, w))``, the layer's
   NumPy reference (a training-mode reference for BatchNormalization), within 1e-3 of the
   gradient's scale (its largest magnitude);
2. against autograd of the same Keras 3 layer on its PyTorch backend (``training=True``), same
   inputs, weights, masks and ``dy``, within 1e-4 of the gradient's scale; BatchNormalization's
   moving statistics after the step too.

A few cases share one model (one compilation; see grad_harness.GradSuite). Every activation code is checked
on the kernels directly, at random points and at its kinks (PyTorch's choices there). Random
layers (Dropout and the noise layers) are checked for their formulas, statistics and seeding.
End to end: one training step of the seed MLP and of a Dense/BatchNormalization/Dropout model
with SGD, RMSprop and Adam against Keras (loss and every weight after the step), a shared layer
with fan-out, and the seed MLP learning a simple task with ``fit``.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import activations, core, embedding, merge, normalization

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import (
    KINKS,
    VOCAB,
    Case,
    GradSuite,
    Result,
    _seed,
    close,
    fd_grads,
    keras_grads,
    kinks,
    positive_ids,
    reference,
    ties,
)

FD_TOL = 1e-3  # kernels (float32) against finite differences of the float64 reference
TORCH_TOL = 1e-4  # kernels against autograd through Keras on PyTorch
SPECS = Path(__file__).resolve().parents[1] / "specs"


def masked_steps(rng, shapes, batch):
    """Normal values with some steps all 0.5 (the Masking cases' mask_value): the first step of
    sample 0, the last two of sample 1, every other step of sample 2. Finite differences do not
    apply there (a step's mask flips with any change), Keras's autograd does."""
    (x,) = [rng.normal(0, 1, size=(batch, *s)).astype(np.float32) for s in shapes]
    x[0, 0] = 0.5
    x[1, -2:] = 0.5
    x[2, ::2] = 0.5
    return [x]


# ----------------------------------------------------------------------------- cases

# fmt: off
CASES = [
    # ---- core (the full table of activations is checked on the kernels directly, below)
    Case("activation-softmax", "Activation", {"activation": "softmax"}, ((3, 6),)),
    Case("activation-glu", "Activation", {"activation": "glu"}, ((3, 6),)),
    Case("identity", "Identity", {}, ((3, 4),)),
    Case("rescaling", "Rescaling", {"scale": -0.7, "offset": 0.3}, ((3, 4),)),
    Case("masking", "Masking", {"mask_value": 0.5}, ((5, 3),)),
    Case("masking-masked-steps", "Masking", {"mask_value": 0.5}, ((5, 3),), data=masked_steps, fd=False),
    Case("relu-layer", "ReLU", {}, ((3, 4),)),
    Case("relu-max-slope-threshold", "ReLU", {"max_value": 1.0, "negative_slope": 0.2, "threshold": 0.3}, ((8,),)),
    Case("leaky-relu", "LeakyReLU", {"negative_slope": 0.1}, ((3, 4),)),
    Case("prelu", "PReLU", {"alpha_initializer": "glorot_uniform"},
         ((3, 4),)),
    Case("prelu-shared", "PReLU", {"alpha_initializer": "glorot_uniform",
                                   "shared_axes": [1]}, ((3, 4),)),
    Case("elu", "ELU", {"alpha": 0.7}, ((3, 4),)),
    # At the kinks (0, +-3, 6, ...: grad_harness.KINKS) the derivative is whatever PyTorch's autograd
    # gives for Keras's composition of each layer: leaky_relu (slope at 0) for LeakyReLU and for a
    # ReLU with only a slope, relu6 (0 at 0 and 6) for max_value 6, a clip (1 at its bounds) for
    # other maxima, relu(x) - alpha * relu(-x) (0 at 0) for PReLU. Found by fuzzing (seed 20121).
    Case("relu-layer-kinks", "ReLU", {}, ((10,),), data=kinks, fd=False),
    Case("relu-slope-kinks", "ReLU", {"negative_slope": 0.2}, ((10,),), data=kinks, fd=False),
    Case("relu6-kinks", "ReLU", {"max_value": 6.0}, ((10,),), data=kinks, fd=False),
    Case("relu6-slope-kinks", "ReLU", {"max_value": 6.0, "negative_slope": 0.1}, ((10,),), data=kinks, fd=False),
    Case("relu-max3-kinks", "ReLU", {"max_value": 3.0}, ((10,),), data=kinks, fd=False),
    Case("relu-threshold-kinks", "ReLU", {"threshold": 1.0, "negative_slope": 0.3}, ((10,),), data=kinks,
         fd=False),
    Case("leaky-relu-kinks", "LeakyReLU", {"negative_slope": 0.1}, ((10,),), data=kinks, fd=False),
    Case("prelu-kinks", "PReLU", {"alpha_initializer": "glorot_uniform"}, ((10,),), data=kinks, fd=False),
    Case("elu-kinks", "ELU", {"alpha": 0.7}, ((10,),), data=kinks, fd=False),
    Case("softmax-layer", "Softmax", {}, ((3, 5),)),
    Case("softmax-axis1", "Softmax", {"axis": 1}, ((4, 3),)),
    Case("dense-relu", "Dense", {"units": 5, "activation": "relu"}, ((6,),)),
    Case("dense-gelu", "Dense", {"units": 5, "activation": "gelu"}, ((6,),)),  # saves the pre-activation
    Case("dense-no-bias", "Dense", {"units": 4, "use_bias": False, "activation": "tanh"}, ((6,),)),
    Case("dense-frozen", "Dense", {"units": 4, "activation": "sigmoid", "trainable": False}, ((6,),)),
    Case("dense-rank3", "Dense", {"units": 5, "activation": "silu"}, ((4, 3),)),
    Case("permute-312", "Permute", {"dims": [3, 1, 2]}, ((2, 3, 4),)),
    Case("repeat-vector", "RepeatVector", {"n": 3}, ((6,),)),
    Case("flatten-cf-rank4", "Flatten", {"data_format": "channels_first"}, ((2, 3, 4),)),
    Case("reshape-view", "Reshape", {"target_shape": [2, -1]}, ((4, 3),)),
    Case("time-distributed-dense", "TimeDistributed", {"layer": {"type": "Dense", "units": 3, "activation": "tanh"}},
         ((4, 5),)),
    Case("activity-regularization", "ActivityRegularization", {"l1": 0.1, "l2": 0.2}, ((6,),)),
    Case("dense-activity-l1-l2", "Dense", {"units": 4, "activity_regularizer": {"type": "l1_l2", "l1": 0.1, "l2": 0.2}},
         ((6,),), keras="nnspec's regularizer form; the penalty's gradient is in dy, see test_activity_penalty_gradient"),
    Case("embedding", "Embedding", {"input_dim": VOCAB, "output_dim": 2}, ((2, 3),), data=positive_ids, ids=True),
    # ---- merges
    Case("add-broadcast", "Add", {}, ((3, 4), (1, 4), (4,))),
    Case("subtract-broadcast", "Subtract", {}, ((3, 4), (3, 1))),
    Case("multiply-broadcast", "Multiply", {}, ((3, 4), (1, 4), (4,))),
    Case("average-broadcast", "Average", {}, ((3, 4), (1, 4))),
    Case("maximum-broadcast", "Maximum", {}, ((3, 4), (1, 4), (4,))),
    Case("minimum-ties", "Minimum", {}, ((3, 4), (3, 4), (3, 4)), data=ties, fd=False),
    Case("concatenate-axis1", "Concatenate", {"axis": 1}, ((3, 4), (2, 4))),
    Case("dot-attention", "Dot", {"axes": [2, 2]}, ((3, 4), (5, 4))),
    Case("dot-mixed-axes-normalize", "Dot", {"axes": [1, 2], "normalize": True}, ((4, 3), (5, 4))),
    Case("dot-blas-normalize", "Dot", {"axes": [2, 2], "normalize": True}, ((20, 16), (30, 16))),
    Case("masked-multiply-m-m", "Multiply", {}, ((5,), (5,)), masked=(True, True)),
    Case("masked-minimum-u-m", "Minimum", {}, ((5,), (5,)), masked=(False, True)),
    Case("masked-maximum-m-u-m", "Maximum", {}, ((5,), (5,), (5,)), masked=(True, False, True)),
    Case("masked-multiply-m-u-m", "Multiply", {}, ((5,), (5,), (5,)), masked=(True, False, True)),
    # ---- normalization
    Case("bn-rank3", "BatchNormalization", {"momentum": 0.9}, ((3, 4),)),
    Case("bn-axis1-rank4", "BatchNormalization", {"axis": 1, "epsilon": 0.01}, ((3, 2, 2),)),
    Case("bn-no-center", "BatchNormalization", {"center": False}, ((6,),)),
    Case("bn-bare", "BatchNormalization", {"center": False, "scale": False}, ((6,),)),
    Case("bn-frozen", "BatchNormalization", {"trainable": False}, ((6,),)),
    Case("bn-masked", "BatchNormalization", {"momentum": 0.5}, ((5,),), masked=(True,)),
    Case("ln-two-axes", "LayerNormalization", {"axis": [1, 2], "epsilon": 0.1}, ((3, 4),)),
    Case("ln-axis1", "LayerNormalization", {"axis": 1}, ((3, 4),),
         keras="Keras 3.15 on torch normalizes the last axes instead (see normalization.py)"),
    Case("ln-rms-scaling", "LayerNormalization", {"rms_scaling": True}, ((3, 4),)),
    Case("rms-rank3", "RMSNormalization", {"epsilon": 0.01}, ((3, 4),)),
    Case("unit-axis1", "UnitNormalization", {"axis": 1}, ((3, 4),)),
    Case("gn-last", "GroupNormalization", {"groups": 2, "gamma_initializer": "glorot_uniform",
                                           "beta_initializer": "glorot_uniform"}, ((3, 4),)),
    Case("gn-instance-axis1", "GroupNormalization", {"groups": -1, "axis": 1, "center": False,
                                                     "gamma_initializer": "glorot_uniform"}, ((3, 4),)),
    Case("gn-middle-axis-no-scale", "GroupNormalization", {"groups": 3, "axis": 2, "scale": False},
         ((2, 6, 2),)),
    Case("gn-frozen", "GroupNormalization", {"groups": 2, "trainable": False}, ((4, 2),)),
]
# Random layers: a big batch, for their statistics; one model.
RANDOM_CASES = [
    Case("dropout", "Dropout", {"rate": 0.3}, ((8, 25),), batch=50, kind="random"),
    Case("dropout-zero", "Dropout", {"rate": 0.0}, ((8, 25),), batch=50, kind="random"),
    Case("dropout-one", "Dropout", {"rate": 1.0}, ((8, 25),), batch=50, kind="random"),
    Case("dropout-noise-shape", "Dropout", {"rate": 0.5, "noise_shape": [None, 1, 25]}, ((8, 25),), batch=50,
         kind="random"),
    Case("dropout-shared-batch", "Dropout", {"rate": 0.5, "noise_shape": [1, 8, None]}, ((8, 25),), batch=50,
         kind="random"),
    Case("spatial-dropout1d", "SpatialDropout1D", {"rate": 0.4}, ((8, 25),), batch=50, kind="random"),
    Case("spatial-dropout2d-cf", "SpatialDropout2D", {"rate": 0.5, "data_format": "channels_first"},
         ((6, 3, 4),), batch=50, kind="random"),
    Case("spatial-dropout3d", "SpatialDropout3D", {"rate": 0.5}, ((2, 3, 2, 5),), batch=50, kind="random"),
    Case("alpha-dropout", "AlphaDropout", {"rate": 0.3}, ((8, 25),), batch=50, kind="random"),
    Case("alpha-dropout-one", "AlphaDropout", {"rate": 1.0}, ((8, 25),), batch=50, kind="random"),
    Case("gaussian-noise", "GaussianNoise", {"stddev": 0.5}, ((8, 25),), batch=50, kind="random"),
    Case("gaussian-noise-zero", "GaussianNoise", {"stddev": 0.0}, ((8, 25),), batch=50, kind="random"),
    Case("gaussian-dropout", "GaussianDropout", {"rate": 0.2}, ((8, 25),), batch=50, kind="random"),
    Case("gaussian-dropout-one", "GaussianDropout", {"rate": 1.0}, ((8, 25),), batch=50, kind="random"),
]
# fmt: on
ALL_CASES = CASES + RANDOM_CASES
CASE_BY_ID = {c.id: c for c in ALL_CASES}
assert len(CASE_BY_ID) == len(ALL_CASES)

SUITE = GradSuite(CASES + RANDOM_CASES)
CASE_BY_ID = SUITE.by_id


def result(case_id: str) -> Result:
    return SUITE.result(case_id)


# ----------------------------------------------------------------------------- gradient tests

FD_CASES = [c.id for c in CASES if c.fd]
KERAS_CASES = [c.id for c in CASES if c.keras is None]


@pytest.mark.parametrize("case_id", FD_CASES)
def test_gradients_against_finite_differences(case_id):
    case = CASE_BY_ID[case_id]
    r = result(case_id)
    ref_y = reference(case, [x.astype(np.float64) if x.dtype.kind == "f" else x for x in r.inputs],
                      [w.astype(np.float64) for w in r.weights], r.masks)  # fmt: skip
    close(r.y, ref_y, 1e-5, "training forward")
    dx, dw = fd_grads(case, r)
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if ref is not None:
            close(got, ref, FD_TOL, f"input {i}")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, FD_TOL, f"weight {i}")


@pytest.mark.parametrize("case_id", KERAS_CASES)
def test_gradients_against_keras_autograd(case_id):
    case = CASE_BY_ID[case_id]
    r = result(case_id)
    y, dx, dw, after = keras_grads(case, r)
    close(r.y, y, TORCH_TOL, "training forward")
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if got is not None:
            close(got, ref, TORCH_TOL, f"input {i}")
    trainable_refs = [g for g in dw]
    for i, (got, ref, t) in enumerate(zip(r.dw, trainable_refs, r.trainable)):
        if t:
            close(got, ref, TORCH_TOL, f"weight {i}")
    for i, (got, ref) in enumerate(zip(r.after, after)):  # BatchNormalization's moving statistics
        close(got, ref, TORCH_TOL, f"weight {i} after the step")


@pytest.mark.parametrize("case_id", ["activity-regularization", "dense-activity-l1-l2"])
def test_activity_penalty_gradient(case_id):
    """The upstream gradient of a layer with an activity penalty is the loss's plus the
    penalty's: finite differences, in float64, of the layer output's mse (Keras's mean over every
    element) plus ``(l1 * sum|y| + l2 * sum y^2) / batch``, as Keras adds activity losses."""
    key = SUITE.group_of[case_id]
    group = SUITE.run_group(key)
    _, _, targets = group["model"]
    k = [c.id for c in SUITE.members(key)].index(case_id)
    r = group[case_id]
    y, t = r.y.astype(np.float64), targets[k].astype(np.float64)
    l1, l2, n, h = 0.1, 0.2, y.shape[0], 1e-6

    def f(v):
        return ((v - t) ** 2).mean() + (l1 * np.abs(v).sum() + l2 * (v * v).sum()) / n

    ref = np.zeros_like(y)
    for i in np.ndindex(y.shape):
        up, down = y.copy(), y.copy()
        up[i] += h
        down[i] -= h
        ref[i] = (f(up) - f(down)) / (2 * h)
    close(r.dy, ref, FD_TOL, "upstream gradient with the penalty")


# ----------------------------------------------------------------------------- activations
#
# Every activation code, on the kernels directly (one compilation for all of them; the
# Activation and Dense cases above run the same kernel inside compiled train steps). Codes whose
# derivative comes from the output get NaN in place of the input, to show they never read it.

ACTIVATION_NAMES = sorted(set(activations.CODES) - {"hard_swish", "swish"}) + ["glu"]


@cache
def _activation_kernels():
    from nnspec.runtime.kernels import jit

    return jit(activations.activation_forward), jit(activations.activation_backward)


def activation_grad(name, x, dy):
    forward, backward = _activation_kernels()
    code = activations.GLU if name == "glu" else activations.CODES[name]
    y = np.empty((x.shape[0], x.shape[1] // 2 if name == "glu" else x.shape[1]), np.float32)
    forward(x, y, code)
    xin = x if activations.needs_input(code) else np.full_like(x, np.nan)
    dx = np.empty_like(x)
    backward(xin, y, dy, dx, code, False)
    acc = np.ones_like(x)
    backward(xin, y, dy, acc, code, True)
    # accumulating adds the same values
    np.testing.assert_allclose(acc, 1.0 + dx.astype(np.float64), rtol=1e-6, atol=1e-6)
    return y, dx


def _activation_data(name, at_kinks=False):
    rng = np.random.default_rng(_seed(name))
    x = rng.normal(0, 1.5, size=(4, 10)).astype(np.float32)
    if at_kinks:
        x[0] = KINKS
    dy = rng.normal(size=(4, 5 if name == "glu" else 10)).astype(np.float32)
    return x, dy


def keras_activation_grad(name, x, dy):
    import keras
    import torch

    t = torch.tensor(x, requires_grad=True)
    y = keras.activations.get(name)(t)
    y.backward(torch.tensor(dy))
    return t.grad.numpy()


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_gradient_against_finite_differences(name):
    x, dy = _activation_data(name)
    _, dx = activation_grad(name, x, dy)
    x64, dy64, h = x.astype(np.float64), dy.astype(np.float64), 1e-6
    ref = np.zeros_like(x64)
    for i in np.ndindex(x.shape):
        up, down = x64.copy(), x64.copy()
        up[i] += h
        down[i] -= h
        ref[i] = ((activations.reference(name, up) - activations.reference(name, down)) * dy64).sum() / (
            2 * h
        )
    close(dx, ref, FD_TOL, name)


@pytest.mark.parametrize("at_kinks", [False, True], ids=["smooth", "kinks"])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_gradient_against_keras_autograd(name, at_kinks):
    x, dy = _activation_data(name, at_kinks)
    _, dx = activation_grad(name, x, dy)
    close(dx, keras_activation_grad(name, x, dy), TORCH_TOL, name)


# ----------------------------------------------------------------------------- random layers


def test_dropout_training():
    r = result("dropout")
    x, y = r.inputs[0], r.y
    kept = y != 0
    keep = 0.7
    np.testing.assert_allclose(y[kept], x[kept] / np.float32(keep), rtol=1e-7)  # inverted dropout
    assert abs(kept.mean() - keep) < 0.03  # 10000 draws: 6 standard deviations
    np.testing.assert_allclose(r.dx[0], np.where(kept, r.dy / keep, 0.0), rtol=1e-6, atol=1e-12)


def test_dropout_noise_shape_broadcasts():
    r = result("dropout-noise-shape")  # one draw per (sample, feature), shared along axis 1
    kept = r.y != 0
    assert (kept == kept[:, :1, :]).all()
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(r.dx[0], np.where(kept, r.dy * 2.0, 0.0), rtol=1e-6, atol=1e-12)
    r = result("dropout-shared-batch")  # one mask for the whole batch
    kept = r.y != 0
    assert (kept == kept[:1]).all()
    assert 0.3 < kept.mean() < 0.7


@pytest.mark.parametrize(
    "case,channel_axis,keep",
    [("spatial-dropout1d", -1, 0.6), ("spatial-dropout2d-cf", 1, 0.5), ("spatial-dropout3d", -1, 0.5)],
)
def test_spatial_dropout_drops_whole_channels(case, channel_axis, keep):
    """One draw per (sample, channel), shared along every spatial axis, as Keras's noise shape
    (batch, 1, ..., channels); inverted scaling and its gradient as Dropout's."""
    r = result(case)
    x, y = r.inputs[0], r.y
    kept = y != 0
    spatial = tuple(a for a in range(1, x.ndim) if a != channel_axis % x.ndim)
    per_channel = kept.all(axis=spatial)
    assert (kept == np.expand_dims(per_channel, spatial)).all()  # all or nothing per channel
    assert abs(per_channel.mean() - keep) < 0.15  # 250-1250 draws: over 5 standard deviations
    np.testing.assert_allclose(y[kept], x[kept] / np.float32(keep), rtol=1e-7)
    np.testing.assert_allclose(r.dx[0], np.where(kept, r.dy / np.float32(keep), 0.0), rtol=1e-6, atol=1e-12)


def test_alpha_dropout_training():
    """Keras's AlphaDropout: kept inputs become ``a * x + b``, dropped ones ``a * alpha_p + b``
    (alpha_p = -SELU alpha * SELU scale, a = ((1 - rate)(1 + rate alpha_p^2))^-1/2,
    b = -a alpha_p rate), the gradient ``a`` where kept; rate 1 is the identity (Keras acts
    only for 0 < rate < 1)."""
    rate = 0.3
    alpha_p = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    b = -a * alpha_p * rate
    r = result("alpha-dropout")
    x, y = r.inputs[0].astype(np.float64), r.y.astype(np.float64)
    dropped = np.isclose(y, a * alpha_p + b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b, rtol=1e-5, atol=1e-6)
    assert abs(dropped.mean() - rate) < 0.03  # 10000 draws: over 6 standard deviations
    np.testing.assert_allclose(r.dx[0], np.where(dropped, 0.0, a * r.dy), rtol=1e-5, atol=1e-7)
    r = result("alpha-dropout-one")
    np.testing.assert_array_equal(r.y, r.inputs[0])
    np.testing.assert_array_equal(r.dx[0], r.dy)


def test_dropout_rate_zero_and_one():
    r = result("dropout-zero")  # Keras: the identity unless rate > 0
    np.testing.assert_array_equal(r.y, r.inputs[0])
    np.testing.assert_array_equal(r.dx[0], r.dy)
    r = result("dropout-one")
    assert not r.y.any() and not r.dx[0].any()


def test_gaussian_noise_training():
    r = result("gaussian-noise")
    noise = (r.y - r.inputs[0]).astype(np.float64)
    assert abs(noise.mean()) < 0.03 and abs(noise.std() - 0.5) < 0.03
    np.testing.assert_array_equal(r.dx[0], r.dy)
    r = result("gaussian-noise-zero")
    np.testing.assert_array_equal(r.y, r.inputs[0])
    np.testing.assert_array_equal(r.dx[0], r.dy)


def test_gaussian_dropout_training():
    r = result("gaussian-dropout")
    x = r.inputs[0]
    ok = np.abs(x) > 0.1
    noise = (r.y[ok] / x[ok]).astype(np.float64)
    assert abs(noise.mean() - 1.0) < 0.03 and abs(noise.std() - 0.5) < 0.03  # sqrt(0.2 / 0.8)
    np.testing.assert_allclose(r.dx[0][ok], r.dy[ok] * noise, rtol=1e-5)
    r = result("gaussian-dropout-one")  # Keras: noise only for 0 < rate < 1
    np.testing.assert_array_equal(r.y, r.inputs[0])
    np.testing.assert_array_equal(r.dx[0], r.dy)


def test_dropout_draws_follow_the_kernel_seed():
    def mask(seed):
        return SUITE.output_after_step("dropout", seed) != 0

    a, b, c = mask(11), mask(11), mask(12)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


# ----------------------------------------------------------------------------- contract


def test_every_owned_layer_has_a_backward():
    for mod in (core, merge, normalization, embedding):
        for defn in mod.LAYERS:
            assert defn.emit_backward is not None, defn.name
            if defn.training_only:
                assert defn.emit_train is not None, defn.name


def test_every_activation_code_has_a_derivative():
    names = {c: n for n, c in activations.CODES.items()}
    src = Path(activations.__file__).read_text()
    for code, name in names.items():
        assert code in (0, 1, 4, 17, 27) or f"code == {code}" in src.split("def _act_grad_scalar")[1], name
    assert activations.needs_input(activations.CODES["gelu"]) and not activations.needs_input(1)


# ----------------------------------------------------------------------------- end to end


def _keras_optimizer(name):
    import keras

    return {"sgd": lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
            "sgd-plain": lambda: keras.optimizers.SGD(learning_rate=0.5),
            "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate=0.01),
            "adam": lambda: keras.optimizers.Adam(learning_rate=0.01)}[name]()  # fmt: skip


def _nnspec_optimizer(name):
    o = nnspec.optimizers
    return {"sgd": lambda: o.SGD(learning_rate=0.1, momentum=0.9), "rmsprop": lambda: o.RMSprop(learning_rate=0.01),
            "adam": lambda: o.Adam(learning_rate=0.01)}[name]()  # fmt: skip


BN_MODEL = """
format: nnspec/1
name: bn_model
inputs:
  x: {shape: [12]}
layers:
  d1: {type: Dense, units: 16, activation: relu}
  bn: {type: BatchNormalization, momentum: 0.9}
  drop: {type: Dropout, rate: 0.0}
  d2: {type: Dense, units: 8, activation: gelu}
  ln: {type: LayerNormalization}
  out: {type: Dense, units: 3, activation: softmax}
edges:
  - x -> d1 -> bn -> drop -> d2 -> ln -> out
outputs: [out]
"""


def _data(model: str):
    rng = np.random.default_rng(5)
    if model == "mlp":
        x = rng.normal(size=(16, 32)).astype(np.float32)
        return x, (x[:, :5].sum(1) > 0).astype(np.float32)[:, None], "binary_crossentropy"
    x = rng.normal(size=(16, 12)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    return x, y, "categorical_crossentropy"


@pytest.mark.parametrize("opt", ["sgd", "rmsprop", "adam"])
@pytest.mark.parametrize("model", ["mlp", "bn_model"])
def test_one_step_matches_keras(model, opt):
    from keras_from_spec import keras_model_from_spec

    source = SPECS / "mlp.yaml" if model == "mlp" else BN_MODEL
    m = nnspec.load(source, seed=1) if model == "mlp" else nnspec.load(BN_MODEL, seed=1)
    km = keras_model_from_spec(source)
    x, y, loss = _data(model)
    before = {}
    for layer in km.layers:
        if layer.weights:
            w = m.get_layer(layer.name).get_weights()
            layer.set_weights(w)
            before[layer.name] = w
    m.compile(optimizer=_nnspec_optimizer(opt), loss=loss)
    km.compile(optimizer=_keras_optimizer(opt), loss=loss)
    ours = float(m.train_on_batch(x, y))
    theirs = float(km.train_on_batch(x, y))
    assert abs(ours - theirs) <= 1e-4 * abs(theirs), (ours, theirs)
    for name, w0 in before.items():
        for k, (a, b, a0) in enumerate(
            zip(m.get_layer(name).get_weights(), km.get_layer(name).get_weights(), w0)
        ):
            close(a, b, 1e-4, f"{name} weight {k}")
            if not np.array_equal(b, a0):  # the step itself, to a tolerance its size allows
                close(a - a0, b - a0, 1e-3 if opt == "sgd" else 1e-2, f"{name} weight {k} update")


SHARED_MODEL = """
format: nnspec/1
name: shared
inputs:
  a: {shape: [6]}
  b: {shape: [6]}
layers:
  enc_a: {type: Dense, units: 5, activation: tanh}
  enc_b: {shares: enc_a}
  prod: {type: Multiply}
  cat: {type: Concatenate}
  norm: {type: LayerNormalization}
  out: {type: Dense, units: 1, activation: sigmoid}
edges:
  - a -> enc_a
  - b -> enc_b
  - enc_a, enc_b -> prod
  - enc_a, prod -> cat -> norm -> out
outputs: [out]
"""


def test_shared_layer_and_fan_out_match_keras():
    """A layer called twice and values read by two layers: their gradients add up."""
    from keras_from_spec import keras_model_from_spec

    m = nnspec.load(SHARED_MODEL, seed=2)
    km = keras_model_from_spec(SHARED_MODEL)
    before = {}
    for name in ("enc_a", "norm", "out"):
        w = [v + np.float32(0.1) for v in m.get_layer(name).get_weights()]
        m.get_layer(name).set_weights(w)
        km.get_layer(name).set_weights(w)
        before[name] = w
    rng = np.random.default_rng(3)
    a, b = (rng.normal(size=(8, 6)).astype(np.float32) for _ in range(2))
    y = (rng.random((8, 1)) > 0.5).astype(np.float32)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")
    km.compile(optimizer=_keras_optimizer("sgd-plain"), loss="binary_crossentropy")
    ours, theirs = float(m.train_on_batch([a, b], y)), float(km.train_on_batch([a, b], y))
    assert abs(ours - theirs) <= 1e-4 * abs(theirs)
    for name, w0 in before.items():
        for k, (w, kw, v0) in enumerate(
            zip(m.get_layer(name).get_weights(), km.get_layer(name).get_weights(), w0)
        ):
            close(w - v0, kw - v0, 1e-3, f"{name} weight {k} update")


def test_seed_mlp_learns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    y = (x[:, :5].sum(1) > 0).astype(np.float32)[:, None]
    m = nnspec.load(SPECS / "mlp.yaml", seed=0)
    m.compile(
        optimizer=nnspec.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy", metrics=["accuracy"]
    )
    hist = m.fit(x[:2000], y[:2000], batch_size=32, epochs=5, verbose=0, seed=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    pred = m.predict(x[2000:], verbose=0)
    acc = float(((pred > 0.5) == (y[2000:] > 0.5)).mean())
    assert acc > 0.9, acc
