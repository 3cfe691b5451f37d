"""initialize_distributed: explicit flags or environment, and cluster detection strict enough
not to hang; eval.py, predict and export leave their outputs to process 0 of a launch."""

import jax
import pytest

from tests import worker_utils
from unet_jax import launch
from unet_jax.errors import FlagError
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
    "TPU_WORKER_ID",
    "OMPI_COMM_WORLD_RANK",
    launch.COORDINATOR_ENV,
    launch.NUM_PROCESSES_ENV,
    launch.PROCESS_ID_ENV,
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


# What jobs/k8s/train-jobset.yaml gives pod 1.
POD_ENV = {
    launch.COORDINATOR_ENV: "unet-jax-workers-0-0.unet-jax:1234",
    launch.NUM_PROCESSES_ENV: "2",
    launch.PROCESS_ID_ENV: "1",
}


def test_environment_gives_the_explicit_values(calls, monkeypatch):
    for name, value in POD_ENV.items():
        monkeypatch.setenv(name, value)
    assert parallel.initialize_distributed() == "explicit"
    assert calls == [
        {
            "coordinator_address": "unet-jax-workers-0-0.unet-jax:1234",
            "num_processes": 2,
            "process_id": 1,
            "heartbeat_timeout_seconds": 100,
        }
    ]
    calls.clear()  # a flag wins over its variable
    parallel.initialize_distributed(process_id=0)
    assert calls[0]["process_id"] == 0 and calls[0]["num_processes"] == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {launch.NUM_PROCESSES_ENV: "2", launch.PROCESS_ID_ENV: "1"},
            "multi-host start needs all of --coordinator_address, --num_processes and "
            "--process_id (or UNET_JAX_COORDINATOR_ADDRESS, UNET_JAX_NUM_PROCESSES and "
            "UNET_JAX_PROCESS_ID); got None, 2, 1",
        ),
        (
            {**POD_ENV, launch.PROCESS_ID_ENV: "one"},
            "UNET_JAX_PROCESS_ID='one': must be an integer",
        ),
    ],
    ids=["partial", "not-an-integer"],
)
def test_bad_environment_is_an_error_naming_it(calls, monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(FlagError) as error:
        parallel.initialize_distributed()
    assert str(error.value) == message
    assert calls == []


@pytest.mark.parametrize(
    ("env", "index"),
    [
        ({}, 0),
        (SRUN_TASK, 0),
        ({**SRUN_TASK, "SLURM_PROCID": "1"}, 1),
        ({**SBATCH_SCRIPT, "SLURM_PROCID": "1"}, 0),  # no step: not a launch of several
        ({**MPIRUN_RANK, "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"}, 3),
        ({"TPU_WORKER_HOSTNAMES": "t-0,t-1", "TPU_WORKER_ID": "1"}, 1),
        (
            {
                "MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2",
                "MEGASCALE_SLICE_ID": "1",
                "TPU_WORKER_HOSTNAMES": "t-0,t-1",
                "TPU_WORKER_ID": "0",
            },
            2,
        ),
        (POD_ENV, 1),
        ({**POD_ENV, launch.NUM_PROCESSES_ENV: "1", launch.PROCESS_ID_ENV: "0"}, 0),
    ],
    ids=[
        "alone",
        "srun-0",
        "srun-1",
        "sbatch",
        "mpirun-3",
        "tpu-1",
        "tpu-slice-1-worker-0",
        "k8s-1",
        "k8s-alone",
    ],
)
def test_launch_process_index(env, index):
    assert launch.launch_process_index(env) == index


@pytest.mark.parametrize(
    "command",
    [
        ("eval.py", "--workdir"),
        ("-m", "unet_jax.predict", "x.png", "--out", "{out}", "--workdir"),
        ("-m", "unet_jax.export", "--out", "{out}", "--workdir"),
    ],
    ids=["eval", "predict", "export"],
)
def test_commands_leave_their_outputs_to_process_zero(tmp_path, command):
    missing, out = tmp_path / "nothing", tmp_path / "out"
    argv = [arg.replace("{out}", str(out)) for arg in command]
    for task, code in ((1, 0), (0, 2)):
        env = {**SRUN_TASK, "SLURM_PROCID": str(task), "SLURM_LOCALID": str(task)}
        result = worker_utils.run_script(*argv, str(missing), env=env)
        assert result.returncode == code, result.stdout + result.stderr
        if task:  # says why, and touches nothing
            name = command[0] if command[0] == "eval.py" else command[1].split(".")[-1]
            assert result.stderr == (
                f"{name}: process 1 of a multi-process launch; process 0 writes the outputs, "
                "nothing to do here\n"
            )
            assert list(tmp_path.iterdir()) == []
        else:  # process 0 does the work, and finds its input missing
            assert "error: " in result.stderr and "nothing to do" not in result.stderr


def test_train_py_bad_start_up_variable_exits_2_with_one_line(tmp_path):
    env = {**POD_ENV, launch.PROCESS_ID_ENV: "first"}
    workdir = tmp_path / "run"
    result = worker_utils.run_script(
        "train.py", "--config", "unet_jax/configs/tiny.py", f"--workdir={workdir}", env=env
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: UNET_JAX_PROCESS_ID='first': must be an integer"
    assert not workdir.exists()
