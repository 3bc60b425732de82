"""Layer objects and symbolic tensors of the Keras-like Python API.

A :class:`Layer` is a façade over a registered ``LayerDef``: ``Dense(64, activation="relu")``
records the attributes a model file would hold; calling it on a :class:`KerasTensor` records a
*call* (a node of the model file) and returns symbolic outputs with their inferred shapes. A
layer called twice is a shared layer. Models are built from these records by
:mod:`nnspec.api.model`, always by writing a model file and compiling it, so a model built in
Python and the same model written by hand are one thing.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from ..layerdefs import REGISTRY
from ..layerdefs.base import (
    NESTED_LAYER_KEYS,
    map_nested,
    InferContext,
    LayerDef,
    ParamSpec,
    ShapeError,
    TensorType,
    normalize_attrs,
    snake_case,
)
from ..specs.errors import did_you_mean

_uid = itertools.count()
_name_counts: dict[str, int] = {}


def unique_name(prefix: str) -> str:
    """Keras's automatic names: ``dense``, ``dense_1``, ``dense_2``..."""
    n = _name_counts.get(prefix, 0)
    _name_counts[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, Layer):
        return v.layer_spec()
    if isinstance(v, tuple):
        return [_jsonable(e) for e in v]
    if isinstance(v, list):
        return [_jsonable(e) for e in v]
    if isinstance(v, dict):
        return {k: _jsonable(e) for k, e in v.items()}
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    return v


class KerasTensor:
    """A symbolic value: what a layer call returns. ``shape`` has ``None`` for the batch."""

    def __init__(self, ttype: TensorType, call: "Call | None", port: int = 0, input_layer=None) -> None:
        self._type = ttype
        self._call = call
        self._port = port
        self._input_layer = input_layer
        self._uid = next(_uid)

    shape = property(lambda self: self._type.shape)
    dtype = property(lambda self: self._type.dtype)

    @property
    def name(self) -> str:
        if self._input_layer is not None:
            return self._input_layer.name
        base = self._call.layer.name
        return base if self._port == 0 else f"{base}:{self._port}"

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    # Operators make op layers, as Keras records ``x + 3.0`` in a functional graph (keras_ops.py).
    def _op(self, fn: str, other, reflected: bool = False) -> KerasTensor:
        from .keras_ops import tensor_op

        return tensor_op(fn, (other, self) if reflected else (self, other), {})

    __add__ = lambda self, o: self._op("add", o)
    __radd__ = lambda self, o: self._op("add", o, True)
    __sub__ = lambda self, o: self._op("subtract", o)
    __rsub__ = lambda self, o: self._op("subtract", o, True)
    __mul__ = lambda self, o: self._op("multiply", o)
    __rmul__ = lambda self, o: self._op("multiply", o, True)
    __truediv__ = lambda self, o: self._op("true_divide", o)
    __rtruediv__ = lambda self, o: self._op("true_divide", o, True)
    __pow__ = lambda self, o: self._op("power", o)
    __rpow__ = lambda self, o: self._op("power", o, True)
    __matmul__ = lambda self, o: self._op("matmul", o)
    __rmatmul__ = lambda self, o: self._op("matmul", o, True)

    def _op1(self, fn: str) -> KerasTensor:
        from .keras_ops import tensor_op

        return tensor_op(fn, (self,), {})

    __neg__ = lambda self: self._op1("negative")
    __abs__ = lambda self: self._op1("absolute")

    __iter__ = None  # indexing does not make a KerasTensor iterable (iter() raises TypeError)

    def __getitem__(self, key) -> KerasTensor:
        from .keras_ops import tensor_get_item

        return tensor_get_item(self, key)


class Call:
    """One call of a layer: its input tensors and output tensors (a node of the model file)."""

    def __init__(self, layer: "Layer", inputs: list[KerasTensor], out_types: list[TensorType]) -> None:
        self.layer = layer
        self.call_args: dict = {}  # call arguments this call gives that differ from the layer's
        self.inputs = inputs
        self.outputs = [KerasTensor(t, self, i) for i, t in enumerate(out_types)]
        self.uid = next(_uid)


