"""ONNX Runtime inference of the U-Net from ``unet_jax.deploy.onnx_export``: a benchmark worker.

compare.py runs it as one more worker kind, interleaved with the XLA and PyTorch workers
(inference only: ONNX Runtime does not train). The graph is built from a freshly
initialised U-Net of the requested widths (weights do not change the speed), the session
is the product's (``unet_jax.deploy.onnx_inference.session_options``: no thread spinning).

    python benchmarks/compare.py --mode infer --widths demo --size 128 --batch 8 \\
        --ort-threads 2 --ort-opt all extended

Run by itself it times ONNX Runtime variants only, interleaved, e.g. float32 against the
int8 export (``--ort-quant``: ``QUANT_VARIANTS``; int8 workers quantise their model with
``unet_jax.deploy.onnx_int8`` on --ort-calibration random images first, "compile s" is then
quantisation plus session creation):

    python benchmarks/onnx_bench.py --widths full --size 256 --batch 1 \\
        --ort-quant float32 int8 int8-reduce-range int8-qoperator

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
# --ort-quant: name -> (graph's up-convolution, changes to onnx_int8.quantization_settings
# as {argument: value}, types and formats by name); None: the float32 model. "int8" is
# the export's own setting.
QUANT_VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "float32": ("conv_transpose", None),
    "float32-depth-to-space": ("depth_to_space", None),
    "int8": ("depth_to_space", {}),
    "int8-conv-transpose": ("conv_transpose", {}),
    "int8-per-tensor": ("depth_to_space", {"per_channel": False}),
    "int8-reduce-range": ("depth_to_space", {"reduce_range": True}),
    "int8-qoperator": ("depth_to_space", {"quant_format": "QOperator"}),
    "int8-s8s8": ("depth_to_space", {"activation_type": "QInt8"}),
    "int8-u8u8": ("depth_to_space", {"weight_type": "QUInt8"}),
    "int8-float-ends": ("depth_to_space", {"float_ends": True}),
    "int8-quantised-head": ("depth_to_space", {"nodes_to_exclude": []}),
}


class OrtBench(bc.Bench):
    """Exports the configured U-Net to ONNX in memory and opens an ORT CPU session."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import jax
        import numpy as np
        import onnxruntime as ort

        from unet_jax.configs import default
        from unet_jax.deploy.onnx_export import build_model
        from unet_jax.deploy.onnx_inference import session_options
        from unet_jax.model.factory import create_model

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
        upconv, changes = QUANT_VARIANTS[spec["quant"]]
        start = time.perf_counter()
        proto = build_model(model, variables, upconv=upconv)
        if changes is not None:
            proto = quantised(proto, changes, size=spec["size"], count=spec["calibration"])
        proto = proto.SerializeToString()
        self.quantise_s = time.perf_counter() - start
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
            "infer_compile_s": self.quantise_s + self.session_s,
            "note": f"onnxruntime {self.version}, {self.spec['threads']} intra-op threads, "
            f"opt={self.spec['opt']}, no spinning, {self.spec['quant']}",
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


def quantised(proto: Any, changes: dict[str, Any], *, size: int, count: int) -> Any:
    """``proto`` quantised as ``onnx_int8.quantize_model`` does, with ``changes``, calibrated
    on ``count`` random images of ``size`` (the weights are random too: only speed counts)."""
    import tempfile

    import onnx
    from onnxruntime import quantization as q

    from unet_jax.deploy import onnx_int8

    changes = dict(changes)
    settings = onnx_int8.quantization_settings(proto)
    if changes.pop("float_ends", False):  # the first 3x3 convolution and the 1x1 head
        convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
        settings["nodes_to_exclude"] = [convs[0], convs[-1]]
    for key, value in changes.items():
        kind = {"quant_format": q.QuantFormat}.get(key, q.QuantType)
        settings[key] = kind[value] if isinstance(value, str) else value
    images = bc.fake_batch(count, size)["image"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "int8.onnx")
        onnx_int8.quantize_model(proto, out, (x[None] for x in images), settings=settings)
        return onnx.load(out)


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
    parser.add_argument(
        "--ort-quant",
        nargs="+",
        default=["float32"],
        choices=list(QUANT_VARIANTS),
        help="float32 and/or int8 variants of the exported graph",
    )
    parser.add_argument(
        "--ort-calibration", type=int, default=2, help="calibration images of int8 variants"
    )


def ort_variants(args: argparse.Namespace, modes: tuple[str, ...]) -> list[bc.Variant]:
    """One worker per combination of --ort-threads and --ort-opt (inference only)."""
    if "infer" not in modes:
        return []
    variants = []
    for quant, threads, opt in itertools.product(args.ort_quant, args.ort_threads, args.ort_opt):
        spec = {
            "batch": args.batch,
            "size": args.size,
            "widths": args.widths,
            "threads": threads,
            "opt": opt,
            "quant": quant,
            "calibration": args.ort_calibration,
        }
        argv = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
        label = f"onnxruntime {quant} threads={threads} opt={opt}"
        variants.append(bc.Variant(label=label, argv=argv, modes=("infer",), batch=args.batch))
    return variants


def main() -> None:
    import train_step

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    train_step.add_arguments(parser)
    add_ort_arguments(parser)
    parser.add_argument("--baseline", help="variant label the ratio column refers to")
    args = parser.parse_args()
    if args.worker:
        bc.worker_main(OrtBench, args.worker)
        return
    bc.parse_widths(args.widths)  # fail early on a bad value
    start_load = bc.load_note()
    results = bc.run_variants(
        ort_variants(args, ("infer",)), warmup=args.warmup, steps=args.steps, schedule=args.schedule
    )
    title = (
        f"ONNX Runtime U-Net, widths={args.widths}, {args.size}x{args.size}, batch "
        f"{args.batch}, {args.warmup} warmup + {args.steps} timed steps, {args.schedule}"
    )
    print(train_step.report(results, title=title, baseline=args.baseline, start_load=start_load))


if __name__ == "__main__":
    main()
