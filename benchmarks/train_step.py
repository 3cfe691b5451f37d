"""Training-step and inference throughput of the JAX U-Net, as a Markdown table.

Every combination of the list-valued options (--encoder, --dtype, --driver, --upsample,
--conv-impl, --xla-flags) is one variant, run in its own worker process (see bench_common); rounds
interleave the variants so that ratios taken from one table are fair on a shared machine.

    # the CPU comparison setting: batch 4, 256x256, float32, full U-Net, both up-convolutions
    python benchmarks/train_step.py --batch 4 --size 256 --upsample einsum transpose
    # the 3x3 weight-gradient fast path at the demo size
    python benchmarks/train_step.py --widths demo --size 128 --batch 8 --conv-impl xla patches
    # the ResNet-encoder U-Nets against the classic one (docs/ENCODERS.md)
    python benchmarks/train_step.py --encoder unet resnet18 resnet34 resnet50 --size 128
    # bfloat16 on a GPU, one variant at a time
    python benchmarks/train_step.py --batch 64 --dtype bfloat16 --schedule sequential

Columns: images/s (median over the timed steps, and the range), seconds per step, compile
seconds (``lower().compile()``), GFLOP per image from XLA's cost analysis of the compiled
step (per device program / per-device batch), achieved TFLOP/s, MFU against the device's
peak (GPUs: a table of dense peaks; CPUs: a large ``jnp.dot`` measured at start-up), the
peak memory (device ``memory_stats()``, else the worker's peak RSS) and XLA's own buffer
estimate. Training uses the project's drivers (``parallel.make_driver``), train state,
Adam and configured loss (soft Dice), on a fixed random batch already on the device (the
input pipeline has its own benchmark, benchmarks/input_pipeline.py). Inference is the
model's forward pass (``train=False``) returning logits, mapped like the driver.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from typing import Any

import bench_common as bc

JAX_DTYPES = ("float32", "bfloat16")


class JaxBench(bc.Bench):
    """Builds the configured U-Net, its driver and a device batch (in a worker process)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import jax

        from unet_jax.configs import default
        from unet_jax.model.factory import create_model
        from unet_jax.train import parallel
        from unet_jax.train.init_state import create_train_state
        from unet_jax.train.loop import make_loss_fn

        self.jax = jax
        self.spec = spec
        features, bridge = bc.parse_widths(spec["widths"])
        config = default.get_config()
        # The data set declares it; the PyTorch model has 13 too.
        config.num_classes = spec.get("num_classes", 13)
        config.image_size = (spec["size"], spec["size"])
        config.model.features = features
        config.model.bridge_features = bridge
        config.model.encoder = spec.get("encoder", "unet")  # --widths applies to "unet" only
        config.model.dtype = spec["dtype"]
        config.model.upsample = spec["upsample"]
        if "conv_impl" in config.model:  # once the config carries it, keep them in step
            config.model.conv_impl = spec["conv_impl"]
        config.loss = spec["loss"]
        config.batch_size = spec["batch"]

        devices = jax.devices()[: spec["devices"]] if spec["devices"] else jax.devices()
        if spec["batch"] % len(devices):
            raise ValueError(f"--batch {spec['batch']} is not divisible by {len(devices)} devices")
        self.devices = devices
        self.per_device_batch = spec["batch"] // len(devices)
        self.device = devices[0]

        # Peak first, before anything else occupies the machine's memory bandwidth.
        if self.device.platform == "cpu":
            self.peak_flops = bc.measure_cpu_matmul_peak(spec["dtype"])
            self.peak_source = f"best {spec['dtype']} jnp.dot 2048^3, start and end of run"
        else:
            self.peak_flops = bc.gpu_peak_flops(self.device.device_kind, spec["dtype"])
            self.peak_source = "table (dense)" if self.peak_flops else "unknown device"

        state = create_train_state(config, rng=jax.random.key(0), total_steps=1000)
        self.num_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
        model = create_model(config, bn_axis_name=parallel.AXIS).clone(conv_impl=spec["conv_impl"])
        self.model = model
        self.driver = parallel.make_driver(
            spec["driver"],
            model_apply=model.apply,
            loss_fn=make_loss_fn(config),
            num_classes=config.num_classes,
            devices=devices,
        )
        batch = bc.fake_batch(spec["batch"], spec["size"], config.num_classes)
        if self.driver.layout == "pmap":
            batch = {k: v.reshape((len(devices), -1) + v.shape[1:]) for k, v in batch.items()}
        self.state = self.driver.put_state(state)
        self.batch = self.driver.put_batch(batch)
        self.compiled: dict[str, Any] = {}

    def _forward(self) -> Any:
        """The inference function, mapped like the driver (pmap, or jit over a mesh)."""
        model = self.model

        def forward(state, images):
            variables = {"params": state.params, "batch_stats": state.batch_stats}
            return model.apply(variables, images, train=False)

        if self.driver.name == "pmap":
            pmap_devices = None if self.devices == self.jax.local_devices() else self.devices
            return self.jax.pmap(forward, axis_name="batch", devices=pmap_devices)
        return self.jax.jit(forward)

    def setup(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "platform": self.device.platform,
            "device_kind": self.device.device_kind,
            "num_devices": len(self.devices),
            "dtype": self.spec["dtype"],
            "peak_flops": self.peak_flops,
            "peak_source": self.peak_source,
            "num_params": self.num_params,
            "flops_source": "XLA cost analysis",
        }
        for mode in self.spec["modes"]:
            fn = self.driver.train_step if mode == "train" else self._forward()
            images = self.batch if mode == "train" else self.batch["image"]
            start = time.perf_counter()
            compiled = fn.lower(self.state, images).compile()
            facts[f"{mode}_compile_s"] = time.perf_counter() - start
            cost = compiled.cost_analysis()
            if isinstance(cost, list):  # older JAX: one dict per program
                cost = cost[0]
            if cost and cost.get("flops"):
                facts[f"{mode}_flops_per_image"] = cost["flops"] / self.per_device_batch
            memory = compiled.memory_analysis()
            if memory is not None:
                facts[f"{mode}_xla_bytes"] = (
                    memory.temp_size_in_bytes
                    + memory.argument_size_in_bytes
                    + memory.output_size_in_bytes
                    - memory.alias_size_in_bytes
                )
            self.compiled[mode] = compiled
        return facts

    def next_train_batch(self) -> Any:
        """The device batch of the next training step (here always the same random one)."""
        return self.batch

    def run(self, mode: str, steps: int) -> list[float]:
        compiled = self.compiled[mode]
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            if mode == "train":
                self.state, metrics = compiled(self.state, self.next_train_batch())
                self.jax.block_until_ready((self.state, metrics))
            else:
                compiled(self.state, self.batch["image"]).block_until_ready()
            times.append(time.perf_counter() - start)
        return times

    def remeasure_peak(self) -> float | None:
        if self.device.platform != "cpu":
            return None
        return bc.measure_cpu_matmul_peak(self.spec["dtype"])

    def memory(self) -> tuple[int, str]:
        stats = self.device.memory_stats()
        if stats and "peak_bytes_in_use" in stats:
            return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
        return bc.host_peak_rss_bytes(), "process peak RSS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared with compare.py."""
    parser.add_argument("--batch", type=int, default=4, help="global batch size")
    parser.add_argument("--size", type=int, default=256, help="square image side")
    parser.add_argument("--widths", default="full", help="full, demo, tiny or '16,32:64'")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per mode")
    parser.add_argument("--mode", choices=("train", "infer", "both"), default="both")
    parser.add_argument(
        "--schedule",
        choices=("interleaved", "sequential"),
        default="interleaved",
        help="interleaved: all variants alive, one step each per round (shared CPUs); "
        "sequential: one variant at a time (GPUs, where memory is the limit)",
    )
    parser.add_argument("--loss", default="dice", help="config.loss (dice, ce, dice_ce)")


