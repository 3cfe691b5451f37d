"""Procedural CARLA-like street scenes: the data of the ``synthetic`` config.

The real Lyft-Udacity archive cannot be downloaded here, so the out-of-box demo
trains on scenes rendered by :func:`render_scene`. A scene is a pinhole camera
above a flat ground plane: a (possibly curving) road with lane lines and
crosswalks, sidewalks, roadside lots (buildings, walls, fences, trees, open
ground), street furniture (lamp poles, signs, clutter), pedestrians, cars and
the ego car's hood.

Every shape is drawn once, as an integer object id, into one PIL canvas without
anti-aliasing. The label is the class of the object at each pixel; the image is
shaded from each object's colour, material texture, cast shadows, fog, wet road,
rain and camera effects. Label and image therefore agree pixel for pixel while
colour alone does not give the class (cars come in grey, buildings and walls
share tones, grass is "None" but green, the lighting changes per scene).

Thin classes (poles, lines, signs, pedestrians) have a minimum on-screen size so
that they stay learnable after the demo resizes 256x256 renders to 128x128;
docs/SYNTHETIC.md lists the resulting class shares next to the real ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

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

_SKY_DEPTH = 1e6  # marks sky: fogged by the scene's sky haze, not by distance
_MIN_SIZE = 16  # smallest accepted image side in pixels

# Smallest on-screen sizes, as fractions of the image width (height for heights); at
# 256x256: poles 9 px wide, road lines 3.6 px, sign faces 22 px, people 51 px and
# clutter 28 px tall (half that after the demo's resize to 128x128).
_MIN_POLE_W = 0.036
_MIN_LINE_W = 0.014
_MIN_SIGN_W = 0.085
_MIN_PED_H = 0.2
_MIN_OTHER_H = 0.11

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
# fmt: on


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


# ----------------------------------------------------------------------------- textures
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


_TILES: dict[str, np.ndarray] | None = None


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


# ----------------------------------------------------------------------------- the scene
class _Scene:
    """One scene: camera, road layout, the object-id canvas and per-object attributes."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng = rng
        self.h, self.w = height, width
        # A 90 degree horizontal field of view on an 800x600 frame squeezed to the
        # output aspect ratio, like the resized real data.
        self.fx = 0.5 * width * rng.uniform(0.94, 1.06)
        self.fy = self.fx * (height / width) * (4.0 / 3.0)
        self.cx = width * (0.5 + rng.uniform(-0.03, 0.03))
        self.h0 = height * rng.uniform(0.46, 0.53)
        self.camh = rng.uniform(1.45, 1.8)
        # Road layout in road coordinates: s is metres right of the centre line.
        self.lane_w = rng.uniform(3.0, 3.8)
        self.n_left = int(rng.choice([1, 1, 2]))
        self.n_right = int(rng.choice([1, 1, 2]))
        self.edge = (-self.n_left * self.lane_w, self.n_right * self.lane_w)
        ego_lane = int(rng.integers(self.n_right))
        self.x0 = -(ego_lane + 0.5) * self.lane_w + rng.uniform(-0.4, 0.4)
        self.yaw = rng.uniform(-0.06, 0.06)
        self.curv = rng.uniform(-0.0035, 0.0035) if rng.random() < 0.55 else 0.0
        self.nz = 8 if self.curv else 2
        self.sidewalk = (rng.uniform(2.2, 4.5), rng.uniform(2.2, 4.5))
        self.verge = tuple(rng.uniform(0.0, 2.5) if rng.random() < 0.5 else 0.0 for _ in "lr")
        self.sun_side = 1.0 if rng.random() < 0.5 else -1.0
        # Canvases: object ids (drawn without anti-aliasing), ground shadows, rain.
        self.ids = Image.new("I", (width, height), 0)
        self.draw = ImageDraw.Draw(self.ids)
        self.shadow = Image.new("L", (width, height), 255)
        self.sdraw = ImageDraw.Draw(self.shadow)
        # Object attributes, indexed by id; id 0 is the sky.
        self.cls: list[int] = [NONE]
        self.rgb: list[tuple] = [(0.0, 0.0, 0.0)]
        self.mat: list[int] = [MAT_SKY]
        self.shade: list[float] = [1.0]
        self.depth: list[float] = [_SKY_DEPTH]

    # -- object ids -----------------------------------------------------------------------
    def obj(self, cls: int, rgb: tuple, mat: int, shade: float = 1.0, depth: float = -1.0) -> int:
        """Registers an object; depth < 0 means ground (depth taken from the image row)."""
        self.cls.append(cls)
        self.rgb.append(rgb)
        self.mat.append(mat)
        self.shade.append(shade)
        self.depth.append(depth)
        return len(self.cls) - 1

    def poly(self, oid: int, pts: list) -> None:
        if len(pts) >= 3:
            self.draw.polygon(pts, fill=oid)

    # -- projection -------------------------------------------------------------------------
    def u(self, s: float, z: float) -> float:
        """Image column of road coordinate s (metres) at depth z (metres)."""
        return self.cx + self.fx * (self.x0 + self.yaw * z + self.curv * z * z + s) / z

    def v(self, z: float, y: float = 0.0) -> float:
        """Image row of height y (metres above ground) at depth z."""
        return self.h0 + self.fy * (self.camh - y) / z

    def zs(self, z0: float, z1: float, n: int) -> list[float]:
        if n <= 2:
            return [z0, z1]
        r = z1 / z0
        return [z0 * r ** (i / (n - 1)) for i in range(n)]

    def ground_strip(
        self, oid: int, s0: float, s1: float, z0: float, z1: float, n: int = 0, min_px: float = 0.0
    ) -> None:
        """Fills the ground between lateral s0 < s1 from depth z0 to z1."""
        left, right = [], []
        for z in self.zs(z0, z1, n or self.nz):
            u0, u1, v = self.u(s0, z), self.u(s1, z), self.v(z)
            if u1 - u0 < min_px:
                m = 0.5 * (u0 + u1)
                u0, u1 = m - 0.5 * min_px, m + 0.5 * min_px
            left.append((u0, v))
            right.append((u1, v))
        self.poly(oid, left + right[::-1])

    def ground_poly(self, pts: list) -> list:
        """Image points of ground points [(s, z), ...]."""
        return [(self.u(s, z), self.v(z)) for s, z in pts]

    def facade(self, oid: int, s: float, z0: float, z1: float, y0: float, y1: float) -> None:
        """A vertical wall parallel to the road at lateral s, from depth z0 to z1."""
        zz = self.zs(z0, z1, self.nz)
        pts = [(self.u(s, z), self.v(z, y0)) for z in zz]
        pts += [(self.u(s, z), self.v(z, y1)) for z in reversed(zz)]
        self.poly(oid, pts)

    def front(self, oid: int, s0: float, s1: float, z: float, y0: float, y1: float) -> None:
        """A vertical rectangle facing the camera at depth z."""
        u0, u1 = self.u(s0, z), self.u(s1, z)
        v0, v1 = self.v(z, y0), self.v(z, y1)
        self.poly(oid, [(u0, v0), (u1, v0), (u1, v1), (u0, v1)])

    def shadow_poly(self, pts: list, strength: float) -> None:
        if len(pts) >= 3:
            self.sdraw.polygon(pts, fill=int(255 * (1.0 - strength)))


def _sprite(
    sc: _Scene,
    s: float,
    z: float,
    *,
    min_w: float = 0.0,
    min_h: float = 0.0,
    width_m: float = 1.0,
    height_m: float = 1.0,
) -> tuple:
    """Anchor (column, row) and scale (px per metre) of an upright object at (s, z).

    The scale is enlarged, keeping the aspect ratio, so that the object is at least
    min_w pixels wide and min_h pixels tall: thin classes stay visible far away.
    """
    kx, ky = sc.fx / z, sc.fy / z
    grow = max(1.0, min_w / (width_m * kx), min_h / (height_m * ky))
    return sc.u(s, z), sc.v(z), kx * grow, ky * grow


def _box(
    u: float, v: float, kx: float, ky: float, x0: float, x1: float, y0: float, y1: float
) -> list:
    """Image rectangle of a local box (metres: x right of the anchor, y up)."""
    return [
        (u + x0 * kx, v - y0 * ky),
        (u + x1 * kx, v - y0 * ky),
        (u + x1 * kx, v - y1 * ky),
        (u + x0 * kx, v - y1 * ky),
    ]


