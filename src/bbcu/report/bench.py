"""Speed of the packed 1-bit engine against what a user would run instead on this CPU (``bbcu bench``).

Every comparison runs both sides in the same process with the same thread count: every network and the
layer are first prepared and run once (the warm-up, whose outputs are checked), then timed in turns,
``repeats`` rounds that each run all of them once, and each one's median is kept (``bbcu.report.timing``:
on a host whose speed drifts, no side gets a phase of its own). The
references are PyTorch/oneDNN in ``channels_last`` with no autograd, the fastest way PyTorch runs these
networks on a CPU (docs/method.md, "What makes 1-bit fast"): the full networks and their 12-channel Lite
versions, in fp32, bf16 autocast and int8 (``bbcu.report.bench_references``). Networks use random
weights, which do not change the work done; scores come from trained weights where there are some.

A speed-up is only worth reporting for an engine that computes the right thing, so each comparison
also says how much work each side did (OPs, ``bbcu.metrics.complexity``'s units) and, where the
reference computes the same function, how far the engine's output was from the reference's. And a
speed-up is only understood against what the CPU can do: the run measures the binary (XOR-popcount) and
fp32 (FMA) ceilings of this CPU in every round, right after the layer, gives every binary row its
efficiency against the first (each round's time against that round's reading, median over the rounds:
``bbcu.report.crossover.efficiency_in_rounds``), and prints the crossover arithmetic where a binary
network faces a float one doing far fewer MACs.
"""

from __future__ import annotations

import logging
import os
import platform
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import bbcu
from bbcu.archs import model_entry
from bbcu.engine import kernels
from bbcu.engine.runtime import PackedModel, pack_model, set_num_threads
from bbcu.formats.weights import load as load_weights
from bbcu.metrics.complexity import BINARY_MACS_PER_OP, count_cost
from bbcu.report.bench_references import (
    CALIBRATION_PATCHES,
    QUALITY_SETS,
    bicubic_network,
    calibration_inputs,
    cpu_flags,
    float_networks,
    fp32_runner,
    native_bf16,
    quality_of,
    trained_weights,
)
from bbcu.report.crossover import Crossover, efficiency_in_rounds, efficiency_target
from bbcu.report.timing import PACKED, SIMULATED, PendingNetwork, TimedNetwork, Timing, Turns

