"""The real-data recipes run end to end on the shared real data (skipped when absent).

A few steps each, with narrow widths and small crops so that the suite stays fast; the
full recipes are measured by benchmarks/real_results.sh (docs/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REAL_SAMPLES, REPO_ROOT

pytestmark = pytest.mark.slow

SHARED = REAL_SAMPLES.parent
AERIAL = SHARED / "aerial"
EPISODE = SHARED / "carla_episode"
SMALL = [
    "--config.model.features=(4,8,16,32)",
    "--config.model.bridge_features=32",
    "--config.batch_size=4",
    "--config.num_train_steps=2",
    "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2",
    "--config.log_every_steps=1",
]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def validation_lines(workdir) -> list[dict]:
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x.get("split") == "validation"]


@pytest.mark.skipif(not (AERIAL / "README.md").exists(), reason="../shared/aerial absent")
def test_aerial_cpu_trains_and_evaluates_on_the_real_archive(tmp_path):
    workdir = tmp_path / "aerial"
    common = [f"--config.data_dir={tmp_path / 'data'}"]
    run(
        "train.py",
        "--config=unet_jax/configs/aerial_cpu.py",
        f"--config.manual_dir={AERIAL}",
        f"--workdir={workdir}",
        "--config.image_size=(64,64)",
        *SMALL,
        *common,
    )
    (line,) = validation_lines(workdir)
    assert 0.0 <= line["mean_iou"] <= 1.0
    assert [c["name"] for c in json.loads((workdir / "classes.json").read_text())["classes"]] == [
        "Building",
        "Land (unpaved area)",
        "Road",
        "Vegetation",
        "Water",
        "Unlabeled",
    ]
    out = tmp_path / "eval"
    run("eval.py", f"--workdir={workdir}", f"--out={out}", "--pictures=false", "--progress=false")
    report = json.loads((out / "metrics.json").read_text())
    # Scored on training-size tiles at native scale, as its validation, and reported per
    # image: the 16 test images (2 of the 9 of each of the 8 tiles) in thousands of tiles.
    assert report["split"] == "test" and report["num_examples"] == 16
    assert report["num_tiles"] > 16


@pytest.mark.skipif(not (EPISODE / "README.md").exists(), reason="../shared/carla_episode absent")
def test_carla_real_fine_tunes_on_a_recording_and_scores_real_frames(tmp_path):
    common = [
        "--config=unet_jax/configs/carla_real.py",
        f"--config.manual_dir={EPISODE}",
        f"--config.data_dir={tmp_path / 'data'}",
        "--config.image_size=(48,64)",
        *SMALL,
    ]
    scratch, tuned = tmp_path / "scratch", tmp_path / "tuned"
    first = run("train.py", f"--workdir={scratch}", *common)
    # The recording is cut into contiguous blocks, never frame by frame.
    assert "validation frames 309..402 (32), test frames 405..498 (32)" in first.stdout
    run("train.py", *common, f"--workdir={tuned}", f"--config.init_from={scratch}")
    assert json.loads((tuned / "config.json").read_text())["init_from"] == str(scratch)
    if (REAL_SAMPLES / "CameraRGB" / "0.png").exists():
        scored = run(
            "benchmarks/real_frames.py", f"--workdir={tuned}", f"--frames={REAL_SAMPLES}"
        ).stdout
        assert "6 real frames, hood keep" in scored and "6 real frames, hood ignore" in scored
        assert "Lyft challenge score, full resolution 600x800" in scored
        assert float(scored.split("predict: ")[1].split(" frames/s")[0]) > 0
