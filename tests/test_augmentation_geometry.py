"""The geometric and erasing augmentation layers (RandomShear, RandomErasing,
RandomGaussianBlur, RandomPerspective) against Keras 3 (PyTorch backend).

- Attributes: Keras's constructor arguments, order, defaults and factor readings; what Keras
  refuses is a schema or shape error.
- Inference: one-layer models predict what Keras predicts (the identity, a view in the plan).
- Kernels with GIVEN draws (shears, boxes, blur choices and sigmas, moved corners): the forward
  against Keras's ``transform_images`` with the same transformation and the NumPy reference,
  the backward against Keras's autograd and float64 finite differences. RandomPerspective's
  homography solver against Keras's ``compute_homography_matrix`` and NumPy's solve.
- The compiled train step: configurations in which Keras draws nothing random against Keras's
  autograd and finite differences (``CASES``, for the registry's gradient contract); random
  configurations by their saved draws (uniform over Keras's ranges, Keras's probabilities
  within 5 standard errors), the output as the reference with those draws, the input gradient
  as finite differences through them, and draws that follow the kernel seed.
- Model files: summary, predictions against Keras, one training step and fit.
"""

from __future__ import annotations

import math
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY
from nnspec.layerdefs import augmentation as A
from nnspec.layerdefs import augmentation_geometry as AG
from nnspec.layerdefs.base import bind_numpy, normalize_attrs
from nnspec.specs.errors import KerasConfigError, SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grad_harness import Case, GradSuite, check_keras, close
from test_augmentation import _fd, _spec, _uniform_stats, saved_rows, seeded_result  # shared helpers
from test_augmentation import test_identity_at_inference_as_keras as identity_at_inference_as_keras
from test_augmentation_color import (  # pixels, images, Keras's transform_images, statistics, a data set
    FD_TOL,
    FWD_TOL,
    PIXELS,
    TORCH_TOL,
    UNIT,
    _fd_through,
    _images,
    _keras,
    _keras_run,
    _model_file,
    _share_matches,
    _torch,
    _uniform_pixels,
    keras_constructor_matches,
)
from test_augmentation_color import (
    test_attributes_keras_refuses_are_schema_errors as schema_error_as_keras,
)
from test_augmentation_color import (
    test_model_file_summary_and_predictions_match_keras as summary_and_predictions_match_keras,
)

bind_numpy([A, AG])

NAMES = [d.name for d in AG.LAYERS]


# ----------------------------------------------------------------------------- attributes


@pytest.mark.parametrize("name", NAMES)
def test_attributes_follow_keras_constructor(name):
    keras_constructor_matches(name)


def test_keras_reads_of_factors_are_ours():
    """The ranges Keras draws from, as its constructors read them, are the emitters' reading
    (``factor_range``): RandomShear's number f is [-f, f]; the others' [0, f]; pairs sorted."""
    keras = _keras()
    s = keras.layers.RandomShear(0.3, [0.6, 0.2])
    assert tuple(s.x_factor) == AG.factor_range(0.3, -1.0) == (-0.3, 0.3)
    assert tuple(s.y_factor) == AG.factor_range([0.6, 0.2], -1.0)
    e = keras.layers.RandomErasing(0.4, scale=0.5)
    assert tuple(e.factor) == AG.factor_range(0.4, 0.0) and tuple(e.scale) == AG.factor_range(0.5, 0.0) == (0, 0.5)
    assert tuple(keras.layers.RandomErasing().scale) == AG.factor_range([0.02, 0.33], 0.0)
    b = keras.layers.RandomGaussianBlur(kernel_size=5, sigma=[0.7, 0.3])
    assert tuple(b.sigma) == AG.factor_range([0.7, 0.3], 0.0) and tuple(b.kernel_size) == (5, 5)
    assert tuple(keras.layers.RandomGaussianBlur().sigma) == AG.factor_range(1.0, 0.0) == (0, 1.0)
    assert tuple(keras.layers.RandomPerspective(0.7).factor) == AG.factor_range(0.7, 0.0)


# ----------------------------------------------------------------------------- inference

ONE_LAYER = [  # (type, attrs, per-sample shape)
    ("RandomShear", {}, (6, 5, 3)),
    ("RandomShear", {"x_factor": 0.3, "y_factor": [0.1, 0.2], "fill_mode": "constant"}, (6, 5, 3)),
    ("RandomErasing", {}, (6, 5, 3)),
    ("RandomErasing", {"factor": 0.5, "fill_value": 3.0, "data_format": "channels_first"}, (3, 6, 5)),
    ("RandomGaussianBlur", {}, (6, 5, 3)),
    ("RandomGaussianBlur", {"kernel_size": 5, "sigma": [0.2, 0.5], "value_range": [0, 1]}, (6, 5, 2)),
    ("RandomPerspective", {}, (6, 5, 3)),
    ("RandomPerspective", {"scale": 0.5, "interpolation": "nearest", "data_format": "channels_first"}, (3, 6, 5)),
]


