"""``bbcu reproduce``: train and score every row of a published table under a budget; tables and claims."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from bbcu.core.errors import DataNotFoundError, InvalidArgumentError
from bbcu.data.root import data_root
from bbcu.report.tables import ALL, TARGETS, expand

DEFAULT_RUNS = Path("runs") / "reproduce"
DEFAULT_OUT = Path("results") / "reproduce"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu reproduce``."""
    parser = subparsers.add_parser(
        "reproduce",
        help="train and score every row of a published table under a budget; tables beside the paper",
        description="Train every row of TARGET that has no finished run (resuming interrupted ones), score "
        "it on every test set present, and write the table (markdown + CSV) beside the published numbers, "
        "the k-sweep chart and the claims report. Rows are independent processes: --list prints one "
        "command per row to spread them over machines.",
    )
    parser.add_argument("target", choices=(*TARGETS, ALL), help="the table or figure to reproduce")
    parser.add_argument(
        "--budget", required=True, help="configs/budgets/NAME.yml (smoke, cpu, gpu) or a .yml path"
    )
    parser.add_argument("--row", help="run only this row of TARGET (a name printed by --list)")
    parser.add_argument("--list", action="store_true", help="print one shell command per row and exit")
    parser.add_argument(
        "--report-only", action="store_true", help="train nothing: score finished runs and write the tables"
    )
    parser.add_argument("--runs", type=Path, help=f"runs folder (default: {DEFAULT_RUNS}/<budget>)")
    parser.add_argument("--out", type=Path, help=f"tables folder (default: {DEFAULT_OUT}/<budget>)")
    parser.add_argument(
        "--configs", type=Path, help="folder of the recipes (default: the checkout's configs/)"
    )
    parser.add_argument("--data-root", help="data folder (default: $BBCU_DATA, else ../shared/data)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List, or train and score, then write the tables and the claims report."""
    from bbcu.report.budget import default_configs_dir, load_budget
    from bbcu.report.reproduce import Plan, every_row, reproduce, write_claims, write_table

    configs = args.configs or default_configs_dir()
    if configs is None:
        raise DataNotFoundError("no configs/ folder: bbcu runs from a wheel; pass --configs DIR")
    budget = load_budget(args.budget, configs)
    targets = expand(args.target)
    rows = every_row(budget, targets)
    if args.row is not None:
        if args.target == ALL:
            raise InvalidArgumentError("--row needs one TARGET, not all (row names repeat across tables)")
        rows = [row for row in rows if row.key == args.row]
        if not rows:
            names = ", ".join(row.key for row in every_row(budget, targets))
            raise InvalidArgumentError(f"{args.target} has no row {args.row!r}; rows: {names}")
    if args.list:
        for row in rows:
            print(
                shlex.join(
                    [
                        "bbcu",
                        "reproduce",
                        row.target,
                        "--budget",
                        args.budget,
                        "--row",
                        row.key,
                        *_passed(args),
                    ]
                )
            )
        return 0
    runs = args.runs or DEFAULT_RUNS / budget.name
    out = args.out or DEFAULT_OUT / budget.name
    plan = Plan(budget, configs, runs, data_root(args.data_root))
    outcome = reproduce(plan, rows, train_missing=not args.report_only)
    if args.row is None:
        for target in targets:
            target_rows = [row for row in rows if row.target == target]
            for path in write_table(out, target, target_rows, outcome.results, budget):
                print(f"bbcu reproduce: wrote {path}")
        print(f"bbcu reproduce: wrote {write_claims(plan, every_row(budget, TARGETS), out)}")
    for failure in outcome.failures:
        print(f"bbcu reproduce: failed: {failure}")
    return 2 if outcome.failures else 0


def _passed(args: argparse.Namespace) -> list[str]:
    """The folder options given on this command line, repeated in each listed command."""
    passed = []
    for option in ("runs", "out", "configs", "data_root"):
        value = getattr(args, option)
        if value is not None:
            passed += [f"--{option.replace('_', '-')}", str(value)]
    return passed
