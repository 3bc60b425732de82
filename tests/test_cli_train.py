"""``nnspec fit`` and ``nnspec evaluate``: training from the command line, its files and its errors.

Small data and 1-3 epochs: the cost is the Numba compilation of each model's train step
(seconds the first time, cached on disk after). Expected values are computed with the Python
API on the same data and weights, never written down.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnspec
from nnspec.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp.yaml"
HEADLINE = ROOT / "specs" / "headline.yaml"

# mlp.yaml has no training section; this copy has one, with epochs and batch_size
TRAINING = """
training:
  optimizer: {type: adam, learning_rate: 0.01}
  loss: binary_crossentropy
  metrics: [accuracy]
  epochs: 2
  batch_size: 16
"""


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    # A deliberate exit is a SystemExit; anything else is a crash of the command.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"nnspec {' '.join(map(str, args))} crashed: {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    return result


def error_line(result) -> str:
    """The one error line of a failed command (exit code 1)."""
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def learnable(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.float32)[:, None]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    x, y = learnable(384, 0)
    np.savez(d / "train.npz", x=x, output=y)
    xt, yt = learnable(256, 1)
    np.savez(d / "test.npz", x=xt, output=yt)
    model_file = d / "mlp_trained.yaml"
    model_file.write_text(MLP.read_text() + TRAINING)
    return d, model_file


def mlp_weights(path: Path, seed: int = 5) -> None:
    """A weights file for mlp.yaml, made with the Python API."""
    m = nnspec.load(str(MLP))
    rng = np.random.default_rng(seed)
    m.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in m.get_weights()])
    m.save_weights(path)


# ---------------------------------------------------------------------------------- fit


def test_fit_learns_and_writes_weights_that_load_back(files, tmp_path):
    d, _ = files
    out, hist = tmp_path / "w.safetensors", tmp_path / "history.json"
    r = invoke("fit", MLP, "--data", d / "train.npz", "--loss", "binary_crossentropy", "--optimizer", "adam",
               "--learning-rate", "0.01", "--metric", "accuracy", "--epochs", "3", "--batch-size", "16",
               "--weights-out", out, "--history-out", hist)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Epoch 3/3" in r.output and "━" in r.output  # the progress bar
    assert f"wrote {out}: 771 parameters after 3 epochs" in r.output
    history = json.loads(hist.read_text())
    assert history["epoch"] == [0, 1, 2]
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > history["accuracy"][0]

    m = nnspec.load(str(MLP))
    m.load_weights(out)
    xt, yt = learnable(256, 1)
    accuracy = float(np.mean((m.predict(xt) > 0.5) == (yt > 0.5)))
    assert accuracy > 0.75, accuracy  # chance is 0.5


def test_fit_uses_the_training_section_with_its_epochs_and_batch_size(files, tmp_path):
    d, model_file = files
    out, hist = tmp_path / "w.safetensors", tmp_path / "history.csv"
    r = invoke("fit", model_file, "--data", d / "train.npz", "--weights-out", out, "--history-out", hist,
               "--verbose", "2")  # fmt: skip
    assert r.exit_code == 0, r.output
    # 384 samples in batches of 16, for 2 epochs; verbose 2 is one line per epoch
    assert r.output.count("24/24 - ") == 2, r.output
    assert "Epoch 2/2" in r.output and "━" not in r.output
    rows = hist.read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss"
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
    losses = [float(row.split(",")[2]) for row in rows[1:]]
    assert losses[1] < losses[0]
    assert out.exists()


def test_fit_headline_two_inputs_two_outputs(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    data = tmp_path / "headline.npz"
    np.savez(data, main_input=rng.integers(0, 10000, size=(n, 100)).astype(np.int32),
             aux_input=rng.normal(size=(n, 5)).astype(np.float32),
             main_output=rng.integers(0, 2, size=(n, 1)).astype(np.float32),
             aux_output=rng.integers(0, 2, size=(n, 1)).astype(np.float32))  # fmt: skip
    out = tmp_path / "headline.safetensors"
    r = invoke("fit", HEADLINE, "--data", data, "--epochs", "1", "--batch-size", "6", "--weights-out", out)
    assert r.exit_code == 0, r.output
    for name in (
        "loss",
        "main_output_loss",
        "aux_output_loss",
        "main_output_accuracy",
        "aux_output_accuracy",
    ):
        assert f"{name}: " in r.output, (name, r.output)
    assert "after 1 epoch" in r.output
    m = nnspec.load(str(HEADLINE))
    m.load_weights(out)  # every tensor present, with the right shapes
    before = nnspec.load(str(HEADLINE))
    before._seed = 0  # the initial weights of the run (--seed 0)
    trained, initial = m.get_weights(), before.get_weights()
    assert all(np.isfinite(w).all() for w in trained)
    assert not np.allclose(trained[-2], initial[-2])  # main_output/kernel moved


def test_validation_split_reports_val_loss(files, tmp_path):
    d, model_file = files
    hist = tmp_path / "h.json"
    r = invoke("fit", model_file, "--data", d / "train.npz", "--validation-split", "0.25", "--epochs", "1",
               "--weights-out", tmp_path / "w.safetensors", "--history-out", hist)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Train on 288 samples, validate on 96 samples" in r.output
    assert "val_loss: " in r.output and "val_accuracy: " in r.output
    history = json.loads(hist.read_text())
    assert set(history) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert math.isfinite(history["val_loss"][0])


def test_validation_data_checkpoint_and_early_stopping(files, tmp_path):
    d, model_file = files
    ckpt = tmp_path / "best.safetensors"
    hist = tmp_path / "h.csv"
    # the loss goes down, so with mode max it "does not improve" in the second epoch: stop there
    r = invoke("fit", model_file, "--data", d / "train.npz", "--validation-data", d / "test.npz", "--epochs", "5",
               "--checkpoint", ckpt, "--save-best-only", "--monitor", "loss", "--mode", "max",
               "--early-stopping-patience", "0", "--restore-best-weights", "--weights-out", tmp_path / "w.safetensors",
               "--history-out", hist)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Train on 384 samples, validate on 256 samples" in r.output
    assert "stopped early after epoch 2" in r.output
    assert "weights of epoch 1, the best loss" in r.output
    assert f"Epoch 1: saved {ckpt}" in r.output and "Epoch 2: loss did not improve" in r.output
    assert len(hist.read_text().splitlines()) == 3  # header and two epochs
    # the checkpoint and the weights written are epoch 1's weights
    a, b = nnspec.load(str(MLP)), nnspec.load(str(MLP))
    a.load_weights(ckpt)
    b.load_weights(tmp_path / "w.safetensors")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_fit_is_the_python_api_fit(files, tmp_path):
    """Same file, data, seed and options: the same history and the same weights as Model.fit."""
    d, model_file = files
    out, hist = tmp_path / "w.safetensors", tmp_path / "h.json"
    r = invoke("fit", model_file, "--data", d / "train.npz", "--class-weight", "0=1", "--class-weight", "1=3",
               "--no-shuffle", "--seed", "7", "--weights-out", out, "--history-out", hist, "--verbose", "0")  # fmt: skip
    assert r.exit_code == 0, r.output
    x, y = learnable(384, 0)
    m = nnspec.load(str(model_file))
    m._seed = 7
    m.compile()
    expected = m.fit(
        x, y, batch_size=16, epochs=2, class_weight={0: 1.0, 1: 3.0}, shuffle=False, seed=7, verbose=0
    )
    got = json.loads(hist.read_text())
    for k, v in expected.history.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k
    written = nnspec.load(str(MLP))
    written.load_weights(out)
    for a, b in zip(written.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_loss_options_merge_with_the_training_section():
    from nnspec.cli.train import _training_config

    m = nnspec.load(str(HEADLINE))
    cfg = _training_config(m, "headline.yaml", None, 0.5, ("aux_output=mse",), ())
    assert cfg["loss"] == {"main_output": "binary_crossentropy", "aux_output": "mse"}
    assert cfg["optimizer"] == {"type": "rmsprop", "learning_rate": 0.5}
    assert cfg["loss_weights"] == {"main_output": 1.0, "aux_output": 0.2} and cfg["metrics"] == ["accuracy"]
    cfg = _training_config(m, "headline.yaml", "adam", None, ("mse",), ("auc",))
    # every --metric for every output (a list of two would mean one per output, as in Keras 3)
    assert (cfg["optimizer"], cfg["loss"], cfg["metrics"]) == ("adam", "mse", {"main_output": ["auc"],
                                                                               "aux_output": ["auc"]})  # fmt: skip
    cfg = _training_config(nnspec.load(str(MLP)), "mlp.yaml", None, None, ("output=mse",), ())
    assert (cfg["optimizer"], cfg["loss"], cfg["epochs"], cfg["batch_size"]) == (
        "rmsprop",
        {"output": "mse"},
        None,
        None,
    )


def test_fit_starts_from_weights_and_initial_epoch(files, tmp_path):
    d, model_file = files
    start = tmp_path / "start.safetensors"
    mlp_weights(start)
    out, hist = tmp_path / "w.safetensors", tmp_path / "h.json"
    r = invoke("fit", model_file, "--data", d / "train.npz", "--weights", start, "--optimizer", "sgd",
               "--learning-rate", "1e-9", "--epochs", "3", "--initial-epoch", "2", "--weights-out", out,
               "--history-out", hist, "--verbose", "0")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(hist.read_text())["epoch"] == [2]
    a, b = nnspec.load(str(MLP)), nnspec.load(str(MLP))
    a.load_weights(start)
    b.load_weights(out)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


def test_ctrl_c_leaves_previous_weights_intact(files, tmp_path, monkeypatch):
    from nnspec.api.training import TrainMixin

    d, model_file = files
    out = tmp_path / "w.safetensors"
    mlp_weights(out)
    before = out.read_bytes()

    def interrupted_fit(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainMixin, "fit", interrupted_fit)
    r = invoke("fit", model_file, "--data", d / "train.npz", "--weights-out", out)
    assert r.exit_code == 130, r.output
    assert f"{out} was not written" in r.output
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temporary file left


# ---------------------------------------------------------------------------------- evaluate


def test_evaluate_prints_what_the_python_api_computes(files, tmp_path):
    d, model_file = files
    weights = tmp_path / "w.safetensors"
    mlp_weights(weights)
    with np.load(d / "test.npz") as f:
        x, y = f["x"], f["output"]
    m = nnspec.load(str(model_file))
    m.load_weights(weights)
    m.compile()  # the file's training section
    expected = m.evaluate(x, y, batch_size=16, return_dict=True)
    assert set(expected) == {"loss", "accuracy"}

    r = invoke("evaluate", model_file, "--data", d / "test.npz", "--weights", weights, "--format", "json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert list(got) == list(expected)
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-9, abs=1e-12), k

    r = invoke("evaluate", model_file, "--data", d / "test.npz", "--weights", weights)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [f"{k}: {v:.6g}" for k, v in expected.items()]


def test_evaluate_with_loss_option_sample_weights_and_xy_names(tmp_path):
    weights = tmp_path / "w.safetensors"
    mlp_weights(weights)
    x, y = learnable(40, 2)
    sw = np.linspace(0.1, 2.0, 40).astype(np.float32)
    data = tmp_path / "test.npz"
    np.savez(data, x=x, y=y, sample_weight=sw)  # x and y: a one-input, one-output model
    m = nnspec.load(str(MLP))
    m.load_weights(weights)
    m.compile(loss="mse", metrics=["mae"])
    expected = m.evaluate(x, y, sample_weight=sw, return_dict=True)

    r = invoke("evaluate", MLP, "--data", data, "--weights", weights, "--loss", "mse", "--metric", "mae",
               "--format", "json")  # fmt: skip
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got == pytest.approx(expected, rel=1e-9)
    unweighted = m.evaluate(x, y, return_dict=True)
    assert got["loss"] != pytest.approx(unweighted["loss"], rel=1e-6)  # the weights were used


def test_evaluate_reports_the_sections_weighted_metrics_and_metric_arguments(tmp_path):
    """``weighted_metrics`` and metrics with arguments (``{type: auc, num_thresholds: 50}``) in
    the training section are what ``nnspec evaluate`` reports, as ``compile()`` reads them."""
    weights = tmp_path / "w.safetensors"
    mlp_weights(weights)
    x, y = learnable(40, 3)
    sw = np.linspace(0.1, 2.0, 40).astype(np.float32)
    data = tmp_path / "test.npz"
    np.savez(data, x=x, y=y, sample_weight=sw)
    model_file = tmp_path / "m.yaml"
    model_file.write_text(MLP.read_text() + """
