"""A time-budget run through train_and_evaluate: the plan reaches budget.json, the
checkpoints and the optimizer state, and a second start keeps it; bad budgets exit 2."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.fake_data import make_examples
from unet_jax.configs import tiny
from unet_jax.run.checkpointing import Checkpointer
from unet_jax.train import budget, budget_schedule
from unet_jax.train import loop as train_lib
from unet_jax.train.init_state import create_train_state


def _budget_states(opt_state):
    found = []
    jax.tree_util.tree_map(
        found.append,
        opt_state,
        is_leaf=lambda x: isinstance(x, budget_schedule.BudgetScheduleState),
    )
    return [s for s in found if isinstance(s, budget_schedule.BudgetScheduleState)]


@pytest.mark.slow
def test_budget_run_records_its_plan_and_a_restart_keeps_it(tmp_path):
    config = tiny.get_config()
    # 12 s: the assertions need a plan, its checkpoint and a restart, not a long run (a
    # budget spent by compilation still plans: it stops after the probe steps).
    config.time_budget_minutes = 0.2
    config.eval_every_steps = -1
    sources = {"train": make_examples(40, seed=1), "validation": make_examples(8, seed=2)}
    result = train_lib.train_and_evaluate(config, tmp_path, sources=sources)

    plan = budget.Plan.from_json(
        {
            k: v
            for k, v in json.loads((tmp_path / "budget.json").read_text()).items()
            if k != "elapsed_s"
        }
    )
    assert result["step"] == plan.total_steps >= 1 + budget.PROBE_STEPS
    checkpointer = Checkpointer(tmp_path, keep=3)
    template = create_train_state(config, rng=jax.random.key(0), total_steps=1)
    state, meta = checkpointer.restore(template)
    checkpointer.close()
    assert budget.Plan.from_json(meta["budget"]["plan"]) == plan
    assert int(state.step) == plan.total_steps
    (held,) = _budget_states(state.opt_state)
    np.testing.assert_allclose(held.knot_steps, [s for s, _ in plan.knots])
    np.testing.assert_allclose(held.knot_progress, [p for _, p in plan.knots], rtol=1e-6)
    assert float(held.warmup) == plan.warmup_steps

    again = train_lib.train_and_evaluate(config, tmp_path, sources=sources)
    assert again["step"] == plan.total_steps  # resumed at its end: nothing re-planned


@pytest.mark.parametrize("value", ["abc", pytest.param("0", marks=pytest.mark.slow)])
def test_bad_budget_on_the_command_line_is_one_line_exit_2(tmp_path, value):
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--workdir",
            str(tmp_path / "run"),
            "--config",
            "unet_jax/configs/tiny.py",
            f"--config.time_budget_minutes={value}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "time_budget_minutes" in result.stderr
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1
