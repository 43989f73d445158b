"""``bbcu bench`` reports what it claims: the rows time the work they say (OPs counted independently),
outputs are checked, efficiencies are MACs / time / ceiling, the crossover arithmetic matches numbers
computed by hand, int8 references stay close to fp32 on real images, bf16 rows follow the CPU's flags,
and the scaling fit and the latency chart are what their inputs give. Sizes are tiny: speed figures
live in benchmarks/engine.md, not here."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from statistics import median

import pytest
import torch
from PIL import Image

from bbcu.archs import create_model
from bbcu.binary.conv import BinaryConv2d
from bbcu.cli.main import main
from bbcu.data.testsets import load_test_set
from bbcu.engine import kernels
from bbcu.imaging.pixels import image_to_tensor
from bbcu.metrics.complexity import count_cost
from bbcu.report.bench import (
    LAYER_SIZE,
    TINY_DIVISOR,
    BenchRun,
    Comparison,
    NetworkCase,
    Reference,
    bench_layer,
    bench_network,
    peak,
)
from bbcu.report.bench_references import (
    BF16_MISSING,
    calibration_inputs,
    cpu_flags,
    int8_model,
    native_bf16,
    time_float_network,
)
from bbcu.report.bench_tables import efficiency_cell, format_comparisons, format_table
from bbcu.report.crossover import (
    Crossover,
    efficiency,
    efficiency_in_rounds,
    efficiency_target,
    format_crossovers,
    format_targets,
)
from bbcu.report.latency import label_offsets, latency_points
from bbcu.report.scaling import ScalingPoint, fits, format_scaling, linear_fit, save_scaling_plot
from bbcu.report.timing import Timing, Turns

TOLERANCE = 1e-4  # the runtime tests' max abs difference on the [0, 1] scale
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ceilings(isa: str = "avx512") -> kernels.Ceilings:
    return kernels.Ceilings(isa=isa, threads=1, binary_macs_per_s=1e12, fp32_macs_per_s=1e11)


def test_layer_row_times_the_conv_it_claims_checks_its_output_and_its_efficiency() -> None:
    """The layer row: the engine's output equals the V4 epilogue of the float conv's dot products, the
    work is what a 64->64 3x3 conv at that size costs (counted by the complexity module's hooks), and
    the efficiency is those MACs per wall second over the ceiling read in the same round (one here),
    against the ISA's target."""
    height, width = 12, 10
    run = BenchRun(1, ceilings("avx512"))
    row, *on_other_paths = bench_layer(run, (height, width))
    macs = height * width * 64 * 64 * 9
    assert row.mean_abs_diff == 0.0  # same float32 operations in the same order as the kernel
    # every other SIMD path of this CPU, its output checked the same way, against its own ceiling
    others = [isa for isa in kernels.available_isas() if isa not in ("portable", kernels.get_isa())]
    assert [r.name for r in on_other_paths] == [
        f"binary conv 64->64 + fused epilogue, {kernels.isa_label(isa)}" for isa in others
    ]
    for isa, other in zip(others, on_other_paths, strict=True):
        assert other.mean_abs_diff == 0.0 and other.target is None
        (reading,) = run.path_ceilings[isa]
        assert reading.isa == isa
        assert other.efficiency == pytest.approx(
            macs / (other.engine.wall_ms / 1e3) / reading.binary_macs_per_s
        )
        assert other.efficiency_target == {"avx2": 0.60, "avx512": 0.70}.get(isa)
        assert other.engine_ops_g == row.engine_ops_g and other.reference_time == row.reference_time
    binary = count_cost(BinaryConv2d(64, 64), (width, height))
    full = count_cost(torch.nn.Conv2d(64, 64, 3, padding=1, bias=False), (width, height))
    assert (binary.fp_macs, binary.binary_macs) == (0, macs)
    assert row.engine_ops_g == pytest.approx(binary.ops_g)
    assert row.reference_ops_g == pytest.approx(full.ops_g)
    assert row.input == f"64x{height}x{width}" and row.target == 15.0
    (reading,) = run.round_ceilings
    assert reading.isa == kernels.get_isa() and row.engine.rounds_ms == (row.engine.wall_ms,)
    assert row.efficiency == pytest.approx(macs / (row.engine.wall_ms / 1e3) / reading.binary_macs_per_s)
    assert run.kernel_efficiency == row.efficiency and row.efficiency_target == 0.70
    assert row.as_dict()["met_efficiency"] == (row.efficiency >= 0.70)
    assert LAYER_SIZE == (180, 320)


def test_turns_warm_up_on_filing_then_time_every_call_once_per_round() -> None:
    """Calls compared with each other are timed in turns, never one's runs after the other's: each is
    run once when filed (its result returned for checking), then every round times each filed call
    once, in filing order, each after untimed calls of itself; a second ``run`` times only what was
    filed since."""
    calls: list[str] = []
    turns = Turns()
    first, result = turns.add(lambda: calls.append("a") or "a's output")
    second, _ = turns.add(lambda: calls.append("b"))
    assert (first, second, result) == (0, 1, "a's output") and calls == ["a", "b"]
    rounds: list[int] = []
    timings = turns.run(3, rounds.append)
    assert rounds == [1, 2, 3] and len(timings) == 2
    # each timed call comes after untimed calls of itself (SETTLE_S), never right after the other's
    runs = [(name, len(list(group))) for name, group in itertools.groupby(calls[2:])]
    assert [name for name, _ in runs] == ["a", "b"] * 3 and all(count >= 2 for _, count in runs)
    assert all(
        len(timing.rounds_ms) == 3 and timing.wall_ms == pytest.approx(median(timing.rounds_ms))
        for timing in timings
    )
    third, _ = turns.add(lambda: calls.append("c"))
    before = len(calls)
    assert len(turns.run(2)) == 3 and third == 2 and set(calls[before:]) == {"c"}


def test_turns_keep_what_each_timed_call_returned_when_asked() -> None:
    """A measurement taken in turns (a ceiling reading) keeps one result per round: the timed call's,
    not the warm-up's or the settling calls'."""
    count = itertools.count()
    turns = Turns()
    kept, warm_up = turns.add(lambda: next(count), keep_results=True)
    not_kept, _ = turns.add(lambda: "output")
    turns.run(3)
    results = turns.results[kept]
    assert warm_up == 0 and not_kept not in turns.results and len(results) == 3
    assert results == sorted(results) and results[0] > 1  # each after settling calls of its own


def test_the_ceilings_kept_are_the_peak_of_every_reading() -> None:
    """A slow phase of the host only lowers a reading, so each rate kept is the highest one read."""
    readings = [
        kernels.Ceilings("avx512", 2, 3.0e12, 1.0e11),
        kernels.Ceilings("avx512", 2, 3.9e12, 0.9e11),
        kernels.Ceilings("avx512", 2, 2.3e12, 2.2e11),
    ]
    assert peak(readings) == kernels.Ceilings("avx512", 2, 3.9e12, 2.2e11)


def test_efficiency_in_rounds_pairs_each_time_with_its_rounds_ceiling() -> None:
    """Rounds at 4, 2 and 5 G MAC/s against ceilings of 10, 4 and 10 read beside them: 40 %, 50 %, 50 %,
    median 50 % (a median time over the peak ceiling would say 40 %); unpaired rounds are an error."""
    assert efficiency_in_rounds(2e9, [0.5, 1.0, 0.4], [1e10, 4e9, 1e10]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        efficiency_in_rounds(2e9, [0.5, 1.0], [1e10])


def test_efficiency_targets_and_the_formula() -> None:
    assert efficiency(2e9, 0.5, 1e10) == pytest.approx(0.4)  # 4 G MAC/s of 10
    assert (efficiency_target("avx512"), efficiency_target("avx2"), efficiency_target("portable")) == (
        0.70,
        0.60,
        None,
    )
    with pytest.raises(ValueError):
        efficiency(1.0, 0.0, 1e9)


def test_crossover_arithmetic_matches_hand_computed_numbers() -> None:
    """64-channel binary vs 12-channel float layer: R = 4096 / 144 = 28.44; with G = 10.6 and E = 0.5,
    G x E = 5.3 < R: cannot win, 28.44 / 5.3 = 5.37x short, and E would have to be 28.44 / 10.6 = 268 %.
    Against a 64-channel float layer R = 1: can win, 5.3x margin."""
    pixels = 320 * 180 * 9
    against_lite = Crossover("b", "lite", 4096 * pixels, 144 * pixels, 10.6, 0.5, 0.3, 0.4)
    assert against_lite.mac_ratio == pytest.approx(28.444, abs=1e-3)
    assert against_lite.available == pytest.approx(5.3)
    assert not against_lite.can_win
    assert against_lite.needed_efficiency == pytest.approx(2.6834, abs=1e-4)
    assert against_lite.verdict() == "cannot win on this CPU: 5.37x short"
    against_full = Crossover("b", "full", 4096 * pixels, 4096 * pixels, 10.6, 0.5, 0.9, 4.0)
    assert against_full.can_win and against_full.verdict() == "can win (5.30x margin)"
    table = format_crossovers([against_lite.as_dict(), against_full.as_dict()]).splitlines()
    cells = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert cells[2:8] == ["28.4x", "10.6x", "50%", "5.3x", "268%", "30%"]


def test_target_arithmetic_names_what_stands_in_the_way() -> None:
    """A 10x target against a full-width reference (R = 144 / 146 = 0.986) running at half the fp32
    ceiling, with G = 8.1: binary efficiency needed 10 x 0.986 x 0.5 / 8.1 = 60.9 %. With the layer at
    62 % and the network at 36 % the network is what misses; with the layer at 55 % the kernel is; with
    the reference at the full ceiling 121.7 % is needed and no kernel can; a measured 10.2x is met.
    With the binary network's own float MACs (BBCU-M x4: 1.69 G against SRResNet's 146 G) at the fp32
    ceiling, they take 10 x 0.5 x 1.69 / 146 = 5.8 % of the time the target allows, and the binary MACs
    need 60.9 % / (1 - 0.058) = 64.6 %, above the layer's 62 %; float layers that alone take longer
    than the target allows leave no kernel a chance."""
    pixels = 320 * 180 * 9
    full = Crossover("b", "full", 144 * pixels, 146 * pixels, 8.1, 0.62, 0.5, 4.97, 10.0, 0.36)
    assert full.target_efficiency == pytest.approx(10 * 144 / 146 * 0.5 / 8.1)
    assert full.target_efficiency == pytest.approx(0.6088, abs=1e-4)
    assert (
        full.target_verdict()
        == "within the layer's efficiency: missed by the rest of the network (it runs at 36%)"
    )
    slow_layer = Crossover("b", "full", 144 * pixels, 146 * pixels, 8.1, 0.55, 0.5, 4.97, 10.0, 0.36)
    assert slow_layer.target_verdict() == "out of reach at the layer's efficiency (55%)"
    at_ceiling = Crossover("b", "full", 144 * pixels, 146 * pixels, 8.1, 0.62, 1.0, 4.97, 10.0, 0.36)
    assert at_ceiling.target_efficiency == pytest.approx(1.2177, abs=1e-4)
    assert at_ceiling.target_verdict() == "out of reach on this CPU: no kernel can run that fast"
    met = Crossover("b", "full", 144 * pixels, 146 * pixels, 8.1, 0.62, 0.5, 10.2, 10.0, 0.36)
    assert met.target_verdict() == "met"
    floats = 1.69 / 146 * 146 * pixels  # BBCU-M x4's float MACs against SRResNet x4's
    with_floats = Crossover("b", "full", 144 * pixels, 146 * pixels, 8.1, 0.62, 0.5, 4.97, 10.0, 0.36, floats)
    assert with_floats.target_efficiency == pytest.approx(0.6088 / (1 - 10 * 0.5 * 1.69 / 146), abs=1e-4)
    assert with_floats.target_efficiency == pytest.approx(0.6462, abs=1e-4)
    assert with_floats.target_verdict() == "out of reach at the layer's efficiency (62%)"
    float_bound = Crossover(
        "b", "full", 144 * pixels, 146 * pixels, 8.1, 0.62, 0.5, 4.97, 10.0, 0.36, 30 * pixels
    )
    assert float_bound.target_efficiency == math.inf  # 10 x 0.5 x 30 / 146 > 1: floats alone too slow
    assert float_bound.target_verdict() == "out of reach on this CPU: no kernel can run that fast"
    untargeted = Crossover("b", "lite", 144 * pixels, 5 * pixels, 8.1, 0.62, 0.3, 0.5)
    assert untargeted.target_efficiency is None and untargeted.target_verdict() is None
    table = format_targets([full.as_dict(), untargeted.as_dict()]).splitlines()
    assert len(table) == 3  # the untargeted row is left out
    cells = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert cells[2:9] == ["10x", "4.97x", "50%", "8.1x", "61%", "62%", "36%"]


def test_network_rows_share_the_engine_run_and_check_it_against_the_simulation() -> None:
    """Binary DnCNN (depth 4, 16 channels) on 12x10 against the full DnCNN: its OPs by hand are 3->16
    and 16->3 float convs plus two 16->16 binary ones at 1/64, DnCNN's are 3->64, 18 64->64 and 64->3
    float convs; the engine's output is on average within a tenth of the runtime tests' tolerance of
    the simulated model's; bf16 is reported as not available when the CPU lacks it, and gets no row."""
    height, width, c = 12, 10, 16
    case = NetworkCase(
        "dncnn-bbcu",
        (height, width),
        (Reference("dncnn", "fp32", 5.0), Reference("dncnn", "bf16")),
        {"depth": 4, "channels": c},
    )
    run = BenchRun(1, ceilings(), bf16=False, int8=False, kernel_efficiency=0.5, round_ceilings=[ceilings()])
    (versus_float, versus_simulation), crossovers = bench_network(case, run)
    pixels_taps = height * width * 9
    fp_macs, binary_macs = pixels_taps * (3 * c + c * 3), pixels_taps * 2 * c * c
    dncnn_macs = pixels_taps * (3 * 64 + 18 * 64 * 64 + 64 * 3)
    assert versus_float.engine_ops_g == pytest.approx((fp_macs + binary_macs / 64) / 1e9)
    assert versus_float.reference_ops_g == pytest.approx(dncnn_macs / 1e9)
    assert versus_simulation.reference_ops_g == pytest.approx(versus_float.engine_ops_g)
    assert versus_simulation.mean_abs_diff <= TOLERANCE / 10 and versus_float.mean_abs_diff is None
    assert versus_float.engine is versus_simulation.engine and versus_float.input == f"3x{height}x{width}"
    assert (versus_float.target, versus_simulation.target) == (5.0, None)
    assert versus_float.reference == "dncnn fp32 (PyTorch)"
    assert versus_simulation.reference == "dncnn-bbcu fp32 simulated (PyTorch)"
    assert versus_float.efficiency == pytest.approx(binary_macs / (versus_float.engine.wall_ms / 1e3) / 1e12)
    (arithmetic,) = crossovers  # for the targeted fp32 reference only: neither a Lite nor an int8 one
    assert (arithmetic.reference, arithmetic.target) == ("dncnn fp32", 5.0)
    assert arithmetic.mac_ratio == pytest.approx(binary_macs / dncnn_macs)
    assert arithmetic.binary_float_macs == fp_macs
    float_share = 5.0 * arithmetic.reference_rate * fp_macs / dncnn_macs
    assert arithmetic.target_efficiency == pytest.approx(
        5.0 * arithmetic.mac_ratio * arithmetic.reference_rate / arithmetic.per_mac_gain / (1 - float_share)
    )
    bf16 = [n for n in run.networks if n.network == "dncnn" and n.precision == "bf16"]
    assert len(bf16) == 1 and bf16[0].time is None and bf16[0].note == BF16_MISSING
    engine = run.networks[0]
    assert sum(engine.layer_paths.values()) == 4  # every conv of the network says which path ran it


def test_comparison_table_shows_every_row_its_target_and_efficiency() -> None:
    case = NetworkCase("dncnn-bbcu", (6, 5), (Reference("dncnn", "fp32", 1e9),), {"depth": 3, "channels": 8})
    run = BenchRun(1, ceilings(), int8=False, round_ceilings=[ceilings()])
    rows, _ = bench_network(case, run)
    table = format_comparisons([row.as_dict() for row in rows])
    for line, row in zip(table[2:], rows, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[5] == f"{row.speedup:.2f}x"
        assert cells[7] == ("1e+09x (missed; reached in 0 of 1 rounds)" if row.target else "-")
        assert cells[8] == f"{row.engine_ops_g:.3g} / {row.reference_ops_g:.3g}"
        assert cells[9] == ("-" if row.mean_abs_diff is None else f"{row.mean_abs_diff:.1e}")
        assert cells[10] == f"{row.efficiency:.0%} (whole network)"
    result = {"machine": "m", "threads": 1, "isa": "avx2", "repeats": 1, "torch": "t", "load_average": [0, 0]}
    report = format_table({**result, "comparisons": [r.as_dict() for r in rows], "networks": []})
    assert report.count("\n") == len(rows) + 3


def test_each_round_is_judged_by_its_own_pair_of_times() -> None:
    """A round's speed-up is the reference's time over the engine's in that round: 100/10, 90/12, 120/10
    are 10x, 7.5x and 12x, so 10x is met in 2 of 3 rounds, while the medians (90 or 100 over 10)
    give one verdict for the run."""
    engine, reference = Timing(10.0, 20.0, (10.0, 12.0, 10.0)), Timing(100.0, 200.0, (100.0, 90.0, 120.0))
    row = Comparison("net", "3x4x4", engine, "ref", reference, 10.0, 1.0, 1.0, None)
    assert row.round_speedups == pytest.approx([10.0, 7.5, 12.0])
    cells = row.as_dict()
    assert (cells["met"], cells["rounds_met"]) == (True, 2)
    assert format_comparisons([cells])[2].split("|")[8].strip() == "10x (met; reached in 2 of 3 rounds)"
    engine, reference = Timing(10.0, 20.0), Timing(100.0, 200.0)
    unpaired = Comparison("net", "3x4x4", engine, "ref", reference, 10.0, 1.0, 1.0, None)
    assert unpaired.round_speedups == [] and unpaired.as_dict()["rounds_met"] is None


def test_a_share_just_under_its_target_does_not_print_as_the_target() -> None:
    """Session 9 read the layer at 69.988 %: '70%' beside 'missed' was a riddle."""
    row = {"efficiency": 0.69988, "efficiency_target": 0.7, "met_efficiency": False}
    assert efficiency_cell(row) == "69.9% (target 70%: missed)"
    assert efficiency_cell({**row, "efficiency": 0.7, "met_efficiency": True}) == "70.0% (target 70%: met)"
    assert efficiency_cell({"efficiency": 0.314, "whole_network": True}) == "31% (whole network)"


def test_bf16_follows_the_cpu_flags(tmp_path: Path) -> None:
    """A bf16 row measures real bf16 arithmetic only with AVX-512-BF16 or AMX; the flags come from the
    first ``flags`` line of cpuinfo."""
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\nflags : amx_bf16\n")
    assert native_bf16(cpu_flags(with_bf16)) and not native_bf16(cpu_flags(without))
    assert cpu_flags(tmp_path / "absent") == frozenset()
    rows = {
        bf16: time_float_network("srresnet-lite", (6, 5), 1, int8_calibration=None, bf16=bf16, scale=2)
        for bf16 in (True, False)
    }
    assert [r.precision for r in rows[True]] == ["fp32", "bf16"] == [r.precision for r in rows[False]]
    present, absent = rows[True][1], rows[False][1]
    assert present.time is not None and present.diff_from_fp32 < 0.02 and present.note == ""
    assert absent.time is None and absent.note == BF16_MISSING
    assert present.quality.psnr == 37.21 and not present.quality.measured  # the published Set5 x2 score


def test_int8_network_stays_close_to_fp32_on_a_real_image() -> None:
    """SRResNet-Lite x2 quantized by PyTorch FX (oneDNN), calibrated on T91 patches, run on a Set5 LR
    crop: its convolutions really are int8 modules, and its output differs from fp32 by under 2 grey
    levels on average (a wrong scale or zero point would be off by tens)."""
    torch.manual_seed(0)
    model = create_model("srresnet-lite", scale=2).eval()
    calibration = calibration_inputs("sr", 2, count=4, patch=16)
    assert calibration.shape == (4, 3, 16, 16) and calibration.min() >= 0 and calibration.max() <= 1
    quantized = int8_model(model, calibration)
    kinds = {type(m).__module__ for m in quantized.modules() if "Conv" in type(m).__name__}
    assert kinds and all(".quantized." in kind for kind in kinds)  # quantized (and fused) convs
    pair = load_test_set("Set5", "sr", scale=2)[0]
    x = image_to_tensor(pair.lq[:24, :24])
    with torch.no_grad():
        difference = (quantized(x) - model(x)).abs()
    assert 0 < difference.mean().item() < 2 / 255


def test_scaling_fit_recovers_a_known_line_and_the_small_input_cost(tmp_path: Path) -> None:
    """time = 2 ms + 3 ms per megapixel exactly: intercept 2, slope 3, R^2 1; time per pixel is largest
    at the smallest size: (2 + 3e-6 * 4096) / 4096 over (2 + 3e-6 * 1e6) / 1e6 = 3.88 / 5e-6 ... = 97.8x."""
    sizes = [(64, 64), (500, 500), (1000, 1000)]
    line = linear_fit([h * w for h, w in sizes], [2 + 3e-6 * h * w for h, w in sizes])
    assert line.intercept_ms == pytest.approx(2.0) and line.ms_per_megapixel == pytest.approx(3.0)
    assert line.r_squared == pytest.approx(1.0)
    small, large = (2 + 3e-6 * 4096) / 4096, (2 + 3.0) / 1e6
    assert line.per_pixel_spread == pytest.approx(small / large)
    noisy = linear_fit([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0])  # slope 0.8, intercept 0.5, R^2 0.64
    assert (noisy.ms_per_megapixel, noisy.intercept_ms, noisy.r_squared) == pytest.approx((0.8e6, 0.5, 0.64))
    with pytest.raises(ValueError):
        linear_fit([5, 5], [1.0, 2.0])
    points = [
        ScalingPoint("layer", threads, h, w, ms * factor, ms)
        for threads, factor in ((1, 1.0), (2, 0.6))
        for (h, w), ms in zip(sizes, (1.0, 10.0, 40.0), strict=True)
    ]
    points[3] = ScalingPoint("layer", 2, 64, 64, 1.5, 1.0)  # two threads cost more on the smallest input
    rows = {row["threads"]: row for row in fits(points)}
    assert rows[1]["smallest_vs_one_thread"] == 1.0 and rows[2]["smallest_vs_one_thread"] == 1.5
    result = {"machine": "m", "repeats": 1, "points": [{**p.__dict__, "pixels": p.pixels} for p in points]}
    result["fits"] = fits(points)
    assert "| layer | 2 | 64x64 | 4096 | 1.50 / 1.00 |" in format_scaling(result)
    save_scaling_plot(result, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes().startswith(PNG_SIGNATURE)


def _timed(label: str, precision: str, ms: float | None, psnr: float, measured: bool, dataset: str) -> dict:
    quality = {"psnr": psnr, "dataset": dataset, "measured": measured, "source": "x"}
    time = None if ms is None else {"wall_ms": ms, "cpu_ms": ms}
    return {
        "label": label,
        "network": label.split()[0],
        "precision": precision,
        "time": time,
        "quality": quality,
    }


def test_latency_labels_never_overlap() -> None:
    """Labels crowd where a network's precisions share a published PSNR just above a binary network's
    (session 6's chart had SRResNet-Lite bf16 written over BBCU-M): every label box, 7-point text at
    0.6 font sizes a character written 6 points right of its marker, overlaps no other, and a lone
    label keeps the default place just above its marker."""
    anchors = [(100.0, 300.0), (130.0, 300.0), (160.0, 300.0), (135.0, 288.0), (400.0, 100.0)]
    labels = [f"srresnet-lite x4 {p}" for p in ("int8", "bf16", "fp32")] + ["bbcu-m x4", "bicubic"]
    offsets = label_offsets(anchors, labels)
    boxes = [
        (x + 6, y + offset, x + 6 + 7 * 0.6 * len(label), y + offset + 7)
        for (x, y), offset, label in zip(anchors, offsets, labels, strict=True)
    ]
    for a, b in itertools.combinations(boxes, 2):
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    assert offsets[0] == 6 and offsets[-1] == 6


def test_latency_chart_from_a_saved_bench_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only networks that ran and have a Set5 score at the plotted scale become points, the simulation
    never does, and a published score says so in its label; the chart is a PNG of the figure's size."""
    networks = [
        _timed("bbcu-m x4", "1-bit packed", 300.0, 31.22, True, "Set5 x4"),
        _timed("bbcu-m x4", "fp32 simulated", 4000.0, 31.22, True, "Set5 x4"),
        _timed("srresnet-lite x4", "int8", 60.0, 31.40, False, "Set5 x4"),
        _timed("srresnet-lite x4", "bf16", None, 31.40, False, "Set5 x4"),
        _timed("bicubic x4", "MATLAB bicubic (numpy)", 20.0, 28.42, True, "Set5 x4"),
        _timed("bbcu-m x2", "1-bit packed", 100.0, 37.44, False, "Set5 x2"),
        _timed("dncnn", "fp32", 900.0, 31.24, False, "CBSD68 25"),
    ]
    result = {"machine": "m", "threads": 2, "networks": networks}
    points = latency_points(result, 4)
    assert [(p.label, p.ms, p.psnr) for p in points] == [
        ("bbcu-m x4 1-bit packed", 300.0, 31.22),
        ("srresnet-lite x4 int8 (published PSNR)", 60.0, 31.40),
        ("bicubic x4", 20.0, 28.42),
    ]
    saved, chart = tmp_path / "bench.json", tmp_path / "latency.png"
    saved.write_text(json.dumps(result))
    assert main(["plot", "--latency", "--from-json", str(saved), "-o", str(chart)]) == 0
    assert "3 points (2 with PSNR measured here)" in capsys.readouterr().out
    assert chart.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(chart) as image:
        assert image.size == (1350, 900)  # 9 x 6 inches at 150 dpi
    assert main(["plot", "--latency", "--from-json", str(chart), "-o", str(tmp_path / "x.png")]) == 2


def test_bench_refuses_bad_options_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--repeats", "0"]) == 2
    assert main(["bench", "--plot", "x.png"]) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_bench_scaling_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``bbcu bench --scaling --tiny``: every case at every thread count and size, a fit per series, a
    chart and the JSON it printed from."""
    saved, chart = tmp_path / "scaling.json", tmp_path / "scaling.png"
    assert (
        main(["bench", "--scaling", "--tiny", "--repeats", "1", "--save", str(saved), "--plot", str(chart)])
        == 0
    )
    result = json.loads(saved.read_text())
    assert {p["case"] for p in result["points"]} == {
        "binary conv 64->64 + fused epilogue",
        "bbcu-m x4 (packed)",
    }
    assert len(result["fits"]) == 2 * len({p["threads"] for p in result["points"]})
    assert "ms per megapixel" in capsys.readouterr().out
    assert chart.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.slow
def test_bench_tiny_end_to_end(tmp_path: Path) -> None:
    """The whole ``bbcu bench --tiny`` run: ceilings, every network in every precision, Set5 measured for
    the shipped models and bicubic, the crossovers of every Lite and int8 comparison, the table."""
    saved = tmp_path / "bench.json"
    assert main(["bench", "--tiny", "--repeats", "1", "--save", str(saved)]) == 0
    result = json.loads(saved.read_text())
    ceiling = result["ceilings"]
    assert ceiling["per_mac_gain"] == pytest.approx(ceiling["binary_macs_per_s"] / ceiling["fp32_macs_per_s"])
    assert ceiling["readings"] == 2 and len(ceiling["rounds"]) == 1  # before the rounds, and in the one round
    layer = result["comparisons"][0]
    (reading,) = ceiling["rounds"]
    macs = 64 * 64 * 9 * (LAYER_SIZE[0] // TINY_DIVISOR) * (LAYER_SIZE[1] // TINY_DIVISOR)
    (seconds,) = (ms / 1e3 for ms in layer["engine"]["rounds_ms"])
    assert layer["efficiency"] == pytest.approx(macs / seconds / reading["binary_macs_per_s"])
    names = {row["name"] for row in result["networks"]}
    for network in ("srresnet x4", "srresnet-lite x4", "srresnet-lite x2", "dncnn", "dncnn-lite"):
        assert {f"{network} {p}" for p in ("fp32", "bf16", "int8")} <= names
    assert {"bbcu-m x4 1-bit packed", "bbcu-m x2 1-bit packed", "bicubic x4 MATLAB bicubic (numpy)"} <= names
    measured = {row["name"] for row in result["networks"] if row["quality"] and row["quality"]["measured"]}
    assert {
        "bbcu-m x4 1-bit packed",
        "bbcu-l x4 1-bit packed",
        "bicubic x4 MATLAB bicubic (numpy)",
    } <= measured
    int8 = [row for row in result["networks"] if row["precision"] == "int8"]
    assert all(row["diff_from_fp32"] < 0.05 for row in int8)
    crossed = {(row["binary"], row["reference"]) for row in result["crossovers"]}
    assert ("bbcu-m x2", "srresnet-lite x2 fp32") in crossed and ("dncnn-bbcu", "dncnn int8") in crossed
    assert all(row["mac_ratio"] > 20 for row in result["crossovers"] if "lite" in row["reference"])
