"""Reading the safetensors files bbcu writes: weights files (``bbcu.formats.weights``) and packed models
(``bbcu.formats.packed``).

Both are safetensors containers whose string metadata names a bbcu format and its version, so opening
one and refusing a foreign or future file is the same job; doing it here gives both the same one-line
messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from bbcu.core.errors import InvalidFileError


def read_container(
    path: Path, *, framework: str = "numpy", with_tensors: bool = True
) -> tuple[dict[str, str], dict[str, Any]]:
    """The metadata and (unless ``with_tensors`` is False) every tensor of a safetensors file.

    Args:
        path: An existing file.
        framework: ``"numpy"`` or ``"pt"``: the type of the returned tensors.
        with_tensors: False to read the header only (cheap: the tensors are never touched).

    Raises:
        InvalidFileError: If the file is not a readable safetensors file (truncated, corrupt, another format).
    """
    try:
        with safe_open(str(path), framework=framework) as handle:
            metadata = handle.metadata() or {}
            names = handle.keys() if with_tensors else []
            tensors = {name: handle.get_tensor(name) for name in names}
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InvalidFileError(f"{path}: not a readable safetensors file ({first_line})") from err
    return metadata, tensors


def check_format(path: Path, metadata: Mapping[str, str], *, name: str, version: str, what: str) -> None:
    """Refuse a container that is not a ``name`` file of exactly ``version``.

    Args:
        path: The file, for the message.
        metadata: Its header metadata.
        name: The expected ``format`` entry.
        version: The one ``format_version`` this bbcu reads.
        what: How the message calls such a file, e.g. ``"bbcu weights file"``.

    Raises:
        InvalidFileError: If ``format`` or ``format_version`` differ.
    """
    if metadata.get("format") != name:
        raise InvalidFileError(f"{path}: not a {what} (metadata format={metadata.get('format')!r})")
    if metadata.get("format_version") != version:
        raise InvalidFileError(
            f"{path}: {what} version {metadata.get('format_version')!r} is not supported "
            f"(this bbcu reads version {version})"
        )
