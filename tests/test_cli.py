"""The ``bbcu`` command line lists exactly its verbs, each verb answers ``--help``, and no verb module is
left unwired: a verb cannot vanish, or be added without being listed, unnoticed."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import bbcu.cli
import bbcu.cli.complexity
from bbcu.cli.main import VERBS, main

CONSOLE_SCRIPT = Path(sys.executable).parent / "bbcu"
"""The ``bbcu`` script pip installed beside this interpreter (``.venv/bin/bbcu``)."""
NOT_VERBS = {"main"}
"""Modules of ``bbcu.cli`` that are not verbs: the wiring itself."""


def listed_verbs(help_text: str) -> list[str]:
    """The verbs ``bbcu --help`` lists, in order: the names indented under its ``VERB`` heading.

    argparse wraps long help lines; continuations are indented further, so only the names start at
    column 4.
    """
    block = help_text.split("\n  VERB\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^ {4}(\S+)", block, flags=re.MULTILINE)


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What ``bbcu ARGV --help`` prints, checked to exit with status 0."""
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_help_lists_exactly_the_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    assert listed_verbs(help_of(capsys)) == list(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_answers_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, verb)
    assert text.startswith(f"usage: bbcu {verb} ")
    assert "-h, --help" in text


def test_every_verb_module_is_a_listed_verb() -> None:
    modules = {module.name for module in pkgutil.iter_modules(bbcu.cli.__path__)}
    assert modules - NOT_VERBS == set(VERBS)
    assert len(VERBS) == len(set(VERBS))


@pytest.mark.slow
def test_console_script_lists_exactly_the_verbs() -> None:
    done = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert listed_verbs(done.stdout) == list(VERBS)


def test_a_warning_prints_as_one_line_of_the_verb(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warning raised inside a verb reaches stderr as ``bbcu VERB: warning: ...`` on one line, without
    Python's file:line header and source line; Python's own printer is back once the verb returns."""

    def warns(args: object) -> int:
        warnings.warn("skipped 7 training image(s) smaller than 128x128 pixels, e.g. t12.png", stacklevel=1)
        return 0

    monkeypatch.setattr(bbcu.cli.complexity, "run", warns)
    original = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["complexity", "bbcu-m"]) == 0
    assert capsys.readouterr().err == (
        "bbcu complexity: warning: skipped 7 training image(s) smaller than 128x128 pixels, e.g. t12.png\n"
    )
    assert warnings.showwarning is original
