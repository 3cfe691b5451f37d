"""The defects a new user hit (issue 33), run as the user ran them: the real command in a
subprocess, its exit code, the one line it prints, no traceback.

Fast: every command here stops before any data is read or any step is trained.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from tests.conftest import REPO_ROOT
from tests.test_failures import TINY, run


def assert_one_line(result, code: int, line: str) -> None:
    """Exit ``code``; the output is one ``error: ...`` line holding ``line``; no traceback."""
    returncode, output = result
    printed = [text for text in output.splitlines() if text.strip()]
    assert returncode == code, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert len(printed) == 1 and printed[0].startswith("error: "), output[-4000:]
    assert line in printed[0], printed[0]


def _config_file(folder: pathlib.Path, *lines: str) -> str:
    """A config file: the tiny config with ``lines`` of Python applied to ``config``."""
    path = folder / "my_config.py"
    body = "\n".join(f"    {line}" for line in lines)
    path.write_text(
        "import ml_collections\n"
        "from unet_jax.configs import tiny\n\n\n"
        "def get_config():\n"
        "    config = tiny.get_config()\n"
        f"{body}\n"
        "    return config\n"
    )
    return str(path)


# Defect 2: a stored inference recipe that predict, eval.py and export would refuse.
def test_a_bad_inference_recipe_is_refused_before_training(tmp_path):
    config = _config_file(
        tmp_path, "config.inference = ml_collections.ConfigDict({'adapt_bn': 'foo'})"
    )
    workdir = tmp_path / "run"
    line = "config.inference: adapt_bn must be one of ('off', 'set', 'stream'), got 'foo'"
    assert_one_line(run("train.py", "--config", config, f"--workdir={workdir}"), 2, line)
    assert not (workdir / "checkpoints").exists()


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"tta_scales": (0,)}, "tta_scales must be factors in (0, 4], got 0"),
        ({"bogus": 1}, "config.inference.bogus is not an inference option"),
        ({"scale": "full"}, "config.inference.scale must be one of ('resize', 'native')"),
        ({"tta_scales": "abc"}, "config.inference.tta_scales must be a list of numbers"),
    ],
)
def test_every_bad_recipe_field_is_a_config_error_at_start_up(recipe, message):
    # The start-up check train.py runs (the command itself: the test above).
    from unet_jax.configs import tiny
    from unet_jax.errors import ConfigError
    from unet_jax.train import config_checks

    config = tiny.get_config()
    with config.unlocked():
        config.inference = ml_collections.ConfigDict(recipe)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_checks.validate_config(config, process_count=1, local_device_count=1)


# Defect 3: tracebacks for bad values.
def test_an_unknown_lyft_udacity_data_set_is_one_line(tmp_path):
    line = "lyft_udacity/bogus: unknown data set; lyft_udacity has full, full_nohood"
    result = run(*TINY, f"--workdir={tmp_path / 'a'}", "--config.dataset=lyft_udacity/bogus")
    assert_one_line(result, 2, line)
    mixture = "config.mixture = (('lyft_udacity/synthetic', 1.0), ('lyft_udacity/bogus', 1.0))"
    config = _config_file(tmp_path, mixture)
    assert_one_line(run("train.py", "--config", config, f"--workdir={tmp_path / 'b'}"), 2, line)


@pytest.mark.parametrize(
    ("scales", "line"),
    [
        ("abc", "argument --tta_scales: 'abc' is not a comma-separated list of numbers"),
        ("1,100", "tta_scales must be factors in (0, 4], got 1,100"),
    ],
)
def test_tta_scales_that_cannot_work_are_one_line(tmp_path, scales, line):
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the flags are refused first
    result = run(
        "-m",
        "unet_jax.predict",
        f"--workdir={tmp_path}",
        str(image),
        f"--out={tmp_path / 'o'}",
        f"--tta_scales={scales}",
    )
    assert_one_line(result, 2, line)
    assert not (tmp_path / "o").exists()


# Defect 7: eval.py --scale without --full_resolution was ignored but recorded.
def test_eval_scale_without_full_resolution_is_one_line(tmp_path):
    line = "scale='resize' applies to the full-resolution pass only: add full_resolution"
    assert_one_line(run("eval.py", f"--workdir={tmp_path}", "--scale=resize"), 2, line)


# Defect 5: a new time budget for a run planned for another was silently ignored.
def test_another_time_budget_for_a_planned_run_is_one_line(tmp_path):
    from unet_jax.configs import tiny

    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "6").mkdir(parents=True)  # a finished run's last checkpoint
    planned = {**tiny.get_config().to_dict(), "time_budget_minutes": 1}
    (workdir / "config.json").write_text(json.dumps(planned, default=str))
    result = run(*TINY, f"--workdir={workdir}", "--config.time_budget_minutes=2")
    line = f"workdir {workdir} was planned for time_budget_minutes=1; the config has "
    assert_one_line(result, 2, line + "time_budget_minutes=2, and a plan is not extended")
    assert (workdir / "checkpoints" / "6").is_dir()


# Defect 6: a mixture share the sampler cannot serve hung step 0; SIGTERM went unanswered.
def test_a_mixture_share_the_sampler_cannot_serve_is_one_line(tmp_path):
    weights = "(('lyft_udacity/synthetic', 1e-9), ('lyft_udacity/synthetic_nohood', 1.0))"
    config = _config_file(tmp_path, f"config.mixture = {weights}")
    line = "config.mixture: a share of 1e-09 is below the smallest the sampler serves, 0.001"
    assert_one_line(run("train.py", "--config", config, f"--workdir={tmp_path / 'r'}"), 2, line)


HANG_AFTER_SIGTERM = """
from unet_jax import cli
from unet_jax.train import loop

