"""Tests of the lyft_udacity TFDS builder (datasets/lyft_udacity), CPU only, fast: what it
writes from good input (layouts, splits, resized configs, the real samples, synthetic).

Oracles: source PNGs decoded here with Pillow (image pixels, red channel of the
label), numpy formulas (nearest-neighbour indices, split bounds) and the real samples in
REAL_SAMPLES (skipped when absent). Bad input: test_builder_bad_input.py; the command
line and decoding units: test_builder_cli.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import types
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import datasets.lyft_udacity as lyft
from datasets.lyft_udacity import decode, make_dummy_data, splits
from datasets.lyft_udacity.lyft_udacity_dataset_builder import (
    SYNTHETIC_MODULE,
    Builder,
    LyftUdacityConfig,
)
from tests.conftest import REAL_SAMPLES
from tests.datasets.builder_helpers import (
    DUMMY,
    REAL_NAMES,
    by_name,
    dummy_expected,
    dummy_files,
    needs_real,
    prepare,
    prepare_config,
    read_png,
    read_splits,
)

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
