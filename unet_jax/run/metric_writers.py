"""Training metrics as JSON lines and TensorBoard events (tensorboardX: no TensorFlow).

In a cloud storage workdir (``gs://...``) both are written to a local folder first and
copied to the bucket at most every `SYNC_EVERY_S` seconds and when the writer closes: a
bucket has no append, and tensorboardX's own GCS writer is broken.
"""

import json
import math
import pathlib
import shutil
import tempfile
import time
import warnings
from typing import Any

import numpy as np

from unet_jax import storage
from unet_jax.errors import UserError
from unet_jax.run.workdir import Workdir

METRICS_FILE = Workdir(pathlib.Path()).metrics.name  # the name, for messages and tests
# How often a cloud workdir's metrics and events are copied to the bucket (and at close).
SYNC_EVERY_S = 30.0


def _jsonable(value: Any) -> Any:
    value = np.asarray(value).item() if np.ndim(value) == 0 else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsFileError(UserError, ValueError):
    """A line of ``metrics.jsonl`` other than the last is not JSON (the message names it)."""


def _parse_records(path: pathlib.Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, tolerating a partial last line.

    A process killed (or a disk filled) during a write can leave the last line cut short:
    it is dropped with a warning naming the file and line. A bad line anywhere else is not
    explained by an interrupted append, so it is an error.

    Args:
      path: the JSON-lines file.

    Returns:
      The decoded records, in file order.

    Raises:
      MetricsFileError: a line before the last one is not a JSON object.
    """
    lines = path.read_bytes().decode(errors="replace").splitlines()
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    records = []
    for position, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"not a JSON object: {line[:80]!r}")
        except ValueError as e:
            if position == len(numbered) - 1:
                warnings.warn(
                    f"{path}:{number}: dropping a partial last line (an interrupted write?): "
                    f"{line[:80]!r}",
                    stacklevel=3,
                )
                break
            raise MetricsFileError(f"{path}:{number}: not a metrics record ({e})") from e
        records.append(record)
    return records


class MetricWriter:
    """Appends ``{"step": s, "split": ..., name: value}`` lines to ``metrics.jsonl``.

    Only one process (process 0) should write: other processes get ``enabled=False``.
    On resume from step ``s``, lines written after ``s`` by the interrupted run are dropped
    so the log describes exactly the training that the checkpoint continues; a partial last
    line (an interrupted write) is dropped with a warning. The file is rewritten atomically.

    Args:
      workdir: run directory.
      enabled: whether this process writes anything.
      resume_step: the step training resumes from (0 for a fresh run).
    """

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        layout = Workdir.of(workdir)
        self.path = layout.metrics
        self._tb = None
        self._staging = None  # the local folder of a cloud workdir's files
        if not enabled:
            return
        self._tensorboard = layout.tensorboard
        self._local = self.path
        local_tensorboard = self._tensorboard
        if storage.is_url(layout.root):
            self._staging = pathlib.Path(tempfile.mkdtemp(prefix="unet_jax_metrics_"))
            self._local = self._staging / self.path.name
            local_tensorboard = self._staging / self._tensorboard.name
            self._synced_at = time.monotonic()
        if self.path.exists():
            kept = [r for r in _parse_records(self.path) if r.get("step", 0) <= resume_step]
            storage.write_atomically(self._local, "".join(json.dumps(r) + "\n" for r in kept))
        from tensorboardX import SummaryWriter  # heavy import only for the writing process

        self._tb = SummaryWriter(
            str(local_tensorboard),
            purge_step=resume_step + 1 if resume_step else None,
        )

    def write(self, step: int, split: str, scalars: dict[str, Any]) -> None:
        """Records scalars of one split ("train", "validation", ...) at ``step``."""
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _jsonable(v) for k, v in scalars.items()})
        with self._local.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if name not in ("step", "split") and isinstance(value, int | float):
                self._tb.add_scalar(f"{split}/{name}", value, step)
        self._tb.flush()
        if self._staging is not None and time.monotonic() - self._synced_at >= SYNC_EVERY_S:
            self._sync()

    def _sync(self) -> None:
        """Copies the local metrics and event files of a cloud workdir to the bucket."""
        if self._local.exists():
            storage.upload(self._local, self.path)
        for events in sorted(self._staging.joinpath(self._tensorboard.name).glob("*")):
            storage.upload(events, self._tensorboard / events.name)
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._staging is not None:
            self._sync()
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl``.

    Args:
      workdir: the run directory.

    Returns:
      The records in file order (empty if there is no file); a partial last line, left by
      an interrupted write, is skipped with a warning.

    Raises:
      MetricsFileError: a line other than the last is not a JSON object.
    """
    path = Workdir.of(workdir).metrics
    if not path.exists():
        return []
    return _parse_records(path)
