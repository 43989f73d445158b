"""The C runtime (runtime/: libbbcu and bbcu-run) against the Python packed engine, across builds.

Independent truths: ``bbcu.engine`` (PackedModel, whose float layers are PyTorch's) for the outputs,
within 1e-4 before rounding; the x86-64 build for the aarch64 build run under qemu-aarch64, bit for bit;
the Python reader (``bbcu.formats.packed.load_packed``) for which files are malformed, while
AddressSanitizer watches the C loader refuse them. The builds come from ``make -C runtime`` (a no-op
when up to date); the aarch64 tools are Debian packages the top-level ``make runtime-deps`` installs.
"""

from __future__ import annotations

import ctypes
import json
import os
import pty
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import bbcu.engine
from bbcu.core.errors import InvalidFileError
from bbcu.core.paths import SHIPPED_MODELS_DIR
from bbcu.data.root import data_root
from bbcu.engine import kernels
from bbcu.engine.export import export_model
from bbcu.formats.image_io import read_image, write_image
from bbcu.formats.packed import load_packed
from bbcu.imaging.pixels import to_float, to_uint8
from helpers import randomized

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
HOST, ASAN, ARM = (RUNTIME / "build" / name for name in ("host", "asan", "aarch64"))
QEMU = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]
TOLERANCE = 1e-4  # max abs difference on the [0, 1] output scale, before rounding
SANITIZER_MARKS = ("AddressSanitizer", "runtime error", "LeakSanitizer")

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def builds() -> None:
    """Host and AddressSanitizer builds of the runtime, made (or found up to date) once."""
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "all", "asan"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def arm_build() -> None:
    """The aarch64 cross build (static binaries), run through qemu-aarch64."""
    missing = [tool for tool in ("aarch64-linux-gnu-gcc", "qemu-aarch64") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: run `make runtime-deps` (Debian packages)"
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "arm"], check=True, capture_output=True)


