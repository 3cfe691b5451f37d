"""Finding the image/mask pairs of a folder data set, its splits and its fingerprint.

Layouts (docs/YOUR_DATA.md): ``DIR/images`` + ``DIR/masks`` (split 60/20/20 here), or
``DIR/{train,validation,test}/{images,masks}`` used as given. Pairs are matched by file
stem (``images/a.jpg`` with ``masks/a.png``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re

from datasets.common.errors import DataError
from datasets.folder.decode import IMAGE_SUFFIXES, MASK_SUFFIXES
from datasets.lyft_udacity import splits as splitting

SPLITS = ("train", "validation", "test")
CLASSES_FILE = "classes.json"


@dataclasses.dataclass(frozen=True)
class Pair:
    """One example: its name (``[split/]stem``) and its two files."""

    name: str
    image: pathlib.Path
    mask: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a folder holds.

    Attributes:
      root: the folder (absolute).
      splits: split name -> its pairs, in name order.
      given_splits: True when the folder has split sub-folders.
      classes_file: ``root/classes.json`` if present.
    """

    root: pathlib.Path
    splits: dict[str, list[Pair]]
    given_splits: bool
    classes_file: pathlib.Path | None

    def pairs(self) -> list[Pair]:
        return [p for split in self.splits.values() for p in split]


def _files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def match_pairs(images_dir: pathlib.Path, masks_dir: pathlib.Path, *, prefix: str) -> list[Pair]:
    """Pairs the files of ``images_dir`` and ``masks_dir`` by stem.

    Raises:
      DataError: a missing folder, an image without a mask or a mask without an image, two
        files with one stem, a mask in a lossy format.
    """
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: folder not found (expected images/ and masks/ side by side)"
            )
    images: dict[str, pathlib.Path] = {}
    for path in _files(images_dir):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in images:
            raise DataError(f"{path}: two images with the stem {path.stem!r} ({images[path.stem]})")
        images[path.stem] = path
    masks: dict[str, pathlib.Path] = {}
    for path in _files(masks_dir):
        suffix = path.suffix.lower()
        if suffix in (".jpg", ".jpeg", ".webp"):
            raise DataError(
                f"{path}: masks must be lossless (PNG, BMP or TIFF): JPEG changes the values"
            )
        if suffix not in MASK_SUFFIXES:
            continue
        if path.stem in masks:
            raise DataError(f"{path}: two masks with the stem {path.stem!r} ({masks[path.stem]})")
        masks[path.stem] = path
    if lonely := sorted(set(images) - set(masks)):
        raise DataError(
            f"{images[lonely[0]]}: no mask {masks_dir / lonely[0]}.png"
            + (f" (and {len(lonely) - 1} more images without masks)" if len(lonely) > 1 else "")
        )
    if lonely := sorted(set(masks) - set(images)):
        raise DataError(
            f"{masks[lonely[0]]}: no image with the stem {lonely[0]!r} in {images_dir}"
            + (f" (and {len(lonely) - 1} more masks without images)" if len(lonely) > 1 else "")
        )
    return [Pair(f"{prefix}{stem}", images[stem], masks[stem]) for stem in sorted(images)]


def group_key(pair: Pair, pattern: re.Pattern | None) -> str:
    """The split group of a pair: the pattern's first group (or match) in its stem."""
    stem = pair.image.stem
    if pattern is None:
        return stem
    m = pattern.search(stem)
    if m is None:
        raise DataError(
            f"{pair.image}: the file name does not match --config.folder_group={pattern.pattern!r}"
        )
    return m.group(1) if pattern.groups else m.group(0)


def compile_group(pattern: str | None) -> re.Pattern | None:
    """Compiles ``config.folder_group``; a bad one is a `DataError` naming it."""
    return splitting.compile_group(pattern, field="folder_group")


def scan(root: str | pathlib.Path, *, group_pattern: str | None = None) -> Layout:
    """Reads a folder data set's layout and splits it.

    Args:
      root: the folder.
      group_pattern: regular expression; files whose stems give the same match (its first
        group, if any) stay in one split. Only for folders without split sub-folders.

    Returns:
      The layout.

    Raises:
      DataError: see `match_pairs`; also a missing or empty folder, a mix of both layouts,
        a split layout without train or validation, too few images to split.
    """
    root = pathlib.Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (--config.folder)")
    classes_file = root / CLASSES_FILE
    classes_file = classes_file if classes_file.is_file() else None
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        if (root / "images").is_dir():
            raise DataError(
                f"{root}: holds both images/ and split folders ({', '.join(present)}); keep one"
            )
        for needed in ("train", "validation"):
            if needed not in present:
                hint = " (rename val/ to validation/)" if (root / "val").is_dir() else ""
                raise DataError(f"{root}: split folders without {needed}/{hint}")
        if group_pattern:
            raise DataError(
                f"{root}: has its own split folders; --config.folder_group applies only to a "
                "folder without them"
            )
        parts = {
            s: match_pairs(root / s / "images", root / s / "masks", prefix=f"{s}/") for s in present
        }
        for s, pairs in parts.items():
            if not pairs:
                raise DataError(f"{root / s / 'images'}: no images")
        return Layout(root, parts, True, classes_file)
    if not (root / "images").is_dir():
        raise DataError(
            f"{root}: no images/ folder (expected images/ and masks/, or train/ and "
            "validation/ each with images/ and masks/)"
        )
    pairs = match_pairs(root / "images", root / "masks", prefix="")
    if not pairs:
        raise DataError(f"{root / 'images'}: no images (PNG, JPEG, BMP, TIFF or WebP)")
    pattern = compile_group(group_pattern)
    keys = {p.name: group_key(p, pattern) for p in pairs}
    parts = splitting.split_items(pairs, lambda p: keys[p.name])
    if empty := [s for s, items in parts.items() if not items]:
        groups = len(set(keys.values()))
        raise DataError(
            f"{root}: {len(pairs)} images in {groups} groups are too few for a 60/20/20 split "
            f"(empty: {', '.join(empty)}); add images or give train/ and validation/ folders"
        )
    return Layout(root, parts, False, classes_file)


def fingerprint(layout: Layout, *, group_pattern: str | None) -> str:
    """A digest of everything preparation reads: names, sizes and modification times of
    the files, the classes file's content and the grouping; it changes when the folder does.
    """
    h = hashlib.sha256()
    h.update(f"group={group_pattern or ''}\n".encode())
    if layout.classes_file is not None:
        h.update(layout.classes_file.read_bytes())
    for split, pairs in layout.splits.items():
        for p in pairs:
            for path in (p.image, p.mask):
                st = path.stat()
                h.update(
                    f"{split}|{path.relative_to(layout.root)}|{st.st_size}|{st.st_mtime_ns}\n".encode()
                )
    return h.hexdigest()
