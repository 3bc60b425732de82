"""Optimizers with Keras 3 defaults and update rules, each one Numba kernel over the flat weights.

Mirrors ``keras/src/optimizers`` (``base_optimizer.py`` and the per-optimizer files) as run by
Keras's PyTorch backend (``keras/src/backend/torch/optimizers``), whose operation order we follow
in float32 so that several steps agree with Keras to float32 rounding:

- SGD (``learning_rate=0.01``, ``momentum``, ``nesterov``), RMSprop (0.001, ``rho=0.9``,
  ``momentum``, ``epsilon=1e-7``, ``centered``), Adam (0.001, 0.9, 0.999, 1e-7, ``amsgrad``),
  AdamW (Adam with ``weight_decay=0.004``), Adagrad (0.001, ``initial_accumulator_value=0.1``,
  1e-7), Adadelta (0.001, ``rho=0.95``, 1e-7), Adamax (0.001, 0.9, 0.999, 1e-7), Nadam (0.001,
  0.9, 0.999, 1e-7, with its ``u_product`` scalar state), Lion (0.001, 0.9, 0.99: sign steps),
  Ftrl (0.001, ``learning_rate_power=-0.5``, ``initial_accumulator_value=0.1``, L1, L2 and
  L2-shrinkage strengths and ``beta``, all 0), Lamb (0.001, 0.9, 0.999, 1e-7, with its
  per-variable trust ratio ``||w|| / ||update||``), Adafactor (0.001, ``beta_2_decay=-0.8``,
  ``epsilon_1=1e-30``, ``epsilon_2=1e-3``, ``clip_threshold=1.0``, ``relative_step``; the second
  moment of a variable of rank >= 2 factored over its last two axes). Keras's PyTorch backend
  runs Lion as a parallel (``torch._foreach``) update and the last three per variable through
  their ``update_step``; each kernel follows that order.
- One step, as Keras's ``apply``: clip the gradients (``clipnorm`` per variable:
  ``g * c / max(||g||, c)``; ``global_clipnorm``: ``g * c * min(1/||G||, 1/c)``; ``clipvalue``:
  ``clip(g, -v, v)``; at most one of them), then weight decay for *any* optimizer given
  ``weight_decay`` (decoupled, before the update, with the current rate: ``w *= 1 - wd * lr``;
  this is what AdamW is), then the update, then ``iterations += 1``. Keras applies variable
  constraints after the update and before counting the step; the training step does that with
  :mod:`nnspec.runtime.regularizers` kernels after calling the optimizer.
- The learning rate is a float32 variable in Keras (``get_config`` reports its float32 value), or
  a schedule evaluated at ``iterations`` (steps done before this one). Adam's bias corrections
  use ``t = iterations + 1``.

Design. All weights live in one flat float32 array ``tp``, the gradients in ``grads`` (same
layout). An optimizer holds:

- ``slots``: float32 ``(n_slots, size)``, one row per Keras slot variable, concatenated over
  variables in ``tp``'s layout (``slot_names`` gives the Keras names, e.g. momentum, velocity);
- ``segments``: int64 ``(n_variables, 5)``: offset, size, 1 if weight decay applies, and the
  variable's last two dimensions if its rank is >= 2 (else 0, 0); needed for per-variable
  ``clipnorm``, Lamb's norms and Adafactor's factoring (:func:`variable_segments` builds them from
  shapes; ``(offset, size)`` pairs do for every optimizer but Adafactor, which refuses them);
  elements of ``tp`` outside every segment are never touched;
- ``hparams``: float64, the hyper-parameters (clip mode and value, weight decay, then the
  optimizer's own); ``scalars``: float64 ``[iterations, learning_rate, extra state...]``;
  ``schedule_array``: the encoded learning-rate schedule.

``opt.kernel(tp, grads, slots, segments, hparams, scalars, schedule)`` is one compiled call
that performs the whole step: clipping (``grads`` is clipped in place: it is the step's scratch),
weight decay, the update, the counter. ``opt.kernel_args(tp, grads)`` gives those arguments and
``opt.apply(tp, grads, segments=None)`` calls it. Generated training code receives the same
arrays and calls the kernel inside its own compiled step (no Python in between).
After changing a hyper-parameter attribute (``opt.beta_1 = ...``) the arrays are refreshed by
the next ``apply`` or by ``opt.prepare()``; the learning rate (``opt.learning_rate = x``) is
written straight into ``scalars``.

Checkpoints: ``get_state()`` returns the slots, ``iterations``, the learning rate and the extra
scalars; ``set_state()`` restores them, so training resumes exactly.
"""

from __future__ import annotations

import re
import warnings

import numba
import numpy as np

from .numba_config import JIT_OPTIONS
from .schedules import (
    KIND_CONSTANT,
    KIND_COSINE_RESTARTS,
    KIND_EXPONENTIAL,
    KIND_INVERSE_TIME,
    KIND_PIECEWISE,
    KIND_POLYNOMIAL,
    SCHEDULES,
    LearningRateSchedule,
    get_schedule,
)

jit = numba.njit(**JIT_OPTIONS)

F1 = np.float32(1.0)
HALF = np.float32(0.5)
DECAY_096 = np.float32(0.96)
PI32 = np.float32(np.pi)

# hparams layout shared by every optimizer; each optimizer's own values start at HP_OWN
HP_CLIP_MODE, HP_CLIP, HP_WD, HP_OWN = 0, 1, 2, 3
CLIP_NONE, CLIP_NORM, CLIP_GLOBAL, CLIP_VALUE = 0, 1, 2, 3
# scalars layout
SC_ITER, SC_LR, SC_EXTRA = 0, 1, 2
# segments columns: offset, size, weight decay flag, and a variable's last two dimensions when its
# rank is >= 2 (0, 0 otherwise), which Adafactor factors its second moment over
SEG_OFFSET, SEG_SIZE, SEG_DECAY, SEG_ROWS, SEG_COLS = 0, 1, 2, 3, 4


