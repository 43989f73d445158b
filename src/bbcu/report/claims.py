"""The paper's claims, checked against our runs: supported, not supported or not run, and by how much.

Each claim is a set of comparisons "row A scores above row B". A comparison averages each row's PSNR
over the cells (test set, setting) both rows were scored on, per seed, then over seeds; its margin is
A's mean minus B's. With two or more seeds a row also has a spread (half the range over its seeds), and
a margin no larger than the two spreads together is flagged as within the seed spread. The paper's own
margin over the same cells is printed beside ours where the paper has numbers. A claim is supported when
every comparison that was run goes its way, not supported when one does not, not run when none was.

The residual-alignment question (does the best k grow with the width, as the authors' rule
``k = 130 * width / 64`` says, or fall, as the paper's figure shows?) is answered the same way, width by
width, in ``k_sweep_verdict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bbcu.data.published import published_cost, published_score
from bbcu.report.tables import LADDER, PUBLISHED_TARGETS, TARGET_TASK, UNRESTORED, figure_k, rule_k

Cell = tuple[str, int]
"""(test set, setting): one column of a table."""
SeedScores = dict[Cell, float]
"""PSNR of one seed's run, per cell."""
Runs = dict[str, list[SeedScores]]
"""Row id (``sr-x4/bbcu-l``) -> one entry per finished seed."""

SMALL_MARGIN_DB = 0.1
"""A margin below this, measured on one seed only, is flagged: it needs a second seed to mean anything."""
SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"
_BASELINES = ("bnn", "bireal", "irnet", "btm", "reactnet")
_BBCU_ROW = {"sr-x2": "bbcu-l", "sr-x4": "bbcu-l", "denoise": "dncnn-bbcu", "jpeg": "dncnn3-bbcu"}
_PREFIX = {"sr-x2": "", "sr-x4": "", "denoise": "dncnn-", "jpeg": "dncnn3-"}


@dataclass(frozen=True)
class Estimate:
    """A row's score over some cells: mean over seeds, half the range over seeds, number of seeds."""

    mean: float
    spread: float
    seeds: int


def estimate(runs: Sequence[SeedScores], cells: Sequence[Cell]) -> Estimate:
    """Mean PSNR over ``cells`` for each seed, then mean and half-range over the seeds."""
    per_seed = [float(np.mean([scores[cell] for cell in cells])) for scores in runs]
    return Estimate(float(np.mean(per_seed)), (max(per_seed) - min(per_seed)) / 2, len(per_seed))


def common_cells(*row_runs: Sequence[SeedScores]) -> list[Cell]:
    """Cells every seed of every given row was scored on, sorted."""
    sets = [set(scores) for runs in row_runs for scores in runs]
    return sorted(set.intersection(*sets)) if sets else []


@dataclass(frozen=True)
class Comparison:
    """``better`` should score above ``worse`` (row ids); ``margin`` is None when either was not run."""

    better: str
    worse: str
    margin: float | None = None
    spread: float = 0.0
    seeds: tuple[int, int] = (0, 0)
    paper_margin: float | None = None
    worse_over_input: float | None = None  # the worse row's margin over the unrestored input, if scored

    @property
    def verdict(self) -> str:
        """``supported``, ``not supported`` or ``not run``."""
        if self.margin is None:
            return NOT_RUN
        return SUPPORTED if self.margin > 0 else NOT_SUPPORTED

    @property
    def note(self) -> str:
        """Why a margin may not mean much: within the seed spread, or small on a single seed."""
        if self.margin is None:
            return ""
        if self.worse_over_input is not None and self.worse_over_input < SMALL_MARGIN_DB:
            return (
                f"{_key(self.worse)} is {self.worse_over_input:+.2f} dB over the unrestored input: "
                "it did not learn under this budget"
            )
        if min(self.seeds) >= 2 and abs(self.margin) <= self.spread:
            return f"within the seed spread (+-{self.spread:.2f})"
        if min(self.seeds) < 2 and abs(self.margin) < SMALL_MARGIN_DB:
            return "small, one seed: run more seeds"
        return ""

    def describe(self) -> str:
        """``bbcu-l > bnn: +1.23 dB (paper +4.23); seeds 2/1`` with its note."""
        names = f"{_key(self.better)} > {_key(self.worse)}"
        if self.margin is None:
            return f"{names}: not run"
        paper = "" if self.paper_margin is None else f" (paper {self.paper_margin:+.2f})"
        note = f", {self.note}" if self.note else ""
        return f"{names}: {self.margin:+.2f} dB{paper}; seeds {self.seeds[0]}/{self.seeds[1]}{note}"


