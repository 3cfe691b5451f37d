"""Void classes (config.void_classes, classes.json "void": true): ignored, never predicted.

Oracles: a hand-written lookup table, the cross-entropy gradient written out in numpy
((softmax - one-hot) / valid pixels), a confusion matrix counted pixel by pixel in numpy,
and the model's output count (a void class has no output, so no prediction can take it).
"""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from datasets.common.errors import DataError
from datasets.folder.classes_file import read_classes_file
from unet_jax.configs import tiny
from unet_jax.data import run_data, sources
from unet_jax.data.classes import IGNORE_LABEL, ClassSet, ClassSetError, apply_void
from unet_jax.errors import ConfigError
from unet_jax.evaluation.metrics import confusion_counts
from unet_jax.model import outputs
from unet_jax.model.factory import create_model
from unet_jax.train import losses

FOUR = ClassSet.from_names(["road", "Unlabeled", "car", "sign"])


def _labels(seed=0, shape=(2, 6, 7)):
    labels = np.random.default_rng(seed).integers(0, 4, shape).astype(np.uint8)
    labels[0, 0, :3] = IGNORE_LABEL  # the data's own ignored pixels stay ignored
    return labels


def test_apply_void_drops_the_class_and_maps_its_pixels_to_ignore():
    classes, lut = apply_void(FOUR, ["Unlabeled"])
    assert classes.names == ("road", "car", "sign")
    assert classes.colors == (FOUR.colors[0], FOUR.colors[2], FOUR.colors[3])
    assert classes.void == ("Unlabeled",)
    assert lut[:4].tolist() == [0, IGNORE_LABEL, 1, 2]
    assert lut[IGNORE_LABEL] == IGNORE_LABEL
    assert ClassSet.from_json(classes.to_json()) == classes  # the run's classes.json keeps it
    assert classes.ignored_label == "ignored (void: Unlabeled)"
    with pytest.raises(ClassSetError, match="'Sky' is not a class"):
        apply_void(FOUR, ["Sky"])
    with pytest.raises(ClassSetError, match="every class is void"):
        apply_void(FOUR, list(FOUR.names))


@pytest.mark.parametrize("loss", ["ce", "dice", "dice_ce", "focal"])
def test_void_pixels_contribute_nothing_to_the_loss_gradient(loss):
    classes, lut = apply_void(FOUR, ["Unlabeled"])
    raw = _labels()
    labels = jnp.asarray(lut[raw])
    void = raw == 1
    logits = jax.random.normal(jax.random.key(0), (*raw.shape, classes.num_classes))
    loss_fn = losses.get_loss_fn(loss, num_classes=classes.num_classes)
    grad = np.asarray(jax.grad(lambda z: loss_fn(z, labels).sum())(logits))  # per image
    assert void.any() and np.abs(grad[void]).max() == 0.0
    # Whatever the model says on void pixels, the loss is the same.
    other = jnp.where(jnp.asarray(void)[..., None], 100.0 * logits, logits)
    np.testing.assert_allclose(loss_fn(other, labels), loss_fn(logits, labels), rtol=1e-6)
    if loss == "ce":  # the gradient itself, against numpy
        z = np.asarray(logits, np.float64)
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        valid = np.asarray(labels) != IGNORE_LABEL
        onehot = np.eye(classes.num_classes)[np.where(valid, np.asarray(labels), 0)]
        # Each image's loss is the mean over its valid pixels.
        per_image = valid.reshape(len(raw), -1).sum(1)[:, None, None, None]
        expected = np.where(valid[..., None], (p - onehot) / per_image, 0.0)
        np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_void_pixels_are_left_out_of_the_confusion_matrix():
    classes, lut = apply_void(FOUR, ["Unlabeled"])
    raw = _labels(1)
    predictions = np.random.default_rng(2).integers(0, 3, raw.shape)
    got = confusion_counts(predictions, lut[raw], num_classes=classes.num_classes)
    expected = np.zeros((3, 3), np.int64)
    new_id = {0: 0, 2: 1, 3: 2}
    for label, pred in zip(raw.ravel(), predictions.ravel(), strict=True):
        if label in new_id:
            expected[new_id[label], pred] += 1
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == np.isin(raw, (0, 2, 3)).sum()


