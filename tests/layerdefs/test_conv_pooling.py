"""Convolution, pooling, padding, cropping and upsampling layers against Keras 3: output shapes,
weights (names, shapes, order), parameter counts, refusals, masks and attribute defaults."""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path

import pytest

from nnspec.layerdefs import REGISTRY, conv, pooling
from nnspec.layerdefs.base import REQUIRED, ShapeError, TensorType, normalize_attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from keras_ref import keras_layer_facts

CF = "channels_first"
ALL_DEFS = conv.LAYERS + pooling.LAYERS


# ----------------------------------------------------------------------------- helpers


def ours(type_name: str, raw: dict, input_shape, dtype="float32", masked=False):
    """(output types, params) from our LayerDef; ``input_shape`` excludes the batch axis."""
    defn = REGISTRY[type_name]
    attrs = normalize_attrs(defn, raw)
    x = TensorType((None, *input_shape), dtype, masked)
    return defn.infer(attrs, [x], None), defn.params(attrs, [x], None)


def keras_facts(type_name: str, raw: dict, input_shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras_layer_facts(type_name, raw, [input_shape])


def case_id(case) -> str:
    type_name, raw, shape = case[:3]
    args = ",".join(f"{k}={v}" for k, v in raw.items()).replace(" ", "")
    return f"{type_name}({args})@{shape}"


# ----------------------------------------------------------------------------- configurations

# (type, attributes as a model file writes them, input shape without the batch axis)
CASES = [
    # Conv1D
    ("Conv1D", {"filters": 4, "kernel_size": 3}, (10, 2)),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "padding": "same", "strides": 2}, (11, 3)),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}, (9, 3)),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "padding": "causal", "strides": 2}, (10, 3)),
    ("Conv1D", {"filters": 6, "kernel_size": [5], "strides": 3}, (None, 4)),
    ("Conv1D", {"filters": 4, "kernel_size": 2, "groups": 2, "use_bias": False}, (7, 6)),
    ("Conv1D", {"filters": 5, "kernel_size": 3, "data_format": CF}, (3, 8)),
    # Conv2D
    ("Conv2D", {"filters": 8, "kernel_size": 3}, (9, 7, 3)),
    ("Conv2D", {"filters": 8, "kernel_size": [3, 5], "strides": [2, 1], "padding": "same"}, (9, 7, 3)),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "dilation_rate": 2}, (11, 10, 2)),
    ("Conv2D", {"filters": 6, "kernel_size": 3, "groups": 3}, (8, 8, 9)),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "data_format": CF, "strides": 2}, (3, 9, 8)),
    ("Conv2D", {"filters": 4, "kernel_size": 1, "use_bias": False}, (None, None, 5)),
    ("Conv2D", {"filters": 4, "kernel_size": 4, "strides": 3}, (10, 11, 1)),
    ("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "same", "dilation_rate": [1, 3]}, (5, 5, 1)),
    # Conv3D
    ("Conv3D", {"filters": 4, "kernel_size": 3}, (5, 6, 7, 2)),
    (
        "Conv3D",
        {"filters": 4, "kernel_size": [1, 2, 3], "strides": [1, 2, 3], "padding": "same"},
        (5, 7, 9, 3),
    ),
    ("Conv3D", {"filters": 2, "kernel_size": 2, "data_format": CF, "groups": 2}, (4, 5, 5, 5)),
    ("Conv3D", {"filters": 3, "kernel_size": 3, "dilation_rate": [1, 2, 1]}, (None, 9, 5, 2)),
    # Conv1DTranspose
    ("Conv1DTranspose", {"filters": 4, "kernel_size": 3}, (7, 2)),
    ("Conv1DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2}, (7, 2)),
    ("Conv1DTranspose", {"filters": 4, "kernel_size": 2, "strides": 3}, (7, 2)),
    ("Conv1DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (None, 2)),
    (
        "Conv1DTranspose",
        {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "output_padding": 1},
        (5, 2),
    ),
    ("Conv1DTranspose", {"filters": 4, "kernel_size": 4, "strides": 3, "output_padding": 2}, (5, 2)),
    ("Conv1DTranspose", {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "data_format": CF}, (2, 6)),
    # Conv2DTranspose
    ("Conv2DTranspose", {"filters": 8, "kernel_size": 3, "strides": 2, "padding": "same"}, (5, 6, 3)),
    ("Conv2DTranspose", {"filters": 8, "kernel_size": [3, 2], "strides": [2, 3]}, (5, 6, 3)),
    ("Conv2DTranspose", {"filters": 8, "kernel_size": 3, "strides": 2, "output_padding": 1}, (5, 6, 3)),
    (
        "Conv2DTranspose",
        {"filters": 8, "kernel_size": 4, "strides": 2, "padding": "same", "output_padding": [1, 0]},
        (5, 6, 3),
    ),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "data_format": CF, "use_bias": False}, (3, 4, 5)),
    (
        "Conv2DTranspose",
        {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
        (None, 4, 3),
    ),
    # SeparableConv1D/2D
    ("SeparableConv1D", {"filters": 4, "kernel_size": 3}, (10, 3)),
    (
        "SeparableConv1D",
        {"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same"},
        (None, 3),
    ),
    ("SeparableConv1D", {"filters": 4, "kernel_size": 3, "data_format": CF, "use_bias": False}, (3, 10)),
    ("SeparableConv2D", {"filters": 8, "kernel_size": 3}, (9, 9, 3)),
    (
        "SeparableConv2D",
        {"filters": 8, "kernel_size": [3, 1], "depth_multiplier": 3, "padding": "same", "strides": 2},
        (9, 8, 4),
    ),
    ("SeparableConv2D", {"filters": 8, "kernel_size": 3, "dilation_rate": 2, "data_format": CF}, (2, 9, 9)),
    # Keras builds separable/depthwise convolutions with strides and dilation both above 1.
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, (11, 11, 2)),
    # DepthwiseConv1D/2D
    ("DepthwiseConv1D", {"kernel_size": 3}, (10, 3)),
    (
        "DepthwiseConv1D",
        {"kernel_size": 3, "depth_multiplier": 4, "strides": 2, "padding": "same", "use_bias": False},
        (None, 2),
    ),
    ("DepthwiseConv1D", {"kernel_size": 2, "data_format": CF, "dilation_rate": 3}, (3, 10)),
    ("DepthwiseConv2D", {"kernel_size": 3}, (9, 9, 3)),
    (
        "DepthwiseConv2D",
        {"kernel_size": [3, 5], "depth_multiplier": 2, "strides": [1, 2], "padding": "same"},
        (7, 9, 3),
    ),
    ("DepthwiseConv2D", {"kernel_size": 3, "data_format": CF, "dilation_rate": 2}, (4, 9, 8)),
    ("DepthwiseConv2D", {"kernel_size": 3, "strides": 2, "dilation_rate": 2}, (9, 9, 3)),
    # MaxPooling / AveragePooling
    ("MaxPooling1D", {}, (9, 3)),
    ("MaxPooling1D", {"pool_size": 3, "strides": 1}, (None, 3)),
    ("MaxPooling1D", {"pool_size": 2, "padding": "same"}, (9, 3)),
    ("MaxPooling1D", {"pool_size": 3, "strides": 2, "data_format": CF}, (3, 10)),
    ("MaxPooling2D", {}, (9, 7, 3)),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (9, 7, 3)),
    ("MaxPooling2D", {"pool_size": [2, 3], "data_format": CF}, (3, 8, 9)),
    ("MaxPooling2D", {"pool_size": 2, "strides": 1}, (None, None, 2)),
    ("MaxPooling3D", {}, (4, 5, 6, 2)),
    ("MaxPooling3D", {"pool_size": [1, 2, 3], "padding": "same", "strides": [1, 1, 2]}, (4, 5, 7, 2)),
    ("MaxPooling3D", {"pool_size": 2, "data_format": CF}, (2, 4, 5, 6)),
    ("AveragePooling1D", {"pool_size": 2}, (9, 3)),
    ("AveragePooling1D", {"pool_size": 4, "strides": 3, "padding": "same"}, (10, 2)),
    ("AveragePooling1D", {"pool_size": 2, "data_format": CF}, (2, None)),
    ("AveragePooling2D", {"pool_size": 2}, (9, 7, 3)),
    (
        "AveragePooling2D",
        {"pool_size": [3, 2], "strides": [1, 2], "padding": "same", "data_format": CF},
        (3, 9, 7),
    ),
    ("AveragePooling3D", {"pool_size": 2}, (4, 5, 6, 2)),
    ("AveragePooling3D", {"pool_size": 3, "padding": "same"}, (4, 5, 7, 2)),
    # Global pooling
    ("GlobalMaxPooling1D", {}, (None, 3)),
    ("GlobalMaxPooling1D", {"keepdims": True, "data_format": CF}, (3, 7)),
    ("GlobalMaxPooling2D", {}, (5, 6, 3)),
    ("GlobalMaxPooling2D", {"keepdims": True}, (None, None, 3)),
    ("GlobalMaxPooling3D", {"keepdims": True, "data_format": CF}, (2, 3, 4, 5)),
    ("GlobalMaxPooling3D", {}, (3, 4, 5, 2)),
    ("GlobalAveragePooling1D", {}, (7, 3)),
    ("GlobalAveragePooling1D", {"keepdims": True}, (None, 3)),
    ("GlobalAveragePooling2D", {"data_format": CF}, (3, 5, 6)),
    ("GlobalAveragePooling2D", {"keepdims": True, "data_format": CF}, (3, 5, 6)),
    ("GlobalAveragePooling3D", {}, (3, 4, 5, 2)),
    ("GlobalAveragePooling3D", {"keepdims": True}, (3, 4, None, 2)),
    # ZeroPadding / Cropping / UpSampling
    ("ZeroPadding1D", {}, (5, 3)),
    ("ZeroPadding1D", {"padding": [2, 0]}, (None, 3)),
    ("ZeroPadding1D", {"padding": 3, "data_format": CF}, (3, 5)),
    ("ZeroPadding2D", {}, (4, 5, 3)),
    ("ZeroPadding2D", {"padding": [1, 2]}, (4, 5, 3)),
    ("ZeroPadding2D", {"padding": [[1, 0], [2, 3]], "data_format": CF}, (3, 4, 5)),
    ("ZeroPadding2D", {"padding": 2}, (None, 5, 3)),
    ("ZeroPadding2D", {"padding": [1, [0, 2]]}, (4, 5, 3)),
    ("Cropping1D", {}, (5, 3)),
    ("Cropping1D", {"cropping": [2, 0]}, (5, 3)),
    ("Cropping1D", {"cropping": 1}, (None, 2)),
    ("Cropping2D", {}, (4, 5, 3)),
    ("Cropping2D", {"cropping": 1}, (4, 5, 3)),
    ("Cropping2D", {"cropping": [[1, 0], [2, 1]]}, (4, 5, 3)),
    ("Cropping2D", {"cropping": [1, 2], "data_format": CF}, (3, 4, 6)),
    ("Cropping2D", {"cropping": [[0, 1], [1, 0]]}, (None, 5, 3)),
    ("UpSampling1D", {}, (5, 3)),
    ("UpSampling1D", {"size": 3}, (None, 3)),
    ("UpSampling2D", {}, (4, 5, 3)),
    ("UpSampling2D", {"size": [2, 3], "data_format": CF}, (3, 4, 5)),
    ("UpSampling2D", {"size": 2, "interpolation": "bilinear"}, (None, 5, 3)),
]

