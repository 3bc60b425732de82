"""Augmentation policy layers: RandAugment and AugMix, which choose and chain other augmentations.

Keras 3's ``keras.layers`` versions (``keras/src/layers/preprocessing/image_preprocessing/``
``rand_augment.py`` and ``aug_mix.py``), computed as Keras computes them on its PyTorch backend
(read in Keras 3.15.1's source and run). Both are the identity at inference (``training_only``:
the plan makes them views; Keras's ``transform_images`` does nothing when ``training`` is false)
and have no weights. Keras reads ``factor`` as its base layer does (``_FACTOR_BOUNDS = (0, 1)``):
a number ``f`` is ``(0, f)``, a pair its sorted values; every sub-layer gets that PAIR, so a
number ``f`` does NOT give symmetric ranges below:

- The operations (Keras builds them as sub-layers with the policy's ``value_range``,
  ``interpolation``, ``data_format``; nnspec runs their kernels from augmentation.py,
  augmentation_color.py and augmentation_geometry.py, whose docstrings give the formulas). With
  the pair ``(lo, hi)``: RandomShear (``x_factor = y_factor = (lo, hi)``: per image a sign and
  shears ``U(lo, hi)``), RandomTranslation (``U(lo, hi)`` times the height, then the width: only
  down and right), RandomRotation (``U(lo, hi) * 360`` degrees: only counter-clockwise), the three
  with ``fill_mode="reflect"``; RandomBrightness (``U(lo, hi)`` times the width of the sorted
  value_range: only brighter), RandomColorDegeneration (``U(lo, hi)``), RandomContrast (factor
  ``U(1 - lo, 1 + hi)``), RandomSharpness (``U(lo, hi)``), RandomPosterization with factor
  ``P = max(1, int(8 hi))`` (bits drawn as whole numbers in ``[1, P)``, ``1`` when ``P`` is 1),
  Solarization (``addition_factor = threshold_factor = (lo, hi)``: additions and thresholds
  ``U(lo, hi * 255)``), AutoContrast, Equalization (256 bins, one histogram per channel over the
  whole batch). Every random operation draws per image.
- ``RandAugment(value_range, num_ops, factor, interpolation)``: its operation list, in Keras's
  order, is shear, translation, rotation, brightness, color degeneration, contrast, sharpness,
  posterization, solarization, auto contrast, equalization (nnspec's operation codes 0..10). In
  training it draws ONCE PER BATCH ``num_ops`` indices ``randint(0, 11)`` (repeats allowed) and
  once per call each operation's per-image draws; it then applies operation ``idx[0]``, then
  ``idx[1]``, ... to the whole batch, each time reading the previous result (Keras:
  ``where(idx[i] == k, layer_k(images), images)`` over every k). An operation chosen twice applies
  its SAME draws twice. ``num_ops = 0`` returns the images. (Keras's actual output differs: see
  the differences below.)
- ``AugMix(value_range, num_chains, chain_depth, factor, alpha, all_ops, interpolation)``: its
  list is shear, translation, rotation, posterization, solarization, auto contrast, equalization
  and, when ``all_ops``, brightness, color degeneration, contrast, sharpness (Keras's order). In
  training it draws ONCE PER BATCH chain weights ``w`` from Dirichlet(alpha) over ``num_chains``
  (float32 gamma draws divided by their sum), a weight ``m ~ Beta(alpha, alpha)``, and for each
  chain and each of its ``chain_depth`` slots one choice among the list and ``None`` (Python's
  ``random.choice``: each with probability 1 / (len + 1); ``None`` skips the slot, so Keras's
  "depth sampled from [0, chain_depth]" is not uniform), each chosen slot drawing its own
  per-image draws (an operation chosen twice draws twice). Each chain applies its slots in order
  to a copy of the images; ``aug = sum_c chain_c * w_c`` (float32, from zeros, in chain order)
  and the output is ``clip(m * x + (1 - m) * aug, value_range[0], value_range[1])`` (float32,
  the bounds as written: ``min(max(v, low), high)``).

Random draws come from NumPy's generator inside Numba, seeded as the other augmentation layers'
(``nnspec.runtime.kernels.seed_kernels``, from fit's seed), with the draw kernels of the
operations' own layers; a ``seed`` attribute is accepted but selects no stream of its own:
Keras's torch streams (and AugMix's Python ``random`` choices) cannot be reproduced. Beta
draws come from augmentation_mix.py's two gamma draws in log space. A training step saves, the
same in every row, the operation codes of its slots (11: AugMix's skipped slot) and AugMix's
weights (``w``, then ``m``), per image each slot's draws (6 numbers: an affine transform, or the
draw in the first, Solarization's threshold in the second), and each slot's output image. Its
backward pass chains the operations' backward kernels (autograd's gradient of each, as their
layers give it: 0 through posterization and Equalization's lookup) from the last slot to the
first; AugMix's adds ``m g`` to the input and ``(1 - m) w_c g`` to chain c's output, ``g`` the
output gradient where the clip passed the value (inclusive bounds, as ``torch.clip``) and 0
elsewhere. The choice per batch and Equalization's batch histogram couple the images of a batch:
a training batch is never split over threads.

Differences from Keras: RandAugment's slots apply only the chosen operation, as Keras intends.
Keras 3.15's RandomBrightness adds its delta to the images IN PLACE (``images += rgb_delta``) and
RandAugment calls every operation on every slot, so in Keras EVERY slot also shifts the images by
brightness's delta, unclipped: a slot with operation c outputs c(x) + delta for shear,
translation and rotation, clip(x + delta) for brightness, c(x + delta) for the others (a Keras bug;
its outputs leave value_range). The tests compare with Keras's RandAugment with that add made
out of place, and check the bug. AugMix applies only the chosen operations (each chain's images
are a copy), so its brightness is as intended in Keras too. Integer images are refused (as by the
other augmentation layers).
RandAugment's images, and AugMix's when ``all_ops``, must have 1 or 3 channels, a shape error
here (Keras's RandomColorDegeneration fails on others in training, RandAugment's always, AugMix's
when it is chosen: its ``rgb_to_grayscale`` refuses them; on 1 channel the grayscale is the image,
so the operation only clips it, as here). Keras computes EVERY
operation on every step and keeps the chosen one with ``where``; autograd then multiplies the
zero gradient of an operation not chosen by its local derivative, so where that is infinite
(AutoContrast of a constant channel) Keras's input gradient is NaN although the operation was
not applied; nnspec runs only the chosen operations and gives their gradient. AugMix's alpha must
be positive (Keras fails in training on alpha <= 0); ``num_ops``, ``num_chains`` and
``chain_depth`` must be whole numbers of at least 0 (Keras fails in training on others, but for a
negative ``chain_depth``, which it reads as 0). Factor
pairs must lie in [0, 1] element-wise (Keras's check of a pair is looser but its sub-layers refuse
the same pairs). The operations differ from Keras only as their own layers do (RandomSharpness's
float64 smoothing sums, within the last float32 bit).
"""

