"""bbcu-rrdb: the binary RRDB in BBCU-L's frame.

Its forward pass is checked against a second implementation written from the method text with plain
``F.conv2d`` on the module's own tensors; its cost against closed-form counts; its residual choice on a
hand-computed case; and the block count against BBCU-L's x4 OPs, the budget it is built to stay under.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import bbcu
from bbcu.archs.bbcu_rrdb import BinaryDenseConv, fold_channels
from bbcu.cli.main import main
from bbcu.core.errors import InvalidArgumentError
from bbcu.formats.weights import save
from bbcu.metrics.complexity import count_cost
from bbcu.run.resolve import resolve_model
from bbcu.train.config import config_to_dict, load_config
from helpers import randomized


def test_fold_average_is_the_mean_of_the_channel_slices() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)  # channels 0..5 folded to 2: (0+2+4)/3, (1+3+5)/3
    assert fold_channels(x, 2).flatten().tolist() == [2.0, 3.0]


def test_a_dense_conv_with_a_silent_branch_passes_its_residual_through() -> None:
    """Zero latent weights make alpha 0, so the branch is RPReLU(0) = 0 at init: only the residual is left."""
    x = torch.randn(1, 6, 5, 5)
    for first_channels, expected in ((False, (x[:, 0:2] + x[:, 2:4] + x[:, 4:6]) / 3), (True, x[:, :2])):
        unit = BinaryDenseConv(6, 2, first_channels=first_channels)
        torch.nn.init.zeros_(unit.conv.weight)
        torch.testing.assert_close(unit(x), expected)


def reference_forward(state: dict[str, torch.Tensor], lr: torch.Tensor, scale: int, k: float) -> torch.Tensor:
    """bbcu-rrdb from docs/method.md, on the state dict alone (no module of the package runs)."""

    def conv(x: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.conv2d(x, state[f"{prefix}.weight"], state.get(f"{prefix}.bias"), padding=1)

    def lrelu(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.1)

    def unit_branch(x: torch.Tensor, prefix: str) -> torch.Tensor:
        signs = torch.where(x + state[f"{prefix}.shift.bias"] >= 0, 1.0, -1.0)
        weight = state[f"{prefix}.conv.weight"]
        alpha = weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        y = F.conv2d(signs, alpha * torch.where(weight >= 0, 1.0, -1.0), padding=1)
        y = y + state[f"{prefix}.act.gamma"]
        y = torch.where(y >= 0, y, state[f"{prefix}.act.beta"].view(1, -1, 1, 1) * y)
        return y + state[f"{prefix}.act.zeta"]

    def dense_block(x: torch.Tensor, prefix: str) -> torch.Tensor:
        features = x
        for index in range(1, 5):
            out = state[f"{prefix}.conv{index}.conv.weight"].shape[0]
            chunks = features.shape[1] // out
            residual = sum(features[:, j * out : (j + 1) * out] for j in range(chunks)) / chunks
            features = torch.cat([features, residual + unit_branch(features, f"{prefix}.conv{index}")], 1)
        return x + 0.2 * unit_branch(features, f"{prefix}.conv5")

    x = lr * k
    f = lrelu(conv(x, "conv_first"))
    block = 0
    while f"body.{block}.rdb1.conv1.conv.weight" in state:
        start = f
        for rdb in (1, 2, 3):
            f = dense_block(f, f"body.{block}.rdb{rdb}")
        f, block = start + 0.2 * f, block + 1
    for stage, factor in enumerate([2, 2] if scale == 4 else [scale]):
        f = lrelu(F.pixel_shuffle(conv(f, f"upsampler.{stage}.conv"), factor))
    y = conv(lrelu(conv(f, "conv_hr")), "conv_last")
    return (y + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)) / k


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_matches_the_reference_written_from_the_method(scale: int) -> None:
    model = randomized("bbcu-rrdb", scale=scale, channels=8, growth=4, blocks=2)
    lr = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference_forward(model.state_dict(), lr, scale, model.k)
        torch.testing.assert_close(model(lr), expected, rtol=1e-5, atol=1e-5)


def closed_form_cost(scale: int, channels: int, blocks: int, growth: int) -> tuple[int, int, int, int]:
    """(fp MACs, binary MACs, fp params, binary weights) at 320x180, from the layer list in the docstring."""
    pixels, c = 320 * 180, channels
    dense_weights = 9 * (sum((c + i * growth) * growth for i in range(4)) + (c + 4 * growth) * c)
    binary_weights = blocks * 3 * dense_weights
    fp_params = (27 * c + c) + (9 * c * c + c) + (9 * c * 3 + 3)  # conv_first, conv_hr, conv_last
    fp_macs = pixels * 27 * c
    size = 1
    for factor in [2, 2] if scale == 4 else [scale]:
        fp_params += 9 * c * factor**2 * c + factor**2 * c
        fp_macs += pixels * size**2 * 9 * c * factor**2 * c
        size *= factor
    fp_macs += pixels * scale**2 * 9 * c * (c + 3)  # conv_hr and conv_last on the output grid
    return fp_macs, pixels * binary_weights, fp_params, binary_weights


@pytest.mark.parametrize(
    ("scale", "kwargs"),
    [(4, {}), (2, {}), (3, {}), (4, {"blocks": 2}), (2, {"channels": 32, "growth": 16, "blocks": 3})],
)
def test_cost_is_the_closed_form_count(scale: int, kwargs: dict) -> None:
    sizes = {"channels": 64, "blocks": 1, "growth": 32, **kwargs}
    with bbcu.archs.registry.without_initialisation(shapes_only=True):
        report = count_cost(bbcu.create_model("bbcu-rrdb", scale=scale, **kwargs))
    measured = (report.fp_macs, report.binary_macs, report.fp_params, report.binary_params)
    assert measured == closed_form_cost(scale, **sizes)


def test_one_block_is_the_most_that_stays_within_bbcu_l_x4_ops() -> None:
    """The registered block count: one RRDB is under BBCU-L x4 (79.19 G), two are over it."""
    fp_macs, binary_macs, _, _ = closed_form_cost(4, 64, 1, 32)
    assert (fp_macs + binary_macs / 64) / 1e9 == pytest.approx(78.7802112)
    ops = {b: count_cost(bbcu.create_model("bbcu-rrdb", blocks=b)).ops_g for b in (1, 2)}
    bbcu_l = count_cost(bbcu.create_model("bbcu-l", scale=4)).ops_g
    assert ops[1] <= bbcu_l < ops[2]


def test_growth_that_does_not_divide_the_width_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="growth dividing channels"):
        bbcu.create_model("bbcu-rrdb", channels=64, growth=24)


def test_the_packed_engine_refuses_it_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "rrdb.safetensors"
    save(bbcu.create_model("bbcu-rrdb", scale=2, channels=8, growth=4), weights)
    args = ["export", str(weights), "-o", str(tmp_path / "rrdb.bbcu")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the packed format supports bbcu-l, bbcu-m" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rrdb.safetensors"]
    with pytest.raises(InvalidArgumentError, match="the packed format supports"):
        resolve_model(weights=weights, engine="packed")


def test_the_cpu_recipe_has_exactly_bbcu_l_s_budget() -> None:
    """docs/zoo.md compares the two runs as equals: only the network and the description may differ."""
    recipes = Path(__file__).resolve().parents[1] / "configs" / "sr"
    ours, theirs = (config_to_dict(load_config(recipes / f"{n}_x4.cpu.yml")) for n in ("bbcu-rrdb", "bbcu-l"))
    assert ours.pop("model") == {**theirs.pop("model"), "name": "bbcu-rrdb"}
    ours.pop("description"), theirs.pop("description")
    assert ours == theirs
