"""initialize_distributed: explicit flags, and cluster detection strict enough not to hang."""

import jax
import pytest

from unet_jax.train import parallel

CLUSTER_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "OMPI_MCA_orte_hnp_uri",
    "OMPI_COMM_WORLD_SIZE",
    "MEGASCALE_COORDINATOR_ADDRESS",
    "TPU_WORKER_HOSTNAMES",
    "TPU_PROCESS_ADDRESSES",
)
# What sbatch sets in the batch script itself (no job step: srun was not used).
SBATCH_SCRIPT = {
    "SLURM_JOB_ID": "42",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_JOB_NODELIST": "node[1-2]",
}
SRUN_TASK = {**SBATCH_SCRIPT, "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "node[1-2]"}
MPIRUN_RANK = {"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.1:34911"}


@pytest.fixture
def calls(monkeypatch):
    """Records the calls to jax.distributed.initialize (never starts it)."""
    for var in CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)
    recorded = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: recorded.append(kw))
    return recorded


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        (SBATCH_SCRIPT, None),
        ({**SRUN_TASK, "SLURM_NTASKS": "1"}, None),
        (SRUN_TASK, "slurm"),
        ({**MPIRUN_RANK, "OMPI_COMM_WORLD_SIZE": "1"}, None),
        ({"OMPI_COMM_WORLD_SIZE": "4"}, None),  # no mpirun URI: JAX could not find peers
        ({**MPIRUN_RANK, "OMPI_COMM_WORLD_SIZE": "4"}, "ompi"),
        ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),
        ({"TPU_WORKER_HOSTNAMES": "t1k-0,t1k-1"}, "tpu"),
        ({"MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2"}, "tpu"),
    ],
    ids=[
        "workstation",
        "sbatch-without-srun",
        "srun-one-task",
        "srun-two-tasks",
        "mpirun-one-rank",
        "ompi-size-without-mpirun",
        "mpirun-four-ranks",
        "tpu-one-host",
        "tpu-two-hosts",
        "tpu-multislice",
    ],
)
def test_auto_start_only_for_multi_process_launches(calls, monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert parallel.initialize_distributed(heartbeat_timeout_seconds=7) == expected
    assert calls == ([{"heartbeat_timeout_seconds": 7}] if expected else [])


def test_explicit_flags_win_over_the_environment(calls, monkeypatch):
    for name, value in SBATCH_SCRIPT.items():
        monkeypatch.setenv(name, value)
    started = parallel.initialize_distributed(
        coordinator_address="host0:1234", num_processes=2, process_id=1
    )
    assert started == "explicit"
    assert calls == [
        {
            "coordinator_address": "host0:1234",
            "num_processes": 2,
            "process_id": 1,
            "heartbeat_timeout_seconds": 100,
        }
    ]


def test_partial_explicit_flags_are_an_error_naming_them(calls):
    with pytest.raises(ValueError, match="--coordinator_address, --num_processes"):
        parallel.initialize_distributed(coordinator_address="host0:1234")
    assert calls == []
