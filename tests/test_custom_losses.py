"""Custom losses (``custom_losses`` in a model file, ``nnspec.losses.Expression``): the generated
kernels against the NumPy reference with Keras's reduction rules written out, their gradients
against float64 finite differences, training one step against Keras 3 (PyTorch backend) compiled
with the same text as a Python loss function over ``keras.ops``, the errors a bad declaration
gets, the model file's round trip and ``nnspec fit``."""

from __future__ import annotations

import math
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnspec
from nnspec.cli.main import cli
from nnspec.layerdefs import expressions as ex
from nnspec.runtime import losses as L
from nnspec.specs.errors import SpecError

from grad_harness import close

EXPRESSIONS = {
    "mse": "ops.mean(ops.square(y_true - y_pred), axis=-1)",
    "mae": "ops.mean(ops.abs(y_true - y_pred), axis=-1)",
    "sum": "ops.sum(ops.square(y_pred - y_true), axis=-1)",
    "log-exp": "ops.mean(ops.log(ops.exp(y_pred) + 1.0) - y_true * y_pred, axis=-1)",
    "clip": "ops.mean(ops.square(ops.clip(y_pred, -1.0, 1.0) - y_true), axis=-1)",
    "maximum": "ops.mean(ops.maximum(1.0 - y_true * y_pred, 0.0), axis=-1)",
    "elementwise": "ops.square(y_true - y_pred) * 0.5",
    "keepdims": "ops.mean(ops.square(y_true - y_pred), axis=-1, keepdims=True)",
    "log-softmax": "-ops.sum(y_true * ops.log_softmax(y_pred), axis=-1)",
    "centered": "ops.mean(ops.square(y_pred - ops.mean(y_pred, axis=-1, keepdims=True) - y_true), axis=-1)",
}

# The same functions in float64 NumPy: the finite differences' reference (independent of
# expressions.py).
NP_OPS = SimpleNamespace(
    mean=lambda x, axis=None, keepdims=False: np.mean(x, axis=axis, keepdims=keepdims),
    sum=lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims),
    square=np.square, abs=np.abs, log=np.log, exp=np.exp, clip=np.clip, maximum=np.maximum,
    log_softmax=lambda x: x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True),
)  # fmt: skip


def function(text: str, ops):
    """``text`` as the Python loss function a Keras user writes, over ``ops``."""
    return eval(f"lambda y_true, y_pred: {text}", {"ops": ops})  # the tests' own constant texts


def keras_reduce(values, sample_weight=None, mask=None):
    """Keras's ``reduce_weighted_values`` with the default reduction (``sum_over_batch_size``),
    written out: a mask becomes weights ``total / valid``, weights get trailing axes to the
    values' rank, the sum is divided by the number of values."""
    values = np.asarray(values, np.float64)
    sw = None if sample_weight is None else np.asarray(sample_weight, np.float64)
    if mask is not None:
        m = np.asarray(mask, np.float64)
        valid = m.sum()
        m = m * (m.size / valid if valid else 0.0)
        sw = m if sw is None else sw.reshape(sw.shape + (1,) * (m.ndim - sw.ndim)) * m
    if sw is not None:
        values = values * sw.reshape(sw.shape + (1,) * (values.ndim - sw.ndim))
    return values.sum() / values.size


def data(lead: tuple, k: int, seed: int):
    rng = np.random.default_rng(seed)
    yt = rng.normal(size=(*lead, k)).astype(np.float32)
    if seed % 2:  # class probabilities for the crossentropy-like expressions (any values work)
        yt = np.abs(yt) / np.abs(yt).sum(-1, keepdims=True)
    yp = (rng.normal(size=(*lead, k)) * 1.5).astype(np.float32)
    sw = rng.uniform(0.2, 2.0, size=lead[:1]).astype(np.float32)
    mask = rng.random(lead) > 0.3
    mask.reshape(-1)[0] = True
    return yt, yp, sw, mask


WEIGHTINGS = ["plain", "sample-weight", "mask", "both"]


