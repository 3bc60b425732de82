"""Custom layers in model files and in Python: summaries, predictions and training steps against
Keras (a Keras subclassed layer running the same ``call`` over ``keras.ops``), wrappers, the
model file's round trip, Python subclasses traced into declarations, and the errors a bad
declaration gets. The expression kernels and their gradients are checked per case in
test_custom_layers.py."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.specs.errors import SpecError


# ----------------------------------------------------------------------------- model files

MODEL = """
format: nnspec/1
name: custom_model
custom_layers:
  CustomDense:
    arguments: {units: 32}
    weights:
      w: {shape: "(input_shape[-1], self.units)", initializer: random_normal}
      b: {shape: [units], initializer: zeros}
    call: ops.matmul(inputs, self.w) + self.b
  Scale:
    weights:
      s: {shape: [1], initializer: ones}
    call: inputs * s
inputs:
  x: {shape: [6, 4]}
layers:
  proj: {type: CustomDense, units: 8}
  act: {type: Activation, activation: relu}
  scale: {type: Scale}
  td: {type: TimeDistributed, layer: {type: Dense, units: 3}}
  pool: {type: GlobalAveragePooling1D}
  head: {type: CustomDense, units: 2}
  probs: {type: Activation, activation: softmax}
edges:
  - x -> proj -> act -> scale -> td -> pool -> head -> probs
outputs: [probs]
"""


def test_summary_counts_and_weight_names():
    import yaml

    m = nnspec.Model.from_config(yaml.safe_load(MODEL))
    lines = []
    m.summary(print_fn=lines.append)
    assert "proj (CustomDense)" in "\n".join(lines) and "scale (Scale)" in "\n".join(lines)
    assert m.get_layer("proj").class_name == "CustomDense"
    assert [w.shape for w in m.get_layer("proj").get_weights()] == [(4, 8), (8,)]
    assert m.count_params() == (4 * 8 + 8) + 1 + (8 * 3 + 3) + (3 * 2 + 2)
    assert [e["name"] for e in m.summary_dict()["layers"]][:4] == ["x", "proj", "act", "scale"]


@pytest.mark.keras
def test_model_summary_predictions_and_training_step_match_keras():
    from grad_harness import model_matches_keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(5) % 2]
    m, _, moved = model_matches_keras(MODEL, x, y, seed=3)
    assert moved == 7


def test_round_trip_keeps_the_declarations(tmp_path):
    import yaml

    m = nnspec.Model.from_config(yaml.safe_load(MODEL))
    cfg = m.get_config()
    assert set(cfg["custom_layers"]) == {"CustomDense", "Scale"}
    assert cfg["layers"]["proj"] == {"type": "CustomDense", "units": 8, "trainable": True, "dtype": "float32"}
    m2 = nnspec.model_from_json(m.to_json())
    m2.set_weights(m.get_weights())
    x = np.random.default_rng(1).normal(size=(2, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    # a model built in Python from the loaded model's layers writes the declarations too
    sub = nnspec.Model(inputs=m.inputs, outputs=m.get_layer("scale").output)
    assert set(sub.get_config()["custom_layers"]) == {"CustomDense", "Scale"}
    np.testing.assert_allclose(sub.predict(x).shape, (2, 6, 8))


def _errors(text: str) -> list:
    from nnspec.compiler import analyze
    from nnspec.specs.load import load_text

    with pytest.raises(SpecError) as info:
        analyze(load_text(text, "bad.yaml"))
    return [d.format() for d in info.value.diagnostics]


BAD = """
format: nnspec/1
custom_layers:
  Bad:
    arguments: {units: 3}
    weights:
      w: {shape: "(input_shape[-1], units)"}
    call: {call}
inputs:
  x: {shape: [4]}
layers:
  b: {type: Bad, {node}}
"""


@pytest.mark.parametrize("call, node, message", [
    ("ops.matmull(inputs, w)", "units: 2", "E106 custom_layers.Bad.call: unknown function 'matmull'"),
    ("ops.matmul(input, w)", "units: 2", "unknown name 'input'"),
    ("ops.matmul(inputs, w", "units: 2", "not a valid expression"),
    ("__import__('os').system('true')", "units: 2", "only functions of keras.ops can be called"),
    ("inputs.T", "units: 2", "Attribute is not part of the expression language"),
    ("ops.matmul(inputs, w)", "unit: 2", "E101 layers.b.unit: unknown parameter 'unit' for custom layer Bad"),
    ("ops.sum(inputs, axis=0)", "units: 2", "reducing over the batch axis"),
    ("inputs + w", "units: 2", "cannot broadcast"),
])  # fmt: skip
def test_bad_declarations_get_one_clear_error(call, node, message):
    text = BAD.replace("{call}", f'"{call}"').replace("{node}", node)
    errs = _errors(text)
    assert any(message in e for e in errs), errs


def test_a_custom_name_may_not_shadow_a_built_in_type():
    text = BAD.replace("Bad:", "Dense:").replace("{call}", "inputs").replace("type: Bad, {node}", "type: Dense, units: 2")
    assert any("E105" in e and "built-in" in e for e in _errors(text))


NESTED = """
format: nnspec/1
name: nested_custom
custom_layers:
  Affine:
    arguments: {units: 4, slope: 0.5}
    weights:
      w: {shape: "(input_shape[-1], units)"}
      b: {shape: [units], initializer: zeros}
    call: ops.leaky_relu(inputs @ w + b) * slope
