"""TFDS builder `aerial`: Semantic segmentation of aerial imagery (Dubai, 6 classes).

Humans in the Loop with MBRSC; the Kaggle archive is a manual download (see
`MANUAL_DOWNLOAD_INSTRUCTIONS`). 72 images in 8 tiles of 9, of sizes from 509x544 to
2149x1480, stored at their native size: ``{"image": uint8 [H, W, 3], "label": uint8
[H, W, 1], "name": "Tile <n>/<stem>"}``. Splits: 5/2/2 of every tile
(`datasets.aerial.splits`). Masks are decoded by the colours of `datasets.aerial.classes`
(palette-mode masks converted to RGB first, black ignored); the archive's own
classes.json is wrong and never read. Every file is decoded and checked; a bad one stops
preparation with a `DataError` naming it, and nothing that looks prepared is left behind.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from datasets.aerial import sources, splits
from datasets.aerial.classes import MASK_RULE, NUM_CLASSES
from datasets.common import manual
from datasets.common.errors import DataError
from datasets.common.features import segmentation_features
from datasets.common.threads import threaded_map
from datasets.folder import decode
from datasets.lyft_udacity.decode import encode_png
from datasets.lyft_udacity.errors import ManualDownloadMissingError
from unet_jax.data.class_stats import ClassStats, label_counts

KAGGLE_URL = (
    "https://www.kaggle.com/datasets/humansintheloop/semantic-segmentation-of-aerial-imagery"
)
TRAIN_COMMAND = "python train.py --config unet_jax/configs/aerial.py --workdir runs/aerial"
DEMO_COMMAND = "python train.py --config unet_jax/configs/demo.py --workdir runs/demo"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the archive from {KAGGLE_URL}
(a free Kaggle account is needed) and put the zip, under any file name (e.g.
archive.zip), into the manual directory (default: <data_dir>/downloads/manual), or
extract it there: 'Semantic segmentation dataset/Tile 1/images' and '.../masks' through
Tile 8. Then run `{TRAIN_COMMAND}` (or `python -m datasets.aerial` to prepare it alone).
"""


def manual_download_message(manual_dir: str, *, data_dir: str, found: str = "") -> str:
    """The message of `ManualDownloadMissingError`: where to download, where to put it.

    Args:
      manual_dir: the directory that was searched (absolute path).
      data_dir: the TFDS data directory, for the command to re-run.
      found: optional description of what the directory holds instead.

    Returns:
      A multi-line message, in the form of the Lyft-Udacity one.
    """
    lines = [f"The aerial imagery data was not found in the manual directory {manual_dir}."]
    if found:
        lines.append(found)
    lines += [
        "It cannot be downloaded automatically (Kaggle needs a login). Download the",
        f"archive from {KAGGLE_URL}",
        "and put the zip (any file name, e.g. archive.zip) into this exact directory:",
        f"  {manual_dir}",
        "(or extract it there: 'Semantic segmentation dataset/Tile 1/images' and 'masks',",
        "through Tile 8). Then run again:",
        f"  python -m datasets.aerial --data_dir {data_dir} --manual_dir {manual_dir}",
        "To try the project without the data, run the synthetic demo instead:",
        f"  {DEMO_COMMAND}",
    ]
    return "\n".join(lines)


def encode_example(
    source: sources.Source, pair: sources.FramePair
) -> tuple[str, dict[str, Any], np.ndarray]:
    """Reads, checks and encodes one image and its mask.

    Args:
      source: where the files are.
      pair: the example.

    Returns:
      (key, TFDS example with PNG bytes, label counts [256]).

    Raises:
      DataError: an unreadable or truncated file, a colour that is no class and not black,
        a mask whose size differs from its image's; the message names the file.
    """
    image_file = sources.SourceFile(source, pair.image)
    mask_file = sources.SourceFile(source, pair.label)
    image = decode.read_image(image_file)
    label = decode.decode_mask(mask_file, MASK_RULE)
    if label.shape != image.shape[:2]:
        raise DataError(
            f"{mask_file}: mask is {label.shape[1]}x{label.shape[0]} but its image "
            f"{image_file.name} is {image.shape[1]}x{image.shape[0]}"
        )
    example = {"image": encode_png(image), "label": encode_png(label), "name": pair.name}
    return pair.name, example, label_counts(label)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for the Semantic segmentation of aerial imagery archive."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=segmentation_features(),
            supervised_keys=("image", "label"),
            homepage=KAGGLE_URL,
            # The classes travel with the prepared data; the training split's pixel
            # statistics are added while it is generated.
            metadata=tfds.core.MetadataDict(
                classes=MASK_RULE.classes.to_json(), mask_rule=MASK_RULE.to_json()
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        source = self._find_source(dl_manager)
        parts = splits.split_by_tile(
            source.pairs,
            name_of=lambda p: p.name,
            tile_of=lambda p: sources.tile_of(p.name),
            where=source.location,
        )
        return {
            name: self._generate_examples(source, items, split=name)
            for name, items in parts.items()
        }

    def _find_source(self, dl_manager: tfds.download.DownloadManager) -> sources.Source:
        manual_dir = manual.manual_dir(self, dl_manager)
        source = sources.find_source(manual_dir)
        if source is None:
            found = manual.what_is_there(manual_dir, expected="'Tile N' folder")
            raise ManualDownloadMissingError(
                manual_download_message(
                    manual_dir, data_dir=os.fspath(self.data_dir_root), found=found
                )
            )
        return source

    def _generate_examples(
        self, source: sources.Source, pairs: list[sources.FramePair], *, split: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        stats = ClassStats()
        encode = functools.partial(encode_example, source)
        try:
            for key, example, counts in threaded_map(encode, pairs):
                stats.add(counts)
                yield key, example
        finally:
            source.close()
        if split == "train":
            self.info.metadata["train_stats"] = stats.to_metadata(NUM_CLASSES)