training:
  optimizer: sgd
  loss: binary_crossentropy
  metrics: [{type: auc, num_thresholds: 50, name: auc50}]
  weighted_metrics: [accuracy]
""")
    m = nnspec.load(str(model_file))
    m.load_weights(weights)
    m.compile()
    expected = m.evaluate(x, y, sample_weight=sw, return_dict=True)
    assert set(expected) == {"loss", "auc50", "accuracy"}  # "weighted_" only beside a plain accuracy
    assert expected["accuracy"] != pytest.approx(m.evaluate(x, y, return_dict=True)["accuracy"])

    r = invoke("evaluate", model_file, "--data", data, "--weights", weights, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------- errors: the user's files


def test_metrics_with_a_value_per_class_in_history_files_and_evaluate(files, tmp_path):
    """A metric with one value per class (F1Score; the MLP has one) is a list in the history files
    and in ``evaluate``'s output, with the values the Python API logs."""
    d, model_file = files
    hist_csv, hist_json, weights = tmp_path / "h.csv", tmp_path / "h.json", tmp_path / "w.safetensors"
    metric = "F1Score"
    for hist in (hist_csv, hist_json):
        r = invoke("fit", model_file, "--data", d / "train.npz", "--epochs", 2, "--metric", metric,
                   "--weights-out", weights, "--history-out", hist)  # fmt: skip
        assert r.exit_code == 0, r.output
    m = nnspec.load(str(model_file), seed=0)
    m.compile(optimizer={"type": "adam", "learning_rate": 0.01}, loss="binary_crossentropy", metrics=[metric])
    with np.load(d / "train.npz") as f:  # the section's batch size, and the CLI's default seed
        want = m.fit(f["x"], f["output"], epochs=2, batch_size=16, verbose=0).history[metric]
    assert np.shape(want) == (2, 1)
    got = json.loads(hist_json.read_text())[metric]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    lines = hist_csv.read_text().splitlines()
    col = lines[0].split(",").index(metric)
    assert [json.loads(line.split(",")[col].strip('"')) for line in lines[1:]] == pytest.approx(np.asarray(got))
    assert col > 0
    r = invoke("evaluate", model_file, "--data", d / "train.npz", "--weights", weights, "--metric", metric,
               "--format", "json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)[metric]) == 1
    r = invoke("evaluate", model_file, "--data", d / "train.npz", "--weights", weights, "--metric", metric)
    assert r.exit_code == 0, r.output
    assert any(line.startswith("F1Score: [") for line in r.output.splitlines())


def test_no_training_section_and_no_loss(files, tmp_path):
    d, _ = files
    for cmd in (("fit", MLP, "--data", d / "train.npz", "--weights-out", tmp_path / "w.safetensors"),
                ("evaluate", MLP, "--data", d / "test.npz")):  # fmt: skip
        r = invoke(*cmd)
        assert r.exit_code == 1, r.output
        line = error_line(r)
        assert "has no training section" in line and "--loss" in line, line
    assert not (tmp_path / "w.safetensors").exists()


def test_missing_target_names_the_key_and_lists_the_keys_found(files, tmp_path):
    _, model_file = files
    x, y = learnable(8, 3)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, outptu=y)
    for cmd in ("fit", "evaluate"):
        extra = ("--weights-out", tmp_path / "w.safetensors") if cmd == "fit" else ()
        r = invoke(cmd, model_file, "--data", data, *extra)
        assert r.exit_code == 1, r.output
        line = error_line(r)
        assert f"{data}: missing array 'output'" in line, line
        assert "the file has: x, outptu" in line, line


