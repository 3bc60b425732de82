"""The ``nnspec`` command group.

Exit codes are decided here, in one place:

====  ==================================================================
0     success (warnings may have been printed)
1     a model file (or input) is invalid; its problems were printed
2     usage error: bad options or arguments, a file that does not exist
====  ==================================================================

Commands import the library lazily, so ``nnspec --help`` and the compile/summarize path stay
fast; none of them imports Numba.
"""

from __future__ import annotations

import json
import sys

import click

from .train import evaluate, fit

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

EPILOG = """\b
Examples:
  nnspec validate specs/*.yaml
  nnspec summarize specs/cnn.yaml
  nnspec compile specs/cnn.yaml -o cnn.plan.json
  nnspec predict specs/mlp.yaml --weights mlp.safetensors --input x.npy -o y.npy
  nnspec fit specs/headline.yaml --data train.npz --epochs 5 --weights-out w.safetensors
  nnspec evaluate specs/headline.yaml --data test.npz --weights w.safetensors
  nnspec schema -o nnspec.schema.json
  nnspec import keras_model.keras -o model.yaml
"""


def _echo_diagnostics(diags, fmt: str) -> None:
    for d in diags:
        if fmt == "json":
            click.echo(json.dumps(d.to_dict()))
        else:
            click.echo(d.format())


