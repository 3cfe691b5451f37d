"""The command lines' exit codes: one table (unet_jax.cli), one-line messages, no tracebacks."""

import subprocess
import sys

import pytest

from datasets.common.errors import DataError
from tests.conftest import REPO_ROOT
from unet_jax import cli
from unet_jax.errors import ConfigError, UserError
from unet_jax.run.checkpointing import (
    CheckpointError,
    IncompatibleCheckpointError,
    NoUsableCheckpointError,
)
from unet_jax.run.loading import WorkdirError


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
        (WorkdirError("workdir /nope does not exist"), 2),
        (ConfigError("config.batch_size=0: must be a positive integer"), 2),
        (DataError("frame_1.png: label id 40 above 12"), 2),
        (UserError("LYFT_UDACITY_WORKERS must be an integer, not 'x'"), 2),
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


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),
        # A shape bug in this project's code is not the user's mistake.
        ValueError("operands could not be broadcast together with shapes (4,3) (4,)"),
        TypeError("'<' not supported between instances of 'NoneType' and 'float'"),
        AttributeError("'NoneType' object has no attribute 'shape'"),
    ],
)
def test_unexpected_errors_keep_their_traceback_and_exit_1(capsys, error):
    def internal_step():
        raise error

    assert cli.run(internal_step) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal_step" in err
    assert f"error: {type(error).__name__}: {error}" in err


def test_misspelt_config_override_is_one_line_with_the_suggestion(tmp_path):
    result = _train(
        "--config", "unet_jax/configs/tiny.py", "--config.model.featurs=(8,16)", tmp_path=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (
        "error: --config.model.featurs=(8,16): no field 'featurs'; "
        'Did you mean "features" instead of "featurs"?'
    )
    assert not (tmp_path / "run").exists()


def test_config_override_errors_of_this_project_are_not_disguised(monkeypatch):
    # Only what ml_collections raises while parsing is an override's fault.
    class Flags:  # no flags defined; parsing fails inside this project
        def __iter__(self):
            return iter(())

        def __call__(self, argv):
            raise AttributeError("'NoneType' object has no attribute 'x'")

    monkeypatch.setattr(cli.flags, "FLAGS", Flags())
    with pytest.raises(AttributeError, match="no attribute 'x'"):
        cli.parse_absl_flags(["train.py"])


def test_main_return_value_is_the_exit_code():
    assert cli.run(lambda: None) == 0
    assert cli.run(lambda: 143) == 143
