"""The cropping, mixing, elastic and CLAHE augmentation layers (RandomCrop, MixUp, CutMix,
RandomElasticTransform, ContrastLimitedAdaptiveHistogramEqualization) against Keras 3 (PyTorch
backend).

- Attributes: Keras's constructor arguments, order, defaults and factor readings; what Keras
  refuses is a schema or shape error.
- Inference: MixUp and CutMix predict their input, as Keras (a view in the plan); RandomCrop
  predicts the input for inputs of the target's size, as Keras, and otherwise Keras's CenterCrop
  (what Keras documents; Keras 3.15 returns the uncropped image, checked here as the documented
  difference).
- CLAHE (deterministic, at inference and in training): predictions bit for bit as Keras's, and
  the reference; no gradient, as Keras's output has no autograd graph.
- Kernels with GIVEN draws (a crop start, mixing weights and partners, boxes, the elastic noise
  handed to Keras through a patched ``torch.normal``): the forward against Keras's
  ``transform_images`` with the same transformation and the NumPy reference, the backward
  against Keras's autograd and float64 finite differences.
- The compiled train step: configurations in which Keras draws nothing (``CASES``: RandomCrop's
  fixed windows, RandomElasticTransform's still configurations, CLAHE) against Keras's autograd
  and finite differences; random configurations by their saved draws
  (uniform or Beta statistics within Keras's ranges), the output and input gradient against
  Keras's ``transform_images`` and autograd given those draws and against finite differences,
  and draws that follow the kernel seed.
- Model files: summary and predictions against Keras; fit and train_on_batch through the
  compiled train step (the layers random in training).
"""

from __future__ import annotations

import math
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, pooling, preprocessing
from nnspec.layerdefs import augmentation_mix as AM
from nnspec.layerdefs.base import bind_numpy, normalize_attrs
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import Case, GradSuite, check_keras, close
from test_augmentation import _fd, _spec, _uniform_stats, saved_rows, seeded_result  # shared helpers
from test_augmentation import test_identity_at_inference_as_keras as identity_at_inference_as_keras
from test_augmentation_color import (
    FD_TOL,
    FWD_TOL,
    PIXELS,
    TORCH_TOL,
    _images,
    _keras,
    _keras_run,
    _model_file,
    _share_matches,
    _torch,
    keras_constructor_matches,
)
from test_augmentation_color import (
    test_attributes_keras_refuses_are_schema_errors as schema_error_as_keras,
)
from test_augmentation_color import (
    test_model_file_summary_and_predictions_match_keras as summary_and_predictions_match_keras,
)

bind_numpy([AM, pooling, preprocessing])

NAMES = [d.name for d in AM.LAYERS]


# ----------------------------------------------------------------------------- attributes


@pytest.mark.parametrize("name", NAMES)
def test_attributes_follow_keras_constructor(name):
    keras_constructor_matches(name)


def test_keras_reads_of_factors_are_ours():
    """CutMix's factor as Keras reads it is the emitter's reading: a number f is [0, f], a pair sorted."""
    keras = _keras()
    assert tuple(keras.layers.CutMix().factor) == AM.factor_range(1.0, 0.0) == (0.0, 1.0)
    assert tuple(keras.layers.CutMix(0.4).factor) == AM.factor_range(0.4, 0.0)
    assert tuple(keras.layers.CutMix([0.7, 0.2]).factor) == AM.factor_range([0.7, 0.2], 0.0) == (0.2, 0.7)
    e = keras.layers.RandomElasticTransform(0.4, [0.9, 0.3])
    assert tuple(e.factor) == AM.factor_range(0.4, 0.0) and tuple(e.scale) == AM.factor_range([0.9, 0.3], 0.0)
    assert tuple(keras.layers.RandomElasticTransform().scale) == AM.factor_range(1.0, 0.0) == (0.0, 1.0)


# ----------------------------------------------------------------------------- inference

ONE_LAYER = [  # (type, attrs, per-sample shape)
    ("MixUp", {}, (6, 5, 3)),
    ("MixUp", {"alpha": 0.7, "data_format": "channels_first"}, (3, 6, 5)),
    ("CutMix", {}, (6, 5, 3)),
    ("CutMix", {"factor": [0.2, 0.6], "data_format": "channels_first"}, (3, 6, 5)),
    ("RandomElasticTransform", {}, (6, 5, 3)),
    ("RandomElasticTransform", {"scale": 0.5, "fill_mode": "mirror", "value_range": [0, 1],
                                "data_format": "channels_first"}, (3, 6, 5)),
]


@pytest.mark.parametrize("name,attrs,shape", ONE_LAYER, ids=[f"{c[0]}-{i}" for i, c in enumerate(ONE_LAYER)])
def test_identity_at_inference_as_keras(name, attrs, shape):
    """``predict`` (Keras: ``training=False``) returns the input, as Keras and the reference; a
    view in the plan; Keras's shape, no weights (test_augmentation.py's check)."""
    identity_at_inference_as_keras(name, attrs, shape)


CROP_INFERENCE = [  # (attrs, per-sample shape)
    ({"height": 6, "width": 5}, (6, 5, 3)),  # the target's size: the identity, as Keras
    ({"height": 4, "width": 3}, (7, 6, 2)),  # larger: the centred crop
    ({"height": 5, "width": 8, "data_format": "channels_first"}, (2, 7, 6)),  # narrower: crop of the ratio, resized
]


