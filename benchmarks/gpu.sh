#!/usr/bin/env bash
# JAX vs PyTorch on one NVIDIA H100/H200: the full U-Net, bfloat16, 256x256, batch sizes
# 16..256, training and inference; one Markdown table per batch size.
#
#   bash benchmarks/gpu.sh                 # writes benchmarks/results/gpu-<date>.md
#   STEPS=50 BATCHES="64 128" bash benchmarks/gpu.sh
#   bash benchmarks/gpu.sh --dry-run       # the same code path on the CPU, tiny (~35 s)
#
# Needs a CUDA build of jax (pip install -U "jax[cuda12]") and of torch in the active
# environment, and this project installed (pip install -e .); nothing else (ONNX Runtime
# is left out: it is a CPU comparison). Variants: JAX bf16 (up-convolution einsum and
# transpose) and PyTorch bf16 autocast, channels_last, eager and torch.compile. Variants
# run one after the other (--schedule sequential) so that only one process holds GPU
# memory; a batch size that does not fit shows the out-of-memory error in its row instead
# of a number.
#
# --dry-run checks the script before a GPU is lent: the same compare.py invocation on the
# CPU (JAX_PLATFORMS=cpu, torch on cpu) with tiny widths, 32x32, batch 2, one warmup and
# one timed step, torch.compile off (on a CPU it would time inductor's C++ build, not the
# CUDA path); without torch it runs the JAX variants alone (benchmarks/train_step.py).
# The table goes to $TMPDIR, not to benchmarks/results/. BATCHES, STEPS, WARMUP, SIZE,
# WIDTHS, COMPILE and OUT override either mode's values; PYTHON picks the interpreter.
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
  BATCHES=${BATCHES:-2}
  STEPS=${STEPS:-1}
  WARMUP=${WARMUP:-1}
  SIZE=${SIZE:-32}
  WIDTHS=${WIDTHS:-tiny}
  COMPILE=${COMPILE:-no}
  DEVICE=cpu
  OUT=${OUT:-${TMPDIR:-/tmp}/gpu-dryrun-$STAMP.md}
else
  BATCHES=${BATCHES:-"16 32 64 128 256"}
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
if [ "$DRY_RUN" = 1 ]; then
  "$PYTHON" -c "import torch" 2>/dev/null || HAVE_TORCH=0
  "$PYTHON" - <<'PY'
import jax
assert jax.devices()[0].platform == "cpu", f"dry run expects the CPU: {jax.devices()}"
PY
else
  "$PYTHON" - <<'PY'
import jax, torch
assert jax.devices()[0].platform == "gpu", f"JAX sees no GPU: {jax.devices()}"
assert torch.cuda.is_available(), "PyTorch sees no GPU"
PY
fi

# Each JAX worker allocates what it needs instead of 75% of the GPU up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  if [ "$DRY_RUN" = 1 ]; then
    echo "## DRY RUN on the CPU (not a measurement): JAX vs PyTorch, bf16, ${SIZE}x${SIZE}"
  else
    echo "## GPU: JAX vs PyTorch, bf16, ${SIZE}x${SIZE}"
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

# The JAX variants, shared by both commands below.
JAX_ARGS=(--size "$SIZE" --widths "$WIDTHS" --mode both --dtype bfloat16
  --upsample einsum transpose --conv-impl xla
  --steps "$STEPS" --warmup "$WARMUP" --schedule sequential)
# shellcheck disable=SC2086  # BATCHES and COMPILE are lists
if [ "$HAVE_TORCH" = 1 ]; then
  # --ort-threads with no value: no ONNX Runtime variant.
  "$PYTHON" benchmarks/compare.py --batches $BATCHES "${JAX_ARGS[@]}" \
    --amp yes --compile $COMPILE --memory-format channels_last --device "$DEVICE" \
    --ort-threads | tee -a "$OUT"
else
  echo "(torch is not installed: JAX variants only)" | tee -a "$OUT"
  for batch in $BATCHES; do
    "$PYTHON" benchmarks/train_step.py --batch "$batch" "${JAX_ARGS[@]}" | tee -a "$OUT"
  done
fi

echo "results: $OUT"
