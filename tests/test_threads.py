"""Splitting a batch over worker threads (``runtime/executor.py``) changes nothing but the time.

Every seed model predicts a batch split into uneven parts (forced with a small
``MIN_PART_WORK``) as it predicts it in one call: same shapes, same values within float32
rounding (the parts' products are blocked differently by BLAS). Inputs are the end-to-end
tests' (5 samples; padding ids at the end of most rows for the masked models, a different
amount per row, so each part has its own masks). The rule deciding the split is checked on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import nnspec
from nnspec.runtime import executor
from nnspec.runtime.kernels import seed_kernels

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_seed_predictions import BATCH, SEED_FILES, SEED_IDS, _as_list, _inputs


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_split_batch_predicts_what_one_call_does(path, monkeypatch):
    doc = yaml.safe_load(path.read_text())
    m = nnspec.load(path, seed=0)
    x = _inputs(doc, m)
    ex = m._executor(tuple(a.shape[1:] for a in m._prepare_inputs(x)))
    monkeypatch.setattr(ex, "threads", 1)
    whole = _as_list(m.predict_on_batch(x))
    monkeypatch.setattr(ex, "threads", 3)
    monkeypatch.setattr(executor, "MIN_PART_WORK", 1)
    assert executor.split_counts(BATCH, ex.work_per_sample, ex.threads) == [2, 2, 1]
    calls = []
    real_run = ex.run
    monkeypatch.setattr(ex, "run", lambda *a: calls.append(a[0].shape[0]) or real_run(*a))
    parts = _as_list(m.predict_on_batch(x))
    assert sorted(calls) == [1, 2, 2]
    assert len(parts) == len(whole)
    for a, b in zip(parts, whole):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(b).max())))


def test_split_counts_rule(monkeypatch):
    monkeypatch.setattr(executor, "MIN_PART_WORK", 100)
    assert executor.split_counts(10, 5, 4) == [10]  # 50 multiply-adds: not worth a thread
    assert executor.split_counts(10, 20, 4) == [5, 5]  # 200: two parts of at least 100
    assert executor.split_counts(10, 1000, 4) == [3, 3, 2, 2]  # at most one part per thread
    assert executor.split_counts(3, 1000, 8) == [1, 1, 1]  # at most one part per sample
    assert executor.split_counts(10, 1000, 1) == [10]  # NNSPEC_THREADS=1
    for n in range(1, 40):
        counts = executor.split_counts(n, 37, 3)
        assert sum(counts) == n and max(counts) - min(counts) <= 1


def test_work_estimate_counts_products_not_lookups():
    m = nnspec.load(Path(__file__).resolve().parent.parent / "specs" / "lstm_text.yaml")
    plan = m._executor(((100,),)).plan
    # LSTM: (128 + 64) x 256 weights applied at each of 100 steps; the dense head; one per value
    products = (128 * 256 + 64 * 256) * 100 + 64 * 32 + 32 * 1
    work = executor.work_per_sample(plan)
    assert products < work < products + 100 * 128 * 4  # the embedding adds its outputs, not its table


@pytest.mark.parametrize(
    "value,expect", [("3", "3"), ("1", "1"), ("zero", "NNSPEC_THREADS must be a positive integer")]
)
def test_nnspec_threads_variable(value, expect):
    code = "from nnspec.runtime.numba_config import worker_threads; print(worker_threads())"
    env = {**os.environ, "NNSPEC_THREADS": value}
    r = subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True)
    assert expect in (r.stdout + r.stderr)


def _train_once(path, threads: int, monkeypatch, **fit_args):
    """One SGD step of the seed (file's losses) with ``threads`` worker threads and every batch
    worth splitting; returns (loss values, weights after, the trainer's parts)."""
    from test_training_seeds import _case

    from nnspec.runtime import trainer as trainer_mod

    monkeypatch.setattr(executor, "MIN_PART_WORK", 1)
    monkeypatch.setattr(trainer_mod, "worker_threads", lambda: threads)
    _, _, losses, x, ys = _case(path)
    m = nnspec.load(path, seed=1)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1, momentum=0.9),
              loss=losses if len(losses) > 1 else losses[0])  # fmt: skip
    xs = x if len(x) > 1 else next(iter(x.values()))
    y = ys if len(ys) > 1 else ys[0]
    loss = np.atleast_1d(np.asarray(m.train_on_batch(xs, y, **fit_args), np.float64))
    (tr,) = m._trainers.values()
    return loss, m.get_weights(), tr


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_split_training_step_equals_one_call(path, monkeypatch):
    """A training step split over threads gives the whole batch's loss and update (bilstm_tagger:
    its per-step loss is masked where tokens are padding, a different count per row)."""
    loss1, w1, _ = _train_once(path, 1, monkeypatch)
    loss3, w3, tr = _train_once(path, 3, monkeypatch)
    assert len(tr._parts) == 3
    np.testing.assert_allclose(loss3, loss1, rtol=1e-5)
    for a, b in zip(w3, w1):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(np.abs(b).max())))


