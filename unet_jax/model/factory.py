"""The model of a config: the classic U-Net or a ResNet-encoder U-Net."""

import jax
import jax.numpy as jnp
import ml_collections

from unet_jax.model import input_norm
from unet_jax.model.conv_fast import resolve_conv_impl
from unet_jax.model.outputs import num_outputs
from unet_jax.model.resnet import ARCHITECTURES, ENCODERS, ResNetUNet
from unet_jax.model.unet import UNet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def create_model(
    config: ml_collections.ConfigDict, *, bn_axis_name: str | None = None
) -> UNet | ResNetUNet:
    """Builds the UNet (or, with ``model.encoder`` a ResNet, the ResNetUNet) of ``config.model``.

    Args:
      config: the run configuration.
      bn_axis_name: device axis for cross-device BatchNorm statistics, or None.

    Returns:
      An (unbound) model whose ``conv_impl`` is "xla" or "patches" ("auto" resolved
      for this process's default backend, see ``conv_fast.resolve_conv_impl``).
    """
    m = config.model
    if m.dtype not in DTYPES:
        raise ValueError(f"config.model.dtype must be one of {sorted(DTYPES)}, got {m.dtype!r}")
    common = dict(
        num_classes=num_outputs(config.num_classes, m.output_activation),
        use_batchnorm=m.use_batchnorm,
        dropout_rate=m.dropout_rate,
        bn_axis_name=bn_axis_name,
        upsample=m.upsample,
        # "auto" becomes "patches" on CPU and "xla" elsewhere, here once, so the model (and
        # whatever logs it) carries the concrete choice.
        conv_impl=resolve_conv_impl(m.conv_impl),
        dtype=DTYPES[m.dtype],
        # The input's bands and normalisation, from the data (none: ImageNet's, RGB).
        **input_norm.model_fields(m),
    )
    if m.encoder not in ENCODERS:
        raise ValueError(f"config.model.encoder must be one of {ENCODERS}, got {m.encoder!r}")
    if m.encoder in ARCHITECTURES:
        return ResNetUNet(encoder=m.encoder, decoder_features=tuple(m.decoder_features), **common)
    return UNet(features=tuple(m.features), bridge_features=m.bridge_features, **common)


def abstract_variables(
    model: UNet | ResNetUNet, *, image_size: tuple[int, int]
) -> dict[str, jax.ShapeDtypeStruct]:
    """The shapes of ``model.init``'s variables (``params``, ``batch_stats``), computing none.

    Args:
      model: the model (from `create_model`).
      image_size: (height, width) of the input, multiples of ``model.size_multiple``.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` of ``jax.ShapeDtypeStruct`` (``batch_stats``
      empty without BatchNorm).
    """
    height, width = image_size
    shape = (1, height, width, model.in_channels)
    model.check_input_shape(shape)
    images = jnp.zeros(shape, jnp.uint8)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
