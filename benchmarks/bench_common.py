"""Shared pieces of the training-step benchmarks (JAX and PyTorch).

- Model sizes (``WIDTHS``) and the analytic FLOP count of the U-Net's convolutions.
- Peak FLOP/s for MFU: a table for GPUs, a measured ``jnp.dot`` matmul for CPUs.
- Peak memory: device ``memory_stats()`` where the backend has it, else the process' RSS.
- A worker protocol: every benchmark variant (JAX with some options, PyTorch eager,
  PyTorch compiled, other XLA flags...) lives in its own subprocess that builds and
  compiles once, then times steps on request. The orchestrator (:func:`run_variants`)
  interleaves rounds over the workers, so slow drifts of a shared machine's load hit all
  variants alike and ratios measured in one run are meaningful; each worker's peak RSS is
  its own.
- Markdown tables.

The scripts import this module as a sibling (``python benchmarks/train_step.py``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Model sizes by name: (encoder widths, bridge width).
WIDTHS: dict[str, tuple[tuple[int, ...], int]] = {
    "full": ((64, 128, 256, 512), 1024),  # the reference U-Net, 31,038,413 parameters
    "demo": ((16, 32, 64, 128), 256),  # unet_jax/configs/demo.py
    "tiny": ((4, 8), 16),  # unet_jax/configs/tiny.py
}

# Dense peak FLOP/s per device by (device kind substring, dtype). H100 SXM: 989 TFLOP/s
# bf16 tensor core, 494.5 TF32 (what XLA and cuDNN use for float32 convolutions/matmuls by
# default on Hopper). H200 has the H100's compute with more, faster memory.
GPU_PEAK_TFLOPS: dict[tuple[str, str], float] = {
    ("H100", "bfloat16"): 989.0,
    ("H100", "float32"): 494.5,
    ("H200", "bfloat16"): 989.0,
    ("H200", "float32"): 494.5,
}

PROTOCOL_PREFIX = "@@BENCH@@ "  # marks the worker's protocol lines on its stdout


def parse_widths(text: str) -> tuple[tuple[int, ...], int]:
    """Parses --widths: a name from WIDTHS or "16,32,64,128:256" (encoder widths:bridge).

    Args:
      text: the flag value.

    Returns:
      (encoder widths, bridge width).

    Raises:
      ValueError: for an unknown name or a malformed list.
    """
    if text in WIDTHS:
        return WIDTHS[text]
    try:
        encoder, bridge = text.split(":")
        widths = tuple(int(w) for w in encoder.split(","))
        bridge_width = int(bridge)
    except ValueError:
        raise ValueError(
            f"--widths must be one of {sorted(WIDTHS)} or like '16,32,64,128:256', got {text!r}"
        ) from None
    if not widths or min(widths + (bridge_width,)) < 1:
        raise ValueError(f"--widths needs positive widths, got {text!r}")
    return widths, bridge_width


def unet_conv_flops_per_image(
    *,
    size: int,
    features: Sequence[int],
    bridge_features: int,
    in_channels: int = 3,
    num_classes: int = 13,
) -> int:
    """Forward FLOPs (2 per multiply-add) of the U-Net's convolutions for one image.

    Counts the 3x3 convolutions, the 2x2 stride-2 up-convolutions and the 1x1 head, i.e.
    everything that is a matmul; BatchNorm, ReLU, pooling and the loss are left out (they
    are a few percent). An independent oracle for the XLA cost analysis.

    Args:
      size: square input side (a multiple of 2**len(features)).
      features: encoder widths.
      bridge_features: bridge width.
      in_channels: image channels.
      num_classes: head output channels.

    Returns:
      FLOPs per image.
    """
    flops, side, c_in = 0, size, in_channels

    def block(pixels: int, c: int, width: int) -> int:
        return 2 * pixels * 9 * (c * width + width * width)

    for width in features:
        flops += block(side * side, c_in, width)
        c_in, side = width, side // 2
    flops += block(side * side, c_in, bridge_features)
    c_in = bridge_features
    for width in reversed(features):
        side *= 2
        flops += 2 * (side * side) * c_in * width  # 2x2 stride-2: one tap per output pixel
        flops += block(side * side, 2 * width, width)
        c_in = width
    return flops + 2 * side * side * c_in * num_classes


def load_note() -> str:
    """``uptime``'s output (load averages tell how shared the machine was)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


