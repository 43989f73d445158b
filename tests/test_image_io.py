"""Image reading/writing and array conversions."""

from __future__ import annotations

import csv
import hashlib
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bbcu.core.errors import InvalidArgumentError, InvalidFileError, OutputError
from bbcu.data.root import data_root
from bbcu.formats import image_io
from bbcu.formats.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image, write_image
from bbcu.imaging.pixels import image_to_tensor, tensor_to_image, to_float, to_uint8
from hostile_corpus import tiff_with_a_fraction_as_strip_offset

RNG = np.random.default_rng(11)
GREY = RNG.integers(0, 256, (23, 31), dtype=np.uint8)
COLOUR = RNG.integers(0, 256, (23, 31, 3), dtype=np.uint8)
RGBA = RNG.integers(0, 256, (23, 31, 4), dtype=np.uint8)


def _manifest_sample() -> list[dict[str, str]]:
    """The first file of every set in the data MANIFEST, plus every Set14 file (it holds grey images)."""
    with open(data_root() / "MANIFEST.tsv", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    first = {row["set"]: row for row in reversed(rows)}
    return [*first.values(), *(row for row in rows if row["set"] == "Set14" and row not in first.values())]


@pytest.mark.parametrize("row", _manifest_sample(), ids=lambda row: f"{row['set']}/{row['file']}")
def test_read_image_matches_the_manifest_pixel_hash(row: dict[str, str]) -> None:
    """The data set's MANIFEST records the sha256 of each decoded pixel array, shape and channel count."""
    img = read_image(data_root() / row["set"] / row["file"])
    assert img.dtype == np.uint8
    channels = int(row["channels"])
    expected_shape = (int(row["height"]), int(row["width"])) + ((channels,) if channels > 1 else ())
    assert img.shape == expected_shape
    assert hashlib.sha256(img.tobytes()).hexdigest() == row["pixels_sha256"]


@pytest.mark.parametrize("extension", [".png", ".bmp", ".tif", ".tiff", ".webp"])
@pytest.mark.parametrize("array", [GREY, COLOUR], ids=["grey", "colour"])
def test_lossless_formats_round_trip(tmp_path: Path, extension: str, array: np.ndarray) -> None:
    """Every format but WebP keeps grey as grey; WebP has no grey mode and returns three equal channels."""
    path = tmp_path / f"image{extension}"
    write_image(path, array)
    expected = np.dstack([array] * 3) if extension == ".webp" and array.ndim == 2 else array
    np.testing.assert_array_equal(read_image(path), expected)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("extension", [".png", ".tif", ".webp"])
def test_alpha_is_kept_on_request_and_dropped_with_a_warning_otherwise(
    tmp_path: Path, extension: str
) -> None:
    path = tmp_path / f"image{extension}"
    write_image(path, RGBA)
    np.testing.assert_array_equal(read_image(path, keep_alpha=True), RGBA)
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        np.testing.assert_array_equal(read_image(path), RGBA[:, :, :3])


def test_jpeg_write_is_close_and_refuses_alpha(tmp_path: Path) -> None:
    smooth = np.repeat(np.linspace(0, 255, 64)[None, :, None], 64, axis=0).repeat(3, axis=2).astype(np.uint8)
    write_image(tmp_path / "a.jpg", smooth)
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - smooth).max() <= 3
    with pytest.raises(InvalidArgumentError, match="no alpha channel"):
        write_image(tmp_path / "b.jpeg", RGBA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


def test_grey_alpha_is_dropped_or_kept_as_grey_alpha(tmp_path: Path) -> None:
    """Issue 12: grey + alpha used to come back as RGBA colour."""
    path = tmp_path / "la.png"
    alpha = 255 - GREY
    Image.fromarray(np.dstack([GREY, alpha]), mode="LA").save(path)
    with pytest.warns(UserWarning, match="alpha"):
        np.testing.assert_array_equal(read_image(path), GREY)
    np.testing.assert_array_equal(read_image(path, keep_alpha=True), np.dstack([GREY, alpha]))


def test_palette_images(tmp_path: Path) -> None:
    """A grey palette reads as HxW, a colour palette as HxWx3 of the palette's colours."""
    indices = (GREY % 4).astype(np.uint8)
    grey_palette = [0, 0, 0, 80, 80, 80, 160, 160, 160, 255, 255, 255]
    colour_palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]
    for name, palette in (("grey.png", grey_palette), ("colour.png", colour_palette)):
        image = Image.fromarray(indices, mode="P")
        image.putpalette(palette)
        image.save(tmp_path / name)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.array([0, 80, 160, 255])[indices])
    expected = np.array(colour_palette, dtype=np.uint8).reshape(4, 3)[indices]
    np.testing.assert_array_equal(read_image(tmp_path / "colour.png"), expected)


