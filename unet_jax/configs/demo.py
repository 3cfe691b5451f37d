"""Demo: a small U-Net on procedurally rendered CARLA-like scenes, a few minutes on a 2-core CPU.

Run:
  python train.py --config unet_jax/configs/demo.py --workdir runs/demo

The scenes are rendered and prepared on first use (no download).
"""

import ml_collections

from unet_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    """Returns the demo configuration."""
    config = default.get_config()
    config.dataset = "lyft_udacity/synthetic"
    config.image_size = (128, 128)
    config.worker_count = 0  # 2 cores: the training step needs them both
    config.augment.enabled = True
    config.augment.min_scale = 0.9
    config.augment.max_scale = 1.1
    config.model.features = (16, 32, 64, 128)
    config.model.bridge_features = 256
    config.loss = "dice_ce"
    config.learning_rate = 3e-3
    config.schedule = "warmup_cosine"
    config.warmup_steps = 50
    config.batch_size = 8
    config.eval_batch_size = 32
    config.num_epochs = 6
    config.log_every_steps = 25
    return config
