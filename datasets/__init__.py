"""TFDS data set builders of this project.

Imported from the repository root (``import datasets.lyft_udacity``), never
installed: an installed top-level ``datasets`` package would shadow Hugging
Face ``datasets``.
"""

from typing import Any


def prepare_dataset(config: Any, *, prepare: bool = True) -> Any:
    """Opens (and with ``prepare`` first prepares) the TFDS builder of ``config.dataset``.

    Args:
      config: a run config: ``dataset`` is ``lyft_udacity/<builder config>``,
        ``aerial`` or ``folder`` (with ``folder``, ``folder_group`` and the optional
        ``folder_images``, ``folder_masks``, ``folder_mask_suffix``); ``split_group``
        for ``lyft_udacity``; ``data_dir`` and
        ``manual_dir`` as in TFDS.
      prepare: prepare the data set when it is not prepared (or, for a folder, stale).

    Returns:
      The tfds builder (read it with ``as_data_source()``).

    Raises:
      ValueError: an unknown data set name.
      DataError, ManualDownloadMissingError: see the builders.
    """
    name, _, builder_config = config.dataset.partition("/")
    if name == "lyft_udacity":
        from datasets import lyft_udacity

        return lyft_udacity.open_builder(
            builder_config or "resized_256",
            data_dir=config.data_dir,
            manual_dir=config.manual_dir,
            prepare=prepare,
            split_group=config.get("split_group"),
        )
    if name == "aerial":
        from datasets import aerial

        return aerial.open_builder(
            data_dir=config.data_dir, manual_dir=config.manual_dir, prepare=prepare
        )
    if name == "folder":
        from datasets import folder

        return folder.open_builder(
            config.get("folder"),
            group_pattern=config.get("folder_group"),
            names=folder.FileNames(
                images=config.get("folder_images"),
                masks=config.get("folder_masks"),
                mask_suffix=config.get("folder_mask_suffix"),
            ),
            data_dir=config.data_dir,
            prepare=prepare,
        )
    raise ValueError(
        f"config.dataset={config.dataset!r}: unknown data set; use 'lyft_udacity/<config>', "
        "'aerial' or 'folder' (with --config.folder=DIR)"
    )
