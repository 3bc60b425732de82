"""Losses with Keras 3 semantics: one Numba kernel per loss (value and gradient), a NumPy reference.

Every kernel has the same contract, so generated training code calls any of them alike::

    total = kernel(y_true, y_pred, w, dy, scale, *spec.args)

- ``y_pred``: float32 ``(rows, k)``; ``rows`` is the batch times any extra leading axes (time).
- ``y_true``: the same shape (any numeric dtype), or for ``sparse_categorical_crossentropy``
  integer labels ``(rows,)`` or ``(rows, 1)`` (C-contiguous).
- ``w``: float32 ``(rows,)``, the per-row weight: ``sample_weight * mask`` (all ones by default).
- ``dy``: float32 ``(rows, k)``, overwritten with ``scale * w[r] * d loss_r / d y_pred[r, :]``.
- returns the weighted sum ``sum_r w[r] * loss_r`` (a float). Rows whose weight is 0 are
  skipped (their ``dy`` row is 0), so a masked step's garbage never turns the sum into NaN.

``loss_r`` is what the Keras loss function returns for that row (a mean, or a sum, over the
last axis, depending on the loss). The reduction turns the sum into Keras's reported value:
``w`` and the divisor come from :func:`combine_weights` and the value is
``finish(total, divisor)``; the gradient of ``loss_weight * value`` is obtained with
``scale = loss_weight / divisor`` (0 when the divisor is 0, as Keras's ``divide_no_nan``).
Keras's rules (``keras/src/losses/loss.py``, ``reduce_weighted_values`` and ``apply_mask``):

- ``sum_over_batch_size`` (the default; also ``mean``): without a mask, ``sum(loss * sw) / rows``
  (the sample weights are *not* in the divisor); with a mask, Keras scales the mask by
  ``rows / valid`` so the result is ``sum(loss * sw * mask) / sum(mask)``.
- ``sum``: ``sum(loss * sw * mask)``.
- ``mean_with_sample_weight``: divided by ``sum(sw * mask)`` (by ``rows`` when neither is given).
- several outputs: ``total = sum(loss_weight_i * loss_i)``; Keras also adds every regularization
  penalty to the total (``model.losses``), unweighted.

A ``sample_weight`` of shape ``(batch,)`` on a sequence output ``(batch, T, k)`` must be repeated
over time by the caller (``np.repeat(sw, T)``); :func:`compute_loss` does that.

Numerics: the kernels compute in float64 from float32 data, but clip exactly where Keras clips
(``epsilon = 1e-7`` and ``1 - 1e-7`` as float32 values) and give the gradient autograd gives for
Keras's formula: zero where a value was clipped (``torch.clamp`` passes the gradient at the
bounds themselves), ``sign(0) = 0`` for absolute values, an even split between tied maxima.
Crossentropy on probabilities first renormalizes ``y_pred`` by its sum over the last axis, as
Keras does, and its gradient goes through that division. The focal crossentropies round the
probabilities they raise to ``gamma`` to float32 first (a logit's sigmoid or softmax, the
renormalized ``y_pred``), as Keras's float32 arithmetic does: ``(1 - p) ** gamma`` near ``p = 1``
depends on that rounding (4e-5 of a batch's loss in a test); their NumPy reference does the
same unless asked for the smooth float64 function (finite differences).

Besides the issue's losses, Keras 3's ``binary_focal_crossentropy``,
``categorical_focal_crossentropy`` and ``CategoricalGeneralizedCrossEntropy`` (integer labels;
Keras gives it no string name, nnspec's files call it ``categorical_generalized_cross_entropy``)
are here. Keras's ``dice``, ``tversky`` (one value over the whole batch by default), ``circle``
(pairs within the batch) and ``ctc`` are not.

Names and aliases are Keras's (``mse``, ``mae``, ``mape``, ``msle``, ``kld``, ``bce``, class
names such as ``MeanSquaredError``), plus Keras 2's ``logcosh``, ``huber_loss`` and
``kullback_leibler_divergence``, which nnspec's model files accept. ``crossentropy``/``ce``
resolve from the shapes as Keras's ``compile`` does (see :func:`get_loss`). A model file's
``custom_losses`` and :class:`Expression` objects are losses written as expressions, whose
kernels with this same contract are generated (``runtime/custom_losses.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np

from . import custom_losses
from .numba_config import JIT_OPTIONS

EPS = float(np.float32(1e-7))  # Keras's backend.epsilon() as the float32 it becomes
ONE_MINUS_EPS = float(np.float32(1.0 - 1e-7))
LOG2 = math.log(2.0)
INV_EPS = float(np.float32(1.0) / np.float32(1e-7))  # normalize(): rsqrt(sum x^2) is capped at 1/epsilon

REDUCTIONS = {"sum_over_batch_size": 0, "mean": 0, "sum": 1, "mean_with_sample_weight": 2}

jit = numba.njit(**JIT_OPTIONS)


# ------------------------------------------------------------------------------------ reduction


@jit
def combine_weights(sample_weight, mask, w, reduction):
    """Write ``w = sample_weight * mask`` and return the divisor of the reduction.

    ``sample_weight`` and ``mask`` are float32 ``(rows,)`` or empty (meaning all ones);
    ``reduction`` is a code from ``REDUCTIONS``. A divisor of 0 means the loss is 0.
    """
    rows = w.shape[0]
    has_sw = sample_weight.shape[0] > 0
    has_mask = mask.shape[0] > 0
    valid = 0.0
    wsum = 0.0
    for r in range(rows):
        s = sample_weight[r] if has_sw else np.float32(1.0)
        m = mask[r] if has_mask else np.float32(1.0)
        w[r] = s * m
        if m != 0:
            valid += 1.0
        wsum += s * m
    if reduction == 1:
        return 1.0
    if reduction == 2:
        return wsum if (has_sw or has_mask) else float(rows)
    return valid if has_mask else float(rows)


@jit
def finish(total, divisor):
    """The reported loss: ``total / divisor``, or 0 when the divisor is 0 (Keras ``divide_no_nan``)."""
    if divisor == 0.0:
        return 0.0
    return total / divisor


@jit
def _clip_grad(o, g):
    """Value of ``clip(o, EPS, 1-EPS)`` and whether a gradient passes (bounds included)."""
    if o < EPS:
        return EPS, 0.0
    if o > ONE_MINUS_EPS:
        return ONE_MINUS_EPS, 0.0
    return o, g


# ------------------------------------------------------------------------------------ regression


@jit
def mean_squared_error(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            e = float(y_pred[r, j]) - float(y_true[r, j])
            acc += e * e
            dy[r, j] = 2.0 * e * c
        total += w[r] * (acc / k)
    return total


@jit
def mean_absolute_error(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            e = float(y_pred[r, j]) - float(y_true[r, j])
            acc += abs(e)
            dy[r, j] = np.sign(e) * c
        total += w[r] * (acc / k)
    return total


@jit
def mean_absolute_percentage_error(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = 100.0 * scale * w[r] / k
        acc = 0.0
        for j in range(k):
            t = float(y_true[r, j])
            d = max(abs(t), EPS)
            e = (t - float(y_pred[r, j])) / d
            acc += abs(e)
            dy[r, j] = -np.sign(e) / d * c
        total += w[r] * (100.0 * acc / k)
    return total


@jit
def mean_squared_logarithmic_error(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            p = float(y_pred[r, j])
            pc = max(p, EPS)
            e = math.log(pc + 1.0) - math.log(max(float(y_true[r, j]), EPS) + 1.0)
            acc += e * e
            dy[r, j] = (2.0 * e / (pc + 1.0) * c) if p > EPS else 0.0
        total += w[r] * (acc / k)
    return total


@jit
def huber(y_true, y_pred, w, dy, scale, delta):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            e = float(y_pred[r, j]) - float(y_true[r, j])
            if abs(e) <= delta:
                acc += 0.5 * e * e
                dy[r, j] = e * c
            else:
                acc += delta * abs(e) - 0.5 * delta * delta
                dy[r, j] = delta * np.sign(e) * c
        total += w[r] * (acc / k)
    return total


@jit
def log_cosh(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            x = float(y_pred[r, j]) - float(y_true[r, j])
            ax = abs(x)
            acc += ax + math.log1p(math.exp(-2.0 * ax)) - LOG2  # = x + softplus(-2x) - log 2
            dy[r, j] = math.tanh(x) * c
        total += w[r] * (acc / k)
    return total


@jit
def cosine_similarity(y_true, y_pred, w, dy, scale):
    """``-sum(normalize(y_true) * normalize(y_pred))``; ``normalize`` caps ``1/||x||`` at ``1/epsilon``."""
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        st = 0.0
        sp = 0.0
        tp = 0.0
        for j in range(k):
            t = float(y_true[r, j])
            p = float(y_pred[r, j])
            st += t * t
            sp += p * p
            tp += t * p
        inv_t = min(1.0 / math.sqrt(st), INV_EPS) if st > 0 else INV_EPS
        raw_p = 1.0 / math.sqrt(sp) if sp > 0 else math.inf
        capped = raw_p >= INV_EPS
        inv_p = INV_EPS if capped else raw_p
        total += w[r] * (-inv_t * inv_p * tp)
        c = scale * w[r]
        for j in range(k):
            u = float(y_true[r, j]) * inv_t
            g = -u * inv_p
            if not capped:
                g += inv_t * tp * float(y_pred[r, j]) * inv_p * inv_p * inv_p
            dy[r, j] = g * c
    return total


# ------------------------------------------------------------------------------------ hinge


@jit
def _hinge_labels_binary(y_true):
    """Keras converts {0, 1} labels to {-1, 1} when *every* label of the batch is 0 or 1."""
    rows, k = y_true.shape
    for r in range(rows):
        for j in range(k):
            t = y_true[r, j]
            if t != 0 and t != 1:
                return False
    return True


@jit
def hinge(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    binary = _hinge_labels_binary(y_true)
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            t = float(y_true[r, j])
            if binary:
                t = 2.0 * t - 1.0
            m = 1.0 - t * float(y_pred[r, j])
            if m > 0:
                acc += m
                dy[r, j] = -t * c
            elif m == 0:  # at the margin torch.maximum(m, 0) splits the gradient between its ties
                dy[r, j] = -0.5 * t * c
            else:
                dy[r, j] = 0.0
        total += w[r] * (acc / k)
    return total


@jit
def squared_hinge(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    binary = _hinge_labels_binary(y_true)
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            t = float(y_true[r, j])
            if binary:
                t = 2.0 * t - 1.0
            m = 1.0 - t * float(y_pred[r, j])
            if m > 0:
                acc += m * m
                dy[r, j] = -2.0 * m * t * c
            else:
                dy[r, j] = 0.0
        total += w[r] * (acc / k)
    return total


@jit
def categorical_hinge(y_true, y_pred, w, dy, scale):
    """``max(max((1 - t) * p) - sum(t * p) + 1, 0)``; tied maxima share the gradient (``amax``),
    and a loss of exactly 0 gets half of it (``torch.maximum``'s gradient at a tie)."""
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        pos = 0.0
        neg = -math.inf
        for j in range(k):
            t = float(y_true[r, j])
            p = float(y_pred[r, j])
            pos += t * p
            neg = max(neg, (1.0 - t) * p)
        loss = neg - pos + 1.0
        if loss < 0:
            dy[r, :] = 0.0
            continue
        total += w[r] * loss
        ties = 0
        for j in range(k):
            if (1.0 - float(y_true[r, j])) * float(y_pred[r, j]) == neg:
                ties += 1
        c = scale * w[r] * (0.5 if loss == 0 else 1.0)
        for j in range(k):
            t = float(y_true[r, j])
            g = -t
            if (1.0 - t) * float(y_pred[r, j]) == neg:
                g += (1.0 - t) / ties
            dy[r, j] = g * c
    return total


# ------------------------------------------------------------------------------------ probabilistic


@jit
def binary_crossentropy(y_true, y_pred, w, dy, scale, from_logits, label_smoothing):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            t = float(y_true[r, j])
            if label_smoothing != 0:
                t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
            x = float(y_pred[r, j])
            if from_logits:
                acc += max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))
                dy[r, j] = (1.0 / (1.0 + math.exp(-x)) - t) * c
            else:
                o, passes = _clip_grad(x, 1.0)
                acc -= t * math.log(o) + (1.0 - t) * math.log(1.0 - o)
                dy[r, j] = passes * (o - t) / (o * (1.0 - o)) * c
        total += w[r] * (acc / k)
    return total