def _local(u: float, v: float, kx: float, ky: float, pts: list) -> list:
    return [(u + x * kx, v - y * ky) for x, y in pts]


# ----------------------------------------------------------------------------- background
def _draw_background(sc: _Scene, env: dict) -> None:
    rng, w, h0 = sc.rng, sc.w, sc.h0
    # Distant hills (None) and a treeline or skyline on the horizon.
    if rng.random() < 0.6:
        hill = sc.obj(NONE, _scaled(_rgb(rng, _TERRAIN_RGB), 0.8), MAT_GRASS, depth=900.0)
        xs = np.linspace(-0.05 * w, 1.05 * w, 9)
        tops = h0 - sc.h * rng.uniform(0.01, 0.08, 9)
        sc.poly(
            hill, [(-1, h0 + 2), *zip(xs.tolist(), tops.tolist(), strict=True), (w + 1, h0 + 2)]
        )
    tree = sc.obj(VEGETATION, _scaled(_rgb(rng, _LEAF_RGB), 0.8), MAT_LEAF, depth=400.0)
    n = 24
    xs = np.linspace(-0.05 * w, 1.05 * w, n)
    tops = h0 - sc.h * np.abs(rng.normal(0.02, 0.02, n))
    sc.poly(tree, [(-1, h0 + 2), *zip(xs.tolist(), tops.tolist(), strict=True), (w + 1, h0 + 2)])
    for _ in range(int(rng.integers(0, 5))):
        bid = sc.obj(BUILDINGS, _rgb(rng, _BUILDING_RGB), MAT_ROUGH, depth=350.0)
        x = rng.uniform(0, w)
        bw, bh = w * rng.uniform(0.02, 0.08), sc.h * rng.uniform(0.02, 0.09)
        sc.poly(bid, [(x, h0 + 1), (x + bw, h0 + 1), (x + bw, h0 - bh), (x, h0 - bh)])


# ----------------------------------------------------------------------------- ground
def _draw_ground(sc: _Scene, env: dict) -> None:
    rng = sc.rng
    far = 250.0
    terrain = sc.obj(NONE, _rgb(rng, _TERRAIN_RGB), MAT_GRASS)
    sc.poly(terrain, [(-1, sc.h0), (sc.w + 1, sc.h0), (sc.w + 1, sc.h + 1), (-1, sc.h + 1)])
    road_rgb = _scaled((112, 112, 116), rng.uniform(0.75, 1.2) * env["wet_dark"])
    walk_rgb = _rgb(rng, [(168, 168, 166), (182, 176, 164), (172, 146, 136), (150, 152, 156)])
    walk_rgb = _scaled(walk_rgb, env["wet_dark"])
    left, right = sc.edge
    for side, edge, width in ((-1, left, sc.sidewalk[0]), (1, right, sc.sidewalk[1])):
        walk = sc.obj(SIDEWALKS, walk_rgb, MAT_PAVE)
        outer = edge + side * width
        sc.ground_strip(walk, min(edge, outer), max(edge, outer), 1.0, far)
        curb = sc.obj(SIDEWALKS, _scaled(walk_rgb, 1.12), MAT_PAVE)
        inner = edge + side * 0.2
        sc.ground_strip(curb, min(edge, inner), max(edge, inner), 1.0, far)
        # Paving seams across the sidewalk, near enough to be seen.
        seam = sc.obj(SIDEWALKS, _scaled(walk_rgb, 0.78), MAT_PAVE)
        step = rng.uniform(1.5, 3.0)
        z = rng.uniform(1.0, 1.0 + step)
        while z < 30.0:
            sc.ground_strip(seam, min(edge, outer), max(edge, outer), z, z + 0.08, 2, 0.0)
            z += step
    road = sc.obj(ROADS, road_rgb, MAT_ASPHALT)
    sc.ground_strip(road, left, right, 1.0, far)
    # Asphalt repairs: same class, another tone.
    for _ in range(int(rng.integers(0, 4))):
        patch = sc.obj(ROADS, _scaled(road_rgb, rng.uniform(0.75, 1.2)), MAT_ASPHALT)
        s0 = rng.uniform(left, right - 1.0)
        z0 = rng.uniform(3.0, 40.0)
        sc.ground_strip(patch, s0, s0 + rng.uniform(0.8, 3.0), z0, z0 + rng.uniform(1.0, 6.0), 2)
    _draw_lines(sc, env)


def _draw_lines(sc: _Scene, env: dict) -> None:
    rng = sc.rng
    min_px = _MIN_LINE_W * sc.w
    white = _scaled((228, 228, 222), rng.uniform(0.75, 1.0) * env["wet_dark"])
    yellow = _scaled((226, 182, 40), rng.uniform(0.75, 1.0) * env["wet_dark"])
    lw = rng.uniform(0.2, 0.3)
    z_end = rng.uniform(60.0, 120.0)

    def solid(oid: int, s: float) -> None:
        sc.ground_strip(oid, s - lw / 2, s + lw / 2, 1.0, z_end, max(sc.nz, 6), min_px)

    def dashed(oid: int, s: float) -> None:
        dash, gap = rng.uniform(2.5, 4.0), rng.uniform(4.0, 7.0)
        z = rng.uniform(0.5, dash + gap)
        while z < z_end:
            sc.ground_strip(oid, s - lw / 2, s + lw / 2, z, z + dash, 2, min_px)
            z += dash + gap

    kind = rng.random()
    if kind < 0.45:  # double yellow centre line
        yid = sc.obj(ROADLINES, yellow, MAT_PAVE)
        solid(yid, -lw * 1.2)
        solid(yid, lw * 1.2)
    elif kind < 0.75:
        dashed(sc.obj(ROADLINES, yellow, MAT_PAVE), 0.0)
    else:
        dashed(sc.obj(ROADLINES, white, MAT_PAVE), 0.0)
    wid = sc.obj(ROADLINES, white, MAT_PAVE)
    for i in range(1, sc.n_right):
        dashed(wid, i * sc.lane_w)
    for i in range(1, sc.n_left):
        dashed(wid, -i * sc.lane_w)
    if rng.random() < 0.6:
        solid(wid, sc.edge[0] + 0.45)
        solid(wid, sc.edge[1] - 0.45)
    if rng.random() < 0.35:  # crosswalk with a stop line
        z0 = rng.uniform(7.0, 22.0)
        depth = rng.uniform(2.5, 4.0)
        s = sc.edge[0] + 0.3
        while s < sc.edge[1] - 0.5:
            sc.ground_strip(wid, s, s + 0.5, z0, z0 + depth, 2, 0.0)
            s += 1.0
        sc.ground_strip(wid, 0.0, sc.edge[1], z0 - 1.5, z0 - 1.0, 2, 0.0)
        env["crosswalk"] = (z0, depth)


# ----------------------------------------------------------------------------- lots
def _windows(sc: _Scene, s: float, z0: float, z1: float, height: float, glass: list) -> None:
    """A grid of windows on a facade at lateral s (vectorised projection)."""
    rng = sc.rng
    col_step, floor_h = rng.uniform(2.4, 4.0), rng.uniform(2.9, 3.6)
    win_w, win_h = col_step * rng.uniform(0.35, 0.6), floor_h * rng.uniform(0.35, 0.55)
    zc = np.arange(z0 + col_step * 0.5, z1 - col_step * 0.3, col_step)
    yc = np.arange(floor_h * 0.55, height - floor_h * 0.4, floor_h)
    if zc.size == 0 or yc.size == 0:
        return
    za = np.maximum(zc - win_w / 2, 1.0)
    zb = zc + win_w / 2
    xa = sc.x0 + sc.yaw * za + sc.curv * za * za + s
    xb = sc.x0 + sc.yaw * zb + sc.curv * zb * zb + s
    ua, ub = sc.cx + sc.fx * xa / za, sc.cx + sc.fx * xb / zb
    keep = np.abs(ub - ua) >= 1.5  # windows narrower than that read as texture
    if not keep.any():
        return
    za, zb, ua, ub = za[keep], zb[keep], ua[keep], ub[keep]
    y0 = (yc - win_h / 2)[:, None]
    y1 = (yc + win_h / 2)[:, None]
    va0 = sc.h0 + sc.fy * (sc.camh - y0) / za
    va1 = sc.h0 + sc.fy * (sc.camh - y1) / za
    vb0 = sc.h0 + sc.fy * (sc.camh - y0) / zb
    vb1 = sc.h0 + sc.fy * (sc.camh - y1) / zb
    choice = rng.integers(0, len(glass), va0.shape)
    ua_l, ub_l = ua.tolist(), ub.tolist()
    rows = zip(va0.tolist(), va1.tolist(), vb0.tolist(), vb1.tolist(), choice.tolist(), strict=True)
    for ra0, ra1, rb0, rb1, pick in rows:
        for c in range(len(ua_l)):
            pts = [(ua_l[c], ra0[c]), (ub_l[c], rb0[c]), (ub_l[c], rb1[c]), (ua_l[c], ra1[c])]
            sc.poly(glass[pick[c]], pts)


