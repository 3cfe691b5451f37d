"""The training loop: ``train_and_evaluate(config, workdir)``.

Resumes automatically from the newest checkpoint in ``workdir``; saves periodically, at
the end, on SIGTERM (preemption) and whenever validation improves the best metric.
Only process 0 logs and writes files other than checkpoints (orbax coordinates those).
"""

import dataclasses
import math
import pathlib
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from unet_jax.data import normalisation
from unet_jax.data import pipeline as input_pipeline
from unet_jax.data import sources as data_sources
from unet_jax.data.classes import ClassSet
from unet_jax.data.run_data import (
    check_resumed_classes,
    open_training_data,
)
from unet_jax.errors import PreemptedError
from unet_jax.evaluation.evaluator import Evaluator, Geometry, device_predictor, flat_scalars
from unet_jax.model import encoder_weights
from unet_jax.model.factory import create_model
from unet_jax.model.outputs import class_logits
from unet_jax.run import checkpointing, metric_writers
from unet_jax.run import info as run_info
from unet_jax.run.classes_file import write_run_classes
from unet_jax.run.workdir import Workdir, create_writable
from unet_jax.train import (
    class_weights,
    config_checks,
    init_from,
    losses,
    parallel,
    resume_checks,
    time_budget,
)
from unet_jax.train.init_state import create_train_state
from unet_jax.train.intervals import Intervals
from unet_jax.train.schedule import RunSchedule, create_schedule

# A SIGTERM is answered at the next step boundary (save, exit 143); a phase that reaches
# none within this many seconds (a long validation, a compilation, a stalled input) is
# stopped without saving, still within a cluster's usual 30 s before SIGKILL.
PREEMPTION_GRACE_S = 20