WEIGHTED = """
format: nnspec/1
name: weighted
inputs:
  x: {shape: [6]}
layers:
  d1: {type: Dense, units: 8, activation: tanh, kernel_regularizer: {type: l2, l2: 0.05},
       activity_regularizer: {type: l1, l1: 0.02}}
  extra: {type: EXTRA}
  a: {type: Dense, units: 3, activation: softmax, bias_regularizer: {type: l1, l1: 0.1}}
  b: {type: Dense, units: 1}
edges:
  - x -> d1 -> extra -> a
  - extra -> b
outputs: [a, b]
"""


def _weighted_step(extra: str, threads: int, monkeypatch):
    from nnspec.runtime import trainer as trainer_mod

    monkeypatch.setattr(executor, "MIN_PART_WORK", 1)
    monkeypatch.setattr(trainer_mod, "worker_threads", lambda: threads)
    m = nnspec.load(WEIGHTED.replace("{type: EXTRA}", extra), seed=3)
    m.compile(optimizer="sgd", loss=["categorical_crossentropy", "mse"], loss_weights={"a": 1.0, "b": 0.2},
              metrics=["accuracy"])  # fmt: skip
    rng = np.random.default_rng(4)
    x = rng.normal(size=(11, 6)).astype(np.float32)
    ya = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 11)]
    yb = rng.normal(size=(11, 1)).astype(np.float32)
    sw = rng.uniform(0, 2, 11).astype(np.float32)
    seed_kernels(5)  # the same draws for the random layers in both runs
    out = m.train_on_batch(x, [ya, yb], sample_weight=[sw, sw[::-1].copy()])
    (tr,) = m._trainers.values()
    return np.asarray(out, np.float64), m.get_weights(), len(tr._parts)


@pytest.mark.parametrize(
    "extra,splits",
    [
        ("{type: Activation, activation: relu}", True),
        ("{type: LayerNormalization}", True),  # statistics per sample: still splittable
        ("{type: BatchNormalization}", False),  # statistics over the batch
        ("{type: Dropout, rate: 0.3}", False),  # draws from the calling thread's generator
        ("{type: GaussianNoise, stddev: 0.1}", False),
    ],
)
def test_split_step_with_penalties_sample_weights_and_two_losses(extra, splits, monkeypatch):
    """Weight and activity penalties, per-output sample weights, loss weights and a metric: the
    split step is the whole batch's; layers that couple samples or draw random numbers keep the
    batch whole."""
    out1, w1, parts1 = _weighted_step(extra, 1, monkeypatch)
    out3, w3, parts3 = _weighted_step(extra, 3, monkeypatch)
    assert parts1 == 1 and parts3 == (3 if splits else 1)
    np.testing.assert_allclose(out3, out1, rtol=1e-5)
    for a, b in zip(w3, w1):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * max(1.0, float(np.abs(b).max())))


SEQUENCE = """
format: nnspec/1
name: sequence
inputs:
  x: {shape: [5, 3]}
layers:
  rnn: RNN_LAYER
  out: {type: Dense, units: 2}
edges:
  - x -> rnn -> out
outputs: [out]
"""