@jit
def categorical_crossentropy(y_true, y_pred, w, dy, scale, from_logits, label_smoothing):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r]
        tsum = 0.0
        if from_logits:
            mx = -math.inf
            for j in range(k):
                mx = max(mx, float(y_pred[r, j]))
            se = 0.0
            for j in range(k):
                se += math.exp(float(y_pred[r, j]) - mx)
            lse = mx + math.log(se)
            loss = 0.0
            for j in range(k):
                t = float(y_true[r, j])
                if label_smoothing != 0:
                    t = t * (1.0 - label_smoothing) + label_smoothing / k
                tsum += t
                loss -= t * (float(y_pred[r, j]) - lse)
            for j in range(k):
                t = float(y_true[r, j])
                if label_smoothing != 0:
                    t = t * (1.0 - label_smoothing) + label_smoothing / k
                dy[r, j] = (tsum * math.exp(float(y_pred[r, j]) - lse) - t) * c
        else:
            s = 0.0
            for j in range(k):
                s += float(y_pred[r, j])
            loss = 0.0
            go = 0.0  # sum_i g_i * o_i, for the gradient through o = p / sum(p)
            for j in range(k):
                t = float(y_true[r, j])
                if label_smoothing != 0:
                    t = t * (1.0 - label_smoothing) + label_smoothing / k
                o = float(y_pred[r, j]) / s
                oc, passes = _clip_grad(o, 1.0)
                g = -t / oc * passes
                loss -= t * math.log(oc)
                go += g * o
                dy[r, j] = g  # d loss / d o_j, finished below
            for j in range(k):
                dy[r, j] = (dy[r, j] - go) / s * c
        total += w[r] * loss
    return total


