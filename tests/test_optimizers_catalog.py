"""The rest of Keras 3's optimizer and schedule catalog against Keras (PyTorch backend): Lion, Ftrl,
Lamb and Adafactor; PolynomialDecay, InverseTimeDecay, CosineDecayRestarts, and CosineDecay's
warm-up and ExponentialDecay's staircase. Expected values always come from Keras."""

from __future__ import annotations

import numpy as np
import pytest
from test_optimizers import _config_id, _keras_kwargs  # our schedules as Keras's; test ids

import nnspec
from nnspec.runtime import optimizers as O
from nnspec.runtime import schedules as S

pytestmark = pytest.mark.keras

# a 2-D kernel, a bias, a 4-D conv kernel, a single weight and a one-column kernel (factored, n = 1)
SHAPES = [(3, 4), (4,), (2, 2, 3, 5), (1,), (5, 1)]
NAMES = ["dense/kernel0", "dense/bias1", "conv/kernel2", "out/bias3", "proj/kernel4"]
SEGMENTS = O.variable_segments(SHAPES)


def _problem(seed: int, steps: int):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [[(rng.normal(size=s) * 3).astype(np.float32) for s in SHAPES] for _ in range(steps)]
    grads[1][3][...] = 0.0  # a zero gradient
    return values, grads


def _flat(arrays):
    return np.concatenate([np.asarray(a).ravel() for a in arrays])


def _keras_run(cls, kwargs, values, grads):
    import keras

    kvars = [keras.Variable(v.copy(), name=n.split("/")[-1]) for v, n in zip(values, NAMES)]
    opt = getattr(keras.optimizers, cls)(**_keras_kwargs(kwargs))
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(x) for x in g], kvars)
    return _flat([v.numpy() for v in kvars]), opt


def _ours_run(cls, kwargs, values, grads):
    opt = getattr(O, cls)(**kwargs)
    tp = _flat(values)
    opt.build(tp.size, SEGMENTS, NAMES)
    for g in grads:
        opt.apply(tp, _flat(g))
    return tp, opt


CONFIGS = [
    ("Lion", {}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.95, "weight_decay": 0.1}),
    ("Lion", {"clipnorm": 0.5}),
    ("Lion", {"learning_rate": S.PolynomialDecay(0.01, 4, power=2.0, cycle=True)}),
    ("Ftrl", {}),
    ("Ftrl", {"learning_rate": 0.1, "learning_rate_power": -0.7, "initial_accumulator_value": 0.3,
              "l1_regularization_strength": 0.01, "l2_regularization_strength": 0.02,
              "l2_shrinkage_regularization_strength": 0.03, "beta": 0.5}),
    ("Ftrl", {"weight_decay": 0.05, "clipvalue": 0.5}),
    ("Ftrl", {"learning_rate": S.InverseTimeDecay(0.05, 2, 0.5, staircase=True), "l1_regularization_strength": 0.1}),
    ("Lamb", {}),
    ("Lamb", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5, "weight_decay": 0.01}),
    ("Lamb", {"global_clipnorm": 2.0}),
    ("Lamb", {"learning_rate": S.CosineDecayRestarts(0.01, 3, t_mul=1.5, m_mul=0.8, alpha=0.1)}),
    ("Adafactor", {}),
    ("Adafactor", {"learning_rate": 0.5, "beta_2_decay": -0.5, "epsilon_2": 0.1, "clip_threshold": 0.5,
                   "relative_step": False}),
    ("Adafactor", {"learning_rate": 0.01, "weight_decay": 0.1, "clipnorm": 1.0}),
    ("Adafactor", {"learning_rate": S.CosineDecay(0.001, 4, warmup_target=0.05, warmup_steps=2)}),
]  # fmt: skip


