"""``bbcu eval`` end to end (in process) against known scores, its CSV and errors; and
``bbcu.data.published`` against docs/published.md, an independent transcription of the paper's tables."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bbcu
from bbcu.cli.main import main
from bbcu.core.constants import SETTING_NAMES
from bbcu.data.published import PUBLISHED_DATASETS, ROW_LABELS, published_cost, published_score
from bbcu.data.root import data_root
from bbcu.formats.weights import save

# Bicubic on the official Set5 LR files and the unrestored Classic5 JPEGs, under the protocols of
# docs/protocols.md (the standard values other toolkits report, e.g. BasicSR/KAIR).
BICUBIC_SET5 = {2: (33.67, 0.9303), 4: (28.43, 0.8111)}
CLASSIC5_Q10 = {"psnr": 27.82, "psnrb": 25.21}


def _eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["eval", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_bicubic_set5_matches_the_known_scores(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["--task", "sr", "--model", "bicubic", "--datasets", "Set5", "--scale", "2,4", "--json"]
    status, out, _ = _eval(capsys, *args, "--csv", str(tmp_path / "s.csv"))
    assert status == 0
    rows = json.loads(out)
    assert [(r["dataset"], r["scale"], r["images"]) for r in rows] == [("Set5", 2, 5), ("Set5", 4, 5)]
    for row in rows:
        psnr, ssim = BICUBIC_SET5[row["scale"]]
        assert row["psnr"] == pytest.approx(psnr, abs=0.01)
        assert row["ssim"] == pytest.approx(ssim, abs=0.0005)
    with (tmp_path / "s.csv").open() as handle:
        per_image = list(csv.DictReader(handle))
    assert len(per_image) == 10
    for row in rows:
        scores = [float(r["psnr"]) for r in per_image if int(r["scale"]) == row["scale"]]
        assert np.mean(scores) == pytest.approx(row["psnr"], abs=1e-5)


@pytest.mark.slow
def test_packed_engine_scores_like_the_simulated_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The packed engine must give the PyTorch simulation's pixels, so its scores agree to rounding."""
    torch.manual_seed(0)
    model = bbcu.create_model("bbcu-m", scale=2)
    save(model, tmp_path / "m.safetensors")
    rows = {}
    for engine in ("torch", "packed"):
        args = ["--task", "sr", "--weights", str(tmp_path / "m.safetensors"), "--datasets", "Set5"]
        status, out, _ = _eval(capsys, *args, "--engine", engine, "--json", "--csv", str(tmp_path / "e.csv"))
        assert status == 0
        rows[engine] = json.loads(out)[0]
    assert rows["packed"]["psnr"] == pytest.approx(rows["torch"]["psnr"], abs=1e-3)
    assert rows["packed"]["ssim"] == pytest.approx(rows["torch"]["ssim"], abs=1e-5)


