#!/usr/bin/env bash
# JAX vs PyTorch on one NVIDIA H100/H200: the full U-Net, bfloat16, 256x256, batch sizes
# 16..256, training and inference; one Markdown table per batch size.
#
#   bash benchmarks/gpu.sh                 # writes benchmarks/results/gpu-<date>.md
#   STEPS=50 BATCHES="64 128" bash benchmarks/gpu.sh
#
# Needs a CUDA build of jax (pip install -U "jax[cuda12]") and of torch in the active
# environment. Variants: JAX bf16 (up-convolution einsum and transpose) and PyTorch bf16
# autocast, channels_last, eager and torch.compile. Variants run one after the other
# (--schedule sequential) so that only one process holds GPU memory; a batch size that does
# not fit shows the out-of-memory error in its row instead of a number.
set -euo pipefail
cd "$(dirname "$0")/.."

BATCHES=${BATCHES:-"16 32 64 128 256"}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-5}
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S).md}
mkdir -p "$(dirname "$OUT")"

python - <<'EOF'
import jax, torch
assert jax.devices()[0].platform == "gpu", f"JAX sees no GPU: {jax.devices()}"
assert torch.cuda.is_available(), "PyTorch sees no GPU"
EOF

# Each JAX worker allocates what it needs instead of 75% of the GPU up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  echo "## GPU: JAX vs PyTorch, bf16, 256x256"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python -c "import jax, torch; print('jax', jax.__version__, '| torch', torch.__version__)"
  echo '```'
  echo
} | tee "$OUT"

# shellcheck disable=SC2086  # BATCHES is a list
python benchmarks/compare.py \
  --batches $BATCHES --size 256 --widths full --mode both \
  --dtype bfloat16 --upsample einsum transpose --conv-impl xla \
  --amp yes --compile no yes --memory-format channels_last --device cuda \
  --steps "$STEPS" --warmup "$WARMUP" --schedule sequential | tee -a "$OUT"

echo "results: $OUT"
