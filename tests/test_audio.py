"""STFTSpectrogram and MelSpectrogram against their NumPy references (np.fft for the mel one),
scipy's windows, Keras 3 on PyTorch (initial weights, parameter counts, predictions, autograd,
a training step, model_from_json) and float64 finite differences, and what Keras refuses.

Compiled plans are shared: the forward checks run a few multi-layer models (one compilation
each) and the gradient cases run in GradSuite groups.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.layerdefs import REGISTRY, audio
from nnspec.layerdefs.base import bind_numpy, normalize_attrs
from nnspec.specs.errors import ShapeMismatchError, SpecError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grad_harness import Case, GradSuite, close, fd_grads, keras_grads

bind_numpy([audio])

S, M = "STFTSpectrogram", "MelSpectrogram"

# ----------------------------------------------------------------------------- forward cases

# (name, attrs) of STFT layers run together on one (60, 2) channels-last input, and on one
# (2, 60) channels-first input: every mode, scaling, padding, several windows, expand_dims.
# fmt: off
STFT_LAST = [
    ("log-same", {"mode": "log", "frame_length": 16, "frame_step": 5, "padding": "same"}),
    ("magnitude-hamming", {"mode": "magnitude", "frame_length": 12, "window": "hamming", "periodic": True}),
    ("psd-odd-fft", {"mode": "psd", "frame_length": 10, "fft_length": 13, "scaling": "spectrum"}),
    ("real-blackman", {"mode": "real", "frame_length": 16, "frame_step": 16, "window": "blackman", "scaling": None}),
    ("imag-expand", {"mode": "imag", "frame_length": 8, "expand_dims": True, "window": None}),
    ("angle", {"mode": "angle", "frame_length": 16, "frame_step": 3, "window": "flattop"}),
    ("stft-expand-same", {"mode": "stft", "frame_length": 9, "frame_step": 4, "padding": "same", "expand_dims": True,
                          "window": [0.1 * k for k in range(9)]}),
]
STFT_FIRST = [
    ("cf-log", {"mode": "log", "frame_length": 16, "data_format": "channels_first", "window": "bartlett"}),
    ("cf-stft-same", {"mode": "stft", "frame_length": 12, "frame_step": 7, "padding": "same",
                      "data_format": "channels_first"}),
    ("cf-psd-expand", {"mode": "psd", "frame_length": 8, "expand_dims": True, "data_format": "channels_first",
                       "scaling": None}),
]
# MelSpectrogram layers on one (600,) input.
MEL = [
    ("mel-db", {"fft_length": 128, "sequence_stride": 50, "num_mel_bins": 16}),
    ("mel-hamming-short-window", {"fft_length": 127, "sequence_stride": 64, "sequence_length": 100,
                                  "window": "hamming", "num_mel_bins": 10, "sampling_rate": 8000, "max_freq": 3000.0,
                                  "min_freq": 100.0, "top_db": 20.0, "ref_power": 2.0}),
    ("mel-power-no-window", {"fft_length": 64, "sequence_stride": 32, "window": None, "num_mel_bins": 8,
                             "power_to_db": False, "mag_exp": 1.0}),
    ("mel-array-window", {"fft_length": 64, "sequence_stride": 40, "sequence_length": 30, "num_mel_bins": 8,
                          "window": [1.0 - abs(k - 14.5) / 16 for k in range(30)], "mag_exp": 1.0}),
]
# fmt: on


def _multi_spec(layers, shape) -> dict:
    return {"format": "nnspec/1", "name": "audio", "inputs": {"x": {"shape": list(shape)}},
            "layers": {name: {"type": t, **a} for name, t, a in layers},
            "edges": [f"x -> {name}" for name, _, _ in layers], "outputs": [name for name, _, _ in layers]}  # fmt: skip


_GROUPS = {
    "last": ([(n, S, a) for n, a in STFT_LAST], (60, 2)),
    "first": ([(n, S, a) for n, a in STFT_FIRST], (2, 60)),
    "mel": ([(n, M, a) for n, a in MEL], (600,)),
}
_RUNS: dict = {}


def _run(group):
    """(model, input, weights per layer, outputs per layer) of one group, computed once. The
    kernels are the Keras initial values plus noise (so that trained kernels are covered too)."""
    if group not in _RUNS:
        layers, shape = _GROUPS[group]
        m = nnspec.Model.from_config(_multi_spec(layers, shape))
        rng = np.random.default_rng(3)
        x = rng.normal(0, 1, size=(3, *shape)).astype(np.float32)
        weights = {}
        for name, _, _ in layers:
            w = [
                v + rng.normal(0, 0.02, size=v.shape).astype(np.float32)
                for v in m.get_layer(name).get_weights()
            ]
            m.get_layer(name).set_weights(w)
            weights[name] = w
        out = m.predict(x)
        _RUNS[group] = (
            m,
            x,
            weights,
            dict(zip([n for n, _, _ in layers], out if isinstance(out, list) else [out])),
        )
    return _RUNS[group]


FORWARD = [(g, n) for g, (layers, _) in _GROUPS.items() for n, _, _ in layers]


@pytest.mark.parametrize("group, name", FORWARD, ids=[n for _, n in FORWARD])
def test_kernels_match_reference(group, name):
    _, x, weights, out = _run(group)
    layers = {n: (t, a) for n, t, a in _GROUPS[group][0]}
    t, attrs = layers[name]
    defn = REGISTRY[t]
    (ref,) = defn.reference(normalize_attrs(defn, attrs), [x.astype(np.float64)],
                            [w.astype(np.float64) for w in weights[name]])  # fmt: skip
    assert out[name].shape == ref.shape
    if attrs.get("mode") == "angle":  # atan2 near its branch cut: compare angles modulo 2 pi
        d = np.angle(np.exp(1j * (out[name] - ref)))
        assert np.abs(d).max() < 1e-4
    else:
        close(out[name], ref, 1e-4, name)


@pytest.mark.keras
@pytest.mark.parametrize("group, name", FORWARD, ids=[n for _, n in FORWARD])
def test_predictions_weights_and_counts_match_keras(group, name):
    import keras

    _, x, weights, out = _run(group)
    t, attrs = {n: (t, a) for n, t, a in _GROUPS[group][0]}[name]
    inp = keras.Input(x.shape[1:])
    layer = getattr(keras.layers, t)(**attrs)
    km = keras.Model(inp, layer(inp))
    # Keras's initial values, names, order, shapes and trainability; nnspec's fresh model's.
    fresh = nnspec.Model.from_config(_multi_spec([(name, t, attrs)], x.shape[1:]))
    ours = fresh.get_layer(name).get_weights()
    names = [n.split("/")[-1] for n in fresh.get_layer(name)._weight_names()]
    assert names == [w.path.split("/")[-1] for w in layer.weights]
    assert [p.trainable for p in fresh.get_layer(name)._params()] == [w.trainable for w in layer.weights]
    assert [tuple(w.shape) for w in layer.weights] == [w.shape for w in ours]
    for a, b in zip(ours, layer.get_weights()):
        # torch's float32 cos/sin is not correctly rounded (nnspec's is): 1 ulp apart at most
        np.testing.assert_allclose(a, b, rtol=0, atol=1.2e-7 * max(1.0, float(np.abs(b).max())))
    assert fresh.count_params() == km.count_params()
    assert tuple(fresh.outputs[0].shape[1:]) == tuple(km.outputs[0].shape[1:])
    layer.set_weights(weights[name])
    want = km.predict(x, verbose=0)
    assert out[name].shape == want.shape
    if attrs.get("mode") == "angle":
        assert np.abs(np.angle(np.exp(1j * (out[name] - want)))).max() < 1e-4
    else:
        close(out[name], want, 1e-4, name)


def test_windows_match_scipy():
    from scipy.signal import get_window

    names = sorted(audio._WINDOW_ALIASES) + ["hann_periodic", "blackman_symmetric"]
    for name in names:
        for n in (1, 2, 5, 8, 31):
            for periodic in (False, True):
                got = np.asarray(audio.window_values(name, n, periodic))
                np.testing.assert_allclose(got, get_window(name, n, fftbins=periodic), rtol=0, atol=1e-12,
                                           err_msg=f"{name} {n} {periodic}")  # fmt: skip


@pytest.mark.keras
def test_mel_matrix_matches_keras():
    from keras.layers import MelSpectrogram

    ours = audio.mel_matrix_reference(65, 12, 16000.0, 30.0, 7000.0)
    theirs = MelSpectrogram().linear_to_mel_weight_matrix(12, 65, 16000, 30.0, 7000.0)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=0, atol=2e-6)


def test_default_stft_has_kerass_trainable_weights():
    """STFTSpectrogram() on one channel: two (256, 1, 129) kernels, 66,048 parameters, trainable
    as Keras counts them; frozen with trainable: false."""
    spec = _multi_spec([("s", S, {})], (1000, 1))
    m = nnspec.Model.from_config(spec)
    assert [w.shape for w in m.get_layer("s").get_weights()] == [(256, 1, 129)] * 2
    assert m.count_params() == 66048 and "Trainable params: 66,048" in _summary(m)
    frozen = nnspec.Model.from_config(
        _multi_spec([("s", S, {"trainable": False, "mode": "real"})], (1000, 1))
    )
    assert "Non-trainable params: 33,024" in _summary(frozen)


def _summary(m) -> str:
    lines = []
    m.summary(print_fn=lines.append)
    return "\n".join(lines)


@pytest.mark.keras
def test_mel_db_floor_is_over_the_whole_batch():
    """Keras's power_to_db floor is max(all of the batch) - top_db (``ops.max`` with no axis): a
    quiet sample next to a loud one is floored by the loud one's maximum."""
    import keras

    m, x, _, _ = _run("mel")
    _, attrs = MEL[1]
    quiet = np.concatenate([x[:1], 1e-3 * x[1:2]])
    inp = keras.Input(x.shape[1:])
    km = keras.Model(inp, keras.layers.MelSpectrogram(**attrs)(inp))
    both = km.predict(quiet, verbose=0)
    alone = km.predict(quiet[1:], verbose=0)
    assert np.abs(both[1] - alone[0]).max() > 1.0  # the quiet sample's floor moved
    assert both.min() == pytest.approx(both.max() - attrs["top_db"], abs=1e-3)
    close(m.predict(quiet)[1], both, 1e-4, "batch floor")
    close(m.predict(quiet[1:])[1], alone, 1e-4, "alone")