def test_predictions_never_take_a_void_class():
    classes, _ = apply_void(FOUR, ["Unlabeled"])
    config = tiny.get_config()
    config.num_classes = None
    config = run_data.with_data_classes(config, classes)
    model = create_model(config)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8))
    variables = model.init(jax.random.key(0), images, train=False)
    logits = model.apply(variables, images, train=False)
    assert logits.shape[-1] == 3  # no output for the void class
    predicted = np.asarray(outputs.predict_labels(logits))
    assert predicted.max() < 3
    pictures = classes.colorize(predicted).reshape(-1, 3)
    assert not (pictures == FOUR.colors[1]).all(axis=1).any()


class _Builder:
    """What ``sources.open_dataset`` reads of a prepared TFDS builder."""

    def __init__(self, examples, *, declared_void=()):
        self.data_dir = "/fake"
        self._examples = examples
        self.info = types.SimpleNamespace(
            full_name="folder/void_test",
            splits={"train": None, "validation": None},
            metadata={
                "classes": FOUR.to_json(),
                "mask_rule": {"void": list(declared_void)},
                "train_stats": {"pixel_counts": [1, 2, 3, 4]},
            },
        )

    def is_prepared(self):
        return True

    def as_data_source(self):
        return {"train": self._examples, "validation": self._examples}


@pytest.mark.parametrize("declared, configured", [(("Unlabeled",), ()), ((), ("Unlabeled",))])
def test_open_dataset_applies_declared_and_configured_void(declared, configured):
    raw = _labels(3, shape=(3, 8, 8))
    examples = [{"image": np.zeros((8, 8, 3), np.uint8), "label": r[..., None]} for r in raw]
    config = tiny.get_config()
    config.void_classes = configured
    builder = _Builder(examples, declared_void=declared)
    dataset = sources.open_dataset(
        config, splits=("train",), prepare_fn=lambda config, *, prepare: builder
    )
    assert dataset.classes.names == ("road", "car", "sign")
    assert dataset.classes.void == ("Unlabeled",)
    assert dataset.train_stats is None  # recorded counts are of the old ids: recounted
    for i, r in enumerate(raw):
        expected = np.select([r == 1, r == 2, r == 3], [IGNORE_LABEL, 1, 2], r.astype(int))
        np.testing.assert_array_equal(dataset.sources["train"][i]["label"][..., 0], expected)


def test_unknown_void_class_is_a_config_error_naming_it():
    config = tiny.get_config()
    config.void_classes = ("Sky",)
    builder = _Builder([])
    with pytest.raises(ConfigError, match="'Sky' is not a class"):
        sources.open_dataset(config, splits=("train",), prepare_fn=lambda c, *, prepare: builder)


def test_classes_file_marks_a_class_void(tmp_path):
    path = tmp_path / "classes.json"
    entries = [
        {"name": "Building", "color": "#3C1098"},
        {"name": "Unlabeled", "color": "#9B9B9B", "void": True},
    ]
    path.write_text(json.dumps({"classes": entries, "ignore": ["#000000"]}))
    rule = read_classes_file(path)
    assert rule.void == ("Unlabeled",)
    assert rule.classes.names == ("Building", "Unlabeled")  # decoded like any class
    assert rule.to_json()["void"] == ["Unlabeled"]
    assert "void (ignored, never predicted): Unlabeled" in rule.describe()
    entries[1]["void"] = "yes"
    path.write_text(json.dumps({"classes": entries}))
    with pytest.raises(DataError, match=r"classes\[1\]\.void must be true or false"):
        read_classes_file(path)
    path.write_text(json.dumps({"classes": [{"name": "only", "void": True}]}))
    with pytest.raises(DataError, match="every class is void"):
        read_classes_file(path)
