"""Per-example transforms (resize and training augmentation) for grain pipelines.

Every transform works on ONE example of the data contract: a dict with ``image``
uint8 [H, W, 3] and ``label`` uint8 [H, W, 1] (or [H, W]) holding class ids and
``IGNORE_LABEL`` (255); other keys pass through untouched. Images stay uint8 end
to end: normalisation to float happens on the accelerator (see
``unet_jax.data.pipeline``).

Geometric transforms move image and label together through the same sampling
grid (PIL ``resize`` with the same ``box``), so they stay aligned. Labels are
always resampled with NEAREST: class ids are never interpolated. Pixels that
padding adds get label ``IGNORE_LABEL``.

Random transforms are ``grain.RandomMapTransform`` subclasses and draw ONLY from
the ``np.random.Generator`` that grain passes to ``random_map``; grain derives it
from the seed and the element's position, so the results do not depend on the
number of worker processes.

PIL does the resampling because it is fast on uint8 data and releases the GIL.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import grain.python as grain
import numpy as np
from PIL import Image

from unet_jax.data import crop_sampling, image_ops, normalisation
from unet_jax.data.augment_defaults import (
    DEFAULT_FOREGROUND_SHARE,
    JITTER,
    default_settings,
)
from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.data.conditions import build_conditions
from unet_jax.data.image_files import DTYPES
from unet_jax.errors import ConfigError

# ITU-R BT.601 luma weights, the ones PIL's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114])
# RGB -> YIQ; a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)

INPUT_MODES = ("resize", "crop")
# What an example's image may hold: 8-bit RGB, or any bands as the data stores them
# (float32 after a per-band intensity change).
IMAGE_DTYPES = DTYPES
_IMAGE_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "area": Image.Resampling.BOX}


# ----------------------------------------------------------------------------
# Helpers on single arrays.
# ----------------------------------------------------------------------------


def check_example(example: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Checks one data-contract example and returns its arrays.

    Args:
      example: dict with ``image`` uint8 [H, W, 3] and ``label`` uint8 [H, W, 1]
        or [H, W]; ``name`` (optional) is used in error messages.

    Returns:
      (image uint8 [H, W, 3], label uint8 [H, W]).

    Raises:
      KeyError: if image or label is missing.
      ValueError: on wrong dtypes or shapes, naming the example.
    """
    name = example.get("name", "<unnamed example>")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    try:
        image, label = example["image"], example["label"]
    except KeyError as e:
        raise KeyError(f"Example {name!r} has no {e.args[0]!r} feature.") from None
    image, label = np.asarray(image), np.asarray(label)
    if image.dtype.name not in IMAGE_DTYPES or image.ndim != 3:
        raise ValueError(
            f"Example {name!r}: image must be [H, W, C] of {IMAGE_DTYPES}, got {image.dtype} "
            f"{image.shape}."
        )
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if label.dtype != np.uint8 or label.shape != image.shape[:2]:
        raise ValueError(
            f"Example {name!r}: label must be uint8 [H, W] or [H, W, 1] matching the image's "
            f"{image.shape[:2]}, got {label.dtype} {label.shape}."
        )
    return image, label


def _with(example: Mapping[str, Any], image: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """Returns a copy of ``example`` with new image/label, keeping the label's rank."""
    out = dict(example)
    out["image"] = image
    out["label"] = label[..., None] if np.ndim(example["label"]) == 3 else label
    return out


def _check_method(method: str) -> None:
    if method not in _IMAGE_RESAMPLE:
        raise ValueError(
            f"Unknown image resize method {method!r}; use one of {list(_IMAGE_RESAMPLE)}."
        )


def _check_size(height: int, width: int) -> None:
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"Output size must be positive, got height={height}, width={width}.")


