"""``bbcu export``: turn a weights file into a packed ``.bbcu`` file for the 1-bit engine, or into the
compact weights file that models are shipped as (binary weights as sign bits)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bbcu.formats import weights

FORMATS = ("packed", "weights")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu export``."""
    parser = subparsers.add_parser(
        "export",
        help="pack a binary model's weights into sign bits (.bbcu engine file, or compact weights)",
        description="Export the weights file of a BBCU network to the packed engine format (docs/engine.md; "
        "other models are refused with the list of supported ones), or with --format weights to a compact "
        "weights file: binary weights as sign bits plus per-channel scales, loadable wherever a weights "
        "file is (docs/zoo.md).",
    )
    parser.add_argument(
        "weights", type=Path, help="weights file (.safetensors) written by bbcu train/convert"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="file to write (default: WEIGHTS with .bbcu, or .bits.safetensors for --format weights)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="packed",
        help="packed: the engine's .bbcu file (default); weights: a compact .safetensors weights file",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, then report both file sizes and the compression ratio."""
    model = weights.load(args.weights)
    if args.format == "weights":
        output = args.output or args.weights.with_suffix(".bits.safetensors")
        weights.save(model, output, binary_as_bits=True)
    else:
        from bbcu.engine import export_model  # loads the compiled kernels: not needed for --help

        output = args.output or args.weights.with_suffix(".bbcu")
        export_model(model, output)
    size_in, size_out = args.weights.stat().st_size, output.stat().st_size
    print(f"{model.model_name} {model.model_kwargs} -> {output}")
    print(f"  weights file: {size_in:>10,} bytes")
    label = "packed file: " if args.format == "packed" else "compact file:"
    print(f"  {label} {size_out:>10,} bytes ({size_ratio(size_in, size_out)})")
    return 0


def size_ratio(before: int, after: int) -> str:
    """``"4.2x smaller"``, or ``"1.3x larger"`` when the new file is the bigger one."""
    if after <= before:
        return f"{before / max(after, 1):.1f}x smaller"
    return f"{after / max(before, 1):.1f}x larger"
