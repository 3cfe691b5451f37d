"""carla_real.py with cars at the resolution they have: native-scale views and a native band.

Run (as carla_real.py):
  python train.py --config unet_jax/configs/carla_real_band.py --config.manual_dir=DIR \\
      --config.init_from=runs/demo --workdir W
  python -m unet_jax.predict --workdir W FRAMES/CameraRGB --out P

At 320x240 a car 20 metres away is a few pixels. Training: the scale jitter reaches the
frames' native scale (2.5 x 320x240 = 800x600), so part of the crops are native-scale
views, and a third of the crops are centred on a pixel of a small, rare class (Vehicles,
Pedestrians, Walls, TrafficSigns) present in the frame (augment.foreground_share).
Prediction (the stored inference recipe): the whole frame at 320x240 as carla_real.py,
then the band of rows 280-460 of 600 (98% of the episode's car pixels) again at native
scale, whose labels replace those rows; predict writes full-size labels
(unet_jax.deploy.banded); ``eval.py --full_resolution`` scores the same labels, the
training validation the 320x240 path. ``--band=off`` turns the band off at prediction.
"""

import ml_collections

from unet_jax.configs import carla_real

# Rows 280-460 of the 600-row frames, as fractions of the height.
CAR_BAND = (280 / 600, 460 / 600)
# CARLA ids (datasets/lyft_udacity/classes.py): Pedestrians, Vehicles, Walls, TrafficSigns.
SMALL_RARE_CLASSES = (4, 10, 11, 12)


def get_config() -> ml_collections.ConfigDict:
    """Returns carla_real.py's configuration with native-scale views and the car band."""
    config = carla_real.get_config()
    config.augment.max_scale = 2.5  # 800x600 / 320x240: the frames' own scale
    config.augment.foreground_share = 1 / 3
    config.augment.foreground_classes = SMALL_RARE_CLASSES
    config.inference = ml_collections.ConfigDict({"tta_flip": True, "band": CAR_BAND})
    return config