# (type, attributes, input shape, a regex our ShapeError must match); Keras refuses them too.
REFUSED = [
    ("Conv2D", {"filters": 4, "kernel_size": 5}, (3, 3, 3),
     r"^Conv2D: kernel 5x5 does not fit input 3x3 with padding 'valid' \(input shape \(None, 3, 3, 3\)"),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "dilation_rate": 3}, (6, 9, 1),
     r"kernel 3x3 dilated by 3x3 \(effective 7x7\) does not fit input 6x9"),
    ("Conv1D", {"filters": 4, "kernel_size": 4, "strides": 2}, (3, 2),
     r"^Conv1D: kernel 4 does not fit input 3 with padding 'valid'"),
    ("Conv3D", {"filters": 2, "kernel_size": 3}, (2, 5, 5, 1), r"kernel 3x3x3 does not fit input 2x5x5"),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, (10, 3),
     r"strides \[2\] > 1 cannot be combined with dilation_rate \[2\]"),
    ("Conv2D", {"filters": 5, "kernel_size": 3, "groups": 2}, (8, 8, 4),
     r"filters \(5\) must be divisible by groups \(2\)"),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "groups": 2}, (8, 8, 3),
     r"3 channels must be divisible by groups \(2\)"),
    ("Conv1D", {"filters": 2, "kernel_size": 3}, (4, 3, 2), r"rank 3 .*\(None, 4, 3, 2\)"),
    ("Conv2D", {"filters": 2, "kernel_size": 3}, (8, 8, None), r"known channel dimension"),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 2}, (4, 4, 1),
     r"output_padding \[2, 2\] must be smaller than strides \[2, 2\]"),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, (4, 1),
     r"cannot be combined with dilation_rate"),
    ("SeparableConv2D", {"filters": 2, "kernel_size": 4}, (3, 9, 1),
     r"^SeparableConv2D: kernel 4x4 does not fit input 3x9"),
    ("DepthwiseConv1D", {"kernel_size": 5}, (4, 2), r"^DepthwiseConv1D: kernel 5 does not fit input 4"),
    ("MaxPooling2D", {"pool_size": 3}, (2, 5, 3), r"^MaxPooling2D: pool 3x3 does not fit input 2x5"),
    ("AveragePooling1D", {"pool_size": 4, "data_format": CF}, (3, 3), r"pool 4 does not fit input 3"),
    ("MaxPooling3D", {}, (1, 4, 4, 2), r"pool 2x2x2 does not fit input 1x4x4"),
    ("GlobalAveragePooling2D", {}, (4, 3), r"rank 4"),
    ("Cropping1D", {"cropping": [2, 3]}, (5, 3), r"^Cropping1D: cropping \[2, 3\] removes all of input 5"),
    ("Cropping2D", {"cropping": [[2, 2], [0, 0]]}, (4, 5, 3), r"removes all of input 4x5"),
    ("UpSampling2D", {}, (4, 5), r"rank 4"),
    ("ZeroPadding2D", {"padding": [1, 2, 3]}, (4, 5, 3), r"must be an int, \[rows, cols\]"),
]  # fmt: skip


