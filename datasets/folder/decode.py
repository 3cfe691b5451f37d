"""Reading and checking the files of a folder data set: images and masks.

Images: read as stored by `unet_jax.data.image_files` (8-bit grey or RGB, 16-bit grey,
multi-band TIFF, .npy), pixels as stored (EXIF orientation is not applied: masks carry
none). Masks: lossless
files (PNG, BMP, TIFF), the same size as their image, decoded by `MaskRule`.
"""

from __future__ import annotations

import io
import pathlib
import warnings

import numpy as np
from PIL import Image

from datasets.common.errors import DataError
from datasets.folder.classes_file import MaskRule
from unet_jax.data import image_files
from unet_jax.data.classes import IGNORE_LABEL

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 16384 * 16384  # decompression-bomb guard


def _open(path: pathlib.Path, *, what: str) -> Image.Image:
    """Opens and fully decodes a file; a truncated or unreadable one is a `DataError`."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise DataError(
                    f"{path}: {image.width}x{image.height} has more than {MAX_PIXELS} pixels"
                )
            image.load()
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: not a readable {what} file, or truncated ({e})") from None
    return image


def read_image(path: pathlib.Path) -> np.ndarray:
    """[H, W, C] of an image file as stored, by the rules of `unet_jax.data.image_files`
    (predict's), pixels as stored: masks carry no EXIF orientation.

    Args:
      path: the file (anything with ``read_bytes()`` whose ``str()`` names it).

    Raises:
      DataError: unreadable, truncated, another dtype, NaN or infinity, or with
        transparent pixels.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the image ({e.strerror or e})") from None
    try:
        return image_files.decode_image(data, name=str(path), exif_transpose=False)
    except image_files.ImageFileError as e:
        raise DataError(str(e)) from None


def _hex(rgb: int) -> str:
    return f"#{rgb:06X}"


def read_mask_values(path: pathlib.Path) -> np.ndarray:
    """The raw single-channel values of an id or binary mask, uint8 [H, W].

    Palette PNGs give their palette indices; RGB masks are accepted when grey (R=G=B).

    Raises:
      DataError: unreadable, 16-bit, or a coloured RGB mask.
    """
    image = _open(path, what="mask")
    if image.mode in ("L", "P"):
        return np.asarray(image)
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image)[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return np.ascontiguousarray(rgb[..., 0])
        raise DataError(
            f"{path}: an RGB mask with colours, but no classes.json declares colours; add "
            "classes.json with a colour per class (docs/YOUR_DATA.md)"
        )
    raise DataError(f"{path}: mask mode {image.mode} is not supported; save an 8-bit PNG")


def read_mask_colors(path: pathlib.Path) -> np.ndarray:
    """Colours of a colour mask packed as int32 ``R<<16 | G<<8 | B``, [H, W].

    Palette and greyscale masks are converted to RGB first.
    """
    image = _open(path, what="mask")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise DataError(f"{path}: {image.mode} masks are not supported; save an 8-bit RGB PNG")
    rgb = np.asarray(image.convert("RGB")).astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def decode_mask(path: pathlib.Path, rule: MaskRule) -> np.ndarray:
    """Class ids uint8 [H, W] (``IGNORE_LABEL`` for ignored pixels) of a mask file.

    Raises:
      DataError: a colour the rule does not declare (its hex code and pixel count), an id
        at or above the number of classes, a non-binary value in a binary mask.
    """
    num_classes = rule.classes.num_classes
    if rule.mode == "color":
        packed = read_mask_colors(path)
        values, inverse = np.unique(packed, return_inverse=True)
        known = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(rule.classes.colors)}
        known.update({(r << 16) | (g << 8) | b: IGNORE_LABEL for r, g, b in rule.ignore_colors})
        unknown = [v for v in values.tolist() if v not in known]
        if unknown:
            counts = {v: int((packed == v).sum()) for v in unknown[:5]}
            listed = ", ".join(f"{_hex(v)} ({n} px)" for v, n in counts.items())
            raise DataError(
                f"{path}: colour(s) not declared in classes.json: {listed}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                + "; add them as classes or to 'ignore'"
            )
        lut = np.array([known[v] for v in values.tolist()], np.uint8)
        return lut[inverse.reshape(packed.shape)]
    values = read_mask_values(path)
    if rule.mode == "binary":
        present = set(np.unique(values).tolist())
        if not present <= {0, 1, 255}:
            bad = sorted(present - {0, 1, 255})[:5]
            raise DataError(f"{path}: values {bad} in a binary mask (only 0 and 255, or 0 and 1)")
        return (values > 0).astype(np.uint8)
    ignored = np.isin(values, rule.ignore_ids)
    bad = ~ignored & (values >= num_classes)
    if bad.any():
        first = int(values[bad].min())
        raise DataError(
            f"{path}: class id {first} ({int((values == first).sum())} px) is at or above the "
            f"number of classes ({num_classes}: {', '.join(rule.classes.names)}); declare more "
            "classes or list the value under 'ignore' in classes.json"
        )
    return np.where(ignored, IGNORE_LABEL, values).astype(np.uint8)
