"""Multi-host faults: when one of 2 processes dies, the other exits promptly; both resume."""

import signal
import subprocess
import time

import pytest

from tests import worker_utils

STEPS = 24
EXIT_WITHIN_S = 60  # heartbeat timeout 10 s plus slack for a loaded 2-core machine


def _start_pair(tmp_path, port, *extra):
    return [
        worker_utils.start(
            tmp_path / "out",
            tmp_path / "workdir",
            "--num_processes=2",
            f"--process_id={pid}",
            f"--port={port}",
            "--local_devices=2",
            f"--steps={STEPS}",
            "--heartbeat_timeout_seconds=10",
            *extra,
        )
        for pid in range(2)
    ]


def _train_lines(workdir) -> int:
    path = workdir / "metrics.jsonl"
    return path.read_text().count('"train"') if path.exists() else 0


@pytest.mark.slow
def test_survivor_exits_when_a_peer_dies_and_a_restart_resumes(tmp_path):
    workdir = tmp_path / "workdir"
    procs = _start_pair(tmp_path, worker_utils.free_port())
    deadline = time.monotonic() + 180
    while _train_lines(workdir) < 3:
        assert time.monotonic() < deadline, "training never started"
        assert all(p.poll() is None for p in procs), "a process ended early"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        output = procs[0].communicate(timeout=EXIT_WITHIN_S)[0]
    except subprocess.TimeoutExpired:
        procs[0].kill()
        pytest.fail(f"the surviving process hung for more than {EXIT_WITHIN_S}s")
    procs[1].wait()
    seconds = time.monotonic() - killed_at
    assert procs[0].returncode != 0
    assert "heartbeat" in output.lower() or "connection reset" in output.lower(), output[-3000:]
    print(f"survivor exited {seconds:.1f}s after its peer was killed")

    restarted = _start_pair(tmp_path, worker_utils.free_port())
    outputs = []
    for p in restarted:
        try:
            outputs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in restarted:
                q.kill()
            pytest.fail("the restarted pair hung")
    assert [p.returncode for p in restarted] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "Resuming from step" in outputs[0]
    _, result = worker_utils.load_params(tmp_path / "out")
    assert result["step"] == STEPS


@pytest.mark.slow
def test_sigterm_on_one_host_stops_both_at_the_same_step_and_a_restart_resumes(tmp_path):
    workdir = tmp_path / "workdir"
    # No logging step before the end: the hosts can agree on stopping only through JAX's
    # preemption sync point, which every host checks at every step.
    procs = _start_pair(tmp_path, worker_utils.free_port(), f"--log_every={STEPS}")
    deadline = time.monotonic() + 180
    while not (workdir / "checkpoints" / "2").is_dir():
        assert time.monotonic() < deadline, "training never started"
        assert all(p.poll() is None for p in procs), "a process ended early"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # only one host is told, as on a real preemption
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=EXIT_WITHIN_S)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a process did not stop after SIGTERM")
    assert [p.returncode for p in procs] == [143, 143], outputs[0][-2000:] + outputs[1][-2000:]
    saved = sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit())
    assert saved and saved[-1] < STEPS
    assert f"SIGTERM: saved step {saved[-1]}" in outputs[0]  # process 0 saved the same step

    restarted = _start_pair(tmp_path, worker_utils.free_port())
    outputs = [p.communicate(timeout=240)[0] for p in restarted]
    assert [p.returncode for p in restarted] == [0, 0], outputs[0][-3000:]
    assert f"Resuming from step {saved[-1]}" in outputs[0]
    _, result = worker_utils.load_params(tmp_path / "out")
    assert result["step"] == STEPS
