"""Planning a training run against a wall-clock budget (pure arithmetic, no clock of its own).

The loop measures; this module decides how many steps fit and lays the learning-rate
schedule over them. The schedule is a linear warm-up and then a cosine from the peak to 0
whose *progress* (0 at the warm-up's end, 1 at the last step) is interpolated between
knots ``(step, progress)``. A first plan has the knots ``(warmup, 0), (total, 1)``: exactly
optax's ``warmup_cosine_decay_schedule``. A re-fit at step r keeps the learning rate of
step r and lays the rest of the cosine over the steps that now fit: knots
``(r, progress(r)), (new total, 1)``. Only the knots from the current step on matter, so a
plan never needs more than ``KNOTS`` of them (they live in the optimizer state, see
``unet_jax.train.budget_schedule``, so a re-fit needs no recompilation). Until the first
plan, the knots lie ``FAR`` beyond any run (`provisional_knots`): warm-up, then the peak.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from unet_jax.errors import ConfigError
from unet_jax.train.intervals import validations_between

PROBE_STEPS = 5  # timed steps after the first (compiling) one
RESERVE = 0.02  # fraction of the budget kept free for the end (last save, closing files)
TOLERANCE = 0.03  # re-fit when the predicted end misses the budget's by more than this fraction
VALIDATIONS = 5  # validations of a budget run whose config leaves eval_every_steps at -1
WARMUP_DIVISOR = 10  # the warm-up is at most the planned steps // this
KNOTS = 3
FAR = 2**30  # a step no run reaches: the provisional schedule's knots and intervals
FIELD = "time_budget_minutes"


def check_budget(value: Any) -> float | None:
    """The budget in seconds, or None when ``config.time_budget_minutes`` is off.

    Raises:
      ConfigError: not a finite number > 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"config.{FIELD}={value!r}: must be a number of minutes > 0")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"config.{FIELD}={value!r}: must be a number of minutes > 0")
    return float(value) * 60.0


@dataclasses.dataclass(frozen=True)
class Plan:
    """What fits in the budget.

    Attributes:
      budget_s: the whole budget, seconds.
      total_steps: the run's last step.
      warmup_steps: linear warm-up length.
      eval_every: validation (and checkpoint) interval, steps.
      step_s: measured seconds per training step.
      eval_s: seconds per validation (estimated until one is measured).
      knots: ``((step, cosine progress), ...)``, steps ascending, ``KNOTS`` of them.
      refits: how many times the plan was re-fitted.
    """

    budget_s: float
    total_steps: int
    warmup_steps: int
    eval_every: int
    step_s: float
    eval_s: float
    knots: tuple[tuple[int, float], ...]
    refits: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "knots": [list(k) for k in self.knots]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        knots = tuple((int(s), float(p)) for s, p in data["knots"])
        return cls(**{**data, "knots": knots})


def steps_that_fit(
    *, step: int, time_left_s: float, step_s: float, eval_s: float, eval_every: int
) -> int:
    """The largest last step ``T >= step`` whose steps and validations fit ``time_left_s``.

    Args:
      step: the steps already done.
      time_left_s: seconds left for training and validation.
      step_s, eval_s: seconds per training step and per validation.
      eval_every: validation interval (the last step always validates).

    Returns:
      T (``step`` itself when not even one step and its validation fit).
    """

    def cost(total: int) -> float:
        evals = validations_between(step, total, eval_every)
        return (total - step) * step_s + evals * eval_s

    per_step = step_s + eval_s / eval_every
    total = step + max(0, int((time_left_s - eval_s) / per_step))
    while total > step and cost(total) > time_left_s:
        total -= 1
    while cost(total + 1) <= time_left_s:
        total += 1
    return total


def _interp(step: float, steps: tuple[float, ...], progress: tuple[float, ...]) -> float:
    """``jnp.interp`` on the host: linear between knots, clamped at both ends."""
    if step <= steps[0]:
        return progress[0]
    for s0, s1, p0, p1 in zip(steps, steps[1:], progress, progress[1:], strict=False):
        if step <= s1:
            return p0 + (p1 - p0) * (step - s0) / max(s1 - s0, 1)
    return progress[-1]


class _HostMath:
    """What `warmup_cosine` uses of ``jax.numpy``, on Python floats (float64, exact)."""

    pi = math.pi
    cos = staticmethod(math.cos)
    minimum = staticmethod(min)
    maximum = staticmethod(max)
    interp = staticmethod(_interp)

    @staticmethod
    def where(condition: bool, if_true: float, if_false: float) -> float:
        return if_true if condition else if_false

    @staticmethod
    def clip(value: float, low: float, high: float) -> float:
        return min(high, max(low, value))


def progress_at(knots: tuple[tuple[int, float], ...], step: float) -> float:
    """The cosine progress at ``step``: linear between knots, clamped at both ends."""
    steps, progress = zip(*knots, strict=True)
    return _interp(step, steps, progress)


