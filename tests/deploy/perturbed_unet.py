"""A small U-Net with random weights and BatchNorm statistics far from 0/1 (deploy tests)."""

import jax
import numpy as np

from unet_jax.model.unet import UNet

MODEL = UNet(num_classes=5, features=(4, 8), bridge_features=16)


def perturbed_variables(seed: int = 0):
    """Random weights; BatchNorm statistics far from those of ordinary images."""
    variables = MODEL.init(jax.random.key(seed), np.zeros((1, 32, 32, 3), np.uint8), train=False)
    rng = np.random.default_rng(seed)

    def perturb(path, x):
        x = np.asarray(x)
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return rng.uniform(0.2, 2.0, x.shape).astype(x.dtype)
        if "mean" in name or "bias" in name:
            return rng.normal(0.0, 0.5, x.shape).astype(x.dtype)
        return (x * 1.3).astype(x.dtype)

    return jax.tree_util.tree_map_with_path(perturb, variables)
