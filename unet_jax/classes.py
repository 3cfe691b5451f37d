"""The 13 classes of the Lyft-Udacity (CARLA 0.8) data set and their palette.

Label maps store the class id (0..12) per pixel; ``IGNORE_LABEL`` marks pixels
that contribute to no loss and no metric (ids > 12 by default, optionally the
ego car's hood).
"""

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "None",
    "Buildings",
    "Fences",
    "Other",
    "Pedestrians",
    "Poles",
    "RoadLines",
    "Roads",
    "Sidewalks",
    "Vegetation",
    "Vehicles",
    "Walls",
    "TrafficSigns",
)
NUM_CLASSES: int = len(CLASS_NAMES)
IGNORE_LABEL: int = 255

# CARLA 0.8 semantic-segmentation palette (RGB), indexed by class id.
PALETTE: np.ndarray = np.array(
    [
        (0, 0, 0),  # None
        (70, 70, 70),  # Buildings
        (190, 153, 153),  # Fences
        (250, 170, 160),  # Other
        (220, 20, 60),  # Pedestrians
        (153, 153, 153),  # Poles
        (157, 234, 50),  # RoadLines
        (128, 64, 128),  # Roads
        (244, 35, 232),  # Sidewalks
        (107, 142, 35),  # Vegetation
        (0, 0, 142),  # Vehicles
        (102, 102, 156),  # Walls
        (220, 220, 0),  # TrafficSigns
    ],
    dtype=np.uint8,
)
# Ignored pixels are drawn white.
IGNORE_COLOR: tuple[int, int, int] = (255, 255, 255)


def colorize(label: np.ndarray) -> np.ndarray:
    """Maps a label map of class ids to RGB colours of the CARLA palette.

    Args:
      label: integer array [..., H, W] of class ids; ``IGNORE_LABEL`` (and any
        id outside 0..12) is drawn in ``IGNORE_COLOR``.

    Returns:
      uint8 array [..., H, W, 3].
    """
    label = np.asarray(label)
    lut = np.tile(np.array(IGNORE_COLOR, np.uint8), (256, 1))
    lut[:NUM_CLASSES] = PALETTE
    return lut[np.clip(label, 0, 255).astype(np.uint8)]
