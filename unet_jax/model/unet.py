"""The classic U-Net as pure-functional Flax linen modules.

Layout (defaults, 3 -> 13 classes, 31,038,413 parameters):

    input uint8/float [B, H, W, 3] in 0..255 -> normalise (first op, on device)
    4 x EncoderBlock: ConvBlock(64, 128, 256, 512) keeps the skip, then 2x2 max-pool
    bridge: ConvBlock(1024)
    4 x DecoderBlock: 2x2 stride-2 up-convolution, concat skip, ConvBlock(512 ... 64)
    head: 1x1 convolution to num_classes logits (float32)

A ConvBlock is two (3x3 conv -> BatchNorm -> ReLU [-> Dropout]). Convolutions that feed a
BatchNorm carry no bias (BatchNorm's shift makes it redundant); without BatchNorm they do.
The model returns logits; the output activation (softmax or per-class sigmoid) is applied by
the loss and by prediction, see ``probabilities``.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from unet_jax.model import conv_fast
from unet_jax.model.outputs import class_logits

# ImageNet statistics in 0..1 units: the model normalises its uint8 input with them.
DEFAULT_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
DEFAULT_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
UPSAMPLE_METHODS = ("transpose", "einsum")


ModuleDef = Any  # a Flax module class, or a functools.partial of one


def check_image_shape(
    shape: Sequence[int], multiple: int, *, model: str, reason: str, channels: int = 3
) -> None:
    """Raises ValueError unless ``shape`` is [B, H, W, channels] with H, W positive multiples.

    Args:
      shape: the input's shape.
      multiple: what H and W must be multiples of.
      model: the model's name, for the message.
      reason: why that multiple, for the message.
      channels: the input bands the model takes.
    """
    if len(shape) != 4 or shape[-1] != channels:
        raise ValueError(
            f"{model} expects images of shape [batch, height, width, {channels}], got "
            f"{tuple(shape)}"
        )
    if shape[1] % multiple or shape[2] % multiple or shape[1] == 0 or shape[2] == 0:
        raise ValueError(
            f"{model} input height and width must be positive multiples of {multiple} "
            f"({reason}), got {shape[1]}x{shape[2]}; resize or pad the image first"
        )


def normalise_images(
    images: jax.Array,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: Any,
    *,
    scale: float = 255.0,
    clip: tuple[Sequence[float], Sequence[float]] | None = None,
) -> jax.Array:
    """``(clip(images) - scale mean) / (scale std)`` in float32, cast to ``dtype``.

    Args:
      images: [..., C] in the data's units.
      mean, std: per band, in units of ``scale``.
      dtype: the computation dtype.
      scale: 255 for ImageNet's statistics on 0..255 pixels, 1 for the data's own.
      clip: per-band (low, high) applied first, or None.
    """
    x = images.astype(jnp.float32)
    if clip is not None:
        x = jnp.clip(x, jnp.asarray(clip[0], jnp.float32), jnp.asarray(clip[1], jnp.float32))
    mean_255 = jnp.asarray(mean, jnp.float32) * scale
    std_255 = jnp.asarray(std, jnp.float32) * scale
    return ((x - mean_255) / std_255).astype(dtype)


def conv_factory(*, use_bias: bool, dtype: Any, conv_impl: str) -> ModuleDef:
    """``nn.Conv`` with "SAME" padding, the bias rule, dtype and weight-gradient path bound."""
    return functools.partial(
        nn.Conv,
        padding="SAME",
        use_bias=use_bias,
        dtype=dtype,
        conv_general_dilated=conv_fast.conv_general_dilated_for(conv_impl),
    )


def batchnorm_factory(*, train: bool, axis_name: str | None, dtype: Any) -> ModuleDef:
    """``nn.BatchNorm`` as PyTorch's default (momentum 0.1 there is 0.9 here, eps 1e-5)."""
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        # Statistics averaged over the device axis only when they are computed.
        axis_name=axis_name if train else None,
    )


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by the normalisation (optional), ReLU and dropout.

    Attributes:
      features: output channels of both convolutions.
      conv: convolution factory, called as ``conv(features, (3, 3))`` (``nn.Conv`` with the
        run's padding, bias rule, dtype and weight-gradient path bound, see UNet).
      norm: normalisation factory called with no arguments (``nn.BatchNorm`` with its
        mode and device axis bound), or None for none.
      dropout_rate: dropout after each ReLU (0 disables it).
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef | None = None
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for _ in range(2):
            x = self.conv(self.features, (3, 3))(x)
            if self.norm is not None:
                x = self.norm()(x)
            x = nn.relu(x)
            if self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return x


class EncoderBlock(nn.Module):
    """A ConvBlock whose output is kept as the skip connection, then 2x2 max-pooling.

    Attributes are those of ConvBlock. Returns (pooled, skip).
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef | None = None
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        skip = ConvBlock(self.features, self.conv, self.norm, self.dropout_rate)(x, train=train)
        return nn.max_pool(skip, window_shape=(2, 2), strides=(2, 2)), skip


class Upsample2x(nn.Module):
    """2x2 stride-2 transposed convolution ("up-convolution") with bias.

    Both methods compute the same function from the same parameters, so checkpoints are
    interchangeable with each other and with ``nn.ConvTranspose(features, (2, 2), strides=2)``:
    ``out[2h+i, 2w+j, d] = sum_c x[h, w, c] * kernel[1-i, 1-j, c, d] + bias[d]`` (the
    transposed convolution flips its kernel).
    ``"transpose"`` calls ``lax.conv_transpose`` (what ``nn.ConvTranspose`` does);
    ``"einsum"`` is one matmul plus a depth-to-space reshape, whose gradient XLA:CPU
    computes several times faster than the transposed convolution's.

    Attributes:
      features: output channels.
      method: "transpose" or "einsum".
      dtype: computation dtype.
    """

    features: int
    method: str = "einsum"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.method not in UPSAMPLE_METHODS:
            raise ValueError(
                f"upsample method must be one of {UPSAMPLE_METHODS}, got {self.method!r}"
            )
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (2, 2, in_features, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.method == "transpose":
            y = jax.lax.conv_transpose(
                x,
                kernel,
                strides=(2, 2),
                padding="VALID",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        else:
            b, h, w, _ = x.shape
            flipped = kernel[::-1, ::-1]  # lax.conv_transpose's convention
            y = jnp.einsum("bhwc,ijcd->bhiwjd", x, flipped).reshape(b, 2 * h, 2 * w, self.features)
        return y + bias


class DecoderBlock(nn.Module):
    """Up-convolution, concatenation with the encoder skip, then a ConvBlock.

    Attributes:
      features: output channels.
      conv, norm, dropout_rate: as in ConvBlock.
      upsample: the Upsample2x method.
      dtype: computation dtype of the up-convolution.
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef | None = None
    dropout_rate: float = 0.0
    upsample: str = "einsum"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array, *, train: bool) -> jax.Array:
        x = Upsample2x(self.features, self.upsample, self.dtype)(x)
        x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
        return ConvBlock(self.features, self.conv, self.norm, self.dropout_rate)(x, train=train)


