"""Command line: ``python -m datasets.aerial [--data_dir D] [--manual_dir M]``.

Run from the repository root (``datasets`` is not installed).
"""

from __future__ import annotations

import argparse
import sys

from datasets.aerial import DataError, ManualDownloadMissingError, open_builder


def main(argv: list[str] | None = None) -> int:
    """Prepares the data set and prints where it is and its split sizes.

    Args:
      argv: arguments (default: ``sys.argv[1:]``).

    Returns:
      0 on success, 2 for missing or invalid data (message on stderr).
    """
    parser = argparse.ArgumentParser(
        prog="python -m datasets.aerial",
        description="Prepare the aerial imagery TFDS data set (array_record, no TensorFlow).",
    )
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS default)")
    parser.add_argument(
        "--manual_dir",
        default=None,
        help="folder holding the Kaggle zip or its extracted folder "
        "(default: <data_dir>/downloads/manual)",
    )
    args = parser.parse_args(argv)
    try:
        builder = open_builder(data_dir=args.data_dir, manual_dir=args.manual_dir)
    except (ManualDownloadMissingError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {split.num_examples}" for name, split in builder.info.splits.items())
    print(f"Prepared {builder.info.full_name} in {builder.data_dir}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
