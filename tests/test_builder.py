"""The Keras-like Python API: building the seeds in Python gives the models their files describe,
and layers, models and Sequential behave as Keras's do.

Expected values come from the seed files (loaded independently of the builder), from Keras (the
``keras``-marked test), or are worked out by hand in comments.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnspec
from nnspec import Input, Model, Sequential, layers

SPECS = Path(__file__).resolve().parent.parent / "specs"


def load_seed(name: str) -> Model:
    return nnspec.load(SPECS / f"{name}.yaml")


def _base(ref: str) -> str:
    return ref.split("[", 1)[0]


def assert_same_model(built: Model, loaded: Model) -> None:
    """Same summary up to names: rows by position (type, output shape, params), the totals, the
    connections (names mapped by position), and the same plan up to names."""
    b, f = built.summary_dict(), loaded.summary_dict()
    for k in ("total_params", "trainable_params", "non_trainable_params"):
        assert b[k] == f[k], k
    assert len(b["layers"]) == len(f["layers"]), (
        [r["name"] for r in b["layers"]],
        [r["name"] for r in f["layers"]],
    )
    rename = {rb["name"]: rf["name"] for rb, rf in zip(b["layers"], f["layers"])}
    for rb, rf in zip(b["layers"], f["layers"]):
        where = f"{rb['name']} / {rf['name']}"
        assert rb["type"] == rf["type"], where
        assert rb["output_shape"] == rf["output_shape"], where
        assert rb["params"] == rf["params"], where
    # Connections, except for the input of a Sequential (its name is not a row of the summary).
    for rb, rf in zip(b["layers"], f["layers"]):
        mapped = [rename.get(_base(c), _base(c)) + c[len(_base(c)) :] for c in rb["connected_to"]]
        if loaded._typed.graph.sequential and rb is b["layers"][0]:
            continue
        assert mapped == rf["connected_to"], rb["name"]
    pb, pf = built.plan(), loaded.plan()

    def shape_of(p):
        vals = {v.id: v for v in p.values}
        steps = [(s.op, [vals[o].type_text() for o in s.outputs], len(s.params)) for s in p.steps]
        return steps, [prm.shape for prm in p.params], p.planned_bytes_per_sample

    assert shape_of(pb) == shape_of(pf)


# ----------------------------------------------------------------------------- seeds in Python


def test_mlp_functional_equals_file():
    x = Input(shape=(32,), name="x")
    h = layers.Dense(10, activation="relu")(x)
    h = layers.Dense(20, activation="relu")(h)
    h = layers.Dense(10, activation="relu")(h)
    y = layers.Dense(1, activation="sigmoid")(h)
    m = Model(inputs=x, outputs=y, name="mlp_py")
    assert m.count_params() == 771  # 32*10+10 + 10*20+20 + 20*10+10 + 10*1+1
    assert m.output_shape == (None, 1)
    assert_same_model(m, load_seed("mlp"))


def test_siamese_shared_lstm_equals_file():
    tweet_a = Input(shape=(140, 256))
    tweet_b = Input(shape=(140, 256))
    shared = layers.LSTM(64)
    encoded_a = shared(tweet_a)
    encoded_b = shared(tweet_b)
    merged = layers.concatenate([encoded_a, encoded_b], axis=-1)
    predictions = layers.Dense(1, activation="sigmoid")(merged)
    m = Model(inputs=[tweet_a, tweet_b], outputs=predictions)
    # One LSTM, counted once: 4*(64*(256+64)+64) + (128+1).
    assert m.count_params() == 4 * (64 * (256 + 64) + 64) + 129 == 82305
    assert len(shared.calls) == 2
    assert_same_model(m, load_seed("siamese_lstm"))


def test_headline_two_inputs_two_outputs_equals_file():
    main_input = Input(shape=(100,), dtype="int32", name="main_input")
    x = layers.Embedding(output_dim=512, input_dim=10000)(main_input)
    lstm_out = layers.LSTM(32)(x)
    auxiliary_output = layers.Dense(1, activation="sigmoid", name="aux_output")(lstm_out)
    auxiliary_input = Input(shape=(5,), name="aux_input")
    x = layers.concatenate([lstm_out, auxiliary_input])
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(64, activation="relu")(x)
    main_output = layers.Dense(1, activation="sigmoid", name="main_output")(x)
    m = Model(inputs=[main_input, auxiliary_input], outputs=[main_output, auxiliary_output])
    assert m.output_shape == [(None, 1), (None, 1)]
    assert m.input_shape == [(None, 100), (None, 5)]
    assert m.inputs[0].dtype == "int32"
    assert_same_model(m, load_seed("headline"))


def test_video_classifier_model_under_time_distributed_equals_file():
    frame = Input(shape=(784,))
    h = layers.Dense(64, activation="relu")(frame)
    h = layers.Dense(64, activation="relu")(h)
    probs = layers.Dense(10, activation="softmax")(h)
    frame_classifier = Model(inputs=frame, outputs=probs, name="frame_clf_py")
    video = Input(shape=(20, 784))
    per_frame = layers.TimeDistributed(frame_classifier)(video)
    m = Model(inputs=video, outputs=per_frame)
    assert m.output_shape == (None, 20, 10)
    # 784*64+64 + 64*64+64 + 64*10+10
    assert m.count_params() == 55050
    assert_same_model(m, load_seed("video_classifier"))
    cfg = m.get_config()
    assert list(cfg["models"]) == ["frame_clf_py"]


def _sequential_cnn_layers():
    return [
        layers.Conv2D(32, 5, strides=2, activation="relu"),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(3),
        layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(3),
        layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.GlobalMaxPooling2D(),
        layers.Dense(10),
    ]


def test_sequential_cnn_equals_file():
    m = Sequential([Input(shape=(250, 250, 3)), *_sequential_cnn_layers()])
    assert isinstance(m, Sequential)
    assert m.output_shape == (None, 10)
    assert_same_model(m, load_seed("sequential_cnn"))
    assert "edges" not in m.get_config()


def test_sequential_cnn_built_with_add_equals_file():
    m = Sequential()
    m.add(Input(shape=(250, 250, 3)))
    for layer in _sequential_cnn_layers():
        m.add(layer)
    assert_same_model(m, load_seed("sequential_cnn"))


# ----------------------------------------------------------------------------- shared layers


def test_layer_called_twice_is_one_layer_with_two_calls():
    a = Input(shape=(7, 3))
    b = Input(shape=(7, 3))
    lstm = layers.LSTM(5, return_sequences=True)
    ya, yb = lstm(a), lstm(b)
    assert lstm.get_input_shape_at(0) == (None, 7, 3)
    assert lstm.get_input_shape_at(1) == (None, 7, 3)
    assert lstm.get_output_shape_at(0) == lstm.get_output_shape_at(1) == (None, 7, 5)
    assert lstm.input_shape == (None, 7, 3)  # same for every call: a single answer
    assert lstm.get_input_at(1) is b and lstm.get_output_at(0) is ya
    m = Model(inputs=[a, b], outputs=layers.add([ya, yb]))
    rows = {r["name"]: r for r in m.summary_dict()["layers"]}
    assert rows[lstm.name]["params"] == 4 * (5 * (3 + 5) + 5)
    assert m.count_params() == 4 * (5 * (3 + 5) + 5)
    assert rows[lstm.name]["connected_to"] == [f"{a.name}[0][0]", f"{b.name}[0][0]"]
    with pytest.raises(ValueError, match="node 2"):
        lstm.get_input_shape_at(2)


def test_input_shape_raises_when_calls_differ():
    lstm = layers.LSTM(4, return_sequences=True)
    lstm(Input(shape=(5, 3)))
    lstm(Input(shape=(9, 3)))  # same weights (the feature size is 3), another length
    assert lstm.get_input_shape_at(0) == (None, 5, 3)
    assert lstm.get_input_shape_at(1) == (None, 9, 3)
    assert lstm.get_output_shape_at(1) == (None, 9, 4)
    with pytest.raises(AttributeError, match="get_input_shape_at"):
        lstm.input_shape  # noqa: B018
    with pytest.raises(AttributeError, match="get_output_shape_at"):
        lstm.output_shape  # noqa: B018


SHARED_TWO_LENGTHS = """
format: nnspec/1
name: shared_two_lengths
inputs: {a: {shape: [5, 3]}, b: {shape: [9, 3]}}
layers:
  l: {type: LSTM, units: 4, return_sequences: true}
  l2: {shares: l}
  ga: {type: GlobalAveragePooling1D}
  gb: {type: GlobalAveragePooling1D}
  c: {type: Concatenate}
