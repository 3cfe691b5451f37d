"""Random-access data sources for a prepared TFDS data set (array_record, no TensorFlow)."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

# prepare_fn(config_name, data_dir=..., manual_dir=...) -> prepared tfds builder. train.py
# passes datasets.lyft_udacity.prepare.prepare (the builder lives outside the library).
PrepareFn = Callable[..., Any]

SPLITS = ("train", "validation", "test")


def get_data_sources(
    config: ml_collections.ConfigDict,
    *,
    splits: Sequence[str] = SPLITS,
    prepare_fn: PrepareFn | None = None,
) -> dict[str, Any]:
    """Opens the splits of ``config.dataset``, preparing it first if needed.

    With several processes, process 0 prepares while the others wait, so a shared
    filesystem is written once.

    Args:
      config: uses ``dataset`` ("lyft_udacity/<builder config>"), ``data_dir`` and
        ``manual_dir``.
      splits: the split names to open.
      prepare_fn: prepares the data set when it is not prepared yet; None to require a
        prepared data set.

    Returns:
      {split: random-access source of example dicts}.

    Raises:
      FileNotFoundError: the data set is not prepared and cannot be (see the message).
      ValueError: a split that the data set does not have.
    """
    name, _, builder_config = config.dataset.partition("/")
    if jax.process_index() == 0 and prepare_fn is not None:
        prepare_fn(builder_config, data_dir=config.data_dir, manual_dir=config.manual_dir)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("unet_jax:data_prepared")
    try:
        builder = tfds.builder(config.dataset, data_dir=config.data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError as e:
        raise FileNotFoundError(
            f"TFDS does not know {name!r}: import datasets.lyft_udacity first (train.py and "
            "eval.py do) so the builder is registered"
        ) from e
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"{config.dataset} is not prepared in {builder.data_dir}; run "
            f"`python -m datasets.lyft_udacity --config {builder_config}` first"
        )
    available = set(builder.info.splits.keys())
    missing = [s for s in splits if s not in available]
    if missing:
        raise ValueError(
            f"{config.dataset} has no split {missing[0]!r}; it has {sorted(available)}"
        )
    sources = builder.as_data_source()
    return {split: sources[split] for split in splits}
