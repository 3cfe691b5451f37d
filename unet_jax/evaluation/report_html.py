"""``report.html``: one self-contained page per evaluated resolution.

The page holds the headline scores, the per-class table, the row-normalised confusion
matrix (pixel counts in each cell's tooltip) and every evaluated image with its own IoU,
worst first, as image | ground truth | prediction in the classes' colours. Pictures are
thumbnails (the image as JPEG, the label maps as PNG) embedded as ``data:`` URIs and the
styling is inline CSS, so the file opens anywhere, offline, without JavaScript.

:class:`ImageRows` collects the images while the evaluation runs (from the predictions it
has made; nothing is segmented twice): per image its confusion matrix and three
thumbnails, so memory grows with the thumbnails, not with the images.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from unet_jax.data import image_ops
from unet_jax.data.classes import IGNORE_COLOR, ClassSet, to_hex
from unet_jax.evaluation import metrics, reports
from unet_jax.evaluation.metrics import format_score

THUMBNAIL_WIDTH = 384  # pixels; wider images are downscaled, smaller ones kept as they are
JPEG_QUALITY = 80  # the input thumbnails; label maps stay lossless palette PNGs


@dataclasses.dataclass(frozen=True)
class ImageRow:
    """One evaluated image: its scores and thumbnails.

    Attributes:
      index: position in the evaluation order.
      name: the example's name.
      size: (H, W) as scored.
      scores: ``metrics.segmentation_metrics`` of the image's own confusion matrix; its
        ``mean_iou`` is the mean over the classes present in its label or prediction.
      pictures: JPEG bytes of the image, PNG bytes of the ground truth and the prediction.
    """

    index: int
    name: str
    size: tuple[int, int]
    scores: dict[str, Any]
    pictures: tuple[bytes, bytes, bytes]


def _jpeg(array: np.ndarray) -> bytes:
    # Photos as JPEG: about a tenth of a PNG's size, so hundreds of images stay a few MB.
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _png(array: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    # Label maps as palette PNGs: one byte per pixel, smaller and faster than RGB.
    picture = Image.fromarray(array)
    if palette is not None:
        picture.putpalette(palette.tobytes())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")  # no optimize: 3x slower for about 1% smaller
    return buffer.getvalue()


class ImageRows:
    """Collects every evaluated image for the page (:meth:`add` is the evaluation's hook).

    Args:
      classes: names and colours by class id.
      width: thumbnail width in pixels (images are never upscaled).
    """

    def __init__(self, classes: ClassSet, *, width: int = THUMBNAIL_WIDTH):
        self.classes = classes
        self.width = width
        self.rows: list[ImageRow] = []
        # id -> colour for all 256 ids, as ClassSet.colorize maps them.
        self._palette = classes.colorize(np.arange(256, dtype=np.uint8))

    def add(
        self,
        *,
        image: np.ndarray,
        label: np.ndarray,
        prediction: np.ndarray,
        name: str,
        confusion: np.ndarray,
    ) -> None:
        """Records one image.

        Args:
          image: [H, W, 3] as the model saw it (uint8 range).
          label: [H, W] (or [H, W, 1]) ground-truth ids.
          prediction: [H, W] predicted ids.
          name: the example's name.
          confusion: the image's [C, C] confusion matrix.
        """
        label = np.asarray(label)
        if label.ndim == 3:
            label = label[..., 0]
        h, w = label.shape
        th, tw = (h, w) if w <= self.width else (max(1, round(h * self.width / w)), self.width)
        image = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        ids = (
            image_ops.resize(
                np.clip(np.asarray(a), 0, 255).astype(np.uint8),
                height=th,
                width=tw,
                method="nearest",
            )
            for a in (label, prediction)
        )
        self.rows.append(
            ImageRow(
                index=len(self.rows),
                name=name,
                size=(h, w),
                scores=metrics.segmentation_metrics(confusion, self.classes.names),
                pictures=(
                    _jpeg(image_ops.resize(image, height=th, width=tw, method="area")),
                    *(_png(a, self._palette) for a in ids),
                ),
            )
        )

    def worst_first(self) -> list[ImageRow]:
        """The rows by ascending IoU; images without a scored pixel last."""
        return sorted(
            self.rows,
            key=lambda r: (math.isnan(r.scores["mean_iou"]), r.scores["mean_iou"], r.index),
        )


# ----------------------------------------------------------------------------
# The page.
# ----------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d2733; background: #f4f6f9; margin: 0; }
main { max-width: 1400px; margin: 0 auto; padding: 20px 28px 48px; }
h1 { font-size: 22px; margin: 4px 0 2px; }
h2 { font-size: 17px; margin: 30px 0 8px; border-bottom: 1px solid #d5dbe3; padding-bottom: 4px; }
.meta { color: #5b6b7d; margin: 0 0 6px; }
.note { color: #5b6b7d; font-size: 12.5px; margin: 4px 0 10px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #dde3ea; border-radius: 8px; padding: 10px 16px;
  min-width: 130px; }
.card .value { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .label { color: #5b6b7d; font-size: 12.5px; }
table { border-collapse: collapse; background: #fff; }
th, td { padding: 4px 9px; border: 1px solid #e3e8ee; }
th { background: #eef2f6; font-weight: 600; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.na { color: #9aa6b2; text-align: right; }
.swatch { display: inline-block; width: 13px; height: 13px; border: 1px solid #0006;
  border-radius: 2px; vertical-align: -2px; margin-right: 6px; }
table.confusion td { width: 44px; height: 26px; text-align: center; font-size: 12px;
  padding: 0; font-variant-numeric: tabular-nums; }
table.confusion th.col { writing-mode: vertical-rl; transform: rotate(180deg);
  white-space: nowrap; font-weight: 500; padding: 6px 2px; text-align: left; }
table.confusion th.row { white-space: nowrap; font-weight: 500; }
table.confusion td.empty { background: #e4e7eb; color: #8a96a3; }
table.confusion td.diagonal { outline: 2px solid #1d2733; outline-offset: -2px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 6px 0 12px; font-size: 12.5px; }
table.images { width: 100%; table-layout: fixed; }
table.images td { vertical-align: top; padding: 6px; }
table.images th.info, table.images td.info { width: 19%; }
table.images img { width: 100%; height: auto; display: block; border-radius: 3px; }
table.images img.ids { image-rendering: pixelated; }
td.info .rank { color: #5b6b7d; font-size: 12px; }
td.info .name { font-weight: 600; word-break: break-all; }
td.info .iou { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
td.info ul { list-style: none; padding: 0; margin: 6px 0 0; font-size: 11.5px;
  columns: 2; column-gap: 8px; }
td.info li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
td.info li .swatch { width: 10px; height: 10px; margin-right: 3px; }
"""


def _num_cell(value: Any, digits: int = 4) -> str:
    text = format_score(value, digits)
    return f'<td class="{"na" if text == "n/a" else "num"}">{text}</td>'


def _swatch(color: Sequence[int]) -> str:
    return f'<span class="swatch" style="background:{to_hex(color)}"></span>'


def _iou_color(iou: float) -> str:
    # Red (0) through amber to green (1): a glance tells good images from bad ones.
    if math.isnan(iou):
        return "#7a8694"
    return f"hsl({round(120 * min(max(iou, 0.0), 1.0))}, 70%, 36%)"


def _scores_section(results: dict[str, Any], rows: Sequence[ImageRow]) -> str:
    cards = [(title, format_score(results.get(key))) for title, key in reports.scores_of(results)]
    cards.append(("images", str(results["num_examples"])))
    cards.append(("scored pixels", f"{results['num_pixels']:,}"))
    body = "".join(
        f'<div class="card"><div class="value">{html.escape(v)}</div>'
        f'<div class="label">{html.escape(t)}</div></div>'
        for t, v in cards
    )
    per_image = [r.scores["mean_iou"] for r in rows if not math.isnan(r.scores["mean_iou"])]
    note = (
        "Scores pool the pixels of all images (ignored pixels excluded); the mean of the "
        f"per-image IoUs below is {format_score(float(np.mean(per_image)))}."
        if per_image
        else "Scores pool the pixels of all images (ignored pixels excluded)."
    )
    if challenge := reports.challenge_note(results):
        note += f" {html.escape(challenge)}."
    return f'<h2 id="scores">Scores</h2><div class="cards">{body}</div><p class="note">{note}</p>'


def _class_table(results: dict[str, Any], classes: ClassSet) -> str:
    head = "".join(
        f"<th>{t}</th>" for t in ("class", "IoU", "Dice", "precision", "recall", "pixels")
    )
    body = []
    for name, color in zip(classes.names, classes.colors, strict=True):
        s = results["per_class"][name]
        iou = s["iou"]
        bar = (
            ""
            if iou is None
            else f' style="background:linear-gradient(90deg,#cfe3f5 {100 * iou:.1f}%,'
            f'transparent {100 * iou:.1f}%)"'
        )
        body.append(
            f'<tr class="class-row"><td>{_swatch(color)}{html.escape(name)}</td>'
            f'<td class="{"na" if iou is None else "num"}"{bar}>{format_score(iou)}</td>'
            + "".join(_num_cell(s[k]) for k in ("dice", "precision", "recall"))
            + f'<td class="num">{s["pixels"]:,}</td></tr>'
        )
    return (
        '<h2 id="classes">Per class</h2>'
        '<p class="note">IoU, Dice, precision and recall over the whole split; pixels: '
        "ground-truth pixels of the class; n/a: undefined (the class is absent).</p>"
        f'<table class="classes"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _confusion_table(cm: np.ndarray, classes: ClassSet) -> str:
    shares = reports.row_normalise(cm)
    names = [html.escape(n) for n in classes.names]
    head = "<th>truth \\ prediction</th>" + "".join(
        f'<th class="col">{_swatch(c)}{n}</th>' for n, c in zip(names, classes.colors, strict=True)
    )
    body = []
    for i, (name, color) in enumerate(zip(names, classes.colors, strict=True)):
        cells = []
        for j, predicted in enumerate(names):
            count = int(cm[i, j])
            share = shares[i, j]
            diagonal = " diagonal" if i == j else ""
            if np.isnan(share):
                title = f"truth {name}: no pixels"
                cells.append(f'<td class="empty{diagonal}" title="{title}"></td>')
                continue
            title = (
                f"truth {name}, predicted {predicted}: {count:,} pixels "
                f"({100 * share:.2f}% of the {name} pixels)"
            )
            ink = "#fff" if share > 0.55 else "#1d2733"
            # Empty cells stay blank so that the confusions stand out.
            text = f"{share:.2f}" if share >= 0.005 else ("" if count == 0 else "&lt;.01")
            cells.append(
                f'<td class="cell{diagonal}" title="{title}" style="background:'
                f'rgba(33,102,172,{share:.3f});color:{ink}">{text}</td>'
            )
        total = int(cm[i].sum())
        body.append(
            f'<tr><th class="row">{_swatch(color)}{name} <span class="meta">({total:,})'
            f"</span></th>{''.join(cells)}</tr>"
        )
    return (
        '<h2 id="confusion">Confusion matrix</h2>'
        '<p class="note">Rows: ground truth (its pixel count in brackets); columns: '
        "prediction. Each cell is the share of the row's pixels; hover a cell for its pixel "
        "count. Grey rows: classes without ground-truth pixels.</p>"
        f'<table class="confusion"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _data_uri(picture: bytes) -> str:
    kind = "jpeg" if picture.startswith(b"\xff\xd8") else "png"
    return f"data:image/{kind};base64," + base64.b64encode(picture).decode("ascii")


def _image_row(rank: int, row: ImageRow, classes: ClassSet) -> str:
    iou = row.scores["mean_iou"]
    name = html.escape(row.name)
    present = [
        (classes.names[i], classes.colors[i], row.scores["per_class"][n]["iou"])
        for i, n in enumerate(classes.names)
        if not math.isnan(row.scores["per_class"][n]["iou"])
    ]
    present.sort(key=lambda p: p[2])
    items = "".join(
        f'<li title="{html.escape(n)}: IoU {format_score(v, 3)}">{_swatch(c)}{format_score(v, 2)} '
        f"{html.escape(n)}</li>"
        for n, c, v in present
    )
    info = (
        f'<td class="info"><div class="rank">#{rank}</div>'
        f'<div class="name">{name}</div>'
        f'<div class="iou" style="color:{_iou_color(iou)}">IoU {format_score(iou, 3)}</div>'
        f"<div>pixel accuracy {format_score(row.scores['pixel_accuracy'], 3)}</div>"
        f'<div class="meta">{row.size[0]}x{row.size[1]}</div><ul>{items}</ul></td>'
    )
    cells = "".join(
        f'<td><img{" class=ids" if k else ""} src="{_data_uri(png)}" alt="{name}: {what}"></td>'
        for k, (png, what) in enumerate(
            zip(row.pictures, ("image", "ground truth", "prediction"), strict=True)
        )
    )
    row_id = f'id="image-{row.index}" data-iou="{format_score(iou)}"'
    return f'<tr class="image-row" {row_id}>{info}{cells}</tr>'


def _images_section(rows: Sequence[ImageRow], classes: ClassSet) -> str:
    legend = "".join(
        f"<span>{_swatch(c)}{html.escape(n)}</span>"
        for n, c in zip(classes.names, classes.colors, strict=True)
    )
    legend += f"<span>{_swatch(IGNORE_COLOR)}{html.escape(classes.ignored_label)}</span>"
    body = "".join(_image_row(k + 1, row, classes) for k, row in enumerate(rows))
    return (
        f'<h2 id="images">Every image, worst first ({len(rows)})</h2>'
        '<p class="note">IoU of an image: the mean over the classes present in its ground '
        "truth or its prediction; the list gives each of those classes' IoU on the image, "
        "worst first.</p>"
        f'<div class="legend">{legend}</div>'
        '<table class="images"><thead><tr><th class="info">image</th><th>input</th>'
        "<th>ground truth</th><th>prediction</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def render(*, report: dict[str, Any], results: dict[str, Any], title: str, rows: ImageRows) -> str:
    """The page of one resolution of an evaluation report.

    Args:
      report: the content of ``metrics.json`` (see ``unet_jax.evaluate``).
      results: the scores of this resolution (``report`` or ``report["full_resolution"]``).
      title: what was scored, e.g. "training resolution 128x128".
      rows: every image scored at this resolution.

    Returns:
      The HTML text.
    """
    classes = rows.classes
    checkpoint = report["checkpoint"]
    heading = f"{report['workdir']}: {report['split']} split"
    meta = (
        f"checkpoint {checkpoint['requested']} (step {checkpoint['step']}) · data set "
        f"{results['dataset']} · {title} · flip TTA "
        f"{'on' if report['options']['tta_flip'] else 'off'}"
        + (f" · ONNX model {report['options']['onnx']}" if report["options"].get("onnx") else "")
        + f" · evaluated {report.get('time', '')[:19].replace('T', ' ')} UTC"
    )
    cm = np.asarray(results["confusion_matrix"], np.int64)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Evaluation of {html.escape(heading)}</title>",
        f"<style>{STYLE}</style></head><body><main>",
        f"<h1>Evaluation of {html.escape(heading)}</h1>",
        f'<p class="meta">{html.escape(meta)}</p>',
        _scores_section(results, rows.rows),
        _class_table(results, classes),
        _confusion_table(cm, classes),
        _images_section(rows.worst_first(), classes),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_pages(
    out: pathlib.Path, *, report: dict[str, Any], rows: Sequence[ImageRows]
) -> list[pathlib.Path]:
    """Writes ``report.html`` (and ``report_full.html`` for the full resolution).

    Args:
      out: the output directory.
      report: the evaluation report.
      rows: the images of each resolution, in the order of ``reports.results_columns``.

    Returns:
      The written files.
    """
    paths = []
    for (title, results), suffix, part in zip(
        reports.results_columns(report), ("", "_full"), rows, strict=False
    ):
        path = out / f"report{suffix}.html"
        path.write_text(render(report=report, results=results, title=title, rows=part))
        paths.append(path)
    return paths
