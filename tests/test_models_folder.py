"""A models folder of the user's: official ESRGAN-family checkpoints (random weights written in the official
layouts by tests/test_esrgan.py's builders) and bbcu weights files, offered by ``bbcu compare``, ``bbcu
serve``, ``bbcu restore`` and ``bbcu eval`` and computing what the reference network computes."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.archs import create_model
from bbcu.cli.main import main
from bbcu.formats.image_io import read_image, write_image
from bbcu.formats.weights import save
from bbcu.metrics.complexity import count_cost
from bbcu.report.pictures import comparison_panels, compose_grid
from bbcu.run import zoo
from bbcu.serve.catalog import Catalog
from bbcu.serve.limits import RequestError
from test_esrgan import (
    BLOCKS,
    CHANNELS,
    GROWTH,
    basicsr_state,
    in_layout,
    restored_by_reference,
    write_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"channels": CHANNELS, "blocks": BLOCKS, "growth": GROWTH, "in_channels": 3}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two x4 checkpoints (original ESRGAN layout, legacy file; BasicSR with both entries), one x2
    Real-ESRGAN-style file, a bbcu weights file, an official BBCU checkpoint and a text file."""
    models = tmp_path / "models"
    models.mkdir()
    write_checkpoint(models / "RRDB_PSNR_x4.pth", in_layout(basicsr_state(4, seed=1), "esrgan"), None, True)
    state = basicsr_state(4, seed=2)
    torch.save({"params": state, "params_ema": state}, models / "RRDB_ESRGAN_x4.pth")
    write_checkpoint(models / "RealESRGAN_x2plus.pth", basicsr_state(2, seed=3), "params_ema", False)
    save(create_model("bbcu-l", scale=2, channels=8, num_units=2), models / "mine-x2.safetensors")
    torch.save({"params": {"conv_first.weight": torch.zeros(64, 3, 3, 3)}}, models / "BBCU_L_x4.pth")
    (models / "notes.txt").write_text("not a model")
    return models