edges: [a -> l -> ga, b -> l2 -> gb, "ga, gb -> c"]
outputs: [c]
"""


@pytest.mark.keras
def test_shared_layer_summary_row_matches_keras():
    """A layer called on two lengths is one summary row; Keras prints its *last* call's output
    shape there, (None, 9, 4) here."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from keras_from_spec import keras_model_from_spec, keras_summary_facts

    facts = keras_summary_facts(keras_model_from_spec(SHARED_TWO_LENGTHS))
    rows = {r["name"]: r for r in nnspec.load(SHARED_TWO_LENGTHS).summary_dict()["layers"]}
    for name, _cls, shape, params in facts["layers"]:
        assert rows[name]["output_shape"] == list(shape), name
        assert rows[name]["params"] == params, name


def test_shared_layer_refuses_inputs_needing_other_weights():
    d = layers.Dense(3)
    d(Input(shape=(10,)))
    with pytest.raises(ValueError, match=r"has weights \[\(10, 3\), \(3,\)\] from its first call"):
        d(Input(shape=(12,)))


def test_layer_never_called_has_no_shape():
    d = layers.Dense(3)
    with pytest.raises(AttributeError, match="never been called"):
        d.input_shape  # noqa: B018
    with pytest.raises(ValueError, match="not built"):
        d.count_params()


