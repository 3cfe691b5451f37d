"""From object ids to pixels: materials, light, shadows, sky, fog, wet road, rain, camera."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from datasets.synthetic.environment import Environment
from datasets.synthetic.palette import (
    _MAT_BLOTCH,
    _MAT_BRICK,
    _MAT_GRAIN,
    _MAT_LEAF,
    _MAT_PLANKS,
    _crop,
)
from datasets.synthetic.scene import _Scene


def _shade(sc: _Scene, env: Environment, tiles: dict[str, np.ndarray]) -> np.ndarray:
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
    horizon = env.horizon[:, None, None]
    # Only rows above the horizon can show sky (the ground covers the rest).
    top = min(h, int(math.ceil(sc.h0)) + 1)
    rows = np.arange(h, dtype=np.float32)[:, None]
    t = np.clip(rows[:top] / max(sc.h0, 1.0), 0.0, 1.0) ** 1.5
    sky = env.zenith[:, None, None] * (1 - t) + horizon * t  # [3, top, 1]
    cloud = _crop(tiles["cloud"], rng, top, w) * 0.5 + 0.1
    cloud = np.clip(cloud, 0.0, 1.0) * env.clouds
    sky_term = sky + cloud * (np.float32(0.92 * env.horizon.max()) - sky)
    img[:, :top] += is_sky[:top] * sky_term
    ground_depth = sc.fy * sc.camh / np.maximum(rows - sc.h0, 0.5)  # [H, 1]
    depth = np.where(ground, ground_depth, depth)
    if env.wet > 0:  # wet ground reflects the sky
        sheen = env.wet * 0.22 * np.clip(1.0 - ground_depth / 60.0, 0.2, 1.0)
        img += (ground * sheen) * horizon
    # Aerial perspective and fog.
    fog = 1.0 - np.exp(-depth / np.float32(env.fog_m))
    fog[is_sky] = 0.9 if env.kind == "fog" else 0.0
    img = img * (1.0 - fog) + fog * horizon
    if env.rain > 0:
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
    gain = (env.gain * env.contrast * env.cast)[:, None, None]
    img = blur * gain + np.float32(0.45 * (1.0 - env.contrast))
    img += env.noise * _crop(tiles["pixel"], rng, h, w)
    img *= 255
    img += 0.5
    out = np.clip(img, 0.0, 255.0, out=img).astype(np.uint8)
    return np.stack([out[0], out[1], out[2]], axis=-1)  # faster than a transposed copy


def _rain(sc: _Scene, env: Environment) -> np.ndarray:
    """Bright rain streaks (image only)."""
    rng = sc.rng
    canvas = Image.new("L", (sc.w, sc.h), 0)
    draw = ImageDraw.Draw(canvas)
    n = int(env.rain * 250 * sc.w * sc.h / 65536)
    x = rng.uniform(0, sc.w, n)
    y = rng.uniform(0, sc.h, n)
    length = rng.uniform(0.02, 0.06, n) * sc.h
    slant = rng.uniform(-0.15, 0.05)
    for x0, y0, ln in zip(x.tolist(), y.tolist(), length.tolist(), strict=True):
        draw.line([(x0, y0), (x0 + slant * ln, y0 + ln)], fill=int(60 + ln % 40), width=1)
    return np.asarray(canvas, np.float32) * np.float32(0.0025)  # broadcasts over channels
