"""Orbax checkpoints: the latest N for resuming, and the best by a validation metric.

Layout in the workdir::

    checkpoints/<step>/state           params, batch_stats, opt_state, step, rng
    checkpoints/<step>/meta            best-metric tracker, epoch, etc. (JSON)
    best/<step>/...                    the same items, for the best validation result

The input pipeline's position is a function of the step (``input_pipeline``), so no data
iterator state is stored.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
process killed mid-save leaves the previous checkpoints intact and the partial one is
ignored (and cleaned up) on the next start.

Damage after the fact (a truncated file, flipped bits) is caught by a SHA-256 of the state
recorded in ``meta`` at save time and checked on restore. A damaged checkpoint is renamed
``<step>.damaged-<n>`` (kept for inspection, never deleted) and the next older one is used,
with a warning. With several processes, all of them must call ``restore`` together: every
process verifies the same files, process 0 alone renames, and host barriers before and
after the rename make every process see the same directory.

Preemption (SIGTERM) is handled by the training loop, which saves through
:meth:`Checkpointer.save` at a step all processes agree on; this module has no signal
handling of its own.
"""

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from jax.experimental import multihost_utils

from unet_jax import storage
from unet_jax.errors import VERBOSE_ENV_VAR
from unet_jax.run.state import TrainState
from unet_jax.run.workdir import Workdir, is_finished_step

ITEMS = ("state", "meta")
DIGEST_KEY = "state_sha256"
# A second digest over the model variables alone lets inference read and verify only them.
VARIABLES_DIGEST_KEY = "variables_sha256"
VARIABLE_COLLECTIONS = ("params", "batch_stats")
# What orbax leaves of a save that never finished: ``<step>.orbax-checkpoint-tmp[-<time>]``.
INTERRUPTED_SAVE = re.compile(r"^(\d+)\.orbax-checkpoint-tmp(-\d+)?$")


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one could not be written; the message says which and why."""


class IncompatibleCheckpointError(ValueError):
    """The checkpoint was written by a model of another configuration (classes, widths...)."""


class NoUsableCheckpointError(CheckpointError, FileNotFoundError):
    """The requested checkpoint does not exist, or every candidate was damaged."""


def state_digest(state_dict: Any) -> str:
    """SHA-256 over the dtype, shape and bytes of every leaf, in tree order."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state_dict)[0]:
        array = np.asarray(leaf)
        if array.ndim == 0 and np.issubdtype(array.dtype, np.integer):
            # orbax gives integer scalars (the step) back as Python ints.
            array = array.astype(np.int64)
        digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _manager(
    directory: pathlib.Path, options: ocp.CheckpointManagerOptions
) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_names=ITEMS,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )


class Checkpointer:
    """Saves and restores training checkpoints in a workdir.

    Which checkpoint is the best is decided by the caller (``save(..., best=True)``).

    Args:
      workdir: the run directory.
      keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep: int, log=print):
        layout = Workdir.of(_absolute(workdir))
        self._log = log if jax.process_index() == 0 else (lambda *_: None)
        for folder in (layout.checkpoints, layout.best):
            for removed in remove_interrupted_saves(folder):
                self._log(f"Removed {removed}: an incomplete checkpoint of an interrupted save")
        self.latest = _manager(
            layout.checkpoints,
            ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )
        self.best = _manager(
            layout.best,
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
        meta: dict[str, Any],
        best: bool = False,
    ) -> None:
        """Writes a checkpoint (all processes must call this together).

        Args:
          state: host (unreplicated) train state.
          meta: JSON-serialisable bookkeeping (best-metric tracker, epoch, metrics).
          best: also (re)write the best checkpoint.
        """
        step = int(state.step)
        state_dict = serialization.to_state_dict(state)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state_dict),
            meta=ocp.args.JsonSave(
                {
                    **meta,
                    DIGEST_KEY: state_digest(state_dict),
                    VARIABLES_DIGEST_KEY: state_digest(_variables_of(state_dict)),
                }
            ),
        )
        managers = [self.latest, self.best] if best else [self.latest]
        for manager in managers:
            if manager.latest_step() == step:
                if manager is self.latest:
                    continue  # e.g. the final step, saved as best a moment ago
                # A best checkpoint of this step written before a fallback may be the
                # damaged copy; the resumed run re-trained the step: write it anew.
                manager.delete(step)
            previous = manager.latest_step()
            with background_errors_collected() as collected:
                try:
                    manager.save(step, args=args, force=True)
                    manager.wait_until_finished()
                    manager.check_for_errors()
                    error = None
                except Exception as e:  # noqa: BLE001 - OSError, or tensorstore's ValueError
                    error = e
                # Orbax can log a failed write (e.g. a full disk) from its writer thread and
                # return normally: only a finalised step directory counts as saved.
                manager.reload()
            if error is not None or step not in manager.all_steps():
                cause = short_cause(error) if error else None
                cause = cause or (collected[0] if collected else "the write did not complete")
                raise CheckpointError(
                    f"could not write checkpoint step {step} to {manager.directory}: {cause}. "
                    f"The previous checkpoint (step {previous}) is intact; fix the cause "
                    "(e.g. free disk space) and run again to resume from it"
                ) from error

    def restore(
        self, template: TrainState, *, step: int | None = None, which: str = "latest"
    ) -> tuple[TrainState, dict[str, Any]]:
        """Restores a checkpoint into the structure of ``template``.

        Args:
          template: a host TrainState with the right structure (e.g. freshly initialised).
          step: which step; None for the newest.
          which: "latest" (the resume directory) or "best".

        Returns:
          (state, meta).
        """
        manager = self.latest if which == "latest" else self.best
        if step is not None:
            return self._restore_step(manager, template, step)
        set_aside = []
        for candidate in sorted(manager.all_steps(), reverse=True):
            try:
                return self._restore_step(manager, template, candidate)
            except CheckpointError as e:
                moved = self._set_aside(manager, candidate)
                set_aside.append(moved.name)
                warnings.warn(
                    f"{e}; moved it to {moved.name} and trying the previous checkpoint",
                    stacklevel=2,
                )
        message = f"no usable {which} checkpoint in {manager.directory}"
        if set_aside:
            message += f" (set aside as damaged: {', '.join(set_aside)})"
        if which == "latest":
            message += self._best_advice(template)
        raise NoUsableCheckpointError(message)

    def _best_advice(self, template: TrainState) -> str:
        """What to run when ``checkpoints/`` has no usable step: ``best/``'s, if intact."""
        for step in sorted(self.best.all_steps(), reverse=True):
            try:
                self._restore_step(self.best, template, step)
            except CheckpointError:
                continue
            source = self.best.directory / str(step)
            target = self.latest.directory / str(step)
            copy = "gcloud storage cp -r" if storage.is_url(source) else "cp -r"
            return (
                f"; best/{step} is intact: copy it back to resume from it "
                f"({copy} {source} {target}) and run the same command again"
            )
        return "; best/ holds no intact checkpoint either: train in a new --workdir"

    def _restore_step(
        self, manager: ocp.CheckpointManager, template: TrainState, step: int
    ) -> tuple[TrainState, dict[str, Any]]:
        if step not in manager.all_steps():
            raise NoUsableCheckpointError(
                f"no checkpoint of step {step} in {manager.directory}; "
                f"available: {sorted(manager.all_steps())}"
            )
        template_dict = serialization.to_state_dict(template)
        _check_compatible(manager, step, template_dict)
        try:
            with background_errors_collected():
                restored = manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(template_dict),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
            meta = dict(restored["meta"])
            recorded = meta.pop(DIGEST_KEY, None)
            meta.pop(VARIABLES_DIGEST_KEY, None)
            state_dict = restored["state"]
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types on bad files
            raise CheckpointError(
                f"checkpoint step {step} in {manager.directory} is damaged ({short_cause(e)})"
            ) from e
        if recorded is None or recorded != state_digest(state_dict):
            raise CheckpointError(
                f"checkpoint step {step} in {manager.directory} is damaged "
                "(its contents do not match the SHA-256 recorded when it was saved)"
            )
        state = serialization.from_state_dict(template, state_dict)
        return state, meta

    @staticmethod
    def _set_aside(manager: ocp.CheckpointManager, step: int) -> pathlib.Path:
        """Renames a damaged step directory so it is neither used nor overwritten.

        Every process calls this together. Each computes the same target name before the
        first barrier (no process renames before all have looked), process 0 renames, and
        no process goes on before the rename is done (second barrier).
        """
        source = manager.directory / str(step)
        n = 0
        while (target := source.with_name(f"{step}.damaged-{n}")).exists():
            n += 1
        _barrier(f"set aside {source}: before")
        if jax.process_index() == 0:
            source.rename(target)
        _barrier(f"set aside {source}: after")
        manager.reload()
        return target

    def close(self) -> None:
        """Releases orbax resources."""
        self.latest.close()
        self.best.close()


