"""The U-Net's parameter count in closed form: an oracle independent of the model code."""

from collections.abc import Sequence


def expected_param_count(
    *,
    in_channels: int = 3,
    num_classes: int = 13,
    features: Sequence[int] = (64, 128, 256, 512),
    bridge_features: int = 1024,
    use_batchnorm: bool = True,
) -> int:
    """Closed-form parameter count of ``unet_jax.model.unet.UNet`` (the tests' oracle).

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
