"""Keras model configs read into nnspec (api/keras_config.py): ``nnspec.model_from_json(
keras_model.to_json())``, ``Model.from_config(keras_model.get_config())`` and ``nnspec import``.

- Every layer case of the gradient suites, made in Keras and serialized by Keras, reads back to a
  layer with the same weights (names, shapes, initial values from one seed) and the same output
  (the NumPy reference on the same inputs and weights).
- Every seed, built in Keras from its file and written by Keras's ``to_json``, reads back to a
  model with Keras's parameter count and Keras's predictions given Keras's weights.
- Models written directly in Keras: Sequential with and without an Input, a shared layer, a
  model called as a layer and under TimeDistributed, masks (Keras records their ops as nodes),
  call arguments; a Keras 2 config.
- What nnspec cannot read is one clear error naming the layer: Lambda, custom classes, custom
  objects, unknown arguments, explicit masks, initial states on a layer that has none, unbuilt
  Sequential models.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # a test extra (pip install ".[test]"), after KERAS_BACKEND is set
from grad_harness import close

import nnspec
from nnspec.api.keras_config import _Reader
from nnspec.api.layer import _strip, layer_from_spec
from nnspec.compiler.normalize import minimal_layer, minimal_spec, normalize_layer
from nnspec.layerdefs import REGISTRY
from nnspec.layerdefs.base import TensorType, normalize_attrs
from nnspec.runtime.initializers import initialize
from nnspec.specs.errors import KerasConfigError

SPECS = Path(__file__).resolve().parent.parent / "specs"
SEEDS = sorted(p.stem for p in SPECS.glob("*.yaml"))


# ----------------------------------------------------------------------------- layer by layer


def _layer_cases():
    from test_registry_contract import _gradient_cases

    return [c for c in _gradient_cases() if getattr(c, "keras", None) is None and c.type != "CustomLayer"]


def _in_types(c) -> list:
    if not hasattr(c, "shapes"):  # test_backward_recurrent's cases: a group of input shapes
        from test_backward_recurrent import FEATURES, GROUPS

        shape, _, masked, _ = GROUPS[c.group]
        return [TensorType((None, *shape, FEATURES) if masked else (None, *shape), "float32")]
    if c.ids:
        return [TensorType((None, *s), "int32") for s in c.shapes]
    if c.masked:
        return [TensorType((None, *s, c.dim), "float32") for s in c.shapes]
    return [TensorType((None, *s), "float32") for s in c.shapes]


def _facts(layer, in_types, seed: int):
    """(weight names and shapes, initial weights from ``seed``, reference output) of an nnspec
    layer object on inputs of ``in_types``."""
    specs = layer._param_specs(in_types)
    rng = np.random.default_rng(seed)
    initial = [initialize(p.initializer, p.shape, np.random.default_rng(seed + i)) for i, p in enumerate(specs)]
    weights = [rng.normal(size=p.shape).astype(np.float32) * 0.5 for p in specs]
    if layer.type in ("BatchNormalization",):  # a variance must be positive
        weights = [np.abs(w) + 0.5 for w in weights]
    inputs = []
    for t in in_types:
        shape = (2, *t.shape[1:])
        if t.dtype == "int32":
            inputs.append(rng.integers(0, 3, size=shape).astype(np.int32))
        else:
            inputs.append(rng.uniform(-1, 1, size=shape).astype(np.float32))
    defn = REGISTRY[layer.type]
    out = defn.reference(normalize_attrs(defn, _strip(layer.layer_spec())), inputs, weights, None)
    return [(p.name, p.shape, p.trainable) for p in specs], initial, out


@pytest.mark.parametrize("case", _layer_cases(), ids=lambda c: c.id)
def test_a_keras_layer_config_reads_back_to_the_same_layer(case):
    from keras_ref import call_attrs, keras_layer

    klayer = keras_layer(case.type, case.attrs)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(klayer)))
    _, call_kwargs = call_attrs(case.type, case.attrs)  # Keras keeps them in the call, not the layer
    imported = _Reader().layer(serialized, case.id, kwargs_of=[call_kwargs])
    assert imported.type == case.type
    original = layer_from_spec({"type": case.type, **case.attrs})
    in_types = _in_types(case)
    # the same weights and output as the layer Keras was made from, for the imported layer and
    # for what `nnspec import` writes of it (arguments at their defaults left out)
    written = layer_from_spec(minimal_layer(normalize_layer(imported.layer_spec())))
    want = _facts(original, in_types, 7)
    for layer in (imported, written):
        got = _facts(layer, in_types, 7)
        assert got[0] == want[0]
        for a, b in zip(got[1], want[1]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(got[2], want[2]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", SEEDS)
def test_the_minimal_file_is_the_same_model(name):
    """``nnspec import`` writes only what differs from the defaults; read back, it is the same model."""
    m = nnspec.load(SPECS / f"{name}.yaml")
    small = minimal_spec(m.get_config())
    assert nnspec.Model.from_config(small).get_config() == m.get_config()
    assert "use_bias" not in json.dumps(small["layers"])  # no seed sets it; defaults are left out


# ----------------------------------------------------------------------------- the seeds


def _keras_seed(name: str):
    from keras_from_spec import keras_model_from_spec

    return keras_model_from_spec(SPECS / f"{name}.yaml")


def _inputs(model, n: int = 3, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (n, *t.shape[1:])
        if str(t.dtype).startswith("int"):
            out.append(rng.integers(0, 50, size=shape).astype(np.int32))
        else:
            out.append(rng.uniform(-1, 1, size=shape).astype(np.float32))
    return out


@pytest.mark.parametrize("name", [s for s in SEEDS if s != "custom_layers"])
def test_a_seed_written_by_keras_reads_back_with_kerass_numbers(name):
    km = _keras_seed(name)
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params()
    assert [i.shape[1:] for i in m.inputs] == [tuple(t.shape[1:]) for t in km.inputs]
    m.set_weights(km.get_weights())
    xs = _inputs(km)
    want = km.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    got = m.predict(xs if len(xs) > 1 else xs[0])
    for a, b in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
    # the same file as the seed's, up to the names Keras gives what the file leaves unnamed
    assert m.get_config()["outputs"] == nnspec.load(SPECS / f"{name}.yaml").get_config()["outputs"]


def test_from_config_takes_a_keras_models_get_config():
    km = _keras_seed("headline")
    m = nnspec.Model.from_config(km.get_config())
    assert m.count_params() == km.count_params()
    # Keras lists every input first only in nnspec; the weighted layers come in Keras's order
    assert [x.name for x in m.layers if x.type != "InputLayer"] == [
        x.name for x in km.layers if type(x).__name__ != "InputLayer"
    ]
    m.set_weights(km.get_weights())
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_custom_layer_seed_is_refused_with_the_class_name():
    with pytest.raises(KerasConfigError, match="layer class 'CustomDense'.*custom_layers"):
        nnspec.model_from_json(_keras_seed("custom_layers").to_json())


# ----------------------------------------------------------------------------- written in Keras


def _roundtrip(km, x=None):
    """Read ``km``'s JSON; same parameter counts (trainable too) and, given Keras's weights,
    Keras's predictions (outputs given as a dict come in Keras's order, by key)."""
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params()
    assert len(m.trainable_weights) == len(km.trainable_weights)
    m.set_weights(km.get_weights())
    if x is None:
        xs = _inputs(km)
        x = xs if len(xs) > 1 else xs[0]
    want, got = km.predict(x, verbose=0), m.predict(x)
    if isinstance(want, dict):  # a dict of outputs comes back as one, keyed as in Keras
        assert isinstance(got, dict) and list(got) == list(want)
        want, got = list(want.values()), list(got.values())
    got, want = (got if isinstance(got, list) else [got]), (want if isinstance(want, list) else [want])
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
    return m


def test_sequential_with_and_without_an_input():
    L = keras.layers
    a = keras.Sequential([keras.Input((8,)), L.Dense(5, activation="relu"), L.Dropout(0.5), L.Dense(2)])
    m = _roundtrip(a)
    assert isinstance(m, nnspec.Sequential) and "edges" not in m.get_config()
    b = keras.Sequential([L.Dense(4, activation="tanh", kernel_regularizer=keras.regularizers.L2(0.01)), L.Dense(1)])
    b.build((None, 6))
    m = _roundtrip(b)
    first = next(iter(m.get_config()["layers"].values()))
    assert first["kernel_regularizer"] == {"type": "l2", "l2": 0.01}


def test_an_unbuilt_sequential_model_is_read_unbuilt_and_built_by_data():
    """A Keras Sequential model saved before it knew its input shape reads as an unbuilt one,
    which the first data builds, as Keras's does (test_eager_calls.py)."""
    km = keras.Sequential([keras.layers.Dense(3, activation="relu", name="a"), keras.layers.Dense(2, name="b")])
    m = nnspec.model_from_json(km.to_json())
    assert isinstance(m, nnspec.Sequential) and m.weights == [] and [la.name for la in m.layers] == ["a", "b"]
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    y = m(x)
    km(x)
    km.set_weights(m.get_weights())
    np.testing.assert_allclose(y, keras.ops.convert_to_numpy(km(x)), rtol=1e-5, atol=1e-6)
    # compiled (a .keras archive's compile_config) and frozen, still unbuilt: both kept for the build
    kc = keras.Sequential([keras.layers.Dense(3, name="c")], trainable=False)
    kc.compile(optimizer="sgd", loss="mse")
    m = nnspec.Model.from_config({"class_name": "Sequential", "config": kc.get_config(),
                                  "compile_config": kc.get_compile_config()})  # fmt: skip
    assert not m.built and not m.trainable
    m.compile()  # the training section, before the build
    m.fit(x, np.zeros((5, 3), np.float32), verbose=0)
    assert m.get_config()["training"]["loss"] == "mse"
    assert (len(m.trainable_weights), len(m.non_trainable_weights)) == (0, 2)