class _CallContext(InferContext):
    """Types wrapped layers and models for calls made from Python."""

    def __init__(self, models: dict) -> None:
        self.models = models

    def layer_def(self, layer):
        return REGISTRY[layer["type"]]

    def infer_layer(self, layer, inputs):
        defn = REGISTRY[layer["type"]]
        return defn.infer(normalize_attrs(defn, _strip(layer)), inputs, self)

    def layer_params(self, layer, inputs):
        from ..compiler.shapes import frozen_if_untrainable

        defn = REGISTRY[layer["type"]]
        attrs = normalize_attrs(defn, _strip(layer))
        return frozen_if_untrainable(attrs, defn.params(attrs, inputs, self))

    def infer_model(self, model, inputs):
        return self.models[model]._infer_call(inputs)

    def model_params(self, model):
        m = self.models[model]
        return [ParamSpec(f"{layer}/{p.name}", p.shape, p.initializer, p.trainable) for layer, p in m._typed.params()]


def _strip(layer: dict) -> dict:
    return {k: v for k, v in layer.items() if k != "type"}


class Layer:
    """A layer of the Python API. Subclasses are generated per registered type (``Dense``...)."""

    _def: LayerDef | None = None
    _traced = True  # a subclass without a definition is a Python custom layer, traced when first called

    def __init__(self, *args, name: str | None = None, **kwargs) -> None:
        defn = self._def
        if defn is None:  # a Python custom layer: traced into a declaration when first called
            self._init_custom(args, name, kwargs)
            return
        cls = defn.name
        if len(args) > len(defn.positional):
            raise TypeError(f"{cls}() takes {len(defn.positional)} positional argument(s) "
                            f"({', '.join(defn.positional) or 'none'}); got {len(args)}")  # fmt: skip
        attrs: dict = {}
        for k, v in zip(defn.positional, args):
            attrs[k] = v
        self._input_shape_hint = None
        self._batch_size_hint = None  # Keras 2's batch_input_shape (or batch_shape) on a first layer
        for k in ("input_shape", "batch_input_shape", "batch_shape", "input_dim"):
            if k in kwargs and k not in defn.attr_names:
                v = kwargs.pop(k)
                if k in ("batch_input_shape", "batch_shape"):
                    self._batch_size_hint, self._input_shape_hint = v[0], tuple(v)[1:]
                else:
                    self._input_shape_hint = (v,) if k == "input_dim" else tuple(v)
        for k, v in kwargs.items():
            if k not in defn.attr_names:
                hint = did_you_mean(k, defn.attr_names)
                raise TypeError(f"{cls}() got an unknown argument '{k}'" + (f"; {hint}" if hint else ""))
            if k in attrs:
                raise TypeError(f"{cls}() got two values for '{k}'")
            attrs[k] = v
        missing = [a.name for a in defn.attrs if a.required and a.name not in attrs]
        if missing:
            raise TypeError(f"{cls}() missing required argument(s): {', '.join(missing)}")
        if name is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", name):
            raise ValueError(f"invalid layer name {name!r}: use letters, digits, '_', '.', '-'")
        self._attrs = {k: (v if isinstance(v, Layer) else _jsonable(v)) for k, v in attrs.items()}
        self.name = name or unique_name(snake_case(cls))
        self.calls: list[Call] = []
        self._model_ref = None  # set when the layer belongs to a compiled model
        self._check_attrs()

    def _init_custom(self, args, name, kwargs) -> None:
        cls = type(self).__name__
        if args:
            raise TypeError(f"{cls}: nnspec.layers.Layer.__init__ takes keyword arguments only (name, trainable, "
                            "dtype)")  # fmt: skip
        unknown = sorted(set(kwargs) - {"trainable", "dtype", "input_shape"})
        if unknown:
            raise TypeError(f"{cls}: unknown base layer arguments {unknown} (Keras's are name, trainable, dtype)")
        if name is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", name):
            raise ValueError(f"invalid layer name {name!r}: use letters, digits, '_', '.', '-'")
        self._input_shape_hint = tuple(kwargs["input_shape"]) if "input_shape" in kwargs else None
        self._attrs = {k: kwargs[k] for k in ("trainable", "dtype") if k in kwargs}
        self.name = name or unique_name(snake_case(cls))
        self.calls = []
        self._model_ref = None
        self._recorder = None

    def add_weight(self, shape=None, initializer="glorot_uniform", dtype=None, trainable=True, regularizer=None,
                   constraint=None, name=None, **kwargs):  # fmt: skip
        """Keras's ``add_weight``, for ``build`` of a Python custom layer: records the weight in the
        layer's declaration and returns the symbolic tensor ``call`` uses."""
        if getattr(self, "_recorder", None) is None:
            raise RuntimeError(f"{type(self).__name__}.add_weight: call it from build(), which nnspec runs "
                               "when the layer is first called")  # fmt: skip
        if dtype not in (None, "float32"):
            raise ValueError(f"add_weight: nnspec weights are float32; got dtype={dtype!r}")
        return self._recorder.add(shape, initializer, trainable, name, regularizer, constraint)

    def build(self, input_shape) -> None:
        """Create the weights (``add_weight``); custom layers override it, as in Keras."""

    def call(self, inputs):
        raise NotImplementedError(f"{type(self).__name__} must define call(self, inputs)")

    def _trace(self, in_types) -> None:
        """Make a Python custom layer a ``CustomLayer`` of its traced declaration (api/custom.py)."""
        from .custom import trace

        try:
            definition = trace(self, [TensorType(t.shape, t.dtype) for t in in_types])
        except ValueError as e:  # an expression the language refuses
            raise ValueError(f"{type(self).__name__} '{self.name}': {e}") from None
        self._def = REGISTRY["CustomLayer"]
        self._attrs = {"class_name": type(self).__name__, "definition": definition, "arguments": self._given,
                       **self._attrs}  # fmt: skip

    def _check_attrs(self) -> None:
        """Validate the attributes now, as Keras's constructors do, with the model-file schema."""
        if self._def is not None and self._def.name == "CustomLayer":  # checked with its model's file
            return
        from ..layerdefs.custom import schema_form
        from ..specs.load import Document
        from ..specs.validate import layer_problems

        problems = layer_problems(Document(schema_form(self.layer_spec())))
        if problems:
            raise ValueError(f"{self._def.name}(): " + "; ".join(problems))

    # ------------------------------------------------------------------ spec

    @property
    def type(self) -> str:
        return self._def.name if self._def is not None else type(self).__name__

    @property
    def class_name(self) -> str:
        if self._def is not None and self._def.name == "CustomLayer":
            return self._attrs["class_name"]
        return self.type

    def layer_spec(self) -> dict:
        """The model-file definition of this layer: ``{type: Dense, units: 64, ...}``."""
        out = {"type": self.type}
        for k, v in self._attrs.items():
            out[k] = v.layer_spec() if isinstance(v, Layer) else v
        return out

    @property
    def attrs(self) -> dict:
        """Every attribute, Keras's defaults filled."""
        from ..compiler.normalize import normalize_layer

        return _strip(normalize_layer(self.layer_spec()))

    def get_config(self) -> dict:
        """Keras-style config: the name and every attribute."""
        return {"name": self.name, **self.attrs}

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        """The layer of a config: nnspec's ``get_config()``, or a Keras layer's (its dtype
        policy, serialized initializers and Keras-only arguments read as ``model_from_json``
        reads them)."""
        if cls._def is None:
            raise TypeError("from_config needs a concrete layer class such as Dense")
        from .keras_config import layer_arguments

        name = config.get("name")
        config = layer_arguments(cls._def.name, config)
        if name is not None:
            config["name"] = name
        for k in NESTED_LAYER_KEYS:
            if k in config:
                config[k] = map_nested(config[k], layer_from_spec)
        return cls(**config)

    @property
    def layer(self):
        """The wrapped layer of TimeDistributed and Bidirectional."""
        inner = self._attrs.get("layer")
        if isinstance(inner, dict):
            return layer_from_spec(inner, self._models())
        return inner

    def _models(self) -> dict:
        return self._model_ref._submodel_objects() if self._model_ref is not None else {}

    # ------------------------------------------------------------------ calls

    def _called_models(self) -> dict:
        """Sub-models this layer's attributes call (TimeDistributed(model))."""
        from .model import Model

        out = {}
        inner = self._attrs.get("layer")
        if isinstance(inner, Model):
            out[inner.name] = inner
        elif isinstance(inner, dict) and inner.get("type") == "Model" and self._model_ref is not None:
            sub = self._models().get(inner["model"])
            if sub is not None:
                out[inner["model"]] = sub
        return out

    def _infer(self, in_types: list[TensorType], call_args: dict | None = None) -> list[TensorType]:
        defn = self._def
        lo, hi = defn.arity
        if len(in_types) < lo or (hi is not None and len(in_types) > hi):
            raise ValueError(f"{self.type} '{self.name}' takes {lo}{'+' if hi is None else ''} input(s); "
                             f"got {len(in_types)}")  # fmt: skip
        attrs = normalize_attrs(defn, {**_strip(self.layer_spec()), **(call_args or {})})
        try:
            return defn.infer(attrs, in_types, _CallContext(self._called_models()))
        except ShapeError as e:
            shapes = ", ".join(str(t.shape) for t in in_types)
            raise ValueError(f"{self.type} '{self.name}': {e} (inputs: {shapes})") from None

    def __call__(self, inputs, *more, **kwargs):
        """Call the layer on one tensor or a list of them, as Keras does; MultiHeadAttention also
        takes its inputs as separate arguments (``mha(query, value[, key])``), and the recurrent
        layers (SimpleRNN, LSTM, GRU, ConvLSTM, RNN, Bidirectional) their initial states as
        ``initial_state=[h, c]`` (inputs after the sequence, as in a model file's edges:
        ``x, h, c -> lstm``). Keras's call
        arguments that describe the network (``use_causal_mask``, ``return_attention_scores``)
        become attributes of the layer, given by its first call; a later call that gives other
        values keeps them for itself (a ``shares`` entry with them in the file)."""
        call_names = self._def.extra.get("call_attrs", ()) if self._def is not None else ()
        initial = kwargs.pop("initial_state", None)
        training = kwargs.pop("training", None)
        if initial is not None and not (self._def is not None and self._def.extra.get("initial_state")):
            raise TypeError(
                f"{self.type}.__call__ takes no initial_state (the recurrent layers do: SimpleRNN, LSTM, GRU, "
                "ConvLSTM1D/2D/3D, RNN, Bidirectional)"
            )
        unknown = sorted(k for k in kwargs if k not in call_names)
        if unknown:
            raise TypeError(f"{self.type}.__call__ got unexpected arguments {unknown}")
        if more and not (self._def is not None and self._def.extra.get("call_positional")):
            raise TypeError(f"{self.type}.__call__ takes its inputs as one list; got {1 + len(more)} arguments")
        call_args: dict = {}
        if kwargs:
            changed = {k: _jsonable(v) for k, v in kwargs.items() if self.attrs.get(k) != v}
            if changed and self.calls:
                call_args = changed  # this call's own: the layer keeps what its first call gave
            else:
                self._attrs.update(changed)
                self._check_attrs()
        if isinstance(inputs, (list, tuple)) and not more and not any(hasattr(x, "shape") for x in _flat(inputs)):
            inputs = [inputs]  # nested Python numbers: one array, as Keras reads them
        xs = [inputs, *more] if more else list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if initial is not None:  # Keras's initial_state: inputs after the sequence (per-cell lists flattened)
            xs += _flat(initial)
        if not any(isinstance(x, KerasTensor) for x in xs):
            if training:
                raise TypeError(f"{self.type} '{self.name}' called on arrays runs in inference mode; "
                                "training=True is not supported (fit() and train_on_batch() train)")  # fmt: skip
            return self._call_eager(xs, call_args)
        for x in xs:
            if not isinstance(x, KerasTensor):
                raise TypeError(f"{self.type} '{self.name}' was called on {type(x).__name__} among symbolic "
                                "tensors; call a layer on nnspec.Input(...) or other layers' outputs, or on "
                                "arrays only")  # fmt: skip
        # ``training=`` on a symbolic call (the transfer-learning guide's base_model(x, training=False))
        # is taken and has no effect, as in Keras 3: fit, evaluate and predict call the model with
        # training=True or False, which overrides what a node was given (keras-team/keras#20285).
        # A frozen layer (trainable=False) is what runs BatchNormalization as at inference in fit.
        return self._call_symbolic(xs, call_args)

    def _call_symbolic(self, xs: list, call_args: dict):
        in_types = [x._type for x in xs]
        if self._def is None and self._traced:
            self._trace(in_types)
        first = self._first_types()
        if first is not None:
            self._check_shared_params(first, in_types)
        call = Call(self, xs, self._infer(in_types, call_args))
        call.call_args = call_args
        self.calls.append(call)
        outs = call.outputs
        return outs[0] if len(outs) == 1 else outs

    def _call_eager(self, xs: list, call_args: dict):
        """Keras's eager call: the layer on arrays (NumPy, or anything ``np.asarray`` reads) gives
        arrays, in inference mode. It runs as a one-layer model kept per input signature, built on
        the first call (Keras builds the layer then), whose weights are the layer's: the model
        that owns the layer shares them, or, if none does, this one becomes the owner, so
        ``layer.weights`` has them from then on. Floats are computed in float32, as Keras casts
        them to the layer's dtype; integers (token ids) stay integers."""
        import json

        import numpy as np

        from ..specs.errors import InputError
        from .model import Model

        arrays = []
        for i, x in enumerate(xs):
            try:
                a = np.asarray(x)
            except (TypeError, ValueError) as e:
                raise InputError(f"{self.type} '{self.name}': input {i} cannot be read as an array ({e})") from None
            if a.dtype.kind not in "biuf":
                raise InputError(f"{self.type} '{self.name}': input {i} must hold numbers; got dtype {a.dtype}")
            if a.ndim < 1:
                raise InputError(f"{self.type} '{self.name}': input {i} needs a batch axis; got a scalar")
            arrays.append(np.ascontiguousarray(a, np.int32 if a.dtype.kind in "iu" else np.float32))
        inner = self._attrs.get("layer")  # Bidirectional's or TimeDistributed's layer
        inner = inner._attrs if isinstance(inner, Layer) else inner if isinstance(inner, dict) else {}
        stateful = bool(self._attrs.get("stateful") or inner.get("stateful"))
        batch = arrays[0].shape[0] if stateful else None  # a stateful layer keeps states for one batch size
        key = (tuple((a.shape[1:], a.dtype.str) for a in arrays), batch, json.dumps(call_args, sort_keys=True))
        cache = self.__dict__.setdefault("_eager_models", {})
        hit = cache.get(key)
        if hit is None or hit[1] is not self._model_ref:
            owner = self._model_ref
            ins = [Input(shape=a.shape[1:], dtype=str(a.dtype), batch_size=batch) for a in arrays]
            calls = list(self.calls)
            try:
                outs = self._call_symbolic(ins, call_args)
                model = Model(ins, outs, name=unique_name(f"{self.name}_eager"))
            finally:
                self.calls = calls  # an eager call is no node of any graph (as in Keras)
            if owner is not None:
                self._model_ref = owner  # the owner's weights (the eager model shares its store)
            self.__dict__.setdefault("_eager_types", [t._type for t in ins])
            hit = cache[key] = (model, self._model_ref)
        return hit[0].predict_on_batch(arrays if len(arrays) > 1 else arrays[0])

    def _check_shared_params(self, first_types, in_types) -> None:
        if self._def is None:
            return
        a = [p.shape for p in self._param_specs(first_types)]
        b = [p.shape for p in self._param_specs(in_types)]
        if a != b:
            raise ValueError(f"{self.type} '{self.name}' has weights {a} from its first call; inputs "
                             f"{[t.shape for t in in_types]} would need {b}")  # fmt: skip

    def _param_specs(self, in_types) -> list[ParamSpec]:
        from ..compiler.shapes import frozen_if_untrainable

        attrs = normalize_attrs(self._def, _strip(self.layer_spec()))
        return frozen_if_untrainable(attrs, self._def.params(attrs, in_types, _CallContext(self._called_models())))

    # ------------------------------------------------------------------ Keras introspection

    def _node(self, i: int) -> Call:
        if not self.calls:
            raise AttributeError(f"layer '{self.name}' has never been called, so it has no input or output yet")
        if not 0 <= i < len(self.calls):
            raise ValueError(f"layer '{self.name}' has {len(self.calls)} call(s); asked for node {i}")
        return self.calls[i]

    @staticmethod
    def _shapes(ts):
        shapes = [t.shape for t in ts]
        return shapes[0] if len(shapes) == 1 else shapes

    def get_input_shape_at(self, node_index: int):
        return self._shapes(self._node(node_index).inputs)

    def get_output_shape_at(self, node_index: int):
        return self._shapes(self._node(node_index).outputs)

    def get_input_at(self, node_index: int):
        ins = self._node(node_index).inputs
        return ins[0] if len(ins) == 1 else ins

    def get_output_at(self, node_index: int):
        outs = self._node(node_index).outputs
        return outs[0] if len(outs) == 1 else outs

    def _single(self, what: str, getter):
        values = [getter(i) for i in range(len(self._node(0).layer.calls))]
        if any(v != values[0] for v in values[1:]):
            raise AttributeError(f"layer '{self.name}' has several calls with different {what}s; "
                                 f"use get_{what.replace(' ', '_')}_at(node_index)")  # fmt: skip
        return values[0]

    @property
    def input_shape(self):
        return self._single("input shape", self.get_input_shape_at)

    @property
    def output_shape(self):
        return self._single("output shape", self.get_output_shape_at)

    @property
    def input(self):
        return self.get_input_at(0)

    @property
    def output(self):
        return self.get_output_at(0)

    def _first_types(self) -> list | None:
        """The input types the layer's weights were made for (its first call, symbolic or on
        arrays); None before any."""
        if self.calls:
            return [x._type for x in self.calls[0].inputs]
        return self.__dict__.get("_eager_types")

    def count_params(self) -> int:
        first = self._first_types()
        if first is None:
            raise ValueError(f"layer '{self.name}' is not built yet (never called): its weights' shapes are unknown")
        return sum(p.size for p in self._param_specs(first))

    @property
    def built(self) -> bool:
        """Keras's ``built``: the layer has been called, so its weights' shapes are known. (Keras
        also calls some layers without weights built from the start, Dropout but not Flatten;
        here a layer is built once called.)"""
        return self._first_types() is not None

    def compute_output_shape(self, input_shape):
        """The output shape for an input shape (batch first, ``None`` for unknown), or a list of
        them for a layer of several inputs or outputs, by the layer's shape rule, as Keras's."""
        many = isinstance(input_shape, list) and bool(input_shape) and isinstance(input_shape[0], (list, tuple))
        types = [TensorType(tuple(s), "float32") for s in (input_shape if many else [input_shape])]
        if self._def is None and self._traced:
            self._trace(types)
        shapes = [t.shape for t in self._infer(types)]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def trainable_weights(self) -> list:
        return self._weights_where(True)

    @property
    def non_trainable_weights(self) -> list:
        return self._weights_where(False)

    def _weights_where(self, trainable: bool) -> list:
        if self._model_ref is None:
            return []
        store = self._model_ref._weights()
        return [store.view(p.name).astype(p.dtype) for p in self._params() if p.trainable == trainable]

    def _params(self) -> list:
        model = self._model_ref
        if model is None:
            raise ValueError(f"layer '{self.name}' is not part of a compiled model, so it has no weights yet")
        return [p for p in model.plan().params if p.name.startswith(self.name + "/")]

    def _weight_names(self) -> list[str]:
        return [p.name for p in self._params()]

    @property
    def weights(self) -> list:
        return self.get_weights()

    def reset_states(self) -> None:
        """Zero the states a stateful recurrent layer keeps between batches (Keras's
        ``reset_state``): its next call starts from zeros."""
        if self._def is None or not self._def.extra.get("initial_state"):
            raise AttributeError(f"{self.type} '{self.name}' is not a recurrent layer; it keeps no states")
        model = self._model_ref
        kept = model.__dict__.get("_kept_states") if model is not None else None
        if not kept:
            return
        calls = {n for n, tn in model._typed.nodes.items() if tn.node.layer == self.name}
        for key in [k for k in kept if k.split(":", 1)[1].rsplit(":", 1)[0] in calls]:
            del kept[key]

    reset_state = reset_states

    @property
    def states(self) -> list:
        """A stateful recurrent layer's kept states (copies), as Keras's ``layer.states``: what
        its last batch ended with, zeros before the first (the RNN guide passes them on as
        another layer's ``initial_state``)."""
        import numpy as np

        from ..compiler.lower import STATE_PREFIX

        if self._def is None or not self._def.extra.get("initial_state"):
            raise AttributeError(f"{self.type} '{self.name}' is not a recurrent layer; it keeps no states")
        model = self._model_ref
        nodes = [n for n, tn in model._typed.nodes.items() if tn.node.layer == self.name] if model else []
        state_types = model._typed.nodes[nodes[0]].state_types if nodes else []
        if not state_types:
            return []  # not stateful, or not built: no states kept (Keras's are None then)
        kept = model.__dict__.get("_kept_states") or {}
        names = [f"{STATE_PREFIX}{nodes[0]}:{k}" for k in range(len(state_types))]
        if all(n in kept for n in names):
            return [kept[n].copy() for n in names]
        return [np.zeros(t.shape, np.float32) for t in state_types]

    def get_weights(self) -> list:
        """This layer's weight arrays (copies), in Keras's order; none before the layer is built
        (never called, as in Keras)."""
        if self._model_ref is None and not self.calls:
            return []
        params = self._params()
        store = self._model_ref._weights()
        return [store.view(p.name).astype(p.dtype) for p in params]

    def set_weights(self, weights) -> None:
        from ..specs.errors import WeightsError

        names = self._weight_names()
        weights = list(weights)
        if len(weights) != len(names):
            raise WeightsError(f"layer '{self.name}' has {len(names)} weight arrays ({', '.join(names)}); "
                               f"got {len(weights)}")  # fmt: skip
        store = self._model_ref._weights()
        for n, w in zip(names, weights):
            store.assign(n, w, where=f"layer '{self.name}': ")

    def adapt(self, data) -> None:
        """Compute the weights from data, as Keras's ``adapt`` (Normalization: the mean and
        variance over every axis but ``axis``). ``data``: an array, or an iterable of batches
        (arrays, or ``(x, y)`` tuples whose ``x`` is used). Before the layer is in a model the
        weights are kept and given to the first model built with it."""
        import numpy as np

        fn = self._def.extra.get("adapt")
        if fn is None:
            raise TypeError(f"{self.type} has no adapt(): its weights are not computed from data")
        if isinstance(data, np.ndarray) or not hasattr(data, "__iter__"):
            data = np.asarray(data)
        else:
            batches = [np.asarray(b[0] if isinstance(b, tuple) else b) for b in data]
            if not batches:
                raise ValueError(f"{self.type}.adapt: no batches in the data")
            data = np.concatenate(batches)
        if self.calls:
            t = self.calls[0].inputs[0]._type
        else:
            t = TensorType((None, *data.shape[1:]), str(data.dtype))
        weights = fn(self.attrs, t, data)
        if self._model_ref is not None:
            self.set_weights(weights)
        else:
            self._adapted = weights

    @property
    def trainable(self) -> bool:
        return bool(self.attrs.get("trainable", True))

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """``layer.trainable = False`` freezes its weights (Keras's fine-tuning idiom); in a model,
        the model's weight layout follows (see ``Model._set_trainable``)."""
        value = bool(value)
        model = self._model_ref
        if model is not None and model._layers.get(self.name) is self:
            model._set_trainable([self.name], value)
        else:
            self._attrs["trainable"] = value

    def __repr__(self) -> str:
        return f"<{self.type} name={self.name}>"


