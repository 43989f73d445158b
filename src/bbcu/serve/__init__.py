"""``bbcu serve``: a local web page to restore an image and compare it with its input.

The pieces, each in its own module: ``guard`` (which clients and host names are answered, and the
hardening headers of every answer), ``limits`` (what an upload may be, and the HTTP status of each
refusal), ``catalog`` (the whitelist of models the page offers), ``pipeline`` (one restoration, from
uploaded bytes to PNGs and scores), ``jobs`` (one restoration at a time, with a bounded queue),
``app`` (the FastAPI routes) and ``server`` (listening on a socket, in the foreground or a thread).
The page itself is plain HTML, CSS and JavaScript under ``static/``, shipped as package data. The
headless browser that tests it lives with the tests (``tests/browser.py``): Selenium is a test
dependency, never a run-time one.

Nothing web-related is imported here, so ``bbcu`` keeps working where FastAPI is not installed (the
``serve`` extra adds FastAPI and uvicorn; ``bbcu serve`` says so when they are missing).
"""

LOOPBACK = "127.0.0.1"
"""The default address: the page runs models on this machine for whoever can reach it."""
LOOPBACK_NAMES = (LOOPBACK, "localhost", "::1")
"""Names of this machine that the page always answers to (``--allow-host`` adds others)."""
