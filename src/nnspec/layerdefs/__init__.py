"""The layer registry: the one list of every layer type nnspec knows.

Adding a layer means defining its ``LayerDef`` in its family module and adding one line here.
"""

from __future__ import annotations

from . import (
    activation_layers,
    attention,
    audio,
    augmentation,
    augmentation_color,
    augmentation_geometry,
    augmentation_mix,
    augmentation_policy,
    conv,
    conv_recurrent,
    core,
    custom,
    einsum,
    embedding,
    merge,
    normalization,
    pooling,
    preprocessing,
    recurrent,
    wrappers,
)
from .base import LayerDef

# fmt: off
REGISTRY_LIST: tuple[LayerDef, ...] = (
    # core.py
    core.DENSE,
    core.ACTIVATION,
    core.MASKING,
    core.DROPOUT,
    core.SPATIAL_DROPOUT1D,
    core.SPATIAL_DROPOUT2D,
    core.SPATIAL_DROPOUT3D,
    core.ALPHA_DROPOUT,
    core.GAUSSIAN_NOISE,
    core.GAUSSIAN_DROPOUT,
    core.ACTIVITY_REGULARIZATION,
    core.FLATTEN,
    core.RESHAPE,
    core.IDENTITY,
    core.PERMUTE,
    core.REPEAT_VECTOR,
    # einsum.py
    einsum.EINSUM_DENSE,
    # activation_layers.py
    activation_layers.RELU,
    activation_layers.LEAKY_RELU,
    activation_layers.PRELU,
    activation_layers.ELU,
    activation_layers.SOFTMAX,
    # preprocessing.py
    preprocessing.RESCALING,
    preprocessing.NORMALIZATION,
    preprocessing.RESIZING,
    preprocessing.CENTER_CROP,
    preprocessing.CATEGORY_ENCODING,
    preprocessing.DISCRETIZATION,
    # augmentation.py
    augmentation.RANDOM_FLIP,
    augmentation.RANDOM_ROTATION,
    augmentation.RANDOM_ZOOM,
    augmentation.RANDOM_TRANSLATION,
    augmentation.RANDOM_CONTRAST,
    augmentation.RANDOM_BRIGHTNESS,
    # augmentation_color.py
    augmentation_color.AUTO_CONTRAST,
    augmentation_color.SOLARIZATION,
    augmentation_color.RANDOM_GRAYSCALE,
    augmentation_color.RANDOM_INVERT,
    augmentation_color.EQUALIZATION,
    augmentation_color.RANDOM_POSTERIZATION,
    augmentation_color.RANDOM_COLOR_DEGENERATION,
    augmentation_color.RANDOM_SATURATION,
    augmentation_color.RANDOM_HUE,
    augmentation_color.RANDOM_SHARPNESS,
    augmentation_color.RANDOM_COLOR_JITTER,
    # augmentation_geometry.py
    augmentation_geometry.RANDOM_SHEAR,
    augmentation_geometry.RANDOM_ERASING,
    augmentation_geometry.RANDOM_GAUSSIAN_BLUR,
    augmentation_geometry.RANDOM_PERSPECTIVE,
    # augmentation_mix.py
    augmentation_mix.RANDOM_CROP,
    augmentation_mix.MIX_UP,
    augmentation_mix.CUT_MIX,
    augmentation_mix.RANDOM_ELASTIC_TRANSFORM,
    augmentation_mix.CLAHE,
    # augmentation_policy.py
    augmentation_policy.RAND_AUGMENT,
    augmentation_policy.AUG_MIX,
    # conv.py
    conv.CONV1D,
    conv.CONV2D,
    conv.CONV3D,
    conv.CONV1D_TRANSPOSE,
    conv.CONV2D_TRANSPOSE,
    conv.CONV3D_TRANSPOSE,
    conv.SEPARABLE_CONV1D,
    conv.SEPARABLE_CONV2D,
    conv.DEPTHWISE_CONV1D,
    conv.DEPTHWISE_CONV2D,
    # pooling.py
    pooling.MAX_POOLING1D,
    pooling.MAX_POOLING2D,
    pooling.MAX_POOLING3D,
    pooling.AVERAGE_POOLING1D,
    pooling.AVERAGE_POOLING2D,
    pooling.AVERAGE_POOLING3D,
    pooling.GLOBAL_MAX_POOLING1D,
    pooling.GLOBAL_MAX_POOLING2D,
    pooling.GLOBAL_MAX_POOLING3D,
    pooling.GLOBAL_AVERAGE_POOLING1D,
    pooling.GLOBAL_AVERAGE_POOLING2D,
    pooling.GLOBAL_AVERAGE_POOLING3D,
    pooling.ADAPTIVE_AVERAGE_POOLING1D,
    pooling.ADAPTIVE_AVERAGE_POOLING2D,
    pooling.ADAPTIVE_AVERAGE_POOLING3D,
    pooling.ADAPTIVE_MAX_POOLING1D,
    pooling.ADAPTIVE_MAX_POOLING2D,
    pooling.ADAPTIVE_MAX_POOLING3D,
    pooling.ZERO_PADDING1D,
    pooling.ZERO_PADDING2D,
    pooling.CROPPING1D,
    pooling.CROPPING2D,
    pooling.ZERO_PADDING3D,
    pooling.CROPPING3D,
    pooling.UP_SAMPLING1D,
    pooling.UP_SAMPLING2D,
    pooling.UP_SAMPLING3D,
    # embedding.py
    embedding.EMBEDDING,
    embedding.REVERSIBLE_EMBEDDING,
    # recurrent.py
    recurrent.SIMPLE_RNN,
    recurrent.LSTM,
    recurrent.GRU,
    recurrent.RNN,
    recurrent.SIMPLE_RNN_CELL,
    recurrent.LSTM_CELL,
    recurrent.GRU_CELL,
    recurrent.STACKED_RNN_CELLS,
    # conv_recurrent.py
    conv_recurrent.CONV_LSTM1D,
    conv_recurrent.CONV_LSTM2D,
    conv_recurrent.CONV_LSTM3D,
    # merge.py
    merge.CONCATENATE,
    merge.ADD,
    merge.SUBTRACT,
    merge.MULTIPLY,
    merge.AVERAGE,
    merge.MAXIMUM,
    merge.MINIMUM,
    merge.DOT,
    # attention.py
    attention.ATTENTION,
    attention.ADDITIVE_ATTENTION,
    attention.MULTI_HEAD_ATTENTION,
    attention.GROUP_QUERY_ATTENTION,
    # normalization.py
    normalization.BATCH_NORMALIZATION,
    normalization.LAYER_NORMALIZATION,
    normalization.RMS_NORMALIZATION,
    normalization.UNIT_NORMALIZATION,
    normalization.GROUP_NORMALIZATION,
    # wrappers.py
    wrappers.TIME_DISTRIBUTED,
    wrappers.BIDIRECTIONAL,
    wrappers.SPECTRAL_NORMALIZATION,
    wrappers.MODEL,
    # custom.py: the types a model file declares under custom_layers
    custom.CUSTOM_LAYER,
    # audio.py
    audio.STFT_SPECTROGRAM,
    audio.MEL_SPECTROGRAM,
)
# fmt: on