def weighting(kind: str, sw, mask):
    return (sw if kind in ("sample-weight", "both") else None), (mask if kind in ("mask", "both") else None)


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("kind", WEIGHTINGS)
@pytest.mark.parametrize("lead", [(7,), (4, 5)], ids=["rows", "sequence"])
@pytest.mark.parametrize("key", list(EXPRESSIONS))
def test_kernel_matches_the_reference_with_keras_reduction(key, lead, kind):
    text = EXPRESSIONS[key]
    yt, yp, sw, mask = data(lead, 3, len(key))
    sample_weight, m = weighting(kind, sw, mask)
    value, _ = L.compute_loss(L.Expression(text, name=key), yt, yp, sample_weight, m)
    values = ex.evaluate(ex.parse(text, ("y_true", "y_pred")), {"y_true": yt, "y_pred": yp})
    ref = keras_reduce(values, sample_weight, m)
    assert math.isclose(value, ref, rel_tol=1e-5, abs_tol=1e-7), (value, ref)


@pytest.mark.parametrize("kind", WEIGHTINGS)
@pytest.mark.parametrize("lead", [(6,), (3, 4)], ids=["rows", "sequence"])
@pytest.mark.parametrize("key", list(EXPRESSIONS))
def test_gradient_matches_float64_finite_differences(key, lead, kind):
    text = EXPRESSIONS[key]
    yt, yp, sw, mask = data(lead, 3, len(key) + 1)
    sample_weight, m = weighting(kind, sw, mask)
    _, dy = L.compute_loss(L.Expression(text, name=key), yt, yp, sample_weight, m, loss_weight=2.0)
    fn = function(text, NP_OPS)

    def loss(p):
        return 2.0 * keras_reduce(fn(yt.astype(np.float64), p), sample_weight, m)

    p = yp.astype(np.float64)
    fd = np.zeros_like(p)
    h = 1e-6
    for i in np.ndindex(p.shape):
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        fd[i] = (loss(up) - loss(down)) / (2 * h)
    close(dy, fd, 2e-4, key)


def test_masked_rows_never_turn_the_loss_or_gradient_into_nan():
    yt, yp, sw, mask = data((4, 5), 3, 3)
    yp = np.abs(yp) + 0.1
    yp[~mask] = np.nan
    yt[~mask] = np.inf
    for text in (EXPRESSIONS["log-exp"], EXPRESSIONS["elementwise"], "ops.mean(ops.log(y_pred), axis=-1)"):
        value, dy = L.compute_loss(L.Expression(text), yt, yp, sw, mask)
        assert math.isfinite(value) and np.isfinite(dy).all(), text
        assert (dy[~mask] == 0).all()


def test_a_sequence_output_reduces_its_last_axis_however_it_is_written():
    yt, yp, sw, mask = data((4, 5), 3, 2)
    a = L.compute_loss(L.Expression("ops.mean(ops.square(y_true - y_pred), axis=2)"), yt, yp, sw, mask)
    b = L.compute_loss("mse", yt, yp, sw, mask)
    assert math.isclose(a[0], b[0], rel_tol=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-8)
    # axis=1 is the last axis of a (batch, k) output, but the time axis of this one
    with pytest.raises(ValueError, match="only the last axis can be reduced"):
        L.compute_loss(L.Expression("ops.mean(ops.square(y_true - y_pred), axis=1)"), yt, yp)


def test_loss_values_and_the_loss_object():
    yt, yp, sw, _ = data((6,), 4, 2)
    e = nnspec.losses.Expression(EXPRESSIONS["mae"], name="my_mae")
    np.testing.assert_allclose(L.loss_values(e, yt, yp), L.loss_values("mae", yt, yp), rtol=1e-6)
    assert math.isclose(e(yt, yp, sample_weight=sw), L.get_loss("mae")(yt, yp, sw), rel_tol=1e-6)
    spec = nnspec.losses.get(e)
    assert (spec.name, spec.type, spec.expression) == ("my_mae", "my_mae", EXPRESSIONS["mae"])