def _glass(sc: _Scene, depth: float, shade: float) -> list:
    """Three window panes (dark, plain, reflecting) of one tint, all Buildings."""
    rng = sc.rng
    tint = _rgb(sc.rng, [(70, 85, 100), (50, 60, 70), (110, 125, 140), (90, 80, 60)])
    return [
        sc.obj(BUILDINGS, _scaled(tint, k), MAT_GLASS, shade, depth)
        for k in (rng.uniform(0.6, 0.8), 1.0, rng.uniform(1.2, 1.6))
    ]


def _building(sc: _Scene, side: float, s_front: float, z0: float, z1: float, env: dict) -> None:
    rng = sc.rng
    setback = rng.uniform(0.0, 4.0)
    s_f = s_front + side * setback
    tall = rng.random() < 0.35
    height = rng.uniform(9.0, 22.0) if tall else rng.uniform(4.5, 8.0)
    depth_m = rng.uniform(8.0, 16.0)
    rgb = _rgb(rng, _BUILDING_RGB)
    lit = 1.0 if side == -sc.sun_side else 0.72
    z0c = max(z0, 1.2)
    if z0 >= 1.2:  # the near side face, turned towards the camera
        side_id = sc.obj(BUILDINGS, rgb, MAT_ROUGH, 0.85, z0)
        sc.front(
            side_id, min(s_f, s_f + side * depth_m), max(s_f, s_f + side * depth_m), z0, 0.0, height
        )
    face = sc.obj(BUILDINGS, rgb, MAT_ROUGH, lit, 0.5 * (z0c + z1))
    sc.facade(face, s_f, z0c, z1, 0.0, height)
    if not tall and rng.random() < 0.8:  # pitched roof, ridge parallel to the road
        roof = sc.obj(BUILDINGS, _rgb(rng, _ROOF_RGB), MAT_ROUGH, lit, 0.5 * (z0c + z1))
        ridge_s, ridge_y = s_f + side * depth_m / 2, height + rng.uniform(2.0, 4.0)
        zz = sc.zs(z0c, z1, sc.nz)
        pts = [(sc.u(s_f, z), sc.v(z, height)) for z in zz]
        pts += [(sc.u(ridge_s, z), sc.v(z, ridge_y)) for z in reversed(zz)]
        sc.poly(roof, pts)
        if z0 >= 1.2:
            gable = sc.obj(BUILDINGS, rgb, MAT_ROUGH, 0.85, z0)
            sc.poly(
                gable,
                [
                    (sc.u(s_f, z0), sc.v(z0, height)),
                    (sc.u(ridge_s, z0), sc.v(z0, ridge_y)),
                    (sc.u(s_f + side * depth_m, z0), sc.v(z0, height)),
                ],
            )
    elif rng.random() < 0.6:  # parapet band
        band = sc.obj(BUILDINGS, _scaled(rgb, 0.8), MAT_ROUGH, lit, 0.5 * (z0c + z1))
        sc.facade(band, s_f, z0c, z1, height - 0.8, height)
    _windows(sc, s_f, z0c, z1, height, _glass(sc, 0.5 * (z0c + z1), lit))
    if side == sc.sun_side and env["sun"] > 0:  # cast shadow over sidewalk and road
        reach = min(height * rng.uniform(0.3, 0.8), 25.0)
        dz = height * rng.uniform(-0.3, 0.3)
        pts = [
            (s_f, max(z0 + dz, 1.0)),
            (s_f, max(z1 + dz, 1.0)),
            (s_f - side * reach, max(z1 + dz, 1.0)),
            (s_f - side * reach, max(z0 + dz, 1.0)),
        ]
        sc.shadow_poly(sc.ground_poly(pts), 0.45 * env["sun"])
    if setback > 1.5 and rng.random() < 0.5:
        _hedge(sc, side, s_front + side * 0.4, z0, z1)


def _wall(sc: _Scene, side: float, s: float, z0: float, z1: float) -> None:
    rng = sc.rng
    height = rng.uniform(1.0, 3.2)
    rgb = _rgb(rng, _WALL_RGB)
    lit = 1.0 if side == -sc.sun_side else 0.75
    z0c = max(z0, 1.2)
    dep = 0.5 * (z0c + z1)
    if z0 >= 1.2:
        end = sc.obj(WALLS, rgb, MAT_BRICK, 0.85, z0)
        sc.front(end, min(s, s + side * 0.4), max(s, s + side * 0.4), z0, 0.0, height)
    wid = sc.obj(WALLS, rgb, MAT_BRICK, lit, dep)
    sc.facade(wid, s, z0c, z1, 0.0, height)
    # Courses of blocks and a coping on top: the wall's own texture cue.
    joint = sc.obj(WALLS, _scaled(rgb, 0.8), MAT_ROUGH, lit, dep)
    step = rng.uniform(0.3, 0.6)
    y = step
    while y < height - 0.15:
        sc.facade(joint, s, z0c, z1, y - 0.03, y + 0.03)
        y += step
    cap = sc.obj(WALLS, _scaled(rgb, 1.15), MAT_ROUGH, lit, dep)
    sc.facade(cap, s, z0c, z1, height - 0.15, height + 0.05)
    pier = sc.obj(WALLS, _scaled(rgb, 0.9), MAT_ROUGH, lit, dep)
    z = z0 + rng.uniform(0.0, 4.0)
    spacing = rng.uniform(3.0, 6.0)
    while z < z1 - 0.5:
        if z > 1.2:
            sc.facade(pier, s - side * 0.1, z, z + 0.4, 0.0, height + 0.2)
        z += spacing


def _fence(sc: _Scene, side: float, s: float, z0: float, z1: float) -> None:
    rng = sc.rng
    kind = rng.random()
    z0c = max(z0, 1.2)
    dep = 0.5 * (z0c + z1)
    if kind < 0.5:  # board fence: planks with dark seams
        height = rng.uniform(1.4, 2.2)
        rgb = _rgb(rng, _WOOD_RGB)
        sc.facade(sc.obj(FENCES, rgb, MAT_PLANKS, 1.0, dep), s, z0c, z1, 0.0, height)
        seam = sc.obj(FENCES, _scaled(rgb, 0.55), MAT_WOOD, 1.0, dep)
        z = z0c
        step = rng.uniform(0.25, 0.4)
        while z < z1:
            if abs(sc.u(s, z + step) - sc.u(s, z)) > 3.0:
                sc.facade(seam, s, z, z + 0.04, 0.0, height)
            else:
                step *= 1.6
            z += step
        sc.facade(seam, s, z0c, z1, height * 0.8, height * 0.85)
    elif kind < 0.75:  # metal bar fence: rails, posts, bars with gaps
        height = rng.uniform(1.3, 2.0)
        oid = sc.obj(FENCES, _rgb(rng, _METAL_RGB), MAT_METAL, 1.0, dep)
        for y in (0.15, height - 0.1):
            sc.facade(oid, s, z0c, z1, y - 0.07, y + 0.07)
        z = z0c
        gap = rng.uniform(0.18, 0.3)
        while z < z1:
            du = abs(sc.u(s, z + gap) - sc.u(s, z))
            if du >= 5.0:
                sc.facade(oid, s, z, z + gap * 0.5, 0.0, height)
                z += gap
            else:  # too dense to resolve: a solid panel like the real renders
                sc.facade(oid, s, z, z1, 0.1, height)
                break
    else:  # guard rail: a steel band on short posts
        oid = sc.obj(FENCES, _rgb(rng, [(170, 172, 176), (150, 150, 150)]), MAT_METAL, 1.0, dep)
        sc.facade(oid, s, z0c, z1, 0.45, 0.8)
        z = z0c
        while z < z1:
            if abs(sc.u(s, z + 0.15) - sc.u(s, z)) >= 1.0:
                sc.facade(oid, s, z, z + 0.15, 0.0, 0.8)
            z += 2.0


