"""Build a real Keras model from a model file, independently of nnspec.

This is the reference the compiler is tested against, so it must not import nnspec: it reads the
file with ``yaml.safe_load`` and maps it onto Keras's own API, one to one, as
``/work/shared/design/spec-format.md`` describes the format:

- ``inputs``: ``keras.Input(shape=..., dtype=..., name=<input name>)``; with ``batch_size``,
  ``keras.Input(batch_shape=(batch_size, *shape), ...)``.
- ``layers``: node name -> ``{type: <keras.layers class>, ...kwargs}``; the node name becomes the
  Keras layer's ``name``. ``{shares: other}`` calls ``other``'s layer object again. A wrapper's
  ``layer:`` (and ``backward_layer:``) mapping is built into the inner layer. ``{type: Model, model:
  m}`` calls the sub-model ``m``; every call of one sub-model, wrapped or not, shares one Keras
  model object (named after its key in ``models``).
- ``edges``: chains ``a -> b -> c`` and ``a, b -> merge`` (inputs in that order, passed as a list);
  ``node:k`` is the k-th output of a layer with several. Without ``edges`` the layers form a
  ``keras.Sequential`` from the single input, in the order written.
- ``outputs``: node references; a single output is not wrapped in a list.
- ``models``: named sub-models, inline or ``{file: path}`` relative to the file that names them.
- ``format``, ``description`` and ``training`` are ignored; ``name`` names the Keras model.
- A layer parameter that Keras's ``call`` takes and its constructor does not
  (``use_causal_mask``, ``return_attention_scores``) is passed at the call; a layer whose ``call``
  takes separate tensors (MultiHeadAttention's query, value, key) gets its inputs that way.

Initializer, regularizer and constraint values written ``{type: name, ...arguments}`` become the
Keras objects (``l1_l2`` is Keras's ``L1L2``).
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
from pathlib import Path

import yaml

os.environ.setdefault("KERAS_BACKEND", "torch")

IGNORED_KEYS = ("format", "description", "training")
_OBJECT_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_ALIASES = {"l1_l2": "l1l2"}


def _keras():
    import keras

    return keras


# ----------------------------------------------------------------------------- loading


def _load(path_or_text) -> tuple[dict, Path]:
    """The parsed document and the directory its relative ``file:`` references start from."""
    if isinstance(path_or_text, Path):
        return yaml.safe_load(path_or_text.read_text()), path_or_text.resolve().parent
    text = str(path_or_text)
    if "\n" not in text and text.strip().endswith((".yaml", ".yml", ".json")) and Path(text).is_file():
        path = Path(text)
        return yaml.safe_load(path.read_text()), path.resolve().parent
    return yaml.safe_load(text), Path.cwd()


def _split_ref(ref: str) -> tuple[str, int | None]:
    """``"lstm:1"`` -> ``("lstm", 1)``; ``"lstm"`` -> ``("lstm", None)``."""
    ref = ref.strip()
    if ":" in ref:
        name, port = ref.rsplit(":", 1)
        return name.strip(), int(port)
    return ref, None


def _parse_edges(edges: list) -> dict[str, list[str]]:
    """node -> its input references, in the order the chains give them."""
    feeds: dict[str, list[str]] = {}
    for chain in edges:
        segments = [[r.strip() for r in seg.split(",") if r.strip()] for seg in str(chain).split("->")]
        if len(segments) < 2 or any(not s for s in segments):
            raise ValueError(f"bad edge chain {chain!r}")
        for left, right in itertools.pairwise(segments):
            for target in right:
                name, port = _split_ref(target)
                if port is not None:
                    raise ValueError(f"edge chain {chain!r}: a port may not be fed ({target!r})")
                feeds.setdefault(name, []).extend(left)
    return feeds


# ----------------------------------------------------------------------------- layers


def _keras_object(module, value):
    """An initializer/regularizer/constraint from a name or ``{type: name, ...arguments}``."""
    if value is None or not isinstance(value, (str, dict)):
        return value
    if isinstance(value, str):
        return module.get(_ALIASES.get(value, value))
    args = dict(value)
    kind = args.pop("type")
    obj = module.deserialize({"class_name": _ALIASES.get(kind, kind), "config": args})
    if not hasattr(obj, "get_config"):  # Keras hands an unknown name back as a string
        raise ValueError(f"Keras does not know {value!r}")
    return obj


def _kwargs(spec: dict) -> dict:
    keras = _keras()
    modules = {
        "_initializer": keras.initializers,
        "_regularizer": keras.regularizers,
        "_constraint": keras.constraints,
    }
    out = {}
    for key, value in spec.items():
        if key == "type":
            continue
        suffix = next((s for s in _OBJECT_SUFFIXES if key.endswith(s)), None)
        out[key] = _keras_object(modules[suffix], value) if suffix else value
    return out


def _split_call_kwargs(cls, kwargs: dict) -> dict:
    """Take out of ``kwargs`` the arguments of ``cls.call`` its constructor does not take: a
    model file writes Keras's call arguments (``use_causal_mask``...) as layer parameters."""
    init = inspect.signature(cls.__init__).parameters
    call = inspect.signature(cls.call).parameters
    return {k: kwargs.pop(k) for k in list(kwargs) if k not in init and k in call}


