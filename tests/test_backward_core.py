"""Training forward and backward kernels of the core, activation, merge, normalization and
embedding layers, and training end to end.

Each gradient case runs through the real compiled train step: the layer under test is fed by a
linear ``Dense`` with an identity kernel (so its input is exactly the test's input, and the
input's gradient is a value in the gradient workspace), scored with ``mse`` against a random
target, trained one step with ``SGD(learning_rate=0)``. From the trainer we read the layer's
output ``y`` (computed in training mode), its upstream gradient ``dy`` (what the loss wrote),
the gradient of every float input and of every trainable weight. Each is then checked

1. against float64 central finite differences of ``sum(dy * reference(x, w))``, the layer's
   NumPy reference (a training-mode reference for BatchNormalization), rtol = atol = 1e-3 of
   the gradient's scale;
2. against autograd of the same Keras 3 layer on its PyTorch backend, same inputs, weights,
   masks and ``dy``, 1e-4 of the gradient's scale.

Cases sharing input shapes run in one model (one compilation): every case is its own branch,
``x -> pre_c -> case_c``, each output with its own loss. Masked inputs come from an
``Embedding(mask_zero=True)`` in place of the identity Dense; their gradient is the embedding
output's. Random layers (Dropout and the noise layers) are checked for their formulas, their
statistics and their seeding instead.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, activations, core, embedding, merge, normalization
from nnspec.layerdefs.base import bind_numpy, normalize_attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

bind_numpy([activations, core, embedding, merge, normalization])

FD_TOL = 1e-3  # kernels (float32) against finite differences of the float64 reference
TORCH_TOL = 1e-4  # kernels against autograd through Keras on PyTorch
SPECS = Path(__file__).resolve().parents[1] / "specs"
VOCAB = 6  # ids of masked inputs are drawn from [0, VOCAB)


# ----------------------------------------------------------------------------- cases


def normal(rng, shapes, batch):
    return [rng.normal(0, 1, size=(batch, *s)).astype(np.float32) for s in shapes]


# Every activation's kinks, where the derivative is PyTorch's choice (relu'(0) = 0...).
KINKS = (0.0, -3.0, 3.0, 0.5, -0.5, 1.0, -1.0, 6.0, -6.0, 2.0)


def kinks(rng, shapes, batch):
    out = normal(rng, shapes, batch)
    for x in out:
        flat = x.reshape(-1)
        flat[: len(KINKS)] = KINKS[: flat.size]
    return out


def ties(rng, shapes, batch):
    """Inputs equal to the first one in about half of their entries (where shapes allow)."""
    out = normal(rng, shapes, batch)
    for x in out[1:]:
        if x.shape == out[0].shape:
            pick = rng.random(x.shape) < 0.5
            x[pick] = out[0][pick]
    return out


def positive_ids(rng, shapes, batch):
    return [rng.integers(0, VOCAB, size=(batch, *s)).astype(np.int32) for s in shapes]


@dataclass(frozen=True)
class Case:
    id: str
    type: str
    attrs: dict
    shapes: tuple  # per-sample input shapes (for a masked input: the ids' shape, steps only)
    batch: int = 4
    masked: tuple = ()  # per input: fed by Embedding(mask_zero) ids (output_dim = `dim`)
    dim: int = 4  # feature size of a masked input
    data: object = normal
    fd: bool = True  # check against finite differences (not at kinks)
    keras: str | None = None  # why the Keras comparison is skipped
    ids: bool = False  # the layer takes integer ids itself (Embedding)
    kind: str = "grad"  # "random": Dropout and noise, checked by their own tests
    extra: dict = field(default_factory=dict)

    @property
    def group(self):  # cases of one group share one model, so one compilation
        return (self.batch, self.kind)


ACTIVATION_NAMES = [a for a in activations.CODES if a != "threshold"] + ["glu"]
# Keras's own sparsemax differs from the textbook one (see activations.py); autograd of it is
# what we match. hard_swish/swish are aliases: one case each is enough.
ACTIVATION_NAMES = [a for a in ACTIVATION_NAMES if a not in ("hard_swish", "swish")]

# fmt: off
CASES = [
    *[Case(f"activation-{a}", "Activation", {"activation": a}, ((3, 6),)) for a in ACTIVATION_NAMES],
    *[Case(f"activation-kinks-{a}", "Activation", {"activation": a}, ((10,),), data=kinks, fd=False)
      for a in ("relu", "leaky_relu", "relu6", "hard_sigmoid", "hard_silu", "hard_tanh", "hard_shrink",
                "soft_shrink", "sparse_plus", "sparse_sigmoid", "elu", "celu", "selu", "softsign", "linear",
                "softplus", "squareplus", "gelu", "silu", "mish", "sigmoid", "tanh")],
    # ---- Dense, with activations read from the output or from the saved pre-activation
    *[Case(f"dense-{a}", "Dense", {"units": 5, "activation": a}, ((6,),))
      for a in ("linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "silu", "mish", "elu",
                "selu", "softplus", "hard_silu", "tanh_shrink", "sparsemax", "exponential")],
    Case("dense-no-bias", "Dense", {"units": 4, "use_bias": False, "activation": "tanh"}, ((6,),)),
    Case("dense-frozen", "Dense", {"units": 4, "activation": "relu", "trainable": False}, ((6,),)),
    Case("dense-rank3", "Dense", {"units": 5, "activation": "gelu"}, ((4, 3),)),
    Case("dense-rank3-relu", "Dense", {"units": 2, "activation": "relu"}, ((4, 3),)),
    Case("dense-batch1", "Dense", {"units": 7, "activation": "sigmoid"}, ((6,),), batch=1),
    Case("dense-blas", "Dense", {"units": 40, "activation": "swish"}, ((33,),)),
    # ---- reshaping
    Case("permute-21", "Permute", {"dims": [2, 1]}, ((4, 3),)),
    Case("permute-312", "Permute", {"dims": [3, 1, 2]}, ((2, 3, 4),)),
    Case("permute-231", "Permute", {"dims": [2, 3, 1]}, ((2, 3, 4),)),
    Case("repeat-vector", "RepeatVector", {"n": 3}, ((6,),)),
    Case("flatten-cf-rank3", "Flatten", {"data_format": "channels_first"}, ((4, 3),)),
    Case("flatten-cf-rank4", "Flatten", {"data_format": "channels_first"}, ((2, 3, 4),)),
    Case("flatten-view", "Flatten", {}, ((4, 3),)),
    Case("reshape-view", "Reshape", {"target_shape": [2, -1]}, ((4, 3),)),
    Case("activity-regularization", "ActivityRegularization", {"l1": 0.0, "l2": 0.0}, ((3, 6),)),
    # ---- merges
    Case("add", "Add", {}, ((3, 4), (3, 4))),
    Case("add-one-input", "Add", {}, ((3, 4),)),
    Case("add-broadcast", "Add", {}, ((3, 4), (1, 4), (4,))),
    Case("subtract-broadcast", "Subtract", {}, ((3, 4), (3, 1))),
    Case("multiply", "Multiply", {}, ((3, 4), (3, 4))),
    Case("multiply-broadcast", "Multiply", {}, ((3, 4), (1, 4), (4,))),
    Case("average-broadcast", "Average", {}, ((3, 4), (1, 4), (4,))),
    Case("maximum-broadcast", "Maximum", {}, ((3, 4), (1, 4), (4,))),
    Case("minimum-broadcast", "Minimum", {}, ((3, 4), (1, 4), (4,))),
    Case("maximum-3", "Maximum", {}, ((3, 4), (3, 4), (3, 4))),
    Case("maximum-ties", "Maximum", {}, ((3, 4), (3, 4), (3, 4)), data=ties, fd=False),
    Case("minimum-ties", "Minimum", {}, ((3, 4), (3, 4), (3, 4)), data=ties, fd=False),
    Case("concatenate-last", "Concatenate", {"axis": -1}, ((3, 4), (3, 2))),
    Case("concatenate-axis1", "Concatenate", {"axis": 1}, ((3, 4), (2, 4))),
    Case("dot-vectors", "Dot", {"axes": 1}, ((5,), (5,))),
    Case("dot-vectors-normalize", "Dot", {"axes": 1, "normalize": True}, ((5,), (5,))),
    Case("dot-attention", "Dot", {"axes": [2, 2]}, ((3, 4), (5, 4))),
    Case("dot-attention-normalize", "Dot", {"axes": [2, 2], "normalize": True}, ((3, 4), (5, 4))),
    Case("dot-mixed-axes", "Dot", {"axes": [1, 2]}, ((4, 3), (5, 4))),
    Case("dot-mixed-axes-normalize", "Dot", {"axes": [1, 2], "normalize": True}, ((4, 3), (5, 4))),
    Case("dot-blas", "Dot", {"axes": [2, 2]}, ((20, 16), (30, 16))),
    Case("dot-blas-normalize", "Dot", {"axes": [2, 2], "normalize": True}, ((20, 16), (30, 16))),
    Case("dot-blas-transposed", "Dot", {"axes": [2, 1]}, ((20, 16), (16, 30))),
    *[Case(f"masked-{t.lower()}-{'-'.join('m' if m else 'u' for m in mk)}", t, {}, ((5,), (5,)), masked=mk,
           batch=4)
      for t in ("Multiply", "Maximum", "Minimum", "Add") for mk in ((True, True), (True, False), (False, True))],
    Case("masked-maximum-3", "Maximum", {}, ((5,), (5,), (5,)), masked=(True, False, True)),
    Case("masked-multiply-3", "Multiply", {}, ((5,), (5,), (5,)), masked=(True, False, True)),
    # ---- normalization
    Case("bn-rank2", "BatchNormalization", {}, ((6,),)),
    Case("bn-rank3", "BatchNormalization", {"momentum": 0.9}, ((3, 4),)),
    Case("bn-axis1", "BatchNormalization", {"axis": 1, "epsilon": 0.01}, ((3, 4),)),
    Case("bn-axis1-rank4", "BatchNormalization", {"axis": 1}, ((3, 2, 2),)),
    Case("bn-no-scale", "BatchNormalization", {"scale": False}, ((6,),)),
    Case("bn-no-center", "BatchNormalization", {"center": False}, ((6,),)),
    Case("bn-bare", "BatchNormalization", {"center": False, "scale": False}, ((6,),)),
    Case("bn-frozen", "BatchNormalization", {"trainable": False}, ((6,),)),
    Case("bn-masked", "BatchNormalization", {"momentum": 0.5}, ((5,),), masked=(True,)),
    Case("ln-rank2", "LayerNormalization", {}, ((6,),)),
    Case("ln-rank3", "LayerNormalization", {"epsilon": 0.1}, ((3, 4),)),
    Case("ln-two-axes", "LayerNormalization", {"axis": [1, 2]}, ((3, 4),)),
    Case("ln-axis1", "LayerNormalization", {"axis": 1}, ((3, 4),),
         keras="Keras 3.15 on torch normalizes the last axes instead (see normalization.py)"),
    Case("ln-rms-scaling", "LayerNormalization", {"rms_scaling": True}, ((3, 4),)),
    Case("ln-no-center", "LayerNormalization", {"center": False}, ((6,),)),
    Case("ln-bare", "LayerNormalization", {"center": False, "scale": False}, ((6,),)),
    Case("rms-rank2", "RMSNormalization", {}, ((6,),)),
    Case("rms-rank3", "RMSNormalization", {"epsilon": 0.01}, ((3, 4),)),
    Case("rms-two-axes", "RMSNormalization", {"axis": [1, 2]}, ((3, 4),)),
    Case("unit-rank2", "UnitNormalization", {}, ((6,),)),
    Case("unit-rank3", "UnitNormalization", {}, ((3, 4),)),
    Case("unit-axis1", "UnitNormalization", {"axis": 1}, ((3, 4),)),
    Case("unit-two-axes", "UnitNormalization", {"axis": [1, 2]}, ((3, 4),)),
    # ---- embedding (ids in, no input gradient)
    Case("embedding", "Embedding", {"input_dim": VOCAB, "output_dim": 3}, ((4,),), data=positive_ids, ids=True),
    Case("embedding-rank3", "Embedding", {"input_dim": VOCAB, "output_dim": 2}, ((2, 3),), data=positive_ids,
         ids=True),
]
# Random layers: a big batch, for their statistics; one model.
RANDOM_CASES = [
    Case("dropout", "Dropout", {"rate": 0.3}, ((8, 25),), batch=50, kind="random"),
    Case("dropout-zero", "Dropout", {"rate": 0.0}, ((8, 25),), batch=50, kind="random"),
    Case("dropout-one", "Dropout", {"rate": 1.0}, ((8, 25),), batch=50, kind="random"),
    Case("dropout-noise-shape", "Dropout", {"rate": 0.5, "noise_shape": [None, 1, 25]}, ((8, 25),), batch=50,
         kind="random"),
    Case("dropout-shared-batch", "Dropout", {"rate": 0.5, "noise_shape": [1, 8, None]}, ((8, 25),), batch=50,
         kind="random"),
    Case("gaussian-noise", "GaussianNoise", {"stddev": 0.5}, ((8, 25),), batch=50, kind="random"),
    Case("gaussian-noise-zero", "GaussianNoise", {"stddev": 0.0}, ((8, 25),), batch=50, kind="random"),
    Case("gaussian-dropout", "GaussianDropout", {"rate": 0.2}, ((8, 25),), batch=50, kind="random"),
    Case("gaussian-dropout-one", "GaussianDropout", {"rate": 1.0}, ((8, 25),), batch=50, kind="random"),
]
# fmt: on
ALL_CASES = CASES + RANDOM_CASES
CASE_BY_ID = {c.id: c for c in ALL_CASES}
assert len(CASE_BY_ID) == len(ALL_CASES)


# ----------------------------------------------------------------------------- harness


def _spec(cases) -> dict:
    """One model for all ``cases``: case k reads its own inputs ``k<k>_<i>`` through its own
    identity Dense (or Embedding) ``c<k>_pre<i>``; its layer ``c<k>`` is output k."""
    inputs, layers, edges = {}, {}, []
    for k, c in enumerate(cases):
        feeds = []
        for i, s in enumerate(c.shapes):
            name = f"k{k}_{i}"
            ids = c.ids or bool(c.masked)
            inputs[name] = {"shape": list(s), "dtype": "int32"} if ids else {"shape": list(s)}
            if c.ids:
                feeds.append(name)
                continue
            pre = f"c{k}_pre{i}"
            if c.masked:  # every input from ids; the masked ones through mask_zero
                layers[pre] = {"type": "Embedding", "input_dim": VOCAB, "output_dim": c.dim,
                               "mask_zero": bool(c.masked[i])}  # fmt: skip
            else:
                layers[pre] = {"type": "Dense", "units": s[-1], "use_bias": False}
            edges.append(f"{name} -> {pre}")
            feeds.append(pre)
        layers[f"c{k}"] = {"type": c.type, **c.attrs}
        edges.append(", ".join(feeds) + f" -> c{k}")
    return {"format": "nnspec/1", "name": "grads", "inputs": inputs, "layers": layers, "edges": edges,
            "outputs": [f"c{k}" for k in range(len(cases))]}  # fmt: skip


@dataclass
class Result:
    inputs: list  # what the layer received (float32; ids for Embedding)
    masks: list  # per input, (batch, steps) bool or None
    weights: list  # the layer's weights, Keras's order
    trainable: list  # per weight
    y: np.ndarray  # training-mode output
    dy: np.ndarray  # upstream gradient
    dx: list  # per input, its gradient (None for ids)
    dw: list  # per weight, its gradient (None if not trainable)
    after: list  # the layer's weights after the step (moving statistics updated)


def _seed(text: str) -> int:
    return sum(ord(ch) * (i + 1) for i, ch in enumerate(text)) % 10007


def _raw_inputs(c: Case, rng) -> list:
    if c.ids:
        return c.data(rng, c.shapes, c.batch)
    if c.masked:
        raw = positive_ids(rng, c.shapes, c.batch)
        for ids, mk in zip(raw, c.masked):  # every sample keeps a valid step; some steps are masked
            ids[:, 0] = np.maximum(ids[:, 0], 1)
            if mk:
                ids[:, -1] = 0
        return raw
    return c.data(rng, c.shapes, c.batch)


@lru_cache(maxsize=None)
def run_group(key) -> dict:
    """Train every case of group ``key`` one step in one model; a Result per case."""
    cases = [c for c in ALL_CASES if c.group == key]
    m = nnspec.Model.from_config(_spec(cases))
    n = cases[0].batch
    raw, feeds = [], {}
    for k, c in enumerate(cases):
        rng = np.random.default_rng(_seed(c.id))
        ins_raw = _raw_inputs(c, rng)
        raw += ins_raw
        ins, masks = [], []
        for i, s in enumerate(c.shapes):
            if c.ids:
                ins.append(ins_raw[i])
                masks.append(None)
                continue
            layer = m.get_layer(f"c{k}_pre{i}")
            if c.masked:
                table = rng.normal(0, 1, size=(VOCAB, c.dim)).astype(np.float32)
                layer.set_weights([table])
                ins.append(table[ins_raw[i]])
                masks.append(ins_raw[i] != 0 if c.masked[i] else None)
            else:
                layer.set_weights([np.eye(s[-1], dtype=np.float32)])
                ins.append(ins_raw[i])
                masks.append(None)
        layer = m.get_layer(f"c{k}")
        w = [v + rng.normal(0, 0.3, size=v.shape).astype(np.float32) for v in layer.get_weights()]
        if c.type == "BatchNormalization":  # moving variance must stay positive
            w[-1] = np.abs(w[-1]) + 0.5
        layer.set_weights(w)
        feeds[k] = (ins, masks, w)
    rng = np.random.default_rng(1)
    out_types = [m.plan().values[vid].shape for _, vid in m.plan().outputs]
    targets = [rng.normal(0, 1, size=(n, *t[1:])).astype(np.float32) for t in out_types]
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.0), loss="mse")
    m.train_on_batch(raw if len(raw) > 1 else raw[0], targets if len(targets) > 1 else targets[0])
    (tr,) = m._trainers.values()
    plan = tr.plan
    ws, gws = tr.buffers(n)[:2]
    offsets, off = {}, 0
    for b in plan.buffers:
        offsets[b.id] = off
        off += b.values_per_sample
    vals = {v.id: v for v in plan.values}

    def read(buf, vid):
        v = vals[vid]
        o = offsets[v.buffer]
        return buf[o * n : o * n + n * v.values_per_sample].reshape((n, *v.shape[1:])).copy()

    store = m._weights()
    out = {}
    for k, c in enumerate(cases):
        ins, masks, w = feeds[k]
        vid = plan.outputs[k][1]
        dx = []
        for i in range(len(c.shapes)):
            if c.ids:
                dx.append(None)
                continue
            step = next(s for s in plan.steps if s.node == f"c{k}_pre{i}")
            dx.append(read(gws, step.outputs[0]))
        layer = m.get_layer(f"c{k}")
        names = [p for p in store.params if p.startswith(f"c{k}/")]
        trainable = [store.params[p].trainable for p in names]
        dw = []
        for p, t in zip(names, trainable):
            sp = store.params[p]
            dw.append(tr.grads[sp.offset : sp.offset + sp.size].reshape(sp.shape).copy() if t else None)
        out[c.id] = Result(ins, masks, w, trainable, read(ws, vid), read(gws, vid), dx, dw, layer.get_weights())
    return out


def result(case_id: str) -> Result:
    c = CASE_BY_ID[case_id]
    return run_group(c.group)[case_id]


def close(got, ref, tol, what=""):
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-6)
    err = float(np.abs(got - ref).max(initial=0.0)) / scale
    assert err <= tol, f"{what}: max error {err:.2e} of the scale {scale:.2e} (tolerance {tol})"
    return err


# ----------------------------------------------------------------------------- references


def bn_train_reference(attrs, x, params, mask=None):
    """BatchNormalization in training (float64): batch statistics, biased variance, masked as
    Keras's ``_moments``; returns (y, batch mean, batch variance)."""
    p = list(params)
    gamma = p.pop(0) if attrs["scale"] else None
    beta = p.pop(0) if attrs["center"] else None
    ax = attrs["axis"] % x.ndim
    axes = tuple(a for a in range(x.ndim) if a != ax)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    if mask is None:
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    else:
        w = np.broadcast_to(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape).astype(np.float64)
        cnt = w.sum(axis=axes, keepdims=True) + 1e-7
        mean = (w * x).sum(axis=axes, keepdims=True) / cnt
        var = (w * (x - mean) ** 2).sum(axis=axes, keepdims=True) / cnt
    y = (x - mean) / np.sqrt(var + attrs["epsilon"])
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y, mean.reshape(-1), var.reshape(-1)


