"""Training metrics as JSON lines and TensorBoard events (tensorboardX: no TensorFlow)."""

import json
import math
import pathlib
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _jsonable(value: Any) -> Any:
    value = np.asarray(value).item() if np.ndim(value) == 0 else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricWriter:
    """Appends ``{"step": s, "split": ..., name: value}`` lines to ``metrics.jsonl``.

    Only one process (process 0) should write: other processes get ``enabled=False``.
    On resume from step ``s``, lines written after ``s`` by the interrupted run are dropped
    so the log describes exactly the training that the checkpoint continues.

    Args:
      workdir: run directory.
      enabled: whether this process writes anything.
      resume_step: the step training resumes from (0 for a fresh run).
    """

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / METRICS_FILE
        self._tb = None
        if not enabled:
            return
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        from tensorboardX import SummaryWriter  # heavy import only for the writing process

        self._tb = SummaryWriter(
            str(pathlib.Path(workdir) / "tensorboard"),
            purge_step=resume_step + 1 if resume_step else None,
        )

    def write(self, step: int, split: str, scalars: dict[str, Any]) -> None:
        """Records scalars of one split ("train", "validation", ...) at ``step``."""
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _jsonable(v) for k, v in scalars.items()})
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if name not in ("step", "split") and isinstance(value, int | float):
                self._tb.add_scalar(f"{split}/{name}", value, step)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl`` (empty if there is none)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
