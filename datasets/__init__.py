"""TFDS data set builders of this project.

Imported from the repository root (``import datasets.lyft_udacity``), never
installed: an installed top-level ``datasets`` package would shadow Hugging
Face ``datasets``.
"""
