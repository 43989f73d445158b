"""``bbcu convert``: an official BBCU, ESRGAN-family or DFDNet checkpoint (.pth) -> a bbcu weights file."""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from bbcu.formats.convert import BASICSR_PARAM_KEYS, convert_file
from bbcu.formats.dfdnet import convert_dfdnet_checkpoint
from bbcu.formats.weights import save


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu convert``."""
    parser = subparsers.add_parser(
        "convert",
        help="convert an official BBCU or ESRGAN checkpoint to a bbcu weights file",
        description=(
            "Convert an official BBCU checkpoint (BasicSR format for SR, KAIR format for denoising and "
            "JPEG) or an ESRGAN / Real-ESRGAN RRDBNet checkpoint (BasicSR, original-release or older "
            "layout; scale, blocks and widths read off the tensors) into a bbcu weights file. The .pth "
            "is read with weights_only=True: a file that would run code when unpickled is refused."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="official .pth file")
    parser.add_argument(
        "--model",
        help="registry name: bbcu-l, bbcu-m, dncnn-bbcu, dncnn3-bbcu, rrdbnet (PSNR-oriented RRDB weights), "
        "esrgan (GAN-trained) or dfdnet (the network; its dictionary stays a file of its own); default: "
        "rrdbnet for an ESRGAN-family file, required otherwise",
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
    model = convert(args)
    tensors = len(model.state_dict())
    shape = ", ".join(f"{key} {value}" for key, value in model.model_kwargs.items() if key != "scale")
    details = f" ({shape})" if shape else ""
    print(
        f"{args.checkpoint} -> {args.output}: {model.model_name} x{model.scale}{details}, {tensors} tensors"
    )
    return 0


def convert(args: argparse.Namespace) -> nn.Module:
    """The converted network, written to ``args.output``: DFDNet through its own loader, every other
    family through ``bbcu.formats.convert``."""
    if args.model != "dfdnet":
        return convert_file(
            args.checkpoint, args.output, args.model, scale=args.scale, param_key=args.param_key
        )
    model = convert_dfdnet_checkpoint(args.checkpoint, param_key=args.param_key)
    save(model, args.output, extra_metadata={"converted_from": args.checkpoint.name})
    return model
