"""The hostile corpus (issue 12): every kind of bad file bbcu must refuse cleanly, built at test time.

``build_corpus(folder)`` writes, in a few seconds, the files an adversarial user would hand bbcu:
broken and malicious images, weights files, packed models, training runs and official checkpoints,
each beside the good files a batch must still process. A ``Case`` names its file, the one-line
refusal it must get (a regular expression) and, where it has one, the numbered case of issue 12 it
keeps fixed, so this module is the one list of what the adversarial suite covers
(``tests/test_hostile.py`` runs every command and API over it; ``tests/test_fuzz.py`` seeds its fuzzers
with the good files).

Building a case never runs anything hostile: the code-running pickles are written with ``pickle``, and
``Corpus.marker`` is the file their payload would create if anything ever unpickled them unsafely.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
from PIL import Image

from bbcu.archs import create_model
from bbcu.engine.export import export_model
from bbcu.formats.image_io import write_image
from bbcu.formats.weights import save
from bbcu.train.checkpoint import CHECKPOINT_FORMAT, checkpoint_path, save_checkpoint
from helpers import randomized

SMALL_SR = {"scale": 4, "channels": 16, "num_units": 2}
"""The BBCU-M x4 every good weights and packed file holds: every layer kind, cheap to run."""


@dataclass(frozen=True)
class Case:
    """One hostile input.

    Attributes:
        name: Short identifier (the test id).
        path: The file or folder.
        refusal: Regular expression the one-line refusal must match.
        issue: The numbered case of issue 12 it keeps fixed (``"12.1"``...), or ``""`` for a hazard
            bbcu already survived before that issue.
    """

    name: str
    path: Path
    refusal: str
    issue: str = ""


@dataclass
class Corpus:
    """Everything ``build_corpus`` wrote, grouped by what reads it."""

    folder: Path
    marker: Path
    good_images: list[Path] = field(default_factory=list)
    grey_alpha: Path | None = None
    good_weights: Path | None = None
    good_packed: Path | None = None
    lying_kwargs: Path | None = None
    fallback_run: Path | None = None
    blocked: Path | None = None
    images: list[Case] = field(default_factory=list)
    weights: list[Case] = field(default_factory=list)
    packed: list[Case] = field(default_factory=list)
    runs: list[Case] = field(default_factory=list)
    official: list[Case] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class CodeRunning:
    """Unpickling this calls ``open(marker, "w")``: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return open, (self.marker, "w")


