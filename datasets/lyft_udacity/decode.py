"""Decoding and validation of one image/label pair (numpy, Pillow and scipy only).

Everything a frame goes through between the raw PNG bytes of the archive and the
PNG bytes handed to TFDS lives here, so that it can be tested (and fuzzed)
without TFDS:

1. `read_png_header` walks the PNG chunks (signature, IHDR first, every CRC,
   IEND) and rejects oversized images before anything is decompressed.
2. `decode_png` decodes an 8-bit RGB PNG (or an RGBA one whose alpha is fully
   opaque); everything else is rejected with a `DataError` naming the file.
3. The class id is the RED channel of the label PNG (`decode_png(kind="label")`).
4. `map_high_ids` applies the rule for ids > 12, `hood_mask` finds the ego
   car's hood, `resize_pair` resizes (image: area, label: nearest) and
   `encode_png` encodes the result for TFDS.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from datasets.lyft_udacity.classes import CLASS_NAMES, NUM_CLASSES
from datasets.lyft_udacity.errors import DataError
from unet_jax.data.augment import resize_pair
from unet_jax.data.class_stats import label_counts
from unet_jax.data.classes import IGNORE_LABEL

# Decompression-bomb guard, checked on the PNG header before any decoding.
# A real frame is 800 x 600 = 0.48 Mpx; 4096 x 4096 leaves room for larger
# CARLA exports while capping a decoded RGB frame at 48 MiB.
MAX_PIXELS = 4096 * 4096
# Largest PNG file (or archive member) read into memory; a real frame is ~0.5 MiB.
MAX_FILE_BYTES = 64 * 1024 * 1024

VEHICLES_ID = CLASS_NAMES.index("Vehicles")
# The hood is searched for in the bottom 20% of the rows: at 600 rows it
# starts at row 498 (measured on the real samples), the band starts at row 480.
HOOD_BAND_FRACTION = 0.8

HighIdRule = Literal["ignore", "error"]
HoodRule = Literal["keep", "ignore", "none"]
HIGH_ID_RULES: tuple[str, ...] = ("ignore", "error")
HOOD_RULES: tuple[str, ...] = ("keep", "ignore", "none")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
_RGB, _RGBA = 2, 6


@dataclasses.dataclass(frozen=True)
class PngHeader:
    """The IHDR fields of a PNG that decide whether it is accepted."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def description(self) -> str:
        """Human-readable format, e.g. ``16-bit RGB``."""
        kind = COLOR_TYPES.get(self.color_type, f"colour type {self.color_type}")
        return f"{self.bit_depth}-bit {kind}"


