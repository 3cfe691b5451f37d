"""Helpers of the lyft_udacity builder tests: PNG bytes by hand, small source trees,
the dummy data's expected arrays, preparing a config into a temporary directory."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import datasets.lyft_udacity as lyft
from datasets.lyft_udacity import decode, make_dummy_data
from datasets.lyft_udacity.lyft_udacity_dataset_builder import (
    Builder,
    LyftUdacityConfig,
)
from tests.conftest import REAL_SAMPLES

DUMMY = make_dummy_data.DUMMY_DIR
REAL_NAMES = ("0", "1", "10", "100", "101", "102")
needs_real = pytest.mark.skipif(
    not (REAL_SAMPLES / "CameraRGB" / "0.png").exists(), reason="real samples absent"
)


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    """PNG bytes of an array (Pillow, default settings)."""
    buffer = io.BytesIO()
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def label_png(ids: np.ndarray) -> bytes:
    """A label PNG as in the real data: RGB, id in red, green and blue 0."""
    rgb = np.zeros((*ids.shape, 3), np.uint8)
    rgb[..., 0] = ids
    return png(rgb)


def chunk(ctype: bytes, data: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def raw_png(
    width: int, height: int, bit_depth: int, color_type: int, idat: bytes | None = None
) -> bytes:
    """A hand-made PNG; by default its pixel data is all zeros (filter 0 rows)."""
    if idat is None:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
        row = 1 + width * channels * bit_depth // 8
        idat = zlib.compress(b"\0" * row * height)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return decode.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def read_splits(builder) -> dict[str, list[dict]]:
    """All examples of a prepared builder, per split, names as str."""
    out = {}
    for split, source in builder.as_data_source().items():
        examples = [source[i] for i in range(len(source))]
        for ex in examples:
            ex["name"] = ex["name"].decode() if isinstance(ex["name"], bytes) else ex["name"]
        out[split] = examples
    return out


def by_name(examples: dict[str, list[dict]]) -> dict[str, dict]:
    return {ex["name"]: ex for exs in examples.values() for ex in exs}


def small_tree(root, n: int = 5, height: int = 24, width: int = 32, seed: int = 0) -> dict:
    """Writes n valid frames ``dataA/CameraRGB/02_EE_000.png`` (one per episode).

    Returns:
      name -> (image, label ids) as written.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for ee in range(n):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ids = rng.integers(0, 13, (height, width), dtype=np.uint8)
        file = f"02_{ee:02d}_000.png"
        for sub, data in (("CameraRGB", png(image)), ("CameraSeg", label_png(ids))):
            os.makedirs(root / "dataA" / sub, exist_ok=True)
            (root / "dataA" / sub / file).write_bytes(data)
        out[f"dataA/{file}"] = (image, ids)
    return out


def dummy_files() -> dict[str, str]:
    """Relative path (nested Kaggle layout) -> absolute path of every dummy PNG."""
    out = {}
    for dirpath, _, files in os.walk(DUMMY):
        for f in files:
            full = os.path.join(dirpath, f)
            out[os.path.relpath(full, DUMMY).replace(os.sep, "/")] = full
    return out


def dummy_expected() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name (``dataA/02_00_000.png``) -> (image, red channel of label), decoded here."""
    out = {}
    for rel, full in dummy_files().items():
        folder, _, sub, file = rel.split("/")
        if sub == "CameraRGB":
            label_path = full.replace("CameraRGB", "CameraSeg")
            out[f"{folder}/{file}"] = (read_png(full), read_png(label_path)[..., 0])
    return out


def prepare(config: str, tmp_path, manual) -> dict[str, list[dict]]:
    builder = lyft.prepare(config, data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    return read_splits(builder)


def prepare_config(config: LyftUdacityConfig, tmp_path, manual):
    builder = Builder(config=config, data_dir=str(tmp_path / "data"), file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    return read_splits(builder)


def zip_of_dummy(path, extra: dict[str, bytes] | None = None, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for rel, full in dummy_files().items():
            archive.write(full, rel)
        for member, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(member), data)
