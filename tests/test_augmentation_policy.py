"""The augmentation policy layers (RandAugment, AugMix) against Keras 3 (PyTorch backend).

- Attributes: Keras's constructor arguments, order, defaults; Keras's factor reading and the
  sub-layers Keras builds (operation lists in Keras's order, each sub-layer's factor, fill mode
  and interpolation) are what the kernels draw and run; what Keras refuses is a schema or shape
  error.
- Inference: both predict their input, as Keras (a view in the plan), no weights.
- Kernels with GIVEN choices and draws: every operation's slot kernel against Keras's
  ``transform_images`` (RandAugment's, with that operation chosen and the same transformation) and
  the NumPy reference, its backward against Keras's autograd and float64 finite differences (0
  through posterization and Equalization's lookup, as autograd); a chain with a repeated
  operation (RandAugment) and AugMix's chains, weights and clip against Keras.
- Draws: each operation's per-image draws uniform over the ranges read from Keras's sub-layers;
  the choices per batch (RandAugment: each of 11 operations 1/11; AugMix: each of its list and the
  skip 1/(len + 1)); repeated RandAugment operations share their draws; AugMix's weights
  Dirichlet and Beta.
- The compiled train step: configurations without effect (``CASES``: RandAugment's num_ops 0,
  AugMix's chain_depth 0) against Keras's autograd and finite differences; random configurations
  by their saved draws, the output and input gradient against Keras's ``transform_images`` and
  autograd given those draws, over several steps; draws follow the kernel seed.
- Model files: summary and predictions against Keras; fit and train_on_batch run.
"""

from __future__ import annotations

import math
import re
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import (
    REGISTRY,
    augmentation,
    augmentation_color,
    augmentation_geometry,
    augmentation_mix,
)
from nnspec.layerdefs import augmentation_policy as AP
from nnspec.layerdefs.base import bind_numpy, normalize_attrs
from nnspec.specs.errors import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grad_harness import Case, GradSuite, check_fd, check_keras, close, value_reader
from test_augmentation import _fd, _spec, _uniform_stats  # shared helpers
from test_augmentation import test_identity_at_inference_as_keras as identity_at_inference_as_keras
from test_augmentation_color import (  # shared tolerances, imports
    FD_TOL,
    FWD_TOL,
    PIXELS,
    TORCH_TOL,
    UNIT,
    _images,
    _keras,
    _keras_run,
    _model_file,
    _share_matches,
    _torch,
)
from test_augmentation_color import (
    test_model_file_summary_and_predictions_match_keras as summary_and_predictions_match_keras,
)
from test_augmentation_mix import _beta_stats, _check_grad
from test_augmentation_mix import (
    test_attributes_follow_keras_constructor as attributes_follow_keras_constructor,
)

bind_numpy([AP, augmentation, augmentation_color, augmentation_geometry, augmentation_mix])

NAMES = [d.name for d in AP.LAYERS]


# ----------------------------------------------------------------------------- attributes


@pytest.mark.parametrize("name", NAMES)
def test_attributes_follow_keras_constructor(name):
    """Keras's arguments in its order with its defaults, and its positional order (the mix tests' check)."""
    attributes_follow_keras_constructor(name)


def _emitted_ranges(attrs):
    """What the draw kernels are given for ``attrs``: (factor low, high, posterization bits)."""
    a = normalize_attrs(REGISTRY["RandAugment"], attrs)
    return (*AP.factor_range(a["factor"], 0.0), AP.posterization_bits(a))


@pytest.mark.parametrize("factor", [0.5, 0.3, [0.7, 0.2], 0.05, 1.0])
@pytest.mark.parametrize("name", NAMES)
def test_keras_sub_layers_are_what_the_kernels_run(name, factor):
    """Keras's operation lists (their order gives the codes), each sub-layer's factor as the
    draw kernels read it, reflect fill for the geometric ones, the interpolation passed on."""
    keras = _keras()
    layer = getattr(keras.layers, name)(factor=factor, interpolation="nearest")
    lo, hi, bits = _emitted_ranges({"factor": factor})
    assert tuple(layer.factor) == (lo, hi)
    if name == "RandAugment":
        assert tuple(layer._AUGMENT_LAYERS) == AP.OPS
    else:
        from keras.src.layers.preprocessing.image_preprocessing import aug_mix

        assert [AP.OPS[c] for c in AP.AUG_MIX_CODES] == aug_mix.AUGMENT_LAYERS_ALL
        assert [AP.OPS[c] for c in AP.AUG_MIX_CODES[: AP.AUG_MIX_BASIC]] == aug_mix.AUGMENT_LAYERS
    assert tuple(layer.random_shear.x_factor) == tuple(layer.random_shear.y_factor) == (lo, hi)
    t = layer.random_translation
    assert (t.height_lower, t.height_upper, t.width_lower, t.width_upper) == (lo, hi, lo, hi)
    assert tuple(layer.random_rotation.factor) == (lo, hi)
    for sub in (layer.random_shear, t, layer.random_rotation):
        assert sub.fill_mode == "reflect" and sub.fill_value == 0.0 and sub.interpolation == "nearest"
    for sub in ("random_brightness", "random_color_degeneration", "random_contrast", "random_sharpness"):
        assert tuple(getattr(layer, sub).factor) == (lo, hi), sub
    s = layer.solarization
    assert tuple(s.addition_factor) == tuple(s.threshold_factor) == (lo, hi)
    assert tuple(layer.random_posterization.factor) == (1, bits)
    assert layer.equalization.bins == AP.BINS


# ----------------------------------------------------------------------------- inference

ONE_LAYER = [  # (type, attrs, per-sample shape)
    ("RandAugment", {}, (6, 5, 3)),
    ("RandAugment", {"num_ops": 4, "factor": 0.8, "value_range": [0, 1], "data_format": "channels_first"}, (3, 6, 5)),
    ("AugMix", {}, (6, 5, 3)),
    ("AugMix", {"all_ops": False, "num_chains": 2, "data_format": "channels_first"}, (1, 6, 5)),
]