@pytest.mark.parametrize("name,attrs,shape", ONE_LAYER, ids=[f"{c[0]}-{i}" for i, c in enumerate(ONE_LAYER)])
def test_identity_at_inference_as_keras(name, attrs, shape):
    """``predict`` (Keras: ``training=False``) returns the input, as Keras and the reference; a
    view in the plan; Keras's shape, no weights (test_augmentation.py's check)."""
    identity_at_inference_as_keras(name, attrs, shape)


# ----------------------------------------------------------------------------- kernels, given draws


@cache
def _kernels():
    from nnspec.runtime.kernels import jit

    fns = (A.affine_forward, A.affine_backward, AG.erase_forward, AG.erase_backward, AG.blur_forward,
           AG.blur_backward, AG.perspective_forward, AG.perspective_backward, AG.homography)  # fmt: skip
    return {f.__name__: jit(f) for f in fns}


def _shape(fmt, c=2, h=6, w=5):
    return (3, h, w, c) if fmt == "channels_last" else (3, c, h, w)


def _check_grad(dx, kdx, reference, x, dy):
    """``dx`` against Keras's autograd and float64 finite differences of ``sum(dy * reference)``."""
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    dy64 = dy.astype(np.float64)
    close(dx, _fd(lambda v: float((dy64 * reference(v)).sum()), x.astype(np.float64)), FD_TOL, "finite differences")


SHEARS = np.array([[0.3, -0.2], [-0.45, 0.0], [0.1, 0.6]], np.float32)  # (sx, sy) per image, signs included
SHEAR_CASES = [(fill, interp, "channels_last") for fill in A.FILL_MODES for interp in A.INTERPOLATIONS]
SHEAR_CASES += [("reflect", "bilinear", "channels_first"), ("constant", "nearest", "channels_first")]


@pytest.mark.parametrize("fill,interp,fmt", SHEAR_CASES, ids=["-".join(c) for c in SHEAR_CASES])
def test_shear_kernel_matches_keras(fill, interp, fmt):
    """augmentation.py's affine kernel with RandomShear's transforms (``shear_transform``) against
    Keras's transform_images given the same shear factors, the reference and finite differences."""
    torch = _torch()
    x = _images(_shape(fmt), 0, 255, 1)
    dy = _images(x.shape, -1, 1, 2)
    layer = _keras().layers.RandomShear(interpolation=interp, fill_mode=fill, fill_value=7.0, data_format=fmt)
    ky, kdx = _keras_run(layer, x, {"shear_factor": torch.tensor(SHEARS)}, dy)
    tr = np.zeros((3, 6))
    for s, (sx, sy) in enumerate(SHEARS):
        AG.shear_transform(tr, s, sx, sy)
    np.testing.assert_array_equal(tr, [AG.shear_matrix(sx, sy) for sx, sy in SHEARS])
    k = _kernels()
    cf, fi, ii = fmt == "channels_first", A.FILL_MODES.index(fill), A.INTERPOLATIONS.index(interp)
    y = np.full_like(x, np.nan)
    k["affine_forward"](x, y, tr, cf, fi, ii, 7.0)
    close(y, ky, FWD_TOL, "Keras")
    close(y, AG.shear_reference(x, SHEARS, fill, interp, 7.0, fmt), FWD_TOL, "reference")
    dx = np.zeros_like(x)
    k["affine_backward"](dy, dx, tr, cf, fi, ii)
    # the read points do not depend on x: the output is linear in x, nearest's too
    _check_grad(dx, kdx, lambda v: AG.shear_reference(v, SHEARS, fill, interp, 7.0, fmt), x, dy)


BOXES = np.array([[1.0, 3.5, 0.5, 4.0, 1.0],  # x0, x1, y0, y1, applied
                  [0.0, 5.0, 2.25, 6.0, 1.0],
                  [1.0, 4.0, 1.0, 5.0, 0.0]], np.float32)  # fmt: skip


