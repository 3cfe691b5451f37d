"""The objects of a scene: buildings, walls, fences, trees, poles, signs, people (cars:
``cars``)."""

from __future__ import annotations

import math

import numpy as np

from datasets.synthetic.environment import Environment
from datasets.synthetic.palette import (
    _BUILDING_RGB,
    _LEAF_RGB,
    _METAL_RGB,
    _POLE_RGB,
    _ROOF_RGB,
    _SHIRT_RGB,
    _SKIN_RGB,
    _TROUSER_RGB,
    _WALL_RGB,
    _WOOD_RGB,
    BUILDINGS,
    FENCES,
    MAT_BRICK,
    MAT_CLOTH,
    MAT_FLAT,
    MAT_GLASS,
    MAT_LEAF,
    MAT_METAL,
    MAT_PLANKS,
    MAT_ROUGH,
    MAT_WOOD,
    OTHER,
    PEDESTRIANS,
    POLES,
    TRAFFICSIGNS,
    VEGETATION,
    WALLS,
    _rgb,
    _scaled,
)
from datasets.synthetic.scene import (
    _MIN_OTHER_H,
    _MIN_PED_H,
    _MIN_POLE_W,
    _MIN_SIGN_W,
    _box,
    _local,
    _Scene,
    _sprite,
)


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


def _building(
    sc: _Scene, side: float, s_front: float, z0: float, z1: float, env: Environment
) -> None:
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
    if side == sc.sun_side and env.sun > 0:  # cast shadow over sidewalk and road
        reach = min(height * rng.uniform(0.3, 0.8), 25.0)
        dz = height * rng.uniform(-0.3, 0.3)
        pts = [
            (s_f, max(z0 + dz, 1.0)),
            (s_f, max(z1 + dz, 1.0)),
            (s_f - side * reach, max(z1 + dz, 1.0)),
            (s_f - side * reach, max(z0 + dz, 1.0)),
        ]
        sc.shadow_poly(sc.ground_poly(pts), 0.45 * env.sun)
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
    env: Environment,
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
    if env.sun > 0:
        length = height * 0.6
        pts = [
            (s - 0.1, z),
            (s + 0.1, z),
            (s - sc.sun_side * length + 0.1, z + length * 0.3),
            (s - sc.sun_side * length - 0.1, z + length * 0.3),
        ]
        sc.shadow_poly(sc.ground_poly(pts), 0.35 * env.sun)


def _sign(sc: _Scene, s: float, z: float, side: float, env: Environment) -> None:
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


def _pedestrian(sc: _Scene, s: float, z: float, env: Environment) -> None:
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


def _clutter(sc: _Scene, s: float, z: float, env: Environment) -> None:
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


def _lamp(
    sc: _Scene, s: float, z: float, height: float, rgb: tuple, side: float, env: Environment
) -> None:
    _pole(sc, s, z, height, rgb, arm=sc.rng.uniform(0.8, 2.2), side=side, env=env)


def _tree_on_walk(sc: _Scene, s: float, z: float, env: Environment) -> None:
    _tree(sc, s, z, scale=sc.rng.uniform(0.8, 1.2), shadow=env.sun)