def warmup_cosine(step, *, peak, cosine, warmup, knot_steps, knot_progress, xp=_HostMath):
    """The learning rate of the update at ``step``: the one formula, on the host (Python
    floats) and in the optimizer state (``xp=jax.numpy``).

    Args:
      step: updates done before this one (optax's count).
      peak: the learning rate after the warm-up.
      cosine: decay along the knots' cosine (``schedule="warmup_cosine"``), else stay at peak.
      warmup: linear warm-up length (0: none).
      knot_steps, knot_progress: the cosine's knots, steps ascending.
      xp: the array module (``jax.numpy``), or the host's float math (default).

    Returns:
      The learning rate.
    """
    warm = xp.where(warmup > 0, xp.minimum(1.0, step / xp.maximum(warmup, 1)), 1)
    lr = peak * warm
    if cosine:
        progress = xp.clip(xp.interp(step, knot_steps, knot_progress), 0, 1)
        lr = lr * 0.5 * (1.0 + xp.cos(xp.pi * progress))
    return lr


def learning_rate(plan: Plan, step: int, *, peak: float, cosine: bool) -> float:
    """`warmup_cosine` at ``step`` under ``plan``, on the host."""
    steps, progress = zip(*plan.knots, strict=True)
    return warmup_cosine(
        step,
        peak=peak,
        cosine=cosine,
        warmup=plan.warmup_steps,
        knot_steps=steps,
        knot_progress=progress,
    )


def provisional_knots(warmup_steps: int) -> tuple[tuple[int, float], ...]:
    """The knots before the first plan: the cosine starts after the warm-up and ends
    ``FAR`` beyond any run, so the learning rate stays at its peak until a plan."""
    return _knots((warmup_steps, 0.0), FAR)


def _knots(start: tuple[int, float], total: int) -> tuple[tuple[int, float], ...]:
    """``start``, ``(total, 1)``, padded to ``KNOTS`` with steps after the end."""
    step, progress = start
    total = max(total, step + 1)
    return ((step, progress), (total, 1.0)) + tuple((total + i, 1.0) for i in range(1, KNOTS - 1))


def first_plan(
    *,
    budget_s: float,
    elapsed_s: float,
    step: int,
    step_s: float,
    eval_s: float,
    warmup_steps: int,
    eval_every: int | None,
) -> Plan:
    """The plan made after the probe steps.

    Args:
      budget_s: the whole budget.
      elapsed_s: seconds already spent (preparation, compilation, the probe steps).
      step: steps already done (the probe's).
      step_s: measured seconds per step.
      eval_s: estimated seconds per validation.
      warmup_steps: the config's warm-up; at most a tenth of the planned steps.
      eval_every: the config's validation interval, or None: ``VALIDATIONS`` in the run.

    Returns:
      The plan.
    """
    time_left = budget_s * (1.0 - RESERVE) - elapsed_s
    every = eval_every
    if every is None:  # the interval depends on the length, the length a little on it
        rough = steps_that_fit(
            step=step,
            time_left_s=time_left - VALIDATIONS * eval_s,
            step_s=step_s,
            eval_s=0.0,
            eval_every=1,
        )
        every = max(1, math.ceil(rough / VALIDATIONS))
    total = steps_that_fit(
        step=step, time_left_s=time_left, step_s=step_s, eval_s=eval_s, eval_every=every
    )
    warmup = min(warmup_steps, total // WARMUP_DIVISOR)
    return Plan(
        budget_s=budget_s,
        total_steps=total,
        warmup_steps=warmup,
        eval_every=every,
        step_s=step_s,
        eval_s=eval_s,
        knots=_knots((warmup, 0.0), total),
    )


def predicted_end_s(plan: Plan, *, step: int, elapsed_s: float) -> float:
    """Seconds from the start at which the plan ends, at its current step and eval times."""
    evals = validations_between(step, plan.total_steps, plan.eval_every)
    return elapsed_s + (plan.total_steps - step) * plan.step_s + evals * plan.eval_s


def recheck(
    plan: Plan, *, step: int, elapsed_s: float, step_s: float, eval_s: float
) -> Plan | None:
    """A re-fitted plan when the measured times move the end off the budget, else None.

    Args:
      plan: the current plan.
      step: steps done.
      elapsed_s: seconds spent so far.
      step_s, eval_s: the latest measured step and validation times.

    Returns:
      None when the predicted end is within ``TOLERANCE`` of the planned end; otherwise a
      plan with the steps that now fit, the current learning rate kept and the rest of the
      cosine laid over them.
    """
    measured = dataclasses.replace(plan, step_s=step_s, eval_s=eval_s)
    target = plan.budget_s * (1.0 - RESERVE)
    end = predicted_end_s(measured, step=step, elapsed_s=elapsed_s)
    if abs(end - target) <= TOLERANCE * plan.budget_s or step >= plan.total_steps:
        return None
    total = steps_that_fit(
        step=step,
        time_left_s=target - elapsed_s,
        step_s=step_s,
        eval_s=eval_s,
        eval_every=plan.eval_every,
    )
    if step < plan.warmup_steps:  # still warming up: the cosine starts after it
        knots = _knots((plan.warmup_steps, 0.0), total)
    else:
        knots = _knots((step, progress_at(plan.knots, step)), total)
    return dataclasses.replace(measured, total_steps=total, knots=knots, refits=plan.refits + 1)
