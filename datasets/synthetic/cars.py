"""The vehicles of a scene: cars, vans and trucks, their sides, lights and shadows."""

from __future__ import annotations

import dataclasses

import numpy as np

from datasets.synthetic.environment import Environment
from datasets.synthetic.palette import (
    _CAR_RGB,
    MAT_FLAT,
    MAT_GLASS,
    MAT_METAL,
    VEHICLES,
    _rgb,
    _scaled,
)
from datasets.synthetic.scene import (
    _box,
    _local,
    _Scene,
)


@dataclasses.dataclass(frozen=True)
class _Car:
    """One vehicle: where it stands (road coordinate s, depth z of its near face) and its
    box (metres); ``cab`` is the share of the height above the belt line (0: a truck)."""

    s: float
    z: float
    w: float
    length: float
    h: float
    cab: float
    body: tuple
    glass: tuple

    @property
    def top_inset(self) -> float:
        return self.w * 0.12 if self.cab else 0.0

    @property
    def belt(self) -> float:
        return self.h * (1 - self.cab) if self.cab else self.h

    def face(self, sc: _Scene) -> tuple[float, float, float, float]:
        """(u, v, kx, ky) of the face towards the camera, for ``_box`` and ``_local``."""
        return sc.u(self.s, self.z), sc.v(self.z), sc.fx / self.z, sc.fy / self.z


