"""Test setup: 4 fake CPU devices, set before any JAX operation runs."""

import os
import pathlib
import sys
import tempfile

# Tests check numbers, not speed: XLA's -O0 backend compiles ~10x faster on CPU.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_platforms", "cpu")
# Many tests compile the same small programs (and subprocess tests compile them again):
# XLA's persistent cache shares them across tests and processes.
JAX_CACHE_DIR = os.environ.setdefault(
    "UNET_JAX_TEST_JAX_CACHE", os.path.join(tempfile.gettempdir(), "unet_jax_test_jax_cache")
)
jax.config.update("jax_compilation_cache_dir", JAX_CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
# The same cache for every subprocess a test starts (train.py, eval.py, the 2-process and
# launcher runs): they inherit this environment, as they inherit XLA_FLAGS above.
os.environ.update(
    {
        "JAX_COMPILATION_CACHE_DIR": JAX_CACHE_DIR,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# datasets/ is imported from the repository root, never installed (it would
# shadow Hugging Face `datasets`).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

REAL_SAMPLES = pathlib.Path(
    os.environ.get("UNET_JAX_REAL_SAMPLES", REPO_ROOT.parent / "shared" / "real_samples")
)
