"""One process of a multi-host CPU training run (driven by tests/test_multihost.py).

Usage: python tests/multihost_worker.py OUT_DIR WORKDIR NUM_PROCESSES PROCESS_ID LOCAL_DEVICES
  PORT DRIVER [NUM_TRAIN_STEPS]
Process 0 writes OUT_DIR/params.npz (flattened final parameters) and OUT_DIR/result.json.
"""

import json
import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
import jax  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def main() -> None:
    out_dir, workdir = pathlib.Path(sys.argv[1]), sys.argv[2]
    num_processes, process_id, local_devices, port = map(int, sys.argv[3:7])
    driver = sys.argv[7]
    num_steps = int(sys.argv[8]) if len(sys.argv) > 8 else 4
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", local_devices)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if "UNET_JAX_TEST_JAX_CACHE" in os.environ:
        jax.config.update("jax_compilation_cache_dir", os.environ["UNET_JAX_TEST_JAX_CACHE"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    if num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}",
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=60,
        )
    from tests.fake_data import make_examples
    from unet_jax.checkpointing import Checkpointer
    from unet_jax.configs import tiny
    from unet_jax.train import train_and_evaluate
    from unet_jax.train_state import create_train_state

    config = tiny.get_config()
    config.optimizer = "sgd"  # compared tightly: see tests/test_training.py
    config.learning_rate = 1e-2
    config.schedule = "constant"
    config.warmup_steps = 0
    config.driver = driver
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = num_steps
    config.eval_every_steps = num_steps
    config.checkpoint_every_steps = 2
    config.augment.enabled = True
    sources = {"train": make_examples(40, seed=1), "validation": make_examples(10, seed=2)}
    result = train_and_evaluate(config, workdir, sources=sources)
    # Opening checkpoints is collective: every process restores, process 0 reports.
    checkpointer = Checkpointer(workdir, keep=3, best_metric="mean_iou", best_mode="max")
    template = create_train_state(config, rng=jax.random.key(0), total_steps=1)
    state, _, _ = checkpointer.restore(template)
    checkpointer.close()
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_leaves(state.params)
        out_dir.mkdir(parents=True, exist_ok=True)
        np_leaves = {f"p{i}": jax.device_get(x) for i, x in enumerate(leaves)}
        import numpy as np

        np.savez(out_dir / "params.npz", **np_leaves)
        (out_dir / "result.json").write_text(
            json.dumps({"step": result["step"], "mean_iou": result["validation"]["mean_iou"]})
        )


if __name__ == "__main__":
    main()
