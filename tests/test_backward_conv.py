"""Training forward and backward kernels of the convolution layers (Conv1D/2D/3D,
Conv1DTranspose/2DTranspose, SeparableConv1D/2D, DepthwiseConv1D/2D), and training end to end.

Gradient cases run through the real compiled train step (``grad_harness``): the layer under
test is fed by a linear ``Dense`` with an identity kernel (so its input is exactly the test's
input, and the input's gradient is a value in the gradient workspace), scored with ``mse``
against a random target and trained one step with ``SGD(learning_rate=0)``. The layer's output
``y`` (training mode), its upstream gradient ``dy``, the gradient of its input and of every
trainable weight are then checked

1. against float64 central finite differences of ``sum(dy * reference(x, w))``, the layer's
   NumPy reference, within 1e-3 of the gradient's scale (its largest magnitude);
2. against autograd of the same Keras 3 layer on its PyTorch backend, same input, weights and
   ``dy``, within 1e-4 of the gradient's scale.

The cases cover strides, padding valid/same (even and odd kernels) and causal, dilation, groups,
depth multipliers, channels_first, no bias, activations whose derivative comes from the output
(relu, tanh, softmax) and from the saved pre-activation (gelu, silu), frozen layers (no weight
gradients, input gradient still), both Conv paths (the planar one for inputs with few channels
per kernel row, the channels-last patches for the others), both input-gradient paths (the
gather for stride-1 layers with at least as many channels as filters, the scatter for the
others; also checked against each other on the kernels directly) and 1x1 convolutions.

End to end, one SGD step against Keras from the same weights (the loss and every weight after
the step within 1e-4, the update itself within 1e-3): ``specs/cnn.yaml`` (or, while pooling has
no backward kernel, a conv-only model), a model with a shared convolution and a value read by
two convolutions (gradients that add up), and convolutions under TimeDistributed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import conv

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import (
    Case,
    GradSuite,
    Result,
    close,
    fd_grads,
    keras_grads,
    one_step_matches_keras,
    reference,
)

FD_TOL = 1e-3  # float32 kernels against finite differences of the float64 reference
TORCH_TOL = 1e-4  # kernels against autograd through Keras on PyTorch
SPECS = Path(__file__).resolve().parents[1] / "specs"
CF = {"data_format": "channels_first"}
B = 2  # batch: small, so that finite differences stay fast

# ----------------------------------------------------------------------------- cases

# fmt: off
CASES = [
    # ---- Conv1D
    Case("conv1d-causal-dilated-gelu", "Conv1D", {"filters": 2, "kernel_size": 3, "padding": "causal",
                                                  "dilation_rate": 2, "activation": "gelu"}, ((7, 2),), batch=B),
    Case("conv1d-same-even-stride2", "Conv1D", {"filters": 4, "kernel_size": 4, "padding": "same", "strides": 2,
                                                "activation": "relu"}, ((9, 3),), batch=B),
    Case("conv1d-cf-groups-no-bias", "Conv1D", {"filters": 4, "kernel_size": 2, "groups": 2, "use_bias": False,
                                                "activation": "tanh", **CF}, ((4, 7),), batch=B),
    Case("conv1d-wide-causal-stride2-softmax", "Conv1D", {"filters": 3, "kernel_size": 3, "padding": "causal",
                                                          "strides": 2, "activation": "softmax"}, ((7, 8),),
         batch=B),
    # ---- Conv2D (planar path: kernel rows of at most 16 floats)
    Case("conv2d-valid-relu", "Conv2D", {"filters": 4, "kernel_size": 3, "activation": "relu"}, ((5, 6, 3),),
         batch=B),
    Case("conv2d-same-odd-stride2-gelu", "Conv2D", {"filters": 3, "kernel_size": 3, "strides": 2,
                                                    "padding": "same", "activation": "gelu"}, ((5, 6, 3),), batch=B),
    Case("conv2d-same-even-kernel", "Conv2D", {"filters": 3, "kernel_size": [2, 4], "padding": "same",
                                               "activation": "tanh"}, ((5, 6, 3),), batch=B),
    Case("conv2d-dilated-frozen", "Conv2D", {"filters": 3, "kernel_size": 2, "dilation_rate": [2, 1],
                                             "trainable": False}, ((5, 6, 2),), batch=B),
    # ---- Conv2D (channels-last patches)
    Case("conv2d-wide-same-stride2", "Conv2D", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same",
                                                "activation": "silu"}, ((5, 6, 6),), batch=B),
    Case("conv2d-wide-dilated-same", "Conv2D", {"filters": 3, "kernel_size": 3, "dilation_rate": 2,
                                                "padding": "same"}, ((5, 6, 6),), batch=B),
    Case("conv2d-groups", "Conv2D", {"filters": 6, "kernel_size": 3, "groups": 2, "activation": "relu"},
         ((5, 6, 4),), batch=B),
    # softmax over the last (spatial) axis of a channels_first output; no bias: a bias is constant
    # along that axis, so its gradient is exactly zero (float32 rounding against a zero scale)
    Case("conv2d-cf-softmax", "Conv2D", {"filters": 3, "kernel_size": [3, 2], "activation": "softmax",
                                         "use_bias": False, **CF}, ((4, 5, 6),), batch=B),
    Case("conv2d-1x1-no-bias", "Conv2D", {"filters": 3, "kernel_size": 1, "use_bias": False}, ((3, 4, 4),),
         batch=B),
    Case("conv2d-cf-groups-stride-frozen", "Conv2D", {"filters": 4, "kernel_size": 2, "strides": [2, 1],
                                                      "groups": 2, "trainable": False, **CF}, ((4, 5, 6),),
         batch=B),
    # ---- Conv3D
    Case("conv3d-same-relu", "Conv3D", {"filters": 2, "kernel_size": 2, "padding": "same", "activation": "relu"},
         ((3, 4, 5, 2),), batch=B),
    Case("conv3d-cf-stride2-gelu", "Conv3D", {"filters": 2, "kernel_size": [2, 3, 2], "strides": 2,
                                              "activation": "gelu", **CF}, ((2, 4, 5, 4),), batch=B),
    # ---- Conv1DTranspose / Conv2DTranspose / Conv3DTranspose
    Case("conv1dt-valid-stride2", "Conv1DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2,
                                                      "activation": "tanh"}, ((5, 3),), batch=B),
    Case("conv1dt-same-outpad-gelu", "Conv1DTranspose", {"filters": 2, "kernel_size": 4, "strides": 3,
                                                         "padding": "same", "output_padding": 1,
                                                         "activation": "gelu"}, ((4, 3),), batch=B),
    Case("conv2dt-same-stride2-relu", "Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2,
                                                          "padding": "same", "activation": "relu"}, ((3, 4, 3),),
         batch=B),
    Case("conv2dt-cf-dilated-no-bias", "Conv2DTranspose", {"filters": 2, "kernel_size": [2, 3],
                                                           "dilation_rate": 2, "use_bias": False, **CF},
         ((3, 4, 3),), batch=B),
    Case("conv2dt-stride-over-kernel-outpad", "Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 3,
                                                                  "output_padding": [2, 1]}, ((3, 4, 3),), batch=B),
    Case("conv3dt-same-stride2-relu", "Conv3DTranspose", {"filters": 2, "kernel_size": [2, 3, 2], "strides": [2, 1, 2],
                                                          "padding": "same", "activation": "relu"}, ((2, 3, 3, 2),),
         batch=B),
    Case("conv3dt-cf-outpad", "Conv3DTranspose", {"filters": 2, "kernel_size": 2, "strides": 2,
                                                  "output_padding": [1, 0, 1], **CF}, ((2, 2, 3, 2),), batch=B),
    Case("conv2dt-frozen", "Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": [1, 2],
                                               "trainable": False}, ((3, 4, 3),), batch=B),
    # ---- DepthwiseConv1D / DepthwiseConv2D
    Case("dw1d-same-stride2-dm2-gelu", "DepthwiseConv1D", {"kernel_size": 3, "strides": 2, "padding": "same",
                                                           "depth_multiplier": 2, "activation": "gelu"},
         ((7, 3),), batch=B),
    Case("dw2d-valid-relu", "DepthwiseConv2D", {"kernel_size": 3, "activation": "relu"}, ((5, 6, 3),), batch=B),
    Case("dw2d-cf-dilated-dm2-no-bias", "DepthwiseConv2D", {"kernel_size": 2, "dilation_rate": 2,
                                                            "depth_multiplier": 2, "use_bias": False, **CF},
         ((3, 5, 6),), batch=B),
    Case("dw2d-stride-and-dilation", "DepthwiseConv2D", {"kernel_size": 2, "strides": 2, "dilation_rate": 2,
                                                         "activation": "tanh"}, ((6, 7, 2),), batch=B),
    Case("dw2d-same-even-frozen", "DepthwiseConv2D", {"kernel_size": [2, 3], "padding": "same",
                                                      "trainable": False, "activation": "tanh"}, ((4, 5, 3),),
         batch=B),
    # ---- SeparableConv1D / SeparableConv2D
    Case("sep1d-same-dm2-silu", "SeparableConv1D", {"filters": 4, "kernel_size": 3, "padding": "same",
                                                    "depth_multiplier": 2, "activation": "silu"}, ((7, 3),),
         batch=B),
    Case("sep2d-valid-relu", "SeparableConv2D", {"filters": 4, "kernel_size": 3, "activation": "relu"},
         ((5, 6, 3),), batch=B),
    Case("sep2d-cf-stride2-dm2-no-bias", "SeparableConv2D", {"filters": 3, "kernel_size": 2, "strides": 2,
                                                             "depth_multiplier": 2, "use_bias": False, **CF},
         ((2, 5, 6),), batch=B),
    Case("sep2d-same-frozen", "SeparableConv2D", {"filters": 3, "kernel_size": 3, "padding": "same",
                                                  "trainable": False, "activation": "tanh"}, ((4, 5, 2),), batch=B),
]
# fmt: on

SUITE = GradSuite(CASES)
CASE_BY_ID = SUITE.by_id


def result(case_id: str) -> Result:
    return SUITE.result(case_id)


def _f64(r: Result):
    return [x.astype(np.float64) for x in r.inputs], [w.astype(np.float64) for w in r.weights]


# ----------------------------------------------------------------------------- gradient tests


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_finite_differences(case_id):
    case = CASE_BY_ID[case_id]
    r = result(case_id)
    xs, ws = _f64(r)
    close(r.y, reference(case, xs, ws, r.masks), 1e-5, "training forward")
    dx, dw = fd_grads(case, r)
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        close(got, ref, FD_TOL, f"input {i}")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, FD_TOL, f"weight {i}")
        else:
            assert got is None
    if case.attrs.get("trainable") is False:
        assert not any(r.trainable)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_keras_autograd(case_id):
    case = CASE_BY_ID[case_id]
    r = result(case_id)
    y, dx, dw, _ = keras_grads(case, r)
    close(r.y, y, TORCH_TOL, "training forward")
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        close(got, ref, TORCH_TOL, f"input {i}")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, TORCH_TOL, f"weight {i}")


def test_input_gradient_paths_cover_the_cases():
    """Stride-1 convolutions without groups take the gather for their input gradient when they
    have at least as many channels as filters (conv._gather_dx), the others the scatter; the
    cases above run both, in 1D, 2D and 3D."""
    gather = set()
    for c in CASES:
        if c.type not in ("Conv1D", "Conv2D", "Conv3D"):
            continue
        a = {"strides": 1, "groups": 1, "data_format": "channels_last", **c.attrs}
        rank = int(c.type[4])  # Conv1D -> 1
        ks = a["kernel_size"] if isinstance(a["kernel_size"], list) else [a["kernel_size"]] * rank
        taps = int(np.prod(ks))
        ch = c.shapes[0][0] if a["data_format"] == "channels_first" else c.shapes[0][-1]
        strides = a["strides"] if isinstance(a["strides"], list) else [a["strides"]]
        if max(strides) == 1 and a["groups"] == 1 and taps > 1 and conv._gather_dx(taps, ch, a["filters"]):
            gather.add(c.type)
    assert gather == {"Conv1D", "Conv2D", "Conv3D"}, gather


@pytest.mark.parametrize(
    "shape,c,f,ks,dil,pads",
    [((2, 1, 1, 9, 3), 3, 2, (1, 1, 3), (1, 1, 2), (0, 0, 4)),  # causal, dilated
     ((2, 1, 5, 6, 4), 4, 5, (1, 2, 4), (1, 1, 1), (0, 0, 1)),  # same, even kernel
     ((2, 3, 4, 5, 2), 2, 3, (2, 3, 2), (1, 2, 1), (1, 2, 0))],  # 3D, mixed pads
)  # fmt: skip
def test_gather_and_scatter_input_gradients_agree(shape, c, f, ks, dil, pads):
    """conv_grad_input_s1 (gather) and conv_backward (scatter) on the same stride-1 layers,
    both directions of the choice, whatever the channel counts."""
    from nnspec.runtime.kernels import jit

    rng = np.random.default_rng(0)
    n, d, h, w_, _ = shape
    eff = [(k - 1) * dd + 1 for k, dd in zip(ks, dil)]
    out = [ln + p - e + 1 for ln, p, e in zip((d, h, w_), pads, eff)]  # outputs seeing pads before only
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(*ks, c, f)).astype(np.float32)
    dz = rng.normal(size=(n, *out, f)).astype(np.float32)
    t3 = tuple(np.int64(v) for v in (1, 1, 1))
    dl, pd = tuple(np.int64(v) for v in dil), tuple(np.int64(v) for v in pads)
    a = np.ones_like(x)  # both add into what is there
    b = np.ones_like(x)
    jit(conv.conv_backward)(x, w, dz, a, np.zeros((0, 0), np.float32), True, False, 7, 1, t3, dl, pd)
    jit(conv.conv_grad_input_s1)(w, dz, b, 5, dl, pd)
    close(b, a, 1e-6, "gather against scatter")
    assert not np.allclose(a, 1.0)


def test_every_conv_layer_has_a_backward():
    for defn in conv.LAYERS:
        assert defn.emit_backward is not None and defn.emit_train is not None, defn.name
    tested = {c.type for c in CASES}
    assert tested == {d.name for d in conv.LAYERS}, tested ^ {d.name for d in conv.LAYERS}


# ----------------------------------------------------------------------------- end to end

# Used when pooling has no backward kernel yet: the same kind of network without pooling.
CONV_ONLY = """
format: nnspec/1
name: conv_only
inputs:
  image: {shape: [12, 12, 3]}