def test_sixteen_bit_grey_is_rounded_to_eight_bits_with_a_warning(tmp_path: Path) -> None:
    samples = np.array([[0, 128, 129, 385, 386, 65535, 32767, 32768]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(samples).save(path)
    with pytest.warns(UserWarning, match="16-bit"):
        img = read_image(path)
    exact = [round(v * 255 / 65535) for v in samples[0].tolist()]
    assert exact == [0, 0, 1, 1, 2, 255, 127, 128]
    np.testing.assert_array_equal(img, [exact])


def _write_png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit RGB(A) PNG written from the PNG specification, rows filtered None / Sub / Up in turn."""
    height, width, channels = samples.shape
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    step = 2 * channels
    stream = b""
    for y, row in enumerate(rows):
        kind = y % 3
        reference = {0: np.zeros_like(row), 1: np.concatenate([np.zeros(step, np.uint8), row[:-step]])}
        stream += bytes([kind]) + (row - reference.get(kind, rows[y - 1])).tobytes()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(stream)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_png_is_rounded_not_truncated(tmp_path: Path, channels: int) -> None:
    """Pillow alone keeps the high byte (386 -> 1); the right 8-bit value is round(386 * 255 / 65535) = 2."""
    samples = np.random.default_rng(2).integers(0, 65536, (7, 9, channels), dtype=np.uint16)
    samples[0, :3, 0] = [385, 386, 65535]
    path = tmp_path / "deep.png"
    _write_png16(path, samples)
    with pytest.warns(UserWarning, match="16-bit"):
        img = read_image(path, keep_alpha=True)
    expected = (samples.astype(np.int64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert list(expected[0, :3, 0]) == [1, 2, 255]
    np.testing.assert_array_equal(img, expected)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6 means 'rotate 90 degrees clockwise to display'."""
    path = tmp_path / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(COLOUR).save(path, exif=exif)
    np.testing.assert_array_equal(read_image(path), np.rot90(COLOUR, k=-1))


def _truncated(tmp_path: Path, name: str, array: np.ndarray) -> Path:
    path = tmp_path / name
    write_image(path, array)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: _truncated(tmp, "cut.png", COLOUR),
        lambda tmp: _truncated(tmp, "cut.jpg", np.kron(COLOUR, np.ones((8, 8, 1), np.uint8))),
        lambda tmp: _truncated(tmp, "cut.webp", COLOUR),
        lambda tmp: (tmp / "empty.png", (tmp / "empty.png").write_bytes(b""))[0],
        lambda tmp: (tmp / "notes.png", (tmp / "notes.png").write_text("not an image\nat all"))[0],
        lambda tmp: tmp / "missing.png",
        lambda tmp: tmp,
    ],
    ids=["truncated-png", "truncated-jpeg", "truncated-webp", "empty", "text", "missing", "folder"],
)
def test_unreadable_files_raise_one_line_errors_naming_the_file(tmp_path: Path, make) -> None:
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    assert isinstance(caught.value, InvalidFileError)


def test_write_refuses_unknown_extensions_and_leaves_nothing_on_failure(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(InvalidArgumentError, match="unknown image extension"):
        write_image(tmp_path / "image.gifx", COLOUR)
    target = tmp_path / "keep.png"
    write_image(target, GREY)
    before = target.read_bytes()

    def failing_save(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OutputError, match="No space left"):
        write_image(target, COLOUR)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_write_creates_folders_and_checks_the_array(tmp_path: Path) -> None:
    """Missing folders are made, and the image gets the permissions of any newly created file."""
    write_image(tmp_path / "a" / "b" / "c.png", GREY)
    np.testing.assert_array_equal(read_image(tmp_path / "a" / "b" / "c.png"), GREY)
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert (tmp_path / "a" / "b" / "c.png").stat().st_mode == plain.stat().st_mode
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "f.png", GREY.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):  # HxWx2 is grey + alpha, five channels are nothing
        write_image(tmp_path / "f.png", np.dstack([COLOUR, COLOUR[:, :, :2]]))


