"""ResNet-encoder U-Nets export: jax.export and ONNX equal the model."""

import jax
import numpy as np
import pytest

from tests.encoder_helpers import ENCODER_NAMES
from unet_jax.model.resnet import ResNetUNet


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_jax_export_equals_the_model(encoder):
    from unet_jax.deploy import export

    model = ResNetUNet(num_classes=5, encoder=encoder, decoder_features=(8, 8, 8, 8, 8))
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    variables = jax.jit(lambda k: model.init(k, images[:1, :32, :32], train=False))(
        jax.random.key(1)
    )
    exported = export.export_model(model, variables, platforms=("cpu",))
    expected = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    np.testing.assert_allclose(np.asarray(exported.call(images)), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        exported.call(images[:, :48])


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_onnx_export_equals_the_model(encoder):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tests.deploy.test_onnx import (
        assert_logits_match,
        model_config,
        perturbed_variables,
        session,
    )
    from unet_jax import inference
    from unet_jax.deploy import onnx_export
    from unet_jax.run.state import create_model

    config = model_config(num_classes=6, encoder=encoder, decoder_features=(16, 8, 8, 8, 8))
    model = create_model(config)
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=len(encoder))
    proto = onnx_export.build_model(model, variables)
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}
    ort_session = session(proto)
    apply_fn = inference.make_apply_fn(model)
    rng = np.random.default_rng(0)
    for b, h, w in [(2, 64, 96), (1, 32, 32)]:
        images = rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)
        expected = np.asarray(apply_fn(variables, images))
        assert_logits_match(ort_session.run(None, {"images": images})[0], expected)