@jit
def sparse_categorical_crossentropy(labels, y_pred, w, dy, scale, from_logits):
    rows, k = y_pred.shape
    labels = labels.reshape(labels.size)  # (rows,) or (rows, 1)
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        lab = int(labels[r])
        if lab < 0 or lab >= k:
            raise ValueError("sparse_categorical_crossentropy: a label is outside [0, num_classes)")
        c = scale * w[r]
        if from_logits:
            mx = -math.inf
            for j in range(k):
                mx = max(mx, float(y_pred[r, j]))
            se = 0.0
            for j in range(k):
                se += math.exp(float(y_pred[r, j]) - mx)
            lse = mx + math.log(se)
            total += w[r] * (lse - float(y_pred[r, lab]))
            for j in range(k):
                dy[r, j] = math.exp(float(y_pred[r, j]) - lse) * c
            dy[r, lab] -= c
        else:
            s = 0.0
            for j in range(k):
                s += float(y_pred[r, j])
            o = float(y_pred[r, lab]) / s
            oc, passes = _clip_grad(o, 1.0)
            total += w[r] * (-math.log(oc))
            g = -passes / oc
            for j in range(k):
                dy[r, j] = -g * o / s * c
            dy[r, lab] += g / s * c
    return total


@jit
def kl_divergence(y_true, y_pred, w, dy, scale):
    """``sum(t * log(t / p))`` with ``t`` and ``p`` clipped to ``[epsilon, 1]``."""
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r]
        acc = 0.0
        for j in range(k):
            t = min(max(float(y_true[r, j]), EPS), 1.0)
            p = float(y_pred[r, j])
            pc = min(max(p, EPS), 1.0)
            acc += t * math.log(t / pc)
            dy[r, j] = (-t / pc * c) if (p >= EPS and p <= 1.0) else 0.0
        total += w[r] * acc
    return total


@jit
def poisson(y_true, y_pred, w, dy, scale):
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            t = float(y_true[r, j])
            p = float(y_pred[r, j])
            acc += p - t * math.log(p + EPS)
            dy[r, j] = (1.0 - t / (p + EPS)) * c
        total += w[r] * (acc / k)
    return total


@jit
def _focal_power(base, gamma):
    """``base ** gamma`` and its derivative by ``base``, as autograd gives them (``0 ** 0 = 1``)."""
    if base == 0.0:
        return (1.0 if gamma == 0.0 else 0.0), (1.0 if gamma == 1.0 else 0.0 if gamma > 1.0 else math.inf)
    v = base**gamma
    return v, gamma * v / base


