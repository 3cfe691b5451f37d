"""The Lyft Perception Challenge score (2018) from a confusion matrix.

The challenge scored two binary masks per frame: Vehicles by F2 (recall weighs more:
missing a car is worse than a false alarm) and Road (Roads and RoadLines together) by
F0.5 (precision weighs more), with the ego car's hood excluded; its score is the mean of
the two. The counts here are pooled over all pixels of all frames, and hood pixels must
already be left out of the matrix (labels ignored, e.g. the ``*_nohood`` data sets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The one-line definition every report prints beside the score.
DEFINITION = (
    "Lyft challenge score: the mean of Vehicles F2 and Road (Roads + RoadLines) F0.5, "
    "pixels pooled over the split; the 2018 challenge left the ego car's hood out"
)
# The data sets whose labels leave the hood out (ignored): the ``*_nohood`` ones.
NO_HOOD_SUFFIX = "_nohood"
HOOD_STATES = ("left out", "included", "unknown")

VEHICLE_CLASSES = ("Vehicles",)
ROAD_CLASSES = ("Roads", "RoadLines")
VEHICLE_BETA = 2.0
ROAD_BETA = 0.5


def hood_state(dataset: str) -> str:
    """Whether a data set's labels leave the ego car's hood out, as the challenge did.

    Args:
      dataset: the data set's name, e.g. ``lyft_udacity/full_nohood``.

    Returns:
      "left out" (``*_nohood``), "included" (any other ``lyft_udacity`` data set: the
      hood is labelled, as Vehicles or as None) or "unknown" (given sources, other data).
    """
    if dataset.endswith(NO_HOOD_SUFFIX):
        return HOOD_STATES[0]
    return HOOD_STATES[1] if dataset.startswith("lyft_udacity/") else HOOD_STATES[2]


def f_beta(*, tp: int, fp: int, fn: int, beta: float) -> float:
    """F-beta from binary counts: (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp); NaN if empty."""
    b2 = beta * beta
    den = (1.0 + b2) * tp + b2 * fn + fp
    return (1.0 + b2) * tp / den if den > 0 else float("nan")


def _binary_counts(cm: np.ndarray, ids: list[int]) -> dict[str, int]:
    """True positives, false positives and false negatives of the union of ``ids``."""
    tp = int(cm[np.ix_(ids, ids)].sum())
    return {
        "tp": tp,
        "fp": int(cm[:, ids].sum()) - tp,
        "fn": int(cm[ids, :].sum()) - tp,
    }


def challenge_score(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, float] | None:
    """The challenge's scores, or None for a class set without Vehicles, Roads, RoadLines.

    Args:
        cm: ``[C, C]`` integer counts (rows: truth, columns: prediction), hood left out.
        class_names: the ``C`` class names in id order.

    Returns:
        ``{"vehicles_f2", "road_f05", "average", "vehicles_precision",
        "vehicles_recall", "road_precision", "road_recall"}`` as floats (NaN where a
        class is absent from both truth and prediction).
    """
    names = list(class_names)
    if not all(name in names for name in VEHICLE_CLASSES + ROAD_CLASSES):
        return None
    cm = np.asarray(cm, np.int64)
    scores = {}
    for key, classes, beta in (
        ("vehicles", VEHICLE_CLASSES, VEHICLE_BETA),
        ("road", ROAD_CLASSES, ROAD_BETA),
    ):
        counts = _binary_counts(cm, [names.index(c) for c in classes])
        scores[key] = f_beta(**counts, beta=beta)
        predicted, actual = counts["tp"] + counts["fp"], counts["tp"] + counts["fn"]
        scores[f"{key}_precision"] = counts["tp"] / predicted if predicted else float("nan")
        scores[f"{key}_recall"] = counts["tp"] / actual if actual else float("nan")
    return {
        "vehicles_f2": scores["vehicles"],
        "road_f05": scores["road"],
        "average": (scores["vehicles"] + scores["road"]) / 2.0,
        "vehicles_precision": scores["vehicles_precision"],
        "vehicles_recall": scores["vehicles_recall"],
        "road_precision": scores["road_precision"],
        "road_recall": scores["road_recall"],
    }
