"""ONNX Runtime inference of the U-Net from ``unet_jax.deploy.onnx_export``: a benchmark worker.

compare.py runs it as one more worker kind, interleaved with the XLA and PyTorch workers
(inference only: ONNX Runtime does not train). The graph is built from a freshly
initialised U-Net of the requested widths (weights do not change the speed), the session
is the product's (``unet_jax.deploy.onnx_inference.session_options``: no thread spinning).

    python benchmarks/compare.py --mode infer --widths demo --size 128 --batch 8 \\
        --ort-threads 2 --ort-opt all extended

Columns as in benchmarks/train_step.py; "compile s" is the session creation (graph
optimisation included), GFLOP/img the analytic count of the convolutions
(``bench_common.unet_conv_flops_per_image``), peak memory the worker's peak RSS.
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

OPT_LEVELS = ("all", "extended", "basic", "disabled")


class OrtBench(bc.Bench):
    """Exports the configured U-Net to ONNX in memory and opens an ORT CPU session."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import jax
        import numpy as np
        import onnxruntime as ort

        from unet_jax.configs import default
        from unet_jax.deploy.onnx_export import build_model
        from unet_jax.deploy.onnx_inference import session_options
        from unet_jax.run.state import create_model

        self.spec = spec
        features, bridge = bc.parse_widths(spec["widths"])
        config = default.get_config()
        config.num_classes = 13  # as the XLA and PyTorch workers
        config.model.features = features
        config.model.bridge_features = bridge
        model = create_model(config)
        self.num_classes = int(model.num_classes)
        m = model.size_multiple
        variables = jax.jit(
            lambda: model.init(jax.random.key(0), np.zeros((1, m, m, 3), np.uint8), train=False)
        )()
        self.num_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(variables["params"]))
        proto = build_model(model, variables).SerializeToString()
        options = session_options(threads=spec["threads"])
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[spec["opt"]]
        start = time.perf_counter()
        self.session = ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])
        self.session_s = time.perf_counter() - start
        self.version = ort.__version__
        self.images = bc.fake_batch(spec["batch"], spec["size"])["image"]
        self.features, self.bridge = features, bridge

    def setup(self) -> dict[str, Any]:
        return {
            "platform": "cpu",
            "device_kind": bc.cpu_model(),
            "num_devices": 1,
            "dtype": "float32",
            "num_params": self.num_params,
            "flops_source": "analytic conv FLOPs",
            "infer_flops_per_image": bc.unet_conv_flops_per_image(
                size=self.spec["size"],
                features=self.features,
                bridge_features=self.bridge,
                num_classes=self.num_classes,
            ),
            "infer_compile_s": self.session_s,
            "note": f"onnxruntime {self.version}, {self.spec['threads']} intra-op threads, "
            f"opt={self.spec['opt']}, no spinning",
        }

    def run(self, mode: str, steps: int) -> list[float]:
        if mode != "infer":
            raise ValueError(f"ONNX Runtime only does inference, not {mode!r}")
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.session.run(None, {"images": self.images})
            times.append(time.perf_counter() - start)
        return times


def add_ort_arguments(parser: argparse.ArgumentParser) -> None:
    """ONNX Runtime variant options (several values each; all combinations run)."""
    parser.add_argument(
        "--ort-threads",
        type=int,
        nargs="*",
        default=[2],
        help="ORT intra-op threads per variant (none given: no ORT variant)",
    )
    parser.add_argument("--ort-opt", nargs="+", default=["all"], choices=OPT_LEVELS)


def ort_variants(args: argparse.Namespace, modes: tuple[str, ...]) -> list[bc.Variant]:
    """One worker per combination of --ort-threads and --ort-opt (inference only)."""
    if "infer" not in modes:
        return []
    variants = []
    for threads, opt in itertools.product(args.ort_threads, args.ort_opt):
        spec = {
            "batch": args.batch,
            "size": args.size,
            "widths": args.widths,
            "threads": threads,
            "opt": opt,
        }
        argv = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
        label = f"onnxruntime float32 threads={threads} opt={opt}"
        variants.append(bc.Variant(label=label, argv=argv, modes=("infer",), batch=args.batch))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", required=True, help=argparse.SUPPRESS)
    bc.worker_main(OrtBench, parser.parse_args().worker)


if __name__ == "__main__":
    main()
