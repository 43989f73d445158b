"""Checkpoints that survive being killed at any moment, including in the middle of writing one.

A checkpoint is one file holding everything the run needs to continue as if never stopped (model, EMA,
optimizer, scheduler, RNG states, sampler position, iteration, best score, config), made of tensors and
plain Python values only so that it loads with ``torch.load(weights_only=True)``.

Writing: serialise to memory, then ``bbcu.core.atomic`` (temporary file, fsync, rename, fsync of the
folder). Each checkpoint has its own file (``iter_00001000.ckpt``) and older ones are pruned
only after the new one is in place, so a kill at any instant leaves at least one complete checkpoint.
Reading: the newest file that loads completely wins; a damaged or half-written one is passed over. Every
file carries ``CHECKPOINT_FORMAT``; one of another format (written by another version of bbcu) is refused
rather than passed over, since resuming from an older file of this format - or starting afresh and
pruning the newer ones - would quietly throw the newer training away.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import torch

from bbcu.core.atomic import atomic_write_bytes, remove_leftovers
from bbcu.core.errors import InvalidFileError
from bbcu.train import faults

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FORMAT = "bbcu-train-checkpoint/1"
"""Stamped into every checkpoint; bump it when the layout of the state changes."""
_NAME = re.compile(r"^iter_(\d{8})\.ckpt$")


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    """Where the checkpoint of ``iteration`` lives inside ``run_dir``."""
    return run_dir / CHECKPOINT_DIR / f"iter_{iteration:08d}.ckpt"


def save_checkpoint(run_dir: Path, iteration: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write the checkpoint of ``iteration`` and prune all but the ``keep`` newest.

    Args:
        run_dir: The run directory.
        iteration: Completed optimizer steps; names the file.
        state: Tensors and plain Python values only; ``CHECKPOINT_FORMAT`` is added as ``"format"``.
        keep: How many checkpoints to leave on disk (the new one included).

    Returns:
        The path of the new checkpoint.
    """
    path = checkpoint_path(run_dir, iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getbuffer(), on_progress=faults.kill_mid_write_if_armed)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    remove_leftovers(path.parent)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete-named checkpoint files of ``run_dir``, oldest first (temporary leftovers excluded)."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest checkpoint of ``run_dir`` that loads completely, or None when there is none.

    A file that fails to load or holds no mapping (truncated, damaged on disk) is logged as a warning
    and skipped, so the run resumes from the previous good one instead of failing or reading garbage.

    Raises:
        InvalidFileError: The newest loadable checkpoint is of another ``CHECKPOINT_FORMAT``.
    """
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # any failure means "not a usable checkpoint"
            logger.warning("skipping damaged checkpoint %s (%s)", path.name, type(err).__name__)
            continue
        if not isinstance(state, dict):
            logger.warning("skipping damaged checkpoint %s (not a mapping)", path.name)
            continue
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InvalidFileError(
                f"{path}: checkpoint format {state.get('format')!r}, but this bbcu reads "
                f"{CHECKPOINT_FORMAT!r}; continue the run with the bbcu version that wrote it, or train "
                "into another output.dir"
            )
        return state
    return None
