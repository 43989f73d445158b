"""``bbcu reproduce``: tables beside the published numbers, the claims' verdicts, runs that resume, the
row list, the standard-set manifest's warnings, and the whole smoke budget end to end.

Table and claims tests use synthetic results whose means, spreads, differences and verdicts are worked
out by hand in the comments; the published values they sit beside are the paper's (docs/published.md).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bbcu.cli.main import main
from bbcu.core.errors import ConfigError
from bbcu.data.manifest import check_set, pixel_checksum, set_differences, standard_sets
from bbcu.data.published import published_score
from bbcu.data.testsets import image_files, locate_test_set
from bbcu.formats.image_io import read_image
from bbcu.report.budget import default_configs_dir, load_budget
from bbcu.report.claims import (
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    check_claims,
    compare,
    k_sweep_verdict,
)
from bbcu.report.reproduce import RunResult, format_cell, format_csv, format_markdown, table_cell
from bbcu.report.tables import figure_k, rule_k, sweep_points, table_rows

CONFIGS = default_configs_dir()
assert CONFIGS is not None
SMOKE = load_budget("smoke", CONFIGS)


def _run(row_id: str, seed: int, scores: dict[tuple[str, int], tuple[float, float]]) -> RunResult:
    cells = {cell: {"psnr": p, "ssim": s} for cell, (p, s) in scores.items()}
    return RunResult(row_id, seed, 300, 60.0, "test machine", cells)


# ---- tables ------------------------------------------------------------------------------------------


def test_cell_is_the_seed_mean_beside_the_published_value_and_their_difference() -> None:
    row = next(r for r in table_rows("sr-x4", SMOKE.k_sweep) if r.key == "bbcu-l")
    runs = [
        _run(row.row_id, 0, {("Set5", 4): (31.00, 0.8800)}),
        _run(row.row_id, 1, {("Set5", 4): (31.20, 0.8900)}),
    ]
    cell = table_cell(row, runs, ("Set5", 4))
    assert cell is not None
    # mean 31.10, half-range 0.10, SSIM mean .8850; paper 31.79 / .8905: difference -0.69 dB, -.0055
    assert cell.psnr == pytest.approx(31.10) and cell.spread == pytest.approx(0.10)
    assert (cell.paper_psnr, cell.paper_ssim) == published_score("bbcu-l", "sr", "Set5", 4) == (31.79, 0.8905)
    assert cell.diff_psnr == pytest.approx(-0.69) and cell.diff_ssim == pytest.approx(-0.0055)
    assert format_cell(cell, with_ssim=True) == "31.10+-0.10 / .8850 vs 31.79 / .8905 (-0.69)"
    assert table_cell(row, runs, ("Set14", 4)) is None


def test_markdown_and_csv_carry_every_scored_cell_and_mark_rows_not_run() -> None:
    rows = table_rows("denoise", SMOKE.k_sweep)
    results = {
        "denoise/dncnn-bbcu": [_run("denoise/dncnn-bbcu", 0, {("CBSD68", 25): (29.56, 0.85)})],
        "denoise/dncnn-lite": [_run("denoise/dncnn-lite", 0, {("CBSD68", 25): (29.14, 0.83)})],
    }
    text = format_markdown("denoise", rows, results, SMOKE)
    assert "## sigma25" in text
    # denoising tables print PSNR only, as the paper does: 29.56 vs 30.56 -> -1.00; 29.14 vs 29.64 -> -0.50
    assert "| BBCU | `dncnn-bbcu` | 29.56 vs 30.56 (-1.00) |" in text
    assert "| DnCNN-Lite | `dncnn-lite` | 29.14 vs 29.64 (-0.50) |" in text
    assert "| BNN | `dncnn-bnn` | - |" in text and "| BNN | not run |" in text
    lines = list(csv.DictReader(io.StringIO(format_csv(rows, results, SMOKE))))
    assert [line["row"] for line in lines] == ["dncnn-lite", "dncnn-bbcu"]  # paper order
    bbcu = lines[1]
    assert (bbcu["budget"], bbcu["dataset"], bbcu["setting_name"], bbcu["setting"]) == (
        "smoke",
        "CBSD68",
        "sigma",
        "25",
    )
    assert float(bbcu["paper_psnr"]) == 30.56 and float(bbcu["diff_psnr"]) == pytest.approx(-1.00)
    assert bbcu["paper_ssim"] == "" and bbcu["iterations"] == "300"


# ---- claims ------------------------------------------------------------------------------------------


def _psnr(**cells: float) -> dict[tuple[str, int], float]:
    return {(name, 4): value for name, value in cells.items()}


def test_ladder_order_supported_then_broken() -> None:
    runs = {
        "ladder/bbcu-v1": [_psnr(Set5=30.0)],
        "ladder/bbcu-v2": [_psnr(Set5=29.5)],
        "ladder/bbcu-v3": [_psnr(Set5=30.3)],
        "ladder/bbcu-v4": [_psnr(Set5=30.6)],
    }
    ladder = check_claims(runs)[0]
    assert ladder.verdict == SUPPORTED
    assert [round(c.margin, 6) for c in ladder.comparisons] == [0.5, 0.3, 0.3]  # v1-v2, v3-v1, v4-v3
    runs["ladder/bbcu-v3"] = [_psnr(Set5=29.9)]  # now V3 < V1 by 0.1 dB
    ladder = check_claims(runs)[0]
    assert ladder.verdict == NOT_SUPPORTED
    assert ladder.comparisons[1].margin == pytest.approx(-0.1)


def test_seed_spread_flags_a_margin_it_covers() -> None:
    # v3: seeds 30.3, 30.1 -> mean 30.2, half-range 0.1; v1: 30.0, 30.2 -> 30.1, 0.1.
    # margin +0.1 <= 0.1 + 0.1: supported, but within the seed spread.
    runs = {
        "ladder/bbcu-v3": [_psnr(Set5=30.3), _psnr(Set5=30.1)],
        "ladder/bbcu-v1": [_psnr(Set5=30.0), _psnr(Set5=30.2)],
    }
    result = compare(runs, "ladder/bbcu-v3", "ladder/bbcu-v1")
    assert result.verdict == SUPPORTED and result.margin == pytest.approx(0.1)
    assert result.spread == pytest.approx(0.2) and result.seeds == (2, 2)
    assert result.note == "within the seed spread (+-0.20)"
    one_seed = compare({k: v[:1] for k, v in runs.items()}, "ladder/bbcu-v3", "ladder/bbcu-v1")
    assert one_seed.margin == pytest.approx(0.3) and one_seed.note == ""


def test_baseline_claim_uses_common_cells_and_the_papers_margin() -> None:
    runs = {
        # bbcu-l was also scored on Set14; reactnet only on Set5: the comparison uses Set5 alone.
        "sr-x4/bbcu-l": [_psnr(Set5=29.0, Set14=26.0)],
        "sr-x4/reactnet": [_psnr(Set5=28.8)],
    }
    claim = next(c for c in check_claims(runs) if c.table == "sr-x4" and "baseline" in c.statement)
    assert claim.verdict == SUPPORTED and claim.ran == 1  # the other four baselines were not run
    reactnet = claim.comparisons[-1]
    assert reactnet.margin == pytest.approx(0.2)
    assert reactnet.paper_margin == pytest.approx(31.79 - 31.54)  # the paper's Set5 x4 cells
    assert reactnet.describe() == "bbcu-l > reactnet: +0.20 dB (paper +0.25); seeds 1/1"
    assert claim.context == "equal cost: 79.20 G OPs each (published)"
    lite = next(c for c in check_claims(runs) if c.table == "sr-x4" and "Lite" in c.statement)
    assert lite.verdict == NOT_RUN and "bbcu-m 3.95, srresnet-lite 5.39" in lite.context


def test_lite_claims_on_denoise_and_jpeg() -> None:
    runs = {
        "denoise/dncnn-bbcu": [{("CBSD68", 25): 29.50}],
        "denoise/dncnn-lite": [{("CBSD68", 25): 29.45}],
        "jpeg/dncnn3-bbcu": [{("LIVE1", 10): 28.70}],
        "jpeg/dncnn3-lite": [{("LIVE1", 10): 28.90}],
    }
    claims = {c.table: c for c in check_claims(runs) if "Lite" in c.statement and "BBCU-M" not in c.statement}
    assert claims["denoise"].verdict == SUPPORTED  # +0.05 dB, one seed: flagged as small
    assert claims["denoise"].comparisons[0].note == "small, one seed: run more seeds"
    assert claims["jpeg"].verdict == NOT_SUPPORTED
    assert claims["jpeg"].comparisons[0].margin == pytest.approx(-0.2)
    assert claims["jpeg"].comparisons[0].paper_margin == pytest.approx(29.06 - 28.90)


def test_a_row_not_above_the_unrestored_input_is_called_untrained() -> None:
    """A wide margin over a row that never left the degraded input says little about the claim."""
    runs = {
        "denoise/dncnn-bbcu": [{("CBSD68", 25): 27.17}],
        "denoise/dncnn-lite": [{("CBSD68", 25): 20.60}],
        "denoise/identity": [{("CBSD68", 25): 20.54}],
        "jpeg/dncnn3-bbcu": [{("LIVE1", 10): 28.41}],
        "jpeg/dncnn3-lite": [{("LIVE1", 10): 28.00}],
        "jpeg/identity": [{("LIVE1", 10): 27.77}],
    }
    claims = {c.table: c for c in check_claims(runs) if "Lite" in c.statement and "BBCU-M" not in c.statement}
    (denoise,), (jpeg,) = claims["denoise"].comparisons, claims["jpeg"].comparisons
    assert denoise.verdict == SUPPORTED and denoise.worse_over_input == pytest.approx(0.06)
    assert (
        denoise.note == "dncnn-lite is +0.06 dB over the unrestored input: it did not learn under this budget"
    )
    assert jpeg.worse_over_input == pytest.approx(0.23) and jpeg.note == ""


def test_k_sweep_verdict_follows_the_better_candidate() -> None:
    assert (rule_k(32), figure_k(32), rule_k(64), figure_k(64), rule_k(128), figure_k(128)) == (
        65,
        260,
        130,
        130,
        260,
        65,
    )
    cell = ("Set5", 4)
    figure_wins = {
        (32, 65.0): [{cell: 30.0}], (32, 260.0): [{cell: 30.5}], (32, 16.0): [{cell: 29.0}],
        (64, 130.0): [{cell: 30.8}],
        (128, 260.0): [{cell: 30.1}], (128, 65.0): [{cell: 30.6}],
    }  # fmt: skip
    verdict = k_sweep_verdict(figure_wins)
    assert [(w.width, w.best_k, w.winner) for w in verdict.widths] == [
        (32, 260, "figure"),
        (64, 130, "same k"),
        (128, 65, "figure"),
    ]
    assert verdict.supported.startswith("the figure")
    mixed = {**figure_wins, (128, 260.0): [{cell: 30.9}]}
    assert k_sweep_verdict(mixed).supported.startswith("neither")
    rule_wins = {**mixed, (32, 65.0): [{cell: 30.7}]}
    assert k_sweep_verdict(rule_wins).supported.startswith("the rule")
    assert k_sweep_verdict({}).supported == NOT_RUN
    close = {(32, 65.0): [{cell: 30.0}], (32, 260.0): [{cell: 30.05}]}  # 0.05 dB on one seed: a tie
    assert k_sweep_verdict(close).widths[0].winner == "tie"
    assert k_sweep_verdict(close).supported.startswith("neither")


def test_sweep_grid_always_holds_both_candidates() -> None:
    points = sweep_points(SMOKE.k_sweep)  # widths 4, 8; grid 16
    assert points == sorted(
        {(4, 16.0), (4, rule_k(4)), (4, figure_k(4)), (8, 16.0), (8, rule_k(8)), (8, figure_k(8))}
    )


# ---- budgets and the command line --------------------------------------------------------------------


def test_budget_precedence_and_strict_keys(tmp_path: Path) -> None:
    cpu = load_budget("cpu", CONFIGS)
    assert cpu.seeds_for("sr-x4", "bbcu-l") == [0, 1] and cpu.seeds_for("sr-x4", "bnn") == [0]
    assert cpu.seeds_for("ladder", "bbcu-v2") == [0, 1]
    sr = cpu.recipe_overrides("sr", "bbcu-l")
    assert sr["train"]["iterations"] == 300 and sr["data"]["patch"] == 24
    assert cpu.recipe_overrides("denoise", "dncnn-bbcu")["train"]["iterations"] == 600
    assert SMOKE.recipe_overrides("sr", "srresnet-lite")["model"]["kwargs"] == {"channels": 8, "blocks": 1}
    assert SMOKE.recipe_overrides("sr", "bbcu-m")["model"]["kwargs"] == {"channels": 8, "num_units": 2}
    bad = tmp_path / "bad.yml"
    bad.write_text("overides: {}\n")
    with pytest.raises(ConfigError, match="overides"):
        load_budget(str(bad), CONFIGS)


def test_list_prints_one_command_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "sr-x4", "--budget", "smoke", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    models = [
        "srresnet",
        "srresnet-lite",
        "bicubic",
        "bnn",
        "bireal",
        "irnet",
        "btm",
        "reactnet",
        "bbcu-m",
        "bbcu-l",
    ]
    assert lines == [f"bbcu reproduce sr-x4 --budget smoke --row {m}" for m in models]
    assert main(["reproduce", "all", "--budget", "smoke", "--list", "--runs", "/tmp/x y"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 + 10 + 9 + 9 + 4 + 6  # denoise / JPEG: 8 networks + the unrestored input
    assert "bbcu reproduce k-sweep --budget smoke --row w4-k8.125 --runs '/tmp/x y'" in lines


def test_row_mistakes_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "sr-x4", "--budget", "smoke", "--row", "nope"]) == 2
    assert main(["reproduce", "all", "--budget", "smoke", "--row", "bnn"]) == 2
    assert main(["reproduce", "sr-x4", "--budget", "nope"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("bbcu reproduce: error: ") for line in errors)
    assert "rows: srresnet, srresnet-lite, bicubic" in errors[0] and "known: cpu, gpu, smoke" in errors[2]


# ---- the manifest of the standard sets ---------------------------------------------------------------


def test_manifest_counts_and_the_bundled_sets_match() -> None:
    sets = standard_sets()
    assert {name: sets[name]["count"] for name in ("Urban100", "Manga109", "DIV2K", "DIV2K_valid")} == {
        "Urban100": 100, "Manga109": 109, "DIV2K": 800, "DIV2K_valid": 100,
    }  # fmt: skip
    assert sets["Set14"]["images"]["bridge"][:3] == [512, 512, 1]  # grey, as stored
    assert set_differences("Set5", locate_test_set("Set5")) == []
    baby = read_image(locate_test_set("Set5") / "baby.png")
    assert pixel_checksum(baby) == sets["Set5"]["images"]["baby"][3]


def _fake_set5(root: Path) -> Path:
    """Set5 with bird missing, butterfly halved in size and one pixel of head changed."""
    folder = root / "Set5" / "HR"
    folder.mkdir(parents=True)
    for path in image_files(locate_test_set("Set5")):
        if path.stem == "bird":
            continue
        image = np.array(Image.open(path))
        if path.stem == "butterfly":
            image = image[::2, ::2]
        if path.stem == "head":
            image[0, 0, 0] ^= 1
        Image.fromarray(image).save(folder / path.name)
    return folder


def test_mismatched_set_warns_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _fake_set5(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bbcu.data.manifest"):
        assert not check_set("Set5", tmp_path)
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message and message.startswith(f"Set5 at {tmp_path.resolve()}")
    for phrase in (
        "4 images, expected 5",
        "missing: bird",
        "size of butterfly: 128x128, expected 256x256",
        "different pixels: head",
    ):
        assert phrase in message


def test_eval_warns_on_a_mismatched_set_and_still_scores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_set5(tmp_path)
    (tmp_path / "Set5" / "HR" / "head.png").unlink()  # keep it to a count + size problem
    options = ["--datasets", "Set5", "--data-root", str(tmp_path), "--csv", str(tmp_path / "out.csv")]
    with caplog.at_level(logging.WARNING):
        assert main(["eval", "--task", "sr", "--model", "bicubic", "--scale", "4", *options]) == 0
    warned = [r.getMessage() for r in caplog.records if "differs from the standard set" in r.getMessage()]
    assert len(warned) == 1 and "3 images, expected 5" in warned[0]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 3  # scored all the same


# ---- runs: resume, and the smoke budget end to end ---------------------------------------------------


def _budget_file(tmp_path: Path, **overrides: object) -> Path:
    data = yaml.safe_load((CONFIGS / "budgets" / "smoke.yml").read_text())
    data["overrides"].update(overrides)
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_an_interrupted_row_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    budget = _budget_file(tmp_path, **{"train.iterations": 4, "train.checkpoint_every": 2})
    command = [
        "reproduce",
        "ladder",
        "--budget",
        str(budget),
        "--row",
        "bbcu-v1",
        "--runs",
        str(tmp_path / "runs"),
    ]
    env = {**os.environ, "BBCU_TRAIN_FAULT": "kill_after_step:3"}
    killed = subprocess.run([sys.executable, "-m", "bbcu.cli.main", *command], env=env, capture_output=True)
    assert killed.returncode == -9  # SIGKILL after step 3: the checkpoint of step 2 is the newest
    run_dir = tmp_path / "runs" / "ladder" / "bbcu-v1" / "seed0"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["iter_00000002.ckpt"]
    assert not (run_dir / "results.json").exists()
    with caplog.at_level(logging.INFO, logger="bbcu.report.reproduce"):
        assert main(command) == 0
    assert f"resuming {run_dir} from iteration 2" in caplog.text
    result = json.loads((run_dir / "results.json").read_text())
    assert result["iterations"] == 4 and [s["dataset"] for s in result["scores"]] == ["Set5"]
    with open(run_dir / "log.csv") as file:
        steps = [int(r["iteration"]) for r in csv.DictReader(file) if r["metric"] == "train/loss"]
    assert steps[-2:] == [3, 4]
    # Run folders may move (gathered from other machines): a finished run there is neither retrained
    # nor rescored. A changed budget over existing runs is refused in one line naming the key.
    moved = tmp_path / "moved"
    (tmp_path / "runs").rename(moved)
    scored = (moved / "ladder" / "bbcu-v1" / "seed0" / "results.json").read_text()
    assert main([*command[:-1], str(moved)]) == 0
    assert (moved / "ladder" / "bbcu-v1" / "seed0" / "results.json").read_text() == scored
    _budget_file(tmp_path, **{"train.iterations": 5, "train.checkpoint_every": 2})
    capsys.readouterr()
    assert main([*command[:-1], str(moved)]) == 2
    failed = [line for line in capsys.readouterr().out.splitlines() if "failed" in line]
    assert len(failed) == 2 and "differs at 'train.iterations'" in failed[0]  # both seeds


@pytest.mark.slow
def test_smoke_budget_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    command = ["reproduce", "all", "--budget", "smoke", "--runs", str(runs), "--out", str(out)]
    assert main(command) == 0
    names = {p.name for p in out.iterdir()}
    targets = ("sr-x2", "sr-x4", "denoise", "jpeg", "ladder", "k-sweep")
    assert names == {f"{t}.{ext}" for t in targets for ext in ("md", "csv")} | {"k-sweep.png", "claims.md"}
    with open(out / "sr-x2.csv") as file:
        lines = list(csv.DictReader(file))
    assert len(lines) == 10  # every row scored on the one smoke cell, Set5 x2
    for line in lines:
        paper = published_score(line["row"], "sr", "Set5", 2)
        assert paper is not None and float(line["paper_psnr"]) == paper[0]
        assert float(line["diff_psnr"]) == pytest.approx(float(line["psnr"]) - paper[0])
    with open(out / "jpeg.csv") as file:
        (unrestored,) = [line for line in csv.DictReader(file) if line["row"] == "identity"]
    # The JPEG-decoded Classic5 at q 20, scored as it is: 30.12 dB in the ARCNN and DnCNN papers' tables.
    assert (unrestored["dataset"], unrestored["setting"], unrestored["paper_psnr"]) == ("Classic5", "20", "")
    assert float(unrestored["psnr"]) == pytest.approx(30.12, abs=0.005)
    with open(out / "ladder.csv") as file:
        ladder = list(csv.DictReader(file))
    assert {line["seeds"] for line in ladder} == {"2"} and all(line["paper_psnr"] == "" for line in ladder)
    claims = (out / "claims.md").read_text()
    assert "| V2 < V1 < V3 < V4 (unit ladder, x4 SR) | ladder | **" in claims
    assert "not run" not in claims.split("## Residual alignment")[0].replace("not run |", "")
    assert "The data supports" in claims
    # A second call trains nothing and scores nothing: every run is finished and scored.
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("results.json")}
    capsys.readouterr()
    assert main(command) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("results.json")} == before
    shutil.rmtree(runs / "sr-x4" / "bnn")
    # --report-only trains nothing: a row whose run is gone is reported as not run.
    assert main(["reproduce", "sr-x4", *command[2:], "--report-only"]) == 0
    assert "| BNN | not run |" in (out / "sr-x4.md").read_text()