@pytest.mark.parametrize("name,attrs,shape", ONE_LAYER, ids=[f"{c[0]}-{i}" for i, c in enumerate(ONE_LAYER)])
def test_identity_at_inference_as_keras(name, attrs, shape):
    """``predict`` (Keras: ``training=False``) returns the input, as Keras and the reference; a
    view in the plan; Keras's shape, no weights (test_augmentation.py's check)."""
    identity_at_inference_as_keras(name, attrs, shape)


# ----------------------------------------------------------------------------- kernels, given draws


@cache
def _kernels():
    from nnspec.runtime.kernels import bind, jit

    bind()
    fns = (AP.policy_forward, AP.policy_backward, AP.draw_rand_augment, AP.draw_aug_mix, AP.aug_mix_accumulate,
           AP.aug_mix_output, AP.aug_mix_output_backward, AP.aug_mix_chain_grad)  # fmt: skip
    out = {f.__name__: jit(f) for f in fns}
    out["_draw_op"] = AP._draw_op  # compiled in place by the first jit() of this module's kernels
    return out


def _given_draws(op, n, h, w, value_range):
    """Per-image draws of operation ``op`` (nnspec's layout, rows of 6) chosen to reach the
    operations' interesting parts: large shears and turns, clipped brightness and contrast, few
    bits, solarized pixels on both sides of the threshold."""
    rows = np.zeros((n, AP.DRAW_SIZE))
    width = abs(value_range[1] - value_range[0])
    for s in range(n):
        k = s % 3
        if op == AP.SHEAR:
            augmentation_geometry.shear_transform(rows, s, (0.3, -0.45, 0.1)[k], (0.2, -0.1, 0.4)[k])
        elif op == AP.TRANSLATION:
            augmentation.translation_transform(rows, s, (1.5, 0.4, 2.9)[k], (2.25, 3.1, 0.0)[k])
        elif op == AP.ROTATION:
            augmentation.rotation_transform(rows, s, (30.0, 170.0, 95.0)[k], h, w)
        elif op == AP.BRIGHTNESS:
            rows[s, 0] = (0.15, 0.45, 0.02)[k] * width
        elif op == AP.DEGENERATION:
            rows[s, 0] = (0.1, 0.45, 0.3)[k]
        elif op == AP.CONTRAST:
            rows[s, 0] = (1.2, 1.5, 1.05)[k]
        elif op == AP.SHARPNESS:
            rows[s, 0] = (0.05, 0.3, 0.5)[k]
        elif op == AP.POSTERIZATION:
            rows[s, 0] = (1, 2, 3)[k]
        elif op == AP.SOLARIZATION:
            rows[s, 0], rows[s, 1] = (10.0, 60.0, 100.0)[k], (50.0, 120.0, 20.0)[k]
    return rows.astype(np.float32)


def _keras_op_transformation(layer, op, draws, x):
    """Keras's transformation of sub-layer ``op`` of ``layer`` holding ``draws`` (nnspec's layout):
    its own draw with the values replaced."""
    torch = _torch()
    sub = getattr(layer, AP.OPS[op])
    t = sub.get_random_transformation(torch.tensor(x), training=True)
    n = len(draws)

    def per_image(q):
        return torch.tensor(draws[:, q].astype(np.float32)).reshape(n, 1, 1, 1)

    if op == AP.SHEAR:
        t["shear_factor"] = torch.tensor(np.stack([draws[:, 1], draws[:, 3]], axis=1).astype(np.float32))
    elif op == AP.TRANSLATION:
        t["translations"] = torch.tensor(np.stack([-draws[:, 2], -draws[:, 5]], axis=1).astype(np.float32))
    elif op == AP.ROTATION:
        t["rotation_matrix"] = torch.tensor(np.concatenate([draws, np.zeros((n, 2))], axis=1).astype(np.float32))
    elif op == AP.BRIGHTNESS:
        t["rgb_delta"] = per_image(0)
    elif op == AP.DEGENERATION:
        t["factor"] = per_image(0)
    elif op == AP.CONTRAST:
        t["contrast_factor"] = per_image(0)
    elif op == AP.SHARPNESS:
        t["factor"] = torch.tensor(draws[:, 0].astype(np.float32))
    elif op == AP.POSTERIZATION:
        t["shift_factor"] = torch.tensor((8 - draws[:, 0]).astype(np.uint8))
    elif op == AP.SOLARIZATION:
        t["additions"], t["thresholds"] = per_image(0), per_image(1)
    return t


def _keras_rand_augment(layer, ops, draws, x):
    """RandAugment's transformation: the chosen operations with their slots' draws (``draws``:
    rows, slots, 6), the others Keras's own draws (not applied)."""
    torch = _torch()
    transforms = {}
    for op, name in enumerate(AP.OPS):
        if op in list(ops):
            transforms[name] = _keras_op_transformation(layer, op, draws[:, list(ops).index(op)], x)
        else:
            transforms[name] = getattr(layer, name).get_random_transformation(torch.tensor(x), training=True)
    return {"transforms": transforms, "layer_idxes": torch.tensor(np.asarray(ops, np.int64))}


@pytest.fixture
def out_of_place_brightness(monkeypatch):
    """Keras's RandomBrightness.transform_images with its ``images += rgb_delta`` made out of
    place: RandAugment calls every operation on every slot and its in-place add then shifts the
    images whether brightness is chosen or not (a Keras bug: see
    test_keras_rand_augment_shifts_brightness_in_every_slot); nnspec applies what Keras intends."""
    from keras.src.layers.preprocessing.image_preprocessing.random_brightness import RandomBrightness

    def transform_images(self, images, transformation, training=True):
        if not training:
            return images
        delta = self.backend.cast(transformation["rgb_delta"], images.dtype)
        return self.backend.numpy.clip(images + delta, self.value_range[0], self.value_range[1])

    monkeypatch.setattr(RandomBrightness, "transform_images", transform_images)