def test_model_called_on_tensors_is_nested_and_counted_once():
    x = Input(shape=(16,))
    encoder = Model(x, layers.Dense(8, activation="relu")(x), name="encoder_py")
    a, b = Input(shape=(16,)), Input(shape=(16,))
    ea, eb = encoder(a), encoder(b)
    assert ea.shape == eb.shape == (None, 8)
    out = layers.Dense(1)(layers.concatenate([ea, eb]))
    m = Model([a, b], out)
    d = m.summary_dict()
    # 16*8+8 once (shared), then 16*1+1.
    assert d["total_params"] == 136 + 17
    row = next(r for r in d["layers"] if r["name"] == "encoder_py")
    assert row["type"] == "Functional"
    assert row["params"] == 136
    assert row["connected_to"] == [f"{a.name}[0][0]", f"{b.name}[0][0]"]
    assert m.get_layer("encoder_py") is encoder
    # The file form: one sub-model, two calls of it.
    cfg = m.get_config()
    assert list(cfg["models"]) == ["encoder_py"]
    calls = [k for k, v in cfg["layers"].items() if v.get("model") == "encoder_py" or "shares" in v]
    assert len(calls) == 2
    back = Model.from_config(cfg)
    assert back.summary_dict()["total_params"] == 153


def test_model_called_on_wrong_shape_is_refused():
    x = Input(shape=(16,))
    encoder = Model(x, layers.Dense(8)(x))
    with pytest.raises(ValueError, match="expects shape"):
        encoder(Input(shape=(15,)))


# ----------------------------------------------------------------------------- Sequential


def test_sequential_add_pop_and_summary_while_building(capsys):
    m = Sequential(name="growing")
    m.summary()  # Keras prints an empty table
    m.add(Input(shape=(8,)))
    m.summary()  # an input but no layer yet: still empty
    empty = capsys.readouterr().out.split("\n")
    assert empty[2].startswith("┃ Layer (type)") and empty[4].startswith("└") and "Total params: 0 " in empty[5]
    m.add(layers.Dense(4))
    m.summary()
    assert "Total params: 36" in capsys.readouterr().out  # 8*4+4
    m.add(layers.Dense(2))
    assert m.count_params() == 36 + 10
    assert m.output_shape == (None, 2)
    popped = m.pop()
    assert popped.type == "Dense" and popped.get_config()["units"] == 2
    assert m.count_params() == 36
    assert m.output_shape == (None, 4)
    assert [la.type for la in m.layers] == ["Dense"]
    m.add(layers.Dense(3))
    assert m.output_shape == (None, 3)
    assert m.count_params() == 36 + 15
    m.pop()
    m.pop()
    with pytest.raises(ValueError):
        m.pop()


