"""Read a Keras model config (``keras_model.to_json()``, ``get_config()``, or the ``config.json``
inside a ``.keras`` file) into an nnspec model.

Keras writes a model as data: each layer's class name and constructor arguments, and for a
functional model each layer's calls (``inbound_nodes``) as references ``[layer, node, tensor]``
to the tensors it was called on. nnspec's layer types and parameters are Keras's, so reading it
is a translation, not an interpretation: the layers are made with nnspec's own classes and called
on each other's outputs as the config says, and the functional builder writes the model file
(shared layers as ``shares``, nested models under ``models``), exactly as if the Keras code had
been written against ``nnspec.layers``. Keras 3 configs (``module``/``class_name``/``config``,
nodes as ``args``/``kwargs``) and Keras 2 ones (nodes as nested lists) are both read.

Nothing is executed: a config naming a ``Lambda`` layer, a registered custom class or a custom
function is refused with the layer's name. Keras's arguments that do not change what the layer
computes in nnspec (``stateful=False``, ``unroll``, ``use_cudnn``, LoRA and quantization left
off...) are dropped; any other argument nnspec lacks is an error naming the layer and the
argument, never silently ignored.
"""

from __future__ import annotations

import json

from ..layerdefs import REGISTRY
from ..specs.errors import KerasConfigError, did_you_mean
from ..specs.validate import KERAS_MODEL_CLASSES as MODEL_CLASSES
from ..specs.validate import is_keras_config

# Keras class names that differ from nnspec's type names.
_TYPE_OF_CLASS = {d.extra["class_name"]: name for name, d in REGISTRY.items() if "class_name" in d.extra}

# Arguments Keras serializes that change nothing nnspec computes, when they hold these values
# (None: any value). Anything else nnspec does not know is an error.
_NEUTRAL = {
    "stateful": (False,),
    "unroll": None,  # the same function, unrolled or looped
    "use_cudnn": None,  # a backend choice
    "implementation": None,  # Keras 2 RNNs' kernel choice, same function
    "time_major": (False,),
    "quantization_config": (None,),
    "lora_rank": (None, 0),
    "lora_alpha": None,
    "input_length": None,  # Keras 2 Embedding: the input's length, known from the input
    "batch_input_shape": None,  # Keras 2's first layer of a Sequential model: read as its input
    "batch_shape": None,
    "input_shape": None,
    "sparse": (False,),
    "ragged": (False,),
    "optional": (False,),
    "autocast": (True,),
    "synchronized": (False,),  # BatchNormalization across devices
    "renorm": (False,),  # BatchNormalization: batch renormalization off (then its two knobs do nothing)
    "renorm_clipping": None,
    "renorm_momentum": None,
    "activity_regularizer": (None,),  # Keras's base Layer argument, on every layer
}

# Keras 2's names of arguments Keras 3 renamed, by layer class.
_RENAMED = {"LeakyReLU": {"alpha": "negative_slope"}}

# Keras 3's serialized class names of initializers, regularizers and constraints -> nnspec's names.
_OBJECTS = {
    # initializers
    "Zeros": "zeros", "Ones": "ones", "Constant": "constant", "RandomNormal": "random_normal",
    "RandomUniform": "random_uniform", "TruncatedNormal": "truncated_normal",
    "GlorotNormal": "glorot_normal", "GlorotUniform": "glorot_uniform", "HeNormal": "he_normal",
    "HeUniform": "he_uniform", "LecunNormal": "lecun_normal", "LecunUniform": "lecun_uniform",
    "Orthogonal": "orthogonal", "OrthogonalInitializer": "orthogonal", "Identity": "identity",
    "IdentityInitializer": "identity", "VarianceScaling": "variance_scaling",
    # regularizers
    "L1": "l1", "L2": "l2", "L1L2": "l1_l2",
    # constraints
    "MaxNorm": "max_norm", "NonNeg": "non_neg", "UnitNorm": "unit_norm", "MinMaxNorm": "min_max_norm",
}  # fmt: skip

