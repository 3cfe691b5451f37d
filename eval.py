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

from absl import app, flags, logging

from unet_jax import launch
from unet_jax.deploy import options as option_flags
from unet_jax.evaluation.options import EvalOptions

REPO_ROOT = pathlib.Path(__file__).resolve().parent

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/eval/SPLIT[_onnx]).")
# --split, --checkpoint, --onnx, --tta_flip, --batch_size, ...: one flag per EvalOptions field.
option_flags.define_absl_flags(
    EvalOptions, module_name=sys.argv[0] if __name__ == "__main__" else __name__
)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    if launch.leave_to_process_zero("eval.py", os.environ):
        return 0
    logging.set_verbosity(logging.WARNING)
    # Imported here so that --help stays fast.
    sys.path.insert(0, str(REPO_ROOT))  # datasets/ is not installed (it would shadow HF datasets)
    import datasets  # the TFDS builders of this project
    from unet_jax.evaluation import evaluate, reports

    options = option_flags.from_flags(EvalOptions, FLAGS)
    # Exceptions become the documented exit codes in unet_jax.cli (the table in README).
    report = evaluate.run_evaluation(
        FLAGS.workdir, options, prepare_fn=datasets.prepare_dataset, out_dir=FLAGS.out
    )
    print(reports.summary_text(report, report["files"]))
    return 0


if __name__ == "__main__":
    from unet_jax import cli

    app.run(cli.absl_main(main), flags_parser=cli.parse_absl_flags)
