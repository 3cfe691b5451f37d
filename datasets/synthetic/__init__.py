"""Rendered CARLA-like scenes: the demo data set (``lyft_udacity/synthetic``)."""
