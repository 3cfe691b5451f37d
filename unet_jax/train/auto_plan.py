"""The plan of ``configs/auto.py``: a config from the data's fingerprint and this machine.

Each rule sets one or a few fields from the fingerprint (``unet_jax.data.fingerprint``),
the machine (platform, devices, cores) and a throughput probe (a few timed steps of each
candidate width); docs/AUTO.md lists the rules and the measurements behind them. A field
given on the command line is kept. The plan is printed as a table, written to
``WORKDIR/plan.json`` and returned as an ordinary config (``auto=False``), which
``config.json`` then records (train.py keeps the plan of a workdir that holds one).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unet_jax.config_fields import get_field, set_field
from unet_jax.data import sources as data_sources
from unet_jax.data.augment_defaults import DEFAULT_FOREGROUND_SHARE, JITTER
from unet_jax.data.fingerprint import Fingerprint, fingerprint
from unet_jax.errors import ConfigError
from unet_jax.model.factory import create_model
from unet_jax.run.workdir import Workdir
from unet_jax.train import budget

# Widths (encoder levels, bridge) from narrow to wide; the probe picks the widest that
# still sees MIN_TRAINING_PIXELS in the budget.
WIDTHS = (((16, 32, 64, 128), 256), ((32, 64, 128, 256), 512), ((64, 128, 256, 512), 1024))
# aerial_cpu.py's 1,600 steps of 8 crops of 128x128: validation mIoU 0.49 on the aerial set.
MIN_TRAINING_PIXELS = 1600 * 8 * 128 * 128
RARE = 0.02  # a class with less than this share of the labelled pixels is rare
# Share of crops centred on a rare class (nnU-Net's foreground oversampling: a third).
FOREGROUND_SHARE = 1 / 3
MIN_THICKNESS_PX = 1.5  # the thinnest class keeps at least this width after resizing
FEW_IMAGES = 100  # fewer training images (or groups) than this: stronger augmentation
STRONG_JITTER = {
    "min_scale": 0.5,
    "max_scale": 1.5,
    "brightness": 0.3,
    "contrast": 0.3,
    "saturation": 0.3,
}
# Timed steps per candidate width (the time budget's own probe is budget.PROBE_STEPS): three
# candidates compile and run within PROBE_SHARE of the budget, so fewer than the budget's.
WIDTH_PROBE_STEPS = 3
PROBE_SHARE = 0.15  # the probe may take at most this share of the budget
# Shorter budgets train the narrowest widths unprobed: on a 2-core CPU compiling one
# candidate takes 0.5-3 minutes, more than a wider net could return in such a budget.
PROBE_MIN_BUDGET_S = 15 * 60


@dataclasses.dataclass(frozen=True)
class Machine:
    """Where the run trains: ``platform`` ("cpu", "gpu", "tpu"), ``devices``, ``cores``."""

    platform: str
    devices: int
    cores: int

    @property
    def accelerator(self) -> bool:
        return self.platform != "cpu"

    @classmethod
    def this_one(cls) -> Machine:
        return cls(jax.default_backend(), jax.device_count(), os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Decision:
    """One planned field (or group of fields), its value and why."""

    fields: dict[str, Any]
    reason: str


def _round16(value: float, *, low: int = 32) -> int:
    return max(low, int(value) // 16 * 16)


def present(fp: Fingerprint) -> list[int]:
    return [c for c, f in enumerate(fp.class_frequency) if f > 0]


def rare_classes(fp: Fingerprint) -> list[int]:
    return [c for c in present(fp) if fp.class_frequency[c] < RARE]


def plan_input(fp: Fingerprint, machine: Machine) -> Decision:
    """Rule 1: resize images of one size; crop images of several sizes at native scale.

    Crops: 128 on a CPU (measured on the aerial set: 5x the images/s of 256 and a better
    score at equal time), 256 on an accelerator; wider when the rare classes' regions are
    wider (the crop holds a whole one), never beyond the smallest image. Resize: the base
    size on the long side; on an accelerator raised (up to twice that) until the thinnest
    class stays ``MIN_THICKNESS_PX`` wide. A CPU keeps the base size: in a budget the raise
    costs more steps than the thin classes return (measured, docs/AUTO.md). Where every
    class but the first would vanish at that size, native-scale crops of the base size
    (measured on nuclei16, docs/AUTO.md).
    """
    base = 256 if machine.accelerator else 128
    smallest = _round16(min(fp.min_size))
    if fp.min_size != fp.max_size:
        rare = rare_classes(fp)
        extent = max((math.sqrt(fp.class_region_px[c]) for c in rare), default=0.0)
        size = min(max(base, math.ceil(extent / 16) * 16), 2 * base, smallest)
        why = f"images of {fp.min_size}..{fp.max_size}: native-scale crops of {size}"
        if size > base and size == math.ceil(extent / 16) * 16:
            why += f" (rare classes' regions are ~{extent:.0f} px wide)"
        return Decision({"input_mode": "crop", "image_size": (size, size)}, why)
    height, width = fp.median_size
    thinnest = min((fp.class_thickness[c] for c in present(fp)), default=MIN_THICKNESS_PX)
    scale = base / max(height, width)
    thin = thinnest * scale < MIN_THICKNESS_PX
    if thin and machine.accelerator:
        scale = min(1.0, MIN_THICKNESS_PX / thinnest, 2 * base / max(height, width))
    size = (_round16(height * scale), _round16(width * scale))
    if _every_class_vanishes(fp, scale):
        crop = min(base, smallest)
        return Decision(
            {"input_mode": "crop", "image_size": (crop, crop)},
            f"all images {height}x{width}: resized to {size[0]}x{size[1]}, every class but "
            f"the first would keep < {MIN_THICKNESS_PX} px; native-scale crops of {crop}",
        )
    why = f"all images {height}x{width}: resized to {size[0]}x{size[1]}"
    if thin:
        why += f" (thinnest class {thinnest:.1f} px wide keeps {thinnest * scale:.1f} px"
        why += ")" if machine.accelerator else "; not raised on a CPU)"
    return Decision({"input_mode": "resize", "image_size": size}, why)


def _every_class_vanishes(fp: Fingerprint, scale: float) -> bool:
    """True when every present class but the first is thinner than ``MIN_THICKNESS_PX``
    at ``scale``: resizing would erase what is to be segmented (e.g. nuclei of a
    microscope image), so native-scale crops serve better than any whole-image size.
    """
    kept = [fp.class_thickness[c] * scale for c in present(fp) if c > 0]
    return bool(kept) and max(kept) < MIN_THICKNESS_PX


def plan_sampling(fp: Fingerprint, *, crop: bool) -> Decision:
    """Rule 1b: in crop mode, a third of the crops centred on a rare class (not the first).

    A random crop of a large image rarely holds a rare, small class; nnU-Net centres a
    third of its patches on foreground. Whole resized images hold every class they have,
    so resize mode keeps random crops.
    """
    rare = [c for c in rare_classes(fp) if c > 0]
    if not crop or not rare:
        why = "whole images resized: random crops" if not crop else "no rare class"
        fields = {"augment.foreground_share": DEFAULT_FOREGROUND_SHARE}
        return Decision({**fields, "augment.foreground_classes": None}, why)
    shares = ", ".join(f"{c}: {100 * fp.class_frequency[c]:.2g}%" for c in rare)
    return Decision(
        {"augment.foreground_share": FOREGROUND_SHARE, "augment.foreground_classes": tuple(rare)},
        f"rare classes ({shares} of the pixels): a third of the crops centred on one",
    )


def plan_batch(fp: Fingerprint, machine: Machine) -> Decision:
    """Rule 2: 8 images per device on a CPU, 32 on an accelerator, a multiple of the devices."""
    per_device = 32 if machine.accelerator else 8
    batch = per_device * machine.devices
    fit = fp.images // machine.devices * machine.devices
    if fit < machine.devices:
        raise ConfigError(
            f"the training split has {fp.images} images, fewer than the {machine.devices} "
            "devices; add images or train on fewer devices"
        )
    batch = min(batch, fit)
    return Decision(
        {"batch_size": batch, "eval_batch_size": batch},
        f"{per_device} per device x {machine.devices} device(s)"
        + (f", at most the {fp.images} images" if batch == fit else ""),
    )


def plan_compute(machine: Machine) -> Decision:
    """Rule 3: bfloat16 on an accelerator; grain workers only where cores are spare."""
    workers = 0 if machine.cores <= 2 else 2
    dtype = "bfloat16" if machine.accelerator else "float32"
    return Decision(
        {"model.dtype": dtype, "worker_count": workers},
        f"{machine.platform}: {dtype}; {machine.cores} cores: {workers} input workers",
    )


def plan_loss(fp: Fingerprint) -> Decision:
    """Rule 4: Dice + cross-entropy, no class weights (measured on the aerial set)."""
    rare = rare_classes(fp)
    return Decision(
        {"loss": "dice_ce", "class_weights": None},
        "Dice + CE; no class weights"
        + (f" ({len(rare)} rare classes; weights cost mIoU on the aerial set)" if rare else ""),
    )


def plan_augment(fp: Fingerprint, *, dataset: str) -> Decision:
    """Rule 5: flips and jitter; stronger with few images or groups; 90-degree turns for
    overhead imagery (the aerial set)."""
    few = min(fp.images, fp.groups) < FEW_IMAGES
    jitter = STRONG_JITTER if few else JITTER
    fields = {
        "augment.enabled": True,
        **{f"augment.{k}": jitter[k] for k in ("min_scale", "max_scale")},
        **{f"augment.{k}": jitter[k] for k in ("brightness", "contrast")},
        # Colour jitter has no meaning for grey or multi-band images (and is refused there).
        "augment.saturation": jitter["saturation"] if fp.rgb8 else 0.0,
        "augment.rot90": dataset.startswith("aerial"),
    }
    detail = f"scale {jitter['min_scale']}-{jitter['max_scale']}, " + (
        f"colour {fields['augment.brightness']}"
        if fp.rgb8
        else f"brightness/contrast {fields['augment.brightness']} per band on normalised "
        f"values; no colour jitter: {fp.bands} band(s) of {fp.dtype}, not RGB"
    )
    why = (
        f"{fp.images} images, {fp.groups} groups: "
        + (f"strong ({detail})" if few else detail)
        + ("; 90-degree turns (overhead)" if fields["augment.rot90"] else "")
    )
    return Decision(fields, why)


def plan_normalisation(fp: Fingerprint) -> Decision:
    """Rule 5b: ImageNet's normalisation for 8-bit RGB, the data's own z-score otherwise
    (``unet_jax.data.normalisation``)."""
    if fp.rgb8:
        return Decision({"model.input_norm": "imagenet"}, "8-bit RGB: ImageNet's mean/std")
    stats = fp.intensity or {}
    ranges = ", ".join(
        f"{lo:.4g}..{hi:.4g}"
        for lo, hi in zip(stats.get("low", []), stats.get("high", []), strict=True)
    )
    return Decision(
        {"model.input_norm": "zscore"},
        f"{fp.bands} band(s) of {fp.dtype} (0.5-99.5 % per band: {ranges}): clipped there and "
        "z-scored with the training split's mean/std (nnU-Net), read at full depth",
    )


def plan_schedule() -> list[Decision]:
    """Rule 6: Adam 3e-3 with a warm-up and a cosine, laid out by the time budget.

    The budget (``unet_jax.train.budget.first_plan``) fixes the steps after its probe
    steps: the warm-up is the config's or the steps // ``budget.WARMUP_DIVISOR`` if fewer,
    a validation every ``budget.VALIDATIONS``-th of the steps. A re-fit keeps the interval
    and changes the steps, and so the number of validations.
    """
    warmup = 100
    recipe = Decision(
        {"optimizer": "adam", "learning_rate": 3e-3, "schedule": "warmup_cosine"},
        "the demo's recipe",
    )
    layout = Decision(
        {"warmup_steps": warmup, "eval_every_steps": -1, "checkpoint_every_steps": -1},
        f"laid out by the time budget after its {budget.PROBE_STEPS} probe steps: warm-up "
        f"{warmup} or 1/{budget.WARMUP_DIVISOR} of the steps if fewer; a validation and "
        f"checkpoint every 1/{budget.VALIDATIONS} of the steps (a re-fit changes the steps, "
        "so the count); what the run does: its 'Time budget plan' line and budget.json",
    )
    return [recipe, layout]


def plan_widths(
    *,
    training_s: float,
    step_s_of: Callable[[tuple, int], float],
    pixels_per_step: int,
    may_probe_wider: Callable[[], bool] = lambda: True,
) -> tuple[Decision, list[dict[str, Any]]]:
    """Rule 7: the widest U-Net that still trains on ``MIN_TRAINING_PIXELS`` in the budget.

    Args:
      training_s: seconds of the budget left for training.
      step_s_of: ``(features, bridge) -> seconds per step`` (the probe).
      pixels_per_step: batch x crop pixels.
      may_probe_wider: asked before each candidate after the first; False stops the probe
        there (its share of the budget is spent).

    Returns:
      The decision and the probe's measurements.
    """
    chosen, probed, out_of_time = WIDTHS[0], [], False
    for features, bridge in WIDTHS:
        if probed and not may_probe_wider():
            out_of_time = True
            break
        step_s = step_s_of(features, bridge)
        pixels = training_s / step_s * pixels_per_step
        probed.append({"features": features, "bridge": bridge, "step_s": step_s})
        if pixels < MIN_TRAINING_PIXELS and (features, bridge) != WIDTHS[0]:
            break
        chosen = (features, bridge)
        if pixels < MIN_TRAINING_PIXELS:
            break
    step_s = next(p["step_s"] for p in probed if p["features"] == chosen[0])
    pixels = training_s / step_s * pixels_per_step
    enough = pixels >= MIN_TRAINING_PIXELS
    why = (
        f"{'widest that sees' if enough else 'narrowest; sees only'} {pixels / 1e6:.0f}M "
        f"training pixels ({'>=' if enough else '<'} {MIN_TRAINING_PIXELS / 1e6:.0f}M) at "
        f"{step_s:.3f} s/step"
    )
    if out_of_time:
        why += f"; wider ones unprobed (the probe's {PROBE_SHARE:.0%} of the budget is spent)"
    return Decision({"model.features": chosen[0], "model.bridge_features": chosen[1]}, why), probed


def probe_step_time(config: ml_collections.ConfigDict, *, steps: int = WIDTH_PROBE_STEPS) -> float:
    """Seconds per training step (forward and backward) of ``config``'s model on one device,
    after compilation, at ``config``'s per-device batch and image size (random data)."""
    model = create_model(config)
    per_device = max(1, config.batch_size // jax.device_count())
    height, width = config.image_size
    rng = np.random.default_rng(0)
    bands = model.in_channels
    images = jnp.asarray(rng.integers(0, 256, (per_device, height, width, bands), np.uint8))
    variables = jax.jit(lambda k: model.init(k, images[:1], train=False))(jax.random.key(0))

    @jax.jit
    def grads(params):
        def loss(p):
            logits, _ = model.apply(
                {**variables, "params": p}, images, train=True, mutable=["batch_stats"]
            )
            # The loss is a negligible share of a step: any that touches every logit.
            return jnp.mean(jnp.square(logits))

        return jax.grad(loss)(params)

    jax.block_until_ready(grads(variables["params"]))  # compiles
    start = time.perf_counter()
    for _ in range(steps):
        out = grads(variables["params"])
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps


def _given(field: str, fixed: Iterable[str]) -> bool:
    return any(f == field or f.startswith(field + ".") or field.startswith(f + ".") for f in fixed)


def apply(
    config: ml_collections.ConfigDict, decisions: list[Decision], *, fixed: Iterable[str]
) -> tuple[ml_collections.ConfigDict, list[dict[str, Any]]]:
    """The config with every decided field set, except those given on the command line.

    Returns:
      ``(planned config, table rows {field, value, reason})``.
    """
    fixed = tuple(fixed)
    planned = config.copy_and_resolve_references()
    rows = []
    with planned.unlocked():
        for decision in decisions:
            for field, value in decision.fields.items():
                if _given(field, fixed):
                    rows.append(
                        {"field": field, "value": get_field(planned, field), "reason": "given"}
                    )
                    continue
                set_field(planned, field, value)
                rows.append({"field": field, "value": value, "reason": decision.reason})
        planned.auto = False
    return planned, rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The plan as aligned ``field  value  reason`` lines (a reason shown once per group)."""
    width_f = max(len(r["field"]) for r in rows)
    width_v = max(len(str(r["value"])) for r in rows)
    lines, last = [], None
    for r in rows:
        reason = "" if r["reason"] == last and r["reason"] != "given" else r["reason"]
        last = r["reason"]
        lines.append(f"  {r['field']:<{width_f}}  {str(r['value']):<{width_v}}  {reason}")
    return "\n".join(lines)


def _budget_to_plan(config: ml_collections.ConfigDict) -> float:
    """The budget in seconds.

    Raises:
      ConfigError: no or a bad budget, or several processes.
    """
    budget_s = budget.check_budget(config.get(budget.FIELD))
    if budget_s is None:
        raise ConfigError(f"config.{budget.FIELD}: configs/auto.py plans for a time budget")
    if jax.process_count() > 1:
        raise ConfigError(
            "configs/auto.py plans on one process; plan there, then start every host with "
            "--config=unet_jax/configs/auto.py:WORKDIR/plan.json"
        )
    return budget_s


def _training_fingerprint(
    config: ml_collections.ConfigDict,
    *,
    prepare_fn: data_sources.PrepareFn | None,
    sources: dict[str, Any] | None,
    num_classes: int | None,
) -> tuple[Fingerprint, int]:
    """The training split's fingerprint and the class count (opened unless ``sources``)."""
    if sources is None:
        dataset = data_sources.open_dataset(config, splits=("train",), prepare_fn=prepare_fn)
        train, num_classes = dataset.sources["train"], dataset.classes.num_classes
    else:
        train = sources["train"]
    group = config.get("folder_group") or config.get("split_group")
    return fingerprint(train, num_classes=num_classes, group_pattern=group), num_classes


def _decide_widths(
    planned: ml_collections.ConfigDict,
    *,
    fixed: tuple[str, ...],
    budget_s: float,
    num_classes: int,
    fp: Fingerprint,
    step_s_of: Callable[[ml_collections.ConfigDict], float],
    elapsed_s: Callable[[], float],
) -> tuple[ml_collections.ConfigDict, list[dict[str, Any]], list[dict[str, Any]]]:
    """Rule 7 on ``planned``: given widths are kept, a short budget takes the narrowest,
    else the probe decides (`plan_widths`) within ``PROBE_SHARE`` of the budget.

    Returns:
      ``(planned config, table rows, the probe's measurements)``.
    """
    if _given("model.features", fixed) or _given("model.bridge_features", fixed):
        # A width given alone keeps the config's other half: the pair is not probed.
        current = {
            "model.features": tuple(planned.model.features),
            "model.bridge_features": planned.model.bridge_features,
        }
        decision = Decision(current, "goes with the given width (not probed)")
        planned, rows = apply(planned, [decision], fixed=fixed)
        return planned, rows, []
    if budget_s < PROBE_MIN_BUDGET_S:
        features, bridge = WIDTHS[0]
        decision = Decision(
            {"model.features": features, "model.bridge_features": bridge},
            f"the narrowest, unprobed: a budget under {PROBE_MIN_BUDGET_S // 60} min",
        )
        planned, rows = apply(planned, [decision], fixed=fixed)
        return planned, rows, []

    probe_start = elapsed_s()
    last_probe_s = 0.0

    def step_s_of_widths(features: tuple, bridge: int) -> float:
        nonlocal last_probe_s
        candidate = planned.copy_and_resolve_references()
        with candidate.unlocked():
            candidate.num_classes = num_classes
            candidate.model.in_channels = fp.bands
            candidate.model.input_stats = fp.intensity
            candidate.model.features = features
            candidate.model.bridge_features = bridge
        start = elapsed_s()
        step_s = step_s_of(candidate)
        last_probe_s = elapsed_s() - start
        return step_s

    def may_probe_wider() -> bool:
        # A wider candidate compiles and runs at least as long as the last one did.
        return elapsed_s() - probe_start + last_probe_s <= PROBE_SHARE * budget_s

    height, width = planned.image_size
    training_s = budget_s * (1 - budget.RESERVE) - elapsed_s()
    decision, probed = plan_widths(
        training_s=training_s,
        step_s_of=step_s_of_widths,
        pixels_per_step=planned.batch_size * height * width,
        may_probe_wider=may_probe_wider,
    )
    planned, rows = apply(planned, [decision], fixed=fixed)
    return planned, rows, probed


def write_plan(workdir: str | pathlib.Path, record: dict[str, Any]) -> None:
    """Writes ``plan.json`` (``Workdir.plan``), creating the workdir."""
    layout = Workdir.of(workdir)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.plan.write_text(json.dumps(record, indent=1, default=str) + "\n")


def plan_config(
    config: ml_collections.ConfigDict,
    *,
    workdir: str | pathlib.Path,
    fixed: Iterable[str],
    prepare_fn: data_sources.PrepareFn | None = None,
    sources: dict[str, Any] | None = None,
    num_classes: int | None = None,
    machine: Machine | None = None,
    step_s_of: Callable[[ml_collections.ConfigDict], float] = probe_step_time,
    elapsed_s: Callable[[], float] = lambda: 0.0,
    log: Callable[[str], None] = print,
) -> ml_collections.ConfigDict:
    """Plans ``config`` (``auto=True``) for its data set and this machine.

    Args:
      config: the auto config with the command line's overrides.
      workdir: the run directory (``plan.json``).
      fixed: the fields given on the command line.
      prepare_fn: prepares and opens the data set (train.py's); or
      sources, num_classes: the training split and its class count (tests).
      machine: where it trains (default: this process's).
      step_s_of: seconds per step of a config (the probe).
      elapsed_s: seconds of the budget already spent (preparation, the probe).
      log: prints the table.

    Returns:
      The planned config (``auto=False``).

    Raises:
      ConfigError: a bad budget, several processes, fewer images than devices.
    """
    fixed = tuple(fixed)
    budget_s = _budget_to_plan(config)
    machine = machine or Machine.this_one()
    fp, num_classes = _training_fingerprint(
        config, prepare_fn=prepare_fn, sources=sources, num_classes=num_classes
    )
    input_decision = plan_input(fp, machine)
    decisions = [
        input_decision,
        plan_sampling(fp, crop=input_decision.fields["input_mode"] == "crop"),
        plan_batch(fp, machine),
        plan_compute(machine),
        plan_loss(fp),
        plan_augment(fp, dataset=str(config.dataset)),
        plan_normalisation(fp),
        *plan_schedule(),
    ]
    planned, rows = apply(config, decisions, fixed=fixed)
    planned, width_rows, probed = _decide_widths(
        planned,
        fixed=fixed,
        budget_s=budget_s,
        num_classes=num_classes,
        fp=fp,
        step_s_of=step_s_of,
        elapsed_s=elapsed_s,
    )
    rows += width_rows
    log("Plan (configs/auto.py; docs/AUTO.md):\n" + format_table(rows))
    record = {
        "fingerprint": fp.to_json(),
        "machine": dataclasses.asdict(machine),
        "probe": probed,
        "decisions": rows,
        "config": json.loads(planned.to_json_best_effort()),
    }
    write_plan(workdir, record)
    return planned
