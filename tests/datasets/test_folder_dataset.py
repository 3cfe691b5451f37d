"""The folder data set: layouts, class declarations, mask decoding, splits, cache, errors.

Oracles: the label maps the tests draw themselves (the ids each pixel must decode to),
hand-counted pixel statistics, and the split rule of `datasets.lyft_udacity.splits`.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from datasets.common.errors import DataError
from datasets.folder import open_builder
from tests.conftest import REPO_ROOT
from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.data.sources import builder_classes

COLORS = {"Building": (60, 16, 152), "Land": (132, 41, 246), "Road": (110, 193, 228)}
CLASSES_JSON = {
    "classes": [{"name": n, "color": "#{:02X}{:02X}{:02X}".format(*c)} for n, c in COLORS.items()],
    "ignore": ["#000000"],
}


def _ids(seed: int, h: int, w: int, num_classes: int) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(0, num_classes, (h, w)).astype(np.uint8)
    ids[:2, :3] = IGNORE_LABEL  # a corner the classes file marks ignored
    return ids


def _image(seed: int, h: int, w: int) -> Image.Image:
    rng = np.random.default_rng(seed + 1000)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def make_color_folder(root: pathlib.Path, n: int = 6, *, palette_every: int = 2) -> dict:
    """JPEG images of several sizes, RGB and palette-mode colour masks, a classes.json."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    palette = np.array(list(COLORS.values()) + [(0, 0, 0)] * 253, np.uint8)
    palette[255] = (0, 0, 0)
    expected = {}
    for i in range(n):
        h, w = 20 + i, 30 - i
        ids = _ids(i, h, w, 3)
        _image(i, h, w).save(root / "images" / f"im{i}.jpg", quality=90)
        if i % palette_every == 0:
            mask = Image.fromarray(ids, mode="P")
            mask.putpalette(palette.ravel().tolist())
        else:
            mask = Image.fromarray(palette[ids])
        mask.save(root / "masks" / f"im{i}.png")
        expected[f"im{i}"] = ids
    (root / "classes.json").write_text(json.dumps(CLASSES_JSON))
    return expected


def _prepare(folder, tmp_path, **kwargs):
    messages = []
    builder = open_builder(
        str(folder), data_dir=str(tmp_path / "tfds"), log=messages.append, **kwargs
    )
    return builder, messages


def _all_examples(builder) -> dict[str, dict]:
    out = {}
    for split, source in builder.as_data_source().items():
        for i in range(len(source)):
            ex = source[i]
            name = ex["name"].decode() if isinstance(ex["name"], bytes) else ex["name"]
            out[name] = {**ex, "split": split}
    return out


def test_color_masks_decode_to_the_drawn_ids(tmp_path):
    expected = make_color_folder(tmp_path / "data")
    builder, messages = _prepare(tmp_path / "data", tmp_path)
    classes = builder_classes(builder)
    assert classes.names == ("Building", "Land", "Road")
    assert classes.colors == tuple(COLORS.values()) and classes.label_format == "color"
    examples = _all_examples(builder)
    assert set(examples) == set(expected)
    for name, ids in expected.items():
        np.testing.assert_array_equal(examples[name]["label"][..., 0], ids)
        assert examples[name]["image"].shape == ids.shape + (3,)  # native size kept
    assert any("3 classes (Building, Land, Road)" in m for m in messages)
    # Training-split statistics, counted by hand from the drawn ids.
    train = [n for n, e in examples.items() if e["split"] == "train"]
    stats = builder.info.metadata["train_stats"]
    want = np.zeros(3, np.int64)
    for n in train:
        want += np.bincount(expected[n].ravel(), minlength=256)[:3]
    assert stats["pixel_counts"] == want.tolist()
    assert stats["images"] == len(train)


def test_id_masks_with_classes_file_and_ignore_values(tmp_path):
    root = tmp_path / "ids"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(5):
        ids = _ids(i, 16, 16, 4)
        ids[5, 5] = 9  # declared as ignored below
        _image(i, 16, 16).convert("L").save(root / "images" / f"a{i}.png")  # greyscale image
        Image.fromarray(ids).save(root / "masks" / f"a{i}.png")
    names = ["bg", "road", "car", "tree"]
    (root / "classes.json").write_text(
        json.dumps({"classes": [{"name": n} for n in names], "ignore": [9, 255]})
    )
    builder, _ = _prepare(root, tmp_path)
    assert builder_classes(builder).names == tuple(names)
    ex = _all_examples(builder)
    for i in range(5):
        want = _ids(i, 16, 16, 4)
        want[5, 5] = IGNORE_LABEL
        np.testing.assert_array_equal(ex[f"a{i}"]["label"][..., 0], want)
        image = ex[f"a{i}"]["image"]  # a folder of grey images: one band, as stored
        grey = np.asarray(Image.open(root / "images" / f"a{i}.png"))
        np.testing.assert_array_equal(image, grey[..., None])