def test_sequential_config_before_input_is_a_clear_error():
    """A model file needs the input's shape: before it is known, get_config says how to give it
    (the summary prints unbuilt rows, as Keras's: test_eager_calls.py)."""
    m = Sequential([layers.Dense(4), layers.Dense(1)])
    with pytest.raises(ValueError, match=r"not built yet.*Input.*build\(\(None, \.\.\.\)\), or call it on data"):
        m.get_config()
    assert [la.type for la in m.layers] == ["Dense", "Dense"]


def test_input_shape_on_first_layer():
    m = Sequential([layers.Dense(4, input_shape=(8,), activation="relu"), layers.Dense(1)])
    assert m.input_shape == (None, 8)
    assert m.output_shape == (None, 1)
    assert m.count_params() == (8 * 4 + 4) + (4 + 1)
    m2 = Sequential([layers.LSTM(3, input_shape=(None, 5))])
    assert m2.output_shape == (None, 3)
    m3 = Sequential([layers.Dense(2, input_dim=6)])  # Keras 2's input_dim= shorthand
    assert m3.input_shape == (None, 6)


def test_sequential_refuses_multi_output_layer():
    with pytest.raises(ValueError):
        Sequential([Input(shape=(4, 3)), layers.LSTM(2, return_state=True)])


def test_loaded_sequential_supports_add_and_pop():
    """A Sequential read from a file (no edges) is a Sequential: add and pop work on it, as on
    a Keras Sequential rebuilt from its config."""
    m = load_seed("sequential_cnn")
    assert isinstance(m, Sequential)
    popped = m.pop()
    assert popped.name == "output"
    assert m.output_shape == (None, 32)  # the GlobalMaxPooling2D before it
    assert m.count_params() == 49002 - (32 * 10 + 10)
    m.add(layers.Dense(5))
    assert m.output_shape == (None, 5)
    assert m.count_params() == 49002 - 330 + (32 * 5 + 5)


def test_sequential_from_config_supports_add():
    s = Sequential([Input(shape=(4,)), layers.Dense(3)])
    c = Model.from_config(s.get_config())
    c.add(layers.Dense(2))
    assert c.output_shape == (None, 2)
    assert c.count_params() == (4 * 3 + 3) + (3 * 2 + 2)


# ----------------------------------------------------------------------------- frozen layers


def test_frozen_layers_count_as_non_trainable():
    """``trainable=False`` freezes a layer's weights, as in Keras: they count as non-trainable."""
    x = Input(shape=(5,))
    y = layers.Dense(3, trainable=False)(x)  # 5*3+3 = 18 frozen
    y = layers.BatchNormalization()(y)  # gamma, beta trainable (6); moving mean/var not (6)
    m = Model(x, y)
    d = m.summary_dict()
    assert d["total_params"] == 30
    assert (d["trainable_params"], d["non_trainable_params"]) == (6, 24)
    frozen = {p.name for p in m.plan().params if not p.trainable}
    assert {n.split("/", 1)[1] for n in frozen} == {"kernel", "bias", "moving_mean", "moving_variance"}


FROZEN_FILE = """
format: nnspec/1
name: frozen
inputs: {x: {shape: [5]}}
layers:
  d: {type: Dense, units: 3, trainable: false}
  bn: {type: BatchNormalization}
  r: {type: Reshape, target_shape: [3, 1]}
  l: {type: LSTM, units: 2, trainable: false}
  td: {type: TimeDistributed, layer: {type: Dense, units: 4, trainable: false}}
  out: {type: Dense, units: 1}
edges: [x -> d -> bn -> r -> l, r -> td, td -> out]
outputs: [l, out]
"""


