"""Backward kernels of the pooling, padding, cropping and upsampling layers (``pooling.py``).

Gradient cases run through the real compiled train step with ``grad_harness`` (see
test_backward_core.py): the layer is fed by an identity ``Dense`` (or an ``Embedding(mask_zero)``
for the masked GlobalAveragePooling1D), scored with ``mse`` and trained one step with
``SGD(learning_rate=0)``. The input gradient is checked

1. against float64 central finite differences of ``sum(dy * reference(x))``, the layer's NumPy
   reference, within 1e-3 of the gradient's scale (max pooling on random normal inputs, which
   have no near-ties: a window's maximum is a smooth function of its inputs there);
2. against autograd of the Keras 3 layer on its PyTorch backend, within 1e-4 of the scale.

Ties: max pooling routes a window's gradient to its first maximal element in scan order, as
PyTorch's ``max_pool``; global max pooling splits it evenly among the maximal elements, as
``torch.amax`` (which Keras's GlobalMaxPooling calls). Cases on small integer inputs (many ties)
check both against Keras only (finite differences are meaningless there).

Every backward kernel is also run twice into one gradient array, to show it adds rather than
assigns. End to end: one SGD step of a model made of these layers (with fan-out into a
Concatenate) against Keras, and of the seed CNN (``specs/cnn.yaml``) once Conv2D has a backward.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nnspec.layerdefs import REGISTRY, pooling

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import Case, GradSuite, close, fd_grads, keras_grads, one_step_matches_keras, reference

FD_TOL = 1e-3  # kernels (float32) against finite differences of the float64 reference
TORCH_TOL = 1e-4  # kernels against autograd through Keras on PyTorch
SPECS = Path(__file__).resolve().parents[1] / "specs"

CF = {"data_format": "channels_first"}
# Keras's PyTorch backend pads asymmetric 'same' average pooling by replicating the edge and
# counts the copies in the mean (forward and gradient); nnspec averages the values inside the
# input, as Keras's TensorFlow, JAX and NumPy backends (see test_kernels_conv.py).
TORCH_AVG_SAME = "Keras on PyTorch counts replicated edge values in asymmetric 'same' average pooling"


def small_ints(rng, shapes, batch):
    """Values in {0, 1, 2}: most windows hold several equal maxima."""
    return [rng.integers(0, 3, size=(batch, *s)).astype(np.float32) for s in shapes]


# fmt: off
CASES = [
    # ---- max pooling
    Case("maxpool2d-valid-odd", "MaxPooling2D", {"pool_size": 2}, ((5, 4, 3),)),
    Case("maxpool2d-same-stride2", "MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"},
         ((7, 6, 2),)),  # rows padded (1, 1), columns (0, 1): Keras replicates the edge there
    Case("maxpool2d-cf-overlap", "MaxPooling2D", {"pool_size": [2, 3], "strides": 1, "padding": "same", **CF},
         ((2, 5, 6),)),
    Case("maxpool1d-stride2", "MaxPooling1D", {"pool_size": 3, "strides": 2}, ((9, 2),)),
    Case("maxpool1d-cf-same", "MaxPooling1D", {"pool_size": 2, "padding": "same", **CF}, ((2, 7),)),
    Case("maxpool3d-same", "MaxPooling3D", {"pool_size": 2, "padding": "same"}, ((3, 4, 3, 2),)),
    Case("maxpool3d-cf-overlap", "MaxPooling3D", {"pool_size": [1, 2, 2], "strides": 1, **CF}, ((2, 2, 3, 4),)),
    # ---- adaptive pooling (overlapping windows of unequal sizes; an output larger than the input)
    Case("adaptive-max1d", "AdaptiveMaxPooling1D", {"output_size": 3}, ((5, 2),)),
    Case("adaptive-max2d-cf-up", "AdaptiveMaxPooling2D", {"output_size": [4, 2], **CF}, ((2, 3, 5),)),
    Case("adaptive-max3d", "AdaptiveMaxPooling3D", {"output_size": [2, 2, 3]}, ((3, 4, 5, 2),)),
    Case("adaptive-avg1d-cf", "AdaptiveAveragePooling1D", {"output_size": 4, **CF}, ((2, 7),)),
    Case("adaptive-avg2d", "AdaptiveAveragePooling2D", {"output_size": [3, 2]}, ((7, 5, 3),)),
    Case("adaptive-avg3d-cf", "AdaptiveAveragePooling3D", {"output_size": 2, **CF}, ((2, 3, 5, 4),)),
    # ---- average pooling
    Case("avgpool2d-valid", "AveragePooling2D", {"pool_size": 2}, ((6, 5, 3),)),
    Case("avgpool2d-same-symmetric", "AveragePooling2D", {"pool_size": 3, "strides": 1, "padding": "same"},
         ((5, 4, 2),)),
    Case("avgpool2d-cf-same-stride", "AveragePooling2D", {"pool_size": [2, 3], "padding": "same", **CF},
         ((2, 7, 6),)),  # rows padded (0, 1) with a window of one value: Keras's replica agrees
    Case("avgpool2d-same-asymmetric", "AveragePooling2D", {"pool_size": 4, "strides": 1, "padding": "same"},
         ((5, 6, 2),), keras=TORCH_AVG_SAME),
    Case("avgpool1d-valid-overlap", "AveragePooling1D", {"pool_size": 2, "strides": 1}, ((5, 3),)),
    Case("avgpool1d-cf-same", "AveragePooling1D", {"pool_size": 3, "strides": 2, "padding": "same", **CF},
         ((2, 7),)),
    Case("avgpool1d-same-asymmetric", "AveragePooling1D", {"pool_size": 4, "strides": 1, "padding": "same"},
         ((7, 2),), keras=TORCH_AVG_SAME),
    Case("avgpool3d-valid", "AveragePooling3D", {"pool_size": 2, "strides": 1}, ((3, 4, 3, 2),)),
    Case("avgpool3d-cf-same", "AveragePooling3D", {"pool_size": 3, "strides": 1, "padding": "same", **CF},
         ((2, 3, 4, 5),)),
    # ---- global pooling
    Case("gmp1d", "GlobalMaxPooling1D", {}, ((6, 3),)),
    Case("gmp1d-cf-keepdims", "GlobalMaxPooling1D", {"keepdims": True, **CF}, ((3, 6),)),
    Case("gmp2d", "GlobalMaxPooling2D", {}, ((5, 4, 3),)),
    Case("gmp2d-cf", "GlobalMaxPooling2D", CF, ((3, 5, 4),)),
    Case("gmp3d-keepdims", "GlobalMaxPooling3D", {"keepdims": True}, ((2, 3, 4, 3),)),
    Case("gmp3d-cf", "GlobalMaxPooling3D", CF, ((3, 2, 3, 4),)),
    Case("gap1d", "GlobalAveragePooling1D", {}, ((6, 3),)),
    Case("gap1d-cf-keepdims", "GlobalAveragePooling1D", {"keepdims": True, **CF}, ((3, 6),)),
    Case("gap2d", "GlobalAveragePooling2D", {}, ((5, 4, 3),)),
    Case("gap2d-cf-keepdims", "GlobalAveragePooling2D", {"keepdims": True, **CF}, ((3, 5, 4),)),
    Case("gap3d", "GlobalAveragePooling3D", {}, ((2, 3, 4, 3),)),
    Case("gap3d-cf-keepdims", "GlobalAveragePooling3D", {"keepdims": True, **CF}, ((3, 2, 3, 4),)),
    Case("gap1d-masked", "GlobalAveragePooling1D", {}, ((6,),), masked=(True,), dim=3),
    Case("gap1d-masked-keepdims", "GlobalAveragePooling1D", {"keepdims": True}, ((5,),), masked=(True,), dim=4),
    # ---- ties (Keras only)
    Case("maxpool2d-ties-overlap", "MaxPooling2D", {"pool_size": 3, "strides": 1, "padding": "same"},
         ((5, 6, 2),), data=small_ints, fd=False),
    Case("maxpool1d-ties-replicated", "MaxPooling1D", {"pool_size": 2, "strides": 1, "padding": "same"},
         ((7, 3),), data=small_ints, fd=False),
    Case("maxpool3d-cf-ties", "MaxPooling3D", {"pool_size": 2, **CF}, ((2, 4, 4, 2),), data=small_ints, fd=False),
    Case("adaptive-max2d-ties", "AdaptiveMaxPooling2D", {"output_size": [3, 2]}, ((5, 5, 2),), data=small_ints,
         fd=False),
    Case("gmp2d-ties", "GlobalMaxPooling2D", {}, ((3, 4, 3),), data=small_ints, fd=False),
    Case("gmp1d-cf-ties", "GlobalMaxPooling1D", CF, ((3, 6),), data=small_ints, fd=False),
    # ---- padding and cropping
    Case("zeropad1d-int", "ZeroPadding1D", {"padding": 2}, ((4, 2),)),
    Case("zeropad1d-pair-cf", "ZeroPadding1D", {"padding": [2, 1], **CF}, ((2, 4),)),
    Case("zeropad2d-default", "ZeroPadding2D", {}, ((3, 4, 2),)),
    Case("zeropad2d-nested", "ZeroPadding2D", {"padding": [[1, 2], [0, 3]]}, ((4, 5, 2),)),
    Case("zeropad2d-cf", "ZeroPadding2D", {"padding": [2, 1], **CF}, ((2, 4, 5),)),
    Case("crop1d", "Cropping1D", {"cropping": [1, 2]}, ((6, 2),)),
    Case("crop2d", "Cropping2D", {"cropping": [[1, 0], [2, 1]]}, ((4, 5, 2),)),
    Case("crop2d-cf", "Cropping2D", {"cropping": 1, **CF}, ((2, 4, 5),)),
    Case("zeropad3d-mixed", "ZeroPadding3D", {"padding": [1, [0, 2], [2, 1]]}, ((2, 3, 2, 2),)),
    Case("crop3d-cf", "Cropping3D", {"cropping": [[1, 0], 1, [0, 1]], **CF}, ((2, 3, 4, 3),)),
    # ---- upsampling
    Case("up3d", "UpSampling3D", {"size": [2, 1, 3]}, ((2, 3, 2, 2),)),
    Case("up3d-cf", "UpSampling3D", {"size": 2, **CF}, ((2, 2, 3, 2),)),
    Case("up1d", "UpSampling1D", {"size": 3}, ((4, 2),)),
    Case("up2d-nearest", "UpSampling2D", {"size": [2, 3]}, ((3, 4, 2),)),
    Case("up2d-nearest-cf", "UpSampling2D", {"size": 2, **CF}, ((2, 3, 4),)),
    Case("up2d-bilinear", "UpSampling2D", {"size": [2, 3], "interpolation": "bilinear"}, ((3, 4, 2),)),
    Case("up2d-bilinear-cf", "UpSampling2D", {"size": [3, 1], "interpolation": "bilinear", **CF}, ((2, 3, 4),)),
    Case("up2d-bicubic", "UpSampling2D", {"size": [2, 4], "interpolation": "bicubic"}, ((4, 3, 2),)),
    Case("up2d-bicubic-cf", "UpSampling2D", {"size": 3, "interpolation": "bicubic", **CF}, ((2, 3, 4),)),
]
# fmt: on

SUITE = GradSuite(CASES)
CASE_BY_ID = SUITE.by_id
FD_CASES = [c.id for c in CASES if c.fd]
KERAS_CASES = [c.id for c in CASES if c.keras is None]


def test_every_layer_type_has_a_backward_and_a_case():
    covered = {c.type for c in CASES}
    for defn in pooling.LAYERS:
        assert defn.emit_backward is not None, defn.name
        assert defn.name in covered, defn.name


@pytest.mark.parametrize("case_id", FD_CASES)
def test_gradients_against_finite_differences(case_id):
    case = CASE_BY_ID[case_id]
    r = SUITE.result(case_id)
    ref_y = reference(case, [x.astype(np.float64) for x in r.inputs], [], r.masks)
    close(r.y, ref_y, 1e-5, "training forward")
    (dx,), _ = fd_grads(case, r)
    close(r.dx[0], dx, FD_TOL, "input")
    if case.masked:  # masked steps get no gradient at all
        m = r.masks[0]
        assert not m.all() and not r.dx[0][~m].any()


@pytest.mark.parametrize("case_id", KERAS_CASES)
def test_gradients_against_keras_autograd(case_id):
    case = CASE_BY_ID[case_id]
    r = SUITE.result(case_id)
    y, dx, _, _ = keras_grads(case, r)
    close(r.y, y, TORCH_TOL, "training forward")
    close(r.dx[0], dx[0], TORCH_TOL, "input")


def test_ties_route_as_pytorch_does():
    """At ties max pooling picks one element per window, global max pooling splits evenly."""
    r = SUITE.result("maxpool1d-ties-replicated")  # windows [t, t + 1], each dy to one element
    assert np.isclose(r.dx[0].sum(), r.dy.sum(), rtol=1e-5)
    x, dy = r.inputs[0], r.dy
    want = np.zeros_like(x)
    for t in range(x.shape[1]):
        win = x[:, t : t + 2]  # the last window holds one step (and its replica in Keras)
        first = np.argmax(win, axis=1)  # numpy's argmax: the first maximum
        for b in range(x.shape[0]):
            for c in range(x.shape[2]):
                want[b, t + first[b, c], c] += dy[b, t, c]
    np.testing.assert_allclose(r.dx[0], want, rtol=1e-6, atol=1e-7)
    r = SUITE.result("gmp2d-ties")
    x = r.inputs[0].reshape(r.inputs[0].shape[0], -1, r.inputs[0].shape[-1])
    top = x == x.max(axis=1, keepdims=True)
    want = top * (r.dy[:, None, :] / top.sum(axis=1, keepdims=True))
    assert (top.sum(axis=1) > 1).any()
    np.testing.assert_allclose(r.dx[0].reshape(x.shape), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pooling_routes_nan_windows_as_pytorch_does(stride):
    """A window holding NaN sends its gradient to its last NaN (PyTorch's max_pool2d), others
    to their first maximum; the kernel, called directly, against torch's autograd."""
    import torch

    from nnspec.runtime.kernels import jit

    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(2, 1, 5, 6, 3)).astype(np.float32)  # ties as well
    x[0, 0, 1, 1, 0] = x[0, 0, 1, 2, 0] = x[1, 0, 3, 4, 2] = x[1, 0, 0, 0, 1] = np.nan
    oh, ow = (5 - 2) // stride + 1, (6 - 2) // stride + 1
    dy = rng.normal(size=(2, 1, oh, ow, 3)).astype(np.float32)
    dx = np.zeros_like(x)
    s = np.int64(stride)
    jit(pooling.pool_backward)(x, dy, dx, True, (np.int64(1), np.int64(2), np.int64(2)), (np.int64(1), s, s),
                               (np.int64(0),) * 3, False)  # fmt: skip
    tx = torch.tensor(x[:, 0].transpose(0, 3, 1, 2), requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 2, stride).backward(torch.tensor(dy[:, 0].transpose(0, 3, 1, 2)))
    want = tx.grad.numpy().transpose(0, 2, 3, 1)
    assert np.isnan(x).any() and want[np.isnan(x[:, 0])].any()
    np.testing.assert_allclose(dx[:, 0], want, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- kernels directly


def _kernel_runs():
    """(name, kernel, its arguments with ``None`` where dx goes, dx's shape): each backward
    kernel on fixed random data."""
    rng = np.random.default_rng(4)

    def r(*shape):
        return rng.normal(size=shape).astype(np.float32)

    def i3(a, b, c):
        return (np.int64(a), np.int64(b), np.int64(c))

    mask = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    x5, dy5 = r(2, 1, 4, 4, 3), r(2, 1, 3, 2, 3)  # windows 2x2 at strides (1, 2), padding (0, 1, 0)
    x3, dy2 = r(3, 5, 2), r(3, 2)
    return [
        ("pool-max", pooling.pool_backward, (x5, dy5, None, True, i3(1, 2, 2), i3(1, 1, 2), i3(0, 1, 0), False),
         x5.shape),
        ("pool-avg", pooling.pool_backward, (x5, dy5, None, False, i3(1, 2, 2), i3(1, 1, 2), i3(0, 1, 0), False),
         x5.shape),
        ("adaptive-max", pooling.pool_backward, (x5, dy5, None, True, i3(1, 3, 2), i3(1, 1, 1), i3(0, 0, 0), True),
         x5.shape),
        ("adaptive-avg", pooling.pool_backward, (x5, dy5, None, False, i3(1, 3, 2), i3(1, 1, 1), i3(0, 0, 0), True),
         x5.shape),
        ("global-max", pooling.global_pool_backward, (x3, dy2, None, True), x3.shape),
        ("global-avg", pooling.global_pool_backward, (x3, dy2, None, False), x3.shape),
        ("masked-avg", pooling.global_average_masked_backward, (mask, dy2, None, False), (3, 4, 2)),
        ("masked-avg-cf", pooling.global_average_masked_backward, (mask, dy2, None, True), (3, 2, 4)),
        ("window", pooling.window_copy_backward, (r(2, 1, 5, 3, 2), None, i3(0, -1, 1)), (2, 1, 4, 4, 2)),
        ("nearest", pooling.upsample_nearest_backward, (r(2, 1, 4, 6, 2), None, i3(1, 2, 3)), (2, 1, 2, 2, 2)),
        ("bicubic", pooling.resize2d_backward, (r(2, 6, 4, 2), None, 1, 3, 2, 0, 0), (2, 3, 2, 2)),
        ("resize-window", pooling.resize2d_backward, (r(2, 5, 5, 2), None, 0, 4, 3, -1, 1), (2, 3, 4, 2)),
    ]  # fmt: skip


KERNEL_RUNS = _kernel_runs()


@pytest.mark.parametrize("run", KERNEL_RUNS, ids=[k[0] for k in KERNEL_RUNS])
def test_backward_kernels_add_into_dx(run):
    from nnspec.runtime.kernels import jit

    name, fn, args, shape = run
    k = jit(fn)

    def call(dx):
        k(*(dx if a is None else a for a in args))

    once = np.zeros(shape, np.float32)
    call(once)
    assert once.any(), name
    twice = np.ones(shape, np.float32)
    call(twice)
    call(twice)
    np.testing.assert_allclose(twice, 1.0 + 2.0 * once, rtol=1e-5, atol=1e-6)


def test_masked_global_average_channels_first_against_finite_differences():
    """The channels_first branch of the masked mean (the harness feeds masks channels_last)."""
    from nnspec.layerdefs.base import normalize_attrs
    from nnspec.runtime.kernels import jit

    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 2, 4))
    mask = np.array([[1, 0, 1, 1], [0, 1, 0, 0], [1, 1, 1, 1]], np.float32)
    dy = rng.normal(size=(3, 2))
    dx = np.zeros((3, 2, 4), np.float32)
    jit(pooling.global_average_masked_backward)(mask, dy.astype(np.float32), dx, True)
    defn = REGISTRY["GlobalAveragePooling1D"]
    attrs = normalize_attrs(defn, CF)
    want = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        f = [(dy * defn.reference(attrs, [v], [], [mask])[0]).sum() for v in (up, down)]
        want[i] = (f[0] - f[1]) / 2e-6
    close(dx, want, FD_TOL, "channels_first masked mean")


