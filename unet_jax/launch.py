"""Which launcher started this process, and its place among the processes it started.

Read from the environment only (no JAX import), so every command can ask before JAX
starts: train.py to start multi-host JAX (``unet_jax.train.parallel``), eval.py, predict
and export to leave the writing to process 0 when a launcher started them several times
(docs/CLUSTER.md).

The environment a launcher can give (the Kubernetes manifest in ``jobs/k8s`` does):

- ``UNET_JAX_COORDINATOR_ADDRESS``, ``UNET_JAX_NUM_PROCESSES``, ``UNET_JAX_PROCESS_ID``:
  the values of train.py's ``--coordinator_address``, ``--num_processes`` and
  ``--process_id`` (a flag given wins).
"""

import sys
from collections.abc import Mapping

from unet_jax.errors import FlagError

COORDINATOR_ENV = "UNET_JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "UNET_JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "UNET_JAX_PROCESS_ID"

# The variable holding a process' index, per detected launcher.
_PROCESS_INDEX_VARS = {
    "slurm": "SLURM_PROCID",
    "ompi": "OMPI_COMM_WORLD_RANK",
    "tpu": "TPU_WORKER_ID",
}


def _count(environ: Mapping[str, str], name: str, *, default: int = 1) -> int:
    """The integer in ``environ[name]``; ``default`` when unset or not an integer."""
    try:
        return int(environ.get(name, default))
    except ValueError:
        return default


def detect_cluster(environ: Mapping[str, str]) -> str | None:
    """Which multi-process launcher started this process, if any.

    Strict on purpose: being inside a cluster allocation is not enough, the process must
    have been launched as one of several tasks, or ``jax.distributed.initialize()`` would
    wait forever for peers that never come (e.g. ``python train.py`` run directly in an
    ``sbatch`` script, without ``srun``).

    - SLURM: a job step (``SLURM_STEP_ID``, set by ``srun`` only) with ``SLURM_NTASKS`` > 1
      and the variables JAX's own SLURM detection reads (``SLURM_JOB_ID``,
      ``SLURM_STEP_NODELIST``, ``SLURM_PROCID``, ``SLURM_LOCALID``).
    - Open MPI: ``mpirun`` set ``OMPI_MCA_orte_hnp_uri`` (what JAX reads) and
      ``OMPI_COMM_WORLD_SIZE`` > 1.
    - Cloud TPU: several slices (``MEGASCALE_COORDINATOR_ADDRESS``), or more than one
      host in ``TPU_WORKER_HOSTNAMES`` / ``TPU_PROCESS_ADDRESSES`` (set by GKE, and by
      ``jobs/tpu/on_worker.sh`` from a TPU VM's metadata).

    Args:
      environ: the environment (``os.environ``).

    Returns:
      "slurm", "ompi", "tpu" or None.
    """
    slurm_vars = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID")
    in_step = all(v in environ for v in (*slurm_vars, "SLURM_LOCALID"))
    if in_step and _count(environ, "SLURM_NTASKS") > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in environ and _count(environ, "OMPI_COMM_WORLD_SIZE") > 1:
        return "ompi"
    if environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    hosts = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1:
        return "tpu"
    return None


def explicit_start(environ: Mapping[str, str]) -> dict[str, str | int]:
    """The start-up values a launcher put in the environment (``UNET_JAX_*``).

    Args:
      environ: the environment.

    Returns:
      Those of ``coordinator_address`` (text), ``num_processes`` and ``process_id``
      (integers) that are set.

    Raises:
      FlagError: a count or index that is not an integer (the message names the variable).
    """
    values: dict[str, str | int] = {}
    if environ.get(COORDINATOR_ENV):
        values["coordinator_address"] = environ[COORDINATOR_ENV]
    for key, var in (("num_processes", NUM_PROCESSES_ENV), ("process_id", PROCESS_ID_ENV)):
        if environ.get(var):
            try:
                values[key] = int(environ[var])
            except ValueError:
                raise FlagError(f"{var}={environ[var]!r}: must be an integer") from None
    return values


def launch_process_index(environ: Mapping[str, str]) -> int:
    """This process' index among the processes a launcher started together.

    Args:
      environ: the environment.

    Returns:
      ``UNET_JAX_PROCESS_ID``, else the detected launcher's own index (``SLURM_PROCID``,
      ``OMPI_COMM_WORLD_RANK``, ``TPU_WORKER_ID`` counted across ``MEGASCALE_SLICE_ID``
      slices, as JAX numbers them); 0 for a process started alone.
    """
    explicit = explicit_start(environ)
    if "process_id" in explicit and explicit.get("num_processes", 1) > 1:
        return int(explicit["process_id"])
    cluster = detect_cluster(environ)
    if cluster is None:
        return 0
    index = _count(environ, _PROCESS_INDEX_VARS[cluster], default=0)
    if cluster == "tpu":
        hosts = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES")
        per_slice = len((hosts or "").split(","))
        index += _count(environ, "MEGASCALE_SLICE_ID", default=0) * per_slice
    return index


def leave_to_process_zero(command: str, environ: Mapping[str, str]) -> bool:
    """Whether ``command`` should exit at once because another process writes its outputs.

    eval.py, predict and export run in one process. Started by a launcher that starts the
    same command several times (``srun`` with several tasks, every pod of a Kubernetes
    Job), every copy would write the same files: process 0 writes them, the others say
    so on stderr and exit 0.

    Args:
      command: the command's name, for the message.
      environ: the environment.

    Returns:
      True for every process but process 0 of a multi-process launch.
    """
    index = launch_process_index(environ)
    if index > 0:
        print(
            f"{command}: process {index} of a multi-process launch; process 0 writes the "
            "outputs, nothing to do here",
            file=sys.stderr,
        )
    return index > 0
