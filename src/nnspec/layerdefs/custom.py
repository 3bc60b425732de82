"""Custom layers: a model file's own layer types, written as Keras's subclassing guide writes
them, without running code from the file.

A Keras custom layer creates its weights in ``build(input_shape)`` with ``add_weight`` and
computes its output in ``call(inputs)`` with ``keras.ops``. A model file declares the same
under ``custom_layers`` (see docs/format.md#custom-layers)::

    custom_layers:
      CustomDense:
        arguments: {units: 32}                     # the constructor's arguments and defaults
        weights:                                   # add_weight calls, in order
          w: {shape: [input_shape[-1], units], initializer: random_normal}
          b: {shape: [units], initializer: random_normal}
        call: ops.matmul(inputs, self.w) + self.b
    layers:
      dense: {type: CustomDense, units: 10}

A node of such a type becomes a step of the one registered type ``CustomLayer`` (its attributes
are the class name, the definition and the node's arguments), so every stage handles it as it
handles a built-in layer: the shape rule and the parameter list come from the definition, the
summary shows the class name, ``call`` is compiled by ``expressions.py`` into array code of
the generated plan function (forward, and for training its gradient).
"""

from __future__ import annotations

from . import expressions as ex
from .base import COMMON_ATTRS, NESTED_LAYER_KEYS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, map_nested

TYPE = "CustomLayer"


BASE_KEYS = ("trainable", "dtype")  # Keras's Layer arguments a custom node may also give


def internal_form(spec: dict, declarations: dict) -> dict:
    """A layer definition with every custom type (``{type: CustomDense, units: 10}``, also
    nested in wrappers) made a ``CustomLayer`` definition holding its declaration."""
    from . import REGISTRY

    t = spec.get("type")
    if t in declarations and t not in REGISTRY:
        args = {k: v for k, v in spec.items() if k not in ("type", "name", *BASE_KEYS)}
        return {"type": TYPE, "class_name": t, "definition": declarations[t], "arguments": args,
                **{k: spec[k] for k in BASE_KEYS if k in spec}}  # fmt: skip
    out = dict(spec)
    for k in NESTED_LAYER_KEYS:
        if k in out:
            out[k] = map_nested(out[k], lambda d: internal_form(d, declarations))
    return out


def file_form(spec: dict, declarations: dict) -> dict:
    """The reverse of :func:`internal_form`, as a model file writes it (every argument given,
    defaults filled); the declarations met are added to ``declarations``."""
    if spec.get("type") == TYPE:
        known = declarations.setdefault(spec["class_name"], spec["definition"])
        if known != spec["definition"]:
            raise ValueError(f"two different custom layers are named '{spec['class_name']}' (a file declares each "
                             "name once; a Python class traced on different numbers of inputs differs too)")
        return {"type": spec["class_name"], **arguments(spec), **{k: spec[k] for k in BASE_KEYS if k in spec}}
    out = dict(spec)
    for k in NESTED_LAYER_KEYS:
        if k in out:
            out[k] = map_nested(out[k], lambda d: file_form(d, declarations))
    return out


def schema_form(spec: dict) -> dict:
    """``spec`` with nested ``CustomLayer`` definitions replaced by a placeholder the JSON Schema
    accepts (a custom layer's declaration is checked with the file it belongs to)."""
    out = dict(spec)
    for k in NESTED_LAYER_KEYS:
        if k in out:
            out[k] = map_nested(out[k], lambda d: {"type": "Identity"} if d.get("type") == TYPE else schema_form(d))
    return out


def tensor_names(n_inputs: int) -> list[str]:
    """How ``call`` names the layer's inputs: ``inputs``, or ``inputs[0]``, ``inputs[1]``, ..."""
    return ["inputs"] if n_inputs == 1 else [f"inputs[{i}]" for i in range(n_inputs)]


def arguments(attrs) -> dict:
    """The node's arguments with the definition's defaults filled."""
    return {**(attrs["definition"].get("arguments") or {}), **(attrs.get("arguments") or {})}


def weight_shapes(attrs, inputs: list[TensorType]) -> list[tuple[str, tuple, dict]]:
    """(name, shape, declaration) of every weight, shapes evaluated as Keras's ``build`` would."""
    args = arguments(attrs)
    shapes = [t.shape for t in inputs]
    names = {**args, "input_shape": shapes[0] if len(shapes) == 1 else shapes}
    out = []
    for wname, decl in (attrs["definition"].get("weights") or {}).items():
        try:
            shape = ex.eval_shape(decl["shape"], names)
        except ex.ExprError as err:
            raise ShapeError(f"{attrs['class_name']}: weight '{wname}': shape {decl['shape']}: {err}") from None
        out.append((wname, shape, decl))
    return out


def weight_names(attrs) -> list[str]:
    """The weights' names in Keras's order: the trainable ones, then the others (``Layer.weights``
    lists ``_trainable_variables + _non_trainable_variables``), each in add_weight order."""
    decls = attrs["definition"].get("weights") or {}
    return [w for w, d in decls.items() if d.get("trainable", True)] + [
        w for w, d in decls.items() if not d.get("trainable", True)]  # fmt: skip


