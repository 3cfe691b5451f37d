"""Writes ``dummy_data/``: tiny fake frames in the real (nested Kaggle) layout.

``python -m datasets.lyft_udacity.make_dummy_data`` rewrites the folder. Ten
episodes of three frames (``02_EE_FFF.png``), 32x24 pixels, dealt across
dataA..dataE like the real archive, each with an ego-car hood (id 10) at the
bottom and a separate vehicle (id 10) higher up.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from datasets.lyft_udacity.classes import NUM_CLASSES

DUMMY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dummy_data")
WIDTH, HEIGHT = 32, 24
EPISODES, FRAMES_PER_EPISODE = 10, 3
FOLDERS = ("dataA", "dataB", "dataC", "dataD", "dataE")
VEHICLES = 10


def frame_file(index: int) -> tuple[str, str]:
    """Returns (folder, file name) of dummy frame ``index`` (0..29)."""
    episode, frame = divmod(index, FRAMES_PER_EPISODE)
    return FOLDERS[index % len(FOLDERS)], f"02_{episode:02d}_{frame:03d}.png"


def hood(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The dummy hood: the last 4 rows plus a bump in the middle of the row above."""
    mask = np.zeros((height, width), dtype=bool)
    mask[height - 4 :] = True
    mask[height - 5, width // 4 : 3 * width // 4] = True
    return mask


def frame_arrays(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (image uint8 [24, 32, 3], label ids uint8 [24, 32]) of dummy frame ``index``."""
    rng = np.random.default_rng(index)
    # A colour gradient with a little noise: varied pixels, small files.
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([xx * 8, yy * 10, (xx + yy) * 4 + 20 * index], axis=-1)
    image = ((base + rng.integers(0, 16, base.shape)) % 256).astype(np.uint8)
    others = np.array([i for i in range(NUM_CLASSES) if i != VEHICLES], dtype=np.uint8)
    label = rng.choice(others, size=(HEIGHT, WIDTH)).astype(np.uint8)
    label[3:7, 2 + index % 5 : 8 + index % 5] = VEHICLES  # a car, not touching the hood
    label[hood()] = VEHICLES
    return image, label


def write(root: str = DUMMY_DIR) -> None:
    """Writes all dummy frames under root (labels as RGB, id in the red channel).

    Args:
      root: the output directory.
    """
    for index in range(EPISODES * FRAMES_PER_EPISODE):
        folder, name = frame_file(index)
        image, label = frame_arrays(index)
        rgb_label = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        rgb_label[..., 0] = label
        for sub, array in (("CameraRGB", image), ("CameraSeg", rgb_label)):
            out = os.path.join(root, folder, folder, sub)
            os.makedirs(out, exist_ok=True)
            Image.fromarray(array).save(os.path.join(out, name))


if __name__ == "__main__":
    write()
