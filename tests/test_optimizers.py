"""Optimizers, schedules, regularizers and constraints against Keras (PyTorch backend), and the
state and configuration round trips a resumed training run relies on."""

from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec import optimizers as public
from nnspec.runtime import optimizers as O
from nnspec.runtime import regularizers as R
from nnspec.runtime import schedules as S

SHAPES = [(3, 4), (4,), (2, 2, 3), (1,)]
NAMES = ["dense/kernel0", "dense/bias1", "conv/kernel2", "out/bias3"]


def _problem(seed: int, steps: int):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [[(rng.normal(size=s) * 3).astype(np.float32) for s in SHAPES] for _ in range(steps)]
    grads[1][3][...] = 0.0  # a zero gradient: clipnorm's 0/0 guard
    return values, grads


def _flat(arrays):
    return np.concatenate([a.ravel() for a in arrays])


def _segments():
    sizes = [int(np.prod(s)) for s in SHAPES]
    return np.stack([np.cumsum([0, *sizes[:-1]]), sizes], axis=1)


def _keras_run(cls, kwargs, values, grads, exclude=None):
    import keras

    kvars = [keras.Variable(v.copy(), name=n.split("/")[-1]) for v, n in zip(values, NAMES)]
    opt = getattr(keras.optimizers, cls)(**kwargs)
    if exclude:
        opt.exclude_from_weight_decay(var_names=exclude)
    for g in grads:
        opt.apply_gradients(zip([keras.ops.convert_to_tensor(x) for x in g], kvars))
    return _flat([np.asarray(v.numpy()) for v in kvars]), opt


def _ours_run(cls, kwargs, values, grads, exclude=None):
    opt = getattr(O, cls)(**kwargs)
    tp = _flat(values)
    opt.build(tp.size, _segments(), NAMES)
    if exclude:
        opt.exclude_from_weight_decay(var_names=exclude)
    for g in grads:
        opt.apply(tp, _flat(g))
    return tp, opt


def _keras_kwargs(kwargs):
    import keras

    out = dict(kwargs)
    lr = out.get("learning_rate")
    if isinstance(lr, S.LearningRateSchedule):
        out["learning_rate"] = getattr(keras.optimizers.schedules, lr.class_name)(**lr.get_config())
    return out


CONFIGS = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "clipnorm": 1.0}),
    ("SGD", {"weight_decay": 0.05, "clipvalue": 0.5}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"rho": 0.8, "momentum": 0.3, "centered": True, "global_clipnorm": 2.0}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5, "clipnorm": 0.7}),
    ("Adam", {"weight_decay": 0.1, "global_clipnorm": 1.5}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.05, "amsgrad": True, "clipvalue": 1.0}),
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.05, "initial_accumulator_value": 0.5}),
    ("Adadelta", {}),
    ("Adadelta", {"learning_rate": 1.0, "rho": 0.9}),
    ("Adamax", {}),
    ("Adamax", {"clipnorm": 0.5}),
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.01, "weight_decay": 0.01}),
    ("SGD", {"learning_rate": S.ExponentialDecay(0.1, 2, 0.5), "momentum": 0.9}),
    ("RMSprop", {"learning_rate": S.ExponentialDecay(0.01, 2, 0.5, staircase=True)}),
    ("Adam", {"learning_rate": S.PiecewiseConstantDecay([1, 3], [0.01, 0.005, 0.001])}),
    ("Adam", {"learning_rate": S.CosineDecay(0.01, 4, alpha=0.1), "weight_decay": 0.1}),
    ("AdamW", {"learning_rate": S.CosineDecay(0.001, 3, warmup_target=0.01, warmup_steps=2)}),
]


def _config_id(c):
    cls, kw = c
    parts = [f"{k}={type(v).__name__ if isinstance(v, S.LearningRateSchedule) else v}" for k, v in kw.items()]
    return "-".join([cls, *parts])


@pytest.mark.keras
@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_optimizer_matches_keras(config):
    cls, kwargs = config
    values, grads = _problem(7, steps=7)
    ref, kopt = _keras_run(cls, _keras_kwargs(kwargs), values, grads)
    ours, opt = _ours_run(cls, kwargs, values, grads)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
    assert opt.iterations == int(kopt.iterations) == 7
    assert np.isclose(opt.learning_rate, float(np.asarray(kopt.learning_rate)), rtol=1e-7)
    # the slot variables too, found by Keras's names (``<variable>_<slot>``)
    kslots = {v.name: np.asarray(v.numpy()) for v in kopt.variables}
    for i, slot in enumerate(opt.slot_names()):
        theirs = _flat([kslots[f"{n.split('/')[-1]}_{slot}"] for n in NAMES])
        np.testing.assert_allclose(opt.slots[i], theirs, rtol=1e-5, atol=1e-7, err_msg=slot)


