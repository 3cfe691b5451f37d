"""Loading a trained run for reuse: read-only, and only the model's variables.

Public API (``unet_jax.load`` and ``unet_jax.make_apply_fn``)::

    model, variables = unet_jax.load("runs/demo")  # the best checkpoint
    apply_fn = make_apply_fn(model)           # jitted (variables, images) -> logits
    logits = apply_fn(variables, images)      # images uint8 [B, H, W, 3] RGB in 0..255

The model normalises its input itself (its first op: ImageNet mean/std on 0..255 RGB, or
for grey, 16-bit and multi-band runs the clip and z-score of ``config.model.input_stats``),
so images go in as stored, never pre-scaled: uint8 (or float) RGB in 0..255, or the run's
``config.model.in_channels`` bands of its ``input_dtype``. H and W must be multiples
of ``model.size_multiple`` (2 ** number of encoder levels: 16 for the 4-level U-Net);
``unet_jax.deploy.segmenter.Segmenter`` handles any size.

Loading never writes to the workdir (no ``checkpoints/`` or ``best/`` is created, a damaged
checkpoint is reported, not set aside) and reads only ``params`` and ``batch_stats``, never
the optimizer state.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from unet_jax.config_fields import tupleize
from unet_jax.model.factory import abstract_variables, create_model
from unet_jax.model.unet import UNet
from unet_jax.run.checkpoint_choice import (  # noqa: F401 (re-exported)
    CHECKPOINT_CHOICES,
    DEFAULT_CHECKPOINT,
    CheckpointSpecError,
    WorkdirError,
    choose_checkpoint,
    parse_checkpoint,
)
from unet_jax.run.workdir import Workdir, finished_steps


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Reads the configuration a run was trained with (``<workdir>/config.json``).

    Args:
      workdir: the training run directory.

    Returns:
      The configuration; JSON lists become tuples, ``null`` stays None.

    Raises:
      WorkdirError: the workdir or its config.json is missing or unreadable.
    """
    workdir = Workdir.of(workdir).root
    if not workdir.exists():
        raise WorkdirError(f"workdir {workdir} does not exist")
    if not workdir.is_dir():
        raise WorkdirError(f"workdir {workdir} is not a directory")
    path = Workdir(workdir).config
    if not path.is_file():
        raise WorkdirError(
            f"workdir {workdir} has no config.json, so it is not a training run directory "
            "(train.py writes config.json when it starts)"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(f"cannot read {path}: {e}") from e
    if not isinstance(raw, dict):
        raise WorkdirError(f"{path} does not hold a configuration (a JSON object)")
    return ml_collections.ConfigDict(tupleize(raw))


@dataclasses.dataclass
class LoadedRun:
    """A restored training run.

    Attributes:
      workdir: the run directory.
      config: its configuration.
      model: the UNet (inference mode: no BatchNorm device axis).
      variables: ``{"params", "batch_stats"}`` on the default device.
      step: the training step of the restored checkpoint.
      checkpoint: "best", "latest" or the requested step.
    """

    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    model: UNet
    variables: dict[str, Any]
    step: int
    checkpoint: str | int

    @property
    def activation(self) -> str:
        """The output activation ("softmax" or "sigmoid")."""
        return self.config.model.output_activation


def load_run(
    workdir: str | pathlib.Path,
    *,
    checkpoint: str | int = DEFAULT_CHECKPOINT,
    config: ml_collections.ConfigDict | None = None,
) -> LoadedRun:
    """Restores the model of a training run.

    Only ``params`` and ``batch_stats`` are read, into an abstract template (``jax.eval_shape``
    of the model's initialisation: no optimizer is built), so nothing is compiled or run;
    their SHA-256 is verified (see ``unet_jax.run.checkpointing.read_variables``). Nothing
    is written.

    Args:
      workdir: the training run directory (holds config.json, checkpoints/, best/).
      checkpoint: "best" (best validation metric), "latest", or a step number found in
        checkpoints/ or best/.
      config: use this configuration instead of the run's config.json.

    Returns:
      The loaded run.

    Raises:
      WorkdirError: missing workdir, config.json or checkpoint.
      CheckpointSpecError: an invalid ``checkpoint``.
      unet_jax.run.checkpointing.IncompatibleCheckpointError: the checkpoint was written by a
        model of another configuration (class count, widths).
      unet_jax.run.checkpointing.CheckpointError: the checkpoint is damaged (it is left in
        place: restoring never moves or changes a checkpoint).
    """
    # Imported here: orbax is only needed to restore.
    from unet_jax.run import checkpointing

    workdir = Workdir.of(workdir).root
    spec = parse_checkpoint(checkpoint)
    if config is None:
        config = load_config(workdir)
    elif not workdir.is_dir():
        raise WorkdirError(f"workdir {workdir} does not exist")
    layout = Workdir(workdir)
    which, step = choose_checkpoint(
        spec,
        workdir=workdir,
        latest_steps=finished_steps(layout.checkpoints),
        best_steps=finished_steps(layout.best),
    )

    try:
        model = create_model(config)
        template = abstract_variables(model, image_size=tuple(config.image_size))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise WorkdirError(
            f"the configuration of {workdir} cannot build a model ({type(e).__name__}: {e})"
        ) from e
    # Read-only and params-only: no directory is created or renamed, no optimizer state
    # is read (see checkpointing.read_variables).
    directory = layout.checkpoint_dir(which, step)
    restored = checkpointing.read_variables(directory, template)
    variables = {"params": restored["params"]}
    if restored["batch_stats"]:
        variables["batch_stats"] = restored["batch_stats"]
    return LoadedRun(
        workdir=workdir,
        config=config,
        model=model,
        variables=jax.device_put(variables),
        step=restored["step"],
        checkpoint=spec,
    )


def load(
    workdir: str | pathlib.Path, checkpoint: str | int = DEFAULT_CHECKPOINT
) -> tuple[UNet, dict]:
    """Loads a trained model for reuse.

    Args:
      workdir: the training run directory.
      checkpoint: "best", "latest" or a step number.

    Returns:
      ``(model, variables)``: call ``model.apply(variables, images, train=False)`` or
      ``make_apply_fn(model)(variables, images)``; images uint8 RGB 0..255 [B, H, W, 3]
      with H, W multiples of ``model.size_multiple``.

    Raises:
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError: see
      :func:`load_run`.
    """
    run = load_run(workdir, checkpoint=checkpoint)
    return run.model, run.variables


def make_apply_fn(model: UNet) -> Callable[[Any, Any], jax.Array]:
    """A jitted inference function of ``model``.

    Args:
      model: the UNet (e.g. from :func:`load`).

    Returns:
      ``apply_fn(variables, images) -> logits``: images [B, H, W, 3] uint8 (or float) RGB in
      0..255, H and W multiples of ``model.size_multiple``; logits float32
      [B, H, W, num_classes]. Compiles once per input shape.
    """

    @jax.jit
    def apply_fn(variables: Any, images: jax.Array) -> jax.Array:
        return model.apply(variables, images, train=False)

    return apply_fn
