"""Pieces shared by the data set builders: errors, example format, manual directory, threads."""
