#!/usr/bin/env bash
# JAX vs PyTorch on one NVIDIA H100/H200, the full U-Net at 256x256, as one Markdown table
# (benchmarks/gpu_table.py): JAX bfloat16 and float32 with the pmap and the mesh driver and
# PyTorch bf16 autocast (channels_last) eager and torch.compile, training and inference, at
# batch 128; then a training batch sweep 16..256 of JAX bfloat16 pmap against PyTorch AMP
# eager. Columns: img/s, ratio to PyTorch AMP eager, compile s, GFLOP/img, TFLOP/s, MFU %
# (against the dense peak), peak memory. About 15 workers, each compiling once: meant to
# finish within 10 minutes on one H100/H200 (not yet measured on one).
#
#   bash benchmarks/gpu.sh                 # writes benchmarks/results/gpu-<date>.md
#   STEPS=50 BATCHES="64 128" bash benchmarks/gpu.sh
#   bash benchmarks/gpu.sh --dry-run       # the same code path on the CPU, tiny
#
# Needs a CUDA build of jax (pip install -U "jax[cuda12]") and this project installed (pip
# install -e .); a CUDA build of torch adds the PyTorch rows (without torch: JAX only, said
# in the table). Fails (non-zero exit, what is missing on stderr) when JAX sees no GPU,
# when torch is installed but sees no GPU, or when a row has no measurement other than an
# out-of-memory error (a batch size that does not fit is a result).
#
# --dry-run checks the script before a GPU is lent: the same gpu_table.py invocation on the
# CPU (JAX_PLATFORMS=cpu, torch on cpu) with tiny widths, 32x32, batch 2 (sweep 2 4), one
# warmup and one timed step, torch.compile off (on a CPU it would time inductor's C++
# build, not the CUDA path). The table goes to $TMPDIR, not to benchmarks/results/.
# BATCHES, MATRIX_BATCH, STEPS, WARMUP, SIZE, WIDTHS, COMPILE and OUT override either
# mode's values; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      # The comment block at the top of this file.
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0
      ;;
    *)
      echo "gpu.sh: unknown argument $arg (only --dry-run, --help)" >&2
      exit 2
      ;;
  esac
done

PYTHON=${PYTHON:-python}
STAMP=$(date +%Y%m%d-%H%M%S)
if [ "$DRY_RUN" = 1 ]; then
  export JAX_PLATFORMS=cpu
  BATCHES=${BATCHES:-"2 4"}
  MATRIX_BATCH=${MATRIX_BATCH:-2}
  STEPS=${STEPS:-1}
  WARMUP=${WARMUP:-1}
  SIZE=${SIZE:-32}
  WIDTHS=${WIDTHS:-tiny}
  COMPILE=${COMPILE:-no}
  DEVICE=cpu
  OUT=${OUT:-${TMPDIR:-/tmp}/gpu-dryrun-$STAMP.md}
else
  BATCHES=${BATCHES:-"16 32 64 128 256"}
  MATRIX_BATCH=${MATRIX_BATCH:-128}
  STEPS=${STEPS:-20}
  WARMUP=${WARMUP:-5}
  SIZE=${SIZE:-256}
  WIDTHS=${WIDTHS:-full}
  COMPILE=${COMPILE:-"no yes"}
  DEVICE=cuda
  OUT=${OUT:-benchmarks/results/gpu-$STAMP.md}
fi
mkdir -p "$(dirname "$OUT")"

HAVE_TORCH=1
"$PYTHON" -c "import torch" 2>/dev/null || HAVE_TORCH=0
if [ "$DRY_RUN" = 1 ]; then
  "$PYTHON" - <<'PY'
import jax
assert jax.devices()[0].platform == "cpu", f"dry run expects the CPU: {jax.devices()}"
PY
else
  "$PYTHON" - <<'PY'
import jax
assert jax.devices()[0].platform == "gpu", f"JAX sees no GPU: {jax.devices()}"
PY
  if [ "$HAVE_TORCH" = 1 ]; then
    "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no GPU'"
  fi
fi

# Each JAX worker allocates what it needs instead of 75% of the GPU up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  if [ "$DRY_RUN" = 1 ]; then
    echo "## DRY RUN on the CPU (not a measurement): JAX vs PyTorch, bf16 and float32, ${SIZE}x${SIZE}"
  else
    echo "## GPU: JAX vs PyTorch, bf16 and float32, ${SIZE}x${SIZE}"
  fi
  echo
  echo '```'
  if [ "$DRY_RUN" = 1 ]; then
    lscpu 2>/dev/null | grep -m1 'Model name' || uname -m
  else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  fi
  "$PYTHON" -c "import jax, sys; print('python', sys.version.split()[0], '| jax', jax.__version__, end=' ')
try:
    import torch; print('| torch', torch.__version__)
except ImportError:
    print('| torch not installed')"
  echo '```'
  echo
} | tee "$OUT"

TORCH_ARGS=(--compile $COMPILE --device "$DEVICE")
if [ "$HAVE_TORCH" = 0 ]; then
  echo "(torch is not installed: JAX variants only)" | tee -a "$OUT"
  TORCH_ARGS=(--no-torch)
fi
# shellcheck disable=SC2086  # BATCHES and COMPILE are lists
"$PYTHON" benchmarks/gpu_table.py --matrix-batch "$MATRIX_BATCH" --batches $BATCHES \
  --size "$SIZE" --widths "$WIDTHS" --mode both --upsample einsum --conv-impl xla \
  --steps "$STEPS" --warmup "$WARMUP" "${TORCH_ARGS[@]}" | tee -a "$OUT"

echo "results: $OUT"
