"""Evaluates a trained run on a whole split: ``python eval.py --workdir DIR [options]``.

Examples:
  python eval.py --workdir runs/demo                          # test split, best checkpoint
  python eval.py --workdir runs/demo --split validation --checkpoint latest
  python eval.py --workdir runs/reference --full_resolution --tta_flip
  python eval.py --workdir runs/demo --onnx unet.onnx         # an exported ONNX model

Writes DIR/eval/<split>/: metrics.json, metrics.md, report.html (every image, worst first)
and pictures (confusion matrix, gallery, per-class panels, training curves). See
docs/EVALUATION.md.
"""

import os
import pathlib
import sys
from collections.abc import Sequence

from unet_jax import launch
from unet_jax.deploy import command_line
from unet_jax.evaluation.options import EvalOptions

REPO_ROOT = pathlib.Path(__file__).resolve().parent


def _parser():
    return command_line.command_parser(
        EvalOptions,
        prog="python eval.py",
        description=__doc__,
        out_help="Output directory (default: WORKDIR/eval/SPLIT, or SPLIT_onnx with --onnx).",
        out_required=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (the table in ``unet_jax.cli``)."""
    return command_line.run_command(_parser(), argv, _evaluate)


def _evaluate(args) -> int:
    if launch.leave_to_process_zero("eval.py", os.environ):
        return 0
    # Imported here so that --help stays fast.
    sys.path.insert(0, str(REPO_ROOT))  # datasets/ is not installed (it would shadow HF datasets)
    import datasets  # the TFDS builders of this project
    from unet_jax.evaluation import evaluate, reports

    options = command_line.from_flags(EvalOptions, args)
    report = evaluate.run_evaluation(
        args.workdir, options, prepare_fn=datasets.prepare_dataset, out_dir=args.out
    )
    print(reports.summary_text(report, report["files"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