@pytest.mark.keras
def test_frozen_layers_match_keras(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from keras_from_spec import keras_model_from_spec, keras_summary_facts

    facts = keras_summary_facts(keras_model_from_spec(FROZEN_FILE))
    d = nnspec.load(FROZEN_FILE).summary_dict()
    assert d["total_params"] == facts["total"]
    assert (d["trainable_params"], d["non_trainable_params"]) == (facts["trainable"], facts["non_trainable"])


# ----------------------------------------------------------------------------- introspection


def test_feature_extraction_from_loaded_cnn():
    m = load_seed("cnn")
    fe = Model(inputs=m.inputs, outputs=[m.get_layer("conv2").output])
    # 64 -conv5-> 60 -pool2-> 30 -conv3-> 28; 5*5*3*16+16 + 3*3*16*32+32
    assert fe.output_shape == (None, 28, 28, 32)
    assert fe.count_params() == 1216 + 4640
    assert [r["name"] for r in fe.summary_dict()["layers"]] == ["image", "conv1", "pool1", "conv2"]
    # The loaded model is unchanged, and its layers are shared with the extractor.
    assert m.count_params() == 610570
    assert fe.get_layer("conv1") is m.get_layer("conv1")


def test_get_layer_by_name_and_index():
    m = load_seed("cnn")
    assert m.get_layer(name="conv2").name == "conv2"
    assert m.get_layer("conv2").type == "Conv2D"
    assert m.get_layer(index=0).name == "image"  # a functional model lists its input first
    assert m.get_layer(index=1).name == "conv1"
    assert m.get_layer(index=-1).name == "output"
    with pytest.raises(ValueError, match="did you mean 'conv2'"):
        m.get_layer("conv_2")
    with pytest.raises(ValueError, match="out of range"):
        m.get_layer(index=99)
    with pytest.raises(ValueError):
        m.get_layer()
    seq = load_seed("sequential_cnn")
    assert seq.get_layer(index=0).name == "conv1"  # a Sequential lists no input layer


# Keras 3's defaults, written out from its constructor signatures.
def test_layer_get_config_has_keras_defaults():
    cfg = layers.Dense(3, name="d_cfg").get_config()
    assert cfg == {
        "name": "d_cfg",
        "units": 3,
        "activation": "linear",
        "use_bias": True,
        "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros",
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
        "trainable": True,
        "dtype": "float32",
    }
    conv = layers.Conv2D(8, 3).get_config()
    assert conv["kernel_size"] == [3, 3]
    assert conv["strides"] == [1, 1] and conv["dilation_rate"] == [1, 1]
    assert conv["padding"] == "valid" and conv["data_format"] == "channels_last" and conv["groups"] == 1
    lstm = layers.LSTM(4).get_config()
    assert lstm["recurrent_initializer"] == "orthogonal" and lstm["unit_forget_bias"] is True
    assert lstm["return_sequences"] is False and lstm["recurrent_activation"] == "sigmoid"
    assert layers.GRU(4).get_config()["reset_after"] is True
    bn = layers.BatchNormalization().get_config()
    assert (bn["axis"], bn["momentum"], bn["epsilon"]) == (-1, 0.99, 0.001)
    assert layers.Embedding(10, 3).get_config()["mask_zero"] is False


def _keras_value(v):
    """A Keras config value in nnspec's spelling: tuples as lists, objects by snake_case name."""
    from nnspec.layerdefs.base import snake_case

    if isinstance(v, tuple):
        return [_keras_value(e) for e in v]
    if isinstance(v, dict) and "class_name" in v:
        if v["class_name"] == "DTypePolicy":
            return v["config"]["name"]
        return snake_case(v["class_name"])
    return v


_ALIASES = {"uniform": "random_uniform", "normal": "random_normal"}

KERAS_CONFIG_CASES = [
    ("Dense", {"units": 3}),
    ("Conv1D", {"filters": 4, "kernel_size": 3}),
    ("Conv2D", {"filters": 4, "kernel_size": 3}),
    ("LSTM", {"units": 4}),
    ("GRU", {"units": 4}),
    ("SimpleRNN", {"units": 4}),
    ("Embedding", {"input_dim": 10, "output_dim": 3}),
    ("BatchNormalization", {}),
    ("LayerNormalization", {}),
    ("Dropout", {"rate": 0.5}),
    ("Concatenate", {}),
    ("Flatten", {}),
    ("GlobalAveragePooling1D", {}),
]


@pytest.mark.keras
@pytest.mark.parametrize("type_name, args", KERAS_CONFIG_CASES, ids=[c[0] for c in KERAS_CONFIG_CASES])
def test_layer_get_config_matches_keras(type_name, args):
    import keras

    ours = getattr(layers, type_name)(**args).get_config()
    theirs = getattr(keras.layers, type_name)(**args).get_config()
    common = (set(ours) & set(theirs)) - {"name"}
    assert set(args) <= common
    for k in sorted(common):
        mine = ours[k]
        mine = _ALIASES.get(mine, mine) if isinstance(mine, str) else mine
        assert mine == _keras_value(theirs[k]), f"{type_name}.{k}: nnspec {ours[k]!r}, Keras {theirs[k]!r}"


def test_wrong_constructor_arguments():
    with pytest.raises(TypeError, match="did you mean 'units'"):
        layers.Dense(unit=3)
    with pytest.raises(ValueError, match="units"):
        layers.Dense(units=-1)
    with pytest.raises(ValueError, match="units"):
        layers.Dense(0)
    with pytest.raises(TypeError, match="missing required"):
        layers.Dense()
    with pytest.raises(TypeError, match="positional"):
        layers.Dense(3, "relu")  # Keras takes only units positionally
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        layers.Dense(3, activation="rleu")
    with pytest.raises(TypeError):
        layers.Dense(3, units=4)  # units twice
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="invalid layer name"):
        layers.Dense(3, name="has space")
    with pytest.raises(AttributeError):
        layers.Dense2  # noqa: B018