@pytest.mark.keras
def test_weight_decay_exclusion_matches_keras():
    values, grads = _problem(3, steps=4)
    ref, _ = _keras_run("AdamW", {"weight_decay": 0.2}, values, grads, exclude=["bias"])
    ours, opt = _ours_run("AdamW", {"weight_decay": 0.2}, values, grads, exclude=["bias"])
    assert list(opt.segments[:, 2]) == [1, 0, 1, 0]
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.keras
def test_keras_config_round_trip():
    import keras

    for cls, kwargs in CONFIGS:
        ours = getattr(O, cls)(**kwargs)
        theirs = getattr(keras.optimizers, cls)(**_keras_kwargs(kwargs), name=ours.name)
        a, b = ours.get_config(), theirs.get_config()
        if isinstance(a["learning_rate"], dict):
            a["learning_rate"] = {k: a["learning_rate"][k] for k in ("class_name", "config")}
            b["learning_rate"] = {k: b["learning_rate"][k] for k in ("class_name", "config")}
        assert a == b, cls
        # Keras's serialized form is read back
        again = O.get_optimizer(keras.optimizers.serialize(theirs))
        assert type(again) is type(ours) and again.get_config() == ours.get_config()


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_resume_from_state_is_exact(config):
    cls, kwargs = config
    values, grads = _problem(11, steps=6)
    full, _ = _ours_run(cls, kwargs, values, grads)
    part, opt = _ours_run(cls, kwargs, values, grads[:3])
    state = opt.get_state()
    fresh = O.get_optimizer({"class_name": state["class_name"], "config": state["config"]})
    fresh.set_state(state)
    fresh.set_segments(part.size, _segments(), NAMES)
    for g in grads[3:]:
        fresh.apply(part, _flat(g))
    np.testing.assert_array_equal(part, full)
    assert fresh.iterations == 6


def test_construction_forms_and_errors():
    assert isinstance(O.get_optimizer("rmsprop"), O.RMSprop)
    assert isinstance(O.get_optimizer("RMSprop"), O.RMSprop)
    a = O.get_optimizer({"type": "adam", "learning_rate": 1e-2, "amsgrad": True})
    assert isinstance(a, O.Adam) and a.amsgrad and np.isclose(a.learning_rate, 1e-2)
    assert O.get_optimizer(a) is a
    assert public.get("sgd").learning_rate == pytest.approx(0.01)
    assert isinstance(public.Adam(), public.Optimizer)
    lr = {"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 10,
                                                       "decay_rate": 0.5}}  # fmt: skip
    assert O.get_optimizer({"type": "sgd", "learning_rate": lr}).learning_rate == pytest.approx(0.1)
    defaults = {"sgd": 0.01, "rmsprop": 0.001, "adam": 0.001, "adamw": 0.001, "adagrad": 0.001,
                "adadelta": 0.001, "adamax": 0.001, "nadam": 0.001}  # fmt: skip
    for name, rate in defaults.items():
        assert O.get_optimizer(name).learning_rate == pytest.approx(rate)
    assert O.AdamW().weight_decay == 0.004 and O.Adagrad().initial_accumulator_value == 0.1
    with pytest.raises(ValueError, match="did you mean 'rmsprop'"):
        O.get_optimizer("rmsprob")
    with pytest.raises(ValueError, match="only one of"):
        O.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        O.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="momentum"):
        O.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="not recognized"):
        O.get_optimizer({"type": "adam", "beta1": 0.9})
    with pytest.raises(NotImplementedError):
        O.Adam(use_ema=True)


def test_learning_rate_and_hyperparameter_changes():
    opt = O.SGD(learning_rate=0.5)
    tp = np.ones(3, np.float32)
    opt.apply(tp, np.ones(3, np.float32))
    np.testing.assert_allclose(tp, 0.5)
    opt.learning_rate = 0.25
    opt.apply(tp, np.ones(3, np.float32))
    np.testing.assert_allclose(tp, 0.25)
    opt.clipvalue = 0.1  # attribute changes are picked up by the next apply
    opt.apply(tp, np.ones(3, np.float32))
    np.testing.assert_allclose(tp, 0.225, rtol=1e-6)
    opt.momentum = 0.9  # would need a momentum slot the optimizer was not built with
    with pytest.raises(ValueError, match="before the first step"):
        opt.apply(tp, np.ones(3, np.float32))
    sched = O.Adam(learning_rate=S.ExponentialDecay(0.1, 1, 0.5))
    with pytest.raises(TypeError, match="schedule"):
        sched.learning_rate = 0.1
    sched.apply(np.zeros(2, np.float32), np.ones(2, np.float32))
    assert sched.learning_rate == pytest.approx(0.05)  # evaluated at iterations = 1


