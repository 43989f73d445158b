"""One BBCU V4 unit (64->64 3x3 at 320x180) on the engine's two exact paths: popcount kernels vs oneDNN int8.

Both compute the same unit from the same packed input signs (as the previous popcount unit hands them
on): ``x + RPReLU(alpha * binconv(sign(x + shift)))``. The script first checks that the two outputs are
equal bit for bit, then times, in interleaved rounds so load from elsewhere hits every variant alike:

- ``popcount raw``: ``kernels.binary_conv3x3_raw``, the integer dot products only;
- ``popcount fused``: ``kernels.binary_conv3x3`` with the whole epilogue and the next unit's sign packing
  (what the engine runs);
- ``int8 conv``: ``onednn.Int8Conv.dots`` on ready uint8 signs, the oneDNN call alone;
- ``int8 unit``: signs expanded to bytes, the oneDNN conv, the PyTorch epilogue (what the engine runs on
  that path).

The minimum over the rounds is reported (a shared machine only ever slows a run down)::

    .venv/bin/python benchmarks/int8_vs_popcount.py --rounds 60
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from bbcu.engine import kernels, onednn
from bbcu.engine.runtime import set_num_threads

HEIGHT, WIDTH, CHANNELS = 180, 320, 64


def unit(seed: int = 0) -> dict:
    """A random 64->64 unit: input, shifts, weight bits, epilogue parameters."""
    rng = np.random.default_rng(seed)

    def floats(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "x": floats(HEIGHT, WIDTH, CHANNELS),
        "shift": 0.1 * floats(CHANNELS),
        "next_shift": 0.1 * floats(CHANNELS),
        "bits": kernels.pack_weights(floats(CHANNELS, CHANNELS, 3, 3)),
        "epilogue": {
            "scale": floats(CHANNELS),
            "bias": None,
            "rprelu": tuple(floats(CHANNELS) for _ in "gbz"),
        },
    }


def variants(layer: dict) -> dict[str, Callable[[], object]]:
    """The four timed calls, each on its own scratch output (the unit's input stays intact)."""
    x, bits, epilogue = layer["x"], layer["bits"], layer["epilogue"]
    packed = kernels.pack_activations(x, layer["shift"])
    conv = onednn.Int8Conv(bits, CHANNELS)
    signs = onednn.sign_bytes(packed, CHANNELS)
    out_popcount, out_int8 = np.empty_like(x), np.empty_like(x)

    def popcount_fused() -> None:
        kernels.binary_conv3x3(
            packed, bits, CHANNELS, residual=x, out=out_popcount, next_shift=layer["next_shift"], **epilogue
        )

    def int8_unit() -> None:  # the engine adds into its input in place: here into a scratch copy
        onednn.add_epilogue(conv.dots(onednn.sign_bytes(packed, CHANNELS)), out_int8, **epilogue)

    popcount_fused()
    np.copyto(out_int8, x)
    int8_unit()
    assert np.array_equal(out_popcount.view(np.uint32), out_int8.view(np.uint32)), "paths differ"
    return {
        "popcount raw": lambda: kernels.binary_conv3x3_raw(packed, bits, CHANNELS),
        "popcount fused": popcount_fused,
        "int8 conv": lambda: conv.dots(signs),
        "int8 unit": int8_unit,
    }


def measure(threads: int, rounds: int) -> dict[str, float]:
    """Minimum milliseconds of each variant over ``rounds`` interleaved rounds."""
    set_num_threads(threads)
    calls = variants(unit())
    best = dict.fromkeys(calls, float("inf"))
    for _ in tqdm(range(rounds), desc=f"{threads} thread(s)", leave=False):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], (time.perf_counter() - start) * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    args = parser.parse_args()
    macs = HEIGHT * WIDTH * CHANNELS * CHANNELS * 9
    print(f"machine: {onednn.machine()}; int8 unit: {onednn.matrix_unit()}; {platform.machine()}")
    print(f"kernel ISA {kernels.get_isa()}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}; {args.rounds} rounds, min")
    print("outputs of the two paths: equal bit for bit\n")
    print("| threads | variant | ms (min) | G MACs/s |")
    print("|---:|---|---:|---:|")
    for threads in (int(t) for t in args.threads.split(",")):
        for name, ms in measure(threads, args.rounds).items():
            print(f"| {threads} | {name} | {ms:.2f} | {macs / ms / 1e6:.0f} |")
    print(f"\nload average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