# ------------------------------------------------------------------------------------ kernels
# Each kernel: the prologue (learning rate, clipping and weight decay as separate passes that run
# only when enabled, as Keras runs them), then one branch-free loop per variable, which LLVM
# vectorizes (about 1 us for Adam over 1k weights), then the step counter.


@jit
def schedule_lr(schedule, base_lr, step):
    """The learning rate (float32) at ``step`` (a count of completed updates).

    ``schedule`` is an encoded schedule (float64 array); ``base_lr`` is used by kind 0.
    """
    kind = int(schedule[0])
    if kind == KIND_CONSTANT:
        return np.float32(base_lr)
    s = np.float32(step)
    if kind == KIND_EXPONENTIAL or kind == KIND_INVERSE_TIME:
        initial = np.float32(schedule[1])
        p = s / np.float32(schedule[2])
        if schedule[4] != 0.0:
            p = np.floor(p)
        if kind == KIND_INVERSE_TIME:
            return initial / (F1 + np.float32(schedule[3]) * p)
        return initial * np.power(np.float32(schedule[3]), p)
    if kind == KIND_PIECEWISE:
        # Boundaries are compared with the integer step (Keras casts them to the step's dtype).
        n = int(schedule[1])
        istep = int(step)
        for i in range(n):
            if istep <= int(schedule[2 + i]):
                return np.float32(schedule[2 + n + i])
        return np.float32(schedule[2 + 2 * n])
    if kind == KIND_POLYNOMIAL:
        decay_steps = np.float32(schedule[2])
        end = np.float32(schedule[3])
        if schedule[5] != 0.0:  # cycle: the first multiple of decay_steps not below step (1 at step 0)
            decay_steps = decay_steps * (F1 if s == 0 else np.ceil(s / decay_steps))
        else:
            s = min(s, decay_steps)
        return (np.float32(schedule[1]) - end) * np.power(F1 - s / decay_steps, np.float32(schedule[4])) + end
    if kind == KIND_COSINE_RESTARTS:
        t_mul = np.float32(schedule[3])
        floor_ = np.float32(schedule[5])  # alpha, cast to float32 first as Keras does here
        fraction = s / np.float32(schedule[2])
        if t_mul == F1:
            restart = np.floor(fraction)
            fraction = fraction - restart
        else:  # period i starts after sum(t_mul ** k, k < i) = (1 - t_mul ** i) / (1 - t_mul) periods
            restart = np.floor(np.log(F1 - fraction * (F1 - t_mul)) / np.log(t_mul))
            fraction = (fraction - (F1 - np.power(t_mul, restart)) / (F1 - t_mul)) / np.power(t_mul, restart)
        decayed = HALF * np.power(np.float32(schedule[4]), restart) * (F1 + np.cos(PI32 * fraction))
        return np.float32(schedule[1]) * ((F1 - floor_) * decayed + floor_)
    # cosine, with or without warm-up
    initial = np.float32(schedule[1])
    decay_steps = np.float32(schedule[2])
    alpha = schedule[3]
    if schedule[4] == 0.0:
        s = min(s, decay_steps)
        return _cosine(s, decay_steps, initial, alpha)
    target = np.float32(schedule[5])
    warmup = np.float32(schedule[6])
    s = min(s, decay_steps + warmup)
    if s < warmup:
        return (target - initial) * (s / warmup) + initial
    return _cosine(s - warmup, decay_steps, target, alpha)


@jit
def _cosine(s, decay_steps, decay_from, alpha):
    fraction = s / decay_steps
    decayed = HALF * (F1 + np.cos(PI32 * fraction))
    return decay_from * (np.float32(1.0 - alpha) * decayed + np.float32(alpha))


@jit
def _prologue(tp, grads, segments, hp, sc, sched):
    """The step's float32 learning rate; clips ``grads`` in place and applies weight decay to ``tp``."""
    lr = schedule_lr(sched, sc[SC_LR], sc[SC_ITER])
    mode = int(hp[HP_CLIP_MODE])
    c = np.float32(hp[HP_CLIP])
    if mode == CLIP_NORM:  # per variable: g * c / max(||g||, c)
        for s in range(segments.shape[0]):
            g = grads[segments[s, 0] : segments[s, 0] + segments[s, 1]]
            acc = 0.0
            for i in range(g.shape[0]):
                acc += float(g[i]) * float(g[i])
            d = np.maximum(np.float32(np.sqrt(acc)), c)
            for i in range(g.shape[0]):
                g[i] = (g[i] * c) / d
    elif mode == CLIP_GLOBAL:  # every variable: g * c * min(1 / ||G||, 1 / c)
        acc = 0.0
        for s in range(segments.shape[0]):
            g = grads[segments[s, 0] : segments[s, 0] + segments[s, 1]]
            for i in range(g.shape[0]):
                acc += float(g[i]) * float(g[i])
        scale = c * np.minimum(F1 / np.float32(np.sqrt(acc)), F1 / c)
        for s in range(segments.shape[0]):
            g = grads[segments[s, 0] : segments[s, 0] + segments[s, 1]]
            for i in range(g.shape[0]):
                g[i] = g[i] * scale
    elif mode == CLIP_VALUE:
        for s in range(segments.shape[0]):
            g = grads[segments[s, 0] : segments[s, 0] + segments[s, 1]]
            for i in range(g.shape[0]):
                g[i] = np.minimum(np.maximum(g[i], -c), c)
    wd = hp[HP_WD]
    if not np.isnan(wd):  # decoupled weight decay, before the update: w *= 1 - wd * lr
        decay = F1 - np.float32(wd) * lr
        for s in range(segments.shape[0]):
            if segments[s, 2] != 0:
                x = tp[segments[s, 0] : segments[s, 0] + segments[s, 1]]
                for i in range(x.shape[0]):
                    x[i] = x[i] * decay
    return lr


