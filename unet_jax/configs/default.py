"""The reference recipe: full-width U-Net on Lyft-Udacity at 256x256, Adam 1e-3, Dice, 100 epochs.

Run:
  python train.py --workdir runs/reference
  python train.py --workdir runs/reference --config.batch_size=64 --config.model.dtype=bfloat16

Needs the Kaggle archive (see docs/DATA.md); it is prepared on first use.
"""

import ml_collections

from unet_jax.data.augment_defaults import DEFAULT_FOREGROUND_SHARE, JITTER, default_settings


def _augment_config() -> ml_collections.ConfigDict:
    """Augmentation: off in the reference recipe; the defaults of data/augment_defaults.py."""
    augment = ml_collections.ConfigDict()
    augment.enabled = False  # the reference recipe trains on plain resized frames
    # Flips, scale, colour and per-band jitter: the defaults of data/augment_defaults.py;
    # saturation None: RGB_SATURATION on 8-bit RGB data, off on other images (no meaning there).
    augment.update({**JITTER, "saturation": ml_collections.config_dict.placeholder(float)})
    # Class-aware crops (nnU-Net's foreground oversampling): this share of the crops is
    # centred on a pixel of a chosen class present in the example, the rest random (0: off).
    # Applies wherever crops are taken (input_mode "crop", or scales above 1), augmentation
    # on or off. Classes: a tuple of ids, None: every class but 0. docs/INPUT_PIPELINE.md.
    augment.foreground_share = DEFAULT_FOREGROUND_SHARE
    augment.foreground_classes = ml_collections.FieldReference(None, field_type=object)
    # Condition augmentation (docs/AUGMENTATION.md), applied with augmentation enabled:
    # each condition with probability p (0: off) and a strength in [0, 1].
    augment.conditions = ml_collections.ConfigDict(default_settings())
    return augment


def _model_config() -> ml_collections.ConfigDict:
    """The classic U-Net of the article, and the ResNet encoders' fields."""
    model = ml_collections.ConfigDict()
    model.features = (64, 128, 256, 512)
    model.bridge_features = 1024
    model.use_batchnorm = True
    model.dropout_rate = 0.0
    model.output_activation = "softmax"  # or "sigmoid" (per class, as the article)
    model.dtype = "float32"  # computation dtype; "bfloat16" on GPU/TPU
    model.upsample = "einsum"  # same function as "transpose", faster gradient
    # How 3x3 convolutions compute their weight gradient; same function and parameters
    # either way. "patches": per-tap matmuls (2x faster weight gradients, 1.4-1.5x faster
    # training steps on XLA:CPU, docs/PERFORMANCE.md); "xla": XLA's own (cuDNN on GPU);
    # "auto": "patches" on the CPU backend, "xla" elsewhere.
    model.conv_impl = "auto"
    # "unet": the classic U-Net above; "resnet18", "resnet34", "resnet50": a torchvision
    # ResNet as the encoder (features/bridge_features unused) under a decoder of
    # decoder_features widths, optionally started from ImageNet weights (a torchvision .pth
    # or timm .safetensors file; read once, before the first step). docs/ENCODERS.md.
    model.encoder = "unet"
    model.decoder_features = (256, 128, 64, 32, 16)
    model.encoder_weights = ml_collections.config_dict.placeholder(str)
    # The input as the data set stores it (docs/YOUR_DATA.md, "Kinds of images"); unset,
    # the prepared data decides, like num_classes: bands, dtype ("uint8", "uint16",
    # "int16", "float32"), the normalisation rule ("imagenet" for 8-bit RGB, else
    # "zscore") and its per-band statistics of the training split.
    model.in_channels = ml_collections.config_dict.placeholder(int)
    model.input_dtype = ml_collections.config_dict.placeholder(str)
    model.input_norm = ml_collections.config_dict.placeholder(str)
    model.input_stats = ml_collections.config_dict.placeholder(dict)
    return model