def test_merge_helpers():
    a, b = Input(shape=(4,)), Input(shape=(6,))
    cat = layers.concatenate([a, b])
    assert cat.shape == (None, 10)
    assert cat._call.layer.type == "Concatenate"
    c, d = Input(shape=(3, 5)), Input(shape=(3, 5))
    s = layers.add([c, d])
    assert s.shape == (None, 3, 5)
    assert s._call.layer.type == "Add"
    along_time = layers.concatenate([c, d], axis=1)
    assert along_time.shape == (None, 6, 5)
    with pytest.raises(ValueError):
        layers.add([a, b])  # (4,) + (6,): Add needs equal shapes
    with pytest.raises(ValueError):
        layers.concatenate([a, c])  # ranks differ
    m = Model([a, b, c, d], [cat, s, along_time])
    assert m.count_params() == 0
    assert [r["type"] for r in m.summary_dict()["layers"]][4:] == ["Concatenate", "Add", "Concatenate"]


def test_calling_a_layer_on_tensors_and_arrays_at_once_is_refused():
    """Symbolic tensors build a graph, arrays compute at once (test_eager_calls.py); not both."""
    with pytest.raises(TypeError, match="ndarray among symbolic tensors"):
        layers.Add()([Input(shape=(2,)), np.ones((1, 2), np.float32)])


# ----------------------------------------------------------------------------- files from Python


def _headline_like():
    main_input = Input(shape=(12,), dtype="int32", name="words")
    x = layers.Embedding(100, 8, mask_zero=True)(main_input)
    shared = layers.LSTM(6, return_sequences=True)
    seq = shared(x)
    summary = layers.GlobalAveragePooling1D()(seq)
    aux_in = Input(shape=(3,), name="extra")
    merged = layers.concatenate([summary, aux_in])
    out = layers.Dense(1, activation="sigmoid")(layers.Dropout(0.2)(merged))
    td = layers.TimeDistributed(layers.Dense(2))(seq)
    return Model(inputs=[main_input, aux_in], outputs=[out, td], name="py_built")


