"""The error every builder of this project raises for bad input data."""


class DataError(ValueError):
    """Bad input data: the message names the offending file (or archive member) and value."""
