"""Every path of a run's workdir, in one place: what training writes and the tools read.

::

    <workdir>/config.json          the run's configuration
    <workdir>/run_info.json        versions, devices, git commit (and run_history.jsonl)
    <workdir>/classes.json         the class set (names, colours, mask format)
    <workdir>/metrics.jsonl        training and validation metrics; tensorboard/
    <workdir>/plan.json            configs/auto.py's plan (fingerprint, probe, decisions)
    <workdir>/budget.json          a time budget's plan (steps, warm-up, validations)
    <workdir>/checkpoints/<step>   the latest checkpoints (resume)
    <workdir>/best/<step>          the best checkpoint by the validation metric
    <workdir>/eval/<split>[_onnx]  eval.py's reports

The workdir may be a cloud storage URL (``gs://bucket/run``): its paths are then
``etils.epath.Path`` objects with the same methods (:mod:`unet_jax.storage`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib

from unet_jax import storage
from unet_jax.errors import UserError


class WorkdirNotWritableError(UserError, OSError):
    """The workdir cannot be created or written: a file, read-only, no permission."""


_REASONS = {
    errno.EROFS: "is on a read-only filesystem",
    errno.EACCES: "is not writable (permission denied)",
    errno.EPERM: "is not writable (operation not permitted)",
    errno.ENOSPC: "is on a full disk (no space left on the device)",
    errno.EDQUOT: "is over its disk quota",
}


def create_writable(root: str | pathlib.Path | storage.AnyPath) -> None:
    """Creates the workdir (and its parents) and checks that a file can be written there.

    Args:
      root: the run directory (``--workdir``).

    Raises:
      WorkdirNotWritableError: ``root`` or a parent is a file, or it cannot be written; the
        message names the path and why.
    """
    root = storage.path(root, what="workdir")
    probe = root / f".write-check-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError) as e:
        blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), root)
        what = "is a file" if blocker == root else f"is inside {blocker}, a file"
        raise WorkdirNotWritableError(
            f"workdir {root}: {what}, not a folder; pass a folder to --workdir"
        ) from e
    except OSError as e:
        if storage.unreachable(e):
            raise  # not the folder's fault: the command says the bucket could not be reached
        reason = _REASONS.get(e.errno, f"cannot be written ({e.strerror or e})")
        raise WorkdirNotWritableError(
            f"workdir {root}: {reason}; pass a writable folder to --workdir"
        ) from e


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one run directory (nothing is created or read here).

    Attributes:
      root: the run directory.
    """

    root: storage.AnyPath

    @classmethod
    def of(cls, workdir: str | pathlib.Path | storage.AnyPath | Workdir) -> Workdir:
        """The layout of ``workdir`` (a path, a URL or already a Workdir).

        Raises:
          unet_jax.storage.StorageError: a URL of an unknown scheme or without its client.
        """
        if isinstance(workdir, Workdir):
            return workdir
        return cls(storage.path(workdir, what="workdir"))

    @property
    def config(self) -> storage.AnyPath:
        return self.root / "config.json"

    @property
    def run_info(self) -> storage.AnyPath:
        return self.root / "run_info.json"

    @property
    def run_history(self) -> storage.AnyPath:
        return self.root / "run_history.jsonl"

    @property
    def classes(self) -> storage.AnyPath:
        return self.root / "classes.json"

    @property
    def metrics(self) -> storage.AnyPath:
        return self.root / "metrics.jsonl"

    @property
    def plan(self) -> storage.AnyPath:
        """configs/auto.py's plan (a workdir that holds one keeps it)."""
        return self.root / "plan.json"

    @property
    def budget_plan(self) -> storage.AnyPath:
        """The time budget's plan, rewritten at each re-fit."""
        return self.root / "budget.json"

    @property
    def tensorboard(self) -> storage.AnyPath:
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> storage.AnyPath:
        """The latest checkpoints, one folder per step (what a run resumes from)."""
        return self.root / "checkpoints"

    @property
    def best(self) -> storage.AnyPath:
        """The best checkpoint(s) by the run's best_metric, one folder per step."""
        return self.root / "best"

    def checkpoint_dir(self, which: str, step: int) -> storage.AnyPath:
        """``best/<step>`` or ``checkpoints/<step>`` (``which`` "best" or "latest")."""
        return (self.best if which == "best" else self.checkpoints) / str(step)

    def eval_dir(self, split: str, *, onnx: bool = False) -> storage.AnyPath:
        """Where eval.py writes the report of ``split`` (``_onnx`` for an ONNX model)."""
        return self.root / "eval" / (split + ("_onnx" if onnx else ""))


# What orbax writes last into a checkpoint on Cloud Storage, which has no atomic rename (on
# a local disk it renames ``<step>.orbax-checkpoint-tmp`` to ``<step>`` instead).
COMMIT_FILE = "commit_success.txt"


def is_finished_step(step_dir: storage.AnyPath) -> bool:
    """Whether ``step_dir`` (``checkpoints/<step>``) is a checkpoint whose save completed."""
    if not (step_dir.name.isdigit() and step_dir.is_dir()):
        return False
    return storage.scheme_of(step_dir) != "gs" or (step_dir / COMMIT_FILE).exists()


def finished_steps(folder: storage.AnyPath) -> list[int]:
    """The steps of the completed checkpoints in ``folder`` (``checkpoints/`` or ``best/``)."""
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if is_finished_step(p))