@jit
def _moment_params(hp):
    """``beta_1, beta_2, 1 - beta_1, 1 - beta_2, epsilon`` in float32 (the differences taken in
    float64 first, as Keras's ``1 - beta`` of a Python float)."""
    return (np.float32(hp[HP_OWN]), np.float32(hp[HP_OWN + 1]), np.float32(1.0 - hp[HP_OWN]),
            np.float32(1.0 - hp[HP_OWN + 1]), np.float32(hp[HP_OWN + 2]))  # fmt: skip


@jit
def sgd_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    momentum = np.float32(hp[HP_OWN])
    nesterov = hp[HP_OWN + 1] != 0
    neg_lr = -lr
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g = tp[lo:hi], grads[lo:hi]
        if hp[HP_OWN] == 0:
            for i in range(x.shape[0]):
                x[i] = x[i] + neg_lr * g[i]
            continue
        buf = slots[0, lo:hi]
        if nesterov:
            for i in range(x.shape[0]):
                b = buf[i] * momentum + neg_lr * g[i]
                buf[i] = b
                x[i] = (x[i] + neg_lr * g[i]) + momentum * b
        else:
            for i in range(x.shape[0]):
                b = buf[i] * momentum + neg_lr * g[i]
                buf[i] = b
                x[i] = x[i] + b
    sc[SC_ITER] += 1.0


@jit
def rmsprop_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    rho = np.float32(hp[HP_OWN])
    one_m_rho = np.float32(1.0 - hp[HP_OWN])
    momentum = np.float32(hp[HP_OWN + 1])
    use_mom = hp[HP_OWN + 1] > 0
    eps = np.float32(hp[HP_OWN + 2])
    centered = hp[HP_OWN + 3] != 0
    i_avg = 2 if use_mom else 1
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, vel = tp[lo:hi], grads[lo:hi], slots[0, lo:hi]
        if centered and use_mom:
            avg, mom = slots[i_avg, lo:hi], slots[1, lo:hi]
            for i in range(x.shape[0]):
                v = vel[i] * rho + (g[i] * g[i]) * one_m_rho
                vel[i] = v
                a = avg[i] * rho + g[i] * one_m_rho
                avg[i] = a
                m = mom[i] * momentum + (g[i] * lr) / np.sqrt((v + eps) - a * a)
                mom[i] = m
                x[i] = x[i] - m
        elif centered:
            avg = slots[i_avg, lo:hi]
            for i in range(x.shape[0]):
                v = vel[i] * rho + (g[i] * g[i]) * one_m_rho
                vel[i] = v
                a = avg[i] * rho + g[i] * one_m_rho
                avg[i] = a
                x[i] = x[i] - (g[i] * lr) / np.sqrt((v + eps) - a * a)
        elif use_mom:
            mom = slots[1, lo:hi]
            for i in range(x.shape[0]):
                v = vel[i] * rho + (g[i] * g[i]) * one_m_rho
                vel[i] = v
                m = mom[i] * momentum + (g[i] * lr) / np.sqrt(v + eps)
                mom[i] = m
                x[i] = x[i] - m
        else:
            for i in range(x.shape[0]):
                v = vel[i] * rho + (g[i] * g[i]) * one_m_rho
                vel[i] = v
                x[i] = x[i] - (g[i] * lr) / np.sqrt(v + eps)
    sc[SC_ITER] += 1.0


@jit
def adam_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    b1, b2, one_m_b1, one_m_b2, eps = _moment_params(hp)
    amsgrad = hp[HP_OWN + 3] != 0
    t = np.float32(sc[SC_ITER] + 1.0)
    alpha = lr * np.sqrt(F1 - np.power(b2, t)) / (F1 - np.power(b1, t))
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, m_, v_ = tp[lo:hi], grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi]
        if amsgrad:
            vh = slots[2, lo:hi]
            for i in range(x.shape[0]):
                m = m_[i] * b1 + g[i] * one_m_b1
                v = v_[i] * b2 + (g[i] * g[i]) * one_m_b2
                m_[i] = m
                v_[i] = v
                v = np.maximum(vh[i], v)
                vh[i] = v
                x[i] = x[i] - (m * alpha) / (np.sqrt(v) + eps)
        else:
            for i in range(x.shape[0]):
                m = m_[i] * b1 + g[i] * one_m_b1
                v = v_[i] * b2 + (g[i] * g[i]) * one_m_b2
                m_[i] = m
                v_[i] = v
                x[i] = x[i] - (m * alpha) / (np.sqrt(v) + eps)
    sc[SC_ITER] += 1.0


@jit
def adagrad_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    eps = np.float32(hp[HP_OWN + 1])
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, acc = tp[lo:hi], grads[lo:hi], slots[0, lo:hi]
        for i in range(x.shape[0]):
            a = acc[i] + g[i] * g[i]
            acc[i] = a
            x[i] = x[i] - (g[i] * lr) / np.sqrt(a + eps)
    sc[SC_ITER] += 1.0


@jit
def adadelta_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    rho = np.float32(hp[HP_OWN])
    one_m_rho = np.float32(1.0 - hp[HP_OWN])
    eps = np.float32(hp[HP_OWN + 1])
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, acc_g, acc_d = tp[lo:hi], grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi]
        for i in range(x.shape[0]):
            ag = acc_g[i] * rho + (g[i] * g[i]) * one_m_rho
            acc_g[i] = ag
            delta = -((np.sqrt(acc_d[i] + eps) * g[i]) / np.sqrt(ag + eps))
            acc_d[i] = acc_d[i] * rho + (delta * delta) * one_m_rho
            x[i] = x[i] + lr * delta
    sc[SC_ITER] += 1.0


@jit
def adamax_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    b1 = np.float32(hp[HP_OWN])
    b2 = np.float32(hp[HP_OWN + 1])
    one_m_b1 = np.float32(1.0 - hp[HP_OWN])
    eps = np.float32(hp[HP_OWN + 2])
    corr = F1 - np.power(b1, np.float32(sc[SC_ITER] + 1.0))
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, m_, u_ = tp[lo:hi], grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi]
        for i in range(x.shape[0]):
            m = m_[i] * b1 + g[i] * one_m_b1
            u = np.maximum(u_[i] * b2, np.abs(g[i]))
            m_[i] = m
            u_[i] = u
            x[i] = x[i] - (m * lr) / ((u + eps) * corr)
    sc[SC_ITER] += 1.0


