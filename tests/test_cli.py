"""The command lines' exit codes: one table (unet_jax.cli), one-line messages, no tracebacks."""

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from unet_jax import cli
from unet_jax.inference import WorkdirError
from unet_jax.run.checkpointing import (
    CheckpointError,
    IncompatibleCheckpointError,
    NoUsableCheckpointError,
)


def _train(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", "--workdir", str(tmp_path / "run"), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_bad_config_value_exits_2_without_traceback(tmp_path):
    result = _train(
        "--config", "unet_jax/configs/tiny.py", "--config.batch_size=abc", tmp_path=tmp_path
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--config.batch_size=abc" in result.stderr


def test_train_missing_data_set_exits_2_saying_where_to_put_it(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    result = _train(
        "--config",
        "unet_jax/configs/tiny.py",
        "--config.dataset=lyft_udacity/full",
        f"--config.data_dir={tmp_path / 'data'}",
        f"--config.manual_dir={manual}",
        tmp_path=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"error: The Lyft-Udacity data was not found in the manual directory {manual}" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (FloatingPointError("non-finite loss at step 7"), 3),
        (CheckpointError("could not write checkpoint step 6"), 4),
        (IncompatibleCheckpointError("written by a model of another configuration"), 4),
        # Checkpointer.restore when every checkpoint is damaged (a FileNotFoundError too).
        (NoUsableCheckpointError("no usable latest checkpoint in /run/checkpoints"), 4),
        # grain's iterator restore, e.g. after a change of worker count.
        (ValueError("Worker count in checkpoint does not match dataloader worker count"), 2),
        (TypeError("'<' not supported between instances of 'NoneType' and 'float'"), 2),
        (WorkdirError("workdir /nope does not exist"), 2),
        (FileNotFoundError("/data/x.png"), 2),
        (KeyboardInterrupt(), 130),
    ],
)
def test_each_error_maps_to_its_documented_code_with_one_line(capsys, error, code):
    def main():
        raise error

    assert cli.run(main) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.strip().startswith("error:") or code == 130


def test_unexpected_errors_keep_their_traceback_and_exit_1(capsys):
    def main():
        raise RuntimeError("a bug")

    assert cli.run(main) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: RuntimeError: a bug" in err


def test_main_return_value_is_the_exit_code():
    assert cli.run(lambda: None) == 0
    assert cli.run(lambda: 143) == 143