# Keras's arguments of initializers when left at their defaults, dropped to keep files short.
_INIT_DEFAULTS = {
    "random_normal": {"mean": 0.0, "stddev": 0.05}, "random_uniform": {"minval": -0.05, "maxval": 0.05},
    "truncated_normal": {"mean": 0.0, "stddev": 0.05}, "constant": {"value": 0.0}, "orthogonal": {"gain": 1.0},
    "identity": {"gain": 1.0},
    "variance_scaling": {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
}  # fmt: skip

_CALL_KWARGS_IGNORED = ("training",)  # fixed by fit/predict, not by the graph

# Keras 3 records the ops that compute masks while it builds a functional model (Embedding's
# ``not_equal(ids, 0)``, the merge layers' ``logical_or`` of their inputs' masks...) as nodes,
# and passes their result as the ``mask`` of the layers that take one. nnspec derives the same
# masks along the graph (docs/format.md, masks), so these nodes and arguments are left out.
MASK_OPS = ("NotEqual", "Equal", "LogicalOr", "LogicalAnd", "LogicalNot", "All", "Any", "ExpandDims",
            "Squeeze", "Cast", "Reshape", "BroadcastTo", "ConvertToTensor")  # fmt: skip


def read_keras_json(text: str):
    """Parse the text of a Keras JSON config; None when it is not one."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if is_keras_config(obj) else None


def model_from_keras_config(obj):
    """The nnspec model of a Keras model config (the ``to_json()`` dict, or a model's
    ``get_config()``). The ``compile_config`` a ``.keras`` archive holds beside it becomes the
    model file's ``training`` section, so ``compile()`` with no arguments trains as Keras did."""
    if "config" in obj and obj.get("class_name") in MODEL_CLASSES:
        cls, cfg = obj["class_name"], obj["config"]
    else:
        cls, cfg = ("Functional" if "input_layers" in obj else "Sequential"), obj
    model = _Reader().model(cls, cfg, "model")
    compiled = obj.get("compile_config")
    if isinstance(compiled, dict):
        from .model import Model

        training = training_from_compile_config(compiled)  # dict outputs: keyed as the model's
        if training and model._typed is None:  # an unbuilt Sequential: its build keeps it
            model._pending_training = training
        elif training:
            spec = {**model.get_config(), "training": training}
            model = Model.from_config(spec)
    return model


# Optimizer arguments Keras writes that nnspec leaves at its own defaults when they are off.
_OPTIMIZER_OFF = {"weight_decay": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None,
                  "use_ema": False, "ema_overwrite_frequency": None, "loss_scale_factor": None,
                  "gradient_accumulation_steps": None}  # fmt: skip
# Keras's defaults of metric arguments, left out of the training section when a config holds them
# (the classes whose default differs are in _METRIC_DEFAULTS_OF); other arguments are kept as given
_METRIC_DEFAULTS = {"threshold": 0.5, "k": 5, "thresholds": None, "top_k": None, "class_id": None,
                    "num_thresholds": 200, "curve": "ROC", "summation_method": "interpolation",
                    "multi_label": False, "num_labels": None, "label_weights": None, "from_logits": False,
                    "label_smoothing": 0, "axis": -1, "ignore_class": None, "average": None, "beta": 1.0,
                    "sparse_y_true": True, "sparse_y_pred": True, "class_aggregation": "uniform_average",
                    "num_regressors": 0}  # fmt: skip
_METRIC_DEFAULTS_OF = {"F1Score": {"threshold": None}, "FBetaScore": {"threshold": None}}
_METRIC_REQUIRED = ("num_classes", "target_class_ids", "recall", "precision", "specificity", "sensitivity")


def training_from_compile_config(cc: dict) -> dict:
    """The ``training`` section of Keras's ``compile_config``: optimizer, loss, loss weights and
    metrics in a model file's form. What a file cannot say is a KerasConfigError."""
    where = "compile_config"
    out: dict = {}
    opt = cc.get("optimizer")
    if isinstance(opt, str):
        out["optimizer"] = opt.lower()
    elif isinstance(opt, dict):
        config = dict(opt.get("config") or {})
        config.pop("name", None)
        if not config.get("use_ema"):
            config.pop("ema_momentum", None)
        args = {k: _short_float(v) for k, v in config.items() if _OPTIMIZER_OFF.get(k, ...) != v}
        if isinstance(args.get("learning_rate"), dict):  # a schedule
            sched = args["learning_rate"]
            args["learning_rate"] = {"class_name": sched.get("class_name"),
                                     "config": {k: _short_float(v) for k, v in (sched.get("config") or {}).items()
                                                if k != "name"}}  # fmt: skip
        out["optimizer"] = {"type": str(opt.get("class_name", "")).lower(), **args}
    loss = cc.get("loss")
    if loss is not None:
        out["loss"] = _per_output(loss, lambda v: _loss(v, where))
    if cc.get("loss_weights") is not None:
        out["loss_weights"] = cc["loss_weights"]
    for part in ("metrics", "weighted_metrics"):
        if cc.get(part):
            out[part] = _per_output(cc[part], lambda v: _metric(v, where))
    return out


def _per_output(v, fn):
    if isinstance(v, dict) and "class_name" not in v:
        return {k: _per_output(x, fn) for k, x in v.items()}
    if isinstance(v, list):
        return [_per_output(x, fn) for x in v]
    return fn(v)


def _short_float(v):
    """Keras stores float32 rates as float64 (0.0010000000474974513); write the float32 value's
    shortest form (0.001)."""
    if isinstance(v, float):
        import numpy as np

        return float(repr(np.float32(v)).removeprefix("np.float32(").removesuffix(")"))
    return v


def _loss(v, where):
    if isinstance(v, str) or v is None:
        return v
    if not isinstance(v, dict) or "class_name" not in v:
        raise _err(where, f"cannot read the loss {v!r}")
    from ..layerdefs.base import snake_case

    config = {k: x for k, x in (v.get("config") or {}).items() if k not in ("name", "dtype")}
    if config.get("reduction") == "sum_over_batch_size":
        del config["reduction"]
    module = str(v.get("module") or "")
    if module and not module.startswith(("keras.losses", "keras.src.losses")):
        raise _err(where, f"the loss '{v['class_name']}' is custom code; declare it under custom_losses")
    name = snake_case(v["class_name"])
    return {"type": name, **config} if config else name


def _metric(v, where):
    if isinstance(v, str) or v is None:  # None: no metric for that output
        return v
    if not isinstance(v, dict) or "class_name" not in v:
        raise _err(where, f"cannot read the metric {v!r}")
    cls = v["class_name"]
    config = v.get("config") or {}
    module = str(v.get("module") or "")
    if module and not module.startswith(("keras.metrics", "keras.src.metrics")):
        raise _err(where, f"the metric '{cls}' is custom code; declare it under custom_losses")
    unknown = [k for k in config if k not in _METRIC_DEFAULTS and k not in (*_METRIC_REQUIRED, "name", "dtype")]
    if unknown:
        raise _err(where, f"metric {cls} argument '{unknown[0]}' has no nnspec equivalent")
    name = _keras_snake_case(cls)
    defaults = {**_METRIC_DEFAULTS, **_METRIC_DEFAULTS_OF.get(cls, {})}
    args = {k: x for k, x in config.items() if k not in ("name", "dtype") and (k not in defaults or defaults[k] != x)}
    if config.get("name") not in (None, name):
        args["name"] = config["name"]  # logged under it, as Keras logs a metric object
    return {"type": name, **args} if args else name


def _keras_snake_case(name: str) -> str:
    """A metric class's snake_case name as Keras registers it: ``F1Score`` -> ``f1_score``,
    ``MeanIoU`` -> ``mean_io_u``, ``AUC`` -> ``auc``."""
    import re

    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_arguments(type_name: str, config: dict) -> dict:
    """A layer's constructor arguments from its ``get_config()``, Keras's (dtype policies,
    serialized initializers...) or nnspec's; the name is left to the caller."""
    return _Reader().arguments(type_name, config, f"{type_name}.from_config")


def _err(where: str, message: str) -> KerasConfigError:
    return KerasConfigError(f"Keras config, {where}: {message}")


class _Reader:
    def __init__(self) -> None:
        from .keras_ops import OpReader

        self.op_reader = OpReader()

    # ------------------------------------------------------------------ models

    def model(self, cls: str, cfg: dict, where: str):
        if not isinstance(cfg, dict):
            raise _err(where, f"a {cls} config must be an object; got {type(cfg).__name__}")
        where = f"model '{cfg.get('name', '?')}'" if where == "model" else where
        model = self.sequential(cfg, where) if cls == "Sequential" else self.functional(cfg, where)
        if cfg.get("trainable") is False:  # a frozen model (a pretrained base under fine-tuning)
            model.trainable = False
        return model

    def sequential(self, cfg: dict, where: str):
        from .layer import Input
        from .model import Sequential

        entries = list(cfg.get("layers") or [])
        shape = dtype = batch = None
        if entries and entries[0].get("class_name") == "InputLayer":
            shape, dtype, batch = self._input_decl(entries.pop(0).get("config") or {}, where)
        elif cfg.get("build_input_shape") is not None:
            shape = _shape(cfg["build_input_shape"], where)[1:]
        elif entries:
            first = entries[0].get("config") or {}
            for key in ("batch_input_shape", "batch_shape"):
                if first.get(key) is not None:
                    batch, *shape = _shape(first[key], where)
            dtype = _dtype(first.get("dtype"))
        # Without an input shape (a Keras model never built) the model is not built either: it
        # is built as Keras's would be, by build() or the first data (model.Sequential._build_on).
        layers = [] if shape is None else [
            Input(shape=shape, dtype=dtype if dtype and dtype != "float32" else "float32", batch_size=batch)]  # fmt: skip
        for entry in entries:
            layers.append(self.layer(entry, f"{where}, layer '{_name_of(entry)}'"))
        return Sequential(layers, name=cfg.get("name"))

    def _input_decl(self, c: dict, where: str):
        shape = c.get("batch_shape", c.get("batch_input_shape"))
        if shape is None:
            raise _err(where, f"InputLayer '{c.get('name', '?')}' has no batch_shape")
        batch, *rest = _shape(shape, where)
        return tuple(rest), _dtype(c.get("dtype")) or "float32", batch

    def functional(self, cfg: dict, where: str):
        from .layer import Input
        from .model import Model

        entries = cfg.get("layers")
        if not isinstance(entries, list):
            raise _err(where, "a functional model config needs 'layers' (a list)")
        tensors: dict = {}  # (layer name, node index, tensor index) -> tensor
        objects: dict = {}
        pending = []
        ops = {_name_of(e): e["class_name"] for e in entries if _is_op(e)}
        data_ops = _data_ops(entries, ops, cfg)
        for entry in entries:
            name = _name_of(entry)
            lwhere = f"{where}, layer '{name}'"
            if name in ops and name not in data_ops:
                if entry["class_name"] not in MASK_OPS:
                    raise _err(lwhere, f"the Keras op '{entry['class_name']}' (a keras.ops call in the model's "
                               "code) is not a layer; nnspec has no equivalent")  # fmt: skip
                continue
            if name in data_ops:
                pending += self._op_calls(entry, lwhere)
                continue
            if entry.get("class_name") == "InputLayer":
                shape, dtype, batch = self._input_decl(entry.get("config") or {}, lwhere)
                tensors[(name, 0, 0)] = Input(shape=shape, dtype=dtype, name=name, batch_size=batch)
                continue
            nodes = [_node_parts(n, lwhere) for n in entry.get("inbound_nodes") or []]
            objects[name] = self.layer(entry, lwhere, kwargs_of=[kwargs for _, kwargs, _ in nodes])
            for i, (refs, kwargs, mask) in enumerate(nodes):
                if any(r[0] not in ops for r in mask):
                    raise _err(lwhere, f"call {i} is given a mask made by '{mask[0][0]}': nnspec derives masks "
                               "along the graph as Keras does by default (Embedding's mask_zero, Masking), and "
                               "takes no mask made otherwise")  # fmt: skip
                pending.append((name, i, refs, kwargs, lwhere))
        # call layers in the order their inputs become available (a shared layer's later call
        # may read layers listed after it, as Keras's own reader allows)
        while pending:
            rest = []
            for name, i, refs, kwargs, lwhere in pending:
                if not all(_key(r) in tensors for r in refs):
                    rest.append((name, i, refs, kwargs, lwhere))
                    continue
                ins = [tensors[_key(r)] for r in refs]
                if isinstance(kwargs, _OpCall):
                    out = self._op_layer(name, kwargs, ins, lwhere)
                else:
                    out = self.call(objects[name], ins, kwargs, lwhere)
                for t, tensor in enumerate(out if isinstance(out, (list, tuple)) else [out]):
                    tensors[(name, i, t)] = tensor
            if len(rest) == len(pending):
                name, i, refs, _, lwhere = rest[0]
                missing = [r for r in refs if _key(r) not in tensors]
                raise _err(lwhere, f"call {i} reads {_ref_text(missing[0])}, which no layer of the model makes")
            pending = rest
        ins = [self._tensor(tensors, r, where, "input") for r in _ref_list(cfg.get("input_layers"))]
        raw_outs = cfg.get("output_layers")
        outs = [self._tensor(tensors, r, where, "output") for r in _ref_list(raw_outs)]
        if not ins or not outs:
            raise _err(where, "a functional model config needs input_layers and output_layers")
        if isinstance(raw_outs, dict) and len(outs) == len(raw_outs):  # a dict of outputs stays one
            return Model(inputs=ins, outputs=dict(zip(sorted(raw_outs), outs)), name=cfg.get("name"))
        return Model(inputs=ins, outputs=outs, name=cfg.get("name"))

    def _op_calls(self, entry: dict, where: str) -> list:
        """The pending calls of a Keras op node on the data path (keras_ops.py)."""
        from .keras_ops import OpError

        out = []
        for i, node in enumerate(entry.get("inbound_nodes") or []):
            if not isinstance(node, dict):
                raise _err(where, f"cannot read the inbound node {node!r}")
            try:
                spec, args = self.op_reader.layer(entry["class_name"], entry.get("config") or {}, node)
            except OpError as e:
                raise _err(where, f"the Keras op '{entry['class_name']}' (a keras.ops call in the model's code) "
                           f"{e}") from None  # fmt: skip
            refs = [a["config"]["keras_history"] for a in args]
            out.append((_name_of(entry), i, refs, _OpCall(spec), where))
        return out

    @staticmethod
    def _op_layer(name: str, call: _OpCall, ins: list, where: str):
        from .keras_ops import apply_op

        try:
            return apply_op(call.spec, name, ins)
        except (TypeError, ValueError) as e:
            raise _err(where, str(e)) from None

    @staticmethod
    def _tensor(tensors, ref, where, what):
        k = _key(ref)
        if k not in tensors:
            raise _err(where, f"{what} {_ref_text(ref)} is not a tensor of the model")
        return tensors[k]

    def call(self, layer, ins, kwargs, where):
        from .model import Model

        call_names = () if isinstance(layer, Model) or layer._def is None else layer._def.extra.get("call_attrs", ())
        # a call argument a call leaves out has Keras's default for that call, whatever an
        # earlier call of the layer gave (the builder keeps the layer's own value otherwise)
        attrs = {a.name: a.default for a in layer._def.attrs if a.name in call_names} if call_names else {}
        for k, v in kwargs.items():
            if k in _CALL_KWARGS_IGNORED:
                continue
            if k in call_names:
                attrs[k] = v
            elif k == "mask" and v is None:  # a mask made by MASK_OPS: dropped by _node_parts
                continue
            elif k == "initial_state" and layer._def is not None and layer._def.extra.get("initial_state"):
                continue  # the states follow the sequence in ins
            elif k == "initial_state":
                raise _err(where, "the call argument 'initial_state' is read for the recurrent layers only "
                           f"(SimpleRNN, LSTM, GRU, ConvLSTM1D/2D/3D, RNN, Bidirectional), not for {layer.type}")  # fmt: skip
            else:
                hint = " (nnspec passes masks along the graph as Keras does by default)"
                raise _err(where, f"the call argument '{k}' is not supported" + (hint if k == "mask" else ""))
        positional = not isinstance(layer, Model) and layer._def is not None and layer._def.extra.get("call_positional")
        try:
            if positional:
                return layer(*ins, **attrs)
            return layer(ins if len(ins) > 1 else ins[0], **attrs)
        except (TypeError, ValueError) as e:
            raise _err(where, str(e)) from None

    # ------------------------------------------------------------------ layers

    def layer(self, entry: dict, where: str, kwargs_of=()):
        """The nnspec layer (or model) object of one serialized Keras layer."""
        from .layer import layer_class

        if not isinstance(entry, dict) or "class_name" not in entry:
            raise _err(where, "a layer must be an object with class_name and config")
        cls = entry["class_name"]
        cfg = entry.get("config") or {}
        if cls in MODEL_CLASSES:
            obj = self.model(cls, cfg, f"{where} (a {cls} model)")
        else:
            type_name = _TYPE_OF_CLASS.get(cls, cls)
            if cls == "Lambda":
                raise _err(where, "Lambda layers hold Python code, which a model file never runs; write the "
                           "computation as a custom layer (custom_layers, docs/format.md)")  # fmt: skip
            if type_name not in REGISTRY or REGISTRY[type_name].extra.get("internal") or type_name == "Model":
                module = str(entry.get("module") or "")
                from .keras_ops import application_layer, make_layer

                spec = application_layer(self.op_reader, cls, module, cfg)
                if spec is not None:
                    if cfg.get("trainable") is False:
                        spec["trainable"] = False
                    return make_layer(spec, cfg.get("name"))
                custom_hint = ("a custom layer class is Python code, which a model file never runs: declare what it "
                               "computes under custom_layers (docs/format.md)")  # fmt: skip
                if (module and not module.startswith(("keras.layers", "keras.src.layers"))) or entry.get(
                        "registered_name") not in (None, cls):  # fmt: skip
                    hint = custom_hint
                else:
                    hint = did_you_mean(cls, [n for n in REGISTRY if not REGISTRY[n].extra.get("internal")])
                raise _err(where, f"layer class '{cls}' is not an nnspec layer type" + (f"; {hint}" if hint else ""))
            kwargs = self.arguments(type_name, cfg, where)
            # a call argument the first call gives (use_causal_mask...) is an attribute in nnspec
            call_names = REGISTRY[type_name].extra.get("call_attrs", ())
            for kw in kwargs_of[:1]:
                kwargs.update({k: v for k, v in kw.items() if k in call_names})
            try:
                obj = layer_class(type_name)(name=cfg.get("name"), **kwargs)
            except (TypeError, ValueError) as e:
                raise _err(where, str(e)) from None
        return obj

    def arguments(self, type_name: str, cfg: dict, where: str) -> dict:
        defn = REGISTRY[type_name]
        known = {a.name for a in defn.attrs}
        out = {}
        renamed = _RENAMED.get(type_name, {})
        for k, v in cfg.items():
            k = renamed.get(k, k)
            if k == "name":
                continue
            if k == "dtype":
                dt = _dtype(v)
                if dt is not None and dt != "float32":
                    if "dtype" not in known:
                        raise _err(where, f"dtype {dt!r}: nnspec computes {type_name} in float32")
                    out["dtype"] = dt
                continue
            if k == "trainable":
                if v is False:
                    out["trainable"] = False
                continue
            if k not in known:
                neutral = _NEUTRAL.get(k, ())
                if k in _NEUTRAL and (neutral is None or v in neutral):
                    continue
                if k == "zero_output_for_mask":  # Bidirectional sets it on the layers it wraps
                    continue
                hint = did_you_mean(k, sorted(known))
                raise _err(where, f"{type_name} argument '{k}' = {v!r} has no nnspec equivalent"
                           + (f"; {hint}" if hint else ""))  # fmt: skip
            attr = next(a for a in defn.attrs if a.name == k)
            if attr.kind == "axis" and v == []:  # Keras keeps axis=None as an empty tuple (Normalization)
                v = None
            out[k] = self.value(k, v, f"{where}, argument '{k}'")
        if type_name == "Bidirectional" and _mirrors(out.get("layer"), out.get("backward_layer")):
            del out["backward_layer"]  # Keras writes the backward copy it made of the layer
        return out

    def value(self, key: str, v, where: str):
        """One argument's value: Keras's serialized objects become nnspec's names and dicts."""
        if isinstance(v, list):
            return [self.value(key, x, where) for x in v]
        if not isinstance(v, dict):
            return v
        cls = v.get("class_name")
        if cls == "__tuple__":
            return [self.value(key, x, where) for x in (v.get("config") or {}).get("value", [])]
        if cls is not None and (key in ("layer", "backward_layer", "cell", "cells") or cls in MODEL_CLASSES):
            if key in ("layer", "backward_layer") and isinstance(v.get("config"), dict):
                # Bidirectional sets zero_output_for_mask on the layers it wraps; nnspec's
                # Bidirectional gives zeros at masked steps itself (docs/layers.md)
                v = {**v, "config": {a: b for a, b in v["config"].items() if a != "zero_output_for_mask"}}
            return self.layer(v, f"{where} (the wrapped layer)")
        if cls in _OBJECTS:
            name = _OBJECTS[cls]
            defaults = _INIT_DEFAULTS.get(name, {})
            args = {k: x for k, x in (v.get("config") or {}).items() if x is not None and defaults.get(k, ...) != x}
            return {"type": name, **args} if args else name
        if cls == "DTypePolicy" or cls == "FloatDTypePolicy":
            return _dtype(v)
        if cls is None:  # a plain mapping (EinsumDense's arguments are not objects)
            return {k: self.value(k, x, where) for k, x in v.items()}
        module = v.get("module") or ""
        if cls == "function" or "activations" in module:
            name = v.get("config")
            if isinstance(name, str):
                return name
        raise _err(where, f"'{cls}' (from {module or 'a custom module'}) is not something nnspec knows: custom "
                   "initializers, regularizers, constraints and functions are code, which a model file never runs")


# ---------------------------------------------------------------------- helpers


def _mirrors(forward, backward) -> bool:
    """Whether ``backward`` is ``forward`` running the other way (what Bidirectional makes when
    given no backward layer)."""
    from ..compiler.normalize import normalize_layer

    if not (hasattr(forward, "layer_spec") and hasattr(backward, "layer_spec")):
        return False
    a, b = normalize_layer(forward.layer_spec()), normalize_layer(backward.layer_spec())
    return a == {**b, "go_backwards": not b.get("go_backwards")}


def _name_of(entry: dict) -> str:
    return str(entry.get("name") or (entry.get("config") or {}).get("name") or "?")


def _dtype(v):
    if v is None:
        return None
    if isinstance(v, dict):
        c = v.get("config")
        return c.get("name") if isinstance(c, dict) else None
    return str(v)


def _shape(v, where) -> tuple:
    if isinstance(v, dict) and v.get("class_name") == "__tuple__":
        v = v["config"]["value"]
    if not isinstance(v, list) or not v:
        raise _err(where, f"expected a shape with the batch axis first; got {v!r}")
    return tuple(None if d is None else int(d) for d in v)


def _key(ref) -> tuple:
    return (ref[0], int(ref[1]), int(ref[2]))


def _ref_text(ref) -> str:
    return f"tensor {ref[2]} of call {ref[1]} of layer '{ref[0]}'"


def _ref_list(v) -> list:
    """input_layers / output_layers: one reference, a list of them, or a dict of them."""
    if v is None:
        return []
    if isinstance(v, dict):  # Keras orders a model's inputs and outputs given as a dict by key
        v = [v[k] for k in sorted(v)]
    if len(v) == 3 and isinstance(v[0], str) and isinstance(v[1], int):
        return [v]
    return [r for x in v for r in _ref_list(x)]


def _node_parts(node, where) -> tuple[list, dict, list]:
    """(tensor references in call order, the other call arguments, the references of the
    ``mask`` argument) of one inbound node."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        refs: list = []
        kwargs = {}
        mask: list = []
        _collect(node.get("args", []), refs)
        given = node.get("kwargs") or {}
        named = ("inputs", "query", "value", "key", "initial_state")  # a recurrent layer's states follow its input
        for k in named:  # tensors given by name, in call order
            if k in given:
                _collect(given[k], refs)
        if given.get("initial_state") is not None:
            kwargs["initial_state"] = "given"  # its tensors are in refs; call() checks the layer takes them
        for k, v in given.items():
            if k in named:
                continue
            found: list = []
            _collect(v, found)
            if k == "mask":
                mask = found
                if not found and v is not None and not _all_none(v):
                    kwargs[k] = v
                continue
            kwargs[k] = "a tensor" if found else v
        return refs, kwargs, mask
    if isinstance(node, list):  # Keras 2: [[layer, node, tensor, kwargs], ...]
        refs, kwargs = [], {}
        for item in node:
            if not (isinstance(item, list) and len(item) >= 3):
                raise _err(where, f"cannot read the inbound node {node!r}")
            refs.append(item[:3])
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs.update(item[3])
        return refs, kwargs, []
    raise _err(where, f"cannot read the inbound node {node!r}")


def _all_none(v) -> bool:
    return v is None or (isinstance(v, list) and all(_all_none(x) for x in v))


class _OpCall:
    """A pending call of a Keras op node: the nnspec layer definition that computes it."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec


def _data_ops(entries: list, ops: dict, cfg: dict) -> set:
    """The op nodes whose values reach a layer's input or a model output (not only masks)."""
    reads: dict = {}
    wanted: list = [r[0] for r in _ref_list(cfg.get("output_layers"))]
    for entry in entries:
        name = _name_of(entry)
        for node in entry.get("inbound_nodes") or []:
            found: list = []
            if isinstance(node, dict):
                _collect(node.get("args", []), found)
                for k, v in (node.get("kwargs") or {}).items():
                    if k != "mask":
                        _collect(v, found)
            elif isinstance(node, list):
                found = [item[:3] for item in node if isinstance(item, list)]
            reads.setdefault(name, []).extend(r[0] for r in found)
            if name not in ops:
                wanted += [r[0] for r in found]
    out: set = set()
    while wanted:
        name = wanted.pop()
        if name in ops and name not in out:
            out.add(name)
            wanted += reads.get(name, [])
    return out


def _is_op(entry: dict) -> bool:
    """A node of a keras.ops call (``module`` keras.src.ops...), not of a layer."""
    return str(entry.get("module") or "").startswith(("keras.src.ops", "keras.ops"))


def _collect(v, out: list) -> None:
    if isinstance(v, dict):
        if v.get("class_name") == "__keras_tensor__":
            out.append(v["config"]["keras_history"])
        return
    if isinstance(v, (list, tuple)):
        for x in v:
            _collect(x, out)
