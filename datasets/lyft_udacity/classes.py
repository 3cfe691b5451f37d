"""The 13 classes of the Lyft-Udacity (CARLA 0.8) data set: this data set's declaration.

Label maps store the class id (0..12) in the red channel; ids above 12 are ignored by
default (see `decode`). The colours are CARLA 0.8's semantic-segmentation palette.
"""

from unet_jax.data.classes import ClassSet

CARLA_CLASSES = ClassSet(
    names=(
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
    ),
    colors=(
        (0, 0, 0),
        (70, 70, 70),
        (190, 153, 153),
        (250, 170, 160),
        (220, 20, 60),
        (153, 153, 153),
        (157, 234, 50),
        (128, 64, 128),
        (244, 35, 232),
        (107, 142, 35),
        (0, 0, 142),
        (102, 102, 156),
        (220, 220, 0),
    ),
    label_format="red",
)
CLASS_NAMES: tuple[str, ...] = CARLA_CLASSES.names
NUM_CLASSES: int = CARLA_CLASSES.num_classes
PALETTE = CARLA_CLASSES.palette