@jit
def nadam_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    b1, b2, one_m_b1, one_m_b2, eps = _moment_params(hp)
    t = np.float32(sc[SC_ITER] + 1.0)
    u_t = b1 * (F1 - HALF * np.power(DECAY_096, t))
    u_t_1 = b1 * (F1 - HALF * np.power(DECAY_096, np.float32(sc[SC_ITER] + 2.0)))
    u_product_t = np.float32(sc[SC_EXTRA]) * u_t
    sc[SC_EXTRA] = u_product_t
    d1 = F1 - u_product_t * u_t_1
    d2 = F1 - u_product_t
    one_m_u_t = F1 - u_t
    one_m_b2p = F1 - np.power(b2, t)
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, m_, v_ = tp[lo:hi], grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi]
        for i in range(x.shape[0]):
            m = m_[i] * b1 + g[i] * one_m_b1
            v = v_[i] * b2 + (g[i] * g[i]) * one_m_b2
            m_[i] = m
            v_[i] = v
            m_hat = (m * u_t_1) / d1 + (g[i] * one_m_u_t) / d2
            x[i] = x[i] - (m_hat * lr) / (np.sqrt(v / one_m_b2p) + eps)
    sc[SC_ITER] += 1.0


@jit
def lion_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    b1 = np.float32(hp[HP_OWN])
    b2 = np.float32(hp[HP_OWN + 1])
    one_m_b1 = np.float32(1.0 - hp[HP_OWN])
    one_m_b2 = np.float32(1.0 - hp[HP_OWN + 1])
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, m_ = tp[lo:hi], grads[lo:hi], slots[0, lo:hi]
        for i in range(x.shape[0]):
            x[i] = x[i] - np.sign(m_[i] * b1 + g[i] * one_m_b1) * lr
            m_[i] = m_[i] * b2 + g[i] * one_m_b2
    sc[SC_ITER] += 1.0


@jit
def ftrl_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    power = np.float32(-hp[HP_OWN])
    l1 = np.float32(hp[HP_OWN + 2])
    # l2 + beta / (2 lr), with torch's scalar / tensor: reciprocal, then the product
    l2_reg = np.float32(hp[HP_OWN + 3]) + (F1 / (np.float32(2.0) * lr)) * np.float32(hp[HP_OWN + 5])
    two_l2 = np.float32(2.0) * l2_reg
    shrink = np.float32(2.0 * hp[HP_OWN + 4])
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, acc, lin = tp[lo:hi], grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi]
        for i in range(x.shape[0]):
            a = acc[i] + g[i] * g[i]
            pa = np.power(a, power)
            ln = lin[i] + ((g[i] + shrink * x[i]) - ((pa - np.power(acc[i], power)) / lr) * x[i])
            lin[i] = ln
            acc[i] = a
            x[i] = (np.minimum(np.maximum(ln, -l1), l1) - ln) / (pa / lr + two_l2)
    sc[SC_ITER] += 1.0


@jit
def lamb_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    b1, b2, one_m_b1, one_m_b2, eps = _moment_params(hp)
    t = np.float32(sc[SC_ITER] + 1.0)
    corr_1 = F1 - np.power(b1, t)
    corr_2 = F1 - np.power(b2, t)
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        x, g, m_, v_ = tp[lo:hi], grads[lo:hi], slots[0, lo:hi], slots[1, lo:hi]
        w_sq = 0.0
        u_sq = 0.0
        for i in range(x.shape[0]):
            m = m_[i] + (g[i] - m_[i]) * one_m_b1
            v = v_[i] + (g[i] * g[i] - v_[i]) * one_m_b2
            m_[i] = m
            v_[i] = v
            u = (m / corr_1) / (np.sqrt(v / corr_2) + eps)
            w_sq += float(x[i]) * float(x[i])
            u_sq += float(u) * float(u)
        # the trust ratio ||w|| / ||update|| (1 when either is 0), from float32 norms as Keras's
        w_norm = np.sqrt(np.float32(w_sq))
        u_norm = np.sqrt(np.float32(u_sq))
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else F1
        step = ratio * lr
        for i in range(x.shape[0]):
            x[i] = x[i] - step * ((m_[i] / corr_1) / (np.sqrt(v_[i] / corr_2) + eps))
    sc[SC_ITER] += 1.0


