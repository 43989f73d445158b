"""How the benchmarks time a call, and the record of one timed network.

Every timing is the median of ``repeats`` calls after one untimed warm-up call (which pays first-touch
page faults, oneDNN's primitive creation and lazy thread start-up), in wall time (what a user waits) and
process CPU time over all threads (what the work costs, steadier when other jobs share the cores).

Calls that are compared with each other are timed in turns (``Turns``): round after round, each call
timed once per round. On a shared host whose speed drifts by up to 2x within seconds
(benchmarks/engine.md), timing one call's runs and then the other's can hand each a different phase of
the host, and the ratio of two medians measures the host as much as the code; in turns, every round's
drift touches all of them alike. Each timed call follows untimed calls of itself lasting ``SETTLE_S``,
as when a user runs one network again and again: the call before it in the round belongs to another
network, maybe another library, whose worker threads keep spinning for a while after it returns
(PyTorch's OpenMP workers about 10 ms here, taking a core of two from whatever runs next).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TypeVar

T = TypeVar("T")

SETTLE_S = 0.03
"""Seconds of untimed calls of a call before its timed one (at least one call)."""

PACKED, SIMULATED = "1-bit packed", "fp32 simulated"
"""How a binary network ran: on the packed engine, or as its PyTorch float simulation."""


@dataclass(frozen=True)
class Timing:
    """Median milliseconds of one measured call, and the wall time of each round (in round order), so
    that a rate can be set against a ceiling read in the same round (``bbcu.report.bench``)."""

    wall_ms: float
    cpu_ms: float
    rounds_ms: tuple[float, ...] = ()


@dataclass
class Turns:
    """Calls timed in turns: ``add`` makes a call's untimed warm-up run and files it, ``run`` then times
    ``repeats`` rounds that each time every filed call once (after settling, ``SETTLE_S``), and keeps
    each one's median.

    Attributes:
        timings: One per filed call, by handle, once timed.
        results: For calls filed with ``keep_results``, by handle: what each timed call returned, one
            per round (a measurement taken in turns, such as a ceiling reading).
    """

    _calls: list[Callable[[], object]] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    results: dict[int, list[object]] = field(default_factory=dict)

    def add(self, call: Callable[[], T], keep_results: bool = False) -> tuple[int, T]:
        """Runs ``call`` once (the warm-up) and files it; returns its handle into ``timings`` and what
        the call returned (every call computes the same), for checking. With ``keep_results``, what
        every timed call returns is kept in ``results``."""
        result = call()
        self._calls.append(call)
        handle = len(self._calls) - 1
        if keep_results:
            self.results[handle] = []
        return handle, result

    def run(self, repeats: int, progress: Callable[[int], None] = lambda done: None) -> list[Timing]:
        """Times every call filed since the last run in ``repeats`` rounds; ``progress`` hears after each
        round. Returns ``timings``, now holding them all."""
        first = len(self.timings)
        walls: list[list[float]] = [[] for _ in self._calls[first:]]
        cpus: list[list[float]] = [[] for _ in self._calls[first:]]
        for done in range(1, repeats + 1):
            for index, call in enumerate(self._calls[first:]):
                _settle(call)
                wall, cpu = time.perf_counter(), time.process_time()
                result = call()
                walls[index].append(time.perf_counter() - wall)
                cpus[index].append(time.process_time() - cpu)
                if first + index in self.results:
                    self.results[first + index].append(result)
            progress(done)
        self.timings += [
            Timing(
                statistics.median(w) * 1e3, statistics.median(c) * 1e3, tuple(seconds * 1e3 for seconds in w)
            )
            for w, c in zip(walls, cpus, strict=True)
        ]
        return self.timings


def _settle(call: Callable[[], object]) -> None:
    """Runs ``call`` untimed until ``SETTLE_S`` have passed, at least once."""
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < SETTLE_S:
        call()


def median_time(run: Callable[[], T], repeats: int) -> tuple[Timing, T]:
    """Median wall and CPU time of ``run`` over ``repeats`` calls after one untimed warm-up call, and
    what the warm-up call returned (every call computes the same), for checking."""
    turns = Turns()
    handle, result = turns.add(run)
    return turns.run(repeats)[handle], result


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


@dataclass(frozen=True)
class PendingNetwork:
    """A timed network filed with ``Turns`` whose time is known once they have run.

    Attributes:
        row: The network, its time still None.
        handle: Its call's handle in the turns; None for a way that cannot run here (``row.note``).
    """

    row: TimedNetwork
    handle: int | None

    def timed(self, timings: list[Timing]) -> TimedNetwork:
        """The row with its time, from the turns' ``timings``."""
        return self.row if self.handle is None else replace(self.row, time=timings[self.handle])
