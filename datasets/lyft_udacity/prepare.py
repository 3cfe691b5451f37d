"""Preparing a `lyft_udacity` config without the tfds CLI (which needs TensorFlow)."""

from __future__ import annotations

import os
import shutil

import tensorflow_datasets as tfds

from datasets.lyft_udacity import sources
from datasets.lyft_udacity.lyft_udacity_dataset_builder import CONFIG_NAMES, Builder
from unet_jax.errors import ConfigError

FILE_FORMAT = "array_record"


def prepare(
    config_name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    split_group: str | None = None,
) -> tfds.core.DatasetBuilder:
    """Prepares (or reuses) one config of the data set as array_record files.

    Preparation writes into an ``incomplete.*`` folder that TFDS renames only
    on success: a failed run never leaves a data set that looks prepared.

    Args:
      config_name: one of `CONFIG_NAMES` (``full``, ``full_nohood``,
        ``resized_256``, ``resized_256_nohood``, ``synthetic``, ``synthetic_nohood``).
      data_dir: TFDS data directory; None uses the TFDS default
        (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      manual_dir: where the Kaggle zip or its extracted tree is (or a folder of one's
        own recordings); None uses the TFDS default ``<data_dir>/downloads/manual``.
      split_group: a regular expression; frames whose names give the same match stay
        in one split (`splits.split_frames`); None: the default rule.

    Returns:
      The prepared builder; read it with ``builder.as_data_source()``.

    Raises:
      ValueError: unknown config name.
      ManualDownloadMissingError: no archive or tree in the manual directory.
      DataError: invalid input data; the message names the file.
    """
    return open_builder(
        config_name,
        data_dir=data_dir,
        manual_dir=manual_dir,
        prepare=True,
        split_group=split_group,
    )


def open_builder(
    config_name: str,
    *,
    data_dir: str | None,
    manual_dir: str | None,
    prepare: bool,
    split_group: str | None = None,
    log=print,
) -> tfds.core.DatasetBuilder:
    """The builder of one config, prepared first when ``prepare`` (see `prepare`).

    A config prepared from other frames (another manual directory, changed files) or with
    another ``split_group`` is prepared again; one whose frames are gone is reused.
    """
    if config_name not in CONFIG_NAMES:  # bad input (a config field): exit 2, one line
        raise ConfigError(
            f"lyft_udacity/{config_name}: unknown data set; lyft_udacity has "
            f"{', '.join(CONFIG_NAMES)}"
        )
    builder = Builder(
        config=config_name, data_dir=data_dir, file_format=FILE_FORMAT, split_group=split_group
    )
    if not prepare:
        return builder
    if builder.is_prepared() and builder.builder_config.source == "archive":
        source = sources.find_source(
            os.path.abspath(manual_dir or builder.data_dir_root / "downloads" / "manual")
        )
        if source is not None:
            current = sources.fingerprint(source, split_group=split_group)
            source.close()
            if builder.info.metadata.get("source_fingerprint") != current:
                log(
                    f"{builder.data_dir} was prepared from other frames or another split_group "
                    f"than {source.location}: preparing it again"
                )
                shutil.rmtree(builder.data_dir)
                builder = Builder(
                    config=config_name,
                    data_dir=data_dir,
                    file_format=FILE_FORMAT,
                    split_group=split_group,
                )
    builder.download_and_prepare(
        file_format=FILE_FORMAT,
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False),
    )
    return builder
