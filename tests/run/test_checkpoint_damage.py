"""Damaged, incompatible and unwritable checkpoints: detected, set aside, never silently used."""

import pathlib
import resource
import signal

import jax
import numpy as np
import pytest

from tests.fake_data import make_examples
from unet_jax.configs import tiny
from unet_jax.run.checkpointing import Checkpointer, CheckpointError, IncompatibleCheckpointError
from unet_jax.train import loop as train_lib
from unet_jax.train.init_state import create_train_state


def _config(**overrides):
    config = tiny.get_config()
    config.schedule = "constant"
    config.warmup_steps = 0
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 6
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 100
    config.keep_checkpoints = 3
    for key, value in overrides.items():
        config[key] = value
    return config


SOURCES = {"train": make_examples(24, seed=3), "validation": make_examples(8, seed=4)}


@pytest.fixture
def trained(tmp_path):
    """A workdir with checkpoints at steps 2, 4 and 6 (fresh copy per test)."""
    train_lib.train_and_evaluate(_config(), tmp_path, sources=SOURCES)
    return tmp_path


def _checkpointer(workdir):
    return Checkpointer(workdir, keep=3)


def _template(config=None):
    return create_train_state(config or _config(), rng=jax.random.key(0), total_steps=1)


def _largest_file(step_dir: pathlib.Path) -> pathlib.Path:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def _step_dirs(workdir):
    return sorted(p.name for p in (workdir / "checkpoints").iterdir())


def test_truncated_latest_falls_back_to_previous(trained):
    victim = _largest_file(trained / "checkpoints" / "6")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    checkpointer = _checkpointer(trained)
    with pytest.warns(UserWarning, match=r"step 6 .* damaged"):
        state, _ = checkpointer.restore(_template())
    assert int(state.step) == 4
    assert _step_dirs(trained) == ["2", "4", "6.damaged-0"]  # set aside, not deleted


def test_flipped_bytes_are_caught_by_the_digest(trained):
    victim = _largest_file(trained / "checkpoints" / "6")
    data = bytearray(victim.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 16):
        data[i] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged"):
        state, _ = _checkpointer(trained).restore(_template())
    assert int(state.step) == 4


def test_training_resumes_past_a_damaged_checkpoint_like_an_uninterrupted_run(trained, tmp_path):
    victim = _largest_file(trained / "checkpoints" / "6")
    victim.write_bytes(b"")
    config = _config(num_train_steps=8)
    with pytest.warns(UserWarning, match="damaged"):
        train_lib.train_and_evaluate(config, trained, sources=SOURCES)
    straight = tmp_path / "straight"
    train_lib.train_and_evaluate(config, straight, sources=SOURCES)
    resumed, _ = _checkpointer(trained).restore(_template())
    reference, _ = _checkpointer(straight).restore(_template())
    assert int(resumed.step) == int(reference.step) == 8
    for a, b in zip(
        jax.tree_util.tree_leaves(resumed.params),
        jax.tree_util.tree_leaves(reference.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_all_damaged_is_a_clear_error_and_nothing_is_deleted(trained):
    for step in ("2", "4", "6"):
        _largest_file(trained / "checkpoints" / step).write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="no usable"):
        _checkpointer(trained).restore(_template())
    assert _step_dirs(trained) == ["2.damaged-0", "4.damaged-0", "6.damaged-0"]


def test_checkpoint_of_another_config_is_named_not_set_aside(trained):
    other = _config()
    other.model.features = (8, 16)
    with pytest.raises(IncompatibleCheckpointError, match="another configuration"):
        _checkpointer(trained).restore(_template(other))
    assert _step_dirs(trained) == ["2", "4", "6"]


def test_unwritable_checkpoint_is_a_clear_error_and_keeps_the_previous(trained):
    checkpointer = _checkpointer(trained)
    state, meta = checkpointer.restore(_template())
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Files may not grow past 256 bytes: the next checkpoint's writes fail like a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (256, hard))
    try:
        with pytest.raises(CheckpointError, match=r"could not write checkpoint step 7.*step 6"):
            checkpointer.save(state.replace(step=7), meta=meta)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    restored, _ = _checkpointer(trained).restore(_template())
    assert int(restored.step) == 6
