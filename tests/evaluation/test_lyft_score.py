"""benchmarks/lyft_score.py: per-class IoU with the hood left out, against a hand count."""

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from benchmarks.lyft_score import score
from tests.conftest import REPO_ROOT

VEHICLES, ROADS, PEDESTRIANS = 10, 7, 4


def _write_label(path, label):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([label, np.zeros_like(label), np.zeros_like(label)], -1)).save(path)


def test_per_class_iou_leaves_the_hood_out(tmp_path):
    truth = np.full((20, 10), ROADS, np.uint8)
    truth[2:4, 2:6] = VEHICLES  # a car far from the hood: 8 px
    truth[5:7, 7:9] = PEDESTRIANS  # 4 px
    truth[18:, :] = VEHICLES  # the hood: Vehicles of the bottom band tied to the last row
    pred = np.full_like(truth, ROADS)
    pred[2:4, 2:5] = VEHICLES  # 6 of the car's 8 px
    pred[9, 0:2] = VEHICLES  # 2 false Vehicles px on the road
    pred[18:, :] = ROADS  # the hood called Roads: ignored, costs nothing
    (tmp_path / "frames" / "CameraRGB").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 10, 3), np.uint8)).save(
        tmp_path / "frames" / "CameraRGB" / "f.png"
    )
    _write_label(tmp_path / "frames" / "CameraSeg" / "f.png", truth)
    _write_label(tmp_path / "pred" / "labels" / "f.png", pred)

    scores = score(tmp_path / "pred", tmp_path / "frames")

    # By hand, the hood's 20 px left out: Vehicles tp 6, fn 2, fp 2; Pedestrians tp 0, fn 4;
    # Roads: 180 - 8 - 4 = 168 truth px of which 2 predicted Vehicles (tp 166), predicted
    # Roads also on the car's 2 and the pedestrian's 4 px (fp 6).
    assert scores["iou_hood_left_out/Vehicles"] == pytest.approx(6 / 10)
    assert scores["vehicles_iou_hood_left_out"] == pytest.approx(6 / 10)
    assert scores["iou_hood_left_out/Pedestrians"] == 0.0
    assert scores["iou_hood_left_out/Roads"] == pytest.approx(166 / (166 + 2 + 6))
    assert math.isnan(scores["iou_hood_left_out/TrafficSigns"])  # neither in truth nor predicted


def test_frames_without_labels_are_one_line_exit_2(tmp_path):
    (tmp_path / "frames" / "CameraSeg").mkdir(parents=True)
    script = REPO_ROOT / "benchmarks" / "lyft_score.py"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            f"--predictions={tmp_path}",
            f"--frames={tmp_path / 'frames'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: no CameraSeg/*.png in {tmp_path / 'frames'}"
    ]