LAYER_SIZE = (180, 320)  # H, W of the layer benchmark and of the SR inputs (the papers' 320x180)
LAYER_CHANNELS = 64
DENOISE_SIZE = (320, 480)  # a 480x320 colour image, BSD-sized
TINY_DIVISOR = 10
"""``--tiny`` divides every input side by this: a smoke run of the whole bench in seconds."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """One line of the benchmark table.

    Wall time is what a user waits; CPU time (all threads of this process) is what the work costs, and
    stays meaningful when other processes share the cores and stretch the wall time.

    Attributes:
        name: What is measured, e.g. ``"bbcu-m x4"``.
        input: Input size as ``CxHxW``.
        engine: Median wall and CPU time of the packed engine.
        reference: What it is compared with.
        reference_time: Median wall and CPU time of the reference.
        target: The wall-time speed-up the project aims for, or None when informative only.
        engine_ops_g: OPs (G) of one engine call: binary MACs / 64 plus float MACs.
        reference_ops_g: OPs (G) of one reference call.
        mean_abs_diff: Mean absolute difference between the engine's output and the reference's when
            both compute the same function (the layer's dot products, a network's float simulation),
            else None. The mean, because the largest is no measure on large inputs: a few binarizer
            inputs fall within float rounding of 0 there, the simulation's summation order decides
            their sign, and the flip changes a patch of the output (up to 0.1 in BBCU-M x4 at 320x180,
            mean 5e-5); a wrong engine is off everywhere.
        efficiency: The engine's binary MACs per wall second over the binary ceiling of this CPU read in
            the same round, median over the rounds; for a network over the whole network's time (its
            float layers included), else None.
        efficiency_target: The efficiency the project aims for (the layer only), else None.
        whole_network: Whether ``efficiency`` is over a whole network's time.
    """

    name: str
    input: str
    engine: Timing
    reference: str
    reference_time: Timing
    target: float | None
    engine_ops_g: float
    reference_ops_g: float
    mean_abs_diff: float | None
    efficiency: float | None = None
    efficiency_target: float | None = None
    whole_network: bool = False

    @property
    def speedup(self) -> float:
        """Wall-time speed-up of the engine over the reference."""
        return self.reference_time.wall_ms / self.engine.wall_ms

    @property
    def cpu_speedup(self) -> float:
        """CPU-time speed-up of the engine over the reference."""
        return self.reference_time.cpu_ms / self.engine.cpu_ms

    @property
    def round_speedups(self) -> list[float]:
        """The wall speed-up in each round: the reference's time over the engine's of the same round (the
        two run back to back there, so each ratio sees one moment of the machine); empty without
        per-round times."""
        engine, reference = self.engine.rounds_ms, self.reference_time.rounds_ms
        if len(engine) != len(reference):
            return []
        return [theirs / ours for ours, theirs in zip(engine, reference, strict=True)]

    def as_dict(self) -> dict[str, object]:
        met = None if self.target is None else self.speedup >= self.target
        rounds = self.round_speedups
        rounds_met = None if self.target is None or not rounds else sum(x >= self.target for x in rounds)
        met_efficiency = (
            None
            if self.efficiency_target is None or self.efficiency is None
            else self.efficiency >= self.efficiency_target
        )
        return {
            **asdict(self),
            "speedup": self.speedup,
            "cpu_speedup": self.cpu_speedup,
            "met": met,
            "met_efficiency": met_efficiency,
            "round_speedups": rounds,
            "rounds_met": rounds_met,
        }


@dataclass(frozen=True)
class Reference:
    """A network a binary one is compared with: registry name, precision, wall speed-up target."""

    network: str
    precision: str = "fp32"
    target: float | None = None

    @property
    def crossover(self) -> bool:
        """Whether the comparison gets the crossover arithmetic: against a 12-channel Lite network or an
        int8 one, where the float side does far fewer or far cheaper MACs, and wherever a speed-up
        target is set, so that a missed target says what stands in its way (issue 13)."""
        return self.precision == "int8" or self.network.endswith("-lite") or self.target is not None


@dataclass(frozen=True)
class NetworkCase:
    """A binary network and what it is compared with, at one input size."""

    binary: str
    size: tuple[int, int]
    references: tuple[Reference, ...]
    kwargs: dict[str, object] = field(default_factory=dict)


@dataclass
class BenchRun:
    """What every case of one run shares: settings, measured ceilings, the calls filed to be timed in
    turns, and the networks.

    Attributes:
        repeats: Timed rounds.
        ceilings: This CPU's measured binary and fp32 ceilings (``kernels.measure_ceilings``), or None;
            after a full run, the peak of every reading.
        bf16: Whether bf16 rows run (the CPU computes bf16 natively).
        weights: Trained weights files given by the user.
        root: Data root (calibration patches, quality sets).
        int8: Whether int8 rows run.
        calibration_patches: Training patches that calibrate each int8 network.
        kernel_efficiency: The 64->64 layer's efficiency once measured; the crossovers use it.
        round_ceilings: Ceiling readings of the path in use, one per round, each taken right after the
            layer (``file_layer``): every binary efficiency and the crossovers' float rates set each
            round's time against its round's reading.
        path_ceilings: Ceiling readings of the CPU's other kernel paths (``other_paths``), one per round.
        turns: Every call filed so far (``file_layer``, ``file_network``), timed by ``time_turns``.
        pending: The networks filed, in order, their times still to come.
        networks: ``pending`` with their times, once ``time_turns`` has run.
    """

    repeats: int
    ceilings: kernels.Ceilings | None = None
    bf16: bool = False
    weights: tuple[Path, ...] = ()
    root: str | os.PathLike[str] | None = None
    int8: bool = True
    calibration_patches: int = CALIBRATION_PATCHES
    kernel_efficiency: float | None = None
    round_ceilings: list[kernels.Ceilings] = field(default_factory=list)
    path_ceilings: dict[str, list[kernels.Ceilings]] = field(default_factory=dict)
    turns: Turns = field(default_factory=Turns)
    pending: list[PendingNetwork] = field(default_factory=list)
    networks: list[TimedNetwork] = field(default_factory=list)
    _float: dict[tuple[object, ...], list[PendingNetwork]] = field(default_factory=dict)
    _calibration: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)

    def calibration(self, task: str, scale: int) -> torch.Tensor:
        """The int8 calibration batch of a task and scale, cut once per run."""
        if (task, scale) not in self._calibration:
            patch = 32 if task == "sr" else 48
            self._calibration[task, scale] = calibration_inputs(
                task, scale, root=self.root, count=self.calibration_patches, patch=patch
            )
        return self._calibration[task, scale]

    def bicubic(self, scale: int, size: tuple[int, int]) -> None:
        """File and score bicubic upscaling at ``scale`` once per run (the latency chart's floor)."""
        if ("bicubic", scale, size) not in self._float:
            torch.manual_seed(0)
            x = torch.rand(1, 3, *size)
            self._float["bicubic", scale, size] = [bicubic_network(scale, x, self.turns, self.root)]
            self.pending += self._float["bicubic", scale, size]

    def float_network(self, network: str, size: tuple[int, int], **kwargs: object) -> list[PendingNetwork]:
        """Every precision of a float network at ``size``, filed once per run however many binary
        networks are compared with it."""
        key = (network, size, tuple(sorted(kwargs.items())))
        if key not in self._float:
            entry = model_entry(network)
            scale = int(kwargs.get("scale", 1))
            weights = trained_weights(network, kwargs, self.weights)
            calibration = self.calibration(entry.task, scale) if self.int8 else None
            rows = float_networks(
                network,
                size,
                self.turns,
                int8_calibration=calibration,
                bf16=self.bf16,
                weights=weights,
                root=self.root,
                **kwargs,
            )
            self._float[key] = rows
            self.pending += rows
        return self._float[key]

    def time_turns(self, progress: Callable[[int], None] = lambda done: None) -> None:
        """Times every call filed since the last time in ``repeats`` rounds, and lists every network
        filed with its time."""
        timings = self.turns.run(self.repeats, progress)
        self.networks = [network.timed(timings) for network in self.pending]

    def timed(self, network: PendingNetwork) -> TimedNetwork:
        """A filed network with its time (after ``time_turns``)."""
        return network.timed(self.turns.timings)


def moved_off_init(model: nn.Module) -> nn.Module:
    """``model`` with every parameter moved off its initial value by seeded noise, in place.

    At init the binarizers' shifts and RPReLU's offsets are 0, so many binarizer inputs (ReLU's zeros)
    sit exactly on 0, where the float simulation's rounding rather than the network decides the sign
    and its output is no yardstick for the engine's; trained networks do not sit there.
    """
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def _signs(values: np.ndarray) -> np.ndarray:
    """+1 where ``values >= 0`` else -1, float32 (the engine's sign(0) = +1)."""
    return np.where(values >= 0, np.float32(1), np.float32(-1))


def _binary_efficiency(
    binary_macs: int, timing: Timing, run: BenchRun, readings: Sequence[kernels.Ceilings] | None = None
) -> float | None:
    """``binary_macs`` per wall second of each round over that round's binary ceiling (``readings``,
    default the path in use), median over the rounds; None without ceilings."""
    if run.ceilings is None:
        return None
    rates = [reading.binary_macs_per_s for reading in (run.round_ceilings if readings is None else readings)]
    return efficiency_in_rounds(binary_macs, _round_seconds(timing), rates)


def _round_seconds(timing: Timing) -> list[float]:
    return [ms / 1e3 for ms in timing.rounds_ms]


def _file_ceilings(run: BenchRun, isa: str) -> list[kernels.Ceilings]:
    """Files a reading of kernel path ``isa``'s ceilings with ``run``'s turns, so that every round reads
    them right after the call filed before; returns the list the rounds' readings go to."""

    def read() -> kernels.Ceilings:
        with kernels.using_isa(isa):
            return kernels.measure_ceilings(kernels.get_num_threads())

    handle, _ = run.turns.add(read, keep_results=True)
    return run.turns.results[handle]  # type: ignore[return-value]


class LayerProblem:
    """One 64 -> 64 binary 3x3 conv with its whole V4 epilogue fused (alpha, RPReLU, residual, the next
    unit's sign packing) on seeded random data, and the same conv in float.

    The float conv convolves the +-1 values the binary conv packs (a dense conv costs the same whatever
    its values), so its output is the binary conv's exact dot products, and ``expected`` applies the V4
    epilogue to them: the engine's output must equal it. The binary conv adds into its feature map in
    place, as the runtime runs every unit (``out`` = ``residual``): the first call's output is checked,
    later calls keep adding to it (the work does not depend on the values).
    """

    def __init__(self, size: tuple[int, int], channels: int = LAYER_CHANNELS) -> None:
        self.height, self.width, self.channels = *size, channels
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((*size, channels), dtype=np.float32)
        self.alpha, self.gamma, self.beta, self.zeta, self.shift = (
            rng.standard_normal(channels, dtype=np.float32) for _ in range(5)
        )
        w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32)
        self.features = self.x.copy()  # the unit's feature map, updated in place by each call
        self.packed_x = kernels.pack_activations(self.x, self.shift)
        self.packed_w = kernels.pack_weights(w)
        self.x_t = torch.from_numpy(_signs(self.x + self.shift)).permute(2, 0, 1).unsqueeze(0)  # NHWC view
        self.w_t = torch.from_numpy(_signs(w)).contiguous(memory_format=torch.channels_last)

    @property
    def macs(self) -> int:
        """Binary MACs of one call."""
        return self.height * self.width * self.channels * self.channels * 9

    def binary(self) -> np.ndarray:
        """The engine's fused call, in place; returns a copy of the feature map after it."""
        self.unit()
        return self.features.copy()

    def unit(self) -> None:
        """The engine's fused call on the feature map in place (what is timed)."""
        kernels.binary_conv3x3(
            self.packed_x,
            self.packed_w,
            self.channels,
            scale=self.alpha,
            rprelu=(self.gamma, self.beta, self.zeta),
            residual=self.features,
            out=self.features,
            next_shift=self.shift,
        )

    def full_precision(self) -> np.ndarray:
        """oneDNN's float conv of the same +-1 values: the exact dot products."""
        with torch.no_grad():
            return F.conv2d(self.x_t, self.w_t, padding=1)[0].permute(1, 2, 0).numpy()

    def expected(self, dot: np.ndarray) -> np.ndarray:
        """The V4 epilogue applied to the dot products."""
        t = self.alpha * dot + self.gamma
        return np.where(t >= 0, t, self.beta * t) + self.zeta + self.x