def test_missing_input_of_a_two_input_model(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, main_input=np.zeros((4, 100), np.int32), main_output=np.zeros((4, 1), np.float32),
             aux_output=np.zeros((4, 1), np.float32))  # fmt: skip
    r = invoke("fit", HEADLINE, "--data", data, "--weights-out", tmp_path / "w.safetensors")
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert "missing array 'aux_input' (input)" in line, line
    assert "the file has: main_input, main_output, aux_output" in line, line


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((4, 31)), "output": np.zeros((4, 1))}, "input 'x': expected shape (None, 32); got (4, 31)"),
        ({"x": np.zeros((4, 32)), "output": np.zeros((3, 1))}, "targets for 'output' have 3 samples"),
        ({"x": np.zeros((4, 32)), "output": np.zeros((4, 3))}, "targets for output 'output': expected targets of shape (batch, 1)"),
        ({"x": np.zeros((0, 32)), "output": np.zeros((0, 1))}, "no samples"),
        ({"x": np.zeros((4, 32)), "output": np.zeros((4, 1)), "sample_weight:outpt": np.ones(4)},
         "'outpt' is not an output of model 'mlp' (outputs: output); did you mean 'output'?"),
    ],
)  # fmt: skip
def test_data_that_does_not_fit_the_model(files, tmp_path, arrays, message):
    _, model_file = files
    data = tmp_path / "d.npz"
    np.savez(data, **arrays)
    r = invoke("fit", model_file, "--data", data, "--weights-out", tmp_path / "w.safetensors")
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert line.startswith(f"error: {data}: ") and message in line, line


