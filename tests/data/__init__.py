"""Tests of the data layer and the data set builders' shared rules."""
