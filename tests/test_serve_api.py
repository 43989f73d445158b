"""``bbcu serve``'s HTTP API against a real server on a loopback port: results, limits, errors, busy."""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from bbcu.archs import create_model
from bbcu.cli import serve as serve_command
from bbcu.cli.main import main
from bbcu.core.errors import InvalidArgumentError, MissingExtraError
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.formats.weights import save
from bbcu.imaging.imresize import modcrop
from bbcu.metrics.quality import calculate_psnr
from bbcu.run.images import restore
from bbcu.run.zoo import ENV_VAR
from bbcu.serve import pipeline
from bbcu.serve.app import create_app
from bbcu.serve.limits import Limits
from bbcu.serve.server import open_socket, running_in_thread

LR_X4 = data_root() / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png"
HR = data_root() / "Set5" / "HR" / "butterfly.png"
Answer = tuple[int, dict[str, object], dict[str, str]]
Server = Callable[..., AbstractContextManager[tuple[str, FastAPI]]]


def post(url: str, body: bytes, **params: object) -> Answer:
    """POST ``body`` to /api/restore; the status, the JSON answer and the headers, errors included."""
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(f"{url}/api/restore?{query}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response), _lower_keys(response.headers.items())
    except urllib.error.HTTPError as err:
        return err.code, json.load(err), _lower_keys(err.headers.items())


def _lower_keys(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def decoded(answer: dict[str, object], key: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(str(answer[key])))) as image:
        return np.asarray(image).copy()


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The process's temporary folder, redirected here and checked to be empty again after the test.

    PyTorch keeps a per-user compile cache in the temporary folder (``count_cost``'s meta-device pass
    creates it); it is sent elsewhere so that what is checked is the server's own traces.
    """
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch-cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == [], "the server left files behind"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder with random-weight BBCU-M x4 and binary DnCNN, as shipped models."""
    folder = tmp_path / "models"
    folder.mkdir()
    torch.manual_seed(0)
    save(create_model("bbcu-m", scale=4), folder / "random-bbcu-m-x4.safetensors")
    save(create_model("dncnn-bbcu"), folder / "random-dncnn-bbcu.safetensors")
    monkeypatch.setenv(ENV_VAR, str(folder))
    return folder


@contextmanager
def serving(**limits: int) -> Iterator[tuple[str, FastAPI]]:
    """A server with the given limits on a free loopback port: its URL and its app."""
    app = create_app(Limits(**limits))
    with running_in_thread(app) as url:
        yield url, app


@pytest.fixture
def server(scratch: Path, models: Path) -> Server:
    """``serving``, once the temporary folder is watched and the random models are in place."""
    return serving


@pytest.mark.slow
def test_info_lists_the_whitelist_with_costs_and_engines(server: Server) -> None:
    with server() as (url, _), urllib.request.urlopen(f"{url}/api/info") as response:
        info = json.load(response)
    by_name = {(m["name"], m["scale"]): m for m in info["models"]}
    assert set(by_name) == {
        ("bicubic", 2),
        ("bicubic", 3),
        ("bicubic", 4),
        ("random-bbcu-m-x4", 4),
        ("random-dncnn-bbcu", 1),
    }
    assert by_name["bicubic", 4]["engines"] == ["torch"]
    assert by_name["random-bbcu-m-x4", 4]["engines"] == ["torch", "packed"]
    # Published cost (docs/published.md): BBCU-M x4 3.95 G OPs / 51 K params, binary DnCNN 0.80 G / 24 K.
    assert by_name["random-bbcu-m-x4", 4]["ops_g_320x180"] == pytest.approx(3.95, abs=0.01)
    assert by_name["random-bbcu-m-x4", 4]["params_k"] == pytest.approx(51, abs=0.5)
    assert by_name["random-dncnn-bbcu", 1]["ops_g_320x180"] == pytest.approx(0.80, abs=0.01)
    assert info["limits"] == {"max_upload_bytes": 20 << 20, "max_pixels": 1_000_000, "queue": 4}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torch", "packed"])
def test_restore_answers_what_the_python_api_gives(server: Server, models: Path, engine: str) -> None:
    with server() as (url, _):
        status, answer, _ = post(
            url, LR_X4.read_bytes(), model="random-bbcu-m-x4", task="sr", scale=4, engine=engine
        )
    assert status == 200, answer
    lr = read_image(LR_X4)
    expected = restore(lr, model="random-bbcu-m-x4", engine=engine)
    np.testing.assert_array_equal(decoded(answer, "input_png"), lr)
    np.testing.assert_array_equal(decoded(answer, "output_png"), expected)
    assert answer["engine"] == engine
    assert answer["output_size"] == [256, 256] and answer["input_size"] == [64, 64]
    assert answer["file_bytes"] == (models / "random-bbcu-m-x4.safetensors").stat().st_size
    assert "psnr" not in answer


def test_degrading_for_sr_reproduces_the_official_lr_file_and_scores_it(
    server: Server,
) -> None:
    with server() as (url, _):
        status, answer, _ = post(url, HR.read_bytes(), model="bicubic", scale=4, degrade="true")
    assert status == 200, answer
    official_lr = read_image(LR_X4)  # made by MATLAB's imresize, a different tool
    np.testing.assert_array_equal(decoded(answer, "input_png"), official_lr)
    upscaled = restore(official_lr, model="bicubic", scale=4)
    expected = calculate_psnr(upscaled, modcrop(read_image(HR), 4), crop_border=4, y_channel=True)
    assert answer["psnr"] == {"output": pytest.approx(expected, abs=1e-3), "input": None}


@pytest.mark.slow
def test_degrading_with_noise_gives_the_psnr_sigma_implies(server: Server) -> None:
    with server() as (url, _):
        status, answer, _ = post(
            url, HR.read_bytes(), model="random-dncnn-bbcu", task="denoise", scale=1, degrade="true", sigma=25
        )
    assert status == 200, answer
    # The published protocol written out independently: global seed 0, noise added to the float image,
    # then the page shows it rounded to uint8 (clipping at 0 and 255 lifts it above 20 log10(255/25)).
    clean = read_image(HR).astype(np.float64)
    np.random.seed(0)
    noisy = clean / 255 + np.random.normal(0, 25 / 255, clean.shape)
    shown = np.round(np.clip(noisy, 0, 1) * 255)
    expected = 10 * np.log10(255**2 / np.mean((shown - clean) ** 2))
    assert answer["psnr"]["input"] == pytest.approx(expected, abs=1e-3)
    assert answer["output_size"] == answer["input_size"] == [256, 256]


def test_upload_over_the_byte_limit_is_refused(server: Server) -> None:
    body = LR_X4.read_bytes()
    with server(max_upload_bytes=len(body) - 1) as (url, _):
        status, answer, _ = post(url, body, model="bicubic", scale=4)
        accepted, _, _ = post(url, body[: len(body) // 2], model="bicubic", scale=4)
    assert status == 413 and "upload limit" in answer["error"]
    assert accepted == 422  # under the limit: it gets as far as decoding, and a half PNG is truncated


def test_image_over_the_pixel_limit_is_refused_from_its_header(server: Server) -> None:
    with server(max_pixels=64 * 64 - 1) as (url, _):
        status, answer, _ = post(url, LR_X4.read_bytes(), model="bicubic", scale=4, filename="big.png")
    assert status == 413
    assert answer["error"] == "big.png is 64x64 = 4,096 pixels, over the limit of 4,095 pixels"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"this is a text file, not a picture\n", "x.png is not an image"),
        (LR_X4.read_bytes()[:400], "x.png is not a readable image: image file is truncated"),
        (b"", "no image was sent"),
    ],
    ids=["text", "truncated-png", "empty"],
)
def test_files_that_are_not_images_get_a_clear_message(server: Server, body: bytes, message: str) -> None:
    with server() as (url, _):
        status, answer, _ = post(url, body, model="bicubic", scale=4, filename="x.png")
    assert status == 422
    assert answer["error"].startswith(message)


