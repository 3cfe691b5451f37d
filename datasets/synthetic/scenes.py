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

import numpy as np

from datasets.synthetic.environment import Environment
from datasets.synthetic.layout import (
    _draw_background,
    _draw_ground,
    _draw_hood,
    _draw_lots,
    _draw_street,
)
from datasets.synthetic.palette import _noise_tiles
from datasets.synthetic.scene import _MIN_SIZE, _Scene
from datasets.synthetic.shading import _shade

_TILES: dict[str, np.ndarray] | None = None


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
    env = Environment.draw(rng)
    sc = _Scene(rng, int(height), int(width))
    _draw_background(sc, env)
    _draw_ground(sc, env)
    _draw_lots(sc, env)
    _draw_street(sc, env)
    _draw_hood(sc, env)
    label = np.asarray(sc.cls, np.uint8)[np.asarray(sc.ids, dtype=np.int32)]
    image = _shade(sc, env, _TILES)
    return image, label
