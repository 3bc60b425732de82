"""Losses: every kernel's value and gradient against Keras (PyTorch backend autograd) and against
the NumPy reference, with sample weights, masks, sequences, and the reduction rules."""

from __future__ import annotations

import numpy as np
import pytest

from nnspec.runtime import losses as L

RNG = np.random.default_rng(1234)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _data(name: str, lead: tuple, k: int = 5, **cfg):
    """(y_true, y_pred) in each loss's domain, with values at the clipping bounds where it matters."""
    shape = (*lead, k)
    r = RNG
    onehot = np.eye(k)[r.integers(0, k, lead)]
    if name in ("mean_squared_error", "mean_absolute_error", "log_cosh", "cosine_similarity"):
        yt, yp = r.normal(size=shape), r.normal(size=shape) * 2
    elif name == "huber":
        yt, yp = r.normal(size=shape), r.normal(size=shape) * 2  # both sides of delta
    elif name == "mean_absolute_percentage_error":
        yt, yp = r.uniform(0.5, 2, shape) * r.choice([-1, 1], shape), r.normal(size=shape)
    elif name == "mean_squared_logarithmic_error":
        yt, yp = r.uniform(0, 3, shape), r.uniform(-0.5, 3, shape)  # negatives are clipped to epsilon
    elif name == "poisson":
        yt, yp = r.poisson(2.0, shape), r.uniform(0.1, 3, shape)
    elif name == "kl_divergence":
        yt, yp = _softmax(r.normal(size=shape)), _softmax(r.normal(size=shape) * 2)
        yt.reshape(-1, k)[0, 0] = 0.0  # clipped label
    elif name in ("hinge", "squared_hinge"):
        labels = r.integers(0, 2, shape)
        yt = labels if cfg.get("binary", True) else 2 * labels - 1
        yp = r.normal(size=shape)
    elif name == "categorical_hinge":
        yt, yp = onehot, r.normal(size=shape)
    elif name == "binary_crossentropy":
        yt = r.integers(0, 2, shape).astype(float)
        if cfg.get("from_logits"):
            yp = r.normal(size=shape) * 3
        else:
            yp = r.uniform(0, 1, shape)
            flat = yp.reshape(-1)
            flat[:3] = [0.0, 1.0, 1e-9]  # clipped: the gradient must be zero there
    elif name == "binary_focal_crossentropy":
        yt = r.integers(0, 2, shape).astype(float)
        if cfg.get("from_logits"):
            yp = r.normal(size=shape) * 3
        else:
            yp = r.uniform(0, 1, shape)
            yp.reshape(-1)[:3] = [0.0, 1.0, 1e-9]  # clipped in the crossentropy, not in the focal factor
    elif name == "categorical_generalized_cross_entropy":
        yt = r.integers(0, k, lead)
        yp = _softmax(r.normal(size=shape) * 2)
    elif name in ("categorical_crossentropy", "categorical_focal_crossentropy"):
        yt = onehot
        if cfg.get("from_logits"):
            yp = r.normal(size=shape) * 3
        else:
            yp = r.uniform(0.0, 1.0, shape)  # not normalized: Keras divides by the sum
            yp.reshape(-1, k)[0, :] = [0.0] + [1.0] * (k - 1)
    elif name == "sparse_categorical_crossentropy":
        yt = r.integers(0, k, lead)
        yp = r.normal(size=shape) * 3 if cfg.get("from_logits") else _softmax(r.normal(size=shape) * 3)
    else:
        raise KeyError(name)
    return np.asarray(yt), np.asarray(yp, np.float32)


