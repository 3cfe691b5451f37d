"""Dropout keys of the training step: new per step, own per device, reproducible.

``steps.train_step`` draws its dropout key as ``fold_in(fold_in(base, step), device
position)``. A probe model records, through the drivers, the dropout mask each device drew
(summed into its "batch_stats"), so the tests see every device's mask of every step.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from unet_jax.configs import tiny
from unet_jax.run.state import TrainState
from unet_jax.train import parallel
from unet_jax.train.init_state import create_train_state

MASK_SIZE = 256  # rate 0.5: two independent masks agree with probability 2**-256


class DropoutProbe(nn.Module):
    """Logits that depend on one parameter; records every device's dropout mask."""

    num_devices: int

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        w = self.param("w", nn.initializers.ones, (2,))
        masks = self.variable(
            "batch_stats", "masks", jnp.zeros, (self.num_devices, MASK_SIZE), jnp.float32
        )
        if train and not self.is_initializing():
            kept = nn.Dropout(0.5, deterministic=False)(jnp.ones((MASK_SIZE,), jnp.float32))
            # Row i holds device i's mask; a psum (not all_gather) leaves it replicated,
            # as the mesh driver's replication check requires of the state.
            rows = jax.nn.one_hot(jax.lax.axis_index(parallel.AXIS), self.num_devices)
            masks.value = jax.lax.psum(rows[:, None] * kept[None, :], parallel.AXIS)
        return jnp.zeros(images.shape[:3] + (2,), jnp.float32) + w


def _loss(logits, labels):
    del labels
    return jnp.mean(logits**2, axis=(1, 2, 3))


def _run(driver_name, *, steps, devices=None, seed=0, state=None):
    """Trains the probe ``steps`` steps; returns the masks [steps, devices, MASK] and state."""
    devices = list(devices or jax.devices())
    probe = DropoutProbe(num_devices=len(devices))
    if state is None:
        variables = probe.init(jax.random.key(1), jnp.zeros((1, 16, 16, 3), jnp.uint8), train=False)
        state = TrainState.create(
            apply_fn=probe.apply,
            params=variables["params"],
            batch_stats=variables["batch_stats"],
            tx=optax.sgd(0.1),
            rng=jax.random.key_data(jax.random.key(seed)),
        )
    driver = parallel.make_driver(
        driver_name, model_apply=probe.apply, loss_fn=_loss, num_classes=2, devices=devices
    )
    n = len(devices)
    shape = (n, 1) if driver.layout == "pmap" else (n,)
    batch = {
        "image": np.zeros(shape + (16, 16, 3), np.uint8),
        "label": np.zeros(shape + (16, 16), np.uint8),
    }
    device_state = driver.put_state(state)
    masks = []
    for _ in range(steps):
        device_state, _ = driver.train_step(device_state, driver.put_batch(batch))
        masks.append(np.asarray(driver.get_state(device_state).batch_stats["masks"]))
    final = driver.get_state(device_state)
    masks = np.stack(masks)
    # Real dropout masks: every entry dropped (0) or kept and rescaled (2).
    assert set(np.unique(masks).tolist()) <= {0.0, 2.0}
    return masks, final


def _all_different(masks):
    """True when no two of the masks (leading axis) are equal."""
    flat = [m.tobytes() for m in masks]
    return len(set(flat)) == len(flat)


@pytest.mark.parametrize("driver", ["pmap", "mesh"])
def test_each_step_draws_new_masks(driver):
    masks, state = _run(driver, steps=3)
    assert int(state.step) == 3
    for device in range(masks.shape[1]):
        assert _all_different(masks[:, device]), f"device {device} repeats a mask across steps"


@pytest.mark.parametrize("driver", ["pmap", "mesh"])
def test_each_device_draws_its_own_mask_in_a_step(driver):
    masks, _ = _run(driver, steps=2)
    assert masks.shape[1] == 4
    for step in range(masks.shape[0]):
        assert _all_different(masks[step]), f"devices share a mask at step {step + 1}"


@pytest.mark.parametrize("driver", ["pmap", "mesh"])
def test_same_step_on_same_device_is_reproducible(driver):
    # Two fresh drivers (two traces) from the same state draw the same masks ...
    first, _ = _run(driver, steps=3)
    again, _ = _run(driver, steps=3)
    np.testing.assert_array_equal(first, again)
    # ... and so does a run resumed from its host state after step 1 (the key is a
    # function of the step, not carried from step to step).
    _, after_one = _run(driver, steps=1)
    resumed, _ = _run(driver, steps=2, state=after_one)
    np.testing.assert_array_equal(resumed, first[1:])
    # Another base key draws other masks.
    other_seed, _ = _run(driver, steps=1, seed=1)
    assert not np.array_equal(other_seed[0], first[0])


def test_masks_do_not_depend_on_which_physical_devices_run_the_step():
    # What hosts share: the key depends on the base key, the step and the position on the
    # device axis only, so host 1's devices draw what host 0's would in their positions.
    # (tests/train/test_multihost.py checks 2 processes x 2 devices against 1 x 4 end to end,
    # with dropout.)
    on_first, _ = _run("pmap", steps=2, devices=jax.devices()[:2])
    on_last, _ = _run("pmap", steps=2, devices=jax.devices()[2:])
    np.testing.assert_array_equal(on_first, on_last)


def test_base_key_is_a_function_of_the_seed():
    # Every host builds its state from config.seed: the same base key everywhere.
    config = tiny.get_config()

    def base_key(seed):
        state = create_train_state(config, rng=jax.random.key(seed), total_steps=4)
        return np.asarray(state.rng)

    np.testing.assert_array_equal(base_key(0), base_key(0))
    assert not np.array_equal(base_key(0), base_key(1))
