"""Checkpoints that survive being killed at any moment, including in the middle of writing one.

A checkpoint is one file holding everything the run needs to continue as if never stopped (model, EMA,
optimizer, scheduler, RNG states, sampler position, iteration, best score, config), made of tensors and
plain Python values only so that it loads with ``torch.load(weights_only=True)``.

Writing: serialise to memory, prefix a magic tag and the SHA-256 of the serialised state, then
``bbcu.core.atomic`` (temporary file, fsync, rename, fsync of the folder). Each checkpoint has its own
file (``iter_00001000.ckpt``) and older ones are pruned only after the new one is in place, so a kill
at any instant leaves at least one complete checkpoint.

Reading: the newest file whose checksum matches and whose state has every entry a resume needs wins;
a damaged, half-written or malformed one is passed over with a warning (a flipped bit in a weight
would otherwise resume silently from wrong weights). Every file carries ``CHECKPOINT_FORMAT``; one of
another format (written by another version of bbcu) is refused rather than passed over, since resuming
from an older file of this format - or starting afresh and pruning the newer ones - would quietly throw
the newer training away. For the same reason a run folder whose checkpoints are all damaged is not
restarted from iteration 0 unless asked (``set_aside_checkpoints``, ``bbcu train --fresh``).
"""

from __future__ import annotations

import hashlib
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
CHECKPOINT_FORMAT = "bbcu-train-checkpoint/2"
"""Stamped into every checkpoint; bump it when the layout of the file or of the state changes."""
_NAME = re.compile(r"^iter_(\d{8})\.ckpt$")
_MAGIC = b"BBCUCKPT"
_DIGEST_BYTES = hashlib.sha256().digest_size
REQUIRED_ENTRIES: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "iteration": int,
    "sampler": dict,
    "model": dict,
    "ema": (dict, type(None)),
    "optimizer": dict,
    "scheduler": dict,
    "rng": list,
    "best": dict,
    "config": dict,
}
"""What a resume reads from a checkpoint, and the type each entry must have."""


class DamagedRunError(InvalidFileError):
    """Every checkpoint of a run folder is damaged: resuming is impossible and restarting would lose it."""


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
    payload = buffer.getvalue()
    data = _MAGIC + hashlib.sha256(payload).digest() + payload
    atomic_write_bytes(path, data, on_progress=faults.kill_mid_write_if_armed)
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
    """The newest intact checkpoint of ``run_dir``, or None when the run has none at all.

    A file that fails its checksum, does not load, or lacks an entry a resume needs is logged as a
    warning and skipped, so the run resumes from the previous good one instead of failing or reading
    garbage.

    Raises:
        InvalidFileError: The newest intact checkpoint is of another ``CHECKPOINT_FORMAT``.
        DamagedRunError: There are checkpoints, and every one is damaged.
    """
    candidates = list_checkpoints(run_dir)
    for path in reversed(candidates):
        try:
            state = read_checkpoint(path)
        except InvalidFileError as err:
            logger.warning("skipping damaged checkpoint %s", err)
            continue
        if state["format"] != CHECKPOINT_FORMAT:
            raise InvalidFileError(
                f"{path}: checkpoint format {state['format']!r}, but this bbcu reads "
                f"{CHECKPOINT_FORMAT!r}; continue the run with the bbcu version that wrote it, or train "
                "into another output.dir"
            )
        return state
    if candidates:
        raise DamagedRunError(
            f"every checkpoint in {run_dir / CHECKPOINT_DIR} is damaged ({len(candidates)} files); "
            "nothing to resume from, and starting over would bury them: pass --fresh to set them aside "
            "and start from iteration 0"
        )
    return None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint, verified: magic tag, SHA-256 of the state, ``weights_only`` load, every entry.

    Raises:
        InvalidFileError: Naming the file and what is wrong with it.
    """
    data = path.read_bytes()
    header = len(_MAGIC) + _DIGEST_BYTES
    if len(data) < header or not data.startswith(_MAGIC):
        raise InvalidFileError(f"{path.name}: not a bbcu checkpoint of format 2 or later (no magic tag)")
    digest, payload = data[len(_MAGIC) : header], data[header:]
    if hashlib.sha256(payload).digest() != digest:
        raise InvalidFileError(f"{path.name}: checksum mismatch, the file was changed after it was written")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # any failure means "not a usable checkpoint"
        raise InvalidFileError(f"{path.name}: does not load ({type(err).__name__})") from err
    wrong = [
        key
        for key, kind in REQUIRED_ENTRIES.items()
        if not isinstance(state, dict) or not isinstance(state.get(key), kind)
    ]
    if wrong:
        raise InvalidFileError(f"{path.name}: missing or malformed entries {', '.join(wrong)}")
    return state


def set_aside_checkpoints(run_dir: Path) -> Path | None:
    """Move a run's checkpoint folder to ``checkpoints.set-aside-<n>`` (never deleted), if there is one.

    Returns:
        Where the folder went, or None when the run had none.
    """
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return None
    number = 1
    while (target := run_dir / f"{CHECKPOINT_DIR}.set-aside-{number}").exists():
        number += 1
    folder.rename(target)
    return target