# ----------------------------------------------------------------------------- against Keras


@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_shapes_and_weights_match_keras(case):
    type_name, raw, shape = case
    k_shapes, k_weights, k_count = keras_facts(type_name, raw, shape)
    outs, params = ours(type_name, raw, shape)
    assert [o.shape for o in outs] == k_shapes
    assert [(p.name, p.shape, p.trainable) for p in params] == k_weights
    assert sum(p.size for p in params) == k_count


@pytest.mark.keras
@pytest.mark.parametrize("case", REFUSED, ids=[case_id(c) for c in REFUSED])
def test_refused_like_keras(case):
    type_name, raw, shape, pattern = case
    with pytest.raises(ShapeError, match=pattern):
        ours(type_name, raw, shape)
    with pytest.raises((ValueError, TypeError)):
        keras_facts(type_name, raw, shape)


def _keras_default(value):
    """Keras's constructor default in our normalized-attribute form."""
    if isinstance(value, tuple):
        return [_keras_default(v) for v in value]
    return value


# Keras's defaults that read a global setting or mean "none", and what we fix them to.
_OUR_FOR_KERAS_NONE = {"data_format": "channels_last", "activation": "linear"}


@pytest.mark.keras
@pytest.mark.parametrize("defn", ALL_DEFS, ids=[d.name for d in ALL_DEFS])
def test_attributes_follow_keras_constructor(defn):
    import keras

    sig = inspect.signature(getattr(keras.layers, defn.name).__init__)
    kparams = [p for n, p in sig.parameters.items() if n not in ("self", "name", "kwargs")]
    common = ("trainable", "dtype")
    assert defn.attr_names[-2:] == common
    assert list(defn.attr_names[:-2]) == [p.name for p in kparams]
    for p in kparams:
        ours_default = defn.attr(p.name).default
        if p.default is inspect.Parameter.empty:
            assert ours_default is REQUIRED, p.name
        elif p.default is None and p.name in _OUR_FOR_KERAS_NONE:
            assert ours_default == _OUR_FOR_KERAS_NONE[p.name], p.name
        else:
            assert ours_default == _keras_default(p.default), p.name
    # positional attributes are a prefix of Keras's constructor arguments
    assert list(defn.positional) == [p.name for p in kparams[: len(defn.positional)]]


