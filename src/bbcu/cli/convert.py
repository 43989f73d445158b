"""``bbcu convert``: an official BBCU checkpoint (.pth) -> a bbcu weights file (.safetensors)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bbcu.formats.convert import BASICSR_PARAM_KEYS, convert_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu convert``."""
    parser = subparsers.add_parser(
        "convert",
        help="convert an official BBCU checkpoint to a bbcu weights file",
        description=(
            "Convert an official BBCU checkpoint (BasicSR format for SR, KAIR format for denoising and "
            "JPEG) into a bbcu weights file. The .pth is read with weights_only=True: a file that would "
            "run code when unpickled is refused."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="official .pth file")
    parser.add_argument(
        "--model", required=True, help="registry name: bbcu-l, bbcu-m, dncnn-bbcu, dncnn3-bbcu"
    )
    parser.add_argument("--scale", type=int, help="SR scale (default: read off the checkpoint)")
    parser.add_argument(
        "--param-key",
        help=f"BasicSR entry holding the weights, e.g. {' or '.join(BASICSR_PARAM_KEYS)} (default: params, "
        "as BasicSR's test scripts load)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="destination .safetensors file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert, write atomically, and say what was written."""
    model = convert_file(args.checkpoint, args.output, args.model, scale=args.scale, param_key=args.param_key)
    tensors = len(model.state_dict())
    print(f"{args.checkpoint} -> {args.output}: {args.model} x{model.scale}, {tensors} tensors")
    return 0
