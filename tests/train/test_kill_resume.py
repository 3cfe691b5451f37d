"""Faults during training: SIGKILL at many points (checkpoint writes included) and SIGTERM.

The oracle is an uninterrupted run of the same worker: after any number of kills and
re-runs of the same command, the final parameters must be bit-identical to it.
"""

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from tests import worker_utils

STEPS = 12
TIMEOUT_S = 180


def _finish(proc: subprocess.Popen) -> str:
    try:
        return proc.communicate(timeout=TIMEOUT_S)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"worker hung past {TIMEOUT_S}s")


def _train_lines(workdir) -> int:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"train"' in line)


def _wait_for(predicate, proc, timeout=TIMEOUT_S, poll=0.005) -> bool:
    """Polls until predicate() or the process ends; True if the predicate held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    proc = worker_utils.start(tmp / "out", tmp / "workdir", f"--steps={STEPS}")
    output = _finish(proc)
    assert proc.returncode == 0, output[-4000:]
    return worker_utils.load_params(tmp / "out")


def _assert_same_params(out, reference):
    params, result = worker_utils.load_params(out)
    ref_params, ref_result = reference
    assert result["step"] == ref_result["step"] == STEPS
    for a, b in zip(params, ref_params, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sigkill_anywhere_then_rerun_matches_uninterrupted(tmp_path, reference):
    workdir, out = tmp_path / "workdir", tmp_path / "out"
    checkpoints = workdir / "checkpoints"

    def writing_checkpoint():
        return checkpoints.exists() and any("tmp" in p.name for p in checkpoints.iterdir())

    kill_points = [
        ("during start-up", lambda: False, 1.5),
        ("after 2 logged steps", lambda: _train_lines(workdir) >= 2, None),
        ("mid checkpoint write", writing_checkpoint, None),
        ("after 7 logged steps", lambda: _train_lines(workdir) >= 7, None),
        ("mid checkpoint write", writing_checkpoint, None),
    ]
    killed = []
    for name, predicate, timeout in kill_points:
        proc = worker_utils.start(out, workdir, f"--steps={STEPS}")
        hit = _wait_for(predicate, proc, timeout=timeout or TIMEOUT_S)
        if proc.poll() is None and (hit or timeout is not None):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed.append(name)
        else:
            # The run got past this point (or finished) before the kill: note it and go on.
            proc.communicate()
    proc = worker_utils.start(out, workdir, f"--steps={STEPS}")
    output = _finish(proc)
    assert proc.returncode == 0, output[-4000:]
    print("killed:", killed)
    assert len(killed) >= 3, killed
    _assert_same_params(out, reference)


@pytest.mark.slow
def test_sigterm_saves_and_exits_promptly_then_resumes(tmp_path, reference):
    workdir, out = tmp_path / "workdir", tmp_path / "out"
    proc = worker_utils.start(out, workdir, f"--steps={STEPS}")
    assert _wait_for(lambda: _train_lines(workdir) >= 3, proc), "training never started"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output = _finish(proc)
    seconds_to_exit = time.monotonic() - sent
    assert proc.returncode == 143, output[-4000:]
    assert seconds_to_exit < 20, seconds_to_exit
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    logged = [json.loads(x)["step"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert saved[-1] == max(logged) < STEPS  # saved exactly where it stopped
    proc = worker_utils.start(out, workdir, f"--steps={STEPS}")
    output = _finish(proc)
    assert proc.returncode == 0, output[-4000:]
    assert f"Resuming from step {saved[-1]}" in output
    _assert_same_params(out, reference)
