"""Using a trained run: segmenting images, predict, jax.export and ONNX artefacts."""