def test_two_custom_losses_of_one_model_get_their_own_kernels():
    a = L.get_loss(L.Expression(EXPRESSIONS["mse"], name="a"))
    b = L.get_loss(L.Expression(EXPRESSIONS["mae"], name="b"))
    assert a.kernel.__name__ != b.kernel.__name__ and a.kernel.__module__ != b.kernel.__module__


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text, message", [
    ("ops.mean(ops.sqaure(y_true - y_pred), axis=-1)",
     "custom loss 'bad': unknown function 'sqaure' (at column 10 of the expression)"),
    ("ops.mean(ops.sqaure(y_true - y_pred), axis=-1)", "(at column 10 of the expression); did you mean 'square'?"),
    ("ops.mean(y_tru - y_pred, axis=-1)", "unknown name 'y_tru' (at column 10 of the expression)"),
    ("ops.mean(ops.foo(y_true - y_pred), axis=-1)", "unknown function 'foo'; the functions are abs, absolute, "),
    ("ops.mean(zz - y_pred, axis=-1)", "unknown name 'zz'; the names here are y_true, y_pred"),
    ("ops.mean(y_tru - y_pred, axis=-1)", "did you mean 'y_true'?"),
    ("ops.mean(ops.square(y_true - y_pred), axis=0)", "mean: reducing over the batch axis would mix the samples"),
    ("ops.mean(ops.square(y_true - y_pred))", "reducing over the batch axis"),
    ("ops.mean(y_true - y_pred, axis=-1) + y_pred", "cannot broadcast"),
    ("y_pred.sum()", "only functions of keras.ops can be called"),
    ("y_pred.T", "Attribute is not part of the expression language"),
])  # fmt: skip
def test_bad_expressions_get_a_clear_error_naming_the_loss(text, message):
    with pytest.raises(ValueError) as info:
        L.Expression(text, name="bad")
    assert message in str(info.value) and "custom loss 'bad'" in str(info.value)


def test_a_per_entry_expression_refuses_other_reductions():
    custom = {"half_se": EXPRESSIONS["elementwise"]}
    assert L.get_loss({"type": "half_se", "reduction": "sum_over_batch_size"}, custom=custom).expression
    with pytest.raises(ValueError, match="one value per entry.*reduction 'sum'"):
        L.get_loss({"type": "half_se", "reduction": "sum"}, custom=custom)
    assert (
        L.get_loss({"type": "cmse", "reduction": "sum"}, custom={"cmse": EXPRESSIONS["mse"]}).reduction
        == "sum"
    )
    with pytest.raises(ValueError, match="custom loss 'half_se' takes no argument 'delta'"):
        L.get_loss({"type": "half_se", "delta": 1.0}, custom=custom)


def test_an_unknown_name_suggests_the_declared_custom_loss():
    with pytest.raises(ValueError, match="unknown loss 'custom_mse_'; did you mean 'custom_mse'"):
        L.get_loss("custom_mse_", custom={"custom_mse": EXPRESSIONS["mse"]})
    with pytest.raises(ValueError, match="unknown loss 'custom_mse'"):
        L.get_loss("custom_mse")


MODEL = """
format: nnspec/1
name: regressor
inputs:
  x: {shape: [6]}
layers:
  hidden: {type: Dense, units: 8, activation: tanh}
  out: {type: Dense, units: 3}
outputs: [out]
custom_losses:
  custom_mean_squared_error: ops.mean(ops.square(y_true - y_pred), axis=-1)
training:
  optimizer: {type: sgd, learning_rate: 0.1}
  loss: custom_mean_squared_error
  epochs: 2
  batch_size: 16
"""


def _errors(text: str) -> list:
    with pytest.raises(SpecError) as info:
        nnspec.model_from_yaml(text)
    return [d.format() for d in info.value.diagnostics]


