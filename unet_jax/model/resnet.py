"""U-Nets whose contracting path is a torchvision ResNet (resnet18, resnet34, resnet50).

Layout (``ResNetUNet``, NHWC, pure Flax linen like ``unet_jax.model``):

    input uint8 [B, H, W, 3] in 0..255 -> ImageNet normalisation (the model's first op)
    encoder (torchvision's ResNet without avgpool/fc):
      stem: 7x7 stride-2 conv, BatchNorm, ReLU          -> skip at stride 2 (64 channels)
      3x3 stride-2 max-pool, layer1                     -> skip at stride 4
      layer2, layer3                                    -> skips at strides 8, 16
      layer4                                            -> the deepest feature, stride 32
    decoder: 4 x DecoderBlock (2x2 stride-2 up-convolution, concatenated skip, two 3x3
      conv + BatchNorm + ReLU), then one more up-convolution + two 3x3 convs back at the
      input resolution (no skip there), widths ``decoder_features``
    head: 1x1 convolution to the class logits (float32)

The encoder's module and parameter names are torchvision's (``layer1_0/conv1`` is
``layer1.0.conv1``), so ``unet_jax.encoder_weights`` maps a state dict by name; its
convolutions pad like PyTorch's (explicit, symmetric: "SAME" would pad a stride-2
convolution asymmetrically) and its BatchNorm is PyTorch's (eps 1e-5, momentum 0.1,
which is Flax's 0.9). The decoder upsamples with the classic model's transposed
convolution (``unet_jax.model.Upsample2x``): learnt, and the operator the ONNX export
already writes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from unet_jax.model.unet import (
    ConvBlock,
    DecoderBlock,
    ModuleDef,
    SegmentationNet,
    Upsample2x,
    batchnorm_factory,
    check_image_shape,
    conv_factory,
)

# The top-level module that holds the encoder's parameters and BatchNorm statistics (the
# optimizer's label and the frozen-statistics rule select it by this name).
ENCODER_MODULE = "encoder"
DEFAULT_DECODER_FEATURES = (256, 128, 64, 32, 16)
SIZE_MULTIPLE = 32  # the encoder halves the resolution five times


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One torchvision ResNet: the residual block and the number of blocks per stage."""

    block: str  # "basic" or "bottleneck"
    layers: tuple[int, int, int, int]

    @property
    def expansion(self) -> int:
        """Output channels of a stage per channel of its width (64, 128, 256, 512)."""
        return 4 if self.block == "bottleneck" else 1


ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture("basic", (2, 2, 2, 2)),
    "resnet34": Architecture("basic", (3, 4, 6, 3)),
    "resnet50": Architecture("bottleneck", (3, 4, 6, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
ENCODERS = ("unet", *ARCHITECTURES)


def _pad(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """PyTorch's symmetric ``padding=kernel // 2``."""
    return ((kernel // 2, kernel // 2),) * 2


def torch_conv(
    features: int, kernel: int, strides: int, *, name: str, dtype: Any, conv_impl: str
) -> nn.Conv:
    """A bias-free convolution padded like PyTorch's, named like its torchvision layer.

    Args:
      features: output channels.
      kernel: square kernel side.
      strides: stride of both spatial axes.
      name: the torchvision layer's name ("conv1", "downsample_0", ...).
      dtype: computation dtype.
      conv_impl: weight-gradient path of the stride-1 convolutions (``unet_jax.conv_fast``;
        the strided ones keep XLA's, which the fast path does not cover).

    Returns:
      The ``nn.Conv`` (bound to the module that calls this).
    """
    conv = conv_factory(use_bias=False, dtype=dtype, conv_impl=conv_impl if strides == 1 else "xla")
    return conv(
        features, (kernel, kernel), strides=(strides, strides), padding=_pad(kernel), name=name
    )


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convs, the shortcut (1x1 conv when it must), ReLU.

    Attributes:
      planes: width of the block (its output channels).
      strides: stride of the first convolution and of the shortcut.
      conv: ``torch_conv`` with dtype and conv_impl bound.
      norm: BatchNorm factory, called with ``name=...``.
    """

    planes: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    expansion: ClassVar[int] = 1

    def shortcut(self, x: jax.Array) -> jax.Array:
        out = self.planes * self.expansion
        if self.strides == 1 and x.shape[-1] == out:
            return x
        y = self.conv(out, 1, self.strides, name="downsample_0")(x)
        return self.norm(name="downsample_1")(y)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(self.norm(name="bn1")(self.conv(self.planes, 3, self.strides, name="conv1")(x)))
        y = self.norm(name="bn2")(self.conv(self.planes, 3, 1, name="conv2")(y))
        return nn.relu(y + self.shortcut(x))


class Bottleneck(BasicBlock):
    """torchvision's Bottleneck (ResNet v1.5: the stride sits on the 3x3 convolution)."""

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(self.norm(name="bn1")(self.conv(self.planes, 1, 1, name="conv1")(x)))
        y = nn.relu(self.norm(name="bn2")(self.conv(self.planes, 3, self.strides, name="conv2")(y)))
        y = self.norm(name="bn3")(self.conv(self.planes * 4, 1, 1, name="conv3")(y))
        return nn.relu(y + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """torchvision's ResNet up to layer4, returning the features the decoder needs.

    Attributes:
      architecture: "resnet18", "resnet34" or "resnet50".
      dtype: computation dtype.
      conv_impl: see ``torch_conv``.
      bn_axis_name: device axis of the BatchNorm training statistics.
    """

    architecture: str = "resnet18"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> list[jax.Array]:
        """The stem's and the four stages' outputs (strides 2, 4, 8, 16, 32).

        Args:
          x: normalised images [B, H, W, 3].
          train: BatchNorm batch statistics (training) or running averages.

        Returns:
          Five feature maps, shallowest first.
        """
        arch = ARCHITECTURES[self.architecture]
        block = Bottleneck if arch.block == "bottleneck" else BasicBlock

        conv = functools.partial(torch_conv, dtype=self.dtype, conv_impl=self.conv_impl)

        norm = batchnorm_factory(train=train, axis_name=self.bn_axis_name, dtype=self.dtype)
        x = nn.relu(norm(name="bn1")(conv(64, 7, 2, name="conv1")(x)))
        features = [x]
        x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=_pad(3))
        for stage, (width, blocks) in enumerate(zip(STAGE_WIDTHS, arch.layers, strict=True)):
            for index in range(blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                x = block(width, strides, conv, norm, name=f"layer{stage + 1}_{index}")(x)
            features.append(x)
        return features


class ResNetUNet(SegmentationNet):
    """A U-Net over a torchvision ResNet encoder (the shared fields: `SegmentationNet`).

    ImageNet's ``mean`` and ``std`` are what the pretrained weights expect.

    Attributes:
      encoder: "resnet18", "resnet34" or "resnet50".
      decoder_features: widths of the five decoder blocks, deepest first (the last one
        runs at the input resolution).
    """

    encoder: str = "resnet18"
    decoder_features: Sequence[int] = DEFAULT_DECODER_FEATURES

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (32: five halvings)."""
        return SIZE_MULTIPLE

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raises ValueError unless ``shape`` is [B, H, W, 3] with H, W multiples of 32."""
        check_image_shape(
            shape,
            SIZE_MULTIPLE,
            model=f"the {self.encoder} U-Net",
            reason="the ResNet encoder halves the resolution five times",
            channels=self.in_channels,
        )

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        """Computes per-pixel class logits.

        Args:
          images: [B, H, W, 3] uint8 or float in 0..255; H and W multiples of 32.
          train: training mode (batch statistics, dropout) or inference mode.

        Returns:
          float32 logits [B, H, W, num_classes].
        """
        if self.encoder not in ARCHITECTURES:
            raise ValueError(f"encoder must be one of {tuple(ARCHITECTURES)}, got {self.encoder!r}")
        if len(self.decoder_features) != 5:
            raise ValueError(
                f"decoder_features needs 5 widths (one per upsampling), got "
                f"{tuple(self.decoder_features)}"
            )
        self.check_input_shape(images.shape)
        x = self.normalise(images)
        features = ResNetEncoder(
            self.encoder, self.dtype, self.conv_impl, self.bn_axis_name, name=ENCODER_MODULE
        )(x, train=train)
        conv = conv_factory(
            use_bias=not self.use_batchnorm, dtype=self.dtype, conv_impl=self.conv_impl
        )
        norm = None
        if self.use_batchnorm:
            norm = batchnorm_factory(train=train, axis_name=self.bn_axis_name, dtype=self.dtype)
        blocks = dict(conv=conv, norm=norm, dropout_rate=self.dropout_rate)
        *skips, x = features
        for width, skip in zip(self.decoder_features[:-1], reversed(skips), strict=True):
            x = DecoderBlock(width, **blocks, upsample=self.upsample, dtype=self.dtype)(
                x, skip, train=train
            )
        width = self.decoder_features[-1]
        x = Upsample2x(width, self.upsample, self.dtype)(x)
        x = ConvBlock(width, **blocks)(x, train=train)
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)
        return logits.astype(jnp.float32)


def size_multiple(encoder: str, features: Sequence[int]) -> int:
    """What the image size must be a multiple of for ``config.model``'s encoder.

    Args:
      encoder: "unet" or a ResNet name.
      features: the classic U-Net's encoder widths (one halving each).

    Returns:
      32 for the ResNets, ``2 ** len(features)`` for the classic U-Net.
    """
    return SIZE_MULTIPLE if encoder in ARCHITECTURES else 2 ** len(features)
