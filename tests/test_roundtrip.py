"""Serialization round trips: to_json / to_yaml / get_config rebuild the same model.

- Every seed: ``to_json`` is idempotent, and reading back its YAML or its config gives the same
  summary and the same plan.
- Golden files ``tests/golden/<seed>.normalized.json`` pin the normalized form of a few seeds
  (regenerate with ``python tests/test_roundtrip.py --regen``, then review the diff by eye).
  Their contents are also checked here against Keras's documented defaults, written out by hand.
- A Hypothesis property: random valid model files (chains and small DAGs of common layers) compile,
  with the output shape and parameter count an independent shape/param model predicts, and
  round-trip.
"""

from __future__ import annotations

import functools
import json
import math
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import nnspec
from nnspec import Model, model_from_json, model_from_yaml

HERE = Path(__file__).resolve().parent
SPECS = HERE.parent / "specs"
GOLDEN = HERE / "golden"
SEED_FILES = sorted(SPECS.glob("*.yaml"))
SEED_IDS = [p.stem for p in SEED_FILES]
GOLDEN_SEEDS = ("mlp", "siamese_lstm", "video_classifier")


def golden_text(seed: str) -> str:
    return nnspec.load(SPECS / f"{seed}.yaml").to_json() + "\n"


@functools.cache
def seed_model(path: Path) -> Model:
    """Each seed loaded once per test session (the tests only read the model)."""
    return nnspec.load(path)


# ----------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_to_json_is_idempotent(path):
    text = seed_model(path).to_json()
    assert model_from_json(text).to_json() == text


@pytest.mark.parametrize("number", ["1e-6", "1E-06", "2e+3", "5e3"])
@pytest.mark.parametrize("form", ["yaml", "json"])
def test_exponent_without_a_dot_is_a_number(number, form):
    """YAML 1.1 (PyYAML) reads a plain ``1e-6`` as a string; YAML 1.2 and JSON read a number, and
    so must nnspec (JSON writes small floats that way: to_json's own output must load). A
    quoted one stays a string and is refused where a number is expected."""
    layer = f'{{"type": "LayerNormalization", "epsilon": {number}}}'
    text = (f'{{"format": "nnspec/1", "inputs": {{"x": {{"shape": [4]}}}}, "layers": {{"n": {layer}}}}}'
            if form == "json" else f"format: nnspec/1\ninputs:\n  x: {{shape: [4]}}\nlayers:\n  n: {layer}\n")
    m = nnspec.load(text)
    assert m.get_layer("n").get_config()["epsilon"] == float(number)
    with pytest.raises(nnspec.SpecError, match="expected a number"):
        nnspec.load(text.replace(number, f'"{number}"'))


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_yaml_round_trip(path):
    m = seed_model(path)
    back = model_from_yaml(m.to_yaml())
    assert back.summary_dict() == m.summary_dict()
    assert back.plan().to_json() == m.plan().to_json()
    assert back.to_json() == m.to_json()


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_config_round_trip(path):
    m = seed_model(path)
    cfg = m.get_config()
    back = Model.from_config(cfg)
    assert back.summary_dict() == m.summary_dict()
    assert back.plan().to_json() == m.plan().to_json()
    assert back.get_config() == cfg
    # A file without edges is a Sequential model, and stays one.
    assert isinstance(back, nnspec.Sequential) == ("edges" not in cfg)


@pytest.mark.parametrize("path", SEED_FILES, ids=SEED_IDS)
def test_get_config_is_plain_json_data(path):
    cfg = seed_model(path).get_config()
    assert json.loads(json.dumps(cfg)) == cfg


# ----------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_normalized_form_matches_golden(seed):
    path = GOLDEN / f"{seed}.normalized.json"
    assert path.exists(), f"missing {path}; run: python tests/test_roundtrip.py --regen"
    assert seed_model(SPECS / f"{seed}.yaml").to_json() + "\n" == path.read_text(), (
        f"the normalized form of specs/{seed}.yaml changed; if intended, run "
        "`python tests/test_roundtrip.py --regen` and review the diff"
    )