def _load(path: str):
    """Load and compile a model file; on problems print them and exit 1."""
    from ..api.model import load
    from ..specs.errors import SpecError

    try:
        model = load(path)
    except SpecError as e:
        _echo_diagnostics(e.diagnostics, "text")
        sys.exit(EXIT_INVALID)
    _echo_diagnostics(model.warnings, "text")
    return model


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nnspec", prog_name="nnspec")
def cli() -> None:
    """nnspec: neural network model files, validated, shape-checked, summarized, compiled, run and trained."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: FILE:LINE:COL: CODE message lines; json: one JSON object per problem.")
@click.option("--strict", is_flag=True, help="Treat warnings (unused layers) as errors.")
@click.option("-q", "--quiet", is_flag=True, help="Print problems only, not the per-file OK lines.")
def validate(files, fmt, strict, quiet) -> None:
    """Check model files: syntax, schema, graph rules and shapes.

    Prints every problem as FILE:LINE:COL: CODE message. Exits 0 when every file is valid,
    1 when any is not. Fit for CI and pre-commit.

    \b
    Examples:
      nnspec validate specs/*.yaml
      nnspec validate --format json model.yaml
    """
    from ..compiler import analyze
    from ..specs.errors import Diagnostic, SpecError
    from ..specs.load import load_file

    bad = 0
    for path in files:
        try:
            typed = analyze(load_file(path))
            diags = typed.graph.warnings
        except SpecError as e:
            diags = e.diagnostics
        except Exception as e:  # a bug in nnspec: still one line per file, never a traceback
            diags = [Diagnostic("E000", f"internal error while checking this file: {type(e).__name__}: {e}",
                                file=path)]  # fmt: skip
        _echo_diagnostics(diags, fmt)
        failed = any(d.severity == "error" or strict for d in diags)
        bad += failed
        if not failed and not quiet and fmt == "text":
            click.echo(f"{path}: OK")
    if len(files) > 1 and fmt == "text" and not quiet:
        click.echo(f"{len(files) - bad} of {len(files)} files valid")
    sys.exit(EXIT_INVALID if bad else EXIT_OK)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--line-length", type=int, default=None, help="Total width of the table.")
@click.option("--show-trainable", is_flag=True, help="Add a column: Y (trains), N (frozen), - (no weights).")
@click.option("--expand-nested", is_flag=True, help="Follow each nested model's row with its layers' rows.")
def summarize(file, as_json, line_length, show_trainable, expand_nested) -> None:
    """Print a model's Keras-style summary: layers, output shapes, parameter counts.

    \b
    Examples:
      nnspec summarize specs/cnn.yaml
      nnspec summarize --json specs/headline.yaml
    """
    model = _load(file)
    if as_json:
        click.echo(json.dumps(model.summary_dict(), indent=2))
    else:
        model.summary(line_length=line_length, print_fn=click.echo, show_trainable=show_trainable,
                      expand_nested=expand_nested)  # fmt: skip


@cli.command(name="compile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the plan as JSON to this file (atomically) instead of printing its text form.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--output-node", "output_nodes", multiple=True,
              help="Compute this node (name or name:port) instead of the model's outputs; repeatable.")
def compile_cmd(file, output, as_json, output_nodes) -> None:
    """Compile a model file to its execution plan.

    Prints the plan's text form (one line per step, with its output shape and buffer), or
    writes the versioned JSON plan with -o.

    \b
    Examples:
      nnspec compile specs/cnn.yaml
      nnspec compile specs/cnn.yaml -o cnn.plan.json
    """
    from ..compiler.graph import parse_ref

    model = _load(file)
    outs = None
    if output_nodes:
        outs = []
        for text in output_nodes:
            ref = parse_ref(text)
            if ref is None or ref.node not in model._typed.graph.nodes:
                raise click.BadParameter(f"'{text}' is not a node of {file}", param_hint="--output-node")
            outs.append(ref)
    plan = model.plan(outs)
    if output:
        from ..specs.atomic import write_text_atomic

        write_text_atomic(output, plan.to_json())
        m = plan.memory()
        click.echo(f"wrote {output}: {len(plan.steps)} steps, {len(plan.buffers)} buffers, "
                   f"{m['planned_bytes_per_sample']:,} bytes of activations per sample "
                   f"(naive {m['naive_bytes_per_sample']:,})")  # fmt: skip
    elif as_json:
        click.echo(plan.to_json(), nl=False)
    else:
        click.echo(plan.to_text(), nl=False)


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to this file.")
def schema(output) -> None:
    """Print the JSON Schema (draft-07) of model files, for editors and other tools.

    \b
    Examples:
      nnspec schema -o nnspec.schema.json
      # then, first line of a model file, for the YAML language server:
      # yaml-language-server: $schema=nnspec.schema.json
    """
    from ..specs.schema import schema_text

    text = schema_text()
    if output:
        from ..specs.atomic import write_text_atomic

        write_text_atomic(output, text)
    else:
        click.echo(text, nl=False)


@cli.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the model file here (YAML; JSON if the name ends in .json). Default: print it.")
def import_cmd(source, output) -> None:
    """Write the model file of a Keras model: SOURCE is its ``to_json()`` text (.json) or a
    ``.keras`` archive (its config.json is read; the weights are not).

    The layers, their arguments and the graph are Keras's own (shared layers become ``shares``,
    nested models ``models``); arguments left at Keras's defaults are left out. What nnspec
    cannot express (Lambda layers, custom classes, keras.ops calls in the graph) is an error
    naming the layer.

    \b
    Examples:
      nnspec import classifier.keras -o specs/classifier.yaml
      python -c "print(model.to_json())" > m.json && nnspec import m.json
    """
    from ..api.keras_config import is_keras_config, model_from_keras_config
    from ..specs.errors import NnspecError

    try:
        config = _keras_config_of(source)
        if not is_keras_config(config):
            raise click.ClickException(f"{source}: not a Keras model config (no class_name Functional/Sequential "
                                       "with a config, nor a list of layers)")  # fmt: skip
        model = model_from_keras_config(config)
    except NnspecError as e:
        click.echo(f"{source}: {e}", err=True)
        sys.exit(EXIT_INVALID)
    from ..compiler.normalize import minimal_spec

    spec = minimal_spec(model.get_config())
    if output and output.endswith(".json"):
        text = json.dumps(spec, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=110)
    if output:
        from ..specs.atomic import write_text_atomic

        write_text_atomic(output, text)
        click.echo(f"wrote {output}: model '{model.name}', {model.count_params():,} parameters")
    else:
        click.echo(text, nl=False)


def _keras_config_of(source: str):
    """The parsed Keras config of a .json file or a .keras archive (a zip holding config.json)."""
    import zipfile

    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            if "config.json" not in z.namelist():
                raise click.ClickException(f"{source}: a .keras archive holds config.json; this zip does not")
            raw = z.read("config.json")
    else:
        with open(source, "rb") as f:
            raw = f.read()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise click.ClickException(f"{source}: not JSON ({e}); a Keras model config is the text of "
                                   "model.to_json(), or a .keras archive") from None


def _read_arrays(path: str, names: list[str]) -> dict:
    """Arrays from .npy (one input) or .npz (keyed by input name); never unpickles."""
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"cannot read {path}: {e}", param_hint="--input") from None
    if isinstance(data, np.ndarray):
        if len(names) != 1:
            raise click.BadParameter(f"the model takes {len(names)} inputs {names}: give an .npz keyed by "
                                     "input name", param_hint="--input")  # fmt: skip
        return {names[0]: data}
    with data:
        return {k: data[k] for k in data.files}


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Input arrays: .npy for a one-input model, .npz keyed by input names otherwise.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="A safetensors weights file (tensor names <layer>/<weight>). Without it, weights are "
                   "initialized from --seed as Keras initializes them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for initial weights.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write outputs: .npy (one output) or .npz keyed by output names. Default: print them.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
def predict(file, input_path, weights, seed, output, batch_size) -> None:
    """Run a model on input arrays and write or print its outputs.

    \b
    Examples:
      nnspec predict specs/mlp.yaml --weights mlp.safetensors --input x.npy -o y.npy
      nnspec predict specs/headline.yaml --input inputs.npz -o outputs.npz
    """
    import numpy as np

    from ..specs.errors import NnspecError

    model = _load(file)
    model._seed = seed
    arrays = _read_arrays(input_path, list(model._typed.graph.inputs))
    try:
        if weights:
            model.load_weights(weights)
        else:
            click.echo(f"note: no --weights given; using initial weights from seed {seed}", err=True)
        outs = model.predict(arrays, batch_size=batch_size)
    except NnspecError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_INVALID)
    outs = list(outs.values()) if isinstance(outs, dict) else outs if isinstance(outs, list) else [outs]
    names = model._typed.graph.output_names
    if output:
        import io

        from ..specs.atomic import write_bytes_atomic

        buf = io.BytesIO()
        if output.endswith(".npz"):
            np.savez(buf, **dict(zip(names, outs)))
        elif len(outs) == 1:
            np.save(buf, outs[0])
        else:
            raise click.BadParameter(f"the model has {len(outs)} outputs: write an .npz", param_hint="-o")
        write_bytes_atomic(output, buf.getvalue())
        click.echo(f"wrote {output}: " + ", ".join(f"{n} {o.shape}" for n, o in zip(names, outs)))
    else:
        for n, o in zip(names, outs):
            click.echo(f"{n}: shape {o.shape}")
            click.echo(np.array2string(o, threshold=200, precision=6))


cli.add_command(fit)
cli.add_command(evaluate)


def main() -> None:
    """Console-script entry point: run the group, mapping usage errors to exit code 2."""
    cli(prog_name="nnspec")
