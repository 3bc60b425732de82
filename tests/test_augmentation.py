"""The image augmentation layers (RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness) against Keras 3 (PyTorch backend).

At inference they are the identity, in Keras as here: one-layer models and a whole model file
(RandomFlip and RandomRotation before a small CNN) predict what Keras predicts. In training
they draw random transforms, which Keras's generator cannot reproduce, so the training kernels
are checked with the transform GIVEN: each transform builder against the matrix Keras builds
from the same draw (angle, zooms, shifts), the affine kernel against
``keras.ops.image.affine_transform`` and the NumPy reference for every fill mode and
interpolation, the color kernels against Keras's ``transform_images`` with the same factor, and
every backward kernel against float64 finite differences of the reference and Keras's autograd.
The compiled train step is then checked as Dropout's is: its outputs are the reference applied
with the transforms it saved, its input gradients the finite differences through those
transforms, and the draws have Keras's ranges and distributions and follow the kernel seed.
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
from nnspec.layerdefs import augmentation as A
from nnspec.layerdefs.base import REQUIRED, bind_numpy, normalize_attrs
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import Case, GradSuite, close

bind_numpy([A])

NAMES = [d.name for d in A.LAYERS]
FD_TOL = 1e-3  # float32 kernels against float64 finite differences
TORCH_TOL = 1e-4  # against Keras on PyTorch
FWD_TOL = 1e-5  # float32 kernels against float64 references and Keras's float32 results


def _keras():
    import keras

    return keras


def _torch():
    import torch

    return torch


# ----------------------------------------------------------------------------- attributes

# Attributes Keras takes through **kwargs (BaseImagePreprocessingLayer's data_format).
THROUGH_KWARGS = {"RandomContrast": ("data_format",), "RandomBrightness": ("data_format",)}


@pytest.mark.parametrize("name", NAMES)
def test_attributes_follow_keras_constructor(name):
    keras = _keras()
    cls = getattr(keras.layers, name)
    sig = inspect.signature(cls.__init__)
    kparams = [p for n, p in sig.parameters.items() if n not in ("self", "name", "kwargs")]
    defn = REGISTRY[name]
    ours = [a for a in defn.attr_names[:-2] if a not in THROUGH_KWARGS.get(name, ())]
    assert ours == [p.name for p in kparams]
    for p in kparams:
        mine = defn.attr(p.name).default
        if p.default is inspect.Parameter.empty:
            assert mine is REQUIRED, p.name
        elif p.name == "data_format":  # Keras: None, i.e. its image_data_format, channels_last
            assert p.default is None and mine == "channels_last" == keras.config.image_data_format()
        elif isinstance(p.default, tuple):
            assert mine == [float(v) for v in p.default], p.name
        else:
            assert mine == p.default, p.name
    assert list(defn.positional) == [p.name for p in kparams[: len(defn.positional)]]
    for extra in THROUGH_KWARGS.get(name, ()):  # Keras accepts them and keeps them
        layer = cls(0.2, data_format="channels_first")
        assert layer.data_format == "channels_first" and defn.attr(extra).default == "channels_last"


# ----------------------------------------------------------------------------- inference

ONE_LAYER = [  # (type, attrs, per-sample shape)
    ("RandomFlip", {"mode": "horizontal"}, (6, 5, 3)),
    ("RandomFlip", {"data_format": "channels_first"}, (3, 6, 5)),
    ("RandomRotation", {"factor": 0.1}, (6, 5, 3)),
    ("RandomZoom", {"height_factor": [-0.2, 0.3], "width_factor": 0.1, "fill_mode": "constant"}, (6, 5, 3)),
    ("RandomTranslation", {"height_factor": 0.1, "width_factor": [-0.2, 0.1], "fill_mode": "wrap"}, (6, 5, 3)),
    ("RandomContrast", {"factor": 0.3}, (6, 5, 3)),
    ("RandomBrightness", {"factor": [-0.1, 0.2], "value_range": [0, 1]}, (6, 5, 3)),
]


@pytest.mark.parametrize("name,attrs,shape", ONE_LAYER, ids=[f"{c[0]}-{i}" for i, c in enumerate(ONE_LAYER)])
def test_identity_at_inference_as_keras(name, attrs, shape):
    """Keras returns its input at inference (``training=False``, what ``predict`` passes); so do
    the plan (a view: no kernel), the reference, and the summary's shape and zero parameters."""
    from keras_ref import keras_layer_facts

    x = kh.random_inputs((shape,), batch=4, seed=3)[0] * 50 + 100  # pixel-like values, some beyond 255
    (ours,) = kh.run_nnspec(name, attrs, [x], [])
    np.testing.assert_array_equal(ours, x)
    np.testing.assert_array_equal(kh.run_reference(name, attrs, [x], [])[0], x)
    (theirs,) = kh.run_keras(name, attrs, [x], [])
    np.testing.assert_array_equal(theirs, x)
    m = kh.build_nnspec(name, attrs, (shape,))
    (step,) = [s for s in m.plan().steps if s.node == "layer"]
    assert step.view
    shapes, weights, count = keras_layer_facts(name, attrs, [shape])
    assert shapes == [(None, *shape)] and weights == [] and count == 0
    assert m.count_params() == 0 and tuple(m.output_shape) == (None, *shape)


