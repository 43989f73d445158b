"""Coverage-guided fuzzing (atheris, libFuzzer) of the three readers of untrusted files (issue 12).

Targets, each fed whole files made by mutating valid ones:

- ``packed``: ``bbcu.formats.packed.load_packed`` (``.bbcu``);
- ``weights``: ``bbcu.formats.weights.read_metadata`` and ``load`` (``.safetensors``);
- ``image``: ``bbcu.formats.image_io.read_image``, alpha dropped and kept.

The promise under test: whatever the bytes, a reader returns or raises a ``bbcu.BbcuError`` (one line);
any other exception, a crash, a hang past ``-timeout`` or memory past ``-rss_limit_mb`` is a finding,
and libFuzzer saves the input as ``crash-*`` / ``timeout-*`` / ``oom-*`` in the working folder.

Usage (``make fuzz`` runs every target for ``FUZZ_SECONDS``)::

    python fuzz/fuzz_loaders.py TARGET CORPUS_DIR [libFuzzer flags, e.g. -max_total_time=60 -runs=5000]

An empty ``CORPUS_DIR`` is first filled with valid seed files (``write_seeds``, which needs PyTorch for
the model files); libFuzzer adds every input that reaches new code to it, so a later run starts where
this one stopped.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

TARGETS = ("packed", "weights", "image")
INSTRUMENTED = {"packed": ["bbcu"], "weights": ["bbcu"], "image": ["bbcu", "PIL"]}
LIBFUZZER_DEFAULTS = ("-timeout=20", "-rss_limit_mb=3072", "-max_len=262144")
"""Per-input time limit (s), memory limit, and the largest input tried (above every seed)."""


def write_seeds(target: str, folder: Path) -> list[Path]:
    """Write small valid files for ``target`` into ``folder``: what the mutations start from."""
    folder.mkdir(parents=True, exist_ok=True)
    if target == "image":
        return _image_seeds(folder)
    import torch

    from bbcu.archs import create_model
    from bbcu.engine.export import export_model
    from bbcu.formats.weights import save

    torch.manual_seed(0)
    models = {
        "bbcu-m-x2": create_model("bbcu-m", scale=2, channels=8, num_units=1),
        "dncnn3-bbcu": create_model("dncnn3-bbcu", channels=8, depth=3),
    }
    paths = []
    for name, model in models.items():
        if target == "packed":
            paths.append(export_model(model, folder / f"{name}.bbcu"))
        else:
            save(model, folder / f"{name}.safetensors")
            save(model, folder / f"{name}.bits.safetensors", binary_as_bits=True)
            paths += [folder / f"{name}.safetensors", folder / f"{name}.bits.safetensors"]
    return paths


def _image_seeds(folder: Path) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    grey, colour = rng.integers(0, 256, (6, 5), np.uint8), rng.integers(0, 256, (6, 5, 3), np.uint8)
    images = {
        "grey.png": Image.fromarray(grey),
        "colour.png": Image.fromarray(colour),
        "grey-alpha.png": Image.fromarray(np.dstack([grey, grey]), "LA"),
        "rgba.png": Image.fromarray(np.dstack([colour, grey])),
        "deep.png": Image.fromarray(grey.astype(np.uint16) * 257),
        "palette.png": Image.fromarray(colour).convert("P"),
        "colour.jpg": Image.fromarray(colour),
        "colour.bmp": Image.fromarray(colour),
        "colour.webp": Image.fromarray(colour),
        "colour.tif": Image.fromarray(colour),
        "float.tif": Image.fromarray(grey.astype(np.float32)),
    }
    for name, image in images.items():
        image.save(folder / name)
    return [folder / name for name in images]


def readers(target: str) -> tuple[Callable[[Path], object], ...]:
    """The bbcu functions that read one file of ``target``'s kind (only their modules are imported:
    the packed format and the image reader never import PyTorch)."""
    if target == "packed":
        from bbcu.formats.packed import load_packed

        return (load_packed,)
    if target == "weights":
        from bbcu.formats.weights import load, read_metadata

        return (read_metadata, load)
    from bbcu.formats.image_io import read_image

    return (read_image, lambda path: read_image(path, keep_alpha=True))


def make_target(target: str) -> Callable[[bytes], None]:
    """The one-input test of ``target``: write the bytes to a file, read it, let only BbcuError pass."""
    from bbcu.core.errors import BbcuError

    functions = readers(target)
    handle, name = tempfile.mkstemp(prefix=f"bbcu-fuzz-{target}-")
    os.close(handle)
    path = Path(name)

    def test_one_input(data: bytes) -> None:
        path.write_bytes(data)
        for read in functions:
            try:
                read(path)
            except BbcuError as err:
                assert "\n" not in str(err), f"a refusal of more than one line: {err!r}"

    return test_one_input


def main(argv: list[str]) -> None:
    """``fuzz_loaders.py TARGET CORPUS_DIR [libFuzzer flags]``: seed the corpus if empty, then fuzz."""
    if len(argv) < 3 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} CORPUS_DIR [libFuzzer flags]")
    import atheris

    target, corpus = argv[1], Path(argv[2])
    # Instrumented, and so imported here before anything imports them uninstrumented: bbcu, and for
    # images Pillow's plugins (Python code parsing the headers); safetensors and the codecs are compiled.
    with atheris.instrument_imports(include=INSTRUMENTED[target]):
        test_one_input = make_target(target)
        if target == "image":
            from PIL import Image

            Image.init()
    if not corpus.is_dir() or not any(corpus.iterdir()):
        write_seeds(target, corpus)
    warnings.simplefilter("ignore")  # alpha dropped, 16-bit rounded: reported, not wrong
    atheris.Setup([argv[0], *LIBFUZZER_DEFAULTS, *argv[3:], str(corpus)], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
