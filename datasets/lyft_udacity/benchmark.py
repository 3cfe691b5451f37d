"""Preparation speed of the lyft_udacity configs; prints a Markdown table.

    python -m datasets.lyft_udacity.benchmark [--frames 300] [--synthetic 1000]

Archive configs are timed on a tree of ``--frames`` 800x600 frames made of
symlinks to the six real sample pairs (``$UNET_JAX_REAL_SAMPLES`` or
``../shared/real_samples``), or of rendered 800x600 synthetic scenes when the
samples are absent; the synthetic config renders ``--synthetic`` frames. Each
row runs with 1 thread and with all usable cores (``$LYFT_UDACITY_WORKERS``);
CPU s is the process's CPU time (all threads): wall time on an otherwise idle
machine cannot be below CPU s / cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import tempfile
import time

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from datasets.common.threads import WORKERS_ENV, num_workers
from datasets.lyft_udacity.lyft_udacity_dataset_builder import Builder, LyftUdacityConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL_SAMPLES = os.environ.get(
    "UNET_JAX_REAL_SAMPLES", os.path.join(os.path.dirname(REPO_ROOT), "shared", "real_samples")
)
REAL_NAMES = ("0", "1", "10", "100", "101", "102")


def make_tree(root: str, frames: int) -> str:
    """Writes a nested Kaggle-layout tree of 800x600 frames (10 per episode).

    Args:
      root: output directory.
      frames: number of frames.

    Returns:
      A description of where the pixels come from.
    """
    real = os.path.exists(os.path.join(REAL_SAMPLES, "CameraRGB", "0.png"))
    for i in range(frames):
        folder = "data" + "ABCDE"[i % 5]
        file = f"02_{i // 10:02d}_{i % 10:03d}.png"
        for sub in ("CameraRGB", "CameraSeg"):
            os.makedirs(os.path.join(root, folder, folder, sub), exist_ok=True)
        paths = [
            os.path.join(root, folder, folder, sub, file) for sub in ("CameraRGB", "CameraSeg")
        ]
        if real:
            n = REAL_NAMES[i % len(REAL_NAMES)]
            for sub, path in zip(("CameraRGB", "CameraSeg"), paths, strict=True):
                os.symlink(os.path.join(REAL_SAMPLES, sub, f"{n}.png"), path)
        else:
            synthetic = importlib.import_module("datasets.synthetic.scenes")
            image, label = synthetic.render_scene(i, height=600, width=800)
            rgb = np.zeros((*label.shape, 3), np.uint8)
            rgb[..., 0] = label
            Image.fromarray(image).save(paths[0])
            Image.fromarray(rgb).save(paths[1])
    return "real samples (symlinks)" if real else "rendered 800x600 scenes"


def time_prepare(
    config: str | LyftUdacityConfig, data_dir: str, manual_dir: str, workers: int
) -> tuple[float, float]:
    """(wall, CPU) seconds to prepare one config from scratch with the given thread count."""
    os.environ[WORKERS_ENV] = str(workers)
    builder = Builder(config=config, data_dir=data_dir, file_format="array_record")
    start, cpu = time.perf_counter(), time.process_time()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    )
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    """Runs the benchmark and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames of the archive tree")
    parser.add_argument("--synthetic", type=int, default=1000, help="synthetic frames")
    args = parser.parse_args()
    tfds.disable_progress_bar()
    cores = num_workers()
    # Registered configs by name (TFDS refuses a custom config with a registered name).
    configs: list[tuple[str | LyftUdacityConfig, int]] = [
        ("full", args.frames),
        ("resized_256", args.frames),
        ("resized_256_nohood", args.frames),
    ]
    if args.synthetic == Builder.builder_configs["synthetic"].num_frames:
        configs.append(("synthetic", args.synthetic))
    else:
        custom = dataclasses.replace(
            Builder.builder_configs["synthetic"], name="synthetic_bench", num_frames=args.synthetic
        )
        configs.append((custom, args.synthetic))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manual = os.path.join(tmp, "manual")
        origin = make_tree(manual, args.frames)
        for config, frames in configs:
            for workers in sorted({1, cores}):
                name = config if isinstance(config, str) else config.name
                data_dir = os.path.join(tmp, f"data_{name}_{workers}")
                wall, cpu = time_prepare(config, data_dir, manual, workers)
                rows.append((name, frames, workers, wall, cpu))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nArchive frames: {origin}. Usable cores: {cores}. Load average at end: {load:.1f}\n")
    print("| config | frames | threads | wall s | CPU s | wall ms/frame | est. 5000 frames, s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, frames, workers, wall, cpu in rows:
        per = wall / frames
        cells = (name, frames, workers, f"{wall:.1f}", f"{cpu:.1f}", f"{1000 * per:.1f}")
        cells += (f"{5000 * per:.0f}",)
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
