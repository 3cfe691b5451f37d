"""Reading image files as uint8 RGB, by one set of rules for predict and the data sets.

8-bit RGB is used as it is; greyscale (L, LA, 1-bit) is replicated to RGB; palette images
are expanded to RGB; an alpha channel is dropped when it is fully opaque; EXIF orientation
is applied on request. Rejected with an :class:`ImageFileError` naming the file:
unreadable, truncated or non-image files, images with transparent pixels, 16-bit or
floating-point images (Pillow would silently keep the high byte of a 16-bit PNG; their
scaling to 0..255 is ambiguous: convert them explicitly).
"""

from __future__ import annotations

import io
import pathlib
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unet_jax.errors import UserError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageFileError(UserError, ValueError):
    """An image file that cannot be used; the message names the file."""


def _png_bit_depth(data: bytes) -> int | None:
    """The bit depth in a PNG's IHDR (Pillow silently reduces 16-bit RGB to 8 bits)."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 26 and data[12:16] == b"IHDR":
        return data[24]
    return None


def decode_image(data: bytes, *, name: str, exif_transpose: bool = True) -> np.ndarray:
    """Decodes image bytes to uint8 RGB by the rules of the module docstring.

    Args:
      data: the file's bytes.
      name: the file's name, for error messages.
      exif_transpose: apply the EXIF orientation (a data set's images are used as stored,
        since their masks carry none).

    Returns:
      uint8 [H, W, 3].

    Raises:
      ImageFileError: unreadable, truncated, transparent, 16-bit or floating-point images.
    """
    depth = _png_bit_depth(data)
    if depth is not None and depth > 8:
        raise ImageFileError(
            f"{name}: {depth}-bit PNG; only 8-bit images are accepted (convert it to 8-bit "
            "RGB first, choosing how to scale its values)"
        )
    try:
        with Image.open(io.BytesIO(data)) as pil:
            pil.load()
            bits = getattr(pil, "tag_v2", {}).get(258) if pil.format == "TIFF" else None
            if bits is not None and max(np.atleast_1d(bits)) > 8:
                raise ImageFileError(
                    f"{name}: {max(np.atleast_1d(bits))}-bit TIFF; only 8-bit images"
                )
            if exif_transpose:
                pil = ImageOps.exif_transpose(pil)
            mode = pil.mode
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                raise ImageFileError(
                    f"{name}: {mode} image (16-bit or floating point); only 8-bit images are "
                    "accepted (convert it to 8-bit RGB first, choosing how to scale its values)"
                )
            if mode == "P":
                pil = pil.convert("RGBA")  # a palette may carry transparency
                mode = "RGBA"
            if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
                alpha = np.asarray(pil.getchannel("A"))
                if not (alpha == 255).all():
                    raise ImageFileError(
                        f"{name}: {mode} image with transparent pixels; expected an opaque "
                        "image (flatten it onto a background first)"
                    )
            array = np.asarray(pil.convert("RGB"))
    except ImageFileError:
        raise
    except UnidentifiedImageError as e:
        raise ImageFileError(f"{name}: not an image file (or an unsupported format)") from e
    except Image.DecompressionBombError as e:
        raise ImageFileError(f"{name}: image too large ({e})") from e
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
        raise ImageFileError(
            f"{name}: unreadable or truncated image ({type(e).__name__}: {e})"
        ) from e
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3 or 0 in array.shape:
        raise ImageFileError(f"{name}: decoded to {array.dtype} {array.shape}, expected RGB")
    return np.ascontiguousarray(array)


def read_image(path: str | pathlib.Path) -> np.ndarray:
    """Reads an image file as uint8 RGB [H, W, 3] (see :func:`decode_image`).

    Args:
      path: the file.

    Returns:
      uint8 [H, W, 3].

    Raises:
      ImageFileError: the file cannot be read or is not an acceptable image.
    """
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageFileError(f"{path}: cannot read ({e.strerror or e})") from e
    return decode_image(data, name=str(path))
