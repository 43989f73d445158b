"""Whether ``bbcu serve``'s limits hold under load, with the server's memory measured.

The real server (``python -m bbcu.cli.main serve --port 0``) runs in a child process with a random-weight
binary DnCNN as its one shipped model. In order:

1. warm-up: two "hold" restorations (the binary DnCNN denoising a noise PNG, seconds on a small
   machine), after which the server's peak memory no longer moves from one restoration to the next;
2. control round: the hold restoration again and, while it runs, the hostile requests a web page
   elsewhere or a careless script can send: a foreign ``Host`` (DNS rebinding), a foreign ``Origin``, a
   cross-site ``text/plain`` POST, a ``text/plain`` POST without ``Origin``, and a ``Content-Length``
   over the limit sent without its body;
3. load round: the same, plus ``--uploads`` concurrent uploads of ``--upload-mb`` MB each (a valid
   64x64 PNG padded with an ancillary chunk, restored by bicubic x2);
4. after: a chunked upload that never ends, a 30000x30000 PNG of ~110 KB, and an MPO (the JPEG many
   phone cameras write), one by one.

Every answer's status is compared with the expected one, and the server's memory is read from
``/proc/<pid>/status``: the peak (``VmHWM``) before and after each round, and ``VmRSS`` sampled every
10 ms during it. The server runs with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 128 KiB, so every large
buffer is mapped on allocation and unmapped when freed and ``VmRSS`` follows what is live; with glibc's
default, moving threshold, freed buffers stay in the heap and the same restoration's footprint varies
by tens of MB from one run to the next, more than the quantity measured.

Reading every upload whole would cost ``uploads x upload-mb``; the server holds at most the ``queue``
uploads that find a free slot, so the load round should grow by about ``queue x upload-mb`` more than
the control round::

    .venv/bin/python benchmarks/serve_load.py --output benchmarks/serve_load.md

``--json`` prints the measurements as JSON instead (``tests/test_serve_load.py`` reads them).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bbcu.archs import create_model
from bbcu.formats.weights import save
from bbcu.run.zoo import ENV_VAR

HOLD_MODEL = "random-dncnn-bbcu"
UPLOAD_QUERY = "/api/restore?model=bicubic&task=sr&scale=2&filename=upload.png"
HOLD_QUERY = f"/api/restore?model={HOLD_MODEL}&task=denoise&scale=1&filename=hold.png"
OCTET_STREAM = "application/octet-stream"
MEBIBYTE = 1 << 20
TIMEOUT_S = 60.0
"""A request not answered by then counts as status 0 (a server that waits for a body never sent)."""
MMAP_THRESHOLD = 128 * 1024
"""Bytes: glibc's starting value, fixed so that it does not move (see the module docstring)."""
WARM_UP_RUNS = 2
"""The server's peak memory settles after two restorations (allocator pools, torch's thread buffers)."""
MEMORY_ROWS = (
    ("peak (VmHWM) before", "peak_before"),
    ("peak (VmHWM) after", "peak_after"),
    ("**peak growth**", "peak_growth"),
    ("VmRSS just before", "rss_before"),
    ("largest VmRSS during (10 ms samples)", "rss_max"),
    ("**VmRSS growth**", "rss_growth"),
)


@dataclass(frozen=True)
class Outcome:
    """One request: what it was, the status expected and got, and when (s after the load began)."""

    case: str
    expected: int
    status: int
    answered_s: float


@dataclass(frozen=True)
class Round:
    """One load round: its requests, when the hold restoration was answered, and the server's memory (MiB).

    ``peak_*`` is ``VmHWM`` before and after the round, ``rss_*`` is ``VmRSS`` just before it and the
    largest of its 10 ms samples during it.
    """

    outcomes: list[Outcome]
    hold_answered_s: float
    peak_before: float
    peak_after: float
    rss_before: float
    rss_max: float

    @property
    def peak_growth(self) -> float:
        return self.peak_after - self.peak_before

    @property
    def rss_growth(self) -> float:
        return self.rss_max - self.rss_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20, help="concurrent uploads (default %(default)d)")
    parser.add_argument("--upload-mb", type=float, default=19, help="size of each (default %(default)g)")
    parser.add_argument("--max-upload-mb", type=float, default=20, help="server limit (default %(default)g)")
    parser.add_argument("--queue", type=int, default=4, help="server --queue (default %(default)d)")
    parser.add_argument("--hold-side", type=int, default=512, help="hold image side (default %(default)d)")
    parser.add_argument("--output", type=Path, help="write the Markdown report here too")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    args = parser.parse_args()
    control, load, after = run(args)
    if args.json:
        print(json.dumps({"control": as_json(control), "load": as_json(load), "after": after_json(after)}))
        return
    report = format_report(args, control, load, after)
    print(report)
    if args.output:
        args.output.write_text(report)


