"""The aerial imagery data set: layouts, the tile split, colours, black, errors, training.

Oracles: `datasets.aerial.make_dummy_data.example_arrays` (the class ids every dummy mask
was drawn from, 255 where it is black), the split rule as documented (parts 1-5 / 6-7 /
8-9 of every tile) and the six colours of the data set's README, typed here again.
"""

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import datasets
from datasets import aerial
from datasets.aerial import make_dummy_data as dummy
from datasets.aerial import splits
from datasets.common.errors import DataError
from tests.conftest import REPO_ROOT
from unet_jax.configs import aerial as aerial_config
from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.data.sources import builder_classes

SIX = {
    "Building": "#3C1098",
    "Land (unpaved area)": "#8429F6",
    "Road": "#6EC1E4",
    "Vegetation": "#FEDD3A",
    "Water": "#E2A929",
    "Unlabeled": "#9B9B9B",
}
DUMMY = REPO_ROOT / "datasets" / "aerial" / "dummy_data"
BASE = DUMMY / dummy.ROOT
SPLIT_PARTS = {"train": [1, 2, 3, 4, 5], "validation": [6, 7], "test": [8, 9]}


def _expected_names(split: str) -> list[str]:
    return [f"Tile {t}/image_part_{p:03d}" for t in dummy.TILES for p in SPLIT_PARTS[split]]


def _read(builder) -> dict[str, dict[str, dict]]:
    sources = builder.as_data_source()
    return {
        split: {(ex := sources[split][i])["name"].decode(): ex for i in range(len(sources[split]))}
        for split in ("train", "validation", "test")
    }