def _keras_aug_mix(layer, ops, draws, weights, m, depth, x):
    """AugMix's transformation: chain c's slots ``c * depth ...`` (skips left out) with their draws."""
    torch = _torch()
    chains = []
    for c in range(len(weights)):
        chain = []
        for k in range(c * depth, (c + 1) * depth):
            if int(ops[k]) != AP.SKIP:
                t = _keras_op_transformation(layer, int(ops[k]), draws[:, k], x)
                chain.append({"layer_name": AP.OPS[int(ops[k])], "transformation": t})
        chains.append(chain)
    return {"chain_mixing_weights": torch.tensor(np.asarray(weights, np.float32)),
            "weight_sample": torch.tensor(np.float32(m)), "chain_transforms": chains}  # fmt: skip


def _slot_arrays(ops, draws):
    """The saved arrays the kernels read: codes (rows, slots) and draws (rows, slots * 6)."""
    n = draws.shape[0]
    return (np.tile(np.asarray(ops, np.float32), (n, 1)),
            np.ascontiguousarray(draws.reshape(n, -1), dtype=np.float32))  # fmt: skip


def _run_slots(x, ops, draws, slots, args):
    """The plan's forward through ``slots``: each slot's output from the previous one; returns
    the slot inputs and the last output."""
    k = _kernels()
    o, d = _slot_arrays(ops, draws)
    inputs, src = [], x
    for j in slots:
        dst = np.full_like(x, np.nan)
        k["policy_forward"](o, d, j, src, dst, *args)
        inputs.append(src)
        src = dst
    return inputs, src


def _back_slots(dy, ops, draws, slots, inputs, args):
    """The plan's backward through ``slots`` (given their inputs): the gradient of the first input."""
    k = _kernels()
    o, d = _slot_arrays(ops, draws)
    g = dy
    for j in range(len(slots) - 1, -1, -1):
        dx = np.zeros_like(dy)
        k["policy_backward"](o, d, slots[j], inputs[j], g, dx, *args)
        g = dx
    return g


def _args(fmt, interp, value_range):
    return fmt == "channels_first", AP.INTERPOLATIONS.index(interp), *map(float, value_range)


OP_CASES = [(op, "channels_last", "bilinear", [0, 255], 3) for op in range(len(AP.OPS))]
OP_CASES += [(op, "channels_first", "nearest", [0, 1], 3) for op in (AP.SHEAR, AP.ROTATION, AP.CONTRAST,
                                                                    AP.SOLARIZATION, AP.AUTO_CONTRAST, AP.EQUALIZATION,
                                                                    AP.DEGENERATION)]  # fmt: skip
# grayscale images: Keras's color degeneration of 1 channel only clips (its grayscale is the image)
OP_CASES += [(AP.DEGENERATION, "channels_last", "bilinear", [0, 255], 1),
             (AP.DEGENERATION, "channels_first", "bilinear", [0, 1], 1),
             (AP.SHARPNESS, "channels_first", "bilinear", [0, 255], 1)]  # fmt: skip


@pytest.mark.parametrize("op,fmt,interp,value_range,channels", OP_CASES,
                         ids=[f"{AP.OPS[c[0]]}-{c[1]}-{c[2]}-{c[3][1]}-{c[4]}" for c in OP_CASES])  # fmt: skip
def test_each_operation_matches_keras(op, fmt, interp, value_range, channels, out_of_place_brightness):
    """Operation ``op`` alone in a slot with given draws: the forward against RandAugment's
    transform_images with that operation chosen (Keras's where over every operation) and the
    reference; the backward against Keras's autograd and finite differences (posterization and
    an equalized channel: 0, Keras's output has no graph there)."""
    shape = (3, 6, 5, channels) if fmt == "channels_last" else (3, channels, 6, 5)
    h, w = (6, 5)
    x = _images(shape, *value_range, 1)
    if op == AP.DEGENERATION and channels == 1:  # pixels outside the range too: the clip acts
        lo, hi = value_range
        x = _images(shape, lo - (hi - lo) / 4, hi + (hi - lo) / 4, 1)
    dy = _images(shape, -1, 1, 2)
    draws = _given_draws(op, 3, h, w, value_range)[:, None]
    layer = _keras().layers.RandAugment(value_range=value_range, num_ops=1, interpolation=interp, data_format=fmt)
    ky, kdx = _keras_run(layer, x, _keras_rand_augment(layer, [op], draws, x), dy)
    args = _args(fmt, interp, value_range)
    inputs, y = _run_slots(x, [op], draws, [0], args)
    assert not np.array_equal(y, x) or op == AP.SKIP

    def ref(u):
        return AP.rand_augment_reference(u, [op], draws, value_range, interp, fmt)

    close(y, ky, FWD_TOL, "Keras")
    close(y, ref(x), FWD_TOL, "reference")
    dx = _back_slots(dy, [op], draws, [0], inputs, args)
    if op in (AP.POSTERIZATION, AP.EQUALIZATION):
        np.testing.assert_array_equal(dx, 0.0)  # uniform pixels: every channel equalized
    _check_grad(dx, kdx, ref, x, dy)