def _tree(sc: _Scene, s: float, z: float, *, scale: float = 1.0, shadow: float = 0.0) -> None:
    """A trunk and a canopy of overlapping blobs, all Vegetation."""
    rng = sc.rng
    if z < 1.5:
        return
    u, v, kx, ky = _sprite(sc, s, z)
    trunk_h = rng.uniform(1.5, 3.5) * scale
    radius = rng.uniform(1.6, 3.5) * scale
    trunk = sc.obj(
        VEGETATION, _rgb(rng, [(82, 62, 46), (100, 86, 70), (60, 50, 40)]), MAT_WOOD, 1.0, z
    )
    tw = 0.18 * scale + 0.1
    sc.poly(trunk, _box(u, v, kx, ky, -tw, tw, 0.0, trunk_h + radius * 0.5))
    base = _rgb(rng, _LEAF_RGB)
    tones = [sc.obj(VEGETATION, _scaled(base, k), MAT_LEAF, 1.0, z) for k in (0.7, 0.9, 1.1)]
    cy = trunk_h + radius
    # Fewer, larger blobs far away where they would merge anyway.
    n = int(rng.integers(7, 13)) if z < 40.0 else 4
    r = rng.random((4, n))
    ang = r[0] * (2 * math.pi)
    rad = radius * np.sqrt(0.1 + 0.9 * r[1]) * 0.75
    size = radius * (0.35 + 0.25 * r[2]) * (1.0 if n > 4 else 1.3)
    bx = u + rad * np.cos(ang) * kx
    by = cy + rad * np.sin(ang) * 0.9
    # The top blobs catch the light.
    tone = np.minimum(2, (r[3] * 3).astype(int) + (by > cy))
    bw, bh, byv = size * kx, size * ky, v - by * ky
    for x0, x1, y0, y1, ti in zip(
        (bx - bw).tolist(),
        (bx + bw).tolist(),
        (byv - bh).tolist(),
        (byv + bh).tolist(),
        tone.tolist(),
        strict=True,
    ):
        sc.draw.ellipse([x0, y0, x1, y1], fill=tones[ti])
    if shadow > 0:
        off = -sc.sun_side * radius * 0.8
        pts = [
            (s + off + radius * math.cos(t), z + radius * 0.7 * math.sin(t))
            for t in np.linspace(0, 2 * math.pi, 9)[:-1].tolist()
        ]
        if min(p[1] for p in pts) > 1.0:
            sc.shadow_poly(sc.ground_poly(pts), 0.4 * shadow)


def _hedge(sc: _Scene, side: float, s: float, z0: float, z1: float) -> None:
    rng = sc.rng
    z0c = max(z0, 1.2)
    height = rng.uniform(0.7, 1.6)
    oid = sc.obj(VEGETATION, _rgb(rng, _LEAF_RGB), MAT_LEAF, 1.0, 0.5 * (z0c + z1))
    zz = sc.zs(z0c, z1, 10)
    bumps = (height + rng.uniform(-0.2, 0.2, len(zz))).tolist()
    pts = [(sc.u(s, z), sc.v(z, 0.0)) for z in zz]
    pts += [(sc.u(s, z), sc.v(z, y)) for z, y in zip(reversed(zz), reversed(bumps), strict=True)]
    sc.poly(oid, pts)


def _draw_lots(sc: _Scene, env: dict) -> None:
    """Fills both roadsides with lots, far to near, then a wall and a fence in front."""
    rng = sc.rng
    lots: list[tuple[float, Callable[[], None]]] = []
    for side, edge, walk, verge in (
        (-1.0, sc.edge[0], sc.sidewalk[0], sc.verge[0]),
        (1.0, sc.edge[1], sc.sidewalk[1], sc.verge[1]),
    ):
        s_front = edge + side * (walk + verge)
        z = rng.uniform(-6.0, 3.0)
        city = rng.random() < 0.6
        weights = np.array(
            [0.36, 0.16, 0.18, 0.18, 0.12] if city else [0.18, 0.14, 0.22, 0.3, 0.16]
        )
        while z < 120.0:
            kind = str(rng.choice(["building", "wall", "fence", "trees", "open"], p=weights))
            length = rng.uniform(8.0, 30.0)
            z0, z1 = z, z + length
            if z1 > 1.5:
                lots.append((z0, _lot_painter(sc, kind, side, s_front, z0, z1, env)))
            z = z1 + (rng.uniform(0.0, 6.0) if rng.random() < 0.5 else 0.0)
    lots.sort(key=lambda item: -item[0])
    for _, paint in lots:
        paint()
    # Walls and fences are rare in the real data but every frame should show one near
    # the camera: a segment along the outer sidewalk edge, in front of every lot (so
    # drawn after them), on opposite sides or one after the other on the same side.
    first_side = 1.0 if rng.random() < 0.5 else -1.0
    same_side = rng.random() < 0.4
    order = ("wall", "fence") if rng.random() < 0.5 else ("fence", "wall")
    z0 = rng.uniform(2.0, 8.0)
    for kind, side in zip(
        order, (first_side, first_side if same_side else -first_side), strict=True
    ):
        edge = sc.edge[1] if side > 0 else sc.edge[0]
        walk = sc.sidewalk[1] if side > 0 else sc.sidewalk[0]
        z1 = z0 + (rng.uniform(6.0, 14.0) if same_side else rng.uniform(10.0, 24.0))
        _lot_painter(sc, kind + "_front", side, edge + side * walk, z0, z1, env)()
        z0 = z1 + rng.uniform(1.0, 5.0) if same_side else rng.uniform(2.0, 8.0)


def _lot_painter(
    sc: _Scene, kind: str, side: float, s_front: float, z0: float, z1: float, env: dict
) -> Callable[[], None]:
    rng = sc.rng
    seed = int(rng.integers(2**31))  # each lot draws its details from its own stream

    def paint() -> None:
        local = np.random.default_rng(seed)
        saved, sc.rng = sc.rng, local
        try:
            if kind == "building":
                _building(sc, side, s_front, z0, z1, env)
            elif kind == "wall":
                if local.random() < 0.5:
                    _building(sc, side, s_front + side * 3.0, z0, z1, env)
                else:
                    for z in np.arange(z0 + 2.0, z1, local.uniform(4.0, 7.0)).tolist():
                        _tree(sc, s_front + side * local.uniform(1.5, 4.0), z, shadow=0.0)
                _wall(sc, side, s_front + side * 0.2, z0, z1)
            elif kind == "fence":
                for z in np.arange(z0 + 2.0, z1, local.uniform(3.0, 7.0)).tolist():
                    _tree(sc, s_front + side * local.uniform(1.5, 5.0), z, shadow=0.0)
                _fence(sc, side, s_front + side * 0.2, z0, z1)
            elif kind == "trees":
                for z in np.arange(z0 + 1.0, z1, local.uniform(4.0, 8.0)).tolist():
                    _tree(
                        sc,
                        s_front + side * local.uniform(1.0, 6.0),
                        z,
                        scale=local.uniform(0.9, 1.6),
                        shadow=env["sun"],
                    )
                if local.random() < 0.5:
                    _hedge(sc, side, s_front + side * 0.3, z0, z1)
            elif kind == "wall_front":
                _wall(sc, side, s_front, z0, z1)
            elif kind == "fence_front":
                _fence(sc, side, s_front, z0, z1)
            # "open": terrain (None) stays visible.
        finally:
            sc.rng = saved

    return paint


# ----------------------------------------------------------------------------- street objects
def _pole_body(
    sc: _Scene,
    u: float,
    v: float,
    kx: float,
    ky: float,
    half: float,
    height: float,
    rgb: tuple,
    z: float,
) -> None:
    """A round metal pole: a shaded shaft with a bright stripe where light hits it."""
    sc.poly(sc.obj(POLES, rgb, MAT_METAL, 0.8, z), _box(u, v, kx, ky, -half, half, 0.0, height))
    lit = -0.6 * half * sc.sun_side
    sc.poly(
        sc.obj(POLES, rgb, MAT_METAL, 1.3, z),
        _box(u, v, kx, ky, lit - 0.3 * half, lit + 0.3 * half, 0.0, height),
    )


