"""End to end training: one step of every seed model with SGD, RMSprop and Adam matches Keras, and
the seed CNN learns a learnable task.

Per seed and optimizer: the file loaded with nnspec (``seed=1``; biases get a little noise so
their gradients are not all alike), the same model in Keras 3 on its PyTorch backend built by the
independent converter ``tests/keras_from_spec.py``, nnspec's weights copied into it layer by
layer (as in test_seed_predictions.py), both compiled with the file's loss (its ``training``
section; ``mse`` for the seeds without one) and the same optimizer (SGD with learning rate 0.1
and momentum 0.9; RMSprop and Adam with Keras's defaults), then one ``train_on_batch``
on the same inputs and targets. The loss must agree within 1e-4 relative, and every weight after
the step within 1e-4 of its scale; the update itself (weight after minus before) within 1e-3
of its scale for SGD and 1e-2 for RMSprop and Adam, whose first step divides the gradient by
its own root mean square (so a gradient near zero turns float32 rounding into a visible share of
a small update). Why Keras's default learning rate for those two: Adam's first step is
``lr * g / (|g| + 1e-7)``, whose slope at a gradient of the order of epsilon is ``lr / 1e-7``;
for the CNN seeds' 512-unit Dense (gradients summed over a few samples, cancelling to ~1e-7 in
places) a 10x larger rate turned float32 summation-order differences into weight differences of
1.9e-4 of the weights' scale, against 1e-4 allowed.

Integer inputs get token ids with padding (0) at the end of some rows, so the masked seeds train
through their masks. Targets follow each output's loss: one-hot rows for categorical
crossentropy, 0/1 for binary crossentropy, class ids for the sparse loss, normal values for mse.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import yaml

import nnspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grad_harness import close
from test_seed_predictions import SEED_FILES, SEED_IDS, _inputs

BATCH = 5
LOSS_TOL = 1e-4
WEIGHT_TOL = 1e-4
UPDATE_TOL = {"sgd": 1e-3, "rmsprop": 1e-2, "adam": 1e-2}


# The largest first update of one weight, whatever its gradient, with Keras's defaults (learning
# rate 1e-3): Adam's is lr * g / (|g| + eps) <= lr; RMSprop's lr * g / sqrt((1 - rho) g^2 + eps)
# <= lr / sqrt(1 - rho), rho = 0.9.
_MAX_FIRST_STEP = {"adam": 1e-3 * 1.0001, "rmsprop": 1e-3 / np.sqrt(0.1) * 1.0001}


def _optimizers(name: str):
    import keras

    o = nnspec.optimizers
    return {
        "sgd": (
            o.SGD(learning_rate=0.1, momentum=0.9),
            keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        ),
        "rmsprop": (o.RMSprop(), keras.optimizers.RMSprop()),
        "adam": (o.Adam(), keras.optimizers.Adam()),
    }[name]


def _losses(doc: dict, names: list) -> list:
    loss = (doc.get("training") or {}).get("loss", "mse")
    if isinstance(loss, dict):
        return [loss[n] for n in names]
    return [loss] * len(names)


def _target(loss: str, shape: tuple, rng) -> np.ndarray:
    if loss == "categorical_crossentropy":
        return np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], size=shape[:-1])]
    if loss == "sparse_categorical_crossentropy":
        return rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int32)
    if loss == "binary_crossentropy":
        return (rng.random(shape) > 0.5).astype(np.float32)
    return rng.normal(0, 1, size=shape).astype(np.float32)


@cache
def _case(path: Path):
    """The seed's document, its output names, losses, inputs and targets (one batch)."""
    doc = yaml.safe_load(path.read_text())
    m = nnspec.load(path, seed=1)
    plan = m.plan()
    names = [n for n, _ in plan.outputs]
    losses = _losses(doc, names)
    rng = np.random.default_rng(2)
    x = _inputs(doc, m)
    shapes = [(BATCH, *plan.values[vid].shape[1:]) for _, vid in plan.outputs]
    ys = [_target(loss, s, rng) for loss, s in zip(losses, shapes)]
    return doc, names, losses, x, ys