def compare(runs: Runs, better: str, worse: str) -> Comparison:
    """Compare two rows on the cells both were scored on."""
    if not runs.get(better) or not runs.get(worse):
        return Comparison(better, worse)
    cells = common_cells(runs[better], runs[worse])
    if not cells:
        return Comparison(better, worse)
    a, b = estimate(runs[better], cells), estimate(runs[worse], cells)
    return Comparison(
        better,
        worse,
        a.mean - b.mean,
        a.spread + b.spread,
        (a.seeds, b.seeds),
        _paper_margin(better, worse, cells),
        _over_input(runs, worse, cells),
    )


def _over_input(runs: Runs, row_id: str, cells: Sequence[Cell]) -> float | None:
    """How far a denoising or JPEG row scores above its table's unrestored input on ``cells`` (None
    where the input was not scored there): a row at or under it has not learned to restore at all."""
    unrestored = runs.get(f"{row_id.partition('/')[0]}/{UNRESTORED}")
    if not unrestored or any(cell not in scores for scores in unrestored for cell in cells):
        return None
    return estimate(runs[row_id], cells).mean - estimate(unrestored, cells).mean


def _paper_margin(better: str, worse: str, cells: Sequence[Cell]) -> float | None:
    """The published margin over the cells where the paper has both rows' scores."""
    pairs = [(_published(better, cell), _published(worse, cell)) for cell in cells]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        return None
    return float(np.mean([a for a, _ in pairs]) - np.mean([b for _, b in pairs]))


def _published(row_id: str, cell: Cell) -> float | None:
    target, _, model = row_id.partition("/")
    if target not in PUBLISHED_TARGETS:
        return None
    score = published_score(model, TARGET_TASK[target], *cell)
    return None if score is None else score[0]


def _key(row_id: str) -> str:
    return row_id.partition("/")[2]


@dataclass(frozen=True)
class Claim:
    """One published claim on one table, with its comparisons."""

    statement: str
    table: str
    comparisons: tuple[Comparison, ...]
    context: str = ""

    @property
    def verdict(self) -> str:
        """Not run if no comparison ran; not supported if any run one fails; supported otherwise."""
        verdicts = [c.verdict for c in self.comparisons if c.verdict != NOT_RUN]
        if not verdicts:
            return NOT_RUN
        return SUPPORTED if all(v == SUPPORTED for v in verdicts) else NOT_SUPPORTED

    @property
    def ran(self) -> int:
        """How many of the comparisons were run."""
        return sum(c.verdict != NOT_RUN for c in self.comparisons)


def check_claims(runs: Runs) -> list[Claim]:
    """Every claim of the paper that our tables can test, on every table it concerns."""
    ladder = [f"ladder/{name}" for name in LADDER]
    v1, v2, v3, v4 = ladder
    claims = [
        Claim(
            "V2 < V1 < V3 < V4 (unit ladder, x4 SR)",
            "ladder",
            tuple(compare(runs, a, b) for a, b in ((v1, v2), (v3, v1), (v4, v3))),
        )
    ]
    for table in PUBLISHED_TARGETS:
        bbcu = f"{table}/{_BBCU_ROW[table]}"
        baselines = [f"{table}/{_PREFIX[table]}{name}" for name in _BASELINES]
        claims.append(
            Claim(
                "BBCU beats every binary baseline at equal cost",
                table,
                tuple(compare(runs, bbcu, base) for base in baselines),
                _cost_note(table, [bbcu, *baselines]),
            )
        )
    for table, better, worse, statement in (
        ("sr-x2", "bbcu-m", "srresnet-lite", "BBCU-M beats SRResNet-Lite at lower OPs"),
        ("sr-x4", "bbcu-m", "srresnet-lite", "BBCU-M beats SRResNet-Lite at lower OPs"),
        ("denoise", "dncnn-bbcu", "dncnn-lite", "the binary denoiser beats DnCNN-Lite"),
        ("jpeg", "dncnn3-bbcu", "dncnn3-lite", "the binary JPEG net beats DnCNN-3-Lite"),
    ):
        rows = [f"{table}/{better}", f"{table}/{worse}"]
        claims.append(Claim(statement, table, (compare(runs, *rows),), _cost_note(table, rows)))
    return claims


def _cost_note(table: str, row_ids: Sequence[str]) -> str:
    """The published OPs of the rows, e.g. ``OPs (G, published): bbcu-m 3.95, srresnet-lite 5.39``."""
    scale = int(table[-1]) if table.startswith("sr-") else 1
    costs = {_key(r): published_cost(_key(r), TARGET_TASK[table], scale) for r in row_ids}
    values = sorted({cost[0] for cost in costs.values() if cost is not None})
    if len(values) == 1:
        return f"equal cost: {values[0]:.2f} G OPs each (published)"
    return "OPs (G, published): " + ", ".join(f"{k} {c[0]:.2f}" for k, c in costs.items() if c is not None)


