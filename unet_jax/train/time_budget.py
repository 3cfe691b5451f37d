"""``config.time_budget_minutes`` in the training loop: measure, plan, re-check, store.

`BudgetRun` is the loop's schedule (``unet_jax.train.schedule``) of a budget run.

The budget counts from the start of the process (preparation and compilation included),
summed over the sessions of a resumed run. After the first (compiling) step and
``budget.PROBE_STEPS`` timed ones, the plan fixes the number of steps, the warm-up, the
cosine and the validation interval (written to ``WORKDIR/budget.json`` and into every
checkpoint). At each validation the measured step and validation times re-check it; a
plan that would end more than ``budget.TOLERANCE`` of the budget off is re-fitted. The
probe steps are ordinary training steps: nothing is thrown away.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from unet_jax.errors import ConfigError
from unet_jax.run.workdir import Workdir
from unet_jax.train import budget, budget_schedule
from unet_jax.train.budget import Plan
from unet_jax.train.intervals import Intervals


def check_config(config: ml_collections.ConfigDict) -> float | None:
    """The budget in seconds (None: off), checked with the fields it needs.

    Raises:
      ConfigError: a bad budget, or several processes.
    """
    seconds = budget.check_budget(config.get(budget.FIELD))
    if seconds is not None and jax.process_count() > 1:
        # Each process would time its own steps and could plan another length.
        raise ConfigError(
            f"config.{budget.FIELD} plans on one process; with several, set "
            "config.num_train_steps (e.g. the total_steps of a one-host run's budget.json)"
        )
    return seconds


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class BudgetRun:
    """The budget of one training run, fed by the loop (a `unet_jax.train.schedule`).

    Args:
      intervals: the config's (logging, steps per epoch); the plan sets the rest.
      peak: the learning rate after the warm-up.
      cosine: decay along the plan's cosine (``schedule="warmup_cosine"``).
      budget_s: the budget, seconds.
      meta: the restored checkpoint's meta (its ``"budget"`` holds the plan of a resumed run).
      start_step: the step training starts from.
      started_at: ``clock()`` at the start of this process.
      warmup_steps: the config's warm-up (capped by the plan).
      eval_every: the config's validation interval, or None (the plan chooses).
      validation_steps: a validation's cost in training steps (`validation_cost_in_steps`),
        for the estimate used until one is measured.
      workdir: where ``budget.json`` goes (``Workdir.budget_plan``; None: nowhere, e.g.
        other processes).
      log: prints a line.
      clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        intervals: Intervals,
        peak: float,
        cosine: bool,
        budget_s: float,
        meta: dict[str, Any],
        start_step: int,
        started_at: float,
        warmup_steps: int,
        eval_every: int | None,
        validation_steps: float,
        workdir: str | pathlib.Path | None,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._intervals = intervals
        self._peak = peak
        self._cosine = cosine
        self._started_at = started_at
        self._start_step = start_step
        self._warmup_steps = warmup_steps
        self._eval_every = eval_every
        self._validation_steps = validation_steps
        self._eval_s = 0.0
        self._created = clock()
        self._plan_file = None if workdir is None else Workdir.of(workdir).budget_plan
        self._log = log
        stored = meta.get("budget")
        self.plan: Plan | None = None if stored is None else Plan.from_json(stored["plan"])
        self._spent_before = 0.0 if stored is None else float(stored["spent_s"])
        self.budget_s = budget_s if self.plan is None else self.plan.budget_s
        self._probe_start: float | None = None
        self._mark: tuple[int, float] | None = None  # (step, time) after the last validation
        self._validation_start: float | None = None
        if self.plan is not None:
            log(
                f"Time budget: resuming the plan of {self.plan.total_steps} steps "
                f"({format_seconds(self.budget_s - self.elapsed_s())} left)"
            )

    def elapsed_s(self) -> float:
        """Seconds of the budget spent: earlier sessions' and this one's."""
        return self._spent_before + self._clock() - self._started_at

    def time_left(self) -> str:
        return format_seconds(self.budget_s - self.elapsed_s())

    @property
    def planned(self) -> bool:
        """Whether the length is known (after the probe steps)."""
        return self.plan is not None

    @property
    def intervals(self) -> Intervals:
        """The config's intervals with the plan's length and validation interval (checkpoints
        at validations); far beyond any run until the first plan."""
        every = budget.FAR if self.plan is None else self.plan.eval_every
        return dataclasses.replace(
            self._intervals,
            total_steps=budget.FAR if self.plan is None else self.plan.total_steps,
            eval_every=every,
            checkpoint_every=every,
        )

    def status(self) -> str:
        """The progress bar's description: the time left."""
        return f"{self.time_left()} left"

    def to_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        """``meta`` with the plan and the time spent, for a checkpoint."""
        if self.plan is None:
            return meta
        return {**meta, "budget": {"plan": self.plan.to_json(), "spent_s": self.elapsed_s()}}

    def _curve(self) -> Plan:
        """The plan, or before it the provisional schedule the optimizer starts with."""
        if self.plan is not None:
            return self.plan
        knots = budget.provisional_knots(self._warmup_steps)
        return Plan(
            budget_s=self.budget_s,
            total_steps=budget.FAR,
            warmup_steps=self._warmup_steps,
            eval_every=budget.FAR,
            step_s=0.0,
            eval_s=0.0,
            knots=knots,
        )

    def learning_rate(self, step: int) -> float:
        """The learning rate of the update at ``step``, as the optimizer state holds it."""
        return budget.learning_rate(self._curve(), step, peak=self._peak, cosine=self._cosine)

    def after_step(self, step: int, step_metrics: Any) -> Plan | None:
        """Times the probe steps; returns the first plan once they are done, else None."""
        if self.plan is not None:
            if self._mark is None and step == self._start_step + 1:  # resumed: time from here
                jax.block_until_ready(step_metrics)
                self._mark = (step, self._clock())
            return None
        if step == self._start_step + 1:  # the compiling step
            jax.block_until_ready(step_metrics)
            self._probe_start = self._clock()
            return None
        if step < self._start_step + 1 + budget.PROBE_STEPS:
            return None
        jax.block_until_ready(step_metrics)
        now = self._clock()
        step_s = (now - self._probe_start) / budget.PROBE_STEPS
        # Until one is measured: the validation's forward passes, and compiling them (taken
        # as half the training step's compilation).
        compile_s = self._probe_start - self._created
        self._eval_s = self._validation_steps * step_s + 0.5 * compile_s
        self.plan = budget.first_plan(
            budget_s=self.budget_s,
            elapsed_s=self.elapsed_s(),
            step=step,
            step_s=step_s,
            eval_s=self._eval_s,
            warmup_steps=self._warmup_steps,
            eval_every=self._eval_every,
        )
        self._mark = (step, now)
        self._announce("plan")
        if self.plan.total_steps <= step:
            self._log(
                f"Time budget: {format_seconds(self.elapsed_s())} went to preparation, "
                "compilation and the probe steps, so training stops here; give "
                f"config.{budget.FIELD} more time"
            )
        return self.plan

    def validation_starts(self, step: int) -> None:
        del step
        self._validation_start = self._clock()

    def after_validation(self, step: int) -> Plan | None:
        """Re-checks the plan with the interval's measured times; a re-fitted plan or None."""
        if self.plan is None or self._validation_start is None or self._mark is None:
            return None
        now = self._clock()
        mark_step, mark_time = self._mark
        self._eval_s = now - self._validation_start
        step_s = self.plan.step_s
        if step > mark_step:
            step_s = (self._validation_start - mark_time) / (step - mark_step)
        self._mark = (step, now)
        refit = budget.recheck(
            self.plan, step=step, elapsed_s=self.elapsed_s(), step_s=step_s, eval_s=self._eval_s
        )
        if refit is None:
            return None
        self.plan = refit
        self._announce(f"re-fit at step {step}")
        return self.plan

    def install(self, driver: Any, device_state: Any) -> Any:
        """The device state with the plan's warm-up and knots in its optimizer state."""
        state = driver.get_state(device_state)
        opt_state = budget_schedule.set_schedule(
            state.opt_state, warmup=self.plan.warmup_steps, knots=self.plan.knots
        )
        return driver.put_state(state.replace(opt_state=opt_state))

    def _announce(self, what: str) -> None:
        plan = self.plan
        self._log(
            f"Time budget {what}: {plan.total_steps} steps in all at {plan.step_s:.3f} s/step, "
            f"warm-up {plan.warmup_steps}, validation every {plan.eval_every} steps "
            f"(~{plan.eval_s:.1f} s each), {self.time_left()} of "
            f"{format_seconds(plan.budget_s)} left"
        )
        if self._plan_file is not None:
            text = json.dumps({**plan.to_json(), "elapsed_s": self.elapsed_s()}, indent=1)
            self._plan_file.write_text(text + "\n")


def validation_cost_in_steps(source: Any, config: ml_collections.ConfigDict) -> float:
    """A validation pass's cost in training steps: its pixels over a step's, a forward pass
    being about a third of a training step (an estimate, corrected by the first validation).
    """
    n = len(source)
    if n == 0:
        return 0.0
    height, width = config.image_size
    if config.input_mode == "crop":  # validation segments whole images at native scale
        label = source[0]["label"]
        height, width = label.shape[0], label.shape[1]
    return (
        n * height * width / (3.0 * config.batch_size * config.image_size[0] * config.image_size[1])
    )
