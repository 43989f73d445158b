"""``bbcu bench``: how fast the packed 1-bit engine runs here, against what a user would run instead."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.errors import InvalidArgumentError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu bench``."""
    parser = subparsers.add_parser(
        "bench",
        help="time the packed 1-bit engine against PyTorch fp32, bf16 and int8 (channels_last)",
        description="Measure this CPU's binary and fp32 ceilings, then time one binary layer, BBCU-M x4 "
        "and x2, BBCU-L x4 and binary DnCNN against the full and 12-channel Lite float networks in fp32, "
        "bf16 and int8; median of repeated runs after a warm-up. --scaling times threads and input "
        "sizes instead.",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--threads", type=int, help="threads for PyTorch and kernels (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="inputs a tenth of the size per side: a smoke run, not a measurement",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="trained weights of a compared network (repeatable): run, and scored on Set5 instead of the "
        "published PSNR (shipped models are used by themselves)",
    )
    parser.add_argument("--data-root", help="benchmark and training images (int8 calibration, Set5)")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="time the 64->64 layer and BBCU-M x4 at threads 1, 2 and all cores over input sizes up to "
        "1920x1080 instead, with a linear fit of time against pixels",
    )
    parser.add_argument("--plot", type=Path, help="with --scaling: also draw time against pixels (.png)")
    parser.add_argument("--save", type=Path, help="also write the results as JSON to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks (or the scaling sweep) and print a table (or JSON)."""
    if args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise InvalidArgumentError("--repeats and --threads must be positive")
    if args.plot is not None and not args.scaling:
        raise InvalidArgumentError("--plot draws the scaling sweep: give it with --scaling")
    if args.scaling:
        from bbcu.report import scaling  # imports the compiled kernels

        result = scaling.run_scaling(repeats=args.repeats, tiny=args.tiny)
        text = scaling.format_scaling(result)
        if args.plot is not None:
            scaling.save_scaling_plot(result, args.plot)
    else:
        from bbcu.report.bench import TINY_DIVISOR, run_benchmarks  # imports the compiled kernels
        from bbcu.report.bench_tables import format_table

        result = run_benchmarks(
            repeats=args.repeats,
            threads=args.threads,
            divisor=TINY_DIVISOR if args.tiny else 1,
            weights=args.weights,
            root=args.data_root,
        )
        text = format_table(result)
    encoded = json.dumps(result, indent=2)
    if args.save is not None:
        atomic_write_bytes(args.save, (encoded + "\n").encode(), make_parents=True)
    print(encoded if args.json else text)
    return 0
