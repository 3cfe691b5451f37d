"""train_and_evaluate: bit-exact resume, best/latest checkpoints, logs, non-finite stop."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.fake_data import make_examples
from unet_jax.configs import tiny
from unet_jax.run.checkpointing import Checkpointer
from unet_jax.run.metric_writers import read_metrics
from unet_jax.train import loop as train_lib


def _config(**overrides):
    config = tiny.get_config()
    config.schedule = "constant"  # the schedule must not depend on num_train_steps here
    config.warmup_steps = 0
    config.model.dropout_rate = 0.1  # exercises the per-step rng
    config.augment.enabled = True  # exercises the data iterator's rng
    config.batch_size = 8
    config.eval_batch_size = 8
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 4
    config.log_every_steps = 1
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.fixture(scope="module")
def sources():
    return {"train": make_examples(40, seed=1), "validation": make_examples(10, seed=2)}


def _params(workdir, config):
    checkpointer = Checkpointer(workdir, keep=3)
    from unet_jax.train.init_state import create_train_state

    template = create_train_state(config, rng=jax.random.key(0), total_steps=1)
    state, meta = checkpointer.restore(template)
    checkpointer.close()
    return state, meta


def test_resume_is_bit_identical(tmp_path, sources):
    straight = _config(num_train_steps=6)
    result = train_lib.train_and_evaluate(straight, tmp_path / "a", sources=sources)
    assert result["step"] == 6

    first = _config(num_train_steps=3)  # stops at 3 (a checkpoint at 2 and at the end, 3)
    train_lib.train_and_evaluate(first, tmp_path / "b", sources=sources)
    resumed = train_lib.train_and_evaluate(
        _config(num_train_steps=6), tmp_path / "b", sources=sources
    )
    assert resumed["step"] == 6

    a, _ = _params(tmp_path / "a", straight)
    b, _ = _params(tmp_path / "b", straight)
    for name in ("params", "batch_stats", "opt_state"):
        leaves_a = jax.tree_util.tree_leaves(getattr(a, name))
        leaves_b = jax.tree_util.tree_leaves(getattr(b, name))
        assert len(leaves_a) == len(leaves_b) > 0
        for x, y in zip(leaves_a, leaves_b, strict=True):
            np.testing.assert_array_equal(x, y)

    # The resumed run logged the same training losses, step for step.
    def train_losses(workdir):
        records = read_metrics(workdir)
        return [(r["step"], r["loss"]) for r in records if r["split"] == "train"]

    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")
    assert len(train_losses(tmp_path / "a")) == 6


def _assert_same_state(workdir_a, workdir_b, config):
    a, _ = _params(workdir_a, config)
    b, _ = _params(workdir_b, config)
    assert int(a.step) == int(b.step)
    for name in ("params", "batch_stats", "opt_state"):
        leaves_a = jax.tree_util.tree_leaves(getattr(a, name))
        leaves_b = jax.tree_util.tree_leaves(getattr(b, name))
        assert len(leaves_a) == len(leaves_b) > 0
        for x, y in zip(leaves_a, leaves_b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, sources):
    """An uninterrupted 6-step run in this process (worker_count 0): the resume oracle."""
    workdir = tmp_path_factory.mktemp("straight")
    result = train_lib.train_and_evaluate(_config(num_train_steps=6), workdir, sources=sources)
    assert result["step"] == 6
    return workdir


def test_resume_with_another_worker_count_is_bit_identical(tmp_path, sources, straight_run):
    # Steps 1-3 in this process, steps 4-6 in 2 grain worker processes: the data position is
    # a function of the step, so nothing about the first run's loader has to match.
    train_lib.train_and_evaluate(
        _config(num_train_steps=3, worker_count=0), tmp_path, sources=sources
    )
    resumed = train_lib.train_and_evaluate(
        _config(num_train_steps=6, worker_count=2), tmp_path, sources=sources
    )
    assert resumed["step"] == 6
    _assert_same_state(straight_run, tmp_path, _config(num_train_steps=6))


def test_workdir_contents_and_best_checkpoint(tmp_path, sources):
    config = _config(num_train_steps=8, keep_checkpoints=2)
    result = train_lib.train_and_evaluate(config, tmp_path, sources=sources)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [
        "6",
        "8",
    ]
    best = [p.name for p in (tmp_path / "best").iterdir() if p.name.isdigit()]
    assert best == [str(result["best"]["step"])]
    records = read_metrics(tmp_path)
    validation = [r for r in records if r["split"] == "validation"]
    assert [r["step"] for r in validation] == [4, 8]
    assert result["best"]["value"] == max(r["mean_iou"] for r in validation)
    assert {"loss", "images_per_sec", "learning_rate", "grad_norm"} <= set(records[0])
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["device_count"] == 4 and info["versions"]["jax"] == jax.__version__
    assert json.loads((tmp_path / "config.json").read_text())["num_train_steps"] == 8
    assert list((tmp_path / "tensorboard").iterdir())


def _records_of_each_step(source, config, steps):
    """The source records in each of the first ``steps`` global batches (1-based steps).

    Batch k is a function of the seed, the batch size and k only, so the trainer's loader
    over a copy whose labels are the record indices shows which records each step reads.
    """
    from unet_jax.data import pipeline as input_pipeline

    indexed = [{**x, "label": np.full_like(x["label"], i)} for i, x in enumerate(source)]
    loader = iter(
        input_pipeline.create_train_loader(
            indexed,
            global_batch_size=config.batch_size,
            image_size=tuple(config.image_size),
            seed=config.seed,
            augment={**config.augment.to_dict(), "input_mode": config.input_mode},
            num_local_devices=jax.local_device_count(),
            layout="mesh",
        )
    )
    records = []
    for _ in range(steps):
        labels = next(loader)["label"]
        records.append(set(np.unique(labels).tolist()) - {255})
    loader.close()
    return records


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, sources, monkeypatch):
    config = _config(num_train_steps=10, checkpoint_every_steps=1, eval_every_steps=100)
    # Poison one record that step 3 reads and steps 1 and 2 do not (an epoch is 5 steps of
    # 8 of the 40 records, each read once), so two good checkpoints come before it.
    per_step = _records_of_each_step(sources["train"], config, steps=5)
    assert sorted(set().union(*per_step)) == list(range(40))
    victim = min(per_step[2])
    assert victim not in per_step[0] | per_step[1]
    # Every label pixel of the victim becomes the 254 marker (an out-of-range id, so
    # otherwise ignored): no augmentation can crop it away.
    poisoned = [dict(x) for x in sources["train"]]
    poisoned[victim]["label"] = np.full_like(poisoned[victim]["label"], 254)
    real_make_loss_fn = train_lib.make_loss_fn

    def make_poisoned_loss_fn(config, **counts):
        loss_fn = real_make_loss_fn(config, **counts)

        def poisoned_loss(logits, labels):
            bad = jnp.any(labels == 254, axis=tuple(range(1, labels.ndim)))
            return jnp.where(bad, jnp.nan, loss_fn(logits, labels))

        return poisoned_loss

    monkeypatch.setattr(train_lib, "make_loss_fn", make_poisoned_loss_fn)
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite loss or gradient at step 3 .*last good checkpoint is step 2",
    ):
        train_lib.train_and_evaluate(
            config, tmp_path, sources={"train": poisoned, "validation": sources["validation"]}
        )
    # Steps 1 and 2 were saved, step 3 never was.
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [1, 2]
    state, _ = _params(tmp_path, config)
    assert int(state.step) == 2
    leaves = jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state))
    for leaf in leaves:
        assert np.isfinite(leaf).all()
    # The poison never reached the training log either: steps 1 and 2, finite losses.
    logged = [r for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert [r["step"] for r in logged] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in logged)
