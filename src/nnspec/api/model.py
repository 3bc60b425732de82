"""Models of the Keras-like Python API: ``load``, ``Model``, ``Sequential``, serialization.

Every model, whether loaded from a file, built with the functional API or as a Sequential, is
compiled from a model file (a dict in the file's format): the builder writes that dict from the
recorded layer calls, then the same pipeline as ``nnspec compile`` checks and types it. So
``m.to_json()`` of a model built in Python is a model file a user could have written.
"""

from __future__ import annotations

import json
import os
import weakref

from ..compiler import analyze
from ..compiler.graph import Ref
from ..compiler.lower import lower
from ..compiler.normalize import normalized_spec
from ..compiler.shapes import TypedGraph, infer_types
from ..compiler.summary import summary_dict, summary_text, unbuilt_summary_text
from ..layerdefs.base import LayerDef, TensorType
from ..specs.errors import InputError
from ..specs.load import Document, load_file, load_text
from ..specs.versions import CURRENT
from .layer import Call, InputLayer, KerasTensor, Layer, file_layer_spec, layer_from_spec, unique_name
from .running import RunMixin
from .training import TrainMixin


class Model(TrainMixin, RunMixin, Layer):
    """A compiled model; also usable as a layer (a nested model shares its weights).

    Build one with ``nnspec.load(path)``, ``Model(inputs=..., outputs=...)``,
    ``Model.from_config(cfg)`` or ``Sequential([...])``.
    """

    _def = None
    _traced = False  # a model is called as a nested model, not traced as a custom layer
    type = class_name = "Model"

    def __init__(self, inputs=None, outputs=None, name: str | None = None, *, _typed: TypedGraph | None = None):
        self.calls = []
        self._model_ref = None
        self._attrs = {}
        self._input_shape_hint = None
        if _typed is None:
            if inputs is None or outputs is None:
                raise TypeError("Model() needs inputs= and outputs= (or use nnspec.load / Sequential)")
            spec, layer_objects = _spec_from_tensors(inputs, outputs, name or unique_name("functional"))
            self._compile_spec(spec, layer_objects)
        else:
            self._adopt(_typed, {})

    # ------------------------------------------------------------------ building

    def _compile_spec(self, spec: dict, layer_objects: dict) -> None:
        typed = analyze(Document(spec))
        self._adopt(typed, layer_objects)

    def _adopt(self, typed: TypedGraph, layer_objects: dict) -> None:
        """Take ``typed`` as this model's graph; make (or reuse) the layer objects and tensors."""
        self._typed = typed
        g = typed.graph
        self.name = g.name
        self._subs: dict[str, Model] = {}
        for mname, sub in typed.submodels.items():
            self._subs[mname] = layer_objects.get(("model", mname)) or Model(_typed=sub)
            self._subs[mname].__dict__.setdefault("_parents", weakref.WeakSet()).add(self)
        self._input_layers: dict[str, InputLayer] = {}
        env: dict = {}
        for iname, decl in g.inputs.items():
            il = layer_objects.get(("input", iname))
            if il is None:
                il = InputLayer(decl.shape, decl.dtype, iname, decl.batch_size)
            self._input_layers[iname] = il
            env[(iname, 0)] = il.output
        self._layers: dict[str, Layer] = {}
        self._weight_sources: list = []
        for name, tn in typed.nodes.items():
            node = tn.node
            obj = self._layers.get(node.layer)
            if obj is None:
                obj = layer_objects.get(("layer", node.layer))
            if obj is None:
                if node.type == "Model":
                    obj = self._subs[node.attrs["model"]]
                else:
                    spec = {"type": node.type, **node.attrs}
                    obj = layer_from_spec(spec, self._subs, name=node.layer)
            if not isinstance(obj, Model):
                if obj._model_ref is not None and obj._model_ref is not self:
                    self._weight_sources.append(obj._model_ref)  # built from its layers: shares its weights
                obj._model_ref = self
            self._layers.setdefault(node.layer, obj)
            call = layer_objects.get(("call", name))
            if call is None:
                call = Call(obj, [env[(r.node, r.port)] for r in node.inputs], tn.out_types)
                if node.shared and not isinstance(obj, Model) and obj._def is not None:
                    own = typed.nodes[node.layer].node.attrs
                    call.call_args = {k: node.attrs[k] for k in obj._def.extra.get("call_attrs", ())
                                      if node.attrs.get(k) != own.get(k)}  # fmt: skip
                obj.calls.append(call)
            for port, t in enumerate(call.outputs):
                env[(name, port)] = t
        self._env = env
        self.inputs = [env[(n, 0)] for n in g.inputs]
        self.outputs = [env[(r.node, r.port)] for r in g.outputs]

    def _training_section(self) -> dict | None:
        """The model file's ``training`` section (``compile()`` with no arguments uses it)."""
        return self._typed.graph.training

    def _submodel_objects(self) -> dict:
        return self._subs

    # ------------------------------------------------------------------ freezing

    @property
    def trainable(self) -> bool:
        """Whether any layer of the model has trainable weights' flag set (``False`` once every
        layer is frozen)."""
        return any(getattr(layer, "trainable", False) for layer in self._layers.values())

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._set_trainable(list(self._layers), bool(value))

    @property
    def built(self) -> bool:
        return self._typed is not None

    @property
    def trainable_weights(self) -> list:
        store = self._weights()
        return [store.view(p.name).astype(p.dtype) for p in self.plan().params if p.trainable]

    @property
    def non_trainable_weights(self) -> list:
        store = self._weights()
        return [store.view(p.name).astype(p.dtype) for p in self.plan().params if not p.trainable]

    def _set_trainable(self, layer_names: list, value: bool) -> None:
        """Freeze (or unfreeze) these layers, as Keras's ``layer.trainable = False``: the model is
        re-analyzed from its config with the flag set, keeping its layer objects, their calls
        and every weight value; what was compiled from the old weight layout (plans, trainers)
        is dropped and an optimizer's state restarts. Counts and ``summary()`` follow at once;
        training follows from the next ``compile()`` (as in Keras), or the next step."""
        cfg = self.get_config()
        for name in layer_names:
            spec = (cfg.get("layers") or {}).get(name)
            if spec is None:
                raise ValueError(f"layer '{name}' is not a layer of model '{self.name}' itself (a layer of a "
                                 "nested model is frozen by freezing the node that calls the model, or with "
                                 "`trainable: false` in the model file)")  # fmt: skip
            if "shares" not in spec:
                spec["trainable"] = value
        self._reanalyze(cfg)
        for name in layer_names:
            layer = self._layers.get(name)
            if layer is not None and not isinstance(layer, Model):
                layer._attrs["trainable"] = value
        self._refresh_parents()

    def _refresh_parents(self) -> None:
        """The models that call this one as a layer take its new config (Keras's layers are the
        same objects in both: ``base_model.trainable = False`` freezes them in the model built
        around it too, before or after it was built)."""
        for parent in list(self.__dict__.get("_parents", ())):
            if any(sub is self for sub in parent._subs.values()):
                cfg = parent.get_config()
                mine = self.get_config()
                cfg.setdefault("models", {}).update(mine.get("models", {}))
                cfg["models"][self.name] = _model_body(mine)
                parent._reanalyze(cfg)
                parent._refresh_parents()

    def _reanalyze(self, cfg: dict) -> None:
        """Re-analyze the model from ``cfg``, keeping its layer objects, their calls and every
        weight value; what was compiled from the old weight layout is dropped."""
        typed = analyze(Document(json.loads(json.dumps(cfg))))
        if self._store is not None:
            self._weights()  # the newest copy of shared sub-model weights first (RunMixin._pull_weights)
        objs: dict = {("input", n): il for n, il in self._input_layers.items()}
        objs.update({("model", n): m for n, m in self._subs.items()})
        objs.update({("layer", n): layer for n, layer in self._layers.items() if not isinstance(layer, Model)})
        objs.update({("call", n): self._env[(n, 0)]._call for n in self._typed.nodes if (n, 0) in self._env})
        old = self._store
        self._adopt(typed, objs)
        self._relayout(old)

    def _relayout(self, old) -> None:
        """After the graph changed (re-analyzed, or a Sequential model's layers added or
        popped): drop what was compiled from the old graph and weight layout (plans, trainers,
        an optimizer's state); the new weights start from ``old``'s values, by name."""
        self._store = None
        for attr in ("_executors", "_inputs_ok", "_segments_key", "_activity_specs"):
            self.__dict__.pop(attr, None)
        if getattr(self, "_trainers", None):
            self._trainers = {}
        opt = getattr(self, "optimizer", None)
        if opt is not None and getattr(opt, "slots", None) is not None:
            opt.slots = None
        if old is not None and self._typed is not None:
            new = self._weights()
            for name, p in new.params.items():
                if name in old.params and tuple(old.params[name].shape) == tuple(p.shape):
                    new.view(name)[...] = old.view(name)
            new.version = old.version  # the same values: no newer than they were

    # ------------------------------------------------------------------ as a layer

    def layer_spec(self) -> dict:
        return {"type": "Model", "model": self.name}

    def _infer_call(self, in_types: list[TensorType]) -> list[TensorType]:
        g = self._typed.graph
        if len(in_types) != len(g.inputs):
            raise ValueError(f"model '{self.name}' takes {len(g.inputs)} input(s); got {len(in_types)}")
        types = {}
        for (iname, decl), t in zip(g.inputs.items(), in_types):
            want = (decl.batch_size, *decl.shape)
            if len(want) != len(t.shape) or any(a is not None and b is not None and a != b for a, b in zip(want, t.shape)):
                raise ValueError(f"model '{self.name}' input '{iname}' expects shape {want}; got {t.shape}")
            types[iname] = TensorType(tuple(b if b is not None else a for a, b in zip(want, t.shape)), decl.dtype, t.masked)
        return infer_types(g, input_types=types).output_types

    def _infer(self, in_types, call_args=None):  # a model takes no call arguments
        return self._infer_call(in_types)

    def _param_specs(self, in_types):
        from ..layerdefs.base import ParamSpec

        return [ParamSpec(f"{layer}/{p.name}", p.shape, p.initializer, p.trainable) for layer, p in self._typed.params()]

    def _called_models(self) -> dict:
        return {self.name: self}

    def __call__(self, inputs, **kwargs):
        """On symbolic tensors: a nested-model call. On arrays: the outputs, as ``predict_on_batch``."""
        xs = list(inputs.values()) if isinstance(inputs, dict) else inputs
        xs = xs if isinstance(xs, (list, tuple)) else [xs]
        if xs and all(isinstance(x, KerasTensor) for x in xs):
            if isinstance(inputs, dict):  # keyed by input name, as predict takes them
                names = list(self._typed.graph.inputs)
                if sorted(inputs) != sorted(names):
                    raise ValueError(f"model '{self.name}' was called on inputs {sorted(inputs)}; its inputs are {names}")
                inputs = [inputs[n] for n in names]
            outs = Layer.__call__(self, inputs, **kwargs)
            keys = self._typed.graph.output_keys
            return dict(zip(keys, _as_list(outs))) if keys is not None else outs
        if kwargs.pop("training", None):
            raise TypeError(f"model '{self.name}' called on arrays runs in inference mode; training=True is not "
                            "supported (fit() and train_on_batch() train)")  # fmt: skip
        if kwargs:
            raise TypeError(f"Model.__call__ got unexpected arguments {sorted(kwargs)}")
        return self.predict_on_batch(inputs)

    # ------------------------------------------------------------------ Keras API

    @property
    def layers(self) -> list:
        """The input layers (of a functional model) and the layers, in Keras's order (the order
        of ``get_weights()``; graph.keras_order)."""
        objs = {} if self._typed.graph.sequential else dict(self._input_layers)
        objs.update(self._layers)
        return [objs[n] for n in self._typed.layer_order() if n in objs]

    def get_layer(self, name: str | None = None, index: int | None = None):
        if (name is None) == (index is None):
            raise ValueError("get_layer takes exactly one of name= or index=")
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"model '{self.name}' has {len(layers)} layers; index {index} is out of range")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        from ..specs.errors import did_you_mean

        hint = did_you_mean(name, [la.name for la in layers])
        raise ValueError(f"no layer named '{name}' in model '{self.name}'" + (f"; {hint}" if hint else ""))

    def summary(self, line_length: int | None = None, print_fn=None, show_trainable: bool = False,
                expand_nested: bool = False) -> None:  # fmt: skip
        """Keras's summary table; ``show_trainable`` adds a column: Y (trains), N (frozen), - (no
        weights); ``expand_nested`` follows each nested model's row with its layers'. Once a
        compiled model has trained, its optimizer's variables count too, as Keras prints them
        (``Optimizer params``)."""
        opt = getattr(self, "optimizer", None) if getattr(self, "compiled", False) else None
        counts = opt.variable_count() if opt is not None and opt.built else None
        text = summary_text(self._typed, line_length, show_trainable, counts, expand_nested)
        (print_fn or print)(text.rstrip("\n"))

    def summary_dict(self) -> dict:
        return summary_dict(self._typed)

    def count_params(self) -> int:
        tr, nt = self._typed.count()
        return tr + nt

    @property
    def input(self):
        """The model's input tensor (a list for several), as Keras's ``model.input``:
        ``Model(inputs=m.input, outputs=m.layers[-2].output)`` makes a feature extractor."""
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    @property
    def output(self):
        """The model's output tensor (a list for several, a dict for outputs given as a
        mapping), as Keras's ``model.output``."""
        keys = self._typed.graph.output_keys
        if keys is not None:
            return dict(zip(keys, self.outputs))
        return self.outputs[0] if len(self.outputs) == 1 else list(self.outputs)

    @property
    def output_names(self) -> list[str]:
        """Keras's ``output_names``: the name of the layer making each output (for outputs given
        as a mapping too; the mapping's keys are what losses and predictions are keyed by)."""
        nodes = self._typed.nodes
        return [nodes[r.node].node.layer if r.node in nodes else r.node for r in self._typed.graph.outputs]

    # Keras 3's names for the weights (variables there, arrays here)
    variables = property(lambda self: self.weights)
    trainable_variables = property(lambda self: self.trainable_weights)
    non_trainable_variables = property(lambda self: self.non_trainable_weights)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def warnings(self) -> list:
        return list(self._typed.graph.warnings)

    def get_config(self) -> dict:
        """The normalized model file, as a dict (defaults filled, canonical order)."""
        return normalized_spec(self._typed.graph)

    @classmethod
    def from_config(cls, config: dict) -> "Model":
        """The model of a config: an nnspec model file as a dict (``get_config()``), or a Keras
        model's config (``keras_model.get_config()``, or the parsed ``to_json()``)."""
        from .keras_config import is_keras_config, model_from_keras_config

        config = json.loads(json.dumps(config))
        if is_keras_config(config):
            return model_from_keras_config(config)
        return _model_from_doc(Document(config))

    def to_json(self, **kwargs) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.get_config(), **kwargs)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.get_config(), sort_keys=False, default_flow_style=None, width=100)

    def plan(self, outputs: list | None = None):
        """The execution plan (``nnspec compile``); ``outputs`` picks other nodes to compute
        (names, ``name:port`` strings or refs)."""
        if outputs is not None:
            from ..compiler.graph import parse_ref
            from ..specs.errors import did_you_mean

            refs = []
            for o in outputs:
                ref = parse_ref(o) if isinstance(o, str) else o
                nodes = self._typed.nodes
                if ref is None or ref.node not in nodes or ref.port >= len(nodes[ref.node].out_types):
                    hint = did_you_mean(str(o), list(nodes))
                    raise ValueError(f"'{o}' is not an output of a node of model '{self.name}'"
                                     + (f"; {hint}" if hint else ""))  # fmt: skip
                refs.append(ref)
            outputs = refs
        return lower(self._typed, outputs)

    def __repr__(self) -> str:
        return f"<Model name={self.name} params={self.count_params():,}>"


