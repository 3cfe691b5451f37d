"""The scene: camera, road layout and the object-id canvas every shape is drawn into."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from datasets.synthetic.palette import MAT_SKY, NONE

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


class _Scene:
    """One scene: camera, road layout, the object-id canvas and per-object attributes."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng = rng
        self.h, self.w = height, width
        self.crosswalk: tuple[float, float] | None = None  # (z0, depth) once drawn
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
