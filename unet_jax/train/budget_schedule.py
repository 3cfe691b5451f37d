"""The learning-rate schedule of a time-budget run, held in the optimizer state.

Its warm-up length and cosine knots (``unet_jax.train.budget``) are arrays of the
optimizer state, not constants of the compiled step: the loop sets them after measuring
the step time, and re-fits them during the run, without recompiling; a checkpoint carries
them, so a resumed run keeps its schedule.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from unet_jax.train.budget import warmup_cosine


class BudgetScheduleState(NamedTuple):
    """Update count, warm-up length and the cosine's knots (steps, progress)."""

    count: jax.Array
    warmup: jax.Array
    knot_steps: jax.Array
    knot_progress: jax.Array


def scale_by_budget_schedule(
    peak: float, *, cosine: bool, warmup: int, knots: tuple[tuple[int, float], ...]
) -> optax.GradientTransformation:
    """Scales updates by ``-learning_rate(count)``, like ``optax.scale_by_learning_rate``.

    Args:
      peak: the learning rate after the warm-up.
      cosine: decay along the knots' cosine (``schedule="warmup_cosine"``), else stay at peak.
      warmup, knots: the initial schedule (the loop replaces them, see `set_schedule`).

    Returns:
      The transformation.
    """

    def init(params: Any) -> BudgetScheduleState:
        del params
        return BudgetScheduleState(
            count=jnp.zeros([], jnp.int32),
            warmup=jnp.asarray(warmup, jnp.float32),
            knot_steps=jnp.asarray([s for s, _ in knots], jnp.float32),
            knot_progress=jnp.asarray([p for _, p in knots], jnp.float32),
        )

    def update(updates: Any, state: BudgetScheduleState, params: Any = None):
        del params
        lr = warmup_cosine(
            state.count.astype(jnp.float32),
            peak=peak,
            cosine=cosine,
            warmup=state.warmup,
            knot_steps=state.knot_steps,
            knot_progress=state.knot_progress,
            xp=jnp,
        )
        updates = jax.tree_util.tree_map(lambda u: (-lr * u).astype(u.dtype), updates)
        return updates, state._replace(count=state.count + 1)

    return optax.GradientTransformation(init, update)


def set_schedule(opt_state: Any, *, warmup: int, knots: tuple[tuple[int, float], ...]) -> Any:
    """``opt_state`` with every `BudgetScheduleState`'s warm-up and knots replaced.

    Raises:
      ValueError: the optimizer state holds no budget schedule.
    """
    found = []

    def replace(node: Any) -> Any:
        if not isinstance(node, BudgetScheduleState):
            return node
        found.append(node)
        return node._replace(
            warmup=jnp.asarray(warmup, node.warmup.dtype),
            knot_steps=jnp.asarray([s for s, _ in knots], node.knot_steps.dtype),
            knot_progress=jnp.asarray([p for _, p in knots], node.knot_progress.dtype),
        )

    new = jax.tree_util.tree_map(
        replace, opt_state, is_leaf=lambda x: isinstance(x, BudgetScheduleState)
    )
    if not found:
        raise ValueError("the optimizer state holds no time-budget schedule")
    return new
