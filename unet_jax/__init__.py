"""unet-jax: a JAX/Flax U-Net for semantic segmentation of CARLA driving scenes."""

__all__ = ["load"]


def __getattr__(name: str):
    # Lazy: `import unet_jax` stays cheap (no JAX, orbax or TFDS import) until load is used.
    if name == "load":
        from unet_jax.run.loading import load

        return load
    raise AttributeError(f"module 'unet_jax' has no attribute {name!r}")