def run_cli(build: Path, *args: str | Path, emulate: bool = False) -> subprocess.CompletedProcess[str]:
    command = [*(QEMU if emulate else []), str(build / "bbcu-run"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def read_pfm(path: Path) -> np.ndarray:
    """A PFM file (little-endian, rows bottom to top) as an (H, W, C) float32 array."""
    kind, size, scale, data = path.read_bytes().split(b"\n", 3)
    width, height = map(int, size.split())
    assert float(scale) < 0, "bbcu-run writes little-endian PFM"
    channels = 3 if kind == b"PF" else 1
    return np.frombuffer(data, "<f4").reshape(height, width, channels)[::-1]


def restore(
    build: Path, model: Path, image: Path, out: Path, *options: str, emulate: bool = False
) -> np.ndarray:
    """Runs bbcu-run to ``out`` (.png) and returns its float output (from the --float PFM)."""
    floats = out.with_suffix(".pfm")
    result = run_cli(build, *options, "--float", floats, model, image, out, emulate=emulate)
    assert result.returncode == 0, result.stderr
    return read_pfm(floats)


def python_output(model: Path, image: Path) -> np.ndarray:
    """The Python packed engine's output on the image, (sH, sW, C) float32."""
    pixels = to_float(read_image(image))
    return bbcu.engine.load(model).run_image(pixels[:, :, None] if pixels.ndim == 2 else pixels)


def crop(source: Path, out: Path, size: int) -> Path:
    """The top-left size x size corner of a real image, as a PNG."""
    write_image(out, read_image(source)[:size, :size])
    return out


def assert_matches_python(model: Path, image: Path, tmp_path: Path) -> None:
    """bbcu-run's floats within TOLERANCE of the Python engine's; its PNG is their 8-bit rounding."""
    expected = python_output(model, image)
    actual = restore(HOST, model, image, tmp_path / "out.png")
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= TOLERANCE
    png = read_image(tmp_path / "out.png").reshape(actual.shape)
    np.testing.assert_array_equal(png, to_uint8(np.ascontiguousarray(actual)))
    # Within 1e-4 of the Python output, rounding can only differ where a value sits on a half step.
    assert np.abs(png.astype(int) - to_uint8(expected)).max() <= 1


# --------------------------------------------------------------------------------------------- outputs

SET5_X4 = ("Set5", "LR_bicubic", "X4", "birdx4.png")
SHIPPED = [
    ("bbcu-l-x2", SET5_X4),
    ("bbcu-l-x3", SET5_X4),
    ("bbcu-l-x4", SET5_X4),
    ("bbcu-m-x4", SET5_X4),
    ("dncnn-bbcu-blind", ("Set5", "LR_bicubic", "X4", "babyx4.png")),
    ("dncnn3-bbcu-blind", ("Classic5", "boats.png")),
]


@pytest.mark.parametrize(("name", "image"), SHIPPED, ids=[name for name, _ in SHIPPED])
def test_shipped_models_match_the_python_engine(
    builds: None, tmp_path: Path, name: str, image: tuple
) -> None:
    model = export_model(bbcu.load(SHIPPED_MODELS_DIR / f"{name}.safetensors"), tmp_path / "m.bbcu")
    source = data_root().joinpath(*image)
    assert_matches_python(model, crop(source, tmp_path / "in.png", 96), tmp_path)


RANDOM_CASES = [
    ("bbcu-m", {"scale": 3, "channels": 80, "num_units": 3}),  # a word and a bit, BBCU-U x3, banded tail
    ("bbcu-l", {"scale": 2, "channels": 40, "num_units": 2}),  # less than a word, float upsampler
    ("bbcu-l", {"scale": 4, "channels": 48, "num_units": 2}),  # its last upsampler banded (92 rows: 3 bands)
    ("dncnn-bbcu", {"channels": 130, "depth": 4}),  # three words
    ("dncnn3-bbcu", {"channels": 40, "depth": 4}),  # binary convs with bias
]


@pytest.mark.parametrize(
    ("name", "kwargs"), RANDOM_CASES, ids=[f"{name}-c{kwargs['channels']}" for name, kwargs in RANDOM_CASES]
)
def test_random_networks_match_the_python_engine(
    builds: None, tmp_path: Path, name: str, kwargs: dict
) -> None:
    """Every parameter off its init, so that each term of each op counts."""
    model = export_model(randomized(name, **kwargs), tmp_path / "m.bbcu")
    channels = load_packed(model).in_channels
    pixels = np.random.default_rng(0).integers(0, 256, (23, 31, channels)[: 2 if channels == 1 else 3])
    write_image(tmp_path / "in.png", pixels.astype(np.uint8))
    assert_matches_python(model, tmp_path / "in.png", tmp_path)


TILED_CASES = [
    ("bbcu-m", {"scale": 4, "channels": 72, "num_units": 2}),  # no banded tail (72: not a multiple of 16)
    ("bbcu-m", {"scale": 4, "channels": 32, "num_units": 2}),  # binary banded tail, two upsamplers
    ("bbcu-l", {"scale": 3, "channels": 32, "num_units": 2}),  # full-precision banded tail
]


@pytest.mark.parametrize(
    ("name", "kwargs"), TILED_CASES, ids=[f"{name}-c{kwargs['channels']}" for name, kwargs in TILED_CASES]
)
def test_tiles_threads_and_kernels_do_not_change_a_bit(
    builds: None, tmp_path: Path, name: str, kwargs: dict
) -> None:
    """Also the float convs: the portable kernels run their generic code, the others AVX2 on x86. The
    AddressSanitizer + UBSan build runs the banded tails clean, to the same bits."""
    model = export_model(randomized(name, **kwargs), tmp_path / "m.bbcu")
    image = crop(data_root().joinpath(*SET5_X4), tmp_path / "in.png", 40)
    whole = restore(HOST, model, image, tmp_path / "whole.png", "--threads", "1")
    every_isa = [("--isa", isa) for isa in kernels.available_isas()]  # amx too, where the CPU has it
    for options in (("--tile", "9"), ("--tile", "16", "--threads", "2"), *every_isa):
        np.testing.assert_array_equal(restore(HOST, model, image, tmp_path / "other.png", *options), whole)
    np.testing.assert_array_equal(restore(ASAN, model, image, tmp_path / "asan.png"), whole)


def test_grey_image_on_a_colour_model_is_replicated_and_averaged(builds: None, tmp_path: Path) -> None:
    model = export_model(randomized("dncnn-bbcu", channels=16, depth=3), tmp_path / "m.bbcu")
    grey = read_image(data_root() / "Classic5" / "lena.png")[:20, :24]
    write_image(tmp_path / "in.png", grey)
    colour = np.repeat(to_float(grey)[:, :, None], 3, axis=2)
    expected = bbcu.engine.load(model).run_image(colour).mean(axis=2, keepdims=True)
    assert (
        np.abs(restore(HOST, model, tmp_path / "in.png", tmp_path / "out.png") - expected).max() <= TOLERANCE
    )


def test_png_level_changes_the_file_not_the_pixels(builds: None, tmp_path: Path) -> None:
    model = export_model(randomized("dncnn-bbcu", channels=16, depth=3), tmp_path / "m.bbcu")
    image = crop(data_root().joinpath(*SET5_X4), tmp_path / "in.png", 40)
    files = {level: tmp_path / f"level{level}.png" for level in ("0", "1", "9")}
    for level, out in files.items():
        assert run_cli(HOST, "--png-level", level, model, image, out).returncode == 0
    np.testing.assert_array_equal(read_image(files["0"]), read_image(files["9"]))  # Pillow decodes them
    np.testing.assert_array_equal(read_image(files["1"]), read_image(files["9"]))
    assert files["0"].stat().st_size > files["1"].stat().st_size > files["9"].stat().st_size  # 0: stored


# --------------------------------------------------------------------------------------------- libbbcu API

PROGRESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_double)


class Options(ctypes.Structure):
    """bbcu.h's bbcu_options."""

    _fields_ = [
        ("threads", ctypes.c_int),
        ("tile", ctypes.c_int),
        ("tile_budget_mib", ctypes.c_int),
        ("isa", ctypes.c_char_p),
        ("progress", PROGRESS),
        ("progress_context", ctypes.c_void_p),
    ]


class Error(ctypes.Structure):
    """bbcu.h's bbcu_error."""

    _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * 256)]