@pytest.mark.keras
def test_a_batch_with_a_mel_spectrogram_is_never_split_over_threads(monkeypatch):
    """Inference splits a batch with enough work over threads (runtime/executor.py); the decibel
    floor couples the batch, so a plan with a MelSpectrogram keeps it whole, whatever the work."""
    import keras

    from nnspec.runtime import executor

    monkeypatch.setattr(executor, "MIN_PART_WORK", 1)  # every batch of 2 or more would be split
    monkeypatch.setattr(executor, "worker_threads", lambda: 2)
    _, attrs = MEL[1]
    x = np.random.default_rng(7).normal(size=(4, 600)).astype(np.float32) * np.float32([[1], [1e-3], [1], [1e-3]])
    inp = keras.Input(x.shape[1:])
    want = keras.Model(inp, keras.layers.MelSpectrogram(**attrs)(inp)).predict(x, verbose=0)
    m = nnspec.Model.from_config(_multi_spec([("mel", M, attrs)], x.shape[1:]))
    close(m.predict_on_batch(x), want, 1e-4, "whole batch")
    # the same plan without the coupling flag would be split: the check above can fail
    monkeypatch.setitem(REGISTRY[M].extra, "couples_batch_at_inference", False)
    split = nnspec.Model.from_config(_multi_spec([("mel", M, attrs)], x.shape[1:])).predict_on_batch(x)
    assert np.abs(split - want).max() > 1.0