def test_packed_model_on_the_wrong_task_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A packed model has no torch parameters, but it is still a learned SR model, not a JPEG one."""
    save(bbcu.create_model("bbcu-l", scale=2, channels=8, num_units=1), tmp_path / "m.safetensors")
    args = ["--task", "jpeg", "--weights", str(tmp_path / "m.safetensors"), "--datasets", "Classic5"]
    status, out, err = _eval(capsys, *args, "--quality", "10", "--engine", "packed")
    assert (status, out) == (2, "")
    assert err == "bbcu eval: error: model bbcu-l is a sr model; it cannot be evaluated with --task jpeg\n"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse)


def test_unrestored_jpeg_on_classic5_and_its_csv_and_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default CSV goes under ./results/eval
    args = ["--task", "jpeg", "--model", "identity", "--datasets", "Classic5", "--quality", "10"]
    status, out, _ = _eval(capsys, *args, "--json", "--save-images", "saved")
    assert status == 0
    (row,) = json.loads(out)
    assert (row["dataset"], row["quality"], row["images"]) == ("Classic5", 10, 5)
    assert row["psnr"] == pytest.approx(CLASSIC5_Q10["psnr"], abs=0.01)
    assert row["psnrb"] == pytest.approx(CLASSIC5_Q10["psnrb"], abs=0.01)
    with (tmp_path / "results" / "eval" / "identity_jpeg_q10.csv").open() as handle:
        per_image = list(csv.DictReader(handle))
    assert [r["image"] for r in per_image] == ["baboon", "barbara", "boats", "lena", "peppers"]
    for record in per_image:
        # Independent rebuild: Pillow JPEG of the grey image, PSNR by its textbook formula.
        gt = np.asarray(Image.open(data_root() / "Classic5" / f"{record['image']}.png"))
        buffer = io.BytesIO()
        Image.fromarray(gt).save(buffer, format="JPEG", quality=10)
        decoded = np.asarray(Image.open(buffer))
        assert float(record["psnr"]) == pytest.approx(_psnr(decoded, gt), abs=1e-5)
        saved = np.asarray(
            Image.open(tmp_path / "saved" / "identity" / "Classic5" / "q10" / f"{record['image']}.png")
        )
        np.testing.assert_array_equal(saved, decoded)


def test_table_shows_the_published_numbers_beside_ours(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["--task", "sr", "--model", "bicubic", "--datasets", "Set5", "--scale", "4"]
    status, out, _ = _eval(capsys, *args, "--csv", str(tmp_path / "t.csv"))
    assert status == 0
    assert re.search(r"Set5\s+5\s+28\.43\s+0\.8111\s+\|\s+28\.63\s+0\.8128", out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--task", "sr", "--model", "bicubic", "--datasets", "Nowhere", "--scale", "2"],
            "'Nowhere' not found",
        ),
        (["--task", "sr", "--model", "bicubic", "--datasets", "Set5", "--scale", "2,x"], "--scale takes"),
        (["--task", "jpeg", "--model", "identity", "--datasets", "Classic5", "--quality", "0"], "positive"),
        (["--task", "jpeg", "--model", "identity", "--datasets", "Classic5", "--quality", "101"], "1..100"),
        (["--task", "sr", "--model", "no-such-net", "--datasets", "Set5"], "unknown model 'no-such-net'"),
        (["--task", "sr", "--model", "dncnn3", "--datasets", "Set5", "--scale", "1"], "is a jpeg model"),
        (["--task", "sr", "--weights", "missing.safetensors", "--datasets", "Set5"], "not found"),
        (["--task", "sr", "--model", "bicubic", "--datasets", "Set5", "--threads", "0"], "--threads"),
    ],
)
def test_user_errors_are_one_line_with_status_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    csv_path = tmp_path / "never.csv"
    status, _, err = _eval(capsys, *args, "--csv", str(csv_path))
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("bbcu eval: error")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in err
    assert not csv_path.exists()  # no partial output


# --- bbcu.data.published against docs/published.md ------------------------------------------------

PUBLISHED_DOC = Path(__file__).resolve().parents[1] / "docs" / "published.md"
TASK_OF_TITLE = {
    "Super-resolution": "sr",
    "Colour denoising": "denoise",
    "JPEG artifact reduction (grey)": "jpeg",
}
# The paper's tables: SR 2 scales x 10 rows x 5 sets, plus ESRGAN's RRDB row at x4; denoising 3 sigmas
# x 8 x 3; JPEG 4 qualities x 8 x 2.
EXPECTED_CELLS = {"sr": 2 * 10 * 5 + 5, "denoise": 3 * 8 * 3, "jpeg": 4 * 8 * 2}
# Every setting a published cell could have, wider than the paper's, so a stray cell is found too.
CANDIDATE_SETTINGS = {"sr": (2, 3, 4), "denoise": (15, 25, 50), "jpeg": (10, 20, 30, 40)}
ScoreCell = tuple[str, int, str, str, str, float, float | None]
"""(task, setting, paper row, model, dataset, PSNR, SSIM or None) of one cell of docs/published.md."""


def _markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each table of a markdown page under the heading above it, as rows of {column title: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, header = "", None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line.strip()) <= set("|-"):  # not the |---| line under the header
            tables.setdefault(heading, []).append(dict(zip(header, cells, strict=True)))
    return tables


def _doc_scores() -> list[ScoreCell]:
    """Every score cell of the "<task>, <setting name> <value>" tables of docs/published.md."""
    cells = []
    for heading, rows in _markdown_tables(PUBLISHED_DOC.read_text()).items():
        if not (title := re.fullmatch(r"(.+), (scale|sigma|quality) (\d+)", heading)):
            continue
        task, setting = TASK_OF_TITLE[title[1]], int(title[3])
        assert SETTING_NAMES[task] == title[2], heading
        for row in rows:
            label, model = row.pop("paper row"), row.pop("model").strip("`")
            for dataset, cell in row.items():
                psnr, *ssim = (float(number) for number in cell.split(" / "))
                cells.append((task, setting, label, model, dataset, psnr, ssim[0] if ssim else None))
    return cells


def _doc_costs() -> dict[tuple[str, str, int], tuple[float, float]]:
    """(task, model, scale) -> (OPs G, Params K) of the Cost table of docs/published.md."""
    rows = _markdown_tables(PUBLISHED_DOC.read_text())["Cost"]
    return {
        (row["task"], row["model"].strip("`"), 1 if row["scale"] == "-" else int(row["scale"])): (
            float(row["OPs (G)"]),
            float(row["Params (K)"]),
        )
        for row in rows
    }


@pytest.mark.parametrize("task", sorted(SETTING_NAMES))
def test_published_scores_match_the_docs_both_ways(task: str) -> None:
    cells = [cell for cell in _doc_scores() if cell[0] == task]
    assert len(cells) == EXPECTED_CELLS[task]
    for _, setting, label, model, dataset, psnr, ssim in cells:
        assert ROW_LABELS[task][model] == label
        assert published_score(model, task, dataset, setting) == (psnr, ssim), (model, dataset, setting)
    listed = {(model, dataset, setting) for _, setting, _, model, dataset, _, _ in cells}
    datasets = {dataset for _, dataset, _ in listed} | set(PUBLISHED_DATASETS[task])
    stored = {
        (model, dataset, setting)
        for model in ROW_LABELS[task]
        for dataset in datasets
        for setting in CANDIDATE_SETTINGS[task]
        if published_score(model, task, dataset, setting) is not None
    }
    assert stored == listed  # nothing in bbcu.data.published that docs/published.md does not list


@pytest.mark.parametrize("task", sorted(SETTING_NAMES))
def test_published_costs_match_the_docs_both_ways(task: str) -> None:
    listed = {key: cost for key, cost in _doc_costs().items() if key[0] == task}
    assert len(listed) == {"sr": 2 * 9, "denoise": 8, "jpeg": 8}[task]  # bicubic has no cost
    for (_, model, scale), cost in listed.items():
        assert published_cost(model, task, scale) == cost, (model, scale)
    stored = {
        (task, model, scale)
        for model in ROW_LABELS[task]
        for scale in (CANDIDATE_SETTINGS["sr"] if task == "sr" else (1,))
        if published_cost(model, task, scale) is not None
    }
    assert stored == set(listed)  # x3 and bicubic have no published cost, here or there