# ----------------------------------------------------------------------------- transforms

H, W = 7, 6


def _keras_matrix(name, draw):
    """The 8-number transform Keras builds for one image from the draw ``draw``."""
    keras, torch = _keras(), _torch()
    if name == "RandomRotation":
        layer = keras.layers.RandomRotation(0.1)
        one, zero = torch.ones(1), torch.zeros(1)
        m = layer._compute_affine_matrix(center_x=0.5, center_y=0.5, angle=torch.tensor([float(draw[0])]),
                                         translate_x=zero, translate_y=zero, scale=one, shear_x=zero,
                                         shear_y=zero, height=H, width=W)  # fmt: skip
    elif name == "RandomZoom":
        m = keras.layers.RandomZoom(0.1)._get_zoom_matrix(torch.tensor([list(draw)], dtype=torch.float32), H, W)
    else:
        m = keras.layers.RandomTranslation(0.1, 0.1)._get_translation_matrix(
            torch.tensor([list(draw)], dtype=torch.float32)
        )
    return keras.ops.convert_to_numpy(m)[0]


@pytest.mark.parametrize(
    "name,draw",
    [("RandomRotation", (30.0,)), ("RandomRotation", (-127.5,)), ("RandomRotation", (90.0,)),
     ("RandomZoom", (1.3, 0.8)), ("RandomZoom", (0.5, 1.9)),
     ("RandomTranslation", (2.5, -1.25)), ("RandomTranslation", (-3.0, 0.4))],
)  # fmt: skip
def test_transform_builders_match_keras(name, draw):
    """The same draw (degrees; width and height zooms; right and down shifts in pixels) gives
    Keras's matrix: its six affine entries, and no projective part."""
    k = _keras_matrix(name, draw)
    np.testing.assert_allclose(A.affine_matrix(name, {}, draw, H, W), k[:6], rtol=0, atol=2e-6)
    assert not k[6:].any()


@cache
def _kernels():
    from nnspec.runtime.kernels import jit

    return {f.__name__: jit(f) for f in (A.affine_forward, A.affine_backward, A.contrast_forward,
                                        A.contrast_backward, A.brightness_forward, A.brightness_backward)}  # fmt: skip


TRANSFORMS = {  # per image of a batch of two: (image 0, image 1)
    "rotation": lambda: [A.affine_matrix("RandomRotation", {}, (30.0,), H, W),
                         A.affine_matrix("RandomRotation", {}, (-75.0,), H, W)],
    "zoom": lambda: [A.affine_matrix("RandomZoom", {}, (2.0, 0.6), H, W),
                     A.affine_matrix("RandomZoom", {}, (0.7, 1.4), H, W)],
    # half-pixel shifts: nearest interpolation meets its ties (rounded to even, as torch.round)
    "shift": lambda: [A.affine_matrix("RandomTranslation", {}, (2.5, -1.5), H, W),
                      A.affine_matrix("RandomTranslation", {}, (-7.5, 9.5), H, W)],
    # points far outside the image: reflect and wrap fold several periods
    "far": lambda: [np.array([1.0, 0.2, -9.3, 0.1, 1.7, 4.2]), np.array([-2.1, 0.3, 20.0, 0.4, -2.6, -3.0])],
}


def _batch(transform: str):
    return np.stack([np.asarray(t, np.float32) for t in TRANSFORMS[transform]()])