def resize_pair(
    image: np.ndarray,
    label: np.ndarray,
    *,
    height: int,
    width: int,
    box: tuple[float, float, float, float] | None = None,
    method: str = "bilinear",
) -> tuple[np.ndarray, np.ndarray]:
    """Resamples a region of an image and its label map onto a ``height x width`` grid.

    Both go through PIL ``resize`` with the same ``box``, so output pixel (y, x)
    of the image and of the label look at the same source location.

    Args:
      image: uint8 [H, W, 3].
      label: uint8 [H, W] class ids.
      height: output height.
      width: output width.
      box: source region (left, upper, right, lower) in pixel coordinates
        (floats allowed); None means the whole image.
      method: image filter, "bilinear" (PIL's, antialiased when shrinking) or
        "area" (box filter = exact area averaging).

    Returns:
      (image uint8 [height, width, 3], label uint8 [height, width]); the label is
      resampled with NEAREST.
    """
    _check_method(method)
    if box is None:
        box = (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
    new_image = image_ops.resize(image, height=height, width=width, method=method, box=box)
    new_label = image_ops.resize(label, height=height, width=width, method="nearest", box=box)
    return new_image, new_label


def adjust_color(
    image: np.ndarray,
    *,
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hue: float = 0.0,
) -> np.ndarray:
    """Applies brightness, contrast, saturation and hue changes (in that order).

    Definitions (x is an RGB pixel in 0..255):
      brightness b: x -> b * x.
      contrast c: x -> c * x + (1 - c) * m, m = mean luma of the whole image
        (after the brightness change).
      saturation s: x -> s * x + (1 - s) * luma(x).
      hue h: rotation of the YIQ chroma plane by 2*pi*h (h in turns; luma kept).
    All four are affine in x, so they compose into ONE 3x4 matrix that PIL applies
    in C (uint8 in, rounded and clipped uint8 out): no float copy of the image.
    Clipping happens once at the end (not after every step).

    Args:
      image: uint8 [H, W, 3].
      brightness: brightness factor (1 = unchanged).
      contrast: contrast factor (1 = unchanged, 0 = uniform mean grey).
      saturation: saturation factor (1 = unchanged, 0 = greyscale).
      hue: hue rotation in turns (0 = unchanged, 1 = full turn).

    Returns:
      uint8 [H, W, 3].
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"adjust_color needs a uint8 [H, W, 3] image, got {image.dtype} {image.shape}."
        )
    if brightness == 1.0 and contrast == 1.0 and saturation == 1.0 and hue == 0.0:
        return image
    pil = Image.fromarray(np.ascontiguousarray(image))
    # Luma mean after the brightness change, for the contrast step. PIL's
    # 3 x 256-bin histogram gives exact channel means far faster than numpy.
    hist = np.asarray(pil.histogram(), np.float64).reshape(3, 256)
    channel_means = hist @ np.arange(256.0) / hist[0].sum()
    mean_luma = brightness * float(channel_means @ _LUMA)
    sat = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), _LUMA)
    theta = 2.0 * math.pi * hue
    rot = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, math.cos(theta), -math.sin(theta)],
            [0.0, math.sin(theta), math.cos(theta)],
        ]
    )
    hue_mat = _YIQ_TO_RGB @ rot @ _RGB_TO_YIQ
    linear = hue_mat @ sat * (contrast * brightness)
    # sat and hue_mat map the grey vector (1, 1, 1) to itself, so the contrast
    # offset passes through them unchanged.
    offset = np.full(3, (1.0 - contrast) * mean_luma)
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    return np.asarray(pil.convert("RGB", matrix=tuple(float(v) for v in matrix.ravel())))


# ----------------------------------------------------------------------------
# grain transforms.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Resize(grain.MapTransform):
    """Resizes image (bilinear/area) and label (NEAREST) to ``height x width``.

    Examples already of that size pass through unchanged (no copy).

    Attributes:
      height: output height.
      width: output width.
      method: image filter, "bilinear" or "area" (see ``resize_pair``).
    """

    height: int
    width: int
    method: str = "bilinear"

    def __post_init__(self):
        _check_size(self.height, self.width)
        _check_method(self.method)

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        """Returns the resized example."""
        image, label = check_example(element)
        if image.shape[:2] == (self.height, self.width):
            return element
        image, label = resize_pair(
            image, label, height=self.height, width=self.width, method=self.method
        )
        return _with(element, image, label)


@dataclasses.dataclass(frozen=True)
class RandomHorizontalFlip(grain.RandomMapTransform):
    """Mirrors image and label left-right with probability ``p``.

    Attributes:
      p: flip probability in [0, 1].
    """

    p: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {self.p}.")

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Returns the example, flipped with probability p."""
        image, label = check_example(element)
        if rng.random() >= self.p:
            return element
        # Contiguous copies: later steps (PIL, shared memory) want them.
        return _with(
            element, np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(label[:, ::-1])
        )


@dataclasses.dataclass(frozen=True)
class RandomScaleCrop(grain.RandomMapTransform):
    """Random rescale, then random crop (or pad) to a fixed ``height x width``.

    A factor s ~ U[min_scale, max_scale] is drawn and the example is conceptually
    resized to (round(height * s), round(width * s)); i.e. the scale is relative
    to the OUTPUT size, whatever the input size (s = 1 on any input equals
    ``Resize(height, width)``). With ``relative_to="input"`` it is resized to
    (round(H * s), round(W * s)) instead: s = 1 crops the image at its native scale
    (``input_mode="crop"``). Along each axis, a larger scaled image is cropped
    at a random offset, a smaller one is pasted at a random offset onto a canvas
    filled with ``image_pad_value`` (image) and ``IGNORE_LABEL`` (label).

    Only the crop region is resampled (PIL ``resize`` with a source ``box``), so
    large scale factors cost no more than small ones.

    With ``foreground_share`` > 0, that share of the crops (drawn per example) is centred
    on a pixel of one of ``foreground_classes`` present in the label (``crop_sampling``),
    kept inside the image; an example without such a class gets a random crop.

    Attributes:
      min_scale: smallest scale factor (> 0).
      max_scale: largest scale factor (>= min_scale).
      height: output height.
      width: output width.
      image_pad_value: image value for padded pixels (0..255).
      method: image filter, "bilinear" or "area".
      relative_to: "output" (scale relative to the output size) or "input" (to the
        image's own size).
      foreground_share: share of crops centred on a chosen class, in [0, 1].
      foreground_classes: class ids to centre on (None: every class but the first).
    """

    min_scale: float
    max_scale: float
    height: int
    width: int
    image_pad_value: int = 0
    method: str = "bilinear"
    relative_to: str = "output"
    foreground_share: float = DEFAULT_FOREGROUND_SHARE
    foreground_classes: tuple[int, ...] | None = None

    def __post_init__(self):
        object.__setattr__(
            self,
            "foreground_classes",
            crop_sampling.check_settings(self.foreground_share, self.foreground_classes),
        )
        if not 0.0 < self.min_scale <= self.max_scale:
            raise ValueError(
                "RandomScaleCrop needs 0 < min_scale <= max_scale, got "
                f"min_scale={self.min_scale}, max_scale={self.max_scale}."
            )
        _check_size(self.height, self.width)
        _check_method(self.method)
        if not 0 <= int(self.image_pad_value) <= 255:
            raise ValueError(f"image_pad_value must be in 0..255, got {self.image_pad_value}.")
        if self.relative_to not in ("output", "input"):
            raise ValueError(f"relative_to must be 'output' or 'input', got {self.relative_to!r}.")

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Returns the rescaled and cropped/padded example."""
        image, label = check_example(element)
        in_h, in_w = image.shape[:2]
        scale = rng.uniform(self.min_scale, self.max_scale)
        # Size of the (virtual) rescaled image.
        base_h, base_w = (in_h, in_w) if self.relative_to == "input" else (self.height, self.width)
        scaled_h = max(1, round(base_h * scale))
        scaled_w = max(1, round(base_w * scale))
        # Per axis: region kept from the scaled image (src offset, length) and
        # where it lands in the output (dst offset).
        crop_h, crop_w = min(scaled_h, self.height), min(scaled_w, self.width)
        src_y = int(rng.integers(0, scaled_h - crop_h + 1))
        src_x = int(rng.integers(0, scaled_w - crop_w + 1))
        dst_y = int(rng.integers(0, self.height - crop_h + 1))
        dst_x = int(rng.integers(0, self.width - crop_w + 1))
        # Drawn only when on, so runs without it keep their random stream.
        if self.foreground_share > 0 and rng.random() < self.foreground_share:
            pixel = crop_sampling.chosen_pixel(label, classes=self.foreground_classes, rng=rng)
            if pixel is not None:
                y, x = pixel
                src_y = crop_sampling.centred_offset(
                    (y + 0.5) * scaled_h / in_h, crop=crop_h, extent=scaled_h
                )
                src_x = crop_sampling.centred_offset(
                    (x + 0.5) * scaled_w / in_w, crop=crop_w, extent=scaled_w
                )
        # The crop region in input pixel coordinates.
        sy, sx = in_h / scaled_h, in_w / scaled_w
        box = (src_x * sx, src_y * sy, (src_x + crop_w) * sx, (src_y + crop_h) * sy)
        crop_image, crop_label = resize_pair(
            image, label, height=crop_h, width=crop_w, box=box, method=self.method
        )
        if (crop_h, crop_w) == (self.height, self.width):
            return _with(element, crop_image, crop_label)
        out_image = np.full(
            (self.height, self.width, image.shape[-1]), self.image_pad_value, image.dtype
        )
        out_label = np.full((self.height, self.width), IGNORE_LABEL, np.uint8)
        out_image[dst_y : dst_y + crop_h, dst_x : dst_x + crop_w] = crop_image
        out_label[dst_y : dst_y + crop_h, dst_x : dst_x + crop_w] = crop_label
        return _with(element, out_image, out_label)


@dataclasses.dataclass(frozen=True)
class RandomRot90(grain.RandomMapTransform):
    """Rotates image and label by k * 90 degrees, k uniform in 0..3 (0 or 2 if not square).

    For data without an "up", such as aerial images.
    """

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Returns the rotated example."""
        image, label = check_example(element)
        square = image.shape[0] == image.shape[1]
        k = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
        if k == 0:
            return element
        return _with(
            element,
            np.ascontiguousarray(np.rot90(image, k)),
            np.ascontiguousarray(np.rot90(label, k)),
        )


@dataclasses.dataclass(frozen=True)
class PhotometricJitter(grain.RandomMapTransform):
    """Random brightness, contrast, saturation and hue changes of the image only.

    Factors are drawn as brightness ~ U[max(0, 1 - brightness), 1 + brightness]
    (likewise contrast and saturation) and hue ~ U[-hue, hue] turns, in that
    order, then applied by ``adjust_color``. A strength of 0 disables that part.

    Attributes:
      brightness: brightness strength (>= 0).
      contrast: contrast strength (>= 0).
      saturation: saturation strength (>= 0).
      hue: hue strength in turns, in [0, 0.5].
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self):
        for field in ("brightness", "contrast", "saturation"):
            if getattr(self, field) < 0:
                raise ValueError(
                    f"PhotometricJitter: {field} must be >= 0, got {getattr(self, field)}."
                )
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"PhotometricJitter: hue must be in [0, 0.5], got {self.hue}.")

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Returns the example with a colour-jittered image (label untouched)."""
        image, _ = check_example(element)
        if image.dtype != np.uint8 or image.shape[-1] != 3:
            raise ValueError("PhotometricJitter needs 8-bit RGB; use BandIntensityJitter")

        def factor(strength: float) -> float:
            return float(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))

        # Always draw all four numbers so the stream layout is fixed.
        b, c, s = factor(self.brightness), factor(self.contrast), factor(self.saturation)
        h = float(rng.uniform(-self.hue, self.hue))
        out = dict(element)
        out["image"] = adjust_color(image, brightness=b, contrast=c, saturation=s, hue=h)
        return out


