"""``bbcu serve``'s HTTP API against a real server on a loopback port: results, limits, errors, busy."""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import re
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
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


def post(url: str, body: bytes, headers: dict[str, str] | None = None, **params: object) -> Answer:
    """POST ``body`` to /api/restore as the page does; the status, the JSON answer and the headers."""
    query = urllib.parse.urlencode(params)
    headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    request = urllib.request.Request(f"{url}/api/restore?{query}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response), _lower_keys(response.headers.items())
    except urllib.error.HTTPError as err:
        return err.code, json.load(err), _lower_keys(err.headers.items())


def exchange(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """One request with exactly these headers (``Host`` included, when given): status, body, headers."""
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), _lower_keys(response.getheaders())
    finally:
        connection.close()


def send_head(url: str, path: str, headers: dict[str, str], sent: bytes = b"") -> Answer:
    """POST the request head, and ``sent`` (less than the head announces), then wait for the answer.

    A server that waits for the rest of the body before answering makes this time out (10 s).
    """
    address = urllib.parse.urlsplit(url)
    head = {"Host": address.netloc, "Content-Type": "application/octet-stream", **headers}
    lines = "".join(f"{name}: {value}\r\n" for name, value in head.items())
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode() + sent)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read()), _lower_keys(response.getheaders())


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
def serving(allowed_hosts: Iterable[str] = (), **limits: int) -> Iterator[tuple[str, FastAPI]]:
    """A server with the given limits on a free loopback port: its URL and its app."""
    app = create_app(Limits(**limits), allowed_hosts=allowed_hosts)
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


def test_declared_length_over_the_limit_is_refused_before_the_body_is_read(server: Server) -> None:
    with server(max_upload_bytes=1000) as (url, _):
        status, answer, _ = send_head(url, "/api/restore?model=bicubic&scale=4", {"Content-Length": "1001"})
        huge = send_head(url, "/api/restore?model=bicubic&scale=4", {"Content-Length": str(10**12)})
    assert status == huge[0] == 413 and "upload limit" in answer["error"]


def test_chunked_upload_is_refused_once_it_passes_the_limit(server: Server) -> None:
    chunk = b"x" * 1500
    with server(max_upload_bytes=1000) as (url, _):
        status, answer, _ = send_head(  # the body never ends: only a running count can refuse it
            url,
            "/api/restore?model=bicubic&scale=4",
            {"Transfer-Encoding": "chunked"},
            b"%x\r\n%s\r\n" % (len(chunk), chunk),
        )
    assert status == 413 and "upload limit" in answer["error"]


def test_image_over_the_pixel_limit_is_refused_from_its_header(server: Server) -> None:
    with server(max_pixels=64 * 64 - 1) as (url, _):
        status, answer, _ = post(url, LR_X4.read_bytes(), model="bicubic", scale=4, filename="big.png")
    assert status == 413
    assert answer["error"] == "big.png is 64x64 = 4,096 pixels, over the limit of 4,095 pixels"


def png_of_zeros(side: int) -> bytes:
    """A valid 1-bit grey PNG of ``side x side`` black pixels, written chunk by chunk without Pillow.

    Deflate packs the zero rows about a thousandfold, so 30000x30000 (900 M pixels) takes about 110 KB.
    """
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    compressor = zlib.compressobj(9)
    rows = [compressor.compress(row * min(1000, side - done)) for done in range(0, side, 1000)]
    data = b"".join(rows) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, at 10000x10000
@pytest.mark.parametrize(  # 10000 is under Pillow's own bomb limit, 15000 and 30000 are over it
    "side", [10_000, 15_000, pytest.param(30_000, marks=pytest.mark.slow)]
)
def test_decompression_bombs_are_refused_as_too_large(server: Server, side: int) -> None:
    bomb = png_of_zeros(side)
    assert len(bomb) < side * side // 4000  # small on the wire, huge once decoded
    with server() as (url, _):
        status, answer, _ = post(url, bomb, model="bicubic", scale=4, filename="bomb.png")
    assert status == 413
    assert answer["error"].startswith("bomb.png is ")
    assert "over the limit of 1,000,000 pixels" in answer["error"]


