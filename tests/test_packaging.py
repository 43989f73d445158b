"""bbcu installed from a wheel, like any package, keeps its models, its web page and its console script.

The wheel is built from a copy of the sources and installed with its ``serve`` extra into a fresh virtual
environment (not editable); every command then runs from a folder outside the checkout, with no
``BBCU_*`` variable and no ``PYTHONPATH``, so nothing can be found through the checkout by accident.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbcu.cli.main import VERBS
from bbcu.core.paths import PACKAGE_DIR
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.imaging.imresize import modcrop
from bbcu.metrics.quality import calculate_psnr
from bbcu.run.images import restore
from bbcu.serve.limits import UPLOAD_MEDIA_TYPE
from test_cli import listed_verbs

REPO = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md")
LR_X4 = data_root() / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png"
HR = data_root() / "Set5" / "HR" / "butterfly.png"
MARGIN_DB = 1.5
"""How far above bicubic the shipped x4 default must restore: the floor it is shipped under."""
SERVER_START_S = 120
STATIC = PACKAGE_DIR / "serve" / "static"
DROPPED_VARIABLES = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")


@dataclass(frozen=True)
class Installed:
    """A virtual environment holding the wheel, and a folder outside the checkout to run it from."""

    wheel: Path
    venv: Path
    workdir: Path

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a program of the environment (``bbcu``, ``python``) in ``workdir``; it must succeed."""
        done = subprocess.run(
            [str(self.venv / "bin" / argv[0]), *argv[1:]],
            cwd=self.workdir,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr
        return done


def clean_environment() -> dict[str, str]:
    """This process's environment (pip's settings included) without anything that points into the checkout.

    Bytecode may be written: the install skips compiling PyTorch's thousands of files, and the first
    command compiles just the modules bbcu imports, once, for the commands after it.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BBCU_") and name not in DROPPED_VARIABLES
    }


def copy_sources(target: Path) -> Path:
    """What a fresh clone holds for the build, without this checkout's compiled kernels or build leftovers."""
    for name in BUILD_INPUTS:
        shutil.copy2(REPO / name, target / name)
    shutil.copytree(
        REPO / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    )
    return target


def python_module(*argv: str) -> None:
    """``python -m ARGV`` with this environment's build, venv and pip (``make venv`` set them up)."""
    done = subprocess.run(
        [sys.executable, "-m", *argv], env=clean_environment(), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from these sources, installed with ``[serve]`` under ``constraints.txt``.

    The new environment gets no pip of its own (this one's installs into it), and ``--no-compile`` leaves
    PyTorch's thousands of files uncompiled until something imports them: both only save time.
    """
    sources = copy_sources(tmp_path_factory.mktemp("sources"))
    dist = tmp_path_factory.mktemp("dist")
    python_module("build", "--wheel", "--no-isolation", "--outdir", str(dist), str(sources))
    (wheel,) = dist.glob("bbcu-*.whl")
    venv = tmp_path_factory.mktemp("venv")
    python_module("venv", "--without-pip", str(venv))
    target = ("--python", str(venv / "bin" / "python"))
    constraints = ("-c", str(REPO / "constraints.txt"))
    python_module("pip", *target, "install", "--quiet", "--no-compile", *constraints, f"{wheel}[serve]")
    return Installed(wheel, venv, tmp_path_factory.mktemp("elsewhere"))


def package_files(folder: str, suffixes: tuple[str, ...]) -> set[str]:
    """Paths (in the wheel's layout) of the checkout's run-time files under ``src/bbcu/<folder>``."""
    return {
        f"bbcu/{path.relative_to(PACKAGE_DIR).as_posix()}"
        for path in (PACKAGE_DIR / folder).iterdir()
        if path.suffix in suffixes
    }


@pytest.mark.slow
def test_the_wheel_carries_every_shipped_model_and_the_page(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    models = package_files("models", (".safetensors", ".bbcu", ".md"))
    page = package_files("serve/static", (".html", ".css", ".js"))
    assert len(models) >= 12 and {"bbcu/serve/static/index.html", "bbcu/serve/static/app.js"} <= page
    assert models | page <= names
    assert any(re.fullmatch(r"bbcu/engine/_bitops\..*\.so", name) for name in names)  # compiled kernels


@pytest.mark.slow
def test_installed_bbcu_runs_from_its_own_files(installed: Installed) -> None:
    where = installed.run(
        "python", "-c", "import bbcu.core.paths as p; print(p.PACKAGE_DIR); print(p.checkout_root())"
    )
    package, checkout = where.stdout.split()
    assert Path(package).is_relative_to(installed.venv) and checkout == "None"


@pytest.mark.slow
def test_the_serve_extra_brings_no_test_or_upload_parser_dependency(installed: Installed) -> None:
    """The page posts raw bytes, so FastAPI needs no python-multipart; Selenium only drives the tests."""
    probe = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    assert installed.run("python", "-c", probe, "selenium", "multipart", "scipy").stdout.strip() == ""


@pytest.mark.slow
def test_installed_help_lists_every_verb(installed: Installed) -> None:
    assert listed_verbs(installed.run("bbcu", "--help").stdout) == list(VERBS)


@pytest.mark.slow
def test_installed_restore_uses_the_shipped_default_model(installed: Installed) -> None:
    out = installed.workdir / "restored"
    installed.run("bbcu", "restore", str(LR_X4), "-o", str(out))
    restored = read_image(out / LR_X4.name)
    hr = modcrop(read_image(HR), 4)
    assert restored.shape == (4 * 64, 4 * 64, 3) == hr.shape
    bicubic = restore(read_image(LR_X4), model="bicubic", scale=4)
    psnr, bicubic_psnr = (calculate_psnr(x, hr, crop_border=4, y_channel=True) for x in (restored, bicubic))
    assert psnr >= bicubic_psnr + MARGIN_DB, (psnr, bicubic_psnr)


@pytest.fixture
def served(installed: Installed) -> Iterator[str]:
    """``bbcu serve --port 0`` of the installed package: its URL, read from the line it prints."""
    log = installed.workdir / "serve.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [str(installed.venv / "bin" / "bbcu"), "serve", "--port", "0"],
            cwd=installed.workdir,
            env=clean_environment(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield wait_for_url(server, log)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_for_url(server: subprocess.Popen[bytes], log: Path) -> str:
    """The ``http://...`` URL ``bbcu serve`` says to open, once it says it."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        found = re.search(r"open (http://\S+) in a browser", log.read_text())
        if found:
            return found[1]
        assert server.poll() is None, f"bbcu serve exited: {log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"bbcu serve did not start: {log.read_text()}")


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200
        return response.headers["content-type"], response.read()


@pytest.mark.slow
def test_installed_serve_gives_the_page_and_restores(installed: Installed, served: str) -> None:
    page_type, page = get(f"{served}/")
    script_type, script = get(f"{served}/static/app.js")
    assert page_type.startswith("text/html") and b'src="/static/app.js"' in page
    assert "javascript" in script_type and script == (STATIC / "app.js").read_bytes()
    _, info = get(f"{served}/api/info")
    assert {m["name"] for m in json.loads(info)["models"]} >= {"bicubic", "bbcu-l-x4", "dncnn-bbcu-blind"}

    request = urllib.request.Request(
        f"{served}/api/restore?model=bbcu-m-x4&scale=4",
        data=LR_X4.read_bytes(),
        method="POST",
        headers={"Content-Type": UPLOAD_MEDIA_TYPE},  # what the page sends; anything else is refused
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    with Image.open(io.BytesIO(base64.b64decode(answer["output_png"]))) as image:
        output = np.asarray(image)
    np.testing.assert_array_equal(output, restore(read_image(LR_X4), model="bbcu-m-x4"))


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_no_package_module_imports_a_test_dependency() -> None:
    test_only = {"selenium", "pytest", "scipy"}
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): sorted(imported_modules(path) & test_only)
        for path in PACKAGE_DIR.rglob("*.py")
        if imported_modules(path) & test_only
    }
    assert offenders == {}
