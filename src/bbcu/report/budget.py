"""Budgets of ``bbcu reproduce``: one named, committed set of overrides applied to every row's recipe.

A published recipe (``configs/<task>/<row>.yml``) trains 300k-500k steps on DIV2K; a budget says how
much of that a machine can afford - iterations, batch, patch, training images, validation, eval sets,
seeds - so that every row of a table is trained the same way and the table can say how it was made.
Budgets live in ``configs/budgets/<name>.yml``; the keys are checked here as strictly as a recipe's.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bbcu.core.constants import TASKS
from bbcu.core.errors import ConfigError, InvalidFileError
from bbcu.core.paths import checkout_root
from bbcu.train.config import deep_merge, parse_yaml

Positive = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EvalSpec(_Section):
    """Which test sets and settings every finished run is scored on.

    Attributes:
        sets: Per task, the sets to score; a task left out (or null) gets every published set present
            under the data root (Urban100 and Manga109 columns appear when their folders do).
        settings: Per task, the sigmas (denoise) or qualities (JPEG); default: the published ones.
            SR rows are scored at their own scale.
    """

    sets: dict[str, list[str] | None] = Field(default_factory=dict)
    settings: dict[str, list[Positive]] = Field(default_factory=dict)


class KSweepSpec(_Section):
    """The residual-alignment sweep: one run per (width, k) of an SR network.

    The grid gets, for every width, the two candidate optima added: the authors' rule
    ``k = 130 * width / 64`` and the paper's figure's trend ``k = 130 * 64 / width``.
    """

    model: str = "bbcu-l"
    scale: Positive = 4
    widths: list[Positive] = Field(default_factory=lambda: [32, 64, 128])
    ks: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [16.0, 32.0, 520.0])


class Budget(_Section):
    """A budget file, validated.

    Attributes:
        name: The file's stem (``smoke``, ``cpu``, ``gpu``); labels every table.
        description: What the budget is for and how long it takes, in words.
        overrides: Dotted recipe keys and values applied to every trained row (``train.iterations: 300``).
        tasks: Per task, more dotted overrides applied after ``overrides`` (training folders, patch).
        model_kwargs: Registry-name glob -> factory arguments merged into ``model.kwargs``; the first
            matching glob wins (e.g. smaller widths in the smoke budget).
        eval: The sets and settings scored.
        seeds: ``default`` and per target (``ladder``) or per row (``sr-x4/bbcu-l``) lists of seeds; the
            most specific key wins. Two or more seeds give the claims a spread.
        k_sweep: The residual-alignment sweep.
    """

    name: str
    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    model_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    seeds: dict[str, list[Annotated[int, Field(ge=0)]]] = Field(default_factory=lambda: {"default": [0]})
    k_sweep: KSweepSpec = Field(default_factory=KSweepSpec)

    def recipe_overrides(self, task: str, model: str) -> dict[str, Any]:
        """The nested mapping this budget merges into a recipe of ``task`` training ``model``."""
        merged = deep_merge(nest(self.overrides), nest(self.tasks.get(task, {})))
        for pattern, kwargs in self.model_kwargs.items():
            if fnmatch.fnmatchcase(model, pattern):
                return deep_merge(merged, {"model": {"kwargs": dict(kwargs)}})
        return merged

    def seeds_for(self, target: str, row: str) -> list[int]:
        """The seeds of one row: ``<target>/<row>``, else ``<target>``, else ``default``."""
        for key in (f"{target}/{row}", target, "default"):
            if key in self.seeds:
                return list(self.seeds[key])
        return [0]


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"train.iterations": 3}`` -> ``{"train": {"iterations": 3}}``, merging keys that share a head."""
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        for part in reversed(key.split(".")):
            value = {part: value}
        nested = deep_merge(nested, value)
    return nested


def default_configs_dir() -> Path | None:
    """``configs/`` of the source checkout, or None for an installed wheel (give ``--configs``)."""
    checkout = checkout_root()
    return None if checkout is None else checkout / "configs"


def budget_path(name: str, configs_dir: Path) -> Path:
    """A budget name (``cpu``) is ``<configs>/budgets/<name>.yml``; a ``.yml`` path is itself."""
    return Path(name) if name.endswith((".yml", ".yaml")) else configs_dir / "budgets" / f"{name}.yml"


def load_budget(name: str, configs_dir: Path) -> Budget:
    """Read and validate a budget.

    Raises:
        InvalidFileError: The file cannot be read (naming the budgets that exist).
        ConfigError: Unknown keys, wrong types, an unknown task.
    """
    path = budget_path(name, configs_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        known = sorted(p.stem for p in (configs_dir / "budgets").glob("*.yml"))
        raise InvalidFileError(
            f"no budget {name!r} ({path}: {err.strerror or err}); known: {', '.join(known) or 'none'}"
        ) from err
    data = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a budget must be a YAML mapping")
    try:
        budget = Budget.model_validate({"name": path.stem, **data})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: {key}: {first['msg']}") from err
    unknown = {*budget.tasks, *budget.eval.sets, *budget.eval.settings} - set(TASKS)
    if unknown:
        raise ConfigError(f"{path}: unknown task(s) {', '.join(sorted(unknown))}; tasks: {', '.join(TASKS)}")
    return budget
