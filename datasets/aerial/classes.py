"""The six classes of the aerial data set and how its masks are decoded.

The colours are those the masks hold (checked on a copy of the archive), not those of the
``classes.json`` shipped in the archive: that file lists other colours for every class but
Unlabeled, so the builder never reads it. Pure black (#000000) marks areas the annotators
left unlabelled (0.56% of all pixels) and is ignored.
"""

from datasets.folder.classes_file import MaskRule
from unet_jax.data.classes import ClassSet, parse_hex

# Class id order: the order of the data set's README table (and of the reference article).
COLORS = {
    "Building": "#3C1098",
    "Land (unpaved area)": "#8429F6",
    "Road": "#6EC1E4",
    "Vegetation": "#FEDD3A",
    "Water": "#E2A929",
    "Unlabeled": "#9B9B9B",
}
IGNORE_COLOR = "#000000"

AERIAL_CLASSES = ClassSet.from_names(
    tuple(COLORS),
    tuple(parse_hex(c, where=f"aerial class {n}") for n, c in COLORS.items()),
    label_format="color",
)
NUM_CLASSES = AERIAL_CLASSES.num_classes
MASK_RULE = MaskRule(
    AERIAL_CLASSES,
    "color",
    ignore_colors=(parse_hex(IGNORE_COLOR, where="aerial ignore colour"),),
    source="datasets/aerial/classes.py (the archive's classes.json is wrong and not read)",
)
