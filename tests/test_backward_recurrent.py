"""Training forward and backward kernels of the recurrent layers (SimpleRNN, LSTM, GRU) and of
Bidirectional, and one training step of the recurrent example models end to end.

Four groups of checks:

- Train steps of generated plans. Cases sharing an input shape run in one model: each case is
  its own branch ``x -> pre_c -> case_c``, where ``pre_c`` is a linear ``Dense`` with an identity
  kernel (so the layer's input is the test's input and its gradient is a value in the gradient
  workspace), or ``Embedding(mask_zero=True)`` for masked inputs; every output of the case
  (states included, so their gradients flow too) has its own ``mse`` loss; one step of
  ``SGD(learning_rate=0)``. From the trainer we read each output (training mode), its upstream
  gradient, the input's gradient and every weight's, and check them against float64 central
  finite differences of ``sum(dy * reference)`` (rtol = atol = 1e-3 of the gradient's scale) and
  against autograd of the same Keras layer on PyTorch with the same weights, masks and upstream
  gradients (1e-4 of the scale). Compiling a plan function costs time that grows faster than
  its length (Numba re-optimizes every linked kernel in the plan's module), so the large groups
  run the generated ``train_step`` source as plain Python calling the compiled kernels (the
  same lines, the same kernels, no plan compilation); one small group (``compiled``) and the
  end-to-end models run truly compiled plans.
- The kernels called directly, as the plan function calls them: every activation code as
  ``activation`` and ``recurrent_activation``, and a grid of direction, sequence, mask and
  zero_output_for_mask flags, against finite differences of the reference.
- Dropout: the deterministic path is the rest of this file (dropout 0). With dropout > 0 the
  masks the kernel drew (it saves them) are fed to a test-side reference of Keras's cells with
  dropout (``keras/src/layers/rnn/*.py``, implementation 1 when recurrent_dropout is set), which
  the outputs and the gradients must match; the masks' statistics (values 0 or 1/(1-rate), kept
  fraction, one mask per sequence, as many masks as Keras draws) are checked against Keras's own.
- End to end: ``specs/lstm_text.yaml`` and ``specs/siamese_lstm.yaml`` trained one step with
  ``SGD(learning_rate=0.1)`` in nnspec and in Keras from the same weights and batch: the loss and
  every weight after the step within 1e-4 relative, and the updates themselves within 1e-3.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, activations, recurrent, wrappers
from nnspec.layerdefs.base import bind_numpy, normalize_attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import close, value_reader

bind_numpy([activations, recurrent, wrappers])

FD_TOL = 1e-3  # float32 kernels against finite differences of the float64 references
TORCH_TOL = 1e-4  # against autograd through Keras on PyTorch
SPECS = Path(__file__).resolve().parents[1] / "specs"
VOCAB = 6

# Token ids of the masked group (0 = padding): right-padded, padded in the middle, left-padded,
# no padding, all padding.
IDS = np.array(
    [[1, 2, 3, 4, 0, 0], [2, 0, 0, 3, 1, 4], [0, 0, 0, 5, 1, 2], [3, 1, 4, 1, 5, 2], [0, 0, 0, 0, 0, 0]],
    np.int32,
)


# ----------------------------------------------------------------------------- compiled cases


@dataclass(frozen=True)
class Case:
    id: str
    type: str
    attrs: dict
    group: str = "x"  # see GROUPS


def _bi(layer: dict, **kw) -> dict:
    return {"layer": layer, **kw}


# fmt: off
CASES = [
    # ---- unmasked, (batch 4, T 5, features 3)
    Case("simple-last", "SimpleRNN", {"units": 3}),
    Case("simple-seq-bw-state-nobias", "SimpleRNN", {"units": 3, "return_sequences": True, "go_backwards": True,
                                                      "return_state": True, "use_bias": False}),
    Case("simple-softsign-seq", "SimpleRNN", {"units": 4, "activation": "softsign", "return_sequences": True}),
    Case("lstm-seq-state", "LSTM", {"units": 3, "return_sequences": True, "return_state": True}),
    Case("lstm-bw-last-state", "LSTM", {"units": 4, "go_backwards": True, "return_state": True}),
    Case("lstm-elu-hardsig-nobias", "LSTM", {"units": 3, "activation": "elu", "recurrent_activation": "hard_sigmoid",
                                             "use_bias": False, "return_sequences": True}),
    Case("lstm-frozen", "LSTM", {"units": 3, "trainable": False, "return_sequences": True}),
    Case("gru-seq-state", "GRU", {"units": 3, "return_sequences": True, "return_state": True}),
    Case("gru-bw-last", "GRU", {"units": 4, "go_backwards": True}),
    Case("gru-v1-bw-state", "GRU", {"units": 3, "reset_after": False, "go_backwards": True, "return_state": True}),
    Case("gru-v1-seq-nobias", "GRU", {"units": 3, "reset_after": False, "use_bias": False,
                                      "return_sequences": True}),
    Case("gru-nobias-gelu", "GRU", {"units": 3, "use_bias": False, "activation": "gelu", "return_sequences": True}),
    Case("bi-lstm-concat-seq", "Bidirectional", _bi({"type": "LSTM", "units": 3, "return_sequences": True})),
    Case("bi-gru-sum-state", "Bidirectional", _bi({"type": "GRU", "units": 3, "return_state": True},
                                                   merge_mode="sum")),
    Case("bi-simple-mul-seq", "Bidirectional", _bi({"type": "SimpleRNN", "units": 3, "return_sequences": True},
                                                    merge_mode="mul")),
    Case("bi-lstm-mul-last-state", "Bidirectional", _bi({"type": "LSTM", "units": 3, "return_state": True},
                                                         merge_mode="mul")),
    Case("bi-gru-v1-ave-seq", "Bidirectional", _bi({"type": "GRU", "units": 3, "reset_after": False,
                                                     "return_sequences": True}, merge_mode="ave")),
    Case("bi-simple-none-seq-state", "Bidirectional",
         _bi({"type": "SimpleRNN", "units": 3, "return_sequences": True, "return_state": True}, merge_mode=None)),
    Case("bi-lstm-gru-concat-last", "Bidirectional",
         _bi({"type": "LSTM", "units": 3}, backward_layer={"type": "GRU", "units": 3, "go_backwards": True})),
    # ---- masked: Embedding(mask_zero) of IDS (batch 5, T 6, features 3)
    Case("m-simple-seq", "SimpleRNN", {"units": 3, "return_sequences": True}, "ids"),
    Case("m-simple-seq-zofm-bw", "SimpleRNN", {"units": 3, "return_sequences": True, "zero_output_for_mask": True,
                                               "go_backwards": True}, "ids"),
    Case("m-lstm-seq-state", "LSTM", {"units": 3, "return_sequences": True, "return_state": True}, "ids"),
    Case("m-lstm-seq-zofm", "LSTM", {"units": 3, "return_sequences": True, "zero_output_for_mask": True}, "ids"),
    Case("m-lstm-bw-last-state", "LSTM", {"units": 3, "go_backwards": True, "return_state": True}, "ids"),
    Case("m-gru-seq-bw-state", "GRU", {"units": 3, "return_sequences": True, "go_backwards": True,
                                       "return_state": True}, "ids"),
    Case("m-gru-v1-last", "GRU", {"units": 3, "reset_after": False}, "ids"),
    Case("m-gru-v1-seq-zofm", "GRU", {"units": 3, "reset_after": False, "return_sequences": True,
                                      "zero_output_for_mask": True}, "ids"),
    Case("m-bi-lstm-concat-seq", "Bidirectional", _bi({"type": "LSTM", "units": 3, "return_sequences": True}),
         "ids"),
    Case("m-bi-gru-ave-last-state", "Bidirectional", _bi({"type": "GRU", "units": 3, "return_state": True},
                                                          merge_mode="ave"), "ids"),
    Case("m-bi-simple-mul-seq", "Bidirectional", _bi({"type": "SimpleRNN", "units": 3, "return_sequences": True},
                                                      merge_mode="mul"), "ids"),
    Case("m-bi-lstm-none-last", "Bidirectional", _bi({"type": "LSTM", "units": 3}, merge_mode=None), "ids"),
    # ---- a compiled plan: masked, Bidirectional with products, a GRU returning its state
    Case("c-bi-lstm-mul-seq", "Bidirectional", _bi({"type": "LSTM", "units": 3, "return_sequences": True},
                                                    merge_mode="mul"), "compiled"),
    Case("c-gru-seq-bw-state", "GRU", {"units": 3, "return_sequences": True, "go_backwards": True,
                                       "return_state": True}, "compiled"),
    # ---- TimeDistributed(LSTM): the time axis of the outer sequence folded into the batch
    Case("td-lstm-seq", "TimeDistributed", {"layer": {"type": "LSTM", "units": 3, "return_sequences": True}}, "td"),
    Case("td-gru-last", "TimeDistributed", {"layer": {"type": "GRU", "units": 2}}, "td"),
]
# fmt: on
CASE_BY_ID = {c.id: c for c in CASES}
assert len(CASE_BY_ID) == len(CASES)

# group -> (input shape, batch, masked: the input is IDS through Embedding(mask_zero), compiled)
GROUPS = {"x": ((5, 3), 4, False, False), "ids": ((6,), 5, True, False), "td": ((3, 4, 2), 3, False, False),
          "compiled": ((6,), 5, True, True)}  # fmt: skip
FEATURES = 3  # of the masked group's embeddings


def _n_outputs(case: Case) -> int:
    a = normalize_attrs(REGISTRY[case.type], case.attrs)
    if case.type == "TimeDistributed":
        return 1
    if case.type == "Bidirectional":
        (tf, af), _ = wrappers.direction_attrs(a)
        states = 2 * recurrent.STATES[tf] if af["return_state"] else 0
        return (2 if a["merge_mode"] is None else 1) + states
    return 1 + (recurrent.STATES[case.type] if a["return_state"] else 0)


def _spec(cases, group) -> dict:
    shape, _, masked, _ = GROUPS[group]
    dtype = "int32" if masked else "float32"
    layers, edges, outputs = {}, [], []
    for k, c in enumerate(cases):
        if masked:
            layers[f"c{k}_pre"] = {
                "type": "Embedding",
                "input_dim": VOCAB,
                "output_dim": FEATURES,
                "mask_zero": True,
            }
        else:
            layers[f"c{k}_pre"] = {"type": "Dense", "units": shape[-1], "use_bias": False}
        layers[f"c{k}"] = {"type": c.type, **c.attrs}
        edges.append(f"x -> c{k}_pre -> c{k}")
        n = _n_outputs(c)
        outputs += [f"c{k}"] if n == 1 else [f"c{k}:{i}" for i in range(n)]
    return {"format": "nnspec/1", "name": f"grads_{group}", "inputs": {"x": {"shape": list(shape), "dtype": dtype}},
            "layers": layers, "edges": edges, "outputs": outputs}  # fmt: skip


@dataclass
class Result:
    x: np.ndarray  # what the layer received
    mask: np.ndarray | None  # (batch, steps) bool
    weights: list
    trainable: bool
    ys: list  # training-mode outputs
    dys: list  # their upstream gradients
    dx: np.ndarray  # the input's gradient
    dw: list  # the weights' gradients (None when frozen)


def _python_module(source: str):
    """The generated train_step as plain Python: the plan's lines run by the interpreter, every
    kernel they call compiled as in a compiled plan (same argument types, same dispatchers)."""
    import types

    decorator = "@njit(cache=True, nogil=True, error_model='numpy')\n"
    assert decorator in source  # one per part of a long plan (codegen.CHUNK_STEPS)
    mod = types.ModuleType("nnspec_train_step_interpreted")
    exec(compile(source.replace(decorator, ""), "<train_step>", "exec"), mod.__dict__)  # noqa: S102 (our own source)
    return mod


@cache
def run_group(group: str) -> dict:
    import nnspec.runtime.trainer as trainer_module

    cases = [c for c in CASES if c.group == group]
    shape, batch, masked, compiled = GROUPS[group]
    rng = np.random.default_rng(len(group) * 101 + 7)
    m = nnspec.Model.from_config(_spec(cases, group))
    raw = IDS if masked else rng.normal(0, 1, size=(batch, *shape)).astype(np.float32)
    feeds = {}
    for k, c in enumerate(cases):
        pre = m.get_layer(f"c{k}_pre")
        if masked:
            table = rng.normal(0, 1, size=(VOCAB, FEATURES)).astype(np.float32)
            pre.set_weights([table])
            x, mask = table[raw], raw != 0
        else:
            pre.set_weights([np.eye(shape[-1], dtype=np.float32)])
            x, mask = raw, None
        layer = m.get_layer(f"c{k}")
        w = [v + rng.normal(0, 0.3, size=v.shape).astype(np.float32) for v in layer.get_weights()]
        layer.set_weights(w)
        feeds[k] = (x, mask, w)
    plan = m.plan()
    targets = [rng.normal(0, 1, size=(batch, *plan.values[vid].shape[1:])).astype(np.float32)
               for _, vid in plan.outputs]  # fmt: skip
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.0), loss="mse")
    load = trainer_module._load_module
    if not compiled:
        trainer_module._load_module = _python_module
    try:
        m.train_on_batch(raw, targets if len(targets) > 1 else targets[0])
    finally:
        trainer_module._load_module = load
    (tr,) = m._trainers.values()
    assert compiled == hasattr(tr.step, "signatures")
    plan = tr.plan
    ws, gws = tr.buffers(batch)[:2]
    read = value_reader(plan, batch)

    store = m._weights()
    out, first = {}, 0
    for k, c in enumerate(cases):
        x, mask, w = feeds[k]
        n = _n_outputs(c)
        vids = [vid for _, vid in plan.outputs[first : first + n]]
        first += n
        pre_step = next(s for s in plan.steps if s.node == f"c{k}_pre")
        names = [p for p in store.params if p.startswith(f"c{k}/")]
        trainable = all(store.params[p].trainable for p in names)
        dw = [tr.grads[store.params[p].offset : store.params[p].offset + store.params[p].size]
              .reshape(store.params[p].shape).copy() if trainable else None for p in names]  # fmt: skip
        out[c.id] = Result(x, mask, w, trainable, [read(ws, v) for v in vids], [read(gws, v) for v in vids],
                           read(gws, pre_step.outputs[0]), dw)  # fmt: skip
    return out


def reference(case: Case, x, weights, mask):
    a = normalize_attrs(REGISTRY[case.type], case.attrs)
    return REGISTRY[case.type].reference(a, [x], weights, None if mask is None else [mask])


def fd_grads(case: Case, r: Result, h: float = 1e-6):
    """Central differences of ``sum(dy * reference)`` over the input and every weight."""
    x = r.x.astype(np.float64)
    ws = [w.astype(np.float64) for w in r.weights]
    dys = [d.astype(np.float64) for d in r.dys]

    def f():
        return float(sum((d * y).sum() for d, y in zip(dys, reference(case, x, ws, r.mask))))

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

    return grad_of(x), [grad_of(w) for w in ws]


def keras_grads(case: Case, r: Result):
    """(outputs, input gradient, weight gradients) of the Keras layer under torch autograd, in
    training mode, with the same input, mask, weights and upstream gradients."""
    import torch
    from keras.src.backend.common.masking import set_keras_mask
    from keras_ref import keras_layer

    layer = keras_layer(case.type, dict(case.attrs))

    def tensor(grad):
        t = torch.tensor(r.x, requires_grad=grad)
        if r.mask is not None:
            set_keras_mask(t, torch.tensor(r.mask))
        return t

    layer(tensor(False))  # build
    layer.set_weights(r.weights)
    t = tensor(True)
    outs = layer(t, training=True)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    torch.autograd.backward(outs, [torch.tensor(d) for d in r.dys])
    dw = [None if v.value.grad is None else v.value.grad.numpy() for v in layer.weights]
    return [o.detach().numpy() for o in outs], t.grad.numpy(), dw


CASE_IDS = [c.id for c in CASES]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_gradients_against_finite_differences(case_id):
    case = CASE_BY_ID[case_id]
    r = run_group(case.group)[case_id]
    want = reference(case, r.x.astype(np.float64), [w.astype(np.float64) for w in r.weights], r.mask)
    assert len(want) == len(r.ys)
    for i, (got, ref) in enumerate(zip(r.ys, want)):
        close(got, ref, 1e-5, f"training forward, output {i}")
    dx, dw = fd_grads(case, r)
    close(r.dx, dx, FD_TOL, "input")
    for i, (got, ref) in enumerate(zip(r.dw, dw)):
        if r.trainable:
            close(got, ref, FD_TOL, f"weight {i}")
        else:
            assert got is None


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_gradients_against_keras_autograd(case_id):
    case = CASE_BY_ID[case_id]
    r = run_group(case.group)[case_id]
    ys, dx, dw = keras_grads(case, r)
    for i, (got, ref) in enumerate(zip(r.ys, ys)):
        close(got, ref, TORCH_TOL, f"training forward, output {i}")
    close(r.dx, dx, TORCH_TOL, "input")
    if r.trainable:
        assert len(dw) == len(r.dw)
        for i, (got, ref) in enumerate(zip(r.dw, dw)):
            close(got, ref, TORCH_TOL, f"weight {i}")


def test_every_recurrent_layer_has_a_backward():
    """SimpleRNN, LSTM, GRU and Bidirectional train; TimeDistributed and Model are never steps of
    a plan (lowering runs what they wrap), so they need no kernels of their own."""
    for name in ("SimpleRNN", "LSTM", "GRU", "Bidirectional"):
        d = REGISTRY[name]
        assert d.emit_backward is not None and d.emit_train is not None and d.saved is not None, name
    for name in ("TimeDistributed", "Model"):
        assert REGISTRY[name].emit is None and REGISTRY[name].emit_backward is None


# ----------------------------------------------------------------------------- kernels, directly

E1 = np.zeros(0, np.float32)
E2 = np.zeros((0, 0), np.float32)
E3 = np.zeros((0, 0, 0), np.float32)

CELLS = {
    "simple": ("SimpleRNN", {}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "gru_v1": ("GRU", {"reset_after": False}),
}
STEPS = 5
MASK = np.ones((4, STEPS), np.float32)
MASK[0, 3:] = 0
MASK[1, 1:3] = 0
MASK[2, :2] = 0
MASK[3, :] = 0


def _attrs(type_name: str, **kw) -> dict:
    return normalize_attrs(REGISTRY[type_name], {"units": 3, **kw})


def _params(type_name: str, a: dict, features: int, seed: int = 0, scale: float = 0.5) -> list:
    rng = np.random.default_rng(seed)
    k = recurrent.GATES[type_name] * a["units"]
    shapes = [(features, k), (a["units"], k)]
    if a["use_bias"]:
        shapes.append((2, k) if type_name == "GRU" and a["reset_after"] else (k,))
    return [rng.normal(0, scale, s).astype(np.float32) for s in shapes]


def kernel_train(type_name, a, x, params, mask=None):
    """The training forward kernel, called as the plan does: (y, states, saved arrays by key)."""
    from nnspec.runtime.kernels import jit

    rows, steps, d = x.shape
    u = a["units"]
    saved = {
        k: np.full((rows, *s), np.nan, np.float32) for k, s in recurrent.saved_layout(type_name, a, steps, d)
    }
    per_row, fixed = recurrent.rnn_train_scratch_parts(type_name, a, steps, d)
    scratch = np.full(rows * per_row + fixed, np.nan, np.float32)
    y = np.full((rows, steps if a["return_sequences"] else 1, u), np.nan, np.float32)
    states = [np.full((rows, u), np.nan, np.float32) for _ in range(recurrent.STATES[type_name])]
    b = params[2].reshape(-1) if a["use_bias"] else E1
    jit(recurrent.TRAIN_KERNELS[type_name])(
        x, params[0], params[1], b, E2 if mask is None else mask, activations.code(a["activation"]),
        activations.code(a.get("recurrent_activation")), a["use_bias"], a.get("reset_after", False),
        a["go_backwards"], a["return_sequences"], False, a["zero_output_for_mask"], 0, y, 0, states[0],
        states[1] if len(states) > 1 else E2, E2, E2, float(a["dropout"]), float(a["recurrent_dropout"]),
        saved.get("dmx", E2), saved.get("dmh", E2), saved["sh"], saved["sa"], saved.get("sx", E3),
        saved.get("sp", E3), scratch,
    )  # fmt: skip
    return (y if a["return_sequences"] else y[:, 0]), states, saved


def kernel_backward(type_name, a, x, params, saved, dy, dstates, mask=None):
    """The backward kernel, called as the plan does: (dx, [dw, du, db])."""
    from nnspec.runtime.kernels import jit

    rows, steps, d = x.shape
    per_row, fixed = recurrent.rnn_backward_scratch_parts(type_name, a, steps, d)
    scratch = np.full(rows * per_row + fixed, np.nan, np.float32)
    dx = np.zeros_like(x)
    grads = [np.zeros(p.size if i == 2 else p.shape, np.float32) for i, p in enumerate(params)]
    dy3 = np.ascontiguousarray(dy.reshape((rows, -1, a["units"])), np.float32)
    jit(recurrent.BACKWARD_KERNELS[type_name])(
        x, params[0], params[1], E2 if mask is None else mask, activations.code(a["activation"]),
        activations.code(a.get("recurrent_activation")), a.get("reset_after", False), a["go_backwards"],
        a["return_sequences"], False, a["zero_output_for_mask"], dy3, 0, 1.0, dstates[0],
        dstates[1] if len(dstates) > 1 else E2, saved.get("dmx", E2), saved.get("dmh", E2), saved["sh"],
        saved["sa"], saved.get("sx", E3), saved.get("sp", E3), dx, grads[0], grads[1],
        grads[2] if a["use_bias"] else E1, E2, E2, scratch,
    )  # fmt: skip
    if a["use_bias"]:
        grads[2] = grads[2].reshape(params[2].shape)
    return dx, grads


def _fd(f, arrays, h=1e-6):
    out = []
    for a in arrays:
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
        out.append(g)
    return out


def check_kernel_grads(type_name, a, x, params, mask, ref_fn, seed=1, with_x=True, tol=FD_TOL):
    """Run both kernels with a random upstream gradient for every output (states included) and
    compare with central differences of ``ref_fn(x, params)`` (float64, [output, states...])."""
    y, states, saved = kernel_train(type_name, a, x, params, mask)
    x64, p64 = x.astype(np.float64), [p.astype(np.float64) for p in params]
    want = ref_fn(x64, p64)
    for got, ref in zip([y, *states], want):
        close(got, ref, 1e-5, "training forward")
    rng = np.random.default_rng(seed)
    rs = [rng.normal(0, 1, size=w.shape) for w in want]
    dx, grads = kernel_backward(type_name, a, x, params, saved, rs[0].astype(np.float32),
                                [r.astype(np.float32) for r in rs[1:]], mask)  # fmt: skip

    def f():
        return float(sum((r * o).sum() for r, o in zip(rs, ref_fn(x64, p64))))

    num = _fd(f, ([x64] if with_x else []) + p64)
    if with_x:
        close(dx, num.pop(0), tol, "input")
    for i, (got, ref) in enumerate(zip(grads, num)):
        close(got, ref, tol, f"weight {i}")


def _seq_ref(type_name, a, mask):
    return lambda x, p: recurrent.sequence_reference(type_name, {**a, "return_state": True}, x, p, mask)


GRID = [(c, bw, seq, mk, z) for c in CELLS for bw in (False, True) for seq in (False, True)
        for mk, z in ((False, False), (True, False), (True, True))]  # fmt: skip


@pytest.mark.parametrize(("cell", "backwards", "sequences", "masked", "zofm"), GRID,
                         ids=["-".join([c, *(f for f, on in zip(("bw", "seq", "mask", "zofm"), rest) if on)])
                              for c, *rest in GRID])  # fmt: skip
def test_kernel_grid(cell, backwards, sequences, masked, zofm):
    type_name, extra = CELLS[cell]
    a = _attrs(type_name, go_backwards=backwards, return_sequences=sequences, zero_output_for_mask=zofm,
               use_bias=not (backwards and sequences), **extra)  # fmt: skip
    x = np.random.default_rng(2).normal(0, 1, (4, STEPS, 2)).astype(np.float32)
    mask = MASK if masked else None
    check_kernel_grads(type_name, a, x, _params(type_name, a, 2), mask, _seq_ref(type_name, a, mask))


ACT_NAMES = sorted(activations.CODES)


@pytest.mark.parametrize("role", ["activation", "recurrent_activation"])
@pytest.mark.parametrize("name", ACT_NAMES)
def test_kernel_activation_gradients(name, role):
    """Every activation code as the cell activation (all cells) and as the gates' (LSTM, both GRU
    forms): derivatives from the output or from the saved pre-activation, and the row-wise
    vector-Jacobian products (softmax, log_softmax, sparsemax), with a mask."""
    x = np.random.default_rng(3).normal(0, 1, (4, STEPS, 2)).astype(np.float32)
    cells = ["simple", "lstm", "gru", "gru_v1"] if role == "activation" else ["lstm", "gru", "gru_v1"]
    for cell in cells:
        type_name, extra = CELLS[cell]
        a = _attrs(type_name, return_sequences=True, units=4, **{role: name}, **extra)
        params = _params(type_name, a, 2, seed=4, scale=0.3)  # keeps exponential from exploding
        with np.errstate(over="ignore", invalid="ignore"):  # exponential, on masked rows the reference drops
            check_kernel_grads(type_name, a, x, params, MASK, _seq_ref(type_name, a, MASK), with_x=False)


# ----------------------------------------------------------------------------- dropout


def dropout_reference(type_name, a, x, params, dmx, dmh):
    """Keras's cells in training with the given per-sequence dropout masks, float64, no input
    mask: [output, states...]. ``dmx`` (batch, ndx*d) and ``dmh`` (batch, ndh*u) as the kernels
    save them: one mask for every gate, or one per gate (Keras's implementation 1)."""
    u = a["units"]
    k = recurrent.GATES[type_name]
    batch, steps, d = x.shape
    ndx, ndh = dmx.shape[1] // d, dmh.shape[1] // u
    act = lambda v: activations.reference(a["activation"], v)
    ract = lambda v: activations.reference(a.get("recurrent_activation"), v)

    def xin(q, t):
        return x[:, t] * (dmx[:, (q if ndx > 1 else 0) * d :][:, :d] if ndx else 1.0)

    def hin(q, h):
        return h * (dmh[:, (q if ndh > 1 else 0) * u :][:, :u] if ndh else 1.0)

    w, uk = params[0], params[1]
    b = (
        params[2]
        if a["use_bias"]
        else np.zeros((2, k * u) if type_name == "GRU" and a["reset_after"] else k * u)
    )
    blk = lambda m, q: m[..., q * u : (q + 1) * u]
    h, c = np.zeros((batch, u)), np.zeros((batch, u))
    outs = []
    for t in reversed(range(steps)) if a["go_backwards"] else range(steps):
        if type_name == "SimpleRNN":
            h = act(xin(0, t) @ w + b + hin(0, h) @ uk)
        elif type_name == "LSTM":
            z = [xin(q, t) @ blk(w, q) + blk(b, q) + hin(q, h) @ blk(uk, q) for q in range(4)]
            c = ract(z[1]) * c + ract(z[0]) * act(z[2])
            h = ract(z[3]) * act(c)
        else:
            bx, bh = (b[0], b[1]) if a["reset_after"] else (b, np.zeros(k * u))
            xs = [xin(q, t) @ blk(w, q) + blk(bx, q) for q in range(3)]
            if a["reset_after"]:
                hs = [hin(q, h) @ blk(uk, q) + blk(bh, q) for q in range(3)]
                zg, rg = ract(xs[0] + hs[0]), ract(xs[1] + hs[1])
                cand = act(xs[2] + rg * hs[2])
            else:
                zg = ract(xs[0] + hin(0, h) @ blk(uk, 0))
                rg = ract(xs[1] + hin(1, h) @ blk(uk, 1))
                cand = act(xs[2] + (rg * hin(2, h)) @ blk(uk, 2))
            h = zg * h + (1.0 - zg) * cand
        outs.append(h)
    y = np.stack(outs, axis=1) if a["return_sequences"] else outs[-1]
    return [y, h, c] if type_name == "LSTM" else [y, h]


DROPOUT_CASES = [
    ("simple-in", "SimpleRNN", {"dropout": 0.3}),
    ("simple-both-seq", "SimpleRNN", {"dropout": 0.25, "recurrent_dropout": 0.4, "return_sequences": True}),
    ("lstm-in", "LSTM", {"dropout": 0.3}),
    ("lstm-rec", "LSTM", {"recurrent_dropout": 0.3, "return_sequences": True}),
    ("lstm-both-bw", "LSTM", {"dropout": 0.4, "recurrent_dropout": 0.2, "go_backwards": True}),
    ("gru-in-seq", "GRU", {"dropout": 0.3, "return_sequences": True}),
    ("gru-both", "GRU", {"dropout": 0.3, "recurrent_dropout": 0.3}),
    ("gru-v1-both-seq", "GRU", {"reset_after": False, "dropout": 0.3, "recurrent_dropout": 0.4,
                                "return_sequences": True}),
    ("gru-v1-rec", "GRU", {"reset_after": False, "recurrent_dropout": 0.5}),
]  # fmt: skip


@pytest.mark.parametrize(("case_id", "type_name", "kw"), DROPOUT_CASES, ids=[c[0] for c in DROPOUT_CASES])
def test_dropout_gradients(case_id, type_name, kw):
    """With dropout, outputs and gradients follow Keras's formulas with the masks the kernel drew."""
    from nnspec.runtime.kernels import seed_kernels

    a = _attrs(type_name, **kw)
    x = np.random.default_rng(5).normal(0, 1, (6, STEPS, 3)).astype(np.float32)
    params = _params(type_name, a, 3, seed=6)
    seed_kernels(11)
    _, _, saved = kernel_train(type_name, a, x, params)
    dmx = saved.get("dmx", np.zeros((6, 0), np.float32)).astype(np.float64)
    dmh = saved.get("dmh", np.zeros((6, 0), np.float32)).astype(np.float64)
    assert np.any(dmx == 0) or np.any(dmh == 0)
    seed_kernels(11)  # the same masks again
    check_kernel_grads(type_name, a, x, params, None,
                       lambda xx, pp: dropout_reference(type_name, a, xx, pp, dmx, dmh))  # fmt: skip


def _keras_mask_count(type_name, kw, which: str, features: int, units: int) -> int:
    """How many masks Keras's cell applies to the inputs ("x") or the state ("h") in training."""
    import keras
    from keras_ref import keras_layer

    layer = keras_layer(type_name, {"units": units, **kw})
    layer.build((None, 2, features))
    cell = layer.cell
    rate = cell.dropout if which == "x" else cell.recurrent_dropout
    if type_name == "SimpleRNN":
        applies = rate > 0
    else:
        applies = 0.0 < rate < 1.0  # LSTMCell.call / GRUCell.call
    if not applies:
        return 0
    ones = keras.ops.ones((8, features if which == "x" else units))
    masks = cell.get_dropout_mask(ones) if which == "x" else cell.get_recurrent_dropout_mask(ones)
    return len(masks) if isinstance(masks, (list, tuple)) else 1


MASK_COUNT_CASES = [
    ("SimpleRNN", {"dropout": 0.3}), ("SimpleRNN", {"dropout": 0.3, "recurrent_dropout": 0.2}),
    ("LSTM", {"dropout": 0.3}), ("LSTM", {"recurrent_dropout": 0.3}), ("LSTM", {"dropout": 0.3, "recurrent_dropout": 0.2}),
    ("LSTM", {"dropout": 1.0}), ("LSTM", {"dropout": 0.5, "recurrent_dropout": 1.0}),
    ("GRU", {"dropout": 0.3}), ("GRU", {"recurrent_dropout": 0.3}), ("GRU", {"dropout": 0.3, "recurrent_dropout": 0.2}),
    ("GRU", {"reset_after": False, "dropout": 0.3, "recurrent_dropout": 0.2}),
]  # fmt: skip


@pytest.mark.parametrize(("type_name", "kw"), MASK_COUNT_CASES)
def test_dropout_mask_counts_match_keras(type_name, kw):
    a = _attrs(type_name, **kw)
    ndx, ndh = recurrent.dropout_counts(type_name, a)
    assert ndx == _keras_mask_count(type_name, kw, "x", 5, 3)
    assert ndh == _keras_mask_count(type_name, kw, "h", 5, 3)


@pytest.mark.parametrize(("type_name", "extra"), [("SimpleRNN", {}), ("LSTM", {}), ("GRU", {}),
                                                   ("GRU", {"reset_after": False})])  # fmt: skip
def test_dropout_mask_statistics(type_name, extra):
    """Masks are 0 or 1/(1-rate), kept with probability 1-rate (within 4.5 sigma), drawn per
    sequence (the saved mask is the one every step used: the gradients above rely on it), and
    per gate distinct where Keras draws one per gate; Keras's masks have the same two values."""
    import keras

    from nnspec.runtime.kernels import seed_kernels

    rate, rec = 0.3, 0.6
    a = _attrs(type_name, units=4, dropout=rate, recurrent_dropout=rec, **extra)
    rows = 3000
    x = np.random.default_rng(7).normal(0, 1, (rows, 2, 5)).astype(np.float32)
    seed_kernels(3)
    _, _, saved = kernel_train(type_name, a, x, _params(type_name, a, 5))
    ndx, ndh = recurrent.dropout_counts(type_name, a)
    for key, r, count, width in (("dmx", rate, ndx, 5), ("dmh", rec, ndh, 4)):
        m = saved[key]
        assert m.shape == (rows, count * width)
        assert set(np.unique(m)) <= {0.0, np.float32(1.0 / (1.0 - r))}
        kept = float(np.mean(m > 0))
        sigma = np.sqrt(r * (1 - r) / m.size)
        assert abs(kept - (1 - r)) < 4.5 * sigma, (key, kept)
        if count > 1:
            blocks = m.reshape(rows, count, width)
            assert not np.array_equal(blocks[:, 0], blocks[:, 1])
        kcell_masks = keras.random.dropout(keras.ops.ones((rows, width)), rate=r)
        kvals = np.unique(kcell_masks.cpu().numpy())
        np.testing.assert_allclose(kvals, [0.0, 1.0 / (1.0 - r)], rtol=1e-6)
    seed_kernels(3)
    _, _, again = kernel_train(type_name, a, x, _params(type_name, a, 5))
    np.testing.assert_array_equal(again["dmx"], saved["dmx"])  # seeded: reproducible


# ----------------------------------------------------------------------------- end to end


def _one_step(spec_name: str, batch_fn, loss: str):
    """One SGD(0.1) step of a spec in nnspec and in Keras, same weights and batch."""
    import keras
    from keras_from_spec import keras_model_from_spec

    path = SPECS / spec_name
    m = nnspec.load(path)
    km = keras_model_from_spec(path)
    rng = np.random.default_rng(13)
    x, y = batch_fn(rng)
    names = [layer.name for layer in km.layers if layer.weights]
    for name in names:
        w = m.get_layer(name).get_weights()
        w = [v + rng.normal(0, 0.05, size=v.shape).astype(np.float32) for v in w]  # biases not all 0
        m.get_layer(name).set_weights(w)
        km.get_layer(name).set_weights(w)
    before = {name: m.get_layer(name).get_weights() for name in names}
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss=loss)
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    loss_n = m.train_on_batch(x, y)
    loss_k = km.train_on_batch(x, y)
    loss_n = float(np.ravel(loss_n)[0])
    loss_k = float(np.ravel(loss_k)[0])
    assert abs(loss_n - loss_k) <= 1e-4 * max(1.0, abs(loss_k)), (loss_n, loss_k)
    for name in names:
        got, want = m.get_layer(name).get_weights(), km.get_layer(name).get_weights()
        assert len(got) == len(want)
        for g, w, b in zip(got, want, before[name]):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max())))
            close(g - b, w - b, 1e-3, f"{name} update")


def test_lstm_text_one_sgd_step_matches_keras():
    def batch(rng):
        ids = rng.integers(1, 10000, size=(4, 100)).astype(np.int32)
        ids[0, 60:] = 0  # padding at the end, in the middle, at the start
        ids[1, 20:45] = 0
        ids[2, :30] = 0
        return ids, rng.integers(0, 2, size=(4, 1)).astype(np.float32)

    _one_step("lstm_text.yaml", batch, "binary_crossentropy")


def test_siamese_lstm_one_sgd_step_matches_keras():
    def batch(rng):
        a = rng.normal(0, 1, size=(4, 140, 256)).astype(np.float32)
        b = rng.normal(0, 1, size=(4, 140, 256)).astype(np.float32)
        return [a, b], rng.integers(0, 2, size=(4, 1)).astype(np.float32)

    _one_step("siamese_lstm.yaml", batch, "binary_crossentropy")