def reference(case: Case, inputs, weights, masks):
    """The layer's output in float64, as training computes it."""
    attrs = normalize_attrs(REGISTRY[case.type], case.attrs)
    if case.type == "BatchNormalization" and attrs["trainable"]:
        return bn_train_reference(attrs, inputs[0], weights, masks[0])[0]
    ms = masks if any(mk is not None for mk in masks) else None
    return REGISTRY[case.type].reference(attrs, inputs, weights, ms)[0]


def fd_grads(case: Case, r: Result, h: float = 1e-6):
    """Central differences of ``sum(dy * reference)`` over every float input and trainable weight."""
    xs = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in r.inputs]
    ws = [w.astype(np.float64) for w in r.weights]
    dy = r.dy.astype(np.float64)

    def f():
        return float((dy * reference(case, xs, ws, r.masks)).sum())

    def grad_of(a):
        g = np.zeros_like(a)
        flat, gf = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            v = flat[i]
            flat[i] = v + h
            up = f()
            flat[i] = v - h
            down = f()
            flat[i] = v
            gf[i] = (up - down) / (2 * h)
        return g

    dx = [grad_of(x) if x.dtype.kind == "f" and not case.ids else None for x in xs]
    dw = [grad_of(w) if t else None for w, t in zip(ws, r.trainable)]
    return dx, dw


