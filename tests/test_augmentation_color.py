"""The color augmentation layers (AutoContrast, Solarization, RandomGrayscale, RandomInvert,
Equalization, RandomPosterization, RandomColorDegeneration, RandomSaturation, RandomHue,
RandomSharpness, RandomColorJitter) against Keras 3 (PyTorch backend).

- Attributes: Keras's constructor arguments, order, defaults; what Keras refuses is a schema
  error, what its kernels refuse a shape error.
- Inference: one-layer models predict what Keras predicts: AutoContrast's stretch bit for bit
  (constant channels, NaN and infinities included), the three random layers the identity.
- Kernels with GIVEN draws (additions and thresholds, which images turn gray or invert): the
  forward against Keras's ``transform_images`` with the same transformation (bit for bit) and
  the NumPy reference, the backward against Keras's autograd and float64 finite differences.
  AutoContrast's backward runs through its min and max as autograd does (ties share evenly, a
  constant channel's gradient is NaN, as in Keras).
- The compiled train step: AutoContrast against Keras's autograd and finite differences; the
  random layers by their saved draws (each image is its input or the reference's transformed
  version, the share of transformed images matches Keras's probability within 5 standard
  errors, draws uniform over Keras's ranges, outputs inside value_range), input gradients
  against finite differences through the same draws, and draws that follow the kernel seed.
  Configurations in which Keras draws nothing random (RandomGrayscale(1.0), Solarization's
  defaults, RandomInvert([1, 1])) against Keras's autograd directly.
- Model files: summary, predictions and one SGD step against Keras, fit, a Keras config read.
- The later layers likewise: kernels with given draws against Keras's ``transform_images`` (bit for
  bit but RandomSharpness's smoothing, within 1e-6), Keras's autograd and finite differences;
  Equalization (deterministic, training only, one histogram per channel over the batch) against
  Keras called directly (Keras cannot build a model holding it); RandomPosterization's zero
  gradient (Keras's output has no autograd graph); RandomColorJitter's train step against Keras's
  sub-layers given the saved draws.
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY
from nnspec.layerdefs import augmentation_color as AC
from nnspec.layerdefs.base import REQUIRED, bind_numpy, normalize_attrs
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import Case, GradSuite, check_keras, close, fd_grads
from test_augmentation import _fd, _spec, _uniform_stats, seeded_result  # shared helpers

bind_numpy([AC])

NAMES = [d.name for d in AC.LAYERS]
FD_TOL = 1e-3  # float32 kernels against float64 finite differences
TORCH_TOL = 1e-4  # against Keras's autograd
FWD_TOL = 1e-5  # float32 kernels against float64 references


def _keras():
    import keras

    return keras


def _torch():
    import torch

    return torch


def _np(t):
    return t.detach().numpy()


# ----------------------------------------------------------------------------- attributes

# Attributes Keras takes through **kwargs (BaseImagePreprocessingLayer's data_format).
THROUGH_KWARGS = {"AutoContrast": ("data_format",), "Solarization": ("data_format",)}


def _as_written(name, default):
    """A Keras constructor default as a model file writes it: tuples as lists of floats, a
    data_format of None as Keras's image_data_format, a required argument as REQUIRED."""
    if default is inspect.Parameter.empty:  # a required argument
        return REQUIRED
    if name == "data_format" and default is None:
        return _keras().config.image_data_format()
    return [float(v) for v in default] if isinstance(default, tuple) else default


@pytest.mark.parametrize("name", NAMES)
def test_attributes_follow_keras_constructor(name):
    keras_constructor_matches(name)


def keras_constructor_matches(name):
    """Keras's arguments in its order with its defaults (those it takes through ``**kwargs``
    after them), and its positional order. Shared by the augmentation tests."""
    keras = _keras()
    cls = getattr(keras.layers, name)
    kparams = [p for n, p in inspect.signature(cls.__init__).parameters.items() if n not in ("self", "name", "kwargs")]
    defn = REGISTRY[name]
    keras_defaults = {p.name: _as_written(p.name, p.default) for p in kparams}
    keras_defaults.update({extra: "channels_last" for extra in THROUGH_KWARGS.get(name, ())})
    assert list(defn.attr_names[:-2]) == list(keras_defaults)  # dtype and trainable last
    assert {a: defn.attr(a).default for a in keras_defaults} == keras_defaults
    assert list(defn.positional) == [p.name for p in kparams[: len(defn.positional)]]
    for extra in THROUGH_KWARGS.get(name, ()):  # Keras accepts them and keeps them (and writes them)
        layer = cls(data_format="channels_first")
        assert layer.data_format == "channels_first" and layer.get_config()[extra] == "channels_first"


def test_keras_reads_of_factors_are_ours():
    """The ranges Keras draws from, as its constructors read the factors, are the emitters'
    reading (``factor_range``): a number f is [0, f], a pair its sorted values."""
    keras = _keras()
    s = keras.layers.Solarization(addition_factor=0.3, threshold_factor=[0.8, 0.2])
    assert tuple(s.addition_factor) == AC.factor_range(0.3, 0.0) == (0.0, 0.3)
    assert tuple(s.threshold_factor) == AC.factor_range([0.8, 0.2], 0.0) == (0.2, 0.8)
    assert tuple(keras.layers.RandomInvert().factor) == AC.factor_range(1.0, 0.0) == (0.0, 1.0)
    assert tuple(keras.layers.RandomInvert([0.9, 0.3]).factor) == AC.factor_range([0.9, 0.3], 0.0)


# ----------------------------------------------------------------------------- inference

ONE_LAYER = [  # (type, attrs, per-sample shape)
    ("AutoContrast", {}, (6, 5, 3)),
    ("AutoContrast", {"value_range": [0, 1]}, (6, 5, 3)),
    ("AutoContrast", {"value_range": [1, -1], "data_format": "channels_first"}, (3, 6, 5)),
    ("AutoContrast", {"value_range": [0, 255]}, (4, 7, 1)),
    ("Solarization", {}, (6, 5, 3)),
    ("Solarization", {"addition_factor": [0.1, 0.3], "threshold_factor": 0.5, "value_range": [0, 1]}, (6, 5, 3)),
    ("RandomGrayscale", {}, (6, 5, 3)),
    ("RandomGrayscale", {"factor": 1.0, "data_format": "channels_first"}, (3, 6, 5)),
    ("RandomInvert", {}, (6, 5, 3)),
    ("RandomInvert", {"factor": [0.2, 0.9], "value_range": [-1, 1]}, (6, 5, 3)),
    ("RandomPosterization", {"factor": 3}, (6, 5, 3)),
    ("RandomPosterization", {"factor": [2, 6], "value_range": [0, 1], "data_format": "channels_first"}, (3, 6, 5)),
    ("RandomColorDegeneration", {"factor": 0.5}, (6, 5, 3)),
    ("RandomColorDegeneration", {"factor": [-0.2, 0.9], "value_range": [0, 1]}, (6, 5, 3)),
    ("RandomSaturation", {"factor": 0.5}, (6, 5, 3)),
    ("RandomSaturation", {"factor": [0.2, 0.8], "data_format": "channels_first"}, (3, 6, 5)),
    ("RandomHue", {"factor": 0.5}, (6, 5, 3)),
    ("RandomHue", {"factor": [0.1, 0.3], "value_range": [0, 1]}, (6, 5, 3)),
    ("RandomSharpness", {"factor": 0.5}, (6, 5, 3)),
    ("RandomSharpness", {"factor": [0.1, 0.9], "value_range": [0, 1], "data_format": "channels_first"}, (2, 6, 5)),
    ("RandomColorJitter", {}, (6, 5, 3)),
    ("RandomColorJitter", {"brightness_factor": 0.2, "contrast_factor": 0.3, "saturation_factor": 0.5,
                           "hue_factor": 0.2}, (6, 5, 3)),
]


@pytest.mark.parametrize("name,attrs,shape", ONE_LAYER, ids=[f"{c[0]}-{i}" for i, c in enumerate(ONE_LAYER)])
def test_inference_as_keras(name, attrs, shape):
    """``predict`` (Keras: ``training=False``): AutoContrast stretches exactly as Keras, the
    random layers return their input (a view in the plan); no weights, Keras's output shape."""
    from keras_ref import keras_layer_facts

    x = kh.random_inputs((shape,), batch=4, seed=3)[0] * 50 + 100  # pixel-like values, some beyond 255
    (ours,) = kh.run_nnspec(name, attrs, [x], [])
    (theirs,) = kh.run_keras(name, attrs, [x], [])
    np.testing.assert_array_equal(ours, theirs)
    m = kh.build_nnspec(name, attrs, (shape,))
    (step,) = [s for s in m.plan().steps if s.node == "layer"]
    if name == "AutoContrast":
        assert not step.view
        close(ours, kh.run_reference(name, attrs, [x], [])[0], FWD_TOL, "reference")
        lo, hi = sorted(attrs.get("value_range", [0, 255]))
        axes = (1, 2)  # Keras's axes whatever the data format
        np.testing.assert_allclose(ours.min(axis=axes), lo, atol=1e-4 * (hi - lo))
        np.testing.assert_allclose(ours.max(axis=axes), hi, atol=1e-4 * (hi - lo))
    else:
        assert step.view
        np.testing.assert_array_equal(ours, x)
    shapes, weights, count = keras_layer_facts(name, attrs, [shape])
    assert shapes == [(None, *shape)] and weights == [] and count == 0
    assert m.count_params() == 0 and tuple(m.output_shape) == (None, *shape)


