"""Tests of the synthetic CARLA-like scene renderer (the datasets/synthetic/ package)."""

import hashlib

import numpy as np
import pytest

from datasets.lyft_udacity.classes import CLASS_NAMES, NUM_CLASSES
from datasets.synthetic.scenes import render_scene

NUM_FRAMES = 50

# Mean pixel share per class (%) over seeds 0..49 must lie in these bounds: the
# documented ranges of docs/SYNTHETIC.md, which cover 99.9% of the means of 50 frames
# drawn from 1000 rendered seeds.
SHARE_BOUNDS = {
    "None": (23.0, 29.5),
    "Buildings": (4.2, 9.8),
    "Fences": (1.1, 2.7),
    "Other": (0.9, 1.6),
    "Pedestrians": (1.3, 2.2),
    "Poles": (2.2, 3.8),
    "RoadLines": (1.4, 2.4),
    "Roads": (15.0, 18.5),
    "Sidewalks": (5.8, 7.9),
    "Vegetation": (9.5, 16.0),
    "Vehicles": (16.0, 17.9),
    "Walls": (1.9, 4.3),
    "TrafficSigns": (1.0, 1.6),
}


@pytest.fixture(scope="module")
def frames() -> list[tuple[np.ndarray, np.ndarray]]:
    return [render_scene(seed) for seed in range(NUM_FRAMES)]


@pytest.fixture(scope="module")
def counts(frames) -> np.ndarray:
    """Pixel count per frame and class, [NUM_FRAMES, NUM_CLASSES]."""
    return np.stack([np.bincount(lb.ravel(), minlength=NUM_CLASSES) for _, lb in frames])


def test_same_seed_same_scene_and_no_global_state():
    np.random.seed(1)
    image_a, label_a = render_scene(123)
    render_scene(5)  # rendering other scenes in between changes nothing
    np.random.seed(2)
    image_b, label_b = render_scene(123)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(label_a, label_b)


def test_different_seeds_differ():
    image_a, label_a = render_scene(10)
    image_b, label_b = render_scene(11)
    assert np.mean(image_a != image_b) > 0.5
    assert np.mean(label_a != label_b) > 0.05


@pytest.mark.parametrize("height,width", [(256, 256), (96, 160), (300, 64)])
def test_shapes_dtypes_and_ids(height, width):
    image, label = render_scene(3, height, width)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert label.shape == (height, width) and label.dtype == np.uint8
    assert label.max() < NUM_CLASSES
    # The default size is 256x256.
    if (height, width) == (256, 256):
        image_d, label_d = render_scene(3)
        np.testing.assert_array_equal(image_d, image)
        np.testing.assert_array_equal(label_d, label)


def test_ids_in_range(frames):
    for _, label in frames:
        assert int(label.max()) <= NUM_CLASSES - 1


def test_every_class_in_most_frames(counts):
    present = (counts > 0).mean(axis=0)
    for name, fraction in zip(CLASS_NAMES, present, strict=True):
        assert fraction > 0.8, f"{name} only in {fraction:.0%} of frames"
    assert (counts.sum(axis=0) > 0).all()


def test_class_shares_within_documented_bounds(counts):
    shares = 100.0 * counts.sum(axis=0) / counts.sum()
    assert shares.sum() == pytest.approx(100.0)
    for c, name in enumerate(CLASS_NAMES):
        low, high = SHARE_BOUNDS[name]
        assert low <= shares[c] <= high, f"{name}: {shares[c]:.2f}% not in [{low}, {high}]"


def _colour_features(frames):
    pixels = np.concatenate([img.reshape(-1, 3) for img, _ in frames]).astype(np.float64)
    labels = np.concatenate([lb.ravel() for _, lb in frames])
    return pixels, labels