def keras_grads(case: Case, r: Result):
    """(y, input grads, trainable weight grads, weights after) of the Keras layer under
    torch autograd, training=True, same inputs, weights, masks and upstream gradient."""
    import torch
    from keras.src.backend.common.masking import set_keras_mask

    from keras_ref import keras_layer

    layer = keras_layer(case.type, dict(case.attrs))
    many = len(case.shapes) > 1 or case.type in ("Add", "Multiply", "Maximum", "Minimum", "Average",
                                                 "Subtract", "Concatenate", "Dot")  # fmt: skip

    def tensors(grad):
        out = []
        for x, mk in zip(r.inputs, r.masks):
            t = torch.tensor(x, requires_grad=grad and x.dtype.kind == "f")
            if mk is not None:
                set_keras_mask(t, torch.tensor(mk))
            out.append(t)
        return out

    def call(ts, training):
        kwargs = {"training": training} if case.type in ("BatchNormalization", "Dropout") else {}
        if case.type == "BatchNormalization" and r.masks[0] is not None:
            kwargs["mask"] = torch.tensor(r.masks[0])
        return layer(ts if many else ts[0], **kwargs)

    call(tensors(False), False)  # build
    layer.set_weights(r.weights)
    ts = tensors(True)
    y = call(ts, True)
    y.backward(torch.tensor(r.dy))
    dx = [None if t.grad is None else t.grad.numpy() for t in ts]
    dw = []
    for v in layer.weights:
        g = v.value.grad
        dw.append(None if (g is None or not v.trainable) else g.numpy())
    return y.detach().numpy(), dx, dw, [np.asarray(v.numpy()) for v in layer.weights]