MASK_CASES = [
    ("Conv1D", {"filters": 2, "kernel_size": 3}),
    ("SeparableConv1D", {"filters": 2, "kernel_size": 3}),
    ("MaxPooling1D", {}),
    ("GlobalAveragePooling1D", {}),
    ("GlobalMaxPooling1D", {}),
    ("ZeroPadding1D", {}),
    ("Cropping1D", {}),
    ("UpSampling1D", {}),
]


@pytest.mark.keras
@pytest.mark.parametrize("case", MASK_CASES, ids=[c[0] for c in MASK_CASES])
def test_mask_dropped_like_keras(case):
    import keras
    from keras_ref import keras_layer

    type_name, raw = case
    tokens = keras.Input(shape=(8,), dtype="int32")
    emb = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    assert getattr(emb, "_keras_mask", None) is not None  # the input does carry a mask
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = keras_layer(type_name, raw)(emb)
    k_masked = getattr(out, "_keras_mask", None) is not None
    outs, _ = ours(type_name, raw, (8, 4), masked=True)
    assert outs[0].masked is k_masked is False


# ----------------------------------------------------------------------------- without Keras


def test_registered():
    for d in ALL_DEFS:
        assert REGISTRY[d.name] is d


def test_causal_only_on_conv1d():
    assert "causal" in conv.CONV1D.attr("padding").choices
    for d in (conv.CONV2D, conv.SEPARABLE_CONV1D, conv.DEPTHWISE_CONV1D, conv.CONV1D_TRANSPOSE):
        assert d.attr("padding").choices == ("valid", "same")


