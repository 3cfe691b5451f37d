"""Reading image files as they are stored: 8-bit grey or RGB, 16-bit grey, multi-band.

One set of rules for predict, the reuse API and the data sets. Returns [H, W, C] arrays:

- PNG, JPEG, BMP, WebP (Pillow): 8-bit RGB as it is; palette images expanded to RGB;
  greyscale (L, 1-bit) as one uint8 band; an alpha channel dropped when fully opaque;
  16-bit grey PNG as one uint16 band (Pillow would keep only the high byte of a 16-bit
  colour PNG, so that is refused). EXIF orientation is applied on request.
- TIFF (tifffile): any number of bands, uint8, uint16, int16 or float32, stored planar
  or interleaved.
- ``.npy``: an array [H, W] or [H, W, C] of those dtypes.

Rejected with an :class:`ImageFileError` naming the file: unreadable, truncated or
non-image files, images with transparent pixels, other dtypes, float images holding
NaN or infinity.
"""

from __future__ import annotations

import io
import pathlib
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unet_jax import storage
from unet_jax.errors import UserError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NPY_SIGNATURE = b"\x93NUMPY"
# What the model can take, as the data stores it.
DTYPES = ("uint8", "uint16", "int16", "float32")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageFileError(UserError, ValueError):
    """An image file that cannot be used; the message names the file."""


def _png_header(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) in a PNG's IHDR."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 26 and data[12:16] == b"IHDR":
        return data[24], data[25]
    return None


def _checked(array: np.ndarray, *, name: str) -> np.ndarray:
    """``array`` as a contiguous [H, W, C] of an accepted dtype with finite values."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or 0 in array.shape:
        raise ImageFileError(f"{name}: an array of shape {array.shape}; expected [H, W, C]")
    if array.dtype == np.float64:
        raise ImageFileError(f"{name}: float64 values; save them as float32")
    if array.dtype.name not in DTYPES:
        raise ImageFileError(f"{name}: {array.dtype} values; accepted are {', '.join(DTYPES)}")
    if array.dtype == np.float32 and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ImageFileError(f"{name}: {bad} NaN or infinite values; replace them first")
    return np.ascontiguousarray(array)


_PIL_TIFF_MODES = {"I;16S": np.int16, "F": np.float32}


def _decode_tiff_pil(data: bytes, *, name: str, reason: str) -> np.ndarray:
    """A TIFF whose compression tifffile cannot decode alone (LZW, JPEG...), by Pillow."""
    try:
        with Image.open(io.BytesIO(data)) as pil:
            mode = pil.mode
    except (OSError, ValueError) as e:
        raise ImageFileError(
            f"{name}: unreadable TIFF ({reason}; pip install imagecodecs reads it)"
        ) from e
    if mode in _PIL_TIFF_MODES:
        with Image.open(io.BytesIO(data)) as pil:
            return np.asarray(pil).astype(_PIL_TIFF_MODES[mode])
    return _decode_pil(data, name=name, exif_transpose=False)


def _decode_tiff(data: bytes, *, name: str) -> np.ndarray:
    """A TIFF's first image as [H, W, C] (planar files transposed)."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
    except (KeyError, ValueError) as e:
        if "imagecodecs" not in str(e):
            raise
        # A compression (LZW, JPEG, PackBits) that tifffile decodes only with imagecodecs:
        # Pillow reads the common kinds of such files.
        return _decode_tiff_pil(data, name=name, reason=str(e.args[0] if e.args else e))
    if array.ndim == 3 and axes[0] in "CSQI" and axes[-1] not in "CS":
        array = np.moveaxis(array, 0, -1)  # planar: bands first
    if array.ndim != 3 and array.ndim != 2:
        raise ImageFileError(
            f"{name}: a TIFF of shape {array.shape} (axes {axes}); expected one image [H, W, C]"
        )
    return array


