"""The augmentation defaults and the conditions' names, in one light home (no imports), so
that the config files read them as ``AugmentConfig`` and the conditions do."""

from __future__ import annotations

RGB_SATURATION = 0.2  # the saturation jitter of 8-bit RGB data when the config leaves it unset
# Flips, scale, colour and per-band jitter (``unet_jax.data.augment.AugmentConfig``'s fields).
JITTER = {
    "flip_prob": 0.5,
    "min_scale": 0.75,
    "max_scale": 1.25,
    "brightness": 0.2,
    "contrast": 0.2,
    "saturation": RGB_SATURATION,
    "hue": 0.0,  # hue jitter in turns (0: off)
    # Per band, on normalised values, for images that are not 8-bit RGB (docs/YOUR_DATA.md).
    "gamma": 0.0,
    "noise": 0.0,
    "rot90": False,  # random 90-degree rotations (aerial images)
}
DEFAULT_FOREGROUND_SHARE = 0.0  # class-aware crops (unet_jax.data.crop_sampling): off
# Condition augmentation (``unet_jax.data.conditions``), in the order they are applied.
CONDITION_NAMES = (
    "shadows",
    "wet_road",
    "exposure",
    "white_balance",
    "fog",
    "rain",
    "blur",
    "noise",
    "jpeg",
)
CONDITION_P = 0.0  # off
CONDITION_STRENGTH = 0.5


def default_settings() -> dict[str, dict[str, float]]:
    """Every condition at its defaults: off (p = 0), strength 0.5."""
    return {n: {"p": CONDITION_P, "strength": CONDITION_STRENGTH} for n in CONDITION_NAMES}
