"""``bbcu serve``: a local web page to restore an image and compare it with its input.

The pieces, each in its own module: ``limits`` (what an upload may be, and the HTTP status of each
refusal), ``catalog`` (the whitelist of models the page offers), ``pipeline`` (one restoration, from
uploaded bytes to PNGs and scores), ``jobs`` (one restoration at a time, with a bounded queue),
``app`` (the FastAPI routes), ``server`` (listening on a socket, in the foreground or a thread) and
``browser`` (headless Chromium for the browser test and the README screenshot). The page itself is
plain HTML, CSS and JavaScript under ``static/``.

Nothing web-related is imported here, so ``bbcu`` keeps working where FastAPI is not installed.
"""

LOOPBACK = "127.0.0.1"
"""The default address: the page runs models on this machine for whoever can reach it."""
