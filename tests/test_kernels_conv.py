"""Forward kernels of the convolution, pooling, padding, cropping and upsampling layers.

Each case runs one layer three ways (``kernel_harness``): nnspec's compiled plan, the layer's
NumPy reference in float64, and Keras 3 (PyTorch backend) with the same weights. Checked per
case: (1) kernels against the reference, rtol = atol = 1e-5 (float32 against float64); (2) the
kernels against Keras, within 1e-4 of the output's scale; (3) output shapes and dtypes.

Cases are small, except a few at the seed CNNs' layer shapes (several images, so that the
convolution's tiles of output positions start mid-row and mid-image). Both convolution kernels
are covered: inputs with at most 16 floats per kernel row take the planar one, wider ones the
channels-last one. To keep compilations few, the cases of one family of layers and one batch
size run as the branches of one model (one plan). The masked GlobalAveragePooling1D needs an
Embedding before it and has its own tests.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, conv, pooling
from nnspec.layerdefs.base import TensorType, normalize_attrs
from nnspec.specs.errors import ShapeMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh

RTOL = ATOL = 1e-5  # float32 kernels against float64 references
KERAS_TOL = 1e-4  # against Keras, relative to the output's scale (max |value|, at least 1)

# Keras's PyTorch backend pads asymmetric 'same' average pooling by replicating the edge and
# counts the copies in the mean; its NumPy, JAX and TensorFlow backends (and nnspec) average
# the values inside the input only.
TORCH_AVG_SAME = "Keras on PyTorch counts replicated edge values in asymmetric 'same' average pooling"


@dataclass(frozen=True)
class Case:
    id: str
    type: str
    attrs: dict
    shapes: tuple  # per-sample input shapes
    batch: int = 3
    keras_differs: str | None = None  # a known, documented difference from Keras on PyTorch


CF = {"data_format": "channels_first"}

# fmt: off
CASES = [
    # ---- Conv1D
    Case("conv1d-valid-stride2", "Conv1D", {"filters": 4, "kernel_size": 3, "strides": 2}, ((9, 3),)),
    Case("conv1d-same-relu", "Conv1D", {"filters": 4, "kernel_size": 4, "padding": "same", "activation": "relu"},
         ((8, 3),)),
    Case("conv1d-causal-dilated", "Conv1D", {"filters": 3, "kernel_size": 3, "padding": "causal",
                                              "dilation_rate": 2}, ((9, 2),)),
    Case("conv1d-causal-stride", "Conv1D", {"filters": 3, "kernel_size": 2, "padding": "causal", "strides": 2},
         ((7, 2),)),
    Case("conv1d-cf-groups", "Conv1D", {"filters": 4, "kernel_size": 2, "groups": 2, **CF}, ((4, 7),)),
    # (inputs of up to 16 floats per kernel row take the planar kernel; these take the other one)
    Case("conv1d-wide-causal-stride", "Conv1D", {"filters": 5, "kernel_size": 3, "padding": "causal",
                                                  "strides": 2}, ((9, 8),)),
    Case("conv1d-wide-same-dilated", "Conv1D", {"filters": 5, "kernel_size": 3, "padding": "same",
                                                 "dilation_rate": 3}, ((10, 8),)),
    # ---- Conv2D
    Case("conv2d-seed-30x30x16", "Conv2D", {"filters": 32, "kernel_size": 3, "activation": "relu"},
         ((30, 30, 16),), batch=2),
    Case("conv2d-seed-64x64x3", "Conv2D", {"filters": 16, "kernel_size": 5, "activation": "relu"},
         ((64, 64, 3),), batch=2),
    Case("conv2d-same-stride2-5x5", "Conv2D", {"filters": 8, "kernel_size": 5, "strides": 2, "padding": "same"},
         ((25, 24, 3),)),
    Case("conv2d-same-even-kernel", "Conv2D", {"filters": 4, "kernel_size": [2, 4], "padding": "same"},
         ((6, 7, 3),)),
    Case("conv2d-same-dilated", "Conv2D", {"filters": 4, "kernel_size": 3, "dilation_rate": [2, 3],
                                            "padding": "same"}, ((9, 10, 2),)),
    Case("conv2d-valid-dilated", "Conv2D", {"filters": 4, "kernel_size": 2, "dilation_rate": 2}, ((6, 7, 3),)),
    Case("conv2d-wide-same-stride2", "Conv2D", {"filters": 6, "kernel_size": 3, "strides": 2, "padding": "same",
                                                 "activation": "gelu"}, ((9, 8, 8),)),
    Case("conv2d-wide-same-dilated", "Conv2D", {"filters": 6, "kernel_size": [3, 2], "padding": "same",
                                                 "dilation_rate": 2}, ((7, 8, 8),)),
    Case("conv2d-wide-cf-same", "Conv2D", {"filters": 6, "kernel_size": 3, "padding": "same", **CF}, ((8, 5, 6),)),
    Case("conv2d-groups", "Conv2D", {"filters": 6, "kernel_size": 3, "groups": 3, "strides": [1, 2]},
         ((7, 8, 6),)),
    Case("conv2d-groups-same", "Conv2D", {"filters": 4, "kernel_size": 3, "groups": 2, "padding": "same",
                                           "activation": "sigmoid"}, ((5, 6, 4),)),
    Case("conv2d-1x1-no-bias", "Conv2D", {"filters": 5, "kernel_size": 1, "use_bias": False}, ((4, 5, 6),)),
    Case("conv2d-1x1-stride2", "Conv2D", {"filters": 5, "kernel_size": 1, "strides": 2}, ((5, 5, 3),)),
    Case("conv2d-kernel-as-big-as-input", "Conv2D", {"filters": 3, "kernel_size": [4, 5]}, ((4, 5, 2),)),
    Case("conv2d-cf-same-softmax", "Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same",
                                               "activation": "softmax", **CF}, ((3, 7, 6),)),
    Case("conv2d-cf-valid-tanh", "Conv2D", {"filters": 4, "kernel_size": 2, "activation": "tanh", **CF},
         ((3, 6, 5),)),
    Case("conv2d-batch1", "Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "elu"},
         ((5, 5, 2),), batch=1),
    # ---- Conv3D
    Case("conv3d-valid", "Conv3D", {"filters": 4, "kernel_size": 2}, ((4, 5, 4, 2),)),
    Case("conv3d-same-stride", "Conv3D", {"filters": 3, "kernel_size": [3, 2, 3], "strides": 2, "padding": "same"},
         ((5, 4, 6, 2),)),
    Case("conv3d-wide-same", "Conv3D", {"filters": 4, "kernel_size": 3, "padding": "same", "strides": [1, 2, 1]},
         ((4, 5, 4, 6),)),
    Case("conv3d-cf", "Conv3D", {"filters": 3, "kernel_size": 2, **CF}, ((2, 4, 3, 5),)),
    # ---- transposed
    Case("conv2dT-same-s2", "Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
         ((4, 5, 3),)),
    Case("conv2dT-valid-op1", "Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2,
                                                   "output_padding": 1}, ((4, 5, 3),)),
    Case("conv2dT-same-op-even-kernel", "Conv2DTranspose", {"filters": 3, "kernel_size": 4, "strides": [2, 3],
                                                             "padding": "same", "output_padding": [1, 0]},
         ((3, 4, 2),)),
    Case("conv2dT-stride-over-kernel", "Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 3},
         ((3, 3, 2),)),
    Case("conv2dT-dilated", "Conv2DTranspose", {"filters": 3, "kernel_size": 3, "dilation_rate": 2,
                                                 "padding": "same"}, ((5, 5, 2),)),
    Case("conv2dT-cf-relu", "Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2, "activation": "relu",
                                                 **CF}, ((2, 4, 3),)),
    Case("conv3dT-same-s2", "Conv3DTranspose", {"filters": 3, "kernel_size": [2, 3, 2], "strides": [2, 1, 2],
                                                 "padding": "same"}, ((3, 4, 5, 2),)),
    Case("conv3dT-valid-op-cf", "Conv3DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2,
                                                     "output_padding": [1, 0, 1], **CF}, ((2, 3, 2, 3),)),
    Case("conv1dT-same-op2", "Conv1DTranspose", {"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same",
                                                  "output_padding": 2}, ((5, 3),)),
    Case("conv1dT-valid", "Conv1DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "use_bias": False},
         ((6, 3),)),
    # ---- depthwise
    Case("dw2d-same-dm2", "DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
         ((6, 5, 3),)),
    Case("dw2d-stride-and-dilation", "DepthwiseConv2D", {"kernel_size": 3, "strides": 2, "dilation_rate": 2},
         ((9, 9, 2),)),
    Case("dw2d-cf-relu6", "DepthwiseConv2D", {"kernel_size": [2, 3], "activation": "relu6", **CF}, ((3, 5, 6),)),
    Case("dw1d-dilated-tanh", "DepthwiseConv1D", {"kernel_size": 3, "dilation_rate": 2, "activation": "tanh"},
         ((9, 3),)),
    Case("dw1d-same-dm3-no-bias", "DepthwiseConv1D", {"kernel_size": 4, "padding": "same", "depth_multiplier": 3,
                                                       "use_bias": False}, ((7, 2),)),
    # ---- separable
    Case("sep2d-dm2-stride2", "SeparableConv2D", {"filters": 5, "kernel_size": 3, "depth_multiplier": 2,
                                                   "strides": 2}, ((7, 6, 3),)),
    Case("sep2d-same-relu", "SeparableConv2D", {"filters": 8, "kernel_size": 3, "padding": "same",
                                                 "activation": "relu"}, ((6, 6, 4),)),
    Case("sep2d-cf-softmax", "SeparableConv2D", {"filters": 4, "kernel_size": 3, "activation": "softmax", **CF},
         ((3, 6, 5),)),
    Case("sep1d-cf-same", "SeparableConv1D", {"filters": 5, "kernel_size": 3, "padding": "same", **CF},
         ((3, 8),)),
    Case("sep1d-dilated-no-bias", "SeparableConv1D", {"filters": 3, "kernel_size": 2, "dilation_rate": 2,
                                                       "use_bias": False}, ((8, 4),)),
    # ---- pooling
    Case("maxpool2d-seed", "MaxPooling2D", {"pool_size": 2}, ((12, 10, 16),)),
    Case("maxpool2d-odd-drops-edge", "MaxPooling2D", {"pool_size": 3}, ((11, 10, 3),)),
    Case("maxpool2d-same-stride2", "MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"},
         ((7, 6, 3),)),
    Case("maxpool2d-cf-same", "MaxPooling2D", {"pool_size": [2, 3], "strides": 1, "padding": "same", **CF},
         ((2, 5, 6),)),
    Case("maxpool1d-stride2", "MaxPooling1D", {"pool_size": 3, "strides": 2}, ((9, 2),)),
    Case("maxpool1d-cf-same", "MaxPooling1D", {"pool_size": 2, "padding": "same", **CF}, ((2, 7),)),
    Case("maxpool3d-same", "MaxPooling3D", {"pool_size": 2, "padding": "same"}, ((5, 4, 3, 2),)),
    Case("avgpool2d-valid", "AveragePooling2D", {"pool_size": 2}, ((6, 7, 3),)),
    Case("avgpool2d-same-symmetric", "AveragePooling2D", {"pool_size": 3, "strides": 1, "padding": "same"},
         ((7, 6, 3),)),
    Case("avgpool2d-cf-same-stride", "AveragePooling2D", {"pool_size": [2, 3], "padding": "same", **CF},
         ((3, 7, 6),)),
    Case("avgpool2d-same-asymmetric", "AveragePooling2D", {"pool_size": 4, "strides": 1, "padding": "same"},
         ((5, 6, 2),), keras_differs=TORCH_AVG_SAME),
    Case("avgpool1d-same-asymmetric", "AveragePooling1D", {"pool_size": 4, "strides": 1, "padding": "same"},
         ((7, 2),), keras_differs=TORCH_AVG_SAME),
    Case("avgpool1d-valid", "AveragePooling1D", {"pool_size": 2, "strides": 1}, ((5, 3),)),
    Case("avgpool3d-valid", "AveragePooling3D", {"pool_size": 2, "strides": 1}, ((3, 4, 3, 2),)),
    Case("avgpool3d-cf-same", "AveragePooling3D", {"pool_size": 3, "strides": 1, "padding": "same", **CF},
         ((2, 3, 4, 5),)),
    # ---- global pooling
    Case("gmp1d", "GlobalMaxPooling1D", {}, ((6, 3),)),
    Case("gmp1d-cf-keepdims", "GlobalMaxPooling1D", {"keepdims": True, **CF}, ((3, 6),)),
    Case("gmp2d", "GlobalMaxPooling2D", {}, ((5, 4, 3),)),
    Case("gmp3d-keepdims", "GlobalMaxPooling3D", {"keepdims": True}, ((2, 3, 4, 3),)),
    Case("gap1d", "GlobalAveragePooling1D", {}, ((6, 3),)),
    Case("gap1d-keepdims", "GlobalAveragePooling1D", {"keepdims": True}, ((6, 3),)),
    Case("gap2d", "GlobalAveragePooling2D", {}, ((5, 4, 3),)),
    Case("gap2d-cf-keepdims", "GlobalAveragePooling2D", {"keepdims": True, **CF}, ((3, 5, 4),)),
    Case("gap3d", "GlobalAveragePooling3D", {}, ((2, 3, 4, 3),)),
    # ---- adaptive pooling: windows of unequal and overlapping sizes, upsampling, channels_first
    Case("adaptive-avg1d-overlap", "AdaptiveAveragePooling1D", {"output_size": 3}, ((5, 2),)),
    Case("adaptive-avg1d-up-cf", "AdaptiveAveragePooling1D", {"output_size": 5, **CF}, ((2, 3),)),
    Case("adaptive-avg2d", "AdaptiveAveragePooling2D", {"output_size": [3, 2]}, ((7, 5, 3),)),
    Case("adaptive-avg2d-cf", "AdaptiveAveragePooling2D", {"output_size": 4, **CF}, ((2, 6, 9),)),
    Case("adaptive-avg3d", "AdaptiveAveragePooling3D", {"output_size": [2, 3, 2]}, ((3, 5, 4, 2),)),
    Case("adaptive-max1d", "AdaptiveMaxPooling1D", {"output_size": 4}, ((10, 3),)),
    Case("adaptive-max2d", "AdaptiveMaxPooling2D", {"output_size": [2, 3]}, ((5, 7, 2),)),
    Case("adaptive-max2d-cf-up", "AdaptiveMaxPooling2D", {"output_size": [4, 3], **CF}, ((2, 3, 3),)),
    Case("adaptive-max3d-cf", "AdaptiveMaxPooling3D", {"output_size": 2, **CF}, ((2, 3, 5, 4),)),
    # ---- padding and cropping
    Case("zeropad1d-int", "ZeroPadding1D", {"padding": 2}, ((4, 2),)),
    Case("zeropad1d-pair", "ZeroPadding1D", {"padding": [2, 1]}, ((4, 2),)),
    Case("zeropad2d-default", "ZeroPadding2D", {}, ((3, 4, 2),)),
    Case("zeropad2d-nested", "ZeroPadding2D", {"padding": [[1, 2], [0, 3]]}, ((4, 5, 2),)),
    Case("zeropad2d-cf", "ZeroPadding2D", {"padding": [2, 1], **CF}, ((2, 4, 5),)),
    Case("crop1d", "Cropping1D", {"cropping": [1, 2]}, ((6, 2),)),
    Case("crop2d", "Cropping2D", {"cropping": [[1, 0], [2, 1]]}, ((4, 5, 2),)),
    Case("crop2d-cf", "Cropping2D", {"cropping": 1, **CF}, ((2, 4, 5),)),
    # ---- upsampling
    Case("up1d", "UpSampling1D", {"size": 3}, ((4, 2),)),
    Case("zeropad3d-default", "ZeroPadding3D", {}, ((2, 3, 4, 2),)),
    Case("zeropad3d-mixed-cf", "ZeroPadding3D", {"padding": [1, [0, 2], [2, 1]], **CF}, ((2, 3, 2, 4),)),
    Case("crop3d", "Cropping3D", {"cropping": [[1, 0], 1, [0, 2]]}, ((3, 4, 5, 2),)),
    Case("crop3d-cf", "Cropping3D", {"cropping": 1, **CF}, ((2, 3, 4, 5),)),
    Case("up3d", "UpSampling3D", {"size": [2, 1, 3]}, ((2, 3, 2, 2),)),
    Case("up3d-cf", "UpSampling3D", {"size": 2, **CF}, ((2, 2, 3, 2),)),
    Case("up2d-nearest", "UpSampling2D", {"size": [2, 3]}, ((3, 4, 2),)),
    Case("up2d-nearest-cf", "UpSampling2D", {"size": 2, **CF}, ((2, 3, 4),)),
    Case("up2d-bilinear", "UpSampling2D", {"size": [2, 3], "interpolation": "bilinear"}, ((3, 4, 2),)),
    Case("up2d-bilinear-cf", "UpSampling2D", {"size": [3, 1], "interpolation": "bilinear", **CF}, ((2, 3, 4),)),
    Case("up2d-bicubic", "UpSampling2D", {"size": [2, 4], "interpolation": "bicubic"}, ((4, 3, 2),)),
    Case("up2d-bicubic-cf", "UpSampling2D", {"size": 3, "interpolation": "bicubic", **CF}, ((2, 3, 4),)),
]
# fmt: on

OWNED = {d.name for d in conv.LAYERS + pooling.LAYERS}

_RUNS: dict = {}


def _family(type_name: str) -> str:
    for key in (
        "Transpose",
        "Depthwise",
        "Separable",
        "Global",
        "Pooling",
        "Padding",
        "Cropping",
        "UpSampling",
    ):
        if key in type_name:
            return key
    return "Conv"


def _group(case: Case) -> list:
    """The cases compiled together with ``case``: one plan per family of layers and batch size,
    each case a branch of its own (own input, own layer, own output). A plan costs about 1.7 s
    of compilation plus 0.4 s per layer, so a few large plans beat one plan per case."""
    return [c for c in CASES if _family(c.type) == _family(case.type) and c.batch == case.batch]


def _run(case: Case):
    """(inputs, weights, nnspec outputs), computed once per group of cases."""
    if case.id not in _RUNS:
        group = _group(case)
        spec = {"format": "nnspec/1", "name": "group", "inputs": {}, "layers": {}, "edges": [], "outputs": []}
        data = []
        for i, c in enumerate(group):
            ins = kh.random_inputs(c.shapes, batch=c.batch, seed=i)
            w = kh.nnspec_weights(c.type, c.attrs, c.shapes, seed=i)
            data.append((ins, w))
            (shape,) = c.shapes
            spec["inputs"][f"x{i}"] = {"shape": list(shape)}
            spec["layers"][f"l{i}"] = {"type": c.type, **c.attrs}
            spec["edges"].append(f"x{i} -> l{i}")
            spec["outputs"].append(f"l{i}")
        m = nnspec.Model.from_config(spec)
        m.set_weights([a for _, w in data for a in w])
        outs = m.predict_on_batch({f"x{i}": ins[0] for i, (ins, _) in enumerate(data)})
        outs = outs if isinstance(outs, list) else [outs]
        for c, (ins, w), out in zip(group, data, outs):
            _RUNS[c.id] = (ins, w, [out])
    return _RUNS[case.id]


def _expected_shapes(case: Case) -> list:
    defn = REGISTRY[case.type]
    ins = [TensorType((None, *s)) for s in case.shapes]
    return [(case.batch, *t.shape[1:]) for t in defn.infer(normalize_attrs(defn, case.attrs), ins, None)]


def _close_to_keras(got, want) -> None:
    scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=KERAS_TOL * scale)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernels_match_reference(case):
    ins, w, got = _run(case)
    ref = kh.run_reference(case.type, case.attrs, ins, w)
    assert [g.shape for g in got] == _expected_shapes(case)
    assert all(g.dtype == np.float32 for g in got)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernels_match_keras(case):
    ins, w, got = _run(case)
    want = kh.run_keras(case.type, case.attrs, ins, w)
    assert [g.shape for g in got] == [k.shape for k in want]
    if case.keras_differs:
        scale = max(1.0, float(np.max(np.abs(want[0]))))
        assert not np.allclose(got[0], want[0], rtol=0, atol=KERAS_TOL * scale), (
            f"Keras now agrees ({case.keras_differs}): drop keras_differs from this case"
        )
        return
    for g, k in zip(got, want):
        _close_to_keras(g, k)


def test_every_owned_layer_has_a_case_emit_and_reference():
    assert {c.type for c in CASES} == OWNED
    for name in OWNED:
        defn = REGISTRY[name]
        assert defn.reference is not None, name
        assert defn.emit is not None, name


def test_batch_size_is_a_run_time_value():
    """One compiled plan serves batch sizes 1, 2 and 5 (the tiles straddle images)."""
    case = next(c for c in CASES if c.id == "conv2d-seed-30x30x16")
    _, w, _ = _run(case)
    m = kh.build_nnspec(case.type, case.attrs, case.shapes)
    m.set_weights(w)
    for batch in (1, 5, 2):
        (x,) = kh.random_inputs(case.shapes, batch=batch, seed=batch)
        got = m.predict_on_batch(x)
        (ref,) = kh.run_reference(case.type, case.attrs, [x], w)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- NaN, refusals


def test_max_pooling_propagates_nan():
    spec = kh.one_layer_spec("MaxPooling2D", {"pool_size": 2}, [(4, 4, 1)])
    m = nnspec.Model.from_config(spec)
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    x[0, 0, 1, 0] = np.nan
    got = m.predict_on_batch(x)[0, :, :, 0]
    assert np.isnan(got[0, 0])
    np.testing.assert_array_equal(got[1:, :].ravel(), [13.0, 15.0])
    assert got[0, 1] == 7.0


def _spec(layer: dict, shape: list) -> dict:
    return {"format": "nnspec/1", "name": "r", "inputs": {"x": {"shape": shape}}, "layers": {"l": layer},
            "edges": ["x -> l"], "outputs": ["l"]}  # fmt: skip


@pytest.mark.parametrize("interp", ["lanczos3", "lanczos5"])
def test_lanczos_upsampling_is_refused(interp):
    with pytest.raises(ShapeMismatchError, match=f"interpolation '{interp}' is not supported"):
        nnspec.Model.from_config(_spec({"type": "UpSampling2D", "interpolation": interp}, [4, 4, 1]))


@pytest.mark.parametrize("layer", ["Conv2D", "Conv2DTranspose", "SeparableConv2D", "DepthwiseConv2D"])
def test_fused_glu_is_refused(layer):
    attrs = {"type": layer, "kernel_size": 1, "activation": "glu"}
    if layer != "DepthwiseConv2D":
        attrs["filters"] = 4
    with pytest.raises(ShapeMismatchError, match="glu"):
        nnspec.Model.from_config(_spec(attrs, [4, 4, 2]))


# ----------------------------------------------------------------------------- masked mean


def _masked_gap_spec() -> dict:
    layers = {
        "emb": {"type": "Embedding", "input_dim": 6, "output_dim": 3, "mask_zero": True},
        "gap": {"type": "GlobalAveragePooling1D"},
        "gap_keep": {"type": "GlobalAveragePooling1D", "keepdims": True},
    }
    return {
        "format": "nnspec/1",
        "name": "masked_gap",
        "inputs": {"ids": {"shape": [5], "dtype": "int32"}},
        "layers": layers,
        "edges": ["ids -> emb -> gap", "emb -> gap_keep"],
        "outputs": ["gap", "gap_keep"],
    }


_IDS = np.array([[1, 2, 0, 3, 0], [0, 0, 0, 0, 4], [5, 5, 5, 5, 5], [0, 0, 0, 0, 0]], np.int32)
_TABLE = np.random.default_rng(5).normal(0, 1, (6, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def masked_gap_outputs():
    m = nnspec.Model.from_config(_masked_gap_spec())
    m.set_weights([_TABLE])
    return m.predict_on_batch(_IDS)


def test_masked_global_average_matches_reference(masked_gap_outputs):
    gap, gap_keep = masked_gap_outputs
    x = _TABLE.astype(np.float64)[_IDS]
    mask = (_IDS != 0).astype(np.float32)
    (ref,) = REGISTRY["GlobalAveragePooling1D"].reference(
        normalize_attrs(REGISTRY["GlobalAveragePooling1D"], {}), [x], [], [mask]
    )
    assert gap.shape == (4, 3) and gap_keep.shape == (4, 1, 3)
    np.testing.assert_allclose(gap[:3], ref[:3], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gap[1], _TABLE[4], rtol=RTOL, atol=ATOL)  # one valid step
    assert np.isnan(gap[3]).all()  # every step masked: 0 / 0, as in Keras
    np.testing.assert_array_equal(gap_keep[:, 0, :], gap)


@pytest.mark.keras
def test_masked_global_average_matches_keras(masked_gap_outputs):
    from keras_from_spec import keras_model_from_spec

    model = keras_model_from_spec(json.dumps(_masked_gap_spec()))
    model.get_layer("emb").set_weights([_TABLE])
    want = [np.asarray(o) for o in model.predict(_IDS, verbose=0)]
    for g, k in zip(masked_gap_outputs, want):
        assert g.shape == k.shape
        np.testing.assert_array_equal(np.isnan(g), np.isnan(k))
        _close_to_keras(np.nan_to_num(g), np.nan_to_num(k))


def test_masked_global_average_channels_first_kernel():
    """The channels_first branch of the masked kernel: (rows, C, steps) with a (rows, steps) mask."""
    from nnspec.runtime.kernels import jit

    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (3, 4, 5)).astype(np.float32)
    mask = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]], np.float32)
    y = np.empty((3, 4), np.float32)
    jit(pooling.global_average_masked)(x, mask, y, True)
    attrs = normalize_attrs(REGISTRY["GlobalAveragePooling1D"], {"data_format": "channels_first"})
    (ref,) = REGISTRY["GlobalAveragePooling1D"].reference(attrs, [x.astype(np.float64)], [], [mask])
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
