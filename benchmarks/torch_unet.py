"""The same U-Net in PyTorch, with Adam and the same soft Dice: the speed reference.

PyTorch is not a project dependency: ``pip install torch`` (a CPU wheel is enough here).
The module mirrors ``unet_jax.model.unet.UNet`` layer for layer (3x3 conv without bias ->
BatchNorm(eps 1e-5, momentum 0.1 = Flax's 0.9) -> ReLU, twice; 2x2 max-pool; 2x2 stride-2
transposed convolution with bias; concatenation [up, skip]; 1x1 head), normalises the
uint8 input inside the model like the JAX one, and has the same 31,038,413 parameters
(checked at every start against the JAX ``UNet``'s parameter count).
``load_flax_variables`` copies a Flax UNet's variables in, which is how the tests show that
both compute the same function (tests/model/test_fast_paths.py).

    python benchmarks/torch_unet.py --batch 4 --size 256                  # eager, channels_last
    python benchmarks/torch_unet.py --compile no yes --amp no yes         # 4 variants
    python benchmarks/torch_unet.py --device cuda --amp yes --compile yes --batch 64
    python benchmarks/torch_unet.py --profile --mode train        # torch.profiler table

The table has the columns of benchmarks/train_step.py; FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls only) and peak memory
from ``torch.cuda.max_memory_allocated`` on a GPU, else the worker's peak RSS.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import bench_common as bc
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)
IGNORE_LABEL = 255


class ConvBlock(nn.Sequential):
    """(3x3 conv without bias -> BatchNorm -> ReLU) twice."""

    def __init__(self, c_in: int, width: int) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, width):
            layers += [
                nn.Conv2d(c, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width, eps=1e-5, momentum=0.1),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


class TorchUNet(nn.Module):
    """``unet_jax.model.unet.UNet`` (BatchNorm, no dropout, softmax logits) in PyTorch.

    Args:
      num_classes: logit channels.
      features: encoder widths.
      bridge_features: bottleneck width.
      in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 13,
        features: Sequence[int] = (64, 128, 256, 512),
        bridge_features: int = 1024,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(DEFAULT_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(DEFAULT_STD).view(1, 3, 1, 1) * 255.0)
        self.encoders = nn.ModuleList()
        c = in_channels
        for width in features:
            self.encoders.append(ConvBlock(c, width))
            c = width
        self.bridge = ConvBlock(c, bridge_features)
        c = bridge_features
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(features):
            self.ups.append(nn.ConvTranspose2d(c, width, 2, stride=2))
            self.decoders.append(ConvBlock(2 * width, width))
            c = width
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/float images [B, 3, H, W] in 0..255 -> float32 logits [B, C, H, W]."""
        x = (images.float() - self.mean) / self.std
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bridge(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = up(x)
            x = decoder(torch.cat([x, skip.to(x.dtype)], dim=1))
        return self.head(x).float()


def soft_dice_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    smooth: float = 1.0,
    ignore_label: int = IGNORE_LABEL,
) -> torch.Tensor:
    """Per-image soft Dice of ``unet_jax.train.losses.soft_dice_loss`` (softmax), float32 [B].

    Args:
      logits: [B, C, H, W].
      labels: integer [B, H, W]; ids outside [0, C) or equal to ``ignore_label`` ignored.
      num_classes: C.
      smooth: added to numerator and denominator of every per-class Dice.
      ignore_label: the ignored id.

    Returns:
      ``1 - mean_c (2 I + smooth) / (P + T + smooth)`` per image.
    """
    labels = labels.long()
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    validf = valid.unsqueeze(1).float()
    x = torch.where(valid.unsqueeze(1), logits.float(), torch.zeros((), device=logits.device))
    probs = torch.softmax(x, dim=1) * validf
    targets = F.one_hot(torch.where(valid, labels, 0), num_classes).permute(0, 3, 1, 2)
    targets = targets.float() * validf
    intersection = (probs * targets).sum(dim=(2, 3))
    denominator = probs.sum(dim=(2, 3)) + targets.sum(dim=(2, 3)) + smooth
    dice = (2.0 * intersection + smooth) / denominator
    return 1.0 - dice.mean(dim=1)


def count_params(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_flax_variables(model: TorchUNet, variables: dict[str, Any]) -> None:
    """Copies a Flax ``UNet``'s params and BatchNorm statistics into ``model``.

    Flax convolutions are HWIO, PyTorch's OIHW; the up-convolution's kernel ``k`` maps to
    ``ConvTranspose2d.weight[c, d, i, j] = k[1-i, 1-j, c, d]`` (see ``Upsample2x``).

    Args:
      model: a TorchUNet of the same widths.
      variables: ``{"params": ..., "batch_stats": ...}`` of the Flax model.
    """
    params, stats = variables["params"], variables["batch_stats"]

    def conv_block(block: ConvBlock, p: dict, s: dict) -> None:
        for k in range(2):
            conv, bn = block[3 * k], block[3 * k + 1]
            kernel = np.asarray(p[f"Conv_{k}"]["kernel"])
            conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            bn.weight.data = torch.from_numpy(np.asarray(p[f"BatchNorm_{k}"]["scale"]).copy())
            bn.bias.data = torch.from_numpy(np.asarray(p[f"BatchNorm_{k}"]["bias"]).copy())
            bn.running_mean.data = torch.from_numpy(np.asarray(s[f"BatchNorm_{k}"]["mean"]).copy())
            bn.running_var.data = torch.from_numpy(np.asarray(s[f"BatchNorm_{k}"]["var"]).copy())

    n = len(model.encoders)
    for i, encoder in enumerate(model.encoders):
        key = f"EncoderBlock_{i}"
        conv_block(encoder, params[key]["ConvBlock_0"], stats[key]["ConvBlock_0"])
    conv_block(model.bridge, params[f"ConvBlock_{0}"], stats["ConvBlock_0"])
    for i in range(n):
        p, s = params[f"DecoderBlock_{i}"], stats[f"DecoderBlock_{i}"]
        kernel = np.asarray(p["Upsample2x_0"]["kernel"])[::-1, ::-1]
        model.ups[i].weight.data = torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy())
        model.ups[i].bias.data = torch.from_numpy(np.asarray(p["Upsample2x_0"]["bias"]).copy())
        conv_block(model.decoders[i], p["ConvBlock_0"], s["ConvBlock_0"])
    head = params["Conv_0"]
    model.head.weight.data = torch.from_numpy(
        np.asarray(head["kernel"]).transpose(3, 2, 0, 1).copy()
    )
    model.head.bias.data = torch.from_numpy(np.asarray(head["bias"]).copy())


class TorchBench(bc.Bench):
    """Eager or compiled, float32 or bf16 autocast, channels_last or contiguous."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from unet_jax.model.factory import abstract_variables
        from unet_jax.model.unet import UNet
        from unet_jax.model.unet import count_params as jax_count_params

        self.spec = spec
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        device = spec["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        features, bridge = bc.parse_widths(spec["widths"])
        torch.manual_seed(0)
        model = TorchUNet(13, features, bridge)
        jax_model = UNet(num_classes=13, features=features, bridge_features=bridge)
        size = (jax_model.size_multiple, jax_model.size_multiple)
        expected = jax_count_params(abstract_variables(jax_model, image_size=size)["params"])
        if count_params(model) != expected:
            raise AssertionError(
                f"TorchUNet has {count_params(model):,} parameters, the JAX UNet {expected:,}"
            )
        self.num_params = count_params(model)
        self.memory_format = (
            torch.channels_last if spec["channels_last"] else torch.contiguous_format
        )
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        batch = bc.fake_batch(spec["batch"], spec["size"])
        # NHWC numpy viewed as NCHW is exactly the channels_last layout.
        images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2)
        self.images = images.to(self.device).contiguous(memory_format=self.memory_format)
        self.labels = torch.from_numpy(batch["label"]).long().to(self.device)
        self.forward = torch.compile(self.model) if spec["compile"] else self.model
        self.first_step_s: dict[str, float] = {}

    def _autocast(self) -> Any:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=bool(self.spec["amp"])
        )

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _train_step(self) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.forward(self.images)
        loss = soft_dice_loss(logits, self.labels, num_classes=13).mean()
        loss.backward()
        self.optimizer.step()

    def _infer_step(self) -> None:
        self.model.eval()
        with torch.inference_mode(), self._autocast():
            self.forward(self.images)

    def _count_flops(self, mode: str) -> int | None:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        model = self.model  # eager: the counter sees the aten ops
        with counter:
            if mode == "train":
                model.train()
                with self._autocast():
                    logits = model(self.images)
                soft_dice_loss(logits, self.labels, num_classes=13).mean().backward()
                self.optimizer.zero_grad(set_to_none=True)
            else:
                model.eval()
                with torch.inference_mode(), self._autocast():
                    model(self.images)
        return counter.get_total_flops()

    def setup(self) -> dict[str, Any]:
        dtype = "bfloat16" if self.spec["amp"] else "float32"
        facts: dict[str, Any] = {
            "platform": self.device.type,
            "device_kind": torch.cuda.get_device_name(self.device)
            if self.device.type == "cuda"
            else bc.cpu_model(),
            "num_devices": 1,
            "dtype": dtype,
            "num_params": self.num_params,
            "flops_source": "torch FlopCounterMode (convs+matmuls)",
            "note": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        }
        if self.device.type == "cuda":
            facts["peak_flops"] = bc.gpu_peak_flops(facts["device_kind"], dtype)
            facts["peak_source"] = "table (dense)"
        else:  # the same reference as the JAX benchmark: XLA's large matmul
            facts["peak_flops"] = bc.measure_cpu_matmul_peak(dtype)
            facts["peak_source"] = f"best {dtype} jnp.dot 2048^3, start and end of run"
        for mode in self.spec["modes"]:
            flops = self._count_flops(mode)
            if flops:
                facts[f"{mode}_flops_per_image"] = flops / self.spec["batch"]
            if self.spec["compile"]:
                # torch.compile compiles lazily: the first step's time is the compile time.
                start = time.perf_counter()
                self.run(mode, 1)
                facts[f"{mode}_compile_s"] = time.perf_counter() - start
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return facts

    def run(self, mode: str, steps: int) -> list[float]:
        step = self._train_step if mode == "train" else self._infer_step
        times = []
        for _ in range(steps):
            self._sync()
            start = time.perf_counter()
            step()
            self._sync()
            times.append(time.perf_counter() - start)
        return times

    def remeasure_peak(self) -> float | None:
        if self.device.type == "cuda":
            return None
        return bc.measure_cpu_matmul_peak("bfloat16" if self.spec["amp"] else "float32")

    def memory(self) -> tuple[int, str]:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device)), "torch max_memory_allocated"
        return bc.host_peak_rss_bytes(), "process peak RSS"