Rows = Callable[[], tuple[list[Comparison], list[Crossover]]]
"""Builds a filed step's comparison rows and crossover arithmetic, once the turns have been timed."""


def file_layer(size: tuple[int, int], run: BenchRun) -> Rows:
    """Files the fused 64 -> 64 binary layer (``LayerProblem``) and the same conv in float with ``run``'s
    turns, its output checked. With ``run``'s ceilings the row carries the kernel's efficiency and its
    target, and ``run`` keeps the efficiency for the crossover arithmetic (so build this step's rows
    first).
    """
    problem = LayerProblem(size)
    y = problem.binary()  # the first call, checked; the calls timed keep adding in place
    engine, _ = run.turns.add(problem.unit)
    if run.ceilings is not None:
        run.round_ceilings = _file_ceilings(run, kernels.get_isa())
    reference, dot = run.turns.add(problem.full_precision)
    expected = problem.expected(dot)
    mean_abs_diff = float(np.abs(y - expected).mean())
    others = {isa: file_layer_on_path(isa, size, expected, run) for isa in other_paths()}

    def rows() -> tuple[list[Comparison], list[Crossover]]:
        timings = run.turns.timings
        run.kernel_efficiency = _binary_efficiency(problem.macs, timings[engine], run)
        channels = problem.channels

        def row(
            label: str, timing: Timing, diff: float, isa_efficiency: float | None, isa: str | None
        ) -> Comparison:
            return Comparison(
                name=f"binary conv {channels}->{channels} + fused epilogue{label}",
                input=f"{channels}x{problem.height}x{problem.width}",
                engine=timing,
                reference=f"float conv {channels}->{channels} (oneDNN)",
                reference_time=timings[reference],
                target=None if label else 15.0,
                engine_ops_g=problem.macs / BINARY_MACS_PER_OP / 1e9,
                reference_ops_g=problem.macs / 1e9,
                mean_abs_diff=diff,
                efficiency=isa_efficiency,
                efficiency_target=None if isa is None else efficiency_target(isa),
            )

        main_isa = None if run.ceilings is None else run.ceilings.isa
        main = row("", timings[engine], mean_abs_diff, run.kernel_efficiency, main_isa)
        alternatives = []
        for isa, (call, diff) in others.items():
            isa_efficiency = _binary_efficiency(problem.macs, timings[call], run, run.path_ceilings.get(isa))
            alternatives.append(row(f", {kernels.isa_label(isa)}", timings[call], diff, isa_efficiency, isa))
        return [main, *alternatives], []

    return rows


