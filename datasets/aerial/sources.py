"""Finding the aerial images and masks in the manual directory: the zip or its tree.

Nothing is extracted: zip members are read straight from the archive (the Lyft-Udacity
readers, `datasets.lyft_udacity.sources.ZipSource` and ``TreeSource``, do the reading,
with their size limit, CRC check and unsafe-name refusal).

Layout (any folder depth above ``Tile N``, so the zip, the extracted zip and a copy of
``Semantic segmentation dataset`` itself all work)::

    Tile 1/images/image_part_001.jpg   Tile 1/masks/image_part_001.png
    ...                                 ...
    Tile 8/images/image_part_009.jpg   Tile 8/masks/image_part_009.png

An image is a JPEG or PNG in a folder ``images`` whose parent is named ``Tile <number>``;
its mask is the PNG of the same stem in the sibling ``masks``. Hidden files and
``__MACOSX`` are skipped; ``classes.json`` is never read (its colours are wrong). An
example's name is ``Tile <n>/<stem>``, e.g. ``Tile 2/image_part_007``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from collections.abc import Callable, Iterable

from datasets.common.errors import DataError
from datasets.lyft_udacity.sources import (
    FramePair,
    TreeSource,
    ZipSource,
    walk_files,
    zip_members,
    zips_in,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_TILE = re.compile(r"^Tile (\d+)$")
_MAX_LISTED = 5

Source = TreeSource | ZipSource


def tile_of(name: str) -> str:
    """``"Tile 2/image_part_007"`` -> ``"Tile 2"``."""
    return name.split("/", 1)[0]


def _hidden(parts: list[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def pair_files(
    paths: Iterable[str], *, where: str, describe: Callable[[str], str] = str
) -> list[FramePair]:
    """Pairs the images and masks of the tiles among relative POSIX paths.

    Args:
      paths: every file of the source, relative, ``/``-separated.
      where: the source's location, for messages.
      describe: a relative path -> the name a message gives it (the full path).

    Returns:
      The pairs sorted by tile number, then by name; empty when no tile is found.

    Raises:
      DataError: an image without its mask or a mask without its image, two images with
        one stem, or two folders with the same tile name.
    """
    images: dict[str, str] = {}
    masks: dict[str, str] = {}
    tile_dirs: dict[str, str] = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) < 3 or _hidden(parts) or not _TILE.match(parts[-3]):
            continue
        tile, kind, file_name = parts[-3], parts[-2], parts[-1]
        stem, suffix = os.path.splitext(file_name)
        tile_dir = "/".join(parts[:-2])
        if tile_dirs.setdefault(tile, tile_dir) != tile_dir:
            raise DataError(
                f"{where}: two folders are both named {tile!r}: {tile_dirs[tile]} and {tile_dir}"
            )
        key = f"{tile}/{stem}"
        if kind == "images" and suffix.lower() in IMAGE_SUFFIXES:
            if key in images:
                raise DataError(
                    f"{describe(path)}: a second image with the stem {key!r} "
                    f"(the first: {describe(images[key])})"
                )
            images[key] = path
        elif kind == "masks" and suffix.lower() == ".png":
            masks[key] = path
    problems = [
        f"image {describe(images[k])} has no mask (expected "
        f"{describe(tile_dirs[tile_of(k)] + '/masks/' + k.split('/', 1)[1] + '.png')})"
        for k in sorted(images.keys() - masks.keys())
    ] + [f"mask {describe(masks[k])} has no image" for k in sorted(masks.keys() - images.keys())]
    if problems:
        more = len(problems) - _MAX_LISTED
        listed = "\n  ".join(problems[:_MAX_LISTED]) + (
            f"\n  ... and {more} more" if more > 0 else ""
        )
        raise DataError(f"{where}: unpaired files:\n  {listed}")
    order = sorted(images, key=lambda k: (int(_TILE.match(tile_of(k)).group(1)), k))
    return [FramePair(name=k, image=images[k], label=masks[k]) for k in order]


def _open_zip(path: str) -> ZipSource:
    members = zip_members(path)
    pairs = pair_files(members, where=path, describe=lambda member: f"{path}:{member}")
    return ZipSource(path, pairs, members)


def find_source(manual_dir: str) -> Source | None:
    """Finds the tiles in the manual directory.

    An extracted tree (any ``Tile N/images`` below ``manual_dir``) is used if present;
    otherwise the single zip archive directly in ``manual_dir``, whatever its name.
    ``manual_dir`` may also be the archive itself.

    Args:
      manual_dir: the directory to search (or the archive).

    Returns:
      The source, or None if the directory is missing or holds neither.

    Raises:
      DataError: several zip archives and no tree, unpaired files, an archive without
        tiles, unsafe member names, an unreadable archive.
    """
    if os.path.isfile(manual_dir) and zipfile.is_zipfile(manual_dir):
        archives = [manual_dir]
    elif not os.path.isdir(manual_dir):
        return None
    else:
        pairs = pair_files(
            walk_files(manual_dir),
            where=manual_dir,
            describe=lambda rel: os.path.join(manual_dir, *rel.split("/")),
        )
        if pairs:
            return TreeSource(manual_dir, pairs)
        archives = zips_in(manual_dir)
    if not archives:
        return None
    source = _open_zip(archives[0])
    if not source.pairs:
        raise DataError(
            f"{archives[0]}: no 'Tile N/images' and 'Tile N/masks' in this zip archive; is it "
            "the Kaggle semantic-segmentation-of-aerial-imagery archive?"
        )
    return source


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One file of a source, as the folder decoders read it (``read_bytes`` and a name).

    `datasets.folder.decode` reads a file only through ``read_bytes()`` and names it by
    ``str()``, so a zip member is decoded and reported exactly like a file on disk.
    """

    source: TreeSource | ZipSource
    path: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def read_bytes(self) -> bytes:
        return self.source.read(self.path)

    def __str__(self) -> str:
        return self.source.describe(self.path)
