"""``python -m unet_jax.export``: the command; the code is :mod:`unet_jax.deploy.export`."""