def _image(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _keras_affine(x, tr, fill, interp, fill_value, fmt, grad=None):
    """keras.ops.image.affine_transform on the same transforms; with ``grad`` also the gradient
    of ``sum(grad * y)`` with respect to ``x`` (torch autograd)."""
    keras, torch = _keras(), _torch()
    t8 = torch.tensor(np.concatenate([tr, np.zeros((len(tr), 2), np.float32)], axis=1))
    xt = torch.tensor(x, requires_grad=grad is not None)
    y = keras.ops.image.affine_transform(xt, t8, interpolation=interp, fill_mode=fill, fill_value=fill_value,
                                        data_format=fmt)  # fmt: skip
    if grad is None:
        return y.detach().numpy(), None
    (y * torch.tensor(grad)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


def _affine(x, tr, fill, interp, fill_value, fmt):
    y = np.full_like(x, np.nan)
    _kernels()["affine_forward"](x, y, tr, fmt == "channels_first", A.FILL_MODES.index(fill),
                                 A.INTERPOLATIONS.index(interp), fill_value)  # fmt: skip
    return y


def _affine_grad(dy, tr, fill, interp, fmt, start=0.0):
    dx = np.full_like(dy, start)
    _kernels()["affine_backward"](dy, dx, tr, fmt == "channels_first", A.FILL_MODES.index(fill),
                                  A.INTERPOLATIONS.index(interp))  # fmt: skip
    return dx


AFFINE_CASES = [(t, fill, interp, "channels_last") for t in TRANSFORMS for fill in A.FILL_MODES
                for interp in A.INTERPOLATIONS]  # fmt: skip
AFFINE_CASES += [("rotation", fill, "bilinear", "channels_first") for fill in A.FILL_MODES]
AFFINE_CASES += [("shift", "reflect", "nearest", "channels_first")]


def _shape(fmt):
    return (2, H, W, 3) if fmt == "channels_last" else (2, 3, H, W)


@pytest.mark.parametrize("transform,fill,interp,fmt", AFFINE_CASES, ids=["-".join(c) for c in AFFINE_CASES])
def test_affine_kernel_matches_keras_and_reference(transform, fill, interp, fmt):
    x = _image(_shape(fmt), 1)
    tr = _batch(transform)
    y = _affine(x, tr, fill, interp, 0.7, fmt)
    k, _ = _keras_affine(x, tr, fill, interp, 0.7, fmt)
    close(y, k, FWD_TOL, "against keras.ops.image.affine_transform")
    close(y, A.affine_reference(x, tr, fill, interp, 0.7, fmt), FWD_TOL, "against the reference")
    if interp == "nearest":  # whole pixels (or fill_value): exactly what Keras reads
        np.testing.assert_array_equal(y, k)


def _fd(f, x, h=1e-6):
    """Central differences of the scalar ``f`` over every entry of float64 ``x``."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        v = flat[i]
        flat[i] = v + h
        up = f(x)
        flat[i] = v - h
        down = f(x)
        flat[i] = v
        gf[i] = (up - down) / (2 * h)
    return g


GRAD_CASES = [(t, fill, interp, "channels_last") for t in ("rotation", "far") for fill in A.FILL_MODES
              for interp in A.INTERPOLATIONS]  # fmt: skip
GRAD_CASES += [("zoom", fill, "bilinear", "channels_first") for fill in A.FILL_MODES]


@pytest.mark.parametrize("transform,fill,interp,fmt", GRAD_CASES, ids=["-".join(c) for c in GRAD_CASES])
def test_affine_gradient_against_finite_differences_and_keras(transform, fill, interp, fmt):
    """The input's gradient through the given transforms: float64 finite differences of
    ``sum(dy * reference(x))``, and torch autograd through Keras's affine_transform; the kernel
    adds into ``dx`` (starting from 1 gives 1 + the gradient)."""
    x = _image(_shape(fmt), 2)
    dy = _image(_shape(fmt), 3)
    tr = _batch(transform)
    dx = _affine_grad(dy, tr, fill, interp, fmt)
    dy64 = dy.astype(np.float64)
    ref = _fd(lambda v: float((dy64 * A.affine_reference(v, tr, fill, interp, 0.7, fmt)).sum()), x.astype(np.float64))
    close(dx, ref, FD_TOL, "finite differences")
    _, kdx = _keras_affine(x, tr, fill, interp, 0.7, fmt, grad=dy)
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    # float32 sums of up to a few dozen contributions (the edge pixel under nearest fill), started
    # from 1 instead of 0, round differently: within 1e-5 of the gradient's scale, not exactly
    close(_affine_grad(dy, tr, fill, interp, fmt, start=1.0) - 1.0, dx, 1e-5, "accumulated into dx")


FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode", FLIP_MODES)
def test_flip_kernel_matches_keras(mode, fmt):
    """Image 0 flipped, image 1 not: the affine kernel with flip_transform against Keras's
    RandomFlip with the same draws, exactly; the gradient is the same flip of dy."""
    keras, torch = _keras(), _torch()
    x = _image(_shape(fmt), 4)
    tr = np.stack([A.affine_matrix("RandomFlip", {"mode": mode}, (flip,), H, W) for flip in (True, False)])
    tr = tr.astype(np.float32)
    y = _affine(x, tr, "nearest", "nearest", 0.0, fmt)
    layer = keras.layers.RandomFlip(mode, data_format=fmt)
    flips = torch.tensor([True, False]).reshape(2, 1, 1, 1)
    k = keras.ops.convert_to_numpy(layer._flip_inputs(torch.tensor(x), {"flips": flips}))
    np.testing.assert_array_equal(y, k)
    np.testing.assert_array_equal(y[1], x[1])
    np.testing.assert_array_equal(_affine_grad(y, tr, "nearest", "nearest", fmt), x)  # a flip undoes itself


# ----------------------------------------------------------------------------- color

COLOR_CASES = [
    ("RandomContrast", "channels_last", (-2.0, 2.0)),
    ("RandomContrast", "channels_first", (-1.5, 3.0)),
    ("RandomBrightness", "channels_last", (-2.0, 2.0)),
]


def _color_kernel(name, x, v, fmt, lo, hi):
    y = np.full_like(x, np.nan)
    v2 = np.asarray(v, np.float32).reshape(-1, 1)
    k = _kernels()
    if name == "RandomContrast":
        k["contrast_forward"](x, y, v2, fmt == "channels_first", lo, hi)
    else:
        k["brightness_forward"](x.reshape(len(x), -1), y.reshape(len(x), -1), v2, lo, hi)
    return y


def _color_grad(name, x, dy, v, fmt, lo, hi):
    dx = np.zeros_like(x)
    v2 = np.asarray(v, np.float32).reshape(-1, 1)
    k = _kernels()
    if name == "RandomContrast":
        k["contrast_backward"](x, dy, dx, v2, fmt == "channels_first", lo, hi)
    else:
        n = len(x)
        k["brightness_backward"](x.reshape(n, -1), dy.reshape(n, -1), dx.reshape(n, -1), v2, lo, hi)
    return dx


def _color_reference(name, x, v, fmt, vr):
    if name == "RandomContrast":
        return A.contrast_reference(x, v, vr, fmt)
    return A.brightness_reference(x, v, vr)


def _keras_color(name, x, v, fmt, vr, grad):
    """Keras's transform_images with the given factor (contrast) or delta (brightness), and the
    input's gradient of ``sum(grad * y)``."""
    keras, torch = _keras(), _torch()
    layer = getattr(keras.layers, name)(0.5, value_range=vr, data_format=fmt)
    xt = torch.tensor(x, requires_grad=True)
    key = "contrast_factor" if name == "RandomContrast" else "rgb_delta"
    # Keras's RandomBrightness adds in place: give it a copy, not the leaf
    y = layer.transform_images(xt * 1.0, {key: torch.tensor(np.float32(v)).reshape(-1, 1, 1, 1)}, training=True)
    (y * torch.tensor(grad)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("name,fmt,vr", COLOR_CASES, ids=[f"{c[0]}-{c[1]}" for c in COLOR_CASES])
def test_color_kernels_match_keras_reference_and_finite_differences(name, fmt, vr):
    """Given factors (contrast) or deltas (brightness), one per image, some of the outputs
    clipped to value_range: forward and input gradient against Keras's transform_images and
    autograd, the reference, and finite differences (which see no gradient where clipped)."""
    x = _image(_shape(fmt), 5) * 1.5
    dy = _image(_shape(fmt), 6)
    v = [0.6, 1.7] if name == "RandomContrast" else [0.9, -1.3]
    lo, hi = vr
    y = _color_kernel(name, x, v, fmt, lo, hi)
    ref = _color_reference(name, x.astype(np.float64), v, fmt, vr)
    assert ((ref == lo) | (ref == hi)).mean() > 0.05  # the clipping is exercised
    close(y, ref, FWD_TOL, "reference")
    ky, kdx = _keras_color(name, x, v, fmt, vr, dy)
    close(y, ky, FWD_TOL, "Keras")
    dx = _color_grad(name, x, dy, v, fmt, lo, hi)
    close(dx, kdx, TORCH_TOL, "Keras autograd")
    dy64 = dy.astype(np.float64)
    fd = _fd(lambda z: float((dy64 * _color_reference(name, z, v, fmt, vr)).sum()), x.astype(np.float64))
    close(dx, fd, FD_TOL, "finite differences")


# ----------------------------------------------------------------------------- training step

B = 100  # images per random case: enough for the statistics below
# fmt: off
RANDOM_CASES = [
    Case("flip-h", "RandomFlip", {"mode": "horizontal"}, ((5, 4, 2),), batch=B, kind="random"),
    Case("flip-v-cf", "RandomFlip", {"mode": "vertical", "data_format": "channels_first"}, ((2, 5, 4),),
         batch=B, kind="random"),
    Case("flip-hv", "RandomFlip", {}, ((5, 4, 2),), batch=B, kind="random"),
    Case("rotation", "RandomRotation", {"factor": [-0.05, 0.15]}, ((6, 5, 2),), batch=B, kind="random"),
    Case("rotation-constant-nearest", "RandomRotation", {"factor": 0.2, "fill_mode": "constant",
         "interpolation": "nearest", "fill_value": 0.5}, ((6, 5, 2),), batch=B, kind="random"),
    Case("zoom", "RandomZoom", {"height_factor": [-0.3, 0.2], "width_factor": 0.4, "fill_mode": "wrap"},
         ((6, 5, 2),), batch=B, kind="random"),
    Case("zoom-same-cf", "RandomZoom", {"height_factor": 0.3, "data_format": "channels_first"}, ((2, 6, 5),),
         batch=B, kind="random"),
    Case("translation", "RandomTranslation", {"height_factor": 0.2, "width_factor": [0.3, -0.1],
         "fill_mode": "nearest"}, ((6, 5, 2),), batch=B, kind="random"),
    Case("contrast", "RandomContrast", {"factor": [0.2, 0.5], "value_range": [-2, 2]}, ((6, 5, 2),),
         batch=B, kind="random"),
    Case("contrast-number-cf", "RandomContrast", {"factor": 0.4, "value_range": [-2.5, 2.5],
         "data_format": "channels_first"}, ((2, 6, 5),), batch=B, kind="random"),
    Case("td-flip", "TimeDistributed", {"layer": {"type": "RandomFlip", "mode": "horizontal"}}, ((3, 5, 4, 2),),
         batch=B, kind="random"),
    Case("brightness", "RandomBrightness", {"factor": [-0.2, 0.3], "value_range": [1.0, -1.0]}, ((6, 5, 2),),
         batch=B, kind="random"),
]
# fmt: on
SUITE = GradSuite(RANDOM_CASES)


def saved_rows(suite, case_id, batch):
    """What the train step saved for case ``case_id``'s layer (its transforms, or its draws per
    image: the first array it saves, a row per image), read from the saved-for-backward
    workspace at the offset the generated code gives it. Shared by the augmentation tests."""
    key = suite.group_of[case_id]
    m = suite.run_group(key)["model"][0]
    (tr,) = m._trainers.values()
    k = [c.id for c in suite.members(key)].index(case_id)
    op = REGISTRY[suite.by_id[case_id].type].op
    lines = tr.source.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == f"# {op} c{k}")
    line = next(line for line in lines[at + 1 :] if "sws[" in line)  # after the output's binding
    found = re.search(r"sws\[(\d+) \* n:.*\.reshape\(\(n, (\d+),?\)\)", line)
    off, size = int(found.group(1)), int(found.group(2))
    sws = tr.buffers(batch)[2]
    return sws[off * batch : off * batch + batch * size].reshape(batch, size).astype(np.float64)


def seeded_result(suite, case_id):
    """The case's train-step result, its group run once after seeding the kernels' generator
    (so statistics of the draws are reproducible)."""
    from nnspec.runtime.kernels import seed_kernels

    if suite.group_of[case_id] not in suite._runs:
        seed_kernels(1234)
    return suite.result(case_id)


def _saved(case_id):
    return saved_rows(SUITE, case_id, B)


def _attrs(case):
    return normalize_attrs(REGISTRY[case.type], case.attrs)


def _hw(case):
    fmt = _attrs(case).get("data_format", "channels_last")
    s = case.shapes[0]
    return (s[1], s[2]) if fmt == "channels_first" else (s[0], s[1])


def _fd_through(case, r, saved, samples=2):
    """Finite differences of ``sum(dy * f(x))`` for the first ``samples`` images, ``f`` the
    layer's training reference with the saved transform of each image."""
    a = _attrs(case)
    fill, interp = a.get("fill_mode", "nearest"), a.get("interpolation", "nearest")

    def training_reference(v, t):
        if case.type in ("RandomContrast", "RandomBrightness"):
            return _color_reference(case.type, v, t[:, 0], a["data_format"], a["value_range"])
        return A.affine_reference(v, t, fill, interp, a.get("fill_value", 0.0), a["data_format"])

    out = []
    for s in range(samples):
        dy, t = r.dy[s : s + 1].astype(np.float64), saved[s : s + 1]
        out.append(_fd(lambda v, dy=dy, t=t: float((dy * training_reference(v, t)).sum()),
                       r.inputs[0][s : s + 1].astype(np.float64)))  # fmt: skip
    return np.concatenate(out)


def _uniform_stats(values, lo, hi):
    """Draws uniform in [lo, hi]: all inside, mean and standard deviation within 5 standard
    errors of the uniform's (100 draws)."""
    values = np.asarray(values, np.float64)
    assert values.min() >= lo - 1e-5 and values.max() <= hi + 1e-5, (values.min(), values.max(), lo, hi)
    width = hi - lo
    assert abs(values.mean() - (lo + hi) / 2) < 5 * width / math.sqrt(12 * len(values))
    assert abs(values.std() - width / math.sqrt(12)) < 0.25 * width / math.sqrt(12)


@pytest.mark.parametrize("case_id", ["flip-h", "flip-v-cf", "flip-hv"])
def test_flip_training(case_id):
    """Each image comes out as it went in or flipped along the mode's axes (both at once for
    horizontal_and_vertical: one draw, as Keras), about half of them flipped; the saved
    transform says which, and the input's gradient is the output's gradient flipped back."""
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    a = _attrs(case)
    x, y = r.inputs[0], r.y
    cf = a["data_format"] == "channels_first"
    rows, cols = (2, 3) if cf else (1, 2)
    axes = {"horizontal": (cols,), "vertical": (rows,), "horizontal_and_vertical": (rows, cols)}[a["mode"]]
    flipped = np.flip(x, axes)
    was_flipped = np.array([np.array_equal(y[s], flipped[s]) and not np.array_equal(y[s], x[s]) for s in range(B)])
    same = np.array([np.array_equal(y[s], x[s]) for s in range(B)])
    assert (was_flipped | same).all() and not (was_flipped & same).any()
    assert 0.3 < was_flipped.mean() < 0.7  # 100 draws of 1/2: 4 standard deviations
    saved = _saved(case_id)
    h, w = _hw(case)
    for s in range(B):
        np.testing.assert_array_equal(saved[s], A.affine_matrix("RandomFlip", a, (bool(was_flipped[s]),), h, w))
    np.testing.assert_array_equal(r.dx[0], np.where(was_flipped[:, None, None, None], np.flip(r.dy, axes), r.dy))


def test_time_distributed_flip_draws_per_frame():
    """Under TimeDistributed each frame is an image of its own, as in Keras (which calls the
    layer on the frames folded into the batch): frames of one video are flipped independently,
    and each frame's gradient is flipped back with it."""
    keras, torch = _keras(), _torch()
    r = SUITE.result("td-flip")
    x, y = r.inputs[0], r.y
    flipped_x = np.flip(x, 3)

    def flips(out):
        f = np.array([[np.array_equal(out[s, t], flipped_x[s, t]) for t in range(3)] for s in range(B)])
        same = np.array([[np.array_equal(out[s, t], x[s, t]) for t in range(3)] for s in range(B)])
        assert (f | same).all()
        return f

    ours = flips(y)
    assert 0.35 < ours.mean() < 0.65  # 300 draws of 1/2: over 5 standard deviations

    def mixed(f):  # the share of videos with both kinds of frames
        return (f.any(axis=1) & ~f.all(axis=1)).mean()

    theirs = flips(keras.layers.TimeDistributed(keras.layers.RandomFlip("horizontal"))(torch.tensor(x), training=True)
                   .numpy())  # fmt: skip
    assert mixed(ours) > 0.5 and mixed(theirs) > 0.5  # 3/4 expected for independent frames
    np.testing.assert_array_equal(r.dx[0], np.where(ours[:, :, None, None, None], np.flip(r.dy, 3), r.dy))


GEOMETRIC = ["rotation", "rotation-constant-nearest", "zoom", "zoom-same-cf", "translation"]


def _keras_ranges(case):
    """The ranges Keras draws from for the case's layer, read from the Keras layer built with
    the same attributes (its sorted, bounded factors)."""
    from keras_ref import keras_layer

    k = keras_layer(case.type, dict(case.attrs))
    if case.type == "RandomRotation":
        return {"degrees": (k.factor[0] * 360, k.factor[1] * 360)}
    if case.type == "RandomContrast":
        return {"factor": (1 - k.factor[0], 1 + k.factor[1])}
    if case.type == "RandomBrightness":
        width = k.value_range[1] - k.value_range[0]
        return {"delta": (k.factor[0] * width, k.factor[1] * width)}
    h, w = _hw(case)
    if case.type == "RandomZoom":
        wl, wh = (k.height_lower, k.height_upper) if k.width_factor is None else (k.width_lower, k.width_upper)
        return {"zy": (1 + k.height_lower, 1 + k.height_upper), "zx": (1 + wl, 1 + wh)}
    return {"dy": (k.height_lower * h, k.height_upper * h), "dx": (k.width_lower * w, k.width_upper * w)}


def _draws(case, saved):
    """The random draws behind each saved transform, and Keras's range of each draw."""
    ranges = _keras_ranges(case)
    if case.type == "RandomRotation":
        values = {"degrees": np.degrees(np.arctan2(saved[:, 3], saved[:, 0]))}
    elif case.type == "RandomZoom":
        values = {"zy": saved[:, 4], "zx": saved[:, 0]}
    else:
        values = {"dy": -saved[:, 5], "dx": -saved[:, 2]}
    return {k: (v, *ranges[k]) for k, v in values.items()}


@pytest.mark.parametrize("case_id", GEOMETRIC)
def test_geometric_training(case_id):
    """The output is the reference applied with the transforms the step saved; each saved
    transform is the layer's (rebuilt from its draw by the builders checked against Keras), its
    draws uniform over Keras's range; the input's gradient is the finite differences through
    those transforms."""
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    a = _attrs(case)
    saved = _saved(case_id)
    ref = A.affine_reference(r.inputs[0], saved, a["fill_mode"], a["interpolation"], a["fill_value"], a["data_format"])
    close(r.y, ref, FWD_TOL, "training forward")
    h, w = _hw(case)
    draws = _draws(case, saved)
    for s in range(B):
        d = {k: v[0][s] for k, v in draws.items()}
        params = (d["degrees"],) if "degrees" in d else (d["zx"], d["zy"]) if "zx" in d else (d["dx"], d["dy"])
        np.testing.assert_allclose(saved[s], A.affine_matrix(case.type, a, params, h, w), rtol=0, atol=1e-5)
    for values, lo, hi in draws.values():
        _uniform_stats(values, lo, hi)
    if case.type == "RandomZoom" and a["width_factor"] is None:  # one zoom keeps the aspect ratio
        np.testing.assert_array_equal(draws["zx"][0], draws["zy"][0])
    close(r.dx[0][:2], _fd_through(case, r, saved), FD_TOL, "input gradient")


@pytest.mark.parametrize("case_id,low,high", [("contrast", 0.8, 1.5), ("contrast-number-cf", 1.0, 1.4),
                                              ("brightness", -0.4, 0.6)])  # fmt: skip
def test_color_training(case_id, low, high):
    """Contrast factors in [1 - low, 1 + high] (a number f reads as [1, 1 + f], as Keras's
    factor bounds (0, 1) make it), brightness deltas in factor * the width of value_range
    (Keras sorts it: [1, -1] is [-1, 1]); the output is the reference with the saved draws and
    the gradient the finite differences through them."""
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    a = _attrs(case)
    saved = _saved(case_id)
    (keras_range,) = _keras_ranges(case).values()
    np.testing.assert_allclose(keras_range, (low, high), rtol=0, atol=1e-12)  # the reading above is Keras's
    _uniform_stats(saved[:, 0], low, high)
    ref = _color_reference(case.type, r.inputs[0], saved[:, 0], a["data_format"], a["value_range"])
    close(r.y, ref, FWD_TOL, "training forward")
    close(r.dx[0][:2], _fd_through(case, r, saved), FD_TOL, "input gradient")


@pytest.mark.parametrize("case_id", ["rotation", "flip-hv", "brightness"])
def test_draws_follow_the_kernel_seed(case_id):
    a, b, c = (SUITE.output_after_step(case_id, seed) for seed in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ----------------------------------------------------------------------------- a model file

# Keras's "image classification from scratch", small: the augmentation is a Sequential
# sub-model (a file without edges) applied to the input, as the tutorial's data_augmentation.
AUGMENTED_CNN = """
format: nnspec/1
name: augmented_cnn
models:
  data_augmentation:
    inputs:
      image: {shape: [16, 14, 3]}
    layers:
      flip: {type: RandomFlip, mode: horizontal}
      rotate: {type: RandomRotation, factor: 0.1}
inputs:
  image: {shape: [16, 14, 3]}
layers:
  augment: {type: Model, model: data_augmentation}
  scale: {type: Rescaling, scale: 0.00392156862745098}
  conv: {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  pool: {type: MaxPooling2D}
  flat: {type: Flatten}
  out: {type: Dense, units: 3, activation: softmax}
edges:
  - image -> augment -> scale -> conv -> pool -> flat -> out
outputs: [out]
"""


def _images(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, 16, 14, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


@pytest.fixture(scope="module")
def augmented_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("augment") / "augmented_cnn.yaml"
    path.write_text(AUGMENTED_CNN)
    return path


def test_model_file_predicts_what_keras_predicts(augmented_file):
    from grad_harness import nnspec_and_keras

    m, km = nnspec_and_keras(str(augmented_file), seed=4)
    # Conv2D 3*3*3*4 + 4, Dense (7*6*4)*3 + 3; the augmentation layers and Rescaling have none
    assert m.count_params() == km.count_params() == 112 + 507
    x, _ = _images(6, 0)
    close(m.predict(x), km.predict(x, verbose=0), 1e-5, "predictions")


def test_model_file_trains_with_fit_and_the_cli(augmented_file, tmp_path):
    from click.testing import CliRunner

    from nnspec.cli.main import cli

    x, y = _images(48, 1)
    m = nnspec.load(str(augmented_file), seed=2)
    before = [w.copy() for w in m.get_weights()]
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    hist = m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert all(np.isfinite(v) for v in hist.history["loss"]) and len(hist.history["loss"]) == 2
    assert all(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
    np.savez(tmp_path / "train.npz", image=x, out=y)
    out = tmp_path / "w.safetensors"
    r = CliRunner().invoke(cli, ["fit", str(augmented_file), "--data", str(tmp_path / "train.npz"), "--loss",
                                 "categorical_crossentropy", "--epochs", "1", "--batch-size", "16",
                                 "--weights-out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "619 parameters after 1 epoch" in r.output and out.exists()


def test_same_seed_same_weights_after_training(augmented_file):
    """The augmentation draws follow fit's seed: two runs with one seed end with the same
    weights, a run with another seed with other weights."""
    x, y = _images(32, 3)

    def trained(seed):
        m = nnspec.load(str(augmented_file), seed=2)
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, seed=seed)
        return m.get_weights()

    a, b, c = trained(7), trained(7), trained(8)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_python_builder_writes_the_tutorial_layers():
    """``layers.RandomFlip("horizontal")``, ``layers.RandomRotation(0.1)`` as in Keras's
    "image classification from scratch", positional arguments as Keras's."""
    from nnspec import layers

    inputs = nnspec.Input(shape=(16, 14, 3))
    x = layers.RandomFlip("horizontal")(inputs)
    x = layers.RandomRotation(0.1)(x)
    x = layers.RandomZoom(0.2, (-0.1, 0.3))(x)
    m = nnspec.Model(inputs, layers.Flatten()(x))
    spec = m.get_config()
    types = {v["type"]: v for v in spec["layers"].values()}
    assert types["RandomFlip"]["mode"] == "horizontal" and types["RandomRotation"]["factor"] == 0.1
    assert list(types["RandomZoom"]["width_factor"]) == [-0.1, 0.3]


# ----------------------------------------------------------------------------- errors


def _spec(layer, shape=(8, 8, 3), dtype="float32"):
    return {"format": "nnspec/1", "inputs": {"x": {"shape": list(shape), "dtype": dtype}},
            "layers": {"aug": layer}, "edges": ["x -> aug"], "outputs": ["aug"]}  # fmt: skip


@pytest.mark.parametrize(
    "layer,code,where",
    [({"type": "RandomRotation", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "RandomRotation", "factor": [-0.2, 1.2]}, "E103", "layers.aug.factor"),
     ({"type": "RandomRotation", "factor": [0.1, 0.2, 0.3]}, "E103", "layers.aug.factor"),
     ({"type": "RandomRotation", "factor": "big"}, "E100", "layers.aug.factor"),
     ({"type": "RandomRotation"}, "E102", "layers.aug"),
     ({"type": "RandomRotation", "factor": 0.1, "fill_mode": "mirror"}, "E103", "layers.aug.fill_mode"),
     ({"type": "RandomRotation", "factor": 0.1, "interpolation": "bicubic"}, "E103", "layers.aug.interpolation"),
     ({"type": "RandomZoom", "height_factor": -1.0}, "E103", "layers.aug.height_factor"),
     ({"type": "RandomZoom", "height_factor": 0.2, "width_factor": [0.1, -1.0]}, "E103", "layers.aug.width_factor"),
     ({"type": "RandomTranslation", "height_factor": 0.1}, "E102", "layers.aug"),
     ({"type": "RandomContrast", "factor": -0.1}, "E103", "layers.aug.factor"),
     ({"type": "RandomContrast", "factor": 0.1, "value_range": [0, 1, 2]}, "E103", "layers.aug.value_range"),
     ({"type": "RandomBrightness", "factor": 0.1, "value_range": 255}, "E100", "layers.aug.value_range"),
     ({"type": "RandomFlip", "mode": "diagonal"}, "E103", "layers.aug.mode")],
)  # fmt: skip
def test_attributes_keras_refuses_are_schema_errors(layer, code, where):
    """What Keras's constructors refuse (factors out of their bounds, lists not of two numbers,
    unknown fill modes and interpolations) is refused at validation with the attribute's path."""
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer))
    text = str(err.value)
    assert code in text and where in text, text


@pytest.mark.parametrize(
    "shape,dtype,message",
    [((8, 3), "float32", "rank 4"), ((8, 8, 8, 3), "float32", "rank 4"), ((None, 8, 3), "float32", "known image"),
     ((8, 8, 3), "int32", "float images")],
)  # fmt: skip
def test_inputs_that_are_not_batches_of_float_images_are_shape_errors(shape, dtype, message):
    for name, attrs in [("RandomFlip", {}), ("RandomRotation", {"factor": 0.1}), ("RandomContrast", {"factor": 0.1})]:
        with pytest.raises(SpecError) as err:
            nnspec.Model.from_config(_spec({"type": name, **attrs}, shape, dtype))
        assert "E300" in str(err.value) and message in str(err.value), str(err.value)
