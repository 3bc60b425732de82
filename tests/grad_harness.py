"""Gradient checks of layers through the real compiled train step, shared by the backward tests.

A :class:`Case` is one layer (type, attributes, per-sample input shapes). A :class:`GradSuite`
puts a few cases in one model: case k reads its own inputs through an identity ``Dense`` (so the
layer's input is exactly the test's input and its gradient is a value of the gradient
workspace), or through an ``Embedding(mask_zero=True)`` for masked inputs; every case's layer is
an output, scored with ``mse`` against a random target, and the model is trained one step with
``SGD(learning_rate=0)``. From the trainer we read, per case, the layer's training-mode output
``y``, its upstream gradient ``dy`` (what the loss wrote), the gradient of every float input and
of every trainable weight (:class:`Result`). The tests then compare them with

- :func:`fd_grads`: float64 central finite differences of ``sum(dy * reference(x, w))``, the
  layer's NumPy reference (a training-mode reference for BatchNormalization);
- :func:`keras_grads`: autograd of the same Keras 3 layer on its PyTorch backend
  (``training=True``), same inputs, weights, masks and ``dy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import nnspec
from nnspec.layerdefs import (
    REGISTRY,
    activations,
    attention,
    conv,
    core,
    einsum,
    embedding,
    merge,
    normalization,
    pooling,
    recurrent,
    wrappers,
)
from nnspec.layerdefs.base import bind_numpy, normalize_attrs

bind_numpy([activations, attention, conv, core, einsum, embedding, merge, normalization, pooling, recurrent, wrappers])

VOCAB = 6  # ids of masked inputs are drawn from [0, VOCAB)
# Every activation's kinks, where the derivative is PyTorch's choice (relu'(0) = 0...).
KINKS = (0.0, -3.0, 3.0, 0.5, -0.5, 1.0, -1.0, 6.0, -6.0, 2.0)


# ----------------------------------------------------------------------------- cases


def normal(rng, shapes, batch):
    return [rng.normal(0, 1, size=(batch, *s)).astype(np.float32) for s in shapes]


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
    def family(self):
        """Cases of one family (same batch, same kind, same layer family module) may share a model."""
        return (self.batch, self.kind, REGISTRY[self.type].infer.__module__)


# ----------------------------------------------------------------------------- harness


def _spec(cases) -> dict:
    """One model for all ``cases``: case k reads its own inputs ``k<k>_<i>`` through its own
    identity Dense (or Embedding) ``c<k>_pre<i>``; its layer ``c<k>`` is output k."""
    inputs, layers, edges, custom = {}, {}, [], {}
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
        if c.type == "CustomLayer":  # a file writes its custom type by name, declared apart
            custom[c.attrs["class_name"]] = c.attrs["definition"]
            layers[f"c{k}"] = {"type": c.attrs["class_name"], **c.attrs.get("arguments", {})}
        else:
            layers[f"c{k}"] = {"type": c.type, **c.attrs}
        edges.append(", ".join(feeds) + f" -> c{k}")
    return {"format": "nnspec/1", "name": "grads", **({"custom_layers": custom} if custom else {}),
            "inputs": inputs, "layers": layers, "edges": edges,
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


def value_reader(plan, n: int):
    """``read(buf, vid)``: a copy of value ``vid`` of a train step's workspace ``buf`` (``ws``
    for values, ``gws`` for their gradients; same layout) at batch size ``n``."""
    offsets, off = {}, 0
    for b in plan.buffers:
        offsets[b.id] = off
        off += b.values_per_sample
    vals = {v.id: v for v in plan.values}

    def read(buf, vid):
        v = vals[vid]
        o = offsets[v.buffer]
        return buf[o * n : o * n + n * v.values_per_sample].reshape((n, *v.shape[1:])).copy()

    return read


class GradSuite:
    """A list of cases, grouped: the cases of one group (same family, at most ``group_size``)
    share one model, so one compilation. Groups stay small: the compile time of a generated
    train step grows faster than its length (LLVM's passes over one function; measured on merge
    cases: 1 in 6 s, 3 in 11 s, 6 in 29 s, 12 in 75 s)."""

    def __init__(self, cases, group_size: int = 3) -> None:
        self.cases = list(cases)
        self.by_id = {c.id: c for c in self.cases}
        assert len(self.by_id) == len(self.cases), "case ids must be unique"
        self.group_of = {}
        counts: dict = {}
        for c in self.cases:
            k = counts.get(c.family, 0)
            counts[c.family] = k + 1
            self.group_of[c.id] = (*c.family, k // group_size)
        self._runs: dict = {}

    def members(self, key) -> list:
        return [c for c in self.cases if self.group_of[c.id] == key]

    def run_group(self, key) -> dict:
        """Train every case of group ``key`` one step in one model; a Result per case (and the
        model, its inputs and targets under ``"model"``). Computed once per group."""
        if key in self._runs:
            return self._runs[key]
        cases = self.members(key)
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
            w = [np.asarray(v + rng.normal(0, 0.3, size=v.shape).astype(np.float32)) for v in layer.get_weights()]  # 0-d stays an array
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
        read = value_reader(plan, n)

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
            out[c.id] = Result(
                ins, masks, w, trainable, read(ws, vid), read(gws, vid), dx, dw, layer.get_weights()
            )
        out["model"] = (m, raw, targets)
        self._runs[key] = out
        return out

    def result(self, case_id: str) -> Result:
        return self.run_group(self.group_of[case_id])[case_id]

    def output_after_step(self, case_id: str, seed: int) -> np.ndarray:
        """Case ``case_id``'s training-mode output in one more step of its group's model, with
        the kernels' random generator seeded by ``seed`` first (a copy: the workspace is reused)."""
        from nnspec.runtime.kernels import seed_kernels

        key = self.group_of[case_id]
        m, raw, targets = self.run_group(key)["model"]
        k = [c.id for c in self.members(key)].index(case_id)
        seed_kernels(seed)
        m.train_on_batch(raw, targets)
        (tr,) = m._trainers.values()
        return tr.outputs(self.by_id[case_id].batch)[k].copy()


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
        w = np.broadcast_to(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape).astype(
            np.float64
        )
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
    from keras_ref import call_attrs, call_layer, keras_layer

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
        kwargs.update(call_attrs(case.type, case.attrs)[1])
        if many:
            return call_layer(layer, case.type, ts, kwargs)
        return layer(ts[0], **kwargs)

    call(tensors(False), False)  # build
    layer.set_weights(r.weights)
    ts = tensors(True)
    y = call(ts, True)
    if isinstance(y, (list, tuple)):  # return_state: the harness's model outputs port 0 only
        y = y[0]
    y.backward(torch.tensor(r.dy))
    dx = [None if t.grad is None else t.grad.numpy() for t in ts]
    dw = []
    for v in layer.weights:
        g = v.value.grad
        if g is None and v.trainable:  # a weight this call does not use (ReversibleEmbedding's table
            g = torch.zeros(tuple(v.shape))  # in an untied reverse call): its gradient is zero
        dw.append(None if (g is None or not v.trainable) else g.numpy())
    return y.detach().numpy(), dx, dw, [np.asarray(v.numpy()) for v in layer.weights]


