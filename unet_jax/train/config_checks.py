"""One check of a run's config at start-up, before any data preparation or compilation.

Each problem is a `ConfigError` naming the field, the value and what is allowed; the
command lines turn it into exit code 2 (bad input) without a traceback.
"""

from __future__ import annotations

import ml_collections

from unet_jax.config_fields import get_field
from unet_jax.data import sources as data_sources
from unet_jax.data.augment import INPUT_MODES, build_train_transforms
from unet_jax.data.classes import ClassSet
from unet_jax.data.run_data import parse_mixture
from unet_jax.deploy.options import OptionError, check_recipe
from unet_jax.errors import ConfigError
from unet_jax.evaluation import metrics
from unet_jax.model.conv_fast import CONV_IMPLS
from unet_jax.model.factory import DTYPES
from unet_jax.model.resnet import ARCHITECTURES, ENCODERS, size_multiple
from unet_jax.model.unet import OUTPUT_ACTIVATIONS, UPSAMPLE_METHODS
from unet_jax.train import losses
from unet_jax.train.optimizer import OPTIMIZERS, SCHEDULES
from unet_jax.train.parallel import DRIVERS

__all__ = ["ConfigError", "expand_shorthands", "validate_against_data", "validate_config"]

CHOICES: dict[str, tuple[str, ...]] = {
    "loss": tuple(losses.LOSS_NAMES),
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "driver": DRIVERS,
    "best_mode": ("max", "min"),
    "input_mode": INPUT_MODES,
    "model.output_activation": OUTPUT_ACTIVATIONS,
    "model.upsample": UPSAMPLE_METHODS,
    "model.conv_impl": CONV_IMPLS,
    "model.dtype": tuple(DTYPES),
    "model.encoder": ENCODERS,
}
# Validation scores any run logs; binary data sets add FOREGROUND_METRICS.
METRICS = (*metrics.MEAN_SCORES, "loss")
FOREGROUND_METRICS = metrics.FOREGROUND_SCORES
POSITIVE_INTS = (
    "batch_size",
    "eval_batch_size",
    "log_every_steps",
    "keep_checkpoints",
    "model.bridge_features",
)


