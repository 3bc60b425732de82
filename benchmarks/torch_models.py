"""Eager PyTorch equivalents of nnspec model files, carrying nnspec's weights.

``build_torch_model(m)`` turns a loaded nnspec model (``nnspec.load(path, seed=0)``) into a
``torch.nn.Module`` that computes the same function in float32, with nnspec's weights copied in
(read layer by layer with ``m.get_layer(name).get_weights()``, in Keras's order and shapes). It
is the baseline of ``bench_inference.py`` and is exported from there to ONNX.

The module's ``forward(*inputs)`` takes the model's inputs in file order, in Keras's layouts
(images NHWC, sequences batch-first; integer ids as int32 or int64), and returns one tensor, or
a tuple for several outputs, in Keras's layouts too. Inside, 4-D feature maps are kept as NCHW
tensors in the ``channels_last`` memory format: an NHWC array seen through
``permute(0, 3, 1, 2)`` is exactly that, so the conversions at the edges of a convolution
stack are free views, and the convolution weights are converted with
``module.to(memory_format=torch.channels_last)``. Flatten flattens in NHWC order, as Keras does.

Layer types covered (what the seed models use, and a few trivial ones): Dense (with
activations), Activation, Dropout and the noise layers (identity at inference), Conv2D (valid or
same padding, strides, dilation, groups), MaxPooling2D (valid), GlobalMaxPooling2D, Flatten,
Embedding, LSTM (return_sequences / return_state / go_backwards), Bidirectional(LSTM) (every
merge mode, return_sequences or not), Concatenate, Add, TimeDistributed over any of these or over
a sub-model, sub-models called as layers (one module per sub-model, shared by its calls),
``shares:`` (one module called several times), several inputs and outputs. Anything else raises
``UnsupportedLayer``.

Weights, Keras -> torch: Dense kernel (in, out) -> Linear weight (out, in); Conv2D kernel
(kh, kw, in, out) -> Conv2d weight (out, in, kh, kw); LSTM kernel (in, 4u) and recurrent kernel
(u, 4u) -> weight_ih (4u, in) and weight_hh (4u, u), the gate order i, f, c, o of Keras being
torch's i, f, g, o; Keras's one bias goes to bias_ih and bias_hh is zero.

Masks are not modelled. Two seeds (lstm_text, bilstm_tagger) embed with ``mask_zero: true``;
the benchmarks feed them ids 1..9999 (``make_inputs``), so no step is ever masked and the
unmasked torch model computes the same function.

Run it to check every seed: ``python benchmarks/torch_models.py [--keras]`` prints, per seed,
the max abs difference against nnspec (where nnspec has kernels for the model) and, with
``--keras``, against Keras (torch backend) carrying the same weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class UnsupportedLayer(NotImplementedError):
    """The model uses a layer type or an option this torch builder does not reproduce."""


# ----------------------------------------------------------------------------- activations


def _softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)


_ACTS = {
    None: None,
    "linear": None,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": _softmax,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "swish": F.silu,
    "silu": F.silu,
    "exponential": torch.exp,
    "relu6": F.relu6,
    "hard_sigmoid": F.hardsigmoid,
}


def _activation(name, where: str):
    if isinstance(name, dict):  # {type: relu, ...} forms carry arguments: not reproduced
        raise UnsupportedLayer(f"{where}: activation {name!r} with arguments")
    if name not in _ACTS:
        raise UnsupportedLayer(f"{where}: activation {name!r}")
    return _ACTS[name]


def _apply(act, x, channel_dim: int = -1):
    if act is None:
        return x
    if act is _softmax:
        return _softmax(x, channel_dim)
    return act(x)


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


# ----------------------------------------------------------------------------- tensors with a layout
#
# A value flowing between layers is (tensor, nchw): nchw=True for a 4-D feature map held as NCHW
# (channels_last memory), False for Keras's layout. Layers say which layout they want.


def _keras(v):
    t, nchw = v
    return t.permute(0, 2, 3, 1) if nchw else t


def _nchw(v):
    t, nchw = v
    if nchw:
        return t
    if t.dim() != 4:
        raise UnsupportedLayer(f"a 2-D convolution or pooling needs a rank-4 input; got rank {t.dim()}")
    return t.permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- layers
#
# Each layer module has ``call(values) -> [values]`` (values as above) and
# ``load(weights) -> int``: it takes its arrays from the front of ``weights`` (Keras's order) and
# returns how many it used.


class Layer(nn.Module):
    n_outputs = 1

    def load(self, weights: list) -> int:
        return 0


class Dense(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        self.lin = nn.Linear(in_shape[-1], a["units"], bias=a["use_bias"])
        self.act = _activation(a.get("activation"), name)

    def call(self, vs):
        (v,) = vs
        return [(_apply(self.act, self.lin(_keras(v))), False)]

    def load(self, w):
        self.lin.weight.data = _t(w[0].T)
        if self.lin.bias is not None:
            self.lin.bias.data = _t(w[1])
            return 2
        return 1


class Activation(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        self.act = _activation(a.get("activation"), name)

    def call(self, vs):
        (v,) = vs
        return [(_apply(self.act, _keras(v)), False)]


class Identity(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()

    def call(self, vs):
        return list(vs)


class Conv2D(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        if a.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedLayer(f"{name}: data_format {a['data_format']!r}")
        pad = a.get("padding", "valid")
        strides = tuple(a.get("strides", (1, 1)))
        if pad == "valid":
            padding = 0
        elif pad == "same" and strides == (1, 1):
            padding = "same"
        else:
            raise UnsupportedLayer(f"{name}: padding {pad!r} with strides {list(strides)}")
        self.conv = nn.Conv2d(in_shape[-1], a["filters"], tuple(a["kernel_size"]), stride=strides,
                              padding=padding, dilation=tuple(a.get("dilation_rate", (1, 1))),
                              groups=a.get("groups", 1), bias=a["use_bias"])  # fmt: skip
        self.act = _activation(a.get("activation"), name)

    def call(self, vs):
        (v,) = vs
        return [(_apply(self.act, self.conv(_nchw(v)), channel_dim=1), True)]

    def load(self, w):
        self.conv.weight.data = _t(np.transpose(w[0], (3, 2, 0, 1))).contiguous(memory_format=torch.channels_last)
        if self.conv.bias is not None:
            self.conv.bias.data = _t(w[1])
            return 2
        return 1


class MaxPooling2D(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        if a.get("data_format", "channels_last") != "channels_last" or a.get("padding", "valid") != "valid":
            raise UnsupportedLayer(f"{name}: only valid, channels_last max pooling")
        size = tuple(a["pool_size"])
        strides = tuple(a["strides"]) if a.get("strides") is not None else size
        self.pool = nn.MaxPool2d(size, strides)

    def call(self, vs):
        (v,) = vs
        return [(self.pool(_nchw(v)), True)]


class GlobalMaxPooling2D(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        if a.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedLayer(f"{name}: data_format {a['data_format']!r}")
        self.keepdims = bool(a.get("keepdims", False))

    def call(self, vs):
        (v,) = vs
        y = torch.amax(_nchw(v), dim=(2, 3))  # (B, C)
        return [(y[:, None, None, :] if self.keepdims else y, False)]


class Flatten(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        if a.get("data_format") not in (None, "channels_last"):
            raise UnsupportedLayer(f"{name}: data_format {a['data_format']!r}")

    def call(self, vs):
        (v,) = vs
        x = _keras(v)
        return [(x.reshape(x.shape[0], -1), False)]


class Embedding(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        self.emb = nn.Embedding(a["input_dim"], a["output_dim"])

    def call(self, vs):
        (v,) = vs
        return [(self.emb(v[0]), False)]

    def load(self, w):
        self.emb.weight.data = _t(w[0])
        return 1


def _check_lstm(name, a):
    if a.get("activation", "tanh") != "tanh" or a.get("recurrent_activation", "sigmoid") != "sigmoid":
        raise UnsupportedLayer(f"{name}: torch's LSTM has tanh/sigmoid activations only")
    if a.get("stateful"):
        raise UnsupportedLayer(f"{name}: stateful LSTM")


def _load_lstm(lstm: nn.LSTM, w, suffix: str, use_bias: bool) -> int:
    units = lstm.hidden_size
    getattr(lstm, "weight_ih_l0" + suffix).data = _t(w[0].T)
    getattr(lstm, "weight_hh_l0" + suffix).data = _t(w[1].T)
    bias = w[2] if use_bias else np.zeros(4 * units, np.float32)
    getattr(lstm, "bias_ih_l0" + suffix).data = _t(bias)
    getattr(lstm, "bias_hh_l0" + suffix).data = torch.zeros(4 * units)
    return 3 if use_bias else 2


class LSTM(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        _check_lstm(name, a)
        self.lstm = nn.LSTM(in_shape[-1], a["units"], batch_first=True)
        self.use_bias = a["use_bias"]
        self.return_sequences = a["return_sequences"]
        self.return_state = a["return_state"]
        self.go_backwards = a["go_backwards"]
        self.n_outputs = 3 if self.return_state else 1

    def call(self, vs):
        (v,) = vs
        x = _keras(v)
        if self.go_backwards:
            x = torch.flip(x, (1,))
        y, (h, c) = self.lstm(x)
        out = y if self.return_sequences else h[0]
        outs = [out, h[0], c[0]] if self.return_state else [out]
        return [(o, False) for o in outs]

    def load(self, w):
        return _load_lstm(self.lstm, w, "", self.use_bias)


class Bidirectional(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        inner = a["layer"]
        if inner.get("type") != "LSTM" or a.get("backward_layer") is not None:
            raise UnsupportedLayer(f"{name}: Bidirectional over {inner.get('type')} (only LSTM, no backward_layer)")
        _check_lstm(name, inner)
        if inner.get("return_state") or inner.get("go_backwards"):
            raise UnsupportedLayer(f"{name}: Bidirectional LSTM with return_state or go_backwards")
        self.units = inner["units"]
        self.lstm = nn.LSTM(in_shape[-1], self.units, batch_first=True, bidirectional=True)
        self.use_bias = inner["use_bias"]
        self.return_sequences = inner["return_sequences"]
        self.merge = a.get("merge_mode", "concat")
        if self.merge not in ("concat", "sum", "mul", "ave", None):
            raise UnsupportedLayer(f"{name}: merge_mode {self.merge!r}")
        self.n_outputs = 2 if self.merge is None else 1

    def call(self, vs):
        (v,) = vs
        y, (h, _) = self.lstm(_keras(v))
        if self.return_sequences:  # torch aligns the backward outputs with the input steps, as Keras
            fwd, bwd = y[..., : self.units], y[..., self.units :]
            if self.merge == "concat":
                return [(y, False)]
        else:
            fwd, bwd = h[0], h[1]
            if self.merge == "concat":
                return [(torch.cat([fwd, bwd], -1), False)]
        if self.merge == "sum":
            return [(fwd + bwd, False)]
        if self.merge == "mul":
            return [(fwd * bwd, False)]
        if self.merge == "ave":
            return [((fwd + bwd) * 0.5, False)]
        return [(fwd, False), (bwd, False)]

    def load(self, w):
        k = _load_lstm(self.lstm, w, "", self.use_bias)
        return k + _load_lstm(self.lstm, w[k:], "_reverse", self.use_bias)


class Concatenate(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        self.axis = a.get("axis", -1)

    def call(self, vs):
        return [(torch.cat([_keras(v) for v in vs], self.axis), False)]


class Add(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()

    def call(self, vs):
        y = _keras(vs[0])
        for v in vs[1:]:
            y = y + _keras(v)
        return [(y, False)]


class LayerNormalization(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        if a.get("axis", -1) not in (-1, len(in_shape) - 1) or a.get("rms_scaling"):
            raise UnsupportedLayer(f"{name}: layer normalization over the last axis only")
        d = in_shape[-1]
        self.norm = nn.LayerNorm(d, eps=a.get("epsilon", 1e-3), elementwise_affine=True,
                                 bias=a.get("center", True))  # fmt: skip
        if not a.get("scale", True):
            raise UnsupportedLayer(f"{name}: scale=False")

    def call(self, vs):
        (v,) = vs
        return [(self.norm(_keras(v)), False)]

    def load(self, w):
        self.norm.weight.data = _t(w[0])
        if self.norm.bias is not None:
            self.norm.bias.data = _t(w[1])
            return 2
        return 1


class GlobalAveragePooling1D(Layer):
    def __init__(self, name, a, in_shape):
        super().__init__()
        if a.get("data_format") not in (None, "channels_last") or a.get("keepdims"):
            raise UnsupportedLayer(f"{name}: channels_last, keepdims=False only")

    def call(self, vs):
        (v,) = vs
        return [(_keras(v).mean(dim=1), False)]


class MultiHeadAttention(Layer):
    """Keras's MultiHeadAttention over rank-3 inputs, written with torch ops as an eager torch
    user would (projections as einsums on Keras's weight layout, scaled dot-product attention)."""

    def __init__(self, name, a, in_shape):
        super().__init__()
        shapes = in_shape if isinstance(in_shape, list) else [in_shape]
        if any(len(sh) != 3 for sh in shapes) or a.get("dropout") or a.get("use_gate") or a.get("sliding_window") \
                or a.get("return_attention_scores") or a.get("output_shape") or a.get("attention_axes"):
            raise UnsupportedLayer(f"{name}: rank-3 inputs and the default options only")  # fmt: skip
        self.h, self.kd = a["num_heads"], a["key_dim"]
        self.vd = a.get("value_dim") or self.kd
        self.causal = bool(a.get("use_causal_mask"))
        self.use_bias = a.get("use_bias", True)
        dq, dv = shapes[0][-1], shapes[1][-1]
        dk = shapes[2][-1] if len(shapes) > 2 else dv
        self.w = nn.ParameterList([nn.Parameter(torch.zeros(*sh)) for sh in (
            (dq, self.h, self.kd), (self.h, self.kd), (dk, self.h, self.kd), (self.h, self.kd),
            (dv, self.h, self.vd), (self.h, self.vd), (self.h, self.vd, dq), (dq,))])  # fmt: skip

    def call(self, vs):
        q, v = _keras(vs[0]), _keras(vs[1])
        k = _keras(vs[2]) if len(vs) > 2 else v
        wq, bq, wk, bk, wv, bv, wo, bo = self.w
        Q = torch.einsum("btd,dhe->bthe", q, wq) + bq
        K = torch.einsum("btd,dhe->bthe", k, wk) + bk
        V = torch.einsum("btd,dhe->bthe", v, wv) + bv
        out = nn.functional.scaled_dot_product_attention(
            Q.transpose(1, 2), K.transpose(1, 2), V.transpose(1, 2), is_causal=self.causal
        ).transpose(1, 2)
        return [(torch.einsum("bthe,heo->bto", out, wo) + bo, False)]

    def load(self, w):
        if not self.use_bias:
            raise UnsupportedLayer("MultiHeadAttention without biases")
        for p, a in zip(self.w, w):
            p.data = _t(a)
        return 8


class SubModel(Layer):
    """A sub-model called as a layer: its own graph, one module shared by every call."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.n_outputs = len(graph.outputs)
        self.loaded = False

    def call(self, vs):
        return self.graph.run(list(vs))

    def load(self, w):
        if self.loaded:  # a sub-model called twice shares its weights: read them once
            return 0
        self.loaded = True
        return self.graph.load_all(w)


class TimeDistributed(Layer):
    def __init__(self, name, inner: Layer):
        super().__init__()
        if inner.n_outputs != 1:
            raise UnsupportedLayer(f"{name}: TimeDistributed over a layer with {inner.n_outputs} outputs")
        self.inner = inner
        self.direct = isinstance(inner, Dense)  # Linear already maps the last axis of any rank

    def call(self, vs):
        (v,) = vs
        x = _keras(v)
        if self.direct:
            return self.inner.call([(x, False)])
        b, t = x.shape[0], x.shape[1]
        (y,) = self.inner.call([(x.reshape(b * t, *x.shape[2:]), False)])
        y = _keras(y)
        return [(y.reshape(b, t, *y.shape[1:]), False)]

    def load(self, w):
        return self.inner.load(w)


_SIMPLE = {
    "Dense": Dense, "Activation": Activation, "Conv2D": Conv2D, "MaxPooling2D": MaxPooling2D,
    "GlobalMaxPooling2D": GlobalMaxPooling2D, "Flatten": Flatten, "Embedding": Embedding, "LSTM": LSTM,
    "Bidirectional": Bidirectional, "Concatenate": Concatenate, "Add": Add,
    "LayerNormalization": LayerNormalization, "GlobalAveragePooling1D": GlobalAveragePooling1D,
    "MultiHeadAttention": MultiHeadAttention,
    "Dropout": Identity, "GaussianNoise": Identity, "GaussianDropout": Identity, "AlphaDropout": Identity,
    "SpatialDropout1D": Identity, "SpatialDropout2D": Identity, "ActivityRegularization": Identity,
}  # fmt: skip


# ----------------------------------------------------------------------------- graphs


def _parse_ref(text: str) -> tuple[str, int]:
    text = text.strip()
    if ":" in text:
        node, port = text.rsplit(":", 1)
        return node.strip(), int(port)
    return text, 0


def _feeds(cfg: dict) -> dict[str, list[tuple[str, int]]]:
    """node -> its input refs, from the edge chains (or the file order for a Sequential file)."""
    if "edges" not in cfg:
        (inp,) = cfg["inputs"]
        feeds, prev = {}, (inp, 0)
        for node in cfg["layers"]:
            feeds[node] = [prev]
            prev = (node, 0)
        return feeds
    feeds: dict = {}
    for chain in cfg["edges"]:
        segs = [[_parse_ref(r) for r in seg.split(",") if r.strip()] for seg in chain.split("->")]
        for left, right in zip(segs, segs[1:]):
            for node, _ in right:
                feeds.setdefault(node, []).extend(left)
    return feeds


class Graph(nn.Module):
    """One model file's graph (the top level or a sub-model) as torch modules."""

    def __init__(self, cfg: dict, models: dict, sub_modules: dict, input_shapes: list | None = None):
        super().__init__()
        self.cfg = cfg
        self.input_names = list(cfg["inputs"])
        feeds = _feeds(cfg)
        layers = cfg["layers"]
        owner = {}
        for node, spec in layers.items():
            target = node
            while "shares" in layers[target]:
                target = layers[target]["shares"]
            owner[node] = target
        # (node, port) -> (shape with batch None, integer dtype?)
        shapes = {(n, 0): ((None, *d["shape"]), d.get("dtype", "float32").startswith(("int", "uint")))
                  for n, d in cfg["inputs"].items()}  # fmt: skip
        if input_shapes is not None:
            shapes = {(n, 0): s for n, s in zip(self.input_names, input_shapes)}
        self.layer_mods = nn.ModuleList()  # a list, not a ModuleDict: node names may hold dots
        self.mods: dict[str, Layer] = {}
        self.owners: list[str] = []  # owner nodes, file order (weight order)
        self.order: list[tuple[str, str, list]] = []  # (node, owner, input refs), run order
        done = set(shapes)
        pending = [n for n in layers]
        while pending:  # file order, each node once its inputs are computed
            progressed = False
            for node in list(pending):
                refs = feeds.get(node, [])
                if not refs:
                    raise ValueError(f"node {node!r} has no inputs")
                if not all(r in done for r in refs):
                    continue
                own = owner[node]
                if own not in self.mods:
                    self.mods[own] = _make_layer(own, layers[own], [shapes[r] for r in refs], models, sub_modules)
                    self.layer_mods.append(self.mods[own])
                    self.owners.append(own)
                mod = self.mods[own]
                outs = _out_shapes(mod, [shapes[r] for r in refs])
                for port, s in enumerate(outs):
                    shapes[(node, port)] = (s, False)
                    done.add((node, port))
                self.order.append((node, own, refs))
                pending.remove(node)
                progressed = True
            if not progressed:
                raise ValueError(f"cannot order nodes {pending} (cycle or unknown reference)")
        self.outputs = [_parse_ref(r) for r in cfg["outputs"]] if "outputs" in cfg else [(self.order[-1][0], 0)]
        self.output_shapes = [shapes[r][0] for r in self.outputs]

    def run(self, values: list) -> list:
        env = {(n, 0): v for n, v in zip(self.input_names, values)}
        for node, own, refs in self.order:
            outs = self.mods[own].call([env[r] for r in refs])
            for port, v in enumerate(outs):
                env[(node, port)] = v
        return [env[r] for r in self.outputs]

    def load_all(self, w: list) -> int:
        """Load every owner layer from one flat list (a sub-model's weights, in file order)."""
        k = 0
        for own in self.owners:
            k += self.mods[own].load(w[k:])
        return k


def _make_layer(node, spec, in_shapes, models, sub_modules) -> Layer:
    kind = spec.get("type")
    if kind == "Model":
        return _submodel(spec["model"], in_shapes, models, sub_modules)
    if kind == "TimeDistributed":
        inner_spec = spec["layer"]
        step_shapes = [((None, *s[2:]), is_int) for s, is_int in in_shapes]
        if inner_spec.get("type") == "Model":
            inner = _submodel(inner_spec["model"], step_shapes, models, sub_modules)
        else:
            inner = _make_layer(f"{node}/inner", inner_spec, step_shapes, models, sub_modules)
        return TimeDistributed(node, inner)
    cls = _SIMPLE.get(kind)
    if cls is None:
        raise UnsupportedLayer(f"layer '{node}': type {kind!r} has no torch equivalent here")
    plain = [s for s, _ in in_shapes]
    return cls(node, spec, plain[0] if len(plain) == 1 else plain)


def _submodel(name, in_shapes, models, sub_modules) -> SubModel:
    if name not in sub_modules:
        sub_modules[name] = SubModel(Graph(models[name], models, sub_modules, in_shapes))
    return sub_modules[name]


def _out_shapes(mod: Layer, in_shapes: list) -> list:
    """Output shapes (batch None), by running the layer on a zero batch of 2 (cheap: built once)."""
    xs = []
    for s, is_int in in_shapes:
        dims = [2] + [d if d is not None else 3 for d in s[1:]]
        xs.append((torch.zeros(dims, dtype=torch.int64 if is_int else torch.float32), False))
    with torch.no_grad():
        ys = mod.call(xs)
    return [(None, *_keras(y).shape[1:]) for y in ys]


class TorchModel(nn.Module):
    """``forward(*inputs)`` -> one tensor, or a tuple for several outputs (Keras layouts)."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.n_outputs = len(graph.outputs)

    def forward(self, *inputs):
        outs = self.graph.run([(x, False) for x in inputs])
        outs = [_keras(v) for v in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)


# ----------------------------------------------------------------------------- public


def build_torch_model(m) -> TorchModel:
    """An eager, float32, channels_last torch module computing ``m`` with ``m``'s weights.

    Raises ``UnsupportedLayer`` for layers this builder does not reproduce.
    """
    cfg = m.get_config()  # the normalized model file: every attribute present, defaults filled
    models = cfg.get("models", {})
    sub_modules: dict = {}
    graph = Graph(cfg, models, sub_modules)
    tm = TorchModel(graph)
    for own in graph.owners:
        mod = graph.mods[own]
        if isinstance(mod, SubModel) or (isinstance(mod, TimeDistributed) and isinstance(mod.inner, SubModel)):
            sub = mod if isinstance(mod, SubModel) else mod.inner
            if sub.loaded:
                continue
            try:
                w = m.get_layer(own).get_weights()
            except ValueError:  # a sub-model called directly is listed under the sub-model's name
                w = m.get_layer(cfg["layers"][own]["model"]).get_weights()
        else:
            w = m.get_layer(own).get_weights()
        used = mod.load(list(w))
        if used != len(w):
            raise ValueError(f"layer '{own}': nnspec gave {len(w)} weight arrays, the torch layer took {used}")
    tm.eval()
    tm.to(memory_format=torch.channels_last)
    for p in tm.parameters():
        p.requires_grad_(False)
    return tm


def make_inputs(m, n: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs for ``n`` samples, in file order: floats in [-1, 1); integer ids in 1..min(input_dim)-1.

    Ids never contain 0, so ``mask_zero`` embeddings mask nothing (see the module docstring).
    """
    rng = np.random.default_rng(seed)
    cfg = m.get_config()
    dims = [s["input_dim"] for s in cfg["layers"].values() if s.get("type") == "Embedding"]
    top = min(dims + [10000])
    out = []
    for name, decl in cfg["inputs"].items():
        shape = (n, *decl["shape"])
        if decl.get("dtype", "float32").startswith(("int", "uint")):
            out.append(rng.integers(1, top, size=shape).astype(decl["dtype"]))
        else:
            out.append(rng.uniform(-1.0, 1.0, size=shape).astype(decl.get("dtype", "float32")))
    return out


def torch_inputs(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(a) for a in arrays]


def as_list(outs) -> list[np.ndarray]:
    if isinstance(outs, (list, tuple)):
        return [np.asarray(o.detach().numpy() if isinstance(o, torch.Tensor) else o) for o in outs]
    return [outs.detach().numpy() if isinstance(outs, torch.Tensor) else np.asarray(outs)]


def max_abs_diff(a: list, b: list) -> float:
    if len(a) != len(b):
        return math.inf
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return math.inf
        worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0)
    return worst


