"""A tiny CPU training run in its own process (for multi-host and kill/resume tests).

Usage: python tests/train_worker.py --out OUT --workdir W [--num_processes N --process_id I
  --port P] [--local_devices D] [--driver pmap|mesh] [--steps S] [--worker_count W]
Trains the tiny config on fake data (tests/fake_data.py) with train_and_evaluate, then
process 0 writes OUT/params.npz (flattened final parameters) and OUT/result.json. Exits
with train.py's codes: 143 when stopped by SIGTERM (state saved).
"""

import argparse
import json
import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
import jax  # noqa: E402
import numpy as np  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--local_devices", type=int, default=4)
    parser.add_argument("--driver", default="pmap")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--worker_count", type=int, default=0, help="grain worker processes")
    parser.add_argument("--heartbeat_timeout_seconds", type=int, default=100)
    parser.add_argument("--log_every", type=int, default=1, help="config.log_every_steps")
    args = parser.parse_args()

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", args.local_devices)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if "UNET_JAX_TEST_JAX_CACHE" in os.environ:
        jax.config.update("jax_compilation_cache_dir", os.environ["UNET_JAX_TEST_JAX_CACHE"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    if args.num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=60,
            heartbeat_timeout_seconds=args.heartbeat_timeout_seconds,
        )
    from tests.fake_data import make_examples
    from unet_jax.configs import tiny
    from unet_jax.errors import EXIT_PREEMPTED
    from unet_jax.run.checkpointing import Checkpointer
    from unet_jax.train.init_state import create_train_state
    from unet_jax.train.loop import train_and_evaluate

    config = tiny.get_config()
    config.optimizer = "sgd"  # compared tightly: see tests/train/test_training.py
    config.learning_rate = 1e-2
    config.schedule = "constant"
    config.warmup_steps = 0
    config.driver = args.driver
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = args.steps
    config.eval_every_steps = args.steps
    config.checkpoint_every_steps = 2
    config.log_every_steps = args.log_every
    config.augment.enabled = True
    config.model.dropout_rate = 0.1
    config.worker_count = args.worker_count
    sources = {"train": make_examples(40, seed=1), "validation": make_examples(10, seed=2)}
    result = train_and_evaluate(config, args.workdir, sources=sources)
    if result["preempted"]:
        return EXIT_PREEMPTED
    # Opening checkpoints is collective: every process restores, process 0 reports.
    checkpointer = Checkpointer(args.workdir, keep=3)
    template = create_train_state(config, rng=jax.random.key(0), total_steps=1)
    state, _ = checkpointer.restore(template)
    checkpointer.close()
    if jax.process_index() == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        leaves = jax.tree_util.tree_leaves(state.params)
        np.savez(args.out / "params.npz", **{f"p{i}": np.asarray(x) for i, x in enumerate(leaves)})
        (args.out / "result.json").write_text(
            json.dumps({"step": result["step"], "mean_iou": result["validation"]["mean_iou"]})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
