"""Every registered layer type keeps the contract of a LayerDef.

One row per registered type; a layer added without a doc, a schema entry, a NumPy reference,
a way to run at inference, a backward kernel, or gradient cases checked against finite
differences and Keras fails here, by name.
"""

from __future__ import annotations

import pytest

from nnspec.layerdefs import PUBLIC_LIST, REGISTRY, REGISTRY_LIST
from nnspec.layerdefs.base import COMMON_ATTRS, snake_case
from nnspec.specs.schema import build_schema

# Layer types that lowering turns into something else instead of running a kernel of their own.
LOWERED = {
    "Model": "inlined: its steps are the sub-model's",
    "TimeDistributed": "folds time into the batch and runs the wrapped layer's kernel",
    "RNN": "runs the kernels of its cell's layer (RNN over an LSTMCell is an LSTM step)",
    "SimpleRNNCell": "a cell runs only inside RNN",
    "LSTMCell": "a cell runs only inside RNN",
    "GRUCell": "a cell runs only inside RNN",
    "StackedRNNCells": "a stack of cells runs only inside RNN, as stacked layers of its cells' types",
}

NAMES = [d.name for d in REGISTRY_LIST]


def test_registry_names_are_unique_and_keyed_by_name():
    assert len(NAMES) == len(set(NAMES))
    assert all(REGISTRY[n].name == n for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_layer_definition_is_complete(name):
    d = REGISTRY[name]
    assert d.doc.strip(), f"{name} has no doc"
    attr_names = [a.name for a in d.attrs]
    assert len(attr_names) == len(set(attr_names)), f"{name} defines an attribute twice"
    assert attr_names[-len(COMMON_ATTRS) :] == [a.name for a in COMMON_ATTRS], f"{name}: common attrs go last"
    assert set(d.positional) <= set(attr_names), f"{name}: positional names must be attributes"
    lo, hi = d.arity
    assert lo >= 1 and (hi is None or hi >= lo)
    assert d.op == snake_case(name)


@pytest.mark.parametrize("name", [d.name for d in PUBLIC_LIST])
def test_layer_is_in_the_schema(name):
    layers = build_schema()["definitions"]["layers"]
    assert name in layers
    props = layers[name]["properties"]
    assert set(props) == {"type", *(a.name for a in REGISTRY[name].attrs)}


@pytest.mark.parametrize("name", NAMES)
def test_layer_can_run_at_inference(name):
    """A kernel (emit) and a NumPy reference, unless the layer is a view, an identity or lowered."""
    d = REGISTRY[name]
    if name in LOWERED:
        return
    assert d.reference is not None, f"{name} has no NumPy reference"
    if d.view or d.training_only:
        return
    assert d.emit is not None, f"{name} has no inference kernel (LayerDef.emit)"


# ----------------------------------------------------------------------------- training

# The gradient test modules; each lists its layer cases in ``CASES`` (grad_harness.Case or its
# recurrent counterpart), every case checked against float64 finite differences unless its
# ``fd`` is False and against Keras-on-torch autograd unless its ``keras`` names a reason.
GRADIENT_SUITES = (
    "test_augmentation_color",
    "test_augmentation_geometry",
    "test_augmentation_mix",
    "test_augmentation_policy",
    "test_backward_core",
    "test_backward_conv",
    "test_backward_pooling",
    "test_backward_recurrent",
    "test_attention",
    "test_audio",
    "test_reversible_embedding",
    "test_einsum_dense",
    "test_rnn_cell",
    "test_preprocessing",
    "test_conv_lstm",
    "test_custom_layers",
)
# Layer types whose gradients those two comparisons cannot check, and what checks them instead.
CHECKED_OTHERWISE = {
    "Dropout": "random draws Keras cannot reproduce: formula, statistics, noise_shape and seeding in "
    "test_backward_core.py (test_dropout_*)",
    "SpatialDropout1D": "random: test_backward_core.py::test_spatial_dropout_drops_whole_channels",
    "SpatialDropout2D": "random: test_backward_core.py::test_spatial_dropout_drops_whole_channels",
    "SpatialDropout3D": "random: test_backward_core.py::test_spatial_dropout_drops_whole_channels",
    "AlphaDropout": "random: test_backward_core.py::test_alpha_dropout_training",
    "GaussianNoise": "random: test_backward_core.py::test_gaussian_noise_training",
    "GaussianDropout": "random: test_backward_core.py::test_gaussian_dropout_training",
    **{name: "random: the kernels with a given transform against finite differences, Keras's "
       "affine_transform/transform_images and autograd, and the train step's saved draws, in "
       "test_augmentation.py" for name in ("RandomFlip", "RandomRotation", "RandomZoom",
                                          "RandomTranslation", "RandomContrast", "RandomBrightness")},
    **{name: "random in every configuration (a Beta draw and a permutation of the batch): the kernels with given "
       "draws against Keras's transform_images, autograd and finite differences, and the train step's saved draws, "
       "in test_augmentation_mix.py" for name in ("MixUp", "CutMix")},
    "SimpleRNNCell": "inside RNN: test_rnn_cell.py's RNN cases",
    "LSTMCell": "inside RNN: test_rnn_cell.py's RNN cases",
    "GRUCell": "inside RNN: test_rnn_cell.py's RNN cases",
    "StackedRNNCells": "inside RNN: test_rnn_cell.py's rnn-stacked-cells cases",
    "CategoryEncoding": "no gradient (integer ids): test_preprocessing.py checks its outputs; nothing flows back",
    "Discretization": "no gradient (piecewise constant, as torch.bucketize): test_preprocessing.py checks its outputs",
    "SpectralNormalization": "training rewrites the kernel before the forward pass, so a gradient at fixed "
    "weights is the wrapped layer's (checked in its suite): whole training steps against Keras, and the power "
    "method against NumPy, in test_spectral_normalization.py",
    "Model": "inlined: its steps are its layers' (each checked here); one training step of the seeds with "
    "sub-models (video_classifier, shared_feature_lstm...) against Keras in test_training_seeds.py",
}


def _gradient_cases() -> list:
    import importlib

    out = []
    for name in GRADIENT_SUITES:
        out += importlib.import_module(name).CASES
    return out


@pytest.mark.parametrize("name", NAMES)
def test_layer_can_train(name):
    """A backward kernel beside the forward one, unless lowering turns the layer into others."""
    d = REGISTRY[name]
    if name in LOWERED:
        return
    assert d.emit_backward is not None, f"{name} has no backward kernel (LayerDef.emit_backward)"
    if d.training_only:
        assert d.emit_train is not None, f"{name} acts in training but has no training forward (emit_train)"


@pytest.mark.parametrize("name", NAMES)
def test_layer_gradient_is_checked(name):
    """Every layer type has gradient cases compared with finite differences and with Keras."""
    if name in CHECKED_OTHERWISE:
        return
    cases = [c for c in _gradient_cases() if c.type == name]
    assert any(getattr(c, "fd", True) for c in cases), f"no finite-difference gradient case for {name}"
    assert any(getattr(c, "keras", None) is None for c in cases), f"no Keras gradient case for {name}"


def test_layer_docs_are_generated_from_the_registry():
    """docs/layers.md is what scripts/gen_layer_docs.py makes of the registry (kernels, backward
    kernels, attributes, defaults): regenerate it when a layer changes."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gen_layer_docs", root / "scripts" / "gen_layer_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "docs" / "layers.md").read_text(encoding="utf-8") == gen.render(), (
        "docs/layers.md is out of date: run python scripts/gen_layer_docs.py"
    )
