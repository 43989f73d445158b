"""Cost accounting: every published OPs/Params figure, a hand-computed tiny model, and the CLI."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from bbcu.archs import create_model, list_models, model_entry
from bbcu.binary.conv import BinaryConv2d
from bbcu.cli.main import main
from bbcu.core.constants import SR_SCALES
from bbcu.data.published import published_cost
from bbcu.metrics.complexity import count_cost
from helpers import image_models

# Agreement with a printed figure: within 0.5 %, or within half a unit of its last printed digit (the
# paper prints OPs to 0.01 G and Params to 1 K, so e.g. 24.19 K and 0.6636 G are printed as 24 and 0.66).
RELATIVE_TOLERANCE = 0.005
HALF_PRINTED_UNIT_OPS_G = 0.005
HALF_PRINTED_UNIT_PARAMS_K = 0.5


def published_rows() -> list[tuple[str, int]]:
    """(model, scale) for every cost the paper prints or implies (scale 1 for denoising and JPEG)."""
    rows = []
    for name in list_models():
        task = model_entry(name).task
        for scale in (2, 4) if task == "sr" else (1,):
            if published_cost(name, task, scale) is not None:
                rows.append((name, scale))
    return rows


ZOO_DOC = Path(__file__).resolve().parents[1] / "docs" / "zoo.md"


def build(name: str, scale: int) -> nn.Module:
    return create_model(name, scale=scale) if model_entry(name).task == "sr" else create_model(name)


@functools.cache
def cost_of(name: str, scale: int) -> tuple[float, float]:
    """(OPs G, Params K) at 320x180, cached: the paper test and the zoo test ask for the same models."""
    report = count_cost(build(name, scale))
    return report.ops_g, report.params_k


def test_every_published_table_row_is_covered() -> None:
    """9 SR networks per published scale (bicubic has no cost), 8 denoisers, 8 JPEG networks."""
    rows = published_rows()
    assert len([r for r in rows if r[1] == 2]) == 9
    assert len([r for r in rows if r[1] == 4]) == 9
    assert len([r for r in rows if r[1] == 1]) == 16


@pytest.mark.slow
@pytest.mark.parametrize(("name", "scale"), published_rows())
def test_cost_matches_the_paper(name: str, scale: int) -> None:
    task = model_entry(name).task
    published_ops_g, published_params_k = published_cost(name, task, scale)
    ops_g, params_k = cost_of(name, scale)
    assert ops_g == pytest.approx(published_ops_g, rel=RELATIVE_TOLERANCE, abs=HALF_PRINTED_UNIT_OPS_G)
    assert params_k == pytest.approx(
        published_params_k, rel=RELATIVE_TOLERANCE, abs=HALF_PRINTED_UNIT_PARAMS_K
    )


def zoo_rows() -> dict[str, list[str]]:
    """docs/zoo.md's cost cells ("OPs / Params") per model row."""
    rows = {}
    for line in ZOO_DOC.read_text().splitlines():
        if match := re.match(r"\| `([a-z0-9-]+)` \|", line):
            rows[match[1]] = re.findall(r"\| (\d+\.\d\d / \d+\.\d) (?=\|)", line)
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("name", image_models())
def test_zoo_doc_lists_the_model_with_its_measured_cost(name: str) -> None:
    """The table has the x2 / x3 / x4 columns (or one for scale-1 tasks); a scale the network is not built
    for (RRDBNet x3) is a ``-`` cell, which the row skips, and other scales (RRDBNet x1) are not shown."""
    scales = model_entry(name).scales
    shown = [s for s in scales if s in SR_SCALES] if model_entry(name).task == "sr" else scales
    expected = [f"{ops_g:.2f} / {params_k:.1f}" for ops_g, params_k in (cost_of(name, s) for s in shown)]
    assert zoo_rows().get(name) == expected


