"""A data set's fingerprint: what the automatic plan (``unet_jax.train.auto_plan``) reads.

A pure function of the training split's examples: how many images and groups, their
sizes, bands, dtype and per-band intensities, how often each class occurs, and how thin
and how small its regions are (the context a crop must hold and the resolution a resize
must keep). Large splits are read through an evenly spaced sample of ``MAX_IMAGES``
images (sizes, intensities, frequencies, regions).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
from scipy import ndimage

from unet_jax.data import normalisation
from unet_jax.data.image_files import is_rgb8

MAX_IMAGES = 200


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """Attributes:
    images: examples in the split.
    groups: distinct groups among the sampled names (``group_pattern``; else images).
    median_size, min_size, max_size: (height, width) over the sampled images (median
      per axis).
    class_frequency: per class, its share of the labelled (not ignored) pixels.
    class_thickness: per class, the mean distance in pixels from its pixels to the
      nearest pixel of another class or the image border (1 for a line one pixel wide;
      0 for a class that never occurs).
    class_region_px: per class, the median area in pixels of its 4-connected regions
      (0 for a class that never occurs).
    bands, dtype: the images' bands and dtype as stored.
    intensity: per band ``low``/``high`` (0.5th/99.5th percentiles), ``mean``/``std``
      after clipping, of the sampled images (`unet_jax.data.normalisation.band_stats`).
    """

    images: int
    groups: int
    median_size: tuple[int, int]
    min_size: tuple[int, int]
    max_size: tuple[int, int]
    class_frequency: tuple[float, ...]
    class_thickness: tuple[float, ...]
    class_region_px: tuple[float, ...]
    bands: int = 3
    dtype: str = "uint8"
    intensity: dict[str, list[float]] | None = None

    @property
    def rgb8(self) -> bool:
        """Whether the images are 8-bit RGB."""
        return is_rgb8(self.bands, self.dtype)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sample_indices(n: int, limit: int = MAX_IMAGES) -> list[int]:
    """Up to ``limit`` evenly spaced indices of ``range(n)``, first and last included."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def group_key(name: str, pattern: str | None) -> str:
    """The group of an example name: the pattern's first group (or match); else the name."""
    if pattern:
        match = re.search(pattern, name)
        if match:
            return match.group(1) if match.groups() else match.group(0)
    return name


def fingerprint(source: Any, *, num_classes: int, group_pattern: str | None = None) -> Fingerprint:
    """The fingerprint of a split.

    Args:
      source: random-access examples ``{"image", "label" [H, W, 1], "name"}``.
      num_classes: class ids are ``0..num_classes-1`` (255 is ignored).
      group_pattern: the split's grouping regex on names (``folder_group``,
        ``split_group``), or None.

    Returns:
      The fingerprint.
    """
    indices = sample_indices(len(source))
    sizes, names = [], set()
    pixels = np.zeros(num_classes, np.int64)
    thickness_sum = np.zeros(num_classes)
    regions: list[list[int]] = [[] for _ in range(num_classes)]
    samples = []
    for index in indices:
        example = source[index]
        image = np.asarray(example["image"])
        samples.append(normalisation.sample_pixels(image))
        label = np.asarray(example["label"])[..., 0]
        sizes.append(label.shape)
        names.add(group_key(str(example.get("name", index)), group_pattern))
        counts = np.bincount(label.ravel(), minlength=256)  # 255 (ignored) is no class
        pixels += counts[:num_classes]
        for c in np.flatnonzero(counts[:num_classes]):
            mask = np.pad(label == c, 1)  # the border counts as an edge
            thickness_sum[c] += ndimage.distance_transform_edt(mask).sum()
            labelled, count = ndimage.label(mask)
            regions[c] += np.bincount(labelled.ravel(), minlength=count + 1)[1:].tolist()
    labelled_pixels = max(int(pixels.sum()), 1)
    sizes_array = np.array(sizes) if sizes else np.zeros((1, 2), int)
    return Fingerprint(
        images=len(source),
        groups=len(names) if group_pattern else len(source),
        median_size=tuple(int(v) for v in np.median(sizes_array, axis=0)),
        min_size=tuple(int(v) for v in sizes_array.min(axis=0)),
        max_size=tuple(int(v) for v in sizes_array.max(axis=0)),
        class_frequency=tuple(float(p / labelled_pixels) for p in pixels),
        class_thickness=tuple(
            float(t / p) if p else 0.0 for t, p in zip(thickness_sum, pixels, strict=True)
        ),
        class_region_px=tuple(float(np.median(r)) if r else 0.0 for r in regions),
        bands=int(image.shape[-1]) if indices else 3,
        dtype=image.dtype.name if indices else "uint8",
        intensity=normalisation.band_stats(np.concatenate(samples)) if samples else None,
    )
