"""Scoring: confusion matrices and metrics, validation, eval.py's evaluation and reports."""