@jit
def _rms(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += float(x[i]) * float(x[i])
    return np.sqrt(np.float32(acc / x.shape[0]))


@jit
def adafactor_step(tp, grads, slots, segments, hp, sc, sched):
    lr = _prologue(tp, grads, segments, hp, sc, sched)
    eps_1 = np.float32(hp[HP_OWN + 1])
    eps_2 = np.float32(hp[HP_OWN + 2])
    clip = np.float32(hp[HP_OWN + 3])
    t = np.float32(sc[SC_ITER] + 1.0)
    rho = min(lr, F1 / np.sqrt(t))  # also what relative_step computes: it changes nothing more
    b2 = F1 - np.power(t, np.float32(hp[HP_OWN]))
    one_m_b2 = F1 - b2
    for s in range(segments.shape[0]):
        lo, hi = segments[s, 0], segments[s, 0] + segments[s, 1]
        if hi == lo:
            continue
        x, g, v_ = tp[lo:hi], grads[lo:hi], slots[2, lo:hi]
        alpha = max(eps_2, _rms(x)) * rho
        rows, cols = segments[s, SEG_ROWS], segments[s, SEG_COLS]
        if rows > 0:  # rank >= 2: r (..., rows) and c (..., cols) at the start of the segment's rows
            r_, c_ = slots[0, lo:hi], slots[1, lo:hi]
            n = rows * cols
            for b in range(x.shape[0] // n):
                gb, vb = g[b * n : (b + 1) * n], v_[b * n : (b + 1) * n]
                rb, cb = r_[b * rows : (b + 1) * rows], c_[b * cols : (b + 1) * cols]
                for i in range(rows):
                    acc = 0.0
                    for j in range(cols):
                        acc += float(gb[i * cols + j] * gb[i * cols + j] + eps_1)
                    rb[i] = b2 * rb[i] + one_m_b2 * np.float32(acc / cols)
                for j in range(cols):
                    acc = 0.0
                    for i in range(rows):
                        acc += float(gb[i * cols + j] * gb[i * cols + j] + eps_1)
                    cb[j] = b2 * cb[j] + one_m_b2 * np.float32(acc / rows)
                acc = 0.0
                for i in range(rows):
                    acc += float(rb[i])
                r_mean = np.float32(acc / rows)
                for i in range(rows):
                    ri = rb[i] / r_mean
                    for j in range(cols):
                        vb[i * cols + j] = ri * cb[j]
        else:
            for i in range(x.shape[0]):
                v_[i] = b2 * v_[i] + one_m_b2 * (g[i] * g[i] + eps_1)
        # u = g / sqrt(v), scaled down to an RMS of at most clip_threshold
        acc = 0.0
        for i in range(x.shape[0]):
            u = g[i] / np.sqrt(v_[i])
            acc += float(u) * float(u)
        denom = max(F1, np.sqrt(np.float32(acc / x.shape[0])) / clip)
        for i in range(x.shape[0]):
            x[i] = x[i] - alpha * ((g[i] / np.sqrt(v_[i])) / denom)
    sc[SC_ITER] += 1.0


# ------------------------------------------------------------------------------------ objects


def variable_segments(shapes, offsets=None) -> np.ndarray:
    """Segments (int64, one row per variable) for variables of these shapes: offset, size, 1
    (weight decay applies), and the last two dimensions of a variable of rank >= 2 (0, 0 otherwise).
    The variables follow each other in the flat array unless ``offsets`` are given."""
    shapes = [tuple(int(d) for d in shape) for shape in shapes]
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
    if offsets is None:
        offsets = np.cumsum([0, *sizes[:-1]]) if sizes else []
    rows = [[int(o), n, 1, *(shape[-2:] if len(shape) >= 2 else (0, 0))]
            for o, n, shape in zip(offsets, sizes, shapes)]  # fmt: skip
    return np.array(rows, np.int64).reshape(-1, 5)


class Optimizer:
    """Base class: hyper-parameters, flat state arrays, one kernel call per step.

    Subclasses set ``class_name``, ``kernel``, ``_own`` (their hyper-parameter names in
    ``hparams`` order, with Keras defaults given by ``__init__``), and ``slot_names()``.
    """

    class_name = "Optimizer"
    kernel = None
    _own: tuple = ()
    _n_extra = 0  # scalar state beyond iterations and learning rate
    _BASE = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):  # fmt: skip
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=3)
        if kwargs:
            raise ValueError(f"{self.class_name}: argument(s) not recognized: {sorted(kwargs)}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"{self.class_name}: only one of clipnorm, clipvalue and global_clipnorm can be set; "
                             f"got clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")  # fmt: skip
        if use_ema:
            raise NotImplementedError(f"{self.class_name}: use_ema is not supported by nnspec")
        if loss_scale_factor is not None or gradient_accumulation_steps is not None:
            raise NotImplementedError(
                f"{self.class_name}: loss_scale_factor and gradient_accumulation_steps are not supported by nnspec"
            )
        object.__setattr__(self, "_dirty", True)
        self.name = name or self.class_name.lower()
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = False
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = None
        self.gradient_accumulation_steps = None
        self.scalars = np.zeros(SC_EXTRA + self._n_extra, np.float64)
        self._schedule: LearningRateSchedule | None = None
        self._set_learning_rate(learning_rate)
        self.slots: np.ndarray | None = None
        self.segments = np.zeros((0, 3), np.int64)
        self.segment_names: list[str] | None = None
        self.hparams = np.zeros(HP_OWN, np.float64)
        self._exclude_names: re.Pattern | None = None
        self._segments_source = None
        self._init_extra()

    # -------------------------------------------------------------- configuration

    def __setattr__(self, name, value):
        if name in self._BASE or name in self._own:
            object.__setattr__(self, "_dirty", True)
        object.__setattr__(self, name, value)

    def _init_extra(self) -> None:
        pass

    def slot_names(self) -> tuple:
        return ()

    def _slot_init(self, name: str) -> float:
        return 0.0

    def _set_learning_rate(self, value) -> None:
        if isinstance(value, (LearningRateSchedule, dict)) or type(value).__name__ in SCHEDULES:
            self._schedule = get_schedule(value)
            self.schedule_array = self._schedule.encode()
            return
        if callable(value):
            raise TypeError(f"{self.class_name}: a callable learning rate cannot run inside compiled code; "
                            f"use a schedule ({', '.join(SCHEDULES)})")  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TypeError(f"{self.class_name}: learning_rate must be a float or a schedule; got {value!r}")
        self._schedule = None
        self.schedule_array = np.zeros(1, np.float64)
        self.scalars[SC_LR] = float(np.float32(value))  # Keras keeps the rate in a float32 variable

    @property
    def learning_rate(self) -> float:
        """The rate the next step uses (a schedule is evaluated at ``iterations``)."""
        if self._schedule is not None:
            return float(schedule_lr(self.schedule_array, 0.0, self.scalars[SC_ITER]))
        return float(self.scalars[SC_LR])

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if self._schedule is not None and not isinstance(value, (LearningRateSchedule, dict)):
            raise TypeError(f"{self.class_name} was created with a learning-rate schedule, so its learning rate "
                            "is not settable; create it with a float learning_rate to change the rate")  # fmt: skip
        self._set_learning_rate(value)

    @property
    def iterations(self) -> int:
        return int(self.scalars[SC_ITER])

    @iterations.setter
    def iterations(self, value: int) -> None:
        self.scalars[SC_ITER] = float(int(value))

    def _hparams(self) -> np.ndarray:
        if self.clipnorm:
            mode, clip = CLIP_NORM, self.clipnorm
        elif self.global_clipnorm:
            mode, clip = CLIP_GLOBAL, self.global_clipnorm
        elif self.clipvalue:
            mode, clip = CLIP_VALUE, self.clipvalue
        else:
            mode, clip = CLIP_NONE, 0.0
        wd = np.nan if self.weight_decay is None else float(self.weight_decay)
        own = [float(getattr(self, n)) for n in self._own]
        return np.array([mode, clip, wd, *own], np.float64)

    def prepare(self) -> None:
        """Refresh ``hparams`` and the weight-decay flags after a hyper-parameter changed."""
        if self.slots is not None and self.slots.shape[0] != len(self.slot_names()):
            raise ValueError(f"{self.class_name}: this change needs slots {list(self.slot_names())} but the optimizer "
                             f"was built with {self.slots.shape[0]}; set momentum, centered or amsgrad before the "
                             "first step")  # fmt: skip
        object.__setattr__(self, "hparams", self._hparams())
        self._apply_decay_flags()
        object.__setattr__(self, "_dirty", False)

    def get_config(self) -> dict:
        lr = self._schedule.serialize() if self._schedule is not None else float(self.scalars[SC_LR])
        config = {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                  "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                  "use_ema": False, "ema_momentum": self.ema_momentum,
                  "ema_overwrite_frequency": self.ema_overwrite_frequency, "loss_scale_factor": None,
                  "gradient_accumulation_steps": None}  # fmt: skip
        config.update({n: getattr(self, n) for n in self._own})
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = get_schedule(config["learning_rate"])
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(learning_rate={self.learning_rate:g}, iterations={self.iterations})"

    # -------------------------------------------------------------- building

    def build(self, size_or_tp, segments=None, names=None) -> None:
        """Allocate the slots for a flat array of ``size`` floats (or for ``tp`` itself).

        ``segments``: (offset, size) per variable, as a sequence or an int array, or rows of
        :func:`variable_segments` (which add each variable's shape for Adafactor); default one
        segment over everything. ``names``: one name per segment (``layer/weight``), for
        :meth:`exclude_from_weight_decay`.
        """
        size = int(size_or_tp) if np.isscalar(size_or_tp) else int(np.asarray(size_or_tp).size)
        names_in = self.slot_names()
        self.slots = np.empty((len(names_in), size), np.float32)
        for i, n in enumerate(names_in):
            self.slots[i].fill(self._slot_init(n))
        self.set_segments(size, segments, names)

    def set_segments(self, size: int, segments=None, names=None) -> None:
        """Set the variables' places in the flat array (see :meth:`build`)."""
        if segments is None:
            seg = np.array([[0, size, 1, 0, 0]], np.int64)  # one rank-1 variable
        else:
            arr = np.asarray(segments, dtype=np.int64)
            if arr.ndim != 2 or arr.shape[1] not in (2, 3, 5):
                raise ValueError(f"segments must be (offset, size) pairs, or rows of 5 (see variable_segments); got "
                                 f"an array of shape {arr.shape}")  # fmt: skip
            seg = np.zeros((arr.shape[0], 5), np.int64)
            seg[:, :2] = arr[:, :2]
            seg[:, SEG_DECAY] = 1
            if arr.shape[1] == 5:
                seg[:, SEG_ROWS:] = arr[:, SEG_ROWS:]
                m = seg[:, SEG_ROWS] * seg[:, SEG_COLS]
                uneven = (m > 0) & (seg[:, SEG_SIZE] % np.maximum(m, 1) != 0)
                if np.any(seg[:, SEG_ROWS:] < 0) or np.any(uneven):
                    raise ValueError("segments: a variable's last two dimensions must divide its size")
            if np.any(seg[:, 0] < 0) or np.any(seg[:, 1] < 0) or np.any(seg[:, 0] + seg[:, 1] > size):
                raise ValueError(f"segments do not fit a flat array of {size} floats")
            self._check_shapes_known(arr.shape[1] == 5)
        if names is not None and len(names) != seg.shape[0]:
            raise ValueError(f"{len(names)} names for {seg.shape[0]} segments")
        self.segments = seg
        self.segment_names = list(names) if names is not None else None
        self._segments_source = segments
        self.prepare()

    def _check_shapes_known(self, known: bool) -> None:
        """Hook for an optimizer that needs the variables' shapes (Adafactor)."""

    @property
    def built(self) -> bool:
        return self.slots is not None

    def variable_count(self) -> tuple[int, int]:
        """(values, bytes) of Keras's ``optimizer.variables`` for this optimizer once built: the
        iteration count (int32 on Keras's torch backend), the learning rate (a variable unless it
        is a schedule), the slots (one per trainable weight value each) and extra scalars
        (Nadam's ``u_product``); 4 bytes each."""
        lr = 0 if self._schedule is not None else 1
        slots = 0 if self.slots is None else self._slot_values()
        extra = int(getattr(self, "_n_extra", 0))
        n = 1 + lr + slots + extra
        return n, 4 * n

    def _slot_values(self) -> int:
        return int(self.slots.size)

    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Exclude variables whose name matches one of ``var_names`` (regular expressions, searched
        in the variable's own name, the part after the last ``/``, as Keras searches
        ``variable.name``). ``var_list`` may list full variable names to exclude."""
        self._exclude_full = set(var_list or [])
        self._exclude_names = re.compile("|".join(sorted(set(var_names)))) if var_names else None
        self._apply_decay_flags()

    def _apply_decay_flags(self) -> None:
        if self.segment_names is None or self.segments.shape[0] == 0:
            return
        full = getattr(self, "_exclude_full", set())
        for i, n in enumerate(self.segment_names):
            short = n.rsplit("/", 1)[-1]
            excluded = n in full or (self._exclude_names is not None and self._exclude_names.search(short))
            self.segments[i, 2] = 0 if excluded else 1

    # -------------------------------------------------------------- stepping

    def kernel_args(self, tp, grads) -> tuple:
        """The kernel's arguments for one step over ``tp`` and ``grads``."""
        return (
            tp,
            grads,
            self.slots,
            self.segments,
            self.hparams,
            self.scalars,
            self.schedule_array,
        )

    def apply(self, tp: np.ndarray, grads: np.ndarray, segments=None) -> None:
        """One optimizer step over the flat ``tp`` (updated in place) with gradients ``grads``."""
        if self.slots is None:
            self.build(tp.size, segments)
        elif segments is not None and segments is not self._segments_source:
            names = (
                self.segment_names
                if self.segment_names is not None and len(self.segment_names) == len(segments)
                else None
            )
            self.set_segments(tp.size, segments, names)
        if self._dirty:
            self.prepare()
        if tp.dtype != np.float32 or grads.dtype != np.float32 or grads.shape != tp.shape:
            raise ValueError(f"{self.class_name}.apply: tp and grads must be float32 arrays of one shape; got "
                             f"{tp.dtype}{tp.shape} and {grads.dtype}{grads.shape}")  # fmt: skip
        if self.slots.shape[1] != tp.size:
            raise ValueError(f"{self.class_name} was built for {self.slots.shape[1]} weights; got {tp.size}")
        type(self).kernel(*self.kernel_args(tp, grads))

    def apply_gradients(self, grads_and_vars) -> int:
        """Keras's list form: ``[(grad, var), ...]`` of float32 arrays; each ``var`` is updated in place.

        The variables are copied into one flat array, stepped, and copied back (the list must be
        the same, in the same order, at every call).
        """
        pairs = list(grads_and_vars)
        segments = variable_segments([np.shape(v) for _, v in pairs])
        offsets, sizes = segments[:, 0], segments[:, 1]
        tp = np.concatenate([np.asarray(v, np.float32).ravel() for _, v in pairs])
        grads = np.concatenate([np.asarray(g, np.float32).ravel() for g, _ in pairs])
        if self.slots is None:
            names = [getattr(v, "name", f"variable_{i}") for i, (_, v) in enumerate(pairs)]
            self.build(tp.size, segments, names)
        self.apply(tp, grads)
        for (_, v), off, n in zip(pairs, offsets, sizes):
            v[...] = tp[off : off + n].reshape(np.shape(v))
        return self.iterations

    # -------------------------------------------------------------- checkpoints

    def get_state(self) -> dict:
        """Everything a resumed run needs: slots (copies), iterations, learning rate, extra scalars."""
        names = self.slot_names()
        slots = {} if self.slots is None else {n: self.slots[i].copy() for i, n in enumerate(names)}
        return {"class_name": self.class_name, "config": self.get_config(), "iterations": self.iterations,
                "learning_rate": None if self._schedule is not None else float(self.scalars[SC_LR]),
                "scalars": [float(x) for x in self.scalars[SC_EXTRA:]], "slots": slots}  # fmt: skip

    def set_state(self, state: dict) -> None:
        """Restore a :meth:`get_state` result (builds the slots if needed)."""
        slots = state.get("slots") or {}
        names = self.slot_names()
        if slots:
            missing = [n for n in names if n not in slots]
            if missing:
                raise ValueError(f"{self.class_name}: the saved state has no slot '{missing[0]}' (saved: "
                                 f"{sorted(slots)}; this optimizer has {list(names)})")  # fmt: skip
            size = int(np.asarray(slots[names[0]]).size)
            if self.slots is None or self.slots.shape[1] != size:
                self.build(size)
            for i, n in enumerate(names):
                a = np.asarray(slots[n], np.float32).reshape(-1)
                if a.size != size:
                    raise ValueError(f"{self.class_name}: slot '{n}' has {a.size} values; expected {size}")
                self.slots[i] = a
        self.iterations = int(state.get("iterations", 0))
        if state.get("learning_rate") is not None and self._schedule is None:
            self.scalars[SC_LR] = float(state["learning_rate"])
        extra = state.get("scalars") or []
        if len(extra) != self._n_extra:
            raise ValueError(f"{self.class_name}: expected {self._n_extra} extra scalars in the state; "
                             f"got {len(extra)}")  # fmt: skip
        self.scalars[SC_EXTRA:] = extra


