"""``bbcu bench``'s printed report: the run's conditions and ceilings, the comparisons with their targets
and efficiencies, every network timed (with its quality and the kernel path of each layer), and the
crossover arithmetic. Reads the dictionary ``bbcu.report.bench.run_benchmarks`` returns (also its JSON),
so a saved run prints the same."""

from __future__ import annotations

import math
from collections.abc import Mapping

from bbcu.report.crossover import format_crossovers, format_targets

Row = Mapping[str, object]


def format_header(result: Row) -> list[str]:
    """What the run ran on, and the ceilings its efficiencies are fractions of."""
    before, after = result["load_average"]
    lines = [
        f"machine: {result['machine']}; threads: {result['threads']}; kernel ISA: {result['isa']}; "
        f"median of {result['repeats']} rounds in turns after 1 warm-up; torch {result['torch']}; "
        f"1-min load average {before} at start, {after} at end"
    ]
    ceilings = result.get("ceilings")
    if ceilings:
        lines.append(
            f"ceilings ({ceilings['isa']}, {ceilings['threads']} threads, L1-resident loops, "
            f"peak of {ceilings.get('readings', 1)} readings over the run): binary "
            f"{ceilings['binary_macs_per_s'] / 1e9:.0f} G MAC/s (xor + popcount + add), fp32 "
            f"{ceilings['fp32_macs_per_s'] / 1e9:.0f} G MAC/s (FMA): "
            f"per-MAC gain {ceilings['per_mac_gain']:.1f}x; each efficiency sets every round's time "
            "against the ceiling read in that round, right after the layer, and takes the median"
        )
    if "bf16" in result:
        bf16 = "native (AVX-512-BF16 or AMX)" if result["bf16"] else "n/a (neither AVX-512-BF16 nor AMX)"
        lines.append(f"bf16 autocast: {bf16}")
    return lines


def efficiency_cell(row: Row) -> str:
    """``69.9% (target 70%: missed)`` for the layer (a decimal, rounded down, so that a share just under
    its target does not print as the target itself), ``31% (whole network)`` for a network, else ``-``."""
    value = row.get("efficiency")
    if value is None:
        return "-"
    if row.get("whole_network"):
        return f"{value:.0%} (whole network)"
    if row.get("efficiency_target") is None:
        return f"{value:.0%}"
    verdict = "met" if row["met_efficiency"] else "missed"
    shown = math.floor(value * 1000) / 10  # rounded down: a share under its target never shows as it
    return f"{shown:.1f}% (target {row['efficiency_target']:.0%}: {verdict})"


def format_comparisons(rows: list[Row]) -> list[str]:
    """The comparison table: times, speed-ups, targets, work, output check and kernel efficiency."""
    lines = [
        "| measured | input | engine wall / CPU ms | reference | reference wall / CPU ms "
        "| speed-up wall | speed-up CPU | target (wall) | OPs (G) engine / reference | mean abs diff "
        "| binary MAC/s / ceiling |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in rows:
        engine, reference = row["engine"], row["reference_time"]
        target = "-" if row["target"] is None else target_cell(row)
        diff = "-" if row["mean_abs_diff"] is None else f"{row['mean_abs_diff']:.1e}"
        lines.append(
            f"| {row['name']} | {row['input']} | {engine['wall_ms']:.1f} / {engine['cpu_ms']:.1f} "
            f"| {row['reference']} | {reference['wall_ms']:.1f} / {reference['cpu_ms']:.1f} "
            f"| {row['speedup']:.2f}x | {row['cpu_speedup']:.2f}x | {target} "
            f"| {row['engine_ops_g']:.3g} / {row['reference_ops_g']:.3g} | {diff} | {efficiency_cell(row)} |"
        )
    return lines


def target_cell(row: Row) -> str:
    """``10x (missed; reached in 2 of 5 rounds)``: the verdict on the median times, and how many rounds'
    own ratios reached the target, so that a verdict the machine's drift decides shows as such."""
    verdict = "met" if row["met"] else "missed"
    if row.get("rounds_met") is None:
        return f"{row['target']:g}x ({verdict})"
    rounds = len(row["round_speedups"])
    return f"{row['target']:g}x ({verdict}; reached in {row['rounds_met']} of {rounds} rounds)"


def quality_cell(quality: Row | None) -> str:
    """``31.22 Set5 x4 (measured: bbcu-m-x4.safetensors)`` or ``31.40 Set5 x4 (published)``."""
    if not quality:
        return "-"
    source = f"measured: {quality['source']}" if quality["measured"] else "published"
    return f"{quality['psnr']:.2f} {quality['dataset']} ({source})"


def format_networks(rows: list[Row]) -> list[str]:
    """Every network timed, once: how it ran, its time, work, drift from fp32, quality and paths."""
    lines = [
        "| network | runs as | input | wall / CPU ms | MACs (G) float / binary | mean abs diff from fp32 "
        "| PSNR (dB) | paths (convolutions per path) |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        time = row["time"]
        timing = row["note"] if time is None else f"{time['wall_ms']:.1f} / {time['cpu_ms']:.1f}"
        diff = "-" if row["diff_from_fp32"] is None else f"{row['diff_from_fp32']:.1e}"
        paths = ", ".join(f"{path} x{count}" for path, count in (row["layer_paths"] or {}).items()) or "-"
        lines.append(
            f"| {row['label']} | {row['precision']} | {row['input']} | {timing} "
            f"| {row['fp_macs'] / 1e9:.3g} / {row['binary_macs'] / 1e9:.3g} | {diff} "
            f"| {quality_cell(row['quality'])} | {paths} |"
        )
    return lines


CROSSOVER_NOTE = (
    "Crossover arithmetic: a binary network doing R times the MACs of a float one can only be faster "
    "where the per-MAC gain G (binary ceiling / fp32 ceiling) times the kernel efficiency E (the 64->64 "
    "layer's, this run) exceeds R, even with its own float layers free and the float network at the fp32 "
    "ceiling; 'E needed' is R / G (over 100 %: no kernel can win on this CPU)."
)

TARGETS_NOTE = (
    "Speed-up targets against the same arithmetic: a target T over a reference of M MACs running at "
    "'rate' times the fp32 ceiling needs the binary network, its F float MACs (first and last convs) at "
    "the fp32 ceiling, to run its binary MACs at T x R x rate / G / (1 - T x rate x F / M) of the binary "
    "ceiling. Over 100 %: no kernel reaches T on this CPU; over the 64->64 layer's E: not even a network "
    "of such layers; under it: the rest of the network (its high-resolution tail, its float layers below "
    "their ceiling) is what misses."
)


def format_table(result: Row) -> str:
    """The whole report: header, comparisons, networks timed and, when measured, the crossovers."""
    lines = [*format_header(result), "", *format_comparisons(result["comparisons"])]
    if result.get("networks"):
        lines += ["", "Networks timed (same run, same threads):", "", *format_networks(result["networks"])]
    crossovers = result.get("crossovers")
    if crossovers:
        lines += ["", CROSSOVER_NOTE, "", format_crossovers(crossovers)]
    if any(row.get("target") is not None for row in crossovers or []):
        lines += ["", TARGETS_NOTE, "", format_targets(crossovers)]
    return "\n".join(lines)
