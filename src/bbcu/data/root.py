"""Where benchmark and training images live.

The data never travels with the code: it is read from ``--data-root``, else ``$BBCU_DATA``, else
``../shared/data`` beside the project checkout when it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from bbcu.errors import UserError

ENV_VAR = "BBCU_DATA"
_PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_ROOT = _PROJECT_ROOT.parent / "shared" / "data"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data root, in the order: explicit argument, ``$BBCU_DATA``, ``../shared/data``.

    Args:
        explicit: A path given by the user (``--data-root``), or None.

    Returns:
        An existing directory.

    Raises:
        UserError: If no candidate exists; the message names every place looked at.
    """
    candidates: list[tuple[str, Path]] = []
    if explicit is not None:
        candidates.append(("--data-root", Path(explicit)))
    elif os.environ.get(ENV_VAR):
        candidates.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR])))
    else:
        candidates.append(("default", DEFAULT_ROOT))
    for _, path in candidates:
        if path.is_dir():
            return path
    looked = "; ".join(f"{src}: {p}" for src, p in candidates)
    raise UserError(f"no data root found (looked at {looked}); set {ENV_VAR} or pass --data-root")
