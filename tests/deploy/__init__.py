"""Tests of using a trained run."""
