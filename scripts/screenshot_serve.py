"""Take the README screenshot of ``bbcu serve``: a real x4 restoration, in headless Chromium.

Usage: ``.venv/bin/python scripts/screenshot_serve.py [--model NAME] [--output docs/img/serve.png]``
(needs the ``test`` extra: Selenium drives the headless Chromium of ``tests/browser.py``).

Set5's butterfly is degraded on the page (MATLAB bicubic x4 down) and restored with the shipped
default x4 model when there is one, else with bicubic, so the picture shows what the page really
does today, PSNR included. The PNG is reduced to a 256-colour palette to stay small in the repository.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from bbcu.core.atomic import atomic_write_bytes
from bbcu.data.root import data_root
from bbcu.run import zoo
from bbcu.serve.app import create_app
from bbcu.serve.server import running_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the browser the tests drive
from browser import headless_chromium

EXAMPLE = Path("Set5") / "HR" / "butterfly.png"
DEFAULT_OUTPUT = Path("docs") / "img" / "serve.png"
PALETTE_COLOURS = 256
WAIT_S = 300


def default_model() -> str:
    """The shipped x4 default when it is shipped, else bicubic (never a result that is not real)."""
    name = zoo.default_model("sr", 4)
    return name if zoo.is_shipped(name) else "bicubic"


def main() -> None:
    """Restore the example on the page and save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model(), help="model to show (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as downloads,
        running_in_thread(create_app()) as url,
        headless_chromium(Path(downloads)) as driver,
    ):
        driver.get(url)
        wait = WebDriverWait(driver, WAIT_S)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#model option[value='{args.model}']"))
        driver.find_element(By.ID, "file").send_keys(str(data_root() / EXAMPLE))
        Select(driver.find_element(By.ID, "model")).select_by_value(args.model)
        driver.find_element(By.ID, "degrade").click()
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
        png = driver.get_screenshot_as_png()
    with Image.open(io.BytesIO(png)) as shot:
        small = shot.convert("RGB").quantize(PALETTE_COLOURS, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(args.output, buffer.getvalue())
    print(f"wrote {args.output} ({len(buffer.getvalue()) / 1024:.0f} KB) showing {args.model}")


if __name__ == "__main__":
    main()
