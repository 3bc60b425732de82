"""Layers come in Keras's order (``model.layers``), whatever order a file writes them in.

Keras derives the order of ``model.layers`` (and so of ``get_weights()`` and of the summary's
rows) from the graph: deepest layers first, ties in the order a walk from the outputs reaches
them. nnspec follows it (graph.keras_order), so ``m.set_weights(keras_model.get_weights())``
puts every array on its layer. Checked on every seed and on random graphs whose file order and
Keras's creation order both differ from Keras's order.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # a test extra (pip install ".[test]"), after KERAS_BACKEND is set
from keras_from_spec import keras_model_from_spec, keras_summary_facts
from test_keras_import import _inputs

import nnspec

SPECS = Path(__file__).resolve().parent.parent / "specs"
SEEDS = sorted(p.stem for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("name", SEEDS)
def test_a_seeds_layers_weights_and_summary_rows_come_in_kerass_order(name):
    """Keras built from the file, layer by layer in the file's order: its ``model.layers`` are
    nnspec's, its ``get_weights()`` list fits ``set_weights`` and gives Keras's predictions.
    headline, shared_input_cnn, multi_input_cnn and shared_feature_lstm write their layers in
    another order than Keras's."""
    km = keras_model_from_spec(SPECS / f"{name}.yaml")
    m = nnspec.load(SPECS / f"{name}.yaml", seed=0)
    assert [x.name for x in m.layers] == [x.name for x in km.layers]
    assert [r["name"] for r in m.summary_dict()["layers"]] == [
        r[0] for r in keras_summary_facts(km)["layers"]
    ] or (
        m._typed.graph.sequential  # a Sequential summary has no input row in either
    )
    want = km.get_weights()
    assert [w.shape for w in m.get_weights()] == [w.shape for w in want]
    if name == "custom_layers":
        return  # its Keras twin's layers are written in Python (keras_from_spec), their math not comparable here
    m.set_weights(want)
    xs = _inputs(km)
    got, ref = m.predict(xs if len(xs) > 1 else xs[0]), km.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    for a, b in zip(got if isinstance(got, list) else [got], ref if isinstance(ref, list) else [ref]):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


def _random_graph(seed: int):
    """A random graph of Dense and Add calls over 1-3 inputs, some Dense layers called again;
    made in Keras in one random order, written to a model file in another. Returns the Keras
    model and the model file."""
    rng = random.Random(seed)
    L = keras.layers
    n_in = rng.randint(1, 3)
    tensors = {f"in{i}": keras.Input((4,), name=f"in{i}") for i in range(n_in)}
    nodes: dict[str, dict] = {}  # node -> its file entry and inputs
    layers: dict[str, object] = {}
    read: set[str] = set()
    for k in range(rng.randint(3, 12)):
        kind = rng.choice(["dense", "dense", "add", "shared"])
        if kind == "shared" and layers:
            owner = rng.choice(sorted(layers))
            src = rng.choice(sorted(tensors))
            j = 1
            while f"{owner}.{j}" in nodes:
                j += 1
            name = f"{owner}.{j}"
            tensors[name] = layers[owner](tensors[src])
            nodes[name] = {"entry": {"shares": owner}, "inputs": [src]}
        elif kind == "add" and len(tensors) >= 2:
            srcs = rng.sample(sorted(tensors), rng.randint(2, min(3, len(tensors))))
            name = f"add{k}"
            tensors[name] = L.Add(name=name)([tensors[s] for s in srcs])
            nodes[name] = {"entry": {"type": "Add"}, "inputs": srcs}
        else:
            src = rng.choice(sorted(tensors))
            name = f"d{k}"
            layers[name] = L.Dense(4, name=name)
            tensors[name] = layers[name](tensors[src])
            nodes[name] = {"entry": {"type": "Dense", "units": 4}, "inputs": [src]}
        read.update(nodes[name]["inputs"])
    sinks = [n for n in nodes if n not in read]
    extra = [n for n in nodes if n in read and rng.random() < 0.2]  # an inner node as an output too
    outs = sinks + extra
    rng.shuffle(outs)
    used = {s for n in nodes.values() for s in n["inputs"]}
    ins = [f"in{i}" for i in range(n_in) if f"in{i}" in used]  # Keras's inputs: the ones read
    km = keras.Model([tensors[i] for i in ins], [tensors[o] for o in outs])
    # the file: nodes in a random order, each sharing call after the call it shares
    order = list(nodes)
    rng.shuffle(order)
    owners_first = [n for n in order if "shares" not in nodes[n]["entry"]] + [
        n for n in order if "shares" in nodes[n]["entry"]
    ]
    spec = {
        "format": "nnspec/1",
        "name": f"random{seed}",
        "inputs": {i: {"shape": [4]} for i in ins},
        "layers": {n: nodes[n]["entry"] for n in owners_first},
        "edges": [", ".join(nodes[n]["inputs"]) + " -> " + n for n in owners_first],
        "outputs": outs,
    }
    return km, spec


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_list_their_layers_and_weights_in_kerass_order(seed):
    km, spec = _random_graph(seed)
    m = nnspec.Model.from_config(spec)
    assert [x.name for x in m.layers] == [x.name for x in km.layers]
    assert [r["name"] for r in m.summary_dict()["layers"]] == [x.name for x in km.layers]
    want = km.get_weights()
    m.set_weights(want)
    for a, b in zip(m.get_weights(), want):
        np.testing.assert_array_equal(a, b)
    xs = _inputs(km)
    got, ref = m.predict(xs if len(xs) > 1 else xs[0]), km.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    for a, b in zip(got if isinstance(got, list) else [got], ref if isinstance(ref, list) else [ref]):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


def _guide_model(lib):
    """The functional guide's multi-input, multi-output model, made as the guide makes it: the
    auxiliary output before the second input (``lib``: keras or nnspec)."""
    L = lib.layers
    main = lib.Input((100,), dtype="int32", name="main_input")
    lstm_out = L.LSTM(32, name="lstm")(L.Embedding(10000, 512, name="embedding")(main))
    aux_out = L.Dense(1, activation="sigmoid", name="aux_output")(lstm_out)
    aux_in = lib.Input((5,), name="aux_input")
    x = L.Concatenate(name="concatenate")([lstm_out, aux_in])
    for i in range(3):
        x = L.Dense(64, activation="relu", name=f"dense_{i}")(x)
    main_out = L.Dense(1, activation="sigmoid", name="main_output")(x)
    return lib.Model([main, aux_in], [main_out, aux_out])


def test_the_builder_gives_kerass_order_whatever_order_layers_are_made_in():
    km, m = _guide_model(keras), _guide_model(nnspec)
    assert [x.name for x in m.layers] == [x.name for x in km.layers]
    assert [x.name for x in m.layers][-2:] == ["main_output", "aux_output"]  # not the order they were made in
    assert [w.shape for w in m.get_weights()] == [w.shape for w in km.get_weights()]