def test_shared_layers_nested_models_and_time_distributed():
    L = keras.layers
    # a shared LSTM over two inputs
    a, b = keras.Input((5, 4), name="a"), keras.Input((5, 4), name="b")
    shared = L.LSTM(6, name="shared")
    merged = L.Concatenate()([shared(a), shared(b)])
    km = keras.Model([a, b], L.Dense(1, activation="sigmoid")(merged))
    m = _roundtrip(km)
    layers = m.get_config()["layers"]
    assert sum(1 for v in layers.values() if v.get("shares") == "shared") == 1
    # a model called as a layer, and under TimeDistributed
    img = keras.Input((6, 6, 2))
    feat = L.GlobalAveragePooling2D()(L.Conv2D(3, 3, activation="relu")(img))
    vision = keras.Model(img, feat, name="vision")
    frames = keras.Input((4, 6, 6, 2))
    per_frame = L.TimeDistributed(vision)(frames)
    single = keras.Input((6, 6, 2))
    out = L.Concatenate()([L.LSTM(3)(per_frame), vision(single)])
    m = _roundtrip(keras.Model([frames, single], L.Dense(2)(out)))
    assert "vision" in m.get_config()["models"]


def test_a_frozen_base_model_stays_frozen():
    """Keras's transfer-learning idiom: a base model with ``trainable = False`` inside a new one."""
    L = keras.layers
    img = keras.Input((6,))
    base = keras.Model(img, L.Dense(4, activation="relu")(L.Dense(5)(img)), name="base")
    base.trainable = False
    x = keras.Input((6,))
    km = keras.Model(x, L.Dense(1)(base(x)))
    m = _roundtrip(km)
    assert len(km.trainable_weights) == 2 and len(m.trainable_weights) == 2