@pytest.mark.parametrize("attrs,shape", CROP_INFERENCE)
def test_random_crop_inference(attrs, shape):
    """Keras's predictions for an input of the target's size (the identity); otherwise Keras's
    CenterCrop's predictions (what RandomCrop's documentation promises) and the reference, where
    Keras 3.15's RandomCrop predicts the uncropped input (its bug, a documented difference).
    The output shape is what Keras's summary declares."""
    from keras_ref import keras_layer_facts

    x = _images((3, *shape), 0, 255, 11)
    (ours,) = kh.run_nnspec("RandomCrop", attrs, [x], [])
    (theirs,) = kh.run_keras("RandomCrop", attrs, [x], [])
    shapes, weights, count = keras_layer_facts("RandomCrop", attrs, [shape])
    assert weights == [] and count == 0
    assert ours.shape[1:] == shapes[0][1:]
    np.testing.assert_array_equal(theirs, x)  # Keras: unchanged at inference
    if ours.shape == x.shape:
        np.testing.assert_array_equal(ours, x)
        return
    (center,) = kh.run_keras("CenterCrop", attrs | {}, [x], [])
    close(ours, center, FWD_TOL, "Keras's CenterCrop")
    close(ours, kh.run_reference("RandomCrop", attrs, [x], [])[0], FWD_TOL, "reference")


def _few_levels(shape, seed):
    """Integer pixels of 16 levels: CLAHE's clip limit acts on 8 x 8 tiles (counts above 4)."""
    return np.random.default_rng(seed).integers(0, 16, size=shape).astype(np.float32) * 3 + 40


CLAHE_INFERENCE = [  # (attrs, per-sample shape, pixels)
    ({"tile_grid_size": [2, 2]}, (16, 16, 3), "levels"),  # limit 4: clipped and redistributed
    ({"tile_grid_size": [3, 2]}, (7, 5, 2), "uniform"),  # padded tiles (Keras repeats the edge), limit 0
    ({"value_range": [0, 1], "clip_limit": 40.0, "tile_grid_size": [2, 3]}, (9, 11, 1), "unit"),  # limit 3
    ({"clip_limit": 0.0, "tile_grid_size": [4, 3], "data_format": "channels_first"}, (3, 7, 6), "levels"),
    ({}, (12, 10, 3), "uniform"),  # Keras's defaults: 8 x 8 tiles of 2 x 2 pixels
]


@pytest.mark.parametrize("attrs,shape,pixels", CLAHE_INFERENCE)
def test_clahe_inference_as_keras(attrs, shape, pixels):
    """Predictions bit for bit as Keras's (CLAHE acts at inference), within float64 rounding of
    the reference; Keras's shape, no weights."""
    from keras_ref import keras_layer_facts

    name = "ContrastLimitedAdaptiveHistogramEqualization"
    lo, hi = attrs.get("value_range", [0, 255])
    x = {"levels": _few_levels((3, *shape), 12), "uniform": _images((3, *shape), 0, 255, 12),
         "unit": _images((3, *shape), lo, hi, 12)}[pixels]  # fmt: skip
    (ours,) = kh.run_nnspec(name, attrs, [x], [])
    (theirs,) = kh.run_keras(name, attrs, [x], [])
    np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(ours, x)
    close(ours, kh.run_reference(name, attrs, [x], [])[0], FWD_TOL, "reference")
    shapes, weights, count = keras_layer_facts(name, attrs, [shape])
    assert shapes == [(None, *shape)] and weights == [] and count == 0


# ----------------------------------------------------------------------------- kernels, given draws


@cache
def _kernels():
    from nnspec.runtime.kernels import jit

    fns = (AM.crop_forward, AM.crop_backward, AM.mixup_forward, AM.mixup_backward, AM.cutmix_forward,
           AM.cutmix_backward, AM.draw_crop_starts, AM.elastic_coords, AM.elastic_forward,
           AM.elastic_backward)  # fmt: skip
    return {f.__name__: jit(f) for f in fns}


def _check_grad(dx, kdx, reference, x, dy):
    """``dx`` against Keras's autograd and float64 finite differences of ``sum(dy * reference)``."""
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    dy64 = dy.astype(np.float64)
    close(dx, _fd(lambda v: float((dy64 * reference(v)).sum()), x.astype(np.float64)), FD_TOL, "finite differences")


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_random_crop_window_kernels_match_keras(fmt):
    """A given start (Keras's random branch: the image larger along both axes): the window bit for
    bit as Keras's transform_images with that start, the reference, the gradient (dy into the
    window, 0 elsewhere) as autograd and finite differences."""
    torch = _torch()
    shape = (3, 7, 6, 2) if fmt == "channels_last" else (3, 2, 7, 6)
    x = _images(shape, 0, 255, 1)
    layer = _keras().layers.RandomCrop(4, 3, data_format=fmt)
    out = (3, 4, 3, 2) if fmt == "channels_last" else (3, 2, 4, 3)
    dy = _images(out, -1, 1, 2)
    start = (2, 1)
    ky, kdx = _keras_run(layer, x, (torch.tensor(start[0]), torch.tensor(start[1])), dy)
    v = np.tile(np.array(start, np.float32), (3, 1))
    views = (lambda a: a) if fmt == "channels_last" else (lambda a: a.reshape(-1, *a.shape[2:], 1))
    y = np.full(out, np.nan, np.float32)
    _kernels()["crop_forward"](views(x), views(y), v)
    np.testing.assert_array_equal(y, ky)

    def ref(u):
        return AM.crop_reference(u, 4, 3, start, fmt)

    close(y, ref(x), 0.0, "reference")
    dx = np.zeros_like(x)
    _kernels()["crop_backward"](views(dy), views(dx), v)
    _check_grad(dx, kdx, ref, x, dy)