class InputLayer:
    """The layer behind ``nnspec.Input``: a model input with a shape (batch excluded) and dtype."""

    type = class_name = "InputLayer"

    def __init__(self, shape, dtype: str = "float32", name: str | None = None, batch_size: int | None = None) -> None:
        shape = tuple(None if d is None else int(d) for d in shape)
        for d in shape:
            if d is not None and d < 1:
                raise ValueError(f"Input shape {shape}: dimensions must be positive or None")
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise ValueError(f"Input batch_size must be a positive integer; got {batch_size!r}")
        self.name = name or unique_name("input_layer")
        self.dtype = str(dtype)
        self.shape = shape
        self.batch_size = None if batch_size is None else int(batch_size)
        self.output = KerasTensor(TensorType((self.batch_size, *shape), self.dtype), None, 0, input_layer=self)
        self.calls: list = []

    input = property(lambda self: self.output)
    output_shape = property(lambda self: self.output.shape)
    input_shape = output_shape

    def get_config(self) -> dict:
        return {"name": self.name, **self.file_spec()}

    def file_spec(self) -> dict:
        """The model file's entry for this input."""
        return {"shape": list(self.shape), "dtype": self.dtype, **({"batch_size": self.batch_size} if self.batch_size else {})}

    def count_params(self) -> int:
        return 0

    # An input has no weights; Keras's InputLayer answers these too, so code that walks
    # ``model.layers`` works unchanged.
    weights = trainable_weights = non_trainable_weights = property(lambda self: [])

    def get_weights(self) -> list:
        return []

    def set_weights(self, weights) -> None:
        if len(weights):
            raise ValueError(f"input layer '{self.name}' has no weights; got {len(weights)} arrays")

    def __repr__(self) -> str:
        return f"<InputLayer name={self.name} shape={self.shape}>"


