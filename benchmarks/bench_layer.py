"""One binary 3x3 layer against the same float layer: is the packed 1-bit conv worth it on this CPU?

The binary side is a whole BBCU V4 unit as the engine runs it: ``binary_conv3x3`` on packed signs with
the fused epilogue (alpha, RPReLU, residual add, and the next layer's sign packing). The float side is
the conv alone: ``torch.nn.functional.conv2d`` on a channels_last float32 tensor (oneDNN), which
docs/method.md ("What makes 1-bit fast") names as the fair full-precision reference.
Both use the same number of threads.

Two measurements, both in interleaved rounds (float, then every binary variant, then again) so that a
burst of load from elsewhere slows both sides alike, with the ratio taken per round:

- wall clock with ``--threads`` threads on both sides (the number a user sees; medians after warm-up);
- CPU time of the calling thread with 1 thread on both sides (``time.thread_time``), which a machine
  shared with other jobs disturbs far less: it is the per-core speed-up.

With AVX2 it also compiles and times two tiny C loops (``--no-ceiling`` skips them), the per-core
ceilings of the two sides: the AVX2 kernel's inner 6-instruction body alone (operands in L1, nothing
else) and a chain of independent 8-wide FMAs (the float conv's peak).

::

    .venv/bin/python benchmarks/bench_layer.py --json benchmarks/layer.json > benchmarks/layer.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bbcu.engine import kernels

FLOAT = "float conv2d (channels_last)"


Clock = Callable[[], float]
CLOCKS: dict[str, Clock] = {"wall": time.perf_counter, "cpu": time.thread_time}


def time_once(call: Callable[[], object], clock: Clock) -> float:
    """Milliseconds of one call on the given clock."""
    start = clock()
    call()
    return (clock() - start) * 1e3


def binary_variants(
    height: int, width: int, channels: int, isas: list[str]
) -> dict[str, Callable[[], object]]:
    """The binary layer on every ISA: the whole fused V4 unit, and the bare popcount conv on the best ISA.

    The unit updates its input in place (``residual=x, out=x``), as ``bbcu.engine.runtime`` runs it.
    """
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((height, width, channels)) * 50).astype(np.float32)
    shift = rng.standard_normal(channels).astype(np.float32)
    packed_x = kernels.pack_activations(x, shift)
    packed_w = kernels.pack_weights(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32))
    per_channel = [rng.uniform(0.1, 1.0, channels).astype(np.float32) for _ in range(4)]

    def fused(isa: str) -> Callable[[], object]:
        def call() -> object:
            kernels.set_isa(isa)
            return kernels.binary_conv3x3(
                packed_x, packed_w, channels, scale=per_channel[0], rprelu=tuple(per_channel[1:]),
                residual=x, next_shift=shift, out=x,
            )  # fmt: skip

        return call

    def raw() -> object:
        kernels.set_isa(isas[-1])
        return kernels.binary_conv3x3_raw(packed_x, packed_w, channels)

    variants = {f"binary V4 unit, fused ({isa})": fused(isa) for isa in isas}
    variants[f"binary popcount only, int32 out ({isas[-1]})"] = raw
    variants["sign packing of the input (pack_activations)"] = lambda: kernels.pack_activations(x, shift)
    return variants


def float_conv(height: int, width: int, channels: int) -> Callable[[], object]:
    x = torch.randn(1, channels, height, width).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)

    def call() -> object:
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w, padding=1)

    return call


def measure(
    calls: dict[str, Callable[[], object]], clock: str, threads: int, warmup: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved rounds: per-call milliseconds, and per-round float/binary ratios."""
    torch.set_num_threads(threads)
    kernels.set_num_threads(threads)
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    ratios: dict[str, list[float]] = {name: [] for name in calls if name != FLOAT}
    for _ in tqdm(range(rounds), desc=f"{clock} clock, {threads} threads", file=sys.stderr):
        for name, call in calls.items():
            times[name].append(time_once(call, CLOCKS[clock]))
        for name in ratios:
            ratios[name].append(times[FLOAT][-1] / times[name][-1])
    return times, ratios


CEILING_LOOPS = r"""
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
/* The AVX2 kernel's inner body: 8 registers x 9 taps of (2 XOR, 2 vpshufb, 2 byte adds). */
__attribute__((target("avx2"), noinline)) static uint64_t nibble_loop(const uint64_t *w, long iterations) {
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                           0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    __m256i total = _mm256_setzero_si256(), x_lo = _mm256_set1_epi64x(0x0102030405060708), x_hi = x_lo;
    for (long i = 0; i < iterations; i++) {
        __m256i bytes[8];
        for (int j = 0; j < 8; j++) bytes[j] = _mm256_setzero_si256();
        for (int t = 0; t < 9; t++) {
            for (int j = 0; j < 8; j++) {
                const uint64_t *tap = w + t * 64 + 4 * j;
                const __m256i lo = _mm256_xor_si256(x_lo, _mm256_loadu_si256((const __m256i *)tap));
                const __m256i hi = _mm256_xor_si256(x_hi, _mm256_loadu_si256((const __m256i *)(tap + 32)));
                bytes[j] = _mm256_add_epi8(bytes[j], _mm256_shuffle_epi8(table, lo));
                bytes[j] = _mm256_add_epi8(bytes[j], _mm256_shuffle_epi8(table, hi));
                __asm__("" : "+x"(bytes[j]));
            }
            x_lo = _mm256_add_epi64(x_lo, _mm256_set1_epi64x(1));
        }
        for (int j = 0; j < 8; j++)
            total = _mm256_add_epi64(total, _mm256_sad_epu8(bytes[j], _mm256_setzero_si256()));
    }
    return (uint64_t)_mm256_extract_epi64(total, 0);
}
/* 10 independent chains of 8-wide FMAs: the float side's peak MAC rate. */
__attribute__((target("avx2,fma"), noinline)) static float fma_loop(long iterations) {
    __m256 a[10], b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-4f);
    for (int j = 0; j < 10; j++) a[j] = _mm256_set1_ps(j * 1e-3f);
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < 10; j++) a[j] = _mm256_fmadd_ps(a[j], b, c);
    float sum = 0;
    for (int j = 0; j < 10; j++) sum += a[j][0];
    return sum;
}
int main(void) {
    static uint64_t w[9 * 64];
    for (int i = 0; i < 9 * 64; i++) w[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    double nibble = 1e9, fma = 1e9, t;
    volatile uint64_t sink = 0;
    volatile float fsink = 0;
    for (int round = 0; round < 15; round++) {
        t = now(); sink += nibble_loop(w, 100000); t = now() - t; if (t < nibble) nibble = t;
        t = now(); fsink += fma_loop(20000000); t = now() - t; if (t < fma) fma = t;
    }
    printf("%f %f\n", 100000.0 * 9 * 8 * 256 / nibble / 1e9, 20000000.0 * 10 * 8 / fma / 1e9);
    return 0;
}
"""


