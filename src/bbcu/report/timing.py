"""How the benchmarks time a call, and the record of one timed network.

Every timing is the median of ``repeats`` calls after one untimed warm-up call (which pays first-touch
page faults, oneDNN's primitive creation and lazy thread start-up), in wall time (what a user waits) and
process CPU time over all threads (what the work costs, steadier when other jobs share the cores).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

T = TypeVar("T")

PACKED, SIMULATED = "1-bit packed", "fp32 simulated"
"""How a binary network ran: on the packed engine, or as its PyTorch float simulation."""


@dataclass(frozen=True)
class Timing:
    """Median milliseconds of one measured call."""

    wall_ms: float
    cpu_ms: float


def median_time(run: Callable[[], T], repeats: int) -> tuple[Timing, T]:
    """Median wall and CPU time of ``run`` over ``repeats`` calls after one untimed warm-up call, and
    what the warm-up call returned (every call computes the same), for checking."""
    result = run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3), result


@dataclass(frozen=True)
class Quality:
    """A network's score on the quality set of its task, and where the number comes from.

    Attributes:
        psnr: dB.
        dataset: Test set and setting, e.g. ``"Set5 x4"``.
        measured: True when scored here on trained weights, False for the published number.
        source: The weights file scored, or the publication.
    """

    psnr: float
    dataset: str
    measured: bool
    source: str


@dataclass(frozen=True)
class TimedNetwork:
    """One network run in one way, timed in this benchmark run.

    Attributes:
        label: E.g. ``"srresnet-lite x4"``.
        network: Registry name.
        scale: Upscaling factor (1 for denoising).
        precision: ``"1-bit packed"``, ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"fp32 simulated"``.
        input: ``CxHxW`` of the timed input.
        time: Median timing, or None when this way cannot run on this CPU (see ``note``).
        fp_macs: Full-precision MACs of one call (whatever precision they run in).
        binary_macs: Binary MACs of one call.
        diff_from_fp32: Mean absolute output difference from the same network in fp32, for bf16 and
            int8 (how much the cheaper arithmetic changes the picture); else None.
        quality: Its score, or None where none is known.
        layer_paths: For the packed engine: how many binary layers each kernel path ran.
        note: Why a way is not available here, else empty.
    """

    label: str
    network: str
    scale: int
    precision: str
    input: str
    time: Timing | None
    fp_macs: int
    binary_macs: int
    diff_from_fp32: float | None = None
    quality: Quality | None = None
    layer_paths: dict[str, int] | None = None
    note: str = ""

    @property
    def name(self) -> str:
        """Label and precision, e.g. ``"srresnet-lite x4 int8"``."""
        return f"{self.label} {self.precision}"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "name": self.name}