def test_rand_augment_chain_matches_keras(out_of_place_brightness):
    """Slots rotation, solarization, rotation (the same draws twice, as Keras's one transformation
    per operation), contrast: the chain against Keras's transform_images and the reference, the
    gradient against autograd and finite differences."""
    x = _images((3, 6, 5, 3), 0, 255, 3)
    dy = _images(x.shape, -1, 1, 4)
    ops = [AP.ROTATION, AP.SOLARIZATION, AP.ROTATION, AP.CONTRAST]
    draws = np.stack([_given_draws(op, 3, 6, 5, [0, 255]) for op in ops], axis=1)
    layer = _keras().layers.RandAugment(num_ops=len(ops))
    ky, kdx = _keras_run(layer, x, _keras_rand_augment(layer, ops, draws, x), dy)
    args = _args("channels_last", "bilinear", [0, 255])
    inputs, y = _run_slots(x, ops, draws, range(len(ops)), args)

    def ref(u):
        return AP.rand_augment_reference(u, ops, draws, [0, 255])

    close(y, ky, FWD_TOL, "Keras")
    close(y, ref(x), FWD_TOL, "reference")
    _check_grad(_back_slots(dy, ops, draws, range(len(ops)), inputs, args), kdx, ref, x, dy)


def _aug_mix_kernels(x, dy, ops, draws, mix, chains, depth, args):
    """The plan's AugMix forward and backward with the given slots and weights (``mix``: w, m)."""
    k = _kernels()
    n = len(x)
    mix_rows = np.tile(np.asarray(mix, np.float32), (n, 1))
    flat = (n, -1)
    aug = np.zeros_like(x)
    chain_inputs = []
    for c in range(chains):
        slots = list(range(c * depth, (c + 1) * depth))
        inputs, out = _run_slots(x, ops, draws, slots, args) if depth else ([], x)
        chain_inputs.append(inputs)
        k["aug_mix_accumulate"](aug.reshape(flat), out.reshape(flat), mix_rows, c)
    y = np.full_like(x, np.nan)
    lo, hi = args[2:]
    k["aug_mix_output"](x.reshape(flat), aug.reshape(flat), y.reshape(flat), mix_rows, chains, lo, hi)
    dx, gaug = np.zeros_like(x), np.full_like(x, np.nan)
    k["aug_mix_output_backward"](x.reshape(flat), aug.reshape(flat), dy.reshape(flat), dx.reshape(flat),
                                 gaug.reshape(flat), mix_rows, chains, lo, hi)  # fmt: skip
    for c in range(chains):
        g = np.zeros_like(x)
        k["aug_mix_chain_grad"](gaug.reshape(flat), g.reshape(flat), mix_rows, c)
        slots = list(range(c * depth, (c + 1) * depth))
        dx += _back_slots(g, ops, draws, slots, chain_inputs[c], args) if depth else g
    return y, dx


AUG_MIX_KERNEL_CASES = [  # (slots, chains, depth, value_range, data_format)
    ([AP.ROTATION, AP.SOLARIZATION, AP.SKIP, AP.CONTRAST, AP.SHEAR, AP.BRIGHTNESS], 3, 2, [0, 255], "channels_last"),
    ([AP.SHARPNESS, AP.TRANSLATION, AP.DEGENERATION, AP.AUTO_CONTRAST], 2, 2, [10, 200], "channels_first"),  # clipped
]


@pytest.mark.parametrize("ops,chains,depth,value_range,fmt", AUG_MIX_KERNEL_CASES)
def test_aug_mix_kernels_match_keras(ops, chains, depth, value_range, fmt):
    """Given slots (a skipped one), chain weights and m: the mix against Keras's AugMix
    transform_images and the reference; the gradient (through the clip, the mix and each chain)
    against autograd and finite differences."""
    shape = (3, 6, 5, 3) if fmt == "channels_last" else (3, 3, 6, 5)
    x = _images(shape, 0, 255, 5)
    dy = _images(shape, -1, 1, 6)
    draws = np.stack([_given_draws(op, 3, 6, 5, value_range) for op in ops], axis=1)
    weights = np.array([0.5, 0.2, 0.3][:chains], np.float32)
    weights /= weights.sum()
    m = 0.35
    layer = _keras().layers.AugMix(value_range=value_range, num_chains=chains, chain_depth=depth, data_format=fmt)
    ky, kdx = _keras_run(layer, x, _keras_aug_mix(layer, ops, draws, weights, m, depth, x), dy)
    y, dx = _aug_mix_kernels(x, dy, ops, draws, [*weights, m], chains, depth, _args(fmt, "bilinear", value_range))

    def ref(u):
        return AP.aug_mix_reference(u, ops, draws, weights, m, value_range, depth, "bilinear", fmt)

    close(y, ky, FWD_TOL, "Keras")
    close(y, ref(x), FWD_TOL, "reference")
    _check_grad(dx, kdx, ref, x, dy)


def test_keras_gradient_is_nan_through_an_operation_not_chosen(out_of_place_brightness):
    """A documented difference: Keras computes every operation and keeps the chosen one with
    ``where``; autograd multiplies the zero gradient of AutoContrast (not chosen) by its infinite
    derivative on a constant channel, so Keras's input gradient is NaN there. nnspec runs only the
    chosen operation (brightness here) and gives its gradient."""
    x = _images((2, 6, 5, 3), 0, 255, 7)
    x[0, :, :, 1] = 77.0
    dy = _images(x.shape, -1, 1, 8)
    draws = _given_draws(AP.BRIGHTNESS, 2, 6, 5, [0, 255])[:, None]
    layer = _keras().layers.RandAugment(num_ops=1)
    ky, kdx = _keras_run(layer, x, _keras_rand_augment(layer, [AP.BRIGHTNESS], draws, x), dy)
    args = _args("channels_last", "bilinear", [0, 255])
    inputs, y = _run_slots(x, [AP.BRIGHTNESS], draws, [0], args)
    dx = _back_slots(dy, [AP.BRIGHTNESS], draws, [0], inputs, args)
    close(y, ky, FWD_TOL, "Keras")
    assert np.isnan(kdx[0, :, :, 1]).all() and not np.isnan(np.delete(kdx, 1, axis=3)).any()
    brightness = np.where((x + draws[:, 0, 0, None, None, None] <= 255), dy, 0.0)
    close(dx, brightness, 0.0, "brightness's gradient")
    close(np.delete(dx, 1, axis=3), np.delete(kdx, 1, axis=3), TORCH_TOL, "Keras elsewhere")


