"""The network: the U-Net, its CPU fast path, and what its outputs mean (bottom layer)."""