def test_model_names_are_looked_up_never_opened(server: Server, models: Path) -> None:
    weights_file = str(models / "random-bbcu-m-x4.safetensors")  # `bbcu restore` would accept this path
    with server() as (url, _):
        answers = [post(url, LR_X4.read_bytes(), model=name, scale=4) for name in (weights_file, "bbcu-m")]
        wrong_scale = post(url, LR_X4.read_bytes(), model="random-bbcu-m-x4", scale=2)
        bad_option = post(url, LR_X4.read_bytes(), model="bicubic", scale="four")
    for status, answer, _ in answers:
        assert status == 422 and answer["error"].startswith("unknown model")
    assert wrong_scale[0] == 422 and wrong_scale[1]["error"] == "model random-bbcu-m-x4 does not do sr x2"
    assert bad_option[0] == 422 and bad_option[1]["error"].startswith("bad request: scale:")


def test_a_full_queue_answers_busy(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_run_order = pipeline.run_order

    def held_back(*args: object) -> dict[str, object]:
        assert release.wait(timeout=30)
        return real_run_order(*args)

    monkeypatch.setattr(pipeline, "run_order", held_back)
    body = LR_X4.read_bytes()
    with server(queue=1) as (url, app):
        answers: list[Answer] = []
        senders = [
            threading.Thread(target=lambda: answers.append(post(url, body, model="bicubic", scale=4)))
            for _ in range(2)
        ]
        for sender in senders:
            sender.start()
        jobs = app.state.jobs
        deadline = time.monotonic() + 30
        while jobs.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert jobs.pending == 2  # one running (held), one waiting: the queue of 1 is full
        status, answer, headers = post(url, body, model="bicubic", scale=4)
        release.set()
        for sender in senders:
            sender.join(timeout=60)
    assert status == 503 and "busy" in answer["error"] and headers["retry-after"] == "2"
    assert [a[0] for a in answers] == [200, 200]


def parse_serve(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--port", "70000"), "--port must lie within 0..65535, got 70000"),
        (("--max-upload-mb", "0"), "--max-upload-mb must be positive, got 0"),
        (("--max-pixels", "-5", "--queue", "-1"), "--max-pixels must be positive, got -5; --queue must be 0"),
    ],
)
def test_serve_options_are_checked_by_name(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        serve_command.run(parse_serve(*argv))
    assert str(raised.value).startswith(message)


def test_serve_refuses_a_port_in_use_in_one_line() -> None:
    taken = open_socket()
    port = taken.getsockname()[1]
    args = parse_serve("--port", str(port))
    try:
        assert args.host == "127.0.0.1"  # loopback unless asked otherwise
        with pytest.raises(InvalidArgumentError, match=f"cannot listen on 127.0.0.1:{port}"):
            args.func(args)
    finally:
        taken.close()


@pytest.mark.parametrize("extra", ["fastapi", "uvicorn"])
def test_serve_without_its_extra_says_what_to_install(
    extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, extra, None)  # what an installation without bbcu[serve] imports
    for module in ("bbcu.serve.app", "bbcu.serve.server"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    message = f"{extra} is not installed: pip install 'bbcu[serve]'"
    with pytest.raises(MissingExtraError) as raised:
        serve_command.run(parse_serve("--port", "0"))
    assert str(raised.value) == message
    assert main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err == f"bbcu serve: error: {message}\n"  # one line, no traceback
