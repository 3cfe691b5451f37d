"""Scores ``predict``'s label PNGs against real Lyft-Udacity frames, as the challenge did.

  python -m unet_jax.predict --workdir W FRAMES/CameraRGB --out P
  python benchmarks/lyft_score.py --predictions P --frames FRAMES

Reads FRAMES/CameraSeg/<name>.png with the Lyft-Udacity builder's decoder and
P/labels/<stem>.png (class id in the red channel, at the frame's size), and prints one
table: mIoU and pixel accuracy with the ego car's hood kept (labelled Vehicles) and left
out, each class's IoU with the hood left out (NaN for a class neither in the frames nor
predicted), and the Lyft Perception Challenge score (Vehicles F2, Road F0.5 of Roads +
RoadLines, their mean; hood left out). ``--json OUT`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import sys

import numpy as np
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # datasets/ is not installed

from datasets.lyft_udacity import classes, decode  # noqa: E402
from unet_jax import cli  # noqa: E402
from unet_jax.errors import UserError  # noqa: E402
from unet_jax.evaluation import challenge, metrics  # noqa: E402


def score(predictions: pathlib.Path, frames: pathlib.Path) -> dict[str, float]:
    """The scores of every frame of ``frames`` predicted in ``predictions/labels``."""
    n = classes.NUM_CLASSES
    cms = {"keep": np.zeros((n, n), np.int64), "ignore": np.zeros((n, n), np.int64)}
    seg_paths = sorted((frames / "CameraSeg").glob("*.png"))
    if not seg_paths:
        raise UserError(f"no CameraSeg/*.png in {frames}")
    for seg_path in seg_paths:
        pred_path = predictions / "labels" / f"{seg_path.stem}.png"
        if not pred_path.exists():
            raise UserError(f"no prediction {pred_path} for {seg_path}")
        pred = np.asarray(Image.open(pred_path).convert("RGB"))[..., 0]
        pair = decode.process_pair(
            (frames / "CameraRGB" / seg_path.name).read_bytes(),
            seg_path.read_bytes(),
            image_name="",
            label_name=str(seg_path),
            hood="keep",
        )
        truth = np.asarray(Image.open(io.BytesIO(pair.label_png)))
        if truth.shape != pred.shape:
            raise UserError(f"{pred_path} is {pred.shape}, the frame {truth.shape}")
        for rule in cms:  # the hood as stored, then ignored (one decode)
            label = decode.apply_hood_rule(truth, rule)
            cms[rule] += metrics.confusion_counts(pred[None], label[None], num_classes=n)
    kept = metrics.segmentation_metrics(cms["keep"], classes.CLASS_NAMES)
    left_out = metrics.segmentation_metrics(cms["ignore"], classes.CLASS_NAMES)
    lyft = challenge.challenge_score(cms["ignore"], classes.CLASS_NAMES)
    return {
        "frames": len(seg_paths),
        "miou_hood_kept": kept["mean_iou"],
        "pixel_accuracy_hood_kept": kept["pixel_accuracy"],
        "miou_hood_left_out": left_out["mean_iou"],
        "pixel_accuracy_hood_left_out": left_out["pixel_accuracy"],
        "vehicles_iou_hood_left_out": left_out["per_class"]["Vehicles"]["iou"],
        **{f"iou_hood_left_out/{c}": v["iou"] for c, v in left_out["per_class"].items()},
        **{f"challenge_{k}": v for k, v in lyft.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", required=True, type=pathlib.Path)
    parser.add_argument("--frames", required=True, type=pathlib.Path)
    parser.add_argument("--json", type=pathlib.Path, help="also write the scores here")
    args = parser.parse_args()
    scores = score(args.predictions, args.frames)
    print("| score | value |\n| --- | ---: |")
    for key, value in scores.items():
        print(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(metrics.to_jsonable(scores), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