# ----------------------------------------------------------------------------- gradients

# The kernels are trainable (Keras's default) unless said; GradSuite perturbs them by N(0, 0.3).
# fmt: off
CASES = [
    Case("stft-log", S, {"mode": "log", "frame_length": 8, "frame_step": 3, "padding": "same"}, ((20, 2),)),
    Case("stft-angle", S, {"mode": "angle", "frame_length": 8, "frame_step": 4, "window": "hamming",
                           "expand_dims": True}, ((20, 1),)),
    Case("stft-psd-cf", S, {"mode": "psd", "frame_length": 6, "fft_length": 8, "data_format": "channels_first"},
         ((2, 17),)),
    Case("stft-magnitude-frozen", S, {"mode": "magnitude", "frame_length": 8, "trainable": False, "scaling": None},
         ((18, 1),)),
    Case("stft-stft-imag", S, {"mode": "stft", "frame_length": 7, "frame_step": 5, "window": None}, ((19, 1),)),
    Case("stft-imag-real", S, {"mode": "imag", "frame_length": 8, "expand_dims": True,
                               "data_format": "channels_first"}, ((1, 16),)),
    Case("mel-db", M, {"fft_length": 32, "sequence_stride": 8, "num_mel_bins": 6, "sampling_rate": 8000,
                       "top_db": 30.0}, ((40,),)),
    Case("mel-amplitude", M, {"fft_length": 31, "sequence_stride": 10, "sequence_length": 24, "window": "hamming",
                              "num_mel_bins": 5, "power_to_db": False, "mag_exp": 1.5}, ((36,),)),
]
# fmt: on