def test_causal_conv1d_keeps_length():
    outs, _ = ours(
        "Conv1D", {"filters": 3, "kernel_size": 5, "padding": "causal", "dilation_rate": 4}, (6, 2)
    )
    assert outs[0].shape == (None, 6, 3)


def test_params_carry_initializers_regularizers_constraints():
    raw = {
        "filters": 4,
        "kernel_size": 3,
        "kernel_initializer": "he_normal",
        "bias_initializer": {"type": "constant", "value": 0.1},
        "kernel_regularizer": {"type": "l2", "l2": 0.01},
        "bias_constraint": "non_neg",
    }
    _, (kernel, bias) = ours("Conv2D", raw, (8, 8, 3))
    assert (kernel.initializer, kernel.regularizer, kernel.constraint) == (
        "he_normal",
        raw["kernel_regularizer"],
        None,
    )
    assert (bias.initializer, bias.regularizer, bias.constraint) == (raw["bias_initializer"], None, "non_neg")

    raw = {
        "filters": 4,
        "kernel_size": 3,
        "depthwise_initializer": "ones",
        "pointwise_initializer": "zeros",
        "pointwise_regularizer": "l1",
        "depthwise_constraint": "unit_norm",
    }
    _, (dw, pw, b) = ours("SeparableConv2D", raw, (8, 8, 3))
    assert (dw.initializer, dw.regularizer, dw.constraint) == ("ones", None, "unit_norm")
    assert (pw.initializer, pw.regularizer, pw.constraint) == ("zeros", "l1", None)
    assert b.initializer == "zeros"

    _, (k, b) = ours("DepthwiseConv2D", {"kernel_size": 3, "depthwise_initializer": "ones"}, (8, 8, 3))
    assert (k.name, k.initializer, b.name) == ("kernel", "ones", "bias")


