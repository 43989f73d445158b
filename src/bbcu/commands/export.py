"""``bbcu export``: turn a weights file into a packed ``.bbcu`` file for the 1-bit engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from bbcu import weights


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu export``."""
    parser = subparsers.add_parser(
        "export",
        help="pack a binary model's weights into sign bits (.bbcu) for the fast engine",
        description="Export the weights file of a BBCU network to the packed format (docs/engine.md); "
        "other models are refused with the list of supported ones.",
    )
    parser.add_argument(
        "weights", type=Path, help="weights file (.safetensors) written by bbcu train/convert"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="packed file to write (default: WEIGHTS with .bbcu)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, then report both file sizes and the compression ratio."""
    from bbcu.engine.format import export_model  # loads the compiled kernels: not needed for --help

    output = args.output or args.weights.with_suffix(".bbcu")
    model = weights.load(args.weights)
    export_model(model, output)
    size_in, size_out = args.weights.stat().st_size, output.stat().st_size
    print(f"{model.model_name} {model.model_kwargs} -> {output}")
    print(f"  weights file: {size_in:>10,} bytes")
    print(f"  packed file:  {size_out:>10,} bytes ({size_in / size_out:.1f}x smaller)")
    return 0