def test_masks_keras_records_as_ops_are_derived_along_the_graph():
    """Keras 3 writes the masks' ``not_equal``/``logical_or`` as nodes and passes them as ``mask``
    arguments; nnspec derives the same masks, so predictions with padded ids are Keras's."""
    L = keras.layers
    ids = keras.Input((7,), dtype="int32")
    e = L.Embedding(20, 4, mask_zero=True)(ids)
    h = L.Add()([L.Dense(4)(e), e])
    out = L.Dense(2)(L.GlobalAveragePooling1D()(L.LSTM(3, return_sequences=True)(h)))
    km = keras.Model(ids, out)
    assert any(layer["class_name"] == "NotEqual" for layer in json.loads(km.to_json())["config"]["layers"])
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    x = np.array([[3, 4, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7]], np.int32)
    np.testing.assert_allclose(m.predict(x), np.asarray(km.predict(x, verbose=0)), rtol=1e-4, atol=1e-6)


def test_inputs_and_outputs_given_as_dicts_come_in_kerass_order():
    """The functional guide's ticket classifier: three inputs, outputs as a dict."""
    L = keras.layers
    title = keras.Input(shape=(None,), name="title", dtype="int32")
    body = keras.Input(shape=(None,), name="body", dtype="int32")
    tags = keras.Input(shape=(12,), name="tags")
    x = L.concatenate([L.LSTM(8)(L.Embedding(100, 6)(title)), L.LSTM(4)(L.Embedding(100, 6)(body)), tags])
    km = keras.Model({"title": title, "body": body, "tags": tags},
                     {"priority": L.Dense(1, name="priority")(x), "department": L.Dense(4, name="department")(x)})
    rng = np.random.default_rng(1)
    x = {"title": rng.integers(0, 100, (3, 7)).astype(np.int32), "body": rng.integers(0, 100, (3, 9)).astype(np.int32),
         "tags": rng.uniform(size=(3, 12)).astype(np.float32)}  # fmt: skip
    m = _roundtrip(km, x)
    assert m.get_config()["outputs"] == {"department": "department", "priority": "priority"}


def test_masks_frozen_layers_batch_norm_and_a_given_backward_layer():
    L = keras.layers
    ids = keras.Input((6,), dtype="int32")
    e = L.Embedding(30, 8, mask_zero=True)(ids)
    backward = L.GRU(4, return_sequences=True, go_backwards=True, reset_after=False)
    bi = L.Bidirectional(L.LSTM(4, return_sequences=True), backward_layer=backward)(e)
    d = L.Dense(5, trainable=False)(L.Attention()([bi, bi]))
    out = L.Dense(2, activation="softmax")(L.GlobalMaxPooling1D()(L.BatchNormalization()(d)))
    km = keras.Model(ids, out)
    m = _roundtrip(km, np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], np.int32))
    (bi_spec,) = [v for v in m.get_config()["layers"].values() if v["type"] == "Bidirectional"]
    assert bi_spec["backward_layer"]["type"] == "GRU" and bi_spec["backward_layer"]["reset_after"] is False


