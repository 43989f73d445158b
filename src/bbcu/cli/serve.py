"""``bbcu serve``: a local web page to restore an image and compare the result with its input.

It listens on the loopback address unless told otherwise: the page runs models on this machine's
CPU for whoever can reach it, so exposing it to a network is a choice the user makes explicitly
(``--host 0.0.0.0``), and is then warned about. Whatever it listens on, it answers only to the
loopback names, the ``--host`` address and the ``--allow-host`` names (see ``bbcu.serve.guard``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bbcu.core.errors import InvalidArgumentError, MissingExtraError
from bbcu.serve import LOOPBACK, LOOPBACK_NAMES
from bbcu.serve.limits import MEGABYTE, Limits

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu serve``."""
    defaults = Limits()
    parser = subparsers.add_parser(
        "serve",
        help="start a local web page to restore images and compare them with their input",
        description="Serve a page to upload an image, restore it with a BBCU model and compare the result.",
    )
    parser.add_argument("--host", default=LOOPBACK, help=f"address to listen on (default {LOOPBACK})")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name (or address) browsers may reach the page by, besides the loopback names and "
        "--host; repeat for more (requests naming any other host are refused)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 = any)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="also offer every model in this folder: bbcu weights files and official ESRGAN / Real-ESRGAN "
        ".pth checkpoints (named by file name; found now, never from a request)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=defaults.max_upload_bytes / MEGABYTE,
        help="largest upload in MB (default %(default)g)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=defaults.max_pixels,
        help="largest input image in pixels, width x height (default %(default)d)",
    )
    parser.add_argument(
        "--queue",
        type=int,
        default=defaults.queue,
        help="restorations that may wait while one runs; more are answered busy (default %(default)d)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the options, bind the socket, and serve until interrupted.

    Raises:
        MissingExtraError: Where the ``serve`` extra (FastAPI, uvicorn) is not installed.
        InvalidArgumentError: For an option out of range or an address that cannot be listened on.
    """
    try:  # imported here: only this verb needs FastAPI and uvicorn
        from bbcu.serve.app import create_app
        from bbcu.serve.catalog import Catalog
        from bbcu.serve.server import make_server, open_socket, url_of
    except ModuleNotFoundError as err:
        if (err.name or "bbcu").partition(".")[0] == "bbcu":
            raise  # a broken bbcu, not a missing extra
        raise MissingExtraError(f"{err.name} is not installed: pip install 'bbcu[serve]'") from err

    limits = limits_from(args)
    catalog = Catalog.discover(args.models_dir)
    sock = open_socket(args.host, args.port)
    if args.host not in LOOPBACK_NAMES:
        logger.warning("warning: listening on %s: anyone who can reach it can run models here", args.host)
    print(f"bbcu serve: open {url_of(sock)} in a browser (Ctrl+C stops)", file=sys.stderr)
    app = create_app(limits, catalog, allowed_hosts=[args.host, *args.allow_host])
    make_server(app).run(sockets=[sock])
    return 0


def limits_from(args: argparse.Namespace) -> Limits:
    """The limits the options ask for, each checked with the option's own name in the message.

    Raises:
        InvalidArgumentError: For a port outside 0..65535 or a limit that is not positive (a queue may be 0).
    """
    problems = [
        f"--port must lie within 0..65535, got {args.port}" if not 0 <= args.port <= 65535 else "",
        f"--max-upload-mb must be positive, got {args.max_upload_mb:g}" if args.max_upload_mb <= 0 else "",
        f"--max-pixels must be positive, got {args.max_pixels}" if args.max_pixels < 1 else "",
        f"--queue must be 0 or more, got {args.queue}" if args.queue < 0 else "",
    ]
    if any(problems):
        raise InvalidArgumentError("; ".join(p for p in problems if p))
    return Limits(max(1, round(args.max_upload_mb * MEGABYTE)), args.max_pixels, args.queue)
