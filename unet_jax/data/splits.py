"""The split names every data set has (light: imported by the commands' option sets)."""

SPLITS = ("train", "validation", "test")