def _keras_slot(kopt, slot: str, name: str, shape) -> np.ndarray:
    """Keras's slot ``slot`` of variable ``name``, in our layout (Adafactor's ``r`` and ``c`` are
    named like the variable itself, r first; they fill the start of the variable's segment)."""
    kslots = {v.name: v for v in kopt.variables}
    size = int(np.prod(shape))
    if slot not in ("r", "c"):
        return np.asarray(kslots[f"{name}_{slot}"].numpy()).ravel()
    r, c = [np.asarray(v.numpy()).ravel() for v in kopt.variables if v.name == name]
    out = np.zeros(size, np.float32)
    if len(shape) >= 2:  # a rank-1 variable's r and c are Keras's scalar placeholders, 0
        part = r if slot == "r" else c
        out[: part.size] = part
    else:
        assert r.item() == 0 and c.item() == 0
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_optimizer_matches_keras(config):
    cls, kwargs = config
    values, grads = _problem(7, steps=7)
    ref, kopt = _keras_run(cls, kwargs, values, grads)
    ours, opt = _ours_run(cls, kwargs, values, grads)
    # Ftrl's new weight comes from a difference of two large terms, so a 1-ulp difference in the
    # clipped gradient (clipnorm's float32 norm) shows as a few 1e-6 relative: rtol 1e-5
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert opt.iterations == int(kopt.iterations) == 7
    assert np.isclose(opt.learning_rate, float(np.asarray(kopt.learning_rate)), rtol=1e-6)
    for i, slot in enumerate(opt.slot_names()):
        theirs = _flat([_keras_slot(kopt, slot, n.split("/")[-1], s) for n, s in zip(NAMES, SHAPES)])
        np.testing.assert_allclose(opt.slots[i], theirs, rtol=1e-5, atol=1e-7, err_msg=slot)
    # the optimizer's variables as Keras counts them (summary's "Optimizer params")
    assert opt.variable_count()[0] == sum(int(np.prod(v.shape)) for v in kopt.variables)


def test_list_form_factors_by_the_arrays_shapes():
    """``apply_gradients([(g, v), ...])`` takes each variable's shape from its array."""
    values, grads = _problem(4, steps=5)
    ref, _ = _keras_run("Adafactor", {"learning_rate": 0.1}, values, grads)
    opt = O.Adafactor(learning_rate=0.1)
    arrays = [v.copy() for v in values]
    for g in grads:
        opt.apply_gradients(zip(g, arrays))
    np.testing.assert_allclose(_flat(arrays), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_get_config_matches_keras(config):
    import keras

    cls, kwargs = config
    ours = getattr(O, cls)(**kwargs)
    theirs = getattr(keras.optimizers, cls)(**_keras_kwargs(kwargs), name=ours.name)
    a, b = ours.get_config(), theirs.get_config()
    if isinstance(a["learning_rate"], dict):  # Keras's serialized schedule adds module/registered_name
        a["learning_rate"] = {k: a["learning_rate"][k] for k in ("class_name", "config")}
        b["learning_rate"] = {k: b["learning_rate"][k] for k in ("class_name", "config")}
    assert a == b
    # the defaults too (Keras numbers its default names: lion, lion_1, ...)
    a, b = getattr(O, cls)().get_config(), getattr(keras.optimizers, cls)().get_config()
    assert a.pop("name") == cls.lower() and b.pop("name").startswith(cls.lower()) and a == b
    again = O.get_optimizer(keras.optimizers.serialize(theirs))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()
    assert type(O.get_optimizer(cls.lower())) is type(ours) and type(O.get_optimizer(cls)) is type(ours)


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_resume_from_state_is_exact(config):
    cls, kwargs = config
    values, grads = _problem(11, steps=6)
    full, _ = _ours_run(cls, kwargs, values, grads)
    part, opt = _ours_run(cls, kwargs, values, grads[:3])
    state = opt.get_state()
    assert sorted(state["slots"]) == sorted(opt.slot_names())
    fresh = O.get_optimizer({"class_name": state["class_name"], "config": state["config"]})
    fresh.set_state(state)
    fresh.set_segments(part.size, SEGMENTS, NAMES)
    for g in grads[3:]:
        fresh.apply(part, _flat(g))
    np.testing.assert_array_equal(part, full)


def test_argument_checks_as_keras():
    with pytest.raises(ValueError, match="beta_1"):
        O.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match="learning_rate_power"):
        O.Ftrl(learning_rate_power=0.5)
    with pytest.raises(ValueError, match="l2_shrinkage_regularization_strength"):
        O.Ftrl(l2_shrinkage_regularization_strength=-1.0)
    with pytest.raises(ValueError, match="not recognized"):
        O.get_optimizer({"type": "lamb", "beta1": 0.9})
    # Adafactor factors by shape: (offset, size) segments alone are refused, not guessed
    with pytest.raises(ValueError, match="Adafactor needs each variable's shape"):
        O.Adafactor().build(int(SEGMENTS[:, 1].sum()), SEGMENTS[:, :3])
    O.Adafactor().build(10)  # one flat, rank-1 variable