from __future__ import annotations

from dataclasses import replace

from .augmentation import (
    INTERPOLATIONS,
    REFLECT,
    SEED_ATTR,
    _cf,
    _hw,
    _image_infer,
    _value_range_attr,
    affine_backward,
    affine_forward,
    affine_reference,
    brightness_backward,
    brightness_forward,
    brightness_reference,
    contrast_backward,
    contrast_forward,
    contrast_reference,
    draw_rotations,
    draw_translations,
    draw_uniform,
    factor_range,
)
from .augmentation_color import (
    add_gradient,
    autocontrast_backward,
    autocontrast_forward,
    autocontrast_reference,
    copy_images,
    degenerate_backward,
    degenerate_forward,
    degeneration_reference,
    draw_integers,
    equalization_reference,
    equalize_backward,
    equalize_forward,
    posterization_reference,
    posterize_forward,
    sharpen_backward,
    sharpen_forward,
    sharpness_reference,
    solarization_reference,
    solarize_backward,
    solarize_forward,
    zero_images,
)
from .augmentation_geometry import draw_shears
from .augmentation_mix import _beta
from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError
from .conv import split_channels
from .core import DATA_FORMAT_ATTR, _identity_reference

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = ("affine_forward", "affine_backward", "brightness_forward", "brightness_backward", "contrast_forward",
                  "contrast_backward", "draw_rotations", "draw_translations", "draw_uniform", "draw_shears",
                  "draw_integers", "degenerate_forward", "degenerate_backward", "sharpen_forward",
                  "sharpen_backward", "posterize_forward", "solarize_forward", "solarize_backward",
                  "autocontrast_forward", "autocontrast_backward", "equalize_forward", "equalize_backward", "_beta",
                  "_draw_op", "_load_draws", "_draw_slot", "_flat", "_apply_op", "_op_backward")  # fmt: skip

