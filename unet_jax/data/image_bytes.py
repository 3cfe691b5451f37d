"""Images of any band count and dtype as bytes in a prepared data set, and back.

8-bit images are stored as PNG (grey or RGB, as before); others as a zlib-compressed
``.npy``, so 16-bit, signed and float values and any number of bands are kept exactly.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

from unet_jax.data.image_files import decode_image

_ZNPY = b"ZNPY"


def encode(image: np.ndarray) -> bytes:
    """The bytes of an [H, W, C] image (PNG for 8-bit grey and RGB, else zlib'd .npy)."""
    if image.dtype == np.uint8 and image.shape[-1] in (1, 3):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
        return buffer.getvalue()
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(image), allow_pickle=False)
    return _ZNPY + zlib.compress(buffer.getvalue(), 3)


def decode(data: bytes) -> np.ndarray:
    """The [H, W, C] image of :func:`encode`'s bytes, exactly."""
    if data.startswith(_ZNPY):
        return np.load(io.BytesIO(zlib.decompress(data[len(_ZNPY) :])), allow_pickle=False)
    return decode_image(data, name="<prepared image>", exif_transpose=False)


class DecodedImages:
    """A random-access source whose examples' ``image`` bytes are decoded (picklable): the
    folder builder's data sources."""

    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> dict:
        example = dict(self._source[index])
        example["image"] = decode(bytes(example["image"]))
        return example