def _decode_npy(data: bytes, *, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise ImageFileError(f"{name}: not a plain numpy array ({e})") from e


def _decode_pil(data: bytes, *, name: str, exif_transpose: bool) -> np.ndarray:
    """8-bit grey (one band) or RGB, or 16-bit grey (one uint16 band), by Pillow."""
    header = _png_header(data)
    if header is not None and header[0] > 8 and header[1] != 0:
        raise ImageFileError(
            f"{name}: {header[0]}-bit colour PNG; save it as a TIFF (read as it is) or as 8-bit RGB"
        )
    with Image.open(io.BytesIO(data)) as pil:
        pil.load()
        if exif_transpose:
            pil = ImageOps.exif_transpose(pil)
        mode = pil.mode
        if mode in _SIXTEEN_BIT_MODES or (mode == "I" and header is not None):
            return np.asarray(pil).astype(np.uint16)
        if mode in ("I", "F"):
            raise ImageFileError(f"{name}: {mode} image; save it as a TIFF or .npy to read it")
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
        if mode in ("L", "LA", "La", "1"):
            return np.asarray(pil.convert("L"))
        return np.asarray(pil.convert("RGB"))


def decode_image(data: bytes, *, name: str, exif_transpose: bool = True) -> np.ndarray:
    """Decodes image bytes as stored, by the rules of the module docstring.

    Args:
      data: the file's bytes.
      name: the file's name, for error messages.
      exif_transpose: apply the EXIF orientation (a data set's images are used as stored,
        since their masks carry none).

    Returns:
      [H, W, C]: uint8 with C = 1 (grey) or 3 (RGB) from Pillow's formats; any C and
      dtype of ``DTYPES`` from TIFF and .npy.

    Raises:
      ImageFileError: unreadable, truncated, transparent, another dtype, NaN or infinity.
    """
    try:
        if data.startswith(_NPY_SIGNATURE):
            array = _decode_npy(data, name=name)
        elif data.startswith(_TIFF_SIGNATURES):
            array = _decode_tiff(data, name=name)
        else:
            array = _decode_pil(data, name=name, exif_transpose=exif_transpose)
    except ImageFileError:
        raise
    except UnidentifiedImageError as e:
        raise ImageFileError(f"{name}: not an image file (or an unsupported format)") from e
    except Image.DecompressionBombError as e:
        raise ImageFileError(f"{name}: image too large ({e})") from e
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, KeyError) as e:
        raise ImageFileError(
            f"{name}: unreadable or truncated image ({type(e).__name__}: {e})"
        ) from e
    return _checked(array, name=name)


def read_image(path: str | pathlib.Path, *, exif_transpose: bool = True) -> np.ndarray:
    """Reads an image file as stored, [H, W, C] (see :func:`decode_image`).

    Args:
      path: the file.
      exif_transpose: apply the EXIF orientation.

    Returns:
      [H, W, C] of a dtype in ``DTYPES``.

    Raises:
      ImageFileError: the file cannot be read or is not an acceptable image.
    """
    path = storage.path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageFileError(f"{path}: cannot read ({e.strerror or e})") from e
    return decode_image(data, name=str(path), exif_transpose=exif_transpose)


def is_rgb8(bands: int, dtype: str | np.dtype) -> bool:
    """Whether images of ``bands`` bands of ``dtype`` are 8-bit RGB (ImageNet's kind)."""
    return int(bands) == 3 and np.dtype(dtype) == np.uint8


def conform(image: np.ndarray, *, bands: int, dtype: str, name: str) -> np.ndarray:
    """An image as a model of ``bands`` bands of ``dtype`` takes it.

    8-bit grey is repeated to RGB for a model of 8-bit RGB (as a data set of RGB and grey
    images is read); anything else must match.

    Raises:
      ImageFileError: another band count or dtype, naming both.
    """
    if image.shape[-1] == 1 and is_rgb8(bands, dtype) and image.dtype == np.uint8:
        return np.repeat(image, 3, axis=-1)
    if image.shape[-1] != bands or image.dtype != np.dtype(dtype):
        raise ImageFileError(
            f"{name}: {image.shape[-1]} band(s) of {image.dtype}; the model takes {bands} "
            f"band(s) of {np.dtype(dtype)}"
        )
    return image
