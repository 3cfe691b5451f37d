"""TFDS builder `lyft_udacity`: CARLA driving scenes with 13-class semantic labels.

Configs (see `LyftUdacityConfig`): ``full``, ``full_nohood``, ``resized_256``
(the default), ``resized_256_nohood``, ``synthetic``, ``synthetic_nohood``,
``full_hood_as_none`` and ``synthetic_hood_as_none``. Examples are
``{"image": uint8 [H, W, 3], "label": uint8 [H, W, 1], "name": str}``; splits
train / validation / test (60/20/20 of the frames, grouped by episode).

No TensorFlow: images are handed to TFDS as PNG bytes and the files are
written as array_record (prepare with `datasets.lyft_udacity.prepare`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import tensorflow_datasets as tfds

from datasets.common import manual
from datasets.common.features import segmentation_features
from datasets.common.threads import threaded_map
from datasets.lyft_udacity import decode, sources, splits
from datasets.lyft_udacity.classes import CARLA_CLASSES, NUM_CLASSES
from datasets.lyft_udacity.errors import (
    KAGGLE_URL,
    DataError,
    ManualDownloadMissingError,
    manual_download_message,
)
from unet_jax.data.class_stats import ClassStats, label_counts

SYNTHETIC_MODULE = "datasets.synthetic.scenes"

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(eq=False)
class LyftUdacityConfig(tfds.core.BuilderConfig):
    """A `lyft_udacity` variant.

    Attributes:
      size: (height, width) to resize to; None keeps each frame's stored size.
      source: ``"archive"`` (the Kaggle data in the manual directory) or
        ``"synthetic"`` (frames from `datasets.synthetic.scenes`).
      hood: ``"keep"`` labels the ego car's hood Vehicles (10) as stored;
        ``"ignore"`` sets it to 255, ``"none"`` to None (0) (see `decode.hood_mask`).
      high_ids: ``"ignore"`` maps label ids > 12 to 255; ``"error"`` fails.
      num_frames: synthetic only: frames rendered, seeds 0..num_frames-1.
      frames_per_episode: synthetic only: the episode of seed s is
        s // frames_per_episode (used by the split).
    """

    size: tuple[int, int] | None = None
    source: str = "archive"
    hood: str = "keep"
    high_ids: str = "ignore"
    num_frames: int = 1000
    frames_per_episode: int = 10

    def __post_init__(self):
        if self.source not in ("archive", "synthetic"):
            raise ValueError(f"source must be 'archive' or 'synthetic', not {self.source!r}")
        if self.hood not in decode.HOOD_RULES:
            raise ValueError(f"hood must be one of {decode.HOOD_RULES}, not {self.hood!r}")
        if self.high_ids not in decode.HIGH_ID_RULES:
            raise ValueError(
                f"high_ids must be one of {decode.HIGH_ID_RULES}, not {self.high_ids!r}"
            )
        if self.source == "synthetic" and self.size is None:
            raise ValueError("the synthetic source needs a size")
        if self.num_frames < 1 or self.frames_per_episode < 1:
            raise ValueError("num_frames and frames_per_episode must be positive")


_RESIZED = (256, 256)
CONFIGS: tuple[LyftUdacityConfig, ...] = (
    LyftUdacityConfig(name="full", description="Frames as stored (800x600)."),
    LyftUdacityConfig(
        name="full_nohood",
        description="As `full`, the ego car's hood labelled 255 (ignore).",
        hood="ignore",
    ),
    LyftUdacityConfig(
        name="resized_256",
        description="256x256: image area-resized (PIL BOX), label nearest-resized.",
        size=_RESIZED,
    ),
    LyftUdacityConfig(
        name="resized_256_nohood",
        description="As `resized_256`, the ego car's hood labelled 255 (ignore).",
        size=_RESIZED,
        hood="ignore",
    ),
    LyftUdacityConfig(
        name="synthetic",
        description="1000 procedurally rendered 256x256 demo scenes; no download needed.",
        size=_RESIZED,
        source="synthetic",
    ),
    LyftUdacityConfig(
        name="synthetic_nohood",
        description="1000 rendered scenes at 240x320 (the real frames' 4:3), the hood labelled "
        "255 (ignore): mixes with `full_nohood` frames.",
        size=(240, 320),
        source="synthetic",
        hood="ignore",
    ),
    LyftUdacityConfig(
        name="full_hood_as_none",
        description="As `full`, the ego car's hood labelled None (0).",
        hood="none",
    ),
    LyftUdacityConfig(
        name="synthetic_hood_as_none",
        description="As `synthetic_nohood`, the hood labelled None (0).",
        size=(240, 320),
        source="synthetic",
        hood="none",
    ),
)
CONFIG_NAMES: tuple[str, ...] = tuple(c.name for c in CONFIGS)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for the Lyft-Udacity challenge data (Kaggle archive)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = list(CONFIGS)
    DEFAULT_BUILDER_CONFIG_NAME = "resized_256"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download the archive from {KAGGLE_URL}
    (a free Kaggle account is needed) and put the zip, under any file name, into
    the manual directory (default: <data_dir>/downloads/manual), or extract it
    there. Accepted layouts: dataA/dataA/CameraRGB + CameraSeg (as in the zip),
    dataA/CameraRGB (extracted flat), ... through dataE, or the original 2018
    Train/CameraRGB + Train/CameraSeg. Then run
    `python -m datasets.lyft_udacity --config resized_256`.
    The `synthetic` config needs no download.
    """

    def __init__(self, *, split_group: str | None = None, log=print, **kwargs: Any) -> None:
        """As a tfds builder; ``split_group`` is ``config.split_group`` (`splits.split_frames`)
        and ``log`` says how the frames were split."""
        self._split_group = split_group
        self._log = log
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=segmentation_features(),
            supervised_keys=("image", "label"),
            homepage=KAGGLE_URL,
            # The class declaration travels with the prepared data; the training split's
            # pixel statistics are added while it is generated.
            metadata=tfds.core.MetadataDict(classes=CARLA_CLASSES.to_json()),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.source == "synthetic":
            source = None
            seeds = list(range(config.num_frames))
            parts = splits.split_items(
                seeds, lambda s: f"synthetic:{s // config.frames_per_episode}"
            )
            where, count = f"config {config.name!r}", len(seeds)
        else:
            source = self.find_source(manual.manual_dir(self, dl_manager))
            parts, summary = splits.split_frames(
                source.pairs, lambda p: p.name, group_pattern=self._split_group
            )
            where, count = source.location, len(source.pairs)
            self._log(f"Split of {where} ({count} frames):\n  " + "\n  ".join(summary))
            self.info.metadata.update(
                split_group=self._split_group,
                source_fingerprint=sources.fingerprint(source, split_group=self._split_group),
            )
        # TFDS cannot write an empty split; say why instead of its bare assertion.
        if empty := [name for name, items in parts.items() if not items]:
            raise DataError(
                f"{where}: only {count} frames; too few episodes to fill every split "
                f"(empty: {', '.join(empty)})"
            )
        return {
            name: self._generate_examples(source, items, split=name)
            for name, items in parts.items()
        }

    def find_source(self, manual_dir: str) -> sources.Source:
        """The frames in ``manual_dir``; a `ManualDownloadMissingError` when there are none."""
        source = sources.find_source(manual_dir)
        if source is None:
            found = manual.what_is_there(manual_dir, expected="CameraRGB folder")
            raise ManualDownloadMissingError(
                manual_download_message(
                    manual_dir,
                    config_name=self.builder_config.name,
                    data_dir=os.fspath(self.data_dir_root),
                    found=found,
                )
            )
        return source

    def _generate_examples(
        self, source: sources.Source | None, items: list[Any], *, split: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        config = self.builder_config
        if source is None:
            render = importlib.import_module(SYNTHETIC_MODULE).render_scene
            fn = functools.partial(
                synthetic_example, render=render, size=config.size, hood=config.hood
            )
        else:
            fn = functools.partial(
                archive_example,
                source,
                high_ids=config.high_ids,
                hood=config.hood,
                size=config.size,
            )
        stats = ClassStats()
        try:
            for key, example, counts in threaded_map(fn, items):
                stats.add(counts)
                yield key, example
        finally:
            if source is not None:
                source.close()
        if split == "train":
            self.info.metadata["train_stats"] = stats.to_metadata(NUM_CLASSES)


def archive_example(
    source: sources.Source,
    pair: sources.FramePair,
    *,
    high_ids: decode.HighIdRule,
    hood: decode.HoodRule,
    size: tuple[int, int] | None,
) -> tuple[str, dict[str, Any]]:
    """Reads, validates and encodes one archive frame.

    Args:
      source: where the frame's files are.
      pair: the frame.
      high_ids: rule for ids > 12.
      hood: rule for the ego car's hood.
      size: (height, width) or None.

    Returns:
      (key, TFDS example with PNG bytes, label counts [256]).

    Raises:
      DataError: invalid frame; the message names the file.
    """
    encoded = decode.process_pair(
        source.read(pair.image),
        source.read(pair.label),
        image_name=source.describe(pair.image),
        label_name=source.describe(pair.label),
        high_ids=high_ids,
        hood=hood,
        size=size,
    )
    example = {"image": encoded.image_png, "label": encoded.label_png, "name": pair.name}
    return pair.name, example, encoded.label_counts


def synthetic_name(seed: int) -> str:
    """The ``name`` of a synthetic frame, e.g. ``synthetic/00042.png``."""
    return f"synthetic/{seed:05d}.png"


def synthetic_example(
    seed: int,
    *,
    render: Callable[..., tuple[np.ndarray, np.ndarray]],
    size: tuple[int, int],
    hood: decode.HoodRule = "keep",
) -> tuple[str, dict[str, Any]]:
    """Renders, checks and encodes one synthetic frame.

    Args:
      seed: the scene's seed.
      render: ``render_scene(seed, height=, width=) -> (image, label)``.
      size: (height, width).
      hood: rule for the rendered ego car's hood (`decode.apply_hood_rule`).

    Returns:
      (key, TFDS example with PNG bytes, label counts [256]).

    Raises:
      DataError: the renderer returned a wrong shape, dtype or class id.
    """
    name = synthetic_name(seed)
    height, width = size
    image, label = (np.asarray(a) for a in render(seed, height=height, width=width))
    if image.dtype != np.uint8 or image.shape != (height, width, 3):
        raise DataError(
            f"{name}: render_scene({seed}) returned image {image.dtype} {image.shape}, "
            f"expected uint8 {(height, width, 3)}"
        )
    if label.dtype != np.uint8 or label.shape != (height, width):
        raise DataError(
            f"{name}: render_scene({seed}) returned label {label.dtype} {label.shape}, "
            f"expected uint8 {(height, width)}"
        )
    if label.max(initial=0) >= NUM_CLASSES:
        raise DataError(
            f"{name}: render_scene({seed}) returned class id {int(label.max())} > {NUM_CLASSES - 1}"
        )
    label = decode.apply_hood_rule(label, hood)
    return (
        name,
        {
            "image": decode.encode_png(image),
            "label": decode.encode_png(label),
            "name": name,
        },
        label_counts(label),
    )