def build_corpus(folder: Path) -> Corpus:
    """Write the whole corpus under ``folder`` (created) and describe it."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(folder=folder, marker=folder / "a-pickle-ran-code")
    _images(corpus, _subfolder(folder, "images"))
    _weights(corpus, _subfolder(folder, "weights"))
    _packed(corpus, _subfolder(folder, "packed"))
    _runs(corpus, _subfolder(folder, "runs"))
    _official(corpus, _subfolder(folder, "official"))
    corpus.blocked = folder / "a-file"  # issue 12.4: an output folder (or its parent) that is a file
    corpus.blocked.write_text("not a folder\n")
    corpus.arrays = {
        "0xN": np.zeros((0, 7, 3), np.uint8),  # issue 12.8: zero-size arrays
        "Nx0": np.zeros((7, 0), np.uint8),
        "0x0-float": np.zeros((0, 0, 3), np.float32),
        "nan-pixels": np.full((6, 5, 3), np.nan, np.float32),
        "infinite-pixel": np.pad(np.full((1, 1), np.inf, np.float32), 3),
    }
    return corpus


def _subfolder(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir()
    return path


# --------------------------------------------------------------------------------------------- images


def _images(corpus: Corpus, folder: Path) -> None:
    rng = np.random.default_rng(12)
    colour, grey = rng.integers(0, 256, (20, 24, 3), np.uint8), rng.integers(0, 256, (18, 22), np.uint8)
    corpus.good_images = [folder / "good-colour.png", folder / "good-grey.jpg"]
    write_image(corpus.good_images[0], colour)
    write_image(corpus.good_images[1], grey)
    corpus.grey_alpha = folder / "grey-alpha.png"  # issue 12.8: must come back grey + alpha
    write_image(corpus.grey_alpha, np.dstack([grey, 255 - grey]))
    png, jpeg = corpus.good_images[0].read_bytes(), corpus.good_images[1].read_bytes()
    cases = {
        "truncated-png.png": (png[: len(png) // 2], "truncated|broken data stream|image file"),
        "truncated-jpeg.jpg": (jpeg[: len(jpeg) // 2], "truncated|image file"),
        "empty.png": (b"", "cannot identify image file"),
        "text.png": (b"not an image\nreally not\n", "cannot identify image file"),
        "noise.webp": (rng.integers(0, 256, 4096, np.uint8).tobytes(), "cannot identify image file"),
        "bomb.png": (_png_bomb(10_000), "10000x10000 is more than .* pixels, the decompression-bomb limit"),
        "declared-bomb-jpeg.jpg": (_with_jpeg_size(jpeg, 60_000, 60_000), "exceeds .*limit of .* pixels"),
        "declared-bomb-bmp.bmp": (_bmp_header(50_000, 50_000), "exceeds .*limit of .* pixels"),
        "text-bomb.png": (_with_ztxt_bomb(png, 8 << 20), "Decompressed data too large"),
        "float32.tif": (_tiff(np.linspace(0, 1, 99, dtype=np.float32).reshape(9, 11)), "floating-point"),
        "int32.tif": (_tiff(np.arange(99, dtype=np.int32).reshape(9, 11) * 40_000), "32-bit integer"),
        "fraction-offset.tif": (
            tiff_with_a_fraction_as_strip_offset(),
            r"cannot read image .*fraction-offset",
        ),
        "two\nlines\x1b[2J.png": (b"\x89PNG\r\n\x1a\n", "two\\\\nlines\\\\x1b"),
    }
    issue = {
        "bomb.png": "12",
        "fraction-offset.tif": "12",
        "float32.tif": "12.8",
        "int32.tif": "12.8",
        "two\nlines\x1b[2J.png": "12.8",
    }
    for name, (data, refusal) in cases.items():
        (folder / name).write_bytes(data)
        corpus.images.append(Case(name, folder / name, refusal, issue.get(name, "")))


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _png_bomb(side: int) -> bytes:
    """A grey PNG of ``side`` x ``side`` black pixels: about 1/1000 of its decoded size on disk."""
    compressor, row = zlib.compressobj(9), bytes(side + 1)  # filter byte 0, then the pixels
    stream = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _with_ztxt_bomb(png: bytes, size: int) -> bytes:
    """A valid PNG carrying a compressed text chunk that inflates to ``size`` bytes."""
    text = _png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(bytes(size), 9))
    return png[:33] + text + png[33:]  # after the signature and IHDR


def _with_jpeg_size(jpeg: bytes, height: int, width: int) -> bytes:
    """``jpeg`` whose frame header (SOF0) declares ``height`` x ``width``; the data stays small."""
    at = jpeg.index(b"\xff\xc0") + 5
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]


def _bmp_header(height: int, width: int) -> bytes:
    """The headers of a 24-bit BMP of ``height`` x ``width`` and no pixel data at all."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def tiff_with_a_fraction_as_strip_offset() -> bytes:
    """A 5x6 grey TIFF whose StripOffsets tag is a signed rational: Pillow raised TypeError on it (a
    finding of fuzz/fuzz_loaders.py, kept here as a regression case)."""
    entries = [(256, 4, 5), (257, 4, 6), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 10, 0), (278, 4, 6)]
    entries.append((279, 4, 30))
    rational_at = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    formats = {3: "<HH", 4: "<I"}  # SHORT (padded to 4 bytes), LONG; the rational is stored after the IFD
    for tag, kind, value in entries:
        field = (
            struct.pack("<I", rational_at)
            if kind == 10
            else struct.pack(formats[kind], value, *[0] * (kind == 3))
        )
        ifd += struct.pack("<HHI", tag, kind, 1) + field
    rational = struct.pack("<ii", rational_at + 8, 1)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + rational + bytes(30)