def add_torch_arguments(parser: argparse.ArgumentParser) -> None:
    """PyTorch variant options (several values each; all combinations run)."""
    yes_no = ("no", "yes")
    parser.add_argument("--compile", nargs="+", default=["no"], choices=yes_no)
    parser.add_argument("--amp", nargs="+", default=["no"], choices=yes_no, help="bf16 autocast")
    parser.add_argument(
        "--memory-format",
        nargs="+",
        default=["channels_last"],
        choices=("channels_last", "contiguous"),
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def torch_variants(args: argparse.Namespace, modes: tuple[str, ...]) -> list[bc.Variant]:
    """One worker per combination of --compile, --amp and --memory-format."""
    variants = []
    for compile_, amp, memory_format in itertools.product(
        args.compile, args.amp, args.memory_format
    ):
        spec = {
            "batch": args.batch,
            "size": args.size,
            "widths": args.widths,
            "compile": compile_ == "yes",
            "amp": amp == "yes",
            "channels_last": memory_format == "channels_last",
            "threads": args.threads,
            "device": args.device,
            "modes": list(modes),
        }
        label = (
            f"torch {'compile' if spec['compile'] else 'eager'} "
            f"{'bf16-amp' if spec['amp'] else 'float32'} {memory_format}"
        )
        argv = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
        variants.append(bc.Variant(label=label, argv=argv, modes=modes, batch=args.batch))
    return variants


def profile(args: argparse.Namespace, modes: tuple[str, ...]) -> None:
    """Prints torch.profiler's operator table for one step of each mode (first variant)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    variant = torch_variants(args, modes)[0]
    spec = json.loads(variant.argv[-1])
    bench = TorchBench(spec)
    bench.setup()
    activities = [ProfilerActivity.CPU]
    if bench.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    start_load = bc.load_note()
    for mode in modes:
        bench.run(mode, max(args.warmup, 1))
        with torch_profile(activities=activities) as prof:
            seconds = bench.run(mode, 1)[0]
        print(f"### torch.profiler: {variant.label}, {mode}, batch {args.batch}, {args.size}^2\n")
        print(bc.machine_header(start_load=start_load))
        print(f"- step wall time: {seconds:.2f} s\n")
        print("```")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        print("```\n")


def main() -> None:
    import train_step  # sibling: shared options and the report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    train_step.add_arguments(parser)
    add_torch_arguments(parser)
    parser.add_argument("--baseline", help="variant label the ratio column refers to")
    parser.add_argument(
        "--profile", action="store_true", help="print torch.profiler tables instead of timing"
    )
    args = parser.parse_args()
    if args.worker:
        bc.worker_main(TorchBench, args.worker)
        return
    bc.parse_widths(args.widths)
    if args.profile:
        profile(args, train_step.modes(args))
        return
    start_load = bc.load_note()
    variants = torch_variants(args, train_step.modes(args))
    results = bc.run_variants(
        variants, warmup=args.warmup, steps=args.steps, schedule=args.schedule
    )
    title = (
        f"PyTorch U-Net, widths={args.widths}, {args.size}x{args.size}, batch {args.batch}, "
        f"{args.warmup} warmup + {args.steps} timed steps, {args.schedule}"
    )
    print(train_step.report(results, title=title, baseline=args.baseline, start_load=start_load))


if __name__ == "__main__":
    main()
