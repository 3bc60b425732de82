"""EinsumDense against its NumPy reference (``np.einsum``), finite differences and Keras 3
(PyTorch backend): every letter role (shared, free, contracted, summed-only), both ellipsis
forms, bias axes, activations, weight shapes, initializer fans, a whole model's training step,
and the equations Keras refuses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.specs.errors import ShapeMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_harness as kh
from grad_harness import Case, GradSuite, close, fd_grads, keras_grads

E = "EinsumDense"

# fmt: off
FORWARD = [  # (id, attrs, per-sample input shapes)
    ("dense-like", {"equation": "ab,bc->ac", "output_shape": 4, "bias_axes": "c"}, ((3,),)),
    ("sequence-relu", {"equation": "abc,cd->abd", "output_shape": [None, 5], "bias_axes": "d",
                       "activation": "relu"}, ((4, 3),)),
    ("heads", {"equation": "abc,cde->abde", "output_shape": [None, 2, 3], "bias_axes": "de"}, ((4, 5),)),
    ("left-ellipsis", {"equation": "...b,bc->...c", "output_shape": 6, "bias_axes": "c"}, ((2, 3, 4),)),
    ("right-ellipsis", {"equation": "ab...,bc->ac...", "output_shape": [5], "bias_axes": "c"}, ((3, 2),)),
    ("two-contracted", {"equation": "abcd,cde->abe", "output_shape": [None, 4], "bias_axes": "e"}, ((3, 2, 5),)),
    ("shared-letter", {"equation": "abc,bcd->abd", "output_shape": [3, 4], "bias_axes": "bd"}, ((3, 5),)),
    ("summed-input-letter", {"equation": "abc,bd->ad", "output_shape": [4]}, ((3, 5),)),
    ("transposed-softmax", {"equation": "abc,dc->adb", "output_shape": [4, None], "activation": "softmax",
                            "bias_axes": "d"}, ((3, 5),)),
    ("blas-sized", {"equation": "abc,cd->abd", "output_shape": [None, 48], "bias_axes": "d"}, ((20, 40),)),
]
# fmt: on

_RUNS: dict = {}


def _forward(case):
    cid, attrs, shapes = case
    if cid not in _RUNS:
        ins = kh.random_inputs(shapes)
        w = kh.nnspec_weights(E, attrs, shapes)
        _RUNS[cid] = (ins, w, kh.run_nnspec(E, attrs, ins, w))
    return _RUNS[cid]


@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_kernels_match_reference(case):
    ins, w, got = _forward(case)
    (ref,) = kh.run_reference(E, case[1], ins, w)
    np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.keras
@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c[0])
def test_kernels_weights_and_params_match_keras(case):
    from keras_ref import keras_layer_facts

    _, attrs, shapes = case
    ins, w, got = _forward(case)
    (want,) = kh.run_keras(E, attrs, ins, w)
    assert got[0].shape == want.shape
    np.testing.assert_allclose(got[0], want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    out_shapes, weights, count = keras_layer_facts(E, attrs, list(shapes))
    m = kh.build_nnspec(E, attrs, shapes)
    assert [tuple(w.shape) for w in m.get_layer("layer").get_weights()] == [s for _, s, _ in weights]
    assert m.count_params() == count
    # Keras's symbolic shape keeps output_shape's nulls; nnspec fills them from the input
    # (the layer's docs say so): every size Keras knows must agree. Keras 3.15 also lists two or
    # more elided axes of a leading ellipsis in reverse in its symbolic shape (the array it
    # computes has them in order, as checked above): compared in that order.
    ours = tuple(m.outputs[0].shape)
    if attrs["equation"].startswith("..."):
        elided = len(shapes[0]) + 1 - len(attrs["equation"].split(",")[0].replace("...", ""))
        ours = (ours[0], *reversed(ours[1:elided]), *ours[elided:])
    assert len(ours) == len(out_shapes[0])
    assert all(k is None or k == o for o, k in zip(ours, out_shapes[0]))


# fmt: off
CASES = [
    Case("einsum-sequence", E, {"equation": "abc,cd->abd", "output_shape": [None, 5], "bias_axes": "d",
                               "activation": "tanh"}, ((4, 3),)),
    Case("einsum-heads-gelu", E, {"equation": "abc,cde->abde", "output_shape": [None, 2, 3], "bias_axes": "de",
                                  "activation": "gelu"}, ((4, 5),)),
    Case("einsum-shared-summed", E, {"equation": "abcd,bd->ab", "output_shape": [3], "bias_axes": "b"},
         ((3, 2, 4),)),
    Case("einsum-left-ellipsis", E, {"equation": "...b,bc->...c", "output_shape": 3, "bias_axes": "c"},
         ((2, 3, 4),)),
    Case("einsum-right-ellipsis", E, {"equation": "ab...,bc->ac...", "output_shape": [4], "bias_axes": "c"},
         ((3, 2),)),
    Case("einsum-transposed-no-bias", E, {"equation": "abc,dc->adb", "output_shape": [4, None]}, ((3, 5),)),
    Case("einsum-frozen", E, {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": "c", "trainable": False},
         ((4,),)),
]
# fmt: on

SUITE = GradSuite(CASES)


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
    close(r.y, y, 1e-4, "training forward")
    close(r.dx[0], dx[0], 1e-4, "input")
    for i, (got, ref, t) in enumerate(zip(r.dw, dw, r.trainable)):
        if t:
            close(got, ref, 1e-4, f"weight {i}")


MODEL = """
format: nnspec/1
name: einsum_model
inputs:
  x: {shape: [6, 8]}
