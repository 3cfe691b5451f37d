"""The ``aerial`` TFDS data set: Semantic segmentation of aerial imagery (docs/AERIAL.md).

``python train.py --config unet_jax/configs/aerial.py --workdir runs/aerial`` prepares it
on first use from the Kaggle zip (or its extracted folder) in the manual directory;
``python -m datasets.aerial`` prepares it alone.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from datasets.aerial.aerial_dataset_builder import (
    KAGGLE_URL,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
)
from datasets.aerial.classes import AERIAL_CLASSES, MASK_RULE
from datasets.common.errors import DataError
from datasets.lyft_udacity.errors import ManualDownloadMissingError

FILE_FORMAT = "array_record"

__all__ = [
    "AERIAL_CLASSES",
    "KAGGLE_URL",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "MASK_RULE",
    "Builder",
    "DataError",
    "ManualDownloadMissingError",
    "open_builder",
]


def open_builder(
    *, data_dir: str | None = None, manual_dir: str | None = None, prepare: bool = True
) -> Builder:
    """The aerial builder, prepared first when ``prepare`` and not yet prepared.

    Preparation writes into an ``incomplete.*`` folder that TFDS renames only on success:
    a failed run never leaves a data set that looks prepared.

    Args:
      data_dir: TFDS data directory; None: the TFDS default (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      manual_dir: where the Kaggle zip or its extracted folder is; None: the TFDS default
        ``<data_dir>/downloads/manual``.
      prepare: False only opens the builder.

    Returns:
      The builder; read it with ``builder.as_data_source()``.

    Raises:
      ManualDownloadMissingError: no archive or tiles in the manual directory.
      DataError: invalid input data; the message names the file.
    """
    builder = Builder(data_dir=data_dir, file_format=FILE_FORMAT)
    if prepare:
        builder.download_and_prepare(
            file_format=FILE_FORMAT,
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            ),
        )
    return builder
