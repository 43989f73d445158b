"""From YAML recipe files and ``--set`` overrides to a validated ``TrainConfig``.

A recipe may start with ``inherit: <path>`` (relative to the file) naming a base recipe; the two are
deep-merged (mappings merge key by key, lists and scalars of the child replace the base's), so each
published row is a few lines on top of a shared per-task base. ``bbcu.train.schema`` checks every key
and type, and any mistake becomes a one-line ``ConfigError`` naming the file and the dotted key.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bbcu.core.errors import ConfigError, InvalidFileError
from bbcu.run.zoo import shipped_path
from bbcu.train.schema import TrainConfig

INHERIT_KEY = "inherit"


class _RecipeLoader(yaml.SafeLoader):
    """YAML loader that reads ``1e-4`` as a float (YAML 1.1 alone wants ``1.0e-4``)."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text with the recipe loader, turning syntax errors into a one-line ``ConfigError``."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # a SafeLoader subclass: never builds objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: not valid YAML ({getattr(err, 'problem', err)})") from err


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and everything it inherits from, merged into one plain mapping.

    A relative ``model.init`` path is made absolute against the folder of the file that names it, so
    a recipe means the same weights from any working directory.

    Raises:
        InvalidFileError: A recipe or base file that cannot be read.
        ConfigError: YAML that is not a mapping, or an inheritance cycle.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: inherits from itself (cycle through {', '.join(p.name for p in _seen)})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidFileError(f"cannot read config {path}: {err.strerror or err}") from err
    recipe = parse_yaml(text, str(path))
    if not isinstance(recipe, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of keys to values")
    _anchor_init(recipe, path.parent)
    base_name = recipe.pop(INHERIT_KEY, None)
    if base_name is None:
        return recipe
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: '{INHERIT_KEY}' must be a file path")
    return deep_merge(read_recipe(path.parent / base_name, (*_seen, path)), recipe)


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys win; nested mappings merge recursively so a child can change one leaf."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_overrides(recipe: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (``--set``); the value is typed by the schema.

    A value is read as YAML (``8``, ``1e-4``, ``[Set5, Set14]``, ``null``) except where the schema
    expects text, where it is kept verbatim, so ``--set output.dir=123`` stays a string. Unknown keys
    are left for ``build_config`` to report with the keys known there.
    """
    result = recipe
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.batch_size=8")
        value = text if _wants_text(key.split("."), text) else parse_yaml(text, f"--set {key}")
        for part in reversed(key.split(".")):
            value = {part: value}
        result = deep_merge(result, value)
    return result


def build_config(recipe: dict[str, Any], source: str = "recipe") -> TrainConfig:
    """Validate a merged recipe mapping and return the typed configuration.

    Args:
        recipe: The merged mapping (``read_recipe`` and ``apply_overrides``).
        source: What the recipe came from, to start error messages (the file, the run directory).

    Raises:
        ConfigError: Unknown, missing or wrongly typed keys, or values that do not fit together.
    """
    try:
        return TrainConfig.model_validate(recipe)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from err


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read, merge, override and validate a recipe file: what ``bbcu train CONFIG.yml`` does."""
    return build_config(apply_overrides(read_recipe(path), overrides), source=str(path))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dicts/lists/scalars (tuples become lists): storable in a ``weights_only`` checkpoint."""
    return config.model_dump(mode="json")


def is_shipped_name(init: str) -> bool:
    """Whether a ``model.init`` value names a shipped model: a bare name, without folder or file suffix."""
    path = Path(init)
    return path.name == init and not path.suffix


def init_weights_path(init: str) -> Path:
    """The weights file a ``model.init`` value means: a shipped model's, or the path itself.

    Raises:
        ModelNotFoundError: A bare name that is not a shipped model.
    """
    return shipped_path(init) if is_shipped_name(init) else Path(init)


def _anchor_init(recipe: dict[str, Any], folder: Path) -> None:
    model = recipe.get("model")
    init = model.get("init") if isinstance(model, dict) else None
    if isinstance(init, str) and not is_shipped_name(init):
        model["init"] = str(folder / init)  # an absolute path stays as it is


def _schema_type(keys: Sequence[str | int]) -> Any:
    """The schema's annotation at a key path; None past its end (free-form ``model.kwargs``, unknown keys)."""
    hint: Any = TrainConfig
    for key in keys:
        if isinstance(key, int) and typing.get_origin(hint) is list:
            hint = typing.get_args(hint)[0]
        elif isinstance(hint, type) and issubclass(hint, BaseModel) and key in hint.model_fields:
            hint = hint.model_fields[key].annotation
        else:
            return None
    return hint


def _wants_text(keys: Sequence[str], text: str) -> bool:
    """Whether an override value stays verbatim: the schema wants a string there and it is not ``null``."""
    hint = _schema_type(keys)
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return str in (typing.get_args(hint) if union else (hint,)) and text not in {"null", "~", ""}


def _one_line(error: ValidationError, source: str) -> str:
    """``source: dotted.key: what is wrong`` for the first problem pydantic found."""
    first = error.errors()[0]
    loc = first["loc"]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if first["type"] == "extra_forbidden":
        section = _schema_type(loc[:-1])
        message = f"unknown key (known here: {', '.join(section.model_fields)})"
    elif first["type"] == "value_error":
        message = str(first["ctx"]["error"])
    else:
        value = first["input"]
        message = first["msg"] if isinstance(value, dict | list) else f"{first['msg']} (got {value!r})"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {key}: {message}{more}" if key else f"{source}: {message}{more}"