@dataclasses.dataclass(frozen=True)
class BandIntensityJitter(grain.RandomMapTransform):
    """Per-band brightness, contrast, gamma and noise on normalised values (images that
    are not 8-bit RGB).

    Each band is normalised as the model does (``normalisation.normalise``: clipped, then
    z-scored with the training split's statistics), changed, and mapped back to the data's
    units as float32, so the model's own normalisation sees the changed values. Per band,
    in this order (y: normalised values):
      brightness b: y + u, u ~ U[-b, b] (standard deviations of the band);
      contrast c: m + f (y - m), f ~ U[1 - c, 1 + c], m the band's mean in this image;
      gamma g: ``lo + (hi - lo) ((y - lo) / (hi - lo)) ** e``, e ~ U[1 - g, 1 + g], lo and
        hi the band's extremes in this image;
      noise n: y + N(0, s^2) per pixel, s ~ U[0, n].
    The model clips to the training percentiles again, as nnU-Net's contrast transform
    keeps the value range. A strength of 0 disables that part.

    Attributes:
      stats: the run's ``config.model.input_stats``.
      brightness, contrast, gamma, noise: strengths (>= 0; gamma < 1).
    """

    stats: Mapping[str, Any]
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    noise: float = 0.0

    def __post_init__(self):
        for field in ("brightness", "contrast", "gamma", "noise"):
            if getattr(self, field) < 0:
                raise ValueError(f"augment.{field} must be >= 0, got {getattr(self, field)}")
        if self.gamma >= 1:
            raise ValueError(f"augment.gamma must be < 1, got {self.gamma}")

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Returns the example with changed band intensities (label untouched)."""
        image, _ = check_example(element)
        y = normalisation.normalise(image, self.stats)
        for band in range(y.shape[-1]):
            # Always draw the same numbers, so the stream layout is fixed.
            shift = rng.uniform(-self.brightness, self.brightness)
            factor = rng.uniform(1 - self.contrast, 1 + self.contrast)
            exponent = rng.uniform(1 - self.gamma, 1 + self.gamma)
            sigma = rng.uniform(0.0, self.noise)
            v = y[..., band] + np.float32(shift)
            v = v.mean() + np.float32(factor) * (v - v.mean())
            lo, hi = v.min(), v.max()
            if self.gamma > 0 and hi > lo:
                v = lo + (hi - lo) * ((v - lo) / (hi - lo)) ** np.float32(exponent)
            if self.noise > 0:
                v = v + rng.normal(0.0, sigma, v.shape).astype(np.float32)
            y[..., band] = v
        out = dict(element)
        out["image"] = normalisation.denormalise(y, self.stats)
        return out


# ----------------------------------------------------------------------------
# Configuration.
# ----------------------------------------------------------------------------


def check_for_images(augment: Mapping[str, Any], *, rgb: bool) -> None:
    """Refuses transforms that do not fit the images: colour (saturation, hue and the
    conditions) on images that are not 8-bit RGB, per-band gamma and noise on 8-bit RGB.

    Args:
      augment: ``config.augment``.
      rgb: whether the images are 8-bit RGB.

    Raises:
      ConfigError: naming the field and the images.
    """
    if rgb:
        for field in ("gamma", "noise"):
            if augment.get(field):
                raise ConfigError(
                    f"config.augment.{field} is for images that are not 8-bit RGB (per band); "
                    "8-bit RGB has brightness, contrast and the conditions"
                )
        return
    for field, top in (("gamma", 1.0), ("noise", math.inf)):
        if not 0 <= (augment.get(field) or 0) < top:
            raise ConfigError(f"config.augment.{field}={augment.get(field)}: must be in [0, {top})")
    for field in ("saturation", "hue"):
        if augment.get(field):
            raise ConfigError(
                f"config.augment.{field}={augment.get(field)}: colour jitter needs 8-bit RGB "
                f"images; set --config.augment.{field}=0 (brightness, contrast, gamma and "
                "noise work per band)"
            )
    for name, setting in dict(augment.get("conditions") or {}).items():
        if dict(setting).get("p"):
            raise ConfigError(
                f"config.augment.conditions.{name}.p={dict(setting)['p']}: the condition "
                "transforms need 8-bit RGB images; set it to 0"
            )


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings.

    Attributes:
      enabled: master switch; False gives a plain resize to the output size.
      flip_prob: horizontal flip probability (0 disables flipping).
      min_scale: smallest random scale factor (relative to the output size).
      max_scale: largest random scale factor; min_scale = max_scale = 1 disables
        scale augmentation (plain resize).
      brightness: brightness jitter strength (0 disables).
      contrast: contrast jitter strength (0 disables).
      saturation: saturation jitter strength (0 disables).
      hue: hue jitter strength in turns (0 disables).
      image_pad_value: image value of pixels added by padding (labels get 255).
      resize_method: image filter, "bilinear" or "area".
      rot90: random rotations by multiples of 90 degrees.
      input_mode: "resize" (whole images resized to the output size; scale relative to
        it) or "crop" (random crops of the output size at the image's native scale,
        scale jitter relative to the image; padded with the ignore label when smaller).
        Crops are taken with augmentation off too.
      conditions: condition augmentation (``unet_jax.data.conditions``): ``{name: {"p",
        "strength"}}``; conditions left out, or with p = 0, are off (None: all off).
      foreground_share: share of the crops centred on a pixel of a chosen class present
        in the example (nnU-Net's foreground oversampling; 0: all crops random). Applies
        wherever crops are taken (``input_mode="crop"``, or scales above 1), augmentation
        on or off.
      foreground_classes: class ids the centred crops aim at (None: every class but 0).
      gamma, noise: per-band gamma and noise strengths (`BandIntensityJitter`; images
        that are not 8-bit RGB).
      band_stats: the run's ``config.model.input_stats`` for images that are not 8-bit
        RGB (brightness and contrast then work per band on normalised values); None for
        8-bit RGB.
    """

    enabled: bool = True
    flip_prob: float = JITTER["flip_prob"]
    min_scale: float = JITTER["min_scale"]
    max_scale: float = JITTER["max_scale"]
    brightness: float = JITTER["brightness"]
    contrast: float = JITTER["contrast"]
    saturation: float = JITTER["saturation"]
    hue: float = JITTER["hue"]
    image_pad_value: int = 0
    resize_method: str = "bilinear"
    rot90: bool = JITTER["rot90"]
    input_mode: str = "resize"
    conditions: Mapping[str, Any] | None = dataclasses.field(default_factory=default_settings)
    foreground_share: float = DEFAULT_FOREGROUND_SHARE
    foreground_classes: tuple[int, ...] | None = None
    gamma: float = JITTER["gamma"]
    noise: float = JITTER["noise"]
    band_stats: Mapping[str, Any] | None = None

    def __post_init__(self):
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {self.input_mode!r}.")
        crop_sampling.check_settings(self.foreground_share, self.foreground_classes)

    @classmethod
    def from_any(cls, value: AugmentConfig | Mapping[str, Any] | bool | None) -> AugmentConfig:
        """Builds a config from a config, a mapping / ConfigDict, a bool or None.

        Args:
          value: an ``AugmentConfig``; a mapping or ``ml_collections.ConfigDict``
            with a subset of the field names; True or None (defaults); False
            (augmentation off).

        Returns:
          The ``AugmentConfig``.
        """
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, cls):
            return value
        if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
            value = value.to_dict()
        if not isinstance(value, Mapping):
            raise TypeError(
                f"augment must be an AugmentConfig, a mapping, a ConfigDict or a bool, got "
                f"{type(value).__name__}."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        # An unset field (None, e.g. saturation before the data decided) takes the default.
        value = {k: v for k, v in dict(value).items() if v is not None}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"Unknown augmentation settings {unknown}; valid: {sorted(names)}.")
        return cls(**dict(value))