def test_bad_data_files(files, tmp_path):
    _, model_file = files
    text = tmp_path / "text.npz"
    text.write_text("x,output\n1,0\n")
    single = tmp_path / "x.npy"
    np.save(single, np.zeros((4, 32)))
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, x=np.zeros((4, 32)), output=np.zeros((4, 1)))
    truncated.write_bytes(truncated.read_bytes()[:100])
    for path, message in (
        (text, "not an .npz file"),
        (single, "a single .npy array"),
        (truncated, "cannot read"),
    ):
        for cmd in ("fit", "evaluate"):
            extra = ("--weights-out", tmp_path / "w.safetensors") if cmd == "fit" else ()
            r = invoke(cmd, model_file, "--data", path, *extra)
            assert r.exit_code == 1, (path, r.output)
            line = error_line(r)
            assert line.startswith(f"error: {path}: ") and message in line, line
    assert not (tmp_path / "w.safetensors").exists()


def test_weights_that_do_not_fit_the_model(files, tmp_path):
    d, _ = files
    weights = tmp_path / "mlp.safetensors"
    mlp_weights(weights)
    for cmd in ("fit", "evaluate"):
        extra = ("--weights-out", tmp_path / "w.safetensors") if cmd == "fit" else ()
        r = invoke(cmd, HEADLINE, "--data", d / "train.npz", "--weights", weights, *extra)
        assert r.exit_code == 1, r.output
        line = error_line(r)
        assert f"error: {weights}: missing tensor 'embed/embeddings'" in line, line
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file")
    r = invoke("evaluate", MLP, "--data", d / "test.npz", "--weights", bad, "--loss", "mse")
    assert r.exit_code == 1 and "not a safetensors file" in error_line(r), r.output