def test_call_arguments_become_attributes():
    L = keras.layers
    x = keras.Input((5, 4))
    att = L.MultiHeadAttention(num_heads=2, key_dim=3)(x, x, use_causal_mask=True)
    km = keras.Model(x, att)
    m = _roundtrip(km)
    (mha,) = [v for v in m.get_config()["layers"].values() if v["type"] == "MultiHeadAttention"]
    assert mha["use_causal_mask"] is True
    # inputs given by name, in any order: query, value, key as nnspec's inputs
    q, v, k = keras.Input((4, 3)), keras.Input((5, 3)), keras.Input((5, 2))
    _roundtrip(keras.Model([q, v, k], L.MultiHeadAttention(num_heads=2, key_dim=2)(key=k, value=v, query=q)))


def test_a_keras_2_config_is_read():
    """tf.keras 2 wrote inbound nodes as nested lists and initializers without a module."""
    config = {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": [
                {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
                 "config": {"batch_input_shape": [None, 4], "dtype": "float32", "sparse": False, "name": "x"}},
                {"class_name": "Dense", "name": "d", "inbound_nodes": [[["x", 0, 0, {}]]],
                 "config": {"name": "d", "trainable": True, "dtype": "float32", "units": 3, "activation": "relu",
                            "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform",
                                                                     "config": {"seed": None}},
                            "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
                            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint":
                                {"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}},
                            "bias_constraint": None}},
                {"class_name": "LeakyReLU", "name": "act", "inbound_nodes": [[["d", 0, 0, {}]]],
                 "config": {"name": "act", "alpha": 0.1}},
                {"class_name": "Dense", "name": "out", "inbound_nodes": [[["act", 0, 0, {}]]],
                 "config": {"name": "out", "units": 1, "activation": "sigmoid"}},
            ],
            "input_layers": [["x", 0, 0]],
            "output_layers": [["out", 0, 0]],
        },
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }  # fmt: skip
    m = nnspec.model_from_json(json.dumps(config))
    spec = m.get_config()
    assert spec["layers"]["d"]["units"] == 3
    assert spec["layers"]["d"]["kernel_constraint"] == {"type": "max_norm", "max_value": 2, "axis": 0}
    assert spec["layers"]["act"]["negative_slope"] == 0.1  # Keras 2's alpha
    assert m.count_params() == 4 * 3 + 3 + 3 + 1
    # a Keras 2 Sequential model: the first layer carries the input shape
    seq = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "config": {"name": "a", "units": 2, "batch_input_shape": [None, 5],
                                           "dtype": "float32"}},
        {"class_name": "Dense", "config": {"name": "b", "units": 1}}]}}  # fmt: skip
    m = nnspec.model_from_json(json.dumps(seq))
    assert m.inputs[0].shape == (None, 5) and m.count_params() == 5 * 2 + 2 + 3


# ----------------------------------------------------------------------------- refusals


