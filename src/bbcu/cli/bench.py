"""``bbcu bench``: how much faster the packed 1-bit engine runs than full-precision PyTorch here."""

from __future__ import annotations

import argparse
import json

from bbcu.core.errors import InvalidArgumentError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu bench``."""
    parser = subparsers.add_parser(
        "bench",
        help="time the packed 1-bit engine against PyTorch float (channels_last)",
        description="Time one binary layer, BBCU-M/BBCU-L x4 and binary DnCNN against their float "
        "counterparts; median of repeated runs after a warm-up.",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--threads", type=int, help="threads for PyTorch and kernels (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run every benchmark and print a table (or JSON)."""
    from bbcu.report.bench import format_table, run_benchmarks  # imports the compiled kernels

    if args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise InvalidArgumentError("--repeats and --threads must be positive")
    result = run_benchmarks(repeats=args.repeats, threads=args.threads)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