# ----------------------------------------------------------------------------- gradient tests

FD_CASES = [c.id for c in CASES if c.fd]
KERAS_CASES = [c.id for c in CASES if c.keras is None]


@pytest.mark.parametrize("case_id", FD_CASES)
def test_gradients_against_finite_differences(case_id):
    case = CASE_BY_ID[case_id]
    r = result(case_id)
    ref_y = reference(case, [x.astype(np.float64) if x.dtype.kind == "f" else x for x in r.inputs],
                      [w.astype(np.float64) for w in r.weights], r.masks)  # fmt: skip
    close(r.y, ref_y, 1e-5, "training forward")
    dx, dw = fd_grads(case, r)
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if ref is not None:
            close(got, ref, FD_TOL, f"input {i}")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, FD_TOL, f"weight {i}")


@pytest.mark.parametrize("case_id", KERAS_CASES)
def test_gradients_against_keras_autograd(case_id):
    case = CASE_BY_ID[case_id]
    r = result(case_id)
    y, dx, dw, after = keras_grads(case, r)
    close(r.y, y, TORCH_TOL, "training forward")
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if got is not None:
            close(got, ref, TORCH_TOL, f"input {i}")
    trainable_refs = [g for g in dw]
    for i, (got, ref, t) in enumerate(zip(r.dw, trainable_refs, r.trainable)):
        if t:
            close(got, ref, TORCH_TOL, f"weight {i}")
    for i, (got, ref) in enumerate(zip(r.after, after)):  # BatchNormalization's moving statistics
        close(got, ref, TORCH_TOL, f"weight {i} after the step")