class TinyNet(nn.Module):
    """Every shape case the counter must get right: bias, no bias, binary, stride, groups, resampling."""

    in_channels = 3
    scale = 1

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)  # bias
        self.binary = BinaryConv2d(8, 8, 3, bias=True)  # bias not counted (per-channel float)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.grouped = nn.Conv2d(16, 16, 1, groups=4)
        self.up = BinaryConv2d(16, 64, 3)
        self.tail = nn.Conv2d(16, 2, (1, 3), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.binary(self.head(x))
        f = self.binary(f)  # a second call: MACs again, weights once
        f = self.grouped(self.down(f))
        return self.tail(nn.functional.pixel_shuffle(self.up(f), 2))


@pytest.mark.slow
def test_tiny_model_against_hand_formula() -> None:
    w, h = 10, 7
    hd, wd = 4, 5  # stride-2 output: ceil(7/2), ceil(10/2)
    fp_macs = h * w * 8 * 3 * 9 + hd * wd * 16 * 8 * 9 + hd * wd * 16 * 4 + (2 * hd) * (2 * wd) * 2 * 16 * 3
    binary_macs = 2 * h * w * 8 * 8 * 9 + hd * wd * 64 * 16 * 9
    fp_params = (8 * 3 * 9 + 8) + 16 * 8 * 9 + (16 * 4 + 16) + (2 * 16 * 3 + 2)
    binary_params = 8 * 8 * 9 + 64 * 16 * 9

    report = count_cost(TinyNet(), (w, h))

    assert (report.fp_macs, report.binary_macs) == (fp_macs, binary_macs)
    assert (report.fp_params, report.binary_params) == (fp_params, binary_params)
    assert report.ops_g == pytest.approx((fp_macs + binary_macs / 64) / 1e9)
    assert report.params_k == pytest.approx((fp_params + binary_params / 32) / 1e3)
    names = ["head", "binary", "binary", "down", "grouped", "up", "tail"]
    assert [layer.name for layer in report.layers] == names
    assert [layer.kind for layer in report.layers] == ["fp", "binary", "binary", "fp", "fp", "binary", "fp"]
    assert report.layers[3].out_hw == (hd, wd)
    assert report.layers[6].out_hw == (2 * hd, 2 * wd)
    assert report.layers[2].params == 0


@pytest.mark.slow
def test_counting_leaves_the_model_untouched() -> None:
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_cost(model, (6, 6))
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.head._forward_hooks


def test_cli_json_matches_the_counter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["complexity", "bbcu-m", "--scale", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ops_g, params_k = cost_of("bbcu-m", 2)
    assert (out["model"], out["scale"], out["size"]) == ("bbcu-m", 2, "320x180")
    assert (out["ops_g"], out["params_k"]) == (pytest.approx(ops_g), pytest.approx(params_k))
    assert out["ops_g"] == pytest.approx((out["fp_macs"] + out["binary_macs"] / 64) / 1e9)
    assert sum(layer["macs"] for layer in out["layers"]) == out["fp_macs"] + out["binary_macs"]


def test_cli_size_option(capsys: pytest.CaptureFixture[str]) -> None:
    """OPs scale with the input area for a network of stride-1 convolutions and fixed upscaling."""
    assert main(["complexity", "dncnn3-bbcu", "--size", "160x90", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == "160x90"
    assert out["ops_g"] == pytest.approx(cost_of("dncnn3-bbcu", 1)[0] / 4)


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["complexity", "dncnn-bbcu"]) == 0
    out = capsys.readouterr().out
    assert "0.80 G OPs" in out
    assert "binary" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["complexity", "no-such-model"], "unknown model"),
        (["complexity", "bbcu-l", "--size", "320by180"], "--size"),
        (["complexity", "bbcu-l", "--size", "0x180"], "--size"),
        (["complexity", "dncnn-bbcu", "--scale", "2"], "SR models only"),
    ],
)
def test_cli_user_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "\n" not in err
