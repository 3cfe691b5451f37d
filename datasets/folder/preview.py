"""A picture of prepared examples, image beside its decoded mask, to check a classes.json."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from unet_jax.data import display
from unet_jax.data.classes import ClassSet

ROW_HEIGHT = 160


def _fit(array: np.ndarray) -> Image.Image:
    image = Image.fromarray(array)
    width = max(1, round(image.width * ROW_HEIGHT / image.height))
    return image.resize((width, ROW_HEIGHT), Image.Resampling.NEAREST)


def write_preview(
    source: Any,
    classes: ClassSet,
    path: str | pathlib.Path,
    *,
    count: int = 4,
    bands: list[int] | None = None,
) -> pathlib.Path:
    """Draws the first ``count`` examples (image | mask in the class colours, ignored white)
    with a legend of the classes, and saves it as a PNG.

    Args:
      source: random-access prepared examples.
      classes: the data set's classes.
      path: the PNG to write.
      count: how many examples.
      bands: the display bands of images that are not 8-bit RGB (None: the first three).

    Returns:
      ``path``.
    """
    rows = []
    for i in range(min(count, len(source))):
        example = source[i]
        picture = display.to_rgb(example["image"], bands=bands)
        image, label = _fit(picture), _fit(classes.colorize(example["label"][..., 0]))
        row = Image.new("RGB", (image.width + label.width + 8, ROW_HEIGHT), "white")
        row.paste(image, (0, 0))
        row.paste(label, (image.width + 8, 0))
        rows.append(row)
    legend_height = 18 * ((classes.num_classes + 1 + 3) // 4) + 6
    width = max([r.width for r in rows] + [640])
    sheet = Image.new("RGB", (width, sum(r.height + 6 for r in rows) + legend_height), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 6
    draw = ImageDraw.Draw(sheet)
    entries = [*zip(classes.names, classes.colors, strict=True), ("ignored", (255, 255, 255))]
    for k, (name, color) in enumerate(entries):
        x, ty = 6 + (k % 4) * (width // 4), y + 4 + (k // 4) * 18
        draw.rectangle([x, ty, x + 12, ty + 12], fill=tuple(color), outline="black")
        draw.text((x + 18, ty), name, fill="black")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
