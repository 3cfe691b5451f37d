"""Preparing a `lyft_udacity` config without the tfds CLI (which needs TensorFlow)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from datasets.lyft_udacity.lyft_udacity_dataset_builder import CONFIG_NAMES, Builder

FILE_FORMAT = "array_record"


def prepare(
    config_name: str, *, data_dir: str | None = None, manual_dir: str | None = None
) -> tfds.core.DatasetBuilder:
    """Prepares (or reuses) one config of the data set as array_record files.

    Preparation writes into an ``incomplete.*`` folder that TFDS renames only
    on success: a failed run never leaves a data set that looks prepared.

    Args:
      config_name: one of `CONFIG_NAMES` (``full``, ``full_nohood``,
        ``resized_256``, ``resized_256_nohood``, ``synthetic``).
      data_dir: TFDS data directory; None uses the TFDS default
        (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      manual_dir: where the Kaggle zip or its extracted tree is; None uses
        the TFDS default ``<data_dir>/downloads/manual``.

    Returns:
      The prepared builder; read it with ``builder.as_data_source()``.

    Raises:
      ValueError: unknown config name.
      ManualDownloadMissingError: no archive or tree in the manual directory.
      DataError: invalid input data; the message names the file.
    """
    return open_builder(config_name, data_dir=data_dir, manual_dir=manual_dir, prepare=True)


def open_builder(
    config_name: str, *, data_dir: str | None, manual_dir: str | None, prepare: bool
) -> tfds.core.DatasetBuilder:
    """The builder of one config, prepared first when ``prepare`` (see `prepare`)."""
    if config_name not in CONFIG_NAMES:
        raise ValueError(f"unknown config {config_name!r}; choose from {', '.join(CONFIG_NAMES)}")
    builder = Builder(config=config_name, data_dir=data_dir, file_format=FILE_FORMAT)
    if not prepare:
        return builder
    builder.download_and_prepare(
        file_format=FILE_FORMAT,
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False),
    )
    return builder