def _car_dimensions(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(width, length, height, cab share) of a car (72%), van (18%) or truck (10%)."""
    kind = rng.random()
    if kind < 0.72:
        return rng.uniform(1.7, 1.95), rng.uniform(4.0, 4.8), rng.uniform(1.35, 1.55), 0.55
    if kind < 0.9:
        return rng.uniform(1.9, 2.1), rng.uniform(4.8, 5.5), rng.uniform(1.9, 2.4), 0.4
    return 2.4, rng.uniform(7.0, 10.0), rng.uniform(2.8, 3.4), 0.0


def _car_side(sc: _Scene, car: _Car, sx: float) -> None:
    """The visible side at lateral offset ``sx``: panel, cabin, side window, wheels."""
    s, z, length, belt = car.s, car.z, car.length, car.belt
    side_id = sc.obj(VEHICLES, car.body, MAT_METAL, 0.75, z + length / 2)
    za, zb = z, z + length
    pts = [
        (sc.u(s + sx, za), sc.v(za, 0.3)),
        (sc.u(s + sx, zb), sc.v(zb, 0.3)),
        (sc.u(s + sx, zb), sc.v(zb, belt)),
        (sc.u(s + sx, za), sc.v(za, belt)),
    ]
    sc.poly(side_id, pts)
    if car.cab:
        _car_side_cabin(sc, car, sx, side_id)
    tyre = sc.obj(VEHICLES, (22, 22, 24), MAT_FLAT, 1.0, z)
    for wz in (z + length * 0.17, z + length * 0.8):
        ru, rv = 0.38 * sc.fx / wz, 0.38 * sc.fy / wz
        cu, cv = sc.u(s + sx, wz), sc.v(wz, 0.36)
        sc.draw.ellipse([cu - ru * 0.5, cv - rv, cu + ru * 0.5, cv + rv], fill=tyre)


def _car_side_cabin(sc: _Scene, car: _Car, sx: float, side_id: int) -> None:
    """The cabin above the belt line of the visible side, with its window."""
    s, h, belt = car.s, car.h, car.belt
    ca, cb = car.z + car.length * 0.3, car.z + car.length * 0.78
    sxi = sx - np.sign(sx) * car.top_inset
    cabin = [
        (sc.u(s + sx, ca - 0.3), sc.v(ca - 0.3, belt)),
        (sc.u(s + sx, cb + 0.4), sc.v(cb + 0.4, belt)),
        (sc.u(s + sxi, cb), sc.v(cb, h)),
        (sc.u(s + sxi, ca), sc.v(ca, h)),
    ]
    sc.poly(side_id, cabin)
    win = sc.obj(VEHICLES, car.glass, MAT_GLASS, 1.0, car.z + car.length / 2)
    sc.poly(
        win,
        [
            (sc.u(s + sx, ca - 0.1), sc.v(ca - 0.1, belt + 0.05)),
            (sc.u(s + sx, cb + 0.25), sc.v(cb + 0.25, belt + 0.05)),
            (sc.u(s + sxi, cb - 0.05), sc.v(cb - 0.05, h - 0.08)),
            (sc.u(s + sxi, ca + 0.05), sc.v(ca + 0.05, h - 0.08)),
        ],
    )


def _car_face(sc: _Scene, car: _Car, near: int) -> None:
    """The face towards the camera: tyres, bumper/body, cabin with the rear or front window."""
    u, v, kx, ky = car.face(sc)
    w, h, belt, top_inset = car.w, car.h, car.belt, car.top_inset
    tyre = sc.obj(VEHICLES, (22, 22, 24), MAT_FLAT, 1.0, car.z)
    for x in (-w / 2 + 0.05, w / 2 - 0.3):
        sc.poly(tyre, _box(u, v, kx, ky, x, x + 0.25, 0.0, 0.35))
    sc.poly(near, _box(u, v, kx, ky, -w / 2, w / 2, 0.25, belt))
    if not car.cab:  # truck: a tall plain box with a door seam
        seam = sc.obj(VEHICLES, _scaled(car.body, 0.7), MAT_METAL, 0.9, car.z)
        sc.poly(seam, _box(u, v, kx, ky, -0.03, 0.03, 0.3, h - 0.1))
        return
    cabin = [(-w / 2, belt), (w / 2, belt), (w / 2 - top_inset, h), (-w / 2 + top_inset, h)]
    sc.poly(near, _local(u, v, kx, ky, cabin))
    win = sc.obj(VEHICLES, car.glass, MAT_GLASS, 1.0, car.z)
    window = [
        (-w / 2 + 0.12, belt + 0.05),
        (w / 2 - 0.12, belt + 0.05),
        (w / 2 - top_inset - 0.06, h - 0.07),
        (-w / 2 + top_inset + 0.06, h - 0.07),
    ]
    sc.poly(win, _local(u, v, kx, ky, window))


def _car_lights(sc: _Scene, car: _Car, oncoming: bool) -> None:
    """Head lamps (oncoming) or tail lamps, and the number plate."""
    u, v, kx, ky = car.face(sc)
    w = car.w
    lamp_rgb = (235, 235, 210) if oncoming else (200, 24, 24)
    lamp = sc.obj(VEHICLES, lamp_rgb, MAT_FLAT, 1.0, car.z)
    ly = car.belt * 0.75 if car.cab else 0.9
    for x in (-w / 2 + 0.08, w / 2 - 0.38):
        sc.poly(lamp, _box(u, v, kx, ky, x, x + 0.3, ly - 0.12, ly + 0.05))
    plate = sc.obj(VEHICLES, (226, 226, 214), MAT_FLAT, 1.0, car.z)
    sc.poly(plate, _box(u, v, kx, ky, -0.26, 0.26, 0.35, 0.5))


def _car_shadows(sc: _Scene, car: _Car, env: Environment) -> None:
    """Contact shadow under the car (always) and a sun shadow beside it."""
    s, z, w, length = car.s, car.z, car.w, car.length
    strength = 0.55 + 0.2 * env.sun
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
    if env.sun > 0:
        off = -sc.sun_side * car.h * 0.6
        sc.shadow_poly(
            sc.ground_poly(
                [
                    (s - w / 2, z),
                    (s + w / 2, z),
                    (s + w / 2 + off, z + length),
                    (s - w / 2 + off, z + length),
                ]
            ),
            0.45 * env.sun,
        )


def _car(sc: _Scene, s: float, z: float, oncoming: bool, env: Environment) -> None:
    """A car, van or truck as a box: the face towards the camera and one visible side."""
    rng = sc.rng
    w, length, h, cab = _car_dimensions(rng)
    body = _rgb(rng, _CAR_RGB, 0.05)
    glass = _rgb(rng, [(40, 48, 58), (60, 70, 80), (25, 28, 32)])
    car = _Car(s=s, z=z, w=w, length=length, h=h, cab=cab, body=body, glass=glass)
    near = sc.obj(VEHICLES, body, MAT_METAL, 0.92, z)
    x_c = sc.x0 + sc.yaw * z + sc.curv * z * z + s  # camera-frame lateral position
    # The visible side, drawn first: the near face covers its front edge.
    if x_c + w / 2 < -0.2:
        _car_side(sc, car, w / 2)
    elif x_c - w / 2 > 0.2:
        _car_side(sc, car, -w / 2)
    _car_face(sc, car, near)
    _car_lights(sc, car, oncoming)
    _car_shadows(sc, car, env)
