"""Command line: ``python -m datasets.lyft_udacity --config resized_256 [--data_dir D]``.

Run from the repository root (``datasets`` is not installed).
"""

from __future__ import annotations

import argparse
import sys

from datasets.lyft_udacity.errors import DataError, ManualDownloadMissingError
from datasets.lyft_udacity.lyft_udacity_dataset_builder import CONFIG_NAMES
from datasets.lyft_udacity.prepare import prepare


def main(argv: list[str] | None = None) -> int:
    """Prepares one config and prints where it is and its split sizes.

    Args:
      argv: arguments (default: ``sys.argv[1:]``).

    Returns:
      0 on success, 2 for missing or invalid data (message on stderr).
    """
    parser = argparse.ArgumentParser(
        prog="python -m datasets.lyft_udacity",
        description="Prepare the lyft_udacity TFDS data set (array_record, no TensorFlow).",
    )
    parser.add_argument("--config", required=True, choices=CONFIG_NAMES, help="builder config")
    parser.add_argument(
        "--data_dir",
        default=None,
        help="TFDS data dir (default: TFDS default, ~/tensorflow_datasets)",
    )
    parser.add_argument(
        "--manual_dir",
        default=None,
        help="folder holding the Kaggle zip or its extracted tree "
        "(default: <data_dir>/downloads/manual)",
    )
    parser.add_argument(
        "--split_group",
        default=None,
        help="regex on frame names: names giving the same match stay in one split "
        "(default: Kaggle episodes together, own recordings in contiguous blocks)",
    )
    args = parser.parse_args(argv)
    try:
        builder = prepare(
            args.config,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            split_group=args.split_group,
        )
    except (ManualDownloadMissingError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {split.num_examples}" for name, split in builder.info.splits.items())
    print(f"Prepared {builder.info.full_name} in {builder.data_dir}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