def _keras_erasing(layer, x, boxes, fill):
    """Keras's transformation for the given boxes: its own mask builder and fill (a number or list)."""
    torch = _torch()
    b = torch.tensor(boxes)
    masks = layer._generate_batch_mask(x.shape, (b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
    return {"apply_erasing": b[:, 4] > 0, "batch_masks": masks,
            "fill_value": layer._get_fill_value(torch.tensor(x), x.shape, None)}  # fmt: skip


ERASE_CASES = [("channels_last", 300.0, [0, 255]), ("channels_first", -2.5, [0, 255]),
               ("channels_last", [0.5, -3.0, 9.0], [-1, 1]), ("channels_last", 0.25, [1, 0])]


@pytest.mark.parametrize("fmt,fill,value_range", ERASE_CASES)
def test_erasing_kernels_match_keras(fmt, fill, value_range):
    """Given boxes (image 2 not erased): the forward bit for bit against Keras (fills clipped to
    value_range as written: [1, 0] gives 0), the reference, and the gradient (none to erased
    pixels) against autograd and finite differences."""
    keras = _keras()
    x = _images(_shape(fmt, c=3), 0, 255, 3)
    dy = _images(x.shape, -1, 1, 4)
    layer = keras.layers.RandomErasing(fill_value=fill, value_range=value_range, data_format=fmt)
    ky, kdx = _keras_run(layer, x, _keras_erasing(layer, x, BOXES, fill), dy)
    f = [fill] * 3 if isinstance(fill, float) else fill
    k = _kernels()
    y = np.full_like(x, np.nan)
    k["erase_forward"](x, y, BOXES, fmt == "channels_first", *f, False, *map(float, value_range))
    np.testing.assert_array_equal(y, ky)
    fill_array = np.asarray(fill, np.float64)
    close(y, AG.erasing_reference(x, BOXES, fill_array, value_range, fmt), FWD_TOL, "reference")
    assert (y != x).any() and np.array_equal(y[2], x[2])
    dx = np.zeros_like(x)
    k["erase_backward"](dy, dx, BOXES, fmt == "channels_first")
    _check_grad(dx, kdx, lambda v: AG.erasing_reference(v, BOXES, fill_array, value_range, fmt), x, dy)


def test_erasing_noise_fill():
    """With fill_value null, erased pixels hold ``normal() * value_range[1]`` clipped to value_range
    (value_range [-100, 1]: the standard normal, clipped above at 1)."""
    from nnspec.runtime.kernels import seed_kernels

    x = np.full((40, 8, 8, 3), 5.0, np.float32)
    boxes = np.tile(np.array([[0.0, 8.0, 0.0, 8.0, 1.0]], np.float32), (40, 1))
    boxes[::2, 4] = 0.0
    y = np.empty_like(x)
    seed_kernels(5)
    _kernels()["erase_forward"](x, y, boxes, False, 0.0, 0.0, 0.0, True, -100.0, 1.0)
    np.testing.assert_array_equal(y[::2], x[::2])
    v = y[1::2].astype(np.float64).ravel()
    assert v.max() == 1.0 and v.min() > -100
    clipped = (v == 1.0).mean()
    assert abs(clipped - 0.1587) < 5 * math.sqrt(0.1587 * 0.8413 / v.size), clipped
    below = v[v < 1.0]
    assert abs(below.mean() - (-0.2876)) < 0.05 and abs(below.std() - 0.8004) < 0.05  # N(0, 1) below 1


BLUR_CASES = [("channels_last", 3, (0.5, 1.2), [0, 255]), ("channels_first", 3, (1.0, 0.3), [0, 255]),
              ("channels_last", 5, (0.8, 0.8), [40, 200]), ("channels_last", 1, (0.5, 0.5), [0, 255]),
              ("channels_last", 3, (0.9, 0.4), [200, 50])]  # fmt: skip


@pytest.mark.parametrize("fmt,size,sigmas,value_range", BLUR_CASES)
def test_blur_kernels_match_keras(fmt, size, sigmas, value_range):
    """Images 0 and 2 blurred, image 1 not; all clipped to value_range (as written: [200, 50]
    clips everything to 50, and passes no gradient): the forward against Keras and the reference,
    the gradient against autograd and finite differences."""
    torch = _torch()
    x = _images(_shape(fmt, c=2, h=7, w=6), 0, 255, 5)
    dy = _images(x.shape, -1, 1, 6)
    applied = np.array([1.0, 0.0, 1.0], np.float32)
    sig = np.array(sigmas, np.float32)
    layer = _keras().layers.RandomGaussianBlur(kernel_size=size, value_range=value_range, data_format=fmt)
    t = {"should_apply_blur": torch.tensor(applied > 0), "blur_factor": torch.tensor(sig)}
    ky, kdx = _keras_run(layer, x, t, dy)
    v = np.stack([applied, np.full(3, sig[0]), np.full(3, sig[1])], axis=1)
    k = _kernels()
    args = (fmt == "channels_first", size, *map(float, value_range))
    y = np.full_like(x, np.nan)
    k["blur_forward"](x, y, v, *args)
    close(y, ky, FWD_TOL, "Keras")

    def ref(u):
        return AG.blur_reference(u, applied, sig.astype(np.float64), size, value_range, fmt)

    close(y, ref(x), FWD_TOL, "reference")
    dx = np.zeros_like(x)
    k["blur_backward"](x, dy, dx, v, *args)
    _check_grad(dx, kdx, ref, x, dy)


def _ends(h, w, factors):
    """Keras's end points: corners + corners * factors (float32)."""
    c = AG.corners(h, w).astype(np.float32)
    return c + c * np.asarray(factors, np.float32)


PERSPECTIVE_FACTORS = np.array([[[0.1, -0.2], [0.3, 0.15], [-0.25, 0.05], [0.2, -0.3]],
                                [[0.4, 0.4], [-0.45, 0.2], [0.35, -0.4], [-0.1, 0.45]],
                                [[0.0, 0.0], [0.1, 0.1], [0.1, 0.1], [0.0, 0.0]]], np.float32)  # fmt: skip


def test_homography_matches_keras_and_numpy():
    """The kernel's Gaussian elimination against NumPy's float64 solve (1e-9) and Keras's float32
    ``compute_homography_matrix`` (float32 rounding); the homography maps the moved corners back."""
    torch = _torch()
    from keras.src.backend.torch.image import compute_homography_matrix

    h, w = 7, 6
    v = np.zeros((3, 9))
    for s in range(3):
        ends = _ends(h, w, PERSPECTIVE_FACTORS[s])
        AG.homography(v, s, ends, h, w)
        ref = AG.homography_reference(ends, h, w)
        np.testing.assert_allclose(v[s, 1:], ref.astype(np.float32), rtol=1e-6, atol=1e-7)
        start = torch.tensor(AG.corners(h, w)[None], dtype=torch.float32)
        keras_h = compute_homography_matrix(start, torch.tensor(ends[None])).numpy()[0]
        np.testing.assert_allclose(v[s, 1:], keras_h, rtol=1e-4, atol=1e-5)
        a = ref
        for (ex, ey), (cx, cy) in zip(ends.astype(np.float64), AG.corners(h, w)):
            d = a[6] * ex + a[7] * ey + 1
            assert abs((a[0] * ex + a[1] * ey + a[2]) / d - cx) < 1e-9
            assert abs((a[3] * ex + a[4] * ey + a[5]) / d - cy) < 1e-9
    v2 = np.zeros_like(v)
    _kernels()["homography"](v2, 0, _ends(h, w, PERSPECTIVE_FACTORS[0]), h, w)  # compiled as in a plan
    np.testing.assert_allclose(v2[0], v[0], rtol=1e-7)


@pytest.mark.parametrize("fmt,interp,fill", [("channels_last", "bilinear", 0.0), ("channels_last", "nearest", 9.0),
                                             ("channels_first", "bilinear", -4.0)])  # fmt: skip
def test_perspective_kernels_match_keras(fmt, interp, fill):
    """Images 0 and 1 transformed, image 2 not. Given Keras's own homography (from the same
    start and end points), the forward matches transform_images and the reference within
    float32 rounding and the gradient autograd's; the gradient against finite differences."""
    torch = _torch()
    from keras.src.backend.torch.image import compute_homography_matrix

    h, w = 7, 6
    x = _images(_shape(fmt, c=2, h=h, w=w), 0, 255, 7)
    dy = _images(x.shape, -1, 1, 8)
    applied = np.array([1.0, 1.0, 0.0], np.float32)
    ends = np.stack([_ends(h, w, f) for f in PERSPECTIVE_FACTORS])
    starts = np.repeat(AG.corners(h, w)[None].astype(np.float32), 3, axis=0)
    layer = _keras().layers.RandomPerspective(interpolation=interp, fill_value=fill, data_format=fmt)
    t = {"apply_perspective": torch.tensor(applied > 0), "start_points": torch.tensor(starts),
         "end_points": torch.tensor(ends)}  # fmt: skip
    ky, kdx = _keras_run(layer, x, t, dy)
    v = np.zeros((3, 9), np.float32)
    v[:, 0] = applied
    v[:, 1:] = compute_homography_matrix(torch.tensor(starts), torch.tensor(ends)).numpy()
    k = _kernels()
    cf, ii = fmt == "channels_first", A.INTERPOLATIONS.index(interp)
    y = np.full_like(x, np.nan)
    k["perspective_forward"](x, y, v, cf, ii, fill)
    close(y, ky, FWD_TOL, "Keras")
    np.testing.assert_array_equal(y[2], x[2])

    def ref(u):
        return AG.perspective_reference(u, applied, v[:, 1:], interp, fill, fmt)

    close(y, ref(x), FWD_TOL, "reference")
    dx = np.zeros_like(x)
    k["perspective_backward"](dy, dx, v, cf, ii)
    _check_grad(dx, kdx, ref, x, dy)
    # with our own homography (float64 solve) the output is Keras's within float32 rounding too
    for s in range(3):
        k["homography"](v, s, ends[s], h, w)
    y2 = np.full_like(x, np.nan)
    k["perspective_forward"](x, y2, v, cf, ii, fill)
    if interp == "bilinear":
        close(y2, ky, 1e-4, "Keras, own homography")


# ----------------------------------------------------------------------------- the train step


WIDE = _uniform_pixels(-0.5, 1.5)  # beyond value_range [0, 1]: the blur's clip acts

# Configurations in which Keras draws nothing random: against Keras's autograd through the train step.
# fmt: off
CASES = [
    Case("shear-none", "RandomShear", {}, ((5, 6, 2),), data=PIXELS),  # factors 0: the identity
    Case("shear-none-cf", "RandomShear", {"fill_mode": "constant", "data_format": "channels_first"}, ((2, 5, 6),)),
    Case("erase-all", "RandomErasing", {"factor": [1.0, 1.0], "scale": [1.0, 1.0], "fill_value": 3.0},
         ((5, 6, 3),), data=PIXELS),  # every image erased whole
    Case("erase-none", "RandomErasing", {"factor": 0.0, "data_format": "channels_first"}, ((3, 5, 6),), data=PIXELS),
    Case("blur-all", "RandomGaussianBlur", {"factor": [1.0, 1.0], "sigma": [0.6, 0.6]}, ((5, 6, 2),), data=PIXELS),
    Case("blur-all-clipped-cf", "RandomGaussianBlur", {"factor": [1.0, 1.0], "kernel_size": 5, "sigma": [0.9, 0.9],
         "value_range": [0, 1], "data_format": "channels_first"}, ((2, 6, 7),), data=WIDE),
    Case("perspective-still", "RandomPerspective", {"factor": [1.0, 1.0], "scale": 0.0}, ((5, 6, 2),), data=PIXELS),
    Case("perspective-none", "RandomPerspective", {"factor": 0.0, "data_format": "channels_first"}, ((2, 5, 6),)),
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
    """The training forward and input gradient of the compiled step against Keras (training=True)."""
    check_keras(SUITE.by_id[case_id], SUITE.result(case_id), TORCH_TOL)


def _deterministic_reference(case):
    """The training reference of a configuration that draws nothing random."""
    a = _attrs(case)
    fmt = a["data_format"]
    h, w = _hw(case)
    if case.type == "RandomShear":
        return lambda v: AG.shear_reference(v, np.zeros((len(v), 2)), a["fill_mode"], a["interpolation"],
                                            a["fill_value"], fmt)  # fmt: skip
    if case.type == "RandomErasing":
        applied = float(a["factor"] == [1.0, 1.0])
        return lambda v: AG.erasing_reference(v, np.tile([0, w, 0, h, applied], (len(v), 1)), a["fill_value"],
                                              a["value_range"], fmt)  # fmt: skip
    if case.type == "RandomGaussianBlur":
        sig = a["sigma"][0] + 1e-6
        return lambda v: AG.blur_reference(v, np.ones(len(v)), (sig, sig), a["kernel_size"][0], a["value_range"], fmt)
    applied = a["factor"] == [1.0, 1.0]
    identity = [1, 0, 0, 0, 1, 0, 0, 0]
    return lambda v: AG.perspective_reference(v, [applied] * len(v), [identity] * len(v), a["interpolation"], 0.0, fmt)


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
    Case("shear", "RandomShear", {"x_factor": [0.1, 0.4], "y_factor": 0.3, "fill_mode": "constant",
         "fill_value": 0.5}, ((6, 5, 2),), batch=B, kind="random"),
    Case("shear-nearest-cf", "RandomShear", {"x_factor": 0.2, "y_factor": [0.5, 0.2], "interpolation": "nearest",
         "data_format": "channels_first"}, ((2, 6, 5),), batch=B, kind="random"),
    Case("erase", "RandomErasing", {"factor": [0.3, 0.9], "scale": [0.1, 0.5], "fill_value": 1.0,
         "value_range": [0, 1]}, ((6, 5, 2),), batch=B, kind="random", data=UNIT),
    Case("erase-noise-cf", "RandomErasing", {"data_format": "channels_first"}, ((3, 6, 5),), batch=B,
         kind="random", data=PIXELS),
    Case("blur", "RandomGaussianBlur", {"factor": 0.8, "kernel_size": 5, "sigma": [0.3, 0.9]}, ((6, 5, 2),),
         batch=B, kind="random", data=PIXELS),
    Case("perspective", "RandomPerspective", {"factor": [0.4, 1.0], "scale": 0.6, "fill_value": 0.5},
         ((6, 5, 2),), batch=B, kind="random"),
    Case("perspective-nearest-cf", "RandomPerspective", {"interpolation": "nearest", "data_format": "channels_first"},
         ((2, 6, 5),), batch=B, kind="random"),
]
# fmt: on
RANDOM = GradSuite(RANDOM_CASES)


def _random_result(case_id):
    return seeded_result(RANDOM, case_id)


def _saved(case_id):
    _random_result(case_id)
    return saved_rows(RANDOM, case_id, B)


def _keras_probability(k):
    """P(uniform < U(low, high)) for a Keras layer's (low, high) factor: the mean of the range."""
    lo, hi = (float(v) for v in k.factor)
    return (lo + hi) / 2


def _keras_layer(case):
    from keras_ref import keras_layer

    return keras_layer(case.type, dict(case.attrs))


@pytest.mark.parametrize("case_id", ["shear", "shear-nearest-cf"])
def test_shear_training(case_id):
    """Saved transforms are Keras's shear matrices; |sx| and the sign-corrected sy uniform over
    Keras's ranges, the sign -1 for half of the images (one sign for both axes); the output is the
    reference with them, the gradient the finite differences through them."""
    case, r, t = RANDOM.by_id[case_id], _random_result(case_id), _saved(case_id)
    a, k = _attrs(case), _keras_layer(case)
    np.testing.assert_array_equal(t[:, [0, 2, 4, 5]], np.tile([1.0, 0.0, 1.0, 0.0], (B, 1)))
    x_lo, x_hi = (float(v) for v in k.x_factor)
    if x_lo > 0:  # sx never 0: its sign is the image's sign
        sign = np.sign(t[:, 1])
        _uniform_stats(np.abs(t[:, 1]), x_lo, x_hi)
        _uniform_stats(t[:, 3] * sign, *(float(v) for v in k.y_factor))
        _share_matches(sign < 0, 0.5)
    else:
        _uniform_stats(t[:, 1], -x_hi, x_hi)  # symmetric range: the sign does not change the law
    ref = A.affine_reference(r.inputs[0], t, a["fill_mode"], a["interpolation"], a["fill_value"], a["data_format"])
    close(r.y, ref, FWD_TOL, "training forward")

    def ref(v, s):
        return AG.shear_reference(v, t[s : s + 1, [1, 3]], a["fill_mode"], a["interpolation"], a["fill_value"],
                                  a["data_format"])  # fmt: skip

    close(r.dx[0][:2], _fd_through(case, r, ref), FD_TOL, "gradient")


@pytest.mark.parametrize("case_id", ["erase", "erase-noise-cf"])
def test_erasing_training(case_id):
    """Saved boxes: (side / size)^2 uniform over Keras's scale, starts uniform over where the box
    fits, the share erased Keras's probability; pixels outside the erased boxes unchanged, inside
    the fill (or noise within value_range); the gradient dy outside the erased boxes, 0 inside."""
    case, r, b = RANDOM.by_id[case_id], _random_result(case_id), _saved(case_id)
    a, k = _attrs(case), _keras_layer(case)
    h, w = _hw(case)
    s_lo, s_hi = (float(v) for v in k.scale)
    for lo_col, size in ((0, w), (2, h)):
        side = b[:, lo_col + 1] - b[:, lo_col]
        _uniform_stats((side / size) ** 2, s_lo, s_hi)
        _uniform_stats(b[:, lo_col] / (size - side), 0.0, 1.0)
    _share_matches(b[:, 4] == 1.0, _keras_probability(k))
    x, fmt = r.inputs[0], a["data_format"]
    erased = AG.erasing_reference(np.zeros_like(x), b, 1.0, [0, 1], fmt) == 1.0
    assert erased.any() and not erased.all()
    np.testing.assert_array_equal(r.y[~erased], x[~erased])
    np.testing.assert_array_equal(r.dx[0], np.where(erased, 0.0, r.dy))
    if a["fill_value"] is None:
        lo, hi = a["value_range"]
        assert r.y[erased].min() == lo and r.y[erased].max() == hi  # noise * 255: clipped at both ends
        assert abs((r.y[erased] == lo).mean() - 0.5) < 0.05
    else:
        close(r.y, AG.erasing_reference(x, b, a["fill_value"], a["value_range"], fmt), FWD_TOL, "training forward")


def test_blur_training():
    """One sigma pair for the whole batch (Keras: per batch), inside Keras's range; the share
    blurred Keras's probability; the output the reference with the saved draws, the gradient the
    finite differences through them. The sigma draws are uniform (the draw kernel, 300 calls)."""
    from nnspec.runtime.kernels import jit, seed_kernels

    case, r, v = RANDOM.by_id["blur"], _random_result("blur"), _saved("blur")
    a, k = _attrs(case), _keras_layer(case)
    s_lo, s_hi = (float(x) + 1e-6 for x in k.sigma)
    assert (v[:, 1] == v[0, 1]).all() and (v[:, 2] == v[0, 2]).all()
    assert s_lo - 1e-6 <= v[0, 1] <= s_hi and s_lo - 1e-6 <= v[0, 2] <= s_hi
    _share_matches(v[:, 0] == 1.0, _keras_probability(k))

    def ref(u, s=slice(None)):
        return AG.blur_reference(u, v[s, 0], v[0, 1:], a["kernel_size"][0], a["value_range"], a["data_format"])

    close(r.y, ref(r.inputs[0]), FWD_TOL, "training forward")
    close(r.dx[0][:2], _fd_through(case, r, lambda u, s: ref(u, slice(s, s + 1))), FD_TOL, "gradient")
    seed_kernels(3)
    draws = np.zeros((300, 2))
    one = np.zeros((1, AG.BLUR_SIZE), np.float32)
    for i in range(300):
        jit(AG.draw_blurs)(one, 0.0, 0.8, 0.3, 0.9)
        draws[i] = one[0, 1:]
    for col in range(2):
        _uniform_stats(draws[:, col], s_lo, s_hi)


def _moved_corners(coeffs, h, w):
    """The end points a homography maps onto the corners: its inverse applied to them."""
    a = np.append(np.asarray(coeffs, np.float64), 1.0).reshape(3, 3)
    inv = np.linalg.inv(a)
    c = np.c_[AG.corners(h, w), np.ones(4)] @ inv.T
    return c[:, :2] / c[:, 2:]


@pytest.mark.parametrize("case_id", ["perspective", "perspective-nearest-cf"])
def test_perspective_training(case_id):
    """The corners the saved homographies move (their inverse images of the corners) moved by
    factors uniform over Keras's [-scale / 2, scale / 2]; the share transformed Keras's
    probability; the output the reference with the saved draws; the gradient the finite
    differences through them."""
    case, r, v = RANDOM.by_id[case_id], _random_result(case_id), _saved(case_id)
    a, k = _attrs(case), _keras_layer(case)
    h, w = _hw(case)
    _share_matches(v[:, 0] == 1.0, _keras_probability(k))
    c = AG.corners(h, w)
    ends = np.stack([_moved_corners(v[s, 1:], h, w) for s in range(B)])
    moved = ends[:, [1, 2, 3, 3], [0, 1, 0, 1]] / c[[1, 2, 3, 3], [0, 1, 0, 1]] - 1  # the observable factors
    for col in range(4):
        _uniform_stats(moved[:, col], -0.5 * k.scale, 0.5 * k.scale)
    np.testing.assert_allclose(ends[:, 0], 0.0, atol=1e-4)  # the origin stays

    def ref(u, s=slice(None)):
        return AG.perspective_reference(u, v[s, 0], v[s, 1:], a["interpolation"], a["fill_value"], a["data_format"])

    close(r.y, ref(r.inputs[0]), FWD_TOL, "training forward")
    close(r.dx[0][:2], _fd_through(case, r, lambda u, s: ref(u, slice(s, s + 1))), FD_TOL, "gradient")


@pytest.mark.parametrize("case_id", ["shear", "erase-noise-cf", "blur", "perspective"])
def test_draws_follow_the_kernel_seed(case_id):
    _random_result(case_id)
    a, b, c = (RANDOM.output_after_step(case_id, seed) for seed in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ----------------------------------------------------------------------------- model files

# The four layers as a model would use them (random in training), then a small CNN classifier.
MODEL_FILE = _model_file("geometry_augmented", """\
  shear: {type: RandomShear, x_factor: 0.2, y_factor: [0.0, 0.1]}
  erase: {type: RandomErasing, factor: 0.5, fill_value: 0.0}
  blur: {type: RandomGaussianBlur, factor: 0.5, sigma: [0.3, 0.8]}
  warp: {type: RandomPerspective, factor: 0.5, scale: 0.3}""", "shear -> erase -> blur -> warp")


def test_model_file_summary_and_predictions_match_keras():
    """Summary rows (types, shapes, parameters) and predictions as Keras's (color tests' check)."""
    summary_and_predictions_match_keras(MODEL_FILE)


def test_model_file_trains(monkeypatch):
    """fit (2 epochs) and train_on_batch run with the four layers random in training and move every
    weight (the color tests' check, given this file)."""
    import test_augmentation_color

    monkeypatch.setattr(test_augmentation_color, "RANDOM_FILE", MODEL_FILE)
    test_augmentation_color.test_random_model_file_trains()


def test_keras_config_reads_back():
    """A Keras model using the four layers, written by Keras's ``to_json``, reads into nnspec with
    the same arguments and predictions. (RandomShear with a number factor f writes [-f, f], which
    Keras's own constructor, and so nnspec, refuses to read back.)"""
    keras = _keras()
    km = keras.Sequential([
        keras.Input(shape=(6, 5, 3)),
        keras.layers.RandomShear((0.0, 0.2), (0.4, 0.1), fill_mode="nearest"),
        keras.layers.RandomErasing(0.3, (0.1, 0.2), fill_value=2.0, value_range=(0, 1)),
        keras.layers.RandomGaussianBlur(0.4, 5, (0.2, 0.6)),
        keras.layers.RandomPerspective(0.5, 0.4, interpolation="nearest"),
        keras.layers.Flatten(),
        keras.layers.Dense(2),
    ])  # fmt: skip
    m = nnspec.model_from_json(km.to_json())
    layers = {v["type"]: v for v in m.get_config()["layers"].values()}
    assert list(layers["RandomShear"]["y_factor"]) == [0.1, 0.4] and layers["RandomShear"]["fill_mode"] == "nearest"
    assert list(layers["RandomErasing"]["scale"]) == [0.1, 0.2] and layers["RandomErasing"]["fill_value"] == 2.0
    assert list(layers["RandomGaussianBlur"]["kernel_size"]) == [5, 5]
    assert layers["RandomPerspective"]["scale"] == 0.4
    m.set_weights(km.get_weights())
    x = np.random.default_rng(0).uniform(0, 1, size=(4, 6, 5, 3)).astype(np.float32)
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")
    config = keras.layers.RandomShear(0.2).get_config()
    with pytest.raises((TypeError, ValueError)):
        keras.layers.RandomShear.from_config(config)
    written = keras.Sequential([keras.Input(shape=(6, 5, 3)), keras.layers.RandomShear(0.2)]).to_json()
    with pytest.raises(KerasConfigError, match="x_factor"):
        nnspec.model_from_json(written)


def test_python_builder_takes_keras_positional_arguments():
    from nnspec import layers

    inputs = nnspec.Input(shape=(8, 7, 3))
    x = layers.RandomShear(0.2, 0.1)(inputs)
    x = layers.RandomErasing(0.5, 0.3, 1.0)(x)
    x = layers.RandomGaussianBlur(0.5, 5, 0.4)(x)
    x = layers.RandomPerspective(0.5, 0.2)(x)
    spec = nnspec.Model(inputs, layers.Flatten()(x)).get_config()
    t = {v["type"]: v for v in spec["layers"].values()}
    assert t["RandomShear"]["y_factor"] == 0.1 and t["RandomErasing"]["fill_value"] == 1.0
    assert t["RandomGaussianBlur"]["sigma"] == 0.4 and t["RandomPerspective"]["scale"] == 0.2


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "layer,code,where",
    [({"type": "RandomShear", "x_factor": 1.5}, "E103", "layers.aug.x_factor"),
     ({"type": "RandomShear", "y_factor": -0.2}, "E103", "layers.aug.y_factor"),
     ({"type": "RandomShear", "x_factor": [0.1, -0.2]}, "E103", "layers.aug.x_factor"),
     ({"type": "RandomErasing", "factor": 1.2}, "E103", "layers.aug.factor"),
     ({"type": "RandomErasing", "scale": [0.1, 0.2, 0.3]}, "E103", "layers.aug.scale"),
     ({"type": "RandomGaussianBlur", "sigma": 1.5}, "E103", "layers.aug.sigma"),
     ({"type": "RandomGaussianBlur", "kernel_size": [3, 3, 3]}, "E103", "layers.aug.kernel_size"),
     ({"type": "RandomPerspective", "scale": 1.5}, "E103", "layers.aug.scale")],
)  # fmt: skip
def test_attributes_keras_refuses_are_schema_errors(layer, code, where):
    """Keras's constructors refuse these (factors out of [0, 1], lists not of two numbers)."""
    schema_error_as_keras(layer, code, where)


@pytest.mark.parametrize("name", ["RandomShear", "RandomPerspective"])
def test_unknown_interpolation_is_a_schema_error(name):
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec({"type": name, "interpolation": "bicubic"}))
    assert "E103" in str(err.value) and "layers.aug.interpolation" in str(err.value)
    with pytest.raises(NotImplementedError):
        getattr(_keras().layers, name)(interpolation="bicubic")


@pytest.mark.parametrize(
    "layer,shape,dtype,message",
    [({"type": "RandomShear"}, (8, 3), "float32", "rank 4"),
     ({"type": "RandomPerspective"}, (None, 8, 3), "float32", "known image"),
     ({"type": "RandomErasing"}, (8, 8, 3), "int32", "float images"),
     ({"type": "RandomGaussianBlur", "kernel_size": 4}, (8, 8, 3), "float32", "odd"),
     ({"type": "RandomGaussianBlur", "kernel_size": [3, 5]}, (8, 8, 3), "float32", "square"),
     ({"type": "RandomErasing", "fill_value": [1, 2]}, (8, 8, 3), "float32", "3 numbers"),
     ({"type": "RandomErasing", "fill_value": [1, 2, 3]}, (8, 8, 4), "float32", "last axis")],
)  # fmt: skip
def test_inputs_or_attributes_keras_fails_on_are_shape_errors(layer, shape, dtype, message):
    """Not a batch of float images; an even or non-square blur kernel (Keras refuses the first,
    fails in training on the second); a fill_value list Keras cannot broadcast."""
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer, shape, dtype))
    assert "E300" in str(err.value) and message in str(err.value), str(err.value)


def test_keras_fails_where_the_shape_rules_refuse():
    keras = _keras()
    x = np.zeros((2, 8, 8, 4), np.float32)
    with pytest.raises(ValueError, match="odd"):
        keras.layers.RandomGaussianBlur(kernel_size=4)
    with pytest.raises(RuntimeError):
        keras.layers.RandomGaussianBlur(factor=[1, 1], kernel_size=(3, 5))(x, training=True)
    with pytest.raises(RuntimeError):
        keras.layers.RandomErasing(factor=[1, 1], fill_value=[1, 2, 3])(x, training=True)
    with pytest.raises(ValueError):
        keras.layers.RandomErasing(fill_value=[1, 2])(x[..., :3], training=True)
