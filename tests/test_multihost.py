"""2 processes x 2 CPU devices (gloo collectives on 127.0.0.1) equal 1 process x 4 devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

WORKER = REPO_ROOT / "tests" / "multihost_worker.py"
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path, name, *, num_processes, local_devices, driver):
    port = _free_port()
    out_dir, workdir = tmp_path / name / "out", tmp_path / name / "workdir"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(out_dir),
                str(workdir),
                str(num_processes),
                str(pid),
                str(local_devices),
                str(port),
                driver,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in range(num_processes)
    ]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"{name}: a process hung past {TIMEOUT_S}s")
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"{name} failed:\n{out[-4000:]}"
    params = np.load(out_dir / "params.npz")
    return [params[f"p{i}"] for i in range(len(params.files))], json.loads(
        (out_dir / "result.json").read_text()
    )


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["pmap", "mesh"])
def test_two_hosts_equal_one_host(tmp_path, driver):
    single, single_result = _run(
        tmp_path, "single", num_processes=1, local_devices=4, driver=driver
    )
    multi, multi_result = _run(tmp_path, "multi", num_processes=2, local_devices=2, driver=driver)
    assert multi_result["step"] == single_result["step"] == 4
    assert len(single) == len(multi) > 0
    for a, b in zip(single, multi, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert multi_result["mean_iou"] == pytest.approx(single_result["mean_iou"], abs=1e-3)