@pytest.mark.parametrize("op", [AP.SHEAR, AP.BRIGHTNESS, AP.CONTRAST, AP.SOLARIZATION])
def test_keras_rand_augment_shifts_brightness_in_every_slot(op):
    """A documented difference: Keras's RandomBrightness adds its delta to the images IN PLACE, and
    RandAugment calls every operation on every slot (keeping the chosen one with ``where``), so
    Keras's slot with operation c gives c(x) + delta (c before brightness in its list), clip(x +
    delta) (brightness) or c(x + delta) (after it), unclipped. nnspec's slot gives c(x), which
    Keras's output is with the add made out of place."""
    x = _images((3, 6, 5, 3), 0, 255, 9)
    draws = _given_draws(op, 3, 6, 5, [0, 255])[:, None]
    delta = _given_draws(AP.BRIGHTNESS, 3, 6, 5, [0, 255])
    layer = _keras().layers.RandAugment(num_ops=1)
    t = _keras_rand_augment(layer, [op], draws, x)
    t["transforms"]["random_brightness"] = _keras_op_transformation(layer, AP.BRIGHTNESS, delta, x)
    ky, _ = _keras_run(layer, x, t, np.zeros_like(x))
    shift = delta[:, 0, None, None, None].astype(np.float64)
    if op < AP.BRIGHTNESS:
        expected = AP.op_reference(op, x, draws[:, 0], [0, 255]) + shift
    elif op == AP.BRIGHTNESS:
        expected = AP.op_reference(op, x, delta, [0, 255])
    else:
        expected = AP.op_reference(op, x + shift, draws[:, 0], [0, 255])
    close(ky, expected, FWD_TOL, "Keras's in-place add")
    _, y = _run_slots(x, [op], draws, [0], _args("channels_last", "bilinear", [0, 255]))
    close(y, AP.op_reference(op, x, draws[:, 0], [0, 255]), FWD_TOL, "nnspec: the operation alone")
    assert op == AP.BRIGHTNESS or np.abs(ky - y).max() > 1.0


# ----------------------------------------------------------------------------- draws


def _draw_rows(op, factor, value_range, n=2000, h=6, w=5):
    from nnspec.runtime.kernels import seed_kernels

    seed_kernels(op + 1)
    lo, hi, bits = _emitted_ranges({"factor": factor})
    tr, thr = np.zeros((n, AP.DRAW_SIZE), np.float32), np.zeros((n, 1), np.float32)
    _kernels()["_draw_op"](op, tr, thr, lo, hi, bits, *sorted(map(float, value_range)), h, w)
    return tr, thr


@pytest.mark.parametrize("factor,value_range", [(0.5, [0, 255]), ([0.2, 0.7], [-1, 1])])
def test_operation_draws_within_keras_ranges(factor, value_range):
    """Each operation's per-image draws (2000 images) uniform over the range read from Keras's
    sub-layer (shears with a random sign; translations times the image's size; turns times 360;
    brightness times the value range's width; contrast 1 - low .. 1 + high; posterization whole
    bits in [1, P), P Keras's factor; solarization's two draws times 255)."""
    layer = _keras().layers.RandAugment(value_range=value_range, factor=factor)
    h, w = 6, 5
    tr, _ = _draw_rows(AP.SHEAR, factor, value_range)
    lo, hi = layer.random_shear.x_factor
    _share_matches(tr[:, 1] < 0, 0.5)
    assert (np.sign(tr[:, 1]) == np.sign(tr[:, 3])).all()
    _uniform_stats(np.abs(tr[:, 1]), lo, hi)
    _uniform_stats(np.abs(tr[:, 3]), lo, hi)
    tr, _ = _draw_rows(AP.TRANSLATION, factor, value_range)
    t = layer.random_translation
    _uniform_stats(-tr[:, 5], t.height_lower * h, t.height_upper * h)
    _uniform_stats(-tr[:, 2], t.width_lower * w, t.width_upper * w)
    tr, _ = _draw_rows(AP.ROTATION, factor, value_range)
    angles = np.degrees(np.arctan2(tr[:, 3], tr[:, 0]))
    angles = np.where(angles < layer.random_rotation.factor[0] * 360 - 1e-3, angles + 360, angles)
    _uniform_stats(angles, *(v * 360 for v in layer.random_rotation.factor))
    width = abs(value_range[1] - value_range[0])
    for op, (a, b) in ((AP.BRIGHTNESS, [v * width for v in layer.random_brightness.factor]),
                       (AP.DEGENERATION, layer.random_color_degeneration.factor),
                       (AP.CONTRAST, (1 - layer.random_contrast.factor[0], 1 + layer.random_contrast.factor[1])),
                       (AP.SHARPNESS, layer.random_sharpness.factor)):  # fmt: skip
        tr, _ = _draw_rows(op, factor, value_range)
        _uniform_stats(tr[:, 0], a, b)
        assert not tr[:, 1:].any()
    tr, _ = _draw_rows(AP.POSTERIZATION, factor, value_range)
    p_lo, p_hi = layer.random_posterization.factor
    assert set(np.unique(tr[:, 0])) == set(range(p_lo, max(p_hi, p_lo + 1)))
    tr, thr = _draw_rows(AP.SOLARIZATION, factor, value_range)
    s = layer.solarization
    _uniform_stats(tr[:, 0], s.addition_factor[0], s.addition_factor[1] * 255)
    _uniform_stats(thr[:, 0], s.threshold_factor[0], s.threshold_factor[1] * 255)