def other_paths() -> list[str]:
    """The CPU's SIMD kernel paths besides the one in use: the bench times the layer on each (an AVX-512
    machine also shows its AVX2 path against that path's own target, an AMX one its tiles)."""
    return [isa for isa in kernels.simd_isas() if isa != kernels.get_isa()]


def file_layer_on_path(
    isa: str, size: tuple[int, int], expected: np.ndarray, run: BenchRun
) -> tuple[int, float]:
    """Files the fused layer on kernel path ``isa`` and that path's ceilings (read in every round, as the
    main path's), its first output checked against ``expected``; returns the call's turn and the mean
    difference."""
    problem = LayerProblem(size)
    with kernels.using_isa(isa):
        diff = float(np.abs(problem.binary() - expected).mean())

    def unit() -> None:
        with kernels.using_isa(isa):
            problem.unit()

    call, _ = run.turns.add(unit)
    if run.ceilings is not None:
        run.path_ceilings[isa] = _file_ceilings(run, isa)
    return call, diff


def bench_layer(run: BenchRun, size: tuple[int, int] = LAYER_SIZE) -> list[Comparison]:
    """The layer's comparison (``file_layer``), timed in turns with whatever ``run`` has filed so far."""
    rows = file_layer(size, run)
    run.time_turns()
    return rows()[0]


