"""Stateful recurrent layers and fixed batch sizes.

An input may fix the batch size (``batch_size: 4``, Keras's ``batch_shape``): shapes show it and
every batch must have it. A recurrent layer with ``stateful: true`` then starts each batch from
the states the previous batch ended with (zeros at first and after ``reset_states()``), in
prediction, evaluation and training alike, as Keras's does.

Predictions are checked against Keras over several consecutive calls (the states carried), for
every recurrent layer type, masked and not. Keras 3 on its PyTorch backend cannot train a
stateful layer (its state update breaks torch's autograd: "one of the variables needed for
gradient computation has been modified by an inplace operation"), so training is checked
against PyTorch's own LSTM, carrying its states between batches the same way.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # a test extra (pip install ".[test]"), after KERAS_BACKEND is set
from keras_from_spec import keras_model_from_spec

import nnspec
from nnspec.cli.main import cli
from nnspec.specs.errors import InputError, NnspecError

L = keras.layers

STACKED = """
format: nnspec/1
name: stateful_stack
inputs:
  x: {shape: [8, 16], batch_size: 4}
layers:
  l1: {type: LSTM, units: 32, return_sequences: true, stateful: true}
  l2: {type: LSTM, units: 32, stateful: true}
  out: {type: Dense, units: 10}
