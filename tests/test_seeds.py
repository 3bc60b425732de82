"""The seed model files in specs/: parameter totals, and every summary row against real Keras.

The expected totals below are data, not nnspec output: they were measured by building each file
with Keras 3.15 (PyTorch backend) and reading ``model.count_params()``. The ``keras``-marked test
re-derives everything per layer from Keras itself, through the independent converter in
``tests/keras_from_spec.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import nnspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPECS = Path(__file__).resolve().parent.parent / "specs"
SEED_FILES = sorted(SPECS.glob("*.yaml"))
SEED_IDS = [p.stem for p in SEED_FILES]

# Total parameters of each seed, measured with Keras 3.15 (KERAS_BACKEND=torch):
# keras_model_from_spec(path).count_params().
KERAS_TOTAL_PARAMS = {
    "mlp": 771,
    "cnn": 610570,
    "lstm_text": 1331521,
    "bilstm_tagger": 1380106,
    "shared_input_cnn": 5782986,
    "shared_feature_lstm": 33802,
    "multi_input_cnn": 86793,
    "multi_output_seq": 1452,
    "headline": 5200610,
    "siamese_lstm": 82305,
    "video_classifier": 55050,
    "sequential_cnn": 49002,
    "transformer_text": 651358,
    "custom_layers": 55050,
}


def test_table_covers_every_seed_file():
    assert SEED_FILES, f"no seed files found in {SPECS}"
    assert set(SEED_IDS) == set(KERAS_TOTAL_PARAMS), (
        "KERAS_TOTAL_PARAMS must list exactly the files in specs/: "
        f"missing {sorted(set(SEED_IDS) - set(KERAS_TOTAL_PARAMS))}, "
        f"stale {sorted(set(KERAS_TOTAL_PARAMS) - set(SEED_IDS))}"
    )


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_total_params_match_keras_table(path):
    model = nnspec.load(path)
    d = model.summary_dict()
    expected = KERAS_TOTAL_PARAMS[path.stem]
    assert d["total_params"] == expected
    assert model.count_params() == expected
    assert d["trainable_params"] + d["non_trainable_params"] == expected
    # No seed freezes a layer, and none has BatchNormalization: everything is trainable.
    assert d["non_trainable_params"] == 0


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_seed_loads_without_warnings(path):
    model = nnspec.load(path)
    assert model.warnings == []


# ----------------------------------------------------------------------------- against Keras


@pytest.fixture(scope="module")
def keras_facts():
    """Build every seed with real Keras once for the module: name -> keras_summary_facts."""
    from keras_from_spec import keras_model_from_spec, keras_summary_facts

    return {p.stem: keras_summary_facts(keras_model_from_spec(p)) for p in SEED_FILES}


def _shape(s):
    """A Keras shape (tuple, or list of tuples for several outputs) as nnspec's JSON lists."""
    if isinstance(s, list):
        return [list(e) for e in s]
    return list(s)


@pytest.mark.keras
@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_summary_matches_keras(path, keras_facts):
    facts = keras_facts[path.stem]
    m = nnspec.load(path)
    d = m.summary_dict()
    printed = []
    m.summary(print_fn=printed.append)
    assert ("Connected to" in "\n".join(printed)) == facts["connected_to"], "Keras's columns"
    assert facts["total"] == KERAS_TOTAL_PARAMS[path.stem], "the provenance table is out of date"
    assert d["total_params"] == facts["total"]
    assert d["trainable_params"] == facts["trainable"]
    assert d["non_trainable_params"] == facts["non_trainable"]

    keras_rows = {name: (cls, shape, params) for name, cls, shape, params in facts["layers"]}
    ours = {row["name"]: row for row in d["layers"]}
    assert set(ours) == set(keras_rows), "the summaries list different layers"
    # Rows are matched by name: Keras orders a functional model's layers by graph depth, nnspec
    # (by design) lists inputs first, then layers in file order.
    for name, (cls, shape, params) in keras_rows.items():
        row = ours[name]
        assert row["output_shape"] == _shape(shape), f"{name}: output shape"
        assert row["params"] == params, f"{name}: params"
        if cls not in ("Functional", "Sequential"):
            assert row["type"] == cls, f"{name}: type"
