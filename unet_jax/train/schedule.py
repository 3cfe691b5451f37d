"""The run's schedule, the one object the training loop asks what to do when.

Two kinds answer the same questions: `FixedSchedule` (the config's length and optax
learning rate) and a time budget's `unet_jax.train.time_budget.BudgetRun` (a length and a
learning rate planned from measured step times). The loop never asks which one it has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import ml_collections

from unet_jax.train import time_budget
from unet_jax.train.intervals import Intervals
from unet_jax.train.optimizer import create_learning_rate_schedule


class RunSchedule(Protocol):
    """What the loop asks (`FixedSchedule` documents each answer)."""

    @property
    def planned(self) -> bool: ...

    @property
    def intervals(self) -> Intervals: ...

    def learning_rate(self, step: int) -> float: ...

    def after_step(self, step: int, step_metrics: Any) -> Any: ...

    def validation_starts(self, step: int) -> None: ...

    def after_validation(self, step: int) -> Any: ...

    def install(self, driver: Any, device_state: Any) -> Any: ...

    def to_meta(self, meta: dict[str, Any]) -> dict[str, Any]: ...

    def status(self) -> str: ...


class FixedSchedule:
    """The config's schedule: a fixed length and intervals, optax's learning rate.

    Args:
      intervals: the run's intervals and length.
      learning_rate: optax's schedule of the run (``create_learning_rate_schedule``).
    """

    planned = True

    def __init__(self, intervals: Intervals, learning_rate: Callable[[int], Any]) -> None:
        self.intervals = intervals
        self._learning_rate = learning_rate

    def learning_rate(self, step: int) -> float:
        """The learning rate of the update at ``step``."""
        return float(self._learning_rate(step))

    def after_step(self, step: int, step_metrics: Any) -> None:
        """A changed plan after ``step`` (never: the schedule is fixed)."""
        del step, step_metrics

    def validation_starts(self, step: int) -> None:
        del step

    def after_validation(self, step: int) -> None:
        """A changed plan after the validation at ``step`` (never)."""
        del step

    def install(self, driver: Any, device_state: Any) -> Any:
        """The device state with the current plan in its optimizer state (unchanged)."""
        del driver
        return device_state

    def to_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        """``meta`` with what a resumed run needs of the schedule (nothing)."""
        return meta

    def status(self) -> str:
        """The progress bar's description (none)."""
        return ""


def create_schedule(
    config: ml_collections.ConfigDict,
    *,
    intervals: Intervals,
    budget_s: float | None,
    meta: dict[str, Any],
    start_step: int,
    started_at: float,
    validation_source: Any,
    workdir: Any,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
) -> RunSchedule:
    """The run's schedule: the config's, or a time budget's when ``budget_s`` is set.

    Args:
      config: the run configuration.
      intervals: the config's (``Intervals.from_config``).
      budget_s: ``time_budget.check_config``'s seconds, or None.
      meta: the restored checkpoint's meta (a resumed budget run's plan).
      start_step: the step training starts from.
      started_at: ``clock()`` at the process start (where a budget starts).
      validation_source: the validation split (a budget's estimate of its cost).
      workdir: where a budget writes ``budget.json`` (None: nowhere).
      log: prints a line.
      clock: seconds, monotonic.

    Returns:
      The schedule.
    """
    if budget_s is None:
        lr = create_learning_rate_schedule(config, total_steps=intervals.total_steps)
        return FixedSchedule(intervals, lr)
    return time_budget.BudgetRun(
        intervals=intervals,
        peak=config.learning_rate,
        cosine=config.schedule == "warmup_cosine",
        budget_s=budget_s,
        meta=meta,
        start_step=start_step,
        started_at=started_at,
        warmup_steps=config.warmup_steps,
        eval_every=config.eval_every_steps if config.eval_every_steps > 0 else None,
        validation_steps=time_budget.validation_cost_in_steps(validation_source, config),
        workdir=workdir,
        log=log,
        clock=clock,
    )
