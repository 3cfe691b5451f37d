"""Self-configuring training in a time budget: any data set, this machine (docs/AUTO.md).

Run:
  python train.py --config unet_jax/configs/auto.py --config.folder=DIR \
      --config.time_budget_minutes=30 --workdir runs/mine
  python train.py --config unet_jax/configs/auto.py --config.dataset=aerial \
      --config.manual_dir=ARCHIVE --config.time_budget_minutes=55 --workdir runs/aerial_auto

At start-up ``unet_jax.train.auto_plan`` reads a fingerprint of the training split and
times a few steps of candidate models on this machine, then sets the input mode and size,
widths, batch size, dtype, loss, augmentation and validation interval; the time budget sets
the steps and the schedule. Each decision is printed with its reason and written to
``WORKDIR/plan.json``; ``config.json`` records the planned config. A ``--config.FIELD``
given on the command line is kept as given. A run again in the same workdir keeps its plan.

Reproduce a plan without planning again (the config alone):
  python train.py --config unet_jax/configs/auto.py:runs/mine/plan.json --workdir runs/again
"""

import json

import ml_collections

from unet_jax import storage
from unet_jax.config_fields import flatten, tupleize
from unet_jax.configs import folder


def get_config(plan_file: str | None = None) -> ml_collections.ConfigDict:
    """The config to plan (``auto=True``), or the planned config of a ``plan.json``."""
    config = folder.get_config()
    config.dataset = "folder"  # or any data set: --config.dataset=aerial, lyft_udacity/full
    config.auto = True  # plan the fields below at start-up (unet_jax.train.auto_plan)
    config.time_budget_minutes = 30.0
    config.eval_every_steps = -1  # the budget decides: a few validations over the run
    config.checkpoint_every_steps = -1
    if plan_file:
        planned = json.loads(storage.path(plan_file, what="plan file").read_text())["config"]
        config.update_from_flattened_dict(
            {k: tupleize(v) for k, v in flatten(planned).items() if k in flatten(config)}
        )
        config.auto = False
    return config
