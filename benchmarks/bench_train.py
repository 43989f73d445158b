"""Training-step speed on this CPU: binary-simulated networks against their full-precision counterparts.

For BBCU-L x4 and DnCNN-BBCU it times one optimizer step (forward, L1, backward, Adam) of
- the binary-simulated network as trained (sign + ApproxSign on activations, scaled sign on weights),
- the SAME network with the binarizers switched off (identical layers and shapes, real-valued
  activations and weights), which isolates what binarization simulation costs, and
- the full-precision reference of the paper's table (SRResNet x4, DnCNN),
each in NCHW, channels_last, and channels_last + bf16 autocast (and torch.compile with --compile).

Usage: .venv/bin/python benchmarks/bench_train.py [--batch 4] [--steps 3] [--threads 2] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

import bbcu.binary.units as units
from bbcu import create_model
from bbcu.binary.conv import BinaryConv2d

# (label, registry name, factory kwargs, LQ patch side of the published recipe, binarizers on)
CASES = [
    ("BBCU-L x4 (binary)", "bbcu-l", {"scale": 4}, 32, True),
    ("BBCU-L x4 (binarizers off)", "bbcu-l", {"scale": 4}, 32, False),
    ("SRResNet x4 (FP reference)", "srresnet", {"scale": 4}, 32, True),
    ("DnCNN-BBCU (binary)", "dncnn-bbcu", {}, 64, True),
    ("DnCNN-BBCU (binarizers off)", "dncnn-bbcu", {}, 64, False),
    ("DnCNN (FP reference)", "dncnn", {}, 64, True),
]
MODES = ("nchw", "channels_last", "channels_last+bf16")


@contextlib.contextmanager
def binarizers_off(model: nn.Module) -> Iterator[None]:
    """Run ``model`` with every sign estimator an identity and every binary conv a plain conv."""
    estimators = {name: getattr(units, name) for name in ("sign_approx", "sign_ste", "sign_ede")}
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    for name in estimators:
        setattr(units, name, lambda x, *args: x)
    for conv in convs:
        conv.forward = lambda x, conv=conv: nn.Conv2d.forward(conv, x)
    try:
        yield
    finally:
        for name, function in estimators.items():
            setattr(units, name, function)
        for conv in convs:
            del conv.forward


def make_step(model: nn.Module, batch: int, patch: int, mode: str) -> Callable[[], None]:
    """One training step on random data in the given memory/precision mode."""
    memory_format = torch.contiguous_format if mode == "nchw" else torch.channels_last
    model.to(memory_format=memory_format).train()
    scale = int(getattr(model, "scale", 1))
    lq = torch.rand(batch, model.in_channels, patch, patch).contiguous(memory_format=memory_format)
    gt = torch.rand(batch, model.in_channels, patch * scale, patch * scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    bf16 = mode.endswith("bf16")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = model(lq)
        loss = F.l1_loss(output.float(), gt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_step(step: Callable[[], None], steps: int) -> float:
    """Seconds per step: the fastest of ``steps`` after one warm-up step.

    The minimum, not the median: on a machine shared with other jobs a step can only be slowed down by
    them, so the fastest step is the best estimate of the step's own cost.
    """
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def profile_step(step: Callable[[], None], rows: int = 12) -> str:
    """The ops that take the most CPU time in one step."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="patches per step (published: 16 SR, 32 DnCNN)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case (fastest reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=[*MODES, "compile"])
    parser.add_argument(
        "--profile", action="store_true", help="print the top ops of binary vs binarizers-off"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"batch {args.batch}, load average {os.getloadavg()[0]:.1f} at start", flush=True)  # fmt: skip
    print(f"| network | {' | '.join(f'{m} s/step' for m in args.modes)} |")
    print(f"|---|{'---|' * len(args.modes)}")
    results: dict[tuple[str, str], float] = {}
    for label, name, kwargs, patch, binary in CASES:
        cells = []
        for mode in args.modes:
            torch.manual_seed(0)
            model = create_model(name, **kwargs)
            compiled = mode == "compile"
            step_model = torch.compile(model) if compiled else model
            if compiled:
                model.to(memory_format=torch.channels_last)
            context = binarizers_off(model) if not binary else contextlib.nullcontext()
            with context:
                step = make_step(step_model, args.batch, patch, "channels_last" if compiled else mode)
                results[label, mode] = time_step(step, args.steps)
            cells.append(f"{results[label, mode]:.2f}")
        print(f"| {label} | {' | '.join(cells)} |", flush=True)
    print()
    for binary_label, off_label in ((CASES[0][0], CASES[1][0]), (CASES[3][0], CASES[4][0])):
        ratios = ", ".join(f"{m} {results[binary_label, m] / results[off_label, m]:.2f}x" for m in args.modes)
        print(f"{binary_label} / binarizers off: {ratios}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.profile:
        for label, name, kwargs, patch, binary in (CASES[0], CASES[1]):
            model = create_model(name, **kwargs)
            with binarizers_off(model) if not binary else contextlib.nullcontext():
                print(f"\n{label}, channels_last, one step:\n")
                print(profile_step(make_step(model, args.batch, patch, "channels_last")))


if __name__ == "__main__":
    main()
