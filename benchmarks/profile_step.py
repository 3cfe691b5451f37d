"""Where a compiled JAX training step spends its time: a jax.profiler trace, summarised.

Builds the same step as benchmarks/train_step.py (real driver, loss and optimizer), traces
a few steps with ``jax.profiler``, reads the trace back with ``jax.profiler.ProfileData``
and attributes the duration of every executed XLA op (thunk) to a category found from the
compiled HLO: forward / input-gradient / weight-gradient convolutions, the matmuls of the
``conv_impl="patches"`` weight gradient and of the einsum up-convolution, BatchNorm/ReLU
and other elementwise fusions, reductions, copies and transposes. Prints a category table
and the most expensive ops.

    python benchmarks/profile_step.py --widths full --size 256 --batch 4 --conv-impl xla
    python benchmarks/profile_step.py --mode infer

On a CPU the op times of the two thread pools can overlap, so the column "share" is of the
summed op time, printed next to the wall time per step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import tempfile
import time

import bench_common as bc
import jax
import train_step
from jax.profiler import ProfileData

_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.+?) ([a-z][\w\-]*)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%([\w.\-]+) .*\{\s*$")


def parse_hlo(text: str) -> tuple[dict[str, list[dict]], str]:
    """Computations of an HLO module's text: name -> instructions, and the entry's name.

    Args:
      text: ``compiled.as_text()``.

    Returns:
      ({computation: [{"name", "shape", "opcode", "rest"}]}, entry computation name).
    """
    computations: dict[str, list[dict]] = {}
    entry, current = "", None
    for line in text.splitlines():
        m = _COMP.match(line)
        if m and not line.startswith(" "):
            current = m.group(1)
            computations[current] = []
            if line.startswith("ENTRY"):
                entry = current
            continue
        if current is None:
            continue
        m = _INSTR.match(line)
        if m:
            name, shape, opcode, rest = m.groups()
            computations[current].append(
                {"name": name, "shape": shape, "opcode": opcode, "rest": rest}
            )
    return computations, entry


def _op_name(instr: dict) -> str:
    m = re.search(r'op_name="([^"]*)"', instr["rest"])
    return m.group(1) if m else ""


def _conv_category(instr: dict) -> str:
    window = re.search(r"window=\{size=([\dx]+)([^}]*)\}", instr["rest"])
    sizes = [int(s) for s in window.group(1).split("x")] if window else []
    op_name = _op_name(instr)
    if "lhs_dilate" in (window.group(2) if window else ""):
        return "conv input-grad / transposed conv (XLA)"
    if sizes and max(sizes) > 3:  # a window as large as the image: a weight gradient
        return "conv weight-grad (XLA)"
    if "transpose(" in op_name:
        return "conv input-grad (XLA)"
    return "conv forward (XLA)"


def _dot_category(instr: dict) -> str:
    op_name = _op_name(instr)
    backward = "transpose(" in op_name
    if "/Conv_" in op_name and backward:
        return "conv weight-grad (patches matmuls)"
    if "Upsample2x" in op_name:
        return "up-conv einsum " + ("backward" if backward else "forward")
    return "other matmuls " + ("backward" if backward else "forward")


def categorize(computations: dict[str, list[dict]], entry: str) -> dict[str, tuple[str, str]]:
    """Entry instruction name -> (category, short description)."""
    out = {}

    def classify(instr: dict, depth: int = 0) -> str:
        opcode = instr["opcode"]
        if opcode == "convolution":
            return _conv_category(instr)
        if opcode == "dot":
            return _dot_category(instr)
        if opcode == "fusion" and depth < 3:
            called = re.search(r"calls=%([\w.\-]+)", instr["rest"])
            body = computations.get(called.group(1), []) if called else []
            for inner in body:
                if inner["opcode"] in ("convolution", "dot"):
                    return classify(inner, depth + 1)
            opcodes = {i["opcode"] for i in body}
            # XLA:CPU rewrites max-pooling's select-and-scatter gradient into a variadic
            # reduce-window carrying iota indices (a tuple output) plus index arithmetic.
            if "iota" in opcodes or "scatter" in opcodes or instr["shape"].startswith("("):
                return "max-pool with indices / its gradient"
            if "reduce" in opcodes or "reduce-window" in opcodes:
                return "reductions (BatchNorm stats, pooling, loss)"
            if opcodes <= {"parameter", "copy", "transpose", "bitcast", "slice", "pad"}:
                return "copies / transposes / pads"
            return "elementwise fusions (BatchNorm, ReLU, Adam...)"
        if opcode in ("copy", "transpose", "pad", "slice", "concatenate", "bitcast"):
            return "copies / transposes / pads"
        if opcode in ("all-reduce", "all-gather", "collective-permute"):
            return "collectives"
        return f"other ({opcode})"

    for instr in computations.get(entry, []):
        out[instr["name"]] = (classify(instr), f"{instr['shape']} {_op_name(instr)[-70:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--widths", default="full")
    parser.add_argument("--dtype", default="float32", choices=train_step.JAX_DTYPES)
    parser.add_argument("--driver", default="pmap", choices=("pmap", "mesh"))
    parser.add_argument("--upsample", default="einsum")
    parser.add_argument("--conv-impl", default="xla")
    parser.add_argument("--loss", default="dice")
    parser.add_argument("--mode", default="train", choices=("train", "infer"))
    parser.add_argument("--steps", type=int, default=2, help="traced steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--top", type=int, default=15, help="how many single ops to list")
    parser.add_argument("--trace-dir", help="keep the trace here (default: a temp dir)")
    args = parser.parse_args()
    start_load = bc.load_note()
    bench = train_step.JaxBench(
        {
            "batch": args.batch,
            "size": args.size,
            "widths": args.widths,
            "dtype": args.dtype,
            "driver": args.driver,
            "upsample": args.upsample,
            "conv_impl": args.conv_impl,
            "loss": args.loss,
            "devices": 1,
            "modes": [args.mode],
        }
    )
    bench.setup()
    bench.run(args.mode, args.warmup)
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="unet_profile_")
    with jax.profiler.trace(trace_dir):
        start = time.perf_counter()
        bench.run(args.mode, args.steps)
        wall = (time.perf_counter() - start) / args.steps
    files = sorted(
        glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True),
        key=os.path.getmtime,
    )
    if not files:
        raise SystemExit(f"no trace written under {trace_dir}")
    computations, entry = parse_hlo(bench.compiled[args.mode].as_text())
    categories = categorize(computations, entry)
    per_op: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for plane in ProfileData.from_file(files[-1]).planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in categories:
                    per_op[event.name] += event.duration_ns / 1e9 / args.steps
                    counts[event.name] += 1
    if not per_op:
        raise SystemExit("the trace holds no XLA op events (is this backend traced?)")
    total = sum(per_op.values())
    by_category: collections.Counter = collections.Counter()
    for name, seconds in per_op.items():
        by_category[categories[name][0]] += seconds
    print(
        f"### Profile of one {args.mode} step: widths={args.widths}, {args.size}x{args.size}, "
        f"batch {args.batch}, {args.dtype}, upsample={args.upsample}, "
        f"conv_impl={args.conv_impl}\n"
    )
    print(bc.machine_header(start_load=start_load))
    print(f"- wall time per step (traced): {wall:.2f} s; summed op time per step: {total:.2f} s\n")
    rows = [
        {"category": c, "s / step": s, "share %": 100 * s / total}
        for c, s in by_category.most_common()
    ]
    print(bc.markdown_table(rows, ["category", "s / step", "share %"]))
    print()
    rows = [
        {
            "op": name,
            "category": categories[name][0],
            "s / step": s,
            "share %": 100 * s / total,
            "shape, op_name": categories[name][1].replace("|", "/"),
        }
        for name, s in per_op.most_common(args.top)
    ]
    print(bc.markdown_table(rows, ["op", "category", "s / step", "share %", "shape, op_name"]))


if __name__ == "__main__":
    main()