# ---------------------------------------------------------------------------------- errors: usage


@pytest.mark.parametrize(
    "options, message",
    [
        (("--validation-split", "0.1", "--validation-data", "{train}"), "not both"),
        (("--save-best-only",), "--save-best-only needs --checkpoint"),
        (("--restore-best-weights",), "--restore-best-weights needs --early-stopping-patience"),
        (("--early-stopping-patience", "1", "--monitor", "val_loss"), "needs validation data"),
        (("--early-stopping-patience", "1", "--monitor", "acc"), "'acc' is not logged; the logged values are: loss, accuracy"),
        (("--checkpoint", "{tmp}/e{epoch}-{val_acc}.st"), "'{val_acc}' is not a logged value"),
        (("--history-out", "{tmp}/h.txt"), "write the history as .csv or .json"),
        (("--optimizer", "adamm"), "unknown optimizer 'adamm'; did you mean 'adam'?"),
        (("--loss", "msee"), "unknown loss 'msee'; did you mean 'mse'?"),
        (("--loss", "outptu=mse"), "'outptu' is not an output of model 'mlp'"),
        (("--metric", "acuracy"), "unknown metric 'acuracy'"),
        (("--epochs", "2", "--initial-epoch", "2"), "leaves no epoch to train"),
        (("--validation-split", "0.999"), "0.999 of 384 samples leaves no training samples"),
        (("--validation-split", "1e-17"), "leaves no validation samples"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(files, tmp_path, options, message):
    d, model_file = files
    options = [o.replace("{train}", str(d / "train.npz")).replace("{tmp}", str(tmp_path)) for o in options]
    out = tmp_path / "w.safetensors"
    r = invoke("fit", model_file, "--data", d / "train.npz", "--weights-out", out, *options)
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert not out.exists()


def test_weights_out_in_a_missing_folder_is_refused_before_training(files, tmp_path):
    d, model_file = files
    r = invoke(
        "fit", model_file, "--data", d / "train.npz", "--weights-out", tmp_path / "nope" / "w.safetensors"
    )
    assert r.exit_code == 2 and "does not exist" in r.output, r.output
