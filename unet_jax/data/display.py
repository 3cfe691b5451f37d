"""Images as pictures: 8-bit RGB as it is; grey, 16-bit and multi-band through three
display bands with a percentile contrast stretch (preview, eval pictures, predict)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unet_jax.data.image_files import is_rgb8

STRETCH_PERCENTILES = (1.0, 99.0)


def display_bands(bands: int, chosen: Sequence[int] | None = None) -> tuple[int, ...]:
    """The bands a picture shows: ``chosen`` (``config.display_bands``), else the first
    three (one band: that band, as grey).

    Raises:
      ValueError: a chosen band that the image does not have, or not 1 or 3 of them.
    """
    if chosen is None:
        return tuple(range(min(bands, 3))) if bands >= 3 else (0,)
    chosen = tuple(int(b) for b in chosen)
    if len(chosen) not in (1, 3) or not all(0 <= b < bands for b in chosen):
        raise ValueError(
            f"config.display_bands={chosen}: give 1 or 3 band numbers in 0..{bands - 1}"
        )
    return chosen


def stretch(band: np.ndarray) -> np.ndarray:
    """uint8 of one band linearly stretched from its 1st to its 99th percentile."""
    values = band.astype(np.float32)
    low, high = np.percentile(values, STRETCH_PERCENTILES)
    if high <= low:
        high = low + 1.0
    return np.clip(np.rint((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def to_rgb(image: np.ndarray, *, bands: Sequence[int] | None = None) -> np.ndarray:
    """uint8 [H, W, 3] picture of an [H, W, C] image of any bands and dtype.

    Args:
      image: [H, W, C].
      bands: ``config.display_bands`` (None: the first three).

    Returns:
      8-bit RGB images unchanged; others: the display bands, each stretched (`stretch`),
      one band repeated as grey.
    """
    image = np.asarray(image)
    if is_rgb8(image.shape[-1], image.dtype) and bands is None:
        return image
    shown = display_bands(image.shape[-1], bands)
    planes = [stretch(image[..., b]) for b in shown]
    return np.stack(planes * 3 if len(planes) == 1 else planes, axis=-1)
