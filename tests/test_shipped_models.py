"""The models shipped in ``models/`` meet the floors they are shipped under, measured now with the scoring
of ``bbcu eval`` on the packed engine (what users run), and their cards quote exactly what is measured.

Floors (issue 6, which sets the x4 one; x2 and x3 are held to the same): BBCU super-resolution at least
1.5 dB above MATLAB bicubic on Set5 (bicubic scored here
by the same code, not copied from a table), the blind denoiser at least 29.5 dB on CBSD68 at sigma 25, the
blind JPEG model at least 28.6 dB on LIVE1 at quality 10.
"""

from __future__ import annotations

import pytest

from bbcu.archs import create_model
from bbcu.engine.runtime import pack_model
from bbcu.formats.weights import load
from bbcu.run import zoo
from bbcu.run.evaluate import evaluate_set

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


def test_every_shipped_model_has_a_card_and_a_floor() -> None:
    assert sorted(zoo.list_shipped()) == sorted(FLOORS)
    assert all(zoo.model_card(name) is not None for name in FLOORS)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_model_meets_its_floor_and_its_card_says_so(name: str) -> None:
    task, dataset, setting, floor = FLOORS[name]
    info = zoo.shipped_info(name)
    assert (info.task, info.scale) == (task, setting if task == "sr" else 1)
    score = evaluate_set(pack_model(load(info.path)), task, dataset, setting).mean()["psnr"]
    if floor is None:
        bicubic = evaluate_set(create_model("bicubic", scale=setting), task, dataset, setting)
        floor = bicubic.mean()["psnr"] + BICUBIC_MARGIN
    assert score >= floor
    card = zoo.model_card(name)
    assert card is not None and f"{score:.2f}" in card.read_text()
