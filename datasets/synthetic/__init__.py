"""Rendered CARLA-like street scenes: the demo data set (``lyft_udacity/synthetic``).

``render_scene(seed, height, width)`` (in ``scenes.py``) draws a scene in this order:
``environment`` (weather, light, camera), ``scene`` (camera, road layout, the object-id
canvas), ``layout`` (where the ground, lots, street furniture, people and cars go, drawn
by ``objects``), then ``shading`` turns object ids into pixels. The same seed renders
the same bytes.
"""

from datasets.synthetic.scenes import render_scene

__all__ = ["render_scene"]
