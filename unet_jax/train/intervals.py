"""When the training loop logs, validates and saves: intervals in steps, and the one rule.

A step is due for an interval ``every`` when it is a multiple of it or the run's last
step (`due`); `validations_between` counts the due steps in closed form, for a time
budget's arithmetic.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from unet_jax.errors import ConfigError


def due(step: int, every: int, last: int) -> bool:
    """Whether ``step`` logs/validates/saves at interval ``every`` in a run ending at ``last``."""
    return step % every == 0 or step == last


def validations_between(start: int, end: int, every: int) -> int:
    """How many steps in ``(start, end]`` are `due` at ``every`` in a run ending at ``end``."""
    if end <= start:
        return 0
    count = end // every - start // every
    return count + (1 if end % every else 0)


def _every(value: int, steps_per_epoch: int) -> int:
    return value if value > 0 else steps_per_epoch


@dataclasses.dataclass(frozen=True)
class Intervals:
    """When the loop does what, in steps.

    Attributes:
      steps_per_epoch: training examples over the batch size.
      total_steps: the run's last step.
      log_every, eval_every, checkpoint_every: the intervals.
    """

    steps_per_epoch: int
    total_steps: int
    log_every: int
    eval_every: int
    checkpoint_every: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, *, num_examples: int) -> Intervals:
        """The config's intervals (-1: once an epoch) and length.

        Raises:
          ConfigError: the batch is larger than the training split.
        """
        steps_per_epoch = num_examples // config.batch_size
        if steps_per_epoch == 0:
            raise ConfigError(
                f"config.batch_size={config.batch_size} exceeds the {num_examples} training "
                f"examples; pass --config.batch_size={num_examples} or less (a multiple of "
                "the device count), or add images"
            )
        total = config.num_train_steps
        if total <= 0:
            total = config.num_epochs * steps_per_epoch
        return cls(
            steps_per_epoch=steps_per_epoch,
            total_steps=total,
            log_every=config.log_every_steps,
            eval_every=_every(config.eval_every_steps, steps_per_epoch),
            checkpoint_every=_every(config.checkpoint_every_steps, steps_per_epoch),
        )

    def due(self, step: int, every: int) -> bool:
        return due(step, every, self.total_steps)