@pytest.mark.keras
@pytest.mark.parametrize("opt", ["sgd", "rmsprop", "adam"])
@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_one_training_step_matches_keras(path, opt):
    from keras_from_spec import keras_model_from_spec

    from keras_ref import keras_custom_loss

    doc, _, losses, x, ys = _case(path)
    m = nnspec.load(path, seed=1)
    rng = np.random.default_rng(1)
    m.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32) if w.ndim == 1 else w
                   for w in m.get_weights()])  # fmt: skip
    km = keras_model_from_spec(path)
    before = {}
    for layer in m.layers:
        weights = layer.get_weights() if hasattr(layer, "get_weights") else []
        if weights:
            km.get_layer(layer.name).set_weights(weights)
            before[layer.name] = weights
    ours_opt, keras_opt = _optimizers(opt)
    m.compile(optimizer=ours_opt, loss=losses if len(losses) > 1 else losses[0])
    declared = doc.get("custom_losses") or {}
    klosses = [keras_custom_loss(n, declared[n]) if n in declared else n for n in losses]
    km.compile(optimizer=keras_opt, loss=klosses if len(klosses) > 1 else klosses[0])
    xs = x if len(x) > 1 else next(iter(x.values()))
    y = ys if len(ys) > 1 else ys[0]
    ours = np.atleast_1d(np.asarray(m.train_on_batch(xs, y), np.float64))
    theirs = np.atleast_1d(np.asarray(km.train_on_batch(xs, y), np.float64))
    # total first, then per output (both list the total loss first)
    assert ours.shape == theirs.shape, (ours, theirs)
    for a, b in zip(ours, theirs):
        assert abs(a - b) <= LOSS_TOL * max(abs(b), 1e-6), (ours, theirs)
    for name, w0 in before.items():
        after = m.get_layer(name).get_weights()
        kafter = km.get_layer(name).get_weights()
        for k, (a, b, a0) in enumerate(zip(after, kafter, w0)):
            if opt != "sgd" and m.get_layer(name)._weight_names()[k].endswith("/key/bias"):
                # An attention layer's key bias shifts every score of a softmax row equally, so
                # its gradient is zero in exact arithmetic and rounding noise (~1e-9) in float32,
                # different in every implementation. RMSprop and Adam divide by the gradient's
                # own size: the update is that noise scaled to about the learning rate, in any
                # direction. What holds for both: the first step's bound (_MAX_FIRST_STEP).
                assert np.abs(a - a0).max() <= _MAX_FIRST_STEP[opt] and np.abs(b - a0).max() <= _MAX_FIRST_STEP[opt]
                continue
            close(a, b, WEIGHT_TOL, f"{name} weight {k}")
            if not np.array_equal(b, a0):
                close(a - a0, b - a0, UPDATE_TOL[opt], f"{name} weight {k} update")


def test_seed_cnn_learns():
    """specs/cnn.yaml at test size: is the bright square in the upper or the lower half?"""
    rng = np.random.default_rng(0)
    n = 480
    labels = rng.integers(0, 2, size=n)
    x = rng.uniform(0, 0.3, size=(n, 64, 64, 3)).astype(np.float32)
    for i, c in enumerate(labels):
        r = rng.integers(0, 24) + (32 if c else 0)
        col = rng.integers(0, 56)
        x[i, r : r + 8, col : col + 8, :] += 0.7
    y = np.eye(10, dtype=np.float32)[labels]
    m = nnspec.load(Path(__file__).resolve().parents[1] / "specs" / "cnn.yaml", seed=0)
    m.compile(optimizer=nnspec.optimizers.Adam(learning_rate=1e-3), loss="categorical_crossentropy",
              metrics=["accuracy"])  # fmt: skip
    hist = m.fit(x[:384], y[:384], batch_size=32, epochs=3, verbose=0, seed=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    acc = float((m.predict(x[384:], verbose=0).argmax(-1) == labels[384:]).mean())
    assert acc > 0.9, acc


DROPOUT_MODEL = """
format: nnspec/1
name: noisy
inputs:
  x: {shape: [12]}
layers:
  d1: {type: Dense, units: 16, activation: relu}
  drop: {type: Dropout, rate: 0.5}
  noise: {type: GaussianNoise, stddev: 0.1}
  out: {type: Dense, units: 3, activation: softmax}
edges:
  - x -> d1 -> drop -> noise -> out
outputs: [out]
"""

_TRAIN_SCRIPT = """
import hashlib, sys
import numpy as np
import nnspec
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 12)).astype(np.float32)
y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 96)]
m = nnspec.load(sys.argv[1], seed=int(sys.argv[2]))
m.compile(optimizer="adam", loss="categorical_crossentropy")
m.fit(x, y, batch_size=16, epochs=2, shuffle=True, verbose=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights())).hexdigest())
"""


def test_training_is_deterministic_per_seed(tmp_path):
    """The same seed gives the same weights after training (initialization, shuffling, Dropout
    and noise draws), in this process and in a fresh one; another seed gives others."""
    import subprocess

    spec = tmp_path / "noisy.yaml"
    spec.write_text(DROPOUT_MODEL)
    script = tmp_path / "train.py"
    script.write_text(_TRAIN_SCRIPT)

    def here(seed):
        ns = {"__name__": "train"}
        import contextlib
        import io

        out = io.StringIO()
        argv = sys.argv
        sys.argv = ["train.py", str(spec), str(seed)]
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(_TRAIN_SCRIPT, "train.py", "exec"), ns)  # noqa: S102 (the test's own script)
        finally:
            sys.argv = argv
        return out.getvalue().strip()

    a, b, c = here(3), here(3), here(4)
    assert a == b
    assert a != c
    fresh = subprocess.run([sys.executable, str(script), str(spec), "3"], capture_output=True, text=True,
                           check=True, timeout=600)  # fmt: skip
    assert fresh.stdout.strip().splitlines()[-1] == a