def test_colour_alone_is_not_a_perfect_classifier(frames):
    # Nearest class-mean colour, fit on 25 frames and scored on the other 25 (~45%).
    train_x, train_y = _colour_features(frames[:25])
    test_x, test_y = _colour_features(frames[25:])
    means = np.stack([train_x[train_y == c].mean(axis=0) for c in range(NUM_CLASSES)])
    dist = ((test_x[:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = np.mean(dist.argmin(axis=1) == test_y)
    assert accuracy < 0.7, accuracy

    # Even the best lookup from quantised colour (16 levels per channel) to the most
    # frequent class in the training frames stays clearly below 90% (measured ~60%).
    def cell(x):
        q = (x // 16).astype(np.int64)
        return q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]

    table = np.zeros((4096, NUM_CLASSES), np.int64)
    np.add.at(table, (cell(train_x), train_y), 1)
    accuracy = np.mean(table.argmax(axis=1)[cell(test_x)] == test_y)
    assert accuracy < 0.8, accuracy


def test_hood_at_the_bottom_is_vehicles(frames):
    for image, label in frames:
        h = label.shape[0]
        # The hood covers the whole width of the last ~10% rows and is dark paint.
        assert (label[int(0.9 * h) :] == CLASS_NAMES.index("Vehicles")).all()
        assert image[int(0.93 * h) :].mean() < 110
        hood_share = (label[int(0.75 * h) :] == CLASS_NAMES.index("Vehicles")).mean()
        assert 0.5 < hood_share < 0.9


def test_image_edges_follow_label_edges(frames):
    # Alignment oracle: image gradients are much stronger on label boundaries than
    # on the same boundaries shifted by a few pixels (a misaligned label).
    ratios = []
    for image, label in frames[:20]:
        grey = image.astype(np.float64).mean(axis=2)
        grad = np.abs(np.diff(grey, axis=1))
        edges = label[:, 1:] != label[:, :-1]
        shifted = np.roll(edges, 4, axis=1)
        ratios.append(grad[edges].mean() / grad[shifted & ~edges].mean())
    assert np.median(ratios) > 2.0, ratios


def test_sky_is_none_above_the_horizon(frames):
    # The top rows show sky or tall objects; sky ("None") dominates the first row.
    top = np.concatenate([lb[0] for _, lb in frames])
    assert np.mean(top == 0) > 0.3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 0, "height": 8}, "height"),
        ({"seed": 0, "width": "256"}, "width"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_scene(**kwargs)


# SHA-256 of image bytes + label bytes, rendered by the single-module renderer before it
# became a package (numpy 2 / Pillow 11-13 on x86-64): the package renders the same bytes.
RENDERED_BEFORE = {
    (0, 128, 128): "6a25e5df311f6d3f4606caaa9bb2f209ced009fe1b85333cd9b38d0dcf63f383",
    (1, 96, 160): "4a6a0f9418117007e128929698993d58342e025477281e12044c663c0c622171",
    (7, 256, 256): "ddf3c6d0f199ca4b04fe6adf544f0345132aa4c100efd2793f99d8777c6c5d89",
    (123, 64, 80): "6f72be87d4e94e489ed037dd05c670da727bca5fc205c425be42f6e8e2f37a7c",
    (2024, 600, 800): "f6bbe751a13bbd779c0c0a9dc679f730e7b2289fa7436b002151ea17bbf7e547",
}


@pytest.mark.parametrize(("seed", "height", "width"), sorted(RENDERED_BEFORE))
def test_same_seed_renders_the_same_bytes_as_before(seed, height, width):
    image, label = render_scene(seed, height=height, width=width)
    assert image.shape == (height, width, 3) and label.shape == (height, width)
    digest = hashlib.sha256(image.tobytes() + label.tobytes()).hexdigest()
    assert digest == RENDERED_BEFORE[(seed, height, width)]


# Rendered before datasets.synthetic.objects._car was split into its parts: a sunny scene
# with a car, a van and a truck, sides and sun shadows (checked below).
CARS_RENDERED_BEFORE = {
    (11, 128, 128): "a7c118a3000fe846fb553ffdf97989f60ffcb7683644c29e36d177215548ea4a",
}


def test_the_car_digests_cover_every_part_of_a_vehicle(monkeypatch):
    from datasets.synthetic import objects

    drawn = {"cabs": set(), "sides": 0, "sun_shadows": 0}

    def spy(name, record):
        real = getattr(objects, name)

        def wrapped(*args):
            out = real(*args)
            record(args, out)
            return out

        monkeypatch.setattr(objects, name, wrapped)

    spy("_car_dimensions", lambda args, out: drawn["cabs"].add(out[3]))
    spy("_car_side", lambda args, out: drawn.update(sides=drawn["sides"] + 1))
    spy(
        "_car_shadows",
        lambda args, out: drawn.update(sun_shadows=drawn["sun_shadows"] + (args[2].sun > 0)),
    )
    for (seed, height, width), want in CARS_RENDERED_BEFORE.items():
        image, label = render_scene(seed, height=height, width=width)
        digest = hashlib.sha256(image.tobytes() + label.tobytes()).hexdigest()
        assert digest == want
    assert drawn["cabs"] == {0.55, 0.4, 0.0}  # car, van, truck
    assert drawn["sides"] > 0 and drawn["sun_shadows"] > 0


def test_nohood_scenes_ignore_the_hood_and_keep_the_other_cars():
    """synthetic_nohood: the rendered hood becomes 255 (as the real frames' full_nohood), the
    rest of the label is the `synthetic` label of the same seed."""
    import io

    from PIL import Image

    from datasets.lyft_udacity.lyft_udacity_dataset_builder import synthetic_example

    vehicles = CLASS_NAMES.index("Vehicles")
    other_cars = 0
    for seed in range(6):
        (_, kept, _), (_, ignored, counts) = (
            synthetic_example(seed, render=render_scene, size=(240, 320), hood=hood)
            for hood in ("keep", "ignore")
        )
        kept, ignored = (np.asarray(Image.open(io.BytesIO(e["label"]))) for e in (kept, ignored))
        hood = ignored == 255
        # The whole bottom strip is hood, and only Vehicles pixels became 255.
        assert hood[-20:].all() and (kept[hood] == vehicles).all()
        np.testing.assert_array_equal(ignored[~hood], kept[~hood])
        assert counts[255] == hood.sum()
        other_cars += int((ignored == vehicles).sum() > 0)
    assert other_cars >= 4  # cars in front are not the hood
