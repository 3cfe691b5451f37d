"""TFDS builder `folder`: any folder of images and masks (docs/YOUR_DATA.md).

Each folder gets its own builder config, named after the folder and a digest of its
path; the folder's fingerprint (`layout.fingerprint`) is stored with the prepared data, so
a folder whose files were added, removed or changed is prepared again. Examples are stored
at their native size: ``{"image": [H, W, C] as stored (bytes of
`unet_jax.data.image_bytes`), "label": uint8 [H, W, 1], "name": str}``; the metadata's
``image_info`` gives the bands, the dtype and the training split's per-band statistics
(`unet_jax.data.normalisation`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import pathlib
import re
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from datasets.common.errors import DataError
from datasets.common.features import array_image_features
from datasets.common.threads import threaded_map
from datasets.folder import decode, layout
from datasets.folder.classes_file import MaskRule, read_classes_file
from datasets.lyft_udacity.decode import encode_png
from unet_jax.data import image_bytes, image_files, normalisation
from unet_jax.data.class_stats import ClassStats, label_counts
from unet_jax.data.classes import ClassSet
from unet_jax.errors import VERBOSE_ENV_VAR

FILE_FORMAT = "array_record"


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
    """One folder. Attributes: folder (absolute path), group_pattern (split grouping)."""

    folder: str = ""
    group_pattern: str | None = None


def config_for(
    folder: pathlib.Path, group_pattern: str | None, names: layout.FileNames = layout.RECOGNISED
) -> FolderConfig:
    """The builder config of a folder: ``<folder name>_<digest of path, grouping, names>``."""
    key = f"{folder}|{group_pattern or ''}"
    if names != layout.RECOGNISED:
        key += f"|{names.key()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "_", folder.name.lower()).strip("_")[:40] or "folder"
    return FolderConfig(
        name=f"{slug}_{digest}",
        description=f"Images and masks of {folder}",
        folder=str(folder),
        group_pattern=group_pattern,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """What preparation decided before writing anything."""

    layout: layout.Layout
    rule: MaskRule
    fingerprint: str
    kind: ImageKind


@dataclasses.dataclass(frozen=True)
class ImageKind:
    """The images' bands and dtype (8-bit grey among RGB images is read as RGB)."""

    bands: int
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"bands": self.bands, "dtype": self.dtype}


def image_kind(kinds: dict[pathlib.Path, tuple[int, str]]) -> ImageKind:
    """The one kind of a data set's images, from each file's (bands, dtype).

    Raises:
      DataError: two band counts or dtypes, naming a file of each.
    """
    paths = sorted(kinds)
    first = paths[0]
    bands, dtype = kinds[first]
    if {k for k in kinds.values()} <= {(1, "uint8"), (3, "uint8")}:
        bands = max(b for b, _ in kinds.values())  # grey among RGB: read as RGB, as before
        return ImageKind(bands, "uint8")
    for path in paths:
        other_bands, other_dtype = kinds[path]
        if other_bands != bands:
            raise DataError(
                f"{path}: {other_bands} band(s), but {first.name} has {bands}; every image of "
                "a data set needs the same bands"
            )
        if other_dtype != dtype:
            raise DataError(
                f"{path}: {other_dtype} values, but {first.name} has {dtype}; every image of "
                "a data set needs the same dtype"
            )
    return ImageKind(bands, dtype)


def infer_rule(values: set[int], *, root: pathlib.Path) -> MaskRule:
    """The mask rule of a folder without classes.json, from the union of its mask values.

    {0, 255} or {0, 1} (or only 0): binary, 255 meaning foreground. Otherwise the values are
    class ids 0..max, except 255, which is then the ignore value.
    """
    source = f"inferred from the mask values of {root} (no classes.json)"
    if values <= {0, 255} or values <= {0, 1}:
        classes = ClassSet.from_names(["background", "foreground"], label_format="binary")
        return MaskRule(classes, "binary", source=source)
    ignore = (255,) if 255 in values else ()
    ids = values - set(ignore)
    classes = ClassSet.numbered(max(ids) + 1)
    return MaskRule(classes, "id", ignore_ids=ignore, source=source)