@pytest.mark.keras
@pytest.mark.parametrize("weighting", ["none", "class_weight", "sample_weight"])
def test_fit_matches_keras(weighting):
    """Three epochs of ``fit`` without shuffling match Keras's: the History (loss and accuracy
    per epoch, a running mean over batches weighted by their sizes; validation on the last 20%
    of the samples, as Keras splits) and the weights at the end. 100 samples with batches of
    32 leave a partial last batch (80 training samples: 32, 32, 16). ``metrics`` ignore sample
    and class weights, ``weighted_metrics`` use them (Keras 3), and the weighted accuracy is
    logged as ``weighted_accuracy`` next to the plain one."""
    import keras
    from keras_from_spec import keras_model_from_spec

    path = Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml"
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, 32)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.float32)[:, None]
    kw = {}
    if weighting == "class_weight":
        kw["class_weight"] = {0: 1.0, 1: 2.5}
    elif weighting == "sample_weight":
        kw["sample_weight"] = rng.uniform(0.2, 2.0, size=100).astype(np.float32)
    m = nnspec.load(path, seed=3)
    km = keras_model_from_spec(path)
    km.set_weights(m.get_weights())
    metrics = {"metrics": ["accuracy"], "weighted_metrics": ["accuracy", "mse"]}
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy", **metrics)
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy", **metrics)
    ours = m.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, shuffle=False, verbose=0, **kw).history
    theirs = km.fit(
        x, y, batch_size=32, epochs=3, validation_split=0.2, shuffle=False, verbose=0, **kw
    ).history
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for k, (a, b) in enumerate(zip(m.get_weights(), km.get_weights())):
        close(a, b, 1e-4, f"weight {k} after fit")


@pytest.mark.keras
def test_keras_class_names_and_a_loss_mapping_train_as_in_keras():
    """Keras's ``compile`` takes class names as strings (``"AUC"``, ``"CategoricalCrossentropy"``)
    and logs metrics under the string given; a loss with arguments is a mapping in nnspec (a
    ``keras.losses`` object in Keras). A file's ``training`` section takes the same names (a
    ``.keras`` archive's compile config holds them), and a mapping with a ``type`` key that names
    no output is one loss for every output."""
    import keras
    from keras_from_spec import keras_model_from_spec

    path = Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml"
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 32)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.float32)[:, None]
    m = nnspec.load(path, seed=3)
    km = keras_model_from_spec(path)
    km.set_weights(m.get_weights())
    metrics = ["AUC", "Precision", "BinaryAccuracy", "KLDivergence", "bce"]
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), metrics=metrics,
              loss={"type": "BinaryCrossentropy", "label_smoothing": 0.1})  # fmt: skip
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), metrics=metrics,
               loss=keras.losses.BinaryCrossentropy(label_smoothing=0.1))  # fmt: skip
    ours = m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    theirs = km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-6, err_msg=key)

    spec = yaml.safe_load(path.read_text())
    spec["training"] = {"optimizer": "sgd", "loss": {"type": "CategoricalCrossentropy", "label_smoothing": 0.1},
                        "metrics": ["AUC", "Precision", "kl_divergence", "TopKCategoricalAccuracy"]}  # fmt: skip
    spec["layers"]["output"].update(units=3, activation="softmax")
    f = nnspec.load(yaml.safe_dump(spec), seed=0)
    f.compile()
    logs = f.evaluate(x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)], verbose=0, return_dict=True)
    assert set(logs) == {"loss", "AUC", "Precision", "kl_divergence", "TopKCategoricalAccuracy"}

    inp = nnspec.Input((5,))
    two = nnspec.Model(inp, [nnspec.layers.Dense(1)(inp), nnspec.layers.Dense(2)(inp)])
    huber = {"type": "huber", "delta": 0.1}
    two.compile(optimizer="sgd", loss=huber)
    xs = rng.normal(size=(4, 5)).astype(np.float32)
    ys = [rng.normal(size=(4, 1)).astype(np.float32) * 3, rng.normal(size=(4, 2)).astype(np.float32) * 3]
    want = sum(float(nnspec.losses.get(huber)(t, p)) for t, p in zip(ys, two.predict(xs)))
    assert float(two.evaluate(xs, ys, verbose=0)[0]) == pytest.approx(want, rel=1e-5)
    assert want != pytest.approx(sum(float(nnspec.losses.get("huber")(t, p)) for t, p in zip(ys, two.predict(xs))))


