"""The ResNet encoders: torchvision's tensor names and shapes, bfloat16 compute."""

import jax
import numpy as np
import pytest

from tests.encoder_helpers import (
    ENCODER_NAMES,
    encoder_variables,
    torchvision_shapes,
)
from unet_jax.model import encoder_weights
from unet_jax.model.resnet import ResNetUNet


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_encoder_tensors_are_torchvisions(encoder):
    expected = encoder_weights.expected_tensors(encoder_variables(encoder))
    oracle = {
        k: v
        for k, v in torchvision_shapes(encoder).items()
        if not encoder_weights.IGNORED.search(k)
    }
    assert {k: shape for k, (_, _, shape) in expected.items()} == oracle


def test_architecture_is_recognised_from_names():
    for encoder in ENCODER_NAMES:
        assert encoder_weights.architecture_of(list(torchvision_shapes(encoder))) == encoder
    assert encoder_weights.architecture_of(["conv1.weight", "head.weight"]) is None


def test_bfloat16_computes_close_to_float32_with_float32_variables():
    model = ResNetUNet(num_classes=4, encoder="resnet18", decoder_features=(8, 8, 8, 8, 8))
    images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    variables = jax.jit(lambda k: model.init(k, images, train=False))(jax.random.key(0))
    bf16 = model.clone(dtype=jax.numpy.bfloat16)
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(variables))
    f32_logits = np.asarray(jax.jit(lambda v: model.apply(v, images, train=False))(variables))
    bf16_logits = jax.jit(lambda v: bf16.apply(v, images, train=False))(variables)
    assert bf16_logits.dtype == np.float32
    scale = np.abs(f32_logits).max()
    assert np.abs(np.asarray(bf16_logits) - f32_logits).max() < 0.1 * scale