def test_defaults():
    a = normalize_attrs(conv.CONV2D, {"filters": 1, "kernel_size": 3})
    assert a["kernel_size"] == [3, 3] and a["strides"] == [1, 1] and a["dilation_rate"] == [1, 1]
    assert (a["padding"], a["data_format"], a["groups"], a["activation"]) == (
        "valid",
        "channels_last",
        1,
        "linear",
    )
    assert (a["kernel_initializer"], a["bias_initializer"], a["use_bias"]) == (
        "glorot_uniform",
        "zeros",
        True,
    )
    assert normalize_attrs(conv.CONV2D_TRANSPOSE, {"filters": 1, "kernel_size": 2})["output_padding"] is None
    p = normalize_attrs(pooling.MAX_POOLING2D, {})
    assert (p["pool_size"], p["strides"], p["padding"]) == ([2, 2], None, "valid")
    assert pooling.AVERAGE_POOLING2D.attr("pool_size").required
    assert normalize_attrs(pooling.CROPPING1D, {})["cropping"] == [1, 1]
    assert normalize_attrs(pooling.ZERO_PADDING1D, {})["padding"] == [1, 1]
    assert normalize_attrs(pooling.UP_SAMPLING2D, {})["interpolation"] == "nearest"


def test_none_dims_propagate_and_mask_dropped():
    for type_name, raw, shape, want in [
        ("Conv2D", {"filters": 2, "kernel_size": 3}, (None, 9, 1), (None, None, 7, 2)),
        ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2}, (4, None, 1), (None, 9, None, 2)),
        ("MaxPooling2D", {}, (None, 9, None), (None, None, 4, None)),
        ("GlobalAveragePooling1D", {}, (None, None), (None, None)),
        ("Cropping2D", {"cropping": 1}, (None, 5, 3), (None, None, 3, 3)),
    ]:
        outs, _ = ours(type_name, raw, shape, masked=True)
        assert outs[0].shape == want
        assert outs[0].masked is False


def test_dtypes():
    outs, _ = ours("Conv2D", {"filters": 2, "kernel_size": 1, "dtype": "float64"}, (3, 3, 1))
    assert outs[0].dtype == "float64"
    outs, _ = ours("MaxPooling1D", {}, (4, 2), dtype="int32")
    assert outs[0].dtype == "int32"  # Keras casts only floating inputs
    outs, _ = ours("UpSampling1D", {"dtype": "float16"}, (4, 2))
    assert outs[0].dtype == "float16"


def test_transpose_empty_output_is_refused():
    # Keras would return a 0-sized axis here; we refuse it.
    with pytest.raises(ShapeError, match="Conv2DTranspose: kernel 2x2 .* empty output"):
        ours(
            "Conv2DTranspose",
            {"filters": 2, "kernel_size": 2, "padding": "same", "output_padding": 0},
            (1, 1, 1),
        )


def test_docs_and_ops():
    for d in ALL_DEFS:
        assert len(d.doc) > 60, d.name
        assert d.attr_names[-2:] == ("trainable", "dtype"), d.name
    assert conv.CONV1D_TRANSPOSE.op == "conv1d_transpose"
    assert pooling.GLOBAL_AVERAGE_POOLING2D.op == "global_average_pooling2d"