def numeric_arguments(attrs) -> dict:
    return {k: v for k, v in arguments(attrs).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def expression(attrs, n_inputs: int) -> ex.Expression:
    weights = list((attrs["definition"].get("weights") or {}))
    try:
        return ex.parse(attrs["definition"]["call"], tensor_names(n_inputs) + weights, numeric_arguments(attrs))
    except ex.ExprError as err:
        raise ShapeError(f"{attrs['class_name']}: call: {err}" + (f"; {err.hint}" if err.hint else "")) from None


def typed(attrs, inputs: list[TensorType]) -> tuple[ex.Expression, list]:
    """The parsed ``call`` and the shape of each of its nodes for these inputs."""
    expr = expression(attrs, len(inputs))
    leaf = {n: (ex.BATCH, *t.shape[1:]) for n, t in zip(tensor_names(len(inputs)), inputs)}
    for wname, shape, _ in weight_shapes(attrs, inputs):
        leaf[wname] = shape
    try:
        shapes = ex.infer(expr, leaf)
    except ValueError as err:
        raise ShapeError(f"{attrs['class_name']}: call: {err}") from None
    return expr, shapes


def _infer(attrs, inputs, ctx):
    _, shapes = typed(attrs, inputs)
    out = shapes[-1]
    if not out or out[0] != ex.BATCH:
        raise ShapeError(f"{attrs['class_name']}: call must return a tensor with the batch axis first; "
                         f"it returns {ex._fmt(out)}")  # fmt: skip
    masked = bool(attrs["definition"].get("supports_masking")) and inputs[0].masked
    if masked and (len(out) < 2 or inputs[0].rank < 2 or out[1] != inputs[0].shape[1]):
        raise ShapeError(f"{attrs['class_name']}: supports_masking passes the input's mask on, so the output must "
                         f"keep the input's time axis ({inputs[0].shape[1]}); it returns {ex._fmt(out)}")  # fmt: skip
    return [TensorType((inputs[0].shape[0], *out[1:]), "float32", masked)]


def _params(attrs, inputs, ctx):
    trainable = attrs.get("trainable", True)
    specs = {
        wname: ParamSpec(
            wname,
            shape,
            decl.get("initializer", "glorot_uniform"),
            bool(decl.get("trainable", True)) and trainable,
            decl.get("regularizer"),
            decl.get("constraint"),
        )
        for wname, shape, decl in weight_shapes(attrs, inputs)
    }
    return [specs[w] for w in weight_names(attrs)]


def _leaves(e) -> tuple[ex.Expression, list, dict, str]:
    inputs = [TensorType((None, *s), dt) for s, dt in zip(e.x_shapes, e.x_dtypes)]
    expr, shapes = typed(e.attrs, inputs)
    leaf_vars = {}
    for name, var, dt in zip(tensor_names(len(e.x)), e.x, e.x_dtypes):
        leaf_vars[name] = var if dt == "float32" else f"{var}.astype(np.float32)"
    leaf_vars.update(_by_weight(e, e.p))
    return expr, shapes, leaf_vars, e.rows(0)


def _by_weight(e, variables) -> dict:
    """Weight name -> the variable of the step's parameter (plan params are ``layer/weight``;
    bound by name, not by position, so a plan read back from JSON binds the same way)."""
    return {p.rsplit("/", 1)[-1]: v for p, v in zip(e.step.params, variables)}


def _emit(e):
    expr, shapes, leaf_vars, rows = _leaves(e)
    w = ex.Writer(e.fresh, e.kernel_name)
    vals = ex.forward_lines(w, expr, shapes, leaf_vars, rows)
    y = e.y[0]
    w.lines.append(f"{y}.reshape({y}.size)[:] = np.ascontiguousarray({vals[-1]}).reshape({y}.size)")
    return w.lines


def _backward(e):
    expr, shapes, leaf_vars, rows = _leaves(e)
    w = ex.Writer(e.fresh, e.kernel_name)
    vals = ex.forward_lines(w, expr, shapes, leaf_vars, rows)
    grads = dict(zip(tensor_names(len(e.x)), e.dx))
    grads.update(_by_weight(e, e.dp))
    ex.backward_lines(w, expr, shapes, vals, e.dy[0], grads, rows)
    return w.lines


def _reference(attrs, inputs, params, masks=None):
    expr = expression(attrs, len(inputs))
    values = dict(zip(tensor_names(len(inputs)), inputs))
    values.update(zip(weight_names(attrs), params))
    return [ex.evaluate(expr, values)]


CUSTOM_LAYER = LayerDef(
    name=TYPE,
    attrs=(
        Attr("class_name", "str", doc="The custom layer's type, as the file names it under custom_layers."),
        Attr("definition", "any", doc="The custom layer's declaration (arguments, weights, call)."),
        Attr("arguments", "any", {}, "The arguments this node gives (the definition has the defaults)."),
        *COMMON_ATTRS,
    ),
    infer=_infer,
    params=_params,
    arity=(1, None),
    doc="A layer type declared in the model file under `custom_layers` (not written as a type itself: "
    "a node names its custom type, as `{type: CustomDense, units: 10}`).",
    emit=_emit,
    reference=_reference,
    emit_backward=_backward,
    extra={"internal": True},
)