def test_time_distributed_autocontrast_stretches_each_frame_as_keras():
    """Under TimeDistributed each frame is an image of its own (Keras folds frames into the batch)."""
    attrs = {"layer": {"type": "AutoContrast", "value_range": [0, 1]}}
    x = kh.random_inputs(((3, 5, 4, 2),), batch=2, seed=6)[0]
    (ours,) = kh.run_nnspec("TimeDistributed", attrs, [x], [])
    np.testing.assert_array_equal(ours, kh.run_keras("TimeDistributed", attrs, [x], [])[0])
    np.testing.assert_allclose(ours.min(axis=(2, 3)), 0.0, atol=1e-6)


def _awkward_images():
    """Channels Keras's NaN guard keeps: constant (0 and not 0), holding a NaN, +inf, -inf and
    both; and ordinary ones with tied minima and maxima."""
    x = np.random.default_rng(5).uniform(10, 200, size=(3, 4, 5, 3)).astype(np.float32)
    x[0, :, :, 0] = 7.0
    x[0, :, :, 1] = 0.0
    x[0, 2, 3, 2] = np.nan
    x[1, 1, 1, 0] = np.inf
    x[1, 0, 2, 1] = -np.inf
    x[1, 3, 3, 2], x[1, 0, 0, 2] = np.inf, -np.inf
    x[2, :2, :2, 0] = 250.0  # a tied maximum
    x[2, 1:3, 2:4, 1] = 3.0  # a tied minimum
    return x


@pytest.mark.parametrize("value_range", [[0, 255], [0, 1]])
def test_autocontrast_keeps_what_keras_keeps(value_range):
    """Where Keras's formula gives NaN (a constant channel: 0 * inf; a channel with a NaN or
    where infinities meet), the input is kept; nnspec gives Keras's output exactly."""
    keras = _keras()
    x = _awkward_images()
    (ours,) = kh.run_nnspec("AutoContrast", {"value_range": value_range}, [x], [])
    theirs = keras.ops.convert_to_numpy(keras.layers.AutoContrast(value_range=value_range)(x, training=False))
    np.testing.assert_array_equal(ours, theirs)  # NaN where Keras has NaN
    np.testing.assert_array_equal(ours[0, :, :, :2], x[0, :, :, :2])  # constant channels kept
    ref = AC.autocontrast_reference(x, value_range)
    np.testing.assert_array_equal(np.isfinite(ref), np.isfinite(theirs))
    finite = np.isfinite(theirs)
    close(ref[finite], theirs[finite], FWD_TOL, "reference")


# ----------------------------------------------------------------------------- kernels, given draws


@cache
def _kernels():
    from nnspec.runtime.kernels import jit

    fns = (AC.autocontrast_forward, AC.autocontrast_backward, AC.solarize_forward, AC.solarize_backward,
           AC.grayscale_forward, AC.grayscale_backward, AC.invert_forward, AC.invert_backward,
           AC.equalize_forward, AC.equalize_backward, AC.posterize_forward, AC.degenerate_forward,
           AC.degenerate_backward, AC.hsv_forward, AC.hsv_backward, AC.sharpen_forward,
           AC.sharpen_backward)  # fmt: skip
    return {f.__name__: jit(f) for f in fns}


def _images(shape, lo, hi, seed):
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def _keras_run(layer, x, transformation, dy):
    """Keras's ``transform_images`` of ``x`` with ``transformation`` (training) and autograd's
    gradient of ``sum(dy * y)``."""
    torch = _torch()
    xt = torch.tensor(x, requires_grad=True)
    y = layer.transform_images(xt * 1.0, transformation, training=True)
    (y * torch.tensor(dy)).sum().backward()
    return _np(y), xt.grad.numpy()


@pytest.mark.parametrize("value_range", [[0, 255], [0, 1], [-1, 1]])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_autocontrast_kernels_match_keras(value_range, fmt):
    """Forward bit for bit and backward within 1e-4 against Keras's autograd, through the min
    and max (ties share the gradient evenly, as torch.amin/amax); the backward against finite
    differences of the reference where no ties are (each image of the second batch)."""
    keras = _keras()
    lo, hi = value_range
    shape = (3, 4, 5, 3) if fmt == "channels_last" else (3, 3, 4, 5)
    x = _images(shape, lo, hi, 1)
    x[0, :2, :2, 0] = x[0, :, :, 0].max()  # tied maxima and minima (over axes 1 and 2)
    x[1, 1:3, 2:4, 1] = x[1, :, :, 1].min()
    dy = _images(shape, -1, 1, 2)
    layer = keras.layers.AutoContrast(value_range=value_range, data_format=fmt)
    ky, kdx = _keras_run(layer, x, None, dy)
    k = _kernels()
    y = np.full_like(x, np.nan)
    k["autocontrast_forward"](x, y, float(lo), float(hi))
    np.testing.assert_array_equal(y, ky)
    dx = np.zeros_like(x)
    k["autocontrast_backward"](x, dy, dx, float(lo), float(hi))
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    x2 = _images(shape, lo, hi, 3)
    dx2 = np.zeros_like(x2)
    k["autocontrast_backward"](x2, dy, dx2, float(lo), float(hi))
    dy64 = dy.astype(np.float64)
    fd = _fd(lambda v: float((dy64 * AC.autocontrast_reference(v, value_range)).sum()), x2.astype(np.float64))
    close(dx2, fd, FD_TOL, "finite differences")


def test_autocontrast_backward_nan_where_keras_autograd_gives_nan():
    """Keras's autograd gives NaN for a constant channel (0 * inf) and where NaN or infinities
    enter the min and max; the kernel gives NaN exactly there and Keras's values elsewhere."""
    x = _awkward_images()
    dy = _images(x.shape, -1, 1, 4)
    _, kdx = _keras_run(_keras().layers.AutoContrast(), x, None, dy)
    dx = np.zeros_like(x)
    _kernels()["autocontrast_backward"](x, dy, dx, 0.0, 255.0)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(kdx))
    assert np.isnan(dx[0, :, :, 0]).all() and np.isnan(dx[0, :, :, 1]).all()
    ok = np.isfinite(kdx)
    close(dx[ok], kdx[ok], TORCH_TOL, "finite entries")


SOLARIZE_CASES = [[0, 255], [0, 1], [1, -1]]


@pytest.mark.parametrize("value_range", SOLARIZE_CASES)
def test_solarization_kernels_match_keras(value_range):
    """Given additions and thresholds (the last ones push pixels past 255: clipped), forward
    bit for bit and backward against Keras, the reference and finite differences."""
    torch = _torch()
    lo, hi = sorted(value_range)
    x = _images((3, 4, 5, 3), lo, hi, 5)
    dy = _images(x.shape, -1, 1, 6)
    add = np.array([0.0, 40.0, 180.0], np.float32)
    thr = np.array([0.0, 128.0, 230.0], np.float32)
    layer = _keras().layers.Solarization(value_range=value_range)
    t = {"additions": torch.tensor(add).reshape(3, 1, 1, 1), "thresholds": torch.tensor(thr).reshape(3, 1, 1, 1)}
    ky, kdx = _keras_run(layer, x, t, dy)
    k = _kernels()
    y = np.full_like(x, np.nan)
    n = len(x)
    args = (add.reshape(-1, 1), thr.reshape(-1, 1), float(lo), float(hi))
    k["solarize_forward"](x.reshape(n, -1), y.reshape(n, -1), *args)
    np.testing.assert_array_equal(y, ky)
    ref = AC.solarization_reference(x, add, thr, value_range)
    close(y, ref, FWD_TOL, "reference")
    # image 2: pixels past 255 clipped, then at or above the threshold: inverted to the low end
    assert (ref[2] == lo).mean() > 0.2 and np.allclose(ref[0], lo + hi - x[0].astype(np.float64))  # all inverted
    dx = np.zeros_like(x)
    k["solarize_backward"](x.reshape(n, -1), dy.reshape(n, -1), dx.reshape(n, -1), *args)
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    dy64 = dy.astype(np.float64)
    fd = _fd(lambda v: float((dy64 * AC.solarization_reference(v, add, thr, value_range)).sum()),
             x.astype(np.float64))  # fmt: skip
    close(dx, fd, FD_TOL, "finite differences")


@pytest.mark.parametrize("fmt,channels", [("channels_last", 3), ("channels_first", 3), ("channels_last", 1)])
def test_grayscale_kernels_match_keras(fmt, channels):
    """Images 0 and 2 gray, image 1 not: Keras's rgb_to_grayscale bit for bit (a 1-channel image
    unchanged), the gradient as Keras's autograd and finite differences."""
    torch = _torch()
    shape = (3, 4, 5, channels) if fmt == "channels_last" else (3, channels, 4, 5)
    x = _images(shape, 0, 255, 7)
    dy = _images(shape, -1, 1, 8)
    applied = np.array([1.0, 0.0, 1.0], np.float32)
    layer = _keras().layers.RandomGrayscale(data_format=fmt)
    ky, kdx = _keras_run(layer, x, torch.tensor(applied > 0).reshape(3, 1, 1, 1), dy)
    k = _kernels()
    y = np.full_like(x, np.nan)
    k["grayscale_forward"](x, y, applied.reshape(-1, 1), fmt == "channels_first")
    np.testing.assert_array_equal(y, ky)
    ref = AC.grayscale_reference(x, applied, fmt)
    close(y, ref, FWD_TOL, "reference")
    np.testing.assert_array_equal(y[1], x[1])
    dx = np.zeros_like(x)
    k["grayscale_backward"](dy, dx, applied.reshape(-1, 1), fmt == "channels_first")
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    dy64 = dy.astype(np.float64)
    fd = _fd(lambda v: float((dy64 * AC.grayscale_reference(v, applied, fmt)).sum()), x.astype(np.float64))
    close(dx, fd, FD_TOL, "finite differences")


