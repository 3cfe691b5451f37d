"""Per-layer times of the U-Net's 3x3 convolutions: forward, input and weight gradients.

For every 3x3 convolution of the U-Net at the given size and batch it times, interleaved
over rounds in one process: the forward convolution, XLA's input gradient, XLA's weight
gradient, and weight-gradient alternatives computed as matmuls:

- ``shifts``: one [C, BHW] x [BHW, O] matmul per kernel tap over a shifted view of the
  padded input (what ``UNet(conv_impl="patches")`` uses),
- ``im2col``: the nine shifted views concatenated into an im2col matrix [BHW, 9C], then
  one [9C, BHW] x [BHW, O] matmul,
- ``lax_patches`` (opt-in, --lax-patches): ``lax.conv_general_dilated_patches`` for the
  im2col matrix, then one matmul. The patches op is itself a convolution with a one-hot
  [3, 3, C, 9C] kernel: 81 C^2 multiply-adds per pixel for a copy, 9C/O times the FLOPs of
  the weight gradient itself.

All alternatives are checked against XLA's weight gradient before timing.

    python benchmarks/conv_grad.py --widths full --size 256 --batch 4
    python benchmarks/conv_grad.py --widths demo --size 128 --batch 8 --lax-patches
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import bench_common as bc
import jax
import jax.numpy as jnp
from jax import lax

from unet_jax.model.conv_fast import kernel_grad_by_shifts

DN = ("NHWC", "HWIO", "NHWC")
SAME = ((1, 1), (1, 1))


def unet_conv_shapes(size: int, features, bridge: int) -> list[tuple[str, int, int, int]]:
    """(name, side, c_in, c_out) of every 3x3 convolution of the U-Net, in order."""
    shapes, side, c = [], size, 3
    for i, width in enumerate(features):
        shapes += [(f"enc{i}.a", side, c, width), (f"enc{i}.b", side, width, width)]
        c, side = width, side // 2
    shapes += [("bridge.a", side, c, bridge), ("bridge.b", side, bridge, bridge)]
    for i, width in enumerate(reversed(features)):
        side *= 2
        shapes += [(f"dec{i}.a", side, 2 * width, width), (f"dec{i}.b", side, width, width)]
    return shapes


def _conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)


def _im2col_dw(x, dy):
    _, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate(
        [xp[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=-1
    )
    grad = lax.dot_general(
        cols.reshape(-1, 9 * c), dy.reshape(-1, dy.shape[-1]), (((0,), (0,)), ((), ()))
    )
    return grad.reshape(3, 3, c, dy.shape[-1])


def _lax_patches_dw(x, dy):
    c = x.shape[-1]
    # Feature order of the patches: input channel major, then kernel row, kernel column.
    cols = lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "SAME", dimension_numbers=DN)
    grad = lax.dot_general(
        cols.reshape(-1, 9 * c), dy.reshape(-1, dy.shape[-1]), (((0,), (0,)), ((), ()))
    )
    return grad.reshape(c, 3, 3, dy.shape[-1]).transpose(1, 2, 0, 3)


def variants(lax_patches: bool) -> dict[str, Callable]:
    """name -> jitted fn(x, w, dy)."""
    out = {
        "forward": lambda x, w, dy: _conv(x, w),
        "dx xla": lambda x, w, dy: jax.vjp(lambda x_: _conv(x_, w), x)[1](dy)[0],
        "dw xla": lambda x, w, dy: jax.vjp(lambda w_: _conv(x, w_), w)[1](dy)[0],
        "dw shifts": lambda x, w, dy: kernel_grad_by_shifts(x, dy, w.shape, SAME),
        "dw im2col": lambda x, w, dy: _im2col_dw(x, dy),
    }
    if lax_patches:
        out["dw lax_patches"] = lambda x, w, dy: _lax_patches_dw(x, dy)
    return {k: jax.jit(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="full")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after 1 warmup)")
    parser.add_argument("--lax-patches", action="store_true")
    parser.add_argument("--layers", nargs="*", help="only these layer names (e.g. enc1.b)")
    args = parser.parse_args()
    features, bridge = bc.parse_widths(args.widths)
    start_load = bc.load_note()
    fns = variants(args.lax_patches)
    shapes = unet_conv_shapes(args.size, features, bridge)
    if args.layers:
        shapes = [s for s in shapes if s[0] in args.layers]
    key = jax.random.key(0)
    inputs = {}
    for name, side, c_in, c_out in shapes:
        k1, k2, k3, key = jax.random.split(key, 4)
        x = jax.random.normal(k1, (args.batch, side, side, c_in), args.dtype)
        w = (jax.random.normal(k2, (3, 3, c_in, c_out)) / (3 * c_in**0.5)).astype(args.dtype)
        dy = jax.random.normal(k3, (args.batch, side, side, c_out), args.dtype)
        reference = fns["dw xla"](x, w, dy).astype(jnp.float32)
        scale = float(jnp.max(jnp.abs(reference)))
        for v, fn in fns.items():
            if v.startswith("dw") and v != "dw xla":
                err = float(jnp.max(jnp.abs(fn(x, w, dy).astype(jnp.float32) - reference)))
                tol = 2e-2 if args.dtype == "bfloat16" else 1e-4
                if err > tol * scale:
                    raise AssertionError(f"{v} differs from XLA on {name}: {err} vs {scale}")
            else:
                fn(x, w, dy).block_until_ready()  # compile and warm up
        inputs[name] = (x, w, dy)
    times = {(s[0], v): [] for s in shapes for v in fns}
    peak = bc.measure_cpu_matmul_peak(args.dtype)
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True, file=__import__("sys").stderr)
        for name, *_ in shapes:
            for v, fn in fns.items():
                start = time.perf_counter()
                fn(*inputs[name]).block_until_ready()
                times[(name, v)].append(time.perf_counter() - start)
    rows, totals = [], dict.fromkeys(fns, 0.0)
    total_flops = 0
    for name, side, c_in, c_out in shapes:
        flops = 2 * args.batch * side * side * 9 * c_in * c_out
        total_flops += flops
        row = {"layer": name, "HxW": f"{side}x{side}", "C->O": f"{c_in}->{c_out}"}
        row["GFLOP"] = flops / 1e9
        for v in fns:
            t = statistics.median(times[(name, v)])
            totals[v] += t
            row[f"{v} ms"] = t * 1e3
            row[f"{v} GFLOP/s"] = flops / t / 1e9
        rows.append(row)
    total = {"layer": "total", "GFLOP": total_flops / 1e9}
    for v in fns:
        total[f"{v} ms"] = totals[v] * 1e3
        total[f"{v} GFLOP/s"] = total_flops / totals[v] / 1e9
    rows.append(total)
    columns = ["layer", "HxW", "C->O", "GFLOP"]
    for v in fns:
        columns += [f"{v} ms", f"{v} GFLOP/s"]
    print(
        f"### 3x3 convolutions of the U-Net (widths={args.widths}, {args.size}x{args.size}, "
        f"batch {args.batch}, {args.dtype}), median of {args.rounds} interleaved rounds\n"
    )
    print(bc.machine_header(start_load=start_load))
    print(f"- {args.dtype} jnp.dot 2048^3 peak measured: {peak / 1e9:.0f} GFLOP/s\n")
    print(bc.markdown_table(rows, columns))
    print(
        "\nGFLOP counts the convolution's multiply-adds x2 (the same for forward, dx, dw); "
        "the lax_patches column spends extra FLOPs on its one-hot convolution."
    )


if __name__ == "__main__":
    main()