def test_rand_augment_choices():
    """Per call one code per slot, the same for every image, each of the 11 operations with share
    1/11 (3000 calls of 3 slots); a repeated operation's slots hold the same draws."""
    from nnspec.runtime.kernels import seed_kernels

    seed_kernels(5)
    k = _kernels()
    ops, d = np.zeros((4, 3), np.float32), np.zeros((4, 3 * AP.DRAW_SIZE), np.float32)
    codes, repeats = [], 0
    for _ in range(3000):
        k["draw_rand_augment"](ops, d, 3, 0.0, 0.5, 4, 0.0, 255.0, 6, 5)
        assert (ops == ops[0]).all()
        codes += list(ops[0])
        for a in range(3):
            for b in range(a):
                if ops[0, a] == ops[0, b] and ops[0, a] not in (AP.AUTO_CONTRAST, AP.EQUALIZATION):
                    repeats += 1
                    slot = slice(a * AP.DRAW_SIZE, (a + 1) * AP.DRAW_SIZE)
                    np.testing.assert_array_equal(d[:, slot], d[:, b * AP.DRAW_SIZE : (b + 1) * AP.DRAW_SIZE])
    codes = np.array(codes)
    for op in range(len(AP.OPS)):
        _share_matches(codes == op, 1 / len(AP.OPS))
    assert repeats > 100


@pytest.mark.parametrize("all_ops,alpha", [(True, 1.0), (False, 0.4)])
def test_aug_mix_choices_and_weights(all_ops, alpha):
    """Per call (2000 calls of 3 chains of 2 slots), the same in every row: each operation of
    AugMix's list and the skip with share 1/(len + 1); chain weights summing to 1 with Dirichlet's
    mean 1/3 and a Beta(alpha, alpha) weight m."""
    from nnspec.runtime.kernels import seed_kernels

    seed_kernels(6)
    k = _kernels()
    choices = len(AP.AUG_MIX_CODES) if all_ops else AP.AUG_MIX_BASIC
    ops, d = np.zeros((2, 6), np.float32), np.zeros((2, 6 * AP.DRAW_SIZE), np.float32)
    mix = np.zeros((2, 4), np.float32)
    codes, weights, ms = [], [], []
    for _ in range(2000):
        k["draw_aug_mix"](ops, d, mix, 3, 2, choices, alpha, 0.0, 0.3, 2, 0.0, 255.0, 6, 5)
        assert (ops == ops[0]).all() and (mix == mix[0]).all()
        codes += list(ops[0])
        weights.append(mix[0, :3].copy())
        ms.append(mix[0, 3])
    codes, weights = np.array(codes), np.array(weights, np.float64)
    for op in [*AP.AUG_MIX_CODES[:choices], AP.SKIP]:
        _share_matches(codes == op, 1 / (choices + 1))
    assert set(np.unique(codes)) == {*AP.AUG_MIX_CODES[:choices], AP.SKIP}
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    sd = math.sqrt((1 / 3) * (2 / 3) / (3 * alpha + 1))  # Dirichlet(alpha, alpha, alpha)'s marginal
    for c in range(3):
        assert abs(weights[:, c].mean() - 1 / 3) < 5 * sd / math.sqrt(len(weights))
        assert abs(weights[:, c].std() - sd) < 0.25 * sd
    _beta_stats(np.array(ms, np.float64), alpha)


# ----------------------------------------------------------------------------- the train step

# Configurations in which Keras applies nothing: against Keras's autograd through the train step.
# fmt: off
CASES = [
    Case("rand-augment-none", "RandAugment", {"num_ops": 0}, ((6, 5, 3),), data=PIXELS),
    # the chains copy the images: m x + (1 - m) sum(w) x, x within float32 rounding (w and m random)
    Case("aug-mix-depth-0", "AugMix", {"chain_depth": 0, "num_chains": 2, "value_range": [0, 1],
         "data_format": "channels_first"}, ((3, 6, 5),), data=UNIT),
]
# fmt: on
SUITE = GradSuite(CASES)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_train_step_against_keras_and_finite_differences(case_id):
    """The training forward and input gradient of the compiled step against Keras (training=True)
    and the finite differences of the reference (the identity)."""
    case, r = SUITE.by_id[case_id], SUITE.result(case_id)
    check_keras(case, r, TORCH_TOL)
    check_fd(case, r, FD_TOL)


B = 4  # images per random case: the draws' statistics are checked on the draw kernels above
# fmt: off
RANDOM_CASES = [
    Case("rand-augment", "RandAugment", {"num_ops": 3, "factor": 0.6}, ((6, 5, 3),), batch=B, kind="random",
         data=PIXELS),
    Case("aug-mix-cf", "AugMix", {"num_chains": 2, "chain_depth": 2, "value_range": [0, 1], "factor": [0.2, 0.5],
         "alpha": 0.8, "interpolation": "nearest", "data_format": "channels_first"}, ((3, 6, 5),), batch=B,
         kind="random", data=UNIT),
]
# fmt: on
RANDOM = GradSuite(RANDOM_CASES)


def _saved_arrays(case_id):
    """Every array the train step saved for the case's layer (rows first), in ``saved``'s order,
    read from the saved-for-backward workspace at the offsets the generated code gives them."""
    key = RANDOM.group_of[case_id]
    m = RANDOM.run_group(key)["model"][0]
    (tr,) = m._trainers.values()
    k = [c.id for c in RANDOM.members(key)].index(case_id)
    op = REGISTRY[RANDOM.by_id[case_id].type].op
    lines = tr.source.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == f"# {op} c{k}")
    sws = tr.buffers(B)[2]
    out = []
    for line in lines[at + 1 :]:
        if line.strip().startswith("#"):
            break
        found = re.search(r"sws\[(\d+) \* n:.*\.reshape\(\(n, ([\d, ]+),?\)\)", line)
        if found:
            off = int(found.group(1))
            shape = tuple(int(v) for v in found.group(2).split(",") if v.strip())
            size = math.prod(shape)
            out.append(sws[off * B : off * B + B * size].reshape(B, *shape).copy())
    return out