@pytest.mark.keras
@pytest.mark.parametrize("loss", [
    {"type": "BinaryFocalCrossentropy", "apply_class_balancing": True, "gamma": 1.5},
    {"type": "categorical_focal_crossentropy", "alpha": 0.5, "from_logits": True},
    {"type": "CategoricalGeneralizedCrossEntropy", "q": 0.7},
], ids=lambda c: c["type"])  # fmt: skip
def test_focal_and_generalized_crossentropies_train_as_in_keras(loss):
    """Keras's focal crossentropies and generalized crossentropy as a training loss: two epochs of
    ``fit`` (losses, metrics) and the weights after, against Keras's loss objects."""
    import keras
    from keras_from_spec import keras_model_from_spec

    path = Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml"
    spec = yaml.safe_load(path.read_text())
    binary = loss["type"].startswith("Binary")
    out = {"units": 1, "activation": "sigmoid"} if binary else {"units": 4, "activation": (
        "linear" if loss.get("from_logits") else "softmax")}  # fmt: skip
    spec["layers"]["output"].update(out)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(40, 32)).astype(np.float32)
    labels = (x[:, :4] @ rng.normal(size=(4, 4))).argmax(1)
    y = (labels[:, None] > 1).astype(np.float32) if binary else (
        labels if "Generalized" in loss["type"] else np.eye(4, dtype=np.float32)[labels])  # fmt: skip
    m = nnspec.load(yaml.safe_dump(spec), seed=2)
    km = keras_model_from_spec(yaml.safe_dump(spec))
    km.set_weights(m.get_weights())
    config = {k: v for k, v in loss.items() if k != "type"}
    cls = {"BinaryFocalCrossentropy": keras.losses.BinaryFocalCrossentropy,
           "categorical_focal_crossentropy": keras.losses.CategoricalFocalCrossentropy,
           "CategoricalGeneralizedCrossEntropy": keras.losses.CategoricalGeneralizedCrossEntropy}[loss["type"]]  # fmt: skip
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.5), loss=loss, metrics=["accuracy"])
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss=cls(**config), metrics=["accuracy"])
    ours = m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    theirs = km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


def test_fit_from_a_generator_and_an_iterable():
    """``fit`` on a generator with ``steps_per_epoch`` takes exactly those batches, epoch after
    epoch continuing the generator, and trains as ``train_on_batch`` on the same batches; a
    re-iterable source (``__iter__``) is read from the start every epoch."""
    rng = np.random.default_rng(7)
    batches = [(rng.normal(size=(8, 32)).astype(np.float32), (rng.random((8, 1)) > 0.5).astype(np.float32))
               for _ in range(6)]  # fmt: skip
    path = Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml"

    def model():
        m = nnspec.load(path, seed=5)
        m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
        return m

    drawn = []

    def gen():
        for b in batches:
            drawn.append(b)
            yield b

    a = model()
    hist = a.fit(gen(), steps_per_epoch=3, epochs=2, verbose=0)
    assert len(drawn) == 6 and len(hist.history["loss"]) == 2
    b = model()
    for bx, by in batches:
        b.train_on_batch(bx, by)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)

    class Source:  # like a dataset: each epoch iterates again from the first batch
        def __iter__(self):
            return iter(batches[:3])

    c = model()
    c.fit(Source(), epochs=2, verbose=0)
    d = model()
    for bx, by in batches[:3] * 2:
        d.train_on_batch(bx, by)
    for wc, wd in zip(c.get_weights(), d.get_weights()):
        np.testing.assert_array_equal(wc, wd)


