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
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib

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


def create_writable(root: str | pathlib.Path) -> None:
    """Creates the workdir (and its parents) and checks that a file can be written there.

    Args:
      root: the run directory (``--workdir``).

    Raises:
      WorkdirNotWritableError: ``root`` or a parent is a file, or it cannot be written; the
        message names the path and why.
    """
    root = pathlib.Path(root)
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

    root: pathlib.Path

    @classmethod
    def of(cls, workdir: str | pathlib.Path | Workdir) -> Workdir:
        """The layout of ``workdir`` (a path or already a Workdir)."""
        return workdir if isinstance(workdir, Workdir) else cls(pathlib.Path(workdir))

    @property
    def config(self) -> pathlib.Path:
        return self.root / "config.json"

    @property
    def run_info(self) -> pathlib.Path:
        return self.root / "run_info.json"

    @property
    def run_history(self) -> pathlib.Path:
        return self.root / "run_history.jsonl"

    @property
    def classes(self) -> pathlib.Path:
        return self.root / "classes.json"

    @property
    def metrics(self) -> pathlib.Path:
        return self.root / "metrics.jsonl"

    @property
    def plan(self) -> pathlib.Path:
        """configs/auto.py's plan (a workdir that holds one keeps it)."""
        return self.root / "plan.json"

    @property
    def budget_plan(self) -> pathlib.Path:
        """The time budget's plan, rewritten at each re-fit."""
        return self.root / "budget.json"

    @property
    def tensorboard(self) -> pathlib.Path:
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> pathlib.Path:
        """The latest checkpoints, one folder per step (what a run resumes from)."""
        return self.root / "checkpoints"

    @property
    def best(self) -> pathlib.Path:
        """The best checkpoint(s) by the run's best_metric, one folder per step."""
        return self.root / "best"

    def checkpoint_dir(self, which: str, step: int) -> pathlib.Path:
        """``best/<step>`` or ``checkpoints/<step>`` (``which`` "best" or "latest")."""
        return (self.best if which == "best" else self.checkpoints) / str(step)

    def eval_dir(self, split: str, *, onnx: bool = False) -> pathlib.Path:
        """Where eval.py writes the report of ``split`` (``_onnx`` for an ONNX model)."""
        return self.root / "eval" / (split + ("_onnx" if onnx else ""))