def test_segments_limit_updates_and_apply_gradients_list_form():
    opt = O.SGD(learning_rate=1.0)
    tp = np.zeros(6, np.float32)
    opt.apply(tp, np.ones(6, np.float32), segments=[(0, 2), (4, 2)])
    np.testing.assert_array_equal(tp, [-1, -1, 0, 0, -1, -1])  # elements outside every segment stay
    a, b = np.ones((2, 2), np.float32), np.ones(3, np.float32)
    lst = O.Adam(learning_rate=0.1)
    lst.apply_gradients([(np.ones((2, 2), np.float32), a), (np.ones(3, np.float32), b)])
    assert lst.iterations == 1 and np.all(a < 1) and np.all(b < 1)


def test_kernel_is_one_call_with_explicit_arguments():
    opt = O.Nadam()
    tp = np.ones(5, np.float32)
    opt.build(tp)
    args = opt.kernel_args(tp, np.ones(5, np.float32))
    assert len(args) == 7 and args[2].shape == (2, 5)
    type(opt).kernel(*args)
    assert opt.iterations == 1 and opt.scalars[2] != 1.0  # u_product moved


def test_schedule_references_match_kernel():
    for sched in (S.ExponentialDecay(0.1, 3, 0.7), S.ExponentialDecay(0.1, 3, 0.7, staircase=True),
                  S.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1]), S.CosineDecay(0.2, 5, alpha=0.1),
                  S.CosineDecay(0.0, 5, warmup_target=0.3, warmup_steps=3)):  # fmt: skip
        for step in range(12):
            assert sched(step) == pytest.approx(sched.reference(step), rel=1e-6), (sched, step)
        assert type(S.get_schedule({"class_name": sched.class_name, "config": sched.get_config()})) is type(
            sched
        )


@pytest.mark.keras
def test_schedules_match_keras():
    import keras

    for sched in (S.ExponentialDecay(0.1, 3, 0.7), S.ExponentialDecay(0.1, 3, 0.7, staircase=True),
                  S.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1]), S.CosineDecay(0.2, 5, alpha=0.1),
                  S.CosineDecay(0.0, 5, warmup_target=0.3, warmup_steps=3)):  # fmt: skip
        theirs = getattr(keras.optimizers.schedules, sched.class_name)(**sched.get_config())
        for step in range(12):
            assert sched(step) == pytest.approx(float(np.asarray(theirs(step))), rel=1e-6)


# ------------------------------------------------------------------------------ regularizers


@pytest.mark.keras
@pytest.mark.parametrize(
    "ident,keras_args",
    [("l1", ("L1", {})), ("l2", ("L2", {})), ({"type": "l1", "l1": 0.3}, ("L1", {"l1": 0.3})),
     ({"type": "l1_l2", "l1": 0.1, "l2": 0.2}, ("L1L2", {"l1": 0.1, "l2": 0.2})),
     ({"class_name": "L2", "config": {"l2": 0.05}}, ("L2", {"l2": 0.05}))],
)  # fmt: skip
def test_weight_regularizers_match_keras(ident, keras_args):
    import keras
    import torch

    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    x[0, 0] = 0.0  # abs'(0) = 0
    t = torch.tensor(x, requires_grad=True)
    value = getattr(keras.regularizers, keras_args[0])(**keras_args[1])(t)
    value.backward()
    spec = R.get_regularizer(ident)
    g = np.full(x.size, 0.5, np.float32)  # the kernel adds into the gradient
    penalty = spec.kernel(x.ravel(), g, spec.l1, spec.l2, 1.0)
    assert penalty == pytest.approx(float(value.detach()), rel=1e-6)
    np.testing.assert_allclose(g - 0.5, t.grad.numpy().ravel(), rtol=1e-5, atol=1e-7)
    assert spec.penalty(x) == pytest.approx(penalty)


