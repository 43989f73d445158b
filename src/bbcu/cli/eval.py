"""``bbcu eval``: score a model on the benchmark sets with the published protocols, beside the paper."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.archs.bicubic import bicubic  # noqa: F401  (registers the non-learned baselines offered here)
from bbcu.archs.identity import identity  # noqa: F401
from bbcu.cli.restore import print_layer_paths
from bbcu.core.constants import SETTING_NAMES, TASKS
from bbcu.core.errors import InvalidArgumentError
from bbcu.data.published import published_settings
from bbcu.data.testsets import available_test_sets
from bbcu.formats.convert import convert_checkpoint
from bbcu.formats.weights import load as load_weights
from bbcu.run import zoo
from bbcu.run.evaluate import (
    SetResult,
    check_model_task,
    evaluate_set,
    format_table,
    setting_label,
    write_csv,
)

logger = logging.getLogger(__name__)

DEFAULT_RESULTS_DIR = Path("results") / "eval"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu eval``."""
    parser = subparsers.add_parser(
        "eval",
        help="PSNR/SSIM of a model on the benchmark sets, beside the published numbers",
        description="Restore every image of the named test sets; score it by the task's published protocol.",
    )
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--scale", help="SR scales, e.g. 2,4 (default: the model's, or the published 2,4)")
    parser.add_argument("--sigma", help="noise levels, e.g. 15,25,50 (default: the published ones)")
    parser.add_argument("--quality", help="JPEG qualities, e.g. 10,40 (default: 10,20,30,40)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", help="registry name (random weights unless non-learned: bicubic, identity)"
    )
    source.add_argument(
        "--weights",
        type=Path,
        help="a bbcu weights file (.safetensors), or an official ESRGAN-family checkpoint (.pth; "
        "RRDB_PSNR_x4.pth is scored beside its published numbers)",
    )
    parser.add_argument(
        "--datasets", help="comma-separated sets (default: the task's published sets present)"
    )
    parser.add_argument("--data-root", help="data folder (default: $BBCU_DATA, else ../shared/data)")
    parser.add_argument(
        "--csv",
        type=Path,
        help=f"per-image CSV (default: a file in {DEFAULT_RESULTS_DIR})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the per-set rows as JSON instead of a table"
    )
    parser.add_argument("--save-images", type=Path, metavar="DIR", help="write the restored images here")
    parser.add_argument(
        "--tile", type=int, help="tile size in LQ pixels (default: whole image within budget)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all)"
    )
    parser.add_argument(
        "--engine",
        choices=("torch", "packed"),
        default="torch",
        help="packed: run the binary network on the XNOR-popcount engine (same pixels, faster)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="with --engine packed: print which path ran each layer (popcount kernel, oneDNN int8, PyTorch)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table (or JSON), write the per-image CSV."""
    if args.threads < 1:
        raise InvalidArgumentError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    model_name, runs = _models(args)
    if args.engine == "packed":
        runs = _packed(runs, args.threads)
    datasets = parse_list(args.datasets, "--datasets", str) or available_test_sets(args.task, args.data_root)
    save_dir = None if args.save_images is None else args.save_images / model_name
    results: list[SetResult] = []
    for setting, model in runs:
        check_model_task(model, args.task)
        for dataset in datasets:
            result = evaluate_set(
                model, args.task, dataset, setting, root=args.data_root, tile=args.tile, save_dir=save_dir
            )
            results.append(result)
    if args.verbose:
        for model in {id(model): model for _, model in runs}.values():
            print_layer_paths(model)
    tag = "-".join(setting_label(args.task, setting) for setting, _ in runs)
    csv_path = args.csv or DEFAULT_RESULTS_DIR / f"{model_name}_{args.task}_{tag}.csv"
    write_csv(csv_path, results, model_name)
    if args.json:
        print(json.dumps([r.summary() for r in results], indent=2))
    else:
        print(format_table(results, model_name))
        print(f"per-image scores: {csv_path}")
    return 0


def parse_list(text: str | None, option: str, kind: type[int] | type[str]) -> list:
    """``"2,4"`` -> ``[2, 4]``; None -> ``[]``; anything unparsable, empty or non-positive is a user error."""
    if text is None:
        return []
    try:
        values = [kind(item.strip()) for item in text.split(",")]
    except ValueError as err:
        raise InvalidArgumentError(f"{option} takes a comma-separated list, got {text!r}") from err
    if any(v == "" or (kind is int and v <= 0) for v in values):
        raise InvalidArgumentError(f"{option} takes a comma-separated list of positive values, got {text!r}")
    return values


def _models(args: argparse.Namespace) -> tuple[str, list[tuple[int, nn.Module]]]:
    """The model name and its (setting, model) runs; a named SR model is built once per scale."""
    option = SETTING_NAMES[args.task]
    settings = parse_list(getattr(args, option), f"--{option}", int)
    if args.weights is not None:
        model = _load(args.weights)
        if not settings:
            settings = [int(model.scale)] if args.task == "sr" else list(published_settings(args.task))
        return model.model_name, [(setting, model) for setting in settings]
    model_entry(args.model)
    settings = settings or list(published_settings(args.task))
    if args.task == "sr":
        runs = [(scale, create_model(args.model, scale=scale)) for scale in settings]
    else:
        model = create_model(args.model, scale=1)
        runs = [(setting, model) for setting in settings]
    if any(True for _ in runs[0][1].parameters()):
        note = f"{args.model} runs with random weights (give --weights for trained ones)"
        logger.warning(note)
    return args.model, runs


def _load(path: Path) -> nn.Module:
    """A bbcu weights file, or an official checkpoint converted in memory without running pickled code;
    its file name says which published row applies (``zoo.checkpoint_architecture``)."""
    if path.suffix == zoo.OFFICIAL_SUFFIX:
        return convert_checkpoint(path, zoo.checkpoint_architecture(path))
    return load_weights(path)


def _packed(runs: list[tuple[int, nn.Module]], threads: int) -> list[tuple[int, nn.Module]]:
    """The same runs on the packed engine; each distinct network is exported once."""
    from bbcu.engine.runtime import pack_model, set_num_threads

    set_num_threads(threads)
    packed: dict[int, nn.Module] = {}
    return [(setting, packed.setdefault(id(model), pack_model(model))) for setting, model in runs]