loop.PREEMPTION_GRACE_S = 1


def main():
    with loop.PreemptionGuard():
        print("ready", flush=True)
        while True:  # a phase that reaches no step boundary (the old mixture hang)
            pass


raise SystemExit(cli.run(main))
"""


def test_sigterm_where_no_step_ends_stops_the_run_after_the_grace():
    proc = subprocess.Popen(
        [sys.executable, "-c", HANG_AFTER_SIGTERM],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    line = "SIGTERM: no training step ended within 1 s, so nothing was saved; run again"
    assert_one_line((proc.returncode, output), 143, line)


def test_sigterm_answered_at_a_step_boundary_is_not_cut_short(monkeypatch):
    from unet_jax.train import loop

    monkeypatch.setattr(loop, "PREEMPTION_GRACE_S", 1)
    alarm_handler = signal.getsignal(signal.SIGALRM)
    with loop.PreemptionGuard() as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # the handler runs
        assert guard.should_stop(1, collective=False)
        time.sleep(1.5)  # the save after it may outlast the grace
    assert signal.getsignal(signal.SIGALRM) == alarm_handler


# Defect 7: a config file's misspelt field printed ml_collections' escaped KeyError.
def test_a_misspelt_field_in_a_config_file_is_one_plain_line(tmp_path):
    config = _config_file(tmp_path, "config.modle.features = (8, 16)")
    line = f"--config {config}: line 7: no field 'modle'; Did you mean \"model\" instead of"
    assert_one_line(run("train.py", "--config", config, f"--workdir={tmp_path / 'r'}"), 2, line)
    assert not (tmp_path / "r").exists()


# Defect 7: python -m datasets.folder on images without masks.
def test_folder_command_without_masks_is_one_line_in_its_own_flags(tmp_path):
    (tmp_path / "scenes" / "images").mkdir(parents=True)
    (tmp_path / "scenes" / "images" / "a.png").write_bytes(b"")  # never read
    result = run("-m", "datasets.folder", str(tmp_path / "scenes"))
    line = f"{tmp_path / 'scenes'}: images/ but no masks folder beside it (one of masks/"
    assert_one_line(result, 2, line)
    assert "--masks=NAME" in result[1] and "--config." not in result[1]
