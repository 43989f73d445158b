"""Serving the app with uvicorn, in the foreground (``bbcu serve``) or in a thread (tests, screenshots).

The listening socket is opened here rather than by uvicorn so that a port in use is a one-line
``InvalidArgumentError`` before anything starts, and so that port 0 (any free port) tells the caller
which port it got.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import uvicorn
from fastapi import FastAPI

from bbcu.core.errors import InvalidArgumentError
from bbcu.serve import LOOPBACK

STARTUP_TIMEOUT_S = 30.0


def open_socket(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6).

    Raises:
        InvalidArgumentError: If the address cannot be bound (port in use, unknown host, no permission).
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with ExitStack() as on_failure:  # closes the socket unless it ends up listening
            sock = on_failure.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            on_failure.pop_all()
    except OSError as err:
        raise InvalidArgumentError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    return sock


def make_server(app: FastAPI, *, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app``; ``run(sockets=[...])`` serves it on an opened socket."""
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2))


def url_of(sock: socket.socket) -> str:
    """The http URL a browser on this machine opens to reach ``sock``."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


@contextmanager
def running_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a background thread; yields its URL, then stops it."""
    sock = open_socket()
    server = make_server(app, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the bbcu serve test server did not start")
        time.sleep(0.02)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        sock.close()
