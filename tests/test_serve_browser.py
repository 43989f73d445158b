"""The ``bbcu serve`` page in a real headless Chromium: restore, download, compare with ``bbcu restore``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from bbcu.archs import create_model
from bbcu.cli.main import main
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.formats.weights import save
from bbcu.run.zoo import ENV_VAR
from bbcu.serve.app import create_app
from bbcu.serve.server import running_in_thread
from browser import headless_chromium

pytestmark = pytest.mark.browser

MODEL = "random-bbcu-m-x4"
LR_X4 = data_root() / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png"
WAIT_S = 60


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chrome, Path]]:
    """The page open in headless Chromium, served with a random-weight BBCU-M x4 as a shipped model."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "models").mkdir()
    (folder / "downloads").mkdir()
    torch.manual_seed(0)
    save(create_model("bbcu-m", scale=4), folder / "models" / f"{MODEL}.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(folder / "models"))
        with running_in_thread(create_app()) as url, headless_chromium(folder / "downloads") as driver:
            driver.get(url)
            wait_until(
                driver, lambda: driver.find_elements(By.CSS_SELECTOR, f"#model option[value='{MODEL}']")
            )
            yield driver, folder


def wait_until(driver: Chrome, condition: Callable[[], object]) -> object:
    """Poll ``condition`` until it is truthy (the page works asynchronously), failing after a minute."""
    return WebDriverWait(driver, WAIT_S).until(lambda _: condition())


def run_on_page(driver: Chrome, image: Path, model: str) -> None:
    """Pick ``image``, choose SR x4 with ``model``, and press Restore."""
    driver.find_element(By.ID, "file").send_keys(str(image))
    Select(driver.find_element(By.ID, "task")).select_by_value("sr")
    Select(driver.find_element(By.ID, "scale")).select_by_value("4")
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    driver.find_element(By.ID, "run").click()


def test_downloaded_result_equals_bbcu_restore(
    page: tuple[Chrome, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, folder = page
    run_on_page(driver, LR_X4, MODEL)
    wait_until(driver, lambda: driver.find_element(By.ID, "result").is_displayed())
    assert driver.find_element(By.ID, "error").is_displayed() is False
    assert "64x64 -> 256x256" in driver.find_element(By.ID, "fact-size").text
    # The Content-Security-Policy lets the page show its blob: images (a blocked one has no pixels).
    widths = "return Array.from(document.querySelectorAll('.viewport img'), (img) => img.naturalWidth)"
    wait_until(driver, lambda: driver.execute_script(widths) == [64, 64, 256])
    assert driver.find_element(By.ID, "fact-ops").text.endswith("G for this 64x64 input")
    driver.find_element(By.ID, "zoom-in").click()
    transforms = {driver.execute_script("return arguments[0].style.transform", img) for img in images(driver)}
    assert len(transforms) == 1 and "scale(" in transforms.pop()  # one zoom and pan for every view
    driver.find_element(By.ID, "download").click()
    downloaded = folder / "downloads" / f"butterflyx4_{MODEL}_x4.png"
    wait_until(driver, downloaded.is_file)

    monkeypatch.setenv(ENV_VAR, str(folder / "models"))
    assert main(["restore", str(LR_X4), "-o", str(tmp_path), "--model", MODEL]) == 0
    expected = read_image(tmp_path / LR_X4.name)
    result = read_image(downloaded)
    assert result.shape == (256, 256, 3)
    np.testing.assert_array_equal(result, expected)
    assert np.ptp(result) > 0  # a real picture, not a blank one


def images(driver: Chrome) -> list[object]:
    return driver.find_elements(By.CSS_SELECTOR, ".viewport img")


def test_packed_engine_is_offered_only_where_it_runs(page: tuple[Chrome, Path]) -> None:
    driver, _ = page
    packed = driver.find_element(By.CSS_SELECTOR, "#engine option[value='packed']")
    for model, runs_packed in (("bicubic", False), (MODEL, True)):
        Select(driver.find_element(By.ID, "model")).select_by_value(model)
        assert packed.is_enabled() is runs_packed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"GIF89a? no, just text pretending\n", "broken.png is not an image"),
        (LR_X4.read_bytes()[:500], "broken.png is not a readable image: image file is truncated"),
    ],
    ids=["not-an-image", "truncated"],
)
def test_corrupt_file_shows_a_message(
    page: tuple[Chrome, Path], tmp_path: Path, content: bytes, message: str
) -> None:
    driver, _ = page
    broken = tmp_path / "broken.png"
    broken.write_bytes(content)
    run_on_page(driver, broken, "bicubic")
    error = driver.find_element(By.ID, "error")
    wait_until(driver, lambda: error.is_displayed() and error.text)
    assert error.text.startswith(message)
