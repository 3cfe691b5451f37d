"""Training steps and drivers: 4 devices equal 1 device; a tiny model overfits; NaN guard."""

import functools

import jax
import numpy as np
import pytest

from unet_jax.configs import tiny
from unet_jax.model.factory import create_model
from unet_jax.train import parallel, steps
from unet_jax.train.init_state import create_train_state
from unet_jax.train.loop import make_loss_fn

GLOBAL_BATCH = 8


def _config(**overrides):
    config = tiny.get_config()
    config.model.dropout_rate = 0.0
    config.learning_rate = 1e-2
    config.schedule = "constant"
    config.warmup_steps = 0
    for key, value in overrides.items():
        config[key] = value
    return config


def _batches(config, n, seed=0):
    rng = np.random.default_rng(seed)
    h, w = config.image_size
    out = []
    for _ in range(n):
        labels = rng.integers(0, config.num_classes, (GLOBAL_BATCH, h, w)).astype(np.uint8)
        labels[:, :3, :3] = 255  # some ignored pixels
        images = rng.integers(0, 256, (GLOBAL_BATCH, h, w, 3)).astype(np.uint8)
        out.append({"image": images, "label": labels})
    return out


def _layout(batch, layout, num_devices):
    if layout == "mesh":
        return batch
    return {k: v.reshape((num_devices, -1) + v.shape[1:]) for k, v in batch.items()}


def _train(config, driver_name, devices, batches):
    state = create_train_state(config, rng=jax.random.key(0), total_steps=100)
    model = create_model(config, bn_axis_name=parallel.AXIS)
    driver = parallel.make_driver(
        driver_name,
        model_apply=model.apply,
        loss_fn=make_loss_fn(config),
        num_classes=config.num_classes,
        devices=devices,
    )
    device_state = driver.put_state(state)
    losses = []
    for batch in batches:
        device_batch = driver.put_batch(_layout(batch, driver.layout, len(devices)))
        device_state, m = driver.train_step(device_state, device_batch)
        losses.append(float(driver.get_metrics(m)["loss"]))
    return driver.get_state(device_state), losses


@functools.cache
def _single_device_reference(optimizer):
    config = _config(optimizer=optimizer)
    return _train(config, "pmap", jax.devices()[:1], _batches(config, 3))


def test_four_devices_track_one_device_with_adam():
    # Adam divides by sqrt(v): parameters with analytically zero gradient (the up-conv
    # biases, which BatchNorm cancels) turn float noise into full steps, so with Adam only
    # the losses are compared tightly; parameters are compared under SGD below.
    config = _config(optimizer="adam")
    _, reference_losses = _single_device_reference("adam")
    _, losses = _train(config, "pmap", jax.devices(), _batches(config, 3))
    assert losses[0] == pytest.approx(reference_losses[0], rel=1e-6)
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-4)


@pytest.mark.parametrize("driver_name", ["pmap", "mesh"])
def test_four_devices_equal_one_device(driver_name):
    assert jax.device_count() == 4, "conftest should provide 4 fake CPU devices"
    config = _config(optimizer="sgd")
    reference, reference_losses = _single_device_reference("sgd")
    state, losses = _train(config, driver_name, jax.devices(), _batches(config, 3))
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)
    assert int(state.step) == 3
    for a, b in zip(
        jax.tree_util.tree_leaves(state.params),
        jax.tree_util.tree_leaves(reference.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    for a, b in zip(
        jax.tree_util.tree_leaves(state.batch_stats),
        jax.tree_util.tree_leaves(reference.batch_stats),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_parameters_actually_change():
    # Guards the equivalence test: equal parameters must not mean "nothing happened".
    config = _config(optimizer="sgd")
    reference, _ = _single_device_reference("sgd")
    initial = create_train_state(config, rng=jax.random.key(0), total_steps=100)
    moved = [
        np.abs(np.asarray(a) - np.asarray(b)).max()
        for a, b in zip(
            jax.tree_util.tree_leaves(reference.params),
            jax.tree_util.tree_leaves(initial.params),
            strict=True,
        )
    ]
    assert min(moved) > 0


def test_tiny_model_overfits_a_tiny_batch():
    config = _config(loss="dice_ce", learning_rate=3e-2)
    h, w = config.image_size
    # Two classes laid out as a learnable pattern: left half 3, right half 7, a square 10.
    labels = np.full((GLOBAL_BATCH, h, w), 3, np.uint8)
    labels[:, :, w // 2 :] = 7
    labels[:, 8:16, 8:16] = 10
    images = np.zeros((GLOBAL_BATCH, h, w, 3), np.uint8)
    images[labels == 3] = (200, 40, 40)
    images[labels == 7] = (40, 200, 40)
    images[labels == 10] = (40, 40, 200)
    batch = {"image": images, "label": labels}
    _, losses = _train(config, "pmap", jax.devices(), [batch] * 60)
    assert losses[-1] < 0.25 * losses[0], losses


def test_non_finite_step_leaves_state_unchanged():
    config = _config()
    state = create_train_state(config, rng=jax.random.key(0), total_steps=10)
    model = create_model(config, bn_axis_name=parallel.AXIS)
    state = state.replace(apply_fn=model.apply)
    batch = _batches(config, 1)[0]
    nan_loss = lambda logits, labels: steps.jnp.full(logits.shape[:1], np.nan)  # noqa: E731
    step = jax.pmap(
        functools.partial(steps.train_step, loss_fn=nan_loss, axis_name=parallel.AXIS),
        axis_name=parallel.AXIS,
        devices=jax.devices()[:1],
    )
    replicated = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], state)
    new_state, m = step(replicated, _layout(batch, "pmap", 1))
    assert int(m["finite"][0]) == 0
    assert int(new_state.step[0]) == 0
    for a, b in zip(
        jax.tree_util.tree_leaves(new_state.params),
        jax.tree_util.tree_leaves(state.params),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a)[0], b)