def test_random_crop_start_draws():
    """One start per call, the same for every image, each coordinate uniform over Keras's whole
    numbers 0 .. H - height (Keras: int(U(0, H - height + 1))): every value drawn, each one's share
    within 5 standard errors of uniform (2000 calls)."""
    from nnspec.runtime.kernels import seed_kernels

    seed_kernels(7)
    v = np.zeros((4, AM.CROP_SIZE), np.float32)
    draws = np.zeros((2000, 2))
    for i in range(len(draws)):
        _kernels()["draw_crop_starts"](v, 3, 5)
        assert (v == v[0]).all()
        draws[i] = v[0]
    for col, top in ((0, 3), (1, 5)):
        assert set(np.unique(draws[:, col])) == set(range(top + 1))
        for k in range(top + 1):
            _share_matches(draws[:, col] == k, 1 / (top + 1))


MIX = (np.array([0.3, 0.9, 0.05], np.float32), np.array([2, 0, 2]))  # weights; partners (not a permutation)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_mixup_kernels_match_keras(fmt):
    """Given weights and partners: the forward bit for bit as Keras's transform_images, the
    reference; the gradient (w dy to the image, (1 - w) dy to its partner) as autograd and finite
    differences. Image 2 is its own partner and image 1 no one's."""
    torch = _torch()
    shape = (3, 6, 5, 2) if fmt == "channels_last" else (3, 2, 6, 5)
    x = _images(shape, 0, 255, 3)
    dy = _images(shape, -1, 1, 4)
    w, p = MIX
    layer = _keras().layers.MixUp(data_format=fmt)
    ky, kdx = _keras_run(layer, x, {"mix_weight": torch.tensor(w), "permutation_order": torch.tensor(p)}, dy)
    v = np.stack([w, p], axis=1).astype(np.float32)
    y = np.full_like(x, np.nan)
    _kernels()["mixup_forward"](x.reshape(3, -1), y.reshape(3, -1), v)
    np.testing.assert_array_equal(y, ky)
    close(y, AM.mixup_reference(x, w, p), FWD_TOL, "reference")
    dx = np.zeros_like(x)
    _kernels()["mixup_backward"](dy.reshape(3, -1), dx.reshape(3, -1), v)
    _check_grad(dx, kdx, lambda u: AM.mixup_reference(u, w, p), x, dy)


CUT_BOXES = np.array([[1.0, 3.5, 0.5, 4.0],  # x0, x1, y0, y1
                      [0.0, 5.0, 2.25, 6.0],
                      [1.0, 1.0, 1.0, 5.0]], np.float32)  # an empty box: image 2 unchanged  # fmt: skip
CUT_PARTNERS = np.array([1, 2, 0])


