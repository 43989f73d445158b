"""Comparison grids and the PSNR-versus-OPs chart: layout, captions' numbers, and the two commands."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.archs import create_model
from bbcu.cli import main as cli
from bbcu.cli.plot import measured_point, published_points
from bbcu.core.errors import InvalidArgumentError
from bbcu.data.degradations import rgb_to_y
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.formats.weights import save
from bbcu.imaging.imresize import imresize
from bbcu.report.pictures import Panel, comparison_panels, compose_grid, crop, spread, zoom_nearest

WHITE = 255


def panel_runs(picture: np.ndarray, row: int) -> list[int]:
    """Widths of the runs of non-white columns crossing ``row``: one run per panel."""
    inked = np.any(picture[row] != WHITE, axis=-1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], inked.astype(int), [0]])))
    return list(edges[1::2] - edges[::2])


def first_inked_row(picture: np.ndarray) -> int:
    return int(np.flatnonzero(np.any(picture != WHITE, axis=(1, 2)))[0])


def y_psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """SR protocol PSNR written out: unrounded MATLAB Y, ``border`` pixels cropped, float64."""
    diff = (rgb_to_y(a, rounded=False) - rgb_to_y(b, rounded=False))[border:-border, border:-border]
    return float(10 * np.log10(255**2 / np.mean(diff**2)))


def test_zoom_nearest_is_a_kronecker_product() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(zoom_nearest(image, 3), np.kron(image, np.ones((3, 3), np.uint8)))


def test_crop_is_in_input_pixels_and_checked() -> None:
    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    np.testing.assert_array_equal(crop(image, (1, 2, 3, 1), scale=2), image[4:6, 2:8])
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        crop(image, (3, 3, 3, 3), scale=2)


def test_grid_places_every_panel_in_its_cell() -> None:
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (9, 9, 90), (90, 90, 0)]
    panels = [Panel(np.full((30, 40, 3), c, np.uint8), f"panel {i}") for i, c in enumerate(colours)]
    picture = compose_grid(panels, columns=3)
    assert picture.dtype == np.uint8 and picture.ndim == 3
    assert picture.shape[1] % 3 == 0 and picture.shape[0] % 2 == 0
    cell_height, cell_width = picture.shape[0] // 2, picture.shape[1] // 3
    for index, colour in enumerate(colours):
        ys, xs = np.nonzero(np.all(picture == colour, axis=-1))
        assert (np.ptp(ys) + 1, np.ptp(xs) + 1, ys.size) == (30, 40, 30 * 40)
        assert (ys.min() // cell_height, xs.min() // cell_width) == divmod(index, 3)
        assert xs.min() % cell_width + xs.max() % cell_width + 1 == cell_width  # centred in its cell
    assert panel_runs(picture, first_inked_row(picture) + 15) == [40, 40, 40]


def test_captions_carry_the_protocol_psnr() -> None:
    root = data_root() / "Set5"
    lq = read_image(root / "LR_bicubic" / "X4" / "babyx4.png")[:32, :32]
    gt = read_image(root / "HR" / "baby.png")[:128, :128]
    up = imresize(lq, 4)
    panels = comparison_panels(lq, [("bicubic", up)], gt, task="sr", scale=4, box=(4, 4, 8, 8), zoom=2)
    assert [p.caption.splitlines()[0] for p in panels] == ["input", "bicubic", "ground truth"]
    assert all(p.image.shape == (64, 64, 3) for p in panels)
    assert panels[1].caption.splitlines()[1] == f"{y_psnr(up, gt, 4):.2f} dB"


@pytest.mark.parametrize("engine", ["torch", "packed"])
def test_compare_command_draws_one_panel_per_model(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--engine packed`` runs the binary model packed and leaves bicubic, which it cannot run, on torch."""
    torch.manual_seed(0)
    save(create_model("bbcu-l", scale=4, channels=16, num_units=2), tmp_path / "tiny-x4.safetensors")
    root = data_root() / "Set5"
    code = cli.main(
        [
            "compare",
            str(root / "LR_bicubic" / "X4" / "birdx4.png"),
            "--models",
            "bicubic",
            "--weights",
            str(tmp_path / "tiny-x4.safetensors"),
            "--gt",
            str(root / "HR" / "bird.png"),
            "--crop",
            "10,12,16,16",
            "--zoom",
            "2",
            "--engine",
            engine,
            "-o",
            str(tmp_path / "grid.png"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    grid = read_image(tmp_path / "grid.png")
    assert panel_runs(grid, first_inked_row(grid) + 64) == [128] * 4  # input, bicubic, tiny-x4, ground truth
    assert "4 panels" in out
    assert f"bicubic on torch, tiny-x4 on {engine}" in out


def test_compare_rejects_models_of_different_scales(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lr = data_root() / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    save(create_model("bbcu-l", scale=2, channels=16, num_units=2), tmp_path / "x2.safetensors")
    code = cli.main(
        [
            "compare",
            str(lr),
            "--models",
            f"bicubic,{tmp_path / 'x2.safetensors'}",
            "-o",
            str(tmp_path / "g.png"),
        ]
    )
    assert code == 2 and "do not share one task and scale" in capsys.readouterr().err


def test_published_points_of_set5_x4() -> None:
    """Nine published x4 networks have a Set5 score and a cost (bicubic has no cost, so no point)."""
    points = {p.label: (p.ops_g, p.psnr) for p in published_points("sr", "Set5", 4)}
    assert len(points) == 9 and "Bicubic" not in points
    assert points["BBCU-L"] == (79.20, 31.79)
    assert points["BBCU-M"] == (3.95, 31.54)
    assert points["SRResNet"] == (146.14, 32.16)


@pytest.mark.slow
def test_plot_command_places_our_model_at_its_counted_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"task": "sr", "dataset": "Set5", "scale": 4, "psnr": 30.5, "ssim": 0.86, "images": 5}]
    (tmp_path / "eval.json").write_text(json.dumps(rows))
    chart = tmp_path / "chart.png"
    code = cli.main(
        ["plot", f"bbcu-m={tmp_path / 'eval.json'}", "--scale", "4", "--dataset", "Set5", "-o", str(chart)]
    )
    assert code == 0
    assert "10 points (1 measured here)" in capsys.readouterr().out
    assert read_image(chart, keep_alpha=True).shape[:2] == (825, 1200)
    point = measured_point(f"bbcu-m={tmp_path / 'eval.json'}", "sr", "Set5", 4)
    assert (point.label, point.psnr, point.ours) == ("bbcu-m (ours)", 30.5, True)
    assert point.ops_g == pytest.approx(3.95, abs=0.005)  # the published BBCU-M x4 cost


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("eval.json", "MODEL=RESULT.json"),
        ("bbcu-m=missing.json", "cannot read"),
        ("bbcu-m=eval.json", "no sr result"),
    ],
)
def test_plot_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.json").write_text(
        json.dumps([{"task": "sr", "dataset": "Set14", "scale": 4, "psnr": 28.0}])
    )
    code = cli.main(["plot", spec, "-o", "chart.png"])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "chart.png").exists()


@pytest.mark.parametrize(
    "values",
    [[31.38, 31.42, 31.42, 31.54], [27.0], [30.0, 31.0, 32.0], []],
    ids=["crowded", "one", "apart", "none"],
)
def test_spread_labels_keep_order_and_mean_and_make_room(values: list[float]) -> None:
    gap = 0.05
    moved = spread(values, gap)
    assert all(b - a >= gap - 1e-12 for a, b in itertools.pairwise(moved))
    assert sum(moved) == pytest.approx(sum(values))
    if all(b - a >= gap for a, b in itertools.pairwise(values)):
        assert moved == pytest.approx(values)  # labels with room already stay where they are
