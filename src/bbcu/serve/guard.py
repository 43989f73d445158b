"""Who may talk to the server: only this machine's own page, by a name the server answers to.

The server runs models on this machine for whoever reaches it, so it refuses (HTTP 403) requests a web
page elsewhere can make a browser send:

- a ``Host`` that is not a loopback name or a name the server was told it has: a page on another
  site whose DNS name is re-pointed at 127.0.0.1 ("DNS rebinding") reaches the port but still sends its
  own name;
- an ``Origin`` other than the server's own (``http://`` + the ``Host`` asked for): a cross-site
  ``fetch`` or form;
- for anything but ``GET`` and ``HEAD``, a ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``:
  the browser's own word that another site (or a sibling port) started the request.

Every answer, refusals included, carries the usual hardening headers: a strict Content Security Policy
(the page is one HTML file, one script and one style sheet, all from the server, and shows results as
``blob:`` images), no MIME sniffing, no framing, no referrer. Scripts without an ``Origin`` or
``Sec-Fetch-Site`` (curl, Python) pass as long as the ``Host`` is right.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bbcu.serve import LOOPBACK_NAMES

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
SAFE_METHODS = ("GET", "HEAD")
TRUSTED_FETCH_SITES = ("same-origin", "none")


class Guard:
    """ASGI middleware: refuse foreign requests before any route sees them, and harden every answer."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed_hosts = frozenset(host_name(name) for name in (*LOOPBACK_NAMES, *allowed_hosts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
                ]
            await send(message)

        reason = self.refusal(Headers(scope=scope), scope["method"])
        if reason:
            await JSONResponse({"error": reason}, status_code=403)(scope, receive, send_hardened)
        else:
            await self.app(scope, receive, send_hardened)

    def refusal(self, headers: Headers, method: str) -> str:
        """Why a request with these headers is refused, or "" when it is not."""
        host = headers.get("host", "")
        if host_name(host) not in self.allowed_hosts:
            return f"this server does not answer to the host name {host!r}"
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host}".lower():
            return f"requests from {origin!r} are not accepted (only from this server's own page)"
        site = headers.get("sec-fetch-site")
        if method not in SAFE_METHODS and site is not None and site.lower() not in TRUSTED_FETCH_SITES:
            return f"requests started by another site (Sec-Fetch-Site: {site}) are not accepted"
        return ""


def host_name(host: str) -> str:
    """The name in a ``Host`` header or address, without its port or IPv6 brackets, in lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host  # a bare name, IPv4 address or unbracketed IPv6 address
