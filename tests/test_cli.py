"""The ``bbcu`` command line lists exactly its verbs, each verb answers ``--help``, and no verb module is
left unwired: a verb cannot vanish, or be added without being listed, unnoticed."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bbcu.cli
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
