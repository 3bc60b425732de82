"""Embedding, recurrent layers and wrappers: shape rules, masks and parameters, checked
against Keras 3 where Keras can say."""

from __future__ import annotations

import inspect

import pytest

from nnspec.layerdefs import REGISTRY, embedding, recurrent, wrappers
from nnspec.layerdefs.base import (
    COMMON_ATTRS,
    REQUIRED,
    InferContext,
    ShapeError,
    TensorType,
    normalize_attrs,
)


class FakeContext(InferContext):
    """Resolves nested layer definitions through the registry; sub-models are sequential lists
    of named layer definitions."""

    def __init__(self, models: dict | None = None):
        self.models = models or {}

    def layer_def(self, layer):
        return REGISTRY[layer["type"]]

    def infer_layer(self, layer, inputs):
        d = self.layer_def(layer)
        return d.infer(normalize_attrs(d, layer), list(inputs), self)

    def layer_params(self, layer, inputs):
        d = self.layer_def(layer)
        return d.params(normalize_attrs(d, layer), list(inputs), self)

    def _run(self, model, inputs):
        params = []
        for layer in self.models[model]:
            layer = dict(layer)
            name = layer.pop("name")
            params += [(f"{name}/{p.name}", p) for p in self.layer_params(layer, inputs)]
            inputs = self.infer_layer(layer, inputs)
        return inputs, params

    def infer_model(self, model, inputs):
        return self._run(model, inputs)[0]

    def model_params(self, model):
        # The fake's sub-models take one (None, 7, 5) input.
        _, params = self._run(model, [TensorType((None, 7, 5))])
        return [type(p)(n, p.shape, p.initializer) for n, p in params]


CTX = FakeContext()


def typed(shapes, dtypes=None, masked=False):
    dtypes = dtypes or ["float32"] * len(shapes)
    return [TensorType((None, *s), d, masked) for s, d in zip(shapes, dtypes)]


def run(type_name, attrs, shapes, dtypes=None, masked=False, ctx=CTX):
    defn = REGISTRY[type_name]
    a = normalize_attrs(defn, attrs)
    ins = typed(shapes, dtypes, masked)
    return defn.infer(a, ins, ctx), defn.params(a, ins, ctx)


def lstm(**kw):
    return {"type": "LSTM", "units": 4, **kw}


# ----------------------------------------------------------------------------- against Keras

# (type, attrs, input shapes without batch, input dtypes)
CASES = [
    ("Embedding", {"input_dim": 50, "output_dim": 8}, [(10,)], ["int32"]),
    ("Embedding", {"input_dim": 50, "output_dim": 8, "mask_zero": True}, [(None,)], ["int32"]),
    ("Embedding", {"input_dim": 20, "output_dim": 3}, [(3, 4)], ["float32"]),
    ("Embedding", {"input_dim": 20, "output_dim": 3}, [()], ["int64"]),
    ("SimpleRNN", {"units": 4}, [(7, 5)], None),
    ("SimpleRNN", {"units": 4, "return_sequences": True}, [(None, 5)], None),
    ("SimpleRNN", {"units": 4, "return_state": True, "go_backwards": True}, [(7, 5)], None),
    ("SimpleRNN", {"units": 2, "use_bias": False, "return_sequences": True, "return_state": True}, [(7, 5)], None),
    ("LSTM", {"units": 4}, [(7, 5)], None),
    ("LSTM", {"units": 4, "return_sequences": True, "return_state": True}, [(None, 5)], None),
    ("LSTM", {"units": 3, "return_state": True, "go_backwards": True}, [(7, 5)], None),
    ("LSTM", {"units": 3, "use_bias": False, "unit_forget_bias": False}, [(7, 5)], None),
    ("LSTM", {"units": 3, "unroll": True, "return_sequences": True}, [(6, 2)], None),
    ("GRU", {"units": 4}, [(7, 5)], None),
    ("GRU", {"units": 4, "reset_after": False}, [(7, 5)], None),
    ("GRU", {"units": 4, "reset_after": False, "use_bias": False}, [(None, 5)], None),
    ("GRU", {"units": 4, "use_bias": False, "return_state": True}, [(7, 5)], None),
    ("GRU", {"units": 3, "return_sequences": True, "return_state": True, "go_backwards": True}, [(None, 5)], None),
    *[("Bidirectional", {"layer": lstm(return_sequences=True), "merge_mode": m}, [(7, 5)], None)
      for m in ("concat", "sum", "mul", "ave", None)],
    *[("Bidirectional", {"layer": lstm(return_state=True), "merge_mode": m}, [(None, 5)], None)
      for m in ("concat", None)],
    ("Bidirectional", {"layer": lstm(return_sequences=True, return_state=True), "merge_mode": None}, [(7, 5)], None),
    ("Bidirectional", {"layer": {"type": "GRU", "units": 3, "reset_after": False}}, [(7, 5)], None),
    ("Bidirectional", {"layer": {"type": "GRU", "units": 3, "return_state": True}, "merge_mode": "ave"}, [(7, 5)], None),
    ("Bidirectional", {"layer": {"type": "SimpleRNN", "units": 2, "use_bias": False}}, [(None, 5)], None),
    ("Bidirectional", {"layer": {"type": "GRU", "units": 3},
                       "backward_layer": {"type": "GRU", "units": 3, "go_backwards": True, "use_bias": False}},
     [(7, 5)], None),
    ("TimeDistributed", {"layer": {"type": "Dense", "units": 3}}, [(7, 5)], None),
    ("TimeDistributed", {"layer": {"type": "Dense", "units": 3, "use_bias": False}}, [(None, 4, 5)], None),
    ("TimeDistributed", {"layer": {"type": "LSTM", "units": 4}}, [(3, 6, 5)], None),
    ("TimeDistributed", {"layer": {"type": "Conv2D", "filters": 2, "kernel_size": 3}}, [(4, 8, 8, 3)], None),
    ("TimeDistributed", {"layer": {"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same"}},
     [(None, 8, 8, 3)], None),
]  # fmt: skip


