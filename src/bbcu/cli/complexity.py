"""``bbcu complexity``: a model's OPs and Params in the paper's convention, layer by layer."""

from __future__ import annotations

import argparse
import json
import re

from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.core.constants import TASKS
from bbcu.core.errors import InvalidArgumentError
from bbcu.metrics.complexity import DEFAULT_INPUT_SIZE, CostReport, count_cost

_SIZE_PATTERN = re.compile(r"(\d+)[xX](\d+)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu complexity``."""
    parser = subparsers.add_parser(
        "complexity",
        help="OPs and Params of a model (binary MACs / 64, binary weights / 32)",
        description="Count the cost of one forward pass the way the BBCU paper does.",
    )
    parser.add_argument("model", help="registry name, e.g. bbcu-l or dncnn-bbcu")
    parser.add_argument("--scale", type=int, help="SR scale (2, 3 or 4); SR models only")
    default_size = "x".join(map(str, DEFAULT_INPUT_SIZE))
    parser.add_argument(
        "--size", default=default_size, help=f"LQ input WIDTHxHEIGHT (default {default_size}, as published)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    """``"320x180"`` -> ``(320, 180)``; anything else, or a zero side, is a user error."""
    match = _SIZE_PATTERN.fullmatch(text.strip())
    if not match or 0 in (size := (int(match[1]), int(match[2]))):
        raise InvalidArgumentError(f"--size must look like 320x180 (positive WIDTHxHEIGHT), got {text!r}")
    return size


def build(name: str, scale: int | None) -> nn.Module:
    """Build ``name`` with ``scale`` where that makes sense, turning bad requests into user errors."""
    entry = model_entry(name)
    if entry.task not in TASKS:
        raise InvalidArgumentError(
            f"{name} is a {entry.task} model (an aligned face, its part boxes and a dictionary in): its cost "
            "is not counted on an image size"
        )
    if scale is not None and entry.task != "sr":
        raise InvalidArgumentError(f"--scale applies to SR models only; {name} is a {entry.task} model")
    return create_model(name, **({} if scale is None else {"scale": scale}))


def run(args: argparse.Namespace) -> int:
    """Print the cost table (or JSON) of one model."""
    size = parse_size(args.size)
    model = build(args.model, args.scale)
    report = count_cost(model, size)
    if args.json:
        print(json.dumps(report_dict(args.model, model.scale, report), indent=2))
    else:
        print(format_report(args.model, model.scale, report))
    return 0


def report_dict(name: str, scale: int, report: CostReport) -> dict[str, object]:
    """The JSON form: totals in the paper's units, raw counts, and every layer."""
    width, height = report.input_size
    return {
        "model": name,
        "scale": scale,
        "size": f"{width}x{height}",
        "ops_g": report.ops_g,
        "params_k": report.params_k,
        "fp_macs": report.fp_macs,
        "binary_macs": report.binary_macs,
        "fp_params": report.fp_params,
        "binary_params": report.binary_params,
        "binary_ops_share": report.binary_ops_share,
        "layers": [
            {
                "name": layer.name,
                "kind": layer.kind,
                "in_channels": layer.in_channels,
                "out_channels": layer.out_channels,
                "out_hw": list(layer.out_hw),
                "macs": layer.macs,
                "params": layer.params,
            }
            for layer in report.layers
        ],
    }


def format_report(name: str, scale: int, report: CostReport) -> str:
    """A per-layer table followed by the totals and the binary share."""
    width, height = report.input_size
    rows = [f"{'layer':<28} {'kind':<6} {'channels':>10} {'output HxW':>11} {'MMACs':>10} {'params':>9}"]
    rows += [
        f"{layer.name:<28} {layer.kind:<6} {f'{layer.in_channels}->{layer.out_channels}':>10} "
        f"{f'{layer.out_hw[0]}x{layer.out_hw[1]}':>11} {layer.macs / 1e6:>10.2f} {layer.params:>9}"
        for layer in report.layers
    ]
    total_macs = report.fp_macs + report.binary_macs
    binary_mac_share = report.binary_macs / total_macs if total_macs else 0.0
    rows += [
        "",
        f"{name} x{scale}, {width}x{height} input: {report.ops_g:.2f} G OPs, {report.params_k:.1f} K Params",
        f"  full precision: {report.fp_macs / 1e9:.2f} G MACs, {report.fp_params} params",
        f"  binary: {report.binary_macs / 1e9:.2f} G MACs ({binary_mac_share:.1%} of MACs, "
        f"{report.binary_ops_share:.1%} of OPs), {report.binary_params} weights",
        "  (OPs = FP MACs + binary MACs / 64; Params = FP weights and biases + binary weights / 32)",
    ]
    return "\n".join(rows)
