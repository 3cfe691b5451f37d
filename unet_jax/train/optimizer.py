"""The optimizer of a run: Adam or SGD on a learning-rate schedule, and fine-tuning rules.

Fine-tuning a pretrained encoder: ``config.encoder_lr_multiplier`` scales the ResNet
encoder's learning rate relative to the decoder's (and head's) at every step of the
schedule; ``config.encoder_frozen_steps`` keeps the encoder's parameters, its optimizer
state and (``unet_jax.run.state.TrainState``) its BatchNorm running statistics unchanged
during the first N steps (the batch statistics still normalise its activations in training
mode). Both are functions of counters inside the checkpointed train state (the optimizer's
step count and ``TrainState.step``), so a resumed run does exactly what an uninterrupted
one does. A time budget's learning rate (``unet_jax.train.budget_schedule``) takes the
place of the schedule on the same path, so every rule above holds under a budget too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from unet_jax.model.resnet import ENCODER_MODULE
from unet_jax.train import budget, budget_schedule

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "warmup_cosine")
ENCODER_LABEL = "encoder"
DECODER_LABEL = "decoder"


def encoder_labels(params: Any) -> dict[str, Any]:
    """The optimizer's labels: "encoder" for every leaf of the encoder, else "decoder"."""
    return {
        name: jax.tree_util.tree_map(
            lambda _, n=name: ENCODER_LABEL if n == ENCODER_MODULE else DECODER_LABEL, subtree
        )
        for name, subtree in params.items()
    }


class FrozenState(NamedTuple):
    """``frozen_for``'s state: the steps seen and the wrapped transformation's state."""

    count: jax.Array
    inner: Any


def frozen_for(steps: int, inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner``, except that the first ``steps`` updates are zero and leave its state alone.

    Args:
      steps: number of frozen updates (0: ``inner`` unchanged).
      inner: the transformation to hold back (e.g. Adam's moment scaling).

    Returns:
      The wrapped transformation.
    """

    def init(params):
        return FrozenState(count=jnp.zeros([], jnp.int32), inner=inner.init(params))

    def update(updates, state, params=None):
        new_updates, new_inner = inner.update(updates, state.inner, params)
        frozen = state.count < steps
        new_updates = jax.tree_util.tree_map(
            lambda u: jnp.where(frozen, jnp.zeros_like(u), u), new_updates
        )
        new_inner = jax.tree_util.tree_map(
            lambda new, old: jnp.where(frozen, old, new), new_inner, state.inner
        )
        return new_updates, FrozenState(count=optax.safe_increment(state.count), inner=new_inner)

    return optax.GradientTransformation(init, update)


# multiplier -> the transformation that scales updates by -multiplier x the learning rate.
Scale = Callable[[float], optax.GradientTransformation]


def _direction(optimizer: str) -> optax.GradientTransformation:
    """The optimizer without its learning rate: Adam's scaling or SGD's momentum 0.9."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"config.optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    return optax.scale_by_adam() if optimizer == "adam" else optax.trace(decay=0.9)


def encoder_optimizer(
    *,
    optimizer: str,
    scale: Scale,
    lr_multiplier: float,
    frozen_steps: int,
) -> optax.GradientTransformation:
    """Adam or SGD (as `create_optimizer`) with the encoder's own rules.

    Args:
      optimizer: "adam" or "sgd".
      scale: the run's learning rate (`learning_rate_scale`).
      lr_multiplier: the encoder's learning rate over the decoder's.
      frozen_steps: steps during which the encoder is not updated.

    Returns:
      An ``optax.multi_transform`` over the labels of `encoder_labels`.
    """
    decoder = optax.chain(_direction(optimizer), scale(1.0))
    encoder = optax.chain(
        frozen_for(frozen_steps, _direction(optimizer)),
        # Outside frozen_for: its count advances every step, so the encoder follows the
        # same schedule (warmup, cosine) as the decoder once it thaws.
        scale(lr_multiplier),
    )
    return optax.multi_transform(
        {ENCODER_LABEL: encoder, DECODER_LABEL: decoder}, param_labels=encoder_labels
    )


def create_learning_rate_schedule(
    config: ml_collections.ConfigDict, *, total_steps: int
) -> optax.Schedule:
    """Constant learning rate, or linear warmup then cosine decay to 0.

    Args:
      config: uses ``learning_rate``, ``schedule`` and ``warmup_steps``.
      total_steps: number of training steps of the run.

    Returns:
      An optax schedule.
    """
    if config.schedule == "constant":
        if config.warmup_steps > 0:
            return optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
        return optax.constant_schedule(config.learning_rate)
    if config.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=config.learning_rate,
            warmup_steps=config.warmup_steps,
            decay_steps=max(total_steps, config.warmup_steps + 1),
            end_value=0.0,
        )
    raise ValueError(f"config.schedule must be one of {SCHEDULES}, got {config.schedule!r}")


def learning_rate_scale(config: ml_collections.ConfigDict, *, total_steps: int) -> Scale:
    """The run's learning rate as a `Scale`: the config's schedule, or a time budget's.

    A budget's warm-up and knots live in the optimizer state: until the loop has measured
    the step time they are provisional (``budget.provisional_knots``), then
    ``unet_jax.train.time_budget`` replaces them.

    Args:
      config: uses the schedule fields and ``time_budget_minutes``.
      total_steps: number of training steps of the run (without a budget).

    Returns:
      ``multiplier -> transformation``.
    """
    if config.get(budget.FIELD) is not None:
        return lambda multiplier: budget_schedule.scale_by_budget_schedule(
            multiplier * config.learning_rate,
            cosine=config.schedule == "warmup_cosine",
            warmup=config.warmup_steps,
            knots=budget.provisional_knots(config.warmup_steps),
        )
    schedule = create_learning_rate_schedule(config, total_steps=total_steps)
    return lambda multiplier: optax.scale_by_learning_rate(
        schedule if multiplier == 1.0 else lambda count: multiplier * schedule(count)
    )


def create_optimizer(
    config: ml_collections.ConfigDict, *, total_steps: int
) -> optax.GradientTransformation:
    """Adam (the reference recipe) or SGD with momentum 0.9, on the configured schedule.

    A ResNet encoder gets its own learning-rate multiple and frozen steps
    (`encoder_optimizer`).

    Args:
      config: uses ``optimizer`` and the schedule fields.
      total_steps: number of training steps of the run.

    Returns:
      An optax gradient transformation.
    """
    scale = learning_rate_scale(config, total_steps=total_steps)
    if config.model.encoder != "unet":
        return encoder_optimizer(
            optimizer=config.optimizer,
            scale=scale,
            lr_multiplier=float(config.encoder_lr_multiplier),
            frozen_steps=int(config.encoder_frozen_steps),
        )
    return optax.chain(_direction(config.optimizer), scale(1.0))
