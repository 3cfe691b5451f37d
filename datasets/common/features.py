"""The example format every builder of this project writes (the data contract)."""

import numpy as np
import tensorflow_datasets as tfds


def segmentation_features() -> tfds.features.FeaturesDict:
    """``image`` uint8 [H, W, 3] and ``label`` uint8 [H, W, 1] (class ids, 255 ignored),
    both stored as PNG at any size, and the example's ``name``."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            "name": tfds.features.Text(),
        }
    )


def array_image_features() -> tfds.features.FeaturesDict:
    """As `segmentation_features`, but ``image`` is the bytes of an image of any bands and
    dtype (``unet_jax.data.image_bytes``; decoded by ``unet_jax.data.sources``)."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            "name": tfds.features.Text(),
        }
    )