def _case_id(case):
    type_name, attrs, shapes, _ = case
    flat = ",".join(f"{k}={v['type'] if isinstance(v, dict) else v}" for k, v in attrs.items())
    return f"{type_name}[{flat}]{shapes}"


@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_keras(case):
    from keras_ref import keras_layer_facts

    type_name, attrs, shapes, dtypes = case
    outs, params = run(type_name, {"type": type_name, **attrs}, shapes, dtypes)
    k_shapes, k_weights, k_count = keras_layer_facts(type_name, attrs, shapes, dtypes)
    assert [t.shape for t in outs] == k_shapes
    assert [(p.name.split("/")[-1], p.shape, p.trainable) for p in params] == k_weights
    assert sum(p.size for p in params) == k_count


def _keras_paths(type_name, attrs, shape):
    """Keras's weight paths below the wrapper, with the RNN cell's scope left out."""
    import keras
    from keras_ref import keras_layer

    keras.backend.clear_session()  # default names without a _1, _2 suffix
    layer = keras_layer(type_name, attrs)
    layer(keras.Input(shape=shape))
    return ["/".join(s for s in w.path.split("/")[1:] if not s.endswith("_cell")) for w in layer.weights]


@pytest.mark.keras
@pytest.mark.parametrize(
    "attrs",
    [
        {"layer": {"type": "LSTM", "units": 4}},
        {"layer": {"type": "GRU", "units": 2, "name": "enc"}, "merge_mode": "sum"},
        {"layer": {"type": "SimpleRNN", "units": 2},
         "backward_layer": {"type": "SimpleRNN", "units": 2, "go_backwards": True, "name": "back"}},
    ],
    ids=["lstm", "named", "explicit-backward"],
)  # fmt: skip
def test_bidirectional_param_paths_match_keras(attrs):
    _, params = run("Bidirectional", attrs, [(7, 5)])
    assert [p.name for p in params] == _keras_paths("Bidirectional", attrs, (7, 5))


@pytest.mark.keras
@pytest.mark.parametrize(
    "defn", [*embedding.LAYERS, *recurrent.LAYERS, *wrappers.LAYERS[:2]], ids=lambda d: d.name
)
def test_attrs_and_defaults_match_keras_signature(defn):
    import keras

    sig = inspect.signature(getattr(keras.layers, defn.name).__init__).parameters
    unsupported = {"self", "kwargs", "use_cudnn", "weights", "lora_rank", "lora_alpha", "quantization_config"}
    ours = {a.name: a for a in defn.attrs}
    # base Layer / base RNN keyword arguments (Embedding's get_config holds activity_regularizer),
    # and Keras's call arguments, which are attributes in a file (ReversibleEmbedding's reverse)
    extra = {"trainable", "dtype", "zero_output_for_mask", "activity_regularizer", *defn.extra.get("call_attrs", ())}
    assert set(ours) - (extra - set(sig)) == set(sig) - unsupported
    for name, p in sig.items():
        if name in unsupported:
            continue
        want = REQUIRED if p.default is inspect.Parameter.empty else p.default
        assert ours[name].default == want, name
    assert defn.attrs[-len(COMMON_ATTRS) :] == COMMON_ATTRS
    required = [a.name for a in defn.attrs if a.required]
    assert list(defn.positional) == [n for n in sig if n in defn.positional]
    assert set(required) <= set(defn.positional)


