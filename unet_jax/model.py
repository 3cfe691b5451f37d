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
from jax import lax

# ImageNet statistics in 0..1 units: the model normalises its uint8 input with them.
DEFAULT_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
DEFAULT_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
UPSAMPLE_METHODS = ("transpose", "einsum")
CONV_IMPLS = ("xla", "patches")


def _kernel_grad_by_shifts(
    x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int], padding: Sequence[tuple[int, int]]
) -> jax.Array:
    """Weight gradient of a stride-1 NHWC/HWIO convolution as one matmul per kernel tap.

    ``dW[i, j] = sum_{b,h,w} xpad[b, h+i, w+j, :]^T dy[b, h, w, :]``: for each of the
    ``kh*kw`` taps a [C, B*H*W] x [B*H*W, O] matmul over a shifted view of the padded input.
    XLA:CPU lowers its own weight-gradient convolution (a convolution whose window is the
    whole image) several times slower than a plain matmul of the same FLOPs; see
    docs/PERFORMANCE.md. (``lax.conv_general_dilated_patches`` would build the im2col
    matrix with a one-hot convolution: ``kh*kw*C/O`` times the FLOPs of the gradient.)
    """
    kh, kw, c, o = kernel_shape
    b, out_h, out_w, _ = dy.shape
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    dy_flat = dy.reshape(b * out_h * out_w, o)
    taps = []
    for i in range(kh):
        for j in range(kw):
            source = xp
            if taps:
                # Chain each tap's copy of x behind the previous matmul (XLA keeps the data
                # dependence, float x*0 is not folded): otherwise all kh*kw shifted copies
                # are made first and live at once.
                source = xp + jnp.zeros((), xp.dtype) * taps[-1][0, 0].astype(xp.dtype)
            window = source[:, i : i + out_h, j : j + out_w, :].reshape(b * out_h * out_w, c)
            taps.append(
                lax.dot_general(
                    window,
                    dy_flat,
                    (((0,), (0,)), ((), ())),
                    preferred_element_type=jnp.float32,
                )
            )
    return jnp.stack(taps).reshape(kh, kw, c, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_patches(x: jax.Array, kernel: jax.Array, padding: tuple) -> jax.Array:
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _conv_patches_fwd(x, kernel, padding):
    return _conv_patches(x, kernel, padding), (x, kernel)


def _conv_patches_bwd(padding, residuals, dy):
    x, kernel = residuals
    # Input gradient: XLA's own transposed convolution (fast on every backend).
    _, input_vjp = jax.vjp(
        lambda x_: lax.conv_general_dilated(
            x_, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        ),
        x,
    )
    (dx,) = input_vjp(dy)
    # A data dependence on dy makes the shifted copies of x wait for the backward pass:
    # without it XLA computes them right after the forward convolution and keeps kh*kw
    # copies of every such activation alive until the backward pass reaches the layer
    # (several GiB for the full U-Net). XLA:CPU drops lax.optimization_barrier before
    # scheduling, and does not fold a float multiplication by zero (NaN semantics).
    x = x + jnp.zeros((), x.dtype) * dy[(0,) * dy.ndim]
    dw = _kernel_grad_by_shifts(x, dy, kernel.shape, padding)
    return dx, dw.astype(kernel.dtype)


_conv_patches.defvjp(_conv_patches_fwd, _conv_patches_bwd)


# Where the per-tap matmul weight gradient pays off, measured on XLA:CPU (jax 0.10.2,
# benchmarks/conv_grad.py, docs/PERFORMANCE.md): XLA's own weight-gradient convolution
# runs at a fraction of its forward speed on images of 64x64 pixels and more with 64+
# channels, while with fewer channels (thin matmuls) or smaller images XLA is as fast or
# faster. Convolutions outside these bounds keep XLA's gradient.
PATCHES_MIN_CHANNELS = 64
PATCHES_MIN_PIXELS = 64 * 64


def patches_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    *,
    min_channels: int = PATCHES_MIN_CHANNELS,
    min_pixels: int = PATCHES_MIN_PIXELS,
) -> jax.Array:
    """``lax.conv_general_dilated`` whose weight gradient is a matmul per kernel tap.

    A drop-in for ``nn.Conv(conv_general_dilated=...)``: same forward (XLA's convolution),
    same input gradient (XLA's transposed convolution); only the weight gradient differs,
    computed by :func:`_kernel_grad_by_shifts` when the convolution has at least
    ``min_channels`` input and output channels and ``min_pixels`` output pixels per image
    (elsewhere XLA's weight gradient is as fast, see ``PATCHES_MIN_CHANNELS``). Supports what
    the U-Net uses: 2-D NHWC/HWIO convolutions with stride 1, no dilation, one feature
    group, explicit or "SAME"/"VALID" padding.

    Args:
      lhs: input [B, H, W, C].
      rhs: kernel [kh, kw, C, O].
      window_strides: must be (1, 1).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      lhs_dilation, rhs_dilation: must be None or all ones.
      dimension_numbers: must describe NHWC/HWIO/NHWC (what ``nn.Conv`` passes).
      feature_group_count, batch_group_count: must be 1.
      precision, preferred_element_type: must be None.
      min_channels: smallest min(C, O) that takes the matmul weight gradient.
      min_pixels: smallest H' * W' that takes the matmul weight gradient.

    Returns:
      The convolution output [B, H', W', O].

    Raises:
      ValueError: for any configuration outside the supported one, naming the value.
    """
    if lhs.ndim != 4 or rhs.ndim != 4:
        raise ValueError(
            f"conv_impl='patches' supports 2-D convolutions only, got input shape {lhs.shape} "
            f"and kernel shape {rhs.shape}"
        )
    expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    if dimension_numbers is not None:
        given = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        if given != expected:
            raise ValueError(
                "conv_impl='patches' supports NHWC/HWIO/NHWC convolutions only, got "
                f"dimension_numbers={dimension_numbers!r}"
            )
    checks = {
        "window_strides": (tuple(window_strides), (1, 1)),
        "lhs_dilation": (tuple(lhs_dilation or (1, 1)), (1, 1)),
        "rhs_dilation": (tuple(rhs_dilation or (1, 1)), (1, 1)),
        "feature_group_count": (feature_group_count, 1),
        "batch_group_count": (batch_group_count, 1),
        "precision": (precision, None),
        "preferred_element_type": (preferred_element_type, None),
    }
    for name, (value, supported) in checks.items():
        if value != supported:
            raise ValueError(f"conv_impl='patches' needs {name}={supported!r}, got {value!r}")
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    out_pixels = (lhs.shape[1] + sum(padding[0]) - rhs.shape[0] + 1) * (
        lhs.shape[2] + sum(padding[1]) - rhs.shape[1] + 1
    )
    if min(rhs.shape[2], rhs.shape[3]) < min_channels or out_pixels < min_pixels:
        return lax.conv_general_dilated(
            lhs, rhs, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    return _conv_patches(lhs, rhs, padding)


def _conv_fn(conv_impl: str) -> Any:
    """The ``conv_general_dilated`` callable for ``nn.Conv`` (None: Flax's default)."""
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
    return patches_conv_general_dilated if conv_impl == "patches" else None


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by BatchNorm (optional), ReLU and dropout.

    Attributes:
      features: output channels of both convolutions.
      use_batchnorm: whether to normalise after each convolution.
      dropout_rate: dropout after each ReLU (0 disables it).
      bn_axis_name: device axis over which BatchNorm averages batch statistics (``None``
        outside pmap/shard_map), which makes multi-device training equal single-device
        training on the same global batch.
      dtype: computation dtype (parameters stay float32).
      conv_impl: "xla" (``lax.conv_general_dilated`` throughout) or "patches" (same
        forward and input gradient, weight gradient as one matmul per kernel tap, see
        ``patches_conv_general_dilated``); same function, same parameters.
    """

    features: int
    use_batchnorm: bool = True
    dropout_rate: float = 0.0
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv_fn = _conv_fn(self.conv_impl)
        for _ in range(2):
            x = nn.Conv(
                self.features,
                (3, 3),
                padding="SAME",
                use_bias=not self.use_batchnorm,
                dtype=self.dtype,
                conv_general_dilated=conv_fn,
            )(x)
            if self.use_batchnorm:
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    dtype=self.dtype,
                    axis_name=self.bn_axis_name if train else None,
                )(x)
            x = nn.relu(x)
            if self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return x


class EncoderBlock(nn.Module):
    """A ConvBlock whose output is kept as the skip connection, then 2x2 max-pooling.

    Attributes are those of ConvBlock. Returns (pooled, skip).
    """

    features: int
    use_batchnorm: bool = True
    dropout_rate: float = 0.0
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        skip = ConvBlock(
            self.features,
            self.use_batchnorm,
            self.dropout_rate,
            self.bn_axis_name,
            self.dtype,
            conv_impl=self.conv_impl,
        )(x, train=train)
        return nn.max_pool(skip, (2, 2), strides=(2, 2)), skip


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
    """Up-convolution, concatenation with the encoder skip, then a ConvBlock."""

    features: int
    use_batchnorm: bool = True
    dropout_rate: float = 0.0
    bn_axis_name: str | None = None
    upsample: str = "einsum"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array, *, train: bool) -> jax.Array:
        x = Upsample2x(self.features, self.upsample, self.dtype)(x)
        x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
        return ConvBlock(
            self.features,
            self.use_batchnorm,
            self.dropout_rate,
            self.bn_axis_name,
            self.dtype,
            conv_impl=self.conv_impl,
        )(x, train=train)


class UNet(nn.Module):
    """The U-Net segmentation network.

    Attributes:
      num_classes: number of output classes (logit channels).
      features: encoder widths; the decoder mirrors them.
      bridge_features: width of the bottleneck block.
      use_batchnorm: BatchNorm after every 3x3 convolution.
      dropout_rate: dropout after every ReLU (0 disables it).
      bn_axis_name: device axis for cross-device BatchNorm statistics (see ConvBlock).
      upsample: "einsum" (fast, default) or "transpose"; same function, same parameters.
      dtype: computation dtype, e.g. jnp.bfloat16; parameters, BatchNorm statistics and
        the returned logits are float32.
      mean, std: per-channel normalisation in 0..1 units; the input is 0..255.
      conv_impl: how the 3x3 convolutions compute their weight gradient: "xla" (default)
        or "patches" (one matmul per kernel tap, see ``patches_conv_general_dilated``);
        same function, same parameters.
    """

    num_classes: int = 13
    features: Sequence[int] = (64, 128, 256, 512)
    bridge_features: int = 1024
    use_batchnorm: bool = True
    dropout_rate: float = 0.0
    bn_axis_name: str | None = None
    upsample: str = "einsum"
    dtype: Any = jnp.float32
    mean: Sequence[float] = DEFAULT_MEAN
    std: Sequence[float] = DEFAULT_STD
    conv_impl: str = "xla"

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per encoder)."""
        return 2 ** len(self.features)

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raises ValueError unless ``shape`` is [B, H, W, 3] with H, W multiples of 16."""
        m = self.size_multiple
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(
                f"UNet expects images of shape [batch, height, width, 3], got {tuple(shape)}"
            )
        if shape[1] % m or shape[2] % m or shape[1] == 0 or shape[2] == 0:
            raise ValueError(
                f"UNet input height and width must be positive multiples of {m} "
                f"(one halving per encoder block), got {shape[1]}x{shape[2]}; "
                "resize or pad the image first"
            )

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        """Computes per-pixel class logits.

        Args:
          images: [B, H, W, 3] uint8 or float in 0..255; H and W multiples of 16.
          train: training mode (batch statistics, dropout) or inference mode.

        Returns:
          float32 logits [B, H, W, num_classes].
        """
        self.check_input_shape(images.shape)
        mean = jnp.asarray(self.mean, jnp.float32) * 255.0
        std = jnp.asarray(self.std, jnp.float32) * 255.0
        x = ((images.astype(jnp.float32) - mean) / std).astype(self.dtype)
        common = dict(
            use_batchnorm=self.use_batchnorm,
            dropout_rate=self.dropout_rate,
            bn_axis_name=self.bn_axis_name,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
        )
        skips = []
        for width in self.features:
            x, skip = EncoderBlock(width, **common)(x, train=train)
            skips.append(skip)
        x = ConvBlock(self.bridge_features, **common)(x, train=train)
        for width, skip in zip(reversed(self.features), reversed(skips), strict=True):
            x = DecoderBlock(width, upsample=self.upsample, **common)(x, skip, train=train)
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)
        return logits.astype(jnp.float32)


def probabilities(logits: jax.Array, activation: str = "softmax") -> jax.Array:
    """Applies the output activation to logits.

    Args:
      logits: [..., num_classes].
      activation: "softmax" (mutually exclusive classes) or "sigmoid" (independent
        per-class probabilities, as in the reference Keras article).

    Returns:
      Probabilities with the shape of ``logits``.
    """
    if activation == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    if activation == "sigmoid":
        return jax.nn.sigmoid(logits)
    raise ValueError(f"output activation must be one of {OUTPUT_ACTIVATIONS}, got {activation!r}")


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def expected_param_count(
    *,
    in_channels: int = 3,
    num_classes: int = 13,
    features: Sequence[int] = (64, 128, 256, 512),
    bridge_features: int = 1024,
    use_batchnorm: bool = True,
) -> int:
    """Closed-form parameter count of ``UNet`` (the test oracle and a docs aid).

    Each 3x3 conv has 9*c_in*c_out weights (+c_out bias without BatchNorm), each BatchNorm
    2*c_out (scale, shift; running statistics are not parameters), each up-convolution
    4*c_in*c_out + c_out, the head c_in*num_classes + num_classes.
    """

    def conv_block(c_in: int, c_out: int) -> int:
        per_layer_extra = 2 * c_out if use_batchnorm else c_out
        return 9 * c_in * c_out + 9 * c_out * c_out + 2 * per_layer_extra

    total, c_in = 0, in_channels
    for width in features:
        total += conv_block(c_in, width)
        c_in = width
    total += conv_block(c_in, bridge_features)
    c_in = bridge_features
    for width in reversed(features):
        total += 4 * c_in * width + width + conv_block(2 * width, width)
        c_in = width
    return total + c_in * num_classes + num_classes