layers:
  conv1: {type: Conv2D, filters: 8, kernel_size: 3, activation: relu}
  conv2: {type: Conv2D, filters: 8, kernel_size: 3, strides: 2, activation: relu}
  flat: {type: Flatten}
  output: {type: Dense, units: 10, activation: softmax}
edges:
  - image -> conv1 -> conv2 -> flat -> output
outputs: [output]
"""

# A shared convolution (its weight gradients add over its two calls) and a value read by two
# convolutions (their input gradients add up), channels_first and a separable one included.
SHARED_CONV = """
format: nnspec/1
name: shared_conv
inputs:
  a: {shape: [8, 8, 3]}
  b: {shape: [8, 8, 3]}
layers:
  stem_a: {type: Conv2D, filters: 6, kernel_size: 3, padding: same, activation: relu}
  stem_b: {shares: stem_a}
  sum: {type: Add}
  left: {type: Conv2D, filters: 4, kernel_size: 3, strides: 2, activation: gelu}
  right: {type: SeparableConv2D, filters: 4, kernel_size: 3, strides: 2, depth_multiplier: 2}
  cat: {type: Concatenate}
  flat: {type: Flatten}
  output: {type: Dense, units: 3, activation: softmax}
edges:
  - a -> stem_a
  - b -> stem_b
  - stem_a, stem_b -> sum
  - sum -> left
  - sum -> right
  - left, right -> cat -> flat -> output
