"""The ``bbcu`` command line: one sub-command module per verb, wired here.

Each verb lives in ``bbcu.commands.<verb>`` and exposes ``add_parser(subparsers)`` (which registers
its arguments and sets ``func``). Errors a user can cause raise ``UserError`` and become one line on
stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from bbcu.errors import UserError

VERBS = (
    "restore",
    "eval",
    "train",
    "complexity",
    "convert",
    "export",
    "bench",
    "compare",
    "plot",
    "serve",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Parser with every verb whose module is present."""
    parser = argparse.ArgumentParser(prog="bbcu", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"bbcu.commands.{verb}")
        except ModuleNotFoundError as err:
            if err.name != f"bbcu.commands.{verb}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bbcu`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"bbcu {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bbcu {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # A reader such as `head` closed the pipe: stop quietly, as Unix tools do. Pointing stdout at
        # /dev/null keeps the interpreter's final flush from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
