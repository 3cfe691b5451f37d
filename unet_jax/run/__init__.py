"""A run's workdir and state: layout, checkpoints, loading a run, metadata, metric files."""