# ------------------------------------------------------------------------------ schedules

SCHEDULES = [
    S.PolynomialDecay(0.1, 7),
    S.PolynomialDecay(0.1, 7, end_learning_rate=0.01, power=0.5, cycle=True),
    S.PolynomialDecay(0.3, 5, power=2.0, cycle=True, name="poly"),
    S.InverseTimeDecay(0.1, 3, 0.5),
    S.InverseTimeDecay(0.1, 3, 0.5, staircase=True),
    S.CosineDecayRestarts(0.1, 3),
    S.CosineDecayRestarts(0.1, 3, t_mul=1.0, m_mul=0.5, alpha=0.1),
    # With t_mul 1.5 or 2.5 only the first restart falls on a whole step (3; then 7.5, 14.25...
    # and 10.5, 29.25...): at a later restart on a whole step, float32's log(t_mul ** i) /
    # log(t_mul) lands either side of i by the last bit of a log, which differs between CPUs
    # and libraries (measured: NumPy gives 2.0000002 for log(2.25) / log(1.5), torch 1.9999999).
    S.CosineDecayRestarts(0.2, 3, t_mul=1.5, m_mul=0.8, alpha=0.05),
    S.CosineDecayRestarts(0.2, 3, t_mul=2.5),
    S.ExponentialDecay(0.1, 3, 0.7, staircase=True),
    S.CosineDecay(0.01, 10, alpha=0.1, warmup_target=0.1, warmup_steps=4),
    S.CosineDecay(0.0, 6, warmup_target=0.2, warmup_steps=3, name="warm"),
]


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_schedule_matches_keras(sched):
    import keras

    theirs = getattr(keras.optimizers.schedules, sched.class_name)(**sched.get_config())
    for step in range(300):
        expected = float(np.asarray(theirs(step)))
        assert sched(step) == pytest.approx(expected, rel=1e-6, abs=1e-12), step
        assert sched.reference(step) == pytest.approx(expected, rel=1e-6, abs=1e-12), step
    assert sched.get_config() == theirs.get_config()
    # round trips: our config, Keras's serialized form, a Keras object, and the snake_case name
    assert S.get_schedule({"class_name": sched.class_name, "config": sched.get_config()}).get_config() == (
        sched.get_config()
    )
    assert S.get_schedule(keras.optimizers.schedules.serialize(theirs)).get_config() == sched.get_config()
    assert S.get_schedule(theirs).get_config() == sched.get_config()
    snake = {v: k for k, v in S._SNAKE.items()}[sched.class_name]
    assert type(S.get_schedule({"type": snake, **sched.get_config()})) is type(sched)
    assert type(sched).from_config(sched.get_config()).get_config() == sched.get_config()


