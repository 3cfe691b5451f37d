"""Data mixtures: weighted shares, bit-exact resume, one class set, per-source counts."""

import math
import types

import numpy as np
import pytest

from tests.fake_data import make_examples
from unet_jax.configs import tiny
from unet_jax.data import pipeline as ip
from unet_jax.data import run_data
from unet_jax.data.classes import ClassSet
from unet_jax.errors import ConfigError
from unet_jax.run.metric_writers import read_metrics
from unet_jax.train import config_checks
from unet_jax.train import loop as train_lib


class MarkedSource:
    """Examples whose blue channel tells the source apart after any resize: source 0 keeps
    it in 0..127, source 1 in 128..255 (resampling mixes values of one example only)."""

    def __init__(self, num_examples: int, *, size: tuple[int, int], marker: int, seed: int):
        rng = np.random.default_rng(seed)
        self._examples = []
        for i in range(num_examples):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            image[..., 2] = image[..., 2] // 2 + 128 * marker
            label = rng.integers(0, 3, (*size, 1), dtype=np.uint8)
            self._examples.append({"image": image, "label": label, "name": f"m{marker}/{i}"})

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict:
        return self._examples[index]


def _mixture(weights=(0.6, 0.4)):
    # Different image sizes: each example is resized to the output size before batching.
    return ip.MixtureSource(
        [
            MarkedSource(13, size=(24, 32), marker=0, seed=0),
            MarkedSource(7, size=(60, 80), marker=1, seed=1),
        ],
        weights=weights,
        names=("target", "other"),
    )


def _batches(source, n, **kwargs):
    args = dict(global_batch_size=8, image_size=(24, 32), seed=5, worker_count=0)
    args.update(kwargs)
    iterator = iter(ip.create_train_loader(source, **args))
    try:
        return [next(iterator) for _ in range(n)]
    finally:
        iterator.close()


def _from_other(batch):
    return batch["image"][..., 2].min(axis=(1, 2)) >= 128


@pytest.mark.parametrize("weights", [(0.6, 0.4), (0.25, 0.75)])
def test_shares_of_the_sources_match_the_weights(weights):
    mixture = _mixture(weights)
    steps = 60
    batches = _batches(mixture, steps, augment=False)
    other = np.concatenate([_from_other(b) for b in batches])
    # Every example is wholly of one source (all of its pixels on one side of 128).
    low = np.concatenate([b["image"][..., 2].max(axis=(1, 2)) < 128 for b in batches])
    assert np.all(other ^ low)
    n = other.size
    share = weights[1] / sum(weights)
    # Within 3 binomial standard deviations of the weight's share.
    assert abs(other.mean() - share) <= 3 * math.sqrt(share * (1 - share) / n)
    # The logged counts are the ones the batches hold, step window by step window.
    counter = ip.source_counter(mixture, global_batch_size=8)
    assert counter(1, steps) == {
        "examples/target": int(n - other.sum()),
        "examples/other": int(other.sum()),
    }
    assert counter(3, 4)["examples/other"] == int(
        _from_other(batches[2]).sum() + _from_other(batches[3]).sum()
    )


def test_each_source_is_read_in_a_shuffle_that_covers_it():
    # 40 batches of 8 with 0.6/0.4 hold 192 examples of 13 and 128 of 7: every example seen.
    batches = _batches(_mixture(), 40, augment=False, image_size=(24, 32))
    images = np.concatenate([b["image"] for b in batches])
    target = images[~np.concatenate([_from_other(b) for b in batches])]
    distinct = {img.tobytes() for img in target}
    assert len(distinct) == 13


@pytest.mark.parametrize("worker_count", [0, 1])
def test_resume_across_a_mixture_is_bit_identical(worker_count):
    mixture = _mixture()
    reference = _batches(mixture, 8, augment=True)
    resumed = _batches(mixture, 3, augment=True, start_step=5, worker_count=worker_count)
    for k, (a, b) in enumerate(zip(reference[5:], resumed, strict=True)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"batch {5 + k} {key}")


def test_hosts_split_the_mixed_global_batch():
    mixture = _mixture()
    whole = _batches(mixture, 3, augment=True)
    halves = [_batches(mixture, 3, augment=True, process_index=p, process_count=2) for p in (0, 1)]
    for k in range(3):
        joined = np.concatenate([halves[0][k]["image"], halves[1][k]["image"]])
        np.testing.assert_array_equal(joined, whole[k]["image"])


def test_mixture_source_is_the_concatenation_of_its_sources():
    mixture = _mixture()
    assert len(mixture) == 20
    assert mixture[13]["name"] == "m1/0" and mixture[12]["name"] == "m0/12"
    with pytest.raises(ValueError, match="> 0"):
        ip.MixtureSource(mixture.sources, weights=(1.0, 0.0), names=("a", "b"))


# ----------------------------------------------------------------------------- config


class FakeBuilder:
    """The part of a TFDS builder that ``sources.open_dataset`` reads."""

    def __init__(self, name, classes, examples):
        self.data_dir = "/fake"
        self._examples = examples
        self.info = types.SimpleNamespace(
            full_name=name,
            splits={"train": None, "validation": None},
            metadata={"classes": classes.to_json()},
        )

    def is_prepared(self):
        return True

    def as_data_source(self):
        return {"train": self._examples, "validation": self._examples[:4]}


