"""benchmarks/lyft_score.py: per-class IoU with the hood left out, against a hand count."""

import math

import numpy as np
import pytest
from PIL import Image

from benchmarks.lyft_score import score

VEHICLES, ROADS, PEDESTRIANS, SIGNS = 10, 7, 4, 12


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
    Image.fromarray(np.zeros((20, 10, 3), np.uint8)).save(tmp_path / "rgb.png")
    (tmp_path / "frames" / "CameraRGB").mkdir(parents=True)
    (tmp_path / "frames" / "CameraRGB" / "f.png").write_bytes((tmp_path / "rgb.png").read_bytes())
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
