"""Small in-memory data sources following the data contract (for trainer tests)."""

import numpy as np


def make_examples(n: int, *, size: tuple[int, int] = (32, 32), seed: int = 0) -> list[dict]:
    """Examples whose label is a few rectangles of classes 0..12 painted in class colours.

    Args:
      n: number of examples.
      size: (height, width).
      seed: makes the examples deterministic.

    Returns:
      A list of {"image": uint8 [H, W, 3], "label": uint8 [H, W, 1], "name": str}.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    colours = rng.integers(0, 256, (13, 3))
    examples = []
    for i in range(n):
        label = np.full((h, w), rng.integers(0, 13), np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            label[y : y + rng.integers(3, h // 2), x : x + rng.integers(3, w // 2)] = rng.integers(
                0, 13
            )
        image = colours[label] + rng.integers(-20, 21, (h, w, 3))
        examples.append(
            {
                "image": np.clip(image, 0, 255).astype(np.uint8),
                "label": label[..., None],
                "name": f"fake/{i:04d}.png",
            }
        )
    return examples
