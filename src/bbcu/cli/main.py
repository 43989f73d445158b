"""The ``bbcu`` command line: one module per verb in ``bbcu.cli``, wired here.

Each verb module exposes ``add_parser(subparsers)``, which registers its arguments and sets ``func``.
Every verb is imported eagerly, so a verb that fails to import fails ``bbcu --help`` loudly instead of
vanishing from the list; verbs that need an optional extra import it inside ``func``. Errors a user can
cause raise ``bbcu.core.errors.BbcuError`` and become one line on stderr with exit status 2, never a
traceback; warnings become one line too (``bbcu VERB: warning: ...``), not Python's file:line header with
the source line under it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from bbcu.core.errors import BbcuError

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
    "reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every verb of ``VERBS``."""
    parser = argparse.ArgumentParser(prog="bbcu", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        importlib.import_module(f"bbcu.cli.{verb}").add_parser(subparsers)
    return parser


def warning_printer(verb: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``bbcu VERB: warning: MESSAGE`` on one line of stderr."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        print(f"bbcu {verb}: warning: {message}", file=file or sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bbcu`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"bbcu {args.verb}: %(message)s")
    try:
        with warnings.catch_warnings():  # restores Python's own printer when the verb returns
            warnings.showwarning = warning_printer(args.verb)
            return int(args.func(args) or 0)
    except BbcuError as err:
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
