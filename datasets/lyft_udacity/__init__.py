"""The lyft_udacity TFDS data set (real CARLA scenes and the synthetic demo).

Importing this package registers the builder, so that
``tfds.builder("lyft_udacity/synthetic", data_dir=..., file_format="array_record")``
works. Prepare a config with `prepare` or
``python -m datasets.lyft_udacity --config resized_256``.
"""

from datasets.lyft_udacity.errors import DataError, ManualDownloadMissingError
from datasets.lyft_udacity.lyft_udacity_dataset_builder import (
    CONFIG_NAMES,
    Builder,
    LyftUdacityConfig,
)
from datasets.lyft_udacity.prepare import open_builder, prepare

__all__ = [
    "CONFIG_NAMES",
    "Builder",
    "DataError",
    "LyftUdacityConfig",
    "ManualDownloadMissingError",
    "open_builder",
    "prepare",
]