def _takes_separate_inputs(layer) -> bool:
    """Keras's call takes several tensors as separate arguments (MultiHeadAttention's query,
    value, key), not one ``inputs`` list."""
    params = list(inspect.signature(layer.call).parameters)
    return bool(params) and params[0] != "inputs"


class _Builder:
    """Builds one document (the top-level file or a sub-model) into Keras objects."""

    def __init__(self, doc: dict, base: Path, parent: _Builder | None = None):
        self.doc = doc
        self.base = base
        self.parent = parent
        self.model_specs: dict = dict(doc.get("models") or {})
        self.submodels: dict = {}  # model name -> keras model, one object per name

    def submodel(self, name: str):
        """The one Keras model object of sub-model ``name`` (this document's, else an ancestor's)."""
        if name in self.submodels:
            return self.submodels[name]
        if name not in self.model_specs:
            if self.parent is not None:
                return self.parent.submodel(name)
            raise KeyError(f"no model named {name!r} in models")
        spec = self.model_specs[name]
        base = self.base
        if isinstance(spec, dict) and set(spec) == {"file"}:
            path = (self.base / spec["file"]).resolve()
            spec, base = yaml.safe_load(path.read_text()), path.parent
        model = _Builder(spec, base, parent=self).build(default_name=name, force_name=name)
        self.submodels[name] = model
        return model

    def custom_layers(self) -> dict:
        """The top-level document's custom layer declarations."""
        root = self
        while root.parent is not None:
            root = root.parent
        return dict(root.doc.get("custom_layers") or {})

    def layer(self, spec: dict, name: str | None = None):
        """A fresh Keras layer (or the shared sub-model) for a layer definition."""
        keras = _keras()
        spec = dict(spec)
        if spec.get("type") == "Model":
            return self.submodel(spec["model"])
        for key in ("layer", "backward_layer", "cell", "cells"):
            if isinstance(spec.get(key), dict):
                spec[key] = self.layer(spec[key])
            elif isinstance(spec.get(key), list):  # stacked cells
                spec[key] = [self.layer(c) for c in spec[key]]
        kwargs = _kwargs(spec)
        custom = self.custom_layers()
        if spec["type"] in custom:
            from keras_ref import keras_custom_class

            cls = keras_custom_class(spec["type"], custom[spec["type"]])
            return cls(**kwargs, **({"name": name} if name is not None else {}))
        cls = getattr(keras.layers, spec["type"])
        _split_call_kwargs(cls, kwargs)
        if name is not None:
            kwargs["name"] = name
        return cls(**kwargs)

    def build(self, default_name: str | None = None, force_name: str | None = None):
        keras = _keras()
        doc = self.doc
        name = force_name or doc.get("name") or default_name
        inputs = {
            n: keras.Input(batch_shape=(s.get("batch_size"), *s["shape"]), dtype=s.get("dtype", "float32"), name=n)
            for n, s in (doc.get("inputs") or {}).items()
        }
        layer_specs: dict = dict(doc.get("layers") or {})
        layers: dict = {}
        for node, spec in layer_specs.items():
            if "shares" in spec:
                continue
            layers[node] = self.layer(spec, None if spec.get("type") == "Model" else node)
        for node, spec in layer_specs.items():
            if "shares" in spec:
                target = spec["shares"]
                while "shares" in layer_specs[target]:
                    target = layer_specs[target]["shares"]
                layers[node] = layers[target]

        if "edges" not in doc:
            if len(inputs) != 1:
                raise ValueError("a file without edges (a Sequential model) needs exactly one input")
            (inp,) = inputs.values()
            return keras.Sequential([inp, *(layers[n] for n in layer_specs)], name=name)

        feeds = _parse_edges(doc["edges"])
        values: dict = dict(inputs)
        busy: set = set()

        def value(ref: str):
            node, port = _split_ref(ref)
            if node not in values:
                if node not in layers:
                    raise KeyError(f"unknown node {node!r}")
                if node in busy:
                    raise ValueError(f"cycle through {node!r}")
                busy.add(node)
                args = [value(r) for r in feeds.get(node, [])]
                if not args:
                    raise ValueError(f"layer node {node!r} has no inputs")
                spec = layer_specs[node]
                while "shares" in spec:
                    spec = layer_specs[spec["shares"]]
                call_kw = {}
                if spec.get("type") != "Model":
                    call_kw = _split_call_kwargs(type(layers[node]), _kwargs(spec))
                if len(args) > 1 and spec.get("type") in _TAKES_INITIAL_STATE:  # x, h[, c] -> rnn
                    values[node] = layers[node](args[0], initial_state=keras_initial_state(layers[node], args[1:]),
                                                **call_kw)
                elif len(args) > 1 and _takes_separate_inputs(layers[node]):
                    values[node] = layers[node](*args, **call_kw)
                else:
                    values[node] = layers[node](args[0] if len(args) == 1 else args, **call_kw)
                busy.discard(node)
            out = values[node]
            if isinstance(out, (list, tuple)):
                return out[port or 0]
            if port:
                raise ValueError(f"{ref!r}: {node!r} has a single output")
            return out

        outs = [value(r) for r in doc["outputs"]]
        ins = list(inputs.values())
        return keras.Model(
            inputs=ins[0] if len(ins) == 1 else ins,
            outputs=outs[0] if len(outs) == 1 else outs,
            name=name,
        )