@pytest.mark.keras
def test_masks_match_keras():
    import keras
    from keras_ref import keras_layer

    for type_name, attrs in [
        ("LSTM", {"units": 3, "return_sequences": True, "return_state": True}),
        ("GRU", {"units": 3}),
        ("Bidirectional", {"layer": lstm(return_sequences=True, return_state=True), "merge_mode": None}),
        ("Bidirectional", {"layer": lstm(return_sequences=False), "merge_mode": "concat"}),
        ("TimeDistributed", {"layer": {"type": "Dense", "units": 2}}),
    ]:
        x = keras.Input(shape=(None,), dtype="int32")
        e = keras.layers.Embedding(10, 5, mask_zero=True)(x)
        y = keras_layer(type_name, attrs)(e)
        ys = y if isinstance(y, (list, tuple)) else [y]
        k_masks = [getattr(t, "_keras_mask", None) is not None for t in ys]
        outs, _ = run(type_name, {"type": type_name, **attrs}, [(None, 5)], masked=True)
        assert [t.masked for t in outs] == k_masks, type_name


# ----------------------------------------------------------------------------- masks


def test_embedding_mask_zero_feeds_lstm_sequences():
    (e,), _ = run("Embedding", {"input_dim": 10, "output_dim": 4, "mask_zero": True}, [(None,)], ["int32"])
    assert e == TensorType((None, None, 4), "float32", True)
    seq = REGISTRY["LSTM"].infer(normalize_attrs(recurrent.LSTM, lstm(return_sequences=True)), [e], CTX)
    assert [t.masked for t in seq] == [True]
    last = REGISTRY["LSTM"].infer(normalize_attrs(recurrent.LSTM, lstm(return_state=True)), [e], CTX)
    assert [t.masked for t in last] == [False, False, False]


def test_embedding_without_mask_zero_drops_mask():
    (e,), _ = run("Embedding", {"input_dim": 10, "output_dim": 4}, [(6,)], ["int32"], masked=True)
    assert not e.masked and e.dtype == "float32"


def test_rnn_states_never_masked():
    outs, _ = run(
        "GRU", {"units": 3, "return_sequences": True, "return_state": True}, [(None, 5)], masked=True
    )
    assert [t.masked for t in outs] == [True, False]


def test_bidirectional_masks_and_state_order():
    outs, _ = run(
        "Bidirectional",
        {"layer": lstm(units=3, return_sequences=True, return_state=True), "merge_mode": None},
        [(None, 5)],
        masked=True,
    )
    assert [t.shape for t in outs] == [(None, None, 3)] * 2 + [(None, 3)] * 4
    assert [t.masked for t in outs] == [True, True, False, False, False, False]


def test_time_distributed_passes_mask():
    (y,), _ = run("TimeDistributed", {"layer": {"type": "Dense", "units": 2}}, [(None, 5)], masked=True)
    assert y == TensorType((None, None, 2), "float32", True)
    (y,), _ = run("TimeDistributed", {"layer": {"type": "Dense", "units": 2}}, [(4, 5)])
    assert not y.masked


# ----------------------------------------------------------------------------- parameters


def test_lstm_param_specs():
    attrs = lstm(units=2, kernel_regularizer={"type": "l2", "l2": 0.01}, recurrent_constraint="non_neg")
    _, params = run("LSTM", attrs, [(7, 5)])
    assert [(p.name, p.shape, p.initializer) for p in params] == [
        ("kernel", (5, 8), "glorot_uniform"),
        ("recurrent_kernel", (2, 8), "orthogonal"),
        # unit_forget_bias: Keras fills the bias as bias_initializer, ones (forget gate), bias_initializer
        ("bias", (8,), {"type": "blocks", "blocks": [["zeros", 2], ["ones", 2], ["zeros", 4]]}),
    ]
    no_forget = lstm(units=2, unit_forget_bias=False)
    assert run("LSTM", no_forget, [(7, 5)])[1][2].initializer == "zeros"
    assert params[0].regularizer == {"type": "l2", "l2": 0.01} and params[1].constraint == "non_neg"
    assert recurrent.LSTM.extra["gates"] == ("i", "f", "c", "o")
    assert recurrent.GRU.extra["gates"] == ("z", "r", "h")


