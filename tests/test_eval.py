"""``bbcu eval`` end to end (in process) against known scores, its CSV and errors; and ``bbcu.published``
against the tables of DESIGN.md, re-parsed here."""

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
from bbcu.data.root import data_root
from bbcu.formats.weights import save
from bbcu.metrics.published import ROW_LABELS, SETTING_NAMES, published_cost, published_score

# Bicubic on the official Set5 LR files and the unrestored Classic5 JPEGs, under the protocols of
# DESIGN.md section 3 (the standard values other toolkits report, e.g. BasicSR/KAIR).
BICUBIC_SET5 = {2: (33.67, 0.9303), 4: (28.43, 0.8111)}
CLASSIC5_Q10 = {"psnr": 27.82, "psnrb": 25.21}


def _eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["eval", *args])
    out, err = capsys.readouterr()
    return status, out, err


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


# --- bbcu.published against DESIGN.md ---------------------------------------------------------------

_NUMBER = r"\d+\.\d+|\.\d+|\d+"
Row = tuple[str, int | None, tuple[float, float] | None, list[tuple[str, str]]]


def _design_tables() -> dict[str, list[Row]]:
    """Rows of DESIGN.md section 4: task -> [(label, scale, (ops, params) or None, [(dataset, cell)])]."""
    text = (data_root().parent / "DESIGN.md").read_text()
    section = text.split("## 4.", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[Row]] = {"sr": [], "denoise": [], "jpeg": []}
    task, scale, datasets = "sr", None, []
    for line in section.splitlines():
        if not line.startswith("- ") and ":" in line:
            task = "sr" if line.startswith("SR") else "denoise" if line.startswith("Colour") else "jpeg"
            scale = int(line[4]) if task == "sr" else None
            columns = line.rsplit(":", 1)[1].strip()
            datasets = [d.strip() for d in columns.split("|")] if columns else datasets
        elif row := re.match(r"- ([\w-]+)(?: \(([\d.]+) / (\d+)\))?: (.*)", line):
            cost = (float(row[2]), float(row[3])) if row[2] else None
            cells = [c.strip() for c in row[4].split("|")]
            tables[task].append((row[1], scale, cost, list(zip(datasets, cells, strict=True))))
    return tables


def _cells(task: str, cell: str, scale: int | None) -> list[tuple[int | None, float, float | None]]:
    """(setting, psnr, ssim) of one table cell."""
    numbers = [float(n) for n in re.findall(_NUMBER, cell)]
    if task == "sr":
        return [(scale, numbers[0], numbers[1])]
    if task == "denoise":
        return list(zip((15, 25, 50), numbers, [None] * 3, strict=True))
    return [(q, numbers[2 * i], numbers[2 * i + 1]) for i, q in enumerate((10, 20, 30, 40))]


@pytest.mark.parametrize("task", sorted(SETTING_NAMES))
def test_published_numbers_match_design_md(task: str) -> None:
    model_of = {label: name for name, label in ROW_LABELS[task].items()}
    checked = 0
    datasets: set[str] = set()
    for label, scale, _, cells in _design_tables()[task]:
        model = model_of[label]
        for dataset, cell in cells:
            datasets.add(dataset)
            for setting, psnr, ssim in _cells(task, cell, scale):
                assert published_score(model, task, dataset, setting) == (psnr, ssim), (
                    model,
                    dataset,
                    setting,
                )
                checked += 1
    expected_cells = {"sr": 2 * 10 * 5, "denoise": 8 * 3 * 3, "jpeg": 8 * 2 * 4}[task]
    assert checked == expected_cells
    settings = {"sr": (2, 3, 4), "denoise": (15, 25, 50), "jpeg": (10, 20, 30, 40)}[task]
    stored = sum(
        published_score(model, task, dataset, setting) is not None
        for model in ROW_LABELS[task]
        for dataset in datasets
        for setting in settings
    )
    assert stored == checked  # nothing in published.py that DESIGN.md does not list


@pytest.mark.parametrize("task", sorted(SETTING_NAMES))
def test_published_costs_match_design_md(task: str) -> None:
    model_of = {label: name for name, label in ROW_LABELS[task].items()}
    rows = _design_tables()[task]
    shared = {scale: cost for label, scale, cost, _ in rows if label.startswith("BBCU") and label != "BBCU-M"}
    for label, scale, cost, _ in rows:
        expected = cost or (None if label == "Bicubic" else shared[scale])
        assert published_cost(model_of[label], task, scale or 1) == expected, label
    assert published_cost("bbcu-l", "sr", 3) is None  # x3 is not in the paper
