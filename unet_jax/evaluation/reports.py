"""Evaluation pictures (matplotlib, Agg backend) and Markdown.

Every plot function writes one PNG and returns its path; the array helpers they rely on
(:func:`row_normalise`, :func:`error_map`, :func:`class_comparison`,
:func:`training_curves`) are pure numpy so they can be tested without looking at pixels.
Colours of classes are the CARLA palette of :mod:`unet_jax.data.classes`.
"""

from __future__ import annotations

import math
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from unet_jax import storage
from unet_jax.data.classes import IGNORE_LABEL, ClassSet
from unet_jax.evaluation import challenge
from unet_jax.evaluation.metrics import format_score

# error_map / class_comparison colours (RGB).
WRONG_COLOR = (230, 25, 25)
IGNORED_COLOR = (255, 255, 255)
TP_COLOR = (40, 200, 40)  # predicted and true
FP_COLOR = (230, 25, 25)  # predicted, not true
FN_COLOR = (40, 90, 255)  # true, not predicted


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display (and no Tk on servers)
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------
# Array helpers.
# ----------------------------------------------------------------------------


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Divides each row of a confusion matrix by its sum (rows = ground truth).

    Args:
      cm: [C, C] counts.

    Returns:
      float64 [C, C]; each row sums to 1, rows without pixels are NaN.
    """
    cm = np.asarray(cm, np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.full_like(cm, np.nan), where=totals > 0)


def _dimmed_grey(image: np.ndarray, factor: float = 0.45) -> np.ndarray:
    grey = image.astype(np.float32).mean(axis=-1, keepdims=True) * factor
    return np.repeat(grey, 3, axis=-1).astype(np.uint8)


def error_map(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Wrong pixels in red over a dimmed grey image; ignored pixels white.

    Args:
      image: uint8 [H, W, 3].
      label: [H, W] ground-truth ids (``IGNORE_LABEL`` = ignored).
      prediction: [H, W] predicted ids.

    Returns:
      uint8 [H, W, 3].
    """
    out = _dimmed_grey(image)
    ignored = label == IGNORE_LABEL
    out[(label != prediction) & ~ignored] = WRONG_COLOR
    out[ignored] = IGNORED_COLOR
    return out


def class_comparison(
    image: np.ndarray, label: np.ndarray, prediction: np.ndarray, class_id: int
) -> np.ndarray:
    """One class's prediction against its ground truth: TP green, FP red, FN blue.

    Args:
      image: uint8 [H, W, 3], shown dimmed underneath.
      label: [H, W] ground-truth ids.
      prediction: [H, W] predicted ids.
      class_id: the class.

    Returns:
      uint8 [H, W, 3]; ignored pixels white.
    """
    out = _dimmed_grey(image)
    ignored = label == IGNORE_LABEL
    true, pred = (label == class_id) & ~ignored, (prediction == class_id) & ~ignored
    out[true & pred] = TP_COLOR
    out[pred & ~true] = FP_COLOR
    out[true & ~pred] = FN_COLOR
    out[ignored] = IGNORED_COLOR
    return out


def _mask_image(mask: np.ndarray, color: Sequence[int]) -> np.ndarray:
    # Light background: several class colours (None, Vehicles) are dark.
    out = np.full(mask.shape + (3,), 232, np.uint8)
    out[mask] = color
    return out


def class_iou(label: np.ndarray, prediction: np.ndarray, class_id: int) -> float:
    """IoU of one class on one image (NaN when absent from both), ignored pixels excluded."""
    valid = label != IGNORE_LABEL
    true, pred = (label == class_id) & valid, (prediction == class_id) & valid
    union = int((true | pred).sum())
    return int((true & pred).sum()) / union if union else math.nan


