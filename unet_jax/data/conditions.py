"""Condition augmentation: move a clear-weather frame toward light and weather it lacks.

Nine photometric transforms of the image only (the label is never touched): exposure,
white balance, shadows, wet road, fog, rain, blur, sensor noise and JPEG artefacts. Each
is a ``grain.RandomMapTransform`` with a probability ``p`` and a ``strength`` in [0, 1]
that scales the range of its random parameters; it draws only from the generator grain
passes to ``random_map`` (keyed by seed and stream position), so it is deterministic for
a seed and an element. ``p = 0`` leaves the element as it is (the same object).

They run after the resize/crop, on the output size, in the order of ``CONDITIONS``:
scene (shadows, wet road), light (exposure, white balance), air (fog, rain), then the
camera (blur, noise, JPEG). Sizes (streak widths, blur radii) scale with the image
width, relative to 320 pixels, so a strength looks alike at 320x240 and 800x600. The
scene geometry assumes a forward-looking road camera: the ground lies below a horizon
drawn between 35 % and 55 % of the height. Small numpy and PIL code, a few milliseconds
per 320x240 frame (docs/AUGMENTATION.md).
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import grain.python as grain
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from unet_jax.data.augment_defaults import (
    CONDITION_NAMES,
    CONDITION_P,
    CONDITION_STRENGTH,
)
from unet_jax.errors import ConfigError

_REFERENCE_WIDTH = 320.0  # sizes below are in pixels of a frame this wide


def _check_image(element: Mapping[str, Any]) -> np.ndarray:
    image = np.asarray(element["image"])
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"conditions need a uint8 [H, W, 3] image, got {image.dtype} {image.shape}"
        )
    return image


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _per_channel_lut(image: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """Maps each channel through its own 256-entry table (PIL's ``point``, in C)."""
    table = _to_uint8(luts).T.ravel().tolist()  # PIL wants R's 256, then G's, then B's
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).point(table))