SUITE = GradSuite(CASES, group_size=4)  # two compiled train steps for the eight cases


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_finite_differences(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    dx, dw = fd_grads(case, r)
    close(r.dx[0], dx[0], 1e-3, "input")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, 1e-3, f"weight {i}")
    assert all(g is None for g, t in zip(r.dw, r.trainable) if not t)


@pytest.mark.keras
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_keras_autograd(case_id):
    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    y, dx, dw, _ = keras_grads(case, r)
    if case.attrs.get("mode") == "angle":
        assert np.abs(np.angle(np.exp(1j * (r.y - y)))).max() < 1e-4
    else:
        close(r.y, y, 1e-4, "training forward")
    close(r.dx[0], dx[0], 1e-4, "input")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, 1e-4, f"weight {i}")


@pytest.mark.keras
def test_silent_signal_gradients():
    """A silent signal, where every re = im = 0: torch's autograd gives 0 for atan2 (nnspec too)
    and NaN for MelSpectrogram's sqrt(|X|^2) (nnspec: 0, as its docstring says)."""
    import torch
    from keras import layers

    attrs = normalize_attrs(REGISTRY[S], {"mode": "angle", "frame_length": 4})
    g = audio._stft_geometry(attrs, (12, 1))
    kr = audio.stft_kernel((4, 1, 3), "real", "hann", "density").reshape(4, 3)
    ki = audio.stft_kernel((4, 1, 3), "imag", "hann", "density").reshape(4, 3)
    dy = np.ones((1, g[7] * 3), np.float32)
    dx, dkr, dki = np.zeros((1, 12), np.float32), np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)
    audio.stft_backward(
        np.zeros((1, 12), np.float32), kr, ki, dy, dx, dkr, dki, g, audio.M_ANGLE, True, True, True
    )
    xt = torch.zeros((1, 12, 1), requires_grad=True)
    layers.STFTSpectrogram(mode="angle", frame_length=4)(xt).sum().backward()
    np.testing.assert_array_equal(dx.reshape(-1), xt.grad.numpy().reshape(-1))

    frames = 1 + (20 + 8 - 8) // 4
    c = (16000.0, 20.0, 8000.0, 80.0, 2.0, 1e-10, 1.0)
    dx = np.zeros((1, 20), np.float32)
    audio.mel_backward(np.zeros((1, 20), np.float32), np.ones((1, 3 * frames), np.float32), dx, (20, 8, 4, 8, frames, 3),
                       audio.W_HANN, np.zeros(0), c, True)  # fmt: skip
    xt = torch.zeros((1, 20), requires_grad=True)
    layers.MelSpectrogram(fft_length=8, sequence_stride=4, num_mel_bins=3)(xt).sum().backward()
    assert np.isnan(xt.grad.numpy()).all() and not dx.any()


# ----------------------------------------------------------------------------- models

MODEL = """
format: nnspec/1
name: audio_model
inputs:
  wave: {shape: [40, 1]}
  signal: {shape: [48]}
layers:
  stft: {type: STFTSpectrogram, mode: log, frame_length: 8, frame_step: 4, padding: same}
  conv: {type: Conv1D, filters: 3, kernel_size: 3, activation: tanh}
  flat_a: {type: Flatten}
  pre: {type: Dense, units: 48}
  mel: {type: MelSpectrogram, fft_length: 32, sequence_stride: 16, num_mel_bins: 6, top_db: 40.0}
  flat_b: {type: Flatten}
  join: {type: Concatenate}
  probs: {type: Dense, units: 3, activation: softmax}
edges:
  - wave -> stft -> conv -> flat_a
  - signal -> pre -> mel -> flat_b
  - flat_a, flat_b -> join -> probs
outputs: [probs]
"""


