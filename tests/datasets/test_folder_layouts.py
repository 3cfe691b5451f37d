"""The layouts users have: recognised where unambiguous, named by options otherwise."""

import pathlib

import numpy as np
import pytest
from PIL import Image

from datasets.common.errors import DataError
from datasets.folder import layout
from datasets.folder.layout import FileNames


def _make(root: pathlib.Path, images: str, masks: str, suffix: str = "", n: int = 5) -> None:
    (root / images).mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / images / f"a{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / masks / f"a{i}{suffix}.png")


@pytest.mark.parametrize(
    ("images", "masks", "suffix", "described"),
    [
        ("images", "masks", "", "images in images/, masks in masks/ (same names)"),
        ("images", "labels", "", "images in images/, masks in labels/ (same names)"),
        ("images", "annotations", "", "images in images/, masks in annotations/ (same names)"),
        ("img", "ann", "", "images in img/, masks in ann/ (same names)"),
        ("images", "gt", "_gt", "images in images/, masks in gt/ (a mask's name adds '_gt')"),
        (".", ".", "_mask", "masks beside the images in ./ (a mask's name adds '_mask')"),
        ("images", "images", "_label",
         "masks beside the images in images/ (a mask's name adds '_label')"),
    ],
)  # fmt: skip
def test_common_layouts_are_recognised(tmp_path, images, masks, suffix, described):
    _make(tmp_path, images, masks, suffix)
    found = layout.scan(tmp_path)
    assert found.describe() == described
    pairs = found.pairs()
    assert sorted(p.image.name for p in pairs) == [f"a{i}.png" for i in range(5)]
    assert all(p.mask.name == p.image.stem + suffix + ".png" for p in pairs)
    assert all(p.mask.parent == tmp_path / masks for p in pairs)


def test_options_name_any_layout(tmp_path):
    _make(tmp_path, "photos", "photos", "-seg")
    names = FileNames(images="photos", masks=".", mask_suffix="-seg")
    pairs = layout.scan(tmp_path, names=names).pairs()
    assert [(p.image.name, p.mask.name) for p in pairs][:1] == [("a0.png", "a0-seg.png")]
    assert len(pairs) == 5


def test_options_inside_split_folders(tmp_path):
    for split in ("train", "validation"):
        _make(tmp_path / split, "images", "labels", "_mask", n=2)
    found = layout.scan(tmp_path)
    assert {s: len(p) for s, p in found.splits.items()} == {"train": 2, "validation": 2}
    assert found.splits["train"][0].mask == tmp_path / "train" / "labels" / "a0_mask.png"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda r: (_make(r, "images", "masks"), _make(r, "images", "labels")),
            "several mask folders (masks/, labels/); pick one with --config.folder_masks=NAME",
        ),
        (
            lambda r: (_make(r, "images", "masks"), _make(r, "img", "masks")),
            "several image folders (images/, img/); pick one with --config.folder_images=NAME",
        ),
        (
            lambda r: (_make(r, ".", ".", "_mask"), _make(r, ".", ".", "_gt")),
            "masks with several suffixes (_mask, _gt); pick one with --config.folder_mask_suffix",
        ),
        (
            lambda r: _make(r, "pictures", "pictures", "-seg"),
            "no images/ folder, nor images in it",
        ),
    ],
    ids=["two_mask_folders", "two_image_folders", "two_suffixes", "nothing_known"],
)
def test_ambiguous_or_unknown_layouts_say_which_option_picks(tmp_path, build, message):
    build(tmp_path)
    with pytest.raises(DataError, match="--config.folder_") as error:
        layout.scan(tmp_path)
    assert message in str(error.value)


def test_a_mask_folder_named_by_option_must_exist(tmp_path):
    _make(tmp_path, "images", "masks")
    with pytest.raises(DataError, match=r"truth: folder not found \(--config.folder_masks\)"):
        layout.scan(tmp_path, names=FileNames(masks="truth"))
