"""The data fingerprint of a small made-up split, against values computed by hand."""

import numpy as np

from unet_jax.data import fingerprint as fp


def _example(label, name):
    label = np.asarray(label, np.uint8)
    return {"image": np.zeros((*label.shape, 3), np.uint8), "label": label[..., None], "name": name}


def _made_up():
    # a_1: 4x6, left half class 0, right half class 1.
    a = np.zeros((4, 6), np.uint8)
    a[:, 3:] = 1
    # a_2: 2x4, class 0, one ignored pixel and one pixel of class 2.
    b = np.zeros((2, 4), np.uint8)
    b[0, 0] = 255
    b[1, 3] = 2
    return [_example(a, "a_1"), _example(b, "a_2")]


def test_fingerprint_of_a_made_up_split_equals_the_hand_computed_one():
    got = fp.fingerprint(_made_up(), num_classes=4, group_pattern=r"^(\w)_")
    # By hand. Distances to the nearest other pixel or border in a 4x3 block: rows give
    # 1,2,2,1 and columns 1,2,1, the minimum of both: 3+4+4+3 = 14 over 12 pixels. In the
    # 2-row image every class-0 pixel is 1 from the border: 6 over 6.
    assert got.images == 2
    assert got.groups == 1  # both names start with "a_"
    assert (got.median_size, got.min_size, got.max_size) == ((3, 5), (2, 4), (4, 6))
    np.testing.assert_allclose(got.class_frequency, (18 / 31, 12 / 31, 1 / 31, 0.0))
    np.testing.assert_allclose(got.class_thickness, (20 / 18, 14 / 12, 1.0, 0.0))
    assert got.class_region_px == (9.0, 12.0, 1.0, 0.0)  # class 0: regions of 12 and 6 px


def test_without_a_group_pattern_every_image_is_a_group():
    assert fp.fingerprint(_made_up(), num_classes=4).groups == 2


def test_a_line_one_pixel_wide_is_one_pixel_thick():
    label = np.zeros((9, 9), np.uint8)
    label[1:8, 4] = 1
    got = fp.fingerprint([_example(label, "x")], num_classes=2)
    assert got.class_thickness[1] == 1.0
    assert got.class_region_px[1] == 7.0


def test_large_splits_are_sampled_evenly():
    assert fp.sample_indices(5, limit=10) == [0, 1, 2, 3, 4]
    picked = fp.sample_indices(1000, limit=5)
    assert picked == [0, 250, 500, 749, 999]
