"""Banded prediction: the rows where small objects are, segmented again at native scale.

A run trained on resized frames that also saw native-scale views (scale jitter up to the
frames' native scale, or native crops) can take a band: ``--band TOP,BOTTOM`` or its
inference recipe's ``config.inference.band = (top, bottom)``, fractions of the image
height. predict (and eval.py's full-resolution pass) then segments the whole image at the
resize scale as usual and, in addition, the band's rows of the original image at native
scale (whole and padded, or in tiles when wide: the Segmenter's native path), whose labels
(and probabilities) replace those rows. The output keeps the input's size. On the CARLA
frames (rows 280-460 of 600 hold 98 % of the episode's car pixels) it lowered the cars'
F2 (docs/RESULTS.md), so no recipe stores one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unet_jax.deploy.options import check_band as check_band  # the recipe's check


def band_rows(band: tuple[float, float], height: int) -> tuple[int, int]:
    """The rows ``[first, stop)`` of a ``height``-row image that ``band`` covers (>= 1 row)."""
    first = min(round(band[0] * height), height - 1)
    return first, max(first + 1, min(round(band[1] * height), height))


def segment_bands(
    segmenter: Any,
    images: Sequence[np.ndarray],
    *,
    band: tuple[float, float],
    with_probabilities: bool,
) -> list[tuple[tuple[int, int], np.ndarray, np.ndarray | None]]:
    """Each image's band, segmented at native scale.

    Images of one size are segmented in one call (the Segmenter batches and tiles them).

    Args:
      segmenter: a ``Segmenter`` (or anything with its ``predict``).
      images: uint8 [H, W, 3] images at their own size.
      band: ``check_band``'s fractions.
      with_probabilities: also return the band's probabilities.

    Returns:
      Per image: ``((first, stop) rows, labels uint8 [rows, W], probabilities or None)``.
    """
    results: list[Any] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    for shape, indices in by_shape.items():
        rows = band_rows(band, shape[0])
        strips = np.stack([images[i][rows[0] : rows[1]] for i in indices])
        labels, probs = segmenter.predict(strips, with_probabilities=with_probabilities)
        for k, i in enumerate(indices):
            results[i] = (rows, np.asarray(labels[k]), None if probs is None else probs[k])
    return results


def paste(whole: np.ndarray, band: tuple[tuple[int, int], np.ndarray, Any], *, part: int) -> Any:
    """``whole`` (labels or probabilities at the image's size) with the band's rows replaced.

    Args:
      whole: [H, W] labels or [H, W, C] probabilities.
      band: one entry of ``segment_bands``.
      part: 1 for the labels, 2 for the probabilities.

    Returns:
      A copy of ``whole`` whose band rows hold the native-scale result.
    """
    (first, stop), *_ = band
    out = np.array(whole, copy=True)
    out[first:stop] = band[part]
    return out
