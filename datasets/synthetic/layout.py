"""Where things go: background, ground, lane lines, roadside lots, the street, the hood."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from datasets.synthetic.cars import _car
from datasets.synthetic.environment import Environment
from datasets.synthetic.objects import (
    _building,
    _clutter,
    _fence,
    _hedge,
    _lamp,
    _pedestrian,
    _sign,
    _tree,
    _tree_on_walk,
    _wall,
)
from datasets.synthetic.palette import (
    _BUILDING_RGB,
    _LEAF_RGB,
    _POLE_RGB,
    _TERRAIN_RGB,
    BUILDINGS,
    MAT_ASPHALT,
    MAT_GRASS,
    MAT_LEAF,
    MAT_METAL,
    MAT_PAVE,
    MAT_ROUGH,
    NONE,
    ROADLINES,
    ROADS,
    SIDEWALKS,
    VEGETATION,
    VEHICLES,
    _rgb,
    _scaled,
)
from datasets.synthetic.scene import _MIN_LINE_W, _Scene


def _draw_background(sc: _Scene, env: Environment) -> None:
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


def _draw_ground(sc: _Scene, env: Environment) -> None:
    rng = sc.rng
    far = 250.0
    terrain = sc.obj(NONE, _rgb(rng, _TERRAIN_RGB), MAT_GRASS)
    sc.poly(terrain, [(-1, sc.h0), (sc.w + 1, sc.h0), (sc.w + 1, sc.h + 1), (-1, sc.h + 1)])
    road_rgb = _scaled((112, 112, 116), rng.uniform(0.75, 1.2) * env.wet_dark)
    walk_rgb = _rgb(rng, [(168, 168, 166), (182, 176, 164), (172, 146, 136), (150, 152, 156)])
    walk_rgb = _scaled(walk_rgb, env.wet_dark)
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


def _draw_lines(sc: _Scene, env: Environment) -> None:
    rng = sc.rng
    min_px = _MIN_LINE_W * sc.w
    white = _scaled((228, 228, 222), rng.uniform(0.75, 1.0) * env.wet_dark)
    yellow = _scaled((226, 182, 40), rng.uniform(0.75, 1.0) * env.wet_dark)
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
        sc.crosswalk = (z0, depth)


def _draw_lots(sc: _Scene, env: Environment) -> None:
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
    sc: _Scene, kind: str, side: float, s_front: float, z0: float, z1: float, env: Environment
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
                        shadow=env.sun,
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


def _draw_street(sc: _Scene, env: Environment) -> None:
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
        if sc.crosswalk is not None and rng.random() < 0.3:
            z0, depth = sc.crosswalk
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


def _draw_hood(sc: _Scene, env: Environment) -> None:
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
