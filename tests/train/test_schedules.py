"""Learning-rate schedules against their formulas, and the optimizers that follow them."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from unet_jax.configs import tiny
from unet_jax.train.optimizer import create_learning_rate_schedule, create_optimizer


def _config(**overrides):
    config = tiny.get_config()
    for key, value in overrides.items():
        config[key] = value
    return config


def _values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_constant_is_the_learning_rate_at_every_step():
    config = _config(schedule="constant", warmup_steps=0, learning_rate=3e-3)
    schedule = create_learning_rate_schedule(config, total_steps=100)
    np.testing.assert_allclose(_values(schedule, [0, 1, 50, 99, 100, 1000]), 3e-3, rtol=1e-6)


def test_constant_with_warmup_rises_linearly_then_stays():
    config = _config(schedule="constant", warmup_steps=10, learning_rate=2e-3)
    schedule = create_learning_rate_schedule(config, total_steps=100)
    steps = [0, 1, 5, 9, 10, 11, 50, 100]
    want = [2e-3 * min(s, 10) / 10 for s in steps]
    np.testing.assert_allclose(_values(schedule, steps), want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("warmup", [0, 10])
def test_warmup_cosine_follows_the_formula(warmup):
    # Linear warmup 0 -> lr over `warmup` steps, then a half cosine from lr to 0 that ends
    # exactly at the last step: lr/2 * (1 + cos(pi * (s - W) / (T - W))).
    lr, total = 1e-3, 110

    def formula(s):
        if s < warmup:
            return lr * s / warmup
        t = min(s - warmup, total - warmup) / (total - warmup)
        return 0.5 * lr * (1 + math.cos(math.pi * t))

    config = _config(schedule="warmup_cosine", warmup_steps=warmup, learning_rate=lr)
    schedule = create_learning_rate_schedule(config, total_steps=total)
    steps = [0, 1, 5, 9, 10, 11, 35, 60, 85, 109, 110, 200]
    want = [formula(s) for s in steps]
    np.testing.assert_allclose(_values(schedule, steps), want, rtol=1e-5, atol=1e-10)
    # Landmarks, written out: the peak after warmup, half of it mid-decay, 0 at the end.
    assert float(schedule(warmup)) == pytest.approx(lr, rel=1e-6)
    assert float(schedule(warmup + (total - warmup) // 2)) == pytest.approx(lr / 2, rel=1e-5)
    assert float(schedule(total)) == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_longer_warmup_than_run_is_still_defined():
    config = _config(schedule="warmup_cosine", warmup_steps=10, learning_rate=1e-3)
    schedule = create_learning_rate_schedule(config, total_steps=5)
    values = _values(schedule, range(0, 12))
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[:6], [1e-4 * s for s in range(6)], rtol=1e-5, atol=1e-12)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match=r"config.schedule.*'linear'"):
        create_learning_rate_schedule(_config(schedule="linear"), total_steps=10)


@pytest.mark.parametrize("schedule", ["constant", "warmup_cosine"])
def test_sgd_steps_are_scaled_by_the_schedule(schedule):
    # SGD with momentum 0.9: update_k = -lr(k) * m_k with m_k = g + 0.9 * m_{k-1}.
    config = _config(
        optimizer="sgd", schedule=schedule, warmup_steps=4, learning_rate=0.5, num_train_steps=12
    )
    lr = create_learning_rate_schedule(config, total_steps=12)
    tx = create_optimizer(config, total_steps=12)
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    opt_state = tx.init(params)
    momentum = np.zeros(3)
    for k in range(12):
        updates, opt_state = tx.update(grads, opt_state, params)
        momentum = np.asarray(grads["w"]) + 0.9 * momentum
        np.testing.assert_allclose(
            updates["w"], -float(lr(k)) * momentum, rtol=1e-5, atol=1e-7, err_msg=f"step {k}"
        )


def test_adam_first_step_is_zero_under_warmup():
    # Adam's first update is -lr(0) * sign(g): zero at the start of a warmup.
    config = _config(optimizer="adam", schedule="warmup_cosine", warmup_steps=4, learning_rate=1.0)
    tx = create_optimizer(config, total_steps=20)
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.array([1.0, -1.0])}
    state = tx.init(params)
    first, state = tx.update(grads, state, params)
    second, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(first["w"], 0.0, atol=1e-12)
    np.testing.assert_allclose(second["w"], [-0.25, 0.25], rtol=1e-4)
