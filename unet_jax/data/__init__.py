"""Data: classes, prepared data sets, input pipelines, augmentations, image files (bottom layer)."""
