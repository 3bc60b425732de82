"""The reference converter from model files to Keras, checked against hand-computed arithmetic.

Every expected parameter count is worked out here from the layers' formulas, not read from Keras:
Dense ``in*out + out``; LSTM ``4*(units*(in + units) + units)``; Conv2D ``kh*kw*cin*cout + cout``;
Embedding ``input_dim*output_dim``; BatchNormalization ``4*c`` (half of it not trainable).
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keras_from_spec import keras_model_from_spec, keras_summary_facts

pytestmark = pytest.mark.keras


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def lstm(n_in: int, units: int) -> int:
    return 4 * (units * (n_in + units) + units)


def conv2d(kh: int, kw: int, c_in: int, c_out: int) -> int:
    return kh * kw * c_in * c_out + c_out


MLP = """
format: nnspec/1
name: mlp
description: Binary classifier over 32 features.
inputs:
  x: {shape: [32]}
layers:
  hidden1: {type: Dense, units: 10, activation: relu}
  hidden2: {type: Dense, units: 20, activation: relu}
  hidden3: {type: Dense, units: 10, activation: relu}
  output:  {type: Dense, units: 1, activation: sigmoid}
edges:
  - x -> hidden1 -> hidden2 -> hidden3 -> output
outputs: [output]
training:
  optimizer: {type: rmsprop, learning_rate: 0.001}
  loss: binary_crossentropy
"""

MLP_COUNT = dense(32, 10) + dense(10, 20) + dense(20, 10) + dense(10, 1)


def test_mlp_functional():
    model = keras_model_from_spec(MLP)
    assert model.name == "mlp"
    assert model.count_params() == MLP_COUNT == 771
    facts = keras_summary_facts(model)
    assert facts["total"] == facts["trainable"] == MLP_COUNT and facts["non_trainable"] == 0
    assert facts["layers"] == [
        ("x", "InputLayer", (None, 32), 0),
        ("hidden1", "Dense", (None, 10), dense(32, 10)),
        ("hidden2", "Dense", (None, 20), dense(10, 20)),
        ("hidden3", "Dense", (None, 10), dense(20, 10)),
        ("output", "Dense", (None, 1), dense(10, 1)),
    ]
    assert tuple(model.output.shape) == (None, 1)


def test_mlp_without_edges_is_sequential(tmp_path):
    text = MLP.split("edges:")[0]
    path = tmp_path / "mlp.yaml"
    path.write_text(text)
    for source in (text, path, str(path)):
        model = keras_model_from_spec(source)
        assert type(model).__name__ == "Sequential"
        assert model.count_params() == MLP_COUNT
        assert [layer.name for layer in model.layers] == ["hidden1", "hidden2", "hidden3", "output"]


def test_json_text():
    text = (
        '{"inputs": {"x": {"shape": [4]}}, "layers": {"d": {"type": "Dense", "units": 3}},'
        ' "edges": ["x -> d"], "outputs": ["d"]}'
    )
    assert keras_model_from_spec(text).count_params() == dense(4, 3)


SIAMESE = """
name: tweets
inputs:
  tweet_a: {shape: [280, 256]}
  tweet_b: {shape: [280, 256]}
layers:
  encode_a: {type: LSTM, units: 64}
  encode_b: {shares: encode_a}
  merged:   {type: Concatenate, axis: -1}
  predict:  {type: Dense, units: 1, activation: sigmoid}
edges:
  - tweet_a -> encode_a
  - tweet_b -> encode_b
  - encode_a, encode_b -> merged -> predict
outputs: [predict]
"""


def test_shared_lstm_over_two_inputs():
    model = keras_model_from_spec(SIAMESE)
    expected = lstm(256, 64) + dense(2 * 64, 1)
    assert model.count_params() == expected == 82305
    encoder = model.get_layer("encode_a")
    assert len(encoder._inbound_nodes) == 2  # one layer object, called twice
    assert [type(layer).__name__ for layer in model.layers].count("LSTM") == 1
    assert tuple(model.get_layer("merged").output.shape) == (None, 128)
    assert [tuple(i.shape) for i in model.inputs] == [(None, 280, 256)] * 2


HEADLINE = """
format: nnspec/1
name: headline
inputs:
  main_input: {shape: [100], dtype: int32}
  aux_input:  {shape: [5]}
layers:
  embed:       {type: Embedding, input_dim: 1000, output_dim: 16}
  lstm_out:    {type: LSTM, units: 8, return_state: true}
  aux_output:  {type: Dense, units: 1, activation: sigmoid}
  merged:      {type: Concatenate}
  d1:          {type: Dense, units: 12, activation: relu, kernel_regularizer: {type: l1_l2, l1: 0.01}}
  main_output: {type: Dense, units: 1, activation: sigmoid, kernel_initializer: {type: constant, value: 0.5}}
edges:
  - main_input -> embed -> lstm_out -> aux_output
  - lstm_out:2, aux_input -> merged -> d1 -> main_output
