"""The shipped models meet the floors they are shipped under, and every score their cards and the README
print is what the scoring of ``bbcu eval`` measures now, on the packed engine (what users run).

The score tables are read as data: each cell becomes claims keyed by (who, task, test set, setting,
metric) with the number exactly as printed, so a card, the README and a fresh measurement can be
compared cell by cell. ``who`` is a shipped model, ``bicubic`` (MATLAB bicubic), ``unrestored`` (the
JPEG-decoded input) or ``paper <architecture>`` (the published number, checked against
``bbcu.data.published`` rather than measured).

Floors (issue 6, which sets the x4 one; x2 and x3 are held to the same): BBCU super-resolution at least
1.5 dB above MATLAB bicubic on Set5 (bicubic scored here by the same code, not copied from a table), the
blind denoiser at least 29.5 dB on CBSD68 at sigma 25, the blind JPEG model at least 28.6 dB on LIVE1 at
quality 10.

Re-measuring every cell takes about ten minutes on two cores, most of it B100, Kodak24 and McMaster;
``make test`` re-measures the Set5, Set14, CBSD68, LIVE1 and Classic5 cells and reports the others as
skipped unless ``BBCU_EVERY_CARD_CELL=1`` is set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from bbcu.archs import create_model
from bbcu.data.published import published_score
from bbcu.engine.runtime import pack_model
from bbcu.formats.weights import load
from bbcu.run import zoo
from bbcu.run.evaluate import evaluate_set

README = Path(__file__).resolve().parents[1] / "README.md"
METRICS = {"sr": ("psnr", "ssim"), "denoise": ("psnr", "ssim"), "jpeg": ("psnr", "ssim", "psnrb")}
BICUBIC, UNRESTORED, PAPER = "bicubic", "unrestored", "paper"
BASELINES = {BICUBIC: "bicubic", UNRESTORED: "identity"}
"""Who is not a shipped model, and the registry model (no weights) that measures it."""
EVERY_CELL_VARIABLE = "BBCU_EVERY_CARD_CELL"
MEASURED_BY_DEFAULT = {"Set5", "Set14", "CBSD68", "LIVE1", "Classic5"}
"""Test sets whose cells ``make test`` re-measures; the rest wait for ``BBCU_EVERY_CARD_CELL=1``."""

BICUBIC_MARGIN = 1.5
FLOORS = {
    # shipped name: (task, test set, scale / sigma / quality, floor in dB; None = bicubic + margin)
    "bbcu-l-x4": ("sr", "Set5", 4, None),
    "bbcu-m-x4": ("sr", "Set5", 4, None),
    "bbcu-l-x2": ("sr", "Set5", 2, None),
    "bbcu-l-x3": ("sr", "Set5", 3, None),
    "dncnn-bbcu-blind": ("denoise", "CBSD68", 25, 29.5),
    "dncnn3-bbcu-blind": ("jpeg", "LIVE1", 10, 28.6),
}

Claim = tuple[str, str, str, int, str]
"""(who, task, test set, setting, metric): what one printed number is the score of."""
Printed = list[tuple[Claim, str]]


def markdown_tables(text: str) -> Iterator[list[list[str]]]:
    """Every table of a markdown text as rows of stripped cells (header first, separator row dropped)."""
    table: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                table.append(cells)
        elif table:
            yield table
            table = []


def scores(cell: str) -> list[str]:
    """The scores in a cell as printed (``31.42``, ``.8861``), in order; a score always has decimals."""
    return re.findall(r"\d*\.\d+", cell)


def spread(who: str, task: str, datasets: list[str], settings: list[int], values: list[str]) -> Printed:
    """The claims of the numbers of one cell.

    A cell holds either the PSNR at each of its test sets and settings (test set by test set), or, for a
    single test set and setting, the task's metrics in order (PSNR, SSIM, PSNR-B); an empty cell none.
    """
    if not values:
        return []
    if len(values) == len(datasets) * len(settings) > 1:
        pairs = [(dataset, setting) for dataset in datasets for setting in settings]
        return [((who, task, d, s, "psnr"), value) for (d, s), value in zip(pairs, values, strict=True)]
    assert len(datasets) == len(settings) == 1 and len(values) <= len(METRICS[task]), (who, values)
    metrics = METRICS[task][: len(values)]  # the paper gives no PSNR-B
    return [((who, task, datasets[0], settings[0], m), v) for m, v in zip(metrics, values, strict=True)]


def card_claims(name: str) -> Printed:
    """Every score in the score table of a shipped model's card.

    Columns: the test set, then ``quality`` (JPEG), ``this model`` or ``sigma N`` (this model, with the
    paper's PSNR in parentheses), ``paper``, and the baseline: ``bicubic`` or ``unrestored JPEG``.
    """
    info = zoo.shipped_info(name)
    card = zoo.model_card(name)
    assert card is not None, f"{name} has no card"
    (table,) = [t for t in markdown_tables(card.read_text()) if t[0][0] == "set"]
    header, *rows = table
    claims: Printed = []
    for row in rows:
        setting = info.scale
        for heading, cell in zip(header[1:], row[1:], strict=True):
            if heading == "quality":
                setting = int(cell)
                continue
            sigma = re.fullmatch(r"sigma (\d+)", heading)
            at = int(sigma[1]) if sigma else setting
            own, _, paper = cell.partition("(paper ")
            who = column_owner(heading, name, info.architecture)
            claims += spread(who, info.task, [row[0]], [at], scores(own))
            claims += spread(f"{PAPER} {info.architecture}", info.task, [row[0]], [at], scores(paper))
    return claims


def column_owner(heading: str, model: str, architecture: str) -> str:
    """Whose scores a column holds, from its heading."""
    for prefix, who in (
        ("paper", f"{PAPER} {architecture}"),
        ("bicubic", BICUBIC),
        ("unrestored JPEG", UNRESTORED),
    ):
        if heading.startswith(prefix):
            return who
    assert heading.startswith(("this model", "sigma ")), heading
    return model


def readme_claims() -> Printed:
    """Every score in the README's shipped-model tables (those whose header starts ``model | task``)."""
    return [
        claim
        for header, *rows in markdown_tables(README.read_text())
        if header[:2] == ["model", "task"]
        for row in rows
        for claim in readme_row_claims(header, row)
    ]


def readme_row_claims(header: list[str], row: list[str]) -> Printed:
    """The scores of one README row: a shipped model (in backticks) or the bicubic baseline.

    The task cell names the settings (``SR x4 / x3 / x2``, ``sigma 15 / 25 / 50``, ``quality 10``); a
    test-set column holds the metrics at one setting or the PSNR at each; ``paper (...)`` and
    ``unrestored JPEG (...)`` columns hold PSNRs for the test sets they name; ``file`` is no score.
    """
    named = re.fullmatch(r"`(.+)`", row[0])
    who = named[1] if named else BICUBIC
    architecture = zoo.shipped_info(who).architecture if named else BICUBIC
    task = readme_task(row[1])
    assert not named or zoo.shipped_info(who).task == task, row
    settings = [int(s) for s in re.findall(r"\d+", row[1])]
    claims: Printed = []
    for heading, cell in zip(header[2:], row[2:], strict=True):
        listed = re.fullmatch(r"(paper|unrestored JPEG) \((.+)\)", heading)
        if heading == "file":
            continue
        if listed is None:
            claims += spread(who, task, [heading.split()[0]], settings, scores(cell))
        else:
            owner = f"{PAPER} {architecture}" if listed[1] == PAPER else UNRESTORED
            datasets = [name.split()[0] for name in listed[2].split("/")]  # "Classic5 PSNR"
            claims += spread(owner, task, datasets, settings, scores(cell))
    return claims


def readme_task(cell: str) -> str:
    for keyword, task in (("SR", "sr"), ("denoising", "denoise"), ("JPEG", "jpeg")):
        if keyword in cell:
            return task
    raise AssertionError(f"no task in {cell!r}")


def all_card_claims() -> dict[Claim, str]:
    """The claims of every card, checked not to contradict each other (baselines recur across cards)."""
    claims: dict[Claim, str] = {}
    for name in zoo.list_shipped():
        for claim, printed in card_claims(name):
            assert claims.setdefault(claim, printed) == printed, f"{name} prints {printed} for {claim}"
    return claims


def matches(value: float, printed: str) -> bool:
    """Whether ``value`` rounds to ``printed`` (same decimals; ``.8861`` drops the leading zero)."""
    decimals = len(printed.partition(".")[2])
    rounded = f"{value:.{decimals}f}"
    return (rounded.removeprefix("0") if printed.startswith(".") else rounded) == printed


@cache
def measured(who: str, task: str, dataset: str, setting: int) -> dict[str, float]:
    """Mean scores, now: a shipped model on the packed engine, a baseline by its registry model."""
    if who in BASELINES:
        model = create_model(BASELINES[who], **({"scale": setting} if task == "sr" else {}))
    else:
        model = pack_model(load(zoo.shipped_info(who).path))
    return evaluate_set(model, task, dataset, setting).mean()


def measured_groups() -> list[tuple[str, str, str, int]]:
    """(who, task, test set, setting) of every measured card cell, shipped models first."""
    groups = {claim[:4] for claim in all_card_claims() if not claim[0].startswith(PAPER)}
    return sorted(groups, key=lambda group: (group[0] in BASELINES, group))


def test_every_shipped_model_has_a_card_and_a_floor() -> None:
    assert sorted(zoo.list_shipped()) == sorted(FLOORS)
    assert all(zoo.model_card(name) is not None for name in FLOORS)


def test_every_card_scores_its_model_on_its_floor_set() -> None:
    claims = all_card_claims()
    for name, (task, dataset, setting, _) in FLOORS.items():
        assert all((name, task, dataset, setting, metric) in claims for metric in METRICS[task]), name


def test_readme_scores_are_the_cards_scores() -> None:
    cards = all_card_claims()
    readme = readme_claims()
    assert len(readme) >= 40  # every table was read: 4 SR rows, bicubic, the denoiser and the JPEG model
    assert [(claim, printed) for claim, printed in readme if cards.get(claim) != printed] == []


def test_paper_scores_are_the_published_ones() -> None:
    claims = {**all_card_claims(), **dict(readme_claims())}
    papers = {claim: printed for claim, printed in claims.items() if claim[0].startswith(PAPER)}
    assert len(papers) >= 20
    for (who, task, dataset, setting, metric), printed in papers.items():
        score = published_score(who.removeprefix(f"{PAPER} "), task, dataset, setting)
        assert score is not None, (who, dataset, setting)
        value = dict(zip(("psnr", "ssim"), score, strict=True))[metric]
        assert value is not None and matches(value, printed), (who, dataset, setting, metric, printed)


@pytest.mark.slow
@pytest.mark.parametrize(("who", "task", "dataset", "setting"), measured_groups())
def test_card_scores_are_measured_now(who: str, task: str, dataset: str, setting: int) -> None:
    if dataset not in MEASURED_BY_DEFAULT and os.environ.get(EVERY_CELL_VARIABLE) != "1":
        pytest.skip(f"{dataset} cells are re-measured with {EVERY_CELL_VARIABLE}=1 (minutes each)")
    now = measured(who, task, dataset, setting)
    group = (who, task, dataset, setting)
    printed = {claim[4]: text for claim, text in all_card_claims().items() if claim[:4] == group}
    wrong = {
        metric: (text, now[metric]) for metric, text in printed.items() if not matches(now[metric], text)
    }
    assert printed and wrong == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_model_meets_its_floor(name: str) -> None:
    task, dataset, setting, floor = FLOORS[name]
    info = zoo.shipped_info(name)
    assert (info.task, info.scale) == (task, setting if task == "sr" else 1)
    if floor is None:
        floor = measured(BICUBIC, task, dataset, setting)["psnr"] + BICUBIC_MARGIN
    assert measured(name, task, dataset, setting)["psnr"] >= floor