@jit
def binary_focal_crossentropy(
    y_true, y_pred, w, dy, scale, apply_class_balancing, alpha, gamma, from_logits, label_smoothing
):
    """``mean(weight * (1 - p_t) ** gamma * bce)`` with ``p_t = t p + (1 - t)(1 - p)``; ``p`` is
    ``sigmoid(y_pred)`` with logits, and the crossentropy clips ``p`` (the focal factor does not)."""
    rows, k = y_pred.shape
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        c = scale * w[r] / k
        acc = 0.0
        for j in range(k):
            t = float(y_true[r, j])
            if label_smoothing != 0:
                t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
            p = float(y_pred[r, j])
            dp = 1.0  # d p / d y_pred
            if from_logits:  # the probability as Keras's float32 sigmoid gives it: 1 - p near 1 depends on it
                p = float(np.float32(1.0 / (1.0 + math.exp(-p))))
                dp = p * (1.0 - p)
            o, passes = _clip_grad(p, 1.0)
            bce = -(t * math.log(o) + (1.0 - t) * math.log(1.0 - o))
            dbce = passes * (o - t) / (o * (1.0 - o))
            ff, dff = _focal_power(1.0 - (t * p + (1.0 - t) * (1.0 - p)), gamma)
            bal = t * alpha + (1.0 - t) * (1.0 - alpha) if apply_class_balancing else 1.0
            acc += bal * ff * bce
            dy[r, j] = bal * (ff * dbce - dff * (2.0 * t - 1.0) * bce) * dp * c
        total += w[r] * (acc / k)
    return total


@jit
def categorical_focal_crossentropy(y_true, y_pred, w, dy, scale, alpha, gamma, from_logits, label_smoothing):
    """``sum(alpha * (1 - o) ** gamma * -t log o)`` with ``o = clip(p / sum(p))``; ``p`` is
    ``softmax(y_pred)`` with logits."""
    rows, k = y_pred.shape
    p = np.empty(k)
    g = np.empty(k)
    total = 0.0
    for r in range(rows):
        if w[r] == 0:
            dy[r, :] = 0.0
            continue
        if from_logits:
            mx = -math.inf
            for j in range(k):
                mx = max(mx, float(y_pred[r, j]))
            se = 0.0
            for j in range(k):
                p[j] = math.exp(float(y_pred[r, j]) - mx)
                se += p[j]
            for j in range(k):
                p[j] = float(np.float32(p[j] / se))  # float32, as Keras's softmax: (1 - o) ** gamma near o = 1
        else:
            for j in range(k):
                p[j] = float(y_pred[r, j])
        s = 0.0
        for j in range(k):
            s += p[j]
        loss = 0.0
        go = 0.0  # sum_j g_j * o_j, for the gradient through o = p / sum(p)
        for j in range(k):
            t = float(y_true[r, j])
            if label_smoothing != 0:
                t = t * (1.0 - label_smoothing) + label_smoothing / k
            o = float(np.float32(p[j] / s))
            oc, passes = _clip_grad(o, 1.0)
            ff, dff = _focal_power(1.0 - oc, gamma)
            loss -= alpha * ff * t * math.log(oc)
            g[j] = passes * alpha * t * (dff * math.log(oc) - ff / oc)  # d loss / d o_j
            go += g[j] * o
        gp = 0.0  # sum_j (d loss / d p_j) * p_j, for the softmax
        for j in range(k):
            g[j] = (g[j] - go) / s
            gp += g[j] * p[j]
        c = scale * w[r]
        for j in range(k):
            dy[r, j] = (p[j] * (g[j] - gp) if from_logits else g[j]) * c
        total += w[r] * loss
    return total


@jit
def categorical_generalized_cross_entropy(labels, y_pred, w, dy, scale, q):
    """``(1 - p ** q) / q`` with ``p`` the prediction of the labelled class (integer labels)."""
    rows, k = y_pred.shape
    labels = labels.reshape(labels.size)
    total = 0.0
    for r in range(rows):
        dy[r, :] = 0.0
        if w[r] == 0:
            continue
        lab = int(labels[r])
        if lab < 0 or lab >= k:
            raise ValueError("categorical_generalized_cross_entropy: a label is outside [0, num_classes)")
        p = float(y_pred[r, lab])
        pq = p**q
        total += w[r] * (1.0 - pq) / q
        dy[r, lab] = -(pq / p if p != 0.0 else (1.0 if q == 1.0 else math.inf)) * scale * w[r]
    return total


# ------------------------------------------------------------------------------------ references
# Plain NumPy (float64), written from Keras's formulas: (per-row loss, d loss_row / d y_pred).


def _ref_clip(o):
    return np.clip(o, EPS, ONE_MINUS_EPS), ((o >= EPS) & (o <= ONE_MINUS_EPS)).astype(np.float64)