def run(args: argparse.Namespace) -> tuple[Round, Round, list[Outcome]]:
    """Start the server, warm it up, run the control round, the load round and the requests after."""
    with tempfile.TemporaryDirectory(prefix="bbcu-serve-load-") as folder:
        torch.manual_seed(0)
        save(create_model("dncnn-bbcu"), Path(folder) / f"{HOLD_MODEL}.safetensors")
        with Server(Path(folder), args) as server:
            hold = noise_png(args.hold_side)
            for _ in range(WARM_UP_RUNS):
                check("warm-up hold", 200, server.send(HOLD_QUERY, hold))
            control = load_round(server, hold, args.queue, 0, args.upload_mb)
            load = load_round(server, hold, args.queue, args.uploads, args.upload_mb)
            return control, load, after_phase(server)


def load_round(server: Server, hold: bytes, queue: int, count: int, upload_mb: float) -> Round:
    """The hold restoration and, while it runs, ``count`` uploads and the hostile requests, all at once."""
    upload = padded_png(round(upload_mb * MEBIBYTE))
    port = server.port
    cases = [("upload", -1, upload, {})] * count + [
        ("foreign Host (DNS rebinding)", 403, upload, {"Host": f"rebound.example:{port}"}),
        ("foreign Origin", 403, upload, {"Origin": "http://evil.example"}),
        (
            "cross-site text/plain POST",
            403,
            upload,
            {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
        ),
        ("text/plain POST, no Origin", 415, upload, {"Content-Type": "text/plain"}),
        ("Content-Length over the limit, no body", 413, b"", {"Content-Length": str(10**12)}),
    ]
    peak_before, rss_before = server.memory("VmHWM"), server.memory("VmRSS")
    sampler = RssSampler(server)
    start = time.perf_counter()
    answers: dict[int, tuple[int, float]] = {}

    def send(index: int, query: str, body: bytes, headers: dict[str, str]) -> None:
        status = server.send(query, body, headers)
        answers[index] = status, time.perf_counter() - start

    hold_thread = threading.Thread(target=send, args=(-1, HOLD_QUERY, hold, {}))
    hold_thread.start()
    time.sleep(0.5)  # its small upload is in and its job started: every other slot is free
    threads = [
        threading.Thread(target=send, args=(i, UPLOAD_QUERY, body, headers))
        for i, (_, _, body, headers) in enumerate(cases)
    ]
    for thread in threads:
        thread.start()
    for thread in (*threads, hold_thread):
        thread.join(TIMEOUT_S)
    rss_max = sampler.stop()
    check("hold", 200, answers[-1][0])
    # Which uploads find a slot is a race; how many do is not: the queue's worth, the rest are busy.
    uploads = sorted(answers[i] for i in range(count))
    expected = [200] * min(queue, count) + [503] * max(count - queue, 0)
    outcomes = [Outcome("upload", want, *got) for want, got in zip(expected, uploads, strict=True)]
    outcomes += [Outcome(case, want, *answers[i]) for i, (case, want, *_) in enumerate(cases) if want > 0]
    return Round(outcomes, answers[-1][1], peak_before, server.memory("VmHWM"), rss_before, rss_max)


def after_phase(server: Server) -> list[Outcome]:
    """Requests that need a free queue to reach their check: an endless chunked body, a bomb, an MPO."""
    chunk = b"x" * (server.limit + 1)
    cases = [
        ("chunked upload past the limit, never ended", 413, chunk, {"Transfer-Encoding": "chunked"}),
        ("30000x30000 PNG (decompression bomb)", 413, png_of_zeros(30_000), {}),
        ("MPO (phone camera JPEG)", 200, mpo(), {}),
    ]
    outcomes = []
    for case, expected, body, headers in cases:
        start = time.perf_counter()
        if "Transfer-Encoding" in headers:
            body = b"%x\r\n%s\r\n" % (len(body), body)  # one chunk, and no final empty chunk
        status = server.send(UPLOAD_QUERY, body, headers)
        outcomes.append(Outcome(case, expected, status, time.perf_counter() - start))
    return outcomes


class Server:
    """``bbcu serve`` in a child process on a free loopback port, with its stderr drained."""

    def __init__(self, models: Path, args: argparse.Namespace) -> None:
        self.limit = round(args.max_upload_mb * MEBIBYTE)
        command = [sys.executable, "-m", "bbcu.cli.main", "serve", "--port", "0"]
        command += ["--max-upload-mb", str(args.max_upload_mb), "--queue", str(args.queue)]
        environment = {**os.environ, ENV_VAR: str(models), "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment
        )
        self.port = self._port_from_banner()
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(self.process.stderr or ()), daemon=True).start()

    def _port_from_banner(self) -> int:
        for line in self.process.stderr or ():
            found = re.search(r"open http://127\.0\.0\.1:(\d+) ", line)
            if found:
                return int(found.group(1))
        raise SystemExit(f"bbcu serve did not start (exit status {self.process.wait()})")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def memory(self, field: str) -> float:
        """``VmHWM`` (peak) or ``VmRSS`` (now) of the server, in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        if found is None:
            raise SystemExit(f"/proc/{self.process.pid}/status has no {field} (Linux only)")
        return int(found.group(1)) / 1024

    def send(self, query: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        """POST ``body`` on a fresh connection and return the status; ``headers`` override the page's.

        The head and the body go out as they are, so a head may announce more than is sent: the answer
        is then read without sending the rest. No answer within ``TIMEOUT_S`` is status 0.
        """
        head = {
            "Host": f"127.0.0.1:{self.port}",
            "Content-Type": OCTET_STREAM,
            **({} if "Transfer-Encoding" in (headers or {}) else {"Content-Length": str(len(body))}),
            **(headers or {}),
        }
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            connection.putrequest("POST", query, skip_host=True, skip_accept_encoding=True)
            for name, value in head.items():
                connection.putheader(name, value)
            connection.endheaders()
            connection.send(body)
            response = connection.getresponse()
            response.read()
            return response.status
        except TimeoutError:
            return 0
        finally:
            connection.close()


class RssSampler:
    """The largest ``VmRSS`` of the server, sampled every 10 ms in a thread until ``stop``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.largest = server.memory("VmRSS")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.largest = max(self.largest, self.server.memory("VmRSS"))

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.largest


