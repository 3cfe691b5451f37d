"""The lyft_udacity builder on bad input: corrupt, truncated, 16-bit or oversized PNGs,
high label ids, hostile or broken zip archives, a missing archive, a failed prepare.

Oracles: hand-made PNG byte streams and archives, and the error each must raise (a
DataError naming the file).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datasets.lyft_udacity as lyft
from datasets.lyft_udacity import decode, sources, splits
from datasets.lyft_udacity.errors import DEMO_COMMAND, KAGGLE_URL
from datasets.lyft_udacity.lyft_udacity_dataset_builder import (
    Builder,
    LyftUdacityConfig,
)
from tests.datasets.builder_helpers import (
    DUMMY,
    by_name,
    dummy_expected,
    label_png,
    png,
    prepare,
    prepare_config,
    raw_png,
    read_splits,
    small_tree,
    zip_of_dummy,
)
from unet_jax.errors import ConfigError

# ----------------------------------------------------------------------------- bad input


def _bad_tree(tmp_path, case: str):
    """A 5-frame tree with one defect; returns (manual_dir, text the error must contain)."""
    manual = tmp_path / "manual"
    frames = small_tree(manual)
    image_path = manual / "dataA" / "CameraRGB" / "02_02_000.png"
    label_path = manual / "dataA" / "CameraSeg" / "02_02_000.png"
    image, ids = frames["dataA/02_02_000.png"]
    good = image_path.read_bytes()
    if case == "missing_label":
        label_path.unlink()
        return manual, "has no label"
    if case == "missing_image":
        image_path.unlink()
        return manual, "has no image"
    if case == "truncated":
        image_path.write_bytes(good[: len(good) // 2])
        return manual, "truncated"
    if case == "bit_flip":
        data = bytearray(good)
        data[len(data) // 2] ^= 0x40
        image_path.write_bytes(bytes(data))
        return manual, "CRC"
    if case == "garbage_idat":  # valid CRCs, undecodable pixel data
        image_path.write_bytes(raw_png(32, 24, 8, 2, idat=b"\x78\x9c" + os.urandom(50)))
        return manual, "corrupt"
    if case == "not_png":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG")
        image_path.write_bytes(buffer.getvalue())
        return manual, "not a PNG"
    if case == "empty_file":
        image_path.write_bytes(b"")
        return manual, "not a PNG"
    if case == "wrong_size":
        label_path.write_bytes(label_png(ids[:20]))
        return manual, "32x20"
    if case == "grey_image":
        image_path.write_bytes(png(image[..., 0]))
        return manual, "8-bit greyscale"
    if case == "palette_image":
        image_path.write_bytes(png(image[..., 0], mode="P"))
        return manual, "palette"
    if case == "rgba_transparent":
        rgba = np.dstack([image, np.full(ids.shape, 128, np.uint8)])
        image_path.write_bytes(png(rgba))
        return manual, "transparent"
    if case == "16bit_rgb":
        image_path.write_bytes(raw_png(32, 24, 16, 2))
        return manual, "16-bit RGB"
    if case == "16bit_grey":
        image_path.write_bytes(png(image[..., 0].astype(np.uint16) * 257))
        return manual, "16-bit greyscale"
    if case == "grey_label":
        label_path.write_bytes(png(ids))
        return manual, "red channel"
    if case == "bomb":
        image_path.write_bytes(raw_png(60000, 60000, 8, 2, idat=zlib.compress(b"\0" * 100)))
        return manual, "decompression-bomb"
    raise AssertionError(case)


BAD_CASES = [
    "missing_label",
    "missing_image",
    "truncated",
    "bit_flip",
    "garbage_idat",
    "not_png",
    "empty_file",
    "wrong_size",
    "grey_image",
    "palette_image",
    "rgba_transparent",
    "16bit_rgb",
    "16bit_grey",
    "grey_label",
    "bomb",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_a_data_error_naming_the_file(case, tmp_path):
    manual, text = _bad_tree(tmp_path, case)
    with pytest.raises(lyft.DataError) as info:
        prepare("full", tmp_path, manual)
    message = str(info.value)
    assert "02_02_000.png" in message
    assert text in message
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "data" / "lyft_udacity" / "full" / "1.0.0").exists()


def test_opaque_rgba_is_converted(tmp_path):
    manual = tmp_path / "manual"
    frames = small_tree(manual)
    image, ids = frames["dataA/02_01_000.png"]
    alpha = np.full(ids.shape, 255, np.uint8)
    (manual / "dataA" / "CameraRGB" / "02_01_000.png").write_bytes(png(np.dstack([image, alpha])))
    seg = np.zeros((*ids.shape, 4), np.uint8)
    seg[..., 0], seg[..., 3] = ids, 255
    (manual / "dataA" / "CameraSeg" / "02_01_000.png").write_bytes(png(seg))
    ex = by_name(prepare("full", tmp_path, manual))["dataA/02_01_000.png"]
    np.testing.assert_array_equal(ex["image"], image)
    np.testing.assert_array_equal(ex["label"][..., 0], ids)


def _high_id_tree(tmp_path):
    manual = tmp_path / "manual"
    frames = small_tree(manual)
    _, ids = frames["dataA/02_03_000.png"]
    ids = ids.copy()
    ids[0, :3] = (13, 22, 255)
    ids[5, 5] = 17
    (manual / "dataA" / "CameraSeg" / "02_03_000.png").write_bytes(label_png(ids))
    return manual, ids


def test_high_ids_default_to_ignore(tmp_path):
    manual, ids = _high_id_tree(tmp_path)
    label = by_name(prepare("full", tmp_path, manual))["dataA/02_03_000.png"]["label"][..., 0]
    np.testing.assert_array_equal(label, np.where(ids > 12, 255, ids))


def test_high_ids_error_rule(tmp_path):
    manual, _ = _high_id_tree(tmp_path)
    config = LyftUdacityConfig(name="full_strict", high_ids="error")
    with pytest.raises(lyft.DataError, match=r"02_03_000\.png.*\[13, 17, 22, 255\]"):
        prepare_config(config, tmp_path, manual)


def test_too_few_episodes_is_an_error(tmp_path):
    small_tree(tmp_path / "manual", n=2)
    with pytest.raises(lyft.DataError, match="only 2 frames; too few episodes.*empty: test"):
        prepare("full", tmp_path, tmp_path / "manual")


def test_config_rejects_unknown_rules():
    with pytest.raises(ValueError, match="hood"):
        LyftUdacityConfig(name="x", hood="drop")
    with pytest.raises(ValueError, match="high_ids"):
        LyftUdacityConfig(name="x", high_ids="clip")
    with pytest.raises(ConfigError, match="lyft_udacity/resized_512: unknown data set"):
        lyft.prepare("resized_512")


def test_duplicate_frame_names_are_an_error(tmp_path):
    manual = tmp_path / "manual"
    small_tree(manual / "one")
    small_tree(manual / "two")  # two/dataA/... and one/dataA/... are both "dataA/..."
    with pytest.raises(lyft.DataError, match="both named dataA/02_00_000.png"):
        prepare("full", tmp_path, manual)


def test_macos_metadata_and_other_files_are_skipped(tmp_path):
    manual = tmp_path / "manual"
    frames = small_tree(manual)
    (manual / "dataA" / "CameraRGB" / "._02_00_000.png").write_bytes(b"resource fork")
    (manual / "__MACOSX" / "dataA" / "CameraRGB").mkdir(parents=True)
    (manual / "__MACOSX" / "dataA" / "CameraRGB" / "02_00_000.png").write_bytes(b"x")
    (manual / "dataA" / "CameraRGB" / "Thumbs.db").write_bytes(b"x")
    assert set(by_name(prepare("full", tmp_path, manual))) == set(frames)


# ----------------------------------------------------------------------------- zip archives

HOSTILE = [
    "../evil.png",
    "/tmp/evil.png",
    "dataA/../../evil.png",
    "C:/evil.png",
    "..\\evil.png",
    "dataA\\..\\..\\evil.png",
]


@pytest.mark.parametrize("member", HOSTILE)
def test_hostile_zip_member_names_are_refused(member, tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    zip_of_dummy(manual / "archive.zip", {member: png(np.zeros((2, 2, 3), np.uint8))})
    before = set(os.listdir(tmp_path.parent))
    with pytest.raises(lyft.DataError) as info:
        prepare("full", tmp_path, manual)
    assert "unsafe member name" in str(info.value) and repr(member) in str(info.value)
    assert "archive.zip" in str(info.value)
    assert set(os.listdir(tmp_path.parent)) == before
    assert not [p for p in tmp_path.rglob("*evil*")]
    assert not os.path.exists("/tmp/evil.png")


def test_manual_dir_may_be_the_zip_itself(tmp_path):
    path = tmp_path / "lyft.zip"
    zip_of_dummy(path)
    examples = by_name(prepare("full", tmp_path, path))
    assert set(examples) == set(dummy_expected())


def test_zip_source_closes_and_reopens(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    zip_of_dummy(manual / "a.zip")
    source = sources.find_source(str(manual))
    assert isinstance(source, sources.ZipSource)
    pair = source.pairs[0]
    first = source.read(pair.image)
    assert first == (Path(DUMMY) / pair.image).read_bytes()
    opened = list(source._opened)
    source.close()
    assert all(archive.fp is None for archive in opened) and not source._opened
    assert source.read(pair.image) == first
    source.close()


def test_corrupt_zip_member_names_the_member(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    path = manual / "archive.zip"
    zip_of_dummy(path, compression=zipfile.ZIP_STORED)
    member = "dataC/dataC/CameraRGB/02_02_001.png"
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    # Local header: 30 bytes + name + extra, then the stored bytes; hit the middle.
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(lyft.DataError, match=f"archive.zip:{member}"):
        prepare("full", tmp_path, manual)


def test_several_zips_are_an_error(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    zip_of_dummy(manual / "a.zip")
    zip_of_dummy(manual / "b.zip")
    with pytest.raises(lyft.DataError, match="a.zip, b.zip"):
        prepare("full", tmp_path, manual)


def test_zip_without_frames_is_an_error(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(lyft.DataError, match="no CameraRGB/CameraSeg PNGs"):
        prepare("full", tmp_path, manual)


# ----------------------------------------------------------------------------- missing archive


@pytest.mark.parametrize("state", ["absent", "empty", "unrelated"])
def test_missing_archive_message(state, tmp_path):
    manual = tmp_path / "manual"
    if state != "absent":
        manual.mkdir()
    if state == "unrelated":
        (manual / "notes.txt").write_text("x")
    with pytest.raises(lyft.ManualDownloadMissingError) as info:
        prepare("resized_256", tmp_path, manual)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert KAGGLE_URL in message
    assert str(manual) in message
    assert DEMO_COMMAND in message
    assert "--config resized_256" in message
    if state == "unrelated":
        assert "notes.txt" in message


def test_missing_archive_default_manual_dir(tmp_path):
    with pytest.raises(lyft.ManualDownloadMissingError) as info:
        lyft.prepare("full", data_dir=str(tmp_path / "data"))
    assert str(tmp_path / "data" / "downloads" / "manual") in str(info.value)


# ----------------------------------------------------------------------------- failed prepare


def test_failed_prepare_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    manual = tmp_path / "manual"
    frames = small_tree(manual, n=20)
    # The bad frame is in the test split, generated last: train and validation
    # are already written (in the incomplete folder) when it fails.
    bad = splits.split_items(sorted(frames), splits.episode_key)["test"][-1]
    bad_path = manual / "dataA" / "CameraRGB" / bad.split("/")[1]
    good = bad_path.read_bytes()
    bad_path.write_bytes(good[:100])
    data = tmp_path / "data"
    at_failure = []
    real = decode.process_pair

    def spy(*args, image_name, **kwargs):
        if image_name.endswith(bad.split("/")[1]):
            at_failure.extend(str(p.relative_to(data)) for p in data.rglob("*"))
        return real(*args, image_name=image_name, **kwargs)

    monkeypatch.setattr(decode, "process_pair", spy)
    with pytest.raises(lyft.DataError, match=bad.split("/")[1]):
        lyft.prepare("full", data_dir=str(data), manual_dir=str(manual))
    assert any("incomplete." in p and "train" in p for p in at_failure), at_failure
    left = [str(p.relative_to(data)) for p in data.rglob("*")]
    # No version folder, no leftover incomplete folder, no dataset_info.json or
    # array_record file anywhere (TFDS's own .config/metadata.json may stay).
    looks_prepared = ("incomplete", "1.0.0", "dataset_info", "array_record")
    assert not [p for p in left if any(word in p for word in looks_prepared)], left
    assert not Builder(config="full", data_dir=str(data)).is_prepared()
    # Fixing the file makes the next run succeed.
    bad_path.write_bytes(good)
    builder = lyft.prepare("full", data_dir=str(data), manual_dir=str(manual))
    assert builder.is_prepared()
    assert sum(len(v) for v in read_splits(builder).values()) == 20