def _horizon_rows(height: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """A horizon row and, per row, how far below it the row lies (0 above, 1 at the bottom)."""
    horizon = int(rng.uniform(0.35, 0.55) * height)
    rows = np.arange(height, dtype=np.float32)
    below = np.clip((rows - horizon) / max(height - horizon, 1), 0.0, 1.0)
    return horizon, below


@dataclasses.dataclass(frozen=True)
class Condition(grain.RandomMapTransform):
    """One condition: with probability ``p``, ``apply`` at ``strength`` to the image.

    Attributes:
      p: probability in [0, 1] (0: off).
      strength: in [0, 1], scales the range of the random parameters.
    """

    p: float = CONDITION_P
    strength: float = CONDITION_STRENGTH
    name: ClassVar[str] = ""

    def __post_init__(self):
        for field in ("p", "strength"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"conditions.{self.name}.{field}={value!r}: must be a number")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"conditions.{self.name}.{field}={value}: must be in [0, 1]")

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Returns the element, its image changed with probability p (label untouched)."""
        if self.p == 0.0 or rng.random() >= self.p:
            return element
        out = dict(element)
        out["image"] = self.apply(_check_image(element), rng)
        return out

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Returns the changed uint8 [H, W, 3] image; draws only from ``rng``."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Exposure(Condition):
    """Brightness (up to +-1 stop at strength 1), contrast about the mean (x 1 +- 0.5) and
    gamma (2 ** +-0.6): under- and over-exposed frames, dusk."""

    name: ClassVar[str] = "exposure"

    def apply(self, image, rng):
        s = self.strength
        gain = 2.0 ** (s * rng.uniform(-1.0, 1.0))
        contrast = 1.0 + 0.5 * s * rng.uniform(-1.0, 1.0)
        gamma = 2.0 ** (0.6 * s * rng.uniform(-1.0, 1.0))
        levels = np.arange(256, dtype=np.float64) / 255.0
        exposed = levels**gamma * gain
        hist = np.bincount(image.ravel(), minlength=256)
        mean = float(hist @ exposed) / image.size
        lut = ((exposed - mean) * contrast + mean) * 255.0
        return _per_channel_lut(image, np.stack([lut] * 3, axis=1))


@dataclasses.dataclass(frozen=True)
class WhiteBalance(Condition):
    """Colour temperature (red against blue, up to +-30 % at strength 1, warm twice as
    likely: evening sun) and tint (green against magenta, up to +-10 %); brightness kept."""

    name: ClassVar[str] = "white_balance"

    def apply(self, image, rng):
        s = self.strength
        temperature = 0.3 * s * rng.uniform(-0.5, 1.0)
        tint = 0.1 * s * rng.uniform(-1.0, 1.0)
        gains = np.array([1.0 + temperature, 1.0 + tint, 1.0 - temperature])
        gains /= gains @ np.array([0.299, 0.587, 0.114])  # keep the luma of grey
        return _per_channel_lut(image, np.arange(256.0)[:, None] * gains[None, :])


@dataclasses.dataclass(frozen=True)
class Shadows(Condition):
    """1-3 soft-edged polygons on the ground (below a horizon), darkened by 40-75 % at
    strength 1 (blue kept a little more: skylight): shadows of buildings and trees."""

    name: ClassVar[str] = "shadows"

    def apply(self, image, rng):
        height, width = image.shape[:2]
        horizon, _ = _horizon_rows(height, rng)
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        for _ in range(int(rng.integers(1, 4))):
            corners = int(rng.integers(3, 7))
            centre = rng.uniform([0.0, horizon + 0.1 * (height - horizon)], [width, height])
            # Flattened by perspective: wide across, shallow in depth.
            radii = rng.uniform(0.15, 0.5) * width * np.array([1.0, rng.uniform(0.3, 0.7)])
            angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, corners))
            points = centre + radii * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            points[:, 1] = np.maximum(points[:, 1], horizon)
            draw.polygon([tuple(p) for p in points.tolist()], fill=255)
        radius = rng.uniform(1.0, 4.0) * width / _REFERENCE_WIDTH
        soft = mask.filter(ImageFilter.GaussianBlur(radius))
        darkness = self.strength * rng.uniform(0.4, 0.75)
        shade = np.asarray(soft, np.float32)[..., None] * (darkness / 255.0)
        factor = 1.0 - shade * np.array([1.0, 0.95, 0.8], np.float32)
        return _to_uint8(image * factor)


@dataclasses.dataclass(frozen=True)
class WetRoad(Condition):
    """The ground below a horizon darkened (up to 40 % at the bottom, strength 1), mirroring
    the scene above it (up to 50 % near the horizon, where a wet surface reflects most), and
    2-5 short bright vertical streaks below the horizon (lights reflected on wet asphalt)."""

    name: ClassVar[str] = "wet_road"

    def apply(self, image, rng):
        s = self.strength
        height, width = image.shape[:2]
        scale = width / _REFERENCE_WIDTH
        horizon, below = _horizon_rows(height, rng)
        ground = (below > 0).astype(np.float32)
        # Row y below the horizon mirrors row 2 * horizon - y above it.
        mirror_rows = np.clip(2 * horizon - np.arange(height), 0, height - 1)
        mirror = Image.fromarray(np.ascontiguousarray(image[mirror_rows]))
        mirror = np.asarray(mirror.filter(ImageFilter.BoxBlur(2.0 * scale)), np.float32)
        darken = (1.0 - 0.4 * s * np.sqrt(below))[:, None, None]
        reflect = (0.5 * s * ground * (1.0 - below) ** 2)[:, None, None]
        out = image * darken
        out += reflect * (mirror - out)
        columns = np.arange(width, dtype=np.float32)
        streaks = np.zeros((height, width), np.float32)
        for _ in range(int(rng.integers(2, 6))):
            centre, sigma = rng.uniform(0, width), rng.uniform(0.7, 2.0) * scale
            extent = rng.uniform(0.1, 0.4)  # of the ground's height
            profile = np.exp(-0.5 * ((columns - centre) / sigma) ** 2)
            fade = ground * np.exp(-below / extent)
            streaks += rng.uniform(0.4, 1.0) * fade[:, None] * profile[None, :]
        glare = 120.0 * s * np.minimum(streaks, 1.0)
        out += glare[..., None] * np.array([1.0, 0.95, 0.85], np.float32)
        return _to_uint8(out)


@dataclasses.dataclass(frozen=True)
class Fog(Condition):
    """Haze by depth: x -> x t + A (1 - t), t = exp(-beta d) with depth d 1 above the
    horizon and falling toward the bottom; beta up to 2 and airlight A 180-235 (grey,
    slightly blue) at strength 1."""

    name: ClassVar[str] = "fog"

    def apply(self, image, rng):
        height = image.shape[0]
        _, below = _horizon_rows(height, rng)
        depth = 0.15 / (below + 0.15)  # 1 at the horizon, 0.13 at the bottom
        beta = self.strength * rng.uniform(0.5, 2.0)
        transmission = np.exp(-beta * depth).astype(np.float32)[:, None, None]
        airlight = rng.uniform(180.0, 235.0) * np.array([0.97, 0.99, 1.0], np.float32)
        return _to_uint8(image * transmission + airlight * (1.0 - transmission))


@dataclasses.dataclass(frozen=True)
class Rain(Condition):
    """Faint slanted streaks (up to about 600 at 320x240 and strength 1, one wind angle per
    frame within +-20 degrees of vertical) over a frame dimmed by up to 15 %."""

    name: ClassVar[str] = "rain"

    def apply(self, image, rng):
        s = self.strength
        height, width = image.shape[:2]
        scale = width / _REFERENCE_WIDTH
        count = int(s * rng.uniform(0.5, 1.0) * 0.008 * height * width / scale)
        angle = rng.uniform(-0.35, 0.35)
        length = rng.uniform(0.04, 0.1) * height
        starts = rng.uniform([-0.2 * width, -length], [1.2 * width, height], (count, 2))
        lengths = length * rng.uniform(0.6, 1.0, count)
        ends = starts + lengths[:, None] * np.array([math.sin(angle), math.cos(angle)])
        levels = rng.integers(120, 256, count)
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        line_width = max(1, round(scale))
        for start, end, level in zip(starts.tolist(), ends.tolist(), levels.tolist(), strict=True):
            draw.line([tuple(start), tuple(end)], fill=level, width=line_width)
        layer = layer.filter(ImageFilter.GaussianBlur(0.5 * scale))
        alpha = np.asarray(layer, np.float32)[..., None] * (0.5 / 255.0)
        dimmed = image * np.float32(1.0 - 0.15 * s)
        return _to_uint8(dimmed + alpha * (210.0 - dimmed))


@dataclasses.dataclass(frozen=True)
class Blur(Condition):
    """Defocus (Gaussian, radius up to 1.5 px at 320 wide and strength 1) or, half of the
    time, horizontal motion blur (up to 8 px)."""

    name: ClassVar[str] = "blur"

    def apply(self, image, rng):
        scale = image.shape[1] / _REFERENCE_WIDTH
        amount = self.strength * rng.uniform(0.3, 1.0) * scale
        if rng.random() < 0.5:
            pil = Image.fromarray(np.ascontiguousarray(image))
            return np.asarray(pil.filter(ImageFilter.GaussianBlur(1.5 * amount)))
        length = max(1, round(8.0 * amount))
        if length == 1:
            return image
        return _motion_blur(image, length)


def _motion_blur(image: np.ndarray, length: int) -> np.ndarray:
    """The mean of ``length`` horizontal neighbours (edges repeated), by cumulative sums."""
    left = length // 2
    padded = np.pad(image, ((0, 0), (left, length - 1 - left), (0, 0)), mode="edge")
    sums = np.cumsum(padded, axis=1, dtype=np.float32)  # exact: integers below 2**24
    sums = np.concatenate([np.zeros_like(sums[:, :1]), sums], axis=1)
    return _to_uint8((sums[:, length:] - sums[:, :-length]) / length)


@dataclasses.dataclass(frozen=True)
class SensorNoise(Condition):
    """Read noise (sigma up to 8 grey levels at strength 1) plus shot noise (variance up
    to 0.5 x the value), independent per channel: a small sensor in poor light."""

    name: ClassVar[str] = "noise"

    def apply(self, image, rng):
        s = self.strength
        read = 8.0 * s * rng.uniform(0.3, 1.0)
        shot = 0.5 * s * rng.uniform(0.0, 1.0)
        pixels = image.astype(np.float32)
        sigma = np.sqrt(read * read + shot * pixels)
        return _to_uint8(pixels + sigma * rng.standard_normal(image.shape, dtype=np.float32))


@dataclasses.dataclass(frozen=True)
class Jpeg(Condition):
    """JPEG compression at quality 90 - 80 x strength x U(0.3, 1) (10-66 at strength 1)."""

    name: ClassVar[str] = "jpeg"

    def apply(self, image, rng):
        quality = int(round(90.0 - 80.0 * self.strength * rng.uniform(0.3, 1.0)))
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB"))


# Every condition, in the order of CONDITION_NAMES (the order they are applied in).
CONDITIONS: tuple[type[Condition], ...] = tuple(
    sorted(Condition.__subclasses__(), key=lambda c: CONDITION_NAMES.index(c.name))
)
NAMES = CONDITION_NAMES
if tuple(c.name for c in CONDITIONS) != NAMES:  # a condition without a class
    raise ImportError(f"conditions {NAMES} are implemented as {CONDITIONS}")


def build_conditions(settings: Mapping[str, Any] | None) -> list[Condition]:
    """The enabled conditions (p > 0), in application order.

    Args:
      settings: ``{name: {"p": ..., "strength": ...}}`` (a mapping or a ConfigDict); names
        left out are off; None: all off.

    Returns:
      The condition transforms with p > 0.

    Raises:
      ConfigError: an unknown condition or field.
      ValueError: p or strength outside [0, 1].
    """
    if settings is None:
        return []
    if hasattr(settings, "to_dict"):
        settings = settings.to_dict()
    unknown = sorted(set(settings) - set(NAMES))
    if unknown:
        raise ConfigError(f"config.augment.conditions: unknown {unknown}; valid: {list(NAMES)}")
    transforms = []
    for condition in CONDITIONS:
        fields = settings.get(condition.name) or {}
        extra = sorted(set(fields) - {"p", "strength"})
        if extra:
            raise ConfigError(
                f"config.augment.conditions.{condition.name}: unknown {extra}; valid: p, strength"
            )
        transform = condition(**fields)
        if transform.p > 0:
            transforms.append(transform)
    return transforms
