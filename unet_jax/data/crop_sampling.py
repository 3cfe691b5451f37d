"""Class-aware crop sampling: where a crop centred on a chosen class should look.

nnU-Net's "oversample foreground": a share of the training crops is centred on a pixel of
a chosen class present in the example (the class drawn uniformly among those present, the
pixel uniformly among its pixels), the rest are random. Rare and small classes then appear
in far more crops than their pixel share gives them. Draws come only from the example's
generator, so the choice is a function of the stream position like every augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from unet_jax.data.classes import MAX_CLASSES


def check_settings(share: float, classes: Sequence[int] | None) -> tuple[int, ...] | None:
    """Checks the sampling settings and returns the classes as a tuple.

    Args:
      share: the share of crops centred on a chosen class, in [0, 1].
      classes: class ids to centre on, or None (every class but the first).

    Returns:
      The class ids as a sorted tuple, or None.

    Raises:
      ValueError: a share outside [0, 1], or classes that are not distinct ids in
        ``0..MAX_CLASSES - 1``.
    """
    number = isinstance(share, (int, float, np.integer, np.floating)) and not isinstance(
        share, bool
    )
    if not number or not 0.0 <= float(share) <= 1.0:
        raise ValueError(f"foreground_share must be a number in [0, 1], got {share!r}.")
    if classes is None:
        return None
    ids = tuple(classes) if isinstance(classes, (list, tuple)) else None
    if (
        not ids
        or len(set(ids)) != len(ids)
        or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in ids)
        or not all(0 <= int(c) < MAX_CLASSES for c in ids)
    ):
        raise ValueError(
            f"foreground_classes must be None or distinct class ids in 0..{MAX_CLASSES - 1}, "
            f"got {classes!r}."
        )
    return tuple(sorted(int(c) for c in ids))


def chosen_pixel(
    label: np.ndarray, *, classes: tuple[int, ...] | None, rng: np.random.Generator
) -> tuple[int, int] | None:
    """A random pixel of a random chosen class present in ``label``.

    Args:
      label: uint8 [H, W] class ids.
      classes: the ids to centre on (None: every id but 0; the ignore value never).
      rng: the example's generator.

    Returns:
      (row, column) of the pixel, or None when no chosen class is present.
    """
    # PIL's histogram counts uint8 pixels in C, 3x faster than np.bincount's int64 copy.
    counts = np.asarray(Image.fromarray(np.ascontiguousarray(label)).histogram())[:MAX_CLASSES]
    wanted = np.arange(1, MAX_CLASSES) if classes is None else np.asarray(classes)
    present = wanted[counts[wanted] > 0]
    if present.size == 0:
        return None
    target = int(present[rng.integers(present.size)])
    flat = np.flatnonzero(label.ravel() == target)
    index = int(flat[rng.integers(flat.size)])
    return divmod(index, label.shape[1])


def centred_offset(centre: float, *, crop: int, extent: int) -> int:
    """The crop start that puts ``centre`` mid-crop, kept inside ``[0, extent - crop]``.

    Args:
      centre: the point's coordinate along the axis (scaled pixels, pixel centre).
      crop: the crop's length along the axis.
      extent: the (scaled) image's length along the axis.

    Returns:
      The start; the point lies in ``[start, start + crop)`` whenever ``crop <= extent``.
    """
    return int(min(max(round(centre - crop / 2), 0), extent - crop))