CASES = [
    ("mean_squared_error", {}),
    ("mean_absolute_error", {}),
    ("mean_absolute_percentage_error", {}),
    ("mean_squared_logarithmic_error", {}),
    ("binary_crossentropy", {}),
    ("binary_crossentropy", {"from_logits": True}),
    ("binary_crossentropy", {"label_smoothing": 0.2}),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    ("categorical_crossentropy", {}),
    ("categorical_crossentropy", {"from_logits": True}),
    ("categorical_crossentropy", {"label_smoothing": 0.1}),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.3}),
    ("sparse_categorical_crossentropy", {}),
    ("sparse_categorical_crossentropy", {"from_logits": True}),
    ("hinge", {}),
    ("hinge", {"binary": False}),
    ("squared_hinge", {}),
    ("squared_hinge", {"binary": False}),
    ("categorical_hinge", {}),
    ("huber", {}),
    ("huber", {"delta": 0.5}),
    ("log_cosh", {}),
    ("kl_divergence", {}),
    ("poisson", {}),
    ("cosine_similarity", {}),
    ("binary_focal_crossentropy", {}),
    ("binary_focal_crossentropy", {"from_logits": True, "gamma": 1.5}),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "alpha": 0.4, "label_smoothing": 0.1}),
    ("binary_focal_crossentropy", {"from_logits": True, "apply_class_balancing": True, "gamma": 0.0}),
    ("categorical_focal_crossentropy", {}),
    ("categorical_focal_crossentropy", {"from_logits": True, "alpha": 0.5}),
    ("categorical_focal_crossentropy", {"label_smoothing": 0.1, "gamma": 3.0}),
    ("categorical_focal_crossentropy", {"from_logits": True, "label_smoothing": 0.2, "gamma": 1.0}),
    ("categorical_generalized_cross_entropy", {}),
    ("categorical_generalized_cross_entropy", {"q": 0.7}),
]
WEIGHTINGS = ["plain", "sample_weight", "mask", "both"]


def _case_id(c):
    name, cfg = c
    return name + "".join(f"-{k}={v}" for k, v in cfg.items())


def _keras_value_and_grad(name, cfg, yt, yp, sw, mask):
    import keras
    import torch
    from keras.src import backend
    from keras.src.losses.losses import LossFunctionWrapper

    kw = {k: v for k, v in cfg.items() if k != "binary"}
    if name.endswith("generalized_cross_entropy"):
        kw.setdefault("q", 0.5)  # the function has no default; its class's is 0.5
    # Keras resolves no string to its generalized crossentropy; the function is its module's
    fn = keras.losses.categorical_generalized_cross_entropy if name.endswith("generalized_cross_entropy") else (
        keras.losses.get(name))  # fmt: skip
    loss = LossFunctionWrapper(fn, **kw)
    p = torch.tensor(yp, requires_grad=True)
    pm = p * 1.0
    if mask is not None:
        backend.set_keras_mask(pm, torch.tensor(mask.astype(bool)))
    sparse = name.startswith("sparse") or name.endswith("generalized_cross_entropy")
    t = torch.tensor(yt.astype(np.int64) if sparse else yt.astype(np.float32))
    v = loss(t, pm, None if sw is None else torch.tensor(sw))
    v.backward()
    return float(v.detach()), p.grad.numpy()


@pytest.mark.keras
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_loss_matches_keras(case, weighting):
    name, cfg = case
    spec = L.get_loss({"type": name, **{k: v for k, v in cfg.items() if k != "binary"}})
    b = 7
    yt, yp = _data(name, (b,), **cfg)
    sw = RNG.uniform(0.1, 2.0, b).astype(np.float32) if weighting in ("sample_weight", "both") else None
    mask = np.array([1, 0, 1, 1, 0, 1, 1], np.float32) if weighting in ("mask", "both") else None
    value, dy = L.compute_loss(spec, yt, yp, sw, mask)
    kv, kg = _keras_value_and_grad(name, cfg, yt, yp, sw, mask)
    np.testing.assert_allclose(value, kv, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dy, kg, rtol=1e-5, atol=1e-7 * max(1.0, np.abs(kg).max()))


