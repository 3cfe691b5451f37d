"""benchmarks/void_reading.py: the void reading of a confusion matrix, against a hand count."""

import math

import numpy as np
import pytest

from benchmarks.void_reading import void_reading
from unet_jax.evaluation import metrics

NAMES = ["a", "b", "v"]
# rows ground truth, columns prediction
CM = np.array([[8, 1, 1], [2, 6, 0], [3, 1, 0]])


def test_every_class_scored_is_the_metrics_modules_mean_iou():
    scored = void_reading(CM, NAMES, ())
    expected = metrics.segmentation_metrics(CM, NAMES)
    assert scored["mean"] == pytest.approx(expected["mean_iou"])
    for name in NAMES:
        assert scored[name] == pytest.approx(expected["per_class"][name]["iou"])


def test_void_rows_leave_and_predictions_of_the_void_class_stay_errors():
    voided = void_reading(CM, NAMES, ["v"])
    # By hand, row v dropped: a: tp 8, gt 10, predicted 8+2 -> 8 / 12; b: tp 6, gt 8,
    # predicted 1+6 -> 6 / 9 (a's pixel predicted v stays a's error).
    assert voided["a"] == pytest.approx(8 / 12) and voided["b"] == pytest.approx(6 / 9)
    assert "v" not in voided and voided["mean"] == pytest.approx((8 / 12 + 6 / 9) / 2)


def test_an_unknown_void_name_is_one_error():
    with pytest.raises(SystemExit, match="'w' is not a class"):
        void_reading(CM, NAMES, ["w"])


def test_a_class_absent_everywhere_is_undefined_not_zero():
    cm = np.array([[5, 0, 0], [0, 0, 0], [1, 0, 2]])
    voided = void_reading(cm, NAMES, ["v"])
    assert math.isnan(voided["b"]) and voided["mean"] == pytest.approx(5 / 5)
