"""Outputs written as a mapping, Keras's ``Model(inputs, outputs={"priority": p, ...})``.

The outputs come in sorted key order (Keras flattens a dict of outputs so), predictions come
back as a dict keyed like the mapping, and losses, metrics, targets and logs are keyed by the
keys. Checked against Keras on the functional API guide's ticket classifier: predictions, and
one training step with a loss and a loss weight per key.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

os.environ.setdefault("KERAS_BACKEND", "torch")

import nnspec
from nnspec.cli.main import cli
from nnspec.specs.errors import NnspecError

TWO_HEADS = """
format: nnspec/1
name: two_heads
inputs:
  x: {shape: [4]}
layers:
  zeta: {type: Dense, units: 3}
  beta: {type: Dense, units: 2, activation: softmax}
edges:
  - x -> zeta
  - x -> beta
outputs: {score: zeta, label: beta}
training:
  optimizer: {type: sgd, learning_rate: 0.1}
  loss: {score: mse, label: categorical_crossentropy}
  loss_weights: {score: 0.5, label: 1.0}
  metrics: {label: [accuracy]}
"""


def _data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = {"score": rng.normal(size=(n, 3)).astype(np.float32),
         "label": np.eye(2, dtype=np.float32)[rng.integers(0, 2, n)]}  # fmt: skip
    return x, y


def test_predictions_are_keyed_by_the_mapping_in_sorted_key_order():
    m = nnspec.Model.from_config(yaml.safe_load(TWO_HEADS))
    x, _ = _data()
    got = m.predict(x)
    assert isinstance(got, dict) and list(got) == ["label", "score"]
    assert got["score"].shape == (6, 3) and got["label"].shape == (6, 2)
    # the mapping names which node each key is: the same numbers as asking for the nodes by name
    by_node = nnspec.Model(inputs=m.inputs, outputs=[m.get_layer("zeta").output, m.get_layer("beta").output])
    score, label = by_node.predict(x)
    np.testing.assert_array_equal(got["score"], score)
    np.testing.assert_array_equal(got["label"], label)
    for other in (m(x), m.predict_on_batch(x), m.predict(x, batch_size=4)):
        assert list(other) == ["label", "score"]
        np.testing.assert_array_equal(other["label"], label)
    assert [name for name, _ in m.plan().outputs] == ["label", "score"]
    assert [t.shape for t in m.outputs] == [(None, 2), (None, 3)]  # flattened in key order


def test_one_key_still_gives_a_dict():
    spec = yaml.safe_load(TWO_HEADS)
    spec["outputs"] = {"only": "beta"}
    del spec["training"]
    m = nnspec.Model.from_config(spec)
    got = m.predict(_data()[0])
    assert list(got) == ["only"] and got["only"].shape == (6, 2)


def test_the_mapping_survives_get_config_json_and_yaml(tmp_path):
    m = nnspec.Model.from_config(yaml.safe_load(TWO_HEADS))
    assert m.get_config()["outputs"] == {"label": "beta", "score": "zeta"}
    again = nnspec.model_from_json(m.to_json())
    assert again.get_config() == m.get_config()
    (tmp_path / "m.yaml").write_text(m.to_yaml())
    assert nnspec.load(tmp_path / "m.yaml").get_config() == m.get_config()


def test_losses_metrics_targets_and_logs_are_keyed_by_the_keys():
    m = nnspec.Model.from_config(yaml.safe_load(TWO_HEADS))
    m.compile()
    x, y = _data()
    start = m.get_weights()
    hist = m.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0).history
    assert sorted(hist) == ["label_accuracy", "label_loss", "loss", "score_loss"]
    # the total is the weighted sum of the per-key losses, each computed here from predictions
    m2 = nnspec.Model.from_config(yaml.safe_load(TWO_HEADS))
    m2.set_weights(start)
    p = m2.predict(x)
    mse = float(np.mean((p["score"] - y["score"]) ** 2))
    cce = float(np.mean(-np.sum(y["label"] * np.log(np.clip(p["label"], 1e-7, 1)), axis=-1)))
    np.testing.assert_allclose(hist["score_loss"][0], mse, rtol=1e-5)
    np.testing.assert_allclose(hist["label_loss"][0], cce, rtol=1e-5)
    np.testing.assert_allclose(hist["loss"][0], 0.5 * mse + cce, rtol=1e-5)
    # targets as a list follow the sorted keys, as in Keras
    m2.compile()
    got = m2.evaluate(x, [y["label"], y["score"]], verbose=0, return_dict=True)
    np.testing.assert_allclose(got["score_loss"], mse, rtol=1e-5)


def test_a_node_name_where_a_key_belongs_is_an_error_naming_the_keys():
    spec = yaml.safe_load(TWO_HEADS)
    spec["training"]["loss"] = {"zeta": "mse", "label": "categorical_crossentropy"}
    m = nnspec.Model.from_config(spec)
    with pytest.raises(ValueError, match=r"loss: unknown output 'zeta'; outputs are \['label', 'score'\]"):
        m.compile()
    with pytest.raises(ValueError, match=r"loss: 3 given for 2 outputs \['label', 'score'\]"):
        m.compile(optimizer="sgd", loss=["mse"] * 3)
    one = nnspec.Sequential([nnspec.Input((4,)), nnspec.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match=r"loss: 2 given for 1 output \['d'\]"):
        one.compile(optimizer="sgd", loss=["mse", "mae"])  # not taken as one loss
    m.compile(optimizer="sgd", loss="mse")
    targets = {"zeta": np.zeros((6, 3), np.float32), "label": np.zeros((6, 2), np.float32)}
    with pytest.raises(NnspecError, match="targets for unknown output 'zeta'"):
        m.train_on_batch(_data()[0], targets)


def test_an_unknown_node_in_the_mapping_points_at_its_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(TWO_HEADS.replace("score: zeta", "score: zetta"))
    with pytest.raises(NnspecError) as e:
        nnspec.load(path)
    text = str(e.value)
    assert "m.yaml:12:18:" in text and "E200" in text and "outputs.score" in text
    assert "unknown output 'zetta'" in text and "zeta" in text  # did you mean


def test_a_key_the_format_does_not_allow_is_refused(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(TWO_HEADS.replace("outputs: {score: zeta", "outputs: {'my score': zeta"))
    with pytest.raises(NnspecError, match="outputs"):
        nnspec.load(path)


def test_the_builder_takes_a_dict_of_outputs_and_of_inputs():
    x = nnspec.Input((4,), name="x")
    zeta = nnspec.layers.Dense(3, name="zeta")(x)
    beta = nnspec.layers.Dense(2, activation="softmax", name="beta")(x)
    m = nnspec.Model({"x": x}, {"score": zeta, "label": beta}, name="two_heads")
    want = yaml.safe_load(TWO_HEADS)
    del want["training"]
    assert m.get_config() == nnspec.Model.from_config(want).get_config()
    # called on tensors, the model gives a dict too; a model built from it keeps the keys
    y = nnspec.Input((4,), name="y")
    called = m({"x": y})
    assert list(called) == ["label", "score"]
    outer = nnspec.Model(y, called)
    xs = _data()[0]
    got, inner = outer.predict(xs), m.predict(xs)
    assert list(got) == ["label", "score"]
    np.testing.assert_array_equal(got["score"], inner["score"])
    with pytest.raises(ValueError, match="its inputs are"):
        m({"z": y})


def test_cli_predict_writes_the_keys(tmp_path):
    (tmp_path / "m.yaml").write_text(TWO_HEADS)
    np.save(tmp_path / "x.npy", _data()[0])
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "m.yaml"), "--input", str(tmp_path / "x.npy"),
                                 "-o", str(tmp_path / "y.npz")])  # fmt: skip
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "y.npz") as z:
        assert sorted(z.files) == ["label", "score"] and z["label"].shape == (6, 2)


# ----------------------------------------------------------------------------- against Keras


def _ticket_model():
    """The functional API guide's ticket classifier (smaller), its outputs a dict."""
    import keras

    L = keras.layers
    title = keras.Input(shape=(None,), name="title", dtype="int32")
    body = keras.Input(shape=(None,), name="body", dtype="int32")
    tags = keras.Input(shape=(12,), name="tags")
    x = L.concatenate([L.LSTM(8)(L.Embedding(100, 6)(title)), L.LSTM(4)(L.Embedding(100, 6)(body)), tags])
    return keras.Model([title, body, tags], {"priority": L.Dense(1, name="priority")(x),
                                            "department": L.Dense(4, name="department")(x)})  # fmt: skip


