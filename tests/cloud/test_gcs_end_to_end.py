"""train.py, eval.py, predict, export, unet_jax.load and init_from on gs:// (the emulator).

One run is trained into the bucket (from a folder data set in the bucket) and shared by the
tests; each checks what lands in the bucket and that no local ``gs:`` folder appears.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.cloud.emulator import BUCKET
from tests.conftest import REPO_ROOT
from tests.test_failures import folder_args, make_folder

pytestmark = pytest.mark.slow
RUN = f"gs://{BUCKET}/run"


def _python(cwd: pathlib.Path, *argv: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert not list(cwd.rglob("gs:*")), f"a local gs: folder in {cwd}"
    return result


def train_args(workdir: str, *extra: str) -> list[str]:
    """The folder config at a test's size, its folder and data_dir in the bucket."""
    args = folder_args(f"gs://{BUCKET}/data", f"gs://{BUCKET}/tfds", f"--workdir={workdir}")
    args[0], args[2] = str(REPO_ROOT / args[0]), str(REPO_ROOT / args[2])  # train.py, config
    return [*args, "--config.model.features=(4,8)", *extra]


class Trained:
    def __init__(self, emulator, root: pathlib.Path) -> None:
        self.emulator = emulator
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        make_folder(root / "data")
        emulator.fs().put(str(root / "data"), f"{BUCKET}/data", recursive=True)
        self.local = root / "data"
        self.first = self.train(RUN, "--config.num_train_steps=3")

    def train(self, workdir: str, *extra: str) -> subprocess.CompletedProcess:
        return _python(self.cwd, *train_args(workdir, *extra))

    def read(self, name: str) -> bytes:
        return self.emulator.fs().cat_file(f"{BUCKET}/{name}")


@pytest.fixture(scope="module")
def trained(emulator, tmp_path_factory):
    return Trained(emulator, tmp_path_factory.mktemp("gcs_run"))


def test_a_run_with_a_bucket_workdir_is_written_to_the_bucket(trained, emulator):
    assert trained.first.returncode == 0, trained.first.stdout + trained.first.stderr
    objects = emulator.objects("run")
    for name in ("config.json", "run_info.json", "run_history.jsonl", "classes.json"):
        assert name in objects
    for step in (1, 2, 3):  # orbax's commit file: the checkpoint is complete
        assert f"checkpoints/{step}/commit_success.txt" in objects
    assert "best/3/commit_success.txt" in objects
    assert any(o.startswith("tensorboard/events.out.tfevents") for o in objects)
    records = [json.loads(line) for line in trained.read("run/metrics.jsonl").splitlines()]
    assert {(r["step"], r["split"]) for r in records} >= {(2, "train"), (3, "validation")}
    config = json.loads(trained.read("run/config.json"))
    assert config["folder"] == f"gs://{BUCKET}/data"  # the run records the bucket's URL


