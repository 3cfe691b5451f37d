"""Per-class pixel statistics of a split, gathered while a data set is prepared (or, for
data sets prepared before they existed, by reading the split once).

They are stored in the prepared data set's metadata (``pixel_counts``,
``present_pixel_counts``) and feed ``config.class_weights="inverse_frequency"`` or
``"median_frequency"`` (see docs/LOSSES_AND_METRICS.md).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from unet_jax.data.classes import IGNORE_LABEL


def label_counts(label: np.ndarray) -> np.ndarray:
    """int64 [256]: pixels per label value (class ids and the ignore value 255)."""
    return np.bincount(np.asarray(label, np.uint8).ravel(), minlength=256).astype(np.int64)


class ClassStats:
    """Accumulates, over the label maps of a split, per class id:

    - ``pixel_counts[c]``: pixels labelled c;
    - ``present_pixel_counts[c]``: labelled (not ignored) pixels of the images that
      contain c (the denominator of median-frequency balancing).

    Thread-safe: builders add from their worker threads.
    """

    def __init__(self) -> None:
        self._pixels = np.zeros(256, np.int64)
        self._present = np.zeros(256, np.int64)
        self._images = 0
        self._lock = threading.Lock()

    def add(self, counts: np.ndarray) -> None:
        """Adds one image's `label_counts`."""
        counts = np.asarray(counts, np.int64)
        labelled = int(counts.sum() - counts[IGNORE_LABEL])
        present = (counts > 0) * labelled
        with self._lock:
            self._pixels += counts
            self._present += present
            self._images += 1

    def to_metadata(self, num_classes: int) -> dict[str, Any]:
        """JSON-ready ``{"pixel_counts", "present_pixel_counts", "ignored_pixels", "images"}``."""
        return {
            "pixel_counts": self._pixels[:num_classes].tolist(),
            "present_pixel_counts": self._present[:num_classes].tolist(),
            "ignored_pixels": int(self._pixels[IGNORE_LABEL]),
            "images": self._images,
        }
