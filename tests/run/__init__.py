"""Tests of a run's workdir."""
