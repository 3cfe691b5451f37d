"""Contact sheet and speed of the condition augmentations (unet_jax/data/conditions.py).

Run from the repository root:

  python benchmarks/render_conditions.py --frame FRAME.png \
      --out docs/images/conditions_contact_sheet.png
  python benchmarks/render_conditions.py --frame FRAME.png --timing   # Markdown table: ms/frame

The sheet shows the frame resized to ``--size`` and each condition applied at
``--strength`` with p = 1 (one fixed seed per tile). ``--timing`` prints each
condition's CPU time per frame (process time: one core, whatever else runs) at
320x240 and 800x600, the median of ``--repeats`` seeds (docs/AUGMENTATION.md quotes it).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unet_jax.data import conditions


def load_frame(path: pathlib.Path, width: int, height: int) -> np.ndarray:
    """The frame as uint8 RGB, resized to ``width x height``."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))


def contact_sheet(frame: np.ndarray, *, strength: float, columns: int, seed: int) -> Image.Image:
    """The frame and each condition applied to it, captioned, ``columns`` tiles a row."""
    tiles = [("original", frame)]
    for i, condition in enumerate(conditions.CONDITIONS):
        transform = condition(p=1.0, strength=strength)
        rng = np.random.default_rng([seed, i])
        tiles.append((f"{condition.name} (strength {strength:g})", transform.apply(frame, rng)))
    height, width = frame.shape[:2]
    caption = 18
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * width, rows * (height + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, (title, image) in enumerate(tiles):
        x, y = (k % columns) * width, (k // columns) * (height + caption)
        draw.text((x + 4, y + 3), title, fill="black", font=font)
        sheet.paste(Image.fromarray(image), (x, y + caption))
    return sheet


def timing(frame_path: pathlib.Path, *, repeats: int) -> str:
    """A Markdown table of each condition's CPU milliseconds per frame at two sizes."""
    sizes = ((320, 240), (800, 600))
    frames = {size: load_frame(frame_path, *size) for size in sizes}
    lines = [
        "| condition | 320x240 ms | 800x600 ms |",
        "|---|---:|---:|",
    ]
    for condition in conditions.CONDITIONS:
        transform = condition(p=1.0, strength=1.0)
        cells = []
        for size in sizes:
            times = []
            for seed in range(repeats):
                rng = np.random.default_rng(seed)
                start = time.process_time()
                transform.apply(frames[size], rng)
                times.append(time.process_time() - start)
            cells.append(f"{1e3 * statistics.median(times):.1f}")
        lines.append(f"| `{condition.name}` | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame", type=pathlib.Path, required=True, help="an RGB frame")
    parser.add_argument("--out", type=pathlib.Path, help="where to write the sheet (PNG)")
    parser.add_argument("--size", default="320x240", help="tile WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--columns", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing", action="store_true", help="print the speed table")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    if not args.frame.is_file():
        print(f"error: --frame {args.frame}: no such file", file=sys.stderr)
        return 2
    if args.out is None and not args.timing:
        print("error: pass --out PNG, --timing or both", file=sys.stderr)
        return 2
    if args.out is not None:
        width, height = (int(v) for v in args.size.lower().split("x"))
        frame = load_frame(args.frame, width, height)
        sheet = contact_sheet(frame, strength=args.strength, columns=args.columns, seed=args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.out, optimize=True)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    if args.timing:
        print(timing(args.frame, repeats=args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