@pytest.mark.parametrize("value_range", [[0, 255], [-1, 1], [1, 0]])
def test_invert_kernels_match_keras(value_range):
    """Images 0 and 1 inverted to ``value_range[1] - x`` (as written: [1, 0] gives ``0 - x``,
    as Keras, which does not sort it here), image 2 not; gradient ``-dy`` and ``dy``."""
    torch = _torch()
    x = _images((3, 4, 5, 3), min(value_range), max(value_range), 9)
    dy = _images(x.shape, -1, 1, 10)
    applied = np.array([1.0, 1.0, 0.0], np.float32)
    layer = _keras().layers.RandomInvert(value_range=value_range)
    ky, kdx = _keras_run(layer, x, {"apply_inversion": torch.tensor(applied > 0)}, dy)
    k = _kernels()
    n = len(x)
    y = np.full_like(x, np.nan)
    k["invert_forward"](x.reshape(n, -1), y.reshape(n, -1), applied.reshape(-1, 1), float(value_range[1]))
    np.testing.assert_array_equal(y, ky)
    close(y, AC.invert_reference(x, applied, value_range), FWD_TOL, "reference")
    for start in (0.0, 1.0):  # added into dx
        dx = np.full_like(x, start)
        k["invert_backward"](dy.reshape(n, -1), dx.reshape(n, -1), applied.reshape(-1, 1))
        np.testing.assert_array_equal(dx, start + kdx)
    np.testing.assert_array_equal(kdx, np.where(applied[:, None, None, None] > 0, -dy, dy))


# ----------------------------------------------------------------------------- the train step


def _uniform_pixels(lo, hi):
    def data(rng, shapes, batch):
        return [rng.uniform(lo, hi, size=(batch, *s)).astype(np.float32) for s in shapes]

    data.__name__ = f"uniform_{lo}_{hi}"
    return data


def _tied(rng, shapes, batch):
    """Normal images whose channels hold tied maxima and minima (over axes 1 and 2)."""
    (x,) = [rng.normal(0, 1, size=(batch, *s)).astype(np.float32) for s in shapes]
    x[:, :2, :1] = x.max(axis=(1, 2), keepdims=True)
    x[:, -1:, -2:] = x.min(axis=(1, 2), keepdims=True)
    return [x]


PIXELS = _uniform_pixels(0.0, 255.0)
UNIT = _uniform_pixels(0.0, 1.0)


def _flat_channel(axis, value):
    """Unit pixels whose channel ``axis`` (the channels_first channel axis of the batch) holds
    ``value`` everywhere: Equalization keeps such a channel (one nonzero bin), and its gradient
    passes there."""

    def data(rng, shapes, batch):
        (x,) = UNIT(rng, shapes, batch)
        np.moveaxis(x, axis, 0)[1] = value  # channel 1 of every image
        return [x]

    data.__name__ = f"flat_{axis}_{value}"
    return data

# AutoContrast (deterministic) and the random layers in the configurations where Keras draws
# nothing random: against Keras's autograd through the train step.
# fmt: off
CASES = [
    Case("autocontrast", "AutoContrast", {}, ((5, 6, 3),)),
    Case("autocontrast-unit-range", "AutoContrast", {"value_range": [0, 1]}, ((5, 6, 3),)),
    Case("autocontrast-cf", "AutoContrast", {"value_range": [1, -1], "data_format": "channels_first"}, ((3, 5, 6),)),
    Case("autocontrast-ties", "AutoContrast", {}, ((5, 6, 2),), data=_tied, fd=False),
    Case("solarize-all", "Solarization", {}, ((4, 5, 3),), data=PIXELS),
    Case("gray-all", "RandomGrayscale", {"factor": 1.0}, ((4, 5, 3),)),
    Case("gray-all-cf", "RandomGrayscale", {"factor": 1.0, "data_format": "channels_first"}, ((3, 4, 5),)),
    Case("invert-all", "RandomInvert", {"factor": [1.0, 1.0], "value_range": [0, 1]}, ((4, 5, 3),), data=UNIT),
    Case("equalize", "Equalization", {}, ((4, 5, 3),), data=PIXELS),
    Case("equalize-flat-cf", "Equalization", {"value_range": [1, 0], "bins": 16, "data_format": "channels_first"},
         ((3, 4, 5),), data=_flat_channel(1, 0.3)),
    Case("posterize-fixed", "RandomPosterization", {"factor": [5, 5]}, ((4, 5, 3),), data=PIXELS),
    Case("posterize-fixed-unit", "RandomPosterization", {"factor": [2, 2], "value_range": [0, 1]}, ((4, 5, 3),),
         data=UNIT),
    Case("degenerate-fixed", "RandomColorDegeneration", {"factor": [0.4, 0.4]}, ((4, 5, 3),), data=PIXELS),
    Case("degenerate-fixed-cf", "RandomColorDegeneration",
         {"factor": [-0.7, -0.7], "value_range": [0, 1], "data_format": "channels_first"}, ((3, 4, 5),), data=UNIT),
    Case("saturate-fixed", "RandomSaturation", {"factor": [0.6, 0.6]}, ((4, 5, 3),), data=PIXELS),
    Case("saturate-fixed-cf", "RandomSaturation", {"factor": [0.3, 0.3], "value_range": [0, 1],
         "data_format": "channels_first"}, ((3, 4, 5),), data=UNIT),
    Case("hue-zero", "RandomHue", {"factor": 0.0}, ((4, 5, 3),), data=PIXELS),
    Case("hue-zero-cf", "RandomHue", {"factor": [0.0, 0.0], "value_range": [1, -1], "data_format": "channels_first"},
         ((3, 4, 5),), data=_uniform_pixels(-1.0, 1.0)),
    Case("sharpen-fixed", "RandomSharpness", {"factor": [0.9, 0.9]}, ((4, 5, 3),), data=PIXELS),
    Case("sharpen-fixed-cf", "RandomSharpness", {"factor": [0.2, 0.2], "value_range": [0, 1],
         "data_format": "channels_first"}, ((2, 4, 5),), data=UNIT),
    Case("jitter-fixed", "RandomColorJitter", {"brightness_factor": [0.1, 0.1], "contrast_factor": 0.0,
         "saturation_factor": [0.6, 0.6], "hue_factor": 0.0}, ((4, 5, 3),), data=PIXELS),
    Case("jitter-none", "RandomColorJitter", {}, ((4, 5, 3),), data=PIXELS),
    Case("jitter-saturation-unit", "RandomColorJitter", {"saturation_factor": [0.3, 0.3], "value_range": [0, 1]},
         ((4, 5, 3),), data=UNIT),
]
# fmt: on
SUITE = GradSuite(CASES)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_train_step_against_keras_autograd(case_id):
    """The training forward and input gradient of the compiled step against Keras (training=True).
    RandomPosterization's Keras output goes through a uint8 cast, so it has no autograd graph: Keras's
    input gradient is none (0), which the step gives."""
    case, r = SUITE.by_id[case_id], SUITE.result(case_id)
    if case.type not in ("RandomPosterization", "RandomColorJitter"):
        check_keras(case, r, TORCH_TOL)
        return
    y, dx = _keras_training(case, r.inputs[0], r.dy)
    close(r.y, y, TORCH_TOL, "training forward")
    if case.type == "RandomPosterization":
        assert dx is None
        np.testing.assert_array_equal(r.y, y)
        np.testing.assert_array_equal(r.dx[0], 0.0)
    else:
        close(r.dx[0], dx, TORCH_TOL, "input")


def _keras_training(case, x, dy, patch=None):
    """Keras's training output of ``case``'s layer on ``x`` and autograd's input gradient of
    ``sum(dy * y)`` (None when the output has no graph: RandomPosterization's uint8 cast). The
    input enters as ``x * 1``: RandomColorJitter's brightness stage adds in place, which torch
    refuses on a leaf tensor (in a model its input is a layer's output). ``patch(layer)`` may
    fix the layer's draws first."""
    from keras_ref import keras_layer

    torch = _torch()
    layer = keras_layer(case.type, dict(case.attrs))
    if patch is not None:
        patch(layer)
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt * 1.0, training=True)
    if y.grad_fn is None:
        return _np(y), None
    (y * torch.tensor(dy)).sum().backward()
    return _np(y), xt.grad.numpy()