@pytest.mark.parametrize("old, new, message", [
    ("ops.mean(ops.square(", "ops.mean(ops.sqaure(",
     "E106 custom_losses.custom_mean_squared_error: unknown function 'sqaure'"),
    ("axis=-1)\n", "axis=0)\n", "E106 custom_losses.custom_mean_squared_error: mean: reducing over the batch axis"),
    ("  loss: custom_mean_squared_error", "  loss: custom_mean_squared_eror",
     "E104 training.loss: unknown loss 'custom_mean_squared_eror'; did you mean 'custom_mean_squared_error'?"),
    ("  loss: custom_mean_squared_error", "  loss: [mse]", None),
    ("  loss: custom_mean_squared_error", "  loss: {out: custom_mean_squared_error}", None),
    ("  loss: custom_mean_squared_error", "  loss: {type: custom_mean_squared_error, reduction: sum}", None),
    ("  custom_mean_squared_error: ops", "  mse: ops", "E105 custom_losses.mse: custom loss 'mse' has the name of a built-in loss"),
    ("  custom_mean_squared_error: ops.mean(ops.square(y_true - y_pred), axis=-1)", "  custom_mean_squared_error: 3",
     "E100 custom_losses.custom_mean_squared_error: expected a string"),
])  # fmt: skip
def test_model_file_declarations_are_validated(old, new, message):
    text = MODEL.replace(old, new)
    assert text != MODEL
    if message is None:
        nnspec.model_from_yaml(text)
        return
    errs = _errors(text)
    assert any(message in e for e in errs), errs


def test_the_model_file_keeps_its_custom_losses():
    m = nnspec.model_from_yaml(MODEL)
    cfg = m.get_config()
    assert cfg["custom_losses"] == {
        "custom_mean_squared_error": "ops.mean(ops.square(y_true - y_pred), axis=-1)"
    }
    assert list(cfg)[-2:] == ["custom_losses", "training"]
    assert nnspec.model_from_json(m.to_json()).get_config() == cfg
    assert nnspec.model_from_yaml(m.to_yaml()).get_config() == cfg


def test_compile_by_name_from_the_file_with_an_expression_or_a_function_trains_as_mse():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = rng.normal(size=(16, 3)).astype(np.float32)
    start = [
        rng.normal(scale=0.4, size=w.shape).astype(np.float32)
        for w in nnspec.model_from_yaml(MODEL).get_weights()
    ]
    results = []

    def traced(y_true, y_pred):
        return nnspec.ops.mean(nnspec.ops.square(y_true - y_pred), axis=-1)

    for loss in (None, "custom_mean_squared_error", L.Expression(EXPRESSIONS["mse"]), traced, "mse"):
        m = nnspec.model_from_yaml(MODEL)
        m.set_weights(start)
        if loss is None:  # the file's training section
            m.compile()
        else:
            m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss=loss)
        results.append((float(m.train_on_batch(x, y)), m.get_weights(), float(m.evaluate(x, y, verbose=0))))
    for value, weights, evaluated in results[1:]:
        assert math.isclose(value, results[0][0], rel_tol=1e-6)
        assert math.isclose(evaluated, results[0][2], rel_tol=1e-6)
        for a, b in zip(weights, results[0][1]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    m = nnspec.model_from_yaml(MODEL)
    m.compile(loss="custom_mean_squared_eror")
    with pytest.raises(ValueError, match="did you mean 'custom_mean_squared_error'"):
        m.train_on_batch(x, y)


# ----------------------------------------------------------------------------- Keras


SEQUENCE = """
format: nnspec/1
name: tagger
inputs:
  tokens: {shape: [7], dtype: int32}
layers:
  embed: {type: Embedding, input_dim: 20, output_dim: 6, mask_zero: true}
  lstm: {type: LSTM, units: 5, return_sequences: true}
  tags: {type: Dense, units: 4}
edges:
  - tokens -> embed -> lstm -> tags
outputs: [tags]
"""

TWO_OUTPUTS = """
format: nnspec/1
name: two
inputs:
  x: {shape: [5]}
layers:
  hidden: {type: Dense, units: 8, activation: relu}
  a: {type: Dense, units: 3}
  b: {type: Dense, units: 2, activation: sigmoid}
edges:
  - x -> hidden -> a
  - hidden -> b
outputs: [a, b]
"""


def _keras_pair(text: str, seed: int = 1):
    from keras_from_spec import keras_model_from_spec

    m = nnspec.model_from_yaml(text)
    rng = np.random.default_rng(seed)
    m.set_weights([rng.normal(scale=0.4, size=w.shape).astype(np.float32) for w in m.get_weights()])
    km = keras_model_from_spec(text)
    for layer in m.layers:
        w = layer.get_weights() if hasattr(layer, "get_weights") else []
        if w:
            km.get_layer(layer.name).set_weights(w)
    return m, km


def _compare_step(m, km, x, y, sample_weight=None):
    """One train_on_batch of each: the losses reported (the total, then each output's) and the
    weights after the step."""
    a = np.atleast_1d(m.train_on_batch(x, y, sample_weight=sample_weight))
    b = np.atleast_1d(km.train_on_batch(x, y, sample_weight=sample_weight))
    assert a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=0), (a, b)
    for layer in m.layers:
        ours = layer.get_weights() if hasattr(layer, "get_weights") else []
        for k, (w, kw) in enumerate(zip(ours, km.get_layer(layer.name).get_weights())):
            close(w, kw, 1e-4, f"{layer.name} weight {k}")


