"""The Lyft challenge score against F-beta counted by hand on a small example."""

import math

import numpy as np

from unet_jax.evaluation import challenge, metrics

NAMES = ("None", "RoadLines", "Roads", "Vehicles")


def _hand_f(tp, fp, fn, beta):
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def test_matches_hand_counted_f_beta_on_label_maps():
    truth = np.array([[0, 3, 3, 2], [2, 2, 1, 1], [3, 0, 0, 2]])
    pred = np.array([[0, 3, 0, 2], [2, 1, 2, 0], [3, 3, 3, 2]])
    # Vehicles (3): truth at 3 pixels; predicted at 4; overlap 2 -> tp 2, fp 2, fn 1.
    # Road = Roads|RoadLines (1, 2): truth 6 pixels, predicted 5, overlap 5 -> tp 5, fp 0, fn 1.
    cm = np.zeros((4, 4), np.int64)
    np.add.at(cm, (truth.ravel(), pred.ravel()), 1)
    score = challenge.challenge_score(cm, NAMES)
    assert math.isclose(score["vehicles_f2"], _hand_f(2, 2, 1, 2.0))
    assert math.isclose(score["road_f05"], _hand_f(5, 0, 1, 0.5))
    assert math.isclose(score["average"], (_hand_f(2, 2, 1, 2.0) + _hand_f(5, 0, 1, 0.5)) / 2)
    assert math.isclose(score["vehicles_precision"], 0.5)
    assert math.isclose(score["road_recall"], 5 / 6)


def test_road_merges_lines_so_confusing_them_is_no_error():
    cm = np.zeros((4, 4), np.int64)
    cm[1, 2] = 10  # RoadLines predicted as Roads: still road for the challenge
    cm[2, 2] = 10
    assert challenge.challenge_score(cm, NAMES)["road_f05"] == 1.0
    # ...while the per-class IoU of RoadLines is 0.
    assert metrics.segmentation_metrics(cm, NAMES)["per_class"]["RoadLines"]["iou"] == 0.0


def test_recall_weighs_more_for_vehicles():
    cm_missed = np.zeros((4, 4), np.int64)
    cm_missed[3, 3], cm_missed[3, 0] = 10, 10  # half the cars missed
    cm_false = np.zeros((4, 4), np.int64)
    cm_false[3, 3], cm_false[0, 3] = 10, 10  # as many false alarms
    missed = challenge.challenge_score(cm_missed, NAMES)["vehicles_f2"]
    false = challenge.challenge_score(cm_false, NAMES)["vehicles_f2"]
    assert missed < false


def test_other_class_sets_have_no_score():
    assert challenge.challenge_score(np.eye(2, dtype=np.int64), ("bg", "fg")) is None


def test_the_score_is_titled_by_whether_the_data_set_leaves_the_hood_out():
    from unet_jax.evaluation import reports

    assert challenge.hood_state("lyft_udacity/full_nohood") == "left out"
    assert challenge.hood_state("lyft_udacity/synthetic") == "included"
    assert challenge.hood_state("lyft_udacity/full_hood_as_none") == "included"
    assert challenge.hood_state("(in-memory sources)") == "unknown"
    titles = {
        hood: [t for t, k in reports.scores_of({"challenge_average": 0.5, "challenge_hood": hood})]
        for hood in challenge.HOOD_STATES
    }
    assert titles["left out"][-3:] == ["Lyft challenge score", "Vehicles F2", "Road F0.5"]
    assert titles["included"][-3] == "Lyft challenge score (hood included)"
    assert titles["unknown"][-1] == "Road F0.5 (hood unknown)"