def _model_from_doc(doc: Document) -> Model:
    typed = analyze(doc)
    if typed.graph.sequential:
        m = Sequential.__new__(Sequential)
        Model.__init__(m, _typed=typed)
        (m._input,) = m._input_layers.values()
        m._pending = list(m._layers.values())
        m._own_calls = {c.uid for layer in m._pending for c in layer.calls}
        return m
    return Model(_typed=typed)


# ---------------------------------------------------------------------- functional builder


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _keyed_values(x) -> list:
    """A model's inputs or outputs as a list; a dict's values in the order of its sorted keys, the
    order Keras flattens it in."""
    if isinstance(x, dict):
        if not x:
            raise ValueError("a model's inputs and outputs cannot be an empty dict")
        if not all(isinstance(k, str) for k in x):
            raise TypeError(f"a model's inputs or outputs given as a dict need string keys; got {list(x)}")
        return [x[k] for k in sorted(x)]
    return _as_list(x)


def _spec_from_tensors(inputs, outputs, name: str) -> tuple[dict, dict]:
    """Write the model file of the graph between ``inputs`` and ``outputs``.

    Returns the spec and the objects to reuse (input layers, layers, calls, sub-models) so the
    compiled model's layers are the very objects the user built.
    """
    ins = _keyed_values(inputs)
    outs = _keyed_values(outputs)
    for t in ins + outs:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"Model inputs and outputs must be symbolic tensors; got {type(t).__name__}")
    input_layers = []
    for t in ins:
        if t._input_layer is None:
            raise ValueError(f"Model input '{t.name}' is not an nnspec.Input(...) tensor")
        input_layers.append(t._input_layer)
    calls: dict[int, Call] = {}

    def visit(t: KerasTensor, path: list):
        if t._input_layer is not None:
            if t._input_layer not in input_layers:
                raise ValueError(f"output depends on input '{t._input_layer.name}', which is not among the "
                                 f"model's inputs {[il.name for il in input_layers]}")  # fmt: skip
            return
        c = t._call
        if c.uid in calls:
            return
        for x in c.inputs:
            visit(x, path)
        calls[c.uid] = c

    for t in outs:
        visit(t, [])
    ordered = sorted(calls.values(), key=lambda c: c.uid)
    node_name: dict[int, str] = {}
    layer_first: dict[int, str] = {}
    used_names = {il.name for il in input_layers}
    layer_names: dict[str, object] = {}
    for c in ordered:
        lname = c.layer.name
        if lname in layer_names and layer_names[lname] is not c.layer:
            raise ValueError(f"two different layers are named '{lname}'; layer names must be unique in a model")
        layer_names[lname] = c.layer
    if used_names & set(layer_names):
        raise ValueError(f"names used by both an input and a layer: {sorted(used_names & set(layer_names))}")
    layers: dict = {}
    models: dict = {}
    objects: dict = {}
    custom: dict = {}
    for c in ordered:
        lid = id(c.layer)
        if lid not in layer_first:
            nn = c.layer.name
            layer_first[lid] = nn
            layers[nn] = file_layer_spec(c.layer, custom)
            objects[("layer", nn)] = c.layer
        else:
            k = 1
            while f"{c.layer.name}.{k}" in layers or f"{c.layer.name}.{k}" in used_names:
                k += 1
            nn = f"{c.layer.name}.{k}"
            layers[nn] = {"shares": layer_first[lid], **c.call_args}
        node_name[c.uid] = nn
        objects[("call", nn)] = c
        for mname, m in c.layer._called_models().items():
            _collect_models(m, models, objects, custom)
    def ref(t: KerasTensor) -> str:
        if t._input_layer is not None:
            return t._input_layer.name
        base = node_name[t._call.uid]
        return base if t._port == 0 else f"{base}:{t._port}"

    edges = [", ".join(ref(x) for x in c.inputs) + " -> " + node_name[c.uid] for c in ordered]
    for il in input_layers:
        objects[("input", il.name)] = il
    spec = {
        "format": CURRENT,
        "name": name,
        **({"custom_layers": custom} if custom else {}),
        **({"models": models} if models else {}),
        "inputs": {il.name: il.file_spec() for il in input_layers},
        "layers": layers,
        "edges": edges,
        "outputs": {k: ref(outputs[k]) for k in sorted(outputs)} if isinstance(outputs, dict) else [ref(t) for t in outs],
    }
    return spec, objects


