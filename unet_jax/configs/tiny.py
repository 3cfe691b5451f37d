"""A tiny U-Net for tests: 2 encoder levels of 4 and 8 channels, 32x32 images.

Run:
  python train.py --config unet_jax/configs/tiny.py --workdir /tmp/tiny
"""

import ml_collections

from unet_jax.configs import demo


def get_config() -> ml_collections.ConfigDict:
    """Returns the test configuration."""
    config = demo.get_config()
    config.image_size = (32, 32)
    config.num_classes = 13  # tests hand in sources of 13-class labels without a declaration
    config.model.features = (4, 8)
    config.model.bridge_features = 16
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_epochs = 1
    config.num_train_steps = 6
    config.warmup_steps = 2
    config.log_every_steps = 2
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    config.progress_bar = False
    return config