@pytest.mark.keras
@pytest.mark.parametrize("key", ["mse", "log-exp", "clip", "elementwise", "log-softmax"])
def test_one_training_step_matches_keras(key):
    import keras

    text = MODEL.replace(EXPRESSIONS["mse"], EXPRESSIONS[key])
    m, km = _keras_pair(text)
    m.compile()
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=function(EXPRESSIONS[key], keras.ops))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = np.abs(rng.normal(size=(16, 3))).astype(np.float32)
    # Keras 3 cannot weigh one value per entry by sample (its weights get a trailing axis only
    # when the values' last axis is 1): no weights for that expression
    sw = None if key == "elementwise" else rng.uniform(0.2, 2.0, size=16).astype(np.float32)
    _compare_step(m, km, x, y, sw)


@pytest.mark.keras
@pytest.mark.parametrize("key", ["mse", "centered", "maximum"])
def test_masked_sequence_step_matches_keras(key):
    """Padding steps are masked in Keras's loss of a custom function too; per-step weights."""
    import keras

    expr = EXPRESSIONS[key].replace("axis=-1", "axis=2")  # the last axis of (batch, steps, tags)
    text = SEQUENCE + f"custom_losses:\n  tag_loss: '{expr}'\n"
    m, km = _keras_pair(text)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="tag_loss")
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=function(expr, keras.ops))
    rng = np.random.default_rng(4)
    x = rng.integers(1, 20, size=(6, 7)).astype(np.int32)
    for i, n in enumerate([7, 5, 3, 6, 1, 4]):
        x[i, n:] = 0
    y = rng.choice([-1.0, 1.0], size=(6, 7, 4)).astype(np.float32)
    _compare_step(m, km, x, y, rng.uniform(0.2, 2.0, size=(6, 7)).astype(np.float32))


@pytest.mark.keras
def test_two_outputs_with_a_custom_loss_each_match_keras():
    import keras

    custom = {
        "abs_loss": EXPRESSIONS["mae"],
        "bce_like": EXPRESSIONS["log-exp"].replace("y_pred", "(y_pred * 2.0)"),
    }
    text = TWO_OUTPUTS + "custom_losses:\n" + "".join(f"  {k}: '{v}'\n" for k, v in custom.items())
    m, km = _keras_pair(text)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss={"a": "abs_loss", "b": "bce_like"},
              loss_weights=[1.0, 0.5])  # fmt: skip
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
               loss={k: function(custom[n], keras.ops) for k, n in (("a", "abs_loss"), ("b", "bce_like"))},
               loss_weights=[1.0, 0.5])  # fmt: skip
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    y = [rng.normal(size=(12, 3)).astype(np.float32), (rng.random((12, 2)) > 0.5).astype(np.float32)]
    _compare_step(m, km, x, y)


# ----------------------------------------------------------------------------- nnspec fit


