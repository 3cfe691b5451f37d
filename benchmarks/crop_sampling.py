"""How often training crops hold the rare classes, with and without class-aware sampling.

Draws the crops the training pipeline would (``create_train_loader``, seed 0, the recipe's
geometry: crop size, mode, scale jitter, flips; colour jitter and conditions off, they do
not move labels) from the masks of a data set, once per ``--shares`` value, and prints per
chosen class the share of crops that hold any of its pixels, its mean share of the crops'
labelled pixels and its mean pixel count per crop (which grows with the resolution). The
images are not read (zeros): only the labels matter here.

    python benchmarks/crop_sampling.py aerial ../shared/aerial --crop 128 128 --classes 5
    python benchmarks/crop_sampling.py carla ../shared/carla_episode --crop 240 320 \\
        --mode resize --min_scale 0.8 --max_scale 2.5 --classes 4 10 11 12
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from PIL import Image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # datasets/ is imported from the root, never installed
    sys.path.insert(0, str(REPO_ROOT))

from unet_jax.data import pipeline as ip  # noqa: E402
from unet_jax.data.fingerprint import sample_indices  # noqa: E402


def read_masks(kind: str, root: pathlib.Path, limit: int) -> list[np.ndarray]:
    """Class-id label maps [H, W]: the aerial masks by colour, CARLA's red channel with the
    hood ignored (as the ``*_nohood`` data sets); at most ``limit``, evenly spaced."""
    if kind == "aerial":
        from datasets.aerial.classes import MASK_RULE
        from datasets.folder.decode import decode_mask

        paths = sorted(root.rglob("masks/*.png"))
        return [decode_mask(paths[i], MASK_RULE) for i in sample_indices(len(paths), limit)]
    from datasets.lyft_udacity.decode import apply_hood_rule

    paths = sorted((root / "CameraSeg").glob("*.png"))
    picked = [paths[i] for i in sample_indices(len(paths), limit)]
    return [apply_hood_rule(np.asarray(Image.open(p))[..., 0], "ignore") for p in picked]


class LabelsOnly:
    """Examples with the masks' labels and a zero image (made on access)."""

    def __init__(self, labels: list[np.ndarray]):
        self._labels = labels

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict:
        label = self._labels[index]
        return {"image": np.zeros((*label.shape, 3), np.uint8), "label": label[..., None]}


def crop_stats(source, *, args, share: float) -> dict[str, dict[str, float]]:
    """Per chosen class: share of crops holding it, mean share of their labelled pixels,
    mean pixels per crop."""
    augment = {
        "input_mode": args.mode,
        "min_scale": args.min_scale,
        "max_scale": args.max_scale,
        "brightness": 0.0,
        "contrast": 0.0,
        "saturation": 0.0,
        "rot90": args.mode == "crop",
        "conditions": None,
        "foreground_share": share,
        "foreground_classes": tuple(args.classes),
    }
    loader = ip.create_train_loader(
        source, global_batch_size=8, image_size=tuple(args.crop), seed=0, augment=augment
    )
    iterator = iter(loader)
    labels = np.concatenate([next(iterator)["label"] for _ in range(args.crops // 8)])
    iterator.close()
    labelled = (labels != 255).sum(axis=(1, 2)).clip(min=1)
    out = {}
    for c in args.classes:
        pixels = (labels == c).sum(axis=(1, 2))
        out[str(c)] = {
            "crops_holding": float((pixels > 0).mean()),
            "pixel_share": float((pixels / labelled).mean()),
            "pixels_per_crop": float(pixels.mean()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("aerial", "carla"))
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("--crop", type=int, nargs=2, default=(128, 128), help="height width")
    parser.add_argument("--mode", choices=("crop", "resize"), default="crop")
    parser.add_argument("--min_scale", type=float, default=0.75)
    parser.add_argument("--max_scale", type=float, default=1.25)
    parser.add_argument("--classes", type=int, nargs="+", required=True)
    parser.add_argument("--shares", type=float, nargs="+", default=(0.0, 1 / 3))
    parser.add_argument("--crops", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=200, help="masks read at most")
    args = parser.parse_args()
    source = LabelsOnly(read_masks(args.kind, args.root, args.limit))
    result = {
        "data": f"{args.kind}: {len(source)} masks of {args.root}",
        "crops": args.crops,
        "geometry": f"{args.mode} {args.crop}, scale {args.min_scale}-{args.max_scale}",
        "by_share": {str(s): crop_stats(source, args=args, share=s) for s in args.shares},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
