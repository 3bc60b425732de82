"""The committed JSON Schema: no drift from the registry, valid draft-07, complete, and the seeds
validate against it with a stock validator (what an editor's YAML language server does)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import nnspec.specs.schema as schema_mod
from nnspec.layerdefs import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "src" / "nnspec" / "specs" / "schema.json"
SPECS = ROOT / "specs"
SEED_FILES = sorted(SPECS.glob("*.yaml"))
SEED_IDS = [p.stem for p in SEED_FILES]
GOLDEN_FILES = sorted((ROOT / "tests" / "golden").glob("*.json"))


@pytest.fixture(scope="module")
def schema():
    return json.loads(COMMITTED.read_text())


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft7Validator(schema)


def test_committed_schema_has_not_drifted():
    assert COMMITTED.read_text() == schema_mod.schema_text(), (
        "src/nnspec/specs/schema.json is out of date with the layer registry; regenerate it with "
        "`nnspec schema -o src/nnspec/specs/schema.json` and commit the result"
    )


def test_schema_text_is_deterministic():
    schema_mod.build_schema.cache_clear()
    first = schema_mod.schema_text()
    schema_mod.build_schema.cache_clear()
    assert schema_mod.schema_text() == first


def test_schema_is_valid_draft_07(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)


def test_every_registered_layer_type_has_a_definition(schema):
    """Every type a file may name; the internal CustomLayer (a file's custom types become it) is
    not one of them."""
    from nnspec.layerdefs import PUBLIC_LIST

    public = {d.name for d in PUBLIC_LIST}
    assert public == set(REGISTRY) - {"CustomLayer"}
    defs = schema["definitions"]["layers"]
    assert set(defs) == public, f"missing: {sorted(public - set(defs))}, unknown: {sorted(set(defs) - public)}"
    from nnspec.layerdefs import ALIASES

    enum = schema["definitions"]["layer"]["properties"]["type"]["anyOf"][0]["enum"]
    assert sorted(enum) == sorted([*public, *ALIASES])
    dispatched = [branch["if"]["properties"]["type"]["enum"] for branch in schema["definitions"]["layer"]["allOf"]]
    assert {names[0] for names in dispatched} == public
    assert {a: names[0] for names in dispatched for a in names[1:]} == ALIASES
    for defn in PUBLIC_LIST:
        name = defn.name
        d = defs[name]
        aliases = [a for a, t in ALIASES.items() if t == name]
        assert d["properties"]["type"] == ({"enum": [name, *aliases]} if aliases else {"const": name})
        assert set(d["properties"]) == {"type", *defn.attr_names}, name
        assert d["additionalProperties"] is False
        required = {a.name for a in defn.attrs if a.required}
        assert set(d["required"]) == {"type", *required}, name


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_every_seed_validates(path, validator):
    data = yaml.safe_load(path.read_text())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.name for p in GOLDEN_FILES])
def test_normalized_files_validate(path, validator):
    """The normalized form (every default written out) is a valid model file too."""
    data = json.loads(path.read_text())
    errors = list(validator.iter_errors(data))
    assert not errors, errors[0].message


# Mistakes the schema alone must refuse (each independent of the graph and shape checks).
BAD = {
    "unknown parameter": {"layers": {"d": {"type": "Dense", "unit": 3}}},
    "missing required": {"layers": {"d": {"type": "Dense"}}},
    "unknown layer type": {"layers": {"d": {"type": "Dense2", "units": 3}}},
    "wrong type": {"layers": {"d": {"type": "Dense", "units": "three"}}},
    "bad enum": {"layers": {"c": {"type": "Conv1D", "filters": 2, "kernel_size": 3, "padding": "full"}}},
    "unknown activation": {"layers": {"d": {"type": "Dense", "units": 3, "activation": "rleu"}}},
    "shares with parameters": {
        "layers": {"d": {"type": "Dense", "units": 3}, "e": {"shares": "d", "units": 4}}
    },
    "unknown top-level key": {"layer": {}},
    "zero dimension": {"inputs": {"x": {"shape": [0]}}},
    "unknown format": {"format": "nnspec/99"},
}


def _base() -> dict:
    return {
        "format": "nnspec/1",
        "inputs": {"x": {"shape": [4]}},
        "layers": {"d": {"type": "Dense", "units": 3}},
        "edges": ["x -> d"],
        "outputs": ["d"],
    }


def test_base_document_is_valid(validator):
    assert list(validator.iter_errors(_base())) == []


@pytest.mark.parametrize("name", list(BAD))
def test_schema_refuses(name, validator):
    doc = {**_base(), **BAD[name]}
    assert list(validator.iter_errors(doc)), f"the schema accepted: {name}"


def test_training_names_are_the_names_training_resolves():
    """The schema's loss and metric names (the file format, checked without importing the
    runtime) are exactly those ``compile`` resolves: Keras's names, aliases and class names."""
    from nnspec.runtime import losses, metrics

    assert set(schema_mod.LOSSES) == {*losses.LOSSES, *losses.ALIASES, "crossentropy", "ce"}
    runtime_metrics = {*metrics._CLASSES, *metrics._LOSS_METRICS, *metrics._ALIASES, "accuracy", "acc"}
    assert set(schema_mod.METRICS) == runtime_metrics


