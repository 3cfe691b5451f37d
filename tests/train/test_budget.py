"""Planning against a time budget: the arithmetic with a fake clock, the schedule it lays
out (against optax's), re-fits, resuming a plan, and bad budgets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from unet_jax.errors import ConfigError
from unet_jax.train import budget, budget_schedule, intervals, time_budget


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _simulate(run: time_budget.BudgetRun, clock: FakeClock, *, step_s, eval_s, start=0):
    """Drives a BudgetRun as the loop does: steps take step_s(step) seconds and validations
    eval_s; returns (last step, elapsed seconds, [(step, plan) at each plan change])."""
    changes = []
    step = start
    total = run.intervals.total_steps
    while step < total:
        step += 1
        clock.now += step_s(step)
        if plan := run.after_step(step, None):
            changes.append((step, plan))
        total = run.intervals.total_steps
        if step % run.intervals.eval_every == 0 or step == total:
            run.validation_starts(step)
            clock.now += eval_s
            if plan := run.after_validation(step):
                changes.append((step, plan))
            total = run.intervals.total_steps
    return step, run.elapsed_s(), changes


# The config's intervals, as the loop passes them (the plan replaces length and intervals).
INTERVALS = intervals.Intervals(
    steps_per_epoch=10, total_steps=6, log_every=1, eval_every=3, checkpoint_every=3
)


def _run(clock, *, budget_s=600.0, meta=None, started_at=None, warmup=50, eval_every=None):
    return time_budget.BudgetRun(
        intervals=INTERVALS,
        peak=1.0,
        cosine=True,
        budget_s=budget_s,
        meta=meta or {},
        start_step=0,
        started_at=clock.now if started_at is None else started_at,
        warmup_steps=warmup,
        eval_every=eval_every,
        validation_steps=20.0,
        workdir=None,
        log=lambda *_: None,
        clock=clock,
    )


@pytest.fixture(autouse=True)
def _no_device_sync(monkeypatch):
    monkeypatch.setattr(jax, "block_until_ready", lambda x: x)


def test_steps_that_fit_is_the_largest_that_fits():
    # 10 s left, 0.5 s/step, validations of 2 s every 4 steps and at the end. By hand:
    # T=8: 4 s of steps + validations at 4, 8 (4 s) = 8 s; T=9: 4.5 s + 3 validations = 10.5 s.
    total = budget.steps_that_fit(step=0, time_left_s=10.0, step_s=0.5, eval_s=2.0, eval_every=4)
    assert total == 8
    # Already 3 steps in: 5 more fit in 5.5 s (8 s of steps... by hand: T=8: 2.5 s + 2 * 2 s).
    assert budget.steps_that_fit(step=3, time_left_s=6.5, step_s=0.5, eval_s=2.0, eval_every=4) == 8
    # Nothing fits: stop where it is.
    assert budget.steps_that_fit(step=3, time_left_s=1.0, step_s=0.5, eval_s=2.0, eval_every=4) == 3


def test_validations_between_counts_multiples_and_the_end():
    assert intervals.validations_between(0, 12, 4) == 3  # 4, 8, 12
    assert intervals.validations_between(0, 13, 4) == 4  # 4, 8, 12, 13
    assert intervals.validations_between(5, 8, 4) == 1  # 8
    assert intervals.validations_between(8, 8, 4) == 0


def test_schedule_fits_the_budget_with_a_fake_clock():
    clock = FakeClock()
    started = clock.now
    clock.now += 30.0  # preparation before the loop
    run = _run(clock, budget_s=600.0, started_at=started)

    def step_s(step):
        return 20.0 if step == 1 else 0.1  # the first step compiles

    last, elapsed, changes = _simulate(run, clock, step_s=step_s, eval_s=2.0)
    plan = run.plan
    assert changes[0][0] == 1 + budget.PROBE_STEPS  # planned after the timed probe steps
    assert plan.step_s == pytest.approx(0.1)
    assert last == plan.total_steps
    # It ends at the budget (less the reserve kept for closing), within the tolerance.
    assert 600.0 * (1 - budget.RESERVE - budget.TOLERANCE) <= elapsed <= 600.0
    # The first validation replaces the estimated validation time by the measured one.
    assert len(changes) <= 2
    evals = intervals.validations_between(0, last, plan.eval_every)
    assert budget.VALIDATIONS <= evals <= budget.VALIDATIONS + 1
    # Warm-up: the config's 50 steps (under a tenth of the run); the cosine ends at the end.
    first = changes[0][1]
    assert first.warmup_steps == plan.warmup_steps == 50
    lr = [budget.learning_rate(first, s, peak=1.0, cosine=True) for s in range(100)]
    assert lr[0] == 0.0 and lr[25] == pytest.approx(0.5) and lr[50] == pytest.approx(1.0)
    assert budget.learning_rate(plan, last, peak=1.0, cosine=True) == pytest.approx(0.0)
    assert budget.learning_rate(plan, last - 1, peak=1.0, cosine=True) > 0


def test_warmup_is_at_most_a_tenth_of_the_steps():
    plan = budget.first_plan(
        budget_s=60.0,
        elapsed_s=10.0,
        step=6,
        step_s=0.5,
        eval_s=1.0,
        warmup_steps=50,
        eval_every=None,
    )
    assert plan.warmup_steps == plan.total_steps // 10 < 50


def test_first_plan_schedule_is_optax_warmup_cosine():
    plan = budget.first_plan(
        budget_s=100.0,
        elapsed_s=0.0,
        step=0,
        step_s=0.1,
        eval_s=0.0,
        warmup_steps=40,
        eval_every=100,
    )
    want = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=3e-3,
        warmup_steps=40,
        decay_steps=plan.total_steps,
        end_value=0.0,
    )
    steps = np.arange(plan.total_steps + 1)
    got = [budget.learning_rate(plan, int(s), peak=3e-3, cosine=True) for s in steps]
    np.testing.assert_allclose(got, np.asarray(want(steps)), rtol=1e-5, atol=1e-9)


def test_the_optimizer_state_schedule_follows_the_plan():
    # The on-device schedule (knots in the optimizer state) against the pure one.
    plan = budget.first_plan(
        budget_s=20.0,
        elapsed_s=0.0,
        step=0,
        step_s=0.1,
        eval_s=0.0,
        warmup_steps=10,
        eval_every=50,
    )
    refit = budget.recheck(plan, step=60, elapsed_s=10.0, step_s=0.2, eval_s=0.0)
    assert refit is not None
    tx = budget_schedule.scale_by_budget_schedule(
        2.0, cosine=True, warmup=0, knots=((0, 0.0), (9, 1.0), (10, 1.0))
    )
    state = budget_schedule.set_schedule(
        tx.init(None), warmup=refit.warmup_steps, knots=refit.knots
    )
    grads = {"w": jnp.ones(3)}
    update = jax.jit(tx.update)
    for step in range(refit.total_steps + 2):
        updates, state = update(grads, state)
        want = budget.learning_rate(refit, step, peak=2.0, cosine=True)
        np.testing.assert_allclose(updates["w"], -want, rtol=1e-5, atol=1e-7)


def test_a_slower_machine_refits_and_keeps_the_learning_rate():
    clock = FakeClock()
    run = _run(clock, budget_s=600.0)

    def step_s(step):
        return 0.1 if step < 1500 else 0.2  # the machine halves its speed at step 1500

    last, elapsed, changes = _simulate(run, clock, step_s=step_s, eval_s=2.0)
    first = changes[0][1]
    refits = [(s, p) for s, p in changes[1:]]
    assert refits and refits[0][1].total_steps < first.total_steps
    assert elapsed <= 600.0 * 1.05  # never more than 5% over
    assert elapsed >= 600.0 * (1 - budget.RESERVE - budget.TOLERANCE)
    # The learning rate carries on where it was, and the cosine ends at the new end.
    before = first
    for refit_step, plan in refits:
        old = budget.learning_rate(before, refit_step, peak=1.0, cosine=True)
        new = budget.learning_rate(plan, refit_step, peak=1.0, cosine=True)
        assert new == pytest.approx(old, rel=1e-9)
        before = plan
    assert last == run.plan.total_steps
    assert budget.learning_rate(run.plan, last, peak=1.0, cosine=True) == pytest.approx(0.0)


def test_a_faster_machine_refits_to_more_steps():
    clock = FakeClock()
    run = _run(clock, budget_s=600.0)
    last, elapsed, changes = _simulate(
        run, clock, step_s=lambda s: 0.2 if s < 1000 else 0.1, eval_s=2.0
    )
    assert last > changes[0][1].total_steps
    assert 600.0 * (1 - budget.RESERVE - budget.TOLERANCE) <= elapsed <= 600.0 * 1.05


def test_a_resumed_run_keeps_its_plan_and_its_spent_time():
    clock = FakeClock()
    run = _run(clock, budget_s=600.0)
    for step in range(1, 200):
        clock.now += 0.1
        run.after_step(step, None)
    meta = run.to_meta({"best_value": None})
    assert meta["best_value"] is None
    spent = run.elapsed_s()

    clock.now += 1000.0  # down time does not count
    resumed = time_budget.BudgetRun(
        intervals=INTERVALS,
        peak=1.0,
        cosine=True,
        budget_s=1.0,  # the stored plan's budget wins
        meta=meta,
        start_step=199,
        started_at=clock.now,
        warmup_steps=0,
        eval_every=3,
        validation_steps=0.0,
        workdir=None,
        log=lambda *_: None,
        clock=clock,
    )
    assert resumed.plan == run.plan
    assert resumed.budget_s == 600.0
    assert resumed.elapsed_s() == pytest.approx(spent)
    assert resumed.after_step(200, None) is None  # no new probe, no new plan


def test_the_plan_survives_json():
    plan = budget.first_plan(
        budget_s=300.0,
        elapsed_s=20.0,
        step=6,
        step_s=0.3,
        eval_s=4.0,
        warmup_steps=100,
        eval_every=None,
    )
    assert budget.Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("value", [0, 0.0, -5, float("nan"), float("inf"), "abc", True])
def test_bad_budgets_are_config_errors_naming_the_field(value):
    with pytest.raises(ConfigError, match=r"config\.time_budget_minutes=.*minutes > 0"):
        budget.check_budget(value)


def test_no_budget_is_none_and_minutes_are_seconds():
    assert budget.check_budget(None) is None
    assert budget.check_budget(2.5) == 150.0
    assert math.isclose(budget.check_budget(1), 60.0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_resnet_encoder_trains_under_a_budget_as_on_a_fixed_schedule(optimizer):
    # Oracle: the fixed path (optax's warmup-cosine over T steps, the encoder's multiple
    # and frozen steps). A budget whose plan is a first plan of T steps lays the same
    # learning rates, so its optimizer must update every parameter as the fixed one does.
    from unet_jax.configs import tiny
    from unet_jax.model.resnet import ENCODER_MODULE
    from unet_jax.train.optimizer import create_optimizer

    config = tiny.get_config()
    config.model.encoder = "resnet18"
    config.optimizer = optimizer
    config.schedule = "warmup_cosine"
    config.learning_rate = 0.5
    config.warmup_steps = 3
    config.encoder_lr_multiplier = 0.25
    config.encoder_frozen_steps = 2
    plan = budget.first_plan(
        budget_s=1.6, elapsed_s=0.0, step=0, step_s=0.1, eval_s=0.0, warmup_steps=3, eval_every=50
    )
    assert plan.total_steps > 10 and plan.warmup_steps == 1  # a tenth of the 15 steps
    config.warmup_steps = plan.warmup_steps
    config.time_budget_minutes = 1.0
    assert time_budget.check_config(config) == 60.0  # a ResNet encoder is welcome
    params = {ENCODER_MODULE: {"w": jnp.ones(3)}, "Conv_0": {"w": jnp.ones(2)}}
    under_budget = create_optimizer(config, total_steps=1)
    budget_state = budget_schedule.set_schedule(
        under_budget.init(params), warmup=plan.warmup_steps, knots=plan.knots
    )
    config.time_budget_minutes = None
    fixed = create_optimizer(config, total_steps=plan.total_steps)
    fixed_state = fixed.init(params)
    rng = np.random.default_rng(0)
    encoder_moved = []
    for step in range(plan.total_steps + 2):
        grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
        want, fixed_state = fixed.update(grads, fixed_state, params)
        got, budget_state = under_budget.update(grads, budget_state, params)
        for name in params:
            np.testing.assert_allclose(
                got[name]["w"], want[name]["w"], rtol=2e-5, atol=1e-7, err_msg=f"{name} {step}"
            )
        encoder_moved.append(bool(np.any(np.asarray(got[ENCODER_MODULE]["w"]) != 0)))
    assert encoder_moved[:3] == [False, False, True]  # frozen for 2 steps, then thawed


def test_due_steps_are_counted_by_validations_between():
    # The closed form against the rule itself, step by step.
    for start, end, every in [(0, 12, 4), (0, 13, 4), (5, 8, 4), (3, 40, 7), (0, 1, 5), (9, 9, 2)]:
        want = sum(intervals.due(s, every, end) for s in range(start + 1, end + 1))
        assert intervals.validations_between(start, end, every) == want
