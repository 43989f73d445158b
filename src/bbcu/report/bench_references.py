"""What a user would run instead of a binary network on a CPU, timed the way they would run it.

Three ways to run a full-precision network through PyTorch (docs/method.md, "The fair references on a
CPU"): fp32 in ``channels_last`` (oneDNN), bf16 autocast where the CPU computes bf16 natively
(AVX-512-BF16 or AMX; elsewhere oneDNN emulates it and the row would measure the emulation, so it is
reported as not available), and int8 made with PyTorch's own post-training quantization (FX graph mode,
``prepare_fx`` / ``convert_fx``, x86 backend = oneDNN, default qconfig), calibrated on real training
patches, because int8 is what most people deploying on a CPU reach for first.

Quality: a network's score on its task's quality set (Set5 for super-resolution) is measured here when
trained weights exist for it (a weights file given to the bench, or a shipped model of that
architecture and scale), on exactly the arithmetic that was timed (int8 scored as int8); otherwise the
published score is given, marked as published. Networks are timed on random weights unless trained
weights are given: the work does not depend on the values.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.data.datasets import DenoiseTrainSet, SRTrainSet
from bbcu.data.published import published_score
from bbcu.data.root import data_root
from bbcu.formats.weights import load as load_weights
from bbcu.metrics.complexity import count_cost
from bbcu.report.timing import PendingNetwork, Quality, TimedNetwork, Turns
from bbcu.run import zoo
from bbcu.run.evaluate import evaluate_set

Runner = Callable[[torch.Tensor], torch.Tensor]

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""``/proc/cpuinfo`` flags of CPUs that compute bf16 dot products in hardware."""
QUALITY_SETS = {"sr": "Set5"}
"""Test set scored for each task; other tasks take their published score on ``PUBLISHED_SETS``."""
PUBLISHED_SETS = {"sr": ("Set5", None), "denoise": ("CBSD68", 25), "jpeg": ("LIVE1", 10)}
"""(test set, setting; None = the network's scale) of the published score shown per task."""
PUBLISHED = "published (Xia et al., ICLR 2023)"
CALIBRATION_PATCHES = 16
CALIBRATION_SOURCES = {"sr": "T91", "denoise": "CBSD432"}
"""Training folder under the data root whose patches calibrate int8 activations, per task."""
CALIBRATION_SIGMA = 25.0
BICUBIC = "MATLAB bicubic (numpy)"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (empty where there is no such file)."""
    if not cpuinfo.is_file():
        return frozenset()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(flags: frozenset[str]) -> bool:
    """Whether a CPU with ``flags`` has AVX-512-BF16 or AMX, so a bf16 row measures real bf16 arithmetic."""
    return bool(flags & BF16_FLAGS)


def fp32_runner(model: nn.Module) -> Runner:
    """``model`` in eval mode and channels_last, called without autograd."""
    model = model.eval().to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return run


def bf16_runner(model: nn.Module) -> Runner:
    """``model`` in channels_last under CPU bf16 autocast (oneDNN bf16 convolutions), float32 output."""
    model = model.eval().to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x).float()

    return run


def int8_model(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """An int8 copy of ``model``: FX graph-mode post-training quantization for the x86 (oneDNN) backend.

    Weights are quantized per channel, activations per tensor with ranges observed on ``calibration``
    (one batch of real training inputs); operations without a quantized kernel run in float between
    dequantize / quantize nodes that FX inserts itself.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():  # torch.ao.quantization announces its successor on every call
        warnings.simplefilter("ignore")
        prepared = prepare_fx(
            copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), example_inputs=(calibration[:1],)
        )
        with torch.no_grad():
            prepared(calibration)
        return convert_fx(prepared)


def int8_runner(model: nn.Module, calibration: torch.Tensor) -> Runner:
    """The int8 copy of ``model`` (``int8_model``), called without autograd."""
    quantized = int8_model(model, calibration)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return quantized(x)

    return run


def calibration_inputs(
    task: str,
    scale: int,
    *,
    root: str | os.PathLike[str] | None = None,
    count: int = CALIBRATION_PATCHES,
    patch: int = 32,
) -> torch.Tensor:
    """A batch of ``count`` network inputs cut from the task's training images (``CALIBRATION_SOURCES``):
    MATLAB-bicubic LR patches of ``patch`` pixels for super-resolution, noisy patches (sigma 25) for
    denoising. Seeded, so every run calibrates alike."""
    folder = data_root(root) / CALIBRATION_SOURCES[task]
    if task == "sr":
        dataset: SRTrainSet | DenoiseTrainSet = SRTrainSet([folder], scale, lr_patch=patch, cache_lr=False)
    else:
        dataset = DenoiseTrainSet([folder], patch=patch, sigma_range=(CALIBRATION_SIGMA, CALIBRATION_SIGMA))
    count = min(count, len(dataset))
    return torch.stack([dataset.sample(index, 0)["lq"] for index in range(count)])


class _Restorer(nn.Module):
    """A runner seen as a restoration network (``scale``, ``in_channels``) by ``evaluate_set``."""

    def __init__(self, run: Runner, scale: int, in_channels: int) -> None:
        super().__init__()
        self.run, self.scale, self.in_channels = run, scale, in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


def measured_quality(
    run: Runner, task: str, scale: int, in_channels: int, source: str, root: str | os.PathLike[str] | None
) -> Quality:
    """The mean PSNR of ``run`` on its task's quality set, scored as ``bbcu eval`` scores."""
    dataset = QUALITY_SETS[task]
    setting = scale
    result = evaluate_set(_Restorer(run, scale, in_channels), task, dataset, setting, root=root)
    return Quality(result.mean()["psnr"], f"{dataset} x{scale}", True, source)


