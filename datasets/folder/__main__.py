"""Command line: ``python -m datasets.folder DIR [--group REGEX] [--images NAME] [--masks NAME]
[--mask_suffix S] [--data_dir D] [--preview P]``.

Checks every file of the folder, prepares it and says what was decided (classes, splits).
Run from the repository root (``datasets`` is not installed).
"""

from __future__ import annotations

import argparse
import logging
import sys

from datasets.common.errors import DataError
from datasets.folder import FileNames, open_builder

# The builder's messages name train.py's config fields; this command's flags are these.
OWN_FLAGS = {
    "--config.folder_images": "--images",
    "--config.folder_masks": "--masks",
    "--config.folder_mask_suffix": "--mask_suffix",
    "--config.folder_group": "--group",
    "--config.folder": "the folder argument",
}


def _in_own_flags(message: str) -> str:
    for field, flag in OWN_FLAGS.items():  # longest names first: folder_* before folder
        message = message.replace(field, flag)
    return message


def main(argv: list[str] | None = None) -> int:
    """Prepares one folder; 0 on success, 2 for bad input (message on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m datasets.folder",
        description="Prepare a folder of images and masks (array_record, no TensorFlow).",
    )
    parser.add_argument("folder", help="DIR with images/ and masks/ (or split folders)")
    parser.add_argument("--group", default=None, help="regex: names that match alike stay together")
    parser.add_argument("--images", default=None, help="the images' folder (default: recognised)")
    parser.add_argument(
        "--masks",
        default=None,
        help="the masks' folder, '.' beside the images (default: recognised)",
    )
    parser.add_argument(
        "--mask_suffix",
        default=None,
        help="a mask's name adds this, e.g. _mask (default: recognised)",
    )
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS default)")
    parser.add_argument(
        "--preview", default=None, help="write a PNG of training images beside their masks"
    )
    parser.add_argument(
        "--display_bands",
        default=None,
        help="bands the preview shows of multi-band images, e.g. 3,2,1 (default: the first "
        "three; grey and 16-bit images get a percentile stretch)",
    )
    args = parser.parse_args(argv)
    # TFDS's "Using custom data configuration" warnings are about its internals.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        builder = open_builder(
            args.folder,
            group_pattern=args.group,
            names=FileNames(images=args.images, masks=args.masks, mask_suffix=args.mask_suffix),
            data_dir=args.data_dir,
        )
    except DataError as e:
        print(f"error: {_in_own_flags(str(e))}", file=sys.stderr)
        return 2
    if args.preview:
        from datasets.folder.preview import write_preview
        from unet_jax.data.sources import builder_classes

        source = builder.as_data_source()["train"]
        bands = [int(b) for b in args.display_bands.split(",")] if args.display_bands else None
        written = write_preview(source, builder_classes(builder), args.preview, bands=bands)
        print(f"Preview: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