@dataclass(frozen=True)
class WidthVerdict:
    """One width of the k-sweep: the measured best k and the scores at the two candidate optima."""

    width: int
    best_k: float
    rule: Estimate | None
    figure: Estimate | None

    @property
    def winner(self) -> str:
        """``rule``, ``figure``, ``tie`` or ``not run``/``same k``.

        A tie is a margin within the seed spread, or under ``SMALL_MARGIN_DB`` on a single seed.
        """
        if rule_k(self.width) == figure_k(self.width):
            return "same k"
        if self.rule is None or self.figure is None:
            return NOT_RUN
        margin = self.rule.mean - self.figure.mean
        one_seed = min(self.rule.seeds, self.figure.seeds) < 2
        if abs(margin) <= self.rule.spread + self.figure.spread or (
            one_seed and abs(margin) < SMALL_MARGIN_DB
        ):
            return "tie"
        return "rule" if margin > 0 else "figure"


@dataclass(frozen=True)
class KSweepVerdict:
    """Per-width results and which hypothesis the data supports overall."""

    widths: tuple[WidthVerdict, ...]

    @property
    def supported(self) -> str:
        """``the rule (k = 130 * width / 64)``, ``the figure (...)``, ``neither clearly`` or ``not run``."""
        winners = [w.winner for w in self.widths if w.winner not in (NOT_RUN, "same k")]
        if not winners:
            return NOT_RUN
        if "rule" in winners and "figure" not in winners:
            return "the rule (k = 130 * width / 64)"
        if "figure" in winners and "rule" not in winners:
            return "the figure (best k falls as the width grows)"
        return "neither clearly (ties or mixed widths)"


def k_sweep_verdict(points: dict[tuple[int, float], list[SeedScores]]) -> KSweepVerdict:
    """Judge the rule against the figure from (width, k) -> per-seed scores, on their common cells."""
    cells = common_cells(*[runs for runs in points.values() if runs])
    widths = []
    for width in sorted({w for w, _ in points}):
        measured = {k: estimate(r, cells) for (w, k), r in points.items() if w == width and r and cells}
        if not measured:
            continue
        best = max(measured, key=lambda k: measured[k].mean)
        widths.append(WidthVerdict(width, best, measured.get(rule_k(width)), measured.get(figure_k(width))))
    return KSweepVerdict(tuple(widths))


def format_claims(claims: Sequence[Claim], ksweep: KSweepVerdict, heading: str) -> str:
    """The claims report in markdown: one row per claim and table, the comparisons spelled out."""
    lines = [
        f"# {heading}",
        "",
        "Generated by `bbcu reproduce` from the finished runs. Margins are mean PSNR differences in dB",
        "over the test sets and settings both rows were scored on (mean over seeds); the paper's margin",
        "over the same cells is in parentheses. A margin within the seed spread, or under",
        f"{SMALL_MARGIN_DB} dB on one seed, is flagged.",
        "",
        "| claim | table | verdict | comparisons | cost |",
        "|---|---|---|---|---|",
    ]
    for claim in claims:
        ran = (
            ""
            if claim.ran in (0, len(claim.comparisons))
            else f" ({claim.ran} of {len(claim.comparisons)} run)"
        )
        details = "<br>".join(c.describe() for c in claim.comparisons)
        lines.append(
            f"| {claim.statement} | {claim.table} | **{claim.verdict}**{ran} | {details} | {claim.context} |"
        )
    lines += ["", format_k_sweep_verdict(ksweep)]
    return "\n".join(lines) + "\n"


def format_k_sweep_verdict(verdict: KSweepVerdict) -> str:
    """The residual-alignment answer: per width, the best k measured and both candidates' scores."""
    lines = [
        f"## Residual alignment: which k? The data supports {verdict.supported}.",
        "",
        "| width | best k measured | rule k | PSNR at rule k | figure k | PSNR at figure k | winner |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in verdict.widths:
        lines.append(
            f"| {w.width} | {w.best_k:g} | {rule_k(w.width):g} | {_est(w.rule)} | {figure_k(w.width):g} | "
            f"{_est(w.figure)} | {w.winner} |"
        )
    return "\n".join(lines) + "\n"


def _est(value: Estimate | None) -> str:
    if value is None:
        return "not run"
    spread = f" +-{value.spread:.2f}" if value.seeds > 1 else ""
    return f"{value.mean:.2f}{spread}"