def _prepare_fn(builders):
    return lambda config, *, prepare: builders[config.dataset]


def test_mixture_of_two_class_sets_is_one_line_naming_both():
    builders = {
        "lyft_udacity/full": FakeBuilder("lyft_udacity/full", ClassSet.numbered(3), []),
        "aerial": FakeBuilder("aerial", ClassSet.from_names(["a", "b", "c"]), []),
    }
    config = tiny.get_config()
    config.num_classes = None
    config.mixture = (("lyft_udacity/full", 0.5), ("aerial", 0.5))
    with pytest.raises(run_data.DataConfigError) as info:
        run_data.open_training_data(
            config, prepare_fn=_prepare_fn(builders), sources=None, classes=None
        )
    message = str(info.value)
    assert "\n" not in message
    assert "lyft_udacity/full" in message and "aerial" in message


def test_open_training_data_mixes_trains_and_validates_on_the_first():
    builders = {
        "lyft_udacity/full": FakeBuilder(
            "lyft_udacity/full", ClassSet.numbered(13), make_examples(10, seed=1)
        ),
        "lyft_udacity/synthetic": FakeBuilder(
            "lyft_udacity/synthetic", ClassSet.numbered(13), make_examples(6, seed=2)
        ),
    }
    config = tiny.get_config()
    config.num_classes = None
    config.dataset = "lyft_udacity/resized_256"
    config.mixture = [["lyft_udacity/full", 3], ["lyft_udacity/synthetic", 1]]
    config, sources, classes, _ = run_data.open_training_data(
        config, prepare_fn=_prepare_fn(builders), sources=None, classes=None
    )
    assert config.dataset == "lyft_udacity/full"  # eval.py scores the target
    assert config.num_classes == 13 == classes.num_classes
    assert sources["train"].names == ("lyft_udacity/full", "lyft_udacity/synthetic")
    assert sources["train"].weights == (3.0, 1.0) and len(sources["train"]) == 16
    assert [e["name"] for e in sources["validation"]] == [
        e["name"] for e in builders["lyft_udacity/full"].as_data_source()["validation"]
    ]


def test_mixture_stats_weigh_per_pixel_frequencies():
    # Source a: 100 pixels, 10 of class 1; source b: 1000 pixels, 500 of class 1 (and 100
    # ignored). 0.75/0.25: class 1 is 0.75 * 0.1 + 0.25 * 0.5 = 0.2 of the mixed pixels.
    a = {"pixel_counts": [90, 10], "present_pixel_counts": [100, 20], "ignored_pixels": 0}
    b = {"pixel_counts": [400, 500], "present_pixel_counts": [900, 900], "ignored_pixels": 100}
    mixed = run_data.mixture_stats([a, b], [3.0, 1.0])
    np.testing.assert_allclose(mixed["pixel_counts"], [0.75 * 0.9 + 0.25 * 0.4, 0.2])
    np.testing.assert_allclose(mixed["present_pixel_counts"], [0.75 + 0.25 * 0.9, 0.15 + 0.225])


@pytest.mark.parametrize(
    "value, pattern",
    [
        ("lyft_udacity/full", "sequence of"),
        ((("lyft_udacity/full", 0.0),), "> 0"),
        ((("lyft_udacity/full", "a"),), "number"),
        ((("lyft_udacity/full", 1.0), ("lyft_udacity/full", 1.0)), "twice"),
        ((("nope/x", 1.0),), "nope/x"),
    ],
)
def test_bad_mixture_is_a_config_error(value, pattern):
    config = tiny.get_config()
    config.mixture = value
    with pytest.raises(ConfigError, match=pattern):
        config_checks.validate_config(config, process_count=1, local_device_count=1)


@pytest.mark.slow  # a training run: compiles the tiny model (13 s on 2 loaded cores)
def test_training_logs_each_sources_examples(tmp_path):
    config = tiny.get_config()
    config.num_train_steps = 4
    config.eval_every_steps = 4
    config.checkpoint_every_steps = 4
    config.log_every_steps = 2
    mixture = ip.MixtureSource(
        [make_examples(12, seed=1), make_examples(8, size=(48, 40), seed=2)],
        weights=(0.5, 0.5),
        names=("real", "rendered"),
    )
    train_lib.train_and_evaluate(
        config, tmp_path, sources={"train": mixture, "validation": make_examples(4, seed=3)}
    )
    train = [r for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert [r["step"] for r in train] == [2, 4]
    for record in train:
        # Batch 4, two steps a window, equal weights: 4 examples of each.
        assert record["examples/real"] == record["examples/rendered"] == 4


def test_counts_of_any_window_are_those_of_its_positions():
    mixture = ip.MixtureSource([[0] * 5, [0] * 5, [0] * 3], weights=(0.6, 0.3, 0.1), names="abc")
    for start, stop in ((0, 1), (3, 17), (1000, 1999), (5, 5), (10**12, 10**12 + 777)):
        direct = np.bincount([mixture.source_at(q) for q in range(start, stop)], minlength=3)
        assert list(mixture.examples_per_source(start, stop).values()) == direct.tolist()
    shares = np.array(list(mixture.examples_per_source(0, 10_000).values())) / 10_000
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=1e-3)
