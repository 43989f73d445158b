"""``bbcu reproduce``: train every row of a published table under a budget, score it, write the tables.

For each row and seed there is one run folder, ``<runs>/<target>/<row>/seed<N>``:

- ``recipe.yml``: the row's published recipe with the budget applied, written fresh each time (``bbcu
  train`` runs it by hand); an interrupted run resumes from its newest checkpoint through ``bbcu train``'s
  own checkpoints and loop, and a run whose recipe changed is refused as ``bbcu train`` refuses it -
  except for the run folder's path, so folders gathered from several machines still resume;
- the training run itself (checkpoints, ``weights/last.safetensors``, ``log.csv``), skipped once finished;
- ``results.json``: the scores of the final weights on every cell (test set, setting) asked for, with
  iterations, training time and hardware. Only missing cells are scored, so a set added under the data
  root later (Urban100, Manga109) costs one evaluation per run, not a retraining.

Runs are independent: ``--list`` prints one command per row for other machines or GPUs, and any later
call assembles the tables from whatever finished. Scores come from ``bbcu.run.evaluate.evaluate_set``,
the code behind ``bbcu eval``; tables and the claims report are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from bbcu.archs import create_model
from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.constants import SETTING_NAMES
from bbcu.core.errors import BbcuError, ConfigError, InvalidFileError
from bbcu.data.manifest import check_training_folder
from bbcu.data.published import published_score, published_settings
from bbcu.data.testsets import available_test_sets
from bbcu.formats.weights import load as load_weights
from bbcu.report.budget import Budget
from bbcu.report.claims import (
    Cell,
    Runs,
    check_claims,
    common_cells,
    estimate,
    format_claims,
    k_sweep_verdict,
)
from bbcu.report.pictures import draw_k_sweep_chart, save_figure
from bbcu.report.tables import PUBLISHED_TARGETS, Row, figure_k, rule_k, table_rows
from bbcu.run.evaluate import evaluate_set, setting_label
from bbcu.train.checkpoint import checkpoint_path, load_latest_checkpoint
from bbcu.train.config import config_to_dict, deep_merge, load_config, read_recipe
from bbcu.train.distributed import resolve_device
from bbcu.train.loop import train
from bbcu.train.run import first_difference
from bbcu.train.schema import TrainConfig

logger = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yml"
RESULTS_FILE = "results.json"
LAST_WEIGHTS = Path("weights") / "last.safetensors"


@dataclass
class RunResult:
    """One finished run (one row, one seed) and its scores.

    Attributes:
        row_id: ``<target>/<row>``.
        seed: The training seed.
        iterations: Training steps (0 for a row that is not trained).
        train_seconds: Wall time of the training session that finished the run (None: not measured).
        hardware: Where it ran, in words.
        scores: Cell -> {"psnr", "ssim"(, "psnrb")}.
    """

    row_id: str
    seed: int
    iterations: int
    train_seconds: float | None
    hardware: str
    scores: dict[Cell, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` document."""
        cells = [{"dataset": d, "setting": s, **m} for (d, s), m in sorted(self.scores.items())]
        return {
            "row": self.row_id,
            "seed": self.seed,
            "iterations": self.iterations,
            "train_seconds": self.train_seconds,
            "hardware": self.hardware,
            "scores": cells,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of ``to_json``."""
        scores = {
            (c["dataset"], int(c["setting"])): {
                k: float(v) for k, v in c.items() if k not in ("dataset", "setting")
            }
            for c in data["scores"]
        }
        return cls(
            data["row"],
            int(data["seed"]),
            int(data["iterations"]),
            data["train_seconds"],
            data["hardware"],
            scores,
        )


@dataclass(frozen=True)
class Plan:
    """Where a reproduction reads and writes.

    Attributes:
        budget: The budget.
        configs: The ``configs/`` folder holding the row recipes.
        runs: The runs folder of this budget (``runs/reproduce/<budget>`` by default).
        data_root: The data root (test sets and training folders).
    """

    budget: Budget
    configs: Path
    runs: Path
    data_root: Path

    def run_dir(self, row: Row, seed: int) -> Path:
        """The run folder of one row and seed."""
        return self.runs / row.target / row.key / f"seed{seed}"

    def seeds(self, row: Row) -> list[int]:
        """The budget's seeds for a trained row; one run for a row that is not trained."""
        return self.budget.seeds_for(row.target, row.key) if row.config else [0]


def row_recipe(plan: Plan, row: Row, seed: int) -> dict[str, Any]:
    """The row's published recipe with the budget, the row's own arguments, the seed and the run folder."""
    assert row.config is not None
    recipe = read_recipe(plan.configs / row.config)
    recipe = deep_merge(recipe, plan.budget.recipe_overrides(row.task, row.model))
    own = {
        "description": f"{recipe.get('description', row.model)} [bbcu reproduce, budget {plan.budget.name}]",
        "model": {"kwargs": dict(row.kwargs)},
        "train": {"seed": seed},
        "output": {"dir": str(plan.run_dir(row, seed))},
    }
    return deep_merge(recipe, own)


def write_recipe(plan: Plan, row: Row, seed: int) -> Path:
    """Write the row's recipe, complete, into the run folder (``bbcu train`` can run it by hand)."""
    path = plan.run_dir(row, seed) / RECIPE_FILE
    text = yaml.safe_dump(row_recipe(plan, row, seed), sort_keys=False)
    atomic_write_bytes(path, text.encode(), make_parents=True)
    return path


def train_row(plan: Plan, row: Row, seed: int) -> tuple[TrainConfig, float | None]:
    """Train (or resume, or skip when finished) one run; return its recipe and training wall time."""
    run_dir = plan.run_dir(row, seed)
    config = load_config(write_recipe(plan, row, seed))
    checkpoint = load_latest_checkpoint(run_dir)
    if checkpoint is not None:
        _check_same_run(config, checkpoint, run_dir)
        if checkpoint["iteration"] >= config.train.iterations:
            return config, None
        logger.info("resuming %s from iteration %d", run_dir, checkpoint["iteration"])
    for source in config.data.train:
        check_training_folder(source.dir, plan.data_root)
    start = time.perf_counter()
    train(config, run_dir, plan.data_root, checkpoint, progress=True)
    return config, time.perf_counter() - start


def _check_same_run(config: TrainConfig, checkpoint: dict[str, Any], run_dir: Path) -> None:
    """Refuse to continue a run under a changed recipe, as ``bbcu train`` does, except for where the
    run folder is: run folders may be moved (gathered from several machines) and still resume."""
    stored = checkpoint["config"]
    stored = {**stored, "output": {**stored["output"], "dir": config.output.dir}}
    difference = first_difference(stored, config_to_dict(config))
    if difference is not None:
        raise ConfigError(
            f"{run_dir} holds a run whose recipe differs at {difference!r} (the budget changed?); "
            "use another --runs folder for the new budget"
        )


def wanted_cells(plan: Plan, row: Row) -> list[Cell]:
    """The cells a row is scored on: the budget's sets (else every published set present) x settings."""
    sets = plan.budget.eval.sets.get(row.task) or available_test_sets(row.task, plan.data_root)
    if row.task == "sr":
        settings = [row.scale]
    else:
        settings = plan.budget.eval.settings.get(row.task) or list(published_settings(row.task))
    return [(name, setting) for setting in settings for name in sets]


def reproduce_run(plan: Plan, row: Row, seed: int, *, train_missing: bool = True) -> RunResult | None:
    """Train (if asked) and score one run; None when it is not finished and training is off."""
    run_dir = plan.run_dir(row, seed)
    previous = read_result(run_dir)
    if row.config is None:
        iterations, seconds, device = 0, None, torch.device("cpu")
    else:
        if train_missing:
            config, seconds = train_row(plan, row, seed)
        else:
            config, seconds = load_config(write_recipe(plan, row, seed)), None
            if not (run_dir / LAST_WEIGHTS).is_file() or not _finished(run_dir, config):
                return None
        iterations, device = config.train.iterations, resolve_device(config.runtime.device)
    if previous is None or previous.iterations != iterations or seconds is not None:
        previous = RunResult(row.row_id, seed, iterations, seconds, hardware(device))
    missing = [cell for cell in wanted_cells(plan, row) if cell not in previous.scores]
    if missing:
        model = _trained_model(row, run_dir, device)
        for dataset, setting in missing:
            result = evaluate_set(model, row.task, dataset, setting, root=plan.data_root, device=device)
            previous.scores[dataset, setting] = result.mean()
        payload = json.dumps(previous.to_json(), indent=1) + "\n"
        atomic_write_bytes(run_dir / RESULTS_FILE, payload.encode(), make_parents=True)
    return previous


def _finished(run_dir: Path, config: TrainConfig) -> bool:
    """Whether the run reached its length: the final checkpoint is the newest, so it is never pruned."""
    return checkpoint_path(run_dir, config.train.iterations).is_file()


def _trained_model(row: Row, run_dir: Path, device: torch.device) -> torch.nn.Module:
    if row.config is None:
        return create_model(row.model, scale=row.scale)
    return load_weights(run_dir / LAST_WEIGHTS, device=device)


def read_result(run_dir: Path) -> RunResult | None:
    """The run's ``results.json``, or None when absent.

    Raises:
        InvalidFileError: A results file that does not parse.
    """
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        return RunResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidFileError(f"{path}: not a bbcu reproduce results file ({err})") from err


def hardware(device: torch.device) -> str:
    """The machine in words: GPU name, or CPU model and torch threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


@dataclass
class Outcome:
    """What one invocation did: the results per row id and the rows that failed (with the reason)."""

    results: dict[str, list[RunResult]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def reproduce(plan: Plan, rows: Sequence[Row], *, train_missing: bool = True) -> Outcome:
    """Train and score every run of ``rows`` (tqdm over runs); a failing run is reported, not fatal."""
    outcome = Outcome()
    jobs = [(row, seed) for row in rows for seed in plan.seeds(row)]
    for row, seed in tqdm(jobs, desc=f"reproduce ({plan.budget.name})", unit="run"):
        try:
            result = reproduce_run(plan, row, seed, train_missing=train_missing)
        except BbcuError as err:
            outcome.failures.append(f"{row.row_id} seed {seed}: {err}")
            logger.warning("%s seed %d failed: %s", row.row_id, seed, err)
            continue
        if result is not None:
            outcome.results.setdefault(row.row_id, []).append(result)
    return outcome


# ---- tables -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableCell:
    """One cell of a table: our mean over seeds beside the paper's value and the difference."""

    psnr: float
    spread: float
    ssim: float | None
    paper_psnr: float | None
    paper_ssim: float | None

    @property
    def diff_psnr(self) -> float | None:
        """Ours minus the paper's PSNR (dB), None where the paper has no cell."""
        return None if self.paper_psnr is None else self.psnr - self.paper_psnr

    @property
    def diff_ssim(self) -> float | None:
        """Ours minus the paper's SSIM."""
        return None if self.paper_ssim is None or self.ssim is None else self.ssim - self.paper_ssim


def table_cell(row: Row, runs: Sequence[RunResult], cell: Cell) -> TableCell | None:
    """Mean (and half-range) over the seeds that scored this cell; the published value beside it."""
    scored = [r.scores[cell] for r in runs if cell in r.scores]
    if not scored:
        return None
    psnrs = [s["psnr"] for s in scored]
    ssim = float(np.mean([s["ssim"] for s in scored])) if all("ssim" in s for s in scored) else None
    paper = published_score(row.key, row.task, *cell) if row.target in PUBLISHED_TARGETS else None
    return TableCell(
        float(np.mean(psnrs)),
        (max(psnrs) - min(psnrs)) / 2,
        ssim,
        None if paper is None else paper[0],
        None if paper is None else paper[1],
    )


def _cells(rows: Sequence[Row], results: dict[str, list[RunResult]]) -> list[Cell]:
    """Every cell any row of the table was scored on: settings in order, datasets in first-seen order."""
    seen = [cell for row in rows for run in results.get(row.row_id, []) for cell in run.scores]
    unique = list(dict.fromkeys(seen))
    return sorted(unique, key=lambda c: (c[1], [u[0] for u in unique].index(c[0])))


def format_cell(cell: TableCell | None, with_ssim: bool) -> str:
    """``29.53+-0.04 / .8512 vs 31.54 / .8859 (-2.01)``; ``-`` when the row was not scored there."""
    if cell is None:
        return "-"
    ours = f"{cell.psnr:.2f}" + (f"+-{cell.spread:.2f}" if cell.spread else "")
    if with_ssim and cell.ssim is not None:
        ours += f" / {_ssim(cell.ssim)}"
    if cell.paper_psnr is None:
        return ours
    paper = f"{cell.paper_psnr:.2f}"
    if with_ssim and cell.paper_ssim is not None:
        paper += f" / {_ssim(cell.paper_ssim)}"
    return f"{ours} vs {paper} ({cell.diff_psnr:+.2f})"


def _ssim(value: float) -> str:
    return f"{value:.4f}".lstrip("0")


def _time(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


_BICUBIC_NOTE = (
    "The paper's Bicubic row uses another bicubic than the protocol's MATLAB one (about 0.2-0.3 dB "
    "higher; docs/protocols.md)."
)


def format_markdown(
    target: str, rows: Sequence[Row], results: dict[str, list[RunResult]], budget: Budget
) -> str:
    """One table per setting: rows x test sets, ours vs the paper with the difference; runs' provenance."""
    cells = _cells(rows, results)
    lines = [
        f"# `{target}` under budget `{budget.name}`",
        "",
        budget.description.strip(),
        "",
        "Cells: our PSNR (+- half the range over seeds) / SSIM, vs the published value (difference in",
        "dB). Not comparable with the paper in absolute terms: a budget trains a fraction of the published",
        "steps; compare the order of the rows.",
    ]
    if target in ("sr-x2", "sr-x4"):
        lines.append(_BICUBIC_NOTE)
    task = rows[0].task
    with_ssim = task != "denoise"
    for setting in dict.fromkeys(s for _, s in cells):
        names = [d for d, s in cells if s == setting]
        lines += ["", f"## {setting_label(task, setting)}", "", "| row | model | " + " | ".join(names) + " |"]
        lines.append("|---|---|" + "---|" * len(names))
        for row in rows:
            runs = results.get(row.row_id, [])
            values = [format_cell(table_cell(row, runs, (d, setting)), with_ssim) for d in names]
            lines.append(f"| {row.label} | `{row.model}` | " + " | ".join(values) + " |")
    lines += [
        "",
        "## Runs",
        "",
        "| row | seeds | iterations | training time | hardware |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        runs = results.get(row.row_id, [])
        if not runs:
            lines.append(f"| {row.label} | not run | | | |")
            continue
        seconds = [r.train_seconds for r in runs if r.train_seconds is not None]
        lines.append(
            f"| {row.label} | {', '.join(str(r.seed) for r in runs)} | {runs[0].iterations} | "
            f"{_time(sum(seconds) if seconds else None)} | {runs[0].hardware} |"
        )
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "budget", "target", "row", "model", "task", "setting_name", "setting", "dataset", "seeds", "psnr",
    "psnr_spread", "ssim", "paper_psnr", "paper_ssim", "diff_psnr", "diff_ssim", "iterations",
    "train_seconds", "hardware",
)  # fmt: skip


def format_csv(rows: Sequence[Row], results: dict[str, list[RunResult]], budget: Budget) -> str:
    """The same table, one line per (row, cell), every number unrounded."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        runs = results.get(row.row_id, [])
        for cell in _cells([row], results):
            value = table_cell(row, runs, cell)
            assert value is not None
            seconds = [r.train_seconds for r in runs if r.train_seconds is not None]
            what = [budget.name, row.target, row.key, row.model, row.task, SETTING_NAMES[row.task]]
            ours = [cell[1], cell[0], len(runs), value.psnr, value.spread, value.ssim]
            paper = [value.paper_psnr, value.paper_ssim, value.diff_psnr, value.diff_ssim]
            how = [runs[0].iterations, sum(seconds) if seconds else None, runs[0].hardware]
            writer.writerow([*what, *ours, *paper, *how])
    return buffer.getvalue()


def write_table(
    out: Path, target: str, rows: Sequence[Row], results: dict[str, list[RunResult]], budget: Budget
) -> list[Path]:
    """``<out>/<target>.md`` and ``.csv`` (and the k-sweep chart), atomically; return the paths."""
    paths = [out / f"{target}.md", out / f"{target}.csv"]
    atomic_write_bytes(paths[0], format_markdown(target, rows, results, budget).encode(), make_parents=True)
    atomic_write_bytes(paths[1], format_csv(rows, results, budget).encode(), make_parents=True)
    if target == "k-sweep":
        points = sweep_scores(rows, results)
        if any(points.values()):
            chart = out / "k-sweep.png"
            figure = draw_k_sweep_chart(
                _chart_series(points),
                {w: (rule_k(w), figure_k(w)) for w, _ in points},
                title=f"PSNR against k, {rows[0].model} x{rows[0].scale}, budget {budget.name}",
            )
            save_figure(figure, chart)
            paths.append(chart)
    return paths


def sweep_scores(
    rows: Sequence[Row], results: dict[str, list[RunResult]]
) -> dict[tuple[int, float], list[dict[Cell, float]]]:
    """(width, k) -> per-seed PSNR per cell, the k-sweep's input to ``k_sweep_verdict``."""
    return {
        (int(row.kwargs["channels"]), float(row.kwargs["k"])): [
            {cell: s["psnr"] for cell, s in run.scores.items()} for run in results.get(row.row_id, [])
        ]
        for row in rows
    }


def _chart_series(
    points: dict[tuple[int, float], list[dict[Cell, float]]],
) -> dict[int, list[tuple[float, float, float]]]:
    """width -> [(k, mean PSNR over the common cells, half-range over seeds)], for the chart."""
    cells = common_cells(*[r for r in points.values() if r])
    series: dict[int, list[tuple[float, float, float]]] = {}
    for (width, k), runs in sorted(points.items()):
        if runs and cells:
            value = estimate(runs, cells)
            series.setdefault(width, []).append((k, value.mean, value.spread))
    return series


def all_results(plan: Plan, rows: Sequence[Row]) -> Runs:
    """Every finished run's PSNRs under the plan's runs folder, for the claims (without training)."""
    runs: Runs = {}
    for row in rows:
        for seed in plan.seeds(row):
            result = read_result(plan.run_dir(row, seed))
            if result is not None:
                runs.setdefault(row.row_id, []).append({c: s["psnr"] for c, s in result.scores.items()})
    return runs


def write_claims(plan: Plan, every_row: Sequence[Row], out: Path) -> Path:
    """``<out>/claims.md`` from every finished run of every target (whatever this call trained)."""
    runs = all_results(plan, every_row)
    sweep = [row for row in every_row if row.target == "k-sweep"]
    points = {(int(r.kwargs["channels"]), float(r.kwargs["k"])): runs.get(r.row_id, []) for r in sweep}
    heading = f"Claims of Xia et al. (ICLR 2023) under budget `{plan.budget.name}`"
    text = format_claims(check_claims(runs), k_sweep_verdict(points), heading)
    path = out / "claims.md"
    atomic_write_bytes(path, text.encode(), make_parents=True)
    return path


def every_row(budget: Budget, targets: Sequence[str]) -> list[Row]:
    """The rows of the given targets, in order."""
    return [row for target in targets for row in table_rows(target, budget.k_sweep)]