@pytest.mark.parametrize("foreground", [255, 1])
def test_binary_masks_without_classes_file(tmp_path, foreground):
    root = tmp_path / "bin"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    drawn = {}
    for i in range(5):
        fg = np.random.default_rng(i).random((12, 14)) > 0.6
        _image(i, 12, 14).save(root / "images" / f"b{i}.png")
        Image.fromarray((fg * foreground).astype(np.uint8)).save(root / "masks" / f"b{i}.png")
        drawn[f"b{i}"] = fg.astype(np.uint8)
    builder, messages = _prepare(root, tmp_path)
    classes = builder_classes(builder)
    assert classes.names == ("background", "foreground") and classes.label_format == "binary"
    ex = _all_examples(builder)
    for name, fg in drawn.items():  # 255 is foreground, never "ignore"
        np.testing.assert_array_equal(ex[name]["label"][..., 0], fg)
    assert any("binary masks" in m for m in messages)


def test_id_masks_without_classes_file_get_numbered_classes(tmp_path):
    root = tmp_path / "num"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(5):
        ids = np.full((8, 8), i % 5, np.uint8)  # values 0..4 over the folder
        ids[0, 0] = 255
        _image(i, 8, 8).save(root / "images" / f"c{i}.png")
        Image.fromarray(ids).save(root / "masks" / f"c{i}.png")
    builder, _ = _prepare(root, tmp_path)
    assert builder_classes(builder).names == tuple(f"class{i}" for i in range(5))
    ex = _all_examples(builder)
    assert ex["c3"]["label"][0, 0, 0] == IGNORE_LABEL and ex["c3"]["label"][1, 1, 0] == 3


def test_split_folders_are_used_as_given(tmp_path):
    root = tmp_path / "splits"
    for split, n in (("train", 3), ("validation", 2), ("test", 1)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir()
        for i in range(n):
            _image(i, 10, 10).save(root / split / "images" / f"{split}{i}.png")
            Image.fromarray(np.zeros((10, 10), np.uint8)).save(
                root / split / "masks" / f"{split}{i}.png"
            )
    builder, _ = _prepare(root, tmp_path)
    assert {s: v.num_examples for s, v in builder.info.splits.items()} == {
        "train": 3,
        "validation": 2,
        "test": 1,
    }
    assert all(e["split"] in n for n, e in _all_examples(builder).items())


def test_grouped_split_keeps_groups_together(tmp_path):
    root = tmp_path / "groups"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for tile in range(6):
        for k in range(3):
            name = f"tile{tile}_part{k}"
            _image(tile * 3 + k, 8, 8).save(root / "images" / f"{name}.png")
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / f"{name}.png")
    builder, _ = _prepare(root, tmp_path, group_pattern=r"^(tile\d+)_")
    split_of_tile: dict[str, set] = {}
    for name, ex in _all_examples(builder).items():
        split_of_tile.setdefault(name.split("_")[0], set()).add(ex["split"])
    assert all(len(s) == 1 for s in split_of_tile.values())
    assert set().union(*split_of_tile.values()) == {"train", "validation", "test"}


def test_changed_folder_is_prepared_again_and_unchanged_one_is_reused(tmp_path):
    expected = make_color_folder(tmp_path / "data")
    builder, _ = _prepare(tmp_path / "data", tmp_path)
    first_dir = pathlib.Path(builder.data_dir)
    stamp = (first_dir / "dataset_info.json").stat().st_mtime_ns
    builder, messages = _prepare(tmp_path / "data", tmp_path)
    assert (first_dir / "dataset_info.json").stat().st_mtime_ns == stamp and not messages
    # Modify one mask: all one class now.
    name = sorted(expected)[1]
    ids = np.zeros_like(expected[name])
    Image.fromarray(np.array(list(COLORS.values()), np.uint8)[ids]).save(
        tmp_path / "data" / "masks" / f"{name}.png"
    )
    builder, messages = _prepare(tmp_path / "data", tmp_path)
    assert any("changed since it was prepared" in m for m in messages)
    np.testing.assert_array_equal(_all_examples(builder)[name]["label"][..., 0], ids)
    # Add a file: prepared again with it.
    _image(99, 9, 9).save(tmp_path / "data" / "images" / "new.jpg")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8) + np.uint8(COLORS["Road"])).save(
        tmp_path / "data" / "masks" / "new.png"
    )
    builder, _ = _prepare(tmp_path / "data", tmp_path)
    assert "new" in _all_examples(builder)


def test_bad_change_keeps_the_prepared_data(tmp_path):
    make_color_folder(tmp_path / "data")
    builder, _ = _prepare(tmp_path / "data", tmp_path)
    before = sorted(p.name for p in pathlib.Path(builder.data_dir).iterdir())
    (tmp_path / "data" / "masks" / "im0.png").unlink()
    with pytest.raises(DataError, match="im0.jpg: no mask"):
        _prepare(tmp_path / "data", tmp_path)
    assert sorted(p.name for p in pathlib.Path(builder.data_dir).iterdir()) == before


