"""jobs/k8s/train-jobset.yaml: parsed, and the environment Kubernetes would give its pods
(resolved here as the kubelet does) starts 2 local processes as one multi-host JAX run."""

import os
import re
import subprocess
import sys

import yaml

from tests import worker_utils
from tests.conftest import REPO_ROOT
from unet_jax import launch

MANIFEST = REPO_ROOT / "jobs" / "k8s" / "train-jobset.yaml"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
JOBSET_NAME_LABEL = "metadata.labels['jobset.sigs.k8s.io/jobset-name']"

# One process of a run: starts multi-host JAX as train.py does, then gathers every
# process' index across processes (a collective: only one run of all of them answers).
PROBE = """
import jax
import numpy as np
from jax.experimental import multihost_utils
from unet_jax.train import parallel

started = parallel.initialize_distributed()
gathered = multihost_utils.process_allgather(np.array([jax.process_index()]))
print(started, jax.process_index(), jax.process_count(), np.asarray(gathered).ravel().tolist())
"""


def _load():
    jobset = yaml.safe_load(MANIFEST.read_text())
    (replicated,) = jobset["spec"]["replicatedJobs"]
    job = replicated["template"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    return jobset, replicated, job, container


def _pod_env(container: dict, *, jobset_name: str, index: int) -> dict[str, str]:
    """The container's environment as the kubelet resolves it for pod ``index``."""
    fields = {JOBSET_NAME_LABEL: jobset_name, COMPLETION_INDEX: str(index)}
    env: dict[str, str] = {}
    for var in container["env"]:
        if "valueFrom" in var:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:  # $(NAME) refers to a variable defined above it
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
    return env


def test_manifest_gives_each_pod_its_place_and_a_bucket_workdir():
    jobset, replicated, job, container = _load()
    assert (jobset["apiVersion"], jobset["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    assert jobset["spec"]["network"]["enableDNSHostnames"] is True
    assert job["completionMode"] == "Indexed"
    assert replicated["replicas"] == 1
    name = jobset["metadata"]["name"]
    envs = [_pod_env(container, jobset_name=name, index=i) for i in range(job["parallelism"])]
    for index, env in enumerate(envs):
        given = launch.explicit_start(env)
        # Pod 0's name in the JobSet's headless service: NAME-JOB-JOBINDEX-PODINDEX.NAME.
        host, port = given["coordinator_address"].rsplit(":", 1)
        assert host == f"{name}-{replicated['name']}-0-0.{name}"
        assert {"containerPort": int(port)} in container["ports"]
        assert given["num_processes"] == job["parallelism"] == job["completions"]
        assert given["process_id"] == index == launch.launch_process_index(env)
        assert env["WORKDIR"].startswith("gs://")
    (script,) = container["args"]
    assert (
        '.venv/bin/python -u train.py --config unet_jax/configs/demo.py \\\n  --workdir "$WORKDIR"'
        in (script)
    )


def test_pod_environment_starts_one_run_of_two_processes(tmp_path):
    jobset, _, job, container = _load()
    assert job["parallelism"] == 2
    port = worker_utils.free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "UNET_JAX_"))}
    base.update(
        PYTHONPATH=str(REPO_ROOT),
        JAX_PLATFORMS="cpu",
        JAX_NUM_CPU_DEVICES="1",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    )
    procs = []
    for index in range(2):
        env = _pod_env(container, jobset_name=jobset["metadata"]["name"], index=index)
        # Pod 0's DNS name exists inside the cluster only: here it is this host.
        env["UNET_JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", PROBE],
                env={**base, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for index, (p, output) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, output[-3000:]
        assert output.splitlines()[-1] == f"explicit {index} 2 [0, 1]"
