"""The running half of the Python API: predict, weights, weights files, input errors, caching."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.specs.errors import InputError, WeightsError

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture(scope="module")
def mlp():
    return nnspec.load(SPECS / "mlp.yaml", seed=0)


@pytest.fixture(scope="module")
def siamese():
    return nnspec.load(SPECS / "siamese_lstm.yaml", seed=0)


def _dense_forward(x, weights, acts):
    """An independent NumPy MLP forward pass over (kernel, bias) pairs."""
    funcs = {"relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v))}
    h = x.astype(np.float64)
    for (k, b), act in zip(zip(weights[::2], weights[1::2]), acts):
        h = funcs[act](h @ k + b)
    return h


def test_mlp_predict_matches_numpy(mlp):
    x = np.random.default_rng(1).normal(size=(5, 32)).astype(np.float32)
    want = _dense_forward(x, mlp.get_weights(), ["relu", "relu", "relu", "sigmoid"])
    np.testing.assert_allclose(mlp.predict(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mlp(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mlp.predict_on_batch(x), want, rtol=1e-5, atol=1e-6)


def test_predict_in_batches_equals_one_batch(mlp):
    x = np.random.default_rng(2).normal(size=(70, 32)).astype(np.float32)
    np.testing.assert_allclose(mlp.predict(x, batch_size=16), mlp.predict_on_batch(x), rtol=1e-6)


def test_batch_size_does_not_recompile(mlp):
    for n in (1, 3, 17, 64):
        mlp.predict_on_batch(np.zeros((n, 32), np.float32))
    assert len(mlp._executors) == 1
    (ex,) = mlp._executors.values()
    assert len(ex.run.signatures) == 1


def test_weights_follow_keras_order_and_shapes(mlp):
    shapes = [w.shape for w in mlp.get_weights()]
    assert shapes == [(32, 10), (10,), (10, 20), (20,), (20, 10), (10,), (10, 1), (1,)]


def test_initialization_is_deterministic_per_seed():
    a = nnspec.load(SPECS / "mlp.yaml", seed=3).get_weights()
    b = nnspec.load(SPECS / "mlp.yaml", seed=3).get_weights()
    c = nnspec.load(SPECS / "mlp.yaml", seed=4).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_initializers_follow_keras_definitions():
    m = nnspec.load(SPECS / "lstm_text.yaml", seed=0)
    w = {n: m.get_layer(n).get_weights() for n in ("embed", "lstm", "hidden")}
    emb = w["embed"][0]
    assert emb.shape == (10000, 128) and emb.min() >= -0.05 and emb.max() <= 0.05  # uniform(-0.05, 0.05)
    kernel, recurrent, bias = w["lstm"]
    limit = np.sqrt(6 / (128 + 256))  # glorot_uniform, fans (128, 256)
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    # orthogonal (64, 256): rows orthonormal
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(64), atol=1e-5)
    # unit_forget_bias: zeros, ones for the forget gate (second block), zeros
    np.testing.assert_array_equal(bias, np.concatenate([np.zeros(64), np.ones(64), np.zeros(128)]))
    assert not np.any(w["hidden"][1])  # zero biases


def test_set_weights_checks_count_and_shapes(mlp):
    ws = mlp.get_weights()
    with pytest.raises(WeightsError, match="8 weight arrays"):
        mlp.set_weights(ws[:-1])
    bad = list(ws)
    bad[2] = np.zeros((11, 20), np.float32)
    with pytest.raises(WeightsError, match=r"hidden2.*expected shape \(10, 20\), found \(11, 20\)"):
        mlp.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(ws, mlp.get_weights()))  # nothing changed


def test_layer_get_set_weights(mlp):
    layer = mlp.get_layer("hidden1")
    k, b = layer.get_weights()
    layer.set_weights([k * 2, b + 1])
    k2, b2 = mlp.get_weights()[:2]
    np.testing.assert_array_equal(k2, k * 2)
    np.testing.assert_array_equal(b2, b + 1)
    layer.set_weights([k, b])


def test_shared_layer_weights_counted_once(siamese):
    shapes = [w.shape for w in siamese.get_weights()]
    assert shapes == [(256, 256), (64, 256), (256,), (128, 1), (1,)]


def test_save_and_load_weights_round_trip(tmp_path, mlp):
    path = tmp_path / "w.safetensors"
    mlp.save_weights(path)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left behind
    other = nnspec.load(SPECS / "mlp.yaml", seed=99)
    other.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(mlp.get_weights(), other.get_weights()))
    x = np.ones((2, 32), np.float32)
    np.testing.assert_array_equal(other.predict(x), mlp.predict(x))


def test_safetensors_file_layout(tmp_path, mlp):
    """The file follows the safetensors layout: u64 header length, JSON header, raw data."""
    path = tmp_path / "w.safetensors"
    mlp.save_weights(path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    assert header["hidden1/kernel"]["shape"] == [32, 10] and header["hidden1/kernel"]["dtype"] == "F32"
    a, b = header["hidden1/kernel"]["data_offsets"]
    data = np.frombuffer(raw[8 + n + a : 8 + n + b], "<f4").reshape(32, 10)
    np.testing.assert_array_equal(data, mlp.get_layer("hidden1").get_weights()[0])


def test_safetensors_interoperates_with_the_reference_library(tmp_path, mlp):
    import safetensors.numpy as st  # a test extra: the reference implementation of the format
    path = tmp_path / "w.safetensors"
    mlp.save_weights(path)
    theirs = st.load_file(str(path))
    assert set(theirs) == {p.name for p in mlp.plan().params}
    tensors = {k: v * 0 + 0.5 for k, v in theirs.items()}
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    other = nnspec.load(SPECS / "mlp.yaml", seed=1)
    other.load_weights(tmp_path / "theirs.safetensors")
    assert all(np.all(w == 0.5) for w in other.get_weights())


def test_load_weights_errors_name_layer_weight_and_shapes(tmp_path, mlp):
    from nnspec.runtime.weights import write_safetensors

    ws = {p.name: mlp._weights().view(p.name) for p in mlp.plan().params}
    missing = dict(ws)
    del missing["output/bias"]
    write_safetensors(tmp_path / "missing.safetensors", missing)
    with pytest.raises(WeightsError, match=r"missing tensor 'output/bias' \(layer 'output', shape \(1,\)\)"):
        mlp.load_weights(tmp_path / "missing.safetensors")
    extra = dict(ws, **{"ghost/kernel": np.zeros(3, np.float32)})
    write_safetensors(tmp_path / "extra.safetensors", extra)
    with pytest.raises(WeightsError, match="unexpected tensor 'ghost/kernel'"):
        mlp.load_weights(tmp_path / "extra.safetensors")
    wrong = dict(ws, **{"hidden2/kernel": np.zeros((10, 21), np.float32)})
    write_safetensors(tmp_path / "wrong.safetensors", wrong)
    before = mlp.get_weights()
    with pytest.raises(WeightsError, match=r"layer 'hidden2' weight 'hidden2/kernel': expected shape \(10, 20\), "
                                           r"found \(10, 21\)"):  # fmt: skip
        mlp.load_weights(tmp_path / "wrong.safetensors")
    assert all(np.array_equal(a, b) for a, b in zip(before, mlp.get_weights()))
    report = mlp.load_weights(tmp_path / "wrong.safetensors", by_name=True)
    assert report["mismatched"] == [("hidden2/kernel", (10, 20), (10, 21))]
    assert "hidden1/kernel" in report["loaded"]


def test_malformed_weights_file_is_one_clear_error(tmp_path, mlp):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 20)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        mlp.load_weights(bad)
    with pytest.raises(WeightsError, match="cannot read"):
        mlp.load_weights(tmp_path / "nope.safetensors")
    missing = tmp_path / "no_such_folder" / "w.safetensors"
    with pytest.raises(WeightsError, match=re.escape(f"{missing}: cannot write the weights file: No such file")):
        mlp.save_weights(missing)  # one error naming the file (not the temporary file's name)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 31), np.float32), r"input 'x': expected shape \(None, 32\); got \(2, 31\)"),
        (np.zeros((2, 32, 1), np.float32), r"input 'x': expected an array of rank 2"),
        (np.array([["a"] * 32]), r"input 'x': expected numbers"),
        ({"y": np.zeros((2, 32))}, r"unknown input 'y'"),
        ({}, r"missing input 'x'"),
    ],
)
def test_bad_inputs_get_clear_errors(mlp, x, message):
    with pytest.raises(InputError, match=message):
        mlp.predict(x)


def test_multi_input_models_take_lists_and_dicts(siamese):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 140, 256)).astype(np.float32)
    b = rng.normal(size=(2, 140, 256)).astype(np.float32)
    by_list = siamese.predict([a, b])
    by_dict = siamese.predict({"tweet_b": b, "tweet_a": a})
    np.testing.assert_array_equal(by_list, by_dict)
    with pytest.raises(InputError, match="different batch sizes"):
        siamese.predict([a, b[:1]])
    with pytest.raises(InputError, match="takes 2 inputs"):
        siamese.predict([a])


def test_one_input_and_one_output_also_taken_in_a_list():
    """Keras takes ``[x]`` for a model with one input and ``[y]`` for one with one output; a
    nested list of numbers stays one batch."""
    m = nnspec.load(SPECS / "mlp.yaml", seed=0)
    x = np.random.default_rng(0).normal(size=(3, *m.inputs[0].shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(m.predict([x]), m.predict(x))
    np.testing.assert_array_equal(m([x]), m(x))
    np.testing.assert_array_equal(m.predict(x[:1].tolist()), m.predict(x[:1]))
    m.compile(optimizer="sgd", loss="mse")
    y = np.ones((3, 1), np.float32)
    assert m.test_on_batch([x], [y]) == m.test_on_batch(x, y) > 0
    assert m.evaluate([x], [y], verbose=0) == m.evaluate(x, y, verbose=0)


def test_intermediate_outputs_share_weights():
    m = nnspec.load(SPECS / "cnn.yaml", seed=0)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    full = m.predict(x)
    feat = nnspec.Model(inputs=m.inputs, outputs=[m.get_layer("conv2").output])
    f = feat.predict(x)
    assert f.shape == (2, 28, 28, 32)
    plan = feat.plan()
    assert [s.node for s in plan.steps] == ["conv1", "pool1", "conv2"]
    # its weights are the full model's, set through the full model itself
    rng = np.random.default_rng(1)
    m.set_weights([w + rng.normal(scale=0.1, size=w.shape).astype(w.dtype) for w in m.get_weights()])
    mine = feat.get_weights()
    assert len(mine) == 4
    for a, b in zip(mine, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(feat.predict(x), f)
    f = feat.predict(x)
    # the feature model reads the same weights: changing them through the full model shows
    k, b = m.get_layer("conv2").get_weights()
    m.get_layer("conv2").set_weights([k, b + 1.0])
    np.testing.assert_allclose(feat.predict(x), np.maximum(f, 0) * 0 + feat.predict(x), rtol=0)
    assert not np.allclose(feat.predict(x), f)
    assert m.predict(x).shape == full.shape


def test_second_process_loads_compiled_code_from_the_cache(tmp_path):
    code = (
        "import numpy as np, nnspec\n"
        f"m = nnspec.load({str(SPECS / 'mlp.yaml')!r}, seed=0)\n"
        "m.predict(np.zeros((1, 32), np.float32))\n"
        "(ex,) = m._executors.values()\n"
        "print(sum(ex.run.stats.cache_hits.values()), sum(ex.run.stats.cache_misses.values()))\n"
    )
    env = dict(os.environ, NNSPEC_CACHE_DIR=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["0", "1"], first.stdout  # compiled once
    assert second.stdout.split() == ["1", "0"], second.stdout  # loaded from disk, not compiled


TINY = """
format: nnspec/1
name: eviction_probe
inputs:
  x: {shape: [3]}