def _prepare(tmp_path, manual_dir):
    return aerial.open_builder(data_dir=str(tmp_path / "data"), manual_dir=str(manual_dir))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The dummy tree prepared once: {split: {name: example}} and the builder."""
    builder = _prepare(tmp_path_factory.mktemp("aerial"), DUMMY)
    return builder, _read(builder)


def _copy_tree(tmp_path):
    target = tmp_path / "manual"
    shutil.copytree(DUMMY, target)
    return target


def test_dummy_data_has_the_archive_traits():
    tile1 = {
        p: Image.open(BASE / "Tile 1" / "images" / f"image_part_{p:03d}.jpg").size for p in (1, 9)
    }
    assert tile1[1] != tile1[9] and abs(tile1[1][0] - tile1[9][0]) == 1  # one pixel apart
    assert Image.open(BASE / "Tile 2" / "masks" / "image_part_001.png").mode == "P"
    assert Image.open(BASE / "Tile 1" / "masks" / "image_part_001.png").mode == "RGB"
    black = np.asarray(Image.open(BASE / "Tile 1" / "masks" / "image_part_003.png"))
    assert (black == 0).all(axis=-1).any()
    shipped = json.loads((BASE / "classes.json").read_text())["classes"]
    wrong = [c["title"] for c in shipped if c["color"] != SIX[c["title"]]]
    assert sorted(wrong) == sorted(n for n in SIX if n != "Unlabeled")


@pytest.mark.parametrize("n", range(3, 13))
def test_split_rule_covers_every_tile_without_overlap(n):
    items = [(f"Tile {t}", f"image_part_{p:03d}") for t in (1, 2, 3) for p in range(n, 0, -1)]
    parts = splits.split_by_tile(items, name_of=lambda x: x[1], tile_of=lambda x: x[0], where="x")
    assert sorted(sum(parts.values(), [])) == sorted(items)  # each item once
    for split, members in parts.items():
        assert {tile for tile, _ in members} == {"Tile 1", "Tile 2", "Tile 3"}, split
    if n == 9:
        for split, numbers in SPLIT_PARTS.items():
            got = sorted(int(name[-3:]) for tile, name in parts[split] if tile == "Tile 2")
            assert got == numbers, split


def test_split_rule_refuses_a_tile_too_small_to_split():
    items = [("Tile 1", f"p{i}") for i in range(9)] + [("Tile 2", "p1"), ("Tile 2", "p2")]
    with pytest.raises(DataError, match="Tile 2 has 2 image"):
        splits.split_by_tile(items, name_of=lambda x: x[1], tile_of=lambda x: x[0], where="x")


def test_extracted_tree_splits_5_2_2_per_tile(prepared):
    _, examples = prepared
    for split in ("train", "validation", "test"):
        assert sorted(examples[split]) == _expected_names(split), split


def test_labels_are_the_mask_colours_with_black_ignored_at_native_size(prepared):
    builder, examples = prepared
    ignored = 0
    for split in examples.values():
        for name, ex in split.items():
            tile, stem = name.split("/")
            image, ids = dummy.example_arrays(int(tile.split()[1]), int(stem[-3:]))
            np.testing.assert_array_equal(ex["label"][..., 0], ids, err_msg=name)
            assert ex["image"].shape == image.shape  # native size, never resized
            # JPEG: close to the drawn pixels, not equal.
            assert np.abs(ex["image"].astype(int) - image).mean() < 12, name
            ignored += int((ex["label"] == IGNORE_LABEL).sum())
    assert ignored > 0  # black regions exist and became the ignore value
    # Tile 2 (palette masks) decoded too: its labels were compared above.
    assert any(n.startswith("Tile 2/") for n in examples["train"])
    stats = builder.info.metadata["train_stats"]
    counts = np.zeros(256, np.int64)
    for ex in examples["train"].values():
        counts += np.bincount(ex["label"].ravel(), minlength=256)
    assert stats["pixel_counts"] == counts[:6].tolist()
    assert stats["ignored_pixels"] == counts[IGNORE_LABEL]


def test_classes_are_the_six_mask_colours_not_the_shipped_file(prepared):
    builder, _ = prepared
    classes = builder_classes(builder)
    declared = [(c["name"], c["color"]) for c in classes.to_json()["classes"]]
    assert declared == list(SIX.items())  # names, colours and the id order
    assert classes.label_format == "color"


def test_shipped_classes_json_is_never_read(tmp_path):
    manual = _copy_tree(tmp_path)
    (manual / dummy.ROOT / "classes.json").write_bytes(b"\x00 not JSON {")
    examples = _read(_prepare(tmp_path, manual))
    assert sorted(examples["test"]) == _expected_names("test")


def test_zip_under_any_name_gives_the_same_examples(tmp_path, prepared):
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "my download (1).zip", "w") as archive:
        for path in sorted(DUMMY.rglob("*")):
            archive.write(path, path.relative_to(DUMMY).as_posix())
    examples = _read(_prepare(tmp_path, manual))
    for split, by_name in prepared[1].items():
        assert sorted(examples[split]) == sorted(by_name)
        for name, ex in by_name.items():
            np.testing.assert_array_equal(examples[split][name]["label"], ex["label"])
            np.testing.assert_array_equal(examples[split][name]["image"], ex["image"])


def _mask(manual, tile, part):
    return manual / dummy.ROOT / f"Tile {tile}" / "masks" / f"image_part_{part:03d}.png"


def _image(manual, tile, part):
    return manual / dummy.ROOT / f"Tile {tile}" / "images" / f"image_part_{part:03d}.jpg"


def _unknown_colour(manual):
    path = _mask(manual, 1, 7)
    rgb = np.asarray(Image.open(path).convert("RGB")).copy()
    rgb[5, 5] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    return path, "#010203"


def _missing_mask(manual):
    _mask(manual, 2, 4).unlink()
    return _image(manual, 2, 4), "has no mask"


def _wrong_size(manual):
    path = _mask(manual, 1, 2)
    Image.open(path).crop((0, 0, 30, 30)).save(path)
    return path, "mask is 30x30 but its image image_part_002.jpg is 40x36"


def _truncated_image(manual):
    path = _image(manual, 2, 9)
    path.write_bytes(path.read_bytes()[:200])
    return path, "truncated"


@pytest.mark.parametrize(
    "breakage", [_unknown_colour, _missing_mask, _wrong_size, _truncated_image]
)
def test_bad_files_are_named(tmp_path, breakage):
    manual = _copy_tree(tmp_path)
    path, words = breakage(manual)
    with pytest.raises(DataError) as info:
        _prepare(tmp_path, manual)
    assert str(path) in str(info.value) and words in str(info.value)
    assert not (tmp_path / "data" / "aerial" / "1.0.0").exists()  # nothing looks prepared


def test_missing_archive_says_where_to_put_it(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "notes.txt").write_text("x")
    with pytest.raises(aerial.ManualDownloadMissingError) as info:
        _prepare(tmp_path, manual)
    message = str(info.value)
    assert aerial.KAGGLE_URL in message and str(manual) in message and "notes.txt" in message
    assert isinstance(info.value, FileNotFoundError)


def test_prepare_dataset_dispatches_aerial(tmp_path):
    config = aerial_config.get_config()
    config.data_dir = str(tmp_path / "data")
    config.manual_dir = str(DUMMY)
    builder = datasets.prepare_dataset(config, prepare=True)
    assert builder.info.name == "aerial" and builder.info.splits["train"].num_examples == 10


def _train(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "train.py", "--config", "unet_jax/configs/aerial.py"]
        + ["--workdir", str(tmp_path / "run"), f"--config.data_dir={tmp_path / 'data'}", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_without_the_archive_exits_2_saying_where_to_put_it(tmp_path):
    manual = tmp_path / "manual"
    result = _train(tmp_path, f"--config.manual_dir={manual}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"error: The aerial imagery data was not found in the manual directory {manual}" in (
        result.stderr
    )
    assert aerial.KAGGLE_URL in result.stderr


TINY_FLAGS = [
    f"--config.manual_dir={DUMMY}",
    "--config.model.features=(4,8)",
    "--config.model.bridge_features=16",
    "--config.image_size=(32,32)",
    "--config.batch_size=4",
    "--config.eval_batch_size=4",
    "--config.num_train_steps=2",
    "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2",
    "--config.worker_count=0",
    "--config.progress_bar=False",
]


@pytest.mark.slow
def test_aerial_config_trains_a_tiny_model_end_to_end(tmp_path):
    result = _train(tmp_path, *TINY_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "checkpoints" / "2").is_dir() and (run / "best" / "2").is_dir()
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "aerial" and config["input_mode"] == "crop"
    assert config["num_classes"] == 6 and config["augment"]["rot90"] is True
    classes = json.loads((run / "classes.json").read_text())["classes"]
    assert {c["name"]: c["color"] for c in classes} == SIX
    validation = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"validation"' in line
    ]
    assert validation and "iou/Building" in validation[-1]


@pytest.mark.slow
def test_unlabeled_void_run_has_five_classes_and_reports_the_void(tmp_path):
    result = _train(
        tmp_path,
        *TINY_FLAGS,
        '--config.void_classes=("Unlabeled",)',
        "--config.augment.foreground_share=0.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["num_classes"] == 5 and config["void_classes"] == ["Unlabeled"]
    declared = json.loads((run / "classes.json").read_text())
    assert [c["name"] for c in declared["classes"]] == list(SIX)[:5]
    assert declared["void"] == ["Unlabeled"]
    validation = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"validation"' in line
    ]
    assert "iou/Water" in validation[-1] and "iou/Unlabeled" not in validation[-1]
    evaluated = subprocess.run(
        [sys.executable, "eval.py", f"--workdir={run}", f"--out={tmp_path / 'eval'}"]
        + ["--split=validation", "--progress=false"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["void_classes"] == ["Unlabeled"] and len(report["class_names"]) == 5
    assert "ignored (void: Unlabeled)" in (tmp_path / "eval" / "report.html").read_text()


def test_unlabeled_void_config_reads_unlabeled_as_ignored(prepared):
    from unet_jax.configs import aerial_cpu_unlabeled_void
    from unet_jax.data.sources import open_dataset

    builder, examples = prepared
    config = aerial_cpu_unlabeled_void.get_config()
    dataset = open_dataset(config, splits=("train",), prepare_fn=lambda c, *, prepare: builder)
    assert dataset.classes.names == tuple(SIX)[:5]
    assert dataset.classes.void == ("Unlabeled",)
    unlabeled = list(SIX).index("Unlabeled")
    seen = 0
    for i in range(len(dataset.sources["train"])):
        example = dataset.sources["train"][i]
        six = examples["train"][example["name"].decode()]["label"]
        expected = np.where(six == unlabeled, IGNORE_LABEL, six)
        np.testing.assert_array_equal(example["label"], expected)
        seen += int((six == unlabeled).sum())
    assert seen > 0  # the dummy data holds Unlabeled pixels, now ignored
