"""The arithmetic of 1-bit speed: kernel efficiency against the CPU's ceilings, and where a binary
network can beat a float one at all.

A binary MAC is cheaper than a float MAC by at most the per-MAC gain ``G`` of this CPU (its measured
XOR-popcount ceiling over its fp32 FMA ceiling, ``bbcu.engine.kernels.measure_ceilings``), and a kernel
reaches a fraction ``E`` of its ceiling (its efficiency). A binary network doing ``R`` times the MACs of
a float network (a 64-channel binary layer against a 12-channel float one: 64^2 / 12^2 = 28.4x) can
therefore only be faster where ``G * E > R``, even if its float layers cost nothing and the float
network ran at its own ceiling. The bench prints this beside the measured times, so a target that
cannot be met on a CPU says why in numbers (issue 13).

A speed-up target ``T`` against a reference that runs at ``rate`` times the fp32 ceiling (PyTorch's
SRResNet at about half of it) leaves the binary network ``1 / (T * rate)`` of the reference's MACs worth
of fp32-ceiling time. Its own float layers (``F`` MACs: BBCU-M's first and last convs) take at least
``F`` of that, at the fp32 ceiling, so its binary MACs must run at ``T * R * rate / G / (1 - T * rate *
F / M)`` of the binary ceiling (``M`` the reference's MACs; ``F = 0``: ``T * R * rate / G``): above 1,
or with the float layers alone over the time, no kernel can reach the target on this CPU; above the
64->64 layer's own efficiency not even a network made only of such layers; below it, what misses is the
rest of the network (its high-resolution tail, its float layers below the ceiling), not the kernel.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

EFFICIENCY_TARGETS = {"avx512": 0.70, "avx2": 0.60}
"""Fraction of its ceiling the 64->64 binary layer with its fused epilogue should reach, per kernel ISA."""


def efficiency(macs: float, seconds: float, ceiling_macs_per_s: float) -> float:
    """Achieved MACs per second as a fraction of the ceiling: ``macs / seconds / ceiling``.

    Raises:
        ValueError: If the time or the ceiling is not positive (no rate can be formed).
    """
    if seconds <= 0 or ceiling_macs_per_s <= 0:
        raise ValueError(f"time and ceiling must be positive, got {seconds} s and {ceiling_macs_per_s} MAC/s")
    return macs / seconds / ceiling_macs_per_s


def efficiency_in_rounds(
    macs: float, seconds: Sequence[float], ceilings_macs_per_s: Sequence[float]
) -> float:
    """The median over rounds of each round's ``efficiency``, its time set against the ceiling read in
    the same round.

    On a host whose speed drifts by up to 2x within seconds, a median time over the peak ceiling of a
    whole run measures the drift as much as the kernel; a time and a ceiling read side by side share
    their phase of the host.

    Raises:
        ValueError: If the rounds do not pair up, or a time or ceiling is not positive.
    """
    if not seconds or len(seconds) != len(ceilings_macs_per_s):
        raise ValueError(
            f"need one ceiling per timed round, got {len(ceilings_macs_per_s)} for {len(seconds)}"
        )
    return statistics.median(
        efficiency(macs, time, ceiling) for time, ceiling in zip(seconds, ceilings_macs_per_s, strict=True)
    )


def efficiency_target(isa: str) -> float | None:
    """The layer's efficiency target on kernel path ``isa``; None where the project sets none."""
    return EFFICIENCY_TARGETS.get(isa)


