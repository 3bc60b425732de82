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