def _model_body(cfg: dict) -> dict:
    """A model's config as an entry under another file's ``models`` (what only a top level has
    left out)."""
    return {k: v for k, v in cfg.items() if k not in ("format", "models", "training", "custom_layers", "custom_losses")}


def _collect_models(m: Model, models: dict, objects: dict, custom: dict) -> None:
    """Add ``m`` and the models it calls to ``models`` (callees first), checking name clashes;
    the custom layer declarations they use go to ``custom`` (a file has them at its top)."""
    cfg = m.get_config()
    for cname, decl in cfg.get("custom_layers", {}).items():
        if cname in custom and custom[cname] != decl:
            raise ValueError(f"two different custom layers are named '{cname}'")
        custom[cname] = decl
    for sub_name, sub_cfg in cfg.get("models", {}).items():
        if sub_name in models and models[sub_name] != sub_cfg:
            raise ValueError(f"two different models are named '{sub_name}'")
        models[sub_name] = sub_cfg
        objects.setdefault(("model", sub_name), m._subs.get(sub_name))
    body = _model_body(cfg)
    if m.name in models and models[m.name] != body:
        raise ValueError(f"two different models are named '{m.name}'")
    models[m.name] = body
    objects[("model", m.name)] = m


# ---------------------------------------------------------------------- Sequential


