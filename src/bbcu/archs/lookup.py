"""Registry look-ups for a user: a name or arguments typed (or recorded in a file) that may be wrong.

The registry itself raises ``KeyError`` for an unknown name and a factory raises ``TypeError`` or
``ValueError`` for bad arguments, which is right for code; commands, file loaders and the Python API
want the one-line ``UserError`` instead, worded the same wherever the request came from.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from bbcu.archs.registry import ModelEntry, create_model, model_entry
from bbcu.core.errors import UserError


def find_model(name: str, *, source: str | None = None) -> ModelEntry:
    """The registry entry of ``name``; ``UserError`` listing the known names if there is none.

    Args:
        name: A registry name.
        source: Where the name came from (a file), prefixed to the message.
    """
    try:
        return model_entry(name)
    except KeyError as err:
        raise UserError(_prefixed(source, err.args[0])) from None


def build_model(name: str, kwargs: Mapping[str, object], *, source: str | None = None) -> nn.Module:
    """``create_model(name, **kwargs)``, with a ``UserError`` for an unknown name or arguments it refuses.

    Args:
        name: A registry name.
        kwargs: Keyword arguments for its factory.
        source: Where the request came from (a file), prefixed to the message.
    """
    find_model(name, source=source)
    try:
        return create_model(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(_prefixed(source, f"cannot build {name} with {dict(kwargs)}: {err}")) from None


def _prefixed(source: str | None, message: str) -> str:
    return message if source is None else f"{source}: {message}"
