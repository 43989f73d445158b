"""The SIMD kernel paths of this CPU, each switched on in turn with its measured ceiling: what the
kernel benchmarks share (imported by them; they run from the repository root as scripts)."""

from __future__ import annotations

from collections.abc import Iterator

from bbcu.engine import kernels


def simd_paths(threads: int, rate: str) -> Iterator[tuple[str, float]]:
    """Switch on each SIMD path (``kernels.simd_isas``) in turn; yield it with the best of three ceiling
    measurements, the path still on while the caller measures it.

    Args:
        threads: Threads the ceiling loops run on.
        rate: ``"binary_macs_per_s"`` or ``"fp32_macs_per_s"`` of ``kernels.Ceilings``.
    """
    for isa in kernels.simd_isas():
        with kernels.using_isa(isa):
            yield isa, max(getattr(kernels.measure_ceilings(threads), rate) for _ in range(3))
