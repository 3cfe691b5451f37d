"""Segmentation metrics: a jit-friendly confusion matrix and host-side scores.

Device side, :func:`confusion_matrix` turns a batch of predicted and true class ids into
an int32 ``[C, C]`` count matrix (rows = ground truth, columns = prediction); under
``pmap``/``shard_map`` it is summed over devices with ``lax.psum``. Host side,
:class:`ConfusionMatrix` adds those per-batch matrices into an int64 numpy matrix: a
validation split of 5000 frames of 800x600 pixels holds 2.4e9 pixels, more than int32's
2**31 - 1, so accumulating on the device in int32 would overflow. Per batch int32 is safe
(a batch of 8 frames of 800x600 is 3.8e6 pixels).

:func:`segmentation_metrics` derives, from the accumulated matrix, per class
(``TP = cm[c, c]``, ``FP = column sum - TP``, ``FN = row sum - TP``)::

    IoU       = TP / (TP + FP + FN)      NaN when the class is absent from GT and prediction
    Dice      = 2TP / (2TP + FP + FN)    NaN in the same case
    precision = TP / (TP + FP)           NaN when the class was never predicted
    recall    = TP / (TP + FN)           NaN when the class is absent from the GT
    pixels    = TP + FN                  (ground-truth pixel count)

and ``mean_iou``/``mean_dice`` = nanmean over classes (a class absent from both GT and
prediction is excluded rather than counted as 0 or 1; a class predicted but absent from
the GT has IoU 0 and *is* included), ``pixel_accuracy = trace / total`` and
``mean_class_accuracy`` = nanmean of the recalls (classes absent from the GT excluded).
The Dice here is the hard (thresholded) Dice of the whole split, pooled over all images,
unlike the soft per-image Dice of :mod:`unet_jax.train.losses`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unet_jax.data.classes import IGNORE_LABEL


def confusion_matrix(
    predictions: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    ignore_label: int | None = IGNORE_LABEL,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Counts (ground truth, prediction) pairs over the valid pixels of a batch.

    A pixel is counted when its label is in ``[0, num_classes)`` and differs from
    ``ignore_label``, its prediction is in ``[0, num_classes)`` (an argmax always is), and
    its example is real (``mask[b]`` True). One scatter-add (``bincount`` of
    ``label * C + prediction``), no Python loop over pixels, so it jits and runs under
    ``pmap``.

    Args:
        predictions: ``[B, *spatial]`` (or ``[B, *spatial, 1]``) predicted class ids.
        labels: ``[B, *spatial]`` or ``[B, *spatial, 1]`` ground-truth class ids.
        num_classes: Number of classes ``C``.
        ignore_label: Label id to skip (``None``: only out-of-range ids are skipped).
        mask: Optional ``[B]`` bool; examples with False (batch padding) are skipped.

    Returns:
        int32 ``[C, C]``; ``cm[i, j]`` = number of pixels of true class i predicted as j.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    predictions = jnp.asarray(predictions)
    labels = jnp.asarray(labels)
    for name, x in (("predictions", predictions), ("labels", labels)):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(f"{name} must hold integer class ids, got dtype {x.dtype}")
    # Drop a trailing channel of size 1 on whichever side has the extra axis.
    if labels.ndim == predictions.ndim + 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    elif predictions.ndim == labels.ndim + 1 and predictions.shape[-1] == 1:
        predictions = predictions[..., 0]
    if labels.shape != predictions.shape or labels.ndim < 1:
        raise ValueError(
            f"labels shape {labels.shape} does not match predictions shape "
            f"{predictions.shape} (expected [B, ...], optionally with a trailing 1)"
        )
    labels = labels.astype(jnp.int32)
    predictions = predictions.astype(jnp.int32)
    if mask is not None and jnp.shape(mask) != labels.shape[:1]:
        raise ValueError(f"mask must be [B]={labels.shape[:1]}, got shape {jnp.shape(mask)}")
    valid = _counted(
        jnp, predictions, labels, num_classes=num_classes, ignore_label=ignore_label, mask=mask
    )
    index = jnp.where(valid, labels * num_classes + predictions, 0)
    counts = jnp.bincount(
        index.reshape(-1),
        weights=valid.reshape(-1).astype(jnp.int32),
        length=num_classes * num_classes,
    )
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def _counted(
    xp: Any,
    predictions: Any,
    labels: Any,
    *,
    num_classes: int,
    ignore_label: int | None,
    mask: Any | None,
) -> Any:
    """Which pixels a confusion matrix counts (``xp``: ``jax.numpy`` or ``numpy``)."""
    valid = (labels >= 0) & (labels < num_classes)
    valid &= (predictions >= 0) & (predictions < num_classes)
    if ignore_label is not None:
        valid &= labels != ignore_label
    if mask is not None:
        valid &= xp.asarray(mask).astype(bool).reshape((-1,) + (1,) * (labels.ndim - 1))
    return valid


def confusion_counts(
    predictions: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    ignore_label: int | None = IGNORE_LABEL,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """The host twin of :func:`confusion_matrix` (numpy, int64): the same pixels counted.

    For predictions already on the host (eval.py's padded or tiled whole images).

    Args:
        predictions: ``[B, *spatial]`` predicted class ids.
        labels: ``[B, *spatial]`` or ``[B, *spatial, 1]`` ground-truth class ids.
        num_classes: Number of classes ``C``.
        ignore_label: Label id to skip (``None``: only out-of-range ids are skipped).
        mask: Optional ``[B]`` bool; examples with False are skipped.

    Returns:
        int64 ``[C, C]``.
    """
    labels = np.asarray(labels)
    if labels.ndim == np.ndim(predictions) + 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    labels = labels.astype(np.int64)
    predictions = np.asarray(predictions).astype(np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    valid = _counted(
        np, predictions, labels, num_classes=num_classes, ignore_label=ignore_label, mask=mask
    )
    index = labels[valid] * num_classes + predictions[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


class ConfusionMatrix:
    """Host-side int64 accumulator of per-batch confusion matrices.

    Example::

        acc = ConfusionMatrix(NUM_CLASSES)
        for batch in eval_batches:
            acc.update(eval_step(state, batch))  # int32 [C, C] from the device(s)
        results = segmentation_metrics(acc.matrix, CLASS_NAMES)
    """

    def __init__(self, num_classes: int) -> None:
        """Creates an all-zero accumulator.

        Args:
            num_classes: Number of classes ``C``.
        """
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self._matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, cm: Any) -> None:
        """Adds one confusion matrix (device or numpy, any integer dtype).

        Only a single ``[C, C]`` matrix is accepted: summing a stacked ``[n_dev, C, C]``
        implicitly would silently count every pixel ``n_dev`` times when the per-device
        matrices were already ``psum``-ed (each device then holds the total). Pass one copy
        of a ``psum``-ed result, or call ``update`` once per device for un-summed ones.

        Args:
            cm: ``[C, C]`` integer counts.
        """
        cm = np.asarray(cm)
        c = self.num_classes
        if cm.shape != (c, c):
            raise ValueError(
                f"confusion matrix must be [{c}, {c}], got shape {cm.shape} (for per-device "
                "matrices, psum them on device and pass one copy)"
            )
        if not np.issubdtype(cm.dtype, np.integer):
            raise TypeError(f"confusion matrix must be integer, got dtype {cm.dtype}")
        if (cm < 0).any():
            raise ValueError("confusion matrix has negative counts (int32 overflow upstream?)")
        # Widen before adding: the running total passes 2**31 on a real split.
        self._matrix += cm.astype(np.int64)

    def reset(self) -> None:
        """Sets all counts back to zero."""
        self._matrix[...] = 0

    @property
    def matrix(self) -> np.ndarray:
        """A copy of the accumulated int64 ``[C, C]`` matrix."""
        return self._matrix.copy()


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def _nanmean(x: np.ndarray) -> float:
    with warnings.catch_warnings():  # all-NaN -> NaN without a RuntimeWarning
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(x)) if x.size else math.nan


BINARY_KEYS = ("iou", "dice", "precision", "recall")
# The headline scores of every result, and the foreground's of a binary data set.
MEAN_SCORES = ("mean_iou", "mean_dice", "pixel_accuracy", "mean_class_accuracy")
FOREGROUND_SCORES = tuple(f"foreground_{key}" for key in BINARY_KEYS)


def segmentation_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class and mean scores from a confusion matrix (see the module docstring).

    Args:
        cm: ``[C, C]`` counts, rows = ground truth, columns = prediction.
        class_names: ``C`` distinct class names, in class-id order.

    Returns:
        ``{"per_class": {name: {"iou", "dice", "precision", "recall", "pixels"}},
        "mean_iou", "mean_dice", "pixel_accuracy", "mean_class_accuracy",
        "num_pixels"}``, and for two classes ``foreground_iou``, ``foreground_dice``,
        ``foreground_precision``, ``foreground_recall`` (class 1); scores are Python
        floats (NaN where undefined), pixel counts Python ints. Use :func:`to_jsonable`
        before ``json.dump``.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square [C, C], got shape {cm.shape}")
    if not np.issubdtype(cm.dtype, np.integer):
        raise TypeError(f"confusion matrix must be integer, got dtype {cm.dtype}")
    names = list(class_names)
    if len(names) != cm.shape[0]:
        raise ValueError(f"got {len(names)} class names for a {cm.shape[0]}-class matrix")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct, got {names}")
    cm = cm.astype(np.int64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    fp = pred - tp
    fn = gt - tp
    iou = _ratio(tp, tp + fp + fn)
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    precision = _ratio(tp, pred)
    recall = _ratio(tp, gt)
    total = int(cm.sum())
    per_class = {
        name: {
            "iou": float(iou[i]),
            "dice": float(dice[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "pixels": int(gt[i]),
        }
        for i, name in enumerate(names)
    }
    results = {
        "per_class": per_class,
        "mean_iou": _nanmean(iou),
        "mean_dice": _nanmean(dice),
        "pixel_accuracy": float(tp.sum() / total) if total else math.nan,
        "mean_class_accuracy": _nanmean(recall),
        "num_pixels": total,
    }
    if len(names) == 2:  # binary: class 1 is the foreground, the scores that matter
        for key in BINARY_KEYS:
            results[f"foreground_{key}"] = per_class[names[1]][key]
    return results


def to_jsonable(obj: Any) -> Any:
    """Recursively converts numpy scalars/arrays to Python and NaN/inf floats to None.

    Args:
        obj: Nested dicts/lists/tuples of numbers, strings, numpy values.

    Returns:
        The same structure, accepted by ``json.dumps(..., allow_nan=False)``.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def format_score(value: Any, digits: int = 4) -> str:
    """A score with ``digits`` decimals, ``n/a`` when undefined (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def format_table(metrics: dict[str, Any]) -> str:
    """Markdown table of the per-class scores plus a ``mean`` row.

    Undefined (NaN/None) scores are shown as ``n/a``. The ``mean`` row holds mean IoU,
    mean Dice, an empty precision cell, the mean class accuracy (the mean recall) and the
    total pixel count; a last line gives the pixel accuracy.

    Args:
        metrics: Output of :func:`segmentation_metrics` (or its :func:`to_jsonable` form).

    Returns:
        The table as one string (no trailing newline).
    """
    if "per_class" not in metrics:
        raise ValueError("metrics must come from segmentation_metrics (no 'per_class' key)")
    lines = [
        "| class | IoU | Dice | precision | recall | pixels |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in metrics["per_class"].items():
        scores = " | ".join(format_score(m[k]) for k in ("iou", "dice", "precision", "recall"))
        lines.append(f"| {name} | {scores} | {m['pixels']} |")
    lines.append(
        f"| **mean** | {format_score(metrics['mean_iou'])} "
        f"| {format_score(metrics['mean_dice'])} |  "
        f"| {format_score(metrics['mean_class_accuracy'])} | {metrics['num_pixels']} |"
    )
    lines.append("")
    lines.append(f"pixel accuracy: {format_score(metrics['pixel_accuracy'])}")
    return "\n".join(lines)