@pytest.mark.keras
def test_model_predictions_and_training_step_match_keras():
    """STFTSpectrogram (trainable kernels) -> Conv1D -> Dense, and Dense -> MelSpectrogram -> Dense:
    parameter counts, predictions and one SGD step (every weight, the STFT kernels and the Dense
    before the mel layer included) as Keras's."""
    from grad_harness import model_matches_keras

    rng = np.random.default_rng(0)
    x = [rng.normal(size=(5, 40, 1)).astype(np.float32), rng.normal(size=(5, 48)).astype(np.float32)]
    y = np.eye(3, dtype=np.float32)[np.arange(5) % 3]
    m, _, moved = model_matches_keras(MODEL, x, y, seed=2)
    # kernels 2 x (8, 1, 5); Conv1D over (10 frames, 5 bins); mel of 48 samples: 6 x 4 frames
    assert m.count_params() == 2 * 8 * 5 + (3 * 5 * 3 + 3) + (48 * 48 + 48) + ((8 * 3 + 6 * 4) * 3 + 3)
    assert moved == 8


@pytest.mark.keras
def test_keras_model_loads_with_model_from_json():
    import keras

    inp = keras.Input((30, 2))
    s = keras.layers.STFTSpectrogram(mode="psd", frame_length=8, frame_step=3, window=[0.5] * 8, scaling=None,
                                     padding="same", trainable=False)(inp)  # fmt: skip
    sig = keras.Input((50,))
    mel = keras.layers.MelSpectrogram(
        fft_length=16, sequence_stride=8, num_mel_bins=4, window=None, max_freq=5000
    )(sig)
    km = keras.Model([inp, sig], [s, mel])
    m = nnspec.model_from_json(km.to_json())
    assert [w.shape for w in m.get_weights()] == [w.shape for w in km.get_weights()]
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1.2e-7)
    assert m.count_params() == km.count_params()
    assert "Non-trainable params: 80 " in _summary(m)  # two (8, 1, 5) kernels, frozen
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(2, 30, 2)).astype(np.float32), rng.normal(size=(2, 50)).astype(np.float32)]
    for got, want in zip(m.predict(xs), km.predict(xs, verbose=0)):
        close(got, want, 1e-4, "imported model")


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "t, attrs, shape, message",
    [
        (S, {"frame_length": 8, "frame_step": 9}, (20, 1), "frame_step must not exceed"),
        (S, {"frame_length": 8, "fft_length": 7}, (20, 1), "fft_length must not be less"),
        (S, {"frame_length": 8, "window": "kaiser"}, (20, 1), "window 'kaiser'"),
        (S, {"frame_length": 8, "window": [1.0, 2.0]}, (20, 1), "length must be 8"),
        (S, {"frame_length": 8}, (6, 1), "fewer than frame_length"),
        (S, {"frame_length": 8}, (20,), "rank 3"),
        (S, {"frame_length": 8}, (20, None), "known channel count"),
        (M, {"fft_length": 32, "sequence_length": 40}, (100,), "at least sequence_length"),
        (M, {"fft_length": 32, "window": "blackman"}, (100,), "hann or hamming"),
        (M, {"fft_length": 32}, (16,), "needs more samples"),
        (M, {"fft_length": 32}, (100, 1), "rank 2"),
    ],
)
def test_what_keras_refuses_is_a_shape_error(t, attrs, shape, message):
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": list(shape)}}, "layers": {"a": {"type": t, **attrs}},
            "edges": ["x -> a"], "outputs": ["a"]}  # fmt: skip
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.Model.from_config(spec)
    assert "E300" in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "t, attrs",
    [(S, {"mode": "power"}), (S, {"scaling": "l2"}), (S, {"padding": "causal"}), (M, {"fft_length": 0})],
)
def test_invalid_arguments_are_schema_errors(t, attrs):
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": [100, 1] if t == S else [100]}},
            "layers": {"a": {"type": t, **attrs}}, "edges": ["x -> a"], "outputs": ["a"]}  # fmt: skip
    with pytest.raises(SpecError):
        nnspec.Model.from_config(spec)


@pytest.mark.keras
def test_keras_refuses_the_same_arguments():
    """The constructor refusals above are Keras's too."""
    import keras

    for kwargs in ({"frame_length": 8, "frame_step": 9}, {"frame_length": 8, "fft_length": 7}, {"mode": "power"},
                   {"scaling": "l2"}, {"padding": "causal"}, {"window": "nonsense"}):  # fmt: skip
        with pytest.raises(ValueError):
            keras.layers.STFTSpectrogram(**kwargs)
    with pytest.raises(ValueError):
        keras.layers.MelSpectrogram(fft_length=32, sequence_length=40)