def read_png_header(data: bytes, *, name: str) -> PngHeader:
    """Checks the chunk structure of a PNG file and returns its header.

    Walks every chunk: the signature, IHDR first, each chunk's length and CRC,
    up to IEND. A truncated or bit-flipped file fails here, before decoding.

    Args:
      data: the bytes of the file.
      name: the file's name, used in error messages.

    Returns:
      The header fields.

    Raises:
      DataError: not a PNG, truncated, corrupt (bad CRC), or zero-sized.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise DataError(f"{name}: not a PNG file (bad signature)")
    view = memoryview(data)
    pos = len(PNG_SIGNATURE)
    header = None
    while True:
        if pos + 8 > len(data):
            raise DataError(f"{name}: truncated PNG (no IEND chunk)")
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = bytes(view[pos + 4 : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise DataError(
                f"{name}: truncated PNG (chunk {ctype!r} at byte {pos} runs past the end)"
            )
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != crc:
            raise DataError(f"{name}: corrupt PNG (CRC mismatch in chunk {ctype!r} at byte {pos})")
        if header is None:
            if ctype != b"IHDR" or length != 13:
                raise DataError(f"{name}: corrupt PNG (first chunk is not IHDR)")
            width, height, bit_depth, color_type = struct.unpack_from(">IIBB", data, pos + 8)
            if width == 0 or height == 0:
                raise DataError(f"{name}: empty image ({width}x{height})")
            header = PngHeader(width, height, bit_depth, color_type)
        if ctype == b"IEND":
            return header
        pos = end


def decode_png(data: bytes, *, name: str, kind: Literal["image", "label"]) -> np.ndarray:
    """Validates and decodes one PNG of the data set.

    Accepted: 8-bit RGB, and 8-bit RGBA whose alpha is 255 everywhere (alpha
    dropped: CARLA 0.9 saves BGRA buffers). Rejected with `DataError`:
    greyscale (a greyscale label has lost its ids), palette, 16-bit,
    transparent RGBA, more than `MAX_PIXELS` pixels, corrupt or truncated files.

    Args:
      data: the PNG file's bytes.
      name: the file's name, used in error messages.
      kind: ``"image"`` returns the RGB image, ``"label"`` the class ids, i.e.
        the RED channel (green and blue are ignored).

    Returns:
      uint8 array [H, W, 3] for an image, [H, W] for a label.

    Raises:
      DataError: the file is not an acceptable PNG; the message names it.
    """
    return _decode(data, name=name, kind=kind)[0]


def _decode(data: bytes, *, name: str, kind: str) -> tuple[np.ndarray, PngHeader]:
    """`decode_png`, also returning the header."""
    header = read_png_header(data, name=name)
    if header.width * header.height > MAX_PIXELS:
        raise DataError(
            f"{name}: {header.width}x{header.height} image has more than {MAX_PIXELS} pixels "
            "(decompression-bomb guard)"
        )
    if header.bit_depth != 8 or header.color_type not in (_RGB, _RGBA):
        hint = ""
        if kind == "label" and header.color_type in (0, 4):
            hint = (
                "; class ids must be in the red channel of an RGB label PNG "
                "(a greyscale conversion destroys them)"
            )
        raise DataError(f"{name}: {header.description} PNG, expected 8-bit RGB{hint}")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as pil:
            pil.load()
            mode = pil.mode
            array = np.asarray(pil)
    except Exception as e:  # noqa: BLE001 - any decoder failure means a corrupt file
        raise DataError(f"{name}: corrupt PNG ({type(e).__name__}: {e})") from e
    channels = 3 if header.color_type == _RGB else 4
    if (
        mode not in ("RGB", "RGBA")
        or array.dtype != np.uint8
        or array.shape != (header.height, header.width, channels)
    ):
        raise DataError(f"{name}: corrupt PNG (decoded {mode} {array.shape}, header disagrees)")
    if channels == 4:
        if not (array[..., 3] == 255).all():
            raise DataError(f"{name}: RGBA PNG with transparent pixels, expected 8-bit RGB")
        array = array[..., :3]
    if kind == "label":
        return np.ascontiguousarray(array[..., 0]), header
    return np.ascontiguousarray(array), header


def map_high_ids(label: np.ndarray, *, rule: HighIdRule, name: str) -> np.ndarray:
    """Applies the rule for class ids above 12 (CARLA 0.9 exports use up to 22).

    Args:
      label: uint8 class ids [H, W].
      rule: ``"ignore"`` maps every id > 12 to `IGNORE_LABEL` (255);
        ``"error"`` raises `DataError`.
      name: the label file's name, used in error messages.

    Returns:
      The label with ids 0..12 and 255 only (a copy when anything changed).

    Raises:
      DataError: ``rule="error"`` and the label holds ids > 12.
      ValueError: unknown rule.
    """
    if rule not in HIGH_ID_RULES:
        raise ValueError(f"unknown high-id rule {rule!r}; choose from {HIGH_ID_RULES}")
    high = label >= NUM_CLASSES
    if not high.any():
        return label
    if rule == "error":
        ids = sorted(int(i) for i in np.unique(label[high]))
        raise DataError(f"{name}: class ids {ids} above {NUM_CLASSES - 1} (high_ids='error')")
    return np.where(high, np.uint8(IGNORE_LABEL), label)


def hood_mask(label: np.ndarray) -> np.ndarray:
    """Finds the ego car's hood: Vehicles pixels of the bottom band tied to the bottom edge.

    The hood is the Vehicles (id 10) region at the bottom of every real frame
    (rows 498..599 of 600). It is found as the Vehicles pixels within the bottom
    `HOOD_BAND_FRACTION` band that are 4-connected, inside the band, to a
    Vehicles pixel of the last row. A car in front that touches the hood is
    included only as far as it reaches into the band.

    Args:
      label: class ids [H, W].

    Returns:
      bool [H, W], True on the hood.
    """
    top = int(label.shape[0] * HOOD_BAND_FRACTION)
    vehicles = label[top:] == VEHICLES_ID
    seed = np.zeros_like(vehicles)
    seed[-1] = vehicles[-1]
    mask = np.zeros(label.shape, dtype=bool)
    if seed.any():
        mask[top:] = ndimage.binary_propagation(seed, mask=vehicles)
    return mask


def apply_hood_rule(label: np.ndarray, rule: HoodRule) -> np.ndarray:
    """Keeps the hood as Vehicles (``"keep"``), ignored (``"ignore"``) or None (``"none"``).

    ``"none"`` teaches a model that the hood is no car (an ignored hood leaves it free to
    call any dark band at the bottom Vehicles); the challenge does not score the hood.

    Args:
      label: class ids [H, W].
      rule: ``"keep"``, ``"ignore"`` or ``"none"``.

    Returns:
      The label, with the hood set to `IGNORE_LABEL` for ``"ignore"``, to 0 for ``"none"``.

    Raises:
      ValueError: unknown rule.
    """
    if rule not in HOOD_RULES:
        raise ValueError(f"unknown hood rule {rule!r}; choose from {HOOD_RULES}")
    if rule == "keep":
        return label
    value = IGNORE_LABEL if rule == "ignore" else CLASS_NAMES.index("None")
    return np.where(hood_mask(label), np.uint8(value), label)


def encode_png(array: np.ndarray, *, compress_level: int = 1) -> bytes:
    """Encodes a uint8 [H, W] (greyscale) or [H, W, 3] (RGB) array as PNG.

    Args:
      array: the pixels.
      compress_level: zlib level; 1 is fast and only slightly larger.

    Returns:
      The PNG file's bytes.
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        buffer, format="PNG", compress_level=compress_level
    )
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class EncodedPair:
    """One validated, processed frame ready for TFDS."""

    image_png: bytes  # RGB PNG
    label_png: bytes  # 1-channel PNG of class ids 0..12 / 255
    label_counts: np.ndarray  # int64 [256]: pixels per label value