@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.fd])
def test_train_step_against_finite_differences(case_id):
    """The input gradient against finite differences of the reference (AutoContrast's, or the
    training reference with every image transformed, as these configurations do)."""
    case, r = SUITE.by_id[case_id], SUITE.result(case_id)
    if case.type == "AutoContrast":
        dx, _ = fd_grads(case, r)
        close(r.dx[0], dx[0], FD_TOL, "input")
        return
    a = normalize_attrs(REGISTRY[case.type], case.attrs)

    def every_image(v):
        if case.type == "Solarization":
            return AC.solarization_reference(v, np.zeros(len(v)), np.zeros(len(v)), a["value_range"])
        if case.type == "RandomInvert":
            return AC.invert_reference(v, np.ones(len(v)), a["value_range"])
        if case.type == "Equalization":
            return AC.equalization_reference(v, a["value_range"], a["bins"], a["data_format"])
        if case.type == "RandomPosterization":
            return AC.posterization_reference(v, np.full(len(v), a["factor"][0]), a["value_range"])
        if case.type == "RandomColorDegeneration":
            return AC.degeneration_reference(v, np.full(len(v), a["factor"][0]), a["value_range"], a["data_format"])
        if case.type == "RandomSaturation":
            u = np.float32(a["factor"][0])
            f = np.full(len(v), u / (np.float32(1) - u + np.float32(1e-7)))  # Keras's float32 factor
            return AC.saturation_reference(v, f, a["value_range"], a["data_format"])
        if case.type == "RandomHue":
            return AC.hue_reference(v, np.zeros(len(v)), a["value_range"], a["data_format"])
        if case.type == "RandomSharpness":
            return AC.sharpness_reference(v, np.full(len(v), a["factor"][0]), a["value_range"], a["data_format"])
        if case.type == "RandomColorJitter":
            return AC.color_jitter_reference(v, a["value_range"], **_fixed_jitter_draws(a, len(v)))
        return AC.grayscale_reference(v, np.ones(len(v)), a["data_format"])

    dy = r.dy.astype(np.float64)
    close(r.dx[0], _fd(lambda v: float((dy * every_image(v)).sum()), r.inputs[0].astype(np.float64)), FD_TOL, "input")


def _fixed_jitter_draws(a, n):
    """The draws of RandomColorJitter's stages in the configurations where Keras draws nothing
    random (pairs of equal values; contrast 0; hue 0)."""
    lo, hi = sorted(a["value_range"])
    draws = {}
    if a["brightness_factor"] is not None:
        draws["brightness"] = np.full(n, a["brightness_factor"][0] * (hi - lo))
    if a["contrast_factor"] is not None:
        assert a["contrast_factor"] == 0.0
        draws["contrast"] = np.ones(n)
    if a["saturation_factor"] is not None:
        u = np.float32(a["saturation_factor"][0])
        draws["saturation"] = np.full(n, u / (np.float32(1) - u + np.float32(1e-7)))
    if a["hue_factor"] is not None:
        assert a["hue_factor"] == 0.0
        draws["hue"] = np.zeros(n)
    return draws


