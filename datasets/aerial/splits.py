"""The split of the aerial data set: stratified by tile, 5/2/2 of every tile's 9 images.

Each tile is one region of Dubai, so every split must see every tile. Within a tile the
images are sorted by name (``image_part_001`` .. ``image_part_009``) and dealt in order:
parts 1-5 to train, 6-7 to validation, 8-9 to test. The rule depends only on the names, so
it is the same on every machine and for the zip and the extracted folder.

A tile of another size n keeps the proportions: ``round(2n / 9)`` (at least 1) images each
to test and validation, from the end, the rest to train; a tile needs 3 images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from datasets.common.errors import DataError

SPLITS = ("train", "validation", "test")
MIN_PER_TILE = 3

T = TypeVar("T")


def tile_counts(n: int) -> dict[str, int]:
    """Images of a tile of ``n`` per split: 9 -> train 5, validation 2, test 2."""
    held_out = max(1, round(2 * n / 9))
    return {"train": n - 2 * held_out, "validation": held_out, "test": held_out}


def split_by_tile(items: Sequence[T], *, name_of, tile_of, where: str) -> dict[str, list[T]]:
    """Splits items tile by tile (see the module docstring).

    Args:
      items: the examples (any type).
      name_of: item -> its name (sorted within a tile).
      tile_of: item -> its tile.
      where: the source, for messages.

    Returns:
      split name -> items (tiles in the order they first appear, names sorted within).

    Raises:
      DataError: a tile with fewer than `MIN_PER_TILE` images.
    """
    tiles: dict[str, list[T]] = {}
    for item in items:
        tiles.setdefault(tile_of(item), []).append(item)
    out: dict[str, list[T]] = {s: [] for s in SPLITS}
    for tile, members in tiles.items():
        if len(members) < MIN_PER_TILE:
            raise DataError(
                f"{where}: {tile} has {len(members)} image(s); every tile needs at least "
                f"{MIN_PER_TILE} to give each split one"
            )
        members = sorted(members, key=name_of)
        counts = tile_counts(len(members))
        start = 0
        for split in SPLITS:
            out[split] += members[start : start + counts[split]]
            start += counts[split]
    return out
