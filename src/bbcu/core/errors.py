"""The exceptions bbcu raises for mistakes a caller can make (a bad file, option, name or data folder).

Every one derives from ``BbcuError``, so a program using bbcu catches them all with one clause, and
from the built-in type that says what kind of mistake it is (``ValueError``, ``LookupError``,
``OSError``, ``ImportError``), so code written against the built-ins keeps working. Messages are one
line that names the thing at fault; the command line prints exactly that line and exits with status 2
(``bbcu.cli.main``). Library code raises them and never prints or exits; causes are chained (``from
err``) so a traceback, when a program wants one, still shows the low-level error.

Messages name user paths, and a path may hold a newline, a carriage return or a terminal escape: every
message is rendered through ``one_line``, so no file name can break a one-line report or forge a line
of its own.
"""

import unicodedata

_LINE_BREAKING = {"Cc", "Zl", "Zp"}  # control characters, line and paragraph separators


def one_line(text: str) -> str:
    """``text`` with every control character and line separator escaped as Python writes it (``\\n``,
    ``\\x1b``, ``\\u2028``), so it prints as exactly one line whatever it quotes."""
    return "".join(_escaped(char) if unicodedata.category(char) in _LINE_BREAKING else char for char in text)


def _escaped(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


class BbcuError(Exception):
    """Base class: an error a user can cause and fix, described in one line."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class InvalidArgumentError(BbcuError, ValueError):
    """An argument or option value that cannot work (a negative tile size, an unknown engine)."""


class ModelNotFoundError(BbcuError, LookupError):
    """A model name that is neither registered nor shipped."""


class InvalidFileError(BbcuError, ValueError):
    """A file that is missing, unreadable, damaged, foreign, or does not fit what it is used for."""


class ConfigError(BbcuError, ValueError):
    """A training recipe (YAML, ``inherit:`` chain or ``--set`` override) that does not validate."""


class DataNotFoundError(BbcuError, LookupError):
    """A data root, test set or training folder that is not where it should be."""


class OutputError(BbcuError, OSError):
    """An output that cannot be written (missing folder, no permission, full disk)."""


class NonFiniteError(BbcuError, ArithmeticError):
    """NaN or infinity where a number must be finite: a training loss that diverged (the last good
    checkpoint is kept for a resume), or a network whose output is not a picture."""


class MissingExtraError(BbcuError, ImportError):
    """A feature whose optional dependencies are not installed (``pip install 'bbcu[serve]'``...)."""
