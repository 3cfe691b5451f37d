"""The command lines of eval.py, predict and export: help, flag spellings, bad flags.

The oracle for the flags is the list each command had on main before the three commands
shared one framework (7d9545b), written out here by hand: a flag that drops out of a
command's ``--help`` fails the test.
"""

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# Every flag of each command on 7d9545b (absl's --noNAME aside: --NAME=false now).
TODAYS_FLAGS = {
    "eval": """workdir out split checkpoint onnx onnx_threads full_resolution scale tta_flip
        tta_scales adapt_bn adapt_momentum batch_size max_side tile_size tile_overlap
        num_gallery data_dir pictures progress""",
    "predict": """workdir out checkpoint onnx onnx_threads scale probabilities progress
        tta_flip tta_scales adapt_bn adapt_momentum batch_size max_side tile_size
        tile_overlap""",
    "export": "workdir out checkpoint format platforms int8 calibration data_dir",
}
COMMANDS = {
    "eval": [str(REPO_ROOT / "eval.py")],
    "predict": ["-m", "unet_jax.predict"],
    "export": ["-m", "unet_jax.export"],
}


def _run(command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *COMMANDS[command], *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("asked", ["--help", "-h"])
def test_help_lists_every_flag_of_today_and_exits_0(command, asked):
    done = _run(command, asked)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    shown = set(done.stdout.replace(",", " ").replace("[", " ").replace("]", " ").split())
    missing = [f"--{name}" for name in TODAYS_FLAGS[command].split() if f"--{name}" not in shown]
    assert missing == []
    assert f"usage: python {' '.join(COMMANDS[command])}".replace(str(REPO_ROOT) + "/", "") in (
        done.stdout
    )


@pytest.mark.parametrize("asked", ["--help", "-h"])
def test_train_help_exits_0_with_its_flags_and_the_config_fields(asked):
    done = subprocess.run(
        [sys.executable, "train.py", asked, "--config", "unet_jax/configs/tiny.py"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--workdir", "--config", "--coordinator_address", "--num_processes"):
        assert f"  {flag}:" in done.stdout
    # The fields of the config named (tiny.py), as --config.FIELD=VALUE with its values.
    assert "\n  --config.image_size=(32, 32)\n" in done.stdout
    assert "\n  --config.model.features=(4, 8)\n" in done.stdout
    assert "\n  --config.augment.conditions.fog.p=0.0\n" in done.stdout


def test_eval_help_names_the_splits_and_the_default_output():
    text = _run("eval", "--help").stdout
    assert "{train,validation,test}" in text  # from data/splits.py, as argparse shows choices
    assert "WORKDIR/eval/SPLIT" in text


@pytest.mark.parametrize(
    ("command", "args", "line"),
    [
        ("eval", ["--workdir=w", "--split=tset"], "argument --split: invalid choice: 'tset'"),
        ("eval", ["--workdir=w", "--noprogress"], "--noprogress is spelt --progress=false now"),
        ("predict", ["--out=o", "x.png", "--tta_scales=abc"], "'abc' is not a comma-separated"),
        ("predict", ["--out=o", "x.png", "--tta_flip=maybe"], "ignored explicit argument 'maybe'"),
        ("export", ["--out=o"], "the following arguments are required: --workdir"),
        ("export", ["--workdir=w", "--out=o", "--int"], "unrecognized arguments: --int"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(command, args, line):
    done = _run(command, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and line in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
