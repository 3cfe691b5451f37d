"""The evaluation geometry of crop-trained runs: every image cut into training-size tiles.

A run trained on crops (``config.input_mode="crop"``) sees its images at native scale, in
windows of ``config.image_size``. Its validation in the training loop scores each image
at native scale, in tiles of that size: a grid whose last row and column are moved back to
end at the image border (so tiles hold only image pixels); pixels that an earlier tile
already covered are labelled ignore in the later one, so each pixel counts exactly once.
An image smaller than a tile is padded (image 0, label ignore). The tiles all have one
shape, so they batch and shard across devices like any validation batch. The training
loop and eval.py score them alike (``evaluator.Geometry("native", image_size)``).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from unet_jax.data import image_ops
from unet_jax.data.augment import check_example
from unet_jax.data.classes import IGNORE_LABEL


def tile_starts(length: int, tile: int) -> list[int]:
    """Tile offsets covering ``[0, length)``, the last ending at ``length`` when it fits."""
    return image_ops.tile_origins(length, tile, tile) if length > tile else [0]


class TiledSource:
    """A random-access source of the training-size tiles of every example of ``source``.

    Args:
      source: random-access examples (data contract), any sizes.
      tile_size: (height, width) of the tiles.
    """

    def __init__(self, source: Any, tile_size: tuple[int, int]) -> None:
        self._source = source
        self._th, self._tw = (int(v) for v in tile_size)
        self._index: list[tuple[int, int, int]] = []
        for i in range(len(source)):
            h, w = np.asarray(source[i]["image"]).shape[:2]
            self._index += [
                (i, y, x) for y in tile_starts(h, self._th) for x in tile_starts(w, self._tw)
            ]
        self._lock = threading.Lock()
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    @property
    def source(self) -> Any:
        """The whole examples the tiles are cut from."""
        return self._source

    @property
    def tile_size(self) -> tuple[int, int]:
        return self._th, self._tw

    def origin(self, k: int) -> tuple[int, int, int]:
        """``(example index, top, left)`` of tile ``k``."""
        return self._index[k]

    def __len__(self) -> int:
        return len(self._index)

    def _example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._cached is not None and self._cached[0] == i:
                return self._cached[1], self._cached[2]
        image, label = check_example(self._source[i])
        with self._lock:
            self._cached = (i, image, label)
        return image, label

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, y, x = self._index[k]
        image, label = self._example(i)
        h, w = label.shape
        th, tw = self._th, self._tw
        out_image = np.zeros((th, tw, image.shape[-1]), image.dtype)
        out_label = np.full((th, tw), IGNORE_LABEL, np.uint8)
        crop_h, crop_w = min(th, h - y), min(tw, w - x)
        out_image[:crop_h, :crop_w] = image[y : y + crop_h, x : x + crop_w]
        tile_label = label[y : y + crop_h, x : x + crop_w].copy()
        # Rows/columns an earlier tile of the grid covered already (the moved-back last tile).
        ys, xs = tile_starts(h, th), tile_starts(w, tw)
        row, col = ys.index(y), xs.index(x)
        seen_y = ys[row - 1] + th - y if row > 0 else 0
        seen_x = xs[col - 1] + tw - x if col > 0 else 0
        tile_label[: max(seen_y, 0)] = IGNORE_LABEL
        tile_label[:, : max(seen_x, 0)] = IGNORE_LABEL
        out_label[:crop_h, :crop_w] = tile_label
        return {"image": out_image, "label": out_label[..., None]}