B = 400  # images per random case: enough for the statistics below
# fmt: off
RANDOM_CASES = [
    Case("solarize", "Solarization", {"addition_factor": [0.1, 0.4], "threshold_factor": [0.2, 0.8],
         "value_range": [0, 1]}, ((4, 5, 3),), batch=B, kind="random", data=UNIT),
    Case("solarize-number", "Solarization", {"addition_factor": 0.2, "threshold_factor": 0.6},
         ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("gray", "RandomGrayscale", {}, ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("gray-cf", "RandomGrayscale", {"factor": 0.3, "data_format": "channels_first"}, ((3, 4, 5),),
         batch=B, kind="random", data=PIXELS),
    Case("invert", "RandomInvert", {}, ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("invert-range", "RandomInvert", {"factor": [0.9, 0.3], "value_range": [-1, 1]}, ((4, 5, 3),),
         batch=B, kind="random", data=_uniform_pixels(-1.0, 1.0)),
    Case("posterize", "RandomPosterization", {"factor": [2, 7]}, ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("posterize-number", "RandomPosterization", {"factor": 4, "value_range": [0, 1]}, ((4, 5, 3),),
         batch=B, kind="random", data=UNIT),
    Case("degenerate", "RandomColorDegeneration", {"factor": 0.8}, ((4, 5, 3),), batch=B, kind="random",
         data=PIXELS),
    Case("degenerate-cf", "RandomColorDegeneration", {"factor": [0.9, -0.3], "value_range": [0, 1],
         "data_format": "channels_first"}, ((3, 4, 5),), batch=B, kind="random", data=UNIT),
    Case("saturate", "RandomSaturation", {"factor": 0.8}, ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("saturate-cf", "RandomSaturation", {"factor": [0.2, 0.7], "value_range": [0, 1],
         "data_format": "channels_first"}, ((3, 4, 5),), batch=B, kind="random", data=UNIT),
    Case("hue", "RandomHue", {"factor": 0.6}, ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("hue-cf", "RandomHue", {"factor": [0.2, 0.9], "value_range": [0, 1], "data_format": "channels_first"},
         ((3, 4, 5),), batch=B, kind="random", data=UNIT),
    Case("sharpen", "RandomSharpness", {"factor": 0.7}, ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("jitter", "RandomColorJitter", {"brightness_factor": 0.2, "contrast_factor": 0.5, "saturation_factor": 0.6,
         "hue_factor": 0.4}, ((4, 5, 3),), batch=B, kind="random", data=PIXELS),
    Case("jitter-unit", "RandomColorJitter", {"value_range": [0, 1], "contrast_factor": [0.1, 0.3],
         "hue_factor": [0.2, 0.6]}, ((4, 5, 3),), batch=B, kind="random", data=UNIT),
    Case("sharpen-cf", "RandomSharpness", {"factor": [0.9, 0.3], "value_range": [0, 1],
         "data_format": "channels_first"}, ((2, 4, 5),), batch=B, kind="random", data=UNIT),
]
# fmt: on
RANDOM = GradSuite(RANDOM_CASES)


def _random_result(case_id):
    return seeded_result(RANDOM, case_id)


def _saved(case_id):
    """What the train step saved for case ``case_id``'s layer: one column per saved array (an
    image's addition and threshold, or whether it was transformed), read from the saved-for-
    backward workspace at the offsets the generated code gives them."""
    key = RANDOM.group_of[case_id]
    m = RANDOM.run_group(key)["model"][0]
    (tr,) = m._trainers.values()
    k = [c.id for c in RANDOM.members(key)].index(case_id)
    op = REGISTRY[RANDOM.by_id[case_id].type].op
    lines = tr.source.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == f"# {op} c{k}")
    end = next(i for i in range(at + 1, len(lines)) if lines[i].strip().startswith("#"))
    sws = tr.buffers(B)[2]
    cols = []
    for line in lines[at + 1 : end]:
        found = re.search(r"sws\[(\d+) \* n:.*\.reshape\(\(n, 1,?\)\)", line)
        if found:
            off = int(found.group(1))
            cols.append(sws[off * B : off * B + B].astype(np.float64))
    return np.stack(cols, axis=1)


def _attrs(case):
    return normalize_attrs(REGISTRY[case.type], case.attrs)


def _share_matches(flags, p):
    """The share of transformed images within 5 standard errors of probability ``p``."""
    assert abs(flags.mean() - p) < 5 * math.sqrt(p * (1 - p) / len(flags)), (flags.mean(), p)


def _keras_probability(case):
    """The probability Keras transforms an image with, from the Keras layer built with the same
    attributes: RandomGrayscale's factor; RandomInvert's P(uniform < U(low, high)), the mean of
    the range clipped to [0, 1]."""
    from keras_ref import keras_layer

    k = keras_layer(case.type, dict(case.attrs))
    if case.type == "RandomGrayscale":
        return float(k.factor)
    lo, hi = (float(v) for v in k.factor)
    return float(np.mean(np.clip(np.linspace(lo, hi, 100001), 0, 1)))


def _fd_through(case, r, transform, samples=2):
    """Finite differences of ``sum(dy * transform(x, s))`` for the first ``samples`` images."""
    out = []
    for s in range(samples):
        dy = r.dy[s : s + 1].astype(np.float64)
        out.append(_fd(lambda v, s=s, dy=dy: float((dy * transform(v, s)).sum()),
                       r.inputs[0][s : s + 1].astype(np.float64)))  # fmt: skip
    return np.concatenate(out)


@pytest.mark.parametrize("case_id", ["gray", "gray-cf", "invert", "invert-range"])
def test_each_image_is_its_input_or_transformed(case_id):
    """Each output image is its input exactly or the reference's grayscale / inverted image (all
    channels equal for grayscale), as the saved flag says; the share transformed is Keras's
    probability; the gradient is the finite differences through the same choices."""
    case = RANDOM.by_id[case_id]
    r = _random_result(case_id)
    a = _attrs(case)
    x, y = r.inputs[0], r.y
    flags = _saved(case_id)[:, 0]
    assert set(np.unique(flags)) <= {0.0, 1.0}
    if case.type == "RandomGrayscale":
        transformed = AC.grayscale_reference(x, np.ones(B), a["data_format"])

        def transform(v, s):
            return AC.grayscale_reference(v, flags[s : s + 1], a["data_format"])
    else:
        transformed = AC.invert_reference(x, np.ones(B), a["value_range"])

        def transform(v, s):
            return AC.invert_reference(v, flags[s : s + 1], a["value_range"])

    same = np.array([np.array_equal(y[s], x[s]) for s in range(B)])
    changed = np.array([np.allclose(y[s], transformed[s], rtol=0, atol=1e-4) for s in range(B)])
    assert (same ^ changed).all()
    np.testing.assert_array_equal(changed, flags == 1.0)
    _share_matches(changed, _keras_probability(case))
    if case.type == "RandomGrayscale":
        ch = 1 if a["data_format"] == "channels_first" else 3
        gray = np.take(y[changed], [0], axis=ch)
        assert (np.take(y[changed], [1], axis=ch) == gray).all() and (np.take(y[changed], [2], axis=ch) == gray).all()
    else:
        lo, hi = a["value_range"]
        top = hi - np.array(x[changed]).min(), hi - np.array(x[changed]).max()
        # Keras inverts to value_range[1] - x: inside value_range only when its low end is 0
        assert y[changed].max() == np.float32(top[0]) and y[changed].min() == np.float32(top[1])
        assert (lo != 0) or (y.min() >= lo and y.max() <= hi)
        np.testing.assert_array_equal(r.dx[0], np.where(changed[:, None, None, None], -r.dy, r.dy))
    close(r.dx[0][:2], _fd_through(case, r, transform), FD_TOL, "input gradient")


@pytest.mark.parametrize("case_id", ["solarize", "solarize-number"])
def test_solarization_training(case_id):
    """The saved additions and thresholds are uniform over Keras's ranges ([low, high * 255]:
    Keras scales only the upper bound); the output is the reference with those draws, inside
    value_range; the gradient is the finite differences through them."""
    from keras_ref import keras_layer

    case = RANDOM.by_id[case_id]
    r = _random_result(case_id)
    a = _attrs(case)
    saved = _saved(case_id)
    k = keras_layer(case.type, dict(case.attrs))
    for col, (lo, hi) in enumerate([k.addition_factor, k.threshold_factor]):
        _uniform_stats(saved[:, col], float(lo), float(hi) * 255.0)
    ref = AC.solarization_reference(r.inputs[0], saved[:, 0], saved[:, 1], a["value_range"])
    close(r.y, ref, FWD_TOL, "training forward")
    lo, hi = sorted(a["value_range"])
    assert r.y.min() >= lo and r.y.max() <= hi

    def transform(v, s):
        return AC.solarization_reference(v, saved[s : s + 1, 0], saved[s : s + 1, 1], a["value_range"])

    close(r.dx[0][:2], _fd_through(case, r, transform), FD_TOL, "input gradient")


@pytest.mark.parametrize("case_id", ["jitter", "jitter-unit"])
def test_color_jitter_training(case_id):
    """One saved draw per given stage, each distributed as its Keras sub-layer draws it
    (brightness deltas over [-f, f] times value_range's width, contrast factors over [1 - f, 1 + f],
    saturation's u, hue's sign and size); the output and the input gradient are Keras's (its
    sub-layers given the same draws: forward and autograd) and the reference's (finite
    differences)."""
    from keras_ref import keras_layer

    torch = _torch()
    case = RANDOM.by_id[case_id]
    r = _random_result(case_id)
    a = _attrs(case)
    stages = [k for k in AC.JITTER_STAGES if a[f"{k}_factor"] is not None]
    saved = _saved(case_id)
    assert saved.shape == (B, len(stages))
    draws = dict(zip(stages, saved.T))
    k = keras_layer(case.type, dict(case.attrs))
    width = abs(a["value_range"][1] - a["value_range"][0])
    if "brightness" in draws:
        _uniform_stats(draws["brightness"], *(float(v) * width for v in k.random_brightness.factor))
    if "contrast" in draws:
        lo, hi = k.random_contrast.factor
        _uniform_stats(draws["contrast"], 1.0 - lo, 1.0 + hi)
    if "saturation" in draws:
        f = draws["saturation"]
        _uniform_stats(f * (1 + 1e-7) / (1 + f), *(float(v) for v in k.random_saturation.factor))
    if "hue" in draws:
        _uniform_stats(2 * np.abs(draws["hue"]), *(float(v) for v in k.random_hue.factor))
        _share_matches(draws["hue"] < 0, 0.5)
    keys = {"brightness": ("random_brightness", "rgb_delta", (-1, 1, 1, 1)),
            "contrast": ("random_contrast", "contrast_factor", (-1, 1, 1, 1)),
            "saturation": ("random_saturation", "factor", (-1,)), "hue": ("random_hue", "factor", (-1,))}  # fmt: skip

    def patch(layer):
        for stage, values in draws.items():
            sub, key, shape = keys[stage]
            t = {key: torch.tensor(values.astype(np.float32)).reshape(shape)}
            getattr(layer, sub).get_random_transformation = lambda *args, t=t, **kw: t

    ky, kdx = _keras_training(case, r.inputs[0], r.dy, patch)
    close(r.y, ky, TORCH_TOL, "Keras with the same draws")
    close(r.dx[0], kdx, TORCH_TOL, "Keras autograd with the same draws")
    close(r.y, AC.color_jitter_reference(r.inputs[0], a["value_range"], **draws), FWD_TOL, "reference")

    def transform(v, s):
        return AC.color_jitter_reference(v, a["value_range"], **{st: d[s : s + 1] for st, d in draws.items()})

    close(r.dx[0][:2], _fd_through(case, r, transform), FD_TOL, "input gradient")


@pytest.mark.parametrize("case_id", ["posterize", "posterize-number"])
def test_posterization_training(case_id):
    """The saved bit depths are whole numbers uniform over Keras's torch.randint range [low, high)
    (a number f: [1, f)), each value's share within 5 standard errors; the output is the
    reference with those draws; no gradient reaches the input (Keras's uint8 cast)."""
    from keras_ref import keras_layer

    case = RANDOM.by_id[case_id]
    r = _random_result(case_id)
    a = _attrs(case)
    bits = _saved(case_id)[:, 0]
    lo, hi = keras_layer(case.type, dict(case.attrs)).factor
    assert set(np.unique(bits)) == set(range(lo, hi))
    for v in range(lo, hi):
        _share_matches(bits == v, 1.0 / (hi - lo))
    close(r.y, AC.posterization_reference(r.inputs[0], bits, a["value_range"]), FWD_TOL, "training forward")
    np.testing.assert_array_equal(r.dx[0], 0.0)


@pytest.mark.parametrize("case_id", ["saturate", "saturate-cf", "hue", "hue-cf"])
def test_saturation_and_hue_training(case_id):
    """RandomSaturation's saved factors are Keras's ``u / (1 - u + 1e-7)`` with ``u`` uniform over
    Keras's range (a number f: [-f, f]); RandomHue's saved shifts are ``U(low, high) / 2`` (a
    number f: [0, f]) with a sign that is negative for half of the images. The output is the
    reference with those draws; the gradient the finite differences through them."""
    from keras_ref import keras_layer

    case = RANDOM.by_id[case_id]
    r = _random_result(case_id)
    a = _attrs(case)
    f = _saved(case_id)[:, 0]
    lo, hi = keras_layer(case.type, dict(case.attrs)).factor
    if case.type == "RandomSaturation":
        _uniform_stats(f * (1 + 1e-7) / (1 + f), float(lo), float(hi))  # u back from f = u / (1 - u + 1e-7)

        def transform(v, s):
            return AC.saturation_reference(v, f[s : s + 1], a["value_range"], a["data_format"])
    else:
        _uniform_stats(2 * np.abs(f), float(lo), float(hi))
        _share_matches(f < 0, 0.5)

        def transform(v, s):
            return AC.hue_reference(v, f[s : s + 1], a["value_range"], a["data_format"])

    close(r.y, np.concatenate([transform(r.inputs[0][s : s + 1], s) for s in range(B)]), FWD_TOL, "forward")
    close(r.dx[0][:2], _fd_through(case, r, transform), FD_TOL, "input gradient")


@pytest.mark.parametrize("case_id", ["degenerate", "degenerate-cf", "sharpen", "sharpen-cf"])
def test_color_degeneration_and_sharpness_training(case_id):
    """The saved factors are uniform over Keras's range (a number f: [-f, f] for
    RandomColorDegeneration, [0, f] for RandomSharpness); the output is the reference with those
    factors, inside value_range; the gradient is the finite differences through them."""
    from keras_ref import keras_layer

    case = RANDOM.by_id[case_id]
    r = _random_result(case_id)
    a = _attrs(case)
    f = _saved(case_id)[:, 0]
    lo, hi = keras_layer(case.type, dict(case.attrs)).factor
    _uniform_stats(f, float(lo), float(hi))
    reference = AC.degeneration_reference if case.type == "RandomColorDegeneration" else AC.sharpness_reference
    close(r.y, reference(r.inputs[0], f, a["value_range"], a["data_format"]), FWD_TOL, "forward")
    vlo, vhi = a["value_range"]
    assert r.y.min() >= vlo and r.y.max() <= vhi

    def transform(v, s):
        return reference(v, f[s : s + 1], a["value_range"], a["data_format"])

    close(r.dx[0][:2], _fd_through(case, r, transform), FD_TOL, "input gradient")


@pytest.mark.parametrize("case_id", ["solarize", "gray", "invert", "posterize", "degenerate", "saturate", "hue",
                                     "sharpen", "jitter"])
def test_draws_follow_the_kernel_seed(case_id):
    _random_result(case_id)
    a, b, c = (RANDOM.output_after_step(case_id, seed) for seed in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ----------------------------------------------------------------------------- model files


def _model_file(name: str, layers: str, chain: str) -> str:
    """A model file: ``layers`` (YAML lines) along ``chain``, then a small CNN classifier."""
    return f"""
format: nnspec/1
name: {name}
inputs:
  image: {{shape: [12, 10, 3]}}
layers:
{layers}
  scale: {{type: Rescaling, scale: 0.00392156862745098}}
  conv: {{type: Conv2D, filters: 4, kernel_size: 3, activation: relu}}
  pool: {{type: MaxPooling2D}}
  flat: {{type: Flatten}}
  out: {{type: Dense, units: 3, activation: softmax}}
edges:
  - image -> {chain} -> scale -> conv -> pool -> flat -> out
outputs: [out]
"""


# Everything before the classifier acts, and gradients flow through it (the 1x1 convolution
# first): in this configuration Keras's training draws nothing random, so one SGD step compares.
DETERMINISTIC = _model_file("color_cnn", """\
  mix: {type: Conv2D, filters: 3, kernel_size: 1}
  contrast: {type: AutoContrast}
  gray: {type: RandomGrayscale, factor: 1.0}
  solarize: {type: Solarization}
  invert: {type: RandomInvert, factor: [1.0, 1.0]}""", "mix -> contrast -> gray -> solarize -> invert")

# The layers as a model would use them: random in training.
RANDOM_FILE = _model_file("color_augmented", """\
  contrast: {type: AutoContrast}
  gray: {type: RandomGrayscale, factor: 0.3}
  solarize: {type: Solarization, addition_factor: 0.1, threshold_factor: [0.5, 0.9]}
  invert: {type: RandomInvert, factor: 0.4}""", "contrast -> gray -> solarize -> invert")


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, 12, 10, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


@pytest.mark.parametrize("source", [DETERMINISTIC, RANDOM_FILE], ids=["deterministic", "random"])
def test_model_file_summary_and_predictions_match_keras(source):
    from grad_harness import nnspec_and_keras
    from keras_from_spec import keras_summary_facts

    m, km = nnspec_and_keras(source, seed=4)
    facts = keras_summary_facts(km)
    d = m.summary_dict()
    assert d["total_params"] == facts["total"] == m.count_params()
    rows = {row["name"]: row for row in d["layers"]}
    for name, cls, shape, params in facts["layers"]:
        assert rows[name]["type"] == cls and rows[name]["params"] == params, name
        assert rows[name]["output_shape"] == list(shape), name
    x, _ = _data(6, 0)
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")


def test_one_training_step_matches_keras():
    """Gradients through all four layers (into the 1x1 convolution before them) and the whole
    SGD step as Keras's."""
    from grad_harness import one_step_matches_keras

    x, y = _data(8, 1)
    assert one_step_matches_keras(DETERMINISTIC, x, y, seed=4) == 6  # both convolutions and the Dense


def test_random_model_file_trains():
    x, y = _data(48, 2)
    m = nnspec.load(RANDOM_FILE, seed=2)
    before = [w.copy() for w in m.get_weights()]
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    hist = m.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=3)
    assert all(np.isfinite(v) for v in hist.history["loss"]) and len(hist.history["loss"]) == 2
    assert all(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
    assert np.isfinite(float(np.ravel(m.train_on_batch(x[:8], y[:8]))[0]))


def test_keras_config_reads_back():
    """A Keras model using the layers (Equalization aside: Keras cannot build a model holding it),
    written by Keras's ``to_json``, reads into nnspec with the same arguments (Keras's sorted value
    ranges and factor pairs) and predictions."""
    keras = _keras()
    km = keras.Sequential([
        keras.Input(shape=(6, 5, 3)),
        keras.layers.AutoContrast(value_range=(1, 0)),
        keras.layers.Solarization(0.2, (0.7, 0.1), value_range=(0, 1)),
        keras.layers.RandomGrayscale(0.3, data_format="channels_last"),
        keras.layers.RandomInvert((0.2, 0.6), value_range=(0, 1)),
        keras.layers.RandomPosterization((6, 2), value_range=(1, 0)),
        keras.layers.RandomColorDegeneration(0.3, value_range=(0, 1)),
        keras.layers.RandomSaturation((0.2, 0.6), value_range=(0, 1)),
        keras.layers.RandomHue(0.3, value_range=(0, 1)),
        keras.layers.RandomSharpness(0.4, value_range=(0, 1)),
        keras.layers.RandomColorJitter((0, 1), brightness_factor=0.2, hue_factor=(0.1, 0.3)),
        keras.layers.Flatten(),
        keras.layers.Dense(2),
    ])  # fmt: skip
    m = nnspec.model_from_json(km.to_json())
    layers = {v["type"]: v for v in m.get_config()["layers"].values()}
    assert list(layers["AutoContrast"]["value_range"]) == [0, 1]
    assert list(layers["Solarization"]["threshold_factor"]) == [0.1, 0.7]
    assert layers["RandomGrayscale"]["factor"] == 0.3
    assert list(layers["RandomInvert"]["factor"]) == [0.2, 0.6]
    assert list(layers["RandomPosterization"]["factor"]) == [2, 6]
    assert list(layers["RandomPosterization"]["value_range"]) == [0, 1]
    assert list(layers["RandomColorDegeneration"]["factor"]) == [-0.3, 0.3]
    assert list(layers["RandomSaturation"]["factor"]) == [0.2, 0.6] and list(layers["RandomHue"]["factor"]) == [0, 0.3]
    assert list(layers["RandomSharpness"]["factor"]) == [0, 0.4]
    jitter = layers["RandomColorJitter"]
    assert jitter["brightness_factor"] == 0.2 and list(jitter["hue_factor"]) == [0.1, 0.3]
    assert jitter["contrast_factor"] is None and list(jitter["value_range"]) == [0, 1]
    m.set_weights(km.get_weights())
    x = np.random.default_rng(0).uniform(0, 1, size=(4, 6, 5, 3)).astype(np.float32)
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")


def test_python_builder_takes_keras_positional_arguments():
    from nnspec import layers

    inputs = nnspec.Input(shape=(8, 7, 3))
    x = layers.AutoContrast([0, 1])(inputs)
    x = layers.Solarization(0.2, 0.5, [0, 1])(x)
    x = layers.RandomGrayscale(0.2)(x)
    x = layers.RandomInvert(0.5, [0, 1])(x)
    x = layers.Equalization([0, 1], 64)(x)
    x = layers.RandomPosterization(4, [0, 1])(x)
    x = layers.RandomColorDegeneration(0.2, [0, 1])(x)
    x = layers.RandomSaturation(0.3, [0, 1])(x)
    x = layers.RandomHue(0.4, [0, 1])(x)
    x = layers.RandomSharpness(0.5, [0, 1])(x)
    x = layers.RandomColorJitter([0, 1], 0.1, 0.2)(x)
    spec = nnspec.Model(inputs, layers.Flatten()(x)).get_config()
    types = {v["type"]: v for v in spec["layers"].values()}
    assert list(types["AutoContrast"]["value_range"]) == [0, 1]
    assert types["Solarization"]["threshold_factor"] == 0.5 and list(types["Solarization"]["value_range"]) == [0, 1]
    assert types["RandomGrayscale"]["factor"] == 0.2 and types["RandomInvert"]["factor"] == 0.5
    assert types["Equalization"]["bins"] == 64 and list(types["Equalization"]["value_range"]) == [0, 1]
    assert types["RandomPosterization"]["factor"] == 4 and types["RandomColorDegeneration"]["factor"] == 0.2
    assert types["RandomSaturation"]["factor"] == 0.3 and types["RandomHue"]["factor"] == 0.4
    assert types["RandomSharpness"]["factor"] == 0.5 and list(types["RandomSharpness"]["value_range"]) == [0, 1]
    jitter = types["RandomColorJitter"]
    assert (jitter["brightness_factor"], jitter["contrast_factor"], jitter["saturation_factor"]) == (0.1, 0.2, None)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "layer,code,where",
    [({"type": "RandomGrayscale", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomGrayscale", "factor": -0.1}, "E103", "layers.aug.factor"),
     ({"type": "RandomGrayscale", "factor": [0.1, 0.2]}, "E100", "layers.aug.factor"),
     ({"type": "Solarization", "addition_factor": 1.2}, "E103", "layers.aug.addition_factor"),
     ({"type": "Solarization", "threshold_factor": [0.1, -0.2]}, "E103", "layers.aug.threshold_factor"),
     ({"type": "Solarization", "threshold_factor": [0.1, 0.2, 0.3]}, "E103", "layers.aug.threshold_factor"),
     ({"type": "RandomInvert", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "AutoContrast", "value_range": [0, 1, 2]}, "E103", "layers.aug.value_range"),
     ({"type": "AutoContrast", "value_range": 255}, "E100", "layers.aug.value_range"),
     ({"type": "AutoContrast", "data_format": "nhwc"}, "E103", "layers.aug.data_format")],
)  # fmt: skip
def test_attributes_keras_refuses_are_schema_errors(layer, code, where):
    """Keras's constructors refuse these (factors out of [0, 1], value ranges not of two numbers)."""
    from keras_ref import keras_layer

    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer))
    text = str(err.value)
    assert code in text and where in text, text
    attrs = {k: v for k, v in layer.items() if k != "type"}
    with pytest.raises((ValueError, TypeError)):
        keras_layer(layer["type"], attrs)


@pytest.mark.parametrize(
    "name,shape,dtype,message",
    [("AutoContrast", (8, 3), "float32", "rank 4"), ("Solarization", (8, 8, 8, 3), "float32", "rank 4"),
     ("RandomInvert", (None, 8, 3), "float32", "known image"), ("RandomGrayscale", (8, 8, 3), "int32", "float images"),
     ("RandomGrayscale", (8, 8, 4), "float32", "3 channels"), ("RandomGrayscale", (2, 8, 8), "float32", "3 channels")],
)  # fmt: skip
def test_inputs_the_layers_cannot_take_are_shape_errors(name, shape, dtype, message):
    """Not a batch of float images; RandomGrayscale on neither 1 nor 3 channels (Keras's
    rgb_to_grayscale refuses them in training)."""
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec({"type": name}, shape, dtype))
    assert "E300" in str(err.value) and message in str(err.value), str(err.value)


def test_keras_grayscale_refuses_four_channels_in_training():
    keras = _keras()
    x = np.zeros((2, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="channel"):
        keras.layers.RandomGrayscale(1.0)(x, training=True)


# ----------------------------------------------------------------------------- Equalization,
# RandomPosterization, RandomColorDegeneration


def test_equalization_inference_is_the_identity_as_keras():
    """Keras's Equalization acts only when ``training`` is true (``transform_images``), so it
    is the identity at inference; Keras cannot put it in a functional model (its
    ``compute_output_spec`` returns the input: "part of a cycle"), so it is called directly."""
    keras = _keras()
    x = _images((3, 6, 5, 3), 0, 255, 20)
    theirs = keras.ops.convert_to_numpy(keras.layers.Equalization()(x, training=False))
    (ours,) = kh.run_nnspec("Equalization", {}, [x], [])
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, x)
    (step,) = [s for s in kh.build_nnspec("Equalization", {}, ((6, 5, 3),)).plan().steps if s.node == "layer"]
    assert step.view
    with pytest.raises(ValueError, match="cycle"):
        keras.Sequential([keras.Input((6, 5, 3)), keras.layers.Equalization()])


def _flat_in_channel_2(x, fmt):
    """``x`` with channel 2 constant over the batch (one histogram bin: Equalization keeps it)."""
    np.moveaxis(x, 1 if fmt == "channels_first" else 3, 0)[2] = x.min() + 0.3 * (x.max() - x.min())
    return x


def _check_kernels(name, args, x, dy, keras_out, reference, exact=True):
    """Kernel ``<name>_forward(x, y, *args)`` against Keras's output (bit for bit, or within 1e-6
    when not ``exact``) and ``reference`` (float64); ``<name>_backward(x, dy, dx, *args)`` against
    Keras's autograd and finite differences of the reference. Returns (y, dx)."""
    ky, kdx = keras_out
    k = _kernels()
    y = np.full_like(x, np.nan)
    k[f"{name}_forward"](x, y, *args)
    if exact:
        np.testing.assert_array_equal(y, ky)
    else:
        close(y, ky, 1e-6, "Keras")
    close(y, reference(x), FWD_TOL, "reference")
    dx = np.zeros_like(x)
    k[f"{name}_backward"](x, dy, dx, *args)
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    dy64 = dy.astype(np.float64)
    close(dx, _fd(lambda v: float((dy64 * reference(v)).sum()), x.astype(np.float64)), FD_TOL, "finite differences")
    return y, dx


@pytest.mark.parametrize("value_range,bins,fmt", [([0, 255], 256, "channels_last"), ([1, 0], 100, "channels_first"),
                                                  ([-1, 1], 7, "channels_last")])  # fmt: skip
def test_equalization_kernels_match_keras(value_range, bins, fmt):
    """One histogram per channel over the whole batch: forward bit for bit against Keras's
    transform_images (training) and the reference; the gradient as Keras's autograd (its
    scalings where a channel is kept, 0 through the table lookup) and finite differences."""
    lo, hi = sorted(value_range)
    shape = (3, 6, 5, 3) if fmt == "channels_last" else (3, 3, 6, 5)
    x = _flat_in_channel_2(_images(shape, lo, hi, 21), fmt)
    dy = _images(shape, -1, 1, 22)
    layer = _keras().layers.Equalization(value_range=value_range, bins=bins, data_format=fmt)
    args = (fmt == "channels_first", bins, float(lo), float(hi))
    y, dx = _check_kernels("equalize", args, x, dy, _keras_run(layer, x, None, dy),
                           lambda v: AC.equalization_reference(v, value_range, bins, fmt))  # fmt: skip
    ch = 1 if fmt == "channels_first" else 3
    for c in (0, 1):  # equalized: at most `bins` values, spread over the whole range
        yc = np.take(y, c, axis=ch)
        assert len(np.unique(yc)) <= bins and yc.min() == lo and yc.max() == hi
    kept = np.moveaxis(dx, ch, 0)
    assert np.abs(kept[2]).max() > 0.1 and (kept[:2] == 0).all()


def test_equalization_histogram_of_extreme_values_as_keras():
    """Values beyond int32 (and far below 0) land in bin 0 of the histogram as in Keras (torch's
    int32 cast gives -2**31, clipped to 0); the lookup clips them to the end bins."""
    x = _images((2, 6, 5, 2), 0, 255, 23)
    x[0, 0, 0, 0], x[1, 2, 3, 0], x[0, 1, 1, 1], x[1, 0, 4, 1] = 1e12, -5e11, 400.0, -40.0
    layer = _keras().layers.Equalization()
    ky, _ = _keras_run(layer, x, None, np.ones_like(x))
    y = np.full_like(x, np.nan)
    _kernels()["equalize_forward"](x, y, False, 256, 0.0, 255.0)
    np.testing.assert_array_equal(y, ky)


@pytest.mark.parametrize("value_range", [[0, 255], [0, 1], [1, -1]])
def test_posterization_kernel_matches_keras(value_range):
    """Given bit depths 1, 3, 7 and 8, bit for bit against Keras's transform_images (pixels
    beyond value_range included: torch's uint8 cast truncates and wraps modulo 256) and the
    reference; Keras's output has no autograd graph (no gradient)."""
    torch = _torch()
    lo, hi = sorted(value_range)
    x = _images((4, 6, 5, 3), lo - 0.3 * (hi - lo), hi + 0.3 * (hi - lo), 24)
    bits = np.array([1, 3, 7, 8], np.uint8)
    layer = _keras().layers.RandomPosterization(4, value_range=value_range)
    xt = torch.tensor(x, requires_grad=True)
    ky = layer.transform_images(xt * 1.0, {"shift_factor": torch.tensor(8 - bits)}, training=True)
    assert ky.grad_fn is None
    y = np.full_like(x, np.nan)
    _kernels()["posterize_forward"](x.reshape(4, -1), y.reshape(4, -1), bits.reshape(-1, 1).astype(np.float32),
                                    float(lo), float(hi))  # fmt: skip
    np.testing.assert_array_equal(y, _np(ky))
    close(y, AC.posterization_reference(x, bits, value_range), FWD_TOL, "reference")
    assert len(np.unique(y[0])) <= 2 and len(np.unique(y[1])) <= 8 and len(np.unique(y[3])) > 50


@pytest.mark.parametrize("value_range,fmt", [([0, 255], "channels_last"), ([1, 0], "channels_first")])
def test_color_degeneration_kernels_match_keras(value_range, fmt):
    """Given factors -0.8 (away from gray, clipped), 0.3 and 1 (gray): forward bit for bit
    against Keras and the reference, backward against Keras's autograd and finite differences."""
    torch = _torch()
    lo, hi = sorted(value_range)
    shape = (3, 6, 5, 3) if fmt == "channels_last" else (3, 3, 6, 5)
    x = _images(shape, lo, hi, 25)
    dy = _images(shape, -1, 1, 26)
    f = np.array([-0.8, 0.3, 1.0], np.float32)
    layer = _keras().layers.RandomColorDegeneration(0.5, value_range=value_range, data_format=fmt)
    args = (f.reshape(-1, 1), fmt == "channels_first", float(lo), float(hi))
    keras_out = _keras_run(layer, x, {"factor": torch.tensor(f).reshape(3, 1, 1, 1)}, dy)
    y, _ = _check_kernels("degenerate", args, x, dy, keras_out,
                          lambda v: AC.degeneration_reference(v, f, value_range, fmt))  # fmt: skip
    assert ((y[0] == lo) | (y[0] == hi)).mean() > 0.05  # clipped


@pytest.mark.parametrize("name,value_range,fmt,factors", [
    ("RandomSaturation", [0, 255], "channels_last", [0.0, 0.4, 1.0, 3.0]),
    ("RandomSaturation", [1, 0], "channels_first", [0.2, 0.9, 1.7, 50.0]),
    ("RandomHue", [0, 255], "channels_last", [-0.4, 0.1, 0.5, -0.05]),
    ("RandomHue", [1, -1], "channels_first", [0.3, -0.2, 0.45, 0.0])])  # fmt: skip
def test_saturation_and_hue_kernels_match_keras(name, value_range, fmt, factors):
    """Given per-image factors (saturation multipliers: 0 makes gray, 50 pushes the saturation
    past 1 (Keras clips it to value_range only); hue shifts of both signs), forward bit for bit
    against Keras's transform_images and within 1e-5 of the float64 reference, backward against
    Keras's autograd and finite differences."""
    torch = _torch()
    lo, hi = sorted(value_range)
    shape = (4, 6, 5, 3) if fmt == "channels_last" else (4, 3, 6, 5)
    x = _images(shape, lo, hi, 27)
    dy = _images(shape, -1, 1, 28)
    f = np.array(factors, np.float32)
    layer = getattr(_keras().layers, name)(0.5, value_range=value_range, data_format=fmt)
    hue = name == "RandomHue"
    args = (f.reshape(-1, 1), fmt == "channels_first", hue, float(lo), float(hi),
            *((float(value_range[0]), float(value_range[1])) if hue else (0.0, 1.0)))  # fmt: skip
    reference = AC.hue_reference if hue else AC.saturation_reference
    _check_kernels("hsv", args, x, dy, _keras_run(layer, x, {"factor": torch.tensor(f)}, dy),
                   lambda v: reference(v, f, value_range, fmt))  # fmt: skip


@pytest.mark.parametrize("value_range,fmt", [([0, 255], "channels_last"), ([1, 0], "channels_first")])
def test_sharpness_kernels_match_keras(value_range, fmt):
    """Given factors 0 (blurred), 0.5 (kept) and 1 (sharpened, clipped): forward within 1e-6 of
    Keras's transform_images (torch's convolution sums the 9 products in its own order: some
    values differ in the last bit) and of the reference, backward against Keras's autograd and
    finite differences."""
    torch = _torch()
    lo, hi = sorted(value_range)
    shape = (3, 6, 5, 3) if fmt == "channels_last" else (3, 2, 6, 5)
    x = _images(shape, lo, hi, 29)
    dy = _images(shape, -1, 1, 30)
    f = np.array([0.0, 0.5, 1.0], np.float32)
    layer = _keras().layers.RandomSharpness(0.5, value_range=value_range, data_format=fmt)
    args = (f.reshape(-1, 1), fmt == "channels_first", float(lo), float(hi))
    y, _ = _check_kernels("sharpen", args, x, dy, _keras_run(layer, x, {"factor": torch.tensor(f)}, dy),
                          lambda v: AC.sharpness_reference(v, f, value_range, fmt), exact=False)  # fmt: skip
    np.testing.assert_array_equal(y[1], x[1])
    assert ((y[2] == lo) | (y[2] == hi)).mean() > 0.05  # clipped


def test_keras_reads_of_new_factors_are_ours():
    """RandomPosterization reads a number f as [1, f] (bounds 1 and 8), RandomColorDegeneration
    as [-f, f] (bounds -1 and 1), as factor_range with those lower bounds."""
    keras = _keras()
    assert tuple(keras.layers.RandomPosterization(5).factor) == AC.factor_range(5, 1.0) == (1.0, 5.0)
    assert tuple(keras.layers.RandomPosterization([6, 2]).factor) == AC.factor_range([6, 2], 1.0)
    assert tuple(keras.layers.RandomColorDegeneration(0.3).factor) == AC.factor_range(0.3, -1.0) == (-0.3, 0.3)
    assert tuple(keras.layers.RandomColorDegeneration([0.8, -0.2]).factor) == AC.factor_range([0.8, -0.2], -1.0)
    assert tuple(keras.layers.RandomSaturation(0.4).factor) == AC.factor_range(0.4, -1.0) == (-0.4, 0.4)
    assert tuple(keras.layers.RandomHue(0.4).factor) == AC.factor_range(0.4, 0.0) == (0.0, 0.4)
    assert tuple(keras.layers.RandomHue([0.7, 0.1]).factor) == AC.factor_range([0.7, 0.1], 0.0)
    assert tuple(keras.layers.RandomSharpness(0.4).factor) == AC.factor_range(0.4, 0.0) == (0.0, 0.4)


# A model with the two random layers where Keras draws nothing random (posterization first: no
# gradient flows through it), so summary, predictions and one SGD step compare with Keras.
DETERMINISTIC_MORE = _model_file("color_more_cnn", """\
  posterize: {type: RandomPosterization, factor: [3, 3]}
  mix: {type: Conv2D, filters: 3, kernel_size: 1}
  degenerate: {type: RandomColorDegeneration, factor: [0.6, 0.6]}
  saturate: {type: RandomSaturation, factor: [0.7, 0.7]}
  hue: {type: RandomHue, factor: 0.0}
  sharpen: {type: RandomSharpness, factor: [0.8, 0.8]}
  jitter: {type: RandomColorJitter, brightness_factor: [0.05, 0.05], contrast_factor: 0.0, hue_factor: 0.0}""",
    "posterize -> mix -> degenerate -> saturate -> hue -> sharpen -> jitter")

RANDOM_MORE = _model_file("color_more_augmented", """\
  equalize: {type: Equalization, bins: 64}
  posterize: {type: RandomPosterization, factor: [4, 8]}
  degenerate: {type: RandomColorDegeneration, factor: 0.5}
  saturate: {type: RandomSaturation, factor: 0.5}
  hue: {type: RandomHue, factor: 0.3}
  sharpen: {type: RandomSharpness, factor: 0.6}
  jitter: {type: RandomColorJitter, brightness_factor: 0.1, contrast_factor: 0.2, saturation_factor: 0.3,
           hue_factor: 0.1}""", "equalize -> posterize -> degenerate -> saturate -> hue -> sharpen -> jitter")


def test_more_model_file_matches_keras():
    from grad_harness import nnspec_and_keras, one_step_matches_keras
    from keras_from_spec import keras_summary_facts

    m, km = nnspec_and_keras(DETERMINISTIC_MORE, seed=4)
    facts = keras_summary_facts(km)
    assert m.summary_dict()["total_params"] == facts["total"] == m.count_params()
    x, y = _data(8, 5)
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")
    assert one_step_matches_keras(DETERMINISTIC_MORE, x, y, seed=4) == 6


def test_more_random_model_file_trains():
    """Equalization cannot be in a Keras model (see above): the file with it trains in nnspec,
    its predictions are the classifier's on the unchanged images (all the identity)."""
    x, y = _data(48, 6)
    m = nnspec.load(RANDOM_MORE, seed=2)
    before = [w.copy() for w in m.get_weights()]
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    hist = m.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=3)
    assert all(np.isfinite(v) for v in hist.history["loss"])
    assert all(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
    plain = nnspec.load(_model_file("plain", "", "scale").replace("-> scale -> scale", "-> scale"), seed=2)
    plain.set_weights(m.get_weights())
    np.testing.assert_array_equal(m.predict(x[:8]), plain.predict(x[:8]))


@pytest.mark.parametrize(
    "layer,code,where",
    [({"type": "RandomPosterization", "factor": 9}, "E103", "layers.aug.factor"),
     ({"type": "RandomPosterization", "factor": 0.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomPosterization"}, "E102", "layers.aug"),
     ({"type": "RandomColorDegeneration", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomColorDegeneration", "factor": [0.1, 0.2, 0.3]}, "E103", "layers.aug.factor"),
     ({"type": "Equalization", "value_range": [0, 1, 2]}, "E103", "layers.aug.value_range"),
     ({"type": "RandomSaturation", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomHue", "factor": 1.2}, "E103", "layers.aug.factor"),
     ({"type": "RandomHue", "factor": -0.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomSharpness", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomColorJitter", "brightness_factor": 1.5}, "E103", "layers.aug.brightness_factor"),
     ({"type": "RandomColorJitter", "contrast_factor": -0.1}, "E103", "layers.aug.contrast_factor"),
     ({"type": "RandomColorJitter", "hue_factor": 1.1}, "E103", "layers.aug.hue_factor")],
)  # fmt: skip
def test_new_attributes_keras_refuses_are_schema_errors(layer, code, where):
    from keras_ref import keras_layer

    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer))
    assert code in str(err.value) and where in str(err.value), str(err.value)
    # Keras's Equalization refuses a bad value_range with an AttributeError (its message attribute is missing)
    with pytest.raises((ValueError, TypeError, AttributeError)):
        keras_layer(layer["type"], {k: v for k, v in layer.items() if k != "type"})


@pytest.mark.parametrize(
    "layer,shape,message",
    [({"type": "RandomColorDegeneration", "factor": 0.2}, (8, 8, 1), "3 channels"),
     ({"type": "RandomColorDegeneration", "factor": 0.2, "data_format": "channels_first"}, (4, 8, 8), "3 channels"),
     ({"type": "RandomPosterization", "factor": 2.5}, (8, 8, 3), "whole numbers"),
     ({"type": "Equalization"}, (8, 3), "rank 4"),
     ({"type": "RandomSaturation", "factor": 0.2}, (8, 8, 1), "3 channels"),
     ({"type": "RandomHue", "factor": 0.2}, (8, 8, 4), "3 channels"),
     ({"type": "RandomColorJitter", "hue_factor": 0.2, "data_format": "channels_first"}, (3, 8, 8), "3 channels")],
)  # fmt: skip
def test_new_inputs_the_layers_cannot_take_are_shape_errors(layer, shape, message):
    """RandomColorDegeneration needs RGB images (Keras's compute_output_shape refuses others when
    it builds a model); RandomPosterization's factor must be whole numbers (Keras's torch.randint
    refuses others in training)."""
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer, shape))
    assert "E300" in str(err.value) and message in str(err.value), str(err.value)
    keras = _keras()
    k = getattr(keras.layers, layer["type"])(**{a: v for a, v in layer.items() if a != "type"})
    with pytest.raises((ValueError, TypeError, RuntimeError)):  # torch.split refuses in rgb_to_hsv
        if layer["type"] in ("RandomPosterization", "RandomSaturation", "RandomHue", "RandomColorJitter"):
            k(np.zeros((2, *shape), np.float32), training=True)
        else:
            keras.Sequential([keras.Input(shape), k])