# Keras 3's constructor defaults (keras.layers.Dense / LSTM / Concatenate signatures), written out
# by hand, in Keras's argument order, with nnspec's spelling of initializers (a name).
DENSE_DEFAULTS = {
    "activation": "linear",
    "use_bias": True,
    "kernel_initializer": "glorot_uniform",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
    "trainable": True,
    "dtype": "float32",
}
LSTM_DEFAULTS = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "use_bias": True,
    "kernel_initializer": "glorot_uniform",
    "recurrent_initializer": "orthogonal",
    "bias_initializer": "zeros",
    "unit_forget_bias": True,
    "kernel_regularizer": None,
    "recurrent_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "recurrent_constraint": None,
    "bias_constraint": None,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "seed": None,
    "return_sequences": False,
    "return_state": False,
    "go_backwards": False,
    "stateful": False,
    "unroll": False,
    "zero_output_for_mask": False,
    "trainable": True,
    "dtype": "float32",
}


def _dense(units, activation):
    return {"type": "Dense", "units": units, **DENSE_DEFAULTS, "activation": activation}


def _load_golden(seed):
    return json.loads((GOLDEN / f"{seed}.normalized.json").read_text())


def _ordered(obj):
    """A dict as a list of (key, value) pairs, recursively: equality then checks key order."""
    if isinstance(obj, dict):
        return [(k, _ordered(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [_ordered(v) for v in obj]
    return obj


def test_golden_mlp_content():
    expected = {
        "format": "nnspec/1",
        "name": "mlp",
        "description": "Binary classifier over 32 features.",
        "inputs": {"x": {"shape": [32], "dtype": "float32"}},
        "layers": {
            "hidden1": _dense(10, "relu"),
            "hidden2": _dense(20, "relu"),
            "hidden3": _dense(10, "relu"),
            "output": _dense(1, "sigmoid"),
        },
        "edges": ["x -> hidden1 -> hidden2 -> hidden3 -> output"],
        "outputs": ["output"],
    }
    assert _ordered(_load_golden("mlp")) == _ordered(expected)


def test_golden_siamese_content():
    g = _load_golden("siamese_lstm")
    assert list(g) == ["format", "name", "description", "inputs", "layers", "edges", "outputs", "training"]
    assert g["inputs"] == {
        "tweet_a": {"shape": [140, 256], "dtype": "float32"},
        "tweet_b": {"shape": [140, 256], "dtype": "float32"},
    }
    assert list(g["layers"]) == ["encode_a", "encode_b", "merged", "predict"]
    assert _ordered(g["layers"]["encode_a"]) == _ordered({"type": "LSTM", "units": 64, **LSTM_DEFAULTS})
    assert g["layers"]["encode_b"] == {"shares": "encode_a"}  # a shared call takes nothing else
    assert g["layers"]["merged"] == {"type": "Concatenate", "axis": -1, "trainable": True, "dtype": "float32"}
    assert _ordered(g["layers"]["predict"]) == _ordered(_dense(1, "sigmoid"))
    assert g["edges"] == [
        "tweet_a -> encode_a",
        "tweet_b -> encode_b",
        "encode_a, encode_b -> merged -> predict",
    ]
    assert g["outputs"] == ["predict"]
    assert g["training"] == {"optimizer": "rmsprop", "loss": "binary_crossentropy", "metrics": ["accuracy"]}


def test_golden_video_classifier_content():
    g = _load_golden("video_classifier")
    assert list(g) == ["format", "name", "description", "models", "inputs", "layers", "edges", "outputs"]
    sub = g["models"]["frame_classifier"]
    assert list(sub) == ["name", "inputs", "layers", "edges", "outputs"]
    assert sub["inputs"] == {"frame": {"shape": [784], "dtype": "float32"}}
    assert _ordered(sub["layers"]) == _ordered(
        {"dense1": _dense(64, "relu"), "dense2": _dense(64, "relu"), "probs": _dense(10, "softmax")}
    )
    assert sub["edges"] == ["frame -> dense1 -> dense2 -> probs"]
    assert sub["outputs"] == ["probs"]
    assert g["inputs"] == {"video": {"shape": [20, 784], "dtype": "float32"}}
    per_frame = g["layers"]["per_frame"]
    assert per_frame["type"] == "TimeDistributed"
    assert per_frame["layer"]["type"] == "Model" and per_frame["layer"]["model"] == "frame_classifier"
    assert g["edges"] == ["video -> per_frame"]
    assert g["outputs"] == ["per_frame"]


@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_golden_file_loads_as_the_seed(seed):
    golden = nnspec.load(GOLDEN / f"{seed}.normalized.json")
    original = seed_model(SPECS / f"{seed}.yaml")
    assert golden.summary_dict() == original.summary_dict()
    assert golden.plan().to_json() == original.plan().to_json()


# ----------------------------------------------------------------------------- property test
#
# The generator writes model-file dicts and, independently of nnspec, tracks each value's shape
# (batch excluded) and each layer's parameter count with Keras's formulas:
#   Dense / TimeDistributed(Dense): in*units + units       Conv: k^n*cin*filters + filters
#   LSTM 4*(u*(in+u)+u)   GRU (reset_after) 3*(u*(in+u)+2u)   SimpleRNN u*(in+u)+u
#   BatchNormalization 4c (2c non-trainable)   LayerNormalization 2c   Embedding in_dim*out_dim


class _Builder:
    def __init__(self, rng: random.Random, budget: int):
        self.rng = rng
        self.budget = budget
        self.layers: dict = {}
        self.edges: list[str] = []
        self.shapes: dict = {}
        self.trainable = 0
        self.non_trainable = 0
        self.chain = True  # every node has one input, fed by the previous one

    def name(self) -> str:
        return f"n{len(self.layers)}"

    def add(
        self, spec: dict, inputs: list[str], shape: tuple, params: int = 0, non_trainable: int = 0
    ) -> str:
        n = self.name()
        self.layers[n] = spec
        self.edges.append(", ".join(inputs) + " -> " + n)
        self.shapes[n] = tuple(shape)
        self.trainable += params
        self.non_trainable += non_trainable
        self.budget -= 1
        return n


def _fixed(shape) -> bool:
    return all(d is not None for d in shape)


def _pool_len(n, p, padding):
    if n is None:
        return None
    return -(-n // p) if padding == "same" else (n - p) // p + 1


def _conv_len(n, k, padding):
    if n is None:
        return None
    return n if padding == "same" else n - k + 1


def _single_ops(shape):
    """Names of the one-layer steps that fit a value of this shape (batch excluded)."""
    rank = len(shape)
    ops = ["dense", "activation", "dropout", "layer_norm", "batch_norm"]
    if _fixed(shape):
        ops += ["flatten", "reshape"]
    # The rank-specific steps are listed twice, so that sequences and images are not flattened
    # away before they get a chance.
    if rank == 2:
        ops += ["rnn", "time_distributed", "global_pool1d", "conv1d"] * 2
        if shape[0] is None or shape[0] >= 2:
            ops += ["pool1d"] * 2
    if rank == 3:
        ops += ["conv2d", "global_pool2d"] * 2
        if min(shape[0], shape[1]) >= 2:
            ops += ["pool2d"] * 2
    return ops


def _single(b: _Builder, x: str, op: str | None = None) -> str:
    rng = b.rng
    shape = b.shapes[x]
    op = op or rng.choice(_single_ops(shape))
    last = shape[-1]
    if op == "dense":
        u = rng.randint(1, 8)
        act = rng.choice(["linear", "relu", "tanh", "sigmoid"])
        return b.add({"type": "Dense", "units": u, "activation": act}, [x], (*shape[:-1], u), last * u + u)
    if op == "activation":
        act = rng.choice(["relu", "tanh", "softmax", "elu"])
        return b.add({"type": "Activation", "activation": act}, [x], shape)
    if op == "dropout":
        rate = rng.choice([0.0, 0.1, 0.25, 0.5])
        return b.add({"type": "Dropout", "rate": rate}, [x], shape)
    if op == "layer_norm":
        return b.add({"type": "LayerNormalization"}, [x], shape, 2 * last)
    if op == "batch_norm":
        return b.add({"type": "BatchNormalization"}, [x], shape, 2 * last, 2 * last)
    if op == "flatten":
        return b.add({"type": "Flatten"}, [x], (math.prod(shape),))
    if op == "reshape":
        return b.add({"type": "Reshape", "target_shape": [-1]}, [x], (math.prod(shape),))
    if op == "rnn":
        kind = rng.choice(["LSTM", "GRU", "SimpleRNN"])
        u = rng.randint(1, 6)
        seq = rng.random() < 0.5
        gates = {
            "LSTM": 4 * (u * (last + u) + u),
            "GRU": 3 * (u * (last + u) + 2 * u),
            "SimpleRNN": u * (last + u) + u,
        }
        out = (shape[0], u) if seq else (u,)
        return b.add({"type": kind, "units": u, "return_sequences": seq}, [x], out, gates[kind])
    if op == "time_distributed":
        u = rng.randint(1, 6)
        spec = {"type": "TimeDistributed", "layer": {"type": "Dense", "units": u}}
        return b.add(spec, [x], (shape[0], u), last * u + u)
    if op in ("global_pool1d", "global_pool2d"):
        kind = rng.choice(["GlobalMaxPooling", "GlobalAveragePooling"]) + op[-2:].upper()
        return b.add({"type": kind}, [x], (last,))
    if op == "conv1d":
        padding = rng.choice(["valid", "same"])
        n = shape[0]
        kmax = 3 if (padding == "same" or n is None) else min(3, n)
        k = rng.randint(1, kmax)
        f = rng.randint(1, 6)
        spec = {"type": "Conv1D", "filters": f, "kernel_size": k, "padding": padding}
        return b.add(spec, [x], (_conv_len(n, k, padding), f), k * last * f + f)
    if op == "conv2d":
        padding = rng.choice(["valid", "same"])
        h, w = shape[0], shape[1]
        kmax = 3 if padding == "same" else min(3, h, w)
        k = rng.randint(1, kmax)
        f = rng.randint(1, 6)
        spec = {"type": "Conv2D", "filters": f, "kernel_size": k, "padding": padding, "activation": "relu"}
        out = (_conv_len(h, k, padding), _conv_len(w, k, padding), f)
        return b.add(spec, [x], out, k * k * last * f + f)
    if op == "pool1d":
        kind = rng.choice(["MaxPooling1D", "AveragePooling1D"])
        padding = rng.choice(["valid", "same"])
        n = shape[0]
        p = rng.randint(2, 3 if (n is None or n >= 3) else 2)
        return b.add(
            {"type": kind, "pool_size": p, "padding": padding}, [x], (_pool_len(n, p, padding), last)
        )
    if op == "pool2d":
        kind = rng.choice(["MaxPooling2D", "AveragePooling2D"])
        padding = rng.choice(["valid", "same"])
        h, w = shape[0], shape[1]
        p = rng.randint(2, min(3, h, w))
        out = (_pool_len(h, p, padding), _pool_len(w, p, padding), last)
        return b.add({"type": kind, "pool_size": p, "padding": padding}, [x], out)
    raise AssertionError(op)


def _branches(b: _Builder, x: str) -> str:
    """Two branches from ``x`` joined by Add or Concatenate (3 layers), or a shared Dense
    called twice then added (3-4 layers)."""
    rng = b.rng
    shape = b.shapes[x]
    last = shape[-1]
    b.chain = False
    kind = rng.choice(["add", "concat", "shared"] if b.budget >= 4 else ["add", "concat"])
    if kind == "concat":
        u1, u2 = rng.randint(1, 6), rng.randint(1, 6)
        a = b.add({"type": "Dense", "units": u1}, [x], (*shape[:-1], u1), last * u1 + u1)
        c = b.add(
            {"type": "Dense", "units": u2, "activation": "tanh"}, [x], (*shape[:-1], u2), last * u2 + u2
        )
        return b.add({"type": "Concatenate"}, [a, c], (*shape[:-1], u1 + u2))
    if kind == "add":
        u = rng.randint(1, 6)
        a = b.add({"type": "Dense", "units": u}, [x], (*shape[:-1], u), last * u + u)
        c = b.add({"type": "Dense", "units": u, "activation": "relu"}, [x], (*shape[:-1], u), last * u + u)
        return b.add({"type": "Add"}, [a, c], (*shape[:-1], u))
    # A shared layer: one Dense, called on x and on another value of x's shape; weights once.
    u = rng.randint(1, 6)
    other = b.add({"type": "Activation", "activation": "tanh"}, [x], shape)
    first = b.add({"type": "Dense", "units": u}, [x], (*shape[:-1], u), last * u + u)
    second = b.add({"shares": first}, [other], (*shape[:-1], u))
    return b.add({"type": "Add"}, [first, second], (*shape[:-1], u))


def generate_model_file(seed: int):
    """(model-file dict, expected output shapes, expected (trainable, non-trainable)) from a seed."""
    rng = random.Random(seed)
    kind = rng.choice(["vector", "sequence", "image", "tokens"])
    if kind == "vector":
        shape, dtype = (rng.randint(1, 16),), "float32"
    elif kind == "sequence":
        steps = rng.choice([None, None, None, *range(1, 9)])  # often a run-time length
        shape, dtype = (steps, rng.randint(1, 8)), "float32"
    elif kind == "image":
        shape, dtype = (rng.randint(1, 8), rng.randint(1, 8), rng.randint(1, 4)), "float32"
    else:
        shape, dtype = (rng.randint(1, 10),), "int32"
    b = _Builder(rng, rng.randint(1, 8))
    b.shapes["inp"] = shape
    x = "inp"
    if kind == "tokens":
        vocab, dim = rng.randint(2, 50), rng.randint(1, 8)
        x = b.add(
            {"type": "Embedding", "input_dim": vocab, "output_dim": dim}, [x], (shape[0], dim), vocab * dim
        )
    if kind in ("sequence", "image") and rng.random() < 0.7:
        # Start with a step only this rank has (a convolution, pooling, an RNN...).
        specific = [
            o for o in _single_ops(shape) if o not in _single_ops((1,)) and o not in ("flatten", "reshape")
        ]
        x = _single(b, x, rng.choice(specific))
    while b.budget > 0:
        if b.budget >= 3 and rng.randint(0, 3) == 0:
            x = _branches(b, x)
        else:
            x = _single(b, x)
    outputs = [x]
    if not b.chain and len(b.layers) > 2 and rng.random() < 0.5:
        extra = rng.choice([n for n in b.layers if n != x and "shares" not in b.layers[n]])
        outputs.append(extra)  # a second output: an intermediate value
    spec = {
        "format": "nnspec/1",
        "name": "generated",
        "inputs": {"inp": {"shape": list(shape), "dtype": dtype}},
        "layers": b.layers,
        "edges": b.edges,
        "outputs": outputs,
    }
    if b.chain and rng.random() < 0.5:
        del spec["edges"], spec["outputs"]  # a plain stack: the Sequential form
    expected_shapes = [(None, *b.shapes[o]) for o in outputs]
    return spec, expected_shapes, (b.trainable, b.non_trainable)


# The strategy: each example is a whole model drawn from one seed. (Drawing every choice from
# Hypothesis directly made 60 derandomized examples near-duplicates of each other, with no RNN at
# all; a seed per example gives 60 independent models.) A failure prints the spec via note().
model_files = st.integers(min_value=0, max_value=2**32 - 1).map(generate_model_file)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(model_files)
def test_generated_models_round_trip(case):
    spec, expected_shapes, (trainable, non_trainable) = case
    note(json.dumps(spec))
    m = Model.from_config(spec)
    # Independently predicted shapes and parameter counts.
    assert [tuple(t.shape) for t in m.outputs] == expected_shapes
    d = m.summary_dict()
    assert (d["trainable_params"], d["non_trainable_params"]) == (trainable, non_trainable)
    assert m.warnings == []
    # to_json is idempotent, and the config rebuilds the same model.
    text = m.to_json()
    assert model_from_json(text).to_json() == text
    back = Model.from_config(m.get_config())
    assert back.summary_dict() == d
    assert back.plan().to_json() == m.plan().to_json()
    assert back.get_config() == m.get_config()


# ----------------------------------------------------------------------------- script mode


def _regen() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for seed in GOLDEN_SEEDS:
        path = GOLDEN / f"{seed}.normalized.json"
        path.write_text(golden_text(seed))
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--regen"]:
        _regen()
    else:
        print("usage: python tests/test_roundtrip.py --regen   (rewrite tests/golden/*.normalized.json)")
        sys.exit(2)