def _reference(name, yt, yp, *args, float32_steps=True):
    """``float32_steps``: round the intermediate values the kernels round to float32 as Keras computes
    them (the focal losses' probabilities); False gives the smooth float64 function, for finite
    differences."""
    f32 = (lambda a: a.astype(np.float32).astype(np.float64)) if float32_steps else (lambda a: a)
    yt = np.asarray(yt, np.float64)
    yp = np.asarray(yp, np.float64)
    k = yp.shape[-1]
    if name == "mean_squared_error":
        e = yp - yt
        return (e * e).mean(-1), 2 * e / k
    if name == "mean_absolute_error":
        e = yp - yt
        return np.abs(e).mean(-1), np.sign(e) / k
    if name == "mean_absolute_percentage_error":
        d = np.maximum(np.abs(yt), EPS)
        e = (yt - yp) / d
        return 100 * np.abs(e).mean(-1), -100 * np.sign(e) / d / k
    if name == "mean_squared_logarithmic_error":
        pc = np.maximum(yp, EPS)
        e = np.log(pc + 1) - np.log(np.maximum(yt, EPS) + 1)
        return (e * e).mean(-1), np.where(yp > EPS, 2 * e / (pc + 1), 0.0) / k
    if name == "huber":
        (delta,) = args
        e = yp - yt
        small = np.abs(e) <= delta
        v = np.where(small, 0.5 * e * e, delta * np.abs(e) - 0.5 * delta * delta)
        return v.mean(-1), np.where(small, e, delta * np.sign(e)) / k
    if name == "log_cosh":
        x = yp - yt
        return (x + np.logaddexp(0, -2 * x) - LOG2).mean(-1), np.tanh(x) / k
    if name == "cosine_similarity":
        st, sp = (yt * yt).sum(-1, keepdims=True), (yp * yp).sum(-1, keepdims=True)
        with np.errstate(divide="ignore"):
            inv_t = np.minimum(1 / np.sqrt(st), INV_EPS)
            raw_p = 1 / np.sqrt(sp)
        capped = raw_p >= INV_EPS
        inv_p = np.where(capped, INV_EPS, raw_p)
        u = yt * inv_t
        tp = (u * yp).sum(-1, keepdims=True)
        g = -u * inv_p + np.where(capped, 0.0, tp * yp * inv_p**3)
        return -(tp * inv_p)[:, 0], g
    if name in ("hinge", "squared_hinge"):
        t = 2 * yt - 1 if np.all((yt == 0) | (yt == 1)) else yt
        m = np.maximum(1 - t * yp, 0)
        if name == "hinge":
            return m.mean(-1), np.where(1 - t * yp > 0, -t, np.where(1 - t * yp == 0, -0.5 * t, 0.0)) / k
        return (m * m).mean(-1), np.where(m > 0, -2 * m * t, 0.0) / k
    if name == "categorical_hinge":
        q = (1 - yt) * yp
        neg = q.max(-1, keepdims=True)
        pos = (yt * yp).sum(-1, keepdims=True)
        raw = neg - pos + 1
        at = (q == neg).astype(np.float64)
        g = -yt + (1 - yt) * at / at.sum(-1, keepdims=True)
        return np.maximum(raw, 0)[:, 0], np.where(raw > 0, g, np.where(raw == 0, 0.5 * g, 0.0))
    if name == "binary_crossentropy":
        from_logits, ls = args
        t = yt * (1 - ls) + 0.5 * ls if ls else yt
        if from_logits:
            v = np.maximum(yp, 0) - yp * t + np.log1p(np.exp(-np.abs(yp)))
            return v.mean(-1), (1 / (1 + np.exp(-yp)) - t) / k
        o, passes = _ref_clip(yp)
        v = -(t * np.log(o) + (1 - t) * np.log(1 - o))
        return v.mean(-1), passes * (o - t) / (o * (1 - o)) / k
    if name == "categorical_crossentropy":
        from_logits, ls = args
        t = yt * (1 - ls) + ls / k if ls else yt
        if from_logits:
            lse = np.logaddexp.reduce(yp, axis=-1, keepdims=True)
            sm = np.exp(yp - lse)
            return -(t * (yp - lse)).sum(-1), t.sum(-1, keepdims=True) * sm - t
        s = yp.sum(-1, keepdims=True)
        o = yp / s
        oc, passes = _ref_clip(o)
        g = -t / oc * passes
        return -(t * np.log(oc)).sum(-1), (g - (g * o).sum(-1, keepdims=True)) / s
    if name == "sparse_categorical_crossentropy":
        (from_logits,) = args
        onehot = np.eye(k)[np.asarray(yt, np.int64).reshape(-1)]
        return _reference("categorical_crossentropy", onehot, yp, from_logits, 0.0)
    if name == "kl_divergence":
        t = np.clip(yt, EPS, 1)
        pc = np.clip(yp, EPS, 1)
        return (t * np.log(t / pc)).sum(-1), np.where((yp >= EPS) & (yp <= 1), -t / pc, 0.0)
    if name == "poisson":
        return (yp - yt * np.log(yp + EPS)).mean(-1), (1 - yt / (yp + EPS)) / k
    if name == "binary_focal_crossentropy":
        balance, alpha, gamma, from_logits, ls = args
        t = yt * (1 - ls) + 0.5 * ls if ls else yt
        p = f32(1 / (1 + np.exp(-yp))) if from_logits else yp
        o, passes = _ref_clip(p)
        bce = -(t * np.log(o) + (1 - t) * np.log(1 - o))
        base = 1 - (t * p + (1 - t) * (1 - p))
        bal = t * alpha + (1 - t) * (1 - alpha) if balance else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            dff = np.where(base > 0, gamma * base ** (gamma - 1), 0.0)
        g = bal * (base**gamma * passes * (o - t) / (o * (1 - o)) - dff * (2 * t - 1) * bce)
        return (bal * base**gamma * bce).mean(-1), g * (p * (1 - p) if from_logits else 1.0) / k
    if name == "categorical_focal_crossentropy":
        alpha, gamma, from_logits, ls = args
        t = yt * (1 - ls) + ls / k if ls else yt
        p = np.exp(yp - np.logaddexp.reduce(yp, axis=-1, keepdims=True)) if from_logits else yp
        p = f32(p)
        s = p.sum(-1, keepdims=True)
        o = f32(p / s)
        oc, passes = _ref_clip(o)
        base = 1 - oc
        with np.errstate(divide="ignore", invalid="ignore"):
            dff = np.where(base > 0, gamma * base ** (gamma - 1), 0.0)
        go = passes * alpha * t * (dff * np.log(oc) - base**gamma / oc)
        gp = (go - (go * o).sum(-1, keepdims=True)) / s
        if from_logits:
            gp = p * (gp - (gp * p).sum(-1, keepdims=True))
        return -(alpha * base**gamma * t * np.log(oc)).sum(-1), gp
    if name == "categorical_generalized_cross_entropy":
        (q,) = args
        onehot = np.eye(k)[np.asarray(yt, np.int64).reshape(-1)]
        p = (yp * onehot).sum(-1)
        return (1 - p**q) / q, -onehot * (p ** (q - 1))[:, None]
    raise KeyError(name)


# ------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class LossDef:
    """One loss type: its kernel, its arguments (name, default) in kernel order, its reference."""

    name: str
    kernel: object
    params: tuple = ()
    sparse: bool = False  # y_true holds integer class ids (rows,)
    classes: tuple = ()  # Keras class names