# Operation codes: Keras's RandAugment order; SKIP is AugMix's ``None``.
OPS = ("random_shear", "random_translation", "random_rotation", "random_brightness", "random_color_degeneration",
       "random_contrast", "random_sharpness", "random_posterization", "solarization", "auto_contrast",
       "equalization")  # fmt: skip
(SHEAR, TRANSLATION, ROTATION, BRIGHTNESS, DEGENERATION, CONTRAST, SHARPNESS, POSTERIZATION, SOLARIZATION,
 AUTO_CONTRAST, EQUALIZATION) = range(len(OPS))  # fmt: skip
SKIP = len(OPS)
# AugMix's list (Keras's AUGMENT_LAYERS_ALL order) as codes; the first 7 when not all_ops
AUG_MIX_CODES = (SHEAR, TRANSLATION, ROTATION, POSTERIZATION, SOLARIZATION, AUTO_CONTRAST, EQUALIZATION, BRIGHTNESS,
                 DEGENERATION, CONTRAST, SHARPNESS)  # fmt: skip
AUG_MIX_BASIC = 7
DRAW_SIZE = 6  # per image and slot: an affine transform, or the draw (and Solarization's threshold)
BINS = 256  # Equalization's default, as Keras builds it


# ----------------------------------------------------------------------------- kernels


def _draw_op(op, tr, thr, f_lo, f_hi, bits, v_lo, v_hi, h, w):
    """Per image the draws of operation ``op`` with the policy's factor pair (module docstring)
    into ``tr`` (rows, 6) and, Solarization's thresholds, ``thr`` (rows, 1), by the draw kernels of
    the operations' own layers; ``v_lo``, ``v_hi`` the sorted value range."""
    tr[:] = 0.0
    thr[:] = 0.0
    if op == SHEAR:
        draw_shears(tr, f_lo, f_hi, f_lo, f_hi)
    elif op == TRANSLATION:
        draw_translations(tr, f_lo, f_hi, f_lo, f_hi, h, w)
    elif op == ROTATION:
        draw_rotations(tr, f_lo * 360.0, f_hi * 360.0, h, w)
    elif op == BRIGHTNESS:
        draw_uniform(tr, f_lo, f_hi, v_hi - v_lo)
    elif op == DEGENERATION or op == SHARPNESS:
        draw_uniform(tr, f_lo, f_hi, 1.0)
    elif op == CONTRAST:
        draw_uniform(tr, 1.0 - f_lo, 1.0 + f_hi, 1.0)
    elif op == POSTERIZATION:
        draw_integers(tr, 1, bits)
    elif op == SOLARIZATION:
        draw_uniform(tr, f_lo, f_hi * 255.0, 1.0)
        draw_uniform(thr, f_lo, f_hi * 255.0, 1.0)


def _load_draws(d, k, tr, thr):
    """Slot ``k``'s draws from the saved ``d`` into ``tr`` (rows, 6) and ``thr`` (rows, 1)."""
    for s in range(d.shape[0]):
        for q in range(DRAW_SIZE):
            tr[s, q] = d[s, k * DRAW_SIZE + q]
        thr[s, 0] = d[s, k * DRAW_SIZE + 1]


def _draw_slot(ops, d, k, f_lo, f_hi, bits, v_lo, v_hi, h, w):
    n = d.shape[0]
    tr = np.zeros((n, DRAW_SIZE), np.float32)
    thr = np.zeros((n, 1), np.float32)
    _draw_op(int(ops[0, k]), tr, thr, f_lo, f_hi, bits, v_lo, v_hi, h, w)
    for s in range(n):
        for q in range(DRAW_SIZE):
            d[s, k * DRAW_SIZE + q] = tr[s, q]
        if int(ops[0, k]) == SOLARIZATION:
            d[s, k * DRAW_SIZE + 1] = thr[s, 0]