class SGD(Optimizer):
    """Gradient descent, with optional momentum and Nesterov momentum (Keras defaults)."""

    class_name = "SGD"
    kernel = sgd_step
    _own = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be a float in [0, 1]; got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("momentum",) if self.momentum != 0 else ()


class RMSprop(Optimizer):
    """RMSprop: moving average of squared gradients, optional momentum and centering."""

    class_name = "RMSprop"
    kernel = rmsprop_step
    _own = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + (
            ("average_gradient",) if self.centered else ())  # fmt: skip


class Adam(Optimizer):
    """Adam, with the optional AMSGrad variant."""

    class_name = "Adam"
    kernel = adam_step
    _own = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())


class AdamW(Adam):
    """Adam with decoupled weight decay (``w *= 1 - weight_decay * lr`` before each update)."""

    class_name = "AdamW"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):  # fmt: skip
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a float; got None")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)  # fmt: skip


class Adagrad(Optimizer):
    """Adagrad: per-weight rates from the sum of squared gradients (starting at 0.1)."""

    class_name = "Adagrad"
    kernel = adagrad_step
    _own = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("accumulator",)

    def _slot_init(self, name: str) -> float:
        return float(self.initial_accumulator_value)


class Adadelta(Optimizer):
    """Adadelta (Keras 3 default learning rate 0.001, not Keras 2's 1.0)."""

    class_name = "Adadelta"
    kernel = adadelta_step
    _own = ("rho", "epsilon")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        self.rho, self.epsilon = rho, epsilon
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("accumulated_grad", "accumulated_delta_var")


