"""Trains the U-Net: ``python train.py --workdir DIR [--config FILE] [--config.FIELD=VALUE ...]``.

Examples:
  python train.py --config unet_jax/configs/demo.py --workdir runs/demo   # rendered scenes
  python train.py --workdir runs/reference                                 # Lyft-Udacity data

Re-running with the same workdir resumes from its newest checkpoint. Without ``XLA_FLAGS``
in the environment it sets ``unet_jax.train.xla_flags.CPU_TRAINING_XLA_FLAGS`` (XLA:CPU only).
"""

import pathlib
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from unet_jax.train import xla_flags

# Before JAX starts: XLA:CPU's faster training flags, unless XLA_FLAGS is set.
xla_flags.set_default_training_flags()

REPO_ROOT = pathlib.Path(__file__).resolve().parent
STARTED_AT = time.monotonic()  # where config.time_budget_minutes starts counting

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, logs).", required=True)
config_flags.DEFINE_config_file(
    "config",
    str(REPO_ROOT / "unet_jax" / "configs" / "default.py"),
    "Config file (a Python file with get_config()).",
    lock_config=True,
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host: host:port of process 0 ($UNET_JAX_COORDINATOR_ADDRESS).",
)
flags.DEFINE_integer(
    "num_processes", None, "Multi-host: number of processes ($UNET_JAX_NUM_PROCESSES)."
)
flags.DEFINE_integer("process_id", None, "Multi-host: this process' index ($UNET_JAX_PROCESS_ID).")
flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100, "Multi-host: declare a silent process dead after this."
)


def _auto_config(config, *, prepare_fn):
    """configs/auto.py: the workdir's plan when it has one, else a new plan (docs/AUTO.md)."""
    from unet_jax.configs import auto
    from unet_jax.run.workdir import Workdir
    from unet_jax.train import auto_plan

    stored = Workdir.of(FLAGS.workdir).plan
    if stored.exists():
        print(f"Keeping the plan in {stored}")
        return auto.get_config(str(stored))
    return auto_plan.plan_config(
        config,
        workdir=FLAGS.workdir,
        fixed=config_flags.get_override_values(FLAGS["config"]),
        prepare_fn=prepare_fn,
        elapsed_s=lambda: time.monotonic() - STARTED_AT,
    )


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    # Imported here so that --help stays fast and flags parse before JAX starts.
    from unet_jax.errors import EXIT_PREEMPTED
    from unet_jax.train import parallel
    from unet_jax.train.loop import train_and_evaluate

    parallel.initialize_distributed(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
        heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds,
    )
    sys.path.insert(0, str(REPO_ROOT))  # datasets/ is not installed (it would shadow HF datasets)
    import datasets  # the TFDS builders of this project

    # Exceptions become the documented exit codes in unet_jax.cli (the table in README).
    config = FLAGS.config
    if config.get("auto"):
        config = _auto_config(config, prepare_fn=datasets.prepare_dataset)
    result = train_and_evaluate(
        config,
        FLAGS.workdir,
        prepare_fn=datasets.prepare_dataset,
        started_at=STARTED_AT,
    )
    if result["preempted"]:
        return EXIT_PREEMPTED
    validation = result["validation"]
    if validation is not None:
        print(
            f"Done: step {result['step']}, validation mIoU {validation['mean_iou']:.4f} "
            f"(best {result['best']['value']:.4f} at step {result['best']['step']}). "
            f"Results in {FLAGS.workdir}: metrics.jsonl, tensorboard/, checkpoints/, best/"
        )
    return 0


if __name__ == "__main__":
    from unet_jax import cli

    app.run(cli.absl_main(main), flags_parser=cli.parse_absl_flags)
