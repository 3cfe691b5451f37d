"""Exception types of the lyft_udacity data set builder."""

from datasets.common.errors import DataError
from unet_jax.errors import UserError

KAGGLE_URL = "https://www.kaggle.com/datasets/kumaresanmanickavelu/lyft-udacity-challenge"
DEMO_COMMAND = "python train.py --config unet_jax/configs/demo.py --workdir runs/demo"


__all__ = ["DataError", "ManualDownloadMissingError", "manual_download_message"]


class ManualDownloadMissingError(UserError, FileNotFoundError):
    """The Kaggle archive (or its extracted tree) is not in the manual directory."""


def manual_download_message(
    manual_dir: str, *, config_name: str, data_dir: str, found: str = ""
) -> str:
    """Builds the message of `ManualDownloadMissingError`.

    Args:
      manual_dir: the directory that was searched (absolute path).
      config_name: the builder config being prepared, for the command to re-run.
      data_dir: the TFDS data directory, for the command to re-run.
      found: optional description of what the directory holds instead.

    Returns:
      A multi-line message: where to download, where to put it, how to re-run,
      and how to run the demo without the data.
    """
    lines = [
        f"The Lyft-Udacity data was not found in the manual directory {manual_dir}.",
    ]
    if found:
        lines.append(found)
    lines += [
        "It cannot be downloaded automatically (Kaggle needs a login). Download the",
        f"archive from {KAGGLE_URL}",
        "and put the zip (any file name, e.g. archive.zip) into this exact directory:",
        f"  {manual_dir}",
        "(or extract it there: dataA/dataA/CameraRGB, dataA/CameraRGB or Train/CameraRGB,",
        "each with its CameraSeg folder). Then run again:",
        f"  python -m datasets.lyft_udacity --config {config_name} --data_dir {data_dir}"
        f" --manual_dir {manual_dir}",
        "To try the project without the data, run the synthetic demo instead:",
        f"  {DEMO_COMMAND}",
    ]
    return "\n".join(lines)