def expand_shorthands(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config with ``image_size=64`` (one number) written out as ``(64, 64)``.

    Returns:
      ``config`` itself when nothing is to expand, else an expanded copy.
    """
    size = config.image_size
    if isinstance(size, int) or (isinstance(size, tuple | list) and len(size) == 1):
        side = size if isinstance(size, int) else size[0]
        config = config.copy_and_resolve_references()
        with config.unlocked(), config.ignore_type():
            config.image_size = (side, side)
    return config


def validate_config(
    config: ml_collections.ConfigDict,
    *,
    process_count: int,
    local_device_count: int,
    builders: data_sources.Builders | None = None,
) -> None:
    """Checks every field that can be checked without the data.

    Args:
      config: the run config.
      process_count: number of processes (hosts).
      local_device_count: devices per process.
      builders: the data set builders, to check ``config.dataset`` against (None: the
        caller gives the data itself).

    Raises:
      ConfigError: the first problem found.
    """
    for field, allowed in CHOICES.items():
        value = get_field(config, field)
        if value not in allowed:
            raise ConfigError(f"config.{field}={value!r}: choose one of {', '.join(allowed)}")
    for field in POSITIVE_INTS:
        value = get_field(config, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"config.{field}={value!r}: must be a positive integer")
    features = tuple(config.model.features)
    if not features or any(not isinstance(f, int) or f < 1 for f in features):
        raise ConfigError(f"config.model.features={features!r}: positive integer widths")
    encoder = config.model.encoder
    multiple = size_multiple(encoder, features)
    why = (
        f"the {encoder} encoder halves them five times"
        if encoder in ARCHITECTURES
        else "2 ** len(model.features), one halving per encoder level"
    )
    size = tuple(config.image_size)
    if len(size) != 2 or any(not isinstance(v, int) or v < multiple or v % multiple for v in size):
        raise ConfigError(
            f"config.image_size={size!r}: height and width must be multiples of {multiple} ({why})"
        )
    check_encoder_config(config)
    devices = process_count * local_device_count
    for field in ("batch_size", "eval_batch_size"):
        value = get_field(config, field)
        if value % devices:
            raise ConfigError(
                f"config.{field}={value}: must be a multiple of the {devices} devices "
                f"({process_count} process(es) x {local_device_count})"
            )
    if not 0.0 <= float(config.model.dropout_rate) < 1.0:
        raise ConfigError(f"config.model.dropout_rate={config.model.dropout_rate}: in [0, 1)")
    if float(config.learning_rate) <= 0:
        raise ConfigError(f"config.learning_rate={config.learning_rate}: must be > 0")
    if config.num_train_steps <= 0 and config.num_epochs <= 0:
        raise ConfigError(
            f"config.num_epochs={config.num_epochs} and config.num_train_steps="
            f"{config.num_train_steps}: one must be positive"
        )
    if config.best_metric not in METRICS + FOREGROUND_METRICS:
        raise ConfigError(
            f"config.best_metric={config.best_metric!r}: choose one of "
            f"{', '.join(METRICS + FOREGROUND_METRICS)}"
        )
    if config.best_metric == "loss" and config.best_mode != "min":
        raise ConfigError("config.best_metric='loss' needs config.best_mode='min'")
    if builders is not None:
        builders.check_name(config.dataset)
        for name, _ in parse_mixture(config.get("mixture")) or ():
            builders.check_name(name, field="config.mixture names")
    worker_count = config.worker_count
    if isinstance(worker_count, bool) or not isinstance(worker_count, int) or worker_count < 0:
        raise ConfigError(f"config.worker_count={worker_count!r}: must be an integer >= 0")
    void = config.get("void_classes") or ()
    if not isinstance(void, (tuple, list)) or not all(isinstance(v, str) and v for v in void):
        raise ConfigError(
            f'config.void_classes={void!r}: a tuple of class names, e.g. ("Unlabeled",)'
        )
    seed = config.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"config.seed={seed!r}: must be an integer in [0, 2**32)")
    _check_augment(config)
    _check_inference(config)


def _check_inference(config: ml_collections.ConfigDict) -> None:
    """Checks the stored inference recipe now, not when predict or eval.py first use it.

    Raises:
      ConfigError: naming the field of ``config.inference`` and what is allowed.
    """
    try:
        check_recipe(config)
    except OptionError as e:
        raise ConfigError(str(e)) from None


def _check_augment(config: ml_collections.ConfigDict) -> None:
    """Builds the training transforms once, so a bad ``config.augment`` value fails here.

    Raises:
      ConfigError: naming ``config.augment`` and what the transform refused.
    """
    augment = {**config.augment.to_dict(), "input_mode": config.input_mode}
    try:
        build_train_transforms(
            height=config.image_size[0], width=config.image_size[1], augment=augment
        )
    except ConfigError:
        raise
    except ValueError as e:  # the transforms check their own arguments
        raise ConfigError(f"config.augment: {e}") from None


def check_encoder_config(config: ml_collections.ConfigDict) -> None:
    """The ResNet encoder's fields: decoder widths, weights file, fine-tuning controls.

    Raises:
      ConfigError: the first problem found.
    """
    m = config.model
    widths = tuple(m.decoder_features)
    if len(widths) != 5 or any(
        isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths
    ):
        raise ConfigError(
            f"config.model.decoder_features={widths!r}: 5 positive integer widths, one per "
            "upsampling (deepest first)"
        )
    if m.encoder_weights and m.encoder not in ARCHITECTURES:
        raise ConfigError(
            f"config.model.encoder_weights={m.encoder_weights!r} needs a ResNet encoder: set "
            f"config.model.encoder to one of {', '.join(ARCHITECTURES)}"
        )
    if m.encoder_weights and config.init_from:
        raise ConfigError(
            "config.model.encoder_weights and config.init_from both initialise the model: "
            "give one of them"
        )
    if not float(config.encoder_lr_multiplier) >= 0:
        raise ConfigError(
            f"config.encoder_lr_multiplier={config.encoder_lr_multiplier}: must be >= 0"
        )
    frozen = config.encoder_frozen_steps
    if isinstance(frozen, bool) or not isinstance(frozen, int) or frozen < 0:
        raise ConfigError(f"config.encoder_frozen_steps={frozen!r}: an integer >= 0")


def validate_against_data(config: ml_collections.ConfigDict, classes: ClassSet) -> None:
    """The checks that need the data set's classes.

    Raises:
      ConfigError: a foreground metric for a data set that is not binary.
    """
    if config.best_metric in FOREGROUND_METRICS and classes.num_classes != 2:
        raise ConfigError(
            f"config.best_metric={config.best_metric!r} needs a binary data set; this one has "
            f"{classes.num_classes} classes ({', '.join(classes.names)})"
        )