# ----------------------------------------------------------------------------- random layers


def test_dropout_training():
    r = result("dropout")
    x, y = r.inputs[0], r.y
    kept = y != 0
    keep = 0.7
    np.testing.assert_allclose(y[kept], x[kept] / np.float32(keep), rtol=1e-7)  # inverted dropout
    assert abs(kept.mean() - keep) < 0.03  # 10000 draws: 6 standard deviations
    np.testing.assert_allclose(r.dx[0], np.where(kept, r.dy / keep, 0.0), rtol=1e-6, atol=1e-12)


def test_dropout_noise_shape_broadcasts():
    r = result("dropout-noise-shape")  # one draw per (sample, feature), shared along axis 1
    kept = r.y != 0
    assert (kept == kept[:, :1, :]).all()
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(r.dx[0], np.where(kept, r.dy * 2.0, 0.0), rtol=1e-6, atol=1e-12)
    r = result("dropout-shared-batch")  # one mask for the whole batch
    kept = r.y != 0
    assert (kept == kept[:1]).all()
    assert 0.3 < kept.mean() < 0.7


def test_dropout_rate_zero_and_one():
    r = result("dropout-zero")  # Keras: the identity unless rate > 0
    np.testing.assert_array_equal(r.y, r.inputs[0])
    np.testing.assert_array_equal(r.dx[0], r.dy)
    r = result("dropout-one")
    assert not r.y.any() and not r.dx[0].any()


