"""Tests of unet_jax.data.augment: geometry oracles, label safety, colour formulas."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from unet_jax.data.augment import (
    AugmentConfig,
    PhotometricJitter,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Resize,
    adjust_color,
    build_train_transforms,
)
from unet_jax.data.augment_defaults import RGB_SATURATION
from unet_jax.data.classes import IGNORE_LABEL


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _example(image, label, name="dataA/x.png"):
    return {"image": image, "label": label, "name": name}


def _checkerboard(height, width, cell_h, cell_w):
    yy, xx = np.mgrid[:height, :width]
    return ((yy // cell_h + xx // cell_w) % 2).astype(np.uint8)


def _apply(transforms, example, rng):
    for t in transforms:
        example = t.random_map(example, rng) if hasattr(t, "random_map") else t.map(example)
    return example


# ----------------------------------------------------------------------------- Resize


def test_resize_label_upscale_is_pixel_replication():
    label = _rng(0).integers(0, 13, (6, 5, 1), dtype=np.uint8)
    image = _rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    out = Resize(18, 10).map(_example(image, label))
    # Integer upscale with NEAREST must replicate each id into a 3x2 block.
    expected = np.repeat(np.repeat(label[..., 0], 3, axis=0), 2, axis=1)
    np.testing.assert_array_equal(out["label"][..., 0], expected)
    assert out["label"].shape == (18, 10, 1) and out["label"].dtype == np.uint8
    assert out["image"].shape == (18, 10, 3) and out["image"].dtype == np.uint8
    assert out["name"] == "dataA/x.png"


def test_resize_area_downscale_is_block_mean_and_labels_stay_ids():
    rng = _rng(2)
    image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    label = rng.choice(np.array([1, 7, 255], np.uint8), size=(8, 12))
    out = Resize(4, 6, method="area").map(_example(image, label))
    block_mean = image.reshape(4, 2, 6, 2, 3).astype(np.float64).mean(axis=(1, 3))
    # PIL works in fixed point: allow 1 grey level.
    assert np.abs(out["image"].astype(np.float64) - block_mean).max() <= 1.0
    # Each output id is one of the 4 ids of its source block, never a blend.
    blocks = label.reshape(4, 2, 6, 2).transpose(0, 2, 1, 3).reshape(4, 6, 4)
    assert all(out["label"][y, x] in blocks[y, x] for y in range(4) for x in range(6)), (
        "label was interpolated"
    )


def test_resize_skips_when_already_that_size():
    ex = _example(np.zeros((5, 7, 3), np.uint8), np.zeros((5, 7, 1), np.uint8))
    assert Resize(5, 7).map(ex) is ex


def test_resize_rejects_bad_examples_naming_them():
    bad_dtype = _example(np.zeros((4, 4, 3), np.float64), np.zeros((4, 4, 1), np.uint8), "b.png")
    with pytest.raises(ValueError, match=r"b\.png.*float64"):
        Resize(2, 2).map(bad_dtype)
    mismatched = _example(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 1), np.uint8), "c.png")
    with pytest.raises(ValueError, match=r"c\.png"):
        Resize(2, 2).map(mismatched)
    with pytest.raises(ValueError, match="method"):
        Resize(2, 2, method="lanczos")


# ----------------------------------------------------------------------------- Flip


def test_flip_mirrors_image_and_label_together():
    image = _rng(3).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    label = _rng(4).integers(0, 13, (4, 6, 1), dtype=np.uint8)
    out = RandomHorizontalFlip(p=1.0).random_map(_example(image, label), _rng(0))
    np.testing.assert_array_equal(out["image"], image[:, ::-1])
    np.testing.assert_array_equal(out["label"], label[:, ::-1])
    same = RandomHorizontalFlip(p=0.0).random_map(_example(image, label), _rng(0))
    np.testing.assert_array_equal(same["image"], image)


def test_flip_probability():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    ex = _example(image, np.zeros((2, 3), np.uint8))
    flip = RandomHorizontalFlip(p=0.3)
    flipped = sum(
        not np.array_equal(flip.random_map(ex, _rng(s))["image"], image) for s in range(2000)
    )
    # Binomial(2000, 0.3): mean 600, sd ~20.
    assert 520 < flipped < 680


# ----------------------------------------------------------------------------- Scale-crop


def test_scale_crop_upscale_is_a_crop_of_the_replicated_label():
    # Oracle: with scale 2 the label must be a 16x20 window of the label with
    # every pixel replicated into a 2x2 block.
    label = _rng(5).integers(0, 13, (16, 20), dtype=np.uint8)
    image = np.repeat(label[..., None] * 20, 3, axis=-1)
    big = np.repeat(np.repeat(label, 2, axis=0), 2, axis=1)
    t = RandomScaleCrop(2.0, 2.0, 16, 20)
    offsets = set()
    for seed in range(20):
        out = t.random_map(_example(image, label), _rng(seed))
        matches = [
            (y, x)
            for y in range(17)
            for x in range(21)
            if np.array_equal(out["label"], big[y : y + 16, x : x + 20])
        ]
        assert matches, f"seed {seed}: label is not a window of the 2x label"
        offsets.add(matches[0])
    assert len(offsets) > 5, "crop offsets are not random"


def test_scale_crop_downscale_pads_with_ignore():
    # 2x2 blocks of one id shrink by 0.5 to single pixels, pasted at a random spot.
    small = _rng(6).integers(0, 13, (8, 10), dtype=np.uint8)
    label = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    image = np.repeat(label[..., None] * 19 + 1, 3, axis=-1)
    t = RandomScaleCrop(0.5, 0.5, 16, 20, image_pad_value=0)
    for seed in range(10):
        out = t.random_map(_example(image, label), _rng(seed))
        ys, xs = np.nonzero(out["label"] != IGNORE_LABEL)
        y0, x0 = ys.min(), xs.min()
        np.testing.assert_array_equal(out["label"][y0 : y0 + 8, x0 : x0 + 10], small)
        assert (out["label"] != IGNORE_LABEL).sum() == 80
        # Padded image pixels hold the pad value, real ones never do here.
        np.testing.assert_array_equal(out["image"][..., 0] == 0, out["label"] == IGNORE_LABEL)


def test_scale_crop_any_input_size_gives_output_size():
    t = RandomScaleCrop(0.6, 1.7, 32, 48)
    image = np.zeros((75, 100, 3), np.uint8)
    for seed in range(10):
        out = t.random_map(_example(image, np.zeros((75, 100, 1), np.uint8)), _rng(seed))
        assert out["image"].shape == (32, 48, 3) and out["label"].shape == (32, 48, 1)


@pytest.mark.parametrize("seed", range(25))
def test_full_train_chain_keeps_image_and_label_aligned(seed):
    # Checkerboard image whose label is the same pattern: after scale-crop,
    # flip and jitter, every real pixel's label must equal the thresholded image
    # (pixels blended across a cell edge are left out). A flip or crop
    # applied to only one of the two breaks this for most pixels.
    pattern = _checkerboard(96, 128, 12, 16)
    image = np.repeat(pattern[..., None] * 255, 3, axis=-1)
    transforms = build_train_transforms(
        height=64, width=80, augment={"min_scale": 0.5, "max_scale": 2.0, "flip_prob": 0.5}
    )
    out = _apply(transforms, _example(image, pattern[..., None]), _rng(seed))
    img, lab = out["image"][..., 0].astype(int), out["label"][..., 0]
    real = lab != IGNORE_LABEL
    # Jitter moves the two grey levels; split at their midpoint and leave out
    # the middle half of the range (pixels blended across a cell edge).
    lo, hi = img[real].min(), img[real].max()
    assert hi - lo > 100
    confident = real & (np.abs(img - (lo + hi) / 2) > (hi - lo) / 4)
    assert confident.sum() > 0.5 * real.sum() > 0
    expected = (img[confident] > (lo + hi) / 2).astype(np.uint8)
    np.testing.assert_array_equal(lab[confident], expected)


def test_labels_only_take_source_values_or_ignore():
    ids = np.array([0, 3, 7, 12], np.uint8)
    rng = _rng(7)
    label = rng.choice(ids, size=(40, 50, 1))
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    transforms = build_train_transforms(height=32, width=32, augment={"min_scale": 0.4})
    seen = set()
    for seed in range(30):
        out = _apply(transforms, _example(image, label), _rng(seed))
        seen |= set(np.unique(out["label"]).tolist())
    assert seen <= {0, 3, 7, 12, IGNORE_LABEL}
    assert {0, 3, 7, 12} <= seen


def test_scale_crop_validates_arguments():
    with pytest.raises(ValueError, match="min_scale"):
        RandomScaleCrop(1.5, 1.0, 8, 8)
    with pytest.raises(ValueError, match="image_pad_value"):
        RandomScaleCrop(0.5, 1.0, 8, 8, image_pad_value=300)


# ----------------------------------------------------------------------------- Colour


def _mid_range_image(seed, shape=(16, 16, 3)):
    return _rng(seed).integers(60, 196, shape, dtype=np.uint8)


def test_adjust_color_brightness_matches_formula():
    image = _rng(8).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for b in (0.5, 1.3):
        out = adjust_color(image, brightness=b)
        ref = np.clip(image.astype(np.float64) * b, 0, 255)
        assert np.abs(out - ref).max() <= 0.5 + 1e-6


def test_adjust_color_contrast_zero_is_mean_grey():
    image = _rng(9).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = adjust_color(image, contrast=0.0)
    mean_luma = (image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).mean()
    assert np.abs(out.astype(np.float64) - mean_luma).max() <= 0.5 + 1e-6


def test_adjust_color_saturation_zero_is_pil_greyscale():
    image = _rng(10).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = adjust_color(image, saturation=0.0)
    grey = np.asarray(Image.fromarray(image).convert("L")).astype(int)
    for c in range(3):
        assert np.abs(out[..., c].astype(int) - grey).max() <= 1


def test_adjust_color_hue_keeps_luma_and_full_turn_is_identity():
    image = _mid_range_image(11)
    np.testing.assert_array_equal(adjust_color(image, hue=1.0), image)
    grey = np.full((4, 4, 3), 90, np.uint8)
    np.testing.assert_array_equal(adjust_color(grey, hue=0.37), grey)
    # Small shift on mid-range colours: no clipping, so luma is kept.
    shifted = adjust_color(image, hue=0.05)
    assert not np.array_equal(shifted, image)
    luma = lambda x: x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luma(shifted) - luma(image)).max() <= 1.0


def test_adjust_color_identity_returns_input():
    image = _mid_range_image(12)
    assert adjust_color(image) is image


def test_jitter_range_and_determinism():
    grey = np.full((4, 4, 3), 100, np.uint8)
    label = np.full((4, 4, 1), 5, np.uint8)
    jitter = PhotometricJitter(brightness=0.2)
    values = []
    for seed in range(200):
        out = jitter.random_map(_example(grey, label), _rng(seed))
        assert out["label"] is label
        values.append(int(out["image"][0, 0, 0]))
        again = jitter.random_map(_example(grey, label), _rng(seed))
        np.testing.assert_array_equal(again["image"], out["image"])
    assert 80 <= min(values) < 85 and 115 < max(values) <= 120
    assert len(set(values)) > 20


def test_jitter_validates_strengths():
    with pytest.raises(ValueError, match="contrast"):
        PhotometricJitter(contrast=-0.1)
    with pytest.raises(ValueError, match="hue"):
        PhotometricJitter(hue=0.7)


# ----------------------------------------------------------------------------- Config


def test_config_from_dict_configdict_and_bool():
    assert AugmentConfig.from_any(None) == AugmentConfig()
    assert AugmentConfig.from_any(False).enabled is False
    cfg = AugmentConfig.from_any({"flip_prob": 0.0, "hue": 0.1})
    assert cfg.flip_prob == 0.0 and cfg.hue == 0.1 and cfg.min_scale == AugmentConfig().min_scale
    cd = ml_collections.ConfigDict({"min_scale": 0.9, "max_scale": 1.1})
    assert AugmentConfig.from_any(cd).max_scale == 1.1
    with pytest.raises(ValueError, match="flip_probability"):
        AugmentConfig.from_any({"flip_probability": 0.5})
    with pytest.raises(TypeError, match="augment"):
        AugmentConfig.from_any(3)


def test_build_train_transforms_switches():
    off = build_train_transforms(height=8, width=8, augment=False)
    assert [type(t) for t in off] == [Resize]
    full = build_train_transforms(height=8, width=8, augment={"hue": 0.1})
    assert [type(t) for t in full] == [RandomScaleCrop, RandomHorizontalFlip, PhotometricJitter]
    plain = build_train_transforms(
        height=8,
        width=8,
        augment=dict(
            min_scale=1.0,
            max_scale=1.0,
            flip_prob=0.0,
            brightness=0.0,
            contrast=0.0,
            saturation=0.0,
        ),
    )
    assert [type(t) for t in plain] == [Resize]


def test_augment_defaults_are_the_default_config_values():
    # One set of numbers: a config that leaves a field out gets what default.py states.
    from unet_jax.configs import default

    stated = default.get_config().augment.to_dict()
    del stated["enabled"]  # off in the reference recipe, on for an explicit AugmentConfig()
    # Unset in default.py: the data decides, 8-bit RGB gets AugmentConfig's value.
    assert stated["saturation"] is None
    stated["saturation"] = RGB_SATURATION
    assert {name: getattr(AugmentConfig(), name) for name in stated} == stated