"""


def _x(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)


def test_a_fixed_batch_size_shows_in_the_summary_as_in_keras(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(STACKED)
    km = keras_model_from_spec(path)
    m = nnspec.load(path)
    want = [tuple(la.output.shape) for la in km.layers]
    got = [tuple(r["output_shape"]) for r in m.summary_dict()["layers"]]
    assert got == want == [(4, 8, 32), (4, 32), (4, 10)]
    assert m.count_params() == km.count_params()
    r = CliRunner().invoke(cli, ["summarize", str(path)])
    assert r.exit_code == 0 and "(4, 8, 32)" in r.output
    assert m.get_config()["inputs"] == {"x": {"shape": [8, 16], "dtype": "float32", "batch_size": 4}}
    assert nnspec.model_from_json(m.to_json()).get_config() == m.get_config()


def _carry_cases():
    """(name, Keras model) with stateful layers; inputs with a batch of 4."""
    ids = keras.Input(batch_shape=(4, 7), dtype="int32")
    masked = L.Embedding(20, 6, mask_zero=True)(ids)
    seq = keras.Input(batch_shape=(4, 7, 5))
    frames = keras.Input(batch_shape=(4, 3, 6, 6, 2))
    return [
        ("stacked_lstm", keras.Sequential([keras.Input(batch_shape=(4, 8, 16)),
                                           L.LSTM(8, return_sequences=True, stateful=True),
                                           L.LSTM(6, stateful=True), L.Dense(3)])),
        ("gru_masked", keras.Model(ids, L.GRU(5, stateful=True, return_sequences=True)(masked))),
        ("simple_rnn_masked_backwards", keras.Model(ids, L.SimpleRNN(5, stateful=True, go_backwards=True)(masked))),
        ("lstm_return_state", keras.Model(seq, L.LSTM(4, stateful=True, return_state=True)(seq))),
        ("bidirectional", keras.Model(ids, L.Bidirectional(L.LSTM(4, stateful=True, return_sequences=True))(masked))),
        ("rnn_cell", keras.Model(seq, L.RNN(L.GRUCell(4), stateful=True)(seq))),
        ("rnn_stacked_cells_masked", keras.Model(ids, L.RNN([L.LSTMCell(4), L.GRUCell(3)], stateful=True,
                                                            return_sequences=True)(masked))),
        ("conv_lstm", keras.Model(frames, L.ConvLSTM2D(3, 3, padding="same", stateful=True)(frames))),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(8), ids=[n for n, _ in _carry_cases()])
def test_states_carry_from_batch_to_batch_as_in_keras(case):
    _, km = _carry_cases()[case]
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    t = km.inputs[0]
    shape = (8, *t.shape[1:])
    if "int" in str(t.dtype):
        x = np.random.default_rng(case).integers(1, 20, size=shape).astype(np.int32)
        x[1, 4:] = 0  # padding: masked steps keep the states
        x[6, :2] = 0
    else:
        x = _x(shape, case)

    def both():
        want = km.predict(x, batch_size=4, verbose=0)
        got = m.predict(x, batch_size=4)
        want, got = (want, got) if isinstance(want, list) else ([want], [got])
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
        return got[0]

    first = both()
    second = both()  # the second call starts from the first one's final states
    assert not np.allclose(first, second)
    for layer in km.layers:
        if (
            getattr(layer, "states", None) is not None
        ):  # Keras's reset_state fails on nested (stacked cells') states
            for v in keras.tree.flatten(layer.states):
                v.assign(np.zeros(v.shape, np.float32))
        elif hasattr(layer, "reset_state"):
            layer.reset_state()
    m.reset_states()
    np.testing.assert_allclose(both(), first, rtol=1e-5, atol=1e-6)


def test_only_the_layers_own_states_are_kept_when_it_is_given_initial_states():
    """A stateful call given initial states starts from them (and, as in Keras, ignores its
    input's mask); it still keeps its final states."""
    seq = keras.Input(batch_shape=(4, 6, 3))
    h = keras.Input(batch_shape=(4, 5))
    c = keras.Input(batch_shape=(4, 5))
    km = keras.Model([seq, h, c], L.LSTM(5, stateful=True)(seq, initial_state=[h, c]))
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    xs = [_x((4, 6, 3)), _x((4, 5), 1), _x((4, 5), 2)]
    for _ in range(2):
        np.testing.assert_allclose(m.predict(xs, batch_size=4), km.predict(xs, batch_size=4, verbose=0),
                                   rtol=1e-4, atol=1e-6)  # fmt: skip
    lstm = m.layers[-1].name
    assert [n for n, _ in m.plan().inputs] == [la.name for la in m.layers[:3]]  # no kept state read
    assert [n for n, _ in m.plan().outputs] == [lstm, f"state:{lstm}:0", f"state:{lstm}:1"]


def test_the_plan_reads_and_writes_the_kept_states():
    m = nnspec.Model.from_config(yaml.safe_load(STACKED))
    plan = m.plan()
    assert [n for n, _ in plan.inputs] == ["x", "state:l1:0", "state:l1:1", "state:l2:0", "state:l2:1"]
    assert [n for n, _ in plan.outputs] == ["out", "state:l1:0", "state:l1:1", "state:l2:0", "state:l2:1"]
    # a model of the first layer only keeps that layer's states
    head = nnspec.Model(inputs=m.inputs, outputs=[m.get_layer("l1").output])
    assert [n for n, _ in head.plan().outputs] == ["l1", "state:l1:0", "state:l1:1"]


def _torch_stack(weights):
    """PyTorch's LSTMs and Linear with Keras's weights (Keras's gates i, f, c, o are PyTorch's
    i, f, g, o; one bias, so PyTorch's second bias stays zero and frozen)."""
    import torch

    def lstm(k, rk, b):
        layer = torch.nn.LSTM(k.shape[0], rk.shape[0], batch_first=True)
        with torch.no_grad():
            layer.weight_ih_l0.copy_(torch.tensor(k.T))
            layer.weight_hh_l0.copy_(torch.tensor(rk.T))
            layer.bias_ih_l0.copy_(torch.tensor(b))
            layer.bias_hh_l0.zero_()
        layer.bias_hh_l0.requires_grad_(False)
        return layer

    l1, l2 = lstm(*weights[0:3]), lstm(*weights[3:6])
    dense = torch.nn.Linear(*weights[6].shape)
    with torch.no_grad():
        dense.weight.copy_(torch.tensor(weights[6].T))
        dense.bias.copy_(torch.tensor(weights[7]))
    return l1, l2, dense


def test_training_carries_the_states_as_pytorch_does():
    """fit over two epochs of two batches (shuffle off), SGD: the losses and the weights are
    PyTorch's, whose LSTMs start each batch from the last batch's final states (detached)."""
    import torch

    m = nnspec.Model.from_config(yaml.safe_load(STACKED))
    weights = m.get_weights()
    rng = np.random.default_rng(0)
    x, y = _x((8, 8, 16)), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    m.compile(optimizer={"type": "sgd", "learning_rate": 0.5},
              loss={"type": "categorical_crossentropy", "from_logits": True})  # fmt: skip
    got = m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]

    l1, l2, dense = _torch_stack(weights)
    params = [p for mod in (l1, l2, dense) for p in mod.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    s1 = s2 = None
    want = []
    for _ in range(2):
        losses = []
        for b in range(2):
            xb, yb = torch.tensor(x[4 * b : 4 * b + 4]), torch.tensor(y[4 * b : 4 * b + 4])
            o1, n1 = l1(xb, s1)
            o2, n2 = l2(o1, s2)
            loss = torch.nn.functional.cross_entropy(dense(o2[:, -1]), yb.argmax(1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            s1, s2 = tuple(t.detach() for t in n1), tuple(t.detach() for t in n2)
            losses.append(loss.item())
        want.append(np.mean(losses))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    after = m.get_weights()
    mine = [l1.weight_ih_l0.T, l1.weight_hh_l0.T, l1.bias_ih_l0, l2.weight_ih_l0.T, l2.weight_hh_l0.T, l2.bias_ih_l0,
            dense.weight.T, dense.bias]  # fmt: skip
    for a, b in zip(after, mine):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-4, atol=1e-6)
    # the states the last batch ended with are PyTorch's
    np.testing.assert_allclose(m._kept_states["state:l2:0"], s2[0][0].numpy(), rtol=1e-4, atol=1e-6)


def test_a_stateful_layer_without_a_fixed_batch_size_is_an_error_naming_it(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(STACKED.replace(", batch_size: 4", ""))
    with pytest.raises(NnspecError) as e:
        nnspec.load(path)
    text = str(e.value)
    assert "m.yaml:" in text and "LSTM with stateful=True needs a fixed batch size" in text
    assert "batch_size" in text and "'l1'" in text


def test_batches_of_another_size_are_refused():
    m = nnspec.Model.from_config(yaml.safe_load(STACKED))
    with pytest.raises(InputError, match=r"stateful layers \(l1, l2\).*batches of 4.*got a batch of 3"):
        m.predict(_x((3, 8, 16)))
    with pytest.raises(InputError, match="got a batch of 8"):
        m.predict(_x((8, 8, 16)))  # predict's default batch_size, 32, takes all 8 at once
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(InputError, match="got a batch of 2"):
        m.fit(_x((6, 8, 16)), np.zeros((6, 10), np.float32), batch_size=4, verbose=0)


def test_the_builder_takes_a_batch_shape():
    # Keras 2's batch_input_shape on a first layer, as nnspec's builder still takes it
    seq = nnspec.Sequential(
        [nnspec.layers.LSTM(8, stateful=True, batch_input_shape=(4, 8, 16)), nnspec.layers.Dense(3)]
    )
    x = nnspec.Input(batch_shape=(4, 8, 16), name="x")
    fn = nnspec.Model(x, nnspec.layers.Dense(3)(nnspec.layers.LSTM(8, stateful=True)(x)))
    for m in (seq, fn):
        assert m.output_shape == (4, 3)
        assert next(iter(m.get_config()["inputs"].values()))["batch_size"] == 4
    with pytest.raises(ValueError, match="not both"):
        nnspec.Input(shape=(3,), batch_shape=(4, 3))
    with pytest.raises(ValueError, match="positive integer"):
        nnspec.Input(shape=(3,), batch_size=0)


def test_a_keras_2_sequential_config_with_batch_input_shape_reads_its_batch():
    cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "LSTM", "config": {"name": "l", "units": 4, "stateful": True, "batch_input_shape": [2, 5, 3]}},
        {"class_name": "Dense", "config": {"name": "d", "units": 1}}]}}  # fmt: skip
    m = nnspec.Model.from_config(cfg)
    assert m.output_shape == (2, 1)
    assert [n for n, _ in m.plan().inputs][1:] == ["state:l:0", "state:l:1"]


