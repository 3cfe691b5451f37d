"""benchmarks/void_reading.py: the void reading of a confusion matrix, against a hand count."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.void_reading import void_reading
from tests.conftest import REPO_ROOT
from unet_jax.errors import UserError
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
    with pytest.raises(UserError, match="'w' is not a class"):
        void_reading(CM, NAMES, ["w"])


def test_a_class_absent_everywhere_is_undefined_not_zero():
    cm = np.array([[5, 0, 0], [0, 0, 0], [1, 0, 2]])
    voided = void_reading(cm, NAMES, ["v"])
    assert math.isnan(voided["b"]) and voided["mean"] == pytest.approx(5 / 5)


def test_the_command_names_an_unknown_class_in_one_line_exit_2(tmp_path):
    report = tmp_path / "metrics.json"
    report.write_text(json.dumps({"class_names": NAMES, "confusion_matrix": CM.tolist()}))
    script = REPO_ROOT / "benchmarks" / "void_reading.py"
    args = [sys.executable, str(script), f"--metrics={report}"]
    done = subprocess.run([*args, "--void=w"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: --void 'w' is not a class of the run ({NAMES})"
    ]
    done = subprocess.run([*args, "--void=v"], capture_output=True, text=True, timeout=120)
    assert (
        done.returncode == 0 and "| mean | 0.3778 | 0.6667 |"
    )  # (8/15 + 6/10 + 0) / 3; (8/12 + 6/9) / 2 in done.stdout
