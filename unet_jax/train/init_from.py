"""Fine-tuning: a run that starts from another run's weights (``--config.init_from``).

``--config.init_from=WORKDIR`` (or ``WORKDIR:best``, ``WORKDIR:latest``, ``WORKDIR:STEP``;
default best) replaces the freshly initialised parameters and BatchNorm statistics by
those of the source run's checkpoint; the optimizer state, the step (0) and the random
key stay fresh, and everything is saved in the new run's own workdir. The source is read
read-only and params-only (`unet_jax.run.loading.load_run`).

Every parameter must have the same shape in both runs, except the head (the 1x1 output
convolution), which is re-initialised when only its class count differs: a 13-class CARLA
run can start a 6-class aerial run. Any other difference (other widths, other depth) is an
`InitFromError` naming the parameter and both shapes, raised before training starts.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from unet_jax import storage
from unet_jax.data.classes import ClassSet, ClassSetError
from unet_jax.errors import UserError
from unet_jax.run import loading as run_loading
from unet_jax.run.classes_file import read_run_classes

# The U-Net's output convolution: the only top-level Conv (unet_jax/model/unet.py).
HEAD = "Conv_0"
_MAX_LISTED = 5


class InitFromError(UserError, ValueError):
    """``config.init_from`` cannot be used: a bad spec, or a model of another shape."""


@dataclasses.dataclass(frozen=True)
class InitSpec:
    """Where to start from: a run directory and its checkpoint ("best", "latest" or a step)."""

    workdir: pathlib.Path
    checkpoint: str | int


def parse_spec(spec: str) -> InitSpec:
    """Reads ``WORKDIR[:best|latest|STEP]``.

    A suffix after the last ``:`` that is not a checkpoint choice belongs to the path.

    Args:
      spec: the value of ``config.init_from``.

    Returns:
      The parsed spec (checkpoint "best" when none is given).

    Raises:
      InitFromError: an empty spec or workdir.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InitFromError(f"config.init_from={spec!r}: give a run directory, e.g. runs/demo")
    workdir, checkpoint = spec, run_loading.DEFAULT_CHECKPOINT
    head, sep, tail = spec.rpartition(":")
    if sep and (tail.strip().lower() in run_loading.CHECKPOINT_CHOICES or tail.strip().isdigit()):
        workdir, checkpoint = head, run_loading.parse_checkpoint(tail)
    if not workdir.strip():
        raise InitFromError(f"config.init_from={spec!r}: the run directory is missing")
    if storage.is_url(workdir):
        return InitSpec(storage.path(workdir, what="config.init_from"), checkpoint)
    return InitSpec(pathlib.Path(workdir).expanduser(), checkpoint)


def _absolute(workdir: storage.AnyPath) -> storage.AnyPath:
    return workdir if storage.is_url(workdir) else workdir.resolve()


def _is_head_class_change(key: tuple[str, ...], fresh: tuple, source: tuple) -> bool:
    """A head kernel [1, 1, C_in, C] or bias [C] whose only difference is C."""
    return (
        key[0] == HEAD
        and len(fresh) == len(source)
        and fresh[:-1] == source[:-1]
        and fresh != source
    )


def _model_order(key: tuple[str, ...]) -> tuple:
    """Encoder, bridge, decoder, head: the first difference listed is nearest the input."""
    module, _, index = key[0].rpartition("_")
    rank = {"EncoderBlock": 0, "ConvBlock": 1, "DecoderBlock": 2}.get(module, 3)
    return rank, int(index) if index.isdigit() else 0, key


