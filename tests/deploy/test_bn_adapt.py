"""Test-time BatchNorm adaptation (unet_jax.deploy.bn_adapt) and multi-scale TTA.

Oracles: the first BatchNorm layer's input is the first 3x3 convolution of the normalised
image (no bias), computed here with NumPy; Flax's own training-mode BatchNorm (batch
statistics) for a whole set in one batch; the Segmenter without augmentation.
"""

import jax
import numpy as np
import pytest

from tests.deploy.perturbed_unet import MODEL, perturbed_variables
from unet_jax.deploy.bn_adapt import BatchNormAdapter
from unet_jax.deploy.options import OptionError, SegmenterOptions
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.model.unet import DEFAULT_MEAN, DEFAULT_STD, UNet
from unet_jax.run.loading import make_apply_fn

FIRST = ("EncoderBlock_0", "ConvBlock_0")


def _brightened(n, h, w, seed):
    """Images of shifted statistics: bright (+70) and low in contrast."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, 3)).astype(np.float64) * 0.6 + 70
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _first_bn_input(variables, images):
    """By hand: normalise, 3x3 'SAME' convolution with the first kernel (float64)."""
    kernel = np.asarray(variables["params"][FIRST[0]][FIRST[1]]["Conv_0"]["kernel"], np.float64)
    x = (images / 255.0 - np.asarray(DEFAULT_MEAN)) / np.asarray(DEFAULT_STD)
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("bhwc,co->bhwo", padded[:, dy : dy + h, dx : dx + w], kernel[dy, dx])
    return out.reshape(-1, kernel.shape[-1])


def _first_stats(batch_stats):
    layer = batch_stats[FIRST[0]][FIRST[1]]["BatchNorm_0"]
    return np.asarray(layer["mean"]), np.asarray(layer["var"])


def test_set_statistics_of_the_first_layer_equal_numpy():
    variables = perturbed_variables()
    batches = [_brightened(2, 32, 32, 1), _brightened(3, 24, 36, 2)]
    adapter = BatchNormAdapter(MODEL, variables, mode="set", momentum=0.9)
    for images in batches:
        adapter.update(images)
    mean, var = _first_stats(adapter.batch_stats())
    pixels = np.concatenate([_first_bn_input(variables, b) for b in batches])
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, pixels.var(0), rtol=1e-4, atol=1e-5)
    # The shift is real: the checkpoint's statistics are far from these.
    old_mean, _ = _first_stats(variables["batch_stats"])
    assert np.abs(old_mean - mean).max() > 0.1
    # The checkpoint's variables are untouched; the adapted ones are a new tree.
    np.testing.assert_array_equal(_first_stats(variables["batch_stats"])[0], old_mean)
    assert adapter.variables()["params"] is variables["params"]


def test_stream_statistics_are_a_running_average_from_the_checkpoint():
    variables = perturbed_variables()
    momentum = 0.8
    adapter = BatchNormAdapter(MODEL, variables, mode="stream", momentum=momentum)
    want_mean, want_var = _first_stats(variables["batch_stats"])
    for seed in (3, 4):
        images = _brightened(2, 32, 32, seed)
        adapter.update(images)
        pixels = _first_bn_input(variables, images)
        want_mean = momentum * want_mean + (1 - momentum) * pixels.mean(0)
        want_var = momentum * want_var + (1 - momentum) * pixels.var(0)
    mean, var = _first_stats(adapter.batch_stats())
    np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, want_var, rtol=1e-4, atol=1e-5)


def test_a_set_in_one_batch_is_exact_adabn_in_every_layer():
    """Oracle: Flax's training-mode BatchNorm normalises each layer by its batch statistics."""
    variables = perturbed_variables()
    images = _brightened(4, 32, 32, 5)
    adapter = BatchNormAdapter(MODEL, variables, mode="set", momentum=0.9)
    adapter.update(images)
    adapted = np.asarray(MODEL.apply(adapter.variables(), images, train=False))
    trained, _ = MODEL.apply(variables, images, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(adapted, np.asarray(trained), atol=2e-4)


def test_segmenter_adapts_without_changing_its_source():
    variables = perturbed_variables()
    images = _brightened(3, 30, 45, 6)  # padded to 32x48 like the segmenter pads
    segmenter = Segmenter(
        make_apply_fn(MODEL), variables, size_multiple=4, model=MODEL, adapt_bn="set"
    )
    with pytest.raises(OptionError, match="adapted"):
        segmenter.predict(images)
    adapted = segmenter.adapted([images[:2], images[2:]])
    labels, _ = adapted.predict(images)
    padded = np.pad(images, ((0, 0), (0, 2), (0, 3), (0, 0)), mode="reflect")
    adapter = BatchNormAdapter(MODEL, variables, mode="set", momentum=0.9)
    adapter.update(padded[:2])
    adapter.update(padded[2:])
    logits = np.asarray(MODEL.apply(adapter.variables(), padded, train=False))[:, :30, :45]
    np.testing.assert_array_equal(labels, logits.argmax(-1))
    with pytest.raises(OptionError, match="adapted"):
        segmenter.predict(images)  # the original is not adapted


def test_adaptation_off_and_no_tta_predict_as_before():
    variables = perturbed_variables()
    images = _brightened(2, 30, 45, 7)
    plain = Segmenter(make_apply_fn(MODEL), variables, size_multiple=4)
    off = Segmenter(
        make_apply_fn(MODEL),
        variables,
        size_multiple=4,
        model=MODEL,
        options=SegmenterOptions(adapt_bn="off", tta_scales=(1.0,), tta_flip=False),
    )
    padded = np.pad(images, ((0, 0), (0, 2), (0, 3), (0, 0)), mode="reflect")
    logits = np.asarray(MODEL.apply(variables, padded, train=False))[:, :30, :45]
    results = [s.predict(images, with_probabilities=True) for s in (plain, off)]
    for labels, probs in results:
        np.testing.assert_array_equal(labels, logits.argmax(-1))
        np.testing.assert_allclose(probs, np.asarray(jax.nn.softmax(logits, -1)), atol=1e-5)
    np.testing.assert_array_equal(results[0][1], results[1][1])  # the same computation


def test_multi_scale_tta_averages_the_rescaled_probabilities():
    variables = perturbed_variables()
    images = _brightened(2, 32, 48, 8)
    segmenter = Segmenter(
        make_apply_fn(MODEL), variables, size_multiple=4, tta_scales=(1.0, 0.5), tta_flip=True
    )
    _, probs = segmenter.predict(images, with_probabilities=True)

    def flip_averaged(x):
        p = jax.nn.softmax(MODEL.apply(variables, x, train=False), -1)
        q = jax.nn.softmax(MODEL.apply(variables, x[:, :, ::-1], train=False), -1)[:, :, ::-1]
        return 0.5 * (p + q)

    # The model sees the resized image as it sees every image: uint8 RGB, rounded.
    small = jax.image.resize(images.astype(np.float32), (2, 16, 24, 3), "bilinear")
    small = np.clip(np.round(np.asarray(small)), 0, 255).astype(np.uint8)
    back = jax.image.resize(flip_averaged(small), (2, 32, 48, 5), "bilinear")
    want = 0.5 * (flip_averaged(images) + back)
    np.testing.assert_allclose(probs, np.asarray(want), atol=1e-5)


def test_bad_adaptation_settings_are_one_line_errors():
    variables = perturbed_variables()
    with pytest.raises(OptionError, match="needs the JAX model"):
        Segmenter(make_apply_fn(MODEL), variables, size_multiple=4, adapt_bn="stream")
    with pytest.raises(OptionError, match="adapt_bn must be one of"):
        SegmenterOptions(adapt_bn="always")
    with pytest.raises(OptionError, match="adapt_momentum"):
        SegmenterOptions(adapt_momentum=1.0)
    with pytest.raises(OptionError, match="tta_scales"):
        SegmenterOptions(tta_scales=(1.0, 0.0))
    no_bn = UNet(num_classes=3, features=(4,), bridge_features=8, use_batchnorm=False)
    plain = no_bn.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.uint8), train=False)
    with pytest.raises(OptionError, match="no BatchNorm"):
        BatchNormAdapter(no_bn, plain, mode="set", momentum=0.9)