def get_config() -> ml_collections.ConfigDict:
    """Returns the reference configuration."""
    config = ml_collections.ConfigDict()

    # Data: TFDS name/config, prepared to array_record on first use.
    config.dataset = "lyft_udacity/resized_256"
    config.data_dir = ml_collections.config_dict.placeholder(str)  # None: TFDS default
    config.manual_dir = ml_collections.config_dict.placeholder(
        str
    )  # None: <data_dir>/downloads/manual
    # lyft_udacity: a regex on frame names; names giving the same match (its first group,
    # if any) stay in one split. None: episodes of Kaggle names stay together, and a
    # recording of numbered frames is cut into contiguous 60/20/20 blocks (docs/DATA.md).
    config.split_group = ml_collections.config_dict.placeholder(str)
    # Several data sets in one run: ((data set, weight), ...), e.g.
    # (("lyft_udacity/full", 0.6), ("lyft_udacity/synthetic", 0.4)). Each step's examples
    # are drawn from them in these shares (grain's mix); the first is the target (validation,
    # eval.py) and replaces config.dataset; all must declare one class set. None: dataset.
    config.mixture = ml_collections.FieldReference(None, field_type=object)
    config.image_size = (256, 256)
    # "resize": whole images resized to image_size; "crop": random image_size crops at the
    # images' native scale (images of any size; evaluation and predict then run at native
    # size too). docs/YOUR_DATA.md.
    config.input_mode = "resize"
    # None: the data set's class count (its declaration travels with the prepared data);
    # a value is checked against it at start-up.
    config.num_classes = ml_collections.config_dict.placeholder(int)
    # Names of the data set's classes to treat as void: their pixels are ignored in the loss
    # and every metric, and the class leaves the model's outputs (never predicted). Adds to
    # those a folder's classes.json marks "void". docs/LOSSES_AND_METRICS.md.
    config.void_classes = ()
    config.worker_count = 2  # grain worker processes per host (0: in-process)
    # Splits whose decoded examples fit in this many MiB (per host) are decoded once and
    # held in memory (0: always read from disk); batches are the same either way.
    config.in_memory_mb = 2048

    config.augment = _augment_config()

    config.model = _model_config()
    # The three bands (0-based) that pictures show of a multi-band image; unset: the
    # first three (one band: grey). Grey and 16-bit bands get a percentile stretch.
    config.display_bands = ml_collections.config_dict.placeholder(tuple)

    config.loss = "dice"  # "dice", "ce", "dice_ce", "focal" or "dice_focal"
    config.dice_smooth = 1.0
    config.ce_weight = 1.0  # weight of cross-entropy in "dice_ce"
    config.focal_gamma = 2.0  # focusing exponent of "focal"/"dice_focal" (0: cross-entropy)
    config.focal_weight = 1.0  # weight of the focal term in "dice_focal"
    # None (uniform), a tuple of num_classes floats, "inverse_frequency" or
    # "median_frequency" (from the training split's pixel counts; docs/LOSSES_AND_METRICS.md).
    # field_type=object so that the command line accepts a name or "(1.0, 2.0, ...)".
    config.class_weights = ml_collections.FieldReference(None, field_type=object)

    config.optimizer = "adam"  # or "sgd" (momentum 0.9)
    config.learning_rate = 1e-3
    config.schedule = "constant"  # or "warmup_cosine"
    config.warmup_steps = 0
    # ResNet encoders: their learning rate as a multiple of the decoder's, and the first
    # steps during which they (and their BatchNorm statistics) stay frozen.
    config.encoder_lr_multiplier = 1.0
    config.encoder_frozen_steps = 0

    config.batch_size = 16  # global, over all devices and hosts
    config.eval_batch_size = 16
    config.num_epochs = 100
    config.num_train_steps = -1  # > 0 overrides num_epochs
    # Minutes of wall clock for the whole run (preparation, compilation, validations): the
    # steps that fit are measured at the start and re-checked at each validation, the
    # warm-up and cosine laid over them; num_epochs/num_train_steps are then unused.
    # None: off. docs/AUTO.md.
    config.time_budget_minutes = ml_collections.config_dict.placeholder(float)

    # Fine-tuning: "WORKDIR[:best|latest|STEP]" of another run whose parameters and
    # BatchNorm statistics start this one (fresh optimizer, step 0; a head of another class
    # count is re-initialised). Ignored once this run has a checkpoint. docs/AERIAL.md.
    config.init_from = ml_collections.config_dict.placeholder(str)
    # A workdir with checkpoints resumes on the data set (and folder) it was trained on;
    # True continues it on other data (its classes and widths must still match).
    config.allow_new_data = False

    config.driver = "pmap"  # or "mesh" (jax.jit + shard_map over a device Mesh)
    config.seed = 0

    config.log_every_steps = 50
    config.eval_every_steps = -1  # -1: once per epoch
    config.checkpoint_every_steps = -1  # -1: once per epoch
    config.keep_checkpoints = 3
    config.best_metric = "mean_iou"  # validation metric that picks the "best" checkpoint
    config.best_mode = "max"
    config.progress_bar = True
    return config