def published_quality(network: str, task: str, scale: int) -> Quality | None:
    """The paper's score of ``network`` on its task's published quality set, if it has one."""
    dataset, setting = PUBLISHED_SETS[task]
    setting = scale if setting is None else setting
    score = published_score(network, task, dataset, setting)
    if score is None:
        return None
    label = f"{dataset} x{setting}" if task == "sr" else f"{dataset} {setting}"
    return Quality(score[0], label, False, PUBLISHED)


def trained_weights(network: str, kwargs: dict[str, object], given: Sequence[Path]) -> Path | None:
    """Trained weights of ``network`` built with ``kwargs``: the first of ``given`` that holds exactly
    that network, else a shipped model that does, else None."""
    candidates = [zoo.describe_weights(Path(path)) for path in given]
    candidates += [zoo.shipped_info(name) for name in zoo.list_shipped()]
    for info in candidates:
        if info.architecture == network and info.model_kwargs == kwargs:
            return info.path
    return None


def quality_of(
    run: Runner,
    network: str,
    scale: int,
    in_channels: int,
    weights: Path | None,
    root: str | os.PathLike[str] | None,
) -> Quality | None:
    """Measured on the task's quality set when trained ``weights`` were run and the task has one, else
    the published score."""
    task = model_entry(network).task
    if weights is not None and task in QUALITY_SETS:
        return measured_quality(run, task, scale, in_channels, weights.name, root)
    return published_quality(network, task, scale)


def bicubic_network(
    scale: int, x: torch.Tensor, turns: Turns, root: str | os.PathLike[str] | None
) -> PendingNetwork:
    """MATLAB-exact bicubic upscaling (the SR tables' baseline row), filed with ``turns`` on ``x`` and
    scored on Set5: the floor any network has to clear, and the cheapest thing a user could run."""
    model = create_model("bicubic", scale=scale)
    handle, _ = turns.add(lambda: model(x))
    quality = measured_quality(model, "sr", scale, int(model.in_channels), "MATLAB bicubic", root)
    shape = "x".join(str(n) for n in x.shape[1:])
    row = TimedNetwork(f"bicubic x{scale}", "bicubic", scale, BICUBIC, shape, None, 0, 0, quality=quality)
    return PendingNetwork(row, handle)


BF16_MISSING = "n/a: this CPU has neither AVX-512-BF16 nor AMX"


def float_networks(
    network: str,
    size: tuple[int, int],
    turns: Turns,
    *,
    int8_calibration: torch.Tensor | None,
    bf16: bool,
    weights: Path | None = None,
    root: str | os.PathLike[str] | None = None,
    **kwargs: object,
) -> list[PendingNetwork]:
    """A full-precision network in fp32, bf16 (``n/a`` when not ``bf16``) and int8, each filed with
    ``turns`` to be timed with everything it is compared with.

    Args:
        network: Registry name.
        size: (H, W) of the timed input (seeded random, channels_last).
        turns: Where the calls are filed (``bbcu.report.timing.Turns``).
        int8_calibration: Calibration batch for the int8 row; None leaves the row out.
        bf16: Whether this CPU computes bf16 natively (``native_bf16``).
        weights: Trained weights to run and score; None times random weights and shows the published
            score.
        root: Data root for scoring.
        **kwargs: Registry arguments (``scale``).
    """
    torch.manual_seed(0)
    model = load_weights(weights) if weights is not None else create_model(network, **kwargs)
    scale, in_channels = int(getattr(model, "scale", 1)), int(model.in_channels)
    x = torch.rand(1, in_channels, *size).contiguous(memory_format=torch.channels_last)
    label = f"{network} x{scale}" if scale > 1 else network
    cost = count_cost(model, (x.shape[-1], x.shape[-2]))
    shape = "x".join(str(n) for n in x.shape[1:])
    ways: list[tuple[str, Runner | None, str]] = [("fp32", fp32_runner(model), "")]
    ways.append(("bf16", bf16_runner(model), "") if bf16 else ("bf16", None, BF16_MISSING))
    if int8_calibration is not None:
        ways.append(("int8", int8_runner(model, int8_calibration), ""))
    rows: list[PendingNetwork] = []
    fp32_output: torch.Tensor | None = None
    for precision, run, note in ways:
        handle, output, quality = None, None, None
        if run is not None:
            handle, output = turns.add(lambda run=run: run(x))
            quality = quality_of(run, network, scale, in_channels, weights, root)
        diff = None if fp32_output is None or output is None else (output - fp32_output).abs().mean().item()
        fp32_output = output if fp32_output is None else fp32_output
        row = TimedNetwork(
            label,
            network,
            scale,
            precision,
            shape,
            None,
            cost.fp_macs,
            cost.binary_macs,
            diff_from_fp32=diff,
            quality=quality,
            note=note,
        )
        rows.append(PendingNetwork(row, handle))
    return rows


def time_float_network(
    network: str, size: tuple[int, int], repeats: int, **options: object
) -> list[TimedNetwork]:
    """``float_networks`` timed on their own, in turns with each other (``options`` as there)."""
    turns = Turns()
    rows = float_networks(network, size, turns, **options)  # type: ignore[arg-type]
    timings = turns.run(repeats)
    return [row.timed(timings) for row in rows]
