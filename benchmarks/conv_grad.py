"""Per-layer times of the U-Net's 3x3 convolutions: forward, input and weight gradients.

For every 3x3 convolution of the U-Net at the given size and batch it times, interleaved
over rounds in one process:

- XLA: the forward convolution (``fwd xla``), its input gradient (``dx xla``) and weight
  gradient (``dw xla``), as ``jax.vjp`` of ``lax.conv_general_dilated`` computes them;
- ``dw shifts``: the weight gradient as one [C, BHW] x [BHW, O] matmul per kernel tap
  over a shifted view of the padded input (``UNet(conv_impl="patches")``);
- ``dw blocks``: the same per-tap matmuls over blocks of about
  ``conv_fast.ROW_BLOCK_PIXELS`` output rows at a time in a ``lax.scan``
  (``conv_fast.kernel_grad_by_row_blocks``, what ``conv_impl="patches"`` uses on large
  images);
- ``dw im2col``: the nine shifted views concatenated into an im2col matrix [BHW, 9C],
  then one [9C, BHW] x [BHW, O] matmul;
- ``fwd taps`` / ``dx taps``: the forward convolution and the input gradient (the
  convolution of dy with the flipped kernel) as one [BHW, C] x [C, O] matmul per tap;
- ``fwd wino`` / ``dx wino`` / ``dw wino``: Winograd F(2x2, 3x3), 16 batched matmuls of
  transformed 4x4 tiles (2.25x fewer FLOPs), ``conv_matmul.winograd_conv`` and
  ``unet_jax.model.conv_fast.winograd_kernel_grad``;
- ``dw lax_patches`` (opt-in, --lax-patches): ``lax.conv_general_dilated_patches`` for
  the im2col matrix, then one matmul (its one-hot convolution costs 9C/O times the FLOPs
  of the gradient itself);
- when ``import torch`` works: PyTorch's own (``fwd torch`` / ``dx torch`` / ``dw torch``)
  on channels_last tensors, ``torch.ops.aten.convolution_backward`` for the gradients
  (oneDNN on a CPU), --torch-threads threads.

Every alternative is checked against XLA's result before it is timed. The ``sum``
columns add forward + input + weight gradient: ``auto`` as ``conv_impl="auto"`` computes
them on a CPU, ``best jax`` the fastest JAX variant of each of the three, ``torch``
PyTorch's.

    python benchmarks/conv_grad.py --widths full --size 256 --batch 4
    python benchmarks/conv_grad.py --widths demo --size 128 --batch 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import bench_common as bc
import conv_matmul
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from unet_jax.model import conv_fast
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


def _flipped(w):
    return jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)


def variants(lax_patches: bool) -> dict[str, Callable]:
    """name -> jitted fn(x, w, dy); the name's first word says what it computes."""
    out = {
        "fwd xla": lambda x, w, dy: _conv(x, w),
        "fwd taps": lambda x, w, dy: conv_matmul.conv_by_taps(x, w, SAME),
        "fwd wino": lambda x, w, dy: conv_matmul.winograd_conv(x, w),
        "dx xla": lambda x, w, dy: jax.vjp(lambda x_: _conv(x_, w), x)[1](dy)[0],
        "dx taps": lambda x, w, dy: conv_matmul.conv_by_taps(dy, _flipped(w), SAME),
        "dx wino": lambda x, w, dy: conv_matmul.winograd_input_grad(dy, w),
        "dw xla": lambda x, w, dy: jax.vjp(lambda w_: _conv(x, w_), w)[1](dy)[0],
        "dw shifts": lambda x, w, dy: kernel_grad_by_shifts(x, dy, w.shape, SAME),
        "dw blocks": lambda x, w, dy: conv_fast.kernel_grad_by_row_blocks(x, dy, w.shape, SAME),
        "dw im2col": lambda x, w, dy: _im2col_dw(x, dy),
        "dw wino": lambda x, w, dy: conv_fast.winograd_kernel_grad(x, dy),
    }
    if lax_patches:
        out["dw lax_patches"] = lambda x, w, dy: _lax_patches_dw(x, dy)
    return {k: jax.jit(v) for k, v in out.items()}


