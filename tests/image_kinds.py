"""Small folders of images that are not 8-bit RGB, for the end-to-end tests.

Each image holds bright blocks (the foreground class) on a darker background, written in
the band count and dtype of the kind; the masks are 0/255 PNGs.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tifffile
from PIL import Image


def blocks(seed: int, h: int, w: int) -> np.ndarray:
    """bool [h, w]: a few random rectangles (the foreground)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), bool)
    for _ in range(4):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        mask[y : y + rng.integers(6, 14), x : x + rng.integers(6, 14)] = True
    return mask


def grey16(mask: np.ndarray, seed: int) -> np.ndarray:
    """uint16 [h, w]: 12-bit camera-like values, foreground ~3000, background ~300."""
    rng = np.random.default_rng(seed)
    values = np.where(mask, 3000, 300) + rng.normal(0, 60, mask.shape)
    return np.clip(values, 0, 4095).astype(np.uint16)


def bands_int16(mask: np.ndarray, seed: int, bands: int = 5) -> np.ndarray:
    """int16 [h, w, bands]: each band its own offset and sign, foreground apart."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(bands):
        base = -2000 + 900 * b
        step = (1 if b % 2 else -1) * (400 + 100 * b)
        out.append(base + np.where(mask, step, 0) + rng.normal(0, 40, mask.shape))
    return np.stack(out, axis=-1).astype(np.int16)


def make_folder(
    root: pathlib.Path, kind: str, *, count: int = 12, one_size: bool = False
) -> pathlib.Path:
    """Writes ``root/images`` (``kind``: "grey16" TIFFs or "int16x5" planar TIFFs) and
    ``root/masks`` (0/255 PNGs), 36x40 to 38x42 (``one_size``: all 36x40); returns root."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        h, w = (36, 40) if one_size else (36 + i % 3, 40 + 2 * (i % 2))
        mask = blocks(i, h, w)
        if kind == "grey16":
            tifffile.imwrite(root / "images" / f"g{i:02d}.tif", grey16(mask, i))
        elif kind == "int16x5":
            image = bands_int16(mask, i)
            # Planar (bands first), as multi-band rasters are often stored.
            tifffile.imwrite(
                root / "images" / f"s{i:02d}.tif",
                np.moveaxis(image, -1, 0),
                photometric="minisblack",
                planarconfig="separate",
            )
        else:
            raise ValueError(kind)
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            root / "masks" / (f"g{i:02d}.png" if kind == "grey16" else f"s{i:02d}.png")
        )
    return root