def _step(case_id, seed):
    """One more train step of the case's model with the kernels seeded: (input, output, output
    gradient, input gradient, saved arrays)."""
    from nnspec.runtime.kernels import seed_kernels

    key = RANDOM.group_of[case_id]
    m, raw, targets = RANDOM.run_group(key)["model"]
    k = [c.id for c in RANDOM.members(key)].index(case_id)
    seed_kernels(seed)
    m.train_on_batch(raw, targets)
    (tr,) = m._trainers.values()
    plan = tr.plan
    ws, gws = tr.buffers(B)[:2]
    read = value_reader(plan, B)
    pre = next(s for s in plan.steps if s.node == f"c{k}_pre0")
    vid = plan.outputs[k][1]
    return raw[k], read(ws, vid), read(gws, vid), read(gws, pre.outputs[0]), _saved_arrays(case_id)


def _keras_layer(case):
    from keras_ref import keras_layer

    return keras_layer(case.type, dict(case.attrs))


# Kernel seeds whose steps together apply all 11 operations (test_training_steps_cover_every_operation);
# seed 4's posterization and Equalization give the input no gradient.
RAND_AUGMENT_SEEDS = [1, 4, 8, 11, 12]


def test_training_steps_cover_every_operation():
    used = set()
    for seed in RAND_AUGMENT_SEEDS:
        used |= set(_step("rand-augment", seed)[4][0][0].astype(int))
    assert used == set(range(len(AP.OPS)))


@pytest.mark.parametrize("seed", RAND_AUGMENT_SEEDS)
def test_rand_augment_training(seed, out_of_place_brightness):
    """Each step's saved codes (the same in every row) and draws explain its output: Keras's
    transform_images with those choices and draws, and the reference; the input gradient is
    autograd's (and the finite differences' of the reference for the first image)."""
    case = RANDOM.by_id["rand-augment"]
    x, y, dy, dx, saved = _step("rand-augment", seed)
    ops_rows, d = saved[0], saved[1]
    assert len(saved) == 2 + 2 + 2 and (ops_rows == ops_rows[0]).all()
    ops = ops_rows[0].astype(int)
    draws = d.reshape(B, 3, AP.DRAW_SIZE)
    layer = _keras_layer(case)
    ky, kdx = _keras_run(layer, x, _keras_rand_augment(layer, ops, draws, x), dy)
    close(y, ky, FWD_TOL, f"Keras (operations {[AP.OPS[o] for o in ops]})")
    close(dx, kdx, TORCH_TOL, "Keras autograd")

    def ref(u):
        return AP.rand_augment_reference(u, ops, draws[: len(u)], [0, 255])

    close(y, ref(x), FWD_TOL, "reference")
    if AP.EQUALIZATION not in ops:  # Equalization's histogram is the batch's: no per-image reference
        dy64 = dy[:1].astype(np.float64)
        close(dx[:1], _fd(lambda u: float((dy64 * ref(u)).sum()), x[:1].astype(np.float64)), FD_TOL, "gradient")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aug_mix_training(seed):
    """Each step's saved codes, weights and draws (the same codes and weights in every row, the
    weights Dirichlet's: positive, summing to 1) explain its output: Keras's transform_images with
    those chains and the reference; the input gradient is autograd's (and the finite differences'
    of the reference for the first image)."""
    case = RANDOM.by_id["aug-mix-cf"]
    a = normalize_attrs(REGISTRY[case.type], case.attrs)
    x, y, dy, dx, saved = _step("aug-mix-cf", seed)
    ops_rows, d, mix = saved[:3]
    assert (ops_rows == ops_rows[0]).all() and (mix == mix[0]).all()
    ops, weights, m = ops_rows[0].astype(int), mix[0, :2], float(mix[0, 2])
    assert (weights > 0).all() and abs(weights.sum() - 1) < 1e-6 and 0 <= m <= 1
    assert set(ops) <= {*AP.AUG_MIX_CODES, AP.SKIP}
    draws = d.reshape(B, 4, AP.DRAW_SIZE)
    layer = _keras_layer(case)
    ky, kdx = _keras_run(layer, x, _keras_aug_mix(layer, ops, draws, weights, m, 2, x), dy)
    close(y, ky, FWD_TOL, f"Keras (slots {[AP.OPS[o] if o < AP.SKIP else None for o in ops]})")
    close(dx, kdx, TORCH_TOL, "Keras autograd")

    def ref(u):
        return AP.aug_mix_reference(u, ops, draws[: len(u)], weights, m, a["value_range"], 2, a["interpolation"],
                                    a["data_format"])  # fmt: skip

    close(y, ref(x), FWD_TOL, "reference")
    if AP.EQUALIZATION not in ops:  # Equalization's histogram is the batch's: no per-image reference
        dy64 = dy[:1].astype(np.float64)
        close(dx[:1], _fd(lambda u: float((dy64 * ref(u)).sum()), x[:1].astype(np.float64)), FD_TOL, "gradient")


