"""Headless Chromium driven by Selenium: what the browser test and the README screenshot run the page in.

It uses the system's Chromium and its matching chromedriver (Debian packages ``chromium`` and
``chromium-driver``; ``make browser`` installs them), never a downloaded browser, so it works offline.
Each session gets a fresh profile folder, and downloads land in a folder the caller chooses.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAME = "chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Headless, no sandbox (CI runs as root), and nothing that reaches out to the network by itself."""


def find_program(*names: str) -> str:
    """The path of the first of ``names`` on ``PATH``.

    Raises:
        RuntimeError: If none is installed (``make browser`` installs Chromium and its driver).
    """
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        f"{' or '.join(names)} is not installed: run `make browser` (Debian: apt-get install "
        "chromium chromium-driver)"
    )


@contextmanager
def headless_chromium(
    download_dir: Path, window: tuple[int, int] = (1280, 860)
) -> Iterator[webdriver.Chrome]:
    """A headless Chromium session with a fresh profile; downloads go to ``download_dir`` unasked.

    Args:
        download_dir: Where files the page downloads are saved.
        window: Window width and height in CSS pixels (screenshots have this size).
    """
    with tempfile.TemporaryDirectory(prefix="bbcu-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = find_program(*CHROMIUM_NAMES)
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
            options.add_argument(flag)
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
        )
        driver = webdriver.Chrome(options=options, service=Service(find_program(CHROMEDRIVER_NAME)))
        try:
            driver.execute_cdp_cmd(
                "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
            )
            yield driver
        finally:
            driver.quit()