inputs:
  x: {shape: [5, 3]}
layers:
  td: {type: TimeDistributed, layer: {type: Affine, units: 6}}
  bi: {type: Bidirectional, layer: {type: LSTM, units: 2}}
  out: {type: Affine, units: 1, slope: 2.0}
edges:
  - x -> td -> bi -> out
outputs: [out]
"""


@pytest.mark.keras
def test_custom_layer_under_time_distributed_matches_keras():
    from grad_harness import model_matches_keras

    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5, 3)).astype(np.float32)
    y = rng.normal(size=(4, 1)).astype(np.float32)
    m, _, moved = model_matches_keras(NESTED, x, y, seed=5, loss="mse")
    assert m.count_params() == (3 * 6 + 6) + 2 * (4 * (6 * 2 + 2 * 2 + 2)) + (4 * 1 + 1)
    cfg = m.get_config()
    assert cfg["layers"]["td"]["layer"] == {"type": "Affine", "units": 6, "slope": 0.5, "trainable": True,
                                            "dtype": "float32"}  # fmt: skip
    assert moved >= 4


def test_nested_custom_node_arguments_are_checked():
    text = NESTED.replace("{type: Affine, units: 6}", "{type: Affine, unit: 6}")
    errs = _errors(text)
    assert any("E101 layers.td.layer.unit: unknown parameter 'unit' for custom layer Affine" in e for e in errs), errs


# ----------------------------------------------------------------------------- Python subclasses


def _guide_classes(base, ops):
    """The Keras guides' custom layers, written once against a ``Layer`` base and an ``ops``
    module: the same class body runs as a Keras layer and as an nnspec layer."""

    class CustomDense(base):
        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal",
                                     trainable=True)  # fmt: skip
            self.b = self.add_weight(shape=(self.units,), initializer="random_normal", trainable=True)

        def call(self, inputs):
            return ops.matmul(inputs, self.w) + self.b

    class Blend(base):  # two inputs, a float argument used in call, a frozen weight
        def __init__(self, alpha=0.25, **kwargs):
            super().__init__(**kwargs)
            self.alpha = alpha

        def build(self, input_shape):
            self.gate = self.add_weight(shape=(input_shape[1][-1], input_shape[0][-1]), name="gate")
            self.bias = self.add_weight(shape=(input_shape[0][-1],), initializer="ones", trainable=False,
                                        name="bias")  # fmt: skip

        def call(self, inputs):
            a, b = inputs[0], inputs[1]
            return a * ops.sigmoid(ops.matmul(b, self.gate) + self.bias) + self.alpha * ops.tanh(a)

    return CustomDense, Blend


def _both(x1, x2):
    """The same two-layer model in nnspec and in Keras, nnspec's weights copied into Keras."""
    import keras

    from nnspec import Input, Model, layers, ops

    ND, NB = _guide_classes(layers.Layer, ops)
    KD, KB = _guide_classes(keras.layers.Layer, keras.ops)

    def build(Input_, Model_, D, B):
        a, b = Input_((3,)), Input_((5,))
        return Model_([a, b], D(4, name="dense")(B(alpha=0.5, name="blend")([a, b])))

    m = build(Input, Model, ND, NB)
    k = build(keras.Input, keras.Model, KD, KB)
    k.set_weights(m.get_weights())
    return m, k