def check_fd(case: Case, r: Result, tol: float = 1e-3) -> None:
    """Every input and trainable weight gradient of ``r`` within ``tol`` of finite differences."""
    dx, dw = fd_grads(case, r)
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if ref is not None:
            close(got, ref, tol, f"input {i}")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, tol, f"weight {i}")
        else:  # a frozen weight gets no gradient
            assert got is None, f"weight {i} is frozen but has a gradient"


def check_keras(case: Case, r: Result, tol: float = 1e-4) -> None:
    """The training forward and every gradient of ``r`` within ``tol`` of Keras's autograd."""
    y, dx, dw, _ = keras_grads(case, r)
    close(r.y, y, tol, "training forward")
    for i, (got, ref) in enumerate(zip(r.dx, dx)):
        if got is not None:
            close(got, ref, tol, f"input {i}")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, tol, f"weight {i}")


def one_step_matches_keras(source, x, y, seed: int, loss: str = "categorical_crossentropy", lr: float = 0.1,
                           update_tol: float = 1e-3) -> int:  # fmt: skip
    """One SGD(``lr``) step of ``loss`` in nnspec and in Keras (built from the same model file by
    ``keras_from_spec``, nnspec's weights copied in): the losses agree within 1e-4 relative,
    every weight after the step within 1e-4 of its scale and every update (after minus before)
    within ``update_tol`` of its scale. Returns how many weight arrays moved."""
    import keras
    from keras_from_spec import keras_model_from_spec

    m = nnspec.load(source, seed=seed)
    km = keras_model_from_spec(source)
    before = {}
    for layer in km.layers:
        if layer.weights:
            w = m.get_layer(layer.name).get_weights()
            layer.set_weights(w)
            before[layer.name] = w
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=lr), loss=loss)
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss=loss)
    ours = float(np.ravel(m.train_on_batch(x, y))[0])  # several outputs: the total loss comes first
    theirs = float(np.ravel(km.train_on_batch(x, y))[0])
    assert abs(ours - theirs) <= 1e-4 * abs(theirs), (ours, theirs)
    moved = 0
    for name, w0 in before.items():
        for k, (a, b, a0) in enumerate(
            zip(m.get_layer(name).get_weights(), km.get_layer(name).get_weights(), w0)
        ):
            close(a, b, 1e-4, f"{name} weight {k}")
            if not np.array_equal(b, a0):  # the update itself, to the tolerance its size allows
                moved += 1
                close(a - a0, b - a0, update_tol, f"{name} weight {k} update")
    return moved


def model_matches_keras(spec, x, y, seed: int, loss: str = "categorical_crossentropy") -> tuple:
    """The model file ``spec`` built by nnspec and by Keras agrees: the same parameter count,
    predictions on ``x`` within 1e-4, and one SGD step on ``(x, y)`` (``one_step_matches_keras``).
    Returns (nnspec model, Keras model, how many weight arrays the step moved)."""
    m, km = nnspec_and_keras(spec, seed)
    assert m.count_params() == km.count_params()
    close(m.predict(x), km.predict(x, verbose=0), 1e-4, "predictions")
    return m, km, one_step_matches_keras(spec, x, y, seed, loss=loss)


def nnspec_and_keras(spec, seed: int):
    """The model file ``spec`` loaded by nnspec (``seed``) and built by Keras (``keras_from_spec``),
    nnspec's weights copied into Keras layer by layer."""
    from keras_from_spec import keras_model_from_spec

    import nnspec

    m = nnspec.load(spec, seed=seed)
    km = keras_model_from_spec(spec)
    for layer in m.layers:  # input layers (listed first when the file has edges) have no weights
        w = layer.get_weights()
        if w:
            km.get_layer(layer.name).set_weights(w)
    return m, km