def test_gru_bias_shape_follows_reset_after():
    assert run("GRU", {"units": 3}, [(7, 5)])[1][2].shape == (2, 9)
    assert run("GRU", {"units": 3, "reset_after": False}, [(7, 5)])[1][2].shape == (9,)


def test_embedding_param_spec():
    _, (p,) = run(
        "Embedding", {"input_dim": 7, "output_dim": 3, "embeddings_constraint": "unit_norm"}, [(2,)]
    )
    assert (p.name, p.shape, p.initializer, p.constraint) == ("embeddings", (7, 3), "uniform", "unit_norm")


def test_bidirectional_param_names():
    _, params = run("Bidirectional", {"layer": {"type": "GRU", "units": 2}}, [(7, 5)])
    assert [p.name for p in params] == [
        f"{d}_gru/{w}" for d in ("forward", "backward") for w in ("kernel", "recurrent_kernel", "bias")
    ]
    b = {"type": "SimpleRNN", "units": 2, "go_backwards": True}
    _, params = run(
        "Bidirectional", {"layer": {"type": "SimpleRNN", "units": 2}, "backward_layer": b}, [(7, 5)]
    )
    assert params[3].name == "backward_simple_rnn/kernel"


def test_model_layer_delegates_to_context():
    ctx = FakeContext(
        {"enc": [{"name": "rnn", "type": "LSTM", "units": 3}, {"name": "out", "type": "Dense", "units": 1}]}
    )
    assert wrappers.MODEL.arity == (1, None)
    outs, params = run("Model", {"model": "enc"}, [(7, 5)], ctx=ctx)
    assert [t.shape for t in outs] == [(None, 1)]
    assert [p.name for p in params] == [
        "rnn/kernel",
        "rnn/recurrent_kernel",
        "rnn/bias",
        "out/kernel",
        "out/bias",
    ]


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "type_name, attrs, shapes, words",
    [
        ("LSTM", {"units": 3}, [(5,)], ["LSTM", "rank 3", "(None, 5)"]),
        ("GRU", {"units": 3}, [(7, None)], ["GRU", "feature", "(None, 7, None)"]),
        ("SimpleRNN", {"units": 3, "unroll": True}, [(None, 5)], ["unroll", "(None, None, 5)"]),
        ("LSTM", {"units": 3, "stateful": True}, [(7, 5)], ["stateful", "batch"]),
        ("Bidirectional", {"layer": {"type": "Dense", "units": 3}}, [(7, 5)], ["recurrent", "Dense"]),
        ("Bidirectional", {"layer": lstm(go_backwards=True)}, [(7, 5)], ["go_backwards"]),
        ("Bidirectional", {"layer": lstm(), "backward_layer": lstm()}, [(7, 5)], ["go_backwards"]),
        ("Bidirectional", {"layer": lstm(), "backward_layer": lstm(go_backwards=True, return_sequences=True)},
         [(7, 5)], ["return_sequences"]),
        ("Bidirectional", {"layer": lstm(), "backward_layer": lstm(units=5, go_backwards=True)},
         [(7, 5)], ["same shapes", "(None, 4)", "(None, 5)"]),
        ("TimeDistributed", {"layer": {"type": "Dense", "units": 3}}, [(5,)], ["TimeDistributed", "rank 3", "(None, 5)"]),
        ("TimeDistributed", {"layer": lstm(return_state=True)}, [(3, 7, 5)], ["one output", "LSTM"]),
    ],
)  # fmt: skip
def test_refusals(type_name, attrs, shapes, words):
    with pytest.raises(ShapeError) as e:
        run(type_name, attrs, shapes)
    for w in words:
        assert w in str(e.value)


def test_stateful_with_fixed_batch():
    d = recurrent.LSTM
    outs = d.infer(normalize_attrs(d, lstm(stateful=True)), [TensorType((2, 7, 5))], CTX)
    assert [t.shape for t in outs] == [(2, 4)]