@pytest.mark.parametrize("case_id", [c.id for c in RANDOM_CASES])
def test_draws_follow_the_kernel_seed(case_id):
    RANDOM.result(case_id)
    a, b, c = (RANDOM.output_after_step(case_id, seed) for seed in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ----------------------------------------------------------------------------- model files

MODEL_FILE = _model_file("policy_augmented", """\
  rand: {type: RandAugment, num_ops: 3, factor: 0.7}
  mix: {type: AugMix, num_chains: 2, chain_depth: 2}""", "rand -> mix")


def test_model_file_summary_and_predictions_match_keras():
    """Summary rows (types, shapes, parameters) and predictions as Keras's (color tests' check)."""
    summary_and_predictions_match_keras(MODEL_FILE)


def test_model_file_trains():
    """fit (2 epochs) and train_on_batch run with both layers random in training and move every weight."""
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, size=(24, 12, 10, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 24)]
    m = nnspec.load(MODEL_FILE, seed=2)
    before = [w.copy() for w in m.get_weights()]
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    hist = m.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=3)
    assert all(np.isfinite(v) for v in hist.history["loss"]) and len(hist.history["loss"]) == 2
    assert all(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
    assert np.isfinite(float(np.ravel(m.train_on_batch(x[:8], y[:8]))[0]))


def test_python_builder_takes_keras_positional_arguments():
    from nnspec import layers

    inputs = nnspec.Input(shape=(8, 7, 3))
    x = layers.RandAugment([0, 1], 3, 0.4, "nearest")(inputs)
    x = layers.AugMix([0, 1], 2, 4, 0.2, 0.5, False, "nearest")(x)
    spec = nnspec.Model(inputs, layers.Flatten()(x)).get_config()
    types = {v["type"]: v for v in spec["layers"].values()}
    ra, am = types["RandAugment"], types["AugMix"]
    assert list(ra["value_range"]) == [0, 1] and (ra["num_ops"], ra["factor"], ra["interpolation"]) == (3, 0.4, "nearest")
    assert (am["num_chains"], am["chain_depth"], am["factor"], am["alpha"], am["all_ops"]) == (2, 4, 0.2, 0.5, False)
    assert am["interpolation"] == "nearest" and list(am["value_range"]) == [0, 1]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "layer,code,where",
    [({"type": "RandAugment", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "RandAugment", "factor": -0.5}, "E103", "layers.aug.factor"),
     ({"type": "RandAugment", "factor": [-0.5, 0.5]}, "E103", "layers.aug.factor"),
     ({"type": "RandAugment", "factor": [0.2, 1.5]}, "E103", "layers.aug.factor"),
     ({"type": "RandAugment", "interpolation": "bicubic"}, "E103", "layers.aug.interpolation"),
     ({"type": "RandAugment", "value_range": [0, 1, 2]}, "E103", "layers.aug.value_range"),
     ({"type": "AugMix", "factor": 1.5}, "E103", "layers.aug.factor"),
     ({"type": "AugMix", "interpolation": "area"}, "E103", "layers.aug.interpolation")],
)  # fmt: skip
def test_attributes_keras_refuses_are_schema_errors(layer, code, where):
    """Keras's constructors refuse these (factors out of [0, 1], interpolations other than nearest
    and bilinear, value ranges not of two numbers)."""
    from keras_ref import keras_layer

    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer))
    text = str(err.value)
    assert code in text and where in text, text
    attrs = {k: v for k, v in layer.items() if k != "type"}
    with pytest.raises((ValueError, TypeError, NotImplementedError)):
        keras_layer(layer["type"], attrs)(np.zeros((2, 8, 8, 3), np.float32), training=True)


@pytest.mark.parametrize(
    "layer,code,where,keras_error",
    [({"type": "RandAugment", "num_ops": -1}, "E103", "layers.aug.num_ops", RuntimeError),
     ({"type": "RandAugment", "num_ops": 2.5}, "E100", "layers.aug.num_ops", TypeError),
     ({"type": "AugMix", "alpha": 0.0}, "E103", "layers.aug.alpha", ValueError),
     ({"type": "AugMix", "alpha": -1.0}, "E103", "layers.aug.alpha", ValueError)],
)  # fmt: skip
def test_what_keras_fails_on_in_training_is_a_schema_error(layer, code, where, keras_error):
    """Keras accepts these when built and fails when called in training."""
    from keras_ref import keras_layer

    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer))
    text = str(err.value)
    assert code in text and where in text, text
    k = keras_layer(layer["type"], {a: v for a, v in layer.items() if a != "type"})
    with pytest.raises(keras_error):
        k(np.zeros((2, 8, 8, 3), np.float32), training=True)


@pytest.mark.parametrize(
    "layer,shape,dtype,message",
    [({"type": "RandAugment"}, (8, 3), "float32", "rank 4"),
     ({"type": "RandAugment"}, (None, 8, 3), "float32", "known image"),
     ({"type": "AugMix"}, (8, 8, 3), "int32", "float images"),
     ({"type": "RandAugment"}, (8, 8, 2), "float32", "3 channels"),
     ({"type": "AugMix", "data_format": "channels_first"}, (4, 8, 8), "float32", "3 channels")],
)  # fmt: skip
def test_inputs_the_layers_cannot_take_are_shape_errors(layer, shape, dtype, message):
    """Not a batch of float images; color degeneration among the operations on neither 1 nor 3
    channels (Keras's rgb_to_grayscale refuses them in training: test_keras_refuses_two_channels)."""
    with pytest.raises(SpecError) as err:
        nnspec.Model.from_config(_spec(layer, shape, dtype))
    assert "E300" in str(err.value) and message in str(err.value), str(err.value)


def test_keras_refuses_two_channels():
    keras = _keras()
    x = np.zeros((2, 8, 8, 2), np.float32)
    with pytest.raises(ValueError):
        keras.layers.RandAugment()(x, training=True)
    assert tuple(keras.layers.RandAugment()(x[..., :1], training=True).shape) == (2, 8, 8, 1)


def test_aug_mix_without_all_ops_takes_any_channel_count():
    """Without color degeneration (all_ops false) AugMix runs on 2 channels, as Keras's."""
    m = nnspec.Model.from_config(_spec({"type": "AugMix", "all_ops": False}, (8, 8, 2)))
    assert tuple(m.output_shape) == (None, 8, 8, 2)
    for _ in range(5):  # Keras draws its slots at random: a few calls
        _keras().layers.AugMix(all_ops=False)(np.zeros((2, 8, 8, 2), np.float32), training=True)