def draw_rand_augment(ops, d, num_ops, f_lo, f_hi, bits, v_lo, v_hi, h, w):
    """RandAugment's draws: once per batch ``num_ops`` operation codes ``randint(0, 11)`` (the same
    in every row of ``ops``), then per slot its operation's per-image draws into ``d`` (an
    operation chosen again reuses its first slot's draws, as Keras's one transformation per
    operation)."""
    n = ops.shape[0]
    if n == 0:
        return
    for k in range(num_ops):
        op = np.random.randint(0, SKIP)
        for s in range(n):
            ops[s, k] = op
    for k in range(num_ops):
        first = k
        for j in range(k):
            if ops[0, j] == ops[0, k]:
                first = j
                break
        if first == k:
            _draw_slot(ops, d, k, f_lo, f_hi, bits, v_lo, v_hi, h, w)
        else:
            for s in range(n):
                for q in range(DRAW_SIZE):
                    d[s, k * DRAW_SIZE + q] = d[s, first * DRAW_SIZE + q]


def draw_aug_mix(ops, d, mix, num_chains, chain_depth, choices, alpha, f_lo, f_hi, bits, v_lo, v_hi, h, w):
    """AugMix's draws, once per batch (the same in every row): the chain weights Dirichlet(alpha)
    (float32 gamma draws over their float32 sum) and ``m ~ Beta(alpha, alpha)`` into ``mix``; per
    slot (chain-major) a choice among the first ``choices`` of AugMix's list and the skip (each
    1 / (choices + 1)) into ``ops``, and per image the slot's draws into ``d``."""
    n = ops.shape[0]
    if n == 0:
        return
    g = np.empty(num_chains, np.float32)
    total = np.float32(0.0)
    for c in range(num_chains):
        g[c] = np.float32(np.random.gamma(alpha))
        total += g[c]
    m = np.float32(_beta(alpha, alpha))
    for s in range(n):
        for c in range(num_chains):
            mix[s, c] = g[c] / total
        mix[s, num_chains] = m
    codes = np.array(AUG_MIX_CODES)
    for k in range(num_chains * chain_depth):
        pick = np.random.randint(0, choices + 1)
        op = codes[pick] if pick < choices else SKIP
        for s in range(n):
            ops[s, k] = op
        _draw_slot(ops, d, k, f_lo, f_hi, bits, v_lo, v_hi, h, w)


