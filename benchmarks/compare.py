"""JAX vs PyTorch (vs ONNX Runtime) on the same U-Net, interleaved, with a ratio column.

Each variant (every combination of the JAX options, of the PyTorch options and, for
inference, of the ONNX Runtime options) runs in its own worker process; rounds interleave
them, so the ratios of one table share the machine's load. The ratio column divides by
--baseline (default: the first PyTorch variant).

    # the CPU comparison setting: batch 4, 256x256, float32, PyTorch eager channels_last
    python benchmarks/compare.py --batch 4 --size 256 --conv-impl xla patches
    # inference: ONNX Runtime (the exported graph, 2 threads) vs XLA vs PyTorch eager
    python benchmarks/compare.py --mode infer --widths demo --size 128 --batch 8
    # a GPU host (see benchmarks/gpu.sh)
    python benchmarks/compare.py --batch 64 --dtype bfloat16 --amp yes --compile no yes \\
        --device cuda --schedule sequential
"""

from __future__ import annotations

import argparse

import bench_common as bc
import onnx_bench
import torch_unet
import train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_step.add_arguments(parser)
    train_step.add_jax_arguments(parser)
    torch_unet.add_torch_arguments(parser)
    onnx_bench.add_ort_arguments(parser)
    parser.add_argument("--baseline", help="variant label the ratio column refers to")
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        help="several batch sizes: one table each (overrides --batch)",
    )
    args = parser.parse_args()
    bc.parse_widths(args.widths)
    modes = train_step.modes(args)
    for batch in args.batches or [args.batch]:
        args.batch = batch
        start_load = bc.load_note()
        jax_variants = train_step.jax_variants(args)
        torch_variants = torch_unet.torch_variants(args, modes)
        ort_variants = onnx_bench.ort_variants(args, modes)
        results = bc.run_variants(
            torch_variants + jax_variants + ort_variants,
            warmup=args.warmup,
            steps=args.steps,
            schedule=args.schedule,
        )
        title = (
            f"JAX vs PyTorch{' vs ONNX Runtime' if ort_variants else ''}, "
            f"widths={args.widths}, {args.size}x{args.size}, batch {batch}, {args.warmup}"
            f" warmup + {args.steps} timed steps, {args.schedule}"
        )
        baseline = args.baseline or (torch_variants[0].label if torch_variants else None)
        print(
            train_step.report(results, title=title, baseline=baseline, start_load=start_load),
            flush=True,
        )
        print(flush=True)


if __name__ == "__main__":
    main()
