"""Where bbcu's own files are, whether it runs from a source checkout or from an installed wheel.

Everything the package needs at run time (the shipped models, the web page) lives inside the package
and is found relative to it, so both installs behave the same. Only the benchmark images live outside:
a checkout looks for them in ``../shared/data`` beside itself (``bbcu.data.root``).
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``bbcu`` package folder (``src/bbcu`` in a checkout, ``.../site-packages/bbcu`` in a wheel)."""

SHIPPED_MODELS_DIR = PACKAGE_DIR / "models"
"""The shipped weights and their model cards (package data)."""


def checkout_root() -> Path | None:
    """The source checkout bbcu runs from (an editable install), or None for an installed wheel."""
    candidate = PACKAGE_DIR.parents[1]
    is_checkout = (candidate / "pyproject.toml").is_file() and candidate / "src" / "bbcu" == PACKAGE_DIR
    return candidate if is_checkout else None
