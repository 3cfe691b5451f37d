"""unet-jax: a JAX/Flax U-Net for semantic segmentation of CARLA driving scenes.

The public API (docs/EVALUATION.md, "Reuse from Python"): :func:`load`,
:func:`make_apply_fn`, :class:`Segmenter` and :class:`SegmenterOptions`.
"""

__all__ = ["Segmenter", "SegmenterOptions", "load", "make_apply_fn"]


def __getattr__(name: str):
    # Lazy: `import unet_jax` stays cheap (no JAX, orbax or TFDS import) until one is used.
    if name in __all__:
        from unet_jax import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'unet_jax' has no attribute {name!r}")