def test_to_json_of_built_model_is_a_valid_model_file(tmp_path):
    from nnspec.cli.main import cli
    from nnspec.compiler import analyze
    from nnspec.specs.load import load_file

    m = _headline_like()
    path = tmp_path / "py_built.json"
    path.write_text(m.to_json())
    typed = analyze(load_file(str(path)))
    assert typed.graph.warnings == []
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    again = nnspec.load(path)
    assert again.summary_dict() == m.summary_dict()
    assert again.plan().to_json() == m.plan().to_json()
    # YAML too.
    ypath = tmp_path / "py_built.yaml"
    ypath.write_text(m.to_yaml())
    assert CliRunner().invoke(cli, ["validate", str(ypath)]).exit_code == 0
    assert nnspec.load(ypath).summary_dict() == m.summary_dict()


def test_to_json_of_built_models_with_submodels_and_sharing_is_valid(tmp_path):
    from nnspec.cli.main import cli

    x = Input(shape=(16,))
    encoder = Model(x, layers.Dense(8)(x), name="enc_file")
    a, b = Input(shape=(16,)), Input(shape=(16,))
    d = layers.Dense(4)
    m = Model([a, b], layers.add([d(encoder(a)), d(encoder(b))]), name="twice")
    path = tmp_path / "twice.json"
    path.write_text(m.to_json())
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert nnspec.load(path).count_params() == (16 * 8 + 8) + (8 * 4 + 4)


def test_built_model_names_follow_keras():
    # Keras's automatic names: snake_case of the class, then _1, _2... for later ones.
    names = [layers.Conv2D(1, 1).name for _ in range(3)]
    assert re.fullmatch(r"conv2d(_\d+)?", names[0])
    assert len(set(names)) == 3
    assert layers.GlobalMaxPooling2D().name.startswith("global_max_pooling2d")
    assert layers.SimpleRNN(2).name.startswith("simple_rnn")
    assert json.loads(_headline_like().to_json())["name"] == "py_built"


def test_sequential_add_and_pop_after_the_model_has_run():
    """Keras's transfer idiom on a Sequential model: run or train it, pop the head, add a new
    one. The kept layers keep their weights, the new one computes, and training goes on (the
    model used to keep its old weight table and plans: a KeyError, or the old outputs)."""
    m = Sequential([Input(shape=(4,)), layers.Dense(3, name="body"), layers.Dense(2, name="head")])
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    m.compile(optimizer="sgd", loss="mse")
    m.fit(x, np.zeros((6, 2), np.float32), epochs=2, verbose=0)
    body = m.get_layer("body").get_weights()
    m.pop()
    np.testing.assert_allclose(m.predict(x), x @ body[0] + body[1], rtol=1e-5, atol=1e-6)
    m.add(layers.Dense(5, name="new_head"))
    assert m.predict(x).shape == (6, 5)
    for a, b in zip(m.get_layer("body").get_weights(), body):
        np.testing.assert_array_equal(a, b)
    m.compile(optimizer="sgd", loss="mse")
    history = m.fit(x, np.zeros((6, 5), np.float32), epochs=2, verbose=0).history
    assert history["loss"][1] < history["loss"][0]


def test_clone_model_makes_new_layers_and_weights():
    """``nnspec.models.clone_model``, as Keras's: the same architecture and layer names, new
    layer objects and freshly drawn weights; training the clone leaves the original alone."""
    m = nnspec.load(Path(__file__).resolve().parent.parent / "specs" / "mlp.yaml", seed=0)
    clone = nnspec.models.clone_model(m)
    assert clone.get_config() == m.get_config()
    assert [la.name for la in clone.layers] == [la.name for la in m.layers]
    assert all(a is not b for a, b in zip(clone.layers, m.layers))
    assert not np.allclose(clone.get_weights()[0], m.get_weights()[0])
    before = m.get_weights()
    x = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
    clone.compile(optimizer="sgd", loss="mse")
    clone.fit(x, np.zeros((8, 1), np.float32), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), before))
    unbuilt = nnspec.models.clone_model(Sequential([layers.Dense(2, name="a")]))
    assert isinstance(unbuilt, Sequential) and not unbuilt.built and unbuilt.layers[0].name == "a"
    with pytest.raises(TypeError, match="clone_function"):
        nnspec.models.clone_model(m, clone_function=lambda layer: layer)