@dataclass(frozen=True)
class Crossover:
    """Whether a binary network can beat a float network on this CPU, by the ceilings.

    Attributes:
        binary: The binary network, e.g. ``"bbcu-m x2"``.
        reference: The float network, e.g. ``"srresnet-lite x2 int8"``.
        binary_macs: Binary MACs of one binary-network call.
        reference_macs: MACs of one reference call (all its convolutions, whatever their precision).
        per_mac_gain: ``G``, binary ceiling / fp32 ceiling, measured in this run.
        kernel_efficiency: ``E``, the binary kernel's measured fraction of its ceiling.
        reference_rate: The reference's measured MACs/s over the fp32 ceiling (above 1 for an int8
            network faster per MAC than fp32 FMAs can be), so a reader sees how far from the ceiling
            the float side ran; the verdict itself assumes the float side at the fp32 ceiling.
        measured_speedup: Reference wall time / binary wall time in the same run.
        target: The comparison's wall speed-up target ``T``, or None.
        network_efficiency: The binary network's own binary MACs/s over the binary ceiling (all its
            time counted, float layers included), or None.
        binary_float_macs: ``F``, the float MACs of one binary-network call (its first and last
            convs), which the target arithmetic counts at the fp32 ceiling.
    """

    binary: str
    reference: str
    binary_macs: int
    reference_macs: int
    per_mac_gain: float
    kernel_efficiency: float
    reference_rate: float
    measured_speedup: float
    target: float | None = None
    network_efficiency: float | None = None
    binary_float_macs: int = 0

    @property
    def mac_ratio(self) -> float:
        """``R``: binary MACs / reference MACs."""
        return self.binary_macs / self.reference_macs

    @property
    def available(self) -> float:
        """``G * E``: how many binary MACs this kernel does in the time of one fp32 MAC at the ceiling."""
        return self.per_mac_gain * self.kernel_efficiency

    @property
    def can_win(self) -> bool:
        """Whether ``G * E`` exceeds ``R``."""
        return self.available > self.mac_ratio

    @property
    def needed_efficiency(self) -> float:
        """The kernel efficiency at which ``G * E = R``: above 1, no kernel on this CPU can win."""
        return self.mac_ratio / self.per_mac_gain

    def verdict(self) -> str:
        """One phrase: ``can win`` with its margin, or ``cannot win on this CPU`` and by how much."""
        if self.can_win:
            return f"can win ({self.available / self.mac_ratio:.2f}x margin)"
        return f"cannot win on this CPU: {self.mac_ratio / self.available:.2f}x short"

    @property
    def target_efficiency(self) -> float | None:
        """``T * R * rate / G / (1 - T * rate * F / M)``: the binary efficiency at which the target is
        reached with the reference as measured and the binary network's float layers at the fp32
        ceiling (infinite where those alone take longer than the target allows); None without a
        target."""
        if self.target is None:
            return None
        float_share = self.target * self.reference_rate * self.binary_float_macs / self.reference_macs
        if float_share >= 1:
            return math.inf
        return self.target * self.mac_ratio * self.reference_rate / self.per_mac_gain / (1 - float_share)

    def target_verdict(self) -> str | None:
        """Whether the target was met, and if not, whether the CPU, the kernel or the rest of the
        network stands in its way; None without a target."""
        needed = self.target_efficiency
        if needed is None:
            return None
        if self.measured_speedup >= self.target:
            return "met"
        if needed > 1:
            return "out of reach on this CPU: no kernel can run that fast"
        if needed > self.kernel_efficiency:
            return f"out of reach at the layer's efficiency ({self.kernel_efficiency:.0%})"
        network = "" if self.network_efficiency is None else f" (it runs at {self.network_efficiency:.0%})"
        return f"within the layer's efficiency: missed by the rest of the network{network}"

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "mac_ratio": self.mac_ratio,
            "available": self.available,
            "needed_efficiency": self.needed_efficiency,
            "can_win": self.can_win,
            "verdict": self.verdict(),
            "target_efficiency": self.target_efficiency,
            "target_verdict": self.target_verdict(),
        }


def format_crossovers(rows: list[dict[str, object]]) -> str:
    """A Markdown table of crossover rows (``Crossover.as_dict`` output)."""
    lines = [
        "| binary | vs | MACs ratio R | per-MAC gain G | kernel efficiency E | G x E | E needed (R / G) "
        "| reference MAC/s / fp32 ceiling | verdict (float side at the fp32 ceiling) | measured speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['binary']} | {row['reference']} | {row['mac_ratio']:.1f}x | {row['per_mac_gain']:.1f}x "
            f"| {row['kernel_efficiency']:.0%} | {row['available']:.1f}x | {row['needed_efficiency']:.0%} "
            f"| {row['reference_rate']:.0%} | {row['verdict']} | {row['measured_speedup']:.2f}x |"
        )
    return "\n".join(lines)


def format_targets(rows: list[dict[str, object]]) -> str:
    """A Markdown table of the crossover rows that carry a speed-up target: what the target asks of the
    binary kernels on this CPU, beside what the layer and the whole network reach."""
    lines = [
        "| binary | vs | target T | measured speed-up | reference MAC/s / fp32 ceiling | per-MAC gain G "
        "| binary efficiency needed (T x R x rate / G / (1 - T x rate x F / M)) | 64->64 layer's E "
        "| whole network's | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.get("target") is None:
            continue
        network = "-" if row["network_efficiency"] is None else f"{row['network_efficiency']:.0%}"
        lines.append(
            f"| {row['binary']} | {row['reference']} | {row['target']:g}x | {row['measured_speedup']:.2f}x "
            f"| {row['reference_rate']:.0%} | {row['per_mac_gain']:.1f}x | {row['target_efficiency']:.0%} "
            f"| {row['kernel_efficiency']:.0%} | {network} | {row['target_verdict']} |"
        )
    return "\n".join(lines)
