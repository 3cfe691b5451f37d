"""Start-up checks of a workdir that is being resumed against the run's config and data.

A workdir holding checkpoints continues the run it was started with. A config of other
classes, widths or optimizer, or other training data, is refused here in words (exit
code 2), before any data preparation and before anything in the workdir is overwritten;
the checkpoint's own shape check (``IncompatibleCheckpointError``) stays the last resort.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ml_collections

from unet_jax import storage
from unet_jax.config_fields import get_field
from unet_jax.data.classes import ClassSet
from unet_jax.errors import UserError
from unet_jax.run.workdir import Workdir, finished_steps
from unet_jax.train.budget import FIELD as BUDGET_FIELD

# The fields that decide the shapes of what a checkpoint holds (parameters, optimizer);
# the widths of the encoder the run does not use do not count.
SHAPE_FIELDS = (
    "model.encoder",
    "model.use_batchnorm",
    "model.output_activation",
    "optimizer",
)
UNET_WIDTHS = ("model.features", "model.bridge_features")
RESNET_WIDTHS = ("model.decoder_features",)
# The fields that name the training data: another value is another data set.
DATA_FIELDS = ("dataset", "folder")
ALLOW_NEW_DATA = "allow_new_data"


class ResumeMismatchError(UserError, ValueError):
    """The config or data differ from those the workdir's checkpoints were trained with."""


def newest_step_dir(workdir: str | pathlib.Path) -> pathlib.Path | None:
    """The newest finalised ``checkpoints/<step>`` folder, or None (nothing to resume)."""
    folder = Workdir.of(workdir).checkpoints
    if not folder.is_dir():
        return None
    steps = finished_steps(folder)
    return folder / str(steps[-1]) if steps else None


def _previous_config(workdir: pathlib.Path) -> dict[str, Any] | None:
    try:
        return json.loads(Workdir.of(workdir).config.read_text())
    except (OSError, ValueError):
        return None  # no config.json (or unreadable): the checkpoint's shape check decides


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples and lists compare equal)."""
    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    return str(tuple(value)) if isinstance(value, list) else repr(value)


def _advice(workdir: pathlib.Path) -> str:
    return f"use a new --workdir, or --config.init_from={workdir} to start from its weights"


def _same_folder(before: Any, now: Any) -> bool:
    if before == now:
        return True
    if not before or not now:
        return False
    if storage.is_url(before) or storage.is_url(now):
        return str(before).rstrip("/") == str(now).rstrip("/")
    return pathlib.Path(before).expanduser().resolve() == pathlib.Path(now).expanduser().resolve()


def check_same_data(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    """Refuses to resume a workdir on data other than it was trained on.

    ``config.allow_new_data=True`` continues on the new data (fine-tuning in place).

    Args:
      config: the run config (``dataset``, ``folder``, ``allow_new_data``).
      workdir: the run directory.

    Raises:
      ResumeMismatchError: the workdir has checkpoints of another data set or folder.
    """
    workdir = Workdir.of(workdir).root
    if config.get(ALLOW_NEW_DATA) or newest_step_dir(workdir) is None:
        return
    previous = _previous_config(workdir)
    if previous is None:
        return
    for field in DATA_FIELDS:
        before, now = previous.get(field), config.get(field)
        same = _same_folder(before, now) if field == "folder" else before == now
        if not same:
            raise ResumeMismatchError(
                f"workdir {workdir} was trained on {field}={before!r}; the config has "
                f"{field}={now!r}: {_advice(workdir)}, or pass "
                f"--config.{ALLOW_NEW_DATA}=True to continue this run on the new data"
            )


def check_same_budget(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    """Refuses another time budget for a workdir whose run was planned for one.

    A budgeted run resumes its stored plan (steps, schedule, time spent), which a new
    budget would silently leave unchanged; a finished run would say "0:00 left" and stop.

    Args:
      config: the run config (``time_budget_minutes``).
      workdir: the run directory.

    Raises:
      ResumeMismatchError: the workdir's run was planned for another budget.
    """
    workdir = Workdir.of(workdir).root
    if newest_step_dir(workdir) is None:
        return
    previous = _previous_config(workdir)
    before = None if previous is None else previous.get(BUDGET_FIELD)
    now = config.get(BUDGET_FIELD)
    if before is None or now is None or float(before) == float(now):
        return
    raise ResumeMismatchError(
        f"workdir {workdir} was planned for {BUDGET_FIELD}={before:g}; the config has "
        f"{BUDGET_FIELD}={now:g}, and a plan is not extended: {_advice(workdir)}"
    )


def check_same_model(
    config: ml_collections.ConfigDict, classes: ClassSet, workdir: str | pathlib.Path
) -> None:
    """Refuses to resume a workdir whose checkpoints hold other classes, widths or optimizer.

    Args:
      config: the run config, with ``num_classes`` from the data.
      classes: the data set's classes.
      workdir: the run directory.

    Raises:
      ResumeMismatchError: the message says what differs, in the config's terms.
    """
    workdir = Workdir.of(workdir).root
    step_dir = newest_step_dir(workdir)
    if step_dir is None:
        return
    trained = _trained_classes(step_dir, workdir)
    if trained is not None and trained != list(classes.names):
        raise ResumeMismatchError(
            f"workdir {workdir} was trained with {_classes(trained)}; the config has "
            f"{_classes(list(classes.names))}: {_advice(workdir)}"
        )
    previous = _previous_config(workdir)
    if previous is None:
        return
    current = config.to_dict()
    widths = (
        UNET_WIDTHS
        if get_field(current, "model.encoder", None) in (None, "unet")
        else RESNET_WIDTHS
    )
    differing = [
        field
        for field in (*SHAPE_FIELDS, *widths)
        if get_field(previous, field, None) is not None
        and _plain(get_field(previous, field, None)) != _plain(get_field(current, field, None))
    ]
    if differing:

        def settings(tree: dict[str, Any]) -> str:
            return " and ".join(f"{f}={_show(_plain(get_field(tree, f, None)))}" for f in differing)

        raise ResumeMismatchError(
            f"workdir {workdir} was trained with {settings(previous)}; the config has "
            f"{settings(current)}: {_advice(workdir)}"
        )


def _classes(names: list[str]) -> str:
    shown = ", ".join(names[:16]) + (", ..." if len(names) > 16 else "")
    return f"{len(names)} classes ({shown})"


def _trained_classes(step_dir: pathlib.Path, workdir: pathlib.Path) -> list[str] | None:
    """The class names the newest checkpoint was trained with (its meta, else classes.json)."""
    try:
        meta = json.loads((step_dir / "meta" / "metadata").read_text())
        if "classes" in meta:
            return list(ClassSet.from_json(meta["classes"]).names)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a damaged meta is the checkpoint's own check's business
    try:
        data = json.loads(Workdir.of(workdir).classes.read_text())
        return list(ClassSet.from_json(data).names)
    except (OSError, ValueError, KeyError, TypeError):
        return None