@pytest.mark.keras
def test_freezing_layers_from_python_matches_keras():
    """``layer.trainable = False`` then ``compile`` (Keras's fine-tuning idiom): counts follow,
    weights are kept, and a training step moves exactly what Keras's moves; ``model.trainable``
    freezes and unfreezes every layer."""
    import keras
    from keras_from_spec import keras_model_from_spec

    path = Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml"
    m = nnspec.load(path, seed=6)
    km = keras_model_from_spec(path)
    km.set_weights(m.get_weights())
    before = m.get_weights()
    m.get_layer("hidden1").trainable = False
    km.get_layer("hidden1").trainable = False
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), before))
    assert (len(m.trainable_weights), len(m.non_trainable_weights)) == (
        len(km.trainable_weights),
        len(km.non_trainable_weights),
    )
    assert m.get_config()["layers"]["hidden1"]["trainable"] is False
    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 32)).astype(np.float32)
    y = (rng.random((16, 1)) > 0.5).astype(np.float32)
    m.compile(optimizer=nnspec.optimizers.Adam(), loss="binary_crossentropy")
    km.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy")
    assert abs(float(m.train_on_batch(x, y)) - float(km.train_on_batch(x, y))) < 1e-5
    for k, (a, b, a0) in enumerate(zip(m.get_weights(), km.get_weights(), before)):
        close(a, b, 1e-4, f"weight {k}")
        assert np.array_equal(a, a0) == (k < 2), k  # hidden1's kernel and bias only stay
    m.trainable = False
    assert not m.trainable and m.count_params() == sum(w.size for w in m.non_trainable_weights)
    m.trainable = True
    assert len(m.non_trainable_weights) == 0


@pytest.mark.keras
def test_masked_sequence_loss_with_sample_weights_matches_keras():
    """The tagger's padded sequences with a weight per step: the loss (masked steps left out)
    and one SGD step match Keras's."""
    import keras
    from keras_from_spec import keras_model_from_spec

    path = Path(__file__).resolve().parents[1] / "specs" / "bilstm_tagger.yaml"
    from keras_ref import keras_custom_loss

    doc, _, losses, x, ys = _case(path)
    xs = next(iter(x.values()))
    sw = np.random.default_rng(3).uniform(0.2, 2.0, size=ys[0].shape).astype(np.float32)
    m = nnspec.load(path, seed=1)
    km = keras_model_from_spec(path)
    for layer in m.layers:
        w = layer.get_weights() if hasattr(layer, "get_weights") else []
        if w:
            km.get_layer(layer.name).set_weights(w)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss=losses[0])
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=losses[0])
    a, b = (
        float(m.test_on_batch(xs, ys[0], sample_weight=sw)),
        float(km.test_on_batch(xs, ys[0], sample_weight=sw)),
    )
    assert abs(a - b) <= LOSS_TOL * abs(b), (a, b)
    a, b = (
        float(m.train_on_batch(xs, ys[0], sample_weight=sw)),
        float(km.train_on_batch(xs, ys[0], sample_weight=sw)),
    )
    assert abs(a - b) <= LOSS_TOL * abs(b), (a, b)
    for layer in m.layers:
        for k, (w, kw) in enumerate(zip(layer.get_weights() if hasattr(layer, "get_weights") else [],
                                        km.get_layer(layer.name).get_weights())):  # fmt: skip
            close(w, kw, WEIGHT_TOL, f"{layer.name} weight {k}")


@pytest.mark.keras
@pytest.mark.parametrize("opt", ["sgd", "rmsprop-centered", "adam-amsgrad", "nadam", "sgd-schedule"])
def test_summary_counts_optimizer_variables_as_keras(opt):
    """After a training step Keras's summary adds the optimizer's variables (iterations, the
    learning rate unless scheduled, the slots) to the total and prints ``Optimizer params``."""
    import keras
    from keras_from_spec import keras_model_from_spec

    path = Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml"

    def optimizer(lib):
        o = lib.optimizers
        return {"sgd": lambda: o.SGD(momentum=0.5), "rmsprop-centered": lambda: o.RMSprop(momentum=0.5, centered=True),
                "adam-amsgrad": lambda: o.Adam(amsgrad=True), "nadam": lambda: o.Nadam(),
                "sgd-schedule": lambda: o.SGD(o.schedules.ExponentialDecay(0.1, 10, 0.9))}[opt]()  # fmt: skip

    m, km = nnspec.load(path, seed=0), keras_model_from_spec(path)
    m.compile(optimizer=optimizer(nnspec), loss="mse")
    km.compile(optimizer=optimizer(keras), loss="mse")
    x, y = np.ones((4, 32), np.float32), np.zeros((4, 1), np.float32)
    m.train_on_batch(x, y)
    km.train_on_batch(x, y)
    ours, theirs = [], []
    m.summary(print_fn=ours.append)
    km.summary(print_fn=theirs.append)

    def totals(lines):
        return [line.strip() for line in "\n".join(lines).splitlines() if " params: " in line]

    assert totals(ours) == totals(theirs)
    assert any("Optimizer params" in line for line in totals(ours))
