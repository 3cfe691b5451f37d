"""The GPU comparison as one Markdown table (benchmarks/gpu.sh runs it).

Two parts, one table:

- the matrix, at --matrix-batch: JAX bfloat16 and float32, each with the pmap and the mesh
  driver, and PyTorch bf16 autocast channels_last, eager and (--compile yes) compiled;
- the batch sweep, at each of --batches (training only): JAX bfloat16 pmap against
  PyTorch bf16 autocast eager.

Every variant runs in its own worker, one after the other (only one holds GPU memory). The
ratio column divides by PyTorch AMP eager at the same batch size and mode (JAX bfloat16 pmap
without torch). MFU is against the device's dense peak (``bench_common.GPU_PEAK_TFLOPS``).

Exit status 1, with what is missing on stderr, when a row that should be there has no
measurement (a worker failed, a driver is broken). A batch size that does not fit in memory
is a result, not a failure: its row shows the out-of-memory error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import bench_common as bc
import train_step

OUT_OF_MEMORY = ("out of memory", "resource_exhausted", "outofmemory")


def namespace(args: argparse.Namespace, **changes: Any) -> argparse.Namespace:
    """A copy of ``args`` with ``changes``, for the variant builders."""
    return argparse.Namespace(**{**vars(args), **changes})


def groups(args: argparse.Namespace) -> list[list[bc.Variant]]:
    """The variants of the matrix, then those of every other batch size of the sweep."""
    both, train = ("train", "infer"), ("train",)
    matrix = namespace(
        args, batch=args.matrix_batch, dtype=["bfloat16", "float32"], driver=["pmap", "mesh"]
    )
    torch_variants = _torch_variants if args.torch else lambda *_: []
    out = [train_step.jax_variants(matrix) + torch_variants(matrix, args.compile, both)]
    for batch in args.batches:
        if batch == args.matrix_batch:
            continue  # the matrix has these rows
        sweep = namespace(args, batch=batch, mode="train", dtype=["bfloat16"], driver=["pmap"])
        out.append(train_step.jax_variants(sweep) + torch_variants(sweep, ["no"], train))
    return out


def _torch_variants(
    args: argparse.Namespace, compile_: list[str], modes: tuple[str, ...]
) -> list[bc.Variant]:
    """PyTorch bf16 autocast channels_last, eager and/or compiled (torch_unet imports torch)."""
    import torch_unet

    return torch_unet.torch_variants(
        namespace(args, compile=compile_, amp=["yes"], memory_format=["channels_last"]), modes
    )


def missing_rows(results: list[dict[str, Any]]) -> list[str]:
    """The rows without a measurement that are not out-of-memory results."""
    missing = []
    for r in results:
        if r["times"] and not r["error"]:
            continue
        error = r["error"] or "no timed steps"
        if not any(marker in error.lower() for marker in OUT_OF_MEMORY):
            missing.append(f"{r['label']} {r['mode']} batch {r['batch']}: {error}")
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_step.add_arguments(parser)
    train_step.add_jax_arguments(parser)
    parser.add_argument("--compile", nargs="+", default=["no"], choices=("no", "yes"))
    parser.add_argument("--device", default="auto", help="PyTorch device: cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--matrix-batch", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--no-torch", dest="torch", action="store_false", help="JAX only")
    args = parser.parse_args()
    bc.parse_widths(args.widths)
    start_load = bc.load_note()
    results = []
    for variants in groups(args):  # one run per batch size: labels repeat across them
        results += bc.run_variants(
            variants, warmup=args.warmup, steps=args.steps, schedule="sequential"
        )
    baseline = "torch eager bf16-amp channels_last" if args.torch else None
    baseline = baseline or f"jax bfloat16 pmap up={args.upsample[0]} conv={args.conv_impl[0]}"
    title = (
        f"JAX vs PyTorch, widths={args.widths}, {args.size}x{args.size}: matrix at batch "
        f"{args.matrix_batch}, training sweep over batches {' '.join(map(str, args.batches))}"
        f", {args.warmup} warmup + {args.steps} timed steps, sequential"
    )
    print(train_step.report(results, title=title, baseline=baseline, start_load=start_load))
    missing = missing_rows(results)
    for line in missing:
        print(f"gpu_table: no measurement for {line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