def _variables_of(state_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: state_dict[k] for k in VARIABLE_COLLECTIONS}


def read_variables(step_dir: str | pathlib.Path, template: dict[str, Any]) -> dict[str, Any]:
    """Reads only ``params`` and ``batch_stats`` of one checkpoint step, read-only.

    Nothing in the workdir is created, renamed or deleted, and the optimizer state is never
    read (for Adam, twice the parameters' size). The variables are verified against the
    SHA-256 recorded for them.

    Args:
      step_dir: a step directory, e.g. ``<workdir>/best/<step>``.
      template: ``{"params": ..., "batch_stats": ...}`` of the run's model (abstract
        arrays are enough, e.g. ``unet_jax.model.factory.abstract_variables``).

    Returns:
      ``{"params": ..., "batch_stats": ..., "step": int}`` of numpy arrays.

    Raises:
      IncompatibleCheckpointError: the checkpoint holds a model of another configuration.
      CheckpointError: the checkpoint is damaged (its files or its digest).
    """
    step_dir = _absolute(step_dir)
    where = f"checkpoint {step_dir}"
    wanted = _variables_of(template)
    try:
        meta = json.loads((step_dir / "meta" / "metadata").read_text())
        # Orbax warns that a step's state has no _CHECKPOINT_METADATA (it never writes one
        # there): collected, so that loading a run prints nothing.
        with (
            background_errors_collected(),
            ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader,
        ):
            tree = reader.metadata(step_dir / "state").item_metadata.tree
        saved = _shapes({k: tree.get(k, {}) for k in VARIABLE_COLLECTIONS})
    except Exception as e:  # noqa: BLE001 - unreadable files or metadata are damage
        raise CheckpointError(f"{where} is damaged ({short_cause(e)})") from e
    _compare_shapes(saved, _shapes(wanted), where=where)
    try:
        with (
            background_errors_collected(),
            ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader,
        ):
            restored = reader.restore(
                step_dir / "state",
                args=ocp.args.PyTreeRestore(
                    item=wanted,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
                    partial_restore=True,
                ),
            )
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types on bad files
        raise CheckpointError(f"{where} is damaged ({short_cause(e)})") from e
    recorded = meta.get(VARIABLES_DIGEST_KEY)
    if recorded is None or recorded != state_digest(restored):
        raise CheckpointError(
            f"{where} is damaged (its contents do not match the SHA-256 recorded when it was saved)"
        )
    return {**_variables_of(restored), "step": int(step_dir.name)}


def _absolute(path: str | pathlib.Path) -> storage.AnyPath:
    """A local path made absolute (orbax misreads relative ones), or a URL's path."""
    path = storage.path(path)
    return path if storage.is_url(path) else path.absolute()