layers:
  heads: {type: EinsumDense, equation: "abc,cde->abde", output_shape: [null, 2, 4], bias_axes: de, activation: relu}
  merge: {type: EinsumDense, equation: "abcd,cde->abe", output_shape: [null, 5], bias_axes: e}
  pool: {type: GlobalAveragePooling1D}
  probs: {type: Dense, units: 3, activation: softmax}
edges:
  - x -> heads -> merge -> pool -> probs
outputs: [probs]
"""


@pytest.mark.keras
def test_model_summary_predictions_and_training_step_match_keras():
    from grad_harness import model_matches_keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(5) % 3]
    m, _, moved = model_matches_keras(MODEL, x, y, seed=4)
    assert m.count_params() == (8 * 2 * 4 + 2 * 4) + (2 * 4 * 5 + 5) + (5 * 3 + 3)
    assert moved == 6


def test_kernel_initializer_fans_follow_the_equation():
    """Keras gives a variance-scaling initializer the kernel's input and output axes: for
    ``abc,cde->abde`` with kernel (64, 4, 16), glorot's limit is sqrt(6 / (64 + 64)), not the
    conv-kernel fans' sqrt(6 / (256 + 1024))."""
    from nnspec import Input, Model, layers

    x = Input((10, 64))
    layer = layers.EinsumDense("abc,cde->abde", [None, 4, 16])
    Model(x, layer(x))
    (k,) = layer.get_weights()
    limit = np.sqrt(6 / 128)
    assert k.shape == (64, 4, 16)
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.95 * limit


@pytest.mark.parametrize(
    "attrs, shape, message",
    [
        ({"equation": "ab->ac", "output_shape": 4}, (3,), "take the form"),
        ({"equation": "abc,cd->abd", "output_shape": [None, 4]}, (3,), "rank 3"),
        ({"equation": "ab,bc->ac", "output_shape": [None, 4]}, (3,), "must give 1 size"),
        ({"equation": "abc,cd->abd", "output_shape": [5, 4]}, (3, 2), "the input has 3"),
        ({"equation": "ab,bc->ac", "output_shape": [None]}, (3,), "size of 'c'"),
        ({"equation": "ab,bc->ad", "output_shape": 4}, (3,), "neither in the input nor in the kernel"),
        ({"equation": "ab,bc->ac", "output_shape": 4, "bias_axes": "x"}, (3,), "bias axis 'x'"),
        ({"equation": "ab,ac->bc", "output_shape": 4}, (3,), "batch axis"),
        ({"equation": "aab,bc->ac", "output_shape": 4}, (3, 3), "repeat a letter"),
    ],
)
def test_equations_keras_refuses_are_shape_errors(attrs, shape, message):
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": list(shape)}},
            "layers": {"e": {"type": E, **attrs}}, "edges": ["x -> e"], "outputs": ["e"]}  # fmt: skip
    with pytest.raises(ShapeMismatchError) as err:
        nnspec.Model.from_config(spec)
    assert "E300" in str(err.value) and message in str(err.value) and "'e'" in str(err.value)


def test_fan_axes_written_in_a_file_are_used():
    """Keras 3's variance-scaling initializers take ``input_axes``/``output_axes``; a Conv2D
    kernel (3, 3, 4, 8) with fans over axes 2 and 3 has glorot's limit sqrt(6 / 12), not the
    receptive-field fans' sqrt(6 / 108)."""
    init = {"type": "glorot_uniform", "input_axes": [2], "output_axes": [3]}
    spec = {"format": "nnspec/1", "inputs": {"x": {"shape": [8, 8, 4]}},
            "layers": {"c": {"type": "Conv2D", "filters": 8, "kernel_size": 3, "kernel_initializer": init}},
            "edges": ["x -> c"], "outputs": ["c"]}  # fmt: skip
    k = nnspec.Model.from_config(spec).get_layer("c").get_weights()[0]
    assert np.sqrt(6 / 108) < np.abs(k).max() <= np.sqrt(6 / 12)