# ----------------------------------------------------------------------------- public


# Keras's recurrent layers: in a model file, their inputs after the sequence are Keras's
# ``initial_state`` (named here, not read from nnspec's registry: this builder is independent).
_TAKES_INITIAL_STATE = ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "RNN", "Bidirectional")


def keras_initial_state(layer, states) -> list:
    """A model file's flat initial states as Keras's ``initial_state``: nested per cell for an RNN
    over stacked cells (``[[h1, c1], [h2]]``), the flat list otherwise."""
    cells = getattr(getattr(layer, "cell", None), "cells", None)
    if not cells:
        return list(states)
    out, k = [], 0
    for cell in cells:
        n = len(cell.state_size) if isinstance(cell.state_size, (list, tuple)) else 1
        out.append(list(states[k : k + n]))
        k += n
    return out


def keras_model_from_spec(path_or_text):
    """A Keras model (functional, or Sequential when the file has no ``edges``) for a model file.

    ``path_or_text`` is a :class:`~pathlib.Path`, a path string ending in .yaml/.yml/.json, or the
    YAML/JSON text itself (then ``file:`` references are relative to the working directory).
    """
    doc, base = _load(path_or_text)
    return _Builder(doc, base).build(default_name="model")


def keras_summary_facts(model) -> dict:
    """What ``model.summary()`` reports: parameter totals and one row per top-level layer.

    Rows are ``(name, class name, output shape, params)``; the output shape is the one of the
    layer's last call, as Keras's summary shows it (a list of shapes for several outputs).
    """
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    rows = []
    for layer in model.layers:
        nodes = getattr(layer, "_inbound_nodes", [])
        if nodes:
            outs = nodes[-1].output_tensors
            shapes = (
                [tuple(o.shape) for o in outs] if isinstance(outs, (list, tuple)) else [tuple(outs.shape)]
            )
            shape = shapes[0] if len(shapes) == 1 else shapes
        else:
            shape = None
        rows.append((layer.name, type(layer).__name__, shape, layer.count_params()))
    printed = []
    model.summary(print_fn=lambda line, **kw: printed.append(line))
    return {
        "connected_to": "Connected to" in "\n".join(printed),  # a branching model's fourth column
        "total": model.count_params(),
        "trainable": trainable,
        "non_trainable": non_trainable,
        "layers": rows,
    }
