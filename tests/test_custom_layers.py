"""Custom layers (``custom_layers`` in a model file), case by case: the expression kernels
against the NumPy reference, their gradients against float64 finite differences and Keras
autograd (a Keras subclassed layer running the same ``call`` text over ``keras.ops``). Whole
models, Python subclasses and errors: test_custom_layer_models.py."""

from __future__ import annotations

import numpy as np
import pytest

from grad_harness import Case, GradSuite, check_fd, check_keras, kinks, ties

C = "CustomLayer"


def custom(class_name, call, weights=None, arguments=None, given=None) -> dict:
    """A Case's attributes: the declaration and the node's own arguments."""
    d = {"call": call}
    if arguments:
        d["arguments"] = arguments
    if weights:
        d["weights"] = weights
    return {"class_name": class_name, "definition": d, "arguments": given or {}}


DENSE_W = {"w": {"shape": "(input_shape[-1], self.units)", "initializer": "random_normal"},
           "b": {"shape": ["units"], "initializer": "random_normal"}}  # fmt: skip

# fmt: off
CASES = [
    Case("custom-dense", C, custom("CustomDense", "ops.matmul(inputs, self.w) + self.b", DENSE_W, {"units": 32},
                                   {"units": 5}), ((4,),)),
    Case("custom-dense-sequence", C, custom("SeqDense", "return ops.tanh(ops.matmul(inputs, w) + b)", DENSE_W,
                                            {"units": 3}), ((5, 4),)),
    Case("custom-elementwise", C, custom(
        "Elementwise", "ops.exp(-ops.square(inputs)) * scale + ops.log(ops.abs(inputs) + 1)"
        " - ops.sqrt(ops.square(inputs) + 2.0) * ops.cos(inputs)", arguments={"scale": 0.5}), ((3, 4),)),
    Case("custom-activations", C, custom(
        "Acts", "relu(inputs) + relu6(inputs * 3) + elu(inputs) + selu(inputs) + silu(inputs) + softsign(inputs)"
        " + leaky_relu(inputs) + hard_sigmoid(inputs) + log_sigmoid(inputs) + celu(inputs) + hard_silu(inputs)"),
        ((6,),), data=kinks, fd=False),
    Case("custom-activations-fd", C, custom(
        "ActsFd", "ops.relu(inputs) + ops.elu(inputs) + ops.silu(inputs) + ops.log_sigmoid(inputs) + ops.tanh(inputs)"),
        ((6,),)),
    Case("custom-clip-max-min", C, custom(
        "ClipMax", "ops.clip(inputs[0], -0.5, 0.5) + ops.maximum(inputs[0], inputs[1]) - ops.minimum(inputs[1], 0.2)"),
        ((4,), (4,)), data=ties, fd=False),
    Case("custom-two-inputs-weighted", C, custom(
        "Gate", "inputs[0] * ops.sigmoid(inputs[1] @ gate) + inputs[1] / (1.5 + ops.abs(inputs[0]))",
        {"gate": {"shape": [4, 4]}}), ((4,), (4,))),
    Case("custom-power", C, custom(
        "Power", "ops.power(ops.abs(inputs) + 0.5, p) + (ops.abs(inputs) + 1) ** 3 + ops.divide(1.0, inputs * inputs + 1)",
        {"p": {"shape": [3], "initializer": "ones"}}), ((2, 3),)),
    Case("custom-reductions", C, custom(
        "Reduce", "ops.sum(inputs, axis=-1, keepdims=True) * ops.mean(inputs, axis=1, keepdims=True)"
        " + ops.max(inputs, axis=(1, 2), keepdims=True) - ops.min(inputs, axis=-1, keepdims=True) * w",
        {"w": {"shape": [1, 4]}}), ((3, 4),), data=ties),
    Case("custom-reduce-rank", C, custom("Pool", "ops.mean(inputs * w, axis=1)", {"w": {"shape": [5, 1]}}),
         ((5, 3),)),
    Case("custom-reduce-split-axes", C, custom("Split", "ops.sum(inputs, axis=[1, 3]) + ops.max(inputs, axis=[1, 3])"),
         ((2, 3, 2),)),
    Case("custom-softmax", C, custom("Attn", "ops.softmax(inputs @ w, axis=-1) * ops.log_softmax(inputs)",
                                     {"w": {"shape": [4, 4]}}), ((3, 4),)),
    Case("custom-batched-matmul", C, custom("Scores", "ops.matmul(inputs[0], inputs[1]) * scale",
                                            arguments={"scale": 0.25}), ((3, 4), (4, 2))),
    Case("custom-frozen-weight", C, custom("Frozen", "inputs * w + v",
                                           {"w": {"shape": [3], "trainable": False}, "v": {"shape": [3]}}), ((3,),)),
]
# fmt: on

# One case per model: the generated array code of an expression and its gradient is long, and
# Numba's compile time grows faster than a function's length (three cases in one train step
# took 80 s, the same three apart 52 s).
SUITE = GradSuite(CASES, group_size=1)


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_training_forward_matches_the_reference(case_id):
    from grad_harness import reference

    case = SUITE.by_id[case_id]
    r = SUITE.result(case_id)
    ref = reference(case, [x.astype(np.float64) for x in r.inputs], [w.astype(np.float64) for w in r.weights],
                    r.masks)  # fmt: skip
    np.testing.assert_allclose(r.y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.fd])
def test_gradients_against_finite_differences(case_id):
    check_fd(SUITE.by_id[case_id], SUITE.result(case_id))


@pytest.mark.keras
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_gradients_against_keras_autograd(case_id):
    check_keras(SUITE.by_id[case_id], SUITE.result(case_id))