class SegmentationNet(nn.Module):
    """The fields both networks share (`UNet` and the ResNet-encoder U-Net).

    Attributes:
      num_classes: number of output classes (logit channels).
      use_batchnorm: BatchNorm after every 3x3 convolution (of the decoder, for a
        ResNet encoder, which always has it).
      dropout_rate: dropout after every ReLU (0 disables it).
      bn_axis_name: device axis over which BatchNorm averages its training statistics.
      upsample: "einsum" (fast, default) or "transpose"; same function, same parameters.
      dtype: computation dtype, e.g. jnp.bfloat16; parameters, BatchNorm statistics and
        the returned logits are float32.
      mean, std: per-channel normalisation in units of ``input_scale`` (ImageNet's in
        0..1 units of a 0..255 input by default).
      in_channels: input bands.
      input_scale: 255 (ImageNet's statistics) or 1 (the data's own, ``normalisation``).
      clip_low, clip_high: per-band clipping before normalising, or None.
      conv_impl: how the 3x3 convolutions compute their weight gradient: "xla" (default)
        or "patches" (one matmul per kernel tap, see ``unet_jax.model.conv_fast``), or "auto"
        ("patches" on the CPU backend, else "xla"); same function, same parameters.
    """

    num_classes: int = 13
    use_batchnorm: bool = True
    dropout_rate: float = 0.0
    bn_axis_name: str | None = None
    upsample: str = "einsum"
    dtype: Any = jnp.float32
    mean: Sequence[float] = DEFAULT_MEAN
    std: Sequence[float] = DEFAULT_STD
    conv_impl: str = "xla"
    in_channels: int = 3
    input_scale: float = 255.0
    clip_low: Sequence[float] | None = None
    clip_high: Sequence[float] | None = None

    def normalise(self, images: jax.Array) -> jax.Array:
        """The model's first op: the input normalised, in the computation dtype."""
        clip = None if self.clip_low is None else (self.clip_low, self.clip_high)
        return normalise_images(
            images, self.mean, self.std, self.dtype, scale=self.input_scale, clip=clip
        )


