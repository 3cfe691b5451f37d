"""Your own data: a folder of images and masks (docs/YOUR_DATA.md).

Run:
  python train.py --config unet_jax/configs/folder.py --config.folder=DIR --workdir runs/mine
  python eval.py --workdir runs/mine
  python -m unet_jax.predict --workdir runs/mine more_images/ --out predictions/

DIR holds images/ and masks/ (matched by file stem; optional classes.json), or
train/, validation/ (and test/) each with images/ and masks/. The classes come from the
data. Images of any size: training on random image_size crops at native scale, evaluation
and prediction on whole images at native size. A small U-Net (16..128 wide) that trains
on a CPU; for the full U-Net add --config.model.features="(64,128,256,512)"
--config.model.bridge_features=1024.
"""

import ml_collections

from unet_jax.configs import demo


def get_config() -> ml_collections.ConfigDict:
    """Returns the folder configuration."""
    config = demo.get_config()  # small U-Net, Dice + CE, warmup-cosine, augmentation
    config.dataset = "folder"
    config.folder = ml_collections.config_dict.placeholder(str)  # the folder (required)
    # Regex on file names: names giving the same match (its first group, if any) stay in
    # one split, e.g. r"^(tile\d+)_" or a video id. None: every image on its own.
    config.folder_group = ml_collections.config_dict.placeholder(str)
    # Where the images and masks are in the folder (or in each split folder); unset: the
    # common names are recognised (docs/YOUR_DATA.md). folder_masks="." means beside the
    # images; folder_mask_suffix is what a mask's file name adds, e.g. "_mask".
    config.folder_images = ml_collections.config_dict.placeholder(str)
    config.folder_masks = ml_collections.config_dict.placeholder(str)
    config.folder_mask_suffix = ml_collections.config_dict.placeholder(str)
    config.input_mode = "crop"
    config.image_size = (256, 256)
    config.augment.min_scale = 0.75
    config.augment.max_scale = 1.25
    config.eval_batch_size = 8
    config.num_epochs = 50
    return config