def process_pair(
    image_data: bytes,
    label_data: bytes,
    *,
    image_name: str,
    label_name: str,
    high_ids: HighIdRule = "ignore",
    hood: HoodRule = "keep",
    size: tuple[int, int] | None = None,
) -> EncodedPair:
    """Validates, relabels, optionally resizes and encodes one image/label pair.

    Order: decode both, check sizes match, map ids > 12, apply the hood rule
    (at full resolution), resize, encode. Without resizing an RGB image's
    original PNG bytes are kept as they are (they decode to the same pixels).

    Args:
      image_data: PNG bytes of the camera image.
      label_data: PNG bytes of the label (ids in the red channel).
      image_name: the image file's name, for error messages.
      label_name: the label file's name, for error messages.
      high_ids: rule for ids > 12, see `map_high_ids`.
      hood: rule for the ego car's hood, see `apply_hood_rule`.
      size: (height, width) to resize to, or None to keep the stored size.

    Returns:
      The encoded pair.

    Raises:
      DataError: invalid input; the message names the file.
    """
    image, image_header = _decode(image_data, name=image_name, kind="image")
    label = decode_png(label_data, name=label_name, kind="label")
    if label.shape != image.shape[:2]:
        raise DataError(
            f"{label_name}: label is {label.shape[1]}x{label.shape[0]} but its image "
            f"{image_name} is {image.shape[1]}x{image.shape[0]}"
        )
    label = map_high_ids(label, rule=high_ids, name=label_name)
    label = apply_hood_rule(label, hood)
    if size is not None:
        image, label = resize_pair(image, label, height=size[0], width=size[1], method="area")
        image_png = encode_png(image)
    elif image_header.color_type == _RGB:
        image_png = image_data  # already an 8-bit RGB PNG: no need to re-encode
    else:
        image_png = encode_png(image)
    return EncodedPair(
        image_png=image_png, label_png=encode_png(label), label_counts=label_counts(label)
    )