def test_the_ticket_model_predicts_and_trains_as_in_keras():
    import keras

    km = _ticket_model()
    m = nnspec.model_from_json(km.to_json())
    assert m.get_config()["outputs"] == {"department": "department", "priority": "priority"}
    m.set_weights(km.get_weights())
    rng = np.random.default_rng(3)
    x = {"title": rng.integers(0, 100, (8, 7)).astype(np.int32), "body": rng.integers(0, 100, (8, 9)).astype(np.int32),
         "tags": rng.uniform(size=(8, 12)).astype(np.float32)}  # fmt: skip
    y = {"priority": rng.uniform(size=(8, 1)).astype(np.float32),
         "department": np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]}  # fmt: skip
    want, got = km.predict(x, verbose=0), m.predict(x)
    assert list(got) == list(want) == ["department", "priority"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6)
    loss = {"priority": keras.losses.BinaryCrossentropy(from_logits=True),
            "department": keras.losses.CategoricalCrossentropy(from_logits=True)}  # fmt: skip
    km.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=loss, loss_weights={"priority": 1.0, "department": 0.2}
    )
    m.compile(optimizer={"type": "sgd", "learning_rate": 0.1},
              loss={"priority": {"type": "binary_crossentropy", "from_logits": True},
                    "department": {"type": "categorical_crossentropy", "from_logits": True}},
              loss_weights={"priority": 1.0, "department": 0.2})  # fmt: skip
    kh = km.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    nh = m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    assert sorted(nh) == sorted(kh) == ["department_loss", "loss", "priority_loss"]
    for k in kh:
        np.testing.assert_allclose(nh[k][0], kh[k][0], rtol=1e-4)
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)
    assert json.loads(m.to_json())["outputs"] == {"department": "department", "priority": "priority"}