class UNet(SegmentationNet):
    """The U-Net segmentation network (the shared fields: `SegmentationNet`).

    Attributes:
      features: encoder widths; the decoder mirrors them.
      bridge_features: width of the bottleneck block.
    """

    features: Sequence[int] = (64, 128, 256, 512)
    bridge_features: int = 1024

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per encoder)."""
        return 2 ** len(self.features)

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raises ValueError unless ``shape`` is [B, H, W, in_channels], H, W multiples of 16."""
        check_image_shape(
            shape,
            self.size_multiple,
            model="UNet",
            reason="one halving per encoder block",
            channels=self.in_channels,
        )

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        """Computes per-pixel class logits.

        Args:
          images: [B, H, W, in_channels] as the data stores them (8-bit RGB: uint8 or
            float in 0..255); H and W multiples of 16.
          train: training mode (batch statistics, dropout) or inference mode.

        Returns:
          float32 logits [B, H, W, num_classes].
        """
        self.check_input_shape(images.shape)
        x = self.normalise(images)
        conv = conv_factory(
            use_bias=not self.use_batchnorm, dtype=self.dtype, conv_impl=self.conv_impl
        )
        norm = None
        if self.use_batchnorm:
            norm = batchnorm_factory(train=train, axis_name=self.bn_axis_name, dtype=self.dtype)
        blocks = dict(conv=conv, norm=norm, dropout_rate=self.dropout_rate)
        skips = []
        for width in self.features:
            x, skip = EncoderBlock(width, **blocks)(x, train=train)
            skips.append(skip)
        x = ConvBlock(self.bridge_features, **blocks)(x, train=train)
        for width, skip in zip(reversed(self.features), reversed(skips), strict=True):
            x = DecoderBlock(width, **blocks, upsample=self.upsample, dtype=self.dtype)(
                x, skip, train=train
            )
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)
        return logits.astype(jnp.float32)


def probabilities(logits: jax.Array, activation: str = "softmax") -> jax.Array:
    """Applies the output activation to logits.

    Args:
      logits: [..., num_classes].
      activation: "softmax" (mutually exclusive classes) or "sigmoid" (independent
        per-class probabilities, as in the reference Keras article).

    Returns:
      Probabilities [..., num_classes] (a 1-channel binary head gives two, see
      ``unet_jax.model.outputs``).
    """
    logits = class_logits(logits)
    if activation == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if activation == "sigmoid":
        return jax.nn.sigmoid(logits)
    raise ValueError(f"output activation must be one of {OUTPUT_ACTIVATIONS}, got {activation!r}")


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
