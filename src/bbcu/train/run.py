"""Which run a ``bbcu train`` invocation means: a fresh one, an explicit ``--resume``, or an automatic resume.

- ``bbcu train CONFIG.yml``: the run directory is ``output.dir`` (default ``runs/<config name>``). If it
  already holds a checkpoint, the run continues from it (auto-resume), provided the recipe is the same
  as the one stored in the checkpoint; a changed recipe is refused rather than silently mixed.
- ``bbcu train --resume RUN_DIR``: continue with the recipe stored in the newest good checkpoint;
  ``--set`` overrides still apply (e.g. ``--set train.iterations=600000`` to train longer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bbcu.core.errors import ConfigError, InvalidArgumentError, InvalidFileError
from bbcu.train.checkpoint import load_latest_checkpoint, set_aside_checkpoints
from bbcu.train.config import apply_overrides, build_config, config_to_dict, load_config
from bbcu.train.schema import TrainConfig

logger = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = Path("runs")


@dataclass(frozen=True)
class RunPlan:
    """What to train and from where.

    Attributes:
        config: The validated recipe.
        run_dir: The run directory.
        checkpoint: The checkpoint to continue from, or None for a fresh start.
    """

    config: TrainConfig
    run_dir: Path
    checkpoint: dict[str, Any] | None


def plan_run(
    config_path: str | None, resume_dir: str | None, overrides: list[str], *, fresh: bool = False
) -> RunPlan:
    """Resolve the command line into a ``RunPlan``.

    ``fresh`` starts CONFIG's run from iteration 0 even when its folder holds checkpoints, after moving
    them aside (``set_aside_checkpoints``): the way out of a run whose checkpoints are all damaged.

    Raises:
        InvalidArgumentError: Neither or both of CONFIG and ``--resume``.
        InvalidFileError: ``--resume`` of a run directory without a usable checkpoint, or one whose
            newest checkpoint is of another format.
        DamagedRunError: A run directory whose checkpoints are all damaged, without ``fresh``.
        ConfigError: A recipe that does not validate, or that differs from the checkpointed run it
            would continue.
    """
    if (config_path is None) == (resume_dir is None):
        raise InvalidArgumentError(
            "give either a CONFIG file to start (or auto-resume) a run, or --resume RUN_DIR"
        )
    if resume_dir is not None:
        if fresh:
            raise InvalidArgumentError("--fresh starts a CONFIG's run over; it cannot go with --resume")
        return _explicit_resume(Path(resume_dir), overrides)
    config = load_config(config_path, overrides)
    run_dir = Path(config.output.dir) if config.output.dir else DEFAULT_RUNS_DIR / Path(config_path).stem
    if fresh and (aside := set_aside_checkpoints(run_dir)) is not None:
        logger.warning("moved the old checkpoints of %s to %s", run_dir, aside)
    checkpoint = load_latest_checkpoint(run_dir)
    if checkpoint is not None:
        _check_same_recipe(config, checkpoint, run_dir)
    return RunPlan(config, run_dir, checkpoint)


def _explicit_resume(run_dir: Path, overrides: list[str]) -> RunPlan:
    checkpoint = load_latest_checkpoint(run_dir)
    if checkpoint is None:
        raise InvalidFileError(f"no usable checkpoint in {run_dir / 'checkpoints'}; nothing to resume")
    config = build_config(apply_overrides(checkpoint["config"], overrides), source=f"recipe of {run_dir}")
    return RunPlan(config, run_dir, checkpoint)


def _check_same_recipe(config: TrainConfig, checkpoint: dict[str, Any], run_dir: Path) -> None:
    """Refuse to continue a run with a different recipe; name the first key that differs."""
    difference = first_difference(checkpoint["config"], config_to_dict(config))
    if difference is not None:
        raise ConfigError(
            f"{run_dir} holds a run whose recipe differs at {difference!r}; to change it deliberately use "
            f"--resume {run_dir} --set {difference}=..., or choose another output.dir"
        )


def first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    """Dotted key of the first difference between two nested mappings, or None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
            if found is not None:
                return found
        return None
    return None if old == new else (prefix or "<root>")
