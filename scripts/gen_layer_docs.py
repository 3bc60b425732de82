"""Write docs/layers.md from the layer registry, so the reference never drifts from the code.

Every table row comes from ``nnspec.layerdefs.REGISTRY_LIST``: a layer's name, family module,
arity, positional arguments, attributes (kind, default, constraints, description) and its
``doc`` paragraph; the vocabularies (activations, initializers...) come from
``nnspec.layerdefs.base``.

    python scripts/gen_layer_docs.py            # rewrite docs/layers.md
    python scripts/gen_layer_docs.py --check    # exit 1 if docs/layers.md is out of date
    python scripts/gen_layer_docs.py -o FILE    # write elsewhere ("-" for stdout)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nnspec.layerdefs import PUBLIC_LIST as REGISTRY_LIST  # custom layers are documented in format.md
from nnspec.layerdefs import (
    activation_layers,
    attention,
    audio,
    augmentation,
    augmentation_color,
    augmentation_geometry,
    augmentation_mix,
    augmentation_policy,
    conv,
    conv_recurrent,
    core,
    einsum,
    embedding,
    merge,
    normalization,
    pooling,
    preprocessing,
    recurrent,
    wrappers,
)
from nnspec.layerdefs.base import (
    ACTIVATIONS,
    COMMON_ATTRS,
    CONSTRAINTS,
    DTYPES,
    INITIALIZERS,
    REGULARIZERS,
    Attr,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "layers.md"

# Family modules in the order REGISTRY_LIST lists them.
FAMILIES = (core, einsum, activation_layers, preprocessing, augmentation, augmentation_color, augmentation_geometry,
            augmentation_mix, augmentation_policy, conv, pooling, embedding, recurrent, conv_recurrent, merge,
            attention, normalization, wrappers, audio)  # fmt: skip


def family_of(defn) -> str:
    for mod in FAMILIES:  # the module that defines it (not every family lists all its layers in LAYERS)
        if any(v is defn for v in vars(mod).values()):
            return mod.__name__.rsplit(".", 1)[-1]
    return "?"


def cell(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def literal(value) -> str:
    """A default value as it would be written in a model file (JSON/YAML flow style)."""
    return "`" + json.dumps(value) + "`"


def _range(a: Attr) -> str:
    parts = []
    if a.minimum is not None:
        parts.append(f"{'>' if a.exclusive_minimum else '>='} {a.minimum:g}")
    if a.maximum is not None:
        parts.append(f"<= {a.maximum:g}")
    return ", ".join(parts)


def kind_text(a: Attr) -> str:
    k = a.kind
    rng = _range(a)
    if k in ("int", "float"):
        text = k + (f" ({rng})" if rng else "")
    elif k == "bool":
        text = "bool"
    elif k == "str":
        text = "string"
    elif k == "enum":
        text = "one of " + ", ".join(f"`{c}`" for c in a.choices)
    elif k == "ints":
        text = "int" if a.length == 1 else f"int or list of {a.length} ints"
        if rng:
            text += f" (each {rng})"
    elif k == "factor":
        text = "number or list of 2 numbers" + (f" (each {rng})" if rng else "")
    elif k == "floats":
        text = f"list of {a.length} numbers"
    elif k == "int_list":
        text = "list of ints"
    elif k == "shape":
        text = "list of ints (entries may be `null`)"
    elif k == "axis":
        text = "int or list of ints"
    elif k == "activation":
        text = "[activation](#activations)"
    elif k == "initializer":
        text = "[initializer](#initializers)"
    elif k == "regularizer":
        text = "[regularizer](#regularizers)"
    elif k == "constraint":
        text = "[constraint](#constraints)"
    elif k == "layer":
        text = "layer definition `{type: ..., ...}`"
    elif k == "model":
        text = "name of a model under `models`"
    elif k == "dtype":
        text = "[dtype](#dtypes)"
    else:
        text = "see description"
    if a.nullable:
        text += ", or `null`"
    return text


def default_text(a: Attr) -> str:
    return "**required**" if a.required else literal(a.default)


def arity_text(arity) -> str:
    lo, hi = arity
    if lo == hi:
        return str(lo)
    return f"{lo} or more" if hi is None else f"{lo} to {hi}"


def notes(defn) -> str:
    out = []
    if defn.training_only:
        out.append("identity at inference")
    if defn.view:
        out.append("no copy (a view)")
    if defn.extra.get("inplace"):
        out.append("may run in place")
    if getattr(defn, "uses_mask", False):
        out.append("reads the input's mask")
    return "; ".join(out)


def training_status(defn) -> str:
    """Whether training can run this type (it has a backward kernel, or is lowered into others)."""
    if getattr(defn, "emit_backward", None) is not None:
        return "yes"
    if defn.name in ("Model", "TimeDistributed") or "lower_as" in defn.extra:
        return "as its layers"
    if defn.name.endswith(("Cell", "Cells")):
        return "inside RNN"
    return "not yet"


def runtime_status(defn) -> str:
    """Whether the runtime can run this type yet (it has kernels, or needs none)."""
    if getattr(defn, "emit", None) is not None:
        return "yes"
    if defn.name == "Model":
        return "inlined"
    if defn.name == "TimeDistributed":
        return "as its wrapped layer"
    if "lower_as" in defn.extra:
        return "as the layer its cell computes"
    if defn.name.endswith(("Cell", "Cells")):
        return "inside RNN"
    if defn.view or defn.training_only:
        return "yes (no computation at inference)"
    return "not yet"


# How compiler/lower.py turns a node of these types into plan steps, where it is not one step
# named ``LayerDef.op``. Keep in step with lower.py.
PLAN_FORM = {
    "Flatten": "`reshape` (a view), or `flatten` (a copy) for `channels_first` inputs with spatial axes",
    "Reshape": "`reshape` (a view)",
    "ActivityRegularization": "`reshape` (a view)",
    "TimeDistributed": "`fold_time`, the wrapped layer's step(s), `unfold_time` (views around it); "
    "over a `Dense`, one `dense` step",
    "Model": "none of its own: the sub-model's steps are inlined",
}

# How the Python API offers these types, where it is not ``layers.<type>(...)``.
PYTHON_FORM = {
    "Model": "call a model object on tensors: `frame_classifier(x)`",
}


def anchor(name: str) -> str:
    return name.lower()


def python_signature(defn) -> str:
    if not defn.positional:
        return f"`layers.{defn.name}(**kwargs)`"
    return f"`layers.{defn.name}({', '.join(defn.positional)}, **kwargs)`"


def render() -> str:
    common = {a.name for a in COMMON_ATTRS}
    out: list[str] = []
    w = out.append
    w("# Layer reference")
    w("")
    w(
        "<!-- Generated by scripts/gen_layer_docs.py from nnspec.layerdefs.REGISTRY_LIST. Do not edit by hand. -->"
    )
    w("")
    w("This page is generated from the layer registry (`nnspec.layerdefs.REGISTRY_LIST`), the same")
    w("definitions the schema, the validator, the shape rules and the Python builder use. To change it,")
    w("change a `LayerDef` in `src/nnspec/layerdefs/` and run `python scripts/gen_layer_docs.py`;")
    w("`python scripts/gen_layer_docs.py --check` exits 1 when this file is out of date.")
    w("")
    w("How to read it:")
    w("")
    w("- **type** is the value of `type:` in a model file and the class name in `nnspec.layers`.")
    w("- **Inputs** is how many values an edge may feed into one call (`a, b -> merge` feeds two).")
    w("- **Positional** lists the arguments the Python classes take by position, as Keras's do")
    w("  (`layers.Conv2D(32, 3)` is `filters=32, kernel_size=3`). In a model file every argument is")
    w("  written by name.")
    w("- A default is what nnspec fills in when the attribute is absent (Keras 3's default). The")
    w("  normalized form (`nnspec.load(...).to_json()`) writes every attribute out.")
    w("- **runs (predict)** says whether the runtime can run the type: `yes` when the type has")
    w("  kernels (or needs none at inference); **trains** whether it has a backward kernel.")
    w("- **may run in place**: the plan may let the output overwrite the input's buffer.")
    w("- Every layer also accepts the common attributes, left out of the tables below:")
    for a in COMMON_ATTRS:
        w(f"  `{a.name}` ({kind_text(a)}, default {literal(a.default)}): {a.doc}")
    w("")
    w(f"{len(REGISTRY_LIST)} layer types are registered.")
    w("")
    w("## Index")
    w("")
    w("| type | family | inputs | positional | runs (predict) | trains | notes |")
    w("|---|---|---|---|---|---|---|")
    for d in REGISTRY_LIST:
        pos = ", ".join(f"`{p}`" for p in d.positional) or "-"
        w(
            f"| [`{d.name}`](#{anchor(d.name)}) | `{family_of(d)}` | {arity_text(d.arity)} | {pos} | "
            f"{runtime_status(d)} | {training_status(d)} | {cell(notes(d)) or '-'} |"
        )
    current_family = None
    for d in REGISTRY_LIST:
        fam = family_of(d)
        if fam != current_family:
            current_family = fam
            w("")
            w(f"## Family `{fam}` (`src/nnspec/layerdefs/{fam}.py`)")
        w("")
        w(f"### {d.name}")
        w("")
        w(d.doc)
        w("")
        facts = [
            f"Inputs: {arity_text(d.arity)}",
            f"Python: {PYTHON_FORM.get(d.name) or python_signature(d)}",
            f"Plan step: {PLAN_FORM.get(d.name) or '`' + d.op + '`'}",
        ]
        if notes(d):
            facts.append(notes(d)[0].upper() + notes(d)[1:])
        w(". ".join(facts) + ".")
        w("")
        w("| attribute | kind | default | description |")
        w("|---|---|---|---|")
        for a in d.attrs:
            if a.name in common:
                continue
            w(f"| `{a.name}` | {cell(kind_text(a))} | {cell(default_text(a))} | {cell(a.doc)} |")
    w("")
    w("## Vocabularies")
    w("")
    w("### Activations")
    w("")
    w("An activation is one of these names (Keras 3's, aliases included); `null` means `linear`:")
    w("")
    w(", ".join(f"`{a}`" for a in ACTIVATIONS) + ".")
    w("")
    w("### Initializers")
    w("")
    w("A name, or a mapping with `type` and arguments (`{type: random_normal, stddev: 0.02}`). The")
    w("arguments each one takes, as in Keras:")
    w("")
    w("| name | arguments |")
    w("|---|---|")
    for name, args in INITIALIZERS.items():
        w(f"| `{name}` | {', '.join(f'`{x}`' for x in args) or '-'} |")
    w("")
    w("### Regularizers")
    w("")
    w("`null`, a name, or a mapping with `type` and the factors (`{type: l2, l2: 0.01}`).")
    w("")
    w("| name | arguments |")
    w("|---|---|")
    for name, args in REGULARIZERS.items():
        w(f"| `{name}` | {', '.join(f'`{x}`' for x in args) or '-'} |")
    w("")
    w("An `activity_regularizer` adds its penalty of the layer's outputs (states included), over the")
    w("batch size, to the loss, as Keras does. Inside wrappers, Keras's rules hold: a layer wrapped in")
    w("`TimeDistributed` adds none (Keras runs only its `call`; the layers of a wrapped sub-model do add")
    w("theirs), and the recurrent layer of a `Bidirectional` adds the penalty of each direction's outputs")
    w("and states, which nnspec trains with `merge_mode` concat or null (other merges are refused).")
    w("")
    w("### Constraints")
    w("")
    w("`null`, a name, or a mapping with `type` and the arguments (`{type: max_norm, max_value: 3}`).")
    w("")
    w("| name | arguments |")
    w("|---|---|")
    for name, args in CONSTRAINTS.items():
        w(f"| `{name}` | {', '.join(f'`{x}`' for x in args) or '-'} |")
    w("")
    w("### Dtypes")
    w("")
    w(", ".join(f"`{t}`" for t in DTYPES) + ".")
    w("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(DEFAULT_OUT), help="file to write ('-' for stdout)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from the registry")
    args = ap.parse_args(argv)
    text = render()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run python scripts/gen_layer_docs.py", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}: {len(REGISTRY_LIST)} layer types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