layers:
  eviction_probe: {type: Dense, units: 7}
outputs: [eviction_probe]
"""


def test_plan_cache_keeps_the_most_recently_used_plans(tmp_path, monkeypatch):
    """Old plan modules (and their compiled code) are removed when a new plan is written; the
    plan just used stays, and so does the most recently used old one. (The model is used by no
    other test, so its plan is not already loaded in this process from another folder.)"""
    from nnspec.runtime import executor

    folder = tmp_path / "cache"
    (folder / "__pycache__").mkdir(parents=True)
    old = [f"nnspec_plan_{i:024x}" for i in range(3)]
    for age, name in enumerate(old):
        (folder / f"{name}.py").write_text("# an old plan\n")
        (folder / "__pycache__" / f"{name}.nnspec_run-10.py311.nbi").write_bytes(b"index")
        (folder / "__pycache__" / f"{name}.nnspec_run-10.py311.1.nbc").write_bytes(b"code")
        t = 1_000_000 + age * 1000  # old[2] is the most recent of them
        os.utime(folder / f"{name}.py", (t, t))
    monkeypatch.setenv("NNSPEC_CACHE_DIR", str(folder))
    monkeypatch.setenv("NNSPEC_CACHE_MAX_PLANS", "2")
    m = nnspec.load(TINY, seed=0)
    m.predict_on_batch(np.ones((2, 3), np.float32))
    plans = sorted(p.stem for p in folder.glob("nnspec_plan_*.py"))
    assert len(plans) == 2 and old[2] in plans and old[0] not in plans and old[1] not in plans
    compiled = {p.name.split(".")[0] for p in (folder / "__pycache__").iterdir()}
    assert old[0] not in compiled and old[1] not in compiled and old[2] in compiled
    # a plan in use is never removed, even beyond the limit
    assert executor.evict_plans(str(folder), 1, protect=set(plans)) == []


def test_predict_from_a_generator(mlp):
    """A generator of input batches (or of ``(x, y)`` tuples) predicts what the arrays do;
    ``steps`` stops after that many batches."""
    x = np.random.default_rng(0).normal(size=(10, 32)).astype(np.float32)
    want = mlp.predict(x)
    np.testing.assert_array_equal(mlp.predict(x[i : i + 4] for i in range(0, 10, 4)), want)
    np.testing.assert_array_equal(mlp.predict(iter([(x[:5], None), (x[5:], None)])), want)
    assert mlp.predict((x[i : i + 4] for i in range(0, 10, 4)), steps=2).shape == (8, 1)
    with pytest.raises(InputError, match="no batches"):
        mlp.predict(iter([]))


def test_a_long_plan_runs_as_several_compiled_parts(monkeypatch):
    """Plans longer than CHUNK_STEPS steps become parts a Python function calls in turn (Numba's
    compile time grows faster than a function's length); each part re-binds what it reads from
    earlier ones, including a value made several parts before (the skip connection) and the
    input, and the result is the plan's, batch size after batch size."""
    from nnspec.runtime import codegen

    monkeypatch.setattr(codegen, "CHUNK_STEPS", 3)
    i = nnspec.Input((6,))
    h = first = nnspec.layers.Dense(6, activation="relu")(i)
    for _ in range(7):
        h = nnspec.layers.Dense(6, activation="relu")(h)
    out = nnspec.layers.Dense(2, activation="sigmoid")(nnspec.layers.Add()([h, first, i]))
    m = nnspec.Model(i, out)
    x = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    w = m.get_weights()
    hs = [x.astype(np.float64)]
    for k in range(8):
        hs.append(np.maximum(hs[-1] @ w[2 * k] + w[2 * k + 1], 0))
    z = hs[-1] + hs[1] + hs[0]
    want = 1 / (1 + np.exp(-(z @ w[16] + w[17])))
    np.testing.assert_allclose(m.predict_on_batch(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.predict_on_batch(x[:1]), want[:1], rtol=1e-5, atol=1e-6)
    (ex,) = m._executors.values()
    assert "def nnspec_run_3(" in ex.source and "def nnspec_run_4(" not in ex.source  # 10 steps, 4 parts
    assert not hasattr(ex.run, "signatures")  # the driver is plain Python; its parts are compiled


def test_a_long_training_plan_runs_as_several_compiled_parts(monkeypatch):
    """The training step of a long plan is parts too (forward steps, the losses with the last
    forward part, backward steps): the same loss and weights after a step as the one function."""
    from nnspec.runtime import codegen

    def model():
        i = nnspec.Input((4,))
        h = first = nnspec.layers.Dense(4, activation="tanh", kernel_regularizer="l2")(i)
        for _ in range(4):
            h = nnspec.layers.BatchNormalization()(nnspec.layers.Dense(4, activation="tanh")(h))
        m = nnspec.Model(i, nnspec.layers.Dense(2)(nnspec.layers.Add()([h, first])), name=f"m{codegen.CHUNK_STEPS}")
        m.compile(optimizer="sgd", loss="mse")
        return m

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    whole = model()
    w0 = whole.get_weights()
    want = [whole.train_on_batch(x, y) for _ in range(2)]
    monkeypatch.setattr(codegen, "CHUNK_STEPS", 3)
    parts = model()
    parts.set_weights(w0)
    got = [parts.train_on_batch(x, y) for _ in range(2)]
    (tr,) = parts._trainers.values()
    assert "def nnspec_train_step_7(" in tr.source  # 11 steps forward and 11 backward, 3 per part
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for a, b in zip(parts.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_old_kernel_builds_are_removed_when_a_new_one_starts(tmp_path):
    """Each edit or upgrade of the kernels compiles into a new ``kernels/<source hash>`` folder
    (about 40 MB); a process that starts one removes the least recently used others beyond
    NNSPEC_CACHE_MAX_KERNEL_BUILDS, once unused for a week, and never the one it uses."""
    root = tmp_path / "kernels"
    old = [f"{i:016x}" for i in range(4)]
    for name, days in zip(old, (30, 29, 2, 0.04)):  # last used 30 and 29 days ago, 2 days, an hour
        (root / name).mkdir(parents=True)
        (root / name / "k.nbi").write_bytes(b"index")
        t = time.time() - days * 86400  # a file age to set (last use), not a measurement
        os.utime(root / name, (t, t))
    env = {**os.environ, "NNSPEC_CACHE_DIR": str(tmp_path), "NNSPEC_CACHE_MAX_KERNEL_BUILDS": "2"}
    code = "from nnspec.runtime.kernels import kernel_cache_dir; print(kernel_cache_dir())"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    current = Path(run.stdout.strip())
    assert current.parent == root and current.name not in old
    left = sorted(p.name for p in root.iterdir())
    # the limit of 2 makes the four old builds candidates; the month-old ones go, the ones used
    # in the last week stay
    assert left == sorted([current.name, old[2], old[3]])
    # a second process with the same build removes nothing
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert sorted(p.name for p in root.iterdir()) == left