def _tiff(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(samples).save(buffer, format="TIFF")
    return buffer.getvalue()


# -------------------------------------------------------------------------------------------- weights


def _weights(corpus: Corpus, folder: Path) -> None:
    corpus.good_weights = folder / "good.safetensors"
    save(randomized("bbcu-m", **SMALL_SR), corpus.good_weights)
    metadata, tensors = _read(corpus.good_weights)
    first_conv = "conv_first.weight"

    def variant(name: str, refusal: str, issue: str = "", **changes: object) -> None:
        edited = {**tensors, **changes.pop("tensors", {})}
        data = safetensors.torch.save(edited, metadata={**metadata, **changes})
        _add(corpus.weights, folder / name, data, refusal, issue)

    variant("huge-arguments.safetensors", "does not fit bbcu-m", "12.1",
            model_kwargs=json.dumps({"channels": 100_000, "scale": 4}))  # fmt: skip
    variant("negative-channels.safetensors", "cannot build bbcu-m", "12.1",
            model_kwargs=json.dumps({**SMALL_SR, "channels": -16}))  # fmt: skip
    variant("string-scale.safetensors", "cannot build bbcu-m|scale must be", "12.1",
            model_kwargs=json.dumps({**SMALL_SR, "scale": "4"}))  # fmt: skip
    variant("deep-kwargs.safetensors", "damaged metadata", "12.1", model_kwargs="[" * 100_000 + "]" * 100_000)
    variant("nan-weight.safetensors", "NaN or infinite values in 1 tensor", "12.2",
            tensors={first_conv: _poisoned(tensors[first_conv], float("nan"))})  # fmt: skip
    variant("infinite-alpha.safetensors", "NaN or infinite values", "12.2",
            tensors={"conv_last.bias": _poisoned(tensors["conv_last.bias"], float("inf"))})  # fmt: skip
    variant("unknown-model.safetensors", "unknown model 'no-such-net'", model="no-such-net")
    variant("future-version.safetensors", "version '9' is not supported", format_version="9")
    data = corpus.good_weights.read_bytes()
    _add(corpus.weights, folder / "truncated.safetensors", data[:-999], "not a readable safetensors file")
    _add(corpus.weights, folder / "huge-header.safetensors", struct.pack("<Q", 1 << 62) + data[8:],
         "not a readable safetensors file")  # fmt: skip
    _add(corpus.weights, folder / "offsets-beyond.safetensors", _offsets_beyond_the_file(),
         "not a readable safetensors file")  # fmt: skip
    pickled = io.BytesIO()
    torch.save({"params": {"w": torch.zeros(2)}}, pickled)
    _add(corpus.weights, folder / "pickle.safetensors", pickled.getvalue(), "not a readable safetensors file")


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safetensors.safe_open(str(path), framework="pt") as handle:
        return handle.metadata(), {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


def _poisoned(tensor: torch.Tensor, value: float) -> torch.Tensor:
    poisoned = tensor.clone()
    poisoned.view(-1)[0] = value
    return poisoned


def _offsets_beyond_the_file() -> bytes:
    """A safetensors header whose one tensor claims a terabyte the file does not have."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(64)


def _add(cases: list[Case], path: Path, data: bytes, refusal: str, issue: str = "") -> None:
    path.write_bytes(data)
    cases.append(Case(path.name, path, refusal, issue))


# --------------------------------------------------------------------------------------------- packed


def _packed(corpus: Corpus, folder: Path) -> None:
    corpus.good_packed = export_model(randomized("bbcu-m", **SMALL_SR), folder / "good.bbcu")
    with safetensors.safe_open(str(corpus.good_packed), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    graph = json.loads(metadata["graph"])
    unit = next(op["name"] for op in graph if op["op"] == "bbcu_unit")
    last = [op["name"] for op in graph if op["op"] == "conv"][-1]

    def variant(name: str, refusal: str, issue: str = "", **changes: object) -> None:
        edited = {**tensors, **changes.pop("tensors", {})}
        data = safetensors.numpy.save(edited, metadata={**metadata, **changes})
        _add(corpus.packed, folder / name, data, refusal, issue)

    nan_alpha = tensors[f"{unit}.alpha"].copy()
    nan_alpha[0] = np.nan
    nan_last = tensors[f"{last}.weight"].copy()
    nan_last.reshape(-1)[5] = np.nan
    variant("nan-alpha.bbcu", "NaN or infinite", "12.2", tensors={f"{unit}.alpha": nan_alpha})
    variant("nan-conv-last.bbcu", "NaN or infinite", "12.2", tensors={f"{last}.weight": nan_last})
    variant("scale-vs-graph.bbcu", "graph upscales by 4, metadata scale says 2", "12.3", scale="2",
            model_kwargs=json.dumps({"channels": 16}))  # fmt: skip
    variant("kwargs-vs-scale.bbcu", "model_kwargs scale=3 contradicts", "12.3",
            model_kwargs=json.dumps({**SMALL_SR, "scale": 3}))  # fmt: skip
    variant("k-not-finite.bbcu", r"k=inf", "12.3", k="inf")
    huge = [{**op, "channels": 1 << 40} if op["op"] == "bbcu_unit" else op for op in graph]
    variant("huge-channels.bbcu", "channels|tensor", "12.1", graph=json.dumps(huge))
    variant("deep-graph.bbcu", "malformed metadata", "12.1", graph="[" * 100_000 + "]" * 100_000)
    variant("weights-format.bbcu", "not a packed bbcu model", format="bbcu-weights")
    corpus.lying_kwargs = folder / "lying-kwargs.bbcu"  # informative arguments naming a 360 GB network
    corpus.lying_kwargs.write_bytes(
        safetensors.numpy.save(
            tensors, metadata={**metadata, "model_kwargs": json.dumps({"channels": 100_000})}
        )
    )
    data = corpus.good_packed.read_bytes()
    _add(corpus.packed, folder / "truncated.bbcu", data[: len(data) - 100], "not a readable safetensors file")
    _add(corpus.packed, folder / "huge-header.bbcu", struct.pack("<Q", 1 << 62) + data[8:],
         "not a readable safetensors file")  # fmt: skip


# ----------------------------------------------------------------------------------------------- runs


def _runs(corpus: Corpus, folder: Path) -> None:
    """Training runs (issue 12.7): damaged, hostile and foreign checkpoints, and one that falls back."""
    damaged = folder / "all-damaged"
    _checkpoint(damaged, 100)
    _checkpoint(damaged, 200)
    _flip_bits(checkpoint_path(damaged, 100))
    path = checkpoint_path(damaged, 200)
    path.write_bytes(path.read_bytes()[:-4096])
    corpus.runs.append(Case("all-damaged", damaged, "every checkpoint in .* is damaged", "12.7"))

    hostile = folder / "code-running"
    _checkpoint(hostile, 100, optimizer={"state": CodeRunning(corpus.marker)})
    corpus.runs.append(Case("code-running", hostile, "every checkpoint in .* is damaged", "12.7"))

    foreign = folder / "foreign-format"
    _checkpoint(foreign, 100, format="bbcu-train-checkpoint/99")
    corpus.runs.append(
        Case("foreign-format", foreign, "checkpoint format 'bbcu-train-checkpoint/99'", "12.7")
    )

    corpus.fallback_run = folder / "newest-damaged"
    _checkpoint(corpus.fallback_run, 100)
    _checkpoint(corpus.fallback_run, 200)
    _flip_bits(checkpoint_path(corpus.fallback_run, 200))


def _checkpoint(run_dir: Path, iteration: int, **changes: object) -> None:
    """A checkpoint as ``save_checkpoint`` writes it, then (with ``changes``) re-serialised with some
    entries replaced and a valid checksum: well formed on the outside, as a hostile writer makes it."""
    state = {
        "iteration": iteration,
        "sampler": {"epoch": 0, "step": iteration, "world_size": 1},
        "model": {"weight": torch.full((8, 8), float(iteration))},
        "ema": None,
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"last_epoch": iteration},
        "rng": [],
        "best": {"score": None, "iteration": None},
        "config": {"task": "sr"},
    }
    path = save_checkpoint(run_dir, iteration, state, keep=99)
    if changes:
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state, **changes}, buffer)
        magic, payload = path.read_bytes()[:8], buffer.getvalue()
        path.write_bytes(magic + hashlib.sha256(payload).digest() + payload)


def _flip_bits(path: Path, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for position in np.random.default_rng(7).integers(40, len(data), count):
        data[position] ^= 0x10
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------- official


def _official(corpus: Corpus, folder: Path) -> None:
    """Official-style ``.pth`` checkpoints for ``bbcu convert``: code-running and broken ones."""
    good = io.BytesIO()
    torch.save({"params": create_model("dncnn-bbcu", channels=8, depth=3).state_dict()}, good)
    raw = folder / "code-running-raw.pth"
    raw.write_bytes(pickle.dumps({"params": CodeRunning(corpus.marker)}, protocol=2))
    corpus.official.append(Case(raw.name, raw, "refusing .*could run code", "12.8"))
    zipped = folder / "code-running-zip.pth"
    torch.save({"params": CodeRunning(corpus.marker)}, zipped)
    corpus.official.append(Case(zipped.name, zipped, "refusing .*could run code", "12.8"))
    data = good.getvalue()
    _add(
        corpus.official, folder / "truncated.pth", data[: len(data) // 2], "not a readable PyTorch checkpoint"
    )
    _add(corpus.official, folder / "noise.pth", bytes(range(256)) * 16, "not a PyTorch checkpoint")