PROGRESS_CASES = [
    ("bbcu-m", {"scale": 4, "channels": 32, "num_units": 2}),  # binary banded tail
    ("bbcu-l", {"scale": 4, "channels": 32, "num_units": 2}),  # full-precision tail of two upsamplers
    ("dncnn-bbcu", {"scale": 1, "channels": 16, "depth": 3}),  # no tail
]


@pytest.mark.parametrize(("name", "kwargs"), PROGRESS_CASES, ids=[name for name, _ in PROGRESS_CASES])
@pytest.mark.parametrize("tile", [0, 9])
def test_progress_counts_every_layer_once(
    builds: None, tmp_path: Path, name: str, kwargs: dict, tile: int
) -> None:
    """Through libbbcu.so: the reported fraction grows, reaches 1 with the last layer (all the work
    counted, none twice: banded tails report per band) and is the output of a run equal to bbcu-run's."""
    library = ctypes.CDLL(str(HOST / "libbbcu.so"))
    model_path = export_model(randomized(name, **kwargs), tmp_path / "m.bbcu")
    model, error = ctypes.c_void_p(), Error()
    assert library.bbcu_load(str(model_path).encode(), ctypes.byref(model), ctypes.byref(error)) == 0
    image = crop(data_root().joinpath(*SET5_X4), tmp_path / "in.png", 40)
    pixels = np.ascontiguousarray(to_float(read_image(image)), np.float32)
    scale = kwargs["scale"]
    out = np.empty((40 * scale, 40 * scale, 3), np.float32)
    fractions: list[float] = []
    options = Options(2, tile, 0, None, PROGRESS(lambda _, fraction: fractions.append(fraction)), None)
    status = library.bbcu_run(
        model,
        pixels.ctypes.data_as(ctypes.c_void_p),
        40,
        40,
        out.ctypes.data_as(ctypes.c_void_p),
        ctypes.byref(options),
        ctypes.byref(error),
    )
    library.bbcu_free(model)
    assert status == 0, error.message
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert fractions[-2] == pytest.approx(1.0, abs=1e-9)  # the work adds up to the whole
    assert sum(fraction >= 1.0 - 1e-9 for fraction in fractions) == 2  # and no layer reaches it early
    np.testing.assert_array_equal(out, restore(HOST, model_path, image, tmp_path / "cli.png"))


