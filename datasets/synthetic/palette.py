"""Class ids, materials, colour palettes and noise textures of the rendered scenes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datasets.lyft_udacity.classes import NUM_CLASSES

(
    NONE,
    BUILDINGS,
    FENCES,
    OTHER,
    PEDESTRIANS,
    POLES,
    ROADLINES,
    ROADS,
    SIDEWALKS,
    VEGETATION,
    VEHICLES,
    WALLS,
    TRAFFICSIGNS,
) = range(NUM_CLASSES)


# Materials select the texture (noise fields and their strength) of a surface.
MAT_SKY, MAT_FLAT, MAT_ASPHALT, MAT_PAVE, MAT_ROUGH, MAT_LEAF, MAT_GRASS = range(7)


MAT_GLASS, MAT_METAL, MAT_CLOTH, MAT_WOOD, MAT_PLANKS, MAT_BRICK = range(7, 13)


# Per material: amplitude of fine grain, medium blotches, leafy clumps, vertical planks
# and brick courses (screen-space tiles: a consistent texture cue per surface kind).
_MAT_GRAIN = np.array(
    [0, 0.03, 0.08, 0.06, 0.05, 0.08, 0.16, 0.02, 0.02, 0.05, 0.09, 0.06, 0.05], np.float32
)


_MAT_BLOTCH = np.array(
    [0, 0.02, 0.04, 0.05, 0.09, 0.05, 0.12, 0.18, 0.03, 0.02, 0.06, 0.05, 0.06], np.float32
)


_MAT_LEAF = np.array([0, 0, 0, 0, 0, 0.38, 0.06, 0, 0, 0, 0, 0, 0], np.float32)


_MAT_PLANKS = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.22, 0], np.float32)


_MAT_BRICK = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.18], np.float32)


# Colour palettes (sRGB 0..255). Buildings and walls share tones on purpose.
# fmt: off
_BUILDING_RGB = [
    (150, 150, 150), (118, 116, 112), (190, 180, 165), (165, 100, 80), (212, 206, 196),
    (140, 125, 105), (96, 96, 102), (180, 170, 150), (200, 190, 160), (130, 140, 150),
]


_WALL_RGB = [
    (160, 160, 155), (128, 126, 120), (186, 176, 160), (150, 96, 76), (110, 110, 106),
    (200, 196, 186), (140, 135, 120),
]


_ROOF_RGB = [(120, 52, 42), (78, 78, 84), (100, 72, 56), (62, 62, 68), (140, 90, 60)]


_WOOD_RGB = [(125, 95, 65), (150, 120, 86), (100, 80, 60), (140, 138, 132), (170, 150, 120)]


_METAL_RGB = [(62, 62, 64), (45, 72, 52), (168, 170, 174), (120, 122, 126)]


_TERRAIN_RGB = [(92, 112, 60), (138, 130, 90), (118, 100, 78), (105, 120, 70), (80, 96, 58)]


_LEAF_RGB = [
    (58, 94, 40), (45, 78, 36), (80, 108, 44), (100, 120, 52), (140, 112, 42), (36, 60, 36),
    (70, 100, 60),
]


_CAR_RGB = [
    (226, 226, 226), (30, 30, 33), (170, 172, 176), (110, 112, 116), (170, 26, 26), (30, 60, 140),
    (26, 36, 72), (40, 90, 52), (190, 176, 140), (222, 190, 42), (210, 110, 30), (100, 60, 40),
    (40, 120, 130), (90, 90, 94),
]


_SKIN_RGB = [(240, 200, 170), (205, 155, 115), (150, 100, 70), (92, 62, 46)]


_SHIRT_RGB = [
    (200, 40, 40), (40, 80, 170), (50, 130, 60), (220, 190, 50), (230, 230, 225), (35, 35, 38),
    (220, 120, 40), (120, 60, 140), (90, 150, 190), (150, 30, 70),
]


_TROUSER_RGB = [(40, 60, 110), (30, 30, 34), (150, 130, 95), (90, 90, 96), (70, 50, 40)]


_POLE_RGB = [(132, 132, 132), (88, 88, 94), (58, 74, 60), (152, 152, 146), (110, 86, 60)]


def _rgb(rng: np.random.Generator, palette: list, jitter: float = 0.08) -> tuple:
    """Picks a palette colour with brightness and per-channel jitter."""
    r = rng.random(5)
    base = palette[int(r[0] * len(palette))]
    # Uniform jitter with the standard deviation of N(0, jitter) (one cheap draw).
    gain = 1.0 + (r[1] - 0.5) * 3.46 * jitter
    tint = (r[2:] - 0.5) * 1.15 * jitter
    return tuple(
        min(255.0, max(0.0, c * (gain + d))) for c, d in zip(base, tint.tolist(), strict=True)
    )


def _scaled(rgb: tuple, k: float) -> tuple:
    return tuple(min(255.0, c * k) for c in rgb)


def _noise_tiles() -> dict[str, np.ndarray]:
    """Builds the fixed noise tiles (a fixed seed: no global state, same every run)."""
    rng = np.random.default_rng(20180601)
    size = 512

    def smooth(cells: int) -> np.ndarray:
        small = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
        return np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float32)

    def unit(a: np.ndarray) -> np.ndarray:
        return ((a - a.mean()) / a.std()).astype(np.float32)

    leaf = unit(np.abs(smooth(200)) + 0.6 * np.abs(smooth(90)))
    # Planks: 5 px wide boards with a dark seam, each its own tone, and wood grain.
    col = np.arange(size)
    board = rng.normal(0.0, 0.5, size // 5 + 1)[col // 5] - 2.0 * (col % 5 == 0)
    grain = np.asarray(
        Image.fromarray(rng.standard_normal((16, size)).astype(np.float32), mode="F").resize(
            (size, size), Image.BILINEAR
        ),
        np.float32,
    )
    planks = board[None, :] + 0.4 * grain
    # Bricks: 6 px courses of 12 px bricks in running bond, 1 px mortar joints.
    row = np.arange(size)[:, None]
    shifted = (col[None, :] + 6 * ((row // 6) % 2)) % size
    brick_id = (row // 6) * (size // 12 + 1) + shifted // 12
    tone = rng.normal(0.0, 0.4, int(brick_id.max()) + 1)[brick_id]
    mortar = (row % 6 == 0) | (shifted % 12 == 0)
    bricks = np.where(mortar, -2.0, tone)
    return {
        "planks": unit(planks),
        "bricks": unit(bricks),
        "grain": unit(rng.standard_normal((size, size))),
        "blotch": unit(smooth(32) + 0.5 * smooth(64)),
        "leaf": leaf,
        "cloud": unit(smooth(6) + 0.5 * smooth(12) + 0.25 * smooth(24) + 0.12 * smooth(48)),
        "pixel": rng.standard_normal((3, size, size)).astype(np.float32),
    }


def _crop(tile: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random [..., height, width] window of a tile (wrapping when the frame is larger)."""
    size = tile.shape[-1]
    if height <= size and width <= size:
        oy = int(rng.integers(0, size - height + 1))
        ox = int(rng.integers(0, size - width + 1))
        return tile[..., oy : oy + height, ox : ox + width]
    rows = (int(rng.integers(0, size)) + np.arange(height)) % size
    cols = (int(rng.integers(0, size)) + np.arange(width)) % size
    return tile[..., rows[:, None], cols[None, :]]
