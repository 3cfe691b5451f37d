"""The model's input normalisation fields from ``config.model`` (rules: data/normalisation.py)."""

from __future__ import annotations

from typing import Any

from unet_jax.errors import ConfigError

RULES = ("imagenet", "zscore")


def model_fields(model_config: Any) -> dict[str, Any]:
    """The model's normalisation fields (``mean``, ``std``, ``input_scale``, ``clip_low``,
    ``clip_high``, ``in_channels``) for ``config.model``; empty for ImageNet's rule
    (the model's defaults), so 8-bit RGB runs build exactly the model they built before.

    Raises:
      ConfigError: an unknown rule, or ``"zscore"`` without statistics.
    """
    rule = model_config.get("input_norm") or "imagenet"
    bands = int(model_config.get("in_channels") or 3)
    if rule not in RULES:
        raise ConfigError(f"config.model.input_norm={rule!r}: use one of {RULES}")
    if rule == "imagenet":
        if bands != 3:
            raise ConfigError(
                f"config.model.input_norm='imagenet' needs 3 bands (RGB); the data has {bands}"
            )
        return {}
    stats = model_config.get("input_stats")
    if not stats:
        raise ConfigError(
            "config.model.input_norm='zscore' needs config.model.input_stats (computed when "
            "the data set is prepared)"
        )
    stats = dict(stats)
    return {
        "in_channels": bands,
        "mean": tuple(float(v) for v in stats["mean"]),
        "std": tuple(float(v) for v in stats["std"]),
        "input_scale": 1.0,
        "clip_low": tuple(float(v) for v in stats["low"]),
        "clip_high": tuple(float(v) for v in stats["high"]),
    }