@pytest.mark.keras
@pytest.mark.parametrize(
    "name", ["mean_squared_error", "categorical_crossentropy", "sparse_categorical_crossentropy", "huber"]
)
def test_sequence_loss_with_mask_matches_keras(name):
    """(batch, T, k) with a (batch, T) mask: Keras divides by the number of valid steps."""
    b, t = 3, 4
    yt, yp = _data(name, (b, t))
    mask = (RNG.uniform(size=(b, t)) > 0.4).astype(np.float32)
    mask[0, 0] = 1
    sw = RNG.uniform(0.5, 2, (b, t)).astype(np.float32)
    for s in (None, sw):
        value, dy = L.compute_loss(name, yt, yp, s, mask)
        kv, kg = _keras_value_and_grad(name, {}, yt, yp, s, mask)
        np.testing.assert_allclose(value, kv, rtol=1e-5)
        np.testing.assert_allclose(dy, kg, rtol=1e-5, atol=1e-8)
    # by hand: sum(loss * mask) / sum(mask)
    per_step = L.loss_values(name, yt, yp)
    assert np.isclose(
        L.compute_loss(name, yt, yp, None, mask)[0], (per_step * mask).sum() / mask.sum(), rtol=1e-6
    )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_kernel_matches_numpy_reference_and_finite_differences(case):
    name, cfg = case
    spec = L.get_loss({"type": name, **{k: v for k, v in cfg.items() if k != "binary"}})
    yt, yp = _data(name, (6,), k=4, **cfg)
    yt2 = yt.reshape(6) if spec.sparse else yt.reshape(6, 4).astype(np.float32)
    w = RNG.uniform(0.5, 1.5, 6).astype(np.float32)
    w[2] = 0.0
    dy = np.empty_like(yp)
    total = spec.kernel(yt2, yp, w, dy, 0.5, *spec.args)
    ref_loss, ref_grad = spec.reference(yt2, yp)
    np.testing.assert_allclose(total, (w * ref_loss).sum(), rtol=1e-6)
    np.testing.assert_allclose(dy, 0.5 * w[:, None] * ref_grad, rtol=1e-5, atol=1e-6)
    assert np.all(dy[2] == 0)
    # central differences of the reference in float64, away from kinks and clipping bounds
    if name in ("mean_absolute_error", "hinge", "squared_hinge", "categorical_hinge", "huber"):
        return
    ypd = yp.astype(np.float64)
    h = 1e-6
    for r, j in [(0, 1), (3, 2), (5, 0)]:
        if (
            spec.type.endswith("crossentropy")
            and not cfg.get("from_logits")
            and not (1e-3 < ypd[r, j] < 1 - 1e-3)
        ):
            continue
        plus, minus = ypd.copy(), ypd.copy()
        plus[r, j] += h
        minus[r, j] -= h
        fd = (spec.reference(yt2, plus, False)[0][r] - spec.reference(yt2, minus, False)[0][r]) / (2 * h)
        np.testing.assert_allclose(spec.reference(yt2, ypd, False)[1][r, j], fd, rtol=1e-4, atol=1e-6)


@pytest.mark.keras
@pytest.mark.parametrize(
    "name, yt, yp",
    [
        # tanh outputs saturate to exactly +-1: margins of exactly 0 with +-1 labels
        ("hinge", [[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]], [[1.0, -1.0, 0.5], [-1.0, 2.0, -1.0]]),
        ("hinge", [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], [[1.0, -1.0, 0.5], [-0.25, 1.0, 1.0]]),  # {0, 1} labels
        ("squared_hinge", [[1.0, -1.0, 1.0]], [[1.0, -1.0, 0.5]]),
        ("categorical_hinge", [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], [[0.5, 1.5, 0.2], [0.5, 1.0, 0.7]]),
    ],
)
def test_hinge_losses_at_the_margin_match_keras(name, yt, yp):
    """At a margin of exactly 0, torch.maximum(m, 0) gives half the gradient to each side of the
    tie: Keras's hinge and categorical hinge have half their slope there."""
    yt, yp = np.array(yt, np.float32), np.array(yp, np.float32)
    spec = L.get_loss({"type": name})
    value, dy = L.compute_loss(spec, yt, yp, None, None)
    kv, kg = _keras_value_and_grad(name, {}, yt, yp, None, None)
    np.testing.assert_allclose(value, kv, rtol=1e-6)
    np.testing.assert_allclose(dy, kg, rtol=1e-6, atol=1e-8)
    _, ref_grad = spec.reference(yt, yp)
    np.testing.assert_allclose(dy, ref_grad / yt.shape[0], rtol=1e-6, atol=1e-8)


def test_reductions():
    yt, yp = _data("mean_squared_error", (4,), k=3)
    per = ((yp.astype(np.float64) - yt) ** 2).mean(-1)
    sw = np.array([1.0, 2.0, 0.5, 0.0], np.float32)
    mask = np.array([1, 1, 0, 1], np.float32)
    v = lambda red, s=None, m=None: L.compute_loss({"type": "mse", "reduction": red}, yt, yp, s, m)[0]
    assert np.isclose(v("sum_over_batch_size", sw), (per * sw).sum() / 4)  # weights not in the divisor
    assert np.isclose(v("sum_over_batch_size", sw, mask), (per * sw * mask).sum() / mask.sum())
    assert np.isclose(v("mean", sw), (per * sw).sum() / 4)
    assert np.isclose(v("sum", sw, mask), (per * sw * mask).sum())
    assert np.isclose(v("mean_with_sample_weight", sw), (per * sw).sum() / sw.sum())
    assert np.isclose(v("mean_with_sample_weight", sw, mask), (per * sw * mask).sum() / (sw * mask).sum())
    # nothing valid: Keras's divide_no_nan gives 0, and the gradient is 0
    value, dy = L.compute_loss("mse", yt, yp, None, np.zeros(4, np.float32))
    assert value == 0.0 and not dy.any()


