"""Both readings of one run's scores where a class may be void: scored, and void.

  python eval.py --workdir W        # writes W/eval/test/metrics.json
  python benchmarks/void_reading.py --metrics W/eval/test/metrics.json --void Unlabeled

Reads eval.py's confusion matrix (rows ground truth, columns prediction) and prints the
per-class IoU and the mean twice: every class scored, as the run was trained (the aerial
article's 6-class reading), and with the named classes void: their ground-truth pixels
left out and the classes out of the mean, while the model's predictions of them on other
pixels stay errors (the same predictions, read as a void-label data set would be). A run
trained with the class void (``config.void_classes``) gives that reading by itself.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from unet_jax import cli
from unet_jax.errors import UserError
from unet_jax.evaluation import metrics


def void_reading(cm: np.ndarray, names: Sequence[str], void: Sequence[str]) -> dict[str, float]:
    """Per-class IoU of the non-void classes with the void classes' rows left out.

    Args:
      cm: [C, C] counts, rows ground truth, columns prediction.
      names: the C class names.
      void: names of classes read as void.

    Returns:
      {class name: IoU} for the other classes (NaN where undefined), and "mean" over the
      defined ones.
    """
    unknown = sorted(set(void) - set(names))
    if unknown:
        raise UserError(f"--void {unknown[0]!r} is not a class of the run ({names})")
    cm = np.array(cm, np.int64)
    cm[[names.index(v) for v in void], :] = 0
    per_class = metrics.segmentation_metrics(cm, names)["per_class"]
    scores = {n: per_class[n]["iou"] for n in names if n not in void}
    defined = [v for v in scores.values() if not np.isnan(v)]
    return {**scores, "mean": float(np.mean(defined)) if defined else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--metrics", required=True, type=pathlib.Path, help="eval.py's metrics.json"
    )
    parser.add_argument("--void", required=True, action="append", help="a class read as void")
    args = parser.parse_args()
    report = json.loads(args.metrics.read_text())
    names = list(report["class_names"])
    cm = np.asarray(report["confusion_matrix"])
    scored = void_reading(cm, names, ())
    voided = void_reading(cm, names, args.void)
    print(f"| class | {len(names)} classes scored | {', '.join(args.void)} void |")
    print("|---|---:|---:|")
    for name in [*names, "mean"]:
        shown = f"{voided[name]:.4f}" if name in voided else "void"
        print(f"| {name} | {scored[name]:.4f} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