def _keras_grads(layer_type, kwargs, weights, ids, states, target):
    """Keras's gradient of the mse of Embedding -> layer -> Flatten -> Dense on ``ids``, the
    layer given ``states`` and the padding mask explicitly: what a stateful layer computes on a
    batch after the first (Keras 3 on torch cannot differentiate its own stateful call)."""
    import torch

    emb = L.Embedding(20, 6)
    rnn = getattr(L, layer_type)(5, return_sequences=True, **kwargs)
    dense = L.Dense(1)
    emb.build((4, 7))
    rnn.build((4, 7, 6))
    dense.build((4, 35))
    layers = (emb, rnn, dense)
    k = 0
    for layer in layers:
        n = len(layer.weights)
        layer.set_weights(weights[k : k + n])
        k += n
    x = torch.tensor(ids)
    h = rnn(emb(x), mask=x != 0, initial_state=[torch.tensor(s) for s in states])
    y = dense(torch.reshape(h, (4, 35)))
    loss = torch.mean((y - torch.tensor(target)) ** 2)
    loss.backward()
    return [v.value.grad.numpy() for layer in layers for v in layer.weights]


@pytest.mark.parametrize("layer_type, kwargs", [("GRU", {}), ("LSTM", {"go_backwards": True}), ("SimpleRNN", {})],
                         ids=["gru", "lstm_backwards", "simple_rnn"])  # fmt: skip