class PreemptionGuard:
    """Decides when to save and stop because of SIGTERM (preemption).

    One process: a SIGTERM handler sets a flag that the loop polls at every step, and arms
    an alarm: no step boundary within ``PREEMPTION_GRACE_S`` raises `PreemptedError`
    (exit 143, nothing saved) wherever the loop is. Several
    processes: JAX's preemption service (started by ``jax.distributed.initialize``) catches
    SIGTERM on any host and ``multihost_utils.reached_preemption_sync_point`` returns True
    on every host at the same step, so all save that step together however short the grace
    period. Where that service is unavailable, the flags are exchanged at logging steps.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._previous_alarm = None
        self._sync_point = jax.process_count() > 1

    def __enter__(self) -> "PreemptionGuard":
        if self._sync_point:
            return self  # JAX's own handler must see SIGTERM: do not replace it
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        del signum, frame
        self.requested = True
        if jax.process_count() == 1 and self._previous_alarm is None:
            self._previous_alarm = signal.signal(signal.SIGALRM, self._too_late)
            signal.alarm(PREEMPTION_GRACE_S)

    def _too_late(self, signum, frame) -> None:
        del signum, frame
        raise PreemptedError(
            f"SIGTERM: no training step ended within {PREEMPTION_GRACE_S} s, so nothing was "
            "saved; run again to resume from the last checkpoint"
        )

    def _disarm(self) -> None:
        if self._previous_alarm is not None:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, self._previous_alarm)
            self._previous_alarm = None

    def __exit__(self, *exc) -> None:
        self._disarm()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def should_stop(self, step: int, *, collective: bool) -> bool:
        """Whether to save and stop at ``step`` (every process calls this at every step).

        Args:
          step: the step just dispatched.
          collective: a logging step, where all processes may exchange flags (fallback).
        """
        if jax.process_count() == 1:
            if self.requested:
                self._disarm()  # the loop answers: the save may take its time
            return self.requested
        if self._sync_point:
            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError:  # no preemption service: exchange flags instead
                self._sync_point = False
                self._previous = signal.signal(signal.SIGTERM, self._handle)
        if not collective:
            return False
        flags = multihost_utils.process_allgather(np.array(self.requested, np.int32))
        return bool(np.asarray(flags).any())


def make_loss_fn(
    config: ml_collections.ConfigDict,
    *,
    pixel_counts: np.ndarray | None = None,
    present_pixel_counts: np.ndarray | None = None,
) -> losses.LossFn:
    """The configured loss as ``(logits, labels) -> per-example [B]``.

    Args:
      config: uses ``loss``, ``num_classes``, ``model.output_activation``,
        ``class_weights``, ``dice_smooth``, ``ce_weight``, ``focal_gamma``, ``focal_weight``.
      pixel_counts: the training split's ``[C]`` labelled pixels per class; needed when
        ``class_weights`` names a method (``unet_jax.train.class_weights``).
      present_pixel_counts: ``[C]`` labelled pixels of the training images containing each
        class; needed for ``class_weights="median_frequency"``.

    Returns:
      The loss function.
    """
    kwargs: dict[str, Any] = {
        "num_classes": config.num_classes,
        "activation": config.model.output_activation,
    }
    weights = class_weights.resolve_class_weights(
        config.class_weights,
        num_classes=config.num_classes,
        pixel_counts=pixel_counts,
        present_pixel_counts=present_pixel_counts,
    )
    if weights is not None:
        kwargs["class_weights"] = weights
    # Each config field goes to the losses that take its option (by their signatures).
    fields = {
        "smooth": config.dice_smooth,
        "ce_weight": config.ce_weight,
        "gamma": config.focal_gamma,
        "focal_weight": config.focal_weight,
    }
    accepted = losses.loss_options(config.loss)
    kwargs.update({k: v for k, v in fields.items() if k in accepted})
    base = losses.get_loss_fn(config.loss, **kwargs)
    # A 1-channel sigmoid head (binary data) is scored as its two class logits [-z, z].
    return lambda logits, labels: base(class_logits(logits), labels)


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


class MetricWindow:
    """Step metrics kept on the device until a logging step (no host sync in between).

    ``flush`` fetches them, stops on a non-finite step, writes the window's means and its
    throughput, and advances the progress bar by the steps that have finished. ``restart``
    starts a new timing window after validation or a checkpoint, so that throughput counts
    training time only.
    """

    def __init__(
        self,
        *,
        driver: parallel.Driver,
        writer: metric_writers.MetricWriter,
        learning_rate: Callable[[int], float],
        steps_per_epoch: int,
        images_per_step: int,
        progress: tqdm.tqdm,
        last_good: Any,
        source_counts: Any = None,
    ) -> None:
        self._driver = driver
        self._writer = writer
        self._learning_rate = learning_rate
        self._steps_per_epoch = steps_per_epoch
        self._images_per_step = images_per_step
        self._progress = progress
        self._last_good = last_good  # () -> description of the last good checkpoint
        self._source_counts = source_counts  # (first, last step) -> a mixture's counts
        self._pending: list[dict[str, Any]] = []
        self.restart()

    def restart(self) -> None:
        self._start = time.perf_counter()

    def add(self, step_metrics: dict[str, Any]) -> None:
        self._pending.append(step_metrics)

    def flush(self, step: int) -> None:
        """Fetches the pending metrics of the steps up to ``step`` and logs them.

        Raises:
          FloatingPointError: one of them was not finite (the step was not applied).
        """
        if not self._pending:
            return
        fetched = [self._driver.get_metrics(m) for m in self._pending]
        self._pending = []
        for offset, m in enumerate(fetched):
            if not int(m["finite"]):
                bad_step = step - len(fetched) + offset + 1
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {bad_step} (loss={float(m['loss'])}, "
                    f"grad_norm={float(m['grad_norm'])}); training stopped. The last good "
                    f"checkpoint is {self._last_good()}; lower config.learning_rate or check "
                    "the data before resuming"
                )
        elapsed = time.perf_counter() - self._start
        scalars = {
            "loss": float(np.mean([float(m["loss"]) for m in fetched])),
            "grad_norm": float(np.mean([float(m["grad_norm"]) for m in fetched])),
            "learning_rate": self._learning_rate(step),
            "images_per_sec": len(fetched) * self._images_per_step / max(elapsed, 1e-9),
            "epoch": step / self._steps_per_epoch,
        }
        if self._source_counts is not None:
            scalars.update(self._source_counts(step - len(fetched) + 1, step))
        self._writer.write(step, "train", scalars)
        self._progress.update(len(fetched))
        self._progress.set_postfix(
            loss=f"{scalars['loss']:.4f}", img_s=f"{scalars['images_per_sec']:.1f}"
        )
        self.restart()


def restore_or_initialise(
    config: ml_collections.ConfigDict,
    state: Any,
    *,
    checkpointer: checkpointing.Checkpointer,
    classes: ClassSet,
    workdir: pathlib.Path,
    log: Any,
) -> tuple[Any, dict[str, Any]]:
    """The state to start from: the newest checkpoint, else ``init_from``, else fresh.

    A fresh state's ResNet encoder starts from ``model.encoder_weights`` when given.

    Returns:
      ``(state, meta)``: meta tracks the best metric and carries the classes (and the
      fine-tuning source) into every checkpoint.
    """
    meta: dict[str, Any] = {"best_value": None, "best_step": None, "classes": classes.to_json()}
    if checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
        check_resumed_classes(meta, classes, workdir=workdir)
        meta["classes"] = classes.to_json()
        log(f"Resuming from step {int(state.step)} ({checkpointer.latest.directory})")
    elif config.get("init_from"):
        # Only before this run has a checkpoint: a restart resumes from its own weights.
        state, meta["init_from"] = init_from.initialise(
            state, config.init_from, classes=classes, log=log
        )
    elif config.model.get("encoder_weights"):
        state, meta["encoder_weights"] = encoder_weights.initialise(
            state, config.model.encoder_weights, encoder=config.model.encoder, log=log
        )
    return state, meta


def validate_and_track_best(
    driver: parallel.Driver,
    device_state: Any,
    *,
    evaluator: Evaluator,
    config: ml_collections.ConfigDict,
    meta: dict[str, Any],
    step: int,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Validates (the driver's eval step on the devices) and updates the best-metric tracker.

    Returns:
      ``(validation results, meta, improved)``.
    """
    validation = evaluator.run(device_predictor(driver, device_state))
    improved = _is_better(validation.get(config.best_metric), meta["best_value"], config.best_mode)
    if improved:
        meta = {**meta, "best_value": validation[config.best_metric], "best_step": step}
    return validation, meta, improved