@pytest.mark.keras
def test_python_custom_layers_match_keras():
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    m, k = _both(x1, x2)
    assert m.count_params() == k.count_params() == (5 * 3 + 3) + (3 * 4 + 4)
    assert [(type(la).__name__, la.count_params()) for la in k.layers[2:]] == [
        (m.get_layer(n).class_name, m.get_layer(n).count_params()) for n in ("blend", "dense")]
    np.testing.assert_allclose(m.predict([x1, x2]), np.asarray(k.predict([x1, x2], verbose=0)), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    # one SGD step moves the same weights the same way
    y = rng.normal(size=(6, 4)).astype(np.float32)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="mse")
    import keras

    k.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    lm = m.train_on_batch([x1, x2], y)
    lk = k.train_on_batch([x1, x2], y)
    np.testing.assert_allclose(lm, lk, rtol=1e-5)
    for a, b in zip(m.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


def test_python_custom_layer_is_written_as_a_declaration():
    from nnspec import Input, Model, layers, ops

    D, B = _guide_classes(layers.Layer, ops)
    a = Input((3,))
    m = Model(a, D(10, name="dense")(a))
    cfg = m.get_config()
    assert cfg["custom_layers"]["CustomDense"] == {
        "arguments": {"units": 32},
        "weights": {"variable": {"shape": ["input_shape[-1]", "units"], "initializer": "random_normal"},
                    "variable_1": {"shape": ["units"], "initializer": "random_normal"}},
        "call": "matmul(inputs, variable) + variable_1",
    }  # fmt: skip
    assert cfg["layers"]["dense"] == {"type": "CustomDense", "units": 10, "trainable": True, "dtype": "float32"}
    # the file loads without the class (no custom_objects), with other arguments too
    again = nnspec.Model.from_config(cfg)
    assert again.count_params() == 3 * 10 + 10
    cfg["layers"]["dense"]["units"] = 7
    assert nnspec.Model.from_config(cfg).count_params() == 3 * 7 + 7


def test_python_custom_layer_errors():
    from nnspec import Input, layers, ops

    class UsesNumpy(layers.Layer):
        def call(self, inputs):
            return np.tanh(inputs)

    class Branches(layers.Layer):
        def call(self, inputs):
            return inputs if inputs > 0 else -inputs

    class Forgets(layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)

        def call(self, inputs):
            return ops.relu(inputs)

    x = Input((3,))
    with pytest.raises(TypeError, match="NumPy"):
        UsesNumpy()(x)
    with pytest.raises(TypeError, match="cannot branch on tensor values"):
        Branches()(x)
    with pytest.raises(TypeError, match="not kept as self.units"):
        Forgets(3)(x)
    with pytest.raises(RuntimeError, match="call it from build"):
        layers.Layer().add_weight(shape=(2,))


def test_a_model_with_custom_layers_called_inside_another():
    import yaml

    inner = nnspec.Model.from_config(yaml.safe_load(MODEL))
    x = nnspec.Input((6, 4))
    outer = nnspec.Model(x, nnspec.layers.Dense(3)(inner(x)))
    cfg = outer.get_config()
    assert set(cfg["custom_layers"]) == {"CustomDense", "Scale"}
    assert "custom_layers" not in cfg["models"]["custom_model"]
    again = nnspec.Model.from_config(cfg)
    again.set_weights(outer.get_weights())
    v = np.random.default_rng(3).normal(size=(2, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(v), outer.predict(v))


def test_one_name_for_two_declarations_is_refused():
    from nnspec import Input, Model, layers, ops

    class Twice(layers.Layer):
        def call(self, inputs):
            return ops.relu(inputs) if not isinstance(inputs, list) else inputs[0] + inputs[1]

    a, b = Input((3,)), Input((3,))
    one, two = Twice(), Twice()
    with pytest.raises(ValueError, match="two different custom layers are named 'Twice'"):
        Model([a, b], [one(a), two([a, b])])


def _masking_guide(lib, base, relu, supports_masking: bool):
    """The masking guide's custom activation between a masking Embedding and an LSTM."""

    class MyActivation(base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = supports_masking

        def call(self, inputs):
            return relu(inputs)

    L = lib.layers
    inp = lib.Input(shape=(None,), dtype="int32")
    x = MyActivation()(L.Embedding(input_dim=50, output_dim=8, mask_zero=True)(inp))
    return lib.Model(inp, L.LSTM(4)(x))


@pytest.mark.keras
@pytest.mark.parametrize("supports_masking", [True, False])
def test_a_custom_layer_supporting_masking_passes_the_mask_on_as_in_keras(tmp_path, supports_masking):
    """Keras's ``self.supports_masking = True`` (the masking guide): the LSTM after the layer
    skips the padding. Without it the mask stops there, in both."""
    import keras

    m = _masking_guide(nnspec, nnspec.layers.Layer, nnspec.ops.relu, supports_masking)
    k = _masking_guide(keras, keras.layers.Layer, keras.ops.relu, supports_masking)
    k.set_weights(m.get_weights())
    x = np.array([[3, 5, 7, 0, 0], [1, 2, 3, 4, 5]], np.int32)
    np.testing.assert_allclose(m.predict(x), k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # with the mask the padded row is the row without its padding; without it, not
    assert np.allclose(m.predict(x[:, :3])[0], m.predict(x)[0], atol=1e-6) == supports_masking
    (tmp_path / "m.yaml").write_text(m.to_yaml())  # the declaration keeps the flag
    assert ("supports_masking: true" in m.to_yaml()) == supports_masking
    np.testing.assert_array_equal(nnspec.load(tmp_path / "m.yaml").predict(x).shape, (2, 4))


def test_supports_masking_needs_the_time_axis_kept():
    spec = """
format: nnspec/1
name: m
custom_layers:
  Squash: {call: "sum(inputs, axis=1)", supports_masking: true}
inputs:
  x: {shape: [5], dtype: int32}
layers:
  e: {type: Embedding, input_dim: 10, output_dim: 4, mask_zero: true}
  s: {type: Squash}
edges:
  - x -> e -> s
"""
    with pytest.raises(SpecError, match="supports_masking passes the input's mask on"):
        nnspec.load(spec)