outputs: [output]
"""


def _n_weights(source) -> int:
    """How many weight arrays the model has: one step moves every one of them."""
    return len(nnspec.load(source).get_weights())


def test_cnn_one_sgd_step_matches_keras():
    from nnspec.layerdefs import REGISTRY

    rng = np.random.default_rng(7)
    if REGISTRY["MaxPooling2D"].emit_backward is not None:
        source, shape = SPECS / "cnn.yaml", (64, 64, 3)
    else:
        source, shape = CONV_ONLY, (12, 12, 3)
    x = rng.uniform(-1, 1, size=(4, *shape)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4)]
    assert one_step_matches_keras(source, x, y, seed=3) == _n_weights(source)


def test_shared_conv_and_fan_out_match_keras():
    rng = np.random.default_rng(8)
    a, b = (rng.uniform(-1, 1, size=(3, 8, 8, 3)).astype(np.float32) for _ in range(2))
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 3)]
    assert one_step_matches_keras(SHARED_CONV, [a, b], y, seed=4) == _n_weights(SHARED_CONV)


# Convolutions under TimeDistributed: the time axis folded into the rows of their kernels.
TIME_DISTRIBUTED = """
format: nnspec/1
name: td_conv
inputs:
  clip: {shape: [3, 2, 6, 6]}
layers:
  frames: {type: TimeDistributed, layer: {type: Conv2D, filters: 3, kernel_size: 3, activation: gelu,
                                          data_format: channels_first}}
  frames2: {type: TimeDistributed, layer: {type: SeparableConv2D, filters: 2, kernel_size: 2,
                                           depth_multiplier: 2}}
  flat: {type: Flatten}
  output: {type: Dense, units: 4, activation: softmax}
edges:
  - clip -> frames -> frames2 -> flat -> output
outputs: [output]
"""


def test_time_distributed_convolutions_match_keras():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 3, 2, 6, 6)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 3)]
    assert one_step_matches_keras(TIME_DISTRIBUTED, x, y, seed=1) == _n_weights(TIME_DISTRIBUTED)