outputs: [main_output, aux_output]
"""


def test_two_outputs_and_ports():
    model = keras_model_from_spec(HEADLINE)
    expected = 1000 * 16 + lstm(16, 8) + dense(8, 1) + dense(8 + 5, 12) + dense(12, 1)
    assert model.count_params() == expected
    assert isinstance(model.outputs, list) and len(model.outputs) == 2
    assert [tuple(o.shape) for o in model.outputs] == [(None, 1), (None, 1)]
    assert model.inputs[0].dtype == "int32"
    # lstm_out:2 is the cell state, (None, 8), joined with the 5 aux features
    assert tuple(model.get_layer("merged").output.shape) == (None, 13)
    facts = keras_summary_facts(model)
    assert ("lstm_out", "LSTM", [(None, 8), (None, 8), (None, 8)], lstm(16, 8)) in facts["layers"]
    # {type: ...} values became Keras objects
    d1 = model.get_layer("d1")
    assert type(d1.kernel_regularizer).__name__ == "L1L2" and d1.kernel_regularizer.l1 == pytest.approx(0.01)
    import keras

    kernel = model.get_layer("main_output").kernel
    assert tuple(kernel.shape) == (12, 1) and bool(keras.ops.all(keras.ops.equal(kernel, 0.5)))


VISION = """\
inputs:
  image: {shape: [16, 16, 3]}
layers:
  conv: {type: Conv2D, filters: 8, kernel_size: 3, activation: relu}
  norm: {type: BatchNormalization}
  pool: {type: GlobalAveragePooling2D}
  embed: {type: Dense, units: 6}
edges:
  - image -> conv -> norm -> pool -> embed
outputs: [embed]
"""

VIDEO_BODY = """\
inputs:
  frames: {shape: [null, 16, 16, 3]}
  still: {shape: [16, 16, 3]}
layers:
  per_frame: {type: TimeDistributed, layer: {type: Model, model: vision}}
  summary:   {type: LSTM, units: 4}
  still_vec: {type: Model, model: vision}
  joined:    {type: Concatenate}
  out:       {type: Dense, units: 2, activation: softmax}
edges:
  - frames -> per_frame -> summary
  - still -> still_vec
  - summary, still_vec -> joined -> out
outputs: [out]
"""

VIDEO = "name: video\nmodels:\n  vision:\n" + textwrap.indent(VISION, "    ") + VIDEO_BODY

VISION_TRAINABLE = conv2d(3, 3, 3, 8) + 2 * 8 + dense(8, 6)
VISION_NON_TRAINABLE = 2 * 8  # moving mean and variance


def test_sub_model_under_time_distributed():
    model = keras_model_from_spec(VIDEO)
    expected_trainable = VISION_TRAINABLE + lstm(6, 4) + dense(4 + 6, 2)
    assert model.count_params() == expected_trainable + VISION_NON_TRAINABLE
    facts = keras_summary_facts(model)
    assert facts["trainable"] == expected_trainable
    assert facts["non_trainable"] == VISION_NON_TRAINABLE
    # one vision model object: inside TimeDistributed and called directly
    vision = model.get_layer("per_frame").layer
    assert vision.name == "vision" and model.get_layer("vision") is vision
    assert tuple(model.get_layer("per_frame").output.shape) == (None, None, 6)
    rows = {r[0]: r for r in facts["layers"]}
    assert rows["per_frame"][1:] == (
        "TimeDistributed",
        (None, None, 6),
        VISION_TRAINABLE + VISION_NON_TRAINABLE,
    )
    assert rows["vision"][1:] == ("Functional", (None, 6), VISION_TRAINABLE + VISION_NON_TRAINABLE)


def test_sub_model_from_file(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "vision.yaml").write_text(VISION)
    path = tmp_path / "video.yaml"
    path.write_text("name: video\nmodels:\n  vision: {file: parts/vision.yaml}\n" + VIDEO_BODY)
    model = keras_model_from_spec(path)
    assert model.count_params() == VISION_TRAINABLE + VISION_NON_TRAINABLE + lstm(6, 4) + dense(10, 2)
    assert model.get_layer("per_frame").layer is model.get_layer("vision")


def test_sequential_sub_model_called_twice():
    text = """
models:
  tower:
    inputs: {v: {shape: [5]}}
    layers:
      a: {type: Dense, units: 3}
      b: {type: Dense, units: 2}
inputs:
  left: {shape: [5]}
  right: {shape: [5]}
layers:
  t_left:  {type: Model, model: tower}
  t_right: {type: Model, model: tower}
  diff:    {type: Subtract}
edges:
  - left -> t_left
  - right -> t_right
  - t_left, t_right -> diff
outputs: [diff]
"""
    model = keras_model_from_spec(text)
    assert model.count_params() == dense(5, 3) + dense(3, 2)
    assert type(model.get_layer("tower")).__name__ == "Sequential"


def test_does_not_import_nnspec():
    tree = ast.parse((Path(__file__).parent / "keras_from_spec.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(not a.name.startswith("nnspec") for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("nnspec")
