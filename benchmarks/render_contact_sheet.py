"""Contact sheet, render speed and class shares of the synthetic CARLA-like scenes.

Run from the repository root:

  python benchmarks/render_contact_sheet.py --out docs/images/synthetic_contact_sheet.png
  python benchmarks/render_contact_sheet.py --stats 200   # Markdown tables: ms/frame, shares

The sheet shows ``--num`` scenes (image | colourised label) with a legend of the
13 classes. ``--stats N`` renders seeds 0..N-1 on one core and prints the render
time per frame (median and best of ``--repeats`` passes) and the mean class pixel
shares next to the real data's (docs/SYNTHETIC.md quotes this output).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # datasets/ is imported from the root, never installed
    sys.path.insert(0, str(REPO_ROOT))

from datasets.lyft_udacity.classes import CARLA_CLASSES, CLASS_NAMES, NUM_CLASSES, PALETTE  # noqa: E402
from datasets.synthetic.scenes import render_scene  # noqa: E402

# Real pixel shares (%, hood included) over 15 real frames, from
# ../shared/real_samples/README.md.
REAL_SHARES = (32.7, 5.8, 2.0, 0.5, 0.03, 0.4, 0.7, 18.9, 7.6, 14.1, 16.0, 1.3, 0.01)


def contact_sheet(seeds: list[int], size: int, columns: int = 2) -> Image.Image:
    """Builds the sheet: rows of (image | label) pairs and a legend strip below.

    Args:
      seeds: scene seeds, drawn row by row.
      size: render size (square) in pixels.
      columns: image/label pairs per row.

    Returns:
      The RGB sheet.
    """
    gap = max(4, size // 32)
    rows = -(-len(seeds) // columns)
    cell_w = 2 * size + gap
    legend_h = 3 * (size // 8 + 4)
    sheet = Image.new(
        "RGB",
        (columns * cell_w + (columns - 1) * gap, rows * (size + gap) + legend_h),
        (255, 255, 255),
    )
    for k, seed in enumerate(seeds):
        image, label = render_scene(seed, size, size)
        x = (k % columns) * (cell_w + gap)
        y = (k // columns) * (size + gap)
        sheet.paste(Image.fromarray(image), (x, y))
        sheet.paste(Image.fromarray(CARLA_CLASSES.colorize(label)), (x + size, y))
    draw = ImageDraw.Draw(sheet)
    font_px = max(10, size // 16)
    try:
        font = ImageFont.load_default(size=font_px)
    except TypeError:  # Pillow without FreeType scaling
        font = ImageFont.load_default()
    per_row = -(-NUM_CLASSES // 3)
    slot_w = sheet.width // per_row
    top = rows * (size + gap) + 4
    for c, name in enumerate(CLASS_NAMES):
        x = (c % per_row) * slot_w + 4
        y = top + (c // per_row) * (font_px + 10)
        draw.rectangle(
            [x, y, x + font_px, y + font_px],
            fill=tuple(int(v) for v in PALETTE[c]),
            outline=(0, 0, 0),
        )
        draw.text((x + font_px + 5, y), f"{c} {name}", fill=(0, 0, 0), font=font)
    return sheet.crop((0, 0, sheet.width, top + 3 * (font_px + 10)))


def render_stats(num: int, size: int, repeats: int) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Times seeds 0..num-1 and measures class shares.

    Args:
      num: number of scenes.
      size: render size (square) in pixels.
      repeats: timing passes over the seeds.

    Returns:
      (ms per frame of each pass, mean share per class in %, fraction of frames
      that contain each class).
    """
    render_scene(0, size, size)  # builds the noise tiles once
    counts = np.zeros(NUM_CLASSES, np.int64)
    present = np.zeros(NUM_CLASSES, np.int64)
    passes = []
    for r in range(repeats):
        start = time.perf_counter()
        for seed in range(num):
            _, label = render_scene(seed, size, size)
            if r == 0:
                c = np.bincount(label.ravel(), minlength=NUM_CLASSES)
                counts += c
                present += c > 0
        passes.append((time.perf_counter() - start) / num * 1e3)
    return passes, 100.0 * counts / counts.sum(), present / num


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, help="PNG path of the contact sheet")
    parser.add_argument("--num", type=int, default=8, help="scenes on the sheet")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first scene")
    parser.add_argument("--size", type=int, default=256, help="render size in pixels")
    parser.add_argument("--stats", type=int, default=0, help="time and measure N scenes")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes for --stats")
    args = parser.parse_args(argv)
    if args.out is None and args.stats <= 0:
        parser.error("nothing to do: give --out and/or --stats N")
    if args.out is not None:
        seeds = list(range(args.first_seed, args.first_seed + args.num))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(seeds, args.size).save(args.out, optimize=True)
        print(f"wrote {args.out} (seeds {seeds[0]}..{seeds[-1]})")
    if args.stats > 0:
        passes, shares, present = render_stats(args.stats, args.size, args.repeats)
        print(f"\n| frames | size | ms/frame (median of {len(passes)}) | ms/frame (best) |")
        print("|---:|---:|---:|---:|")
        print(
            f"| {args.stats} | {args.size}x{args.size} | {np.median(passes):.2f} | "
            f"{min(passes):.2f} |"
        )
        print("\n| id | class | synthetic share % | real share % | frames with class |")
        print("|---:|---|---:|---:|---:|")
        for c, name in enumerate(CLASS_NAMES):
            print(
                f"| {c} | {name} | {shares[c]:.2f} | {REAL_SHARES[c]:.2f} | "
                f"{100 * present[c]:.0f}% |"
            )


if __name__ == "__main__":
    main()