def test_nnspec_fit_trains_a_file_with_a_custom_loss(tmp_path):
    model_file = tmp_path / "regressor.yaml"
    model_file.write_text(MODEL)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=x, out=np.tanh(x[:, :3]))
    out, hist = tmp_path / "w.safetensors", tmp_path / "history.json"
    r = CliRunner().invoke(cli, ["fit", str(model_file), "--data", str(tmp_path / "train.npz"), "--weights-out",
                                 str(out), "--history-out", str(hist), "--verbose", "0"])  # fmt: skip
    assert r.exit_code == 0, r.output
    import json

    losses = json.loads(hist.read_text())["loss"]
    assert len(losses) == 2 and losses[1] < losses[0]
    r = CliRunner().invoke(cli, ["fit", str(model_file), "--data", str(tmp_path / "train.npz"), "--weights-out",
                                 str(out), "--loss", "custom_mean_squared_eror"])  # fmt: skip
    assert r.exit_code == 2 and "did you mean 'custom_mean_squared_error'?" in r.output, r.output


def test_a_python_loss_function_over_nnspec_ops_is_traced_into_an_expression():
    from nnspec import ops

    def custom_mean_squared_error(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)

    spec = L.get_loss(custom_mean_squared_error)
    assert spec.name == "custom_mean_squared_error"
    assert spec.expression == "mean(square((y_true - y_pred)), axis=-1)"
    yt, yp, sw, _ = data((6,), 4, 2)
    assert math.isclose(spec(yt, yp, sw), L.get_loss("mse")(yt, yp, sw), rel_tol=1e-6)
    assert L.get_loss(lambda y_true, y_pred: 0.5 * ops.abs(y_pred - y_true)).name == "custom_loss"
    with pytest.raises(TypeError, match="loss function 'custom_loss' returned 1.0"):
        L.get_loss(lambda y_true, y_pred: 1.0)
    with pytest.raises(ValueError, match="reducing over the batch axis"):
        L.get_loss(lambda y_true, y_pred: ops.mean(y_pred))


# ----------------------------------------------------------------------------- as metrics

SEED = Path(__file__).resolve().parent.parent / "specs" / "custom_layers.yaml"


@pytest.mark.keras
def test_a_custom_loss_is_a_metric_as_in_keras():
    """``metrics: [custom_mean_squared_error]`` (the seed file's): the mean of the loss's values,
    as Keras's compile wraps a loss function given as a metric; also as an Expression and as a
    Python function over nnspec.ops."""
    import keras
    from keras_from_spec import keras_model_from_spec
    from keras_ref import keras_custom_loss

    from nnspec import ops

    text = "ops.mean(ops.square(y_true - y_pred), axis=-1)"
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 784)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=12)]
    m = nnspec.load(SEED, seed=3)
    km = keras_model_from_spec(SEED)
    km.set_weights(m.get_weights())
    fn = keras_custom_loss("custom_mean_squared_error", text)
    km.compile(optimizer="sgd", loss=fn, metrics=[fn])
    want = km.evaluate(x, y, verbose=0, return_dict=True)

    def abs_error(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)

    m.compile(optimizer="sgd", loss="custom_mean_squared_error",
              metrics=["custom_mean_squared_error", nnspec.losses.Expression(text, name="again"), abs_error])  # fmt: skip
    got = m.evaluate(x, y, verbose=0, return_dict=True)
    assert got["custom_mean_squared_error"] == pytest.approx(want["custom_mean_squared_error"], rel=1e-5)
    assert got["again"] == pytest.approx(want["custom_mean_squared_error"], rel=1e-5)
    assert got["abs_error"] == pytest.approx(float(np.abs(y - m.predict(x)).mean()), rel=1e-5)


def test_custom_metric_names_are_checked_against_the_declarations():
    import yaml

    doc = yaml.safe_load(SEED.read_text())
    doc["training"]["metrics"] = ["custom_mean_sqared_error"]
    from nnspec.specs.errors import SchemaError

    with pytest.raises(SchemaError) as info:
        nnspec.Model.from_config(doc)
    d = info.value.first
    assert (d.code, d.path) == ("E104", "training.metrics[0]") and d.hint == "did you mean 'custom_mean_squared_error'?"
