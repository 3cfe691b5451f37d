"""unet_jax.evaluation.metrics: hand-computed scores, a loop oracle, int64 accumulation."""

import json
import math
import warnings

import jax
import numpy as np
import pytest

from datasets.lyft_udacity.classes import CLASS_NAMES, NUM_CLASSES
from unet_jax.evaluation import metrics

IGN = 255

# Rows = ground truth, columns = prediction. Class "c2" is predicted once but absent from
# the GT, "c3" is in the GT but never predicted, "c4" is absent from both.
HAND_CM = np.array(
    [
        [4, 1, 1, 0, 0],
        [2, 6, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)
HAND_NAMES = ["c0", "c1", "c2", "c3", "c4"]


def _nan_or(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def test_hand_made_confusion_matrix_scores():
    m = metrics.segmentation_metrics(HAND_CM, HAND_NAMES)
    pc = m["per_class"]
    # c0: TP 4, FP 2, FN 2.  c1: TP 6, FP 2, FN 2.
    assert pc["c0"]["iou"] == pytest.approx(4 / 8)
    assert pc["c0"]["dice"] == pytest.approx(8 / 12)
    assert pc["c0"]["precision"] == pytest.approx(4 / 6)
    assert pc["c0"]["recall"] == pytest.approx(4 / 6)
    assert pc["c0"]["pixels"] == 6
    assert pc["c1"]["iou"] == pytest.approx(6 / 10)
    assert pc["c1"]["dice"] == pytest.approx(12 / 16)
    assert pc["c1"]["precision"] == pytest.approx(6 / 8)
    assert pc["c1"]["recall"] == pytest.approx(6 / 8)
    # c2: predicted once, never in GT -> IoU/Dice/precision 0, recall undefined.
    assert (pc["c2"]["iou"], pc["c2"]["dice"], pc["c2"]["precision"]) == (0.0, 0.0, 0.0)
    assert math.isnan(pc["c2"]["recall"]) and pc["c2"]["pixels"] == 0
    # c3: one GT pixel, never predicted -> 0 except precision (nothing predicted).
    assert (pc["c3"]["iou"], pc["c3"]["dice"], pc["c3"]["recall"]) == (0.0, 0.0, 0.0)
    assert math.isnan(pc["c3"]["precision"])
    # c4: absent from both -> everything undefined and excluded from the means.
    assert all(math.isnan(pc["c4"][k]) for k in ("iou", "dice", "precision", "recall"))
    assert m["mean_iou"] == pytest.approx((0.5 + 0.6 + 0 + 0) / 4)
    assert m["mean_dice"] == pytest.approx((8 / 12 + 12 / 16 + 0 + 0) / 4)
    assert m["pixel_accuracy"] == pytest.approx(10 / 15)
    assert m["mean_class_accuracy"] == pytest.approx((4 / 6 + 6 / 8 + 0) / 3)
    assert m["num_pixels"] == 15
    assert isinstance(m["mean_iou"], float) and isinstance(pc["c0"]["pixels"], int)


def test_perfect_diagonal_is_all_ones():
    cm = np.diag([5, 0, 7])
    m = metrics.segmentation_metrics(cm, ["a", "b", "c"])
    assert m["mean_iou"] == m["mean_dice"] == m["pixel_accuracy"] == 1.0
    assert math.isnan(m["per_class"]["b"]["iou"])


def test_empty_matrix_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = metrics.segmentation_metrics(np.zeros((3, 3), np.int64), ["a", "b", "c"])
    for key in ("mean_iou", "mean_dice", "pixel_accuracy", "mean_class_accuracy"):
        assert math.isnan(m[key])
    assert m["num_pixels"] == 0


def _loop_confusion(pred, labels, num_classes, mask):
    cm = np.zeros((num_classes, num_classes), np.int64)
    for b in range(labels.shape[0]):
        if not mask[b]:
            continue
        for t, p in zip(labels[b].ravel(), pred[b].ravel(), strict=True):
            if t == IGN or t >= num_classes:
                continue
            cm[t, p] += 1
    return cm


def _random_batch(seed, b=4, h=9, w=11, num_classes=NUM_CLASSES):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=(b, h, w, 1)).astype(np.uint8)
    drop = rng.random(labels.shape) < 0.15
    labels[drop] = rng.choice([IGN, num_classes, 200], size=int(drop.sum()))
    pred = rng.integers(0, num_classes, size=(b, h, w)).astype(np.int32)
    mask = np.ones(b, bool)
    mask[-1] = False
    return pred, labels, mask


def test_confusion_matrix_matches_loop_oracle():
    pred, labels, mask = _random_batch(0)
    want = _loop_confusion(pred, labels[..., 0], NUM_CLASSES, mask)
    assert want.sum() > 0
    got = metrics.confusion_matrix(pred, labels, num_classes=NUM_CLASSES, mask=mask)
    assert got.dtype == np.int32 and got.shape == (NUM_CLASSES, NUM_CLASSES)
    np.testing.assert_array_equal(got, want)
    jitted = jax.jit(
        lambda p, lb, m: metrics.confusion_matrix(p, lb, num_classes=NUM_CLASSES, mask=m)
    )
    np.testing.assert_array_equal(jitted(pred, labels, mask), want)
    # Without mask every example counts.
    got = metrics.confusion_matrix(pred, labels[..., 0], num_classes=NUM_CLASSES)
    np.testing.assert_array_equal(got, _loop_confusion(pred, labels[..., 0], NUM_CLASSES, [1] * 4))


def test_confusion_matrix_skips_out_of_range_predictions():
    # -1 and 3 are no class ids of a 2-class problem; label * C + pred would land them in
    # cells (0, 1) and (1, 1) if they were not skipped.
    labels = np.array([[0, 1, 1, IGN, 0]])
    pred = np.array([[0, -1, 1, 1, 3]])
    got = metrics.confusion_matrix(pred, labels, num_classes=2)
    np.testing.assert_array_equal(got, [[1, 0], [0, 1]])


def test_confusion_matrix_psum_over_four_devices_equals_single_device():
    n_dev = 4
    assert jax.local_device_count() >= n_dev
    pred, labels, mask = _random_batch(1, b=8)
    mask[[2, 5]] = False
    single = metrics.confusion_matrix(pred, labels, num_classes=NUM_CLASSES, mask=mask)

    def step(p, lb, m):
        cm = metrics.confusion_matrix(p, lb, num_classes=NUM_CLASSES, mask=m)
        return jax.lax.psum(cm, "d")

    shard = lambda x: x.reshape((n_dev, -1) + x.shape[1:])
    out = jax.pmap(step, axis_name="d")(shard(pred), shard(labels), shard(mask))
    for d in range(n_dev):
        np.testing.assert_array_equal(out[d], single)
    # Accumulating the un-psummed per-device matrices on the host is the same.
    per_dev = jax.pmap(
        lambda p, lb, m: metrics.confusion_matrix(p, lb, num_classes=NUM_CLASSES, mask=m)
    )(shard(pred), shard(labels), shard(mask))
    acc = metrics.ConfusionMatrix(NUM_CLASSES)
    for d in range(n_dev):
        acc.update(per_dev[d])
    np.testing.assert_array_equal(acc.matrix, single)


def test_accumulator_int64_exceeds_int32_range():
    acc = metrics.ConfusionMatrix(3)
    big = np.full((3, 3), 2**30, np.int32)  # each a valid int32 batch matrix
    big[0, 1] = 2**31 - 1
    for _ in range(3):
        acc.update(big)
    total = acc.matrix
    assert total.dtype == np.int64
    assert total[0, 0] == 3 * 2**30 and total[0, 1] == 3 * (2**31 - 1)
    assert total.sum() == 3 * (8 * 2**30 + 2**31 - 1) > 2**31
    m = metrics.segmentation_metrics(total, ["a", "b", "c"])
    assert m["num_pixels"] == int(total.sum())
    assert m["pixel_accuracy"] == pytest.approx(3 * 2**30 / (8 * 2**30 + 2**31 - 1))
    assert m["per_class"]["a"]["pixels"] == 3 * (2 * 2**30 + 2**31 - 1)
    acc.reset()
    assert acc.matrix.sum() == 0


def test_accumulator_rejects_bad_matrices():
    acc = metrics.ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"\[3, 3\]"):
        acc.update(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="psum"):  # stacked per-device: no silent sum
        acc.update(np.zeros((4, 3, 3), np.int32))
    with pytest.raises(ValueError, match="negative"):
        acc.update(np.full((3, 3), -5, np.int32))
    with pytest.raises(TypeError, match="integer"):
        acc.update(np.zeros((3, 3), np.float32))


def test_to_jsonable_and_json_roundtrip():
    m = metrics.segmentation_metrics(HAND_CM, HAND_NAMES)
    j = metrics.to_jsonable(m)
    text = json.dumps(j, allow_nan=False)  # raises if a NaN slipped through
    back = json.loads(text)
    assert back["per_class"]["c4"]["iou"] is None
    assert back["per_class"]["c3"]["precision"] is None
    assert back["per_class"]["c0"]["iou"] == pytest.approx(0.5)
    assert back["mean_iou"] == pytest.approx(m["mean_iou"])
    assert metrics.to_jsonable({"a": np.float32(np.inf), "b": np.arange(2)}) == {
        "a": None,
        "b": [0, 1],
    }


def test_format_table_rows_and_values():
    m = metrics.segmentation_metrics(HAND_CM, HAND_NAMES)
    table = metrics.format_table(m)
    assert metrics.format_table(metrics.to_jsonable(m)) == table
    lines = table.splitlines()
    assert lines[0] == "| class | IoU | Dice | precision | recall | pixels |"
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in lines[2:8]}
    assert list(rows)[:5] == HAND_NAMES
    for name in HAND_NAMES:
        pc = m["per_class"][name]
        want = [
            "n/a" if _nan_or(pc[k]) is None else f"{pc[k]:.4f}"
            for k in ("iou", "dice", "precision", "recall")
        ] + [str(pc["pixels"])]
        assert rows[name] == want
    assert rows["**mean**"][0] == f"{m['mean_iou']:.4f}"
    assert rows["**mean**"][4] == "15"
    assert lines[-1] == f"pixel accuracy: {10 / 15:.4f}"


def test_real_class_names_and_errors():
    cm = np.eye(NUM_CLASSES, dtype=np.int64)
    m = metrics.segmentation_metrics(cm, CLASS_NAMES)
    assert list(m["per_class"]) == list(CLASS_NAMES)
    with pytest.raises(ValueError, match="12 class names"):
        metrics.segmentation_metrics(cm, CLASS_NAMES[:-1])
    with pytest.raises(ValueError, match="square"):
        metrics.segmentation_metrics(np.zeros((2, 3), np.int64), ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        metrics.segmentation_metrics(np.zeros((2, 2), np.int64), ["a", "a"])
    with pytest.raises(ValueError, match="does not match"):
        metrics.confusion_matrix(np.zeros((2, 3, 4), int), np.zeros((2, 3, 5), int), num_classes=3)
    with pytest.raises(ValueError, match="mask"):
        metrics.confusion_matrix(
            np.zeros((2, 3), int), np.zeros((2, 3), int), num_classes=3, mask=np.ones(3, bool)
        )
