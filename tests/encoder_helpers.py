"""Shared by the ResNet-encoder tests: torchvision's state-dict names and shapes, weight files.

Oracle: a hand-written transcription of torchvision's ResNet state dict (names and
shapes, from its source); where torch and torchvision are importable (docs/ENCODERS.md
for the venv), the parity tests compare it with torchvision's own.
"""

import functools
import importlib.util

import jax
import numpy as np
import pytest

from unet_jax.model import encoder_weights
from unet_jax.model.resnet import ARCHITECTURES, ENCODER_MODULE, ResNetUNet

HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
HAS_TORCHVISION = (
    importlib.util.find_spec("torch") is not None
    and importlib.util.find_spec("torchvision") is not None
)
needs_safetensors = pytest.mark.skipif(not HAS_SAFETENSORS, reason="pip install '.[safetensors]'")
needs_torchvision = pytest.mark.skipif(
    not HAS_TORCHVISION, reason="torch + torchvision not installed (docs/ENCODERS.md)"
)
ENCODER_NAMES = list(ARCHITECTURES)


def torchvision_shapes(encoder: str) -> dict[str, tuple]:
    """torchvision.models.resnetXX().state_dict()'s names and shapes, written from its source.

    (resnet.py there: conv1/bn1, layer1..4 of BasicBlock [2,2,2,2] / [3,4,6,3] or
    Bottleneck [3,4,6,3] with expansion 4, downsample = conv1x1 + BatchNorm on the first
    block of a stage whose stride or width changes, fc 1000.)
    """
    bottleneck = encoder == "resnet50"
    layers = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
    shapes: dict[str, tuple] = {}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers[encoder], strict=True)):
        for j in range(blocks):
            pre = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            if bottleneck:
                out = planes * 4
                convs = [(planes, inplanes, 1), (planes, planes, 3), (out, planes, 1)]
            else:
                out = planes
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for k, (o, c, s) in enumerate(convs, start=1):
                shapes[f"{pre}.conv{k}.weight"] = (o, c, s, s)
                bn(f"{pre}.bn{k}", o)
            if stride != 1 or inplanes != out:
                shapes[f"{pre}.downsample.0.weight"] = (out, inplanes, 1, 1)
                bn(f"{pre}.downsample.1", out)
            inplanes = out
    shapes["fc.weight"] = (1000, inplanes)
    shapes["fc.bias"] = (1000,)
    return shapes


@functools.cache
def abstract_variables(encoder: str):
    """The whole model's variables as shape structs (no compilation)."""
    model = ResNetUNet(num_classes=3, encoder=encoder, decoder_features=(8, 8, 8, 8, 8))
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.uint8), train=False)
    )


def encoder_variables(encoder: str):
    v = abstract_variables(encoder)
    return {"params": v["params"][ENCODER_MODULE], "batch_stats": v["batch_stats"][ENCODER_MODULE]}


def random_state_dict(encoder: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors of torchvision's shapes (BatchNorm statistics far from 0 and 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in torchvision_shapes(encoder).items():
        if name.endswith("num_batches_tracked"):
            out[name] = np.array(7, np.int64)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[name] = rng.normal(0.0, 0.1, shape).astype(np.float32)
    return out


def save_safetensors(tensors, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def load(encoder, path):
    v = abstract_variables(encoder)
    return encoder_weights.load_into(
        dict(v["params"]), dict(v["batch_stats"]), path, encoder=encoder
    )
