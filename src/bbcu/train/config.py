"""From YAML recipe files and ``--set`` overrides to a validated ``TrainConfig``.

A recipe may start with ``inherit: <path>`` (relative to the file) naming a base recipe; the two are
deep-merged (mappings merge key by key, lists and scalars of the child replace the base's), so each
published row is a few lines on top of a shared per-task base. Every key and type is checked against
``bbcu.train.schema`` and any mistake becomes a one-line ``UserError`` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from bbcu.archs.registry import model_entry
from bbcu.core.errors import UserError
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
    """Parse YAML text with the recipe loader, turning syntax errors into a one-line ``UserError``."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # a SafeLoader subclass: never builds objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{source}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and everything it inherits from, merged into one plain mapping.

    Raises:
        UserError: Missing or unreadable file, YAML that is not a mapping, or an inheritance cycle.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise UserError(f"{path}: inherits from itself (cycle through {', '.join(p.name for p in _seen)})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read config {path}: {err.strerror or err}") from None
    recipe = parse_yaml(text, str(path))
    if not isinstance(recipe, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping of keys to values")
    base_name = recipe.pop(INHERIT_KEY, None)
    if base_name is None:
        return recipe
    if not isinstance(base_name, str):
        raise UserError(f"{path}: '{INHERIT_KEY}' must be a file path")
    base = read_recipe(path.parent / base_name, (*_seen, path))
    return deep_merge(base, recipe)


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
    expects text, where it is kept verbatim, so ``--set model.name=123`` stays a string.
    """
    result = recipe
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. train.batch_size=8")
        hint = schema_hint(key)
        value: Any = text if _wants_text(hint, text) else parse_yaml(text, f"--set {key}")
        result = deep_merge(result, _nest(key.split("."), value))
    return result


def schema_hint(dotted_key: str) -> Any:
    """The schema type at ``dotted_key``; ``Any`` inside free-form mappings such as ``model.kwargs``.

    Raises:
        UserError: If the key is not in the schema.
    """
    hint: Any = TrainConfig
    for depth, part in enumerate(dotted_key.split(".")):
        if dataclasses.is_dataclass(hint):
            hints = _field_hints(hint)
            if part not in hints:
                prefix = ".".join(dotted_key.split(".")[:depth])
                raise UserError(_unknown_key_message(prefix, part, hints))
            hint = hints[part]
        elif typing.get_origin(hint) is dict or hint is Any:
            return Any
        else:
            raise UserError(f"unknown key {dotted_key!r}: {part!r} is below a value, not a section")
    return hint


def build_config(recipe: dict[str, Any]) -> TrainConfig:
    """Validate a merged recipe mapping and return the typed configuration.

    Raises:
        UserError: Unknown, missing or wrongly typed keys, or values that do not fit together.
    """
    config = _coerce(recipe, TrainConfig, "")
    _check_consistency(config)
    return config


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read, merge, override and validate a recipe file: what ``bbcu train CONFIG.yml`` does."""
    return build_config(apply_overrides(read_recipe(path), overrides))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dicts/lists/scalars (tuples become lists): storable in a ``weights_only`` checkpoint."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and return it in that type (dataclass, tuple, float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _coerce_section(value, hint, where)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm, where)
            except UserError:
                continue
        raise _type_error(value, hint, where)
    if origin is typing.Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise _type_error(value, hint, where)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(value, hint, where)
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise _type_error(value, hint, where)
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _type_error(value, hint, where)
        return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, hint, where)


def _coerce_scalar(value: Any, hint: Any, where: str) -> Any:
    """bool, int, float, str and None; ints are accepted where floats are expected, bools never as numbers."""
    if hint is type(None) and value is None:
        return None
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    raise _type_error(value, hint, where)


def _coerce_section(value: Any, cls: Any, where: str) -> Any:
    """A mapping checked key by key against a schema dataclass: no unknown keys, no missing required ones."""
    if not isinstance(value, dict):
        raise _type_error(value, cls, where)
    hints = _field_hints(cls)
    for key in value:
        if key not in hints:
            raise UserError(_unknown_key_message(where, key, hints))
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            kwargs[f.name] = _coerce(value[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"missing required key {key!r}")
    return cls(**kwargs)


def _check_consistency(config: TrainConfig) -> None:
    """Rules that span several keys or bound a value."""
    try:
        entry = model_entry(config.model.name)
    except KeyError as err:
        raise UserError(f"model.name: {err.args[0]}") from None
    if entry.task != config.task:
        raise UserError(f"model {config.model.name!r} is a {entry.task!r} model but task is {config.task!r}")
    if config.task != "sr" and config.model.scale != 1:
        raise UserError(f"model.scale must be 1 for task {config.task!r} (got {config.model.scale})")
    positive = {
        "model.scale": config.model.scale,
        "data.patch": config.data.patch,
        "train.iterations": config.train.iterations,
        "train.batch_size": config.train.batch_size,
        "train.checkpoint_every": config.train.checkpoint_every,
        "train.log_every": config.train.log_every,
        "optim.lr": config.optim.lr,
        "output.keep_checkpoints": config.output.keep_checkpoints,
    }
    for key, number in positive.items():
        if number <= 0:
            raise UserError(f"{key} must be positive (got {number})")
    if config.val.every < 0:
        raise UserError(f"val.every must be 0 (off) or positive (got {config.val.every})")
    if config.val.every and not config.val.sets:
        raise UserError("val.sets is empty: name at least one test set or set val.every=0")
    if config.train.ema_decay is not None and not 0.0 < config.train.ema_decay < 1.0:
        raise UserError(f"train.ema_decay must be in (0, 1) or null (got {config.train.ema_decay})")
    if not config.data.train:
        raise UserError("data.train is empty: list at least one folder of HR images")


def _field_hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _wants_text(hint: Any, text: str) -> bool:
    """Whether an override value should stay verbatim: the schema wants a string and it is not ``null``."""
    arms = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return str in arms and text not in {"null", "~", ""}


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return nested


def _unknown_key_message(section: str, key: str, hints: dict[str, Any]) -> str:
    full = f"{section}.{key}" if section else key
    return f"unknown key {full!r} (known here: {', '.join(hints)})"


def _type_error(value: Any, hint: Any, where: str) -> UserError:
    return UserError(f"{where or 'config'}: expected {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    """Human wording of a type hint for error messages: ``int or null``, ``one of 'sr', 'denoise'``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}"
    if origin is tuple:
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return "a mapping"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(
        hint, str(hint)
    )