def _break(kind: str, root: pathlib.Path) -> str:
    """Damages a good colour folder; returns a regex the error must match."""
    if kind == "image_without_mask":
        _image(0, 5, 5).save(root / "images" / "lonely.png")
        return r"lonely.png: no mask"
    if kind == "mask_without_image":
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "masks" / "orphan.png")
        return r"orphan.png: no image with the stem 'orphan'"
    if kind == "size_mismatch":
        Image.fromarray(np.zeros((7, 7, 3), np.uint8)).save(root / "masks" / "im1.png")
        return r"im1.png: mask is 7x7 but its image im1.jpg is 29x21"
    if kind == "undeclared_colour":
        mask = np.array(Image.open(root / "masks" / "im1.png").convert("RGB"))
        mask[3:5, 3:6] = (1, 2, 3)
        Image.fromarray(mask).save(root / "masks" / "im1.png")
        return r"im1.png: colour\(s\) not declared in classes.json: #010203 \(6 px\)"
    if kind == "truncated_image":
        data = (root / "images" / "im2.jpg").read_bytes()
        (root / "images" / "im2.jpg").write_bytes(data[: len(data) // 2])
        return r"im2.jpg: unreadable or truncated image"
    if kind == "sixteen_bit_image":  # read as it is, but not among 8-bit RGB images
        rgb16 = np.full((24, 26, 3), 40000, np.uint16)  # im4's mask is 26x24
        Image.fromarray(rgb16[..., 0]).save(root / "images" / "im4.png")  # I;16 PNG
        (root / "images" / "im4.jpg").unlink()
        return r"im4.png: 1 band\(s\), but im0.jpg has 3"
    if kind == "truncated_mask":
        data = (root / "masks" / "im3.png").read_bytes()
        (root / "masks" / "im3.png").write_bytes(data[: len(data) // 2])
        return r"im3.png: not a readable mask file, or truncated"
    if kind == "jpeg_mask":
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "masks" / "x.jpg")
        return r"x.jpg: masks must be lossless"
    if kind == "empty":
        for p in [*(root / "images").iterdir(), *(root / "masks").iterdir()]:
            p.unlink()
        return r"images: no images"
    spec = json.loads((root / "classes.json").read_text())
    if kind == "duplicate_name":
        spec["classes"][1]["name"] = "Building"
        expected = r"classes\[1\].name: 'Building' is a duplicate"
    elif kind == "duplicate_colour":
        spec["classes"][2]["color"] = spec["classes"][0]["color"]
        expected = r"colour #3C1098 used twice"
    elif kind == "bad_hex":
        spec["classes"][0]["color"] = "#12345"
        expected = r"classes\[0\].color: '#12345' is not a colour"
    elif kind == "wrong_shape":
        spec = {"classes": {"Building": "#3C1098"}}
        expected = r"'classes' must be a non-empty list"
    else:
        raise AssertionError(kind)
    (root / "classes.json").write_text(json.dumps(spec))
    return r"classes.json: .*" + expected


BAD_INPUTS = [
    "image_without_mask",
    "mask_without_image",
    "size_mismatch",
    "undeclared_colour",
    "truncated_image",
    "sixteen_bit_image",
    "truncated_mask",
    "jpeg_mask",
    "empty",
    "duplicate_name",
    "duplicate_colour",
    "bad_hex",
    "wrong_shape",
]


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_is_a_clear_error_naming_the_file(tmp_path, kind):
    make_color_folder(tmp_path / "data")
    pattern = _break(kind, tmp_path / "data")
    with pytest.raises(DataError, match=pattern):
        _prepare(tmp_path / "data", tmp_path)
    assert not (tmp_path / "tfds").exists() or not any((tmp_path / "tfds").rglob("*.array_record*"))


def test_id_at_or_above_the_class_count(tmp_path):
    root = tmp_path / "ids"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(5):
        ids = np.zeros((6, 6), np.uint8)
        ids[0, :4] = 2 if i == 1 else 0
        _image(i, 6, 6).save(root / "images" / f"a{i}.png")
        Image.fromarray(ids).save(root / "masks" / f"a{i}.png")
    (root / "classes.json").write_text(json.dumps({"classes": [{"name": "x"}, {"name": "y"}]}))
    with pytest.raises(DataError, match=r"a1.png: class id 2 \(4 px\) is at or above the number"):
        _prepare(root, tmp_path)


def test_command_line_reports_bad_input_without_traceback(tmp_path):
    make_color_folder(tmp_path / "data")
    _break("undeclared_colour", tmp_path / "data")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "datasets.folder",
            str(tmp_path / "data"),
            "--data_dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "#010203 (6 px)" in result.stderr and "Traceback" not in result.stderr