START_DATE = datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def machine_header(extra: dict[str, str] | None = None, *, start_load: str = "") -> str:
    """A few Markdown lines describing where and when a table was measured.

    Args:
      extra: more "key: value" lines.
      start_load: ``load_note()`` taken when the run started.

    Returns:
      Markdown list lines.
    """
    lines = [
        f"- date: {START_DATE} (start)",
        f"- machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}",
        f"- load at start: {start_load or '-'}",
        f"- load at end: {load_note()}",
        f"- command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def measure_cpu_matmul_peak(dtype: str = "float32", *, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of a large ``jnp.dot`` on the default JAX CPU device.

    The reference for CPU MFU: what XLA:CPU's matmul reaches on this machine, now, under
    its current load (a CPU's nominal peak is not reachable and depends on clocks).

    Args:
      dtype: "float32" or "bfloat16".
      n: matrix side.
      reps: timed repetitions (the best counts).

    Returns:
      FLOP/s.
    """
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def gpu_peak_flops(device_kind: str, dtype: str) -> float | None:
    """Dense peak FLOP/s of a known GPU (``GPU_PEAK_TFLOPS``), None when unknown."""
    for (kind, table_dtype), tflops in GPU_PEAK_TFLOPS.items():
        if kind.lower() in device_kind.lower() and table_dtype == dtype:
            return tflops * 1e12
    return None


def host_peak_rss_bytes() -> int:
    """This process' peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def format_number(value: Any) -> str:
    """Short human formatting: 3 significant digits, no exponent above 1e-3."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        if abs(value) >= 1e-3:
            return f"{value:.3f}"
        return f"{value:.2g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Renders rows (dicts) as a Markdown table; numbers right-aligned, None as "-"."""
    cell = format_number

    numeric = [
        any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows)
        for c in columns
    ]
    out = ["| " + " | ".join(columns) + " |"]
    out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for r in rows:
        out.append("| " + " | ".join(cell(r.get(c)) for c in columns) + " |")
    return "\n".join(out)


def fake_batch(
    batch: int, size: int, num_classes: int = 13, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random uint8 images and labels [B, S, S] (0..num_classes-1, a corner ignored)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, (batch, size, size)).astype(np.uint8)
    labels[:, :4, :4] = 255
    images = rng.integers(0, 256, (batch, size, size, 3)).astype(np.uint8)
    return {"image": images, "label": labels}


# --------------------------------------------------------------------------- workers


class Bench:
    """What a worker runs. Subclasses build in ``__init__`` (the spec is a JSON dict).

    ``setup`` compiles/warms up and returns static facts (FLOPs, compile seconds...);
    ``run(mode, steps)`` times ``steps`` steps of ``mode`` ("train" or "infer") and returns
    the per-step seconds; ``memory`` returns (peak bytes, source).
    """

    def setup(self) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, mode: str, steps: int) -> list[float]:
        raise NotImplementedError

    def memory(self) -> tuple[int, str]:
        return host_peak_rss_bytes(), "process peak RSS"

    def remeasure_peak(self) -> float | None:
        """The device's peak FLOP/s measured again after the timed steps (CPU: the load
        may have changed since start-up); None where the peak is a table value."""
        return None


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def worker_main(make_bench: Callable[[dict[str, Any]], Bench], spec_json: str) -> None:
    """Serves one benchmark variant over stdin/stdout until told to quit.

    Commands (one per line): ``run <mode> <steps>``, ``memory``, ``quit``. Replies are
    JSON lines prefixed with PROTOCOL_PREFIX; anything else a library prints is ignored.

    Args:
      make_bench: builds the Bench from the spec.
      spec_json: the variant's spec as JSON.
    """
    try:
        bench = make_bench(json.loads(spec_json))
        _send({"ready": bench.setup()})
    except Exception as e:  # reported to the orchestrator, which shows it in the table
        _send({"error": f"{type(e).__name__}: {e}"})
        raise
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "quit":
            return
        try:
            if parts[0] == "run":
                _send({"times": bench.run(parts[1], int(parts[2]))})
            elif parts[0] == "memory":
                peak, source = bench.memory()
                _send({"peak_bytes": peak, "source": source, "peak_flops": bench.remeasure_peak()})
            else:
                _send({"error": f"unknown command {line.strip()!r}"})
        except Exception as e:
            _send({"error": f"{type(e).__name__}: {e}"})


@dataclasses.dataclass
class Variant:
    """One benchmark variant: a label, the worker command line and its environment."""

    label: str
    argv: list[str]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    modes: tuple[str, ...] = ("train", "infer")
    batch: int = 1


