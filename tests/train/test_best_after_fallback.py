"""The best checkpoint stays right when training resumes past a damaged latest checkpoint.

Validation scores are scripted per step (the real evaluation runs, its ``mean_iou`` is
replaced), so which step is the best is known in advance.
"""

import jax
import numpy as np
import pytest

from tests.fake_data import make_examples
from unet_jax.configs import tiny
from unet_jax.run.checkpointing import Checkpointer
from unet_jax.train import loop as train_lib
from unet_jax.train.init_state import create_train_state

# Three short trainings (35 s of the README's test command): CI's slow stage runs them.
pytestmark = pytest.mark.slow

SOURCES = {"train": make_examples(24, seed=3), "validation": make_examples(8, seed=4)}


def _config(num_train_steps):
    config = tiny.get_config()
    config.schedule = "constant"
    config.warmup_steps = 0
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = num_train_steps
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 2
    config.keep_checkpoints = 3
    config.best_metric = "mean_iou"
    config.best_mode = "max"
    return config


@pytest.fixture
def scripted_scores(monkeypatch):
    """Makes validation at step k report ``mean_iou = scores[k]``; returns the dict."""
    scores: dict[int, float] = {}
    validated: list[int] = []  # the step of each validation, in order
    real_predictor, real_run = train_lib.device_predictor, train_lib.Evaluator.run

    def device_predictor(driver, device_state):
        validated.append(int(driver.get_state(device_state).step))
        return real_predictor(driver, device_state)

    def run(self, predict, **kwargs):
        results = real_run(self, predict, **kwargs)
        return {**results, "mean_iou": scores[validated[-1]]}

    monkeypatch.setattr(train_lib, "device_predictor", device_predictor)
    monkeypatch.setattr(train_lib.Evaluator, "run", run)
    return scores


def _template():
    return create_train_state(_config(1), rng=jax.random.key(0), total_steps=1)


def _steps(directory):
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _damage(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    victim = max(files, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])


def _assert_same_params(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "scores, best_step",
    [
        # The best (step 4) is older than the damaged checkpoint: later scores must be
        # compared with it, not with a reset tracker.
        ({2: 0.3, 4: 0.8, 6: 0.5, 8: 0.6}, 4),
        # The best is the damaged step itself: the resumed run scores it again.
        ({2: 0.3, 4: 0.5, 6: 0.9, 8: 0.6}, 6),
    ],
)
def test_best_checkpoint_after_falling_back_past_a_damaged_latest(
    tmp_path, scripted_scores, scores, best_step
):
    scripted_scores.update(scores)
    first = train_lib.train_and_evaluate(_config(6), tmp_path, sources=SOURCES)
    assert first["best"]["step"] == best_step
    _damage(tmp_path / "checkpoints" / "6")

    with pytest.warns(UserWarning, match=r"step 6 .*damaged"):
        result = train_lib.train_and_evaluate(_config(8), tmp_path, sources=SOURCES)

    assert result["step"] == 8
    assert result["best"] == {"step": best_step, "value": scores[best_step]}
    assert _steps(tmp_path / "best") == [best_step]
    checkpointer = Checkpointer(tmp_path, keep=3)
    try:
        latest, latest_meta = checkpointer.restore(_template())
        best, best_meta = checkpointer.restore(_template(), which="best")
        at_best_step, _ = checkpointer.restore(_template(), step=best_step)
    finally:
        checkpointer.close()
    # The tracker travels on: the newest checkpoint names the same best.
    assert int(latest.step) == 8
    assert (latest_meta["best_step"], latest_meta["best_value"]) == (best_step, scores[best_step])
    assert (best_meta["best_step"], best_meta["best_value"]) == (best_step, scores[best_step])
    # The best checkpoint holds the parameters of that step (the resumed timeline is the
    # same as the damaged one, so both agree).
    assert int(best.step) == best_step
    _assert_same_params(best.params, at_best_step.params)
    _assert_same_params(best.batch_stats, at_best_step.batch_stats)


def test_damaged_best_of_the_damaged_step_is_rewritten_by_the_resumed_run(
    tmp_path, scripted_scores
):
    scripted_scores.update({2: 0.3, 4: 0.5, 6: 0.9, 8: 0.6})
    train_lib.train_and_evaluate(_config(6), tmp_path, sources=SOURCES)
    _damage(tmp_path / "checkpoints" / "6")
    _damage(tmp_path / "best" / "6")  # e.g. the same disk fault hit both copies
    with pytest.warns(UserWarning, match=r"step 6 .*damaged"):
        result = train_lib.train_and_evaluate(_config(8), tmp_path, sources=SOURCES)
    assert result["best"] == {"step": 6, "value": 0.9}
    checkpointer = Checkpointer(tmp_path, keep=3)
    try:
        best, _ = checkpointer.restore(_template(), which="best")
    finally:
        checkpointer.close()
    assert int(best.step) == 6