@dataclasses.dataclass
class Session:
    """One training session, set up for the loop: what it steps, validates, logs and saves.

    Attributes:
      config, workdir: the run's.
      log: prints a line (process 0 only).
      is_main: process 0.
      driver, evaluator, checkpointer, writer: the step functions, validation, checkpoints
        and metrics.
      schedule: when to do what, and the learning rate (fixed or a time budget's).
      data_iterator: the training batches from ``start_step`` on.
      progress, window: the progress bar and the metrics awaiting a logging step.
      device_state: the train state on the devices (donated at every step).
      meta: the best-metric tracker and what every checkpoint carries.
      start_step: the step training starts from.
    """

    config: ml_collections.ConfigDict
    workdir: pathlib.Path
    log: Callable[[str], None]
    is_main: bool
    driver: parallel.Driver
    evaluator: Evaluator
    checkpointer: checkpointing.Checkpointer
    writer: metric_writers.MetricWriter
    schedule: RunSchedule
    data_iterator: Any
    progress: tqdm.tqdm
    window: MetricWindow
    device_state: Any
    meta: dict[str, Any]
    start_step: int

    def save(self, *, best: bool = False) -> None:
        meta = self.schedule.to_meta(self.meta)
        self.checkpointer.save(self.driver.get_state(self.device_state), meta=meta, best=best)

    def adopt_plan(self) -> None:
        """Puts the schedule's new plan into the optimizer state and the progress bar."""
        self.device_state = self.schedule.install(self.driver, self.device_state)
        self.progress.total = self.schedule.intervals.total_steps

    def validate(self, step: int) -> dict[str, Any]:
        """Validates at ``step``, logs, re-checks the schedule and saves an improvement."""
        self.window.flush(step)
        self.schedule.validation_starts(step)
        validation, self.meta, improved = validate_and_track_best(
            self.driver,
            self.device_state,
            evaluator=self.evaluator,
            config=self.config,
            meta=self.meta,
            step=step,
        )
        self.writer.write(step, "validation", flat_scalars(validation))
        if self.is_main:
            tqdm.tqdm.write(
                f"step {step}: validation loss {validation['loss']:.4f}, "
                f"mIoU {validation['mean_iou']:.4f}" + (" (best)" if improved else "")
            )
        if self.schedule.after_validation(step):
            self.adopt_plan()
        if improved:
            self.save(best=True)
        self.window.restart()
        return validation

    def close(self) -> None:
        """Releases the grain workers, the TensorBoard writer and the orbax managers, and
        ends the progress bar's line."""
        self.progress.close()
        self.writer.close()
        self.checkpointer.close()
        self.data_iterator.close()