def _pole(
    sc: _Scene,
    s: float,
    z: float,
    height: float,
    rgb: tuple,
    *,
    arm: float = 0.0,
    side: float = 1.0,
    env: dict,
) -> None:
    """A street lamp: pole, base and an arm over the road with the lamp head."""
    u, v, kx, ky = _sprite(sc, s, z)
    # Only the thickness is enlarged: a far pole keeps its true height.
    half = max(0.125, 0.5 * _MIN_POLE_W * sc.w / kx)
    _pole_body(sc, u, v, kx, ky, half, height, rgb, z)
    base = sc.obj(POLES, rgb, MAT_METAL, 0.7, z)
    sc.poly(base, _box(u, v, kx, ky, -half * 1.4, half * 1.4, 0.0, 0.6))
    if arm:
        d = -side * arm
        thick = max(0.15, half * kx / ky)
        sc.poly(base, _box(u, v, kx, ky, min(0.0, d), max(0.0, d), height - thick, height))
        lamp = sc.obj(POLES, _scaled(rgb, 1.25), MAT_METAL, 1.0, z)
        sc.poly(lamp, _box(u, v, kx, ky, d - 0.3, d + 0.3, height - 2.5 * thick, height - thick))
    if env["sun"] > 0:
        length = height * 0.6
        pts = [
            (s - 0.1, z),
            (s + 0.1, z),
            (s - sc.sun_side * length + 0.1, z + length * 0.3),
            (s - sc.sun_side * length - 0.1, z + length * 0.3),
        ]
        sc.shadow_poly(sc.ground_poly(pts), 0.35 * env["sun"])


def _sign(sc: _Scene, s: float, z: float, side: float, env: dict) -> None:
    """A traffic sign: a pole (Poles) with a face (TrafficSigns) and its symbol."""
    rng = sc.rng
    height = rng.uniform(2.2, 3.0)
    size = rng.uniform(0.8, 1.1)
    u, v, kx, ky = _sprite(sc, s, z)
    pole_rgb = _rgb(rng, _POLE_RGB[:2])
    _pole_body(sc, u, v, kx, ky, max(0.06, 0.5 * _MIN_POLE_W * sc.w / kx), height, pole_rgb, z)
    # The face (only) is enlarged to the minimum size; it sits on top of the pole.
    grow = max(1.0, _MIN_SIGN_W * sc.w / (size * kx))
    v -= height * ky
    kx, ky = kx * grow, ky * grow
    cy = size * 0.5
    r = size / 2
    kind = int(rng.integers(6))
    red, white = (200, 30, 30), (236, 236, 232)
    if kind == 0:  # round prohibition sign: red ring, white disc, dark symbol
        shapes = [(red, "circle", r), (white, "circle", r * 0.72)]
        symbol = (30, 30, 30)
    elif kind == 1:  # warning triangle
        shapes = [(red, "tri", r), (white, "tri", r * 0.65)]
        symbol = (30, 30, 30)
    elif kind == 2:  # stop octagon
        shapes = [(white, "oct", r), (red, "oct", r * 0.88)]
        symbol = white
    elif kind == 3:  # blue mandatory disc
        shapes = [((30, 70, 170), "circle", r)]
        symbol = white
    elif kind == 4:  # yellow diamond
        shapes = [((30, 30, 30), "diamond", r), ((232, 196, 32), "diamond", r * 0.86)]
        symbol = (30, 30, 30)
    else:  # rectangular information sign
        shapes = [
            (white, "rect", r),
            (rng.choice([0, 1]) and (30, 70, 170) or (30, 120, 60), "rect", r * 0.9),
        ]
        symbol = white
    for rgb, shape, rr in shapes:
        oid = sc.obj(TRAFFICSIGNS, _scaled(rgb, rng.uniform(0.85, 1.05)), MAT_FLAT, 1.0, z)
        sc.poly(oid, _shape_pts(shape, u, v - cy * ky, rr * kx, rr * ky))
    sym = sc.obj(TRAFFICSIGNS, symbol, MAT_FLAT, 1.0, z)
    sc.poly(sym, _box(u, v - cy * ky, kx, ky, -r * 0.35, r * 0.35, -r * 0.12, r * 0.12))


def _shape_pts(shape: str, u: float, v: float, rx: float, ry: float) -> list:
    if shape == "circle":
        n, phase = 12, 0.0
    elif shape == "oct":
        n, phase = 8, math.pi / 8
    elif shape == "tri":
        n, phase = 3, -math.pi / 2
    elif shape == "diamond":
        n, phase = 4, 0.0
    else:
        return [
            (u - rx, v - ry * 0.7),
            (u + rx, v - ry * 0.7),
            (u + rx, v + ry * 0.7),
            (u - rx, v + ry * 0.7),
        ]
    return [
        (
            u + rx * math.cos(phase + 2 * math.pi * i / n),
            v + ry * math.sin(phase + 2 * math.pi * i / n),
        )
        for i in range(n)
    ]


def _pedestrian(sc: _Scene, s: float, z: float, env: dict) -> None:
    """A walking person: legs, torso, arms, head and hair, all Pedestrians."""
    rng = sc.rng
    tall = rng.uniform(1.55, 1.9)
    u, v, kx, ky = _sprite(sc, s, z, min_h=_MIN_PED_H * sc.h, height_m=tall, width_m=0.5)
    k = tall / 1.75
    shirt = _rgb(rng, _SHIRT_RGB, 0.1)
    skin = _rgb(rng, _SKIN_RGB, 0.05)
    trousers = _rgb(rng, _TROUSER_RGB)
    lit = rng.uniform(0.85, 1.05)
    leg = sc.obj(PEDESTRIANS, trousers, MAT_CLOTH, lit, z)
    stride = rng.uniform(-0.18, 0.18)
    sc.poly(
        leg,
        _local(
            u,
            v,
            kx,
            ky,
            [(-0.2 + stride, 0), (-0.04 + stride, 0), (-0.02, 0.88 * k), (-0.19, 0.88 * k)],
        ),
    )
    sc.poly(
        leg,
        _local(
            u,
            v,
            kx,
            ky,
            [(0.04 - stride, 0), (0.2 - stride, 0), (0.19, 0.88 * k), (0.02, 0.88 * k)],
        ),
    )
    torso = sc.obj(PEDESTRIANS, shirt, MAT_CLOTH, lit, z)
    sc.poly(
        torso,
        _local(
            u, v, kx, ky, [(-0.19, 0.84 * k), (0.19, 0.84 * k), (0.23, 1.44 * k), (-0.23, 1.44 * k)]
        ),
    )
    swing = rng.uniform(-0.12, 0.12)
    arm = sc.obj(PEDESTRIANS, _scaled(shirt, 0.85), MAT_CLOTH, lit, z)
    for sgn in (-1.0, 1.0):
        sc.poly(
            arm,
            _local(
                u,
                v,
                kx,
                ky,
                [
                    (sgn * 0.2, 1.42 * k),
                    (sgn * 0.3, 1.42 * k),
                    (sgn * 0.3 + swing * sgn, 0.86 * k),
                    (sgn * 0.22 + swing * sgn, 0.86 * k),
                ],
            ),
        )
    head = sc.obj(PEDESTRIANS, skin, MAT_FLAT, lit, z)
    hy = 1.6 * k
    sc.draw.ellipse(
        [u - 0.13 * kx, v - (hy + 0.15) * ky, u + 0.13 * kx, v - (hy - 0.15) * ky], fill=head
    )
    hair = sc.obj(
        PEDESTRIANS,
        _rgb(rng, [(40, 30, 20), (90, 60, 30), (20, 20, 20), (160, 140, 90)]),
        MAT_CLOTH,
        lit,
        z,
    )
    sc.poly(hair, _box(u, v, kx, ky, -0.12, 0.12, hy + 0.06, hy + 0.16))
    sc.shadow_poly(
        sc.ground_poly(
            [(s - 0.35, z - 0.2), (s + 0.35, z - 0.2), (s + 0.35, z + 0.3), (s - 0.35, z + 0.3)]
        ),
        0.35,
    )