def path_counts(packed: PackedModel) -> dict[str, int]:
    """How many convolutions of ``packed`` each path (kernel ISA or library) ran."""
    return dict(Counter(path for _, path in packed.layer_paths()))


def _file_binary(case: NetworkCase, run: BenchRun) -> tuple[PendingNetwork, PendingNetwork, float]:
    """Files the packed engine and its own PyTorch simulation on the case's input; returns them and
    their mean output gap."""
    torch.manual_seed(0)
    simulated = moved_off_init(bbcu.create_model(case.binary, **case.kwargs))
    scale = int(simulated.scale)
    x = torch.rand(1, simulated.in_channels, *case.size).contiguous(memory_format=torch.channels_last)
    packed, simulate = pack_model(simulated), fp32_runner(simulated)
    engine, output = run.turns.add(lambda: packed(x))
    reference, expected = run.turns.add(lambda: simulate(x))
    cost = count_cost(simulated, case.size[::-1])
    label = f"{case.binary} x{scale}" if scale > 1 else case.binary
    shape = f"{simulated.in_channels}x{case.size[0]}x{case.size[1]}"
    scored = model_entry(case.binary).task in QUALITY_SETS
    weights = trained_weights(case.binary, case.kwargs, run.weights) if scored else None
    trained = None if weights is None else pack_model(load_weights(weights))
    quality = quality_of(trained, case.binary, scale, int(simulated.in_channels), weights, run.root)
    common = (label, case.binary, scale)
    macs = (cost.fp_macs, cost.binary_macs)
    packed_row = TimedNetwork(
        *common, PACKED, shape, None, *macs, quality=quality, layer_paths=path_counts(packed)
    )
    return (
        PendingNetwork(packed_row, engine),
        PendingNetwork(TimedNetwork(*common, SIMULATED, shape, None, *macs, quality=quality), reference),
        (output - expected).abs().mean().item(),
    )


