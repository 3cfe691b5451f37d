"""Throughput of the training input pipeline (PNG decode + augmentation + batching).

Builds a temporary TFDS array_record data set of procedurally rendered 256x256
driving-like scenes (PNG-encoded image and label, like the real `resized_256`
config), then times ``create_train_loader`` for each requested worker count and
prints a Markdown table.

    python benchmarks/input_pipeline.py                       # workers 0, 1, 2
    python benchmarks/input_pipeline.py --workers 0 4 16 --num-examples 2048

Worker start-up is excluded: the clock starts after the first batches arrived.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np
import psutil  # a dependency of tensorflow-datasets
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # datasets/ is imported from the root, never installed
    sys.path.insert(0, str(REPO_ROOT))

from datasets.lyft_udacity.classes import PALETTE  # noqa: E402
from unet_jax.data import pipeline as input_pipeline  # noqa: E402


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns a random (image uint8 [S, S, 3], label uint8 [S, S]) street-like scene."""
    label = np.full((size, size), 1, np.uint8)  # buildings
    horizon = int(size * rng.uniform(0.35, 0.55))
    label[:horizon] = 0  # sky ("None")
    yy, xx = np.mgrid[:size, :size]
    # Road trapezoid widening towards the bottom, sidewalks beside it.
    half = (yy - horizon).clip(0) * rng.uniform(0.6, 1.0) + 4
    centre = size / 2 + rng.uniform(-0.1, 0.1) * size
    below = yy >= horizon
    label[below & (np.abs(xx - centre) < half * 1.3)] = 8
    label[below & (np.abs(xx - centre) < half)] = 7
    label[below & (np.abs(xx - centre) < 2 + half * 0.02) & ((yy // 8) % 2 == 0)] = 6
    # Random boxes: vehicles, poles, vegetation, signs, pedestrians, walls.
    for _ in range(rng.integers(4, 12)):
        cls = rng.choice([2, 3, 4, 5, 9, 10, 11, 12])
        h, w = rng.integers(4, size // 4, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        label[y : y + h, x : x + w] = cls
    image = PALETTE[label].astype(np.float32)
    image *= np.linspace(0.7, 1.1, size, dtype=np.float32)[:, None, None]  # lighting
    image += rng.normal(0, 6, image.shape).astype(np.float32)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8), label


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def build_source(data_dir: str, num_examples: int, size: int):
    """Builds (or reuses) the TFDS array_record data set; returns its train source."""
    import tensorflow_datasets as tfds

    class BenchScenes(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(None, None, 3)),
                        "label": tfds.features.Image(shape=(None, None, 1)),
                        "name": tfds.features.Text(),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            rng = np.random.default_rng(0)
            for i in range(num_examples):
                image, label = render_scene(rng, size)
                yield i, {"image": _png(image), "label": _png(label), "name": f"bench/{i}.png"}

    builder = BenchScenes(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return builder.as_data_source()["train"]


def time_source(source, count: int) -> float:
    """Returns examples per CPU-second of reading (PNG-decoding) examples in one thread."""
    start = time.thread_time()
    for i in range(count):
        source[i % len(source)]
    return count / (time.thread_time() - start)


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU time (user + system, all threads) of a process and its live children."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def time_loader(
    source, *, workers: int, batch_size: int, batches: int, size: int
) -> tuple[float, float]:
    """Returns (images/s wall clock, images per CPU-second) of the training loader.

    CPU time counts this process and its grain worker processes, so the second
    number is the throughput per fully used core, robust to other load on the
    machine.
    """
    loader = input_pipeline.create_train_loader(
        source,
        global_batch_size=batch_size,
        image_size=(size, size),
        seed=0,
        augment=True,
        worker_count=workers,
    )
    iterator = iter(loader)
    for _ in range(2 * max(workers, 1) + 1):  # start-up and first fill of the buffers
        next(iterator)
    me = psutil.Process()
    cpu_start, start = _cpu_seconds(me), time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        assert batch["image"].shape == (batch_size, size, size, 3)
    wall, cpu = time.perf_counter() - start, _cpu_seconds(me) - cpu_start
    del iterator, loader
    gc.collect()
    images = batches * batch_size
    return images / wall, images / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-examples", type=int, default=512, help="source size")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per row")
    parser.add_argument("--data-dir", default=None, help="reuse a built data set here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        source = build_source(args.data_dir or tmp, args.num_examples, args.image_size)
        cores = os.cpu_count() or 1
        print(
            f"\nmachine: {platform.processor() or platform.machine()}, {cores} cores; "
            f"source: {len(source)} PNG examples {args.image_size}x{args.image_size}; "
            f"batch {args.batch_size}; augmentation on (scale-crop, flip, jitter)\n"
        )
        decode_rate = time_source(source, 200)
        print(f"source read + PNG decode only: {decode_rate:.0f} examples per CPU-second\n")
        print("| worker_count | images/s (wall) | images per CPU-second (per core) |")
        print("|---:|---:|---:|")
        for workers in args.workers:
            wall_rate, cpu_rate = time_loader(
                source,
                workers=workers,
                batch_size=args.batch_size,
                batches=args.batches,
                size=args.image_size,
            )
            print(f"| {workers} | {wall_rate:.0f} | {cpu_rate:.0f} |", flush=True)
        print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
