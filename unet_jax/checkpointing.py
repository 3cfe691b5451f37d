"""Orbax checkpoints: the latest N for resuming, and the best by a validation metric.

Layout in the workdir::

    checkpoints/<step>/state           params, batch_stats, opt_state, step, rng
    checkpoints/<step>/data_iterator   each process' input-pipeline state (JSON)
    checkpoints/<step>/meta            best-metric tracker, epoch, etc. (JSON)
    best/<step>/...                    the same items, for the best validation result

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
process killed mid-save leaves the previous checkpoints intact and the partial one is
ignored (and cleaned up) on the next start.
"""

import dataclasses
import pathlib
from typing import Any

import grain.python as grain
import orbax.checkpoint as ocp
from flax import serialization

from unet_jax.train_state import TrainState

ITEMS = ("state", "data_iterator", "meta")


@dataclasses.dataclass
class IteratorSnapshot:
    """A data-iterator state captured when a batch was consumed (the iterator itself may
    already be ahead because of prefetching). Quacks like a grain iterator for grain's
    orbax handler."""

    state: bytes = b""

    def get_state(self) -> bytes:
        return self.state

    def set_state(self, state: bytes) -> None:
        self.state = state

    def start_prefetch(self) -> None:
        """Nothing to start: required by grain's handler on restore."""


def _manager(
    directory: pathlib.Path, options: ocp.CheckpointManagerOptions
) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_names=ITEMS,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data_iterator": grain.PyGrainCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )


class Checkpointer:
    """Saves and restores training checkpoints in a workdir.

    Args:
      workdir: the run directory.
      keep: how many of the latest checkpoints to keep.
      best_metric: name of the validation metric recorded in ``meta["metrics"]`` that
        selects the best checkpoint.
      best_mode: "max" or "min".
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep: int, best_metric: str, best_mode: str):
        workdir = pathlib.Path(workdir).absolute()
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.latest = _manager(
            workdir / "checkpoints",
            ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )
        self.best = _manager(
            workdir / "best",
            ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, enable_async_checkpointing=False
            ),
        )

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.latest.latest_step()

    def save(
        self,
        state: TrainState,
        *,
        iterator_state: bytes,
        meta: dict[str, Any],
        best: bool = False,
    ) -> None:
        """Writes a checkpoint (all processes must call this together).

        Args:
          state: host (unreplicated) train state.
          iterator_state: this process' data-iterator state after the last consumed batch.
          meta: JSON-serialisable bookkeeping (best-metric tracker, epoch, metrics).
          best: also (re)write the best checkpoint.
        """
        step = int(state.step)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(serialization.to_state_dict(state)),
            data_iterator=grain.PyGrainCheckpointSave(IteratorSnapshot(iterator_state)),
            meta=ocp.args.JsonSave(meta),
        )
        managers = [self.latest, self.best] if best else [self.latest]
        for manager in managers:
            if manager.latest_step() != step:
                manager.save(step, args=args, force=True)
            manager.wait_until_finished()

    def restore(
        self, template: TrainState, *, step: int | None = None, which: str = "latest"
    ) -> tuple[TrainState, bytes, dict[str, Any]]:
        """Restores a checkpoint into the structure of ``template``.

        Args:
          template: a host TrainState with the right structure (e.g. freshly initialised).
          step: which step; None for the newest.
          which: "latest" (the resume directory) or "best".

        Returns:
          (state, data-iterator state, meta).
        """
        manager = self.latest if which == "latest" else self.best
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no {which} checkpoint in {manager.directory}")
        snapshot = IteratorSnapshot()
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(serialization.to_state_dict(template)),
                data_iterator=grain.PyGrainCheckpointRestore(snapshot),
                meta=ocp.args.JsonRestore(),
            ),
        )
        state = serialization.from_state_dict(template, restored["state"])
        return state, snapshot.state, dict(restored["meta"])

    def close(self) -> None:
        self.latest.close()
        self.best.close()
