"""Tests of the lyft_udacity TFDS builder (datasets/lyft_udacity), CPU only, fast.

Oracles: source PNGs decoded here with Pillow (image pixels, red channel of the
label), numpy formulas (nearest-neighbour indices, split bounds), hand-made
PNG byte streams (corrupt, truncated, 16-bit, oversized headers) and the
real samples in REAL_SAMPLES (skipped when absent).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import types
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import datasets.lyft_udacity as lyft
from datasets.lyft_udacity import decode, make_dummy_data, sources, splits
from datasets.lyft_udacity.classes import CARLA_CLASSES
from datasets.lyft_udacity.errors import DEMO_COMMAND, KAGGLE_URL
from datasets.lyft_udacity.lyft_udacity_dataset_builder import (
    SYNTHETIC_MODULE,
    Builder,
    LyftUdacityConfig,
)
from tests.conftest import REAL_SAMPLES, REPO_ROOT
from unet_jax.data.sources import builder_classes

DUMMY = make_dummy_data.DUMMY_DIR
REAL_NAMES = ("0", "1", "10", "100", "101", "102")
needs_real = pytest.mark.skipif(
    not (REAL_SAMPLES / "CameraRGB" / "0.png").exists(), reason="real samples absent"
)


# ----------------------------------------------------------------------------- helpers


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


# ----------------------------------------------------------------------------- registration


def test_import_registers_builder_and_configs(tmp_path):
    assert "lyft_udacity" in tfds.list_builders(with_community_datasets=False)
    builder = tfds.builder(
        "lyft_udacity/synthetic", data_dir=str(tmp_path), file_format="array_record"
    )
    assert isinstance(builder, Builder)
    assert builder.builder_config.name == "synthetic"
    assert set(lyft.CONFIG_NAMES) == {
        "full",
        "full_nohood",
        "resized_256",
        "resized_256_nohood",
        "synthetic",
        "synthetic_nohood",
        "full_hood_as_none",
        "synthetic_hood_as_none",
    }
    assert "semantic" in builder.info.description.lower()  # README.md is the description
    assert "CARLA" in builder.info.citation
    assert set(builder.info.features) == {"image", "label", "name"}
    assert builder.info.features["image"].shape == (None, None, 3)
    assert builder.info.features["label"].shape == (None, None, 1)


def test_dummy_data_matches_its_generator():
    files = dummy_files()
    assert len(files) == 2 * make_dummy_data.EPISODES * make_dummy_data.FRAMES_PER_EPISODE
    for index in range(make_dummy_data.EPISODES * make_dummy_data.FRAMES_PER_EPISODE):
        folder, file = make_dummy_data.frame_file(index)
        image, ids = make_dummy_data.frame_arrays(index)
        np.testing.assert_array_equal(read_png(files[f"{folder}/{folder}/CameraRGB/{file}"]), image)
        seg = read_png(files[f"{folder}/{folder}/CameraSeg/{file}"])
        np.testing.assert_array_equal(seg[..., 0], ids)
        assert not seg[..., 1:].any()


# ----------------------------------------------------------------------------- layouts


def _layout(kind: str, tmp_path):
    """Builds the dummy data in one layout; returns (manual_dir, expected name map)."""
    manual = tmp_path / "manual"
    manual.mkdir()
    expected = dummy_expected()
    if kind == "nested":
        return DUMMY, expected
    if kind == "zip":
        # Arbitrary file name, no .zip extension: recognised by content.
        with zipfile.ZipFile(manual / "my download (1)", "w") as archive:
            for rel, full in dummy_files().items():
                archive.write(full, rel)
        return manual, expected
    if kind == "flat":
        for rel, full in dummy_files().items():
            folder, _, sub, file = rel.split("/")
            (manual / folder / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(full, manual / folder / sub / file)
        return manual, expected
    assert kind == "2018"
    renamed = {}
    for i, (name, arrays) in enumerate(sorted(expected.items())):
        folder, file = name.split("/")
        for sub in ("CameraRGB", "CameraSeg"):
            (manual / "Train" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(
                os.path.join(DUMMY, folder, folder, sub, file), manual / "Train" / sub / f"{i}.png"
            )
        renamed[f"Train/{i}.png"] = arrays
    return manual, renamed


@pytest.mark.parametrize("kind", ["nested", "zip", "flat", "2018"])
def test_layouts_give_the_source_pixels(kind, tmp_path):
    manual, expected = _layout(kind, tmp_path)
    examples = by_name(prepare("full", tmp_path, manual))
    assert set(examples) == set(expected)
    for name, (image, ids) in expected.items():
        assert examples[name]["image"].dtype == np.uint8
        np.testing.assert_array_equal(examples[name]["image"], image)
        np.testing.assert_array_equal(examples[name]["label"], ids[..., None])


@pytest.fixture(scope="module")
def dummy_full(tmp_path_factory):
    return prepare("full", tmp_path_factory.mktemp("dummy_full"), DUMMY)


def test_dummy_splits_group_episodes(dummy_full):
    names = {split: [ex["name"] for ex in exs] for split, exs in dummy_full.items()}
    assert set(names) == {"train", "validation", "test"}
    episodes = {split: {n.split("/")[1].split("_")[1] for n in ns} for split, ns in names.items()}
    assert not episodes["train"] & episodes["validation"]
    assert not episodes["train"] & episodes["test"]
    assert not episodes["validation"] & episodes["test"]
    total = sum(len(ns) for ns in names.values())
    assert total == 30
    # Greedy filling ends each split within one episode (3 frames) of its target.
    for split, fraction in splits.FRACTIONS.items():
        assert abs(len(names[split]) - fraction * total) <= 3
    # Same assignment as the documented rule applied to the names.
    rule = splits.split_items(sorted(dummy_expected()), splits.episode_key)
    assert {s: sorted(ns) for s, ns in names.items()} == rule


def test_label_is_uint8_hw1_with_known_ids(dummy_full):
    for ex in dummy_full["train"]:
        assert ex["label"].shape == (24, 32, 1) and ex["label"].dtype == np.uint8
        assert ex["label"].max() <= 12


# ----------------------------------------------------------------------------- split rule


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("dataA/02_07_123.png", "episode:07"),
        ("dataE/03_07_000.png", "episode:07"),  # same episode, other prefix and folder
        ("02_11_000.png", "episode:11"),
        ("data/F61-20.png", "episode:F61"),
        ("Train/123.png", "frame:123"),
        ("Other/123.png", "frame:123"),
        ("x/02_07.png", "frame:02_07"),
    ],
)
def test_episode_key(name, key):
    assert splits.episode_key(name) == key


def test_assign_splits_is_balanced_deterministic_and_order_free():
    rng = np.random.default_rng(0)
    for _ in range(20):
        sizes = {f"episode:{i:03d}": int(s) for i, s in enumerate(rng.integers(1, 40, 60))}
        assignment = splits.assign_splits(sizes)
        assert set(assignment) == set(sizes)
        total = sum(sizes.values())
        for split, fraction in splits.FRACTIONS.items():
            count = sum(sizes[k] for k, s in assignment.items() if s == split)
            assert abs(count - fraction * total) <= max(sizes.values())
        shuffled = dict(sorted(sizes.items(), key=lambda kv: rng.random()))
        assert splits.assign_splits(shuffled) == assignment


def test_assign_splits_small_cases_by_hand():
    # Five single frames: deficits give train, validation, train, test, train.
    keys = sorted([f"frame:{i}" for i in range(5)], key=splits._order)
    assignment = splits.assign_splits(dict.fromkeys(keys, 1))
    assert [assignment[k] for k in keys] == ["train", "validation", "train", "test", "train"]


# ----------------------------------------------------------------------------- resized config


def test_resized_labels_are_nearest_and_images_area(tmp_path):
    examples = by_name(prepare("resized_256", tmp_path, DUMMY))
    expected = dummy_expected()
    ys = np.floor((np.arange(256) + 0.5) * 24 / 256).astype(int)
    xs = np.floor((np.arange(256) + 0.5) * 32 / 256).astype(int)
    for name, (image, ids) in expected.items():
        ex = examples[name]
        assert ex["image"].shape == (256, 256, 3) and ex["label"].shape == (256, 256, 1)
        assert set(np.unique(ex["label"])) <= set(np.unique(ids))
        np.testing.assert_array_equal(ex["label"][..., 0], ids[ys][:, xs])
        box = np.asarray(Image.fromarray(image).resize((256, 256), Image.Resampling.BOX))
        np.testing.assert_array_equal(ex["image"], box)


def test_nohood_marks_hood_ignored_and_keeps_other_vehicles(tmp_path):
    examples = by_name(prepare("full_nohood", tmp_path, DUMMY))
    hood = make_dummy_data.hood()
    for name, (_, ids) in dummy_expected().items():
        label = examples[name]["label"][..., 0]
        np.testing.assert_array_equal(label, np.where(hood, 255, ids))
        assert (label == 10).any()  # the car higher up stays Vehicles


def test_hood_as_none_labels_the_hood_none_and_keeps_other_vehicles(tmp_path):
    examples = by_name(prepare("full_hood_as_none", tmp_path, DUMMY))
    hood = make_dummy_data.hood()
    for name, (_, ids) in dummy_expected().items():
        label = examples[name]["label"][..., 0]
        np.testing.assert_array_equal(label, np.where(hood, 0, ids))
        assert (label == 10).any()


def test_hood_mask_unit_cases():
    label = np.zeros((10, 8), np.uint8)
    label[8:, :] = 10  # hood, in the band (rows >= 8)
    label[7, 3] = 10  # above the band: not hood even though connected
    label[8, 0] = 3
    label[5, 5] = 10  # a car
    mask = decode.hood_mask(label)
    expected = np.zeros_like(mask)
    expected[8:, :] = True
    expected[8, 0] = False
    np.testing.assert_array_equal(mask, expected)
    # A Vehicles region in the band that does not reach the bottom row is kept.
    label = np.zeros((10, 8), np.uint8)
    label[8, 2:5] = 10
    assert not decode.hood_mask(label).any()


# ----------------------------------------------------------------------------- real samples


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory):
    """The six real pairs as a 2018-style Train/ tree of symlinks (in tmp, never the repo)."""
    if not (REAL_SAMPLES / "CameraRGB" / "0.png").exists():
        pytest.skip("real samples absent")
    manual = tmp_path_factory.mktemp("real") / "manual"
    for sub in ("CameraRGB", "CameraSeg"):
        (manual / "Train" / sub).mkdir(parents=True)
        for n in REAL_NAMES:
            os.symlink(REAL_SAMPLES / sub / f"{n}.png", manual / "Train" / sub / f"{n}.png")
    return manual


def _real(n: str) -> tuple[np.ndarray, np.ndarray]:
    return read_png(REAL_SAMPLES / "CameraRGB" / f"{n}.png"), read_png(
        REAL_SAMPLES / "CameraSeg" / f"{n}.png"
    )


def _real_hood_template() -> np.ndarray:
    """Pixels of the bottom fifth that are Vehicles in all six real frames."""
    template = np.ones((600, 800), bool)
    for n in REAL_NAMES:
        template &= _real(n)[1][..., 0] == 10
    template[:480] = False
    return template


@needs_real
def test_real_samples_label_is_red_channel(real_tree, tmp_path):
    examples = by_name(prepare("full", tmp_path, real_tree))
    assert set(examples) == {f"Train/{n}.png" for n in REAL_NAMES}
    for n in REAL_NAMES:
        image, seg = _real(n)
        ex = examples[f"Train/{n}.png"]
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_array_equal(ex["label"][..., 0], seg[..., 0])
        assert ex["label"].shape == (600, 800, 1)
        # Not what a greyscale conversion would give (that destroys the ids).
        grey = np.asarray(Image.open(REAL_SAMPLES / "CameraSeg" / f"{n}.png").convert("L"))
        assert not np.array_equal(grey, seg[..., 0])


@needs_real
def test_real_samples_hood_region(real_tree):
    template = _real_hood_template()
    rows = np.nonzero(template.any(axis=1))[0]
    assert 490 <= rows.min() <= 500 and rows.max() == 599
    for n in REAL_NAMES:
        mask = decode.hood_mask(_real(n)[1][..., 0])
        assert (mask >= template).all()  # covers the common hood
        assert (mask & ~template).sum() <= 10  # and barely more
        assert 0.14 < mask.mean() < 0.16  # ~15% of the pixels


@needs_real
def test_real_samples_nohood(real_tree, tmp_path):
    examples = by_name(prepare("full_nohood", tmp_path, real_tree))
    template = _real_hood_template()
    for n in REAL_NAMES:
        red = _real(n)[1][..., 0]
        label = examples[f"Train/{n}.png"]["label"][..., 0]
        ignored = label == 255
        assert (ignored ^ template).sum() <= 10
        np.testing.assert_array_equal(label[~ignored], red[~ignored])
        # What is left of Vehicles is the real cars: ~0-0.3% of the pixels, not ~15%.
        assert (label == 10).mean() < 0.01 < (red == 10).mean()


@needs_real
def test_real_samples_resized_labels_only_source_ids(real_tree, tmp_path):
    examples = by_name(prepare("resized_256", tmp_path, real_tree))
    ys = np.floor((np.arange(256) + 0.5) * 600 / 256).astype(int)
    xs = np.floor((np.arange(256) + 0.5) * 800 / 256).astype(int)
    for n in REAL_NAMES:
        red = _real(n)[1][..., 0]
        label = examples[f"Train/{n}.png"]["label"][..., 0]
        assert set(np.unique(label)) <= set(np.unique(red))
        np.testing.assert_array_equal(label, red[ys][:, xs])


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
    with pytest.raises(ValueError, match="unknown config"):
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


def _zip_of_dummy(path, extra: dict[str, bytes] | None = None, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for rel, full in dummy_files().items():
            archive.write(full, rel)
        for member, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(member), data)


@pytest.mark.parametrize("member", HOSTILE)
def test_hostile_zip_member_names_are_refused(member, tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    _zip_of_dummy(manual / "archive.zip", {member: png(np.zeros((2, 2, 3), np.uint8))})
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
    _zip_of_dummy(path)
    examples = by_name(prepare("full", tmp_path, path))
    assert set(examples) == set(dummy_expected())


def test_zip_source_closes_and_reopens(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    _zip_of_dummy(manual / "a.zip")
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
    _zip_of_dummy(path, compression=zipfile.ZIP_STORED)
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
    _zip_of_dummy(manual / "a.zip")
    _zip_of_dummy(manual / "b.zip")
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


# ----------------------------------------------------------------------------- synthetic


def _fake_render(seed: int, height: int = 256, width: int = 256):
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx + seed) % 256, (yy + 2 * seed) % 256, np.full_like(xx, seed % 256)], -1)
    label = ((yy // 32 + xx // 64 + seed) % 13).astype(np.uint8)
    return image.astype(np.uint8), label


@pytest.fixture
def fake_synthetic(monkeypatch):
    module = types.ModuleType(SYNTHETIC_MODULE)
    module.render_scene = _fake_render
    monkeypatch.setitem(sys.modules, SYNTHETIC_MODULE, module)
    return module


def test_synthetic_config(fake_synthetic, tmp_path):
    builder = tfds.builder(
        "lyft_udacity/synthetic", data_dir=str(tmp_path), file_format="array_record"
    )
    builder.download_and_prepare()  # no manual dir needed
    examples = read_splits(builder)
    assert {s: len(v) for s, v in examples.items()} == {
        "train": 600,
        "validation": 200,
        "test": 200,
    }
    seeds = {s: {int(ex["name"][10:15]) for ex in exs} for s, exs in examples.items()}
    assert set.union(*seeds.values()) == set(range(1000))
    episodes = {s: {seed // 10 for seed in v} for s, v in seeds.items()}
    assert not (episodes["train"] & episodes["validation"] or episodes["train"] & episodes["test"])
    assert not episodes["validation"] & episodes["test"]
    named = by_name(examples)
    for seed in (0, 7, 999):
        image, label = _fake_render(seed)
        ex = named[f"synthetic/{seed:05d}.png"]
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_array_equal(ex["label"][..., 0], label)


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        (lambda s, height, width: (np.zeros((height, width), np.uint8),) * 2, "image uint8"),
        (
            lambda s, height, width: (
                np.zeros((height, width, 3), np.uint8),
                np.full((height, width), 13, np.uint8),
            ),
            "class id 13",
        ),
    ],
)
def test_synthetic_renderer_output_is_checked(bad, text, fake_synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(fake_synthetic, "render_scene", bad)
    config = LyftUdacityConfig(name="tiny", source="synthetic", size=(8, 8), num_frames=50)
    with pytest.raises(lyft.DataError, match=r"synthetic/000\d\d\.png.*" + text):
        prepare_config(config, tmp_path, tmp_path)


def test_real_synthetic_renderer_if_present(tmp_path):
    try:
        __import__(SYNTHETIC_MODULE)
    except ImportError:
        pytest.skip("datasets/synthetic/scenes.py not written yet")
    config = LyftUdacityConfig(
        name="tiny", source="synthetic", size=(64, 64), num_frames=10, frames_per_episode=2
    )
    examples = prepare_config(config, tmp_path, tmp_path)
    assert sum(len(v) for v in examples.values()) == 10
    for ex in by_name(examples).values():
        assert ex["image"].shape == (64, 64, 3) and ex["label"].max() <= 12


# ----------------------------------------------------------------------------- CLI, defaults, TF


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_with_default_dirs_and_zip(tmp_path):
    # HOME points at tmp: the TFDS defaults are ~/tensorflow_datasets and
    # <data_dir>/downloads/manual.
    manual = tmp_path / "tensorflow_datasets" / "downloads" / "manual"
    manual.mkdir(parents=True)
    _zip_of_dummy(manual / "lyft-udacity-challenge.zip")
    env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"}
    env["HOME"] = str(tmp_path)
    result = _run(["-m", "datasets.lyft_udacity", "--config", "full"], env)
    assert result.returncode == 0, result.stderr
    assert "train 18, validation 6, test 6" in result.stdout
    assert (tmp_path / "tensorflow_datasets" / "lyft_udacity" / "full" / "1.0.0").is_dir()


def test_cli_missing_archive(tmp_path):
    manual = tmp_path / "manual"
    result = _run(
        [
            "-m",
            "datasets.lyft_udacity",
            "--config",
            "full",
            "--data_dir",
            str(tmp_path),
            "--manual_dir",
            str(manual),
        ]
    )
    assert result.returncode == 2
    assert KAGGLE_URL in result.stderr and str(manual) in result.stderr
    assert DEMO_COMMAND in result.stderr
    assert "Traceback" not in result.stderr


_NO_TF_SCRIPT = r"""
import importlib.abc, json, sys
attempts = []

