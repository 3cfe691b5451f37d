"""ResNet-encoder U-Nets export: jax.export and ONNX equal the model.

resnet18 stands for the BasicBlock encoders (resnet34 has more of the same blocks);
resnet50's Bottleneck blocks get their own ONNX parity check. 32-pixel-multiple inputs
of two sizes, random weights with BatchNorm statistics away from 0 and 1.
"""

import functools

import numpy as np
import pytest

from tests.deploy.test_onnx import assert_logits_match, model_config, perturbed_variables
from unet_jax.run.loading import make_apply_fn
from unet_jax.run.state import create_model

SIZES = [(2, 32, 64), (1, 32, 32)]


@functools.cache
def resnet_model(encoder: str):
    """(model, variables, {size: images}, {size: logits}) of a 6-class U-Net over ``encoder``."""
    config = model_config(num_classes=6, encoder=encoder, decoder_features=(16, 8, 8, 8, 8))
    model = create_model(config)
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=len(encoder))
    apply_fn = make_apply_fn(model)
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in SIZES}
    logits = {s: np.asarray(apply_fn(variables, x)) for s, x in images.items()}
    return model, variables, images, logits


def test_jax_export_equals_the_model():
    from unet_jax.deploy import export

    model, variables, images, logits = resnet_model("resnet18")
    exported = export.export_model(model, variables, platforms=("cpu",))
    for size in SIZES:
        np.testing.assert_allclose(
            np.asarray(exported.call(images[size])), logits[size], rtol=1e-5, atol=1e-5
        )
    with pytest.raises(ValueError):
        exported.call(images[SIZES[0]][:, :16])


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50"])
def test_onnx_export_equals_the_model(encoder):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tests.deploy.test_onnx import session
    from unet_jax.deploy import onnx_export

    model, variables, images, logits = resnet_model(encoder)
    proto = onnx_export.build_model(model, variables)
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}
    ort_session = session(proto)
    for size in SIZES:
        assert_logits_match(ort_session.run(None, {"images": images[size]})[0], logits[size])