# ----------------------------------------------------------------------------- end to end

POOLING_MODEL = """
format: nnspec/1
name: pooling_model
inputs:
  image: {shape: [8, 8, 3]}
layers:
  d1: {type: Dense, units: 4, activation: tanh}
  pad: {type: ZeroPadding2D, padding: 1}
  maxp: {type: MaxPooling2D, pool_size: 2}
  avgp: {type: AveragePooling2D, pool_size: 3, strides: 2, padding: same}
  up: {type: UpSampling2D, size: 2, interpolation: bilinear}
  crop: {type: Cropping2D, cropping: 1}
  gap: {type: GlobalAveragePooling2D}
  gmp: {type: GlobalMaxPooling2D}
  cat: {type: Concatenate}
  out: {type: Dense, units: 3, activation: softmax}
edges:
  - image -> d1 -> pad -> maxp -> avgp -> up -> crop -> gap
  - d1 -> gmp
  - gap, gmp -> cat -> out
outputs: [out]
"""


def test_pooling_model_one_sgd_step_matches_keras():
    """Every layer type of the chain passes gradients back to the first Dense, which also fans out."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 4)]
    assert one_step_matches_keras(POOLING_MODEL, x, y, seed=1) == 4  # both Dense layers' kernels and biases


def test_seed_cnn_one_sgd_step_matches_keras():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 2)]
    assert one_step_matches_keras(SPECS / "cnn.yaml", x, y, seed=1) == 10