def _flat(v) -> list:
    """Nested lists and tuples of tensors, flattened in order (Keras's per-cell initial states)."""
    return [t for x in v for t in _flat(x)] if isinstance(v, (list, tuple)) else [v]


def Input(shape=None, dtype: str = "float32", name: str | None = None, batch_size: int | None = None,
          batch_shape=None) -> KerasTensor:  # fmt: skip
    """A model input, as ``keras.Input``: ``shape`` excludes the batch dimension; ``batch_size``
    (or ``batch_shape``, the batch first) fixes the batch size, which a stateful recurrent
    layer needs."""
    if batch_shape is not None:
        if shape is not None or batch_size is not None:
            raise ValueError("Input takes batch_shape, or shape and batch_size; not both")
        batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
    if shape is None:
        raise TypeError("Input needs shape= (or batch_shape=)")
    return InputLayer(shape, dtype, name, batch_size).output


_CLASSES: dict[str, type] = {}


def layer_class(type_name: str) -> type:
    """The Python class of a registered layer type, made once from its ``LayerDef``."""
    if type_name not in _CLASSES:
        defn = REGISTRY[type_name]
        doc = f"{defn.doc}\n\nArguments (model-file parameters, Keras's names and defaults):\n" + "\n".join(
            f"    {a.name}: {a.doc}" + ("" if a.required else f" Default: {a.default!r}.") for a in defn.attrs
        )
        _CLASSES[type_name] = type(type_name, (Layer,), {"_def": defn, "__doc__": doc, "__module__": "nnspec.layers"})
    return _CLASSES[type_name]


def file_layer_spec(layer, custom: dict) -> dict:
    """``layer``'s model-file definition; the custom layer declarations it uses (also inside a
    wrapper) go into ``custom``."""
    from ..layerdefs.custom import file_form

    return file_form(layer.layer_spec(), custom)


def layer_from_spec(spec: dict, models: dict | None = None, name: str | None = None):
    """A Layer (or sub-model) object from a model-file layer definition."""
    spec = dict(spec)
    t = spec.pop("type")
    if t == "CustomLayer":
        name = name or unique_name(snake_case(spec["class_name"]))
    if t == "Model" and models is not None and spec.get("model") in models:
        return models[spec["model"]]
    for k in NESTED_LAYER_KEYS:
        if k in spec:
            spec[k] = map_nested(spec[k], lambda d: d if d.get("type") == "Model" else layer_from_spec(d, models))
    obj = layer_class(t).__new__(layer_class(t))
    Layer.__init__(obj, name=name or unique_name(snake_case(t)), **spec)
    return obj
