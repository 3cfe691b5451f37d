"""jobs/slurm/train.sbatch run as sbatch runs it (bash; #SBATCH lines are comments), with a
stand-in srun (tests/launch/srun) that starts the tasks on this host in a job step's
environment: the tasks form one run that equals a 1-process run on the same global batch."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.test_failures import folder_args, make_folder
from unet_jax.errors import EXIT_PREEMPTED
from unet_jax.run.loading import load_run

SCRIPT = REPO_ROOT / "jobs" / "slurm" / "train.sbatch"
STANDINS = pathlib.Path(__file__).parent  # holds `srun`
TIMEOUT_S = 300


def _job_id_with_free_port() -> int:
    """A job id whose coordinator port (JAX's SlurmCluster: 61440 + id % 4096) is free."""
    for job_id in np.random.default_rng().integers(10_000, 10_000_000, size=50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 61440 + int(job_id) % 4096))
            except OSError:
                continue
        return int(job_id)
    raise RuntimeError("no free port in 61440-65535")


def _env(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    """A batch script's environment on a one-node allocation of CPU devices."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_"))}
    env.update(
        PATH=f"{STANDINS}{os.pathsep}{env['PATH']}",
        PYTHON=extra.pop("PYTHON", sys.executable),
        SLURM_SUBMIT_DIR=str(REPO_ROOT),
        SLURM_JOB_NODELIST="localhost",
        SLURM_NNODES="1",
        SLURM_PROCID="0",  # the batch step's own; srun's tasks get their own
        SLURM_LOCALID="0",
        UNET_JAX_LOG_DIR=str(tmp_path / "logs"),
        JAX_PLATFORMS="cpu",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        XLA_FLAGS="--xla_backend_optimization_level=0",
        **extra,
    )
    return env


def _train_args(root: pathlib.Path, workdir: pathlib.Path) -> list[str]:
    return folder_args(
        root / "data",
        root / "tfds",
        f"--workdir={workdir}",
        "--config.batch_size=4",
        "--config.eval_batch_size=4",
        "--config.model.features=(4,8)",
        "--config.num_train_steps=3",
    )[1:]  # without "train.py": the script adds it


@pytest.mark.slow
def test_two_tasks_form_one_run_equal_to_one_process(tmp_path):
    make_folder(tmp_path / "data")
    single = tmp_path / "single"
    one = subprocess.run(
        [sys.executable, "train.py", *_train_args(tmp_path, single)],
        cwd=REPO_ROOT,
        env=_env(tmp_path, JAX_NUM_CPU_DEVICES="4"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert one.returncode == 0, one.stderr[-3000:]

    job_id = _job_id_with_free_port()
    multi = tmp_path / "multi"
    env = _env(tmp_path, JAX_NUM_CPU_DEVICES="2", SLURM_JOB_ID=str(job_id), SLURM_NTASKS="2")
    result = subprocess.run(
        ["bash", str(SCRIPT), *_train_args(tmp_path, multi)],
        cwd=tmp_path,  # sbatch runs the script from a spool copy: the repo is SLURM_SUBMIT_DIR
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    logs = {t: (tmp_path / "logs" / f"task-{t}.log").read_text() for t in (0, 1)}
    assert result.returncode == 0, result.stdout + result.stderr + logs[0][-3000:] + logs[1][-3000:]
    assert "tasks ended with exit code 0" in result.stdout
    assert all("Done: step 3" in log for log in logs.values())

    info = json.loads((multi / "run_info.json").read_text())
    assert (info["process_count"], info["device_count"], info["local_device_count"]) == (2, 4, 2)
    assert json.loads((single / "run_info.json").read_text())["process_count"] == 1
    want = load_run(single, checkpoint="latest")
    got = load_run(multi, checkpoint="latest")
    assert got.step == want.step == 3
    want_leaves = jax.tree_util.tree_leaves(want.variables)
    got_leaves = jax.tree_util.tree_leaves(got.variables)
    assert len(want_leaves) == len(got_leaves) > 0
    for a, b in zip(want_leaves, got_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)


def _scontrol(tmp_path: pathlib.Path) -> pathlib.Path:
    """A stand-in scontrol that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.calls"}\n')
    scontrol.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("task_exit", "restarts", "requeued"),
    [(EXIT_PREEMPTED, "0", True), (EXIT_PREEMPTED, "20", False), (0, "0", False), (1, "0", False)],
    ids=["preempted", "preempted-too-often", "finished", "failed"],
)
def test_requeue_only_after_a_saved_preemption(tmp_path, task_exit, restarts, requeued):
    # The tasks stand in for train.py by exiting with one of its codes at once.
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/bin/sh\necho $JAX_LOCAL_DEVICE_IDS $SRUN_CPUS_PER_TASK\n"
        f"printf '[%s]' \"$@\"\nexit {task_exit}\n"
    )
    fake_python.chmod(0o755)
    env = _env(
        tmp_path,
        PYTHON=str(fake_python),
        SLURM_JOB_ID="4242",
        SLURM_NTASKS="2",
        SLURM_CPUS_PER_TASK="32",
        SLURM_GPUS_ON_NODE="4",
        SLURM_RESTART_COUNT=restarts,
        SRUN_STANDIN_RECORD=str(tmp_path / "srun.calls"),
    )
    env["PATH"] = f"{_scontrol(tmp_path)}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["bash", str(SCRIPT), "--config", "c.py", "--workdir", "gs://bucket/run 1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == task_exit, result.stdout + result.stderr
    calls = tmp_path / "scontrol.calls"
    assert (calls.read_text() if calls.exists() else "") == ("requeue 4242\n" if requeued else "")
    # One srun step; each task ran train.py with the arguments given to the script, intact.
    (srun_call,) = (tmp_path / "srun.calls").read_text().splitlines()
    want = f"{fake_python} -u train.py --config c.py --workdir gs://bucket/run 1"
    assert srun_call.endswith(want)
    for task in (0, 1):
        log = (tmp_path / "logs" / f"task-{task}.log").read_text()
        # Each task owns the node's 4 GPUs and the job's 32 CPUs per task.
        assert log == "0,1,2,3 32\n[-u][train.py][--config][c.py][--workdir][gs://bucket/run 1]"


def test_batch_shell_waits_through_its_own_sigterm_for_the_tasks_to_save(tmp_path):
    # Preemption signals the batch shell too: it must outlive it, get the tasks' 143 and
    # requeue. The tasks stand in for train.py saving for 2 s after the signal.
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nsleep 3\nexit 143\n")
    fake_python.chmod(0o755)
    env = _env(tmp_path, PYTHON=str(fake_python), SLURM_JOB_ID="77", SLURM_NTASKS="2")
    env["PATH"] = f"{_scontrol(tmp_path)}{os.pathsep}{env['PATH']}"
    batch = subprocess.Popen(
        ["bash", str(SCRIPT), "--workdir", "w"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(1)
    batch.send_signal(signal.SIGTERM)
    out, _ = batch.communicate(timeout=30)
    assert batch.returncode == EXIT_PREEMPTED, out
    assert "batch shell: SIGTERM, waiting for the tasks to save" in out
    assert "tasks ended with exit code 143" in out
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 77\n"


def test_refuses_to_run_outside_a_job(tmp_path):
    env = _env(tmp_path)
    result = subprocess.run(
        ["bash", str(SCRIPT), "--workdir", "x"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == "error: SLURM_JOB_ID is not set: submit this script with sbatch\n"