def _check_pair(
    pair: layout.Pair, rule: MaskRule | None
) -> tuple[np.ndarray | None, set[int], tuple[int, str]]:
    """Reads one pair fully; returns (label counts or None, raw mask values when no rule,
    the image's (bands, dtype))."""
    image = decode.read_image(pair.image)
    if rule is None:
        values = decode.read_mask_values(pair.mask)
        shape, counts, present = values.shape, None, set(np.unique(values).tolist())
    else:
        label = decode.decode_mask(pair.mask, rule)
        shape, counts, present = label.shape, label_counts(label), set()
    if shape != image.shape[:2]:
        raise DataError(
            f"{pair.mask}: mask is {shape[1]}x{shape[0]} but its image {pair.image.name} is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    return counts, present, (image.shape[-1], image.dtype.name)


def make_plan(
    folder: pathlib.Path,
    *,
    group_pattern: str | None,
    names: layout.FileNames = layout.RECOGNISED,
) -> Plan:
    """Scans and checks every file of the folder (nothing is written).

    Raises:
      DataError: any bad input (see docs/YOUR_DATA.md); the message names the file.
    """
    found = layout.scan(folder, group_pattern=group_pattern, names=names)
    rule = read_classes_file(found.classes_file) if found.classes_file else None
    check = functools.partial(_check_pair, rule=rule)
    values: set[int] = set()
    kinds: dict[pathlib.Path, tuple[int, str]] = {}
    pairs = found.pairs()
    for pair, (_, present, kind) in zip(pairs, threaded_map(check, pairs), strict=True):
        values |= present
        kinds[pair.image] = kind
    if rule is None:
        rule = infer_rule(values, root=found.root)
    fingerprint = layout.fingerprint(found, group_pattern=group_pattern)
    return Plan(found, rule, fingerprint, image_kind(kinds))


def encode_example(
    pair: layout.Pair, *, rule: MaskRule, kind: ImageKind
) -> tuple[str, dict[str, Any], np.ndarray, np.ndarray]:
    """(key, TFDS example with encoded bytes, label counts, sampled pixels) of one pair."""
    image = image_files.conform(
        decode.read_image(pair.image), bands=kind.bands, dtype=kind.dtype, name=str(pair.image)
    )
    label = decode.decode_mask(pair.mask, rule)
    example = {"image": image_bytes.encode(image), "label": encode_png(label), "name": pair.name}
    return pair.name, example, label_counts(label), normalisation.sample_pixels(image)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for a folder of images and masks."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Images as stored (any bands and dtype); per-band statistics of train.",
    }
    BUILDER_CONFIGS: list[FolderConfig] = []  # one per folder, made by `config_for`

    def __init__(self, *, plan: Plan | None = None, **kwargs: Any) -> None:
        self._plan = plan
        super().__init__(**kwargs)

    def as_data_source(self, *args: Any, **kwargs: Any) -> Any:
        """TFDS's data sources, whose examples' ``image`` is decoded ([H, W, C] as stored)."""
        sources = super().as_data_source(*args, **kwargs)
        if isinstance(sources, dict):
            return {split: image_bytes.DecodedImages(s) for split, s in sources.items()}
        return image_bytes.DecodedImages(sources)

    # open_builder says what it prepared in its own words; TFDS's banners stay quiet.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=array_image_features(),
            supervised_keys=("image", "label"),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager
        if self._plan is None:
            raise RuntimeError("prepare a folder data set with datasets.folder.open_builder")
        plan = self._plan
        self.info.metadata.update(
            classes=plan.rule.classes.to_json(),
            mask_rule=plan.rule.to_json(),
            fingerprint=plan.fingerprint,
            folder=str(plan.layout.root),
            given_splits=plan.layout.given_splits,
            image_info=plan.kind.to_json(),
        )
        return {
            split: self._generate_examples(pairs, split=split)
            for split, pairs in plan.layout.splits.items()
        }

    def _generate_examples(
        self, pairs: list[layout.Pair], *, split: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        stats = ClassStats()
        encode = functools.partial(encode_example, rule=self._plan.rule, kind=self._plan.kind)
        pixels = []
        for key, example, counts, sample in threaded_map(encode, pairs):
            stats.add(counts)
            if split == "train":
                pixels.append(sample)
            yield key, example
        if split == "train":
            self.info.metadata["train_stats"] = stats.to_metadata(
                self._plan.rule.classes.num_classes
            )
            self.info.metadata["image_info"] = {
                **self._plan.kind.to_json(),
                "stats": normalisation.band_stats(np.concatenate(pixels)),
            }


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """TFDS's per-split progress bars, shown only with ``UNET_JAX_VERBOSE`` set."""
    tfds.display_progress_bar(enabled)
    try:
        yield
    finally:
        tfds.display_progress_bar(True)


def open_builder(
    folder: str | None,
    *,
    group_pattern: str | None = None,
    names: layout.FileNames = layout.RECOGNISED,
    data_dir: str | None = None,
    prepare: bool = True,
    log=print,
) -> Builder:
    """The builder of a folder, prepared first (or again, if the folder changed).

    Every file is read and checked before anything is written; a folder prepared before
    and unchanged since is reused as it is.

    Args:
      folder: the folder (``config.folder``).
      group_pattern: ``config.folder_group``.
      names: ``config.folder_images``, ``folder_masks``, ``folder_mask_suffix`` (None:
        recognised from the common names, `layout.find_files`).
      data_dir: TFDS data directory; None: the TFDS default.
      prepare: False only opens an already prepared folder.
      log: where to say what was decided.

    Returns:
      The prepared builder.

    Raises:
      DataError: bad input; the message names the file and the value.
      FileNotFoundError: ``prepare`` is False and the folder is not prepared.
    """
    if not folder:
        raise DataError("config.folder is not set: pass --config.folder=DIR")
    root = pathlib.Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (--config.folder)")
    config = config_for(root, group_pattern, names)
    builder = Builder(config=config, data_dir=data_dir, file_format=FILE_FORMAT)
    found = layout.scan(root, group_pattern=group_pattern, names=names)
    current = layout.fingerprint(found, group_pattern=group_pattern)
    if builder.is_prepared() and builder.info.metadata.get("fingerprint") == current:
        return builder
    if not prepare:
        raise FileNotFoundError(f"{root} is not prepared (or changed) in {builder.data_dir}")
    log(f"Preparing {root}: {found.describe()}; checking its {len(found.pairs())} pairs")
    plan = make_plan(root, group_pattern=group_pattern, names=names)
    stale = builder.is_prepared()
    if stale:
        log(f"{root} changed since it was prepared: preparing it again")
        shutil.rmtree(builder.data_dir)
    builder = Builder(plan=plan, config=config, data_dir=data_dir, file_format=FILE_FORMAT)
    with _progress_bars(bool(os.environ.get(VERBOSE_ENV_VAR))):
        builder.download_and_prepare(
            file_format=FILE_FORMAT,
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
    sizes = ", ".join(f"{s} {len(p)}" for s, p in plan.layout.splits.items())
    how = "split folders as given" if plan.layout.given_splits else "60/20/20 split"
    log(f"Prepared {root} ({how}: {sizes}) in {builder.data_dir}")
    log(f"Classes: {plan.rule.describe()}")
    log(f"Images: {plan.kind.bands} band(s) of {plan.kind.dtype}")
    return builder
