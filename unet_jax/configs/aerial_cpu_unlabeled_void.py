"""aerial_cpu.py with ``Unlabeled`` void: the other reading of the aerial scores.

Run:
  python train.py --config unet_jax/configs/aerial_cpu_unlabeled_void.py \
    --config.manual_dir=DIR --workdir W
  python eval.py --workdir W

The article counts six classes, ``Unlabeled`` (0.4 % of the pixels) among them, and
aerial_cpu.py follows it. Here ``Unlabeled`` is void: its pixels count in no loss and no
metric, the model has five outputs and never predicts it, and the run's classes.json and
eval.py's metrics.json list it under ``void_classes``. Its mIoU is a mean over five classes and is
not comparable with aerial_cpu.py's six-class figure (docs/AERIAL.md).
"""

import ml_collections

from unet_jax.configs import aerial_cpu


def get_config() -> ml_collections.ConfigDict:
    """Returns aerial_cpu.py's configuration with ``Unlabeled`` void."""
    config = aerial_cpu.get_config()
    config.void_classes = ("Unlabeled",)
    # aerial_cpu.py centres a third of its crops on Unlabeled; void, it is no longer a label.
    config.augment.foreground_share = 0.0
    config.augment.foreground_classes = None
    return config