def test_image_extensions_cover_every_readable_format() -> None:
    assert set(IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    assert set(IMAGE_EXTENSIONS) == set(image_io._FORMAT_BY_EXTENSION)


def test_float_conversions_follow_the_basicsr_rounding() -> None:
    """x / 255 and back is the identity on uint8; out-of-range floats clamp; ties round half to even."""
    every_level = np.arange(256, dtype=np.uint8)
    assert to_float(every_level).dtype == np.float32
    np.testing.assert_array_equal(to_uint8(to_float(every_level)), every_level)
    np.testing.assert_array_equal(to_uint8(np.array([-0.3, 1.7])), [0, 255])
    levels = np.arange(255)
    ties = (levels + 0.5) / 255
    exact = ties * 255 == levels + 0.5
    assert exact.sum() > 50
    np.testing.assert_array_equal(to_uint8(ties[exact]), levels[exact] + levels[exact] % 2)
    with pytest.raises(TypeError):
        to_float(every_level.astype(np.float32))
    with pytest.raises(TypeError):
        to_uint8(every_level)


def test_tensor_conversions() -> None:
    tensor = image_to_tensor(COLOUR)
    assert tensor.shape == (1, 3, 23, 31)
    assert tensor.dtype == torch.float32
    assert tensor[0, 2, 4, 5].item() == pytest.approx(COLOUR[4, 5, 2] / 255)
    np.testing.assert_array_equal(tensor_to_image(tensor), to_float(COLOUR))
    grey = image_to_tensor(to_float(GREY))
    assert grey.shape == (1, 1, 23, 31)
    np.testing.assert_array_equal(tensor_to_image(grey[0]), to_float(GREY))
    with pytest.raises(ValueError, match="batch of one"):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


def test_read_refuses_when_truncated_images_are_allowed_globally(tmp_path: Path, monkeypatch) -> None:
    """Pillow's global LOAD_TRUNCATED_IMAGES would make damaged files read silently."""
    write_image(tmp_path / "ok.png", GREY)
    monkeypatch.setattr(image_io.ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        read_image(tmp_path / "ok.png")


@pytest.mark.parametrize("extension", [".png", ".tif"])
def test_grey_alpha_round_trips_as_grey_alpha(tmp_path: Path, extension: str) -> None:
    """Issue 12: ``HxWx2`` is written as grey + alpha and read back unchanged (alpha kept)."""
    grey_alpha = np.dstack([GREY, 255 - GREY])
    write_image(tmp_path / f"la{extension}", grey_alpha)
    assert Image.open(tmp_path / f"la{extension}").mode == "LA"
    np.testing.assert_array_equal(read_image(tmp_path / f"la{extension}", keep_alpha=True), grey_alpha)


def test_grey_with_transparency_keeps_grey(tmp_path: Path) -> None:
    """A grey PNG whose tRNS marks one value transparent reads as grey + alpha, not as RGBA."""
    path = tmp_path / "grey-trns.png"
    transparent = int(GREY[0, 0])
    Image.fromarray(GREY).save(path, transparency=transparent)
    expected_alpha = np.where(np.equal(GREY, transparent), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_image(path, keep_alpha=True), np.dstack([GREY, expected_alpha]))


@pytest.mark.parametrize(
    ("samples", "kind"),
    [
        (np.linspace(0, 1, 23 * 31, dtype=np.float32).reshape(23, 31), "floating-point"),
        (np.arange(23 * 31, dtype=np.int32).reshape(23, 31) * 70000, "32-bit integer"),
        (np.arange(23 * 31, dtype=np.int32).reshape(23, 31) - 300, "32-bit integer"),
    ],
    ids=["float32", "int32", "signed"],
)
def test_thirty_two_bit_tiffs_are_refused_not_mangled(tmp_path: Path, samples: np.ndarray, kind: str) -> None:
    """Issue 12: a float32 TIFF on 0..1 used to read as black and an int32 one as clipped 16-bit."""
    path = tmp_path / "wide.tif"
    Image.fromarray(samples).save(path)
    with pytest.raises(ImageReadError, match=f"{kind} samples have no agreed 0..255 scale") as caught:
        read_image(path)
    assert str(path) in str(caught.value)


def test_sixteen_bit_tiff_is_still_read(tmp_path: Path) -> None:
    """Refusing 32-bit samples leaves 16-bit unsigned TIFFs on the 16-bit path."""
    samples = np.array([[0, 128, 129, 65535]], dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "deep.tif")
    with pytest.warns(UserWarning, match="16-bit"):
        np.testing.assert_array_equal(read_image(tmp_path / "deep.tif"), [[0, 0, 1, 255]])


def test_control_characters_in_a_file_name_stay_on_one_line(tmp_path: Path) -> None:
    """Issue 12: a name holding a newline or a terminal escape is escaped as Python writes it."""
    path = tmp_path / "two\nlines\x1b[2J.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert "two\\nlines\\x1b[2J.png" in message


def test_more_pixels_than_the_bomb_limit_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow only warns between one and two times its limit, and decodes; bbcu refuses (issue 12)."""
    write_image(tmp_path / "a.png", GREY)  # 23 x 31 = 713 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 713 is within Pillow's warning-only band
    decoded: list[bool] = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(True))
    with pytest.raises(ImageReadError, match=r"31x23 is more than 500 pixels, the decompression-bomb limit"):
        read_image(tmp_path / "a.png")
    assert decoded == []
    monkeypatch.undo()
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), GREY)


def test_any_decoder_exception_is_an_image_read_error(tmp_path: Path) -> None:
    """A TIFF whose strip offset is a fraction made Pillow raise TypeError (found by fuzz/)."""
    path = tmp_path / "fraction.tif"
    path.write_bytes(tiff_with_a_fraction_as_strip_offset())
    with pytest.raises(ImageReadError, match=r"fraction\.tif: ") as caught:
        read_image(path)
    assert isinstance(caught.value.__cause__, TypeError)