def test_a_terminal_gets_a_progress_bar_and_a_pipe_gets_nothing(builds: None, tmp_path: Path) -> None:
    model = export_model(randomized("bbcu-l", scale=4, channels=32, num_units=2), tmp_path / "m.bbcu")
    image = crop(data_root().joinpath(*SET5_X4), tmp_path / "in.png", 64)
    piped = run_cli(HOST, model, image, tmp_path / "piped.png")
    assert piped.returncode == 0 and piped.stderr == ""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [HOST / "bbcu-run", model, image, tmp_path / "tty.png"], stderr=terminal
    ) as process:
        os.close(terminal)
        shown = b""
        while chunk := _read_terminal(controller):
            shown += chunk
        assert process.wait(timeout=300) == 0
    os.close(controller)
    lines = shown.decode().replace("\r\n", "\n").split("\r")
    percents = [int(p) for p in re.findall(r"bbcu-run: +(\d+)% \[[# ]{30}\] [\d.]+ s", "".join(lines))]
    assert percents == sorted(percents) and percents[-1] == 100
    assert lines[-1].endswith("output MP/s\n")


def _read_terminal(controller: int) -> bytes:
    """The next bytes the terminal shows, b"" once the program has closed it (Linux raises EIO then)."""
    try:
        return os.read(controller, 4096)
    except OSError:
        return b""


# --------------------------------------------------------------------------------------------- aarch64


