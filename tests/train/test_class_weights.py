"""Tests for unet_jax.train.class_weights against hand-computed numbers, and the config field."""

import sys

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from unet_jax.train import class_weights as cw

# 4 classes, 5 training images of 200 labelled pixels each (ignored pixels not counted).
# Class 0 is in all 5 images, class 1 in 3, class 2 in 1, class 3 in none.
PIXELS = np.array([600, 300, 100, 0])
PRESENT = np.array([1000, 600, 200, 0])


def test_inverse_frequency_by_hand():
    # f = (0.6, 0.3, 0.1); 1/f = (5/3, 10/3, 10), mean 5 -> (1/3, 2/3, 2); absent class 0.
    got = cw.class_weights_from_counts(PIXELS, method="inverse_frequency")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [1 / 3, 2 / 3, 2.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(got[:3].mean(), 1.0, rtol=1e-6)


def test_median_frequency_by_hand():
    # f_c = pixels / pixels of images containing c = (0.6, 0.5, 0.5); median 0.5;
    # raw = (5/6, 1, 1), mean 17/18 -> (15/17, 18/17, 18/17). Class 2 is rare overall but
    # common where it appears, so it is not boosted the way inverse frequency boosts it.
    got = cw.class_weights_from_counts(
        PIXELS, method="median_frequency", present_pixel_counts=PRESENT
    )
    np.testing.assert_allclose(got, [15 / 17, 18 / 17, 18 / 17, 0.0], rtol=1e-6)


def test_median_frequency_even_number_of_classes_by_hand():
    # f = (0.4, 0.2, 0.5, 0.2), median of (0.2, 0.2, 0.4, 0.5) = 0.3;
    # raw = (0.75, 1.5, 0.6, 1.5), mean 1.0875 -> (20, 40, 16, 40) / 29.
    got = cw.class_weights_from_counts(
        [40, 10, 30, 20], method="median_frequency", present_pixel_counts=[100, 50, 60, 100]
    )
    np.testing.assert_allclose(got, np.array([20, 40, 16, 40]) / 29, rtol=1e-6)


@pytest.mark.parametrize("method", cw.METHODS)
def test_classes_without_pixels_get_zero_never_inf_or_nan(method):
    pixels = np.array([0, 5, 0, 1_000_000, 1])
    present = np.array([0, 100, 0, 2_000_000, 50])
    got = cw.class_weights_from_counts(pixels, method=method, present_pixel_counts=present)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got[[0, 2]], 0.0)
    assert np.all(got[[1, 3, 4]] > 0)
    np.testing.assert_allclose(got[[1, 3, 4]].mean(), 1.0, rtol=1e-6)
    # A single present class gets weight 1.
    np.testing.assert_array_equal(
        cw.class_weights_from_counts([0, 7], method=method, present_pixel_counts=[0, 9]), [0, 1]
    )


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="all 0"):
        cw.class_weights_from_counts([0, 0], method="inverse_frequency")
    with pytest.raises(ValueError, match=">= 0"):
        cw.class_weights_from_counts([3, -1], method="inverse_frequency")
    with pytest.raises(ValueError, match="1-D"):
        cw.class_weights_from_counts([[3, 1]], method="inverse_frequency")
    with pytest.raises(ValueError, match="needs present_pixel_counts"):
        cw.class_weights_from_counts([3, 1], method="median_frequency")
    with pytest.raises(ValueError, match="present_pixel_counts must be >= pixel_counts"):
        cw.class_weights_from_counts([3, 1], method="median_frequency", present_pixel_counts=[2, 5])
    with pytest.raises(ValueError, match="'median'"):
        cw.class_weights_from_counts([3, 1], method="median")


def test_resolve_none_tuple_and_names():
    assert cw.resolve_class_weights(None, num_classes=4) is None
    got = cw.resolve_class_weights((1, 2.5, 0, 3), num_classes=4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [1, 2.5, 0, 3])
    np.testing.assert_allclose(
        cw.resolve_class_weights("inverse_frequency", num_classes=4, pixel_counts=PIXELS),
        [1 / 3, 2 / 3, 2.0, 0.0],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        cw.resolve_class_weights(
            "median_frequency", num_classes=4, pixel_counts=PIXELS, present_pixel_counts=PRESENT
        ),
        [15 / 17, 18 / 17, 18 / 17, 0.0],
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "value, kwargs, match",
    [
        ((1.0, 2.0), {}, r"config.class_weights=\(1.0, 2.0\): expected 4 weights"),
        ((1.0, -2.0, 1.0, 1.0), {}, r"config.class_weights=\(1.0, -2.0, 1.0, 1.0\).*>= 0"),
        ((1.0, float("nan"), 1.0, 1.0), {}, r"config.class_weights=.*finite"),
        ((0.0, 0.0, 0.0, 0.0), {}, r"config.class_weights=.*at least one weight"),
        (("a", 1.0, 1.0, 1.0), {}, r"config.class_weights=\('a'"),
        (3.0, {}, r"config.class_weights=3.0: expected None"),
        ("inverse_frequncy", {}, r"config.class_weights='inverse_frequncy': unknown name"),
        ("inverse_frequency", {}, r"config.class_weights='inverse_frequency' needs .*pixel_counts"),
        (
            "median_frequency",
            {"pixel_counts": PIXELS},
            r"config.class_weights='median_frequency' needs .*present_pixel_counts",
        ),
        (
            "inverse_frequency",
            {"pixel_counts": PIXELS[:3]},
            r"config.class_weights='inverse_frequency'.*pixel_counts has shape \(3,\)",
        ),
        (
            "median_frequency",
            {"pixel_counts": PIXELS, "present_pixel_counts": PIXELS // 2},
            r"config.class_weights='median_frequency': present_pixel_counts must be >=",
        ),
    ],
)
def test_resolve_errors_name_the_field_and_value(value, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cw.resolve_class_weights(value, num_classes=4, **kwargs)


@pytest.mark.parametrize(
    "argument, want",
    [
        ("--config.class_weights=inverse_frequency", "inverse_frequency"),
        ("--config.class_weights=median_frequency", "median_frequency"),
        ("--config.class_weights=(1.0,2.0)", (1.0, 2.0)),
        ("--config.class_weights=None", None),
        (None, None),
    ],
)
def test_command_line_accepts_a_name_or_a_tuple(monkeypatch, argument, want):
    # As train.py defines the flag; config_flags reads the overrides from sys.argv.
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", "unet_jax/configs/default.py", flag_values=values, lock_config=True
    )
    argv = ["train.py", "--config=unet_jax/configs/default.py"] + ([argument] if argument else [])
    monkeypatch.setattr(sys, "argv", argv)
    values(argv)
    assert values.config.class_weights == want
    assert values.config.focal_gamma == 2.0 and values.config.focal_weight == 1.0
