"""Training img/s on large images: random crops (crop mode) against resized images (resize mode).

Both variants train the same model (``unet_jax/configs/aerial_cpu.py``: widths 16-128,
bridge 256, Dice + CE, the aerial augmentation) at the same input size and batch, in one
interleaved run (``bench_common`` workers). A timed step is what the training loop does:
the next batch from the training input pipeline (``create_train_loader`` over the
training split held decoded in memory, ``config.in_memory_mb``), moved to the device and
trained on.

- crop: the aerial data set (``--aerial DIR``, default ``../shared/aerial``), random
  crops at native scale of its 509x544 to 2149x1480 images (``input_mode="crop"``);
  without the archive, a generated folder data set of large images (``--generate``).
- resize: the same training examples stored resized to the input size (what a data set
  of resized images holds, like the demo's), ``input_mode="resize"``.

The table's ratio column is img/s divided by the resize variant's (target: crop >= 0.9).

    python benchmarks/crop_vs_resize.py                      # 128x128, batch 8, ~3 min
    python benchmarks/crop_vs_resize.py --size 256 --steps 30 --aerial DIR
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
from typing import Any

import bench_common as bc
import numpy as np
import train_step
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # datasets/ is imported from the root, never installed
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_AERIAL = REPO_ROOT.parent / "shared" / "aerial"
MODES = ("crop", "resize")


def run_config(data: dict[str, Any], *, input_mode: str, size: int, batch: int) -> Any:
    """The aerial CPU recipe on ``data`` (dataset, manual_dir/folder, data_dir)."""
    from unet_jax.configs import aerial_cpu

    config = aerial_cpu.get_config()
    config.update(data)
    config.input_mode = input_mode
    config.image_size = (size, size)
    config.batch_size = batch
    return config


class CropResizeBench(train_step.JaxBench):
    """JaxBench's model and driver, trained on batches of the input pipeline."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import datasets
        from unet_jax.data import augment
        from unet_jax.data import sources as data_sources

        config = run_config(
            spec["data"], input_mode=spec["input_mode"], size=spec["size"], batch=spec["batch"]
        )
        dataset = data_sources.open_dataset(
            config, splits=("train",), prepare_fn=datasets.prepare_dataset
        )
        source = data_sources.in_memory(dataset.sources["train"], budget_mb=config.in_memory_mb)
        if spec["input_mode"] == "resize":
            method = config.augment.get("resize_method", augment.AugmentConfig.resize_method)
            resize = augment.Resize(spec["size"], spec["size"], method)
            source = data_sources.InMemorySource(
                [resize.map(source[i]) for i in range(len(source))]
            )
        self.source = source
        self.config = config
        super().__init__(
            {
                **spec,
                "num_classes": dataset.classes.num_classes,
                "dtype": config.model.dtype,
                "driver": config.driver,
                "upsample": config.model.upsample,
                "conv_impl": config.model.conv_impl,
                "loss": config.loss,
                "devices": 0,
                "modes": ["train"],
            }
        )

    def setup(self) -> dict[str, Any]:
        from unet_jax.data import pipeline
        from unet_jax.train import parallel

        facts = super().setup()
        config = self.config
        loader = pipeline.create_train_loader(
            self.source,
            global_batch_size=config.batch_size,
            image_size=tuple(config.image_size),
            seed=config.seed,
            augment={**config.augment.to_dict(), "input_mode": config.input_mode},
            worker_count=config.worker_count,
            num_local_devices=len(self.devices),
            layout=self.driver.layout,
        )
        self.stream = parallel.prefetch(iter(loader), self.driver.put_batch)
        facts["note"] = f"{len(self.source)} training examples in memory, {config.input_mode}"
        return facts

    def next_train_batch(self) -> Any:
        return next(self.stream)  # prepared while the previous steps ran, as in training


def generate_folder(root: pathlib.Path, *, count: int, width: int, height: int) -> pathlib.Path:
    """A folder data set of ``count`` large street-like scenes (images/ + id masks/)."""
    from input_pipeline import render_scene

    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, label = render_scene(rng, max(width, height))
        Image.fromarray(image[:height, :width]).save(root / "images" / f"{i:03d}.jpg", quality=90)
        Image.fromarray(label[:height, :width]).save(root / "masks" / f"{i:03d}.png")
    return root


def crop_data(args: argparse.Namespace, data_dir: pathlib.Path) -> tuple[dict[str, Any], str]:
    """The crop variant's data set (prepared here, once) and a description of it."""
    import datasets
    from unet_jax.configs import aerial_cpu

    aerial = pathlib.Path(args.aerial)
    if aerial.exists() and not args.generate:
        data = {"dataset": "aerial", "manual_dir": str(aerial), "data_dir": str(data_dir)}
        what = f"aerial ({aerial})"
    else:
        width, height = args.generate_size
        folder = generate_folder(
            data_dir / "large_images", count=args.generate_count, width=width, height=height
        )
        data = {"dataset": "folder", "folder": str(folder), "data_dir": str(data_dir)}
        what = f"{args.generate_count} generated {width}x{height} scenes (folder data set)"
    config = aerial_cpu.get_config()
    config.update(data)
    datasets.prepare_dataset(config, prepare=True)
    return data, what


def variants(args: argparse.Namespace, data: dict[str, Any]) -> list[bc.Variant]:
    """One worker per input mode."""
    out = []
    for mode in MODES:
        spec = {
            "batch": args.batch,
            "size": args.size,
            "widths": args.widths,
            "input_mode": mode,
            "data": data,
        }
        argv = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
        out.append(bc.Variant(label=mode, argv=argv, modes=("train",), batch=args.batch))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=128, help="square input (crop) side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--widths", default="demo", help="as benchmarks/train_step.py")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant")
    parser.add_argument("--aerial", default=str(DEFAULT_AERIAL), help="the aerial archive")
    parser.add_argument(
        "--generate", action="store_true", help="generated large images even with the archive"
    )
    parser.add_argument("--generate-count", type=int, default=24)
    parser.add_argument(
        "--generate-size", type=int, nargs=2, default=(1600, 1200), metavar=("W", "H")
    )
    parser.add_argument("--data-dir", help="TFDS data directory to keep (default: a temporary one)")
    args = parser.parse_args()
    if args.worker:
        bc.worker_main(CropResizeBench, args.worker)
        return
    bc.parse_widths(args.widths)  # fail early on a bad value
    with tempfile.TemporaryDirectory(prefix="crop_vs_resize_") as tmp:
        data, what = crop_data(args, pathlib.Path(args.data_dir or tmp))
        start_load = bc.load_note()
        results = bc.run_variants(
            variants(args, data), warmup=args.warmup, steps=args.steps, schedule="interleaved"
        )
    title = (
        f"Training img/s, crop vs resize: {what}, widths={args.widths}, "
        f"{args.size}x{args.size}, batch {args.batch}, {args.warmup} warmup + {args.steps} "
        "timed steps, interleaved"
    )
    print(train_step.report(results, title=title, baseline="resize", start_load=start_load))
    rates = {r["label"]: bc.summarize(r, peak_flops=None, peak_source="")["img/s"] for r in results}
    if rates.get("crop") and rates.get("resize"):
        ratio = rates["crop"] / rates["resize"]
        verdict = "meets" if ratio >= 0.9 else "misses"
        print(f"\ncrop / resize img/s: {ratio:.2f} ({verdict} the target >= 0.9)")


if __name__ == "__main__":
    main()