@pytest.mark.keras
def test_activity_regularization_is_divided_by_batch_size():
    import keras
    import torch

    x = np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32)
    layer = keras.layers.ActivityRegularization(l1=0.01, l2=0.02)
    layer(torch.tensor(x))
    expected = float(sum(float(v.detach()) for v in layer.losses))
    spec = R.get_regularizer({"type": "l1_l2", "l1": 0.01, "l2": 0.02})
    g = np.zeros(x.size, np.float32)
    penalty = spec.kernel(x.ravel(), g, spec.l1, spec.l2, R.activity_scale(x.shape[0]))
    assert penalty == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(g, spec.gradient(x).ravel() / 8, rtol=1e-6)


ACTIVITY_MODEL = """
format: nnspec/1
name: activity
models:
  inner:
    inputs:
      z: {shape: [4]}
    layers:
      dz: {type: Dense, units: 4, activity_regularizer: {type: l2, l2: 0.05}}
inputs:
  x: {shape: [4]}
layers:
  unit: {type: UnitNormalization}
  reg: {type: ActivityRegularization, l1: 0.03, l2: 0.02}
  sub: {type: Model, model: inner}
  d: {type: Dense, units: 3, activity_regularizer: {type: l1, l1: 0.01}}
edges:
  - x -> unit -> reg -> sub -> d
outputs: [d]
"""


@pytest.mark.keras
def test_activity_penalties_count_in_the_loss_of_training_and_evaluation():
    """Keras adds every activity penalty to the loss it reports, in ``train_on_batch`` and in
    ``evaluate``: also one whose layer has no trainable weight before it (here the
    ActivityRegularization right after a UnitNormalization of the input, whose gradient nnspec
    never needs), and one inside a sub-model. (Found by comparing random imported Keras models.)"""
    import keras
    from keras_from_spec import keras_model_from_spec

    m = nnspec.load(ACTIVITY_MODEL, seed=2)
    km = keras_model_from_spec(ACTIVITY_MODEL)
    km.set_weights(m.get_weights())
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.normal(size=(6, 3)).astype(np.float32)
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="mse")
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    assert m.evaluate(x, y) == pytest.approx(float(km.evaluate(x, y, verbose=0)), rel=1e-5)
    plain = m.evaluate(x, y) - np.mean((m.predict(x) - y) ** 2)
    assert plain > 0.01  # the penalties are a visible part of it
    assert float(m.train_on_batch(x, y)) == pytest.approx(float(km.train_on_batch(x, y)), rel=1e-5)
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


WRAPPED_ACTIVITY_MODEL = """
format: nnspec/1
name: wrapped_activity
models:
  step:
    inputs:
      z: {shape: [4]}
    layers:
      dz: {type: Dense, units: 3, activity_regularizer: {type: l1_l2, l1: 0.3, l2: 0.2}}
inputs:
  tokens: {shape: [5], dtype: int32}
layers:
  embed: {type: Embedding, input_dim: 6, output_dim: 4, mask_zero: true, activity_regularizer: {type: l2, l2: 0.1}}
  per_step: {type: TimeDistributed, layer: {type: Model, model: step}}
  ignored: {type: TimeDistributed, layer: {type: Dense, units: 4, activity_regularizer: {type: l1, l1: 0.5}}}
  bi:
    type: Bidirectional
    merge_mode: MERGE
    layer: {type: GRU, units: 3, return_sequences: true, return_state: true,
            activity_regularizer: {type: l1_l2, l1: 0.3, l2: 0.2}}
  flat: {type: Flatten}
edges:
  - tokens -> embed -> per_step -> ignored -> bi
  - bi:0 -> flat
outputs: [flat, "bi:1", "bi:2"]
"""


@pytest.mark.keras
@pytest.mark.parametrize("merge", ["concat", "null"])
def test_activity_penalties_of_wrapped_layers_follow_keras(merge):
    """Keras's TimeDistributed runs its layer's ``call`` per time step, so a wrapped layer's
    activity regularizer is never applied, while the layers of a wrapped sub-model are called
    and add theirs. Bidirectional calls each direction's layer, whose penalty covers its output
    and its states (masked steps are zeros). An Embedding's penalty covers masked steps too.
    (Found by comparing random imported Keras models: nnspec applied the first and dropped the
    second.)"""
    import keras
    from keras_from_spec import keras_model_from_spec

    text = WRAPPED_ACTIVITY_MODEL.replace("MERGE", merge)
    m = nnspec.load(text, seed=2)
    km = keras_model_from_spec(text)
    km.set_weights(m.get_weights())
    rng = np.random.default_rng(6)
    x = np.array([[1, 2, 3, 0, 0], [0, 4, 5, 1, 2], [3, 3, 1, 2, 5]], np.int32)
    ys = [rng.normal(size=(3, *o.shape[1:])).astype(np.float32) for o in km.outputs]
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss=["mse"] * len(ys))
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=["mse"] * len(ys))
    assert m.evaluate(x, ys)[0] == pytest.approx(float(km.evaluate(x, ys, verbose=0)[0]), rel=1e-5)
    assert float(m.train_on_batch(x, ys)[0]) == pytest.approx(float(km.train_on_batch(x, ys)[0]), rel=1e-5)
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bidirectional_activity_penalty_that_mixes_directions_is_refused():
    text = WRAPPED_ACTIVITY_MODEL.replace("MERGE", "sum")
    m = nnspec.load(text, seed=2)
    m.compile(optimizer="sgd", loss="mse")
    x = np.ones((2, 5), np.int32)
    ys = [np.zeros((2, *o.shape[1:]), np.float32) for o in m.outputs]
    with pytest.raises(nnspec.NnspecError, match="layer 'bi'.*merge_mode concat or null.*'sum'"):
        m.train_on_batch(x, ys)


