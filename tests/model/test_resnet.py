"""The ResNet encoders: torchvision's tensor names, shapes and counts; feature strides; bf16."""

import jax
import numpy as np
import pytest

from tests.encoder_helpers import (
    ENCODER_NAMES,
    encoder_variables,
    torchvision_shapes,
)
from unet_jax.model import encoder_weights
from unet_jax.model.resnet import ResNetEncoder, ResNetUNet


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


# torchvision's published parameter counts of resnetXX() (its docs' weights tables),
# less the 1000-class classifier fc (512 or 2048 inputs, 1000 outputs, 1000 biases).
TORCHVISION_PARAMETERS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}
FC_INPUTS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_parameter_counts_and_feature_strides_are_torchvisions(encoder):
    params = encoder_variables(encoder)["params"]
    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    assert count == TORCHVISION_PARAMETERS[encoder] - (FC_INPUTS[encoder] * 1000 + 1000)
    # Shapes only (no compilation): strides 2..32, torchvision's stage widths.
    images = jax.ShapeDtypeStruct((2, 64, 96, 3), np.float32)
    features = jax.eval_shape(
        lambda x: ResNetEncoder(encoder).init_with_output(jax.random.key(0), x, train=False)[0],
        images,
    )
    widths = [64, *(w * (4 if encoder == "resnet50" else 1) for w in (64, 128, 256, 512))]
    expected = [(2, 64 // s, 96 // s, c) for s, c in zip((2, 4, 8, 16, 32), widths, strict=True)]
    assert [f.shape for f in features] == expected
    model = ResNetUNet(num_classes=5, encoder=encoder, decoder_features=(8, 8, 8, 8, 8))
    logits = jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0], images
    )
    assert logits.shape == (2, 64, 96, 5) and logits.dtype == np.float32


def test_bfloat16_computes_close_to_float32_with_float32_variables():
    model = ResNetUNet(num_classes=4, encoder="resnet18", decoder_features=(8, 8, 8, 8, 8))
    images = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    variables = jax.jit(lambda k: model.init(k, images, train=False))(jax.random.key(0))
    bf16 = model.clone(dtype=jax.numpy.bfloat16)
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(variables))
    f32_logits = np.asarray(jax.jit(lambda v: model.apply(v, images, train=False))(variables))
    bf16_logits = jax.jit(lambda v: bf16.apply(v, images, train=False))(variables)
    assert bf16_logits.dtype == np.float32
    scale = np.abs(f32_logits).max()
    assert np.abs(np.asarray(bf16_logits) - f32_logits).max() < 0.1 * scale
