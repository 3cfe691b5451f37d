"""Writes ``dummy_data/``: tiny fake tiles in the real layout of the Kaggle archive.

``python -m datasets.aerial.make_dummy_data`` rewrites the folder::

    dummy_data/Semantic segmentation dataset/classes.json      (wrong colours, as shipped)
    dummy_data/Semantic segmentation dataset/Tile 1/images/image_part_001.jpg .. 009.jpg
    dummy_data/Semantic segmentation dataset/Tile 1/masks/image_part_001.png .. 009.png
    ... Tile 2 (palette-mode masks, as Tiles 2 and 4 of the archive)

Like the archive: 9 images per tile, sizes that differ by tile and by one pixel within
Tile 1, RGB colour masks (palette mode in Tile 2), black (#000000) areas, and a
classes.json whose colours do not match the masks. `example_arrays` is the oracle of the
tests: the class ids each mask must decode to (255 where it is black).
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from datasets.aerial.classes import AERIAL_CLASSES
from unet_jax.data.classes import IGNORE_LABEL

DUMMY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dummy_data")
ROOT = "Semantic segmentation dataset"
TILES = (1, 2)
PARTS = range(1, 10)
PALETTE_TILES = (2,)
# The shipped classes.json (Supervisely form): every colour but Unlabeled's is wrong.
SHIPPED_CLASSES_JSON = {
    "classes": [
        {"title": "Water", "shape": "polygon", "color": "#50E3C2", "geometry_config": {}},
        {"title": "Land (unpaved area)", "shape": "polygon", "color": "#F5A623"},
        {"title": "Road", "shape": "polygon", "color": "#DE597F", "geometry_config": {}},
        {"title": "Building", "shape": "polygon", "color": "#D0021B", "geometry_config": {}},
        {"title": "Vegetation", "shape": "polygon", "color": "#417505", "geometry_config": {}},
        {"title": "Unlabeled", "shape": "polygon", "color": "#9B9B9B", "geometry_config": {}},
    ],
    "tags": [],
}


def size_of(tile: int, part: int) -> tuple[int, int]:
    """(width, height): Tile 1 is 40x36 but 41x36 from part 5 on; Tile 2 is 44x38."""
    if tile == 1:
        return (40 if part < 5 else 41), 36
    return 44, 38


def example_arrays(tile: int, part: int) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], class ids uint8 [H, W], 255 where the mask is black)."""
    width, height = size_of(tile, part)
    rng = np.random.default_rng(100 * tile + part)
    ids = np.full((height, width), rng.integers(0, AERIAL_CLASSES.num_classes), np.uint8)
    for _ in range(5):
        y, x = rng.integers(0, height - 6), rng.integers(0, width - 6)
        h, w = rng.integers(4, height // 2), rng.integers(4, width // 2)
        ids[y : y + h, x : x + w] = rng.integers(0, AERIAL_CLASSES.num_classes)
    if part in (3, 8):  # black: areas the annotators left unlabelled
        ids[: 4 * part // 3, : width // 3] = IGNORE_LABEL
    # The image shows the classes as shades, so that a few training steps learn something.
    shades = np.array([[90, 60, 150], [150, 120, 80], [120, 120, 120], [60, 140, 60],
                       [40, 80, 160], [200, 200, 200]], np.int16)  # fmt: skip
    lut = np.zeros((256, 3), np.int16)
    lut[: len(shades)] = shades
    image = lut[ids] + rng.integers(-12, 13, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), ids


def mask_image(ids: np.ndarray, *, palette: bool) -> Image.Image:
    """The colour mask of class ids (black where ignored), RGB or palette mode."""
    colors = np.zeros((256, 3), np.uint8)
    colors[: AERIAL_CLASSES.num_classes] = AERIAL_CLASSES.palette
    rgb = Image.fromarray(colors[ids])
    if not palette:
        return rgb
    # Palette order differs from the class order, as in the archive's palette masks.
    indices = np.where(ids == IGNORE_LABEL, 0, AERIAL_CLASSES.num_classes - ids).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    table = np.zeros((256, 3), np.uint8)
    table[1 : AERIAL_CLASSES.num_classes + 1] = AERIAL_CLASSES.palette[::-1]
    image.putpalette(table.ravel().tolist())
    return image


def write(root: str = DUMMY_DIR) -> None:
    """Writes the dummy archive tree under ``root``.

    Args:
      root: the output directory (it gets ``Semantic segmentation dataset/``).
    """
    base = os.path.join(root, ROOT)
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "classes.json"), "w") as f:
        json.dump(SHIPPED_CLASSES_JSON, f, indent=4)
    for tile in TILES:
        for sub in ("images", "masks"):
            os.makedirs(os.path.join(base, f"Tile {tile}", sub), exist_ok=True)
        for part in PARTS:
            image, ids = example_arrays(tile, part)
            stem = f"image_part_{part:03d}"
            folder = os.path.join(base, f"Tile {tile}")
            Image.fromarray(image).save(os.path.join(folder, "images", f"{stem}.jpg"), quality=90)
            mask = mask_image(ids, palette=tile in PALETTE_TILES)
            mask.save(os.path.join(folder, "masks", f"{stem}.png"))


if __name__ == "__main__":
    write()
