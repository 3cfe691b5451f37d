"""Scores a run on real Lyft-Udacity frames given as CameraRGB/ + CameraSeg/ folders.

  python benchmarks/real_frames.py --workdir runs/demo --frames ../shared/real_samples

How far does a model trained on the rendered demo scenes carry to real CARLA frames? Every
frame is read and validated by the Lyft-Udacity builder's own decoder (class id in the red
channel) and scored with eval.py's code (`unet_jax.evaluation.evaluate.run_evaluation` on in-memory
sources), twice: with the ego car's hood labelled Vehicles as stored, and with the hood
ignored (docs/DATA.md: the hood inflates the Vehicles IoU). The frames are only scored,
never trained or tuned on. Prints per-class IoU tables; the reports land in
WORKDIR/eval/real_frames_{hood,nohood}[_onnx]/ (or under --out). ``--onnx model.onnx``
scores an exported model (float32 or int8) instead of the checkpoint. Also prints the Lyft
Perception Challenge score (hood left out) and the frames per second of ``predict`` on these
frames (reading, segmenting at their size and writing labels and overlays, after one
warm-up pass that compiles) on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import pathlib
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # datasets/ is not installed

from datasets.lyft_udacity import decode  # noqa: E402
from unet_jax import cli  # noqa: E402
from unet_jax.deploy import command_line  # noqa: E402
from unet_jax.deploy import options as option_flags  # noqa: E402
from unet_jax.deploy.options import ModelSource  # noqa: E402
from unet_jax.deploy.predict import predict_files  # noqa: E402
from unet_jax.errors import UserError  # noqa: E402
from unet_jax.evaluation import evaluate, metrics  # noqa: E402


def load_frames(folder: pathlib.Path, *, hood: str) -> list[dict]:
    """The frames of ``folder`` (CameraRGB/N.png with CameraSeg/N.png), decoded."""
    examples = []
    for image_path in sorted((folder / "CameraRGB").glob("*.png")):
        label_path = folder / "CameraSeg" / image_path.name
        pair = decode.process_pair(
            image_path.read_bytes(),
            label_path.read_bytes(),
            image_name=str(image_path),
            label_name=str(label_path),
            hood=hood,
        )
        examples.append(
            {
                "image": np.asarray(Image.open(io.BytesIO(pair.image_png)).convert("RGB")),
                # The processed label: one channel of class ids (255 = ignored hood).
                "label": np.asarray(Image.open(io.BytesIO(pair.label_png)))[..., None],
                "name": image_path.name,
            }
        )
    if not examples:
        raise UserError(f"no CameraRGB/*.png in {folder}")
    return examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--frames", required=True, help="folder with CameraRGB/ and CameraSeg/")
    command_line.add_arguments(parser, ModelSource)  # --checkpoint, --onnx, --onnx_threads
    parser.add_argument("--out", help="report folder (default: WORKDIR/eval)")
    args = parser.parse_args()
    source = command_line.from_flags(ModelSource, args)
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.workdir) / "eval"
    for hood in ("keep", "ignore"):
        frames = load_frames(pathlib.Path(args.frames), hood=hood)
        suffix = "hood" if hood == "keep" else "nohood"
        report = evaluate.run_evaluation(
            args.workdir,
            option_flags.build(
                evaluate.EvalOptions,
                split="test",
                full_resolution=True,
                progress=False,
                **dataclasses.asdict(source),
            ),
            sources={"test": frames},
            out_dir=out / f"real_frames_{suffix}{'_onnx' if args.onnx else ''}",
        )
        for title, results in (
            (f"training resolution {report['resolution']}", report),
            (
                f"full resolution {report['full_resolution']['resolution']}",
                report["full_resolution"],
            ),
        ):
            print(f"\n### {len(frames)} real frames, hood {hood}, {title}\n")
            print(metrics.format_table(results))
            if hood == "ignore" and "challenge_average" in results:
                print(
                    f"\nLyft challenge score, {title}: {results['challenge_average']:.4f} "
                    f"(Vehicles F2 {results['challenge_vehicles_f2']:.4f}, "
                    f"Road F0.5 {results['challenge_road_f05']:.4f})"
                )
    print(f"\npredict: {predict_fps(args.workdir, args.frames, source):.2f} frames/s")
    return 0


def predict_fps(workdir: str, frames: str, source: ModelSource) -> float:
    """Frames per second of ``predict_files`` on ``frames/CameraRGB`` after a warm-up pass."""
    images = pathlib.Path(frames) / "CameraRGB"
    with tempfile.TemporaryDirectory() as out:
        options = {**dataclasses.asdict(source), "progress": False}
        predict_files(workdir, [images], out, **options)  # compiles
        start = time.perf_counter()
        written = predict_files(workdir, [images], out, **options)
        return len(written["images"]) / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(cli.run(main))