# ----------------------------------------------------------------------------- self-check


def _keras_check(path, m, arrays):
    """Max abs difference of the torch model against Keras carrying nnspec's weights."""
    import os
    import sys

    os.environ.setdefault("KERAS_BACKEND", "torch")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "tests"))
    from keras_from_spec import keras_model_from_spec

    km = keras_model_from_spec(path)
    for layer in km.layers:
        if not layer.weights:
            continue
        try:
            w = m.get_layer(layer.name).get_weights()
        except ValueError:
            continue
        layer.set_weights(w)
    return as_list(km.predict(arrays if len(arrays) > 1 else arrays[0], verbose=0))


def main(argv=None) -> None:
    import argparse
    import glob
    import os

    import nnspec

    ap = argparse.ArgumentParser(description="Check the torch equivalents of the seed models.")
    ap.add_argument("--models", nargs="*", help="seed names (default: every specs/*.yaml)")
    ap.add_argument("--keras", action="store_true", help="also compare against Keras (torch backend)")
    args = ap.parse_args(argv)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    paths = sorted(glob.glob(os.path.join(root, "specs", "*.yaml")))
    if args.models:
        paths = [p for p in paths if os.path.splitext(os.path.basename(p))[0] in args.models]
    print("inputs: floats in [-1, 1); token ids 1..9999 (no 0, so mask_zero masks nothing; the torch "
          "models have no mask support)")  # fmt: skip
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        m = nnspec.load(path, seed=0)
        try:
            tm = build_torch_model(m)
        except UnsupportedLayer as e:
            print(f"{name:20s} torch: unsupported ({e})")
            continue
        arrays = make_inputs(m, 4, seed=1)
        with torch.inference_mode():
            ref = as_list(tm(*torch_inputs(arrays)))
        parts = [f"torch out {[r.shape for r in ref]}"]
        try:
            got = m.predict_on_batch(arrays if len(arrays) > 1 else arrays[0])
            got = got if isinstance(got, list) else [got]
            parts.append(f"max|nnspec - torch| = {max_abs_diff(got, ref):.2e}")
        except Exception as e:  # noqa: BLE001 - kernels still being written: report and go on
            parts.append(f"nnspec cannot run it yet ({type(e).__name__}: {e})")
        if args.keras:
            parts.append(f"max|keras - torch| = {max_abs_diff(_keras_check(path, m, arrays), ref):.2e}")
        print(f"{name:20s} " + "; ".join(parts))


if __name__ == "__main__":
    main()