def compare(
    engine: TimedNetwork,
    reference: TimedNetwork,
    target: float | None,
    run: BenchRun,
    mean_abs_diff: float | None = None,
) -> Comparison:
    """The comparison row of a timed engine against a timed reference (both with a time)."""
    return Comparison(
        name=engine.label,
        input=engine.input,
        engine=engine.time,
        reference=f"{reference.name} (PyTorch)",
        reference_time=reference.time,
        target=target,
        engine_ops_g=(engine.fp_macs + engine.binary_macs / BINARY_MACS_PER_OP) / 1e9,
        reference_ops_g=(reference.fp_macs + reference.binary_macs / BINARY_MACS_PER_OP) / 1e9,
        mean_abs_diff=mean_abs_diff,
        efficiency=_binary_efficiency(engine.binary_macs, engine.time, run),
        whole_network=True,
    )


def crossover(
    engine: TimedNetwork, reference: TimedNetwork, run: BenchRun, target: float | None = None
) -> Crossover | None:
    """The crossover arithmetic of a binary network against a float one (with the comparison's speed-up
    ``target``), when the ceilings and the layer's kernel efficiency were measured in this run."""
    if run.ceilings is None or run.kernel_efficiency is None:
        return None
    reference_macs = reference.fp_macs + reference.binary_macs
    return Crossover(
        binary=engine.label,
        reference=reference.name,
        binary_macs=engine.binary_macs,
        reference_macs=reference_macs,
        per_mac_gain=run.ceilings.per_mac_gain,
        kernel_efficiency=run.kernel_efficiency,
        reference_rate=efficiency_in_rounds(
            reference_macs, _round_seconds(reference.time), [c.fp32_macs_per_s for c in run.round_ceilings]
        ),
        measured_speedup=reference.time.wall_ms / engine.time.wall_ms,
        target=target,
        network_efficiency=_binary_efficiency(engine.binary_macs, engine.time, run),
        binary_float_macs=engine.fp_macs,
    )


def file_network(case: NetworkCase, run: BenchRun) -> Rows:
    """Files a packed network, each of its references and its own PyTorch float simulation with ``run``'s
    turns; the rows compare the engine with each of them.

    References that cannot run on this CPU (bf16 without native bf16) are listed among the timed
    networks with their reason and get no comparison row.
    """
    engine, simulated, gap = _file_binary(case, run)
    run.pending += [engine, simulated]
    references = []
    for wanted in case.references:
        kwargs = {"scale": engine.row.scale} if engine.row.scale > 1 else {}
        filed = run.float_network(wanted.network, case.size, **kwargs)
        (reference,) = [network for network in filed if network.row.precision == wanted.precision]
        references.append((wanted, reference))
    if model_entry(case.binary).task == "sr":
        run.bicubic(engine.row.scale, case.size)

    def rows() -> tuple[list[Comparison], list[Crossover]]:
        timed = run.timed(engine)
        comparisons, crossovers = [], []
        for wanted, pending in references:
            reference = run.timed(pending)
            if reference.time is None:
                continue
            comparisons.append(compare(timed, reference, wanted.target, run))
            arithmetic = crossover(timed, reference, run, wanted.target) if wanted.crossover else None
            crossovers += [] if arithmetic is None else [arithmetic]
        comparisons.append(compare(timed, run.timed(simulated), None, run, mean_abs_diff=gap))
        return comparisons, crossovers

    return rows


def bench_network(case: NetworkCase, run: BenchRun) -> tuple[list[Comparison], list[Crossover]]:
    """A network's comparisons (``file_network``), timed in turns with whatever ``run`` has filed."""
    rows = file_network(case, run)
    run.time_turns()
    return rows()


def _every_precision(network: str, fp32_target: float | None = None) -> tuple[Reference, ...]:
    return tuple(
        Reference(network, p, fp32_target if p == "fp32" else None) for p in ("fp32", "bf16", "int8")
    )


