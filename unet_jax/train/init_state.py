"""A new run's train state: initialised variables and the optimizer of its config."""

import jax
import jax.numpy as jnp
import ml_collections

from unet_jax.model.factory import create_model
from unet_jax.run.state import TrainState
from unet_jax.train.optimizer import create_optimizer


def create_train_state(
    config: ml_collections.ConfigDict, *, rng: jax.Array, total_steps: int
) -> TrainState:
    """Initialises parameters, BatchNorm statistics and Adam state on the default device.

    Args:
      config: the run configuration.
      rng: PRNG key; split into an init key and the run's base key.
      total_steps: length of the run, for the learning-rate schedule.

    Returns:
      An unreplicated TrainState whose ``apply_fn`` is the UNet without a BatchNorm device
      axis (the drivers rebind it).
    """
    model = create_model(config)
    init_rng, base_rng = jax.random.split(rng)
    height, width = config.image_size
    shape = (1, height, width, model.in_channels)
    model.check_input_shape(shape)

    @jax.jit
    def init(key):
        return model.init(key, jnp.zeros(shape, jnp.uint8), train=False)

    variables = init(init_rng)
    tx = create_optimizer(config, total_steps=total_steps)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        rng=jax.random.key_data(base_rng),
        encoder_frozen_steps=int(config.encoder_frozen_steps),
    )