def add_jax_arguments(parser: argparse.ArgumentParser) -> None:
    """JAX variant options (each takes several values; all combinations run)."""
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=JAX_DTYPES)
    parser.add_argument("--driver", nargs="+", default=["pmap"], choices=("pmap", "mesh"))
    parser.add_argument("--upsample", nargs="+", default=["einsum"])
    parser.add_argument("--conv-impl", nargs="+", default=["xla"])
    parser.add_argument(
        "--xla-flags",
        nargs="+",
        default=["none"],
        help="extra XLA flags per variant, without the leading '--', several joined by "
        "commas; 'none' for none. E.g. none xla_cpu_experimental_ynn_fusion_type=",
    )
    parser.add_argument("--devices", type=int, default=0, help="number of devices to use (0: all)")
    parser.add_argument(
        "--encoder",
        nargs="+",
        default=["unet"],
        help="config.model.encoder: unet (sized by --widths), resnet18, resnet34, resnet50",
    )


def modes(args: argparse.Namespace) -> tuple[str, ...]:
    return ("train", "infer") if args.mode == "both" else (args.mode,)


def jax_variants(args: argparse.Namespace) -> list[bc.Variant]:
    """One worker per combination of the JAX list options."""
    variants = []
    combos = itertools.product(
        args.encoder, args.dtype, args.driver, args.upsample, args.conv_impl, args.xla_flags
    )
    for encoder, dtype, driver, upsample, conv_impl, flags in combos:
        spec = {
            "batch": args.batch,
            "size": args.size,
            "widths": args.widths,
            "encoder": encoder,
            "dtype": dtype,
            "driver": driver,
            "upsample": upsample,
            "conv_impl": conv_impl,
            "loss": args.loss,
            "devices": args.devices,
            "modes": list(modes(args)),
        }
        label = f"jax {dtype} {driver} up={upsample} conv={conv_impl}"
        if encoder != "unet":
            label = f"{encoder} {label}"
        env = {}
        if flags != "none":
            extra = " ".join("--" + f.strip() for f in flags.split(",") if f.strip())
            env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + extra).strip()
            label += f" {extra}"
        argv = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
        variants.append(
            bc.Variant(label=label, argv=argv, env=env, modes=modes(args), batch=args.batch)
        )
    return variants