def build_train_transforms(
    *,
    height: int,
    width: int,
    augment: AugmentConfig | Mapping[str, Any] | bool | None = None,
) -> list[grain.MapTransform | grain.RandomMapTransform]:
    """Returns the per-example training transforms for a ``height x width`` output.

    Order: scale-crop (or plain resize; with ``input_mode="crop"`` a random crop), flip,
    90-degree rotation, photometric jitter, then the conditions with p > 0; parts whose
    strength is zero are left out.

    Args:
      height: output height.
      width: output width.
      augment: anything ``AugmentConfig.from_any`` accepts.

    Returns:
      A list of grain transforms, each working on one example.
    """
    cfg = AugmentConfig.from_any(augment)
    conditions = build_conditions(cfg.conditions)  # checked even when augmentation is off
    crop = cfg.input_mode == "crop"
    sampling = {
        "foreground_share": cfg.foreground_share,
        "foreground_classes": cfg.foreground_classes,
    }
    if not cfg.enabled:
        if crop:
            return [RandomScaleCrop(1.0, 1.0, height, width, relative_to="input", **sampling)]
        return [Resize(height, width, method=cfg.resize_method)]
    transforms: list[grain.MapTransform | grain.RandomMapTransform] = []
    if cfg.min_scale == cfg.max_scale == 1.0 and not crop:
        transforms.append(Resize(height, width, method=cfg.resize_method))
    else:
        transforms.append(
            RandomScaleCrop(
                cfg.min_scale,
                cfg.max_scale,
                height,
                width,
                image_pad_value=cfg.image_pad_value,
                method=cfg.resize_method,
                relative_to="input" if crop else "output",
                **sampling,
            )
        )
    if cfg.flip_prob > 0:
        transforms.append(RandomHorizontalFlip(cfg.flip_prob))
    if cfg.rot90:
        transforms.append(RandomRot90())
    if cfg.band_stats is not None:
        if any((cfg.brightness, cfg.contrast, cfg.gamma, cfg.noise)):
            transforms.append(
                BandIntensityJitter(
                    dict(cfg.band_stats), cfg.brightness, cfg.contrast, cfg.gamma, cfg.noise
                )
            )
        return transforms
    if any((cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)):
        transforms.append(PhotometricJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue))
    return transforms + conditions