class Spy(importlib.abc.MetaPathFinder):
    # Records real imports of tensorflow; importlib.util.find_spec probes
    # ("is TF installed?", done by etils) are not imports.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            frame, probe = sys._getframe(1), False
            while frame:
                code = frame.f_code
                probe |= code.co_name == "find_spec" and "importlib" in code.co_filename \
                    and "util" in code.co_filename
                frame = frame.f_back
            if not probe:
                attempts.append(name)
        return None

sys.meta_path.insert(0, Spy())
sys.path.insert(0, sys.argv[1])
import datasets.lyft_udacity as lyft
builder = lyft.prepare("resized_256_nohood", data_dir=sys.argv[2], manual_dir=sys.argv[3])
source = builder.as_data_source()["train"]
example = source[0]
print(json.dumps({"attempts": attempts, "loaded": "tensorflow" in sys.modules,
                  "shape": list(example["label"].shape)}))
"""


def test_no_tensorflow_import(tmp_path):
    result = _run(["-c", _NO_TF_SCRIPT, str(REPO_ROOT), str(tmp_path), DUMMY])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"attempts": [], "loaded": False, "shape": [256, 256, 1]}


# ----------------------------------------------------------------------------- units


def test_decode_png_rejects_before_decoding_oversized_headers():
    data = raw_png(decode.MAX_PIXELS, 2, 8, 2, idat=zlib.compress(b"\0"))
    with pytest.raises(lyft.DataError, match="x.png:.*decompression-bomb"):
        decode.decode_png(data, name="x.png", kind="image")
    # Exactly at the limit is allowed past the guard (then fails on the tiny IDAT).
    data = raw_png(decode.MAX_PIXELS, 1, 8, 2, idat=zlib.compress(b"\0"))
    with pytest.raises(lyft.DataError, match="corrupt PNG"):
        decode.decode_png(data, name="x.png", kind="image")


def test_decode_png_label_is_red_channel():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode.decode_png(png(rgb), name="l", kind="label"), rgb[..., 0])
    np.testing.assert_array_equal(decode.decode_png(png(rgb), name="i", kind="image"), rgb)


def test_ordered_thread_map_keeps_order_and_raises():
    from unet_jax.data.image_ops import ordered_thread_map

    assert list(ordered_thread_map(lambda x: x * x, range(50), workers=3)) == [
        x * x for x in range(50)
    ]

    def fail_at_7(x):
        if x == 7:
            raise lyft.DataError("seven")
        return x

    out = []
    with pytest.raises(lyft.DataError, match="seven"):
        for x in ordered_thread_map(fail_at_7, range(50), workers=2, depth=4):
            out.append(x)
    assert out == list(range(7))


def test_pair_frames_unit():
    paths = [
        "root/dataB/dataB/CameraRGB/02_01_000.png",
        "root/dataB/dataB/CameraSeg/02_01_000.png",
        "CameraRGB/5.PNG",
        "CameraSeg/5.PNG",
        "dataA/CameraRGB/readme.txt",
    ]
    pairs = sources.pair_frames(paths, where="w")
    assert [(p.name, p.image, p.label) for p in pairs] == [
        ("5.PNG", "CameraRGB/5.PNG", "CameraSeg/5.PNG"),
        (
            "dataB/02_01_000.png",
            "root/dataB/dataB/CameraRGB/02_01_000.png",
            "root/dataB/dataB/CameraSeg/02_01_000.png",
        ),
    ]
    with pytest.raises(lyft.DataError, match=r"(?s)w: unpaired.*expected x/CameraSeg/1.png"):
        sources.pair_frames(["x/CameraRGB/1.png"], where="w")


def test_prepared_data_declares_the_carla_classes_and_train_counts(tmp_path):
    builder = lyft.prepare("full", data_dir=str(tmp_path / "data"), manual_dir=str(DUMMY))
    # Read back from disk by a fresh builder, as train.py does.
    reopened = lyft.open_builder(
        "full", data_dir=str(tmp_path / "data"), manual_dir=str(DUMMY), prepare=False
    )
    assert builder_classes(reopened) == CARLA_CLASSES
    counts = np.zeros(256, np.int64)
    for ex in read_splits(builder)["train"]:
        counts += np.bincount(ex["label"].ravel(), minlength=256)
    stats = reopened.info.metadata["train_stats"]
    assert stats["pixel_counts"] == counts[:13].tolist()
    assert stats["ignored_pixels"] == int(counts[255])