def report(
    results: list[dict[str, Any]],
    *,
    title: str,
    baseline: str | None = None,
    start_load: str = "",
) -> str:
    """Markdown: machine header, the table (with ratios to ``baseline``) and the peaks.

    Args:
      results: run_variants results.
      title: a heading line.
      baseline: label whose img/s the ratio column divides by (per mode and batch size);
        None: the first.
      start_load: ``uptime`` at the start of the run.

    Returns:
      The Markdown text.
    """
    # One CPU peak per dtype: the best measurement of any worker (all share the machine;
    # the load moves the measurement, the best one is the closest to the real peak).
    peaks: dict[tuple[str, str], tuple[float, str]] = {}
    for r in results:
        s = r.get("setup") or {}
        if s.get("peak_flops"):
            key = (s["platform"], s["dtype"])
            if key not in peaks or s["peak_flops"] > peaks[key][0]:
                peaks[key] = (s["peak_flops"], s["peak_source"])
    rows = []
    for r in results:
        s = r.get("setup") or {}
        peak = peaks.get((s.get("platform"), s.get("dtype")), (None, ""))
        row = bc.summarize(r, peak_flops=peak[0], peak_source=peak[1])
        xla_bytes = s.get(f"{r['mode']}_xla_bytes")
        row["XLA GiB"] = xla_bytes / 2**30 if xla_bytes else None
        rows.append(row)
    base = baseline or (rows[0]["variant"] if rows else None)
    base_rate = {
        (row["mode"], row["batch"]): row["img/s"] for row in rows if row["variant"] == base
    }
    for row in rows:
        ref = base_rate.get((row["mode"], row["batch"]))
        row["ratio"] = row["img/s"] / ref if row.get("img/s") and ref else None
    columns = list(bc.TABLE_COLUMNS)
    columns.insert(columns.index("img/s") + 1, "ratio")
    columns.insert(columns.index("peak mem GiB") + 1, "XLA GiB")
    devices = {
        (s.get("platform"), s.get("device_kind"), s.get("num_devices"))
        for r in results
        if (s := r.get("setup"))
    }
    params = {s.get("num_params") for r in results if (s := r.get("setup"))} - {None}
    lines = [
        f"### {title}",
        "",
        bc.machine_header(
            {
                "devices": ", ".join(f"{p} {k} x{n}" for p, k, n in sorted(devices, key=str)),
                "parameters": ", ".join(f"{p:,}" for p in sorted(params)),
            },
            start_load=start_load,
        ),
        "",
        bc.markdown_table(rows, columns),
        "",
        f"ratio: img/s divided by that of `{base}` in the same mode and batch size.",
    ]
    for (platform, dtype), (value, source) in sorted(peaks.items()):
        lines.append(f"MFU peak {platform} {dtype}: {value / 1e12:.3f} TFLOP/s ({source}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_arguments(parser)
    add_jax_arguments(parser)
    parser.add_argument("--baseline", help="variant label the ratio column refers to")
    args = parser.parse_args()
    if args.worker:
        bc.worker_main(JaxBench, args.worker)
        return
    bc.parse_widths(args.widths)  # fail early on a bad value
    start_load = bc.load_note()
    variants = jax_variants(args)
    results = bc.run_variants(
        variants, warmup=args.warmup, steps=args.steps, schedule=args.schedule
    )
    title = (
        f"JAX U-Net, widths={args.widths}, {args.size}x{args.size}, batch {args.batch}, "
        f"{args.warmup} warmup + {args.steps} timed steps, {args.schedule}"
    )
    print(report(results, title=title, baseline=args.baseline, start_load=start_load))


if __name__ == "__main__":
    main()
