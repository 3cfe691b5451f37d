"""The weather, light and camera of a scene, drawn once per scene."""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("clear", "cloudy", "overcast", "fog", "rain", "dusk")
_KIND_P = (0.3, 0.2, 0.15, 0.12, 0.13, 0.1)
_ZENITH = {
    "clear": (64, 118, 200),
    "cloudy": (96, 134, 190),
    "overcast": (150, 156, 166),
    "fog": (190, 192, 196),
    "rain": (110, 116, 126),
    "dusk": (70, 80, 132),
}
_HORIZON = {
    "clear": (178, 204, 228),
    "cloudy": (196, 210, 224),
    "overcast": (196, 198, 202),
    "fog": (206, 208, 210),
    "rain": (150, 154, 160),
    "dusk": (236, 170, 118),
}
_CLOUDS = {"clear": 0.15, "cloudy": 0.45, "overcast": 0.2, "fog": 0.05, "rain": 0.25, "dusk": 0.3}


@dataclasses.dataclass(frozen=True)
class Environment:
    """Weather, light and camera of one scene.

    Attributes:
      kind: one of KINDS.
      sun: strength of direct sunlight and cast shadows (0: none).
      wet: wetness of the ground (darker, reflects the sky; 0: dry).
      fog_m: fog distance in metres (visibility falls as exp(-depth / fog_m)).
      rain: rain streak density (0: none).
      wet_dark: brightness factor of wet surfaces.
      zenith, horizon: sky colours (float32 RGB in 0..1).
      clouds: cloud strength.
      gain, contrast: camera exposure and contrast.
      cast: white balance (float32 RGB factors).
      noise: sensor noise strength.
    """

    kind: str
    sun: float
    wet: float
    fog_m: float
    rain: float
    wet_dark: float
    zenith: np.ndarray
    horizon: np.ndarray
    clouds: float
    gain: float
    contrast: float
    cast: np.ndarray
    noise: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Environment:
        """Draws the environment of a scene (the first draws of the scene's generator).

        Args:
          rng: the scene's generator; the order of its draws is part of the output.

        Returns:
          The environment.
        """
        kind = str(rng.choice(list(KINDS), p=list(_KIND_P)))
        sun, wet, fog_m, rain = 0.0, 0.0, rng.uniform(400.0, 900.0), 0.0
        if kind in ("clear", "dusk"):
            sun = rng.uniform(0.7, 1.0)
        elif kind == "cloudy":
            sun = rng.uniform(0.2, 0.5)
        if kind == "fog":
            fog_m = rng.uniform(35.0, 110.0)
        if kind == "rain":
            wet = rng.uniform(0.5, 1.0)
            rain = rng.uniform(0.5, 1.0)
            fog_m = rng.uniform(120.0, 300.0)
        elif kind == "overcast" and rng.random() < 0.4:
            wet = rng.uniform(0.3, 0.7)
        zenith = np.array(_ZENITH[kind], np.float32) / 255 * rng.uniform(0.9, 1.1)
        horizon = np.array(_HORIZON[kind], np.float32) / 255 * rng.uniform(0.92, 1.05)
        clouds = _CLOUDS[kind] * rng.uniform(0.5, 1.3)
        # Camera: exposure, contrast, white balance and sensor noise.
        gain = rng.uniform(0.8, 1.15) * (0.8 if kind in ("rain", "dusk") else 1.0)
        contrast = rng.uniform(0.8, 1.2)
        cast = np.array([1.0, 1.0, 1.0]) + rng.normal(0.0, 0.05, 3)
        if kind == "dusk":
            cast *= np.array([1.12, 0.98, 0.84])
        return cls(
            kind=kind,
            sun=sun,
            wet=wet,
            fog_m=fog_m,
            rain=rain,
            wet_dark=1.0 - 0.35 * wet,
            zenith=zenith,
            horizon=horizon,
            clouds=clouds,
            gain=gain,
            contrast=contrast,
            cast=cast.astype(np.float32),
            noise=rng.uniform(0.01, 0.035),
        )