def test_gaussian_noise_training():
    r = result("gaussian-noise")
    noise = (r.y - r.inputs[0]).astype(np.float64)
    assert abs(noise.mean()) < 0.03 and abs(noise.std() - 0.5) < 0.03
    np.testing.assert_array_equal(r.dx[0], r.dy)
    r = result("gaussian-noise-zero")
    np.testing.assert_array_equal(r.y, r.inputs[0])
    np.testing.assert_array_equal(r.dx[0], r.dy)


def test_gaussian_dropout_training():
    r = result("gaussian-dropout")
    x = r.inputs[0]
    ok = np.abs(x) > 0.1
    noise = (r.y[ok] / x[ok]).astype(np.float64)
    assert abs(noise.mean() - 1.0) < 0.03 and abs(noise.std() - 0.5) < 0.03  # sqrt(0.2 / 0.8)
    np.testing.assert_allclose(r.dx[0][ok], r.dy[ok] * noise, rtol=1e-5)
    r = result("gaussian-dropout-one")  # Keras: noise only for 0 < rate < 1
    np.testing.assert_array_equal(r.y, r.inputs[0])
    np.testing.assert_array_equal(r.dx[0], r.dy)


def test_dropout_draws_follow_the_kernel_seed():
    from nnspec.runtime.kernels import seed_kernels

    spec = {"format": "nnspec/1", "name": "drop", "inputs": {"x": {"shape": [30]}},
            "layers": {"d": {"type": "Dense", "units": 30}, "drop": {"type": "Dropout", "rate": 0.5, "seed": 3}},
            "edges": ["x -> d -> drop"], "outputs": ["drop"]}  # fmt: skip
    m = nnspec.Model.from_config(spec)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)

    def mask(seed):
        seed_kernels(seed)
        m.train_on_batch(x, x)
        (tr,) = m._trainers.values()
        return tr.outputs(20)[0] != 0

    a, b, c = mask(11), mask(11), mask(12)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


