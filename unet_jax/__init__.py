"""unet-jax: a JAX/Flax U-Net for semantic segmentation of CARLA driving scenes."""