def check(case: str, expected: int, status: int) -> None:
    if status != expected:
        raise SystemExit(f"{case}: the server answered {status}, not {expected}")


def noise_png(side: int) -> bytes:
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def padded_png(size: int) -> bytes:
    """A valid 64x64 noise PNG grown to ``size`` bytes by a private ancillary chunk before ``IEND``."""
    small = noise_png(64)
    iend = len(small) - 12
    padding = size - len(small) - 12
    return small[:iend] + png_chunk(b"bbCu", bytes(max(padding, 0))) + small[iend:]


def png_of_zeros(side: int) -> bytes:
    """A valid 1-bit grey PNG of ``side x side`` black pixels (deflate packs it about 1000:1)."""
    row = bytes(1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    rows = [compressor.compress(row * min(1000, side - done)) for done in range(0, side, 1000)]
    data = b"".join(rows) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    )


def mpo() -> bytes:
    """A two-frame MPO, as Pillow writes it (the format of many phone cameras' ``.jpg``)."""
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="MPO", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def as_json(round_: Round) -> dict[str, object]:
    return {
        **asdict(round_),
        "outcomes": after_json(round_.outcomes),
        "peak_growth": round_.peak_growth,
        "rss_growth": round_.rss_growth,
    }


def after_json(outcomes: list[Outcome]) -> list[dict[str, object]]:
    return [asdict(outcome) for outcome in outcomes]


def format_report(args: argparse.Namespace, control: Round, load: Round, after: list[Outcome]) -> str:
    rows = "\n".join(
        f"| {case} | {count} | {expected} | {status} | {' to '.join(sorted({f'{t:.2f}' for t in times}))} |"
        for (case, expected, status), (count, times) in grouped(load.outcomes + after).items()
    )
    memory = "\n".join(
        f"| {name} | {getattr(control, field):.0f} | {getattr(load, field):.0f} |"
        for name, field in MEMORY_ROWS
    )
    return f"""# `bbcu serve` under load: status codes and memory

Command: `.venv/bin/python benchmarks/serve_load.py --uploads {args.uploads} --upload-mb {args.upload_mb:g} \
--max-upload-mb {args.max_upload_mb:g} --queue {args.queue} --hold-side {args.hold_side}`
Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__};
shared with other jobs, so times are rough.

While a restoration runs (the "hold": random-weight binary DnCNN on a {args.hold_side}x{args.hold_side} \
PNG, answered at {load.hold_answered_s:.2f} s), {args.uploads} uploads of {args.upload_mb:g} MB each and \
the hostile requests go out at once; the last three rows are sent one by one afterwards (times from their \
own start). Times are seconds from the start of the load to the answer: the refusals come back while the \
hold still runs, the accepted uploads once it and the jobs before them are done.

| request | count | expected | got | answered (s) |
|---|---|---|---|---|
{rows}

Server memory (`/proc/<pid>/status`, MiB; the server runs with `MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}` \
so that VmRSS follows live memory), after {WARM_UP_RUNS} warm-up restorations. The control round is the \
same hold restoration and hostile requests without the uploads: its growth is what the restoration itself \
and the refusals cost, so the uploads cost the difference between the two columns: \
**{load.rss_growth - control.rss_growth:.0f} MiB** of VmRSS.

| | control round | load round |
|---|---|---|
{memory}

Reading every upload whole would take {args.uploads * args.upload_mb:.0f} MB; the {args.queue} uploads \
that find a free slot hold {args.queue * args.upload_mb:.0f} MB (plus one transient copy each as the \
body is joined), and the others are refused from their headers, their bodies never kept.
"""


def grouped(outcomes: list[Outcome]) -> dict[tuple[str, int, int], tuple[int, list[float]]]:
    """Outcomes with the same request, expected and actual status, counted, with the first and last times."""
    groups: dict[tuple[str, int, int], list[float]] = {}
    for o in outcomes:
        groups.setdefault((o.case, o.expected, o.status), []).append(o.answered_s)
    return {key: (len(times), [min(times), max(times)]) for key, times in groups.items()}


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    found = re.search(r"^Model name:\s+(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else "unknown CPU"


if __name__ == "__main__":
    main()