def _checked_data(
    config: ml_collections.ConfigDict,
    workdir: pathlib.Path,
    *,
    prepare_fn: data_sources.PrepareFn | None,
    sources: dict[str, Any] | None,
    classes: ClassSet | None,
    is_main: bool,
) -> tuple[ml_collections.ConfigDict, dict[str, Any], ClassSet, Any, float | None, Intervals]:
    """Checks the config, the workdir and the data before any work.

    Returns:
      ``(config, sources, classes, pixel statistics, budget seconds or None, intervals)``.
    """
    config = config_checks.expand_shorthands(config)
    config_checks.validate_config(
        config,
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
        builders=prepare_fn,
    )
    budget_s = time_budget.check_config(config)
    if is_main:
        create_writable(workdir)
    resume_checks.check_same_data(config, workdir)
    resume_checks.check_same_budget(config, workdir)
    config, sources, classes, stats = open_training_data(
        config, prepare_fn=prepare_fn, sources=sources, classes=classes
    )
    config_checks.validate_against_data(config, classes)
    resume_checks.check_same_model(config, classes, workdir)
    if is_main:
        write_run_classes(workdir, classes)
    intervals = Intervals.from_config(config, num_examples=len(sources["train"]))
    return config, sources, classes, stats, budget_s, intervals


def _driver_and_evaluator(
    config: ml_collections.ConfigDict, sources: dict[str, Any], classes: ClassSet, stats: Any
) -> tuple[parallel.Driver, Evaluator]:
    """The configured loss, model and step functions, and the validation of the run."""
    loss_fn = make_loss_fn(
        config,
        pixel_counts=None if stats is None else np.asarray(stats["pixel_counts"]),
        present_pixel_counts=None if stats is None else np.asarray(stats["present_pixel_counts"]),
    )
    model = create_model(config, bn_axis_name=parallel.AXIS)
    driver = parallel.make_driver(
        config.driver, model_apply=model.apply, loss_fn=loss_fn, num_classes=config.num_classes
    )
    # eval.py scores the run in the same geometry (Geometry.of_run).
    evaluator = Evaluator(
        sources["validation"],
        geometry=Geometry.of_run(config),
        class_names=classes.names,
        batch_size=config.eval_batch_size,
        layout=driver.layout,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_local_devices=jax.local_device_count(),
    )
    return driver, evaluator


def _train_loader(
    config: ml_collections.ConfigDict, train: Any, driver: parallel.Driver, start_step: int
) -> Any:
    """The training batches from ``start_step`` on: batch k depends only on the seed, the
    data and k (resume needs only k)."""
    return input_pipeline.create_train_loader(
        train,
        global_batch_size=config.batch_size,
        image_size=tuple(config.image_size),
        seed=config.seed,
        augment={
            **config.augment.to_dict(),
            "input_mode": config.input_mode,
            "band_stats": normalisation.augment_stats(config.model),
        },
        worker_count=config.worker_count,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_local_devices=jax.local_device_count(),
        layout=driver.layout,
        start_step=start_step,
    )


def set_up(
    config: ml_collections.ConfigDict,
    workdir: pathlib.Path,
    *,
    prepare_fn: data_sources.PrepareFn | None,
    sources: dict[str, Any] | None,
    classes: ClassSet | None,
    started_at: float,
) -> Session:
    """Checks, opens the data, builds the model and restores or initialises the state.

    Args and raises: as `train_and_evaluate`.
    """
    is_main = jax.process_index() == 0
    log = print if is_main else (lambda *_: None)
    config, sources, classes, stats, budget_s, intervals = _checked_data(
        config, workdir, prepare_fn=prepare_fn, sources=sources, classes=classes, is_main=is_main
    )
    driver, evaluator = _driver_and_evaluator(config, sources, classes, stats)
    state = create_train_state(
        config, rng=jax.random.key(config.seed), total_steps=intervals.total_steps
    )
    checkpointer = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
    state, meta = restore_or_initialise(
        config, state, checkpointer=checkpointer, classes=classes, workdir=workdir, log=log
    )
    start_step = int(state.step)
    schedule = create_schedule(
        config,
        intervals=intervals,
        budget_s=budget_s,
        meta=meta,
        start_step=start_step,
        started_at=started_at,
        validation_source=sources["validation"],
        workdir=workdir if is_main else None,
        log=log,
    )
    data_iterator = iter(_train_loader(config, sources["train"], driver, start_step))
    writer = metric_writers.MetricWriter(workdir, enabled=is_main, resume_step=start_step)
    if is_main:
        # The checkpoints' meta carries init_from, so a resumed run still names its source.
        extra = {k: meta.get(k) for k in ("init_from", "encoder_weights")}
        run_info.write(workdir, config, extra=extra)
    progress = tqdm.tqdm(
        total=schedule.intervals.total_steps if schedule.planned else None,
        initial=start_step,
        unit="step",
        dynamic_ncols=True,
        disable=not (is_main and config.progress_bar),
    )
    window = MetricWindow(
        driver=driver,
        writer=writer,
        learning_rate=schedule.learning_rate,
        steps_per_epoch=intervals.steps_per_epoch,
        images_per_step=config.batch_size,
        progress=progress,
        last_good=lambda: f"step {checkpointer.latest_step()} in {workdir}",
        source_counts=input_pipeline.source_counter(
            sources["train"], global_batch_size=config.batch_size
        ),
    )
    return Session(
        config=config,
        workdir=workdir,
        log=log,
        is_main=is_main,
        driver=driver,
        evaluator=evaluator,
        checkpointer=checkpointer,
        writer=writer,
        schedule=schedule,
        data_iterator=data_iterator,
        progress=progress,
        window=window,
        device_state=driver.put_state(state),  # donated at every step
        meta=meta,
        start_step=start_step,
    )


