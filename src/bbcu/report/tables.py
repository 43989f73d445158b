"""Which runs make which table of ``bbcu reproduce``: the targets, their rows and the recipe behind each.

A row is one network trained by one published recipe (``configs/<task>/<model>[_x<scale>].yml``), or
a non-learned baseline scored as it is (bicubic; the unrestored input of the denoising and JPEG
tables). The SR, denoising and JPEG tables list the paper's rows in the paper's order
(``bbcu.data.published.ROW_LABELS``); the ladder lists the four units of the ablation; the k-sweep is
one row per (width, k) of its budget's grid. A new table is a new entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bbcu.core.errors import InvalidArgumentError
from bbcu.data.published import ROW_LABELS
from bbcu.report.budget import KSweepSpec

TARGETS = ("sr-x2", "sr-x4", "denoise", "jpeg", "ladder", "k-sweep")
ALL = "all"
TARGET_TASK = {
    "sr-x2": "sr",
    "sr-x4": "sr",
    "denoise": "denoise",
    "jpeg": "jpeg",
    "ladder": "sr",
    "k-sweep": "sr",
}
PUBLISHED_TARGETS = ("sr-x2", "sr-x4", "denoise", "jpeg")
"""Targets whose rows have published scores beside them."""
LADDER = ("bbcu-v1", "bbcu-v2", "bbcu-v3", "bbcu-v4")
NOT_TRAINED = frozenset({"bicubic", "identity"})
UNRESTORED = "identity"
"""The degraded input scored as it is: the floor of the denoising and JPEG tables (the paper prints
none), beside which a row that learned nothing shows as what it is."""
_LABELS = {UNRESTORED: "Input (unrestored)"}
_FROM_OTHER_PAPERS = frozenset({"rrdbnet"})  # no recipe: a reference restorer, not a row of this paper
RA_WIDTH, RA_K = 64, 130.0
"""The published residual-alignment factor: k = 130 at 64 channels."""


@dataclass(frozen=True)
class Row:
    """One row of a table.

    Attributes:
        target: The table (``sr-x4``).
        key: The row's name within its table: the registry name, or ``w32-k65`` in the k-sweep.
        model: Registry name.
        task: ``sr``, ``denoise`` or ``jpeg``.
        scale: SR scale (1 otherwise).
        config: The recipe, relative to ``configs/``; None for a row that is not trained.
        kwargs: Factory arguments the row itself fixes (the k-sweep's width and k).
    """

    target: str
    key: str
    model: str
    task: str
    scale: int
    config: str | None
    kwargs: dict[str, float] = field(default_factory=dict)

    @property
    def row_id(self) -> str:
        """``<target>/<key>``: unique over all tables; names the run folder and the budget's seed keys."""
        return f"{self.target}/{self.key}"

    @property
    def label(self) -> str:
        """The paper's row title where it has one, else the key."""
        if self.target not in PUBLISHED_TARGETS:
            return self.key
        return ROW_LABELS.get(self.task, {}).get(self.key) or _LABELS.get(self.key, self.key)


def expand(target: str) -> tuple[str, ...]:
    """``all`` -> every target; a target -> itself.

    Raises:
        InvalidArgumentError: An unknown target.
    """
    if target == ALL:
        return TARGETS
    if target not in TARGETS:
        raise InvalidArgumentError(f"unknown target {target!r}; choose one of {', '.join((*TARGETS, ALL))}")
    return (target,)


def rule_k(width: int) -> float:
    """The authors' README rule: k grows with the width, ``130 * width / 64``."""
    return RA_K * width / RA_WIDTH


def figure_k(width: int) -> float:
    """The paper's figure's trend: best k falls as width grows (about 255 at 32, 130 at 64, 75-80 at 128
    channels), read as ``130 * 64 / width`` (260, 130, 65)."""
    return RA_K * RA_WIDTH / width


def sweep_points(spec: KSweepSpec) -> list[tuple[int, float]]:
    """(width, k) of every k-sweep run: the grid plus both candidate optima of each width, sorted."""
    points = {(w, float(k)) for w in spec.widths for k in (*spec.ks, rule_k(w), figure_k(w))}
    return sorted(points)


def table_rows(target: str, sweep: KSweepSpec) -> list[Row]:
    """The rows of one target, in table order."""
    if target in ("sr-x2", "sr-x4"):
        scale = int(target[-1])
        models = [m for m in ROW_LABELS["sr"] if m not in _FROM_OTHER_PAPERS]
        return [_row(target, m, "sr", scale, f"sr/{m}_x{scale}.yml") for m in models]
    if target in ("denoise", "jpeg"):
        return [_row(target, m, target, 1, f"{target}/{m}.yml") for m in (*ROW_LABELS[target], UNRESTORED)]
    if target == "ladder":
        return [_row(target, m, "sr", 4, f"sr/{m}_x4.yml") for m in LADDER]
    return [
        Row(
            target,
            f"w{width}-k{k:g}",
            sweep.model,
            "sr",
            sweep.scale,
            f"sr/{sweep.model}_x{sweep.scale}.yml",
            {"channels": width, "k": k},
        )
        for width, k in sweep_points(sweep)
    ]


def _row(target: str, model: str, task: str, scale: int, config: str) -> Row:
    return Row(target, model, model, task, scale, None if model in NOT_TRAINED else config)