def _start(cwd: pathlib.Path, workdir: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *train_args(workdir, *extra)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def _complete_steps(emulator, prefix: str, folder: str = "checkpoints") -> list[int]:
    """The steps of ``gs://bucket/<prefix>/<folder>/`` with orbax's commit file."""
    pattern = re.compile(rf"{folder}/(\d+)/commit_success\.txt")
    done = (pattern.fullmatch(name) for name in emulator.objects(prefix))
    return sorted(int(m.group(1)) for m in done if m)


def _wait_for_step(emulator, prefix: str, process: subprocess.Popen, after: int) -> None:
    deadline = time.monotonic() + 600
    while max(_complete_steps(emulator, prefix), default=0) <= after and process.poll() is None:
        assert time.monotonic() < deadline, f"no checkpoint after step {after}"
        time.sleep(0.5)


def test_the_same_command_resumes_and_a_sigterm_saves_to_the_bucket(trained, emulator):
    process = _start(trained.cwd, RUN, "--config.num_train_steps=200")
    try:
        _wait_for_step(emulator, "run", process, after=4)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 143, stdout + stderr
    assert f"Resuming from step 3 ({RUN}/checkpoints)" in stdout
    saved = int(re.search(r"SIGTERM: saved step (\d+)", stdout).group(1))
    assert saved > 4 and saved in _complete_steps(emulator, "run")
    history = trained.read("run/run_history.jsonl").decode().splitlines()
    assert len(history) == 2  # appended to, not replaced


def test_load_from_the_bucket_equals_load_from_a_local_copy(trained, emulator, tmp_path):
    import unet_jax

    local = tmp_path / "run"
    emulator.fs().get(f"{BUCKET}/run", str(local), recursive=True)
    _, from_bucket = unet_jax.load(RUN)
    _, from_disk = unet_jax.load(local)
    jax.tree_util.tree_map(np.testing.assert_array_equal, from_bucket, from_disk)


def test_eval_predict_and_export_read_and_write_the_bucket(trained, emulator):
    cwd = trained.cwd
    result = _python(cwd, str(REPO_ROOT / "eval.py"), f"--workdir={RUN}")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(trained.read("run/eval/test/metrics.json"))
    assert {"metrics.md", "report.html", "confusion_matrix.png"} <= set(
        emulator.objects("run/eval/test")
    )
    assert report["checkpoint"]["step"] in _complete_steps(emulator, "run", "best")

    images = f"gs://{BUCKET}/data/images/*.png"
    result = _python(cwd, "-m", "unet_jax.predict", images, f"--workdir={RUN}", "--out",
                     f"gs://{BUCKET}/pred")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    predictions = json.loads(trained.read("pred/predictions.json"))
    stems = sorted(p.stem for p in (trained.local / "images").iterdir())
    assert sorted(pathlib.PurePath(r["input"]).stem for r in predictions["images"]) == stems
    assert {f"labels/{s}.png" for s in stems} <= set(emulator.objects("pred"))

    result = _python(cwd, "-m", "unet_jax.export", f"--workdir={RUN}", "--out",
                     f"gs://{BUCKET}/model.jaxexport")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    exported = jax.export.deserialize(bytearray(trained.read("model.jaxexport")))
    assert exported.in_avals[0].dtype == np.uint8


def test_init_from_a_bucket_run(trained, emulator):
    result = trained.train(
        f"gs://{BUCKET}/finetuned", f"--config.init_from={RUN}:best", "--config.num_train_steps=1"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    info = json.loads(trained.read("finetuned/run_info.json"))
    assert info["init_from"]["workdir"] == RUN
    assert "checkpoints/1/commit_success.txt" in emulator.objects("finetuned")


def test_a_bucket_lost_mid_run_is_one_error_and_the_same_command_resumes(
    trained, emulator, tmp_path
):
    # The bucket goes while the run compiles, after it has resumed: the next write to it
    # (gcsfs, within its retries) ends the run. An outage in the middle of TensorStore's
    # writes of a checkpoint's arrays ends the same way after TensorStore's own retries
    # (minutes), too slow for a test.
    last = _complete_steps(emulator, "run")[-1]
    command = f"--config.num_train_steps={last + 2}"
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, *train_args(RUN, command)],
            cwd=trained.cwd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
        )
        try:
            for line in process.stdout:
                if line.startswith("Resuming from step"):
                    emulator.stop()
                    break
            process.communicate(timeout=600)
        finally:
            process.kill()
            if emulator.process is None:
                emulator.start()
    errors = log.read_text()
    assert process.returncode == 4, errors
    assert errors.strip().splitlines()[-1].startswith("error: cloud storage could not be reached")
    assert "run the same command again" in errors and "Traceback" not in errors
    assert _complete_steps(emulator, "run")[-1] == last

    result = trained.train(RUN, command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Resuming from step {last} ({RUN}/checkpoints)" in result.stdout
    assert _complete_steps(emulator, "run")[-1] == last + 2
