"""How a model normalises its input, chosen from the data and stored in the run.

Two rules (``config.model.input_norm``, `unet_jax.model.input_norm.RULES`):

- ``"imagenet"``: 8-bit RGB, ``(x / 255 - mean) / std`` with ImageNet's mean and std
  (what every run did before other images were read; pretrained encoders expect it).
- ``"zscore"``: any other image (grey, 16-bit, multi-band): per band, clip to the 0.5th
  and 99.5th percentiles of the training split, then ``(x - mean) / std`` with the mean
  and standard deviation of the clipped training values (nnU-Net's rule).

The statistics are computed when a data set is prepared (`band_stats`), copied into the
run's config (``config.model.input_stats``, so config.json and every export carry them)
and applied by the model as its first op, so training, evaluation, predict, the reuse
API and both exports normalise identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from unet_jax.data.image_files import is_rgb8

CLIP_PERCENTILES = (0.5, 99.5)
# Pixels per image that the statistics read (evenly strided), so a large split costs little.
SAMPLE_PER_IMAGE = 1 << 16
IMAGENET_SCALE = 255.0  # ImageNet's mean and std are in 0..1 units of 0..255 pixels


def default_rule(bands: int, dtype: str) -> str:
    """``"imagenet"`` for 8-bit RGB, else ``"zscore"``."""
    return "imagenet" if is_rgb8(bands, dtype) else "zscore"


def sample_pixels(image: np.ndarray) -> np.ndarray:
    """float64 [N, C] pixels of an [H, W, C] image, evenly strided to at most
    ``SAMPLE_PER_IMAGE`` (all of them in smaller images)."""
    flat = image.reshape(-1, image.shape[-1])
    stride = max(1, -(-len(flat) // SAMPLE_PER_IMAGE))
    return flat[::stride].astype(np.float64)


def band_stats(pixels: np.ndarray) -> dict[str, list[float]]:
    """Per-band ``low``/``high`` (the clip percentiles) and ``mean``/``std`` after clipping.

    Args:
      pixels: [N, C] values of the training split (`sample_pixels` of each image).

    Returns:
      ``{"low", "high", "mean", "std"}``, one float per band; a constant band gets std 1.
    """
    low, high = np.percentile(pixels, CLIP_PERCENTILES, axis=0)
    clipped = np.clip(pixels, low, high)
    mean, std = clipped.mean(axis=0), clipped.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {
        "low": low.tolist(),
        "high": high.tolist(),
        "mean": mean.tolist(),
        "std": std.tolist(),
    }


def normalise(image: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    """float32 z-scored bands of an [..., C] image: the model's ``"zscore"`` first op on
    the host (for augmentation on normalised values)."""
    x = np.clip(image.astype(np.float32), np.float32(stats["low"]), np.float32(stats["high"]))
    return (x - np.float32(stats["mean"])) / np.float32(stats["std"])


def denormalise(values: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    """The inverse of `normalise` on the clipped range, float32."""
    return values.astype(np.float32) * np.float32(stats["std"]) + np.float32(stats["mean"])


def augment_stats(model_config: Any) -> dict[str, Any] | None:
    """The statistics per-band augmentation works with (`augment.BandIntensityJitter`):
    ``input_stats`` for images that are not 8-bit RGB, None for 8-bit RGB."""
    bands = int(model_config.get("in_channels") or 3)
    if is_rgb8(bands, model_config.get("input_dtype") or "uint8"):
        return None
    return dict(model_config.input_stats)
