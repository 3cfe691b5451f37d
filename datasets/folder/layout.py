"""Finding the image/mask pairs of a folder data set, its splits and its fingerprint.

Layouts (docs/YOUR_DATA.md): an images folder and a masks folder in ``DIR`` (split
60/20/20 here), or in each of ``DIR/{train,validation,test}`` (used as given). Pairs are
matched by file stem plus an optional mask suffix (``images/a.jpg`` with ``masks/a.png``
or ``masks/a_mask.png``); masks may also lie beside their images, told apart by the
suffix. The folders and the suffix are options (`FileNames`), else recognised from the
common names when that is unambiguous.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re
from collections.abc import Collection

from datasets.common.errors import DataError
from datasets.folder.decode import IMAGE_SUFFIXES, MASK_SUFFIXES
from datasets.lyft_udacity import splits as splitting

SPLITS = ("train", "validation", "test")
CLASSES_FILE = "classes.json"
# Recognised without options, in this order of preference within each tuple.
IMAGE_FOLDERS = ("images", "image", "imgs", "img")
MASK_FOLDERS = ("masks", "mask", "labels", "label", "annotations", "ann", "gt")
MASK_SUFFIXES_KNOWN = ("_mask", "_label", "_gt", "_segmentation")
BESIDE = "."  # folder_masks value: the masks lie beside the images


@dataclasses.dataclass(frozen=True)
class FileNames:
    """Where the images and masks are, as the user gave it (None: recognise it).

    Attributes:
      images: the images' folder name in DIR (or in each split folder); "." for DIR itself.
      masks: the masks' folder name; "." for beside the images.
      mask_suffix: what a mask's stem adds to its image's, e.g. "_mask" (may be "").
    """

    images: str | None = None
    masks: str | None = None
    mask_suffix: str | None = None

    def key(self) -> str:
        """Text for digests: the options as given."""
        return f"images={self.images}|masks={self.masks}|suffix={self.mask_suffix}"


RECOGNISED = FileNames()  # no options: every name recognised


@dataclasses.dataclass(frozen=True)
class Found:
    """Where the images and masks of one folder (DIR or a split folder) were found."""

    images: pathlib.Path
    masks: pathlib.Path
    mask_suffix: str

    def describe(self, root: pathlib.Path) -> str:
        def rel(path: pathlib.Path) -> str:
            return str(path.relative_to(root)) + "/" if path != root else "./"

        where = (
            f"masks beside the images in {rel(self.images)}"
            if self.masks == self.images
            else f"images in {rel(self.images)}, masks in {rel(self.masks)}"
        )
        how = f"a mask's name adds {self.mask_suffix!r}" if self.mask_suffix else "same names"
        return f"{where} ({how})"


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
      found: where the images and masks were found (of the first split folder).
    """

    root: pathlib.Path
    splits: dict[str, list[Pair]]
    given_splits: bool
    classes_file: pathlib.Path | None
    found: Found | None = None

    def describe(self) -> str:
        """``images in images/, masks in labels/ (same names)``."""
        return self.found.describe(self.root) if self.found else "images/ and masks/"

    def pairs(self) -> list[Pair]:
        return [p for split in self.splits.values() for p in split]


def _files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _stems(folder: pathlib.Path, suffixes: Collection[str]) -> set[str]:
    return {p.stem for p in _files(folder) if p.suffix.lower() in suffixes}


def _options_hint() -> str:
    return (
        "name them with --config.folder_images=NAME, --config.folder_masks=NAME (or '.' "
        "for masks beside the images) and --config.folder_mask_suffix=SUFFIX"
    )


def find_files(base: pathlib.Path, names: FileNames) -> Found:
    """Where the images and masks of ``base`` are: the options, else the common names.

    Args:
      base: DIR, or one of its split folders.
      names: the user's options (None fields are recognised).

    Returns:
      The images folder, the masks folder and the mask suffix.

    Raises:
      DataError: a folder named by an option is missing; nothing recognisable; two
        candidates fit (the message lists them and the option that picks one).
    """
    if names.images is not None:
        images = base if names.images in ("", BESIDE) else base / names.images
        if not images.is_dir():
            raise DataError(f"{images}: folder not found (--config.folder_images)")
    else:
        present = [base / n for n in IMAGE_FOLDERS if (base / n).is_dir()]
        if len(present) > 1:
            raise DataError(
                f"{base}: several image folders ({', '.join(p.name + '/' for p in present)}); "
                "pick one with --config.folder_images=NAME"
            )
        images = present[0] if present else base
    if names.masks is not None:
        masks = images if names.masks in ("", BESIDE) else base / names.masks
        if not masks.is_dir():
            raise DataError(f"{masks}: folder not found (--config.folder_masks)")
    else:
        present = [base / n for n in MASK_FOLDERS if (base / n).is_dir() and base / n != images]
        if len(present) > 1:
            raise DataError(
                f"{base}: several mask folders ({', '.join(p.name + '/' for p in present)}); "
                "pick one with --config.folder_masks=NAME"
            )
        masks = present[0] if present else images
    if images == base and names.images is None and not _stems(base, IMAGE_SUFFIXES):
        raise DataError(
            f"{base}: no images/ folder, nor images in it (expected images/ and masks/, or "
            f"train/ and validation/ each with both); {_options_hint()}"
        )
    suffix = names.mask_suffix
    if suffix is None:
        suffix = _recognise_suffix(images, masks)
    if masks == images and not suffix and names.masks is None and images != base:
        raise DataError(
            f"{base}: {images.name}/ but no masks folder beside it (one of "
            f"{', '.join(n + '/' for n in MASK_FOLDERS)}), nor masks in it (suffix "
            f"{', '.join(MASK_SUFFIXES_KNOWN)}); {_options_hint()}"
        )
    if masks == images and not suffix:
        raise DataError(
            f"{images}: masks beside the images need a suffix that tells them apart (found "
            f"none of {', '.join(MASK_SUFFIXES_KNOWN)}); {_options_hint()}"
        )
    return Found(images, masks, suffix)