def test_mpo_from_a_phone_camera_is_restored_like_the_command_line_does(
    server: Server, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    frames = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(2)]
    path = tmp_path / "phone.jpg"
    frames[0].save(path, format="MPO", save_all=True, append_images=frames[1:])
    with Image.open(path) as opened:
        assert (opened.format, opened.n_frames) == ("MPO", 2)
    with server() as (url, _):
        status, answer, _ = post(url, path.read_bytes(), model="bicubic", scale=2, filename=path.name)
    assert status == 200, answer
    expected = restore(read_image(path), model="bicubic", scale=2)
    np.testing.assert_array_equal(decoded(answer, "output_png"), expected)
    assert answer["input_size"] == [32, 24]


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


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Restorations wait for this event to be set before they run (it is set at the end in any case)."""
    release = threading.Event()
    real_run_order = pipeline.run_order

    def held_back(*args: object) -> dict[str, object]:
        assert release.wait(timeout=30)
        return real_run_order(*args)

    monkeypatch.setattr(pipeline, "run_order", held_back)
    yield release
    release.set()


def send_in_background(url: str, body: bytes, answers: list[Answer]) -> threading.Thread:
    sender = threading.Thread(target=lambda: answers.append(post(url, body, model="bicubic", scale=4)))
    sender.start()
    return sender


def wait_for_pending(app: FastAPI, count: int) -> None:
    deadline = time.monotonic() + 30
    while app.state.jobs.pending < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.jobs.pending == count


def test_a_full_queue_answers_busy(server: Server, held: threading.Event) -> None:
    body = LR_X4.read_bytes()
    with server(queue=1) as (url, app):
        answers: list[Answer] = []
        senders = [send_in_background(url, body, answers) for _ in range(2)]
        wait_for_pending(app, 2)  # one running (held), one waiting: the queue of 1 is full
        status, answer, headers = post(url, body, model="bicubic", scale=4)
        held.set()
        for sender in senders:
            sender.join(timeout=60)
    assert status == 503 and "busy" in answer["error"] and headers["retry-after"] == "2"
    assert [a[0] for a in answers] == [200, 200]


def test_busy_is_answered_before_the_body_is_read(server: Server, held: threading.Event) -> None:
    with server(queue=0) as (url, app):
        answers: list[Answer] = []
        sender = send_in_background(url, LR_X4.read_bytes(), answers)
        wait_for_pending(app, 1)
        status, answer, _ = send_head(
            url, "/api/restore?model=bicubic&scale=4", {"Content-Length": "5000000"}
        )
        held.set()
        sender.join(timeout=60)
    assert status == 503 and "busy" in answer["error"]
    assert [a[0] for a in answers] == [200]


EXPECTED_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_every_answer_carries_the_hardening_headers(server: Server) -> None:
    with server() as (url, _):
        answers = [exchange(url, "GET", path, {}) for path in ("/", "/static/app.js", "/nothing")]
        answers.append(exchange(url, "GET", "/", {"Host": "evil.example"}))
        answers.append(post(url, b"not an image", model="bicubic", scale=4))
    assert [status for status, _, _ in answers] == [200, 200, 404, 403, 422]
    for _, _, headers in answers:
        assert {name: headers.get(name) for name in EXPECTED_HEADERS} == EXPECTED_HEADERS


def test_the_page_needs_nothing_the_policy_forbids() -> None:
    """No inline script, style or event handler: ``default-src 'self'`` would block them in a browser."""
    static = Path(pipeline.__file__).parent / "static"
    page = (static / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all(" src=" in tag for tag in scripts)
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", page)
    assert (
        "innerHTML" not in (static / "app.js").read_text() and "eval(" not in (static / "app.js").read_text()
    )


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}", "", "192.168.1.7:{port}"],
    ids=["rebound-name", "no-port", "suffix-trick", "empty", "lan-address"],
)
def test_a_foreign_host_name_is_refused(server: Server, host: str) -> None:
    """DNS rebinding: another site's name re-pointed at 127.0.0.1 reaches the port but not the server."""
    with server() as (url, app):
        port = urllib.parse.urlsplit(url).port
        page = exchange(url, "GET", "/", {"Host": host.format(port=port)})
        headers = {"Host": host.format(port=port), "Content-Type": "application/octet-stream"}
        upload = exchange(url, "POST", "/api/restore?model=bicubic&scale=4", headers, LR_X4.read_bytes())
        ran = app.state.jobs.pending
    assert page[0] == upload[0] == 403
    assert json.loads(upload[1])["error"].startswith("this server does not answer to the host name")
    assert ran == 0


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "LOCALHOST:{port}", "[::1]:{port}", "bbcu.lan:{port}"]
)
def test_loopback_names_and_the_configured_host_are_answered(server: Server, host: str) -> None:
    with server(allowed_hosts=["bbcu.lan"]) as (url, _):
        port = urllib.parse.urlsplit(url).port
        name = host.format(port=port)
        page = exchange(url, "GET", "/", {"Host": name})
        restored = exchange(
            url,
            "POST",
            "/api/restore?model=bicubic&scale=4",
            {"Host": name, "Origin": f"http://{name}", "Content-Type": "application/octet-stream"},
            LR_X4.read_bytes(),
        )
    assert page[0] == 200 and restored[0] == 200, restored


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        (  # what fetch(url, {method: "POST", mode: "no-cors", body}) sends from another site
            {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
            403,
            "requests from 'http://evil.example' are not accepted",
        ),
        ({"Origin": "null", "Content-Type": "application/octet-stream"}, 403, "requests from 'null'"),
        (  # another port of this machine is another origin, though the same site
            {"Origin": "http://127.0.0.1:1", "Content-Type": "application/octet-stream"},
            403,
            "requests from 'http://127.0.0.1:1'",
        ),
        (
            {"Sec-Fetch-Site": "same-site", "Content-Type": "application/octet-stream"},
            403,
            "requests started by another site (Sec-Fetch-Site: same-site)",
        ),
        (  # an old browser sends neither Origin nor Sec-Fetch-Site with a cross-site form
            {"Content-Type": "text/plain"},
            415,
            "an upload must be sent as Content-Type: application/octet-stream (not text/plain)",
        ),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "an upload must be sent as"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "an upload must be sent as"),
    ],
    ids=["cross-site-no-cors", "null-origin", "sibling-port", "same-site", "plain-text", "form", "multipart"],
)
def test_uploads_other_sites_can_make_a_browser_send_are_refused(
    server: Server, headers: dict[str, str], status: int, message: str
) -> None:
    with server() as (url, app):
        answered, body, _ = exchange(
            url, "POST", "/api/restore?model=bicubic&scale=4", headers, LR_X4.read_bytes()
        )
        ran = app.state.jobs.pending
    assert answered == status and json.loads(body)["error"].startswith(message)
    assert ran == 0


def test_the_pages_own_upload_passes(server: Server) -> None:
    """What Chromium sends for the page's fetch: its own origin, same-origin, octet-stream."""
    with server() as (url, _):
        status, answer, _ = post(
            url,
            LR_X4.read_bytes(),
            {"Origin": url, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
            model="bicubic",
            scale=4,
        )
    assert status == 200, answer


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