class _Moments(Optimizer):
    """The arguments Adamax, Nadam and Lamb share: ``beta_1``, ``beta_2``, ``epsilon`` (Keras defaults)."""

    _own = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        super().__init__(learning_rate=learning_rate, **kwargs)


class Adamax(_Moments):
    """Adamax: Adam with the infinity norm."""

    class_name = "Adamax"
    kernel = adamax_step

    def slot_names(self) -> tuple:
        return ("momentum", "norm")


class Nadam(_Moments):
    """Nadam: Adam with Nesterov momentum and Keras's momentum schedule (``0.96 ** t``)."""

    class_name = "Nadam"
    kernel = nadam_step
    _n_extra = 1  # u_product, the running product of the momentum schedule

    def _init_extra(self) -> None:
        self.scalars[SC_EXTRA] = 1.0

    def slot_names(self) -> tuple:
        return ("momentum", "velocity")


class Lion(Optimizer):
    """Lion: steps of ``learning_rate`` times the sign of a mix of momentum and gradient."""

    class_name = "Lion"
    kernel = lion_step
    _own = ("beta_1", "beta_2")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(f"Lion: beta_1 must be in (0, 1] (otherwise Lion is SignSGD); got {beta_1}")
        self.beta_1, self.beta_2 = beta_1, beta_2
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("momentum",)


