"""The error every builder of this project raises for bad input data."""

from unet_jax.errors import UserError


class DataError(UserError, ValueError):
    """Bad input data: the message names the offending file (or archive member) and value."""