def training_curves(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Extracts the series to plot from ``metrics.jsonl`` records.

    Args:
      records: ``unet_jax.run.metric_writers.read_metrics`` output.

    Returns:
      ``{"train_loss": (steps, values), "validation_loss": (...), "validation_mean_iou":
      (...), "steps_per_epoch": float or None}``; each series sorted by step, records
      without the value (or with None) skipped.
    """

    def series(split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        points = sorted(
            (r["step"], r[key])
            for r in records
            if r.get("split") == split and r.get(key) is not None
        )
        steps = np.array([p[0] for p in points], np.int64)
        return steps, np.array([p[1] for p in points], np.float64)

    ratios = [r["step"] / r["epoch"] for r in records if r.get("epoch")]
    return {
        "train_loss": series("train", "loss"),
        "validation_loss": series("validation", "loss"),
        "validation_mean_iou": series("validation", "mean_iou"),
        "steps_per_epoch": float(np.median(ratios)) if ratios else None,
    }


# ----------------------------------------------------------------------------
# Pictures.
# ----------------------------------------------------------------------------


def plot_confusion_matrix(
    cm: np.ndarray, class_names: Sequence[str], path: str | pathlib.Path, *, title: str
) -> pathlib.Path:
    """Row-normalised confusion matrix, class names on both axes, shares in the cells.

    Args:
      cm: [C, C] counts (rows ground truth, columns prediction).
      class_names: C names.
      path: output PNG.
      title: figure title.

    Returns:
      ``path``.
    """
    plt = _pyplot()
    norm = row_normalise(cm)
    c = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * c, 0.8 + 0.55 * c), dpi=110)
    cmap = plt.get_cmap("Blues").with_extremes(bad="#dddddd")  # classes without GT pixels
    image = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0.0, vmax=1.0)
    for i in range(c):
        for j in range(c):
            value = norm[i, j]
            if np.isnan(value):
                if j == 0:
                    ax.text(
                        c / 2 - 0.5,
                        i,
                        "no pixels of this class",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="#555555",
                    )
                continue
            if value >= 0.005:
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if value > 0.55 else "black",
                )
    ax.set_xticks(range(c), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(
        range(c), [f"{n} ({int(cm[i].sum())})" for i, n in enumerate(class_names)], fontsize=8
    )
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth (pixels)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share of the true class")
    fig.tight_layout()
    return _save(fig, path)


def _legend(fig, classes: ClassSet, ids: Sequence[int]) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(
            facecolor=classes.palette[i] / 255.0,
            edgecolor="black",
            linewidth=0.4,
            label=classes.names[i],
        )
        for i in ids
    ]
    handles.append(
        Patch(facecolor="white", edgecolor="black", linewidth=0.4, label=classes.ignored_label)
    )
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=7, frameon=False
    )


def plot_gallery(
    samples: Sequence[dict[str, Any]],
    classes: ClassSet,
    path: str | pathlib.Path,
    *,
    title: str,
) -> pathlib.Path:
    """Image | ground truth | prediction (the classes' colours) | error map, one row each.

    Args:
      samples: dicts with ``image`` uint8 [H, W, 3], ``label`` and ``prediction`` [H, W],
        ``name``.
      classes: names and colours by class id (pictures and legend).
      path: output PNG.
      title: figure title.

    Returns:
      ``path``.
    """
    plt = _pyplot()
    if not samples:
        raise ValueError("plot_gallery needs at least one sample")
    rows = len(samples)
    h, w = samples[0]["image"].shape[:2]
    cell = 2.6
    aspect = h / w
    fig, axes = plt.subplots(
        rows, 4, figsize=(4 * cell, rows * (cell * aspect + 0.35) + 0.8), dpi=100, squeeze=False
    )
    for r, sample in enumerate(samples):
        label, pred = sample["label"], sample["prediction"]
        valid = label != IGNORE_LABEL
        accuracy = float((label == pred)[valid].mean()) if valid.any() else math.nan
        panels = [
            (sample["image"], str(sample.get("name", ""))),
            (classes.colorize(label), "ground truth"),
            (classes.colorize(pred), "prediction"),
            (error_map(sample["image"], label, pred), f"errors (pixel acc. {accuracy:.3f})"),
        ]
        for c, (picture, caption) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(caption, fontsize=8)
            ax.axis("off")
    present = sorted(
        {
            int(i)
            for s in samples
            for i in np.unique(np.concatenate([s["label"].ravel(), s["prediction"].ravel()]))
            if i < classes.num_classes
        }
    )
    _legend(fig, classes, present)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return _save(fig, path)


def plot_class_panels(
    sample: dict[str, Any],
    classes: ClassSet,
    path: str | pathlib.Path,
    *,
    title: str,
    max_classes: int = 8,
) -> pathlib.Path:
    """Per class (columns): ground-truth mask, predicted mask, TP/FP/FN comparison (rows).

    The classes shown are those present in the ground truth or the prediction of the
    image, largest ground-truth area first, at most ``max_classes``.

    Args:
      sample: ``image``, ``label``, ``prediction``, ``name`` as for :func:`plot_gallery`.
      classes: names and colours by class id.
      path: output PNG.
      title: figure title.
      max_classes: most columns.

    Returns:
      ``path``.
    """
    plt = _pyplot()
    image, label, pred = sample["image"], sample["label"], sample["prediction"]
    ids = [i for i in range(classes.num_classes) if (label == i).any() or (pred == i).any()]
    ids = sorted(ids, key=lambda i: (-int((label == i).sum()), i))[:max_classes]
    if not ids:
        raise ValueError("plot_class_panels: the sample has no labelled class")
    h, w = image.shape[:2]
    cell = 2.0
    fig, axes = plt.subplots(
        3,
        len(ids),
        figsize=(len(ids) * cell + 1.0, 3 * (cell * h / w + 0.3) + 1.2),
        dpi=100,
        squeeze=False,
    )
    rows = ("ground truth", "prediction", "TP green, FP red,\nFN blue")
    for c, class_id in enumerate(ids):
        panels = [
            _mask_image(label == class_id, classes.palette[class_id]),
            _mask_image(pred == class_id, classes.palette[class_id]),
            class_comparison(image, label, pred, class_id),
        ]
        for r, picture in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(rows[r], fontsize=8)
        iou = class_iou(label, pred, class_id)
        caption = classes.names[class_id] + ("" if math.isnan(iou) else f"\nIoU {iou:.2f}")
        axes[0, c].set_title(caption, fontsize=8)
    fig.suptitle(f"{title}: {sample.get('name', '')}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(
    records: Sequence[dict[str, Any]],
    path: str | pathlib.Path,
    *,
    title: str,
    mark_step: int | None = None,
) -> pathlib.Path:
    """Train and validation loss, and validation mIoU, against step (epochs on top).

    Args:
      records: ``metrics.jsonl`` records.
      path: output PNG.
      title: figure title.
      mark_step: draw a dashed line at this step (the evaluated checkpoint).

    Returns:
      ``path``.

    Raises:
      ValueError: there is nothing to plot.
    """
    plt = _pyplot()
    curves = training_curves(records)
    if not any(len(curves[k][0]) for k in ("train_loss", "validation_loss", "validation_mean_iou")):
        raise ValueError("metrics.jsonl holds no training or validation records")
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    steps, values = curves["train_loss"]
    if len(steps):
        ax_loss.plot(steps, values, label="train loss", color="tab:blue", linewidth=1.2)
    steps, values = curves["validation_loss"]
    if len(steps):
        ax_loss.plot(steps, values, "o-", label="validation loss", color="tab:orange", markersize=4)
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8)
    steps, values = curves["validation_mean_iou"]
    if len(steps):
        ax_iou.plot(steps, values, "o-", color="tab:green", markersize=4, label="validation mIoU")
        best = int(np.argmax(values))
        ax_iou.annotate(
            f"best {values[best]:.3f}",
            (steps[best], values[best]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
    ax_iou.set_ylabel("mean IoU")
    ax_iou.legend(fontsize=8, loc="lower right")
    per_epoch = curves["steps_per_epoch"]
    for ax in (ax_loss, ax_iou):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if mark_step is not None:
            ax.axvline(mark_step, color="grey", linestyle="--", linewidth=1)
            ax.text(
                mark_step,
                0.03,
                f"evaluated step {mark_step} ",
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                color="grey",
                rotation=90,
                va="bottom",
                ha="right",
            )
        if per_epoch:
            top = ax.secondary_xaxis(
                "top", functions=(lambda s, k=per_epoch: s / k, lambda e, k=per_epoch: e * k)
            )
            top.set_xlabel("epoch", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | pathlib.Path) -> pathlib.Path:
    plt = _pyplot()
    path = storage.path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), path.open("wb") as f:  # a file object: also in a bucket
        warnings.simplefilter("ignore", UserWarning)  # tight_layout's "not compatible" notes
        fig.savefig(f, format=path.suffix.lstrip("."), bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------
# Markdown and the console summary.
# ----------------------------------------------------------------------------


SCORES = (
    ("mean IoU", "mean_iou"),
    ("mean Dice", "mean_dice"),
    ("pixel accuracy", "pixel_accuracy"),
    ("mean class accuracy", "mean_class_accuracy"),
)
BINARY_SCORES = (
    ("foreground IoU", "foreground_iou"),
    ("foreground Dice", "foreground_dice"),
    ("foreground precision", "foreground_precision"),
    ("foreground recall", "foreground_recall"),
)


# The Lyft Perception Challenge's scores (unet_jax.evaluation.challenge).
CHALLENGE_SCORES = (
    ("Lyft challenge score", "challenge_average"),
    ("Vehicles F2", "challenge_vehicles_f2"),
    ("Road F0.5", "challenge_road_f05"),
)


def scores_of(report: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(title, key) of the headline scores, with the foreground's or the challenge's.

    The challenge's scores are titled "(hood included)" (or "(hood unknown)") unless the
    data set leaves the hood out, as the challenge did.
    """
    scores = BINARY_SCORES + SCORES if "foreground_iou" in report else SCORES
    if "challenge_average" not in report:
        return scores
    hood = report.get("challenge_hood", challenge.HOOD_STATES[0])
    suffix = "" if hood == challenge.HOOD_STATES[0] else f" (hood {hood})"
    return scores + tuple((title + suffix, key) for title, key in CHALLENGE_SCORES)


def challenge_note(report: dict[str, Any]) -> str | None:
    """The challenge score's one-line definition, when the report has the score."""
    return challenge.DEFINITION if "challenge_average" in report else None


def results_columns(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(column title, results) for each resolution in an evaluation report."""
    first = report["resolution"]
    columns = [("whole images" if first == "native" else f"training resolution {first}", report)]
    if report.get("full_resolution"):
        full = report["full_resolution"]
        how = report["options"]["scale"]
        columns.append((f"full resolution {full['resolution']} ({how})", full))
    return columns


def metrics_markdown(report: dict[str, Any], pictures: Sequence[str] = ()) -> str:
    """The evaluation report as Markdown: headline scores, per-class tables, pictures.

    Args:
      report: the content of ``metrics.json`` (see ``unet_jax.evaluation.evaluate``).
      pictures: file names of pictures next to the Markdown file.

    Returns:
      Markdown text.
    """
    from unet_jax.evaluation.metrics import format_table

    columns = results_columns(report)
    checkpoint = report["checkpoint"]
    options = report["options"]
    lines = [
        f"# Evaluation of `{report['workdir']}` on the {report['split']} split",
        "",
        f"- checkpoint: {checkpoint['requested']} (step {checkpoint['step']})",
        f"- data set: `{report['dataset']}`, {counted(report)}",
        f"- inference: {inference_text(options)}",
    ]
    if options.get("onnx"):
        lines.append(f"- model: `{options['onnx']}` (ONNX Runtime)")
    if report.get("full_resolution"):
        full = report["full_resolution"]
        lines.append(
            f"- full resolution: `{full['dataset']}`, sizes {full['sizes']}, scale "
            f"{options['scale']} ({full['tiled']} examples tiled; max side "
            f"{options['max_side']}, tiles {options['tile_size']} overlap "
            f"{options['tile_overlap']})"
        )
    lines += ["", "| score | " + " | ".join(t for t, _ in columns) + " |"]
    lines.append("| --- |" + " ---: |" * len(columns))
    for title, key in scores_of(report):
        lines.append(
            f"| {title} | " + " | ".join(format_score(r.get(key)) for _, r in columns) + " |"
        )
    if note := challenge_note(report):
        lines += ["", note + "."]
    for title, results in columns:
        lines += ["", f"## Per class, {title}", "", format_table(results)]
    if pictures:
        lines += ["", "## Pictures", ""]
        lines += [f"![{pathlib.Path(p).stem}]({p})" for p in pictures]
    return "\n".join(lines) + "\n"


def inference_text(options: dict[str, Any]) -> str:
    """How the images were segmented: scale, TTA and BatchNorm adaptation, in one line.

    Args:
      options: a report's ``options`` (the resolved segmenter options among them).

    Returns:
      e.g. ``scale resize, flip TTA on, scales 1,0.5, BatchNorm adaptation set``.
    """
    scales = ",".join(f"{v:g}" for v in options.get("tta_scales") or (1.0,))
    parts = [
        f"scale {options['scale']}" if options.get("full_resolution") else None,
        f"flip TTA {'on' if options.get('tta_flip') else 'off'}",
        f"scales {scales}" if scales != "1" else None,
        f"BatchNorm adaptation {options.get('adapt_bn') or 'off'}",
    ]
    if options.get("adapt_bn") == "stream":
        parts.append(f"momentum {options['adapt_momentum']:g}")
    return ", ".join(p for p in parts if p)


def counted(report: dict[str, Any]) -> str:
    """``60 images`` (``60 images in 1211 tiles`` where tiles were scored)."""
    tiles = report.get("num_tiles")
    return f"{report['num_examples']} images" + (f" in {tiles} tiles" if tiles else "")


def summary_text(report: dict[str, Any], files: Sequence[str | pathlib.Path] = ()) -> str:
    """A one-screen console summary of an evaluation report."""
    columns = results_columns(report)
    checkpoint = report["checkpoint"]
    options = report["options"]
    model = f"{options['onnx']} (exported from " if options.get("onnx") else ""
    head = [
        f"Evaluated {model}{report['workdir']} checkpoint {checkpoint['requested']} "
        f"(step {checkpoint['step']}){')' if model else ''} on {report['dataset']} "
        f"{report['split']}: {counted(report)}" + (", flip TTA" if options["tta_flip"] else ""),
        f"Inference: {inference_text(options)}",
        "",
        f"{'':22}" + "".join(f"{r['resolution']:>14}" for _, r in columns),
        f"{'':22}" + "".join(f"{t.split(' ')[0]:>14}" for t, _ in columns),
    ]
    for title, key in scores_of(report):
        head.append(f"{title:22}" + "".join(f"{format_score(r.get(key)):>14}" for _, r in columns))
    if note := challenge_note(report):
        head.append(note + ".")
    head.append("IoU per class:")
    for name in report["per_class"]:
        head.append(
            f"  {name:20}"
            + "".join(f"{format_score(r['per_class'][name]['iou']):>14}" for _, r in columns)
        )
    if files:
        folder = storage.path(files[0]).parent
        head.append(f"Written to {folder}/: " + ", ".join(storage.path(f).name for f in files))
    return "\n".join(head)