def _barrier(name: str) -> None:
    """Waits for every process (a no-op with one process: nothing to wait for)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(p): tuple(getattr(x, "shape", np.shape(x)) or ()) for p, x in leaves
    }


def _check_compatible(manager: ocp.CheckpointManager, step: int, template_dict: Any) -> None:
    """Raises IncompatibleCheckpointError if the saved tree differs from the template's.

    Checked on metadata before any array is read, so a checkpoint of another configuration
    is reported as such and never mistaken for (and set aside as) a damaged one.
    """
    try:
        saved = _shapes(manager.item_metadata(step)["state"])
    except Exception as e:  # noqa: BLE001 - unreadable metadata is damage
        raise CheckpointError(
            f"checkpoint step {step} in {manager.directory} is damaged ({short_cause(e)})"
        ) from e
    _compare_shapes(
        saved, _shapes(template_dict), where=f"checkpoint step {step} in {manager.directory}"
    )


def _compare_shapes(
    saved: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], *, where: str
) -> None:
    problems = [f"{k}: missing from the checkpoint" for k in expected.keys() - saved.keys()]
    problems += [f"{k}: not in this model" for k in saved.keys() - expected.keys()]
    problems += [
        f"{k}: checkpoint {saved[k]} vs this config {expected[k]}"
        for k in expected.keys() & saved.keys()
        if saved[k] != expected[k]
    ]
    if problems:
        shown = "; ".join(sorted(problems)[:5])
        raise IncompatibleCheckpointError(
            f"{where} was written by a model of another "
            f"configuration (num_classes, model.features, ...): {shown}"
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        )


def short_cause(error: BaseException) -> str:
    """The first line of an orbax/TensorStore error, without its TensorStore spec."""
    text = str(error).strip() or type(error).__name__
    text = re.split(r"\s*\[tensorstore_spec=|\s*See full TensorStore details", text)[0]
    line = text.splitlines()[0].strip() if text.splitlines() else text
    return line if len(line) <= 300 else line[:297] + "..."


class _Collect(logging.Filter):
    """Keeps the messages of warnings and errors instead of letting them be printed."""

    def __init__(self, into: list[str]) -> None:
        super().__init__()
        self._into = into

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self._into.append(short_cause(Exception(record.getMessage())))
        return False


@contextlib.contextmanager
def background_errors_collected() -> Iterator[list[str]]:
    """Orbax's and TensorStore's log records and background-thread exceptions, collected.

    A failed read or write is reported by orbax's threads many times over (logged
    tracebacks, one per array); the caller raises one error naming the cause instead. With
    ``UNET_JAX_VERBOSE=1`` nothing is collected and everything is printed as it comes.

    Yields:
      The messages collected so far (the first is usually the cause).
    """
    collected: list[str] = []
    if os.environ.get(VERBOSE_ENV_VAR):
        yield collected
        return
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio", "orbax")]
    collect = _Collect(collected)
    for logger in loggers:
        logger.addFilter(collect)
    previous_hook = threading.excepthook

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        collected.append(short_cause(args.exc_value or Exception(str(args.exc_type))))

    threading.excepthook = thread_hook
    try:
        yield collected
    finally:
        threading.excepthook = previous_hook
        for logger in loggers:
            logger.removeFilter(collect)


def _is_interrupted_save(path: storage.AnyPath) -> bool:
    """A folder of a save that never finished (see `remove_interrupted_saves`)."""
    if INTERRUPTED_SAVE.match(path.name):
        return path.is_dir()
    return path.name.isdigit() and path.is_dir() and not is_finished_step(path)


def _size(path: storage.AnyPath) -> int:
    """Bytes of the files below ``path`` (epath has no recursive glob on Cloud Storage)."""
    return sum(_size(p) if p.is_dir() else storage.file_size(p) for p in path.iterdir())


def remove_interrupted_saves(folder: storage.AnyPath) -> list[str]:
    """Removes what saves that never finished left in ``folder`` (process 0; all call it).

    On a local disk orbax writes ``<step>.orbax-checkpoint-tmp...`` and renames it to
    ``<step>`` when it is complete; on Cloud Storage it writes ``<step>/`` and
    ``commit_success.txt`` last. Such a folder was never finalised: nothing resumes from it.

    Returns:
      ``"best/22.orbax-checkpoint-tmp (21.0 MB)"`` for each folder removed.
    """
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if _is_interrupted_save(p))
    if not stale:
        return []
    _barrier(f"remove interrupted saves in {folder}: before")
    removed = []
    for path in stale:
        size = _size(path)
        if jax.process_index() == 0:
            storage.rmtree(path)
        removed.append(f"{folder.name}/{path.name} ({size / 1e6:.1f} MB)")
    _barrier(f"remove interrupted saves in {folder}: after")
    return removed