def test_loss_weight_scales_gradient_only():
    yt, yp = _data("mean_squared_error", (5,), k=2)
    v1, g1 = L.compute_loss("mse", yt, yp)
    v2, g2 = L.compute_loss("mse", yt, yp, loss_weight=0.2)
    assert v1 == v2
    np.testing.assert_allclose(g2, 0.2 * g1, rtol=1e-6)


def test_generated_code_contract():
    """What a generated train step does: combine weights, call the kernel, finish."""
    yt, yp = _data("categorical_crossentropy", (8,), k=3, from_logits=True)
    spec = L.get_loss({"type": "categorical_crossentropy", "from_logits": True})
    sw = RNG.uniform(0, 1, 8).astype(np.float32)
    mask = np.ones(8, np.float32)
    mask[3] = 0
    w = np.empty(8, np.float32)
    div = L.combine_weights(sw, mask, w, spec.reduction_code)
    assert div == 7.0
    dy = np.empty_like(yp)
    total = spec.kernel(yt.astype(np.float32), yp, w, dy, 1.0 / div, *spec.args)
    value, ref_dy = L.compute_loss(spec, yt, yp, sw, mask)
    assert np.isclose(L.finish(total, div), value)
    np.testing.assert_allclose(dy, ref_dy, rtol=1e-6)
    assert L.combine_weights(np.zeros(0, np.float32), np.zeros(0, np.float32), w, 0) == 8.0


def test_names_aliases_and_errors():
    assert L.get_loss("mse").type == "mean_squared_error" and L.get_loss("mse").name == "mse"
    assert L.get_loss("MeanAbsoluteError").type == "mean_absolute_error"
    assert L.get_loss("kld").type == L.get_loss("kullback_leibler_divergence").type == "kl_divergence"
    assert L.get_loss("logcosh").type == "log_cosh" and L.get_loss("huber_loss").type == "huber"
    assert L.get_loss({"class_name": "Huber", "config": {"delta": 2.0, "name": "h"}}).args == (2.0,)
    assert L.get_loss({"type": "binary_crossentropy", "from_logits": True}).args == (True, 0.0)
    assert L.get_loss("crossentropy", (8, 1), (8, 1)).type == "binary_crossentropy"
    assert L.get_loss("ce", (8,), (8, 5)).type == "sparse_categorical_crossentropy"
    assert L.get_loss("ce", (8, 1), (8, 5)).type == "sparse_categorical_crossentropy"
    assert L.get_loss("crossentropy", (8, 5), (8, 5)).type == "categorical_crossentropy"
    with pytest.raises(ValueError, match="did you mean 'mean_squared_error'"):
        L.get_loss("mean_squared_eror")
    with pytest.raises(ValueError, match="did you mean 'from_logits'"):
        L.get_loss({"type": "binary_crossentropy", "from_logit": True})
    with pytest.raises(ValueError, match="label_smoothing"):
        L.get_loss({"type": "categorical_crossentropy", "label_smoothing": 2})
    with pytest.raises(ValueError, match="last axis"):
        L.get_loss({"type": "categorical_crossentropy", "axis": 1})
    with pytest.raises(ValueError, match="outside"):
        L.compute_loss(
            "sparse_categorical_crossentropy", np.array([0, 5]), np.full((2, 3), 1 / 3, np.float32)
        )


@pytest.mark.keras
def test_aliases_are_keras_names():
    import keras

    for alias in ("mse", "mae", "mape", "msle", "kld", "bce", "MSE", "KLD"):
        assert keras.losses.get(alias).__name__ == L.get_loss(alias).type


def test_labels_shapes_like_keras_wrapper():
    yp = RNG.uniform(0.1, 0.9, (6, 1)).astype(np.float32)
    yt = RNG.integers(0, 2, 6)
    a = L.compute_loss("binary_crossentropy", yt, yp)[0]  # (n,) labels against (n, 1) predictions
    b = L.compute_loss("binary_crossentropy", yt[:, None], yp)[0]
    assert a == b
    probs = _softmax(RNG.normal(size=(6, 4))).astype(np.float32)
    labels = RNG.integers(0, 4, 6)
    assert L.compute_loss("sparse_categorical_crossentropy", labels, probs)[0] == pytest.approx(
        L.compute_loss("sparse_categorical_crossentropy", labels[:, None], probs)[0]
    )