def merge_collection(
    fresh: Any, source: Any, *, collection: str, where: str, hint: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """The fresh variables with every leaf the source has in the same shape replaced.

    Args:
      fresh: this run's initialised variables of one collection (nested dict).
      source: the source run's variables of the same collection.
      collection: "params" or "batch_stats", for names in messages.
      where: the source (workdir and step), for messages.
      hint: what to change, for messages (e.g. the source run's widths).

    Returns:
      (merged variables, names of the head leaves kept fresh because the class count differs).

    Raises:
      InitFromError: a leaf missing on either side, or a shape difference outside the
        head's class count; the message names the parameter and both shapes.
    """
    ours = traverse_util.flatten_dict(dict(fresh or {}))
    theirs = traverse_util.flatten_dict(dict(source or {}))

    def name(key: tuple[str, ...]) -> str:
        return "/".join((collection, *key))

    problems = [
        f"{name(k)} is not in the source run"
        for k in sorted(ours.keys() - theirs.keys(), key=_model_order)
    ]
    problems += [
        f"{name(k)} is not in this model"
        for k in sorted(theirs.keys() - ours.keys(), key=_model_order)
    ]
    merged, kept_fresh = {}, []
    for key in sorted(ours.keys() & theirs.keys(), key=_model_order):
        mine, other = tuple(np.shape(ours[key])), tuple(np.shape(theirs[key]))
        if mine == other:
            merged[key] = jnp.asarray(theirs[key], dtype=ours[key].dtype)
        elif _is_head_class_change(key, mine, other):
            merged[key] = ours[key]
            kept_fresh.append(name(key))
        else:
            problems.append(f"{name(key)} has shape {mine} here but {other} in the source run")
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = len(problems) - _MAX_LISTED
        raise InitFromError(
            f"config.init_from: {where} is a model of another shape: {listed}"
            + (f" (and {more} more)" if more > 0 else "")
            + ". Only the head's class count may differ"
            + (f"; {hint}" if hint else "")
        )
    return traverse_util.unflatten_dict(merged), kept_fresh


def _architecture_hint(model: Any) -> str:
    """What a mismatch message says about the source run's architecture."""
    encoder = model.encoder
    if encoder != "unet":
        return (
            f"the source run has model.encoder={encoder!r} and "
            f"model.decoder_features={tuple(model.decoder_features)}"
        )
    return (
        f"the source run has model.features={tuple(model.features)} and "
        f"model.bridge_features={model.bridge_features}"
    )


def initialise(
    state: Any, spec: str, *, classes: ClassSet, log: Callable[[str], None] = print
) -> tuple[Any, dict[str, Any]]:
    """A fresh train state with the parameters and BatchNorm statistics of another run.

    Args:
      state: this run's freshly created TrainState (step 0).
      spec: ``config.init_from``.
      classes: this run's classes (to say when a loaded head means other classes).
      log: where to say what was loaded and what was re-initialised.

    Returns:
      (the state, JSON-ready ``{"workdir", "checkpoint", "step", "reinitialized"}``).

    Raises:
      InitFromError: see `parse_spec` and `merge_collection`.
      unet_jax.run.loading.InferenceError: the source is no run or has no such checkpoint.
      unet_jax.run.checkpointing.CheckpointError: the source checkpoint is damaged.
    """
    parsed = parse_spec(spec)
    run = run_loading.load_run(parsed.workdir, checkpoint=parsed.checkpoint)
    where = f"{parsed.workdir} (checkpoint {parsed.checkpoint}, step {run.step})"
    hint = _architecture_hint(run.config.model)
    params, fresh_params = merge_collection(
        state.params, run.variables["params"], collection="params", where=where, hint=hint
    )
    stats, fresh_stats = merge_collection(
        state.batch_stats,
        run.variables.get("batch_stats", {}),
        collection="batch_stats",
        where=where,
        hint=hint,
    )
    reinitialized = fresh_params + fresh_stats
    log(f"Initialised from {where}")
    if reinitialized:
        log(f"Re-initialised (another class count): {', '.join(reinitialized)}")
    else:
        try:
            source_classes = read_run_classes(parsed.workdir).names
        except ClassSetError:
            source_classes = None
        if source_classes is not None and source_classes != classes.names:
            log(
                f"Note: the head is loaded, but it was trained on the classes "
                f"{list(source_classes)}, not {list(classes.names)}"
            )
    info = {
        "workdir": str(_absolute(parsed.workdir)),
        "checkpoint": parsed.checkpoint,
        "step": int(run.step),
        "reinitialized": reinitialized,
    }
    return state.replace(params=params, batch_stats=stats), info