def _functional(layer_entry: dict, kwargs: dict | None = None) -> str:
    node = {"args": [{"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "dtype": "float32",
                                                                    "keras_history": ["x", 0, 0]}}],
            "kwargs": kwargs or {}}  # fmt: skip
    return json.dumps({"class_name": "Functional", "config": {
        "name": "m",
        "layers": [{"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
                    "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "x"}},
                   {**layer_entry, "name": "f", "inbound_nodes": [node]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["f", 0, 0]]}})  # fmt: skip


@pytest.mark.parametrize(
    "entry, kwargs, message",
    [
        ({"class_name": "Lambda", "config": {"name": "f", "function": "..."}}, None, "layer 'f': Lambda layers hold"),
        ({"class_name": "MyLayer", "registered_name": "Custom>MyLayer", "config": {"name": "f"}}, None,
         "layer class 'MyLayer'.*custom"),
        ({"class_name": "Dens", "config": {"units": 2}}, None, "did you mean 'Dense'"),
        ({"class_name": "Dense", "config": {"units": 2, "unit": 3}}, None, "Dense argument 'unit' = 3"),
        ({"class_name": "Dense", "config": {"units": 2, "kernel_initializer": {"module": "mine", "class_name":
                                                                               "MyInit", "config": {}}}}, None,
         "argument 'kernel_initializer': 'MyInit'"),
        ({"class_name": "Dense", "config": {"units": 2, "lora_rank": 4}}, None, "'lora_rank' = 4"),
        ({"class_name": "Dense", "config": {"units": 2}}, {"initial_state": [{"class_name": "__keras_tensor__",
                                                                                "config": {"keras_history":
                                                                                           ["x", 0, 0]}}]},
         r"'initial_state' is read for the recurrent layers only \(SimpleRNN, LSTM, GRU, ConvLSTM1D/2D/3D, RNN, "
         r"Bidirectional\), not for Dense"),
        ({"class_name": "Dense", "config": {"units": 2}}, {"mask": {"class_name": "__keras_tensor__",
                                                                      "config": {"keras_history": ["x", 0, 0]}}},
         "given a mask made by 'x'"),
        ({"class_name": "Dense", "config": {"units": -2}}, None, "layer 'f'.*units"),
    ],
    ids=["lambda", "custom-class", "typo-class", "unknown-argument", "custom-initializer", "lora", "initial-state",
         "explicit-mask", "bad-value"],
)
def test_what_nnspec_cannot_read_is_one_clear_error(entry, kwargs, message):
    with pytest.raises(KerasConfigError, match=message):
        nnspec.model_from_json(_functional(entry, kwargs))


# ----------------------------------------------------------------------------- the CLI


def test_nnspec_import_writes_a_model_file_from_json_and_from_a_keras_archive(tmp_path):
    from click.testing import CliRunner

    from nnspec.cli.main import cli as main

    km = _keras_seed("shared_feature_lstm")
    (tmp_path / "m.json").write_text(km.to_json())
    km.save(tmp_path / "m.keras")
    runner = CliRunner()
    for src in ("m.json", "m.keras"):
        out = tmp_path / f"{src}.yaml"
        r = runner.invoke(main, ["import", str(tmp_path / src), "-o", str(out)])
        assert r.exit_code == 0, r.output
        m = nnspec.load(out)
        assert m.count_params() == km.count_params()
        assert m.get_config() == nnspec.model_from_json(km.to_json()).get_config()
    r = runner.invoke(main, ["import", str(tmp_path / "m.json")])  # to stdout
    assert r.exit_code == 0 and r.output.startswith("format: nnspec/1")
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    r = runner.invoke(main, ["import", str(tmp_path / "bad.keras")])
    assert r.exit_code != 0 and "config.json" in r.output and "Traceback" not in r.output


def test_validating_a_keras_config_points_at_nnspec_import(tmp_path):
    from click.testing import CliRunner

    from nnspec.cli.main import cli

    path = tmp_path / "keras.json"
    path.write_text(_keras_seed("mlp").to_json())
    r = CliRunner().invoke(cli, ["validate", str(path)])
    assert r.exit_code == 1
    assert "E010" in r.output and f"nnspec import {path} -o model.yaml" in r.output
    r = CliRunner().invoke(cli, ["import", str(SPECS / "mlp.yaml")])
    assert r.exit_code != 0 and "not JSON" in r.output and "model.to_json()" in r.output
    (tmp_path / "mlp.json").write_text(nnspec.load(SPECS / "mlp.yaml").to_json())
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "mlp.json")])
    assert r.exit_code != 0 and "not a Keras model config" in r.output