def test_the_gradient_with_kept_states_and_padding_is_kerass(layer_type, kwargs):
    """The second batch's training step starts from kept (nonzero) states; rows padded at the
    start output zeros there, not the kept state (Keras repeats the previous output, and there
    is none), and no gradient flows through those zeros."""
    spec = {"format": "nnspec/1", "name": "padded",
            "inputs": {"ids": {"shape": [7], "dtype": "int32", "batch_size": 4}},
            "layers": {"emb": {"type": "Embedding", "input_dim": 20, "output_dim": 6, "mask_zero": True},
                       "rnn": {"type": layer_type, "units": 5, "return_sequences": True, "stateful": True, **kwargs},
                       "flat": {"type": "Flatten"}, "out": {"type": "Dense", "units": 1}}}  # fmt: skip
    m = nnspec.Model.from_config(spec)
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 20, size=(8, 7)).astype(np.int32)
    ids[5, :3] = 0  # padded at the start: with go_backwards, processed last
    ids[6, 4:] = 0  # padded at the end: with go_backwards, processed first
    ids[7, :] = 0  # nothing valid: every output zero, the states carried through
    target = rng.normal(size=(4, 1)).astype(np.float32)
    table = rng.uniform(-1, 1, size=(20, 6)).astype(
        np.float32
    )  # larger than Keras's init: states well above 0
    m.get_layer("emb").set_weights([table])
    m.predict(ids[:4], batch_size=4)  # the first batch leaves its final states
    kept = [m._kept_states[f"state:rnn:{k}"].copy() for k in range(2 if layer_type == "LSTM" else 1)]
    before = m.get_weights()
    m.compile(optimizer={"type": "sgd", "learning_rate": 1.0}, loss="mse")
    m.train_on_batch(ids[4:], target)
    got = [b - a for a, b in zip(m.get_weights(), before)]  # lr 1: the step is the gradient
    want = _keras_grads(layer_type, kwargs, before, ids[4:], kept, target)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-6)
    assert np.abs(kept[0]).max() > 0.2  # the kept states were not zeros


def test_reset_states_of_one_layer_leaves_the_others():
    m = nnspec.Model.from_config(yaml.safe_load(STACKED))
    x = _x((4, 8, 16))
    m.predict(x, batch_size=4)
    assert sorted(m._kept_states) == ["state:l1:0", "state:l1:1", "state:l2:0", "state:l2:1"]
    m.get_layer("l1").reset_state()
    assert sorted(m._kept_states) == ["state:l2:0", "state:l2:1"]
    with pytest.raises(AttributeError, match="Dense 'out' is not a recurrent layer"):
        m.get_layer("out").reset_states()
    m.reset_states()
    fresh = nnspec.Model.from_config(yaml.safe_load(STACKED))
    fresh.set_weights(m.get_weights())
    np.testing.assert_array_equal(m.predict(x, batch_size=4), fresh.predict(x, batch_size=4))