REGISTRY: dict[str, LayerDef] = {d.name: d for d in REGISTRY_LIST}
# The types a model file may name: all but the internal ones (a file's custom layers become
# ``CustomLayer`` steps; a file never writes that type itself).
PUBLIC_LIST: tuple[LayerDef, ...] = tuple(d for d in REGISTRY_LIST if not d.extra.get("internal"))
assert len(REGISTRY) == len(REGISTRY_LIST), "duplicate layer type names in REGISTRY_LIST"

# Keras's other export names of the same classes (``keras.layers.MaxPool2D is MaxPooling2D``): a
# model file and ``nnspec.layers`` take them; loading writes the class name (Keras's
# ``get_config`` and summary name the class too).
ALIASES: dict[str, str] = {
    **{f"MaxPool{n}D": f"MaxPooling{n}D" for n in (1, 2, 3)},
    **{f"AvgPool{n}D": f"AveragePooling{n}D" for n in (1, 2, 3)},
    **{f"GlobalMaxPool{n}D": f"GlobalMaxPooling{n}D" for n in (1, 2, 3)},
    **{f"GlobalAvgPool{n}D": f"GlobalAveragePooling{n}D" for n in (1, 2, 3)},
    **{f"Convolution{n}D": f"Conv{n}D" for n in (1, 2, 3)},
    **{f"Convolution{n}DTranspose": f"Conv{n}DTranspose" for n in (1, 2, 3)},
    **{f"SeparableConvolution{n}D": f"SeparableConv{n}D" for n in (1, 2)},
}
assert all(t in REGISTRY and a not in REGISTRY for a, t in ALIASES.items())

__all__ = ["REGISTRY", "REGISTRY_LIST", "PUBLIC_LIST", "ALIASES", "LayerDef"]