def picture(height: int = 6, width: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_the_folder_is_read_by_layout_and_file_name(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        found = {m.name: (m.architecture, m.task, m.scale, m.model_kwargs) for m in zoo.folder_models(folder)}
    assert found == {
        "RRDB_PSNR_x4": ("rrdbnet", "sr", 4, {"scale": 4, **TINY}),  # PSNR weights: published row applies
        "RRDB_ESRGAN_x4": ("esrgan", "sr", 4, {"scale": 4, **TINY}),
        "RealESRGAN_x2plus": ("esrgan", "sr", 2, {"scale": 2, **TINY}),
        "mine-x2": ("bbcu-l", "sr", 2, {"scale": 2, "channels": 8, "num_units": 2}),
    }
    assert "BBCU_L_x4.pth is not an ESRGAN/RRDBNet checkpoint" in caplog.text  # skipped, said why


def test_serve_offers_the_folder_and_runs_its_checkpoints(folder: Path) -> None:
    catalog = Catalog.discover(folder)
    offered = {c.name: c for c in catalog.choices}
    assert {"RRDB_PSNR_x4", "RRDB_ESRGAN_x4", "RealESRGAN_x2plus", "mine-x2"} <= set(offered)
    psnr = offered["RRDB_PSNR_x4"]
    assert (psnr.path, psnr.engines, psnr.file_bytes) == (
        folder / "RRDB_PSNR_x4.pth",
        ("torch",),
        (folder / "RRDB_PSNR_x4.pth").stat().st_size,
    )
    expected_cost = count_cost(create_model("rrdbnet", scale=4, **TINY))
    described = psnr.describe()
    assert (described["params_k"], described["ops_g_320x180"]) == (
        round(expected_cost.params_k, 2),
        round(expected_cost.ops_g, 3),
    )
    with pytest.raises(RequestError, match="unknown model"):  # a client names entries, never files
        catalog.choose(str(folder / "RRDB_PSNR_x4.pth"), "sr", 4, "torch")
    network = catalog.network(catalog.choose("RRDB_PSNR_x4", "sr", 4, "torch"), "torch").network
    x = torch.from_numpy(picture()).permute(2, 0, 1)[None].float() / 255
    state = basicsr_state(4, seed=1)
    with torch.no_grad():
        restored = network(x)
    ours = np.clip(np.round(restored[0].permute(1, 2, 0).numpy() * 255), 0, 255)
    np.testing.assert_allclose(ours, restored_by_reference(state, picture(), 4), atol=1)


def test_serve_reads_official_checkpoints_in_bbcu_models_too(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    names = [c.name for c in Catalog.discover().choices]
    assert names.count("mine-x2") == 1 and "RRDB_ESRGAN_x4" in names  # shipped once, official added


def test_serve_refuses_a_missing_models_folder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", "--models-dir", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err == f"bbcu serve: error: models folder not found: {tmp_path / 'absent'}\n"


def test_restore_finds_a_checkpoint_in_bbcu_models_by_name(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    write_image(tmp_path / "in.png", picture())
    assert (
        main(["restore", str(tmp_path / "in.png"), "--model", "RRDB_ESRGAN_x4", "-o", str(tmp_path / "o")])
        == 0
    )
    ours = read_image(tmp_path / "o" / "in.png").astype(int)
    assert np.abs(ours - restored_by_reference(basicsr_state(4, seed=2), picture(), 4)).max() <= 1


def test_compare_shows_every_folder_model_at_the_scale(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lq = picture(12, 12)
    write_image(tmp_path / "in.png", lq)
    grid = tmp_path / "grid.png"
    crop = ["--crop", "2,2,8,8", "--zoom", "1"]
    assert (
        main(["compare", str(tmp_path / "in.png"), "--models-dir", str(folder), *crop, "-o", str(grid)]) == 0
    )
    assert "(RRDB_ESRGAN_x4 on torch, RRDB_PSNR_x4 on torch)" in capsys.readouterr().out  # x4 only
    outputs = [
        (name, restored_by_reference(basicsr_state(4, seed=seed), lq, 4))
        for name, seed in (("RRDB_ESRGAN_x4", 2), ("RRDB_PSNR_x4", 1))
    ]
    panels = comparison_panels(lq, outputs, None, task="sr", scale=4, box=(2, 2, 8, 8), zoom=1)
    ours, expected = read_image(grid).astype(int), compose_grid(panels, None).astype(int)
    assert ours.shape == expected.shape and np.abs(ours - expected).max() <= 1

    argv = [
        "compare",
        str(tmp_path / "in.png"),
        "--models-dir",
        str(folder),
        "--models",
        "mine-x2,bicubic",
        "--scale",
        "2",
    ]
    assert main([*argv, *crop, "-o", str(grid)]) == 0
    assert "(mine-x2 on torch, bicubic on torch)" in capsys.readouterr().out


def test_eval_scores_an_official_checkpoint_beside_the_published_row(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The direct path scores what `bbcu convert` + eval scores, and prints ESRGAN's RRDB_PSNR row."""
    converted = tmp_path / "converted.safetensors"
    assert (
        main(["convert", str(folder / "RRDB_PSNR_x4.pth"), "--model", "rrdbnet", "-o", str(converted)]) == 0
    )
    rows = []
    for weights in (folder / "RRDB_PSNR_x4.pth", converted):
        capsys.readouterr()
        argv = ["eval", "--task", "sr", "--weights", str(weights), "--datasets", "Set5", "--threads", "1"]
        assert main([*argv, "--csv", str(tmp_path / "e.csv")]) == 0
        out = capsys.readouterr().out
        assert "RRDB (ESRGAN, PSNR) (rrdbnet), sr x4" in out
        rows.append(re.search(r"^Set5\s+5\s+(\d+\.\d\d\s+\d\.\d{4})\s+\|\s+32\.73\s+0\.9011$", out, re.M)[1])
    assert rows[0] == rows[1]
