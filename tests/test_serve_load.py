"""``bbcu serve``'s limits under a bounded load, with the server's memory measured.

Runs ``benchmarks/serve_load.py`` (the real server in a child process) at a small size: while one
restoration runs, 8 concurrent uploads of 16 MB with a queue of 1, plus foreign-host, foreign-origin,
cross-site and oversized requests. Reading every upload whole costs 128 MB; the server may hold only the
one upload that finds the free slot (about two copies of it while it is joined and decoded).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
UPLOADS, UPLOAD_MB, QUEUE = 8, 16, 1


@pytest.mark.slow
def test_limits_hold_under_load_and_memory_stays_bounded() -> None:
    command = [sys.executable, str(BENCHMARK), "--json", "--uploads", str(UPLOADS)]
    command += ["--upload-mb", str(UPLOAD_MB), "--queue", str(QUEUE), "--hold-side", "320"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads(finished.stdout)
    control, load = result["control"], result["load"]

    statuses = Counter((o["case"], o["status"]) for o in load["outcomes"] + result["after"])
    assert statuses == {
        ("upload", 200): QUEUE,  # the one free slot while the restoration runs
        ("upload", 503): UPLOADS - QUEUE,
        ("foreign Host (DNS rebinding)", 403): 1,
        ("foreign Origin", 403): 1,
        ("cross-site text/plain POST", 403): 1,
        ("text/plain POST, no Origin", 415): 1,
        ("Content-Length over the limit, no body", 413): 1,
        ("chunked upload past the limit, never ended", 413): 1,
        ("30000x30000 PNG (decompression bomb)", 413): 1,
        ("MPO (phone camera JPEG)", 200): 1,
    }
    refusals = [o["answered_s"] for o in load["outcomes"] if o["status"] != 200]
    assert max(refusals) < load["hold_answered_s"]  # refused while the restoration still ran

    uploads_cost_mb = load["rss_growth"] - control["rss_growth"]
    assert uploads_cost_mb < 4 * UPLOAD_MB, f"the uploads cost {uploads_cost_mb:.0f} MB of memory"