_DEFS = (
    LossDef("mean_squared_error", mean_squared_error, classes=("MeanSquaredError",)),
    LossDef("mean_absolute_error", mean_absolute_error, classes=("MeanAbsoluteError",)),
    LossDef(
        "mean_absolute_percentage_error",
        mean_absolute_percentage_error,
        classes=("MeanAbsolutePercentageError",),
    ),
    LossDef(
        "mean_squared_logarithmic_error",
        mean_squared_logarithmic_error,
        classes=("MeanSquaredLogarithmicError",),
    ),
    LossDef(
        "binary_crossentropy",
        binary_crossentropy,
        (("from_logits", False), ("label_smoothing", 0.0), ("axis", -1)),
        classes=("BinaryCrossentropy",),
    ),
    LossDef(
        "categorical_crossentropy",
        categorical_crossentropy,
        (("from_logits", False), ("label_smoothing", 0.0), ("axis", -1)),
        classes=("CategoricalCrossentropy",),
    ),
    LossDef(
        "sparse_categorical_crossentropy",
        sparse_categorical_crossentropy,
        (("from_logits", False), ("ignore_class", None), ("axis", -1)),
        sparse=True,
        classes=("SparseCategoricalCrossentropy",),
    ),
    LossDef("hinge", hinge, classes=("Hinge",)),
    LossDef("squared_hinge", squared_hinge, classes=("SquaredHinge",)),
    LossDef("categorical_hinge", categorical_hinge, classes=("CategoricalHinge",)),
    LossDef("huber", huber, (("delta", 1.0),), classes=("Huber",)),
    LossDef("log_cosh", log_cosh, classes=("LogCosh",)),
    LossDef("kl_divergence", kl_divergence, classes=("KLDivergence",)),
    LossDef("poisson", poisson, classes=("Poisson",)),
    LossDef("cosine_similarity", cosine_similarity, (("axis", -1),), classes=("CosineSimilarity",)),
    LossDef(
        "binary_focal_crossentropy",
        binary_focal_crossentropy,
        (("apply_class_balancing", False), ("alpha", 0.25), ("gamma", 2.0), ("from_logits", False),
         ("label_smoothing", 0.0), ("axis", -1)),
        classes=("BinaryFocalCrossentropy",),
    ),  # fmt: skip
    LossDef(
        "categorical_focal_crossentropy",
        categorical_focal_crossentropy,
        (("alpha", 0.25), ("gamma", 2.0), ("from_logits", False), ("label_smoothing", 0.0), ("axis", -1)),
        classes=("CategoricalFocalCrossentropy",),
    ),
    LossDef(
        "categorical_generalized_cross_entropy",
        categorical_generalized_cross_entropy,
        (("q", 0.5),),
        sparse=True,
        classes=("CategoricalGeneralizedCrossEntropy",),
    ),
)
LOSSES = {d.name: d for d in _DEFS}

ALIASES = {
    "mse": "mean_squared_error", "MSE": "mean_squared_error",
    "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error", "MAPE": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error", "MSLE": "mean_squared_logarithmic_error",
    "kld": "kl_divergence", "KLD": "kl_divergence", "bce": "binary_crossentropy", "BCE": "binary_crossentropy",
    # Keras 2 names, accepted by nnspec's model files
    "kullback_leibler_divergence": "kl_divergence", "logcosh": "log_cosh", "huber_loss": "huber",
}  # fmt: skip
for _d in _DEFS:
    for _c in _d.classes:
        ALIASES[_c] = _d.name


@dataclass(frozen=True)
class LossSpec:
    """A resolved loss: ``kernel(y_true, y_pred, w, dy, scale, *args)``.

    ``name`` is what Keras reports (the identifier string as given, or the canonical name);
    ``type`` the canonical loss name; ``config`` the arguments by name; ``reduction`` Keras's.
    """

    name: str
    type: str
    kernel: object
    args: tuple
    config: dict = field(default_factory=dict)
    reduction: str = "sum_over_batch_size"
    sparse: bool = False
    expression: str | None = None  # a custom loss's text (``type`` is then its name)

    @property
    def reduction_code(self) -> int:
        return REDUCTIONS[self.reduction]

    def reference(self, y_true, y_pred, float32_steps=True):
        """NumPy reference of a built-in loss on 2-D data: (per-row loss, d loss_row / d y_pred), float64.
        ``float32_steps=False``: without the float32 roundings Keras's arithmetic has (see ``_reference``)."""
        return _reference(self.type, y_true, y_pred, *self.args, float32_steps=float32_steps)

    def values(self, y_true, y_pred):
        """Each row's loss on 2-D data (float64), the NumPy reference of any loss."""
        if self.expression is not None:
            return custom_losses.values(custom_losses.analyze(self.expression), y_true, y_pred)
        return self.reference(y_true, y_pred)[0]

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None) -> float:
        return compute_loss(self, y_true, y_pred, sample_weight, mask)[0]


@dataclass(frozen=True)
class Expression:
    """A custom loss: what a Keras loss function returns, written as an expression over
    ``y_true`` and ``y_pred`` with ``keras.ops`` (``runtime/custom_losses.py``)::

        Expression("ops.mean(ops.square(y_true - y_pred), axis=-1)", name="custom_mse")

    Checked when made (a ValueError names the problem and its column); compiled into a loss
    kernel when a model resolves it. Callable as a Keras loss object: ``loss(y_true, y_pred)``.
    """

    text: str
    name: str = "custom_loss"

    def __post_init__(self) -> None:
        try:
            custom_losses.analyze(self.text)
        except ValueError as err:
            raise _custom_error(self.name, err) from None

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        return compute_loss(self, y_true, y_pred, sample_weight)[0]