class Sequential(Model):
    """A plain stack of layers, as ``keras.Sequential``; its model file has no ``edges``.

    The first element may be ``nnspec.Input(shape=...)``, or the first layer may take
    ``input_shape=``. Until the input shape is known the model is not built.
    """

    def __init__(self, layers=None, name: str | None = None) -> None:
        self.calls = []
        self._model_ref = None
        self._attrs = {}
        self._input_shape_hint = None
        self.name = name or unique_name("sequential")
        self._input: InputLayer | None = None
        self._pending: list[Layer] = []
        self._typed = None
        for layer in layers or []:
            self.add(layer, _rebuild=False)
        self._rebuild()

    def add(self, layer, _rebuild: bool = True) -> None:
        if isinstance(layer, KerasTensor) and layer._input_layer is not None:
            if self._input is not None or self._pending:
                raise ValueError("an Input can only be the first element of a Sequential model")
            self._input = layer._input_layer
            return
        if isinstance(layer, InputLayer):
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() takes a layer; got {type(layer).__name__}")
        if self._input is None and not self._pending and layer._input_shape_hint is not None:
            self._input = InputLayer(layer._input_shape_hint, batch_size=getattr(layer, "_batch_size_hint", None))
        self._pending.append(layer)
        if _rebuild:
            self._rebuild()

    def pop(self):
        if not self._pending:
            raise ValueError("there is no layer to pop from an empty Sequential model")
        layer = self._pending.pop()
        self._rebuild()
        return layer

    def _rebuild(self) -> None:
        old = self._store
        if old is not None:
            self._weights()  # the newest copy of shared sub-model weights first
        if self._input is None or not self._pending:
            self._typed = None
            self._relayout(old)
            return
        for layer in self._pending:
            if isinstance(layer, Model):
                continue
            layer.calls = [c for c in layer.calls if c.uid not in getattr(self, "_own_calls", set())]
        x = self._input.output
        own = set()
        objects: dict = {("input", self._input.name): self._input}
        layers: dict = {}
        models: dict = {}
        custom: dict = {}
        for layer in self._pending:
            x = layer(x)
            call = layer.calls[-1]
            own.add(call.uid)
            if isinstance(x, list):
                raise ValueError(f"layer '{layer.name}' returns several outputs; a Sequential model needs one")
            if layer.name in layers:
                raise ValueError(f"layer '{layer.name}' appears twice in the Sequential model")
            layers[layer.name] = file_layer_spec(layer, custom)
            objects[("layer", layer.name)] = layer
            objects[("call", layer.name)] = call
            for m in layer._called_models().values():
                _collect_models(m, models, objects, custom)
        self._own_calls = own
        training = self._training_section()  # a file's (or a Keras config's) training setup stays
        spec = {
            "format": CURRENT,
            "name": self.name,
            **({"custom_layers": custom} if custom else {}),
            **({"models": models} if models else {}),
            "inputs": {self._input.name: self._input.file_spec()},
            "layers": layers,
            **({"training": training} if training else {}),
        }
        self._compile_spec(spec, objects)
        if old is not None or "_executors" in self.__dict__:
            self._relayout(old)  # the layers kept their weights; the new ones start fresh

    def _training_section(self) -> dict | None:
        if self._typed is not None:
            return super()._training_section()
        return self.__dict__.get("_pending_training")  # read from a Keras config, for the build

    def _built(self):
        if self._typed is None:
            raise ValueError(f"Sequential model '{self.name}' is not built yet: give it an Input first "
                             "(nnspec.Input(shape=...) as the first element, or input_shape= on the first layer), "
                             "call build((None, ...)), or call it on data")  # fmt: skip

    # ------------------------------------------------------------------ deferred build

    def build(self, input_shape=None) -> None:
        """Build the model for inputs of this shape, batch first (Keras's ``build((None, 4))``):
        a float32 input (Keras's: the first layer's compute dtype) is put before the layers."""
        if input_shape is None or isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
            raise ValueError(f"Sequential.build takes the input shape, batch first, e.g. (None, 4); got {input_shape!r}")
        shape = tuple(None if d is None else int(d) for d in input_shape)
        if len(shape) < 2:
            raise ValueError(f"Sequential.build takes the input shape, batch first, e.g. (None, 4); got {input_shape!r}")
        if self._input is not None:
            have = (self._input.batch_size, *self._input.shape)
            if any(a is not None and b is not None and a != b for a, b in zip(have, shape)) or len(have) != len(shape):
                raise ValueError(f"Sequential model '{self.name}' was built for inputs of shape {have}; "
                                 f"build() got {shape}")  # fmt: skip
            return
        if not self._pending:
            raise ValueError(f"Sequential model '{self.name}' has no layers to build")
        self._input = InputLayer(shape[1:], "float32", batch_size=shape[0])
        try:
            self._rebuild()
        except Exception:
            self._input = None
            self._typed = None
            raise

    def _build_on(self, x, batch_size: int | None = None) -> None:
        """Keras's deferred build: a Sequential model with no input shape takes the shape of the
        first batch it is given (its batch size included, as Keras's ``batch_shape``)."""
        if self._typed is not None or self._input is not None or not self._pending:
            return
        if isinstance(x, dict) and len(x) == 1:
            (x,) = x.values()
        if isinstance(x, (list, tuple)) and len(x) == 1:
            x = x[0]
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return  # batches from an iterable: built by the first one (_prepare_inputs)
        shape = tuple(x.shape)
        if len(shape) < 2:
            raise InputError(f"Sequential model '{self.name}' is not built yet, and was given an array of "
                             f"shape {shape}: it needs a batch axis and at least one more")  # fmt: skip
        n = shape[0] if batch_size is None else min(int(batch_size), shape[0])
        self.build((n, *shape[1:]))

    def _prepare_inputs(self, x) -> list:
        if self._typed is None:
            self._build_on(x)
            self._built()
        return super()._prepare_inputs(x)

    def predict(self, x, batch_size: int | None = 32, *args, **kwargs):
        self._build_on(x, batch_size or 32)
        return super().predict(x, batch_size, *args, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._build_on(x, batch_size or 32)
        return super().fit(x, y, batch_size, *args, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._build_on(x, batch_size or 32)
        return super().evaluate(x, y, batch_size, *args, **kwargs)

    @property
    def trainable(self) -> bool:
        if self._typed is None:
            return any(layer.trainable for layer in self._pending)
        return Model.trainable.fget(self)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if self._typed is None:  # not built: the layers keep the flag until they are
            for layer in self._pending:
                layer.trainable = value
            return
        Model.trainable.fset(self, value)

    def _output_names(self) -> list[str]:
        if self._typed is None and self._pending:  # compile() before the model is built
            return [self._pending[-1].name]
        return super()._output_names()

    def get_weights(self) -> list:
        return [] if self._typed is None else super().get_weights()

    @property
    def trainable_weights(self) -> list:
        return [] if self._typed is None else super().trainable_weights

    @property
    def non_trainable_weights(self) -> list:
        return [] if self._typed is None else super().non_trainable_weights

    def count_params(self) -> int:
        self._built()
        return super().count_params()

    def summary(self, line_length=None, print_fn=None, show_trainable: bool = False, expand_nested: bool = False):
        if self._typed is None:  # Keras prints the layers with unknown shapes and no weights
            no_weights = LayerDef.params  # the default: a layer type without weights
            rows = [(layer.name, layer.class_name, layer._def is None or layer._def.params is not no_weights)
                    for layer in self._pending]  # fmt: skip
            text = unbuilt_summary_text(self.name, rows, line_length, show_trainable)
            (print_fn or print)(text.rstrip("\n"))
            return None
        return super().summary(line_length, print_fn, show_trainable, expand_nested)

    def get_config(self):
        self._built()
        return super().get_config()

    @property
    def layers(self):
        if self._typed is None:
            return list(self._pending)
        return super().layers


# ---------------------------------------------------------------------- loading


def load(path_or_text: str | os.PathLike, *, seed: int | None = None) -> Model:
    """Load a model file (YAML or JSON, told apart by content) and compile it.

    Raises a :class:`~nnspec.specs.errors.SpecError` listing every problem found.
    """
    p = os.fspath(path_or_text)
    if "\n" not in p and (os.path.exists(p) or p.endswith((".yaml", ".yml", ".json"))):
        doc = load_file(p)
    else:
        doc = load_text(p)
    m = _model_from_doc(doc)
    m._seed = seed
    for sub in m._subs.values():
        sub._seed = seed
    return m


def model_from_json(text: str) -> Model:
    """The model of a JSON text: an nnspec model file, or a Keras model's ``to_json()``
    (read by :mod:`nnspec.api.keras_config`)."""
    from .keras_config import model_from_keras_config, read_keras_json

    keras_config = read_keras_json(text)
    if keras_config is not None:
        return model_from_keras_config(keras_config)
    return _model_from_doc(load_text(text))


def model_from_yaml(text: str) -> Model:
    return _model_from_doc(load_text(text))


__all__ = ["Model", "Sequential", "load", "model_from_json", "model_from_yaml", "Ref"]
