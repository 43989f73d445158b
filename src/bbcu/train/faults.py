"""Deliberate crashes for the kill-and-resume tests, armed only by an environment variable.

``BBCU_TRAIN_FAULT=kill_after_step:N`` SIGKILLs the process right after optimizer step N (before any
checkpoint of that step); ``BBCU_TRAIN_FAULT=kill_mid_write:N`` SIGKILLs it halfway through writing the
checkpoint of step N. SIGKILL cannot be caught, so this is the harshest interruption a run can meet;
the tests prove that ``bbcu train --resume`` then ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "BBCU_TRAIN_FAULT"
_state = {"iteration": 0}


def _armed(kind: str) -> bool:
    spec = os.environ.get(ENV_VAR, "")
    name, _, at = spec.partition(":")
    return name == kind and at.isdigit() and int(at) == _state["iteration"]


def after_step(iteration: int) -> None:
    """Record the completed step and die here if ``kill_after_step`` names it."""
    _state["iteration"] = iteration
    if _armed("kill_after_step"):
        os.kill(os.getpid(), signal.SIGKILL)


def kill_mid_write_if_armed(written: int, total: int) -> None:
    """Die once at least half of the checkpoint of the armed step is on disk, but not all of it."""
    if written < total and 2 * written >= total and _armed("kill_mid_write"):
        os.kill(os.getpid(), signal.SIGKILL)
