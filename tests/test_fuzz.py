"""The fuzz harnesses of ``fuzz/fuzz_loaders.py``: checked in-process here, and run for a bounded time.

The slow test runs each target under atheris (coverage-guided, from valid seed files) for
``FUZZ_SECONDS_EACH`` seconds and asserts libFuzzer ended without a finding: every input was read or
refused with a one-line ``BbcuError``. ``make fuzz`` runs the same harnesses for longer.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import bbcu.formats.packed
from bbcu.core.errors import BbcuError

HARNESS = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_loaders.py"
FUZZ_SECONDS_EACH = 6


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_loaders", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_loaders = _load_harness()


@pytest.mark.parametrize("target", fuzz_loaders.TARGETS)
def test_the_seeds_are_valid_files_and_their_damaged_copies_are_refused(target: str, tmp_path: Path) -> None:
    """Mutations start from files the readers accept; cut or flipped copies pass the harness quietly."""
    seeds = fuzz_loaders.write_seeds(target, tmp_path / "seeds")
    test_one_input = fuzz_loaders.make_target(target)
    accepted = 0
    for seed in seeds:
        data = seed.read_bytes()
        try:
            for read in fuzz_loaders.readers(target):
                read(seed)
            accepted += 1
        except BbcuError:
            assert seed.name == "float.tif"  # refused by design: no agreed 8-bit scale
        for variant in (data, data[: len(data) // 2], bytes(b ^ 0x40 for b in data[:64]) + data[64:], b""):
            test_one_input(variant)
    assert accepted == len(seeds) - (target == "image")


def test_an_exception_other_than_bbcu_errors_is_a_finding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(path: Path) -> None:
        raise TypeError("a reader bug")

    monkeypatch.setattr(bbcu.formats.packed, "load_packed", broken)
    with pytest.raises(TypeError, match="a reader bug"):
        fuzz_loaders.make_target("packed")(b"anything")


@pytest.mark.slow
@pytest.mark.parametrize("target", fuzz_loaders.TARGETS)
def test_a_short_fuzzing_run_finds_nothing(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    fuzz_loaders.write_seeds(target, corpus)  # here, where PyTorch is loaded already
    command = [sys.executable, HARNESS, target, corpus, f"-max_total_time={FUZZ_SECONDS_EACH}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    findings = sorted(
        p.name for p in tmp_path.iterdir() if p.name.split("-")[0] in {"crash", "timeout", "oom"}
    )
    assert result.returncode == 0 and findings == [], result.stderr[-3000:]
    assert "Done" in result.stderr and "runs in" in result.stderr
