"""Two ``bbcu-run`` binaries on the same model and image, run after run: wall time and peak memory.

The C runtime's before/after figures in docs/deploy.md: each round runs A then B (B then A in the
next round), each as its own process timed from start to exit (file reading and writing included, as
a user sees it), with its peak resident memory from the kernel (``wait4``'s usage of that child);
whether the two output files are equal byte for byte is printed, and their sizes. A and B may carry
options of their own (one argument each, shell-quoted: "B/bbcu-run --png-level 1").

Usage: .venv/bin/python benchmarks/bbcu_run_ab.py A/bbcu-run B/bbcu-run MODEL.bbcu IN.png
    [--threads 2] [--rounds 2] [--out .png]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path


def run(binary: str, model: Path, image: Path, out: Path, threads: int) -> tuple[float, float]:
    """Seconds from start to exit, and the peak resident MB, of one ``bbcu-run`` (with its options)."""
    start = time.perf_counter()
    process = subprocess.Popen([*shlex.split(binary), "--threads", str(threads), model, image, out])
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {binary} failed")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("model", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=".png", help="output file extension (.png, .ppm, .pfm)")
    args = parser.parse_args()
    binaries, folder = {"A": args.a, "B": args.b}, Path(tempfile.mkdtemp())
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for round_index in range(args.rounds):
        for tag in ("A", "B") if round_index % 2 == 0 else ("B", "A"):
            out = folder / f"{tag}{args.out}"
            results[tag].append(run(binaries[tag], args.model, args.image, out, args.threads))
    for tag, binary in binaries.items():
        seconds = ", ".join(f"{s:.2f}" for s, _ in results[tag])
        peaks = ", ".join(f"{mb:.0f}" for _, mb in results[tag])
        print(f"{tag} ({binary}): {seconds} s; peak RSS {peaks} MB")
    files = {tag: (folder / f"{tag}{args.out}").read_bytes() for tag in binaries}
    verdict = "equal" if files["A"] == files["B"] else "different"
    sizes = f"{len(files['A']):,} / {len(files['B']):,} bytes"
    print(f"{args.model.name} on {args.image.name}, threads {args.threads}: output files {verdict} ({sizes})")


if __name__ == "__main__":
    main()