@pytest.mark.keras
def test_keras_layer_aliases_load_as_their_class(validator):
    """Keras exports some classes under a second name (``keras.layers.MaxPool2D`` is
    ``MaxPooling2D``). A model file and ``nnspec.layers`` take every such name; loading writes
    the class name, as Keras's ``get_config`` and summary name the class."""
    import inspect

    import keras

    import nnspec
    from nnspec.layerdefs import ALIASES

    exported = {n: c.__name__ for n, c in vars(keras.layers).items()
                if inspect.isclass(c) and c.__name__ != n and c.__name__ in REGISTRY}  # fmt: skip
    assert ALIASES == exported
    for alias, cls in ALIASES.items():
        assert getattr(nnspec.layers, alias) is getattr(nnspec.layers, cls)

    doc = {
        "format": "nnspec/1",
        "inputs": {"x": {"shape": [6, 8, 8, 3]}},
        "layers": {
            "c": {"type": "TimeDistributed", "layer": {"type": "Convolution2D", "filters": 4, "kernel_size": 3}},
            "p": {"type": "TimeDistributed", "layer": {"type": "MaxPool2D"}},
            "g": {"type": "TimeDistributed", "layer": {"type": "GlobalAvgPool2D"}},
            "s": {"type": "SeparableConvolution1D", "filters": 2, "kernel_size": 2},
            "m": {"type": "GlobalMaxPool1D"},
        },
        "edges": ["x -> c -> p -> g -> s -> m"],
        "outputs": ["m"],
    }
    assert list(validator.iter_errors(doc)) == []  # the published schema, for editors
    m = nnspec.load(json.dumps(doc))
    types = {n: spec["type"] for n, spec in json.loads(m.to_json())["layers"].items()}
    assert types == {"c": "TimeDistributed", "p": "TimeDistributed", "g": "TimeDistributed",
                     "s": "SeparableConv1D", "m": "GlobalMaxPooling1D"}  # fmt: skip
    assert json.loads(m.to_json())["layers"]["c"]["layer"]["type"] == "Conv2D"
    x = keras.Input((6, 8, 8, 3))
    h = keras.layers.TimeDistributed(keras.layers.Convolution2D(4, 3))(x)
    h = keras.layers.TimeDistributed(keras.layers.GlobalAvgPool2D())(keras.layers.TimeDistributed(keras.layers.MaxPool2D())(h))
    km = keras.Model(x, keras.layers.GlobalMaxPool1D()(keras.layers.SeparableConvolution1D(2, 2)(h)))
    assert m.count_params() == km.count_params()
    assert m.outputs[0].shape == km.outputs[0].shape

    bad = {**doc, "custom_layers": {"MaxPool2D": {"call": "x"}}}
    with pytest.raises(nnspec.SpecError, match="name of a built-in layer type"):
        nnspec.load(json.dumps(bad))
