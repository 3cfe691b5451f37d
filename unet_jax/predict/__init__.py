"""``python -m unet_jax.predict``: the command; the code is :mod:`unet_jax.deploy.predict`."""