def test_schedule_defaults_and_checks_as_keras():
    import keras

    ks = keras.optimizers.schedules
    pairs = [(S.PolynomialDecay(0.1, 5), ks.PolynomialDecay(0.1, 5)),
             (S.InverseTimeDecay(0.1, 5, 0.5), ks.InverseTimeDecay(0.1, 5, 0.5)),
             (S.ExponentialDecay(0.1, 5, 0.5), ks.ExponentialDecay(0.1, 5, 0.5)),
             (S.CosineDecayRestarts(0.1, 5), ks.CosineDecayRestarts(0.1, 5))]  # fmt: skip
    for ours, theirs in pairs:
        assert ours.get_config() == theirs.get_config()
    for bad in (lambda: S.PolynomialDecay(0.1, 0), lambda: S.InverseTimeDecay(0.1, -1, 0.5),
                lambda: S.CosineDecayRestarts(0.1, 0)):  # fmt: skip
        with pytest.raises(ValueError, match="must be > 0"):
            bad()
    # a Keras schedule object is accepted as an optimizer's learning rate
    opt = O.Lion(learning_rate=ks.CosineDecayRestarts(0.1, 5))
    assert isinstance(opt._schedule, S.CosineDecayRestarts) and opt.learning_rate == pytest.approx(0.1)


# ------------------------------------------------------------------------------ end to end

MODEL = """
format: nnspec/1
name: tiny
inputs:
  x: {shape: [5, 5, 2]}
layers:
  conv: {type: Conv2D, filters: 3, kernel_size: 3, activation: relu}
  flat: {type: Flatten}
  d: {type: Dense, units: 2}
outputs: [d]
"""


@pytest.mark.parametrize("cls,kwargs", [("Lion", {"learning_rate": 0.01}),
                                        ("Adafactor", {"learning_rate": 0.1, "weight_decay": 0.01})])  # fmt: skip
def test_training_steps_match_keras(cls, kwargs):
    import keras
    from keras_from_spec import keras_model_from_spec

    m = nnspec.load(MODEL, seed=3)
    km = keras_model_from_spec(MODEL)
    km.set_weights(m.get_weights())
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 5, 5, 2)).astype(np.float32)
    y = rng.normal(size=(4, 2)).astype(np.float32)
    m.compile(optimizer=getattr(O, cls)(**kwargs), loss="mse")
    km.compile(optimizer=getattr(keras.optimizers, cls)(**kwargs), loss="mse")
    for _ in range(2):
        expected = float(km.train_on_batch(x, y))
        got = float(m.train_on_batch(x, y))
        assert got == pytest.approx(expected, rel=1e-5)
    for a, b in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keras_compile_config_reads_back():
    """A Keras model compiled with the new optimizers and schedules: its compile_config becomes a
    training section whose optimizer nnspec builds with Keras's configuration."""
    import keras

    from nnspec.api.keras_config import training_from_compile_config

    for opt in (keras.optimizers.Adafactor(learning_rate=ks_restarts(), clip_threshold=0.5),
                keras.optimizers.Ftrl(l1_regularization_strength=0.01, beta=0.1, clipnorm=1.0),
                keras.optimizers.Lamb(learning_rate=keras.optimizers.schedules.PolynomialDecay(0.01, 10, cycle=True)),
                keras.optimizers.Lion(weight_decay=0.1)):  # fmt: skip
        km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        km.compile(optimizer=opt, loss="mse")
        section = training_from_compile_config(km.get_compile_config())
        ours = O.get_optimizer(section["optimizer"])
        a, b = ours.get_config(), opt.get_config()
        for config in (a, b):
            config.pop("name")
            if isinstance(config["learning_rate"], dict):  # the reader drops the schedule's name too
                config["learning_rate"] = {
                    k: v for k, v in config["learning_rate"]["config"].items() if k != "name"
                }
        assert a == b


def ks_restarts():
    import keras

    return keras.optimizers.schedules.CosineDecayRestarts(0.05, 3, t_mul=1.5)