def traced(fn) -> Expression:
    """A Python loss function ``fn(y_true, y_pred)`` written with ``nnspec.ops`` (Keras's
    ``keras.ops`` names) as an :class:`Expression`: called once on symbolic tensors whose
    operators and functions write its text (``layerdefs/expressions.py``), named as Keras names it."""
    from ..layerdefs.expressions import Sym

    name = getattr(fn, "__name__", "") or "custom_loss"
    name = "custom_loss" if name == "<lambda>" else name
    out = fn(Sym("y_true"), Sym("y_pred"))
    if not isinstance(out, Sym):
        raise TypeError(f"loss function '{name}' returned {out!r}, not a tensor computed from y_true and y_pred "
                        "with nnspec.ops")  # fmt: skip
    return Expression(out.text, name=name)


def get_loss(identifier, y_true_shape=None, y_pred_shape=None, custom=None) -> LossSpec:
    """Resolve a loss as Keras's ``compile`` does.

    ``identifier``: a name or alias (``"mse"``, ``"BinaryCrossentropy"``), a mapping
    ``{"type": name, **arguments}`` (nnspec's model files) or ``{"class_name": ..., "config": ...}``
    (Keras's serialized form), a :class:`LossSpec`, an :class:`Expression`, or a Python loss
    function over ``nnspec.ops`` (see :func:`traced`). ``custom``: the model file's
    ``custom_losses`` (name -> expression), whose names are resolved first; a custom loss is
    checked against the rank of ``y_pred_shape`` when it is given. ``"crossentropy"``/``"ce"``
    becomes binary, sparse or categorical crossentropy from the shapes (rank included), as Keras
    decides.
    """
    if isinstance(identifier, LossSpec):
        if identifier.expression is not None and y_pred_shape is not None:
            _custom_kernel(identifier.type, identifier.expression, len(y_pred_shape))
        return identifier
    config: dict = {}
    display = None
    custom = dict(custom or {})
    if callable(identifier) and not isinstance(identifier, Expression):
        identifier = traced(identifier)
    if isinstance(identifier, Expression):
        name = display = identifier.name
        custom[name] = identifier.text
    elif isinstance(identifier, dict):
        if "class_name" in identifier:
            name = identifier["class_name"]
            config = dict(identifier.get("config") or {})
        elif "type" in identifier:
            name = identifier["type"]
            config = {k: v for k, v in identifier.items() if k != "type"}
        else:
            raise ValueError(f"cannot read a loss from {identifier!r}: expected a 'type' key")
        display = config.pop("name", None)
    elif isinstance(identifier, str):
        name = identifier
        display = identifier
    else:
        raise TypeError(f"cannot use {identifier!r} as a loss: expected a name, a mapping, an Expression or a function")
    if name in custom:
        return _custom_spec(name, custom[name], display, config, y_pred_shape)
    if str(name).lower() in ("crossentropy", "ce"):
        if y_pred_shape is None or y_true_shape is None:
            raise ValueError(f"loss '{name}' is resolved from the label and output shapes; give both")
        binary, sparse = _binary_or_sparse(y_true_shape, y_pred_shape)
        canonical = "binary_crossentropy" if binary else "sparse_categorical_crossentropy" if sparse else (
            "categorical_crossentropy")  # fmt: skip
    else:
        canonical = ALIASES.get(name, name)
    d = LOSSES.get(canonical)
    if d is None:
        from ..specs.errors import did_you_mean

        hint = did_you_mean(str(name), [*custom, *LOSSES, *ALIASES])
        raise ValueError(
            f"unknown loss '{name}'" + (f"; {hint}" if hint else f"; known: {', '.join([*custom, *LOSSES])}")
        )
    reduction = _reduction(d.name, config)
    known = dict(d.params)
    unknown = [k for k in config if k not in known]
    if unknown:
        from ..specs.errors import did_you_mean

        hint = did_you_mean(unknown[0], list(known))
        raise ValueError(f"loss '{d.name}' takes no argument '{unknown[0]}'"
                         + (f"; {hint}" if hint else f" (arguments: {', '.join(known) or 'none'})"))  # fmt: skip
    values = {k: config.get(k, default) for k, default in d.params}
    if "axis" in values and values.pop("axis") not in (-1, None):
        raise ValueError(f"loss '{d.name}': nnspec computes it over the last axis only (axis=-1)")
    if "ignore_class" in values and values.pop("ignore_class") is not None:
        raise ValueError(
            f"loss '{d.name}': ignore_class is not supported by nnspec; mask those steps instead"
        )
    if "label_smoothing" in values:
        ls = float(values["label_smoothing"])
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"loss '{d.name}': label_smoothing must be in [0, 1]; got {ls}")
        values["label_smoothing"] = ls
    if "from_logits" in values:
        values["from_logits"] = bool(values["from_logits"])
    for key in ("delta", "alpha", "gamma", "q"):
        if key in values:
            values[key] = float(values[key])
    if "apply_class_balancing" in values:
        values["apply_class_balancing"] = bool(values["apply_class_balancing"])
    if "q" in values and not 0.0 < values["q"] < 1.0:
        raise ValueError(f"loss '{d.name}': q must be in the interval (0, 1); got {values['q']}")
    return LossSpec(name=display or d.name, type=d.name, kernel=d.kernel, args=tuple(values.values()),
                    config=values, reduction=reduction, sparse=d.sparse)  # fmt: skip


def _reduction(name: str, config: dict) -> str:
    """The loss's reduction, taken out of ``config`` (with Keras's ``dtype``, always float32 here)."""
    reduction = config.pop("reduction", "sum_over_batch_size")
    config.pop("dtype", None)
    if reduction not in REDUCTIONS:
        raise ValueError(f"loss '{name}': reduction must be one of {sorted(REDUCTIONS)}; got {reduction!r}")
    return reduction


def _custom_error(name: str, err: ValueError) -> ValueError:
    hint = getattr(err, "hint", None)
    return ValueError(f"custom loss '{name}': {custom_losses.describe(err)}" + (f"; {hint}" if hint else ""))


