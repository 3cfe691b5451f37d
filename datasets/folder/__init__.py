"""The ``folder`` data set: any folder of images and masks (docs/YOUR_DATA.md).

``python train.py --config unet_jax/configs/folder.py --config.folder=DIR --workdir W``
prepares ``DIR`` on first use; ``python -m datasets.folder DIR`` prepares it alone.
"""

from datasets.common.errors import DataError
from datasets.folder.classes_file import MaskRule, read_classes_file
from datasets.folder.folder_dataset_builder import Builder, FolderConfig, open_builder
from datasets.folder.layout import FileNames

__all__ = [
    "Builder",
    "DataError",
    "FileNames",
    "FolderConfig",
    "MaskRule",
    "open_builder",
    "read_classes_file",
]