def _clutter(sc: _Scene, s: float, z: float, env: dict) -> None:
    """Street clutter of class Other: benches, bins, boxes, barriers, cones."""
    rng = sc.rng
    kind = int(rng.integers(5))
    dims = [(1.6, 0.9), (0.6, 1.0), (0.9, 0.9), (1.5, 1.0), (0.4, 0.7)][kind]
    u, v, kx, ky = _sprite(sc, s, z, min_h=_MIN_OTHER_H * sc.h, height_m=dims[1])
    if kind == 0:  # bench: legs, seat, backrest slats
        rgb = _rgb(rng, [(130, 90, 56), (50, 90, 60), (90, 90, 90)])
        oid = sc.obj(OTHER, rgb, MAT_WOOD, 1.0, z)
        dark = sc.obj(OTHER, (40, 40, 40), MAT_METAL, 1.0, z)
        for x in (-0.7, 0.6):
            sc.poly(dark, _box(u, v, kx, ky, x, x + 0.1, 0.0, 0.45))
        sc.poly(oid, _box(u, v, kx, ky, -0.8, 0.8, 0.4, 0.5))
        for y in (0.6, 0.75, 0.88):
            sc.poly(oid, _box(u, v, kx, ky, -0.8, 0.8, y, y + 0.08))
    elif kind == 1:  # litter bin with a lid
        rgb = _rgb(rng, [(40, 90, 52), (90, 95, 100), (40, 60, 120), (150, 120, 60)])
        oid = sc.obj(OTHER, rgb, MAT_METAL, 1.0, z)
        sc.poly(oid, _local(u, v, kx, ky, [(-0.25, 0), (0.25, 0), (0.3, 0.9), (-0.3, 0.9)]))
        lid = sc.obj(OTHER, _scaled(rgb, 0.6), MAT_METAL, 1.0, z)
        sc.poly(lid, _box(u, v, kx, ky, -0.33, 0.33, 0.9, 1.0))
    elif kind == 2:  # stacked cardboard boxes
        rgb = _rgb(rng, [(180, 140, 92), (160, 120, 80), (200, 170, 120)])
        for x0, y0, sz in ((-0.45, 0.0, 0.5), (0.05, 0.0, 0.4), (-0.3, 0.5, 0.4)):
            oid = sc.obj(OTHER, _scaled(rgb, rng.uniform(0.8, 1.1)), MAT_WOOD, 1.0, z)
            sc.poly(oid, _box(u, v, kx, ky, x0, x0 + sz, y0, y0 + sz))
            tape = sc.obj(OTHER, _scaled(rgb, 0.7), MAT_FLAT, 1.0, z)
            sc.poly(tape, _box(u, v, kx, ky, x0 + sz * 0.45, x0 + sz * 0.55, y0, y0 + sz))
    elif kind == 3:  # striped road barrier on legs
        red = sc.obj(OTHER, (200, 40, 36), MAT_FLAT, 1.0, z)
        white = sc.obj(OTHER, (230, 230, 226), MAT_FLAT, 1.0, z)
        for x in (-0.7, 0.6):
            sc.poly(white, _box(u, v, kx, ky, x, x + 0.1, 0.0, 0.9))
        for i in range(6):
            sc.poly(
                red if i % 2 else white,
                _box(u, v, kx, ky, -0.75 + i * 0.25, -0.5 + i * 0.25, 0.6, 0.95),
            )
    else:  # traffic cone
        orange = sc.obj(OTHER, (240, 110, 24), MAT_FLAT, 1.0, z)
        white = sc.obj(OTHER, (236, 236, 236), MAT_FLAT, 1.0, z)
        sc.poly(orange, _box(u, v, kx, ky, -0.22, 0.22, 0.0, 0.06))
        sc.poly(
            orange, _local(u, v, kx, ky, [(-0.17, 0.05), (0.17, 0.05), (0.03, 0.7), (-0.03, 0.7)])
        )
        sc.poly(
            white, _local(u, v, kx, ky, [(-0.12, 0.25), (0.12, 0.25), (0.09, 0.4), (-0.09, 0.4)])
        )


def _car(sc: _Scene, s: float, z: float, oncoming: bool, env: dict) -> None:
    """A car, van or truck as a box: the face towards the camera and one visible side."""
    rng = sc.rng
    kind = rng.random()
    if kind < 0.72:
        w, length, h, cab = (
            rng.uniform(1.7, 1.95),
            rng.uniform(4.0, 4.8),
            rng.uniform(1.35, 1.55),
            0.55,
        )
    elif kind < 0.9:
        w, length, h, cab = rng.uniform(1.9, 2.1), rng.uniform(4.8, 5.5), rng.uniform(1.9, 2.4), 0.4
    else:
        w, length, h, cab = 2.4, rng.uniform(7.0, 10.0), rng.uniform(2.8, 3.4), 0.0
    body = _rgb(rng, _CAR_RGB, 0.05)
    glass = _rgb(rng, [(40, 48, 58), (60, 70, 80), (25, 28, 32)])
    x_c = sc.x0 + sc.yaw * z + sc.curv * z * z + s  # camera-frame lateral position
    near = sc.obj(VEHICLES, body, MAT_METAL, 0.92, z)
    top_inset = w * 0.12 if cab else 0.0
    belt = h * (1 - cab) if cab else h
    u, v = sc.u(s, z), sc.v(z)
    kx, ky = sc.fx / z, sc.fy / z
    sides = []
    if x_c + w / 2 < -0.2:
        sides.append(w / 2)
    elif x_c - w / 2 > 0.2:
        sides.append(-w / 2)
    # The visible side, drawn first: the near face covers its front edge.
    for sx in sides:
        side_id = sc.obj(VEHICLES, body, MAT_METAL, 0.75, z + length / 2)
        za, zb = z, z + length
        pts = [
            (sc.u(s + sx, za), sc.v(za, 0.3)),
            (sc.u(s + sx, zb), sc.v(zb, 0.3)),
            (sc.u(s + sx, zb), sc.v(zb, belt)),
            (sc.u(s + sx, za), sc.v(za, belt)),
        ]
        sc.poly(side_id, pts)
        if cab:
            ca, cb = z + length * 0.3, z + length * 0.78
            sxi = sx - np.sign(sx) * top_inset
            cabin = [
                (sc.u(s + sx, ca - 0.3), sc.v(ca - 0.3, belt)),
                (sc.u(s + sx, cb + 0.4), sc.v(cb + 0.4, belt)),
                (sc.u(s + sxi, cb), sc.v(cb, h)),
                (sc.u(s + sxi, ca), sc.v(ca, h)),
            ]
            sc.poly(side_id, cabin)
            win = sc.obj(VEHICLES, glass, MAT_GLASS, 1.0, z + length / 2)
            sc.poly(
                win,
                [
                    (sc.u(s + sx, ca - 0.1), sc.v(ca - 0.1, belt + 0.05)),
                    (sc.u(s + sx, cb + 0.25), sc.v(cb + 0.25, belt + 0.05)),
                    (sc.u(s + sxi, cb - 0.05), sc.v(cb - 0.05, h - 0.08)),
                    (sc.u(s + sxi, ca + 0.05), sc.v(ca + 0.05, h - 0.08)),
                ],
            )
        tyre = sc.obj(VEHICLES, (22, 22, 24), MAT_FLAT, 1.0, z)
        for wz in (z + length * 0.17, z + length * 0.8):
            ru, rv = 0.38 * sc.fx / wz, 0.38 * sc.fy / wz
            cu, cv = sc.u(s + sx, wz), sc.v(wz, 0.36)
            sc.draw.ellipse([cu - ru * 0.5, cv - rv, cu + ru * 0.5, cv + rv], fill=tyre)
    # The face towards the camera: bumper/body, cabin with the rear or front window.
    tyre = sc.obj(VEHICLES, (22, 22, 24), MAT_FLAT, 1.0, z)
    for x in (-w / 2 + 0.05, w / 2 - 0.3):
        sc.poly(tyre, _box(u, v, kx, ky, x, x + 0.25, 0.0, 0.35))
    sc.poly(near, _box(u, v, kx, ky, -w / 2, w / 2, 0.25, belt))
    if cab:
        sc.poly(
            near,
            _local(
                u,
                v,
                kx,
                ky,
                [(-w / 2, belt), (w / 2, belt), (w / 2 - top_inset, h), (-w / 2 + top_inset, h)],
            ),
        )
        win = sc.obj(VEHICLES, glass, MAT_GLASS, 1.0, z)
        sc.poly(
            win,
            _local(
                u,
                v,
                kx,
                ky,
                [
                    (-w / 2 + 0.12, belt + 0.05),
                    (w / 2 - 0.12, belt + 0.05),
                    (w / 2 - top_inset - 0.06, h - 0.07),
                    (-w / 2 + top_inset + 0.06, h - 0.07),
                ],
            ),
        )
    else:  # truck: a tall plain box with a door seam
        seam = sc.obj(VEHICLES, _scaled(body, 0.7), MAT_METAL, 0.9, z)
        sc.poly(seam, _box(u, v, kx, ky, -0.03, 0.03, 0.3, h - 0.1))
    lamp_rgb = (235, 235, 210) if oncoming else (200, 24, 24)
    lamp = sc.obj(VEHICLES, lamp_rgb, MAT_FLAT, 1.0, z)
    ly = belt * 0.75 if cab else 0.9
    for x in (-w / 2 + 0.08, w / 2 - 0.38):
        sc.poly(lamp, _box(u, v, kx, ky, x, x + 0.3, ly - 0.12, ly + 0.05))
    plate = sc.obj(VEHICLES, (226, 226, 214), MAT_FLAT, 1.0, z)
    sc.poly(plate, _box(u, v, kx, ky, -0.26, 0.26, 0.35, 0.5))
    # Contact shadow under the car (always) and a sun shadow beside it.
    strength = 0.55 + 0.2 * env["sun"]
    sc.shadow_poly(
        sc.ground_poly(
            [
                (s - w / 2 - 0.1, z - 0.1),
                (s + w / 2 + 0.1, z - 0.1),
                (s + w / 2 + 0.1, z + length),
                (s - w / 2 - 0.1, z + length),
            ]
        ),
        strength,
    )
    if env["sun"] > 0:
        off = -sc.sun_side * h * 0.6
        sc.shadow_poly(
            sc.ground_poly(
                [
                    (s - w / 2, z),
                    (s + w / 2, z),
                    (s + w / 2 + off, z + length),
                    (s - w / 2 + off, z + length),
                ]
            ),
            0.45 * env["sun"],
        )