def network_cases(divisor: int = 1) -> dict[str, NetworkCase]:
    """The networks of the bench and their references, inputs divided by ``divisor`` per side."""
    sr = (LAYER_SIZE[0] // divisor, LAYER_SIZE[1] // divisor)
    denoise = (DENOISE_SIZE[0] // divisor, DENOISE_SIZE[1] // divisor)
    return {
        "bbcu-m x4": NetworkCase(
            "bbcu-m",
            sr,
            _every_precision("srresnet", 10.0) + _every_precision("srresnet-lite", 1.3),
            {"scale": 4},
        ),
        "bbcu-m x2": NetworkCase("bbcu-m", sr, _every_precision("srresnet-lite"), {"scale": 2}),
        "bbcu-l x4": NetworkCase("bbcu-l", sr, (Reference("srresnet"),), {"scale": 4}),
        "dncnn-bbcu": NetworkCase(
            "dncnn-bbcu", denoise, _every_precision("dncnn", 5.0) + _every_precision("dncnn-lite")
        ),
    }


def run_benchmarks(
    repeats: int = 5,
    threads: int | None = None,
    *,
    divisor: int = 1,
    weights: Sequence[Path] = (),
    root: str | os.PathLike[str] | None = None,
    cases: Sequence[str] | None = None,
) -> dict[str, object]:
    """Every comparison of the engine's speed targets, plus what was measured on.

    Args:
        repeats: Timed rounds (every network once per round; each one's median is kept).
        threads: Threads for both PyTorch and the kernels; default all the cores PyTorch sees.
        divisor: Every input side is divided by it (``--tiny``: a smoke run, not a measurement).
        weights: Trained weights files of reference or binary networks: run, and scored on Set5.
        root: Data root (int8 calibration patches, Set5).
        cases: Names of ``network_cases`` to run (default all); the layer always runs.

    Returns:
        ``{"machine", "threads", "isa", "repeats", "torch", "load_average", "ceilings", "bf16",
        "comparisons", "networks", "crossovers"}``; the ceilings' ``rounds`` are the readings each
        round's efficiencies were set against, and every timing keeps its ``rounds_ms``.
    """
    threads = threads or torch.get_num_threads()
    set_num_threads(threads)
    flags = cpu_flags()
    run = BenchRun(
        repeats, kernels.measure_ceilings(threads), native_bf16(flags), tuple(Path(w) for w in weights), root
    )
    run.calibration_patches = CALIBRATION_PATCHES if divisor == 1 else 4  # a smoke run calibrates lightly
    chosen = network_cases(divisor)
    chosen = {name: chosen[name] for name in (cases or chosen)}
    layer_size = (LAYER_SIZE[0] // divisor, LAYER_SIZE[1] // divisor)
    steps: dict[str, Callable[[], Rows]] = {
        "one binary layer": lambda: file_layer(layer_size, run),
        **{name: (lambda case=case: file_network(case, run)) for name, case in chosen.items()},
    }
    load_before = os.getloadavg()[0]
    built: list[Rows] = []
    for number, (label, step) in enumerate(steps.items(), start=1):
        logger.info("preparing %s (%d of %d)", label, number, len(steps))
        built.append(step())
    with tqdm(
        total=repeats, desc="bbcu bench: timing every network in turns", unit="round", leave=False
    ) as bar:
        run.time_turns(lambda done: bar.update(1))
    # what the CPU can do, for the per-MAC gain: the peak of all readings (a slow phase of the host only
    # ever lowers one)
    measured = [run.ceilings, *run.round_ceilings]
    run.ceilings = ceilings = peak(measured)
    comparisons: list[Comparison] = []
    crossovers: list[Crossover] = []
    for rows in built:  # the layer's first: it measures the efficiency the crossovers use
        step_comparisons, step_crossovers = rows()
        comparisons += step_comparisons
        crossovers += step_crossovers
    return {
        "machine": machine_description(),
        "threads": threads,
        "isa": kernels.get_isa(),
        "repeats": repeats,
        "torch": torch.__version__,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "ceilings": {
            **asdict(ceilings),
            "per_mac_gain": ceilings.per_mac_gain,
            "readings": len(measured),
            "rounds": [asdict(reading) for reading in run.round_ceilings],
        },
        "bf16": run.bf16,
        "comparisons": [row.as_dict() for row in comparisons],
        "networks": [network.as_dict() for network in run.networks],
        "crossovers": [row.as_dict() for row in crossovers],
    }


def peak(readings: Sequence[kernels.Ceilings]) -> kernels.Ceilings:
    """The highest binary and fp32 rates among ``readings`` of the same ISA and threads."""
    first = readings[0]
    return kernels.Ceilings(
        first.isa,
        first.threads,
        max(reading.binary_macs_per_s for reading in readings),
        max(reading.fp32_macs_per_s for reading in readings),
    )


def machine_description() -> str:
    """The CPU model name and logical core count."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} logical cores"