def ceilings() -> dict[str, float]:
    """Per-core G bit-MAC/s of the AVX2 inner loop and G MAC/s of 8-wide FMAs (best of 15, CPU time)."""
    with tempfile.TemporaryDirectory(prefix="bbcu-ceiling-") as folder:
        source, program = Path(folder) / "ceiling.c", Path(folder) / "ceiling"
        source.write_text(CEILING_LOOPS)
        compiler = (sysconfig.get_config_var("CC") or "cc").split()
        subprocess.run([*compiler, "-O3", "-o", str(program), str(source)], check=True, capture_output=True)
        output = subprocess.run([str(program)], check=True, capture_output=True, text=True).stdout
    binary, float_ = (float(v) for v in output.split())
    return {"avx2 inner loop, G bit-MAC/s per core": binary, "8-wide FMA, G MAC/s per core": float_}


def machine() -> dict[str, object]:
    """What the numbers were measured on (the CPU model, its cores and SIMD flags, and the load)."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {
        "cpu": fields.get("Model name", platform.processor()).strip(),
        "cpus": os.cpu_count(),
        "simd": [f for f in ("avx2", "avx512f", "avx512bw", "avx512_vpopcntdq") if f in flags],
        "isas": kernels.available_isas(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
    }


def table(title: str, macs: int, times: dict[str, list[float]], ratios: dict[str, list[float]]) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| variant | median ms | min ms | speed-up vs float (median of per-round ratios) | G MAC/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, samples in times.items():
        median = statistics.median(samples)
        ratio = f"{statistics.median(ratios[name]):.1f}x" if name in ratios else "1.0x"
        rate = f"{macs / median / 1e6:.0f}" if "pack" not in name else "-"
        lines.append(f"| {name} | {median:.2f} | {min(samples):.2f} | {ratio} | {rate} |")
    return [*lines, ""]


def report(args: argparse.Namespace, info: dict[str, object], results: dict[str, tuple[dict, dict]]) -> str:
    macs = args.height * args.width * args.channels * args.channels * 9
    lines = [
        f"# One {args.channels}->{args.channels} 3x3 layer at {args.width}x{args.height}: binary vs float",
        "",
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        f"Machine: {info['cpu']}, {info['cpus']} CPUs, SIMD {', '.join(info['simd'])}; engine ISAs "
        f"{', '.join(info['isas'])}; torch {info['torch']}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in info['load_average'])}.",
        "",
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up calls; "
        f"{macs / 1e9:.2f} G MACs in the layer.",
        "",
    ]
    for title, (times, ratios) in results.items():
        lines += table(title, macs, times, ratios)
    if "ceilings" in info:
        binary, float_ = info["ceilings"].values()
        lines += [
            "## Per-core ceilings (C loops, CPU time, best of 15)",
            "",
            f"- AVX2 kernel inner loop alone: {binary:.0f} G bit-MAC/s",
            f"- 8-wide FMA chains: {float_:.1f} G MAC/s",
            f"- ceiling of the binary/float speed-up per MAC on this core: {binary / float_:.1f}x",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--with-portable", action="store_true", help="also time the (slow) portable path")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false", help="skip the C ceiling loops")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args()
    simd = [isa for isa in kernels.available_isas() if isa != "portable"]
    isas = ["portable", *simd] if args.with_portable or not simd else simd
    calls = {FLOAT: float_conv(args.height, args.width, args.channels)}
    calls.update(binary_variants(args.height, args.width, args.channels, isas))
    results = {
        f"Wall clock, {args.threads} threads on both sides": measure(
            calls, "wall", args.threads, args.warmup, args.rounds
        ),
        "CPU time of one thread, 1 thread on both sides": measure(calls, "cpu", 1, args.warmup, args.rounds),
    }
    info = machine()
    if args.ceiling and "avx2" in kernels.available_isas():
        info["ceilings"] = ceilings()
    print(report(args, info, results), end="")
    if args.json:
        raw = {title: {"times_ms": times, "ratios": ratios} for title, (times, ratios) in results.items()}
        args.json.write_text(
            json.dumps({"args": {**vars(args), "json": str(args.json)}, "machine": info, **raw})
        )


if __name__ == "__main__":
    main()
