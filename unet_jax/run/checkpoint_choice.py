"""Which checkpoint of a run to use: the choices, their default, their parsing, and the
choice among a run's checkpoints.

Light (imports nothing heavy), so the command lines build their flags from it quickly.
"""

from __future__ import annotations

import numpy as np

from unet_jax.errors import InferenceError

CHECKPOINT_CHOICES = ("best", "latest")
DEFAULT_CHECKPOINT = "best"  # the one default of every command and API function


class WorkdirError(InferenceError, FileNotFoundError):
    """The workdir is missing, not a training run, or holds no (such) checkpoint."""


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


def choose_checkpoint(
    spec: str | int, *, workdir: object, latest_steps: list[int], best_steps: list[int]
) -> tuple[str, int]:
    """The checkpoint that ``spec`` names among a run's.

    Always an explicit step: evaluation reads the workdir only. (Without a step, the
    Checkpointer would rename a damaged checkpoint and silently fall back to an older one,
    which suits resuming training but not judging a chosen checkpoint.)

    Args:
      spec: `parse_checkpoint`'s "best", "latest" or step.
      workdir: the run directory (for messages).
      latest_steps, best_steps: the steps in ``checkpoints/`` and ``best/``, ascending.

    Returns:
      ``(which, step)``: which is "best" or "latest" (the folder that holds the step).

    Raises:
      WorkdirError: no checkpoint at all, or none that ``spec`` names.
    """
    if not latest_steps and not best_steps:
        raise WorkdirError(
            f"workdir {workdir} holds no checkpoint (checkpoints/ and best/ are empty or "
            "missing): train first, or check the path"
        )
    if spec == "best" and not best_steps:
        raise WorkdirError(
            f"workdir {workdir} has no best checkpoint in best/ (validation never ran?); "
            f"use checkpoint 'latest' (steps {latest_steps})"
        )
    if spec == "latest" and not latest_steps:
        raise WorkdirError(
            f"workdir {workdir} has no checkpoint in checkpoints/; best/ has steps {best_steps}"
        )
    if spec == "best":
        return "best", best_steps[-1]
    if spec == "latest":
        return "latest", latest_steps[-1]
    if spec in latest_steps:
        return "latest", spec
    if spec in best_steps:
        return "best", spec
    raise WorkdirError(
        f"workdir {workdir} has no checkpoint of step {spec}; checkpoints/ has "
        f"{latest_steps}, best/ has {best_steps}"
    )
