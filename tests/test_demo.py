"""``bbcu demo`` end to end: with a shipped model (a random-weight stand-in), without one, without data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.archs import create_model
from bbcu.cli.main import main
from bbcu.data.degradations import rgb_to_y
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.formats.weights import save
from bbcu.imaging.imresize import imresize, modcrop
from bbcu.run.images import restore

SET5 = data_root() / "Set5"


def reported_psnr(stdout: str, label: str) -> float:
    return float(re.search(rf"^\s+{re.escape(label)}\s+PSNR ([\d.]+) dB", stdout, re.MULTILINE)[1])


def y_psnr_x4(image: np.ndarray, gt: np.ndarray) -> float:
    """The SR protocol written out: unrounded MATLAB Y, 4 border pixels cropped."""
    diff = (rgb_to_y(image, rounded=False) - rgb_to_y(gt, rounded=False))[4:-4, 4:-4]
    return float(10 * np.log10(255**2 / np.mean(diff**2)))


def count_panels(picture: np.ndarray) -> int:
    """Runs of non-white columns through the middle of the first panel row."""
    inked_rows = np.flatnonzero(np.any(picture != 255, axis=(1, 2)))
    row = picture[inked_rows[0] + 128]
    inked = np.any(row != 255, axis=-1).astype(int)
    return int(np.count_nonzero(np.diff(np.concatenate([[0], inked])) == 1))


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("BBCU_MODELS", str(folder))
    return folder


def test_demo_with_a_shipped_model(models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = create_model("bbcu-l", scale=4, channels=16, num_units=4)  # narrow: the pipeline, not quality
    save(model, models / "bbcu-l-x4.safetensors")
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "no shipped" not in stdout
    lq = read_image(SET5 / "LR_bicubic" / "X4" / "butterflyx4.png")
    gt = modcrop(read_image(SET5 / "HR" / "butterfly.png"), 4)
    restored = read_image(out / "butterfly_bbcu-l-x4_x4.png")
    np.testing.assert_array_equal(restored, restore(lq, model=model))
    assert reported_psnr(stdout, "bbcu-l-x4") == pytest.approx(y_psnr_x4(restored, gt), abs=0.005)
    assert reported_psnr(stdout, "bicubic") == pytest.approx(y_psnr_x4(imresize(lq, 4), gt), abs=0.005)
    assert count_panels(read_image(out / "butterfly_comparison.png")) == 4  # input, bicubic, BBCU, truth
    assert str(out / "butterfly_comparison.png") in stdout


def test_demo_without_a_shipped_model_says_so(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    assert "no shipped BBCU model yet: showing bicubic only" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["butterfly_bicubic_x4.png", "butterfly_comparison.png"]
    assert count_panels(read_image(out / "butterfly_comparison.png")) == 3


def test_demo_without_data_uses_a_generated_pattern(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BBCU_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    assert "generated test pattern" in capsys.readouterr().out
    restored = read_image(out / "pattern_bicubic_x4.png")
    assert restored.shape == (256, 256, 3)
