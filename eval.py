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

import pathlib
import sys

from absl import app, flags, logging

from unet_jax.deploy import options as option_flags

REPO_ROOT = pathlib.Path(__file__).resolve().parent

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
flags.DEFINE_string("split", "test", "Split to evaluate: train, validation or test.")
flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
flags.DEFINE_bool(
    "full_resolution", False, "Also evaluate at the examples' original (full-size) resolution."
)
flags.DEFINE_enum(
    "full_resolution_input",
    None,
    ["native", "resized"],
    "Full resolution: segment at the stored size (native: pad/tile) or at the training size "
    "with the prediction resized back (resized). Default: the scale the model was trained at "
    "(native for runs trained on crops, resized otherwise).",
)
option_flags.define_absl_flags()  # --tta_flip, --batch_size, --max_side, --tile_size, ...
flags.DEFINE_integer("num_gallery", 4, "Examples shown in the gallery picture.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: the run's data_dir).")
flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/eval/SPLIT[_onnx]).")
flags.DEFINE_bool("pictures", True, "Draw the PNG pictures.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_string(
    "onnx", None, "Score this exported ONNX model instead of the checkpoint (writes to SPLIT_onnx)."
)
flags.DEFINE_integer("onnx_threads", 2, "ONNX Runtime intra-op threads (with --onnx).")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.WARNING)
    # Imported here so that --help stays fast.
    sys.path.insert(0, str(REPO_ROOT))  # datasets/ is not installed (it would shadow HF datasets)
    import datasets  # the TFDS builders of this project
    from unet_jax.evaluation import evaluate, reports

    options = evaluate.EvalOptions(
        split=FLAGS.split,
        checkpoint=FLAGS.checkpoint,
        full_resolution=FLAGS.full_resolution,
        full_resolution_input=FLAGS.full_resolution_input,
        segment=option_flags.options_from_flags(FLAGS),
        num_gallery=FLAGS.num_gallery,
        data_dir=FLAGS.data_dir,
        pictures=FLAGS.pictures,
        progress=FLAGS.progress,
        onnx=FLAGS.onnx,
        onnx_threads=FLAGS.onnx_threads,
    )
    # Exceptions become the documented exit codes in unet_jax.cli (the table in README).
    report = evaluate.run_evaluation(
        FLAGS.workdir, options, prepare_fn=datasets.prepare_dataset, out_dir=FLAGS.out
    )
    print(reports.summary_text(report, report["files"]))
    return 0


if __name__ == "__main__":
    from unet_jax import cli

    app.run(cli.absl_main(main), flags_parser=cli.parse_absl_flags)
