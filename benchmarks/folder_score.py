"""Scores ``predict``'s binary masks on one split of a folder data set (e.g. wells not trained on).

  python benchmarks/folder_score.py --folder DIR --group REGEX --split test --list > files.txt
  python -m unet_jax.predict --workdir W $(cat files.txt) --out P
  python benchmarks/folder_score.py --folder DIR --group REGEX --split test --predictions P

The split is the one training used (`datasets.folder.layout.scan` with the same
``--config.folder_group``). Masks and predictions are read as 0/255 (or 0/1) binary masks;
prints foreground IoU, Dice and pixel accuracy over the split's pixels, and per-image IoU.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # datasets/ is not installed

from datasets.folder import layout  # noqa: E402
from unet_jax import cli  # noqa: E402
from unet_jax.errors import UserError  # noqa: E402
from unet_jax.evaluation import metrics  # noqa: E402


def _binary(path: pathlib.Path) -> np.ndarray:
    values = np.asarray(Image.open(path))
    values = values[..., 0] if values.ndim == 3 else values
    return (values > 0).astype(np.int32)


def score(pairs: list[layout.Pair], predictions: pathlib.Path) -> dict:
    """Foreground IoU, Dice, accuracy over all pairs, and each image's IoU."""
    cm = np.zeros((2, 2), np.int64)
    per_image = {}
    for pair in pairs:
        truth = _binary(pair.mask)
        pred = _binary(predictions / "labels" / f"{pair.image.stem}.png")
        if pred.shape != truth.shape:
            stem = pair.image.stem
            raise UserError(f"{stem}: prediction {pred.shape}, mask {truth.shape}")
        one = np.bincount(2 * truth.ravel() + pred.ravel(), minlength=4).reshape(2, 2)
        cm += one
        per_image[pair.image.stem] = one[1, 1] / max(one[1, 1] + one[0, 1] + one[1, 0], 1)
    result = metrics.segmentation_metrics(cm, ["background", "foreground"])
    return {"cm": cm, "result": result, "per_image": per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, type=pathlib.Path)
    parser.add_argument("--group", default=None, help="the run's --config.folder_group")
    parser.add_argument("--split", default="test")
    parser.add_argument("--predictions", type=pathlib.Path, help="predict's --out")
    parser.add_argument("--list", action="store_true", help="print the split's image paths")
    args = parser.parse_args()
    pairs = layout.scan(args.folder, group_pattern=args.group).splits[args.split]
    if args.list:
        print("\n".join(str(p.image) for p in pairs))
        return
    scored = score(pairs, args.predictions)
    cm, result = scored["cm"], scored["result"]
    print(f"{args.split}: {len(pairs)} images, {cm.sum():,} pixels")
    print(
        f"foreground IoU {result['foreground_iou']:.4f}  Dice {result['foreground_dice']:.4f}  "
        f"pixel accuracy {result['pixel_accuracy']:.4f}"
    )
    ious = np.array(list(scored["per_image"].values()))
    low, mid, high = ious.min(), np.median(ious), ious.max()
    print(f"per-image IoU: min {low:.3f}  median {mid:.3f}  max {high:.3f}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
