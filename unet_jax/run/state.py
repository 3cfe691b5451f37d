"""The train state that checkpoints hold: parameters, optimizer state, BatchNorm statistics."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from flax.training import train_state

from unet_jax.model.resnet import ENCODER_MODULE


class TrainState(train_state.TrainState):
    """Flax TrainState plus BatchNorm statistics and the run's base PRNG key.

    The per-step key is ``fold_in(rng, step)``, so the state needs no key update and a
    resumed run draws exactly the randomness an uninterrupted one would.
    """

    batch_stats: Any = struct.field(default_factory=dict)
    rng: jax.Array = struct.field(default=None)
    # config.encoder_frozen_steps: the encoder's BatchNorm statistics stay that long.
    encoder_frozen_steps: int = struct.field(pytree_node=False, default=0)

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> "TrainState":
        """Flax's update; a frozen encoder's BatchNorm statistics stay (keep_frozen_statistics)."""
        if "batch_stats" in kwargs:
            kwargs["batch_stats"] = keep_frozen_statistics(
                self.step,
                kwargs["batch_stats"],
                self.batch_stats,
                frozen_steps=self.encoder_frozen_steps,
            )
        return super().apply_gradients(grads=grads, **kwargs)


def keep_frozen_statistics(
    step: jax.Array, new: dict[str, Any], old: dict[str, Any], *, frozen_steps: int
) -> dict[str, Any]:
    """The BatchNorm statistics after a training step: the encoder's stay while frozen.

    Args:
      step: the train state's step before the update (0 for the first).
      new: the statistics the forward pass computed.
      old: the statistics before the step.
      frozen_steps: steps during which the encoder's statistics stay.

    Returns:
      ``new`` with the encoder's entries replaced by ``old``'s while ``step < frozen_steps``.
    """
    if not frozen_steps or ENCODER_MODULE not in new:
        return new
    frozen = step < frozen_steps
    kept = jax.tree_util.tree_map(
        lambda n, o: jnp.where(frozen, o, n), new[ENCODER_MODULE], old[ENCODER_MODULE]
    )
    return {**new, ENCODER_MODULE: kept}