def run_loop(session: Session) -> dict[str, Any]:
    """Trains from ``session.start_step`` to the schedule's end (or a SIGTERM).

    Returns:
      As `train_and_evaluate`.
    """
    s = session
    batches = parallel.prefetch(s.data_iterator, s.driver.put_batch)
    validation, preempted = None, False
    try:
        with PreemptionGuard() as guard:
            step = s.start_step
            while step < s.schedule.intervals.total_steps:  # a time budget may move the end
                step += 1
                batch = next(batches)
                s.device_state, step_metrics = s.driver.train_step(s.device_state, batch)
                s.window.add(step_metrics)
                if s.schedule.after_step(step, step_metrics):
                    s.adopt_plan()
                intervals = s.schedule.intervals
                log_now = intervals.due(step, intervals.log_every)
                if log_now:
                    s.window.flush(step)
                if guard.should_stop(step, collective=log_now):
                    s.window.flush(step)
                    s.save()
                    preempted = True
                    s.log(f"\nSIGTERM: saved step {step} to {s.workdir}; run again to resume")
                    break
                if intervals.due(step, intervals.eval_every):
                    validation = s.validate(step)
                intervals = s.schedule.intervals  # a validation may re-fit the plan
                if intervals.due(step, intervals.checkpoint_every):
                    s.window.flush(step)
                    s.save()
                    s.window.restart()
                s.progress.set_description(s.schedule.status(), refresh=False)
    finally:
        s.close()  # also on errors
    return {
        "step": int(s.driver.get_state(s.device_state).step),
        "preempted": preempted,
        "validation": validation,
        "best": {"step": s.meta["best_step"], "value": s.meta["best_value"]},
    }


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    prepare_fn: data_sources.PrepareFn | None = None,
    sources: dict[str, Any] | None = None,
    classes: ClassSet | None = None,
    started_at: float | None = None,
) -> dict[str, Any]:
    """Trains (resuming from ``workdir`` when it holds checkpoints) and evaluates.

    Args:
      config: the run configuration (see ``unet_jax/configs/default.py``).
      workdir: where checkpoints, metrics, TensorBoard events and run info go.
      prepare_fn: prepares the data set on first use (train.py passes the TFDS builder's).
      sources: {"train": ..., "validation": ...} random-access sources to use instead of
        ``config.dataset`` (tests, custom data).
      classes: the classes of ``sources`` (default ``class0..``); ignored without them.
      started_at: ``time.monotonic()`` at the process start, where a time budget starts
        (default: now).

    Returns:
      ``{"step", "preempted", "validation": last validation results or None,
      "best": {"step", "value"}}``.

    Raises:
      ConfigError, DataConfigError: the config cannot work (checked before any work).
      FloatingPointError: a non-finite loss or gradient; the last good checkpoint stays.
    """
    started_at = time.monotonic() if started_at is None else started_at
    session = set_up(
        config,
        Workdir.of(workdir).root,  # a local path or a URL (gs://...)
        prepare_fn=prepare_fn,
        sources=sources,
        classes=classes,
        started_at=started_at,
    )
    return run_loop(session)
