"""Where benchmark and training images live.

The data never travels with the code: it is read from ``--data-root``, else ``$BBCU_DATA``, else
``../shared/data`` beside the source checkout when bbcu runs from one.
"""

from __future__ import annotations

import os
from pathlib import Path

from bbcu.core.errors import DataNotFoundError
from bbcu.core.paths import checkout_root

ENV_VAR = "BBCU_DATA"


def default_root() -> Path | None:
    """``../shared/data`` beside the checkout, or None when bbcu is installed from a wheel."""
    checkout = checkout_root()
    return None if checkout is None else checkout.parent / "shared" / "data"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data root, in the order: explicit argument, ``$BBCU_DATA``, ``../shared/data``.

    Args:
        explicit: A path given by the user (``--data-root``), or None.

    Returns:
        An existing directory.

    Raises:
        DataNotFoundError: If no candidate exists; the message names every place looked at.
    """
    candidates: list[tuple[str, Path]] = []
    if explicit is not None:
        candidates.append(("--data-root", Path(explicit)))
    elif os.environ.get(ENV_VAR):
        candidates.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR])))
    elif default_root() is not None:
        candidates.append(("default", default_root()))
    for _, path in candidates:
        if path.is_dir():
            return path
    looked = "; ".join(f"{src}: {p}" for src, p in candidates)
    raise DataNotFoundError(f"no data root found (looked at {looked}); set {ENV_VAR} or pass --data-root")