def test_a_keras_archive_brings_its_training_setup(tmp_path):
    """A ``.keras`` archive holds ``compile_config``: it becomes the ``training`` section, and
    ``compile()`` with no arguments then trains one step as Keras does."""
    keras.utils.set_random_seed(0)  # the same weights every run
    L = keras.layers
    x = keras.Input((6,), name="x")
    h = L.Dense(8, activation="relu", name="h")(x)
    km = keras.Model(x, [L.Dense(3, activation="softmax", name="out")(h), L.Dense(1, name="aux")(h)])
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01, clipnorm=1.0),
               loss={"out": keras.losses.CategoricalCrossentropy(label_smoothing=0.1), "aux": "mse"},
               loss_weights={"out": 1.0, "aux": 0.2}, metrics={"out": ["accuracy"], "aux": [keras.metrics.MeanAbsoluteError()]})  # fmt: skip
    km.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config = json.loads(z.read("config.json"))
    m = nnspec.Model.from_config(config)
    training = m.get_config()["training"]
    assert training["optimizer"] == {"type": "adam", "learning_rate": 0.01, "clipnorm": 1.0, "beta_1": 0.9,
                                     "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}  # fmt: skip
    assert training["loss"] == {"out": {"type": "categorical_crossentropy", "from_logits": False,
                                        "label_smoothing": 0.1, "axis": -1}, "aux": "mse"}  # fmt: skip
    assert training["loss_weights"] == {"out": 1.0, "aux": 0.2}
    assert training["metrics"] == {"out": ["accuracy"], "aux": ["mean_absolute_error"]}
    m.set_weights(km.get_weights())
    m.compile()
    rng = np.random.default_rng(3)
    xb = rng.normal(size=(5, 6)).astype(np.float32)
    yb = [np.eye(3, dtype=np.float32)[rng.integers(0, 3, 5)], rng.normal(size=(5, 1)).astype(np.float32)]
    want = km.train_on_batch(xb, {"out": yb[0], "aux": yb[1]})
    got = m.train_on_batch(xb, {"out": yb[0], "aux": yb[1]})
    np.testing.assert_allclose(np.ravel(got)[0], np.ravel(want)[0], rtol=1e-5)
    # Within 1e-4 of each array's scale, as test_training_seeds.py: Adam's first step is
    # lr * g / (|g| + 1e-7), so where a kernel entry's gradient cancels (summed over 5 samples)
    # to ~1e-6, float32 summation order moves its update by a share of lr = 0.01 (seen in CI once
    # with Keras's unseeded weights: 3.6e-5 on an entry of 0.0156, in a kernel of scale 0.6).
    for a, b in zip(m.get_weights(), km.get_weights()):
        close(a, b, 1e-4, "weights after the step")


def test_losses_keyed_by_kerass_output_keys_follow_the_outputs(tmp_path):
    """A model whose outputs dict keys differ from the output layers' names: Keras keys losses
    by the dict keys, and so does nnspec, whose file keeps the keys."""
    L = keras.layers
    x = keras.Input((4,))
    km = keras.Model(x, {"score": L.Dense(1, name="score_head")(x), "label": L.Dense(2, name="label_head")(x)})
    km.compile(optimizer="sgd", loss={"score": "mse", "label": "categorical_crossentropy"},
               loss_weights={"score": 0.5, "label": 1.0})  # fmt: skip
    km.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        m = nnspec.Model.from_config(json.loads(z.read("config.json")))
    training = m.get_config()["training"]
    assert m.get_config()["outputs"] == {"label": "label_head", "score": "score_head"}  # Keras's order: by key
    assert training["loss"] == {"score": "mse", "label": "categorical_crossentropy"}
    assert training["loss_weights"] == {"score": 0.5, "label": 1.0}
    m.compile()  # the names resolve


def test_metrics_with_arguments_and_weighted_metrics_train_as_in_keras(tmp_path):
    """Metric objects with arguments (and a name of their own) and ``weighted_metrics`` become
    ``{type: name, ...}`` entries of the training section, which a model file holds; ``fit``
    then logs what Keras logs, with the same values."""
    keras.utils.clear_session()  # metric objects get Keras's default names (auc, not auc_3)
    keras.utils.set_random_seed(0)  # the same weights every run
    L = keras.layers
    x = keras.Input((4,))
    km = keras.Model(x, L.Dense(3, activation="softmax")(L.Dense(5, activation="relu")(x)))
    km.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy",
               metrics=[keras.metrics.AUC(num_thresholds=50), keras.metrics.TopKCategoricalAccuracy(k=2, name="top2"),
                        "accuracy"],
               weighted_metrics=["accuracy", keras.metrics.CategoricalCrossentropy(label_smoothing=0.1)])  # fmt: skip
    m = nnspec.model_from_json(km.to_json())
    training = m.get_config()["training"]
    assert training["metrics"] == [{"type": "auc", "num_thresholds": 50},
                                   {"type": "top_k_categorical_accuracy", "k": 2, "name": "top2"}, "accuracy"]  # fmt: skip
    assert training["weighted_metrics"] == ["accuracy", {"type": "categorical_crossentropy", "label_smoothing": 0.1}]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(m.get_config(), sort_keys=False))
    m = nnspec.load(tmp_path / "m.yaml")  # the file holds them
    m.set_weights(km.get_weights())
    m.compile()
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(20, 4)).astype(np.float32)
    ys = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 20)]
    sw = rng.uniform(0.2, 2, 20).astype(np.float32)
    want = km.fit(xs, ys, sample_weight=sw, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    got = m.fit(xs, ys, sample_weight=sw, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    assert sorted(got) == sorted(want) == ["accuracy", "auc", "categorical_crossentropy", "loss", "top2",
                                           "weighted_accuracy"]  # fmt: skip
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)


def test_keras_metric_catalog_imports_and_trains_as_in_keras(tmp_path):
    """Keras 3's other metrics (F-scores, IoU, counts, rate-at-rate, correlations, R2) read from a
    compile config, kept in a model file, and logged by ``fit`` as Keras logs them: a metric with
    one value per class is an array in the History, as in Keras's; ``mode="auto"`` callbacks
    know which way each improves. (The counts, TruePositives and kin, are left out here: in Keras
    3.15 their ``result()`` is the count variable itself, which the validation pass then resets
    and refills, so Keras logs the validation counts as the training ones too.)"""
    keras.utils.clear_session()  # metric objects get Keras's default names (auc, not auc_3)
    L = keras.layers
    M = keras.metrics
    x = keras.Input((4,))
    km = keras.Model(x, L.Dense(3, activation="softmax")(L.Dense(5, activation="relu")(x)))
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
               metrics=[M.F1Score(), M.FBetaScore(average="macro", beta=2.0, threshold=0.4),
                        M.OneHotMeanIoU(num_classes=3), M.PrecisionAtRecall(0.5, num_thresholds=50),
                        M.RootMeanSquaredError(), M.R2Score(),
                        M.PearsonCorrelation(), M.LogCoshError(), "cosine_similarity"],
               weighted_metrics=[M.ConcordanceCorrelation()])  # fmt: skip
    m = nnspec.model_from_json(km.to_json())
    training = m.get_config()["training"]
    assert training["metrics"][:3] == ["f1_score", {"type": "f_beta_score", "average": "macro", "beta": 2.0,
                                                    "threshold": 0.4, "name": "fbeta_score"},
                                       {"type": "one_hot_mean_io_u", "num_classes": 3, "sparse_y_pred": False}]  # fmt: skip
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(m.get_config(), sort_keys=False))
    m = nnspec.load(tmp_path / "m.yaml")
    m.set_weights(km.get_weights())
    m.compile()
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(30, 4)).astype(np.float32)
    ys = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 30)]
    sw = rng.uniform(0.2, 2, 30).astype(np.float32)
    fit = {"sample_weight": sw, "batch_size": 8, "epochs": 2, "shuffle": False, "verbose": 0, "validation_split": 0.2}
    want = km.fit(xs, ys, **fit).history
    es = nnspec.callbacks.EarlyStopping(monitor="val_one_hot_mean_io_u", patience=5)
    got = m.fit(xs, ys, callbacks=[es], **fit).history
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), rtol=1e-5, atol=1e-6, err_msg=key)
    assert np.shape(got["f1_score"]) == (2, 3)  # one value per class, each epoch
    assert es.monitor_op is np.greater
    rmse = nnspec.callbacks.EarlyStopping(monitor="val_root_mean_squared_error")
    m.fit(xs, ys, callbacks=[rmse], **{**fit, "epochs": 1})
    assert rmse.monitor_op is np.less