class Ftrl(Optimizer):
    """FTRL-proximal, with L1, L2 and L2-shrinkage regularization and ``beta`` (Keras defaults)."""

    class_name = "Ftrl"
    kernel = ftrl_step
    _own = ("learning_rate_power", "initial_accumulator_value", "l1_regularization_strength",
            "l2_regularization_strength", "l2_shrinkage_regularization_strength", "beta")  # fmt: skip

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, **kwargs):  # fmt: skip
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta
        if learning_rate_power > 0.0:
            raise ValueError(f"Ftrl: learning_rate_power must be <= 0; got {learning_rate_power}")
        for n in self._own[1:5]:  # the accumulator's initial value and the three strengths
            if getattr(self, n) < 0.0:
                raise ValueError(f"Ftrl: {n} must be >= 0; got {getattr(self, n)}")
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("accumulator", "linear")

    def _slot_init(self, name: str) -> float:
        return float(self.initial_accumulator_value) if name == "accumulator" else 0.0


class Lamb(_Moments):
    """LAMB: Adam's bias-corrected step scaled per variable by the trust ratio ``||w|| / ||step||``."""

    class_name = "Lamb"
    kernel = lamb_step

    def slot_names(self) -> tuple:
        return ("momentum", "velocity")


class Adafactor(Optimizer):
    """Adafactor: a second moment factored over the last two axes of variables of rank >= 2.

    It needs the variables' shapes: build it with :func:`variable_segments` rows (the list form
    ``apply_gradients`` does). Slots: ``r`` and ``c`` (Keras's per-variable ``_r`` and ``_c``:
    the row and column statistics of a factored variable, stored at the start of its segment,
    the rest of the segment unused; Keras's dummy scalars for other variables are not stored)
    and ``velocity``. ``relative_step`` is kept for the configuration; as in Keras, the step
    size is ``min(learning_rate, 1 / sqrt(t))`` either way.
    """

    class_name = "Adafactor"
    kernel = adafactor_step
    _own = ("beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold", "relative_step")

    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0,
                 relative_step=True, **kwargs):  # fmt: skip
        self.beta_2_decay, self.epsilon_1, self.epsilon_2 = beta_2_decay, epsilon_1, epsilon_2
        self.clip_threshold, self.relative_step = clip_threshold, relative_step
        super().__init__(learning_rate=learning_rate, **kwargs)

    def slot_names(self) -> tuple:
        return ("r", "c", "velocity")

    def _check_shapes_known(self, known: bool) -> None:
        if not known:
            raise ValueError("Adafactor needs each variable's shape to factor its second moment: give segments as "
                             "rows of 5 (offset, size, 1, the last two dimensions; see variable_segments)")  # fmt: skip

    def _slot_values(self) -> int:
        # Keras: r and c of a factored variable [..., m, n] hold size / n and size / m values, two
        # dummy scalars otherwise; velocity one value per weight
        rows, cols, size = self.segments[:, SEG_ROWS], self.segments[:, SEG_COLS], self.segments[:, SEG_SIZE]
        factored = rows > 0
        rc = np.where(factored, size // np.maximum(cols, 1) + size // np.maximum(rows, 1), 2)
        return int(np.sum(size + rc))


OPTIMIZERS = {c.class_name.lower(): c for c in (SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Adamax, Nadam, Lion,
                                                Ftrl, Lamb, Adafactor)}  # fmt: skip


def get_optimizer(identifier) -> Optimizer:
    """An optimizer from a name (``"rmsprop"``, any case), a mapping ``{"type": "adam", **arguments}``
    (nnspec's model files), Keras's ``{"class_name": "Adam", "config": {...}}``, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        name, config = identifier, {}
    elif isinstance(identifier, dict):
        if "class_name" in identifier:
            name, config = identifier["class_name"], dict(identifier.get("config") or {})
        elif "type" in identifier:
            name, config = identifier["type"], {k: v for k, v in identifier.items() if k != "type"}
        else:
            raise ValueError(f"cannot read an optimizer from {identifier!r}: expected a 'type' key")
    else:
        raise TypeError(
            f"cannot use {identifier!r} as an optimizer: expected a name, a mapping or an Optimizer"
        )
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        from ..specs.errors import did_you_mean

        hint = did_you_mean(str(name).lower(), list(OPTIMIZERS))
        raise ValueError(
            f"unknown optimizer '{name}'" + (f"; {hint}" if hint else f"; known: {', '.join(OPTIMIZERS)}")
        )
    try:
        return cls.from_config(config)
    except TypeError as e:
        raise ValueError(f"optimizer '{name}': {e}") from None
