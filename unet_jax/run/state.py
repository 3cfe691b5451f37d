"""Training state, model and optimizer construction from a config."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from flax.training import train_state

from unet_jax.model.conv_fast import resolve_conv_impl
from unet_jax.model.outputs import num_outputs
from unet_jax.model.resnet import ARCHITECTURES, ENCODERS, ResNetUNet
from unet_jax.model.unet import UNet
from unet_jax.run import budget_schedule, fine_tuning

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class TrainState(train_state.TrainState):
    """Flax TrainState plus BatchNorm statistics and the run's base PRNG key.

    The per-step key is ``fold_in(rng, step)``, so the state needs no key update and a
    resumed run draws exactly the randomness an uninterrupted one would.
    """

    batch_stats: Any = struct.field(default_factory=dict)
    rng: jax.Array = struct.field(default=None)
    # config.encoder_frozen_steps: the encoder's BatchNorm statistics stay that long.
    encoder_frozen_steps: int = struct.field(pytree_node=False, default=0)

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> "TrainState":
        """Flax's update, keeping a frozen encoder's BatchNorm statistics (see fine_tuning)."""
        if "batch_stats" in kwargs:
            kwargs["batch_stats"] = fine_tuning.keep_frozen_statistics(
                self.step,
                kwargs["batch_stats"],
                self.batch_stats,
                frozen_steps=self.encoder_frozen_steps,
            )
        return super().apply_gradients(grads=grads, **kwargs)


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
        # whatever logs it) carries the concrete choice. Workdirs written before the option
        # existed trained with "xla"; they keep it so that a resumed run stays bit-identical.
        conv_impl=resolve_conv_impl(m.get("conv_impl", "xla")),
        dtype=DTYPES[m.dtype],
    )
    # Workdirs written before model.encoder existed hold classic U-Nets.
    encoder = m.get("encoder", "unet")
    if encoder not in ENCODERS:
        raise ValueError(f"config.model.encoder must be one of {ENCODERS}, got {encoder!r}")
    if encoder in ARCHITECTURES:
        return ResNetUNet(encoder=encoder, decoder_features=tuple(m.decoder_features), **common)
    return UNet(features=tuple(m.features), bridge_features=m.bridge_features, **common)


def create_learning_rate_schedule(
    config: ml_collections.ConfigDict, *, total_steps: int
) -> optax.Schedule:
    """Constant learning rate, or linear warmup then cosine decay to 0.

    Args:
      config: uses ``learning_rate``, ``schedule`` and ``warmup_steps``.
      total_steps: number of training steps of the run.

    Returns:
      An optax schedule.
    """
    if config.schedule == "constant":
        if config.warmup_steps > 0:
            return optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
        return optax.constant_schedule(config.learning_rate)
    if config.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=config.learning_rate,
            warmup_steps=config.warmup_steps,
            decay_steps=max(total_steps, config.warmup_steps + 1),
            end_value=0.0,
        )
    raise ValueError(
        f"config.schedule must be 'constant' or 'warmup_cosine', got {config.schedule!r}"
    )


def create_optimizer(
    config: ml_collections.ConfigDict, *, total_steps: int
) -> optax.GradientTransformation:
    """Adam (the reference recipe) or SGD with momentum 0.9, on the configured schedule.

    A ResNet encoder gets its own learning-rate multiple and frozen steps
    (``unet_jax.fine_tuning``).

    Args:
      config: uses ``optimizer`` and the schedule fields.
      total_steps: number of training steps of the run.

    Returns:
      An optax gradient transformation.
    """
    if config.get("time_budget_minutes") is not None:
        return _budget_optimizer(config)
    schedule = create_learning_rate_schedule(config, total_steps=total_steps)
    if config.optimizer in ("adam", "sgd") and config.model.get("encoder", "unet") != "unet":
        return fine_tuning.encoder_optimizer(
            optimizer=config.optimizer,
            schedule=schedule,
            lr_multiplier=float(config.get("encoder_lr_multiplier", 1.0)),
            frozen_steps=int(config.get("encoder_frozen_steps", 0)),
        )
    if config.optimizer == "adam":
        return optax.adam(schedule)
    if config.optimizer == "sgd":
        return optax.sgd(schedule, momentum=0.9)
    raise ValueError(f"config.optimizer must be 'adam' or 'sgd', got {config.optimizer!r}")


def _budget_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam or SGD (as `create_optimizer`) on a schedule the time budget sets at run time.

    Until the loop has measured the step time, the warm-up is the config's and the cosine
    has not started (its knots lie far beyond any run); ``unet_jax.train.time_budget``
    replaces them.
    """
    far = 2**30
    scale = budget_schedule.scale_by_budget_schedule(
        config.learning_rate,
        cosine=config.schedule == "warmup_cosine",
        warmup=config.warmup_steps,
        knots=((config.warmup_steps, 0.0), (far, 1.0), (far + 1, 1.0)),
    )
    if config.optimizer == "adam":
        return optax.chain(optax.scale_by_adam(), scale)
    if config.optimizer == "sgd":
        return optax.chain(optax.trace(decay=0.9), scale)
    raise ValueError(f"config.optimizer must be 'adam' or 'sgd', got {config.optimizer!r}")


def create_train_state(
    config: ml_collections.ConfigDict, *, rng: jax.Array, total_steps: int
) -> TrainState:
    """Initialises parameters, BatchNorm statistics and Adam state on the default device.

    Args:
      config: the run configuration.
      rng: PRNG key; split into an init key and the run's base key.
      total_steps: length of the run, for the learning-rate schedule.

    Returns:
      An unreplicated TrainState whose ``apply_fn`` is the UNet without a BatchNorm device
      axis (the drivers rebind it).
    """
    model = create_model(config)
    init_rng, base_rng = jax.random.split(rng)
    height, width = config.image_size
    model.check_input_shape((1, height, width, 3))

    @jax.jit
    def init(key):
        return model.init(key, jnp.zeros((1, height, width, 3), jnp.uint8), train=False)

    variables = init(init_rng)
    tx = create_optimizer(config, total_steps=total_steps)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        rng=jax.random.key_data(base_rng),
        encoder_frozen_steps=int(config.get("encoder_frozen_steps", 0)),
    )