class _Worker:
    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        env = dict(os.environ)
        env.update(variant.env)
        self.proc = subprocess.Popen(
            variant.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                return json.loads(line[len(PROTOCOL_PREFIX) :])
        return {"error": f"worker exited with code {self.proc.wait()}"}

    def command(self, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def run_variants(
    variants: Sequence[Variant],
    *,
    warmup: int,
    steps: int,
    schedule: str = "interleaved",
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[dict[str, Any]]:
    """Times every variant's modes and returns one result dict per (variant, mode).

    Args:
      variants: the variants (each started as its own worker process).
      warmup: untimed steps per mode after setup.
      steps: timed steps per mode.
      schedule: "interleaved" (all workers alive; each round times one step of every
        variant in turn, so load drifts hit all alike; for a shared CPU) or "sequential"
        (one worker at a time, so only one holds memory; for a GPU).
      log: progress messages.

    Returns:
      Dicts with ``label``, ``mode``, ``batch``, ``times`` (seconds per step), the
      worker's setup facts (``setup``), ``peak_bytes``/``memory_source`` and ``error``.
    """
    if schedule not in ("interleaved", "sequential"):
        raise ValueError(f"schedule must be 'interleaved' or 'sequential', got {schedule!r}")
    results = {
        (v.label, m): {"label": v.label, "mode": m, "batch": v.batch, "times": [], "error": None}
        for v in variants
        for m in v.modes
    }

    def start(variant: Variant) -> _Worker | None:
        log(f"[{variant.label}] starting, compiling")
        worker = _Worker(variant)
        reply = worker.receive()
        if "error" in reply:
            for m in variant.modes:
                results[(variant.label, m)]["error"] = reply["error"]
            worker.close()
            log(f"[{variant.label}] failed: {reply['error']}")
            return None
        for m in variant.modes:
            results[(variant.label, m)]["setup"] = reply["ready"]
        for m in variant.modes:
            if warmup:
                reply = worker.command(f"run {m} {warmup}")
                if "error" in reply:
                    results[(variant.label, m)]["error"] = reply["error"]
        return worker

    def time_one(worker: _Worker, n: int) -> None:
        for m in worker.variant.modes:
            result = results[(worker.variant.label, m)]
            if result["error"]:
                continue
            reply = worker.command(f"run {m} {n}")
            if "error" in reply:
                result["error"] = reply["error"]
            else:
                result["times"].extend(reply["times"])

    def finish(worker: _Worker) -> None:
        reply = worker.command("memory")
        for m in worker.variant.modes:
            result = results[(worker.variant.label, m)]
            result["peak_bytes"] = reply.get("peak_bytes")
            result["memory_source"] = reply.get("source")
            setup = result.get("setup") or {}
            if reply.get("peak_flops") and setup.get("peak_flops"):
                setup["peak_flops"] = max(setup["peak_flops"], reply["peak_flops"])
        worker.close()

    if schedule == "sequential":
        for variant in variants:
            worker = start(variant)
            if worker is not None:
                time_one(worker, steps)
                finish(worker)
                log(f"[{variant.label}] done")
    else:
        workers = [w for w in (start(v) for v in variants) if w is not None]
        try:
            for r in range(steps):
                log(f"round {r + 1}/{steps}")
                for worker in workers:
                    time_one(worker, 1)
            for worker in workers:
                finish(worker)
        finally:
            for worker in workers:
                worker.close()
    return list(results.values())


def summarize(
    result: dict[str, Any], *, peak_flops: float | None, peak_source: str
) -> dict[str, Any]:
    """One table row from a run_variants result.

    Args:
      result: a run_variants result.
      peak_flops: the device's peak FLOP/s for MFU (None: no MFU).
      peak_source: where the peak comes from (shown in the table's notes).

    Returns:
      A dict keyed by the table's column names.
    """
    del peak_source
    setup = result.get("setup") or {}
    mode = result["mode"]
    batch = result["batch"]
    times = result["times"]
    row: dict[str, Any] = {"variant": result["label"], "mode": mode, "batch": batch}
    if result["error"] or not times:
        row["img/s"] = None
        row["notes"] = result["error"] or "no timed steps"
        return row
    median = statistics.median(times)
    row["img/s"] = batch / median
    row["img/s range"] = f"{format_number(batch / max(times))}-{format_number(batch / min(times))}"
    row["step s"] = median
    row["compile s"] = setup.get(f"{mode}_compile_s")
    flops = setup.get(f"{mode}_flops_per_image")
    row["GFLOP/img"] = flops / 1e9 if flops else None
    if flops:
        achieved = flops * batch / median
        row["TFLOP/s"] = achieved / 1e12
        row["MFU %"] = 100 * achieved / peak_flops if peak_flops else None
    peak = result.get("peak_bytes")
    row["peak mem GiB"] = peak / 2**30 if peak else None
    row["notes"] = "; ".join(
        x
        for x in (
            setup.get("flops_source"),
            result.get("memory_source"),
            setup.get("note"),
        )
        if x
    )
    return row


TABLE_COLUMNS = (
    "variant",
    "mode",
    "batch",
    "img/s",
    "img/s range",
    "step s",
    "compile s",
    "GFLOP/img",
    "TFLOP/s",
    "MFU %",
    "peak mem GiB",
    "notes",
)