# ----------------------------------------------------------------------------- contract


def test_every_owned_layer_has_a_backward():
    for mod in (core, merge, normalization, embedding):
        for defn in mod.LAYERS:
            assert defn.emit_backward is not None, defn.name
            if defn.training_only:
                assert defn.emit_train is not None, defn.name


def test_every_activation_code_has_a_derivative():
    names = {c: n for n, c in activations.CODES.items()}
    src = Path(activations.__file__).read_text()
    for code, name in names.items():
        assert code in (0, 1, 4, 17, 27) or f"code == {code}" in src.split("def _act_grad_scalar")[1], name
    assert activations.needs_input(activations.CODES["gelu"]) and not activations.needs_input(1)


# ----------------------------------------------------------------------------- end to end


def _keras_optimizer(name):
    import keras

    return {"sgd": lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
            "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate=0.01),
            "adam": lambda: keras.optimizers.Adam(learning_rate=0.01)}[name]()  # fmt: skip


def _nnspec_optimizer(name):
    o = nnspec.optimizers
    return {"sgd": lambda: o.SGD(learning_rate=0.1, momentum=0.9), "rmsprop": lambda: o.RMSprop(learning_rate=0.01),
            "adam": lambda: o.Adam(learning_rate=0.01)}[name]()  # fmt: skip