def _recognise_suffix(images: pathlib.Path, masks: pathlib.Path) -> str:
    """The mask suffix that pairs the files, "" for equal stems (checked in match_pairs)."""
    image_stems = _stems(images, IMAGE_SUFFIXES)
    mask_stems = _stems(masks, {*MASK_SUFFIXES, ".jpg", ".jpeg", ".webp"})
    if masks != images and mask_stems & image_stems:
        return ""
    fitting = [
        suffix
        for suffix in MASK_SUFFIXES_KNOWN
        if any(m.endswith(suffix) and m[: -len(suffix)] in image_stems for m in mask_stems)
    ]
    if len(fitting) > 1:
        raise DataError(
            f"{masks}: masks with several suffixes ({', '.join(fitting)}); pick one with "
            "--config.folder_mask_suffix=SUFFIX"
        )
    return fitting[0] if fitting else ""


def match_pairs(found: Found, *, prefix: str) -> list[Pair]:
    """Pairs the images and masks of ``found`` by stem (the mask's stem adds the suffix).

    Raises:
      DataError: an image without a mask or a mask without an image, two files with one
        stem, a mask in a lossy format.
    """
    images_dir, masks_dir, suffix = found.images, found.masks, found.mask_suffix
    beside = masks_dir == images_dir
    images: dict[str, pathlib.Path] = {}
    masks: dict[str, pathlib.Path] = {}
    for path in _files(masks_dir):
        if beside and not path.stem.endswith(suffix):
            continue  # an image
        stem = path.stem[: len(path.stem) - len(suffix)] if suffix else path.stem
        if suffix and not path.stem.endswith(suffix):
            raise DataError(
                f"{path}: a mask whose name does not end in {suffix!r} "
                "(--config.folder_mask_suffix)"
            )
        ext = path.suffix.lower()
        if ext in (".jpg", ".jpeg", ".webp"):
            raise DataError(
                f"{path}: masks must be lossless (PNG, BMP or TIFF): JPEG changes the values"
            )
        if ext not in MASK_SUFFIXES:
            continue
        if stem in masks:
            raise DataError(f"{path}: two masks with the stem {stem!r} ({masks[stem]})")
        masks[stem] = path
    mask_files = set(masks.values())
    for path in _files(images_dir):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path in mask_files:
            continue
        if path.stem in images:
            raise DataError(f"{path}: two images with the stem {path.stem!r} ({images[path.stem]})")
        images[path.stem] = path
    if lonely := sorted(set(images) - set(masks)):
        raise DataError(
            f"{images[lonely[0]]}: no mask {masks_dir / (lonely[0] + suffix)}.png"
            + (f" (and {len(lonely) - 1} more images without masks)" if len(lonely) > 1 else "")
            + ("" if masks else f"; {_options_hint()}")
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


def scan(
    root: str | pathlib.Path,
    *,
    group_pattern: str | None = None,
    names: FileNames = RECOGNISED,
) -> Layout:
    """Reads a folder data set's layout and splits it.

    Args:
      root: the folder.
      group_pattern: regular expression; files whose stems give the same match (its first
        group, if any) stay in one split. Only for folders without split sub-folders.
      names: where the images and masks are (`find_files`).

    Returns:
      The layout.

    Raises:
      DataError: see `find_files` and `match_pairs`; also a missing or empty folder, a mix
        of both layouts, a split layout without train or validation, too few images to split.
    """
    root = pathlib.Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (--config.folder)")
    classes_file = root / CLASSES_FILE
    classes_file = classes_file if classes_file.is_file() else None
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        top = [root / n for n in (*IMAGE_FOLDERS, names.images or "images") if (root / n).is_dir()]
        if top:
            raise DataError(
                f"{root}: holds both {top[0].name}/ and split folders ({', '.join(present)}); "
                "keep one"
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
        found = {s: find_files(root / s, names) for s in present}
        parts = {s: match_pairs(found[s], prefix=f"{s}/") for s in present}
        for s, pairs in parts.items():
            if not pairs:
                raise DataError(f"{found[s].images}: no images")
        return Layout(root, parts, True, classes_file, found[present[0]])
    found_files = find_files(root, names)
    pairs = match_pairs(found_files, prefix="")
    if not pairs:
        raise DataError(f"{found_files.images}: no images (PNG, JPEG, BMP, TIFF or WebP)")
    pattern = compile_group(group_pattern)
    keys = {p.name: group_key(p, pattern) for p in pairs}
    parts = splitting.split_items(pairs, lambda p: keys[p.name])
    if empty := [s for s, items in parts.items() if not items]:
        groups = len(set(keys.values()))
        raise DataError(
            f"{root}: {len(pairs)} images in {groups} groups are too few for a 60/20/20 split "
            f"(empty: {', '.join(empty)}); add images or give train/ and validation/ folders"
        )
    return Layout(root, parts, False, classes_file, found_files)


def fingerprint(layout: Layout, *, group_pattern: str | None) -> str:
    """A digest of everything preparation reads: names, sizes and modification times of
    the files, the classes file's content and the grouping; it changes when the folder does.
    """
    h = hashlib.sha256()
    h.update(f"group={group_pattern or ''}\n".encode())
    found = layout.found
    if found is not None and (found.images.name, found.masks.name, found.mask_suffix) != (
        "images",
        "masks",
        "",
    ):  # other names decide which files are masks (images/ + masks/: as prepared before)
        h.update(f"{found.images}|{found.masks}|{found.mask_suffix}\n".encode())
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