@lru_cache(maxsize=256)
def _custom_kernel(name: str, text: str, rank: int | None) -> tuple[object, bool]:
    """The compiled kernel of a custom loss checked at ``rank``, and whether its expression
    gives one value per entry. Raises ValueError naming the loss."""
    try:
        le = custom_losses.analyze(text, rank)
    except ValueError as err:
        raise _custom_error(name, err) from None
    from .executor import _load_module

    source, fn = custom_losses.kernel_source(le)
    return getattr(_load_module(source), fn), le.per_entry


def _custom_spec(name: str, text: str, display, config: dict, y_pred_shape) -> LossSpec:
    reduction = _reduction(name, config)
    if config:
        raise ValueError(f"custom loss '{name}' takes no argument '{next(iter(config))}' "
                         "(only reduction and name)")  # fmt: skip
    kernel, per_entry = _custom_kernel(name, text, None if y_pred_shape is None else len(y_pred_shape))
    if per_entry and REDUCTIONS[reduction] != 0:
        raise ValueError(f"custom loss '{name}' gives one value per entry, which nnspec averages over the last "
                         f"axis as Keras's default reduction does; for reduction '{reduction}', reduce it in the "
                         "expression (ops.sum(..., axis=-1) or ops.mean(..., axis=-1))")  # fmt: skip
    return LossSpec(name=display or name, type=name, kernel=kernel, args=(), reduction=reduction,
                    expression=text)  # fmt: skip


def _binary_or_sparse(y_true_shape, y_pred_shape) -> tuple[bool, bool]:
    """Keras's ``is_binary_or_sparse_categorical`` on shapes."""
    t, p = tuple(y_true_shape), tuple(y_pred_shape)
    binary = p[-1] == 1
    sparse = len(t) < len(p) or (t[-1] == 1 and p[-1] > 1)
    return binary, sparse


# ------------------------------------------------------------------------------------ convenience


def _as_rows(spec: LossSpec, y_true, y_pred):
    """Reshape to the kernel's 2-D views, squeezing or expanding y_true as Keras's wrapper does."""
    yp = np.ascontiguousarray(y_pred, dtype=np.float32)
    if yp.ndim == 1:
        yp = yp[:, None]
    lead = yp.shape[:-1]
    rows = int(np.prod(lead)) if lead else 1
    yt = np.asarray(y_true)
    if spec.sparse:
        if yt.ndim == yp.ndim and yt.shape[-1] == 1:
            yt = yt[..., 0]
        if yt.shape != lead:
            raise ValueError(f"loss '{spec.name}': labels of shape {yt.shape} do not fit predictions {yp.shape} "
                             f"(expected {lead} or {(*lead, 1)})")  # fmt: skip
        return np.ascontiguousarray(yt.reshape(rows)), yp.reshape(rows, yp.shape[-1]), lead
    if yt.ndim == yp.ndim - 1 and yp.shape[-1] == 1:
        yt = yt[..., None]
    elif yt.ndim == yp.ndim + 1 and yt.shape[-1] == 1:
        yt = yt[..., 0]
    if yt.shape != yp.shape:
        raise ValueError(
            f"loss '{spec.name}': y_true of shape {yt.shape} does not fit y_pred of shape {yp.shape}"
        )
    return np.ascontiguousarray(yt, dtype=np.float32).reshape(rows, -1), yp.reshape(rows, -1), lead


def _per_row(a, lead, what: str) -> np.ndarray:
    if a is None:
        return np.zeros(0, np.float32)
    a = np.asarray(a, np.float32)
    if a.shape == lead:
        return np.ascontiguousarray(a.reshape(-1))
    if a.ndim == len(lead) + 1 and a.shape[-1] == 1 and a.shape[:-1] == lead:
        return np.ascontiguousarray(a.reshape(-1))
    if a.ndim >= 1 and a.shape == lead[: a.ndim]:  # (batch,) over (batch, T): repeat over the extra axes
        return np.ascontiguousarray(
            np.broadcast_to(a.reshape(a.shape + (1,) * (len(lead) - a.ndim)), lead).reshape(-1)
        )
    if a.ndim == len(lead) and all(d in (1, n) for d, n in zip(a.shape, lead)) and a.shape[0] == lead[0]:
        # (batch, 1) over (batch, T): broadcast, as Keras multiplies the weights into the losses
        return np.ascontiguousarray(np.broadcast_to(a, lead).reshape(-1))
    raise ValueError(f"{what} of shape {a.shape} does not fit the loss's leading shape {lead}")


def compute_loss(spec, y_true, y_pred, sample_weight=None, mask=None, loss_weight: float = 1.0):
    """Keras's reported loss for one output and its gradient ``d(loss_weight * loss) / d y_pred``.

    Takes arrays of any rank (``y_pred`` ``(batch, ..., k)``); ``sample_weight`` ``(batch,)`` or
    the leading shape; ``mask`` the leading shape (1 = valid). Returns ``(value, dy)`` with
    ``dy`` shaped like ``y_pred``. This is the Python path (evaluation, tests); generated
    training code calls :func:`combine_weights`, the kernel and :func:`finish` itself.
    """
    spec = get_loss(spec, None, np.shape(y_pred))
    yt, yp, lead = _as_rows(spec, y_true, y_pred)
    sw = _per_row(sample_weight, lead, "sample_weight")
    m = _per_row(mask, lead, "mask")
    w = np.empty(yp.shape[0], np.float32)
    divisor = combine_weights(sw, m, w, spec.reduction_code)
    scale = loss_weight / divisor if divisor != 0 else 0.0
    dy = np.empty_like(yp)
    total = spec.kernel(yt, yp, w, dy, scale, *spec.args)
    return float(finish(total, divisor)), dy.reshape(np.shape(y_pred))


def loss_values(spec, y_true, y_pred) -> np.ndarray:
    """The per-row loss values (Keras's loss function before reduction), shaped like the leading axes."""
    spec = get_loss(spec, None, np.shape(y_pred))
    yt, yp, lead = _as_rows(spec, y_true, y_pred)
    return spec.values(yt, yp).reshape(lead)