@pytest.mark.slow
def test_aarch64_kernels_equal_portable_bit_for_bit(arm_build: None) -> None:
    """NEON popcount dot products and fused epilogues against the portable path and the definition."""
    result = subprocess.run(
        [*QEMU, str(ARM / "bbcu-kernel-selftest")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok neon:" in result.stdout


def test_host_kernels_equal_portable_bit_for_bit(builds: None) -> None:
    result = subprocess.run([str(HOST / "bbcu-kernel-selftest")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


ARM_CASES = [
    ("bbcu-m-x4", SET5_X4, 24),
    ("bbcu-l-x3", SET5_X4, 16),  # full-precision convs: the generic block on arm, AVX2 on x86
    ("dncnn3-bbcu-blind", ("Classic5", "boats.png"), 40),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "image", "size"), ARM_CASES, ids=[name for name, _, _ in ARM_CASES])
def test_aarch64_build_reproduces_x86_on_real_images(
    builds: None, arm_build: None, tmp_path: Path, name: str, image: tuple, size: int
) -> None:
    """Under qemu-aarch64 (NEON kernels) against the host build (AVX2 here): identical 8-bit output."""
    model = export_model(bbcu.load(SHIPPED_MODELS_DIR / f"{name}.safetensors"), tmp_path / "m.bbcu")
    source = crop(data_root().joinpath(*image), tmp_path / "in.png", size)
    x86 = restore(HOST, model, source, tmp_path / "x86.png")
    arm = restore(ARM, model, source, tmp_path / "arm.png", emulate=True)
    np.testing.assert_array_equal(read_image(tmp_path / "arm.png"), read_image(tmp_path / "x86.png"))
    np.testing.assert_array_equal(arm, x86)  # same float operations in the same order: same bits


# --------------------------------------------------------------------------------------------- hostile files


@pytest.fixture(scope="module")
def valid_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small valid packed file (two binary ops of 72 channels: a padded second word)."""
    path = tmp_path_factory.mktemp("valid") / "m.bbcu"
    return export_model(randomized("dncnn3-bbcu", channels=72, depth=4), path).read_bytes()


def split(file: bytes) -> tuple[dict, bytes]:
    size = struct.unpack("<Q", file[:8])[0]
    return json.loads(file[8 : 8 + size]), file[8 + size :]


def join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def edit_header(edit: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def apply(file: bytes) -> bytes:
        header, data = split(file)
        edit(header)
        return join(header, data)

    return apply


def edit_graph(edit: Callable[[list], None]) -> Callable[[bytes], bytes]:
    def apply(header: dict) -> None:
        graph = json.loads(header["__metadata__"]["graph"])
        edit(graph)
        header["__metadata__"]["graph"] = json.dumps(graph)

    return edit_header(apply)


def first_tensor(header: dict, suffix: str) -> dict:
    return next(v for k, v in sorted(header.items()) if k.endswith(suffix))


def set_tensor_value(suffix: str, value: float) -> Callable[[bytes], bytes]:
    """Writes float32 ``value`` over the first element of the first tensor named ``*suffix``."""

    def apply(file: bytes) -> bytes:
        header, data = split(file)
        begin = first_tensor(header, suffix)["data_offsets"][0]
        patched = bytearray(data)
        patched[begin : begin + 4] = struct.pack("<f", value)
        return join(header, bytes(patched))

    return apply


def set_padding_bit(file: bytes) -> bytes:
    header, data = split(file)
    begin = first_tensor(header, ".weight_bits")["data_offsets"][0]
    patched = bytearray(data)
    patched[begin + 15] |= 0x80  # bit 63 of word 1: channel 127 of a 72-channel tap
    return join(header, bytes(patched))


def op_attribute(key: str, value: object, kind: str = "bbcu_unit") -> Callable[[bytes], bytes]:
    return edit_graph(lambda graph: next(op for op in graph if op["op"] == kind).__setitem__(key, value))


HOSTILE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda f: b"",
    "truncated in the length": lambda f: f[:5],
    "truncated in the header": lambda f: f[:100],
    "truncated in the data": lambda f: f[: len(f) - len(f) // 3],
    "last byte missing": lambda f: f[:-1],
    "header length past the end": lambda f: struct.pack("<Q", len(f)) + f[8:],
    "header length 2^64-1": lambda f: b"\xff" * 8 + f[8:],
    "header not json": lambda f: struct.pack("<Q", 6) + b"{nope}" + f[8:],
    "header nested 10000 deep": lambda f: struct.pack("<Q", 20000) + b"[" * 10000 + b"]" * 10000,
    "offsets past the end": edit_header(
        lambda h: first_tensor(h, ".shift")["data_offsets"].__setitem__(1, 1 << 40)
    ),
    "offsets overlapping": edit_header(
        lambda h: first_tensor(h, ".shift").__setitem__("data_offsets", [0, 288])
    ),
    "offsets reversed": edit_header(lambda h: first_tensor(h, ".alpha").__setitem__("data_offsets", [8, 4])),
    "shape lies": edit_header(lambda h: first_tensor(h, ".alpha").__setitem__("shape", [71])),
    "shape huge": edit_header(
        lambda h: first_tensor(h, ".alpha").__setitem__("shape", [1 << 62, 1 << 62, 16])
    ),
    "shape negative": edit_header(lambda h: first_tensor(h, ".alpha").__setitem__("shape", [-72])),
    "dtype lies": edit_header(lambda h: first_tensor(h, ".alpha").__setitem__("dtype", "F64")),
    "channels huge": op_attribute("channels", 1 << 31),
    "channels lie": op_attribute("channels", 64),
    "scale huge": edit_header(lambda h: h["__metadata__"].__setitem__("scale", str(1 << 40))),
    "pixel shuffle huge": edit_graph(lambda g: g.insert(-1, {"op": "pixel_shuffle", "scale": 1 << 30})),
    "unknown op": edit_graph(lambda g: g.insert(1, {"op": "softmax"})),
    "extra attribute": op_attribute("groups", 2),
    "bool as int": op_attribute("channels", True),
    "no output_scale": edit_graph(lambda g: g.pop()),
    "names repeated": edit_graph(
        lambda g: g.insert(2, dict(next(op for op in g if op["op"] == "bbcu_unit")))
    ),
    "tensor missing": edit_header(lambda h: h.pop(next(k for k in sorted(h) if k.endswith(".zeta")))),
    "k is zero": edit_header(lambda h: h["__metadata__"].__setitem__("k", "0.0")),
    "k is nan": edit_header(lambda h: h["__metadata__"].__setitem__("k", "nan")),
    "wrong format": edit_header(lambda h: h["__metadata__"].__setitem__("format", "bbcu-weights")),
    "padding bit set": set_padding_bit,
}
NON_FINITE: dict[str, Callable[[bytes], bytes]] = {
    "nan alpha": set_tensor_value(".alpha", float("nan")),
    "inf shift": set_tensor_value(".shift", float("inf")),
    "nan conv weight": set_tensor_value(".weight", float("nan")),
}


def assert_refused(path: Path) -> None:
    """bbcu-run (AddressSanitizer build) refuses the file with one line, exit 1, and no finding."""
    result = run_cli(ASAN, "--info", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert not any(mark in result.stderr for mark in SANITIZER_MARKS), result.stderr
    assert result.stderr.startswith("bbcu-run: ") and result.stderr.count("\n") == 1, result.stderr


def test_the_valid_file_loads_under_asan(builds: None, tmp_path: Path, valid_model: bytes) -> None:
    (tmp_path / "m.bbcu").write_bytes(valid_model)
    result = run_cli(ASAN, "--info", tmp_path / "m.bbcu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dncnn3-bbcu x1, 1 -> 1 channels")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_are_refused_by_both_loaders(
    builds: None, tmp_path: Path, valid_model: bytes, case: str
) -> None:
    path = tmp_path / "hostile.bbcu"
    path.write_bytes(HOSTILE[case](valid_model))
    with pytest.raises(InvalidFileError):  # the Python reader is the definition of malformed
        load_packed(path)
    assert_refused(path)


@pytest.mark.parametrize("case", list(NON_FINITE))
def test_non_finite_floats_are_refused(builds: None, tmp_path: Path, valid_model: bytes, case: str) -> None:
    path = tmp_path / "hostile.bbcu"
    path.write_bytes(NON_FINITE[case](valid_model))
    assert_refused(path)


@pytest.mark.slow
def test_random_corruptions_never_crash_the_loader(builds: None, tmp_path: Path, valid_model: bytes) -> None:
    """200 files with random bytes overwritten (mostly in the header) load or are refused, never worse."""
    rng = np.random.default_rng(1)
    header_end = 8 + struct.unpack("<Q", valid_model[:8])[0]
    paths = []
    for i in range(200):
        data = bytearray(valid_model)
        for at in rng.integers(0, header_end if i % 4 else len(data), rng.integers(1, 4)):
            data[at] = int(rng.integers(0, 256))
        paths.append(tmp_path / f"{i}.bbcu")
        paths[-1].write_bytes(bytes(data))
    script = 'for f in "$@"; do "$0" --info "$f" >/dev/null; echo "$?"; done'
    result = subprocess.run(
        ["sh", "-c", script, str(ASAN / "bbcu-run"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not any(mark in result.stderr for mark in SANITIZER_MARKS), result.stderr[:2000]
    assert set(result.stdout.split()) <= {"0", "1"}


# --------------------------------------------------------------------------------------------- CLI


def test_bad_inputs_fail_with_one_line(builds: None, tmp_path: Path, valid_model: bytes) -> None:
    model = tmp_path / "m.bbcu"
    model.write_bytes(valid_model)
    write_image(tmp_path / "ok.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    cases = [
        (model, tmp_path / "missing.png", tmp_path / "out.png"),
        (model, tmp_path / "cut.png", tmp_path / "out.png"),
        (model, model, tmp_path / "out.png"),
        (tmp_path / "missing.bbcu", tmp_path / "ok.png", tmp_path / "out.png"),
        (model, tmp_path / "ok.png", tmp_path / "out.jpg"),
        (model, tmp_path / "ok.png", tmp_path / "no-such-folder" / "out.png"),
    ]
    for args in cases:
        result = run_cli(ASAN, *args)
        assert result.returncode == 1, args
        assert result.stderr.startswith("bbcu-run: ") and result.stderr.count("\n") == 1, result.stderr
    assert run_cli(ASAN, "--threads", "0", model, tmp_path / "ok.png", tmp_path / "o.png").returncode == 2
    assert run_cli(ASAN, "--png-level", "10", model, tmp_path / "ok.png", tmp_path / "o.png").returncode == 2
    assert not (tmp_path / "out.png").exists()
