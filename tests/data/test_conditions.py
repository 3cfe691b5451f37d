"""Condition augmentation: deterministic, label untouched, uint8 in range, off is identity."""

import pickle

import numpy as np
import pytest

from unet_jax.configs import tiny
from unet_jax.data import conditions as cond
from unet_jax.data import pipeline as ip
from unet_jax.data.augment import build_train_transforms
from unet_jax.errors import ConfigError
from unet_jax.train import config_checks

CONDITIONS = pytest.mark.parametrize("condition", cond.CONDITIONS, ids=lambda c: c.name)


def _scene(height=48, width=64, seed=0):
    """A sky-over-road-like image with texture, and a label of three classes."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[: height // 2] = image[: height // 2] // 4 + 180  # bright sky
    label = np.zeros((height, width, 1), np.uint8)
    label[height // 2 :] = 1
    label[-5:, :10] = 255
    return {"image": image, "label": label, "name": "scene"}


def _apply(condition, element, seed, **fields):
    transform = condition(**{"p": 1.0, "strength": 1.0, **fields})
    return transform.random_map(element, np.random.default_rng(seed))


@CONDITIONS
def test_deterministic_for_a_seed_and_element(condition):
    element = _scene()
    first = _apply(condition, element, 7)["image"]
    again = _apply(condition, element, 7)["image"]
    np.testing.assert_array_equal(first, again)
    others = [_apply(condition, element, s)["image"] for s in range(1, 6)]
    assert any(not np.array_equal(first, o) for o in others), "the seed changes nothing"
    # Another element with the same seed gets its own result.
    assert not np.array_equal(_apply(condition, _scene(seed=1), 7)["image"], first)


@CONDITIONS
def test_changes_the_image_only_and_stays_uint8(condition):
    element = _scene(240, 320)  # sizes scale with the width: blur needs pixels to blur
    label_before = element["label"].copy()
    for seed in range(5):
        out = _apply(condition, element, seed)
        assert out["label"] is element["label"] and out["name"] == "scene"
        assert out["image"].dtype == np.uint8 and out["image"].shape == element["image"].shape
        assert not np.array_equal(out["image"], element["image"])
    np.testing.assert_array_equal(element["label"], label_before)


@CONDITIONS
def test_off_is_the_identity(condition):
    element = _scene()
    rng = np.random.default_rng(0)
    assert condition(p=0.0, strength=1.0).random_map(element, rng) is element
    if condition is not cond.Jpeg:  # at strength 0 a JPEG is still encoded (quality 90)
        out = _apply(condition, element, 3, strength=0.0)["image"]
        np.testing.assert_array_equal(out, element["image"])


@CONDITIONS
def test_probability_is_the_share_applied(condition):
    element = _scene(16, 16)
    applied = sum(_apply(condition, element, seed, p=0.3) is not element for seed in range(400))
    # Binomial(400, 0.3): sd 9.2; 4 sd either side.
    assert abs(applied - 120) <= 37


@CONDITIONS
def test_extremes_do_not_wrap_around(condition):
    # A value pushed past 255 or below 0 and wrapped would land at the other extreme.
    for value in (0, 255):
        element = {"image": np.full((48, 64, 3), value, np.uint8), "label": np.zeros((48, 64))}
        for seed in range(5):
            out = _apply(condition, element, seed)["image"]
            assert out.max() <= 230 if value == 0 else out.min() >= 25


def test_exposure_is_monotone_in_the_input():
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (4, 256, 3)).copy()
    for seed in range(20):
        out = cond.Exposure(p=1.0, strength=1.0).apply(ramp, np.random.default_rng(seed))
        assert np.all(np.diff(out[0].astype(int), axis=0) >= 0)


def test_white_balance_keeps_the_luma_of_grey():
    grey = np.full((8, 8, 3), 128, np.uint8)
    luma = np.array([0.299, 0.587, 0.114])
    for seed in range(20):
        out = cond.WhiteBalance(p=1.0, strength=1.0).apply(grey, np.random.default_rng(seed))
        assert abs(out[0, 0] @ luma - 128) <= 1.0


def test_fog_is_thicker_toward_the_horizon():
    black = np.zeros((60, 40, 3), np.uint8)
    for seed in range(10):
        out = cond.Fog(p=1.0, strength=1.0).apply(black, np.random.default_rng(seed))
        rows = out.mean(axis=(1, 2))
        assert rows[0] > rows[-1] > 0  # far (top) hazier than near (bottom)
        assert np.all(np.diff(rows) <= 0)


def test_sensor_noise_has_zero_mean():
    grey = np.full((240, 320, 3), 100, np.uint8)
    out = cond.SensorNoise(p=1.0, strength=1.0).apply(grey, np.random.default_rng(0))
    assert abs(out.mean() - 100) < 0.2 and out.std() > 1


def test_motion_blur_is_a_horizontal_box_mean():
    image = np.random.default_rng(0).integers(0, 256, (6, 20, 3), dtype=np.uint8)
    for length in (2, 5):
        left = length // 2
        padded = np.pad(image.astype(float), ((0, 0), (left, length - 1 - left), (0, 0)), "edge")
        expected = np.stack(
            [
                [np.convolve(padded[y, :, c], np.ones(length) / length, "valid") for c in range(3)]
                for y in range(6)
            ]
        ).transpose(0, 2, 1)
        np.testing.assert_array_equal(cond._motion_blur(image, length), np.rint(expected))


# ----------------------------------------------------------------------------- config


def _all_on(p=1.0):
    return {name: {"p": p, "strength": 0.8} for name in cond.NAMES}


def test_default_config_has_every_condition_and_all_are_off():
    augment = tiny.get_config().augment
    assert sorted(augment.conditions.to_dict()) == sorted(cond.NAMES)
    assert cond.build_conditions(augment.conditions) == []


def test_build_keeps_the_application_order_and_drops_p_zero():
    settings = _all_on()
    settings["fog"]["p"] = 0.0
    names = [t.name for t in cond.build_conditions(settings)]
    assert names == [n for n in cond.NAMES if n != "fog"]


@pytest.mark.parametrize(
    "conditions, pattern",
    [
        ({"snow": {"p": 0.5}}, "snow"),
        ({"fog": {"p": 0.5, "density": 1.0}}, "density"),
        ({"fog": {"p": 1.5}}, r"fog\.p=1\.5"),
        ({"rain": {"strength": -0.1}}, r"rain\.strength"),
    ],
)
def test_bad_settings_are_config_errors(conditions, pattern):
    config = tiny.get_config()
    config.augment.enabled = False  # checked even when augmentation is off
    config.augment.conditions = conditions
    with pytest.raises(ConfigError, match=pattern):
        config_checks.validate_config(config, process_count=1, local_device_count=1)


class SceneSource:
    def __init__(self, n):
        self._examples = [_scene(48, 64, seed=i) for i in range(n)]

    def __len__(self):
        return len(self._examples)

    def __getitem__(self, index):
        return self._examples[index]


def _loader_batches(augment, n=3):
    loader = ip.create_train_loader(
        SceneSource(10),
        global_batch_size=4,
        image_size=(48, 64),
        seed=1,
        augment=augment,
        worker_count=0,
    )
    iterator = iter(loader)
    try:
        return [next(iterator) for _ in range(n)]
    finally:
        iterator.close()


def test_in_the_pipeline_labels_are_those_without_conditions():
    plain = {"flip_prob": 0.5, "min_scale": 0.8, "max_scale": 1.2}
    without = _loader_batches(plain)
    with_conditions = _loader_batches({**plain, "conditions": _all_on()})
    for a, b in zip(without, with_conditions, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
        assert not np.array_equal(a["image"], b["image"])
    # grain's worker processes receive the transforms pickled.
    transforms = cond.build_conditions(_all_on())
    assert pickle.loads(pickle.dumps(transforms)) == transforms


def test_conditions_follow_the_other_transforms():
    transforms = build_train_transforms(
        height=32, width=32, augment={"conditions": {"noise": {"p": 0.5, "strength": 0.1}}}
    )
    assert isinstance(transforms[-1], cond.SensorNoise)
    off = build_train_transforms(
        height=32, width=32, augment={"enabled": False, "conditions": _all_on()}
    )
    assert not any(isinstance(t, cond.Condition) for t in off)