def _draw_street(sc: _Scene, env: dict) -> None:
    """Poles, signs, sidewalk trees, clutter, pedestrians and cars, painted far to near."""
    rng = sc.rng
    items: list[tuple[float, Callable[[], None]]] = []

    def add(z: float, fn: Callable, *args) -> None:
        items.append((z, lambda: fn(*args)))

    sides = ((-1.0, sc.edge[0], sc.sidewalk[0]), (1.0, sc.edge[1], sc.sidewalk[1]))
    pole_rgb = _rgb(rng, _POLE_RGB)
    for side, edge, walk in sides:
        if rng.random() < 0.7:  # street lamps near the curb
            spacing = rng.uniform(20.0, 40.0)
            height = rng.uniform(5.5, 8.0)
            z = rng.uniform(3.0, 3.0 + spacing)
            while z < 90.0:
                add(z, _lamp, sc, edge + side * 0.6, z, height, pole_rgb, side, env)
                z += spacing
        if rng.random() < 0.45:  # trees in pits along the sidewalk
            spacing = rng.uniform(7.0, 14.0)
            z = rng.uniform(2.0, 2.0 + spacing)
            while z < 70.0:
                add(z, _tree_on_walk, sc, edge + side * (walk - 0.8), z, env)
                z += spacing
    for _ in range(int(rng.integers(2, 5))):  # traffic signs
        side, edge, walk = sides[int(rng.integers(2))]
        add_z = rng.uniform(5.0, 30.0)
        add(add_z, _sign, sc, edge + side * rng.uniform(0.4, 1.0), add_z, side, env)
    for _ in range(int(rng.integers(2, 6))):  # pedestrians on sidewalks or the crosswalk
        z = rng.uniform(4.0, 18.0)
        if "crosswalk" in env and rng.random() < 0.3:
            z0, depth = env["crosswalk"]
            z = z0 + rng.uniform(0.3, depth - 0.3)
            s = rng.uniform(sc.edge[0], sc.edge[1])
        else:
            side, edge, walk = sides[int(rng.integers(2))]
            s = edge + side * rng.uniform(0.6, walk - 0.3)
        add(z, _pedestrian, sc, s, z, env)
    for _ in range(int(rng.integers(2, 6))):  # clutter on the sidewalk
        side, edge, walk = sides[int(rng.integers(2))]
        z = rng.uniform(4.0, 26.0)
        add(z, _clutter, sc, edge + side * rng.uniform(walk * 0.5, walk - 0.3), z, env)
    # Traffic: moving cars in lanes (oncoming on the left) and parked cars.
    lanes = [(i + 0.5) * sc.lane_w for i in range(sc.n_right)]
    lanes += [-(i + 0.5) * sc.lane_w for i in range(sc.n_left)]
    taken: list[tuple[float, float]] = []
    for _ in range(int(rng.integers(1, 6))):
        s = lanes[int(rng.integers(len(lanes)))] + rng.uniform(-0.3, 0.3)
        z = rng.uniform(6.0, 60.0)
        if any(abs(s - ts) < 2.0 and abs(z - tz) < 7.0 for ts, tz in taken):
            continue
        taken.append((s, z))
        add(z, _car, sc, s, z, s < 0, env)
    if rng.random() < 0.5:  # a row of parked cars along one curb
        side, edge, _ = sides[int(rng.integers(2))]
        z = rng.uniform(5.0, 15.0)
        for _ in range(int(rng.integers(1, 4))):
            s = edge - side * 1.1
            if not any(abs(s - ts) < 2.0 and abs(z - tz) < 7.0 for ts, tz in taken):
                taken.append((s, z))
                add(z, _car, sc, s, z, side < 0, env)
            z += rng.uniform(6.0, 12.0)
    items.sort(key=lambda item: -item[0])
    for _, paint in items:
        paint()


def _lamp(
    sc: _Scene, s: float, z: float, height: float, rgb: tuple, side: float, env: dict
) -> None:
    _pole(sc, s, z, height, rgb, arm=sc.rng.uniform(0.8, 2.2), side=side, env=env)


def _tree_on_walk(sc: _Scene, s: float, z: float, env: dict) -> None:
    _tree(sc, s, z, scale=sc.rng.uniform(0.8, 1.2), shadow=env["sun"])


def _draw_hood(sc: _Scene, env: dict) -> None:
    """The ego car's hood: a fixed-ish dark shape over the bottom ~15% of the frame."""
    rng = sc.rng
    w, h = sc.w, sc.h
    top = 0.83 + rng.uniform(-0.008, 0.008)
    bend = 0.05 + rng.uniform(-0.005, 0.005)
    xs = np.linspace(-1, w + 1, 17)
    ys = h * (top + bend * ((xs - 0.5 * w) / (0.5 * w)) ** 2)
    paint = _rgb(rng, [(30, 30, 34), (24, 28, 40), (40, 40, 42), (50, 20, 20)], 0.05)
    hood = sc.obj(VEHICLES, paint, MAT_METAL, 1.0, 1.0)
    pts = list(zip(xs.tolist(), ys.tolist(), strict=True))
    sc.poly(hood, [*pts, (w + 1, h + 1), (-1, h + 1)])
    # A soft reflection of the sky along the front edge of the hood.
    shine = sc.obj(VEHICLES, _scaled(paint, 2.2), MAT_METAL, 1.0, 1.0)
    inner = [(x, y + 0.02 * h) for x, y in pts]
    sc.poly(shine, [*pts, *inner[::-1]])


