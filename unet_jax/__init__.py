"""unet-jax: a JAX/Flax U-Net for semantic segmentation of CARLA driving scenes.

The public API (docs/EVALUATION.md, "Reuse from Python"): :func:`load`,
:func:`make_apply_fn`, :class:`Segmenter` and :class:`SegmenterOptions`; :func:`read_image`
reads an image file as stored (8-bit RGB or grey, 16-bit, multi-band; docs/YOUR_DATA.md).
"""

__all__ = ["Segmenter", "SegmenterOptions", "load", "make_apply_fn", "read_image"]


def __getattr__(name: str):
    # Lazy: `import unet_jax` stays cheap (no JAX, orbax or TFDS import) until one is used.
    if name == "read_image":
        from unet_jax.data.image_files import read_image

        return read_image
    if name in __all__:
        from unet_jax import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'unet_jax' has no attribute {name!r}")