def test_a_list_of_one_loss_is_the_loss_of_a_single_output():
    """Keras takes ``loss=["mse"]`` and ``loss_weights=[2.0]`` for a model with one output."""
    m = nnspec.Sequential([nnspec.Input((4,)), nnspec.layers.Dense(3)])
    m.compile(optimizer="sgd", loss=["mse"], loss_weights=[2.0])
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    y = np.zeros((2, 3), np.float32)
    assert m.evaluate(x, y) == pytest.approx(2.0 * float(np.mean(m.predict(x) ** 2)), rel=1e-6)


def test_regularizer_names():
    assert (R.get_regularizer("l1").l1, R.get_regularizer("l1").l2) == (0.01, 0.0)
    assert (R.get_regularizer("l1_l2").l1, R.get_regularizer("l1_l2").l2) == (0.01, 0.01)
    assert (R.get_regularizer({"type": "l1_l2", "l1": 0.5}).l2) == 0.0  # L1L2's own default is 0
    assert R.get_regularizer(None) is None
    with pytest.raises(ValueError, match="did you mean 'l1_l2'"):
        R.get_regularizer("l1_l3")
    with pytest.raises(ValueError, match="known: l1, l2, l1_l2"):
        R.get_regularizer("l3")
    with pytest.raises(ValueError, match="non-negative"):
        R.get_regularizer({"type": "l2", "l2": -1})


# ------------------------------------------------------------------------------ constraints

CONSTRAINTS = [
    ("max_norm", ("MaxNorm", {})),
    ({"type": "max_norm", "max_value": 1.5, "axis": [0, 1, 2]}, ("MaxNorm", {"max_value": 1.5, "axis": [0, 1, 2]})),
    ("unit_norm", ("UnitNorm", {})),
    ({"type": "unit_norm", "axis": -1}, ("UnitNorm", {"axis": -1})),
    ("non_neg", ("NonNeg", {})),
    ("min_max_norm", ("MinMaxNorm", {})),
    ({"type": "min_max_norm", "min_value": 0.5, "max_value": 1.0, "rate": 0.7, "axis": 3},
     ("MinMaxNorm", {"min_value": 0.5, "max_value": 1.0, "rate": 0.7, "axis": 3})),
]  # fmt: skip


@pytest.mark.keras
@pytest.mark.parametrize("ident,keras_args", CONSTRAINTS, ids=lambda c: str(c)[:40])
def test_constraints_match_keras(ident, keras_args):
    import keras
    import torch

    w = (np.random.default_rng(2).normal(size=(3, 3, 4, 5)) * 0.7).astype(np.float32)
    expected = np.asarray(getattr(keras.constraints, keras_args[0])(**keras_args[1])(torch.tensor(w)))
    got = R.apply_constraint(ident, w.copy())
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(R.get_constraint(ident).reference(w), expected, rtol=1e-6, atol=1e-7)


def test_constraint_views_and_errors():
    spec = R.get_constraint("max_norm")
    assert spec.view_shape((32, 10)) == (1, 32, 10)  # Dense kernel: one norm per unit
    assert R.get_constraint({"type": "max_norm", "axis": [0, 1, 2]}).view_shape((3, 3, 4, 8)) == (1, 36, 8)
    assert R.get_constraint({"type": "unit_norm", "axis": None}).view_shape((2, 3)) == (1, 6, 1)
    with pytest.raises(ValueError, match="adjacent"):
        R.get_constraint({"type": "max_norm", "axis": [0, 2]}).view_shape((2, 3, 4))
    with pytest.raises(ValueError, match="did you mean 'max_norm'"):
        R.get_constraint("maxnorm")
