"""input_mode="crop": native-scale random crops, and the tiled validation of crop runs.

Oracles: a checkerboard image whose label is its own thresholded pixels (alignment), the
source image itself (a scale-1 crop is a verbatim window of it), and a by-hand confusion
matrix of whole images (tiled validation counts every pixel exactly once).
"""

import numpy as np
import pytest

from unet_jax.data.augment import AugmentConfig, RandomScaleCrop, build_train_transforms
from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.evaluation.metrics import confusion_counts
from unet_jax.evaluation.tiles import TiledSource, tile_starts


def _apply(transforms, example, rng):
    for t in transforms:
        example = t.random_map(example, rng) if hasattr(t, "random_map") else t.map(example)
    return example


def _checkerboard(height, width, cell_h, cell_w):
    yy, xx = np.mgrid[:height, :width]
    return ((yy // cell_h + xx // cell_w) % 2).astype(np.uint8)


def test_scale_one_crop_is_a_window_of_the_native_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    label = rng.integers(0, 6, (70, 90, 1), dtype=np.uint8)
    transforms = build_train_transforms(
        height=32, width=48, augment={"enabled": False, "input_mode": "crop"}
    )
    for seed in range(5):
        out = _apply(transforms, {"image": image, "label": label}, np.random.default_rng(seed))
        # Find the window: it must occur verbatim in the source (no resampling at scale 1).
        found = [
            (y, x)
            for y in range(70 - 32 + 1)
            for x in range(90 - 48 + 1)
            if np.array_equal(image[y : y + 32, x : x + 48], out["image"])
        ]
        assert len(found) == 1
        y, x = found[0]
        np.testing.assert_array_equal(out["label"][..., 0], label[y : y + 32, x : x + 48, 0])


def test_crop_of_a_small_image_is_padded_with_ignore():
    image = np.full((20, 30, 3), 200, np.uint8)
    label = np.full((20, 30, 1), 3, np.uint8)
    crop = RandomScaleCrop(1.0, 1.0, 32, 48, relative_to="input")
    out = crop.random_map({"image": image, "label": label}, np.random.default_rng(1))
    assert out["image"].shape == (32, 48, 3)
    assert (out["label"] == 3).sum() == 20 * 30  # the whole image, unscaled
    assert (out["label"] == IGNORE_LABEL).sum() == 32 * 48 - 20 * 30
    assert ((out["image"][..., 0] == 200) == (out["label"][..., 0] == 3)).all()


@pytest.mark.parametrize("seed", range(6))
def test_crop_scale_flip_rot90_keep_labels_aligned(seed):
    pattern = _checkerboard(150, 210, 15, 21)
    image = np.repeat(pattern[..., None] * 255, 3, axis=-1)
    augment = {
        "input_mode": "crop",
        "min_scale": 0.6,
        "max_scale": 1.6,
        "flip_prob": 0.5,
        "rot90": True,
    }
    transforms = build_train_transforms(height=64, width=64, augment=augment)
    out = _apply(
        transforms, {"image": image, "label": pattern[..., None]}, np.random.default_rng(seed)
    )
    img, lab = out["image"][..., 0].astype(int), out["label"][..., 0]
    real = lab != IGNORE_LABEL
    lo, hi = img[real].min(), img[real].max()
    confident = real & (np.abs(img - (lo + hi) / 2) > (hi - lo) / 4)
    assert confident.sum() > 0.5 * real.sum() > 0
    np.testing.assert_array_equal(lab[confident], (img[confident] > (lo + hi) / 2).astype(np.uint8))


def test_crop_scale_is_relative_to_the_native_image():
    # A cell of 10 px stays ~10 px at scale 1 whatever the output size; "resize" mode
    # would squeeze the 200-px image into 40 px (cells of 2 px).
    pattern = _checkerboard(200, 200, 10, 10)
    image = np.repeat(pattern[..., None] * 255, 3, axis=-1)
    for mode, cell in (("crop", 10), ("resize", 2)):
        transforms = build_train_transforms(
            height=40,
            width=40,
            augment={
                "input_mode": mode,
                "min_scale": 1.0,
                "max_scale": 1.0,
                "flip_prob": 0.0,
                "brightness": 0,
                "contrast": 0,
                "saturation": 0,
            },
        )
        lab = _apply(
            transforms, {"image": image, "label": pattern[..., None]}, np.random.default_rng(0)
        )["label"][..., 0]
        runs = np.diff(np.flatnonzero(np.diff(lab[20].astype(int)) != 0))
        assert np.median(runs) == cell


def test_unknown_input_mode_is_rejected():
    with pytest.raises(ValueError, match="input_mode must be one of"):
        AugmentConfig(input_mode="tile")


def test_tile_starts_cover_the_side():
    assert tile_starts(600, 256) == [0, 256, 344]
    assert tile_starts(256, 256) == [0] and tile_starts(100, 256) == [0]


def test_tiled_validation_counts_every_pixel_once():
    rng = np.random.default_rng(3)
    examples = []
    for h, w in ((70, 50), (32, 32), (20, 45), (33, 64)):
        label = rng.integers(0, 4, (h, w, 1)).astype(np.uint8)
        label[0, 0] = IGNORE_LABEL
        examples.append({"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "label": label})
    tiles = TiledSource(examples, (32, 32))
    # A "model" that predicts from the pixel itself: (red channel) % 4, tile by tile.
    want = sum(
        confusion_counts(
            (e["image"][None, ..., 0] % 4).astype(np.int64), e["label"][None, ..., 0], num_classes=4
        )
        for e in examples
    )
    got = np.zeros((4, 4), np.int64)
    for k in range(len(tiles)):
        t = tiles[k]
        assert t["image"].shape == (32, 32, 3) and t["label"].shape == (32, 32, 1)
        got += confusion_counts(
            (t["image"][None, ..., 0] % 4).astype(np.int64), t["label"][None, ..., 0], num_classes=4
        )
    np.testing.assert_array_equal(got, want)
