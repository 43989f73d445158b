"""``bbcu plot``: the paper's PSNR-versus-OPs chart, with our measured models placed among the published ones.

Published points come from ``bbcu.published`` (score and printed cost). Our points come from files
written from ``bbcu eval --json``; those rows do not say which network produced them, so each file is
given as ``MODEL=RESULT.json``, where MODEL (a shipped name, a weights file or a registry name) fixes
the architecture whose cost ``bbcu.complexity.count_cost`` measures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.core.constants import SETTING_NAMES
from bbcu.core.errors import InvalidArgumentError, InvalidFileError
from bbcu.data.published import ROW_LABELS, published_cost, published_score
from bbcu.metrics.complexity import count_cost
from bbcu.report.latency import draw_latency_chart, latency_points
from bbcu.report.pictures import ChartPoint, draw_psnr_ops_chart, save_figure
from bbcu.run import zoo

DEFAULT_SETTINGS = {"sr": 4, "denoise": 25, "jpeg": 10}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu plot``."""
    parser = subparsers.add_parser(
        "plot",
        help="PSNR-versus-OPs chart: published models and ours",
        description="Draw PSNR against OPs (log scale) for the published models and any measured ones.",
    )
    parser.add_argument(
        "results",
        nargs="*",
        metavar="MODEL=RESULT.json",
        help="our scores: a `bbcu eval --json` output per model",
    )
    parser.add_argument("--task", choices=tuple(SETTING_NAMES), default="sr")
    parser.add_argument("--scale", type=int, help=f"SR scale (default {DEFAULT_SETTINGS['sr']})")
    parser.add_argument("--sigma", type=int, help=f"noise level (default {DEFAULT_SETTINGS['denoise']})")
    parser.add_argument("--quality", type=int, help=f"JPEG quality (default {DEFAULT_SETTINGS['jpeg']})")
    parser.add_argument("--dataset", default="Set5", help="test set to plot (default Set5)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="chart file (.png)")
    parser.add_argument(
        "--latency",
        action="store_true",
        help="draw Set5 PSNR against milliseconds measured on this machine instead (super-resolution): "
        "the networks of a `bbcu bench` run",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="BENCH.json",
        help="with --latency: take the times from a `bbcu bench --json` output instead of timing now",
    )
    parser.add_argument("--threads", type=int, help="with --latency, when timing now: threads (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="with --latency, when timing now (default 3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Collect published and measured points and draw the chart."""
    setting_name = SETTING_NAMES[args.task]
    setting = getattr(args, setting_name) or DEFAULT_SETTINGS[args.task]
    if args.latency:
        return plot_latency(args, setting)
    if args.from_json is not None:
        raise InvalidArgumentError("--from-json gives the times of the --latency chart: add --latency")
    points = published_points(args.task, args.dataset, setting)
    points += [measured_point(spec, args.task, args.dataset, setting) for spec in args.results]
    if not points:
        raise InvalidArgumentError(
            f"nothing to plot: no published or measured {args.task} scores on {args.dataset}"
        )
    title = f"{args.dataset}, {args.task} {setting_name} {setting}: PSNR versus cost"
    y_label = "PSNR (dB, Y channel)" if args.task != "denoise" else "PSNR (dB, RGB)"
    save_figure(draw_psnr_ops_chart(points, title=title, y_label=y_label), args.output)
    print(f"wrote {args.output}: {len(points)} points ({sum(p.ours for p in points)} measured here)")
    return 0


def plot_latency(args: argparse.Namespace, scale: int) -> int:
    """The Set5 PSNR-versus-milliseconds chart, from a saved bench run or from timing now."""
    if args.task != "sr" or args.results:
        raise InvalidArgumentError(
            "--latency plots super-resolution networks from a bench run: no MODEL=RESULT.json"
        )
    if args.from_json is not None:
        result = read_bench_json(args.from_json)
    else:
        from bbcu.report.bench import network_cases, run_benchmarks  # imports the compiled kernels

        cases = [name for name, case in network_cases().items() if case.kwargs.get("scale") == scale]
        if not cases:
            raise InvalidArgumentError(f"the bench times no x{scale} network; choose --scale 2 or 4")
        result = run_benchmarks(repeats=args.repeats, threads=args.threads, cases=cases)
    points = latency_points(result, scale)
    if not points:
        raise InvalidArgumentError(f"the bench run holds no timed network with a Set5 x{scale} score")
    title = f"Set5 x{scale}: PSNR versus time on {result['machine']}, {result['threads']} threads"
    save_figure(draw_latency_chart(points, title=title), args.output)
    print(
        f"wrote {args.output}: {len(points)} points "
        f"({sum(p.measured for p in points)} with PSNR measured here)"
    )
    return 0


def read_bench_json(path: Path) -> dict[str, object]:
    """A saved ``bbcu bench --json`` result.

    Raises:
        InvalidFileError: If the file is unreadable or not such output.
    """
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InvalidFileError(f"cannot read bench results {path}: {err}") from err
    if (
        not isinstance(result, dict)
        or not isinstance(result.get("networks"), list)
        or "machine" not in result
    ):
        raise InvalidFileError(f"{path} is not `bbcu bench --json` output (no list of timed networks)")
    return result


def published_points(task: str, dataset: str, setting: int) -> list[ChartPoint]:
    """Every published model with both a score and a cost in this cell of the tables (bicubic has no cost)."""
    points = []
    for model, label in ROW_LABELS[task].items():
        score, cost = published_score(model, task, dataset, setting), published_cost(model, task, setting)
        if score is not None and cost is not None:
            points.append(ChartPoint(label, cost[0], score[0], ours=False))
    return points


def measured_point(spec: str, task: str, dataset: str, setting: int) -> ChartPoint:
    """Our point from ``MODEL=RESULT.json``: the row of ``dataset``/``setting``, costed by the model's OPs."""
    model_name, separator, path_text = spec.partition("=")
    if not separator or not model_name or not path_text:
        raise InvalidArgumentError(
            f"give each result as MODEL=RESULT.json (e.g. bbcu-l-x4=eval.json), got {spec!r}"
        )
    row = find_row(Path(path_text), task, dataset, setting)
    network = build_network(model_name, task, setting)
    if not any(True for _ in network.parameters()):
        raise InvalidArgumentError(f"{model_name} is not a network (no parameters): it has no OPs to plot")
    return ChartPoint(f"{model_name} (ours)", count_cost(network).ops_g, float(row["psnr"]), ours=True)


def find_row(path: Path, task: str, dataset: str, setting: int) -> dict[str, object]:
    """The row of ``bbcu eval --json`` output for one set and setting.

    Raises:
        InvalidFileError: If the file is unreadable, not such output, or lacks that row.
    """
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InvalidFileError(f"cannot read results {path}: {err}") from err
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise InvalidFileError(f"{path} is not `bbcu eval --json` output (a list of rows)")
    setting_name = SETTING_NAMES[task]
    for row in rows:
        if (
            row.get("task", task) == task
            and row.get("dataset") == dataset
            and row.get(setting_name) == setting
        ):
            if "psnr" not in row:
                raise InvalidFileError(f"{path}: the {dataset} row has no psnr")
            return row
    raise InvalidFileError(f"{path} has no {task} result on {dataset} at {setting_name} {setting}")


def build_network(name: str, task: str, setting: int) -> nn.Module:
    """The architecture behind a shipped name, a weights file or a registry name (weights are not needed)."""
    if zoo.is_shipped(name) or Path(name).suffix == zoo.WEIGHTS_SUFFIX:
        info = zoo.shipped_info(name) if zoo.is_shipped(name) else zoo.describe_weights(Path(name))
        architecture, kwargs = info.architecture, info.model_kwargs
    else:
        architecture, kwargs = name, ({"scale": setting} if task == "sr" else {})
    entry = model_entry(architecture)
    if entry.task != task:
        raise InvalidArgumentError(f"{name} is a {entry.task} model, not a {task} model")
    network = create_model(architecture, **kwargs)
    if task == "sr" and int(network.scale) != setting:
        raise InvalidArgumentError(f"{name} is a x{network.scale} model, not x{setting}")
    return network