def torch_variants(threads: int) -> tuple[dict[str, Callable], Callable] | None:
    """PyTorch's forward / input / weight gradient on channels_last tensors, or None.

    Returns:
      (name -> fn(xt, wt, dyt) returning an NHWC/HWIO numpy-convertible tensor,
      a converter from the JAX (x, w, dy) to channels_last torch tensors).
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    cl = torch.channels_last

    def to_torch(x, w, dy):
        xt = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous(memory_format=cl)
        wt = torch.from_numpy(np.array(w)).permute(3, 2, 0, 1).contiguous(memory_format=cl)
        dyt = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous(memory_format=cl)
        return xt, wt, dyt

    def backward(xt, wt, dyt, mask):
        return torch.ops.aten.convolution_backward(
            dyt, xt, wt, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask
        )

    def fwd(xt, wt, dyt):
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, padding=1).permute(0, 2, 3, 1)

    def dx(xt, wt, dyt):
        with torch.no_grad():
            return backward(xt, wt, dyt, [True, False, False])[0].permute(0, 2, 3, 1)

    def dw(xt, wt, dyt):
        with torch.no_grad():
            return backward(xt, wt, dyt, [False, True, False])[1].permute(2, 3, 1, 0)

    return {"fwd torch": fwd, "dx torch": dx, "dw torch": dw}, to_torch


def auto_weight_grad(side: int, c_in: int, c_out: int) -> str:
    """The variant ``conv_impl="auto"`` computes this layer's weight gradient with on a CPU."""
    route = conv_fast.weight_grad_route((3, 3, c_in, c_out), SAME, side * side)
    return {"winograd": "dw wino", "blocks": "dw blocks", "xla": "dw xla"}[route]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="full")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after 1 warmup)")
    parser.add_argument("--lax-patches", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch's columns out")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--layers", nargs="*", help="only these layer names (e.g. enc1.b)")
    args = parser.parse_args()
    features, bridge = bc.parse_widths(args.widths)
    start_load = bc.load_note()
    fns = variants(args.lax_patches)
    torch_fns = None
    if not args.no_torch and args.dtype == "float32":
        torch_fns = torch_variants(args.torch_threads)
    to_torch = None
    if torch_fns is not None:
        torch_fns, to_torch = torch_fns
        fns.update(torch_fns)
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
        jax_inputs = (x, w, dy)
        inputs[name] = {v: jax_inputs for v in fns}
        if to_torch is not None:
            torch_inputs = to_torch(x, w, dy)
            inputs[name].update({v: torch_inputs for v in torch_fns})
        references = {s: fns[f"{s} xla"](x, w, dy).astype(jnp.float32) for s in ("fwd", "dx", "dw")}
        for v, fn in fns.items():
            got = np.asarray(fn(*inputs[name][v]), np.float32)  # also compiles and warms up
            reference = references[v.split()[0]]
            scale = float(jnp.max(jnp.abs(reference)))
            err = float(np.max(np.abs(got - np.asarray(reference))))
            tol = 2e-2 if args.dtype == "bfloat16" else 1e-4
            if err > tol * scale:
                raise AssertionError(f"{v} differs from XLA on {name}: {err} vs {scale}")
    times = {(s[0], v): [] for s in shapes for v in fns}
    peak = bc.measure_cpu_matmul_peak(args.dtype)
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True, file=sys.stderr)
        for name, *_ in shapes:
            for v, fn in fns.items():
                start = time.perf_counter()
                out = fn(*inputs[name][v])
                if hasattr(out, "block_until_ready"):
                    out.block_until_ready()
                times[(name, v)].append(time.perf_counter() - start)
    sums = ["sum auto", "sum best jax"] + (["sum torch"] if torch_fns else [])
    rows, totals = [], dict.fromkeys(list(fns) + sums, 0.0)
    total_flops = 0
    for name, side, c_in, c_out in shapes:
        flops = 2 * args.batch * side * side * 9 * c_in * c_out
        total_flops += flops
        row = {"layer": name, "HxW": f"{side}x{side}", "C->O": f"{c_in}->{c_out}"}
        row["GFLOP"] = flops / 1e9
        t = {v: statistics.median(times[(name, v)]) for v in fns}
        t["sum auto"] = t["fwd xla"] + t["dx xla"] + t[auto_weight_grad(side, c_in, c_out)]
        t["sum best jax"] = sum(
            min(t[v] for v in fns if v.startswith(stage) and "torch" not in v)
            for stage in ("fwd", "dx", "dw")
        )
        if torch_fns:
            t["sum torch"] = t["fwd torch"] + t["dx torch"] + t["dw torch"]
        for v, seconds in t.items():
            totals[v] += seconds
            row[f"{v} ms"] = seconds * 1e3
        rows.append(row)
    rows.append(
        {"layer": "total", "GFLOP": total_flops / 1e9}
        | {f"{v} ms": s * 1e3 for v, s in totals.items()}
    )
    rows.append(
        {"layer": "total GFLOP/s"} | {f"{v} ms": total_flops / s / 1e9 for v, s in totals.items()}
    )
    columns = ["layer", "HxW", "C->O", "GFLOP"] + [f"{v} ms" for v in totals]
    print(
        f"### 3x3 convolutions of the U-Net (widths={args.widths}, {args.size}x{args.size}, "
        f"batch {args.batch}, {args.dtype}), median of {args.rounds} interleaved rounds\n"
    )
    extra = {f"{args.dtype} jnp.dot 2048^3 peak measured": f"{peak / 1e9:.0f} GFLOP/s"}
    if torch_fns:
        import torch

        extra["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads, channels_last"
    print(bc.machine_header(extra, start_load=start_load) + "\n")
    print(bc.markdown_table(rows, columns))
    print(
        "\nms per call (median). GFLOP: the direct convolution's multiply-adds x2, the same "
        "for forward, dx and dw; the `total GFLOP/s` row divides it by the total time (for "
        "Winograd, which does 2.25x fewer, an effective rate). `sum auto`: fwd xla + dx xla "
        '+ the weight gradient `conv_impl="auto"` takes on a CPU (dw blocks for >= '
        f"{conv_fast.PATCHES_MIN_CHANNELS} channels and >= {conv_fast.PATCHES_MIN_PIXELS} "
        f"pixels, dw wino for >= {conv_fast.WINOGRAD_MIN_CHANNELS} channels and >= "
        f"{conv_fast.WINOGRAD_MIN_PIXELS} pixels below that, else dw xla)."
    )


if __name__ == "__main__":
    main()
