"""Class-aware crop sampling (augment.foreground_share / foreground_classes).

Oracles: a single marked pixel per example (a centred crop holds it in its middle 2x2,
a random crop almost never: 4 in 49 x 49 offsets), the binomial bound on the share of such
crops, crops taken with sampling off (which miss small blobs), a single-host run and a
loader started at step 0 (resume and hosts), and each example's own index written in its
image (disjoint host slices).
"""

import math

import numpy as np
import pytest

from unet_jax.configs import default
from unet_jax.data import pipeline as ip
from unet_jax.data.augment import AugmentConfig, build_train_transforms
from unet_jax.errors import ConfigError
from unet_jax.train import config_checks

SIZE, CROP = 64, 16


class MarkedPixels:
    """64x64 examples: background 0, one pixel of class 1 and one of class 2 somewhere inside
    (at least CROP from the border, so a centred crop is never clipped), and a 3x3 blob of
    class 3; the image's red channel holds the example's index."""

    def __init__(self, num_examples: int, *, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.examples, self.pixels = [], []
        for i in range(num_examples):
            label = np.zeros((SIZE, SIZE), np.uint8)
            spots = rng.integers(CROP, SIZE - CROP, (3, 2))
            while min(np.abs(spots[a] - spots[b]).max() for a, b in ((0, 1), (0, 2), (1, 2))) < 3:
                spots = rng.integers(CROP, SIZE - CROP, (3, 2))
            for c, (y, x) in enumerate(spots[:2], start=1):
                label[y, x] = c
            y, x = spots[2]
            label[y - 1 : y + 2, x - 1 : x + 2] = 3
            image = np.zeros((SIZE, SIZE, 3), np.uint8)
            image[..., 0] = i
            image[..., 1] = label * 60  # the label is visible in the image too
            self.examples.append({"image": image, "label": label[..., None], "name": f"e{i}"})
            self.pixels.append({c: tuple(spots[c - 1]) for c in (1, 2)})

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def _batches(source, n, **kwargs):
    args = dict(global_batch_size=8, image_size=(CROP, CROP), seed=3, worker_count=0)
    args.update(kwargs)
    iterator = iter(ip.create_train_loader(source, **args))
    try:
        return [next(iterator) for _ in range(n)]
    finally:
        iterator.close()


def _plain_crops(**sampling):
    return {"enabled": False, "input_mode": "crop", **sampling}


def _centre_classes(labels):
    """The largest class id in each crop's middle 2x2 (0: background only)."""
    middle = labels[:, CROP // 2 - 1 : CROP // 2 + 1, CROP // 2 - 1 : CROP // 2 + 1]
    return middle.max(axis=(1, 2))


@pytest.mark.parametrize("share", [0.0, 1 / 3, 0.8])
def test_share_of_centred_crops_matches_the_setting(share):
    steps = 60
    batches = _batches(MarkedPixels(40), steps, augment=_plain_crops(foreground_share=share))
    labels = np.concatenate([b["label"] for b in batches])
    centred = int((_centre_classes(labels) > 0).sum())
    n = len(labels)
    # A random crop's middle 2x2 holds a given pixel at 4 of its 49**2 offsets, meets the
    # 3x3 blob at 16: two pixels and the blob.
    p = share + (1 - share) * (4 + 4 + 16) / (SIZE - CROP + 1) ** 2
    assert abs(centred - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1, (centred, n * p)


def test_centred_crops_aim_only_at_the_chosen_classes():
    batches = _batches(
        MarkedPixels(40),
        30,
        augment=_plain_crops(foreground_share=1.0, foreground_classes=(2,)),
    )
    classes = _centre_classes(np.concatenate([b["label"] for b in batches]))
    assert (classes == 2).all()


def test_every_centred_crop_holds_a_chosen_class_under_scale_flip_and_rot90():
    source = MarkedPixels(20, seed=1)
    augment = {
        "input_mode": "crop",
        "min_scale": 1.0,
        "max_scale": 1.6,
        "flip_prob": 0.5,
        "rot90": True,
        "foreground_classes": (3,),
    }

    def holding(share):
        transforms = build_train_transforms(
            height=CROP, width=CROP, augment={**augment, "foreground_share": share}
        )
        held = []
        for seed in range(60):
            rng = np.random.default_rng(seed)
            example = source[seed % len(source)]
            for t in transforms:
                example = t.random_map(example, rng) if hasattr(t, "random_map") else t.map(example)
            held.append((example["label"] == 3).any())
        return np.array(held)

    assert holding(1.0).all()
    assert holding(0.0).mean() < 0.5  # the oracle: random crops miss the 3x3 blob


def test_examples_without_a_chosen_class_get_random_crops():
    source = MarkedPixels(8)
    transforms = build_train_transforms(
        height=CROP, width=CROP, augment=_plain_crops(foreground_share=1.0, foreground_classes=(7,))
    )
    off = build_train_transforms(height=CROP, width=CROP, augment=_plain_crops())
    for i in range(8):
        a = transforms[0].random_map(source[i], np.random.default_rng(i))
        b = off[0].random_map(source[i], np.random.default_rng(i))
        np.testing.assert_array_equal(a["label"], b["label"])


@pytest.mark.parametrize("worker_count", [0, 1])
def test_resume_across_class_aware_crops_is_bit_identical(worker_count):
    source = MarkedPixels(24)
    augment = {"input_mode": "crop", "foreground_share": 0.5, "rot90": True}
    reference = _batches(source, 7, augment=augment)
    resumed = _batches(source, 3, augment=augment, start_step=4, worker_count=worker_count)
    for k, (a, b) in enumerate(zip(reference[4:], resumed, strict=True)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"batch {4 + k} {key}")


def test_two_hosts_draw_disjoint_slices_of_the_single_host_batches():
    source = MarkedPixels(16)
    augment = _plain_crops(foreground_share=0.5)
    whole = _batches(source, 2, augment=augment)
    halves = [
        _batches(source, 2, augment=augment, process_index=p, process_count=2) for p in (0, 1)
    ]
    for k in range(2):
        for key in ("image", "label"):
            joined = np.concatenate([halves[0][k][key], halves[1][k][key]])
            np.testing.assert_array_equal(joined, whole[k][key])
    # The first epoch's 16 examples (2 steps of 8), each read by exactly one host.
    seen = [{int(v) for b in host for v in b["image"][..., 0].max(axis=(1, 2))} for host in halves]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(16))


@pytest.mark.parametrize(
    "field, value",
    [
        ("foreground_share", 1.5),
        ("foreground_share", -0.1),
        ("foreground_classes", (1, 1)),
        ("foreground_classes", (255,)),
        ("foreground_classes", ()),
    ],
)
def test_bad_settings_are_config_errors(field, value):
    config = default.get_config()
    config.input_mode = "crop"
    config.augment[field] = value
    with pytest.raises(ConfigError, match=f"config.augment: {field}"):
        config_checks._check_augment(config)
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})


def test_a_share_that_is_no_number_is_refused_by_the_api():
    # A config's field is typed (ml_collections refuses a string); the API checks it too.
    with pytest.raises(ValueError, match="foreground_share must be a number"):
        AugmentConfig(foreground_share="a third")