# ----------------------------------------------------------------------------- shading
def _environment(rng: np.random.Generator) -> dict:
    """Weather and light of the scene."""
    kind = str(
        rng.choice(
            ["clear", "cloudy", "overcast", "fog", "rain", "dusk"],
            p=[0.3, 0.2, 0.15, 0.12, 0.13, 0.1],
        )
    )
    env = {"kind": kind, "sun": 0.0, "wet": 0.0, "fog_m": rng.uniform(400.0, 900.0), "rain": 0.0}
    if kind in ("clear", "dusk"):
        env["sun"] = rng.uniform(0.7, 1.0)
    elif kind == "cloudy":
        env["sun"] = rng.uniform(0.2, 0.5)
    if kind == "fog":
        env["fog_m"] = rng.uniform(35.0, 110.0)
    if kind == "rain":
        env["wet"] = rng.uniform(0.5, 1.0)
        env["rain"] = rng.uniform(0.5, 1.0)
        env["fog_m"] = rng.uniform(120.0, 300.0)
    elif kind == "overcast" and rng.random() < 0.4:
        env["wet"] = rng.uniform(0.3, 0.7)
    env["wet_dark"] = 1.0 - 0.35 * env["wet"]
    zenith = {
        "clear": (64, 118, 200),
        "cloudy": (96, 134, 190),
        "overcast": (150, 156, 166),
        "fog": (190, 192, 196),
        "rain": (110, 116, 126),
        "dusk": (70, 80, 132),
    }[kind]
    horizon = {
        "clear": (178, 204, 228),
        "cloudy": (196, 210, 224),
        "overcast": (196, 198, 202),
        "fog": (206, 208, 210),
        "rain": (150, 154, 160),
        "dusk": (236, 170, 118),
    }[kind]
    env["zenith"] = np.array(zenith, np.float32) / 255 * rng.uniform(0.9, 1.1)
    env["horizon"] = np.array(horizon, np.float32) / 255 * rng.uniform(0.92, 1.05)
    env["clouds"] = {
        "clear": 0.15,
        "cloudy": 0.45,
        "overcast": 0.2,
        "fog": 0.05,
        "rain": 0.25,
        "dusk": 0.3,
    }[kind] * rng.uniform(0.5, 1.3)
    # Camera: exposure, contrast, white balance and sensor noise.
    env["gain"] = rng.uniform(0.8, 1.15) * (0.8 if kind in ("rain", "dusk") else 1.0)
    env["contrast"] = rng.uniform(0.8, 1.2)
    cast = np.array([1.0, 1.0, 1.0]) + rng.normal(0.0, 0.05, 3)
    if kind == "dusk":
        cast *= np.array([1.12, 0.98, 0.84])
    env["cast"] = cast.astype(np.float32)
    env["noise"] = rng.uniform(0.01, 0.035)
    return env


def _shade(sc: _Scene, env: dict, tiles: dict[str, np.ndarray]) -> np.ndarray:
    """Turns the object-id canvas into the RGB image.

    Works channel-first ([3, H, W] float32: per-pixel products broadcast over
    contiguous planes, ~10x faster than [H, W, 3]) and returns uint8 [H, W, 3].
    """
    rng, h, w = sc.rng, sc.h, sc.w
    ids = np.asarray(sc.ids).astype(np.intp)  # np.take converts other index types per call
    mat_lut = np.asarray(sc.mat, np.intp)
    rgb = np.take(np.asarray(sc.rgb, np.float32).T * np.float32(1 / 255), ids, axis=1)
    depth = np.take(np.asarray(sc.depth, np.float32), ids)
    ground = depth < 0
    is_sky = ids == 0
    # Light: per-object shade times material texture, and shadows on the ground.
    tex = 1.0 + np.take(_MAT_GRAIN[mat_lut], ids) * _crop(tiles["grain"], rng, h, w)
    tex += np.take(_MAT_BLOTCH[mat_lut], ids) * _crop(tiles["blotch"], rng, h, w)
    for amp, name in ((_MAT_LEAF, "leaf"), (_MAT_PLANKS, "planks"), (_MAT_BRICK, "bricks")):
        per_obj = amp[mat_lut]
        if per_obj.any():
            tex += np.take(per_obj, ids) * _crop(tiles[name], rng, h, w)
    lum = np.take(np.asarray(sc.shade, np.float32), ids) * tex
    shadow = np.asarray(sc.shadow, np.float32) * np.float32(1 / 255)
    lum *= np.where(ground, shadow, np.float32(1.0))
    img = rgb * lum
    # Sky: a vertical gradient with clouds (the sky object's colour is black).
    horizon = env["horizon"][:, None, None]
    # Only rows above the horizon can show sky (the ground covers the rest).
    top = min(h, int(math.ceil(sc.h0)) + 1)
    rows = np.arange(h, dtype=np.float32)[:, None]
    t = np.clip(rows[:top] / max(sc.h0, 1.0), 0.0, 1.0) ** 1.5
    sky = env["zenith"][:, None, None] * (1 - t) + horizon * t  # [3, top, 1]
    cloud = _crop(tiles["cloud"], rng, top, w) * 0.5 + 0.1
    cloud = np.clip(cloud, 0.0, 1.0) * env["clouds"]
    sky_term = sky + cloud * (np.float32(0.92 * env["horizon"].max()) - sky)
    img[:, :top] += is_sky[:top] * sky_term
    ground_depth = sc.fy * sc.camh / np.maximum(rows - sc.h0, 0.5)  # [H, 1]
    depth = np.where(ground, ground_depth, depth)
    if env["wet"] > 0:  # wet ground reflects the sky
        sheen = env["wet"] * 0.22 * np.clip(1.0 - ground_depth / 60.0, 0.2, 1.0)
        img += (ground * sheen) * horizon
    # Aerial perspective and fog.
    fog = 1.0 - np.exp(-depth / np.float32(env["fog_m"]))
    fog[is_sky] = 0.9 if env["kind"] == "fog" else 0.0
    img = img * (1.0 - fog) + fog * horizon
    if env["rain"] > 0:
        img += _rain(sc, env)
    # A slight blur stands in for the renderer's anti-aliasing.
    blur = img * np.float32(0.5)
    blur[:, 1:] += 0.125 * img[:, :-1]
    blur[:, :-1] += 0.125 * img[:, 1:]
    blur[:, :, 1:] += 0.125 * img[:, :, :-1]
    blur[:, :, :-1] += 0.125 * img[:, :, 1:]
    blur[:, 0] += 0.125 * img[:, 0]
    blur[:, -1] += 0.125 * img[:, -1]
    blur[:, :, 0] += 0.125 * img[:, :, 0]
    blur[:, :, -1] += 0.125 * img[:, :, -1]
    gain = (env["gain"] * env["contrast"] * env["cast"])[:, None, None]
    img = blur * gain + np.float32(0.45 * (1.0 - env["contrast"]))
    img += env["noise"] * _crop(tiles["pixel"], rng, h, w)
    img *= 255
    img += 0.5
    out = np.clip(img, 0.0, 255.0, out=img).astype(np.uint8)
    return np.stack([out[0], out[1], out[2]], axis=-1)  # faster than a transposed copy


def _rain(sc: _Scene, env: dict) -> np.ndarray:
    """Bright rain streaks (image only)."""
    rng = sc.rng
    canvas = Image.new("L", (sc.w, sc.h), 0)
    draw = ImageDraw.Draw(canvas)
    n = int(env["rain"] * 250 * sc.w * sc.h / 65536)
    x = rng.uniform(0, sc.w, n)
    y = rng.uniform(0, sc.h, n)
    length = rng.uniform(0.02, 0.06, n) * sc.h
    slant = rng.uniform(-0.15, 0.05)
    for x0, y0, ln in zip(x.tolist(), y.tolist(), length.tolist(), strict=True):
        draw.line([(x0, y0), (x0 + slant * ln, y0 + ln)], fill=int(60 + ln % 40), width=1)
    return np.asarray(canvas, np.float32) * np.float32(0.0025)  # broadcasts over channels


# ----------------------------------------------------------------------------- public API
def render_scene(seed: int, height: int = 256, width: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Renders one synthetic CARLA-like street scene.

    The scene depends only on the arguments (its own ``np.random.default_rng(seed)``),
    never on global random state.

    Args:
      seed: non-negative integer selecting the scene.
      height: image height in pixels (at least 16).
      width: image width in pixels (at least 16).

    Returns:
      ``(image, label)``: uint8 RGB image [height, width, 3] and uint8 label map
      [height, width] of class ids 0..12 (``unet_jax.data.classes.CLASS_NAMES``); the
      label is exactly the class painted at each pixel.

    Raises:
      ValueError: if seed is negative or not an integer, or a size is too small.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"render_scene: seed must be a non-negative integer, got {seed!r}")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < _MIN_SIZE:
            raise ValueError(
                f"render_scene: {name} must be an integer >= {_MIN_SIZE}, got {value!r}"
            )
    global _TILES
    if _TILES is None:
        _TILES = _noise_tiles()
    rng = np.random.default_rng(int(seed))
    env = _environment(rng)
    sc = _Scene(rng, int(height), int(width))
    _draw_background(sc, env)
    _draw_ground(sc, env)
    _draw_lots(sc, env)
    _draw_street(sc, env)
    _draw_hood(sc, env)
    label = np.asarray(sc.cls, np.uint8)[np.asarray(sc.ids, dtype=np.int32)]
    image = _shade(sc, env, _TILES)
    return image, label
