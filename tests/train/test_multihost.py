"""2 processes x 2 CPU devices (gloo collectives on 127.0.0.1) equal 1 process x 4 devices,
trained straight or resumed from the other shape."""

import numpy as np
import pytest

from tests import worker_utils

TIMEOUT_S = 240


def _run(tmp_path, name, *, num_processes, local_devices, driver, extra=(), expect=""):
    port = worker_utils.free_port()
    out, workdir = tmp_path / name / "out", tmp_path / name / "workdir"
    procs = [
        worker_utils.start(
            out,
            workdir,
            f"--num_processes={num_processes}",
            f"--process_id={pid}",
            f"--port={port}",
            f"--local_devices={local_devices}",
            f"--driver={driver}",
            *extra,
        )
        for pid in range(num_processes)
    ]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
        except Exception:
            for q in procs:
                q.kill()
            pytest.fail(f"{name}: a process hung past {TIMEOUT_S}s")
    for p, output in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"{name} failed:\n{output[-4000:]}"
    assert expect in outputs[0], f"{name}: {expect!r} not in:\n{outputs[0][-4000:]}"
    return worker_utils.load_params(out)


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


@pytest.mark.slow
def test_resume_on_another_process_and_worker_count(tmp_path):
    # Steps 1-3 on 1 process x 4 devices in-process, steps 4-6 (into the second epoch of 40
    # examples) on 2 processes x 2 devices with a grain worker process each: batch k is the
    # same global batch whatever the shape, so the parameters match an uninterrupted run.
    straight, _ = _run(
        tmp_path, "straight", num_processes=1, local_devices=4, driver="pmap", extra=["--steps=6"]
    )
    _run(tmp_path, "resumed", num_processes=1, local_devices=4, driver="pmap", extra=["--steps=3"])
    resumed, result = _run(
        tmp_path,
        "resumed",
        num_processes=2,
        local_devices=2,
        driver="pmap",
        extra=["--steps=6", "--worker_count=1"],
        expect="Resuming from step 3",
    )
    assert result["step"] == 6
    assert len(straight) == len(resumed) > 0
    for a, b in zip(straight, resumed, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
