"""A run's workdir: checkpoints, loading a run, run metadata, metric files."""
