"""Writes an example folder data set: rendered street scenes as JPEGs with colour masks.

``python -m datasets.folder.make_example DIR [--count 300]`` writes ``DIR/images/*.jpg``
(scenes of several sizes), ``DIR/masks/*.png`` (RGB colour masks, every third one a
palette-mode PNG, as image editors save them) and ``DIR/classes.json`` with 6 classes, made
from the 13 CARLA classes of the demo renderer (``datasets/synthetic/scenes.py``).
It is the layout docs/YOUR_DATA.md describes, for trying the folder workflow without data.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from PIL import Image

from datasets.lyft_udacity.classes import CLASS_NAMES
from datasets.synthetic.scenes import render_scene

# Example classes and the CARLA classes each is made of.
CLASSES = {
    "road": ("#804080", ("Roads", "RoadLines")),
    "sidewalk": ("#F423E8", ("Sidewalks",)),
    "building": ("#464646", ("Buildings", "Walls", "Fences")),
    "vegetation": ("#6B8E23", ("Vegetation",)),
    "vehicle": ("#00008E", ("Vehicles",)),
    "other": ("#DCDC00", ("Poles", "TrafficSigns", "Pedestrians", "Other")),
}
IGNORE = "#000000"  # "None" in CARLA: sky and unlabelled pixels
SIZES = ((240, 320), (192, 256), (300, 400), (256, 256))


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def carla_to_colors() -> np.ndarray:
    """uint8 [256, 3]: the mask colour of each CARLA class id (ignored ones black)."""
    lut = np.zeros((256, 3), np.uint8)
    for color, members in CLASSES.values():
        for member in members:
            lut[CLASS_NAMES.index(member)] = _rgb(color)
    return lut


def write_example(root: pathlib.Path, *, count: int) -> None:
    """Writes ``count`` scenes and classes.json into ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    lut = carla_to_colors()
    for seed in range(count):
        height, width = SIZES[seed % len(SIZES)]
        image, label = render_scene(seed, height=height, width=width)
        Image.fromarray(image).save(root / "images" / f"scene_{seed:04d}.jpg", quality=92)
        mask = Image.fromarray(lut[label])
        if seed % 3 == 0:
            mask = mask.quantize(colors=len(CLASSES) + 1, method=Image.Quantize.MAXCOVERAGE)
        mask.save(root / "masks" / f"scene_{seed:04d}.png")
    spec = {
        "classes": [{"name": name, "color": color} for name, (color, _) in CLASSES.items()],
        "ignore": [IGNORE],
    }
    (root / "classes.json").write_text(json.dumps(spec, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.folder.make_example")
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args(argv)
    write_example(pathlib.Path(args.folder), count=args.count)
    print(f"Wrote {args.count} scenes to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