@pytest.mark.parametrize(
    "layer,splits",
    [
        ("{type: LSTM, units: 4}", True),
        ("{type: LSTM, units: 4, dropout: 0.2}", False),  # dropout masks: the caller's generator
        ("{type: GRU, units: 4, recurrent_dropout: 0.3}", False),
        ("{type: RNN, cell: {type: SimpleRNNCell, units: 4, dropout: 0.1}}", False),
        ("{type: Bidirectional, layer: {type: LSTM, units: 2, recurrent_dropout: 0.5}}", False),
        ("{type: Bidirectional, layer: {type: GRU, units: 2}}", True),
    ],
)
def test_recurrent_dropout_keeps_the_training_batch_whole(layer, splits, monkeypatch):
    """A recurrent layer that draws dropout masks in training never has its batch split: the
    draws would come from the worker threads' generators, unseeded and run-dependent."""
    from nnspec.runtime import trainer as trainer_mod

    monkeypatch.setattr(executor, "MIN_PART_WORK", 1)
    monkeypatch.setattr(trainer_mod, "worker_threads", lambda: 3)
    m = nnspec.load(SEQUENCE.replace("RNN_LAYER", layer), seed=1)
    m.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    m.train_on_batch(rng.normal(size=(9, 5, 3)).astype(np.float32), rng.normal(size=(9, 2)).astype(np.float32))
    (tr,) = m._trainers.values()
    assert len(tr._parts) == (3 if splits else 1)


def test_split_step_with_a_masking_layer_and_a_per_step_loss(monkeypatch):
    """A per-step loss over steps masked by a Masking layer: each part's share of the valid
    steps is counted from the input before the step."""
    from test_masking import TAGGER, _inputs

    from nnspec.runtime import trainer as trainer_mod

    monkeypatch.setattr(executor, "MIN_PART_WORK", 1)
    x = _inputs(0.0)
    y = np.eye(4, dtype=np.float32)[np.random.default_rng(3).integers(0, 4, (5, 6))]
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(trainer_mod, "worker_threads", lambda t=threads: t)
        m = nnspec.load(TAGGER, seed=2)
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        loss = float(m.train_on_batch(x, y))
        (tr,) = m._trainers.values()
        assert len(tr._parts) == threads
        results.append((loss, m.get_weights()))
    (l1, w1), (l3, w3) = results
    assert abs(l3 - l1) <= 1e-6 * abs(l1)
    for a, b in zip(w3, w1):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * max(1.0, float(np.abs(b).max())))


def test_blas_is_limited_even_when_scipy_was_imported_first():
    """A program that imports SciPy before running a model already has OpenBLAS loaded with a
    thread per core; nnspec limits it to one per part (threadpoolctl), as when it loads it."""
    code = """
import scipy.linalg
from threadpoolctl import threadpool_info
def blas():
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
before = blas()
import numpy as np, nnspec
m = nnspec.load(%r)
m.predict(np.zeros((1, 32), np.float32))
print(before, blas())
""" % str(Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "NNSPEC_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    before, after = map(int, r.stdout.split())
    if before == 1:
        pytest.skip("one core: OpenBLAS starts with one thread, there is nothing to limit")
    assert after == 1, (before, after)


def test_scipys_blas_is_loaded_without_the_rest_of_scipy_linalg():
    """numba_config.preload_blas: the first prediction loads only SciPy's cython_blas (all of
    scipy.linalg took 170-260 ms of a warm start), with its OpenBLAS on one thread (NumPy's own
    OpenBLAS, loaded before nnspec, is not the one Numba calls), and a later import of
    scipy.linalg by the user works as usual, with the same cython_blas module."""
    code = """
import sys
import numpy as np, nnspec
m = nnspec.load(%r)
y = m.predict(np.zeros((1, 32), np.float32))
assert "scipy.linalg.cython_blas" in sys.modules
print("linalg-before", "scipy.linalg" in sys.modules)
from threadpoolctl import threadpool_info
print("threads", [i["num_threads"] for i in threadpool_info() if "scipy.libs" in i["filepath"]])
import scipy.linalg
print("same", scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"])
print("sgemm", scipy.linalg.blas.sgemm(1.0, np.eye(2, dtype=np.float32), np.full((2, 2), 3, np.float32)).sum())
print("again", np.array_equal(m.predict(np.zeros((1, 32), np.float32)), y))
""" % str(Path(__file__).resolve().parents[1] / "specs" / "mlp.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "NNSPEC_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = dict(line.split(" ", 1) for line in r.stdout.split("\n") if line)
    assert got == {"linalg-before": "False", "threads": "[1]", "same": "True", "sgemm": "12.0", "again": "True"}