BN_MODEL = """
format: nnspec/1
name: bn_model
inputs:
  x: {shape: [12]}
layers:
  d1: {type: Dense, units: 16, activation: relu}
  bn: {type: BatchNormalization, momentum: 0.9}
  drop: {type: Dropout, rate: 0.0}
  d2: {type: Dense, units: 8, activation: gelu}
  ln: {type: LayerNormalization}
  out: {type: Dense, units: 3, activation: softmax}
edges:
  - x -> d1 -> bn -> drop -> d2 -> ln -> out
outputs: [out]
"""


def _data(model: str):
    rng = np.random.default_rng(5)
    if model == "mlp":
        x = rng.normal(size=(16, 32)).astype(np.float32)
        return x, (x[:, :5].sum(1) > 0).astype(np.float32)[:, None], "binary_crossentropy"
    x = rng.normal(size=(16, 12)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    return x, y, "categorical_crossentropy"


@pytest.mark.parametrize("opt", ["sgd", "rmsprop", "adam"])
@pytest.mark.parametrize("model", ["mlp", "bn_model"])
def test_one_step_matches_keras(model, opt):
    from keras_from_spec import keras_model_from_spec

    source = SPECS / "mlp.yaml" if model == "mlp" else BN_MODEL
    m = nnspec.load(source, seed=1) if model == "mlp" else nnspec.load(BN_MODEL, seed=1)
    km = keras_model_from_spec(source)
    x, y, loss = _data(model)
    before = {}
    for layer in km.layers:
        if layer.weights:
            w = m.get_layer(layer.name).get_weights()
            layer.set_weights(w)
            before[layer.name] = w
    m.compile(optimizer=_nnspec_optimizer(opt), loss=loss)
    km.compile(optimizer=_keras_optimizer(opt), loss=loss)
    ours = float(m.train_on_batch(x, y))
    theirs = float(km.train_on_batch(x, y))
    assert abs(ours - theirs) <= 1e-4 * abs(theirs), (ours, theirs)
    for name, w0 in before.items():
        for k, (a, b, a0) in enumerate(zip(m.get_layer(name).get_weights(), km.get_layer(name).get_weights(), w0)):
            close(a, b, 1e-4, f"{name} weight {k}")
            if not np.array_equal(b, a0):  # the step itself, to a tolerance its size allows
                close(a - a0, b - a0, 1e-3 if opt == "sgd" else 1e-2, f"{name} weight {k} update")


def test_seed_mlp_learns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    y = (x[:, :5].sum(1) > 0).astype(np.float32)[:, None]
    m = nnspec.load(SPECS / "mlp.yaml", seed=0)
    m.compile(optimizer=nnspec.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy", metrics=["accuracy"])
    hist = m.fit(x[:2000], y[:2000], batch_size=32, epochs=5, verbose=0, seed=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    pred = m.predict(x[2000:], verbose=0) if "verbose" in m.predict.__code__.co_varnames else m.predict(x[2000:])
    acc = float(((pred > 0.5) == (y[2000:] > 0.5)).mean())
    assert acc > 0.9, acc
