"""Which checkpoint of a run to use: the choices, their default and their parsing.

Light (imports nothing heavy), so the command lines build their flags from it quickly.
"""

from __future__ import annotations

import numpy as np

from unet_jax.errors import InferenceError

CHECKPOINT_CHOICES = ("best", "latest")
DEFAULT_CHECKPOINT = "best"  # the one default of every command and API function


class CheckpointSpecError(InferenceError, ValueError):
    """``checkpoint`` is neither "best", "latest" nor a step number."""


def parse_checkpoint(spec: str | int) -> str | int:
    """Validates a checkpoint choice.

    Args:
      spec: "best", "latest", or a step number (int or decimal string).

    Returns:
      "best", "latest" or the step as an int.

    Raises:
      CheckpointSpecError: anything else.
    """
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        step = int(spec)
    elif isinstance(spec, str) and spec.strip().lower() in CHECKPOINT_CHOICES:
        return spec.strip().lower()
    elif isinstance(spec, str) and spec.strip().isdigit():
        step = int(spec.strip())
    else:
        raise CheckpointSpecError(
            f"checkpoint must be 'best', 'latest' or a step number, got {spec!r}"
        )
    if step < 0:
        raise CheckpointSpecError(f"checkpoint step must be >= 0, got {step}")
    return step