@pytest.mark.parametrize("metrics", [["accuracy", "mae"], [["accuracy"], ["mae", "mse"]], ["mae", None], {"b": ["mae"]}],
                         ids=["one-each", "lists", "none", "dict"])  # fmt: skip
def test_metrics_of_several_outputs_are_read_as_keras_3_reads_them(metrics):
    """For a model with two outputs Keras 3 takes a list of two entries as one entry per output
    (``["accuracy", "mae"]``: accuracy of the first output, mae of the second), not as metrics
    of every output; an entry may be a list or None."""
    L = keras.layers
    x = keras.Input((4,))
    km = keras.Model(x, [L.Dense(2, activation="softmax", name="a")(x), L.Dense(1, name="b")(x)])
    km.compile(optimizer="sgd", loss=["categorical_crossentropy", "mse"], metrics=metrics, weighted_metrics=metrics)
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    m.compile()
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(8, 4)).astype(np.float32)
    ys = [np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)], rng.normal(size=(8, 1)).astype(np.float32)]
    sw = rng.uniform(size=8).astype(np.float32)
    want = km.evaluate(xs, ys, sample_weight=sw, verbose=0, return_dict=True)
    got = m.evaluate(xs, ys, sample_weight=sw, verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    m.compile(optimizer="sgd", loss=["categorical_crossentropy", "mse"], metrics=metrics)  # from Python too
    assert sorted(m.evaluate(xs, ys, verbose=0, return_dict=True)) == sorted(k for k in want if "weighted" not in k)


def test_training_setups_a_file_cannot_hold_are_refused():
    from nnspec.api.keras_config import training_from_compile_config

    auc = {"module": "keras.metrics", "class_name": "AUC", "config": {"name": "auc", "thresholds_x": 50}}
    with pytest.raises(KerasConfigError, match="metric AUC argument 'thresholds_x' has no nnspec equivalent"):
        training_from_compile_config({"optimizer": "adam", "loss": "mse", "metrics": [auc]})
    custom = {"module": "my_losses", "class_name": "FocalLoss", "config": {}}
    with pytest.raises(KerasConfigError, match="'FocalLoss' is custom code"):
        training_from_compile_config({"optimizer": "adam", "loss": custom})
    custom = {"module": "my_metrics", "class_name": "F2", "config": {}}
    with pytest.raises(KerasConfigError, match="'F2' is custom code"):
        training_from_compile_config({"optimizer": "adam", "loss": "mse", "metrics": [custom]})
    assert training_from_compile_config({"optimizer": "rmsprop", "loss": "mse", "metrics": [
        {"module": "keras.metrics", "class_name": "AUC", "config": {"name": "auc", "num_thresholds": 200}}]}) == {
        "optimizer": "rmsprop", "loss": "mse", "metrics": ["auc"]}  # fmt: skip


def test_a_layer_class_reads_a_keras_layers_get_config():
    from nnspec import layers

    k = keras.layers.Dense(4, activation="relu", kernel_regularizer=keras.regularizers.L2(0.1),
                           kernel_initializer=keras.initializers.RandomNormal(stddev=0.2), name="fc")  # fmt: skip
    cfg = layers.Dense.from_config(k.get_config()).get_config()
    assert (cfg["name"], cfg["units"], cfg["activation"]) == ("fc", 4, "relu")
    assert cfg["kernel_regularizer"] == {"type": "l2", "l2": 0.1}
    assert cfg["kernel_initializer"] == {"type": "random_normal", "stddev": 0.2}
    bi = layers.Bidirectional.from_config(keras.layers.Bidirectional(keras.layers.GRU(3)).get_config())
    assert bi.get_config()["layer"]["type"] == "GRU" and bi.get_config()["backward_layer"] is None
    with pytest.raises(KerasConfigError, match="Dense argument 'lora_rank' = 2"):
        layers.Dense.from_config({**k.get_config(), "lora_rank": 2})


def _transfer_learning_model(lib):
    """The transfer-learning guide's shape, small: a base model with BatchNormalization (and a
    Dropout of rate 0, whose draws could not match) called with ``training=False``, a head."""
    L = lib.layers
    base = lib.Sequential([lib.Input((6,)), L.Dense(8, name="b_d"), L.BatchNormalization(name="b_bn"),
                           L.Dropout(0.0, name="b_drop"), L.Dense(5, activation="relu", name="b_d2")], name="base")  # fmt: skip
    inp = lib.Input((6,), name="img")
    x = base(inp, training=False)
    x = L.BatchNormalization(name="top_bn")(x, training=False)
    out = L.Dense(3, activation="softmax", name="head")(x)
    return lib.Model(inp, out, name="tl"), base


def test_the_transfer_learning_guide_trains_as_in_keras():
    """``base_model(x, training=False)`` is taken (from Python and from Keras JSON) and, as in
    Keras 3, has no effect: fit calls the model with training=True, which overrides a node's
    own (keras-team/keras#20285). What does put BatchNormalization in inference mode is freezing:
    with the base frozen (the guide's first phase) its moving statistics stay and only the head
    trains; unfrozen (fine-tuning) it uses the batch's. Both phases match Keras's losses and weights."""
    keras.utils.set_random_seed(0)
    theirs, kbase = _transfer_learning_model(keras)
    ours, base = _transfer_learning_model(nnspec)
    imported = nnspec.model_from_json(theirs.to_json())
    rng = np.random.default_rng(4)
    weights = [w + rng.normal(0, 0.2, w.shape).astype(np.float32) for w in ours.get_weights()]
    weights = [np.abs(w) + 0.5 if "variance" in p.name else w for w, p in zip(weights, ours.plan().params)]
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    for phase in ("frozen", "fine-tuning"):
        kbase.trainable = phase == "fine-tuning"
        models = [ours, imported]
        base.trainable = phase == "fine-tuning"
        imported.get_layer("base").trainable = phase == "fine-tuning"
        for m in (theirs, *models):
            m.set_weights(weights)
            m.compile(optimizer="sgd" if m is theirs else nnspec.optimizers.SGD(), loss="categorical_crossentropy")
        want = float(theirs.train_on_batch(x, y))
        after = [keras.ops.convert_to_numpy(w) for w in theirs.get_weights()]
        for m in models:
            assert abs(m.train_on_batch(x, y) - want) <= 1e-5 * want, phase
            for p, a, b in zip(m.plan().params, m.get_weights(), after):
                close(a, b, 1e-5, f"{phase}: {p.name}")
        moved = [not np.array_equal(a, w) for a, w in zip(after, weights)]
        assert any(moved[:6]) == (phase == "fine-tuning") and all(moved[-2:])  # the base trains only unfrozen


def _nested(lib, functional_outer: bool):
    L = lib.layers
    inner = lib.Sequential([lib.Input((4,)), L.Dense(3, name="i1"), L.Dense(2, name="i2")], name="inner")
    xi = lib.Input((2,), name="xi")
    deep = lib.Model(xi, L.Dense(2, name="d1")(xi), name="deep")
    xm = lib.Input((4,), name="xm")
    mid = lib.Model(xm, deep(inner(xm)), name="mid")
    x = lib.Input((4,), name="x")
    if not functional_outer:
        return lib.Model(x, L.Dense(1, name="head")(mid(x)), name="outer")
    z = lib.Input((4,), name="z")
    return lib.Model([x, z], L.Dense(1, name="head")(L.concatenate([mid(x), mid(z)], name="cat")), name="outer")


@pytest.mark.parametrize("functional_outer", [False, True], ids=["chain", "two-inputs"])
def test_summary_expand_nested_is_kerass(functional_outer):
    """``summary(expand_nested=True)``: a nested model's row is followed by its layers' (its
    inputs too, for a functional one), indented per level, with "-" for their connections. The
    chain prints exactly as Keras; the two-input table is wider than the 80 columns Keras's
    console wraps at, so there the rows' cells are compared."""
    texts = []
    for lib in (keras, nnspec):
        lines = []
        _nested(lib, functional_outer).summary(expand_nested=True, print_fn=lambda s, **_: lines.append(s))
        texts.append("\n".join(lines).strip())
    if not functional_outer:
        assert texts[1] == texts[0]
        return

    def cells(text):  # each row's cells, a wrapped row's lines joined
        rows, cur = [], None
        for line in text.splitlines():
            if line.startswith("│"):
                parts = [c.strip() for c in line.strip("│").split("│")]
                cur = parts if cur is None else [f"{a} {b}".strip() for a, b in zip(cur, parts)]
            elif cur is not None:
                rows.append(cur)
                cur = None
        return rows

    assert cells(texts[1]) == cells(texts[0]) and len(cells(texts[0])) == 12