def _keras_cutmix(layer, shape, boxes, partners):
    torch = _torch()
    b = torch.tensor(boxes)
    masks, weight = layer._generate_batch_mask(shape, (b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
    return {"permutation_order": torch.tensor(partners), "batch_masks": masks, "mix_weight": weight}


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_cutmix_kernels_match_keras(fmt):
    """Given boxes (Keras's own mask builder) and partners: the forward bit for bit as Keras's
    transform_images and the reference; the gradient (dy to the partner inside the box, to the
    image outside) as autograd and finite differences."""
    shape = (3, 6, 5, 2) if fmt == "channels_last" else (3, 2, 6, 5)
    x = _images(shape, 0, 255, 5)
    dy = _images(shape, -1, 1, 6)
    layer = _keras().layers.CutMix(data_format=fmt)
    ky, kdx = _keras_run(layer, x, _keras_cutmix(layer, shape, CUT_BOXES, CUT_PARTNERS), dy)
    v = np.concatenate([CUT_BOXES, CUT_PARTNERS[:, None]], axis=1).astype(np.float32)
    cf = fmt == "channels_first"
    y = np.full_like(x, np.nan)
    _kernels()["cutmix_forward"](x, y, v, cf)
    np.testing.assert_array_equal(y, ky)
    np.testing.assert_array_equal(y[2], x[2])
    assert (y[0] != x[0]).any() and (y[0] == x[0]).any()

    def ref(u):
        return AM.cutmix_reference(u, CUT_BOXES, CUT_PARTNERS, fmt)

    close(y, ref(x), 0.0, "reference")
    dx = np.zeros_like(x)
    _kernels()["cutmix_backward"](dy, dx, v, cf)
    _check_grad(dx, kdx, ref, x, dy)


ELASTIC_CASES = [  # (data_format, fill_mode, interpolation, distortion, value_range, image size)
    ("channels_last", "reflect", "bilinear", 0.9, [0, 255], (13, 12)),  # 3 taps of blur
    ("channels_last", "mirror", "bilinear", 1.0, [0, 255], (8, 7)),
    ("channels_last", "wrap", "nearest", 1.0, [0, 255], (8, 7)),
    ("channels_first", "constant", "bilinear", 0.8, [20, 200], (8, 7)),  # the clip acts
    ("channels_last", "nearest", "bilinear", 1.0, [300, 100], (8, 7)),  # [300, 100]: all 100, no gradient
]


def _keras_elastic(layer, x, applied, d, noise, dy, monkeypatch):
    """Keras's transform_images with the given choices and distortion, its two torch.normal draws
    (x's noise, then y's) replaced by ``noise`` (rows, 2, h, w), and autograd's gradient."""
    torch = _torch()
    draws = [torch.tensor(noise[:, 0]), torch.tensor(noise[:, 1])]
    with monkeypatch.context() as mp:
        mp.setattr(torch, "normal", lambda *args, **kwargs: draws.pop(0))
        t = {"apply_transform": torch.tensor(applied > 0), "distortion_factor": torch.tensor(np.float32(d)),
             "seed": None}  # fmt: skip
        out = _keras_run(layer, x, t, dy)
    assert not draws  # both draws used
    return out


@pytest.mark.parametrize("fmt,fill,interp,d,value_range,hw", ELASTIC_CASES)
def test_elastic_kernels_match_keras(fmt, fill, interp, d, value_range, hw, monkeypatch):
    """Given noise, distortion and choices (image 1 not transformed): the displaced points against
    the float64 reference (alpha, sigma and the blur from Keras's formulas); the forward against
    Keras's transform_images within float32 rounding and the reference; the gradient against
    autograd and finite differences."""
    h, w = hw
    shape = (3, h, w, 2) if fmt == "channels_last" else (3, 2, h, w)
    x = _images(shape, 0, 255, 7)
    dy = _images(shape, -1, 1, 8)
    noise = np.random.default_rng(9).normal(0, 1, size=(3, 2, h, w)).astype(np.float32)
    applied = np.array([1.0, 0.0, 1.0], np.float32)
    layer = _keras().layers.RandomElasticTransform(interpolation=interp, fill_mode=fill, fill_value=30.0,
                                                   value_range=value_range, data_format=fmt)  # fmt: skip
    ky, kdx = _keras_elastic(layer, x, applied, d, noise, dy, monkeypatch)
    k = _kernels()
    v = np.zeros((3, 2 + 2 * h * w), np.float32)
    v[:, 0] = applied
    k["elastic_coords"](v, noise, d, h, w)
    ys, xs = v[:, 2 : 2 + h * w].reshape(3, h, w), v[:, 2 + h * w :].reshape(3, h, w)
    ref_ys, ref_xs = AM.elastic_field_reference(noise, d, h, w)
    np.testing.assert_allclose(ys, ref_ys, atol=1e-5)
    np.testing.assert_allclose(xs, ref_xs, atol=1e-5)
    assert np.abs(xs - np.arange(w)).max() > 0.1  # the points do move
    args = (fmt == "channels_first", AM.ELASTIC_FILL_MODES.index(fill), AM.INTERPOLATIONS.index(interp), 30.0,
            *map(float, value_range))  # fmt: skip
    y = np.full_like(x, np.nan)
    k["elastic_forward"](x, y, v, *args)
    close(y, ky, FWD_TOL, "Keras")

    def ref(u):
        return AM.elastic_reference(u, applied, ys, xs, interp, fill, 30.0, value_range, fmt)

    close(y, ref(x), FWD_TOL, "reference")
    dx = np.zeros_like(x)
    k["elastic_backward"](x, dy, dx, v, *args)
    # the read points do not depend on x: the output is linear in x where not clipped (nearest's too)
    _check_grad(dx, kdx, ref, x, dy)


# ----------------------------------------------------------------------------- the train step

# Configurations in which Keras draws nothing random: against Keras's autograd through the train step.
# fmt: off
CASES = [
    Case("crop-center", "RandomCrop", {"height": 5, "width": 5}, ((7, 5, 2),), data=PIXELS),  # rows 1-5
    Case("crop-resize-cf", "RandomCrop", {"height": 5, "width": 5, "data_format": "channels_first"}, ((2, 4, 6),),
         data=PIXELS),  # Keras's slice (4 x 5) resized to 5 x 5
    Case("crop-stretch", "RandomCrop", {"height": 3, "width": 7}, ((6, 4, 2),), data=PIXELS),  # 3 x 4 resized
    Case("elastic-none", "RandomElasticTransform", {"factor": 0.0, "value_range": [0, 1]}, ((5, 6, 2),),
         data=PIXELS),  # Keras draws nothing and returns the images, unclipped
    Case("elastic-still-cf", "RandomElasticTransform", {"scale": [0.0, 0.0], "data_format": "channels_first"},
         ((2, 5, 6),)),
    Case("clahe", "ContrastLimitedAdaptiveHistogramEqualization", {"clip_limit": 30.0, "tile_grid_size": [2, 3]},
         ((8, 9, 2),), data=PIXELS),  # tiles of 4 x 3 pixels, limit 1
]
# fmt: on
SUITE = GradSuite(CASES)


def _attrs(case):
    return normalize_attrs(REGISTRY[case.type], case.attrs)


def _hw(case):
    s = case.shapes[0]
    return (s[1], s[2]) if _attrs(case)["data_format"] == "channels_first" else (s[0], s[1])


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_train_step_against_keras_autograd(case_id):
    """The training forward and input gradient of the compiled step against Keras (training=True).
    CLAHE's Keras output has no autograd graph (integer bins, lookups): Keras's input gradient is
    none (0), which the step gives, and the output is Keras's bit for bit."""
    case, r = SUITE.by_id[case_id], SUITE.result(case_id)
    if case.type != "ContrastLimitedAdaptiveHistogramEqualization":
        check_keras(case, r, TORCH_TOL)
        return
    from keras_ref import keras_layer

    xt = _torch().tensor(r.inputs[0], requires_grad=True)
    y = keras_layer(case.type, dict(case.attrs))(xt, training=True)
    assert not y.requires_grad
    np.testing.assert_array_equal(r.y, y.numpy())
    np.testing.assert_array_equal(r.dx[0], 0.0)


def _deterministic_reference(case):
    a = _attrs(case)
    if case.type == "RandomElasticTransform":
        return lambda v: v
    if case.type == "ContrastLimitedAdaptiveHistogramEqualization":
        return lambda v: AM.clahe_reference(v, a["value_range"], a["clip_limit"], a["tile_grid_size"])
    return lambda v: AM.crop_reference(v, a["height"], a["width"], None, a["data_format"])


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_train_step_against_reference_and_finite_differences(case_id):
    """The training forward against the reference and the input gradient against its finite differences."""
    case, r = SUITE.by_id[case_id], SUITE.result(case_id)
    ref = _deterministic_reference(case)
    close(r.y, ref(r.inputs[0]), FWD_TOL, "training forward")
    dy = r.dy.astype(np.float64)
    close(r.dx[0], _fd(lambda v: float((dy * ref(v)).sum()), r.inputs[0].astype(np.float64)), FD_TOL, "input")


B = 300  # images per random case: enough for the statistics below
# fmt: off
RANDOM_CASES = [
    Case("crop", "RandomCrop", {"height": 4, "width": 3}, ((7, 6, 2),), batch=B, kind="random", data=PIXELS),
    Case("mixup", "MixUp", {"alpha": 0.4}, ((4, 3, 2),), batch=B, kind="random", data=PIXELS),
    Case("cutmix-cf", "CutMix", {"factor": [0.5, 0.5], "data_format": "channels_first"}, ((2, 6, 5),), batch=B,
         kind="random", data=PIXELS),
    Case("elastic", "RandomElasticTransform", {"factor": [0.3, 0.9], "scale": [0.6, 1.0]}, ((14, 13, 1),),
         batch=B, kind="random", data=PIXELS),
    Case("elastic-nearest-cf", "RandomElasticTransform", {"interpolation": "nearest", "fill_mode": "constant",
         "fill_value": 9.0, "value_range": [10, 240], "data_format": "channels_first"}, ((2, 8, 7),), batch=B,
         kind="random", data=PIXELS),
]
# fmt: on
RANDOM = GradSuite(RANDOM_CASES)


def _random_result(case_id):
    return seeded_result(RANDOM, case_id)


def _saved(case_id):
    _random_result(case_id)
    return saved_rows(RANDOM, case_id, B)


def _fd_images(f, x, images=(0, 1)):
    """Finite differences of the scalar ``f`` over the entries of the given images of ``x``
    (float64): the mixing layers couple the images, so ``f`` sees the whole batch."""
    g = np.zeros_like(x)
    for s in images:
        g[s] = _fd(lambda v, s=s: f(np.concatenate([x[:s], v[None], x[s + 1 :]])), x[s].copy())
    return g[list(images)]


def _keras_with(case, r, transformation):
    """Keras's transform_images of the case's input with ``transformation`` and autograd's gradient."""
    from keras_ref import keras_layer

    return _keras_run(keras_layer(case.type, dict(case.attrs)), r.inputs[0], transformation, r.dy)


def test_crop_training():
    """One saved start for the whole batch, inside Keras's range; the output is Keras's
    transform_images with that start (bit for bit) and the reference; the gradient autograd's and
    the finite differences through it."""
    torch = _torch()
    case, r, v = RANDOM.by_id["crop"], _random_result("crop"), _saved("crop")
    assert (v == v[0]).all() and 0 <= v[0, 0] <= 3 and 0 <= v[0, 1] <= 3 and (v == np.round(v)).all()
    start = (int(v[0, 0]), int(v[0, 1]))
    ky, kdx = _keras_with(case, r, (torch.tensor(start[0]), torch.tensor(start[1])))
    np.testing.assert_array_equal(r.y, ky)
    close(r.dx[0], kdx, TORCH_TOL, "Keras autograd")

    def ref(u):
        return AM.crop_reference(u, 4, 3, start)

    close(r.y, ref(r.inputs[0]), 0.0, "reference")
    dy = r.dy[:2].astype(np.float64)
    close(r.dx[0][:2], _fd(lambda u: float((dy * ref(u)).sum()), r.inputs[0][:2].astype(np.float64)), FD_TOL,
          "gradient")  # fmt: skip


def _beta_stats(w, alpha):
    """Draws of Beta(alpha, alpha): inside [0, 1], mean 1/2 and standard deviation
    1 / (2 sqrt(2 alpha + 1)) within 5 standard errors (the std's within 25%)."""
    sd = 1 / (2 * math.sqrt(2 * alpha + 1))
    assert w.min() >= 0 and w.max() <= 1
    assert abs(w.mean() - 0.5) < 5 * sd / math.sqrt(len(w)), w.mean()
    assert abs(w.std() - sd) < 0.25 * sd, (w.std(), sd)


@pytest.mark.parametrize("alpha", [1e-6, 0.2, 3.0])
def test_beta_draws(alpha):
    """MixUp's draw kernel: weights Beta(alpha, alpha) (mean 1/2, Keras's law) even for CutMix's tiny
    parameters (torch's Beta(1e-6, 1e-6) is symmetric; NumPy's underflows toward 0); partners a
    permutation (4000 images)."""
    from nnspec.runtime.kernels import jit, seed_kernels

    seed_kernels(3)
    v = np.zeros((4000, AM.MIXUP_SIZE), np.float32)
    jit(AM.draw_mixup)(v, alpha)
    _beta_stats(v[:, 0].astype(np.float64), alpha)
    _is_permutation(v[:, 1])


def _is_permutation(p):
    assert sorted(p.astype(int).tolist()) == list(range(len(p)))


def test_mixup_training():
    """Saved weights Beta(alpha, alpha), partners a permutation; the output as Keras's
    transform_images with those draws (bit for bit) and the reference; the input gradient as
    Keras's autograd and finite differences (over the whole batch: images are coupled)."""
    torch = _torch()
    case, r, v = RANDOM.by_id["mixup"], _random_result("mixup"), _saved("mixup")
    _beta_stats(v[:, 0], 0.4)
    _is_permutation(v[:, 1])
    w, p = v[:, 0].astype(np.float32), v[:, 1].astype(np.int64)
    ky, kdx = _keras_with(case, r, {"mix_weight": torch.tensor(w), "permutation_order": torch.tensor(p)})
    np.testing.assert_array_equal(r.y, ky)
    close(r.dx[0], kdx, TORCH_TOL, "Keras autograd")
    close(r.y, AM.mixup_reference(r.inputs[0], w, p), FWD_TOL, "reference")
    dy = r.dy.astype(np.float64)
    fd = _fd_images(lambda u: float((dy * AM.mixup_reference(u, w, p)).sum()), r.inputs[0].astype(np.float64))
    close(r.dx[0][:2], fd, FD_TOL, "gradient")


def test_cutmix_training():
    """Saved boxes: the same side ratio r along both axes with w = 1 - r^2 Beta(a, a) (factor [0.5, 0.5]:
    a = 0.5), starts uniform over where the box fits, partners a permutation; the output as Keras's
    transform_images with those boxes (Keras's mask builder) bit for bit; the input gradient as
    Keras's autograd and finite differences through the draws."""
    case, r, b = RANDOM.by_id["cutmix-cf"], _random_result("cutmix-cf"), _saved("cutmix-cf")
    h, w = _hw(case)
    rx, ry = (b[:, 1] - b[:, 0]) / w, (b[:, 3] - b[:, 2]) / h
    np.testing.assert_allclose(rx, ry, atol=1e-6)
    _beta_stats(1 - rx**2, 0.5)
    for lo_col, size in ((0, w), (2, h)):
        side = b[:, lo_col + 1] - b[:, lo_col]
        room = size - side
        keep = room > 1e-3  # a box of the whole axis has no room to move
        _uniform_stats(b[keep, lo_col] / room[keep], 0.0, 1.0)
    _is_permutation(b[:, 4])
    boxes, p = b[:, :4].astype(np.float32), b[:, 4].astype(np.int64)
    from keras_ref import keras_layer

    layer = keras_layer(case.type, dict(case.attrs))
    ky, kdx = _keras_run(layer, r.inputs[0], _keras_cutmix(layer, r.inputs[0].shape, boxes, p), r.dy)
    np.testing.assert_array_equal(r.y, ky)
    close(r.dx[0], kdx, TORCH_TOL, "Keras autograd")

    def ref(u):
        return AM.cutmix_reference(u, boxes, p, "channels_first")

    close(r.y, ref(r.inputs[0]), 0.0, "reference")
    dy = r.dy.astype(np.float64)
    close(r.dx[0][:2], _fd_images(lambda u: float((dy * ref(u)).sum()), r.inputs[0].astype(np.float64)), FD_TOL,
          "gradient")  # fmt: skip


def _keras_map_coordinates(x, ys, xs, a):
    """Keras's read (its torch map_coordinates per image and channel, then the clip) of the images
    ``x`` (channels_last) at the given points."""
    torch = _torch()
    from keras.src.backend.torch.image import map_coordinates

    out = np.empty_like(x)
    for s in range(len(x)):
        for c in range(x.shape[-1]):
            out[s, ..., c] = map_coordinates(torch.tensor(x[s, ..., c]), [torch.tensor(ys[s]), torch.tensor(xs[s])],
                                             order=AM.INTERPOLATIONS.index(a["interpolation"]),
                                             fill_mode=a["fill_mode"], fill_value=a["fill_value"]).numpy()  # fmt: skip
    return np.clip(out, *a["value_range"])


@pytest.mark.parametrize("case_id", ["elastic", "elastic-nearest-cf"])
def test_elastic_training(case_id):
    """Saved draws: one distortion d per batch inside Keras's scale range, the share transformed
    Keras's probability, the displacements (points minus pixels) alpha times noise blurred with
    Keras's Gaussian: mean 0, standard deviation alpha sigma sqrt(sum of the squared taps) away from
    the edges (within 10%). The output is Keras's read at the saved points (transformed images) and
    the reference; the gradient the finite differences through the saved points."""
    from keras_ref import keras_layer

    case, r, v = RANDOM.by_id[case_id], _random_result(case_id), _saved(case_id)
    a, k = _attrs(case), keras_layer(case.type, dict(case.attrs))
    h, w = _hw(case)
    d = v[0, 1]
    assert (v[:, 1] == d).all() and k.scale[0] <= d <= k.scale[1]
    applied = v[:, 0]
    _share_matches(applied == 1.0, (k.factor[0] + k.factor[1]) / 2)
    ys, xs = v[:, 2 : 2 + h * w].reshape(B, h, w), v[:, 2 + h * w :].reshape(B, h, w)
    alpha = float(np.float32(max(h, w)) * (np.float32(0.1) * np.float32(d)))
    sigma = float(np.float32(min(h, w)) * (np.float32(0.05) * np.float32(d)))
    size = int(np.float32(6.0) * np.float32(sigma)) | 1
    p = size // 2
    sd = alpha * sigma * float((AM.gaussian_taps(size, sigma) ** 2).sum())  # (sum g^2)^2 for the 2-D taps, rooted
    for moved in (xs - np.arange(w), ys - np.arange(h)[:, None]):
        inner = moved[:, p : h - p, p : w - p].ravel()
        assert abs(inner.mean()) < 0.1 * sd and abs(inner.std() - sd) < 0.1 * sd, (inner.mean(), inner.std(), sd)
    x = AM._spatial(r.inputs[0], a["data_format"])
    y = AM._spatial(r.y, a["data_format"])
    chosen = np.flatnonzero(applied)[:4]
    close(y[chosen], _keras_map_coordinates(x[chosen], ys[chosen], xs[chosen], a), FWD_TOL, "Keras's read")

    def ref(u, s=slice(None)):
        return AM.elastic_reference(u, applied[s], ys[s], xs[s], a["interpolation"], a["fill_mode"],
                                    a["fill_value"], a["value_range"], a["data_format"])  # fmt: skip

    close(r.y, ref(r.inputs[0]), FWD_TOL, "training forward")
    out = []
    for s in range(2):
        dy = r.dy[s : s + 1].astype(np.float64)
        out.append(_fd(lambda u, s=s, dy=dy: float((dy * ref(u, slice(s, s + 1))).sum()),
                       r.inputs[0][s : s + 1].astype(np.float64)))  # fmt: skip
    close(r.dx[0][:2], np.concatenate(out), FD_TOL, "gradient")


@pytest.mark.parametrize("case_id", ["crop", "mixup", "cutmix-cf", "elastic"])
def test_draws_follow_the_kernel_seed(case_id):
    _random_result(case_id)
    a, b, c = (RANDOM.output_after_step(case_id, seed) for seed in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ----------------------------------------------------------------------------- model files

# Inference: RandomCrop of the input's size (Keras predicts the input then), MixUp and CutMix.
MODEL_FILE = _model_file("mix_augmented", """\
  clahe: {type: ContrastLimitedAdaptiveHistogramEqualization, clip_limit: 20.0, tile_grid_size: [2, 2]}
  crop: {type: RandomCrop, height: 12, width: 10}
  mix: {type: MixUp, alpha: 0.3}
  cut: {type: CutMix, factor: 0.8}
  warp: {type: RandomElasticTransform, factor: 0.5, scale: 0.5}""", "clahe -> crop -> mix -> cut -> warp")

# Training: a random crop smaller than the input (Keras's model could not predict it).
TRAIN_FILE = _model_file("mix_trained", """\
  clahe: {type: ContrastLimitedAdaptiveHistogramEqualization, tile_grid_size: [3, 2]}
  crop: {type: RandomCrop, height: 10, width: 8}
  mix: {type: MixUp}
  cut: {type: CutMix}
  warp: {type: RandomElasticTransform, scale: 0.5}""", "clahe -> crop -> mix -> cut -> warp")


def test_model_file_summary_and_predictions_match_keras():
    """Summary rows (types, shapes, parameters) and predictions as Keras's (color tests' check)."""
    summary_and_predictions_match_keras(MODEL_FILE)


def test_model_file_trains(monkeypatch):
    """fit (2 epochs) and train_on_batch run with the five layers random in training and move every
    weight (the color tests' check, given this file)."""
    import test_augmentation_color

    monkeypatch.setattr(test_augmentation_color, "RANDOM_FILE", TRAIN_FILE)
    test_augmentation_color.test_random_model_file_trains()
    m = nnspec.load(TRAIN_FILE)
    rows = {row["name"]: row for row in m.summary_dict()["layers"]}
    assert rows["crop"]["output_shape"] == [None, 10, 8, 3]


def test_python_builder_takes_keras_positional_arguments():
    from nnspec import layers

    inputs = nnspec.Input(shape=(8, 7, 3))
    x = layers.RandomCrop(6, 5)(inputs)
    x = layers.MixUp(0.5)(x)
    x = layers.CutMix(0.3)(x)
    x = layers.RandomElasticTransform(0.4, 0.2)(x)
    x = layers.ContrastLimitedAdaptiveHistogramEqualization([0, 1], 2.0, [2, 2])(x)
    spec = nnspec.Model(inputs, layers.Flatten()(x)).get_config()
    t = {v["type"]: v for v in spec["layers"].values()}
    assert t["RandomCrop"]["height"] == 6 and t["RandomCrop"]["width"] == 5
    assert t["MixUp"]["alpha"] == 0.5 and t["CutMix"]["factor"] == 0.3
    assert t["RandomElasticTransform"]["factor"] == 0.4 and t["RandomElasticTransform"]["scale"] == 0.2
    clahe = t["ContrastLimitedAdaptiveHistogramEqualization"]
    assert clahe["value_range"] == [0, 1] and clahe["clip_limit"] == 2.0 and clahe["tile_grid_size"] == [2, 2]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "layer,code,where",
    [({"type": "CutMix", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "CutMix", "factor": -0.1}, "E103", "layers.aug.factor"),
     ({"type": "CutMix", "factor": [0.1, 0.2, 0.3]}, "E103", "layers.aug.factor"),
     ({"type": "RandomElasticTransform", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomElasticTransform", "scale": 1.2}, "E103", "layers.aug.scale"),
     ({"type": "RandomElasticTransform", "scale": [0.1, 0.2, 0.3]}, "E103", "layers.aug.scale")],
)  # fmt: skip
def test_attributes_keras_refuses_are_schema_errors(layer, code, where):
    """Keras's constructors refuse these (factors out of [0, 1], lists not of two numbers)."""
    schema_error_as_keras(layer, code, where)


@pytest.mark.parametrize(
    "layer,code,where",
    [({"type": "RandomCrop", "height": 4}, "E102", "layers.aug"),
     ({"type": "RandomCrop", "height": 0, "width": 3}, "E103", "layers.aug.height"),
     ({"type": "MixUp", "alpha": 0.0}, "E103", "layers.aug.alpha"),
     ({"type": "MixUp", "alpha": -1.0}, "E103", "layers.aug.alpha"),
     ({"type": "ContrastLimitedAdaptiveHistogramEqualization", "value_range": [0, 1, 2]}, "E103",
      "layers.aug.value_range")],
)  # fmt: skip
def test_attributes_keras_fails_on_are_schema_errors(layer, code, where):
    """A missing size (Keras's constructor needs it); an empty crop (Keras outputs empty images in
    training); MixUp's alpha <= 0 (Keras fails in training: torch's Beta); a value range not of two
    numbers (Keras fails when called)."""
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer))
    assert code in str(err.value) and where in str(err.value), str(err.value)


@pytest.mark.parametrize("name", ["interpolation", "fill_mode"])
def test_unknown_elastic_modes_are_schema_errors(name):
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec({"type": "RandomElasticTransform", name: "bicubic"}))
    assert "E103" in str(err.value) and f"layers.aug.{name}" in str(err.value)
    with pytest.raises(NotImplementedError):
        _keras().layers.RandomElasticTransform(**{name: "bicubic"})


def test_keras_fails_where_the_schema_refuses():
    keras = _keras()
    x = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(TypeError):
        keras.layers.RandomCrop(4)
    with pytest.raises(ValueError):
        keras.layers.MixUp(alpha=0.0)(x, training=True)
    assert tuple(keras.layers.RandomCrop(0, 3)(x, training=True).shape) == (2, 0, 3, 3)
    with pytest.raises(ValueError):
        keras.layers.ContrastLimitedAdaptiveHistogramEqualization(value_range=(0, 1, 2))(x)
    for grid in ((0, 2), (2, 2, 2)):
        with pytest.raises((ZeroDivisionError, ValueError)):
            keras.layers.ContrastLimitedAdaptiveHistogramEqualization(tile_grid_size=grid)(x)


@pytest.mark.parametrize(
    "layer,shape,dtype,message",
    [({"type": "RandomCrop", "height": 4, "width": 4}, (8, 3), "float32", "rank 4"),
     ({"type": "RandomCrop", "height": 4, "width": 4}, (None, 8, 3), "float32", "known image"),
     ({"type": "MixUp"}, (8, 8, 3), "int32", "float images"),
     ({"type": "CutMix"}, (8, 8, 8, 3), "float32", "rank 4"),
     ({"type": "RandomElasticTransform"}, (1, 8, 3), "float32", "2 x 2"),
     ({"type": "RandomElasticTransform"}, (8, 8, 3), "int32", "float images"),
     ({"type": "ContrastLimitedAdaptiveHistogramEqualization", "tile_grid_size": [0, 2]}, (8, 8, 3), "float32",
      "tile_grid_size"),
     ({"type": "ContrastLimitedAdaptiveHistogramEqualization", "tile_grid_size": [2, 2, 2]}, (8, 8, 3), "float32",
      "tile_grid_size")],
)  # fmt: skip
def test_inputs_the_layers_cannot_take_are_shape_errors(layer, shape, dtype, message):
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer, shape, dtype))
    assert "E300" in str(err.value) and message in str(err.value), str(err.value)
