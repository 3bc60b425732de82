"""End to end: every seed model file in specs/ predicts what Keras predicts with the same weights.

Per seed: load the file with nnspec (``seed=0``; the biases, which start at zero, get a little
noise so their kernels' paths count), build the same model in Keras 3 (PyTorch backend) with the
independent converter ``tests/keras_from_spec.py``, copy nnspec's weights into Keras layer by
layer (by name: ``keras_model.get_layer(name).set_weights(nnspec_layer.get_weights())``; a
shared layer is one layer in both, a Bidirectional's list is the forward layer's weights then the
backward layer's, a TimeDistributed(Model)'s is the sub-model's), then predict the same random
inputs and require every output within a relative error of 1e-4 (max |difference| over max
|Keras output|).

Integer inputs get token ids in [1, vocabulary), with padding ids (0) at the end of most rows,
from none to all but one step, so the masked models (``Embedding(mask_zero=True)``) skip them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import nnspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPECS = Path(__file__).resolve().parent.parent / "specs"
SEED_FILES = sorted(SPECS.glob("*.yaml"))
SEED_IDS = [p.stem for p in SEED_FILES]
BATCH = 5
REL_TOL = 1e-4


def _vocabulary(doc: dict) -> int:
    dims = [s["input_dim"] for s in (doc.get("layers") or {}).values() if s.get("type") == "Embedding"]
    return min(dims) if dims else 100


def _inputs(doc: dict, model) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for name, decl in doc["inputs"].items():
        shape = (BATCH, *decl["shape"])
        if str(decl.get("dtype", "float32")).startswith("int"):
            ids = rng.integers(1, _vocabulary(doc), size=shape)
            steps = shape[1]
            for r in range(BATCH):  # padding at the end: none, some, all but one step
                pad = [0, steps // 3, steps - 1, 1, steps // 2][r % 5]
                if pad:
                    ids[r, steps - pad :] = 0
            out[name] = ids.astype(decl["dtype"])
        else:
            out[name] = rng.normal(0, 1, size=shape).astype(np.float32)
    return out


def _as_list(out) -> list:
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


@pytest.mark.keras
@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_seed_predictions_match_keras(path):
    from keras_from_spec import keras_model_from_spec

    doc = yaml.safe_load(path.read_text())
    m = nnspec.load(path, seed=0)
    rng = np.random.default_rng(1)
    m.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32) if w.ndim == 1 else w
                   for w in m.get_weights()])  # fmt: skip
    km = keras_model_from_spec(path)

    copied = 0
    for layer in m.layers:
        weights = layer.get_weights() if hasattr(layer, "get_weights") else []
        if not weights:
            continue
        km.get_layer(layer.name).set_weights(weights)
        copied += sum(w.size for w in weights)
    assert copied == m.count_params() == km.count_params()

    x = _inputs(doc, m)
    x = x if len(x) > 1 else next(iter(x.values()))  # Keras warns on a dict for one input
    got = _as_list(m.predict(x, batch_size=BATCH))
    want = _as_list(km.predict(x, batch_size=BATCH, verbose=0))
    assert [g.shape for g in got] == [k.shape for k in want]
    names = doc.get("outputs") or ["the output"]  # a file without edges has one output, the last layer's
    for name, g, k in zip(names, got, want):
        assert g.dtype == np.float32
        scale = float(np.max(np.abs(k)))
        err = float(np.max(np.abs(g.astype(np.float64) - k)))
        assert err <= REL_TOL * max(scale, 1e-6), f"output {name}: max error {err:.3g} at scale {scale:.3g}"
