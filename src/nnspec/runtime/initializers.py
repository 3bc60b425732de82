"""Weight initializers with Keras 3's definitions (fans, variance scaling, orthogonal...).

Values are drawn from a NumPy generator per parameter, seeded from the model's seed and the
parameter's name, so initialization is deterministic for a seed and does not depend on the
order in which parameters are visited. ``{"type": "blocks", "blocks": [[init, size], ...]}``
concatenates initializers along the last axis (LSTM's ``unit_forget_bias``).
"""

from __future__ import annotations

import math
import zlib

import numpy as np


def fans(shape: tuple, input_axes=None, output_axes=None) -> tuple[float, float]:
    """Keras's fan-in and fan-out of a weight shape: the products of its ``input_axes`` and
    ``output_axes`` when both are given, else as for a conv kernel (receptive field times)."""
    if input_axes is not None and output_axes is not None:
        return float(math.prod(shape[a] for a in input_axes)), float(math.prod(shape[a] for a in output_axes))
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _truncated_normal(rng, shape, mean, stddev):
    """Normal values redrawn until within two standard deviations, as Keras's truncated normal."""
    out = rng.normal(mean, stddev, size=shape)
    bad = np.abs(out - mean) > 2 * stddev
    while bad.any():
        out[bad] = rng.normal(mean, stddev, size=int(bad.sum()))
        bad = np.abs(out - mean) > 2 * stddev
    return out


def variance_scaling(rng, shape, scale=1.0, mode="fan_in", distribution="truncated_normal", axes=(None, None)):
    fan_in, fan_out = fans(shape, *axes)
    denom = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    scale = scale / max(1.0, denom)
    if distribution == "truncated_normal":
        # 0.8796... is the stddev of a unit normal truncated at two standard deviations.
        return _truncated_normal(rng, shape, 0.0, math.sqrt(scale) / 0.87962566103423978)
    if distribution in ("untruncated_normal", "normal"):
        return rng.normal(0.0, math.sqrt(scale), size=shape)
    limit = math.sqrt(3.0 * scale)
    return rng.uniform(-limit, limit, size=shape)


def orthogonal(rng, shape, gain=1.0):
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    cols = shape[-1]
    a = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


_VS = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


def initialize(init, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Values for a weight of ``shape`` from initializer ``init`` (a name or ``{type, ...}``)."""
    shape = tuple(shape)
    if isinstance(init, dict):
        kind = init["type"]
        args = {k: v for k, v in init.items() if k != "type" and v is not None}
    else:
        kind, args = init, {}
    args.pop("seed", None)  # the model's seed decides; a per-initializer seed changes nothing here
    if kind == "blocks":
        parts = [initialize(i, shape[:-1] + (size,), rng) for i, size in init["blocks"]]
        return np.concatenate(parts, axis=-1).astype(np.float32)
    if kind in ("zeros", "zero"):
        out = np.zeros(shape)
    elif kind in ("ones", "one"):
        out = np.ones(shape)
    elif kind == "constant":
        out = np.full(shape, float(args.get("value", 0.0)))
    elif kind in ("random_normal", "normal"):
        out = rng.normal(args.get("mean", 0.0), args.get("stddev", 0.05), size=shape)
    elif kind in ("random_uniform", "uniform"):
        out = rng.uniform(args.get("minval", -0.05), args.get("maxval", 0.05), size=shape)
    elif kind == "truncated_normal":
        out = _truncated_normal(rng, shape, args.get("mean", 0.0), args.get("stddev", 0.05))
    elif kind in _VS:
        out = variance_scaling(rng, shape, *_VS[kind], axes=(args.get("input_axes"), args.get("output_axes")))
    elif kind == "variance_scaling":
        out = variance_scaling(rng, shape, args.get("scale", 1.0), args.get("mode", "fan_in"),
                               args.get("distribution", "truncated_normal"),
                               (args.get("input_axes"), args.get("output_axes")))  # fmt: skip
    elif kind == "orthogonal":
        out = orthogonal(rng, shape, args.get("gain", 1.0))
    elif kind == "identity":
        if len(shape) != 2:
            raise ValueError(f"the identity initializer needs a 2-D weight; got shape {shape}")
        out = args.get("gain", 1.0) * np.eye(*shape)
    elif kind == "stft":  # STFTSpectrogram's kernels (Keras's initializers.STFT): computed, not drawn
        from ..layerdefs.audio import stft_kernel

        out = stft_kernel(shape, **args)
    else:
        raise ValueError(f"unknown initializer {kind!r}")
    return np.asarray(out, dtype=np.float32)


def param_rng(seed: int | None, name: str) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])