def _flat(a):
    """Images seen as (rows, values per image), as the per-value kernels take them."""
    return a.reshape((a.shape[0], a.size // a.shape[0]))


def _apply_op(op, src, dst, tr, thr, cf, interp, a, b):
    """``dst`` = operation ``op`` of ``src`` (rows, H, W, C, or rows, C, H, W when ``cf``) with
    the draws ``tr``, ``thr``, by the operations' own kernels; ``a``, ``b`` the value range as
    written (RandomContrast clips to it as written, the others sort it)."""
    lo, hi = min(a, b), max(a, b)
    if op == SHEAR or op == TRANSLATION or op == ROTATION:
        affine_forward(src, dst, tr, cf, REFLECT, interp, 0.0)
    elif op == BRIGHTNESS:
        brightness_forward(_flat(src), _flat(dst), tr, lo, hi)
    elif op == DEGENERATION and (src.shape[1] if cf else src.shape[3]) == 1:  # Keras's gray of gray: itself
        brightness_forward(_flat(src), _flat(dst), np.zeros((src.shape[0], 1), np.float32), lo, hi)
    elif op == DEGENERATION:
        degenerate_forward(src, dst, tr, cf, lo, hi)
    elif op == CONTRAST:
        contrast_forward(src, dst, tr, cf, a, b)
    elif op == SHARPNESS:
        sharpen_forward(src, dst, tr, cf, lo, hi)
    elif op == POSTERIZATION:
        posterize_forward(_flat(src), _flat(dst), tr, lo, hi)
    elif op == SOLARIZATION:
        solarize_forward(_flat(src), _flat(dst), tr, thr, lo, hi)
    elif op == AUTO_CONTRAST:
        autocontrast_forward(src, dst, lo, hi)
    elif op == EQUALIZATION:
        equalize_forward(src, dst, cf, BINS, lo, hi)
    else:
        dst[:] = src


def _op_backward(op, src, dy, dx, tr, thr, cf, interp, a, b):
    """``dx +=`` the gradient of :func:`_apply_op` at ``src``: the operations' backward kernels
    (none for posterization: Keras's uint8 cast has no autograd graph)."""
    lo, hi = min(a, b), max(a, b)
    if op == SHEAR or op == TRANSLATION or op == ROTATION:
        affine_backward(dy, dx, tr, cf, REFLECT, interp)
    elif op == BRIGHTNESS:
        brightness_backward(_flat(src), _flat(dy), _flat(dx), tr, lo, hi)
    elif op == DEGENERATION and (src.shape[1] if cf else src.shape[3]) == 1:
        brightness_backward(_flat(src), _flat(dy), _flat(dx), np.zeros((src.shape[0], 1), np.float32), lo, hi)
    elif op == DEGENERATION:
        degenerate_backward(src, dy, dx, tr, cf, lo, hi)
    elif op == CONTRAST:
        contrast_backward(src, dy, dx, tr, cf, a, b)
    elif op == SHARPNESS:
        sharpen_backward(src, dy, dx, tr, cf, lo, hi)
    elif op == SOLARIZATION:
        solarize_backward(_flat(src), _flat(dy), _flat(dx), tr, thr, lo, hi)
    elif op == AUTO_CONTRAST:
        autocontrast_backward(src, dy, dx, lo, hi)
    elif op == EQUALIZATION:
        equalize_backward(src, dy, dx, cf, BINS, lo, hi)
    elif op == SKIP:
        dx += dy


def policy_forward(ops, d, k, src, dst, cf, interp, a, b):
    """Slot ``k``: ``dst`` = its operation (``ops[0, k]``) of ``src`` with its saved draws."""
    n = src.shape[0]
    if n == 0:
        return
    tr = np.empty((n, DRAW_SIZE), np.float32)
    thr = np.empty((n, 1), np.float32)
    _load_draws(d, k, tr, thr)
    _apply_op(int(ops[0, k]), src, dst, tr, thr, cf, interp, a, b)


def policy_backward(ops, d, k, src, dy, dx, cf, interp, a, b):
    """``dx +=`` the gradient of :func:`policy_forward` of slot ``k`` at its input ``src``."""
    n = src.shape[0]
    if n == 0:
        return
    tr = np.empty((n, DRAW_SIZE), np.float32)
    thr = np.empty((n, 1), np.float32)
    _load_draws(d, k, tr, thr)
    _op_backward(int(ops[0, k]), src, dy, dx, tr, thr, cf, interp, a, b)


def aug_mix_accumulate(aug2, chain2, mix, c):
    """``aug += chain * w_c`` over (rows, values per image), float32 (Keras's order)."""
    for s in range(aug2.shape[0]):
        wc = np.float32(mix[s, c])
        for i in range(aug2.shape[1]):
            aug2[s, i] += chain2[s, i] * wc


def aug_mix_output(x2, aug2, y2, mix, num_chains, a, b):
    """``y = clip(m x + (1 - m) aug, a, b)`` (``min(max(v, a), b)``, float32, Keras's order)."""
    lo, hi = np.float32(a), np.float32(b)
    for s in range(x2.shape[0]):
        m = np.float32(mix[s, num_chains])
        u = np.float32(1.0) - m
        for i in range(x2.shape[1]):
            y2[s, i] = min(max(m * x2[s, i] + u * aug2[s, i], lo), hi)


def aug_mix_output_backward(x2, aug2, dy2, dx2, gaug2, mix, num_chains, a, b):
    """The gradient of :func:`aug_mix_output`: ``g = dy`` where the value before the clip lies in
    [a, b] (inclusive, as torch.clip), else 0; ``dx += m g``, ``gaug = (1 - m) g`` (assigned)."""
    lo, hi = np.float32(a), np.float32(b)
    for s in range(x2.shape[0]):
        m = np.float32(mix[s, num_chains])
        u = np.float32(1.0) - m
        for i in range(x2.shape[1]):
            v = m * x2[s, i] + u * aug2[s, i]
            g = dy2[s, i] if lo <= v <= hi else np.float32(0.0)
            dx2[s, i] += g * m
            gaug2[s, i] = g * u


def aug_mix_chain_grad(gaug2, g2, mix, c):
    """``g += gaug * w_c``: the gradient of chain ``c``'s output (the adjoint of :func:`aug_mix_accumulate`)."""
    for s in range(gaug2.shape[0]):
        wc = np.float32(mix[s, c])
        for i in range(gaug2.shape[1]):
            g2[s, i] += gaug2[s, i] * wc


# ----------------------------------------------------------------------------- NumPy references
#
# The operations' own references (float64) chained as Keras chains them, given the draws.


def op_reference(op, x, draws, value_range, interpolation="bilinear", data_format="channels_last"):
    """Operation ``op`` of the batch ``x`` with per-image ``draws`` (rows, 6: nnspec's layout), in float64."""
    x = np.asarray(x, np.float64)
    draws = np.asarray(draws, np.float64)
    vr = sorted(float(v) for v in value_range)
    if op in (SHEAR, TRANSLATION, ROTATION):
        return affine_reference(x, draws, "reflect", interpolation, 0.0, data_format)
    if op == BRIGHTNESS:
        return brightness_reference(x, draws[:, 0], vr)
    if op == DEGENERATION:
        return degeneration_reference(x, draws[:, 0], vr, data_format)
    if op == CONTRAST:
        return contrast_reference(x, draws[:, 0], [float(v) for v in value_range], data_format)
    if op == SHARPNESS:
        return sharpness_reference(x, draws[:, 0], vr, data_format)
    if op == POSTERIZATION:
        return posterization_reference(x, draws[:, 0], vr)
    if op == SOLARIZATION:
        return solarization_reference(x, draws[:, 0], draws[:, 1], vr)
    if op == AUTO_CONTRAST:
        return autocontrast_reference(x, vr)
    if op == EQUALIZATION:
        return equalization_reference(x, vr, BINS, data_format)
    return x


def rand_augment_reference(x, ops, draws, value_range, interpolation="bilinear", data_format="channels_last"):
    """RandAugment in training with the given operation codes (one per slot) and per-image draws
    (rows, slots, 6), in float64."""
    x = np.asarray(x, np.float64)
    for k, op in enumerate(ops):
        x = op_reference(int(op), x, np.asarray(draws)[:, k], value_range, interpolation, data_format)
    return x


def aug_mix_reference(x, ops, draws, weights, m, value_range, chain_depth, interpolation="bilinear",
                      data_format="channels_last"):  # fmt: skip
    """AugMix in training with the given slot codes (chain-major), per-image draws (rows, slots, 6),
    chain weights and mixing weight ``m``, in float64."""
    x = np.asarray(x, np.float64)
    aug = np.zeros_like(x)
    for c, wc in enumerate(weights):
        chain = x
        for j in range(chain_depth):
            k = c * chain_depth + j
            chain = op_reference(int(ops[k]), chain, np.asarray(draws)[:, k], value_range, interpolation, data_format)
        aug = aug + chain * float(wc)
    return np.minimum(np.maximum(m * x + (1 - m) * aug, float(value_range[0])), float(value_range[1]))


# ----------------------------------------------------------------------------- layer definitions


def posterization_bits(attrs) -> int:
    """Keras's RandomPosterization factor ``max(1, int(8 * high))``: bits drawn in [1, it)."""
    return max(1, int(8 * factor_range(attrs["factor"], 0.0)[1]))


def _draw_args(e):
    a = e.attrs
    lo, hi = sorted(float(v) for v in a["value_range"])
    return (*factor_range(a["factor"], 0.0), posterization_bits(a), lo, hi, *_hw(e))


def _op_args(e):
    a, b = (float(v) for v in e.attrs["value_range"])
    return _cf(e), INTERPOLATIONS.index(e.attrs["interpolation"]), a, b


def _image(attrs, x_shapes):
    return (tuple(x_shapes[0]), "float32")


def _infer(layer: str, rgb):
    check = _image_infer(layer)

    def infer(attrs, inputs, ctx):
        out = check(attrs, inputs, ctx)
        _, channels = split_channels(inputs[0].shape, attrs["data_format"])
        if rgb(attrs) and channels not in (1, 3):
            raise ShapeError(f"{layer} expects RGB (3 channels) or grayscale (1 channel) images: its "
                             f"RandomColorDegeneration's rgb_to_grayscale refuses others in Keras; got {channels}")  # fmt: skip
        return out

    return infer


def _ra_saved(attrs, x_shapes, y_shapes):
    """The slots' codes and draws, each slot's output but the last, up to two gradient buffers."""
    k = attrs["num_ops"]
    if k == 0:
        return []
    image = _image(attrs, x_shapes)
    return [((k,), "float32"), ((k * DRAW_SIZE,), "float32")] + [image] * (k - 1) + [image] * min(k - 1, 2)


def _ra_emit_train(e):
    k = e.attrs["num_ops"]
    if k == 0:
        return [e.call(copy_images, e.per_sample(e.x[0]), e.per_sample(e.y[0], True))]
    ops, d = e.s[0], e.s[1]
    lines, src = [e.call(draw_rand_augment, ops, d, k, *_draw_args(e))], e.x[0]
    for j in range(k):
        dst = e.y[0] if j == k - 1 else e.s[2 + j]
        lines.append(e.call(policy_forward, ops, d, j, src, dst, *_op_args(e)))
        src = dst
    return lines


def _chain_backward(e, ops, d, slots, inputs, grad, dst_last, buffers):
    """Lines adding into ``dst_last`` the gradient through ``slots`` (in forward order) given the
    gradient ``grad`` of the last one's output; ``inputs[j]`` is slot j's input; gradients between
    slots alternate between the two ``buffers`` (zeroed before use)."""
    lines = []
    for j in range(len(slots) - 1, -1, -1):
        if j == 0:
            dst = dst_last
        else:
            dst = buffers[1] if grad == buffers[0] else buffers[0]
            lines.append(e.call(zero_images, e.per_sample(dst)))
        lines.append(e.call(policy_backward, ops, d, slots[j], inputs[j], grad, dst, *_op_args(e)))
        grad = dst
    return lines


def _ra_backward(e):
    if e.dx[0] is None:
        return []
    k = e.attrs["num_ops"]
    if k == 0:
        return [e.call(add_gradient, e.per_sample(e.dy[0], True), e.per_sample(e.dx[0]))]
    stages = e.s[2 : 2 + k - 1]
    buffers = list(e.s[2 + k - 1 :]) + [None, None]
    return _chain_backward(e, e.s[0], e.s[1], list(range(k)), [e.x[0], *stages], e.dy[0], e.dx[0], buffers[:2])


def _am_choices(attrs) -> int:
    return len(AUG_MIX_CODES) if attrs["all_ops"] else AUG_MIX_BASIC


def _am_saved(attrs, x_shapes, y_shapes):
    """Codes and draws of every slot, the weights, ``aug``, every slot's output, three gradient
    buffers (``aug``'s and two between slots)."""
    c, depth = attrs["num_chains"], attrs["chain_depth"]
    slots = max(c * depth, 1)
    image = _image(attrs, x_shapes)
    return [((slots,), "float32"), ((slots * DRAW_SIZE,), "float32"), ((c + 1,), "float32")] + [image] * (
        1 + c * depth + 3)  # fmt: skip


def _am_buffers(e):
    c, depth = e.attrs["num_chains"], e.attrs["chain_depth"]
    ops, d, mix, aug = e.s[:4]
    stages = e.s[4 : 4 + c * depth]
    gaug, g1, g2 = e.s[4 + c * depth :]
    return ops, d, mix, aug, stages, gaug, (g1, g2)


def _am_emit_train(e):
    a = e.attrs
    c, depth = a["num_chains"], a["chain_depth"]
    ops, d, mix, aug, stages, _, _ = _am_buffers(e)
    lines = [e.call(draw_aug_mix, ops, d, mix, c, depth, _am_choices(a), float(a["alpha"]), *_draw_args(e)),
             e.call(zero_images, e.per_sample(aug))]  # fmt: skip
    for chain in range(c):
        src = e.x[0]
        for j in range(depth):
            dst = stages[chain * depth + j]
            lines.append(e.call(policy_forward, ops, d, chain * depth + j, src, dst, *_op_args(e)))
            src = dst
        lines.append(e.call(aug_mix_accumulate, e.per_sample(aug), e.per_sample(src), mix, chain))
    lo, hi = (float(v) for v in a["value_range"])
    lines.append(e.call(aug_mix_output, e.per_sample(e.x[0]), e.per_sample(aug), e.per_sample(e.y[0], True), mix, c,
                        lo, hi))  # fmt: skip
    return lines


def _am_backward(e):
    if e.dx[0] is None:
        return []
    a = e.attrs
    c, depth = a["num_chains"], a["chain_depth"]
    ops, d, mix, aug, stages, gaug, buffers = _am_buffers(e)
    lo, hi = (float(v) for v in a["value_range"])
    dx2 = e.per_sample(e.dx[0])
    lines = [e.call(aug_mix_output_backward, e.per_sample(e.x[0]), e.per_sample(aug), e.per_sample(e.dy[0], True),
                    dx2, e.per_sample(gaug), mix, c, lo, hi)]  # fmt: skip
    for chain in range(c):
        if depth == 0:
            lines.append(e.call(aug_mix_chain_grad, e.per_sample(gaug), dx2, mix, chain))
            continue
        g = buffers[0]
        lines += [e.call(zero_images, e.per_sample(g)), e.call(aug_mix_chain_grad, e.per_sample(gaug),
                                                                 e.per_sample(g), mix, chain)]  # fmt: skip
        slots = [chain * depth + j for j in range(depth)]
        inputs = [e.x[0]] + [stages[k] for k in slots[:-1]]
        lines += _chain_backward(e, ops, d, slots, inputs, g, e.dx[0], buffers)
    return lines


_FACTOR = Attr("factor", "factor", 0.5,
               "The strength of every operation: a number `f` gives the pair [0, f] (Keras's reading), a pair its "
               "sorted values; each sub-layer gets that pair as its factor (posterization the bits "
               "max(1, int(8 high))).", minimum=0.0, maximum=1.0)  # fmt: skip
_INTERPOLATION = Attr("interpolation", "enum", "bilinear", "How shear, translation and rotation read between pixels.",
                      choices=INTERPOLATIONS)  # fmt: skip

RAND_AUGMENT = LayerDef(
    name="RandAugment",
    attrs=(
        _value_range_attr("given to the operations (their clips and mappings to [0, 255])."),
        Attr("num_ops", "int", 2, "How many operations are applied in sequence (chosen per batch, repeats "
             "allowed).", minimum=0),
        _FACTOR,
        _INTERPOLATION,
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_infer("RandAugment", lambda attrs: True),
    emit_train=_ra_emit_train,
    emit_backward=_ra_backward,
    reference=_identity_reference,
    saved=_ra_saved,
    training_only=True,
    couples_batch=True,
    positional=("value_range", "num_ops", "factor", "interpolation"),
    doc="In training applies `num_ops` operations chosen at random per batch among Keras's 11 (shear, translation, "
    "rotation, brightness, color degeneration, contrast, sharpness, posterization, solarization, auto contrast, "
    "equalization) in sequence, each with its per-image draws at strength `factor`; the identity at inference.",
)

AUG_MIX = LayerDef(
    name="AugMix",
    attrs=(
        _value_range_attr("given to the operations; the mixed output is clipped to it (low, high as written)."),
        Attr("num_chains", "int", 3, "How many chains of operations are mixed.", minimum=0),
        Attr("chain_depth", "int", 3, "The slots of each chain; each applies an operation chosen per batch or, "
             "with the same probability as each operation, none.", minimum=0),
        replace(_FACTOR, default=0.3),
        Attr("alpha", "float", 1.0, "The Dirichlet(alpha) law of the chain weights and the Beta(alpha, alpha) law of "
             "the input's weight, drawn per batch.", minimum=0.0, exclusive_minimum=True),
        Attr("all_ops", "bool", True, "Whether brightness, color degeneration, contrast and sharpness are among "
             "the operations (besides shear, translation, rotation, posterization, solarization, auto contrast, "
             "equalization)."),
        _INTERPOLATION,
        SEED_ATTR,
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_infer("AugMix", lambda attrs: attrs["all_ops"]),
    emit_train=_am_emit_train,
    emit_backward=_am_backward,
    reference=_identity_reference,
    saved=_am_saved,
    training_only=True,
    couples_batch=True,
    positional=("value_range", "num_chains", "chain_depth", "factor", "alpha", "all_ops", "interpolation"),
    doc="In training mixes `num_chains` chains of random operations (per batch; each chain applies up to "
    "`chain_depth` of them) with Dirichlet weights, blends the mix with the input by a Beta weight and clips to "
    "`value_range`; the identity at inference.",
)

LAYERS = (RAND_AUGMENT, AUG_MIX)
