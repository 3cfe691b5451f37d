"""Tests of the TFDS builders (datasets/)."""
