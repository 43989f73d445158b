"""``bbcu restore``: restore image files, folders and glob patterns into an output folder.

A batch is never lost to one bad file: an unreadable or unwritable image is reported on one line and
skipped, the others are written (each atomically, so no half-written file is ever left behind), and the
exit status is 1 when anything failed. Problems with the command itself (unknown model, bad option)
stop it before any image is touched.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from bbcu.core.constants import RESTORE_TASKS, SR_SCALES
from bbcu.core.errors import BbcuError, InvalidArgumentError, OutputError, one_line
from bbcu.formats.image_io import IMAGE_EXTENSIONS, read_image, write_image
from bbcu.run.faces import FaceRestorer, face_restorer
from bbcu.run.images import ALPHA_UPSAMPLERS, rescale_output, restore_pixels
from bbcu.run.resolve import ENGINES, ResolvedModel, resolve_model

OUTPUT_EXTENSIONS = tuple(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
PER_IMAGE_ERRORS = (BbcuError, OSError, ValueError, RuntimeError, MemoryError)
"""What one image can raise without the batch stopping: bad files, full disks, out-of-memory tiles."""

Job = tuple[Path, Path]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu restore``."""
    parser = subparsers.add_parser(
        "restore",
        help="restore images (super-resolution, denoising, JPEG artifacts) with a BBCU model",
        description="Restore image files, folders of images and glob patterns; outputs go to one folder.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image file, folder of images, or glob pattern"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument(
        "--task",
        choices=RESTORE_TASKS,
        help="what to undo; checked against the model (default sr); face: DFDNet (see --dictionary)",
    )
    parser.add_argument(
        "--scale", type=int, choices=SR_SCALES, help="SR factor (default: the model's, else 4)"
    )
    parser.add_argument(
        "--model",
        help="shipped model name, a registry model without weights (bicubic), or with --weights the "
        "network the weights must be (e.g. esrgan for an ESRGAN .pth)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help="weights (.safetensors), packed (.bbcu) or official checkpoint (.pth, converted on the fly)",
    )
    parser.add_argument("--engine", choices=ENGINES, default="torch", help="packed = the 1-bit CPU engine")
    parser.add_argument(
        "--tile", type=int, help="tile size in input pixels (default: automatic for large images)"
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        help="context pixels around each tile (default: the receptive radius, exact)",
    )
    parser.add_argument(
        "--outscale",
        type=float,
        help="final scale when it differs from the network's (e.g. 3.5 with an x4 model): the output is "
        "resized with MATLAB bicubic",
    )
    parser.add_argument(
        "--alpha-upsampler",
        choices=ALPHA_UPSAMPLERS,
        default="bicubic",
        help="how transparency is upscaled: MATLAB bicubic (default) or the network itself",
    )
    parser.add_argument("--suffix", default="", help="appended to each output file stem, e.g. _x4")
    parser.add_argument("--ext", choices=OUTPUT_EXTENSIONS, default="png", help="output format (default png)")
    parser.add_argument("--device", default="cpu", help="torch device for --engine torch (default cpu)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="with --engine packed: print which path ran each layer (popcount kernel, oneDNN int8, PyTorch)",
    )
    faces = parser.add_argument_group("--task face (DFDNet)")
    faces.add_argument(
        "--dictionary", type=Path, help="DFDNet's component dictionary: its .pth, or the folder of .npy files"
    )
    faces.add_argument(
        "--landmarks",
        type=Path,
        help="68 landmarks of the aligned 512x512 face (68 lines 'x y'), or a folder of <image file>.txt",
    )
    faces.add_argument(
        "--part-boxes",
        type=int,
        nargs=16,
        metavar="N",
        help="instead of landmarks: x0 y0 x1 y1 of the left eye, right eye, nose and mouth (512 px face)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Restore every input, report failures one line each, and print a summary line."""
    if args.tile is not None and args.tile < 1:
        raise InvalidArgumentError(f"--tile must be positive, got {args.tile}")
    if args.tile_overlap is not None and args.tile_overlap < 0:
        raise InvalidArgumentError(f"--tile-overlap must be non-negative, got {args.tile_overlap}")
    if args.outscale is not None and not args.outscale > 0:
        raise InvalidArgumentError(f"--outscale must be positive, got {args.outscale}")
    model, faces = resolve(args)
    check_output_folder(args.output.absolute())
    sources, problems = expand_inputs(args.inputs)
    if faces is not None:
        faces.check(sources, read_image)
    jobs, clashes = plan_outputs(sources, args.output, args.suffix, args.ext)
    for problem in problems + clashes:
        report(problem)
    start = time.perf_counter()
    restored = 0
    progress = tqdm(jobs, desc=one_line(f"bbcu restore ({model.name})"), unit="image", file=sys.stderr)
    for source, target in progress:
        try:
            restore_file(model, source, target, args, faces)
        except PER_IMAGE_ERRORS as err:
            message = one_line(str(err))
            report(message if one_line(str(source)) in message else f"{source}: {message}")
        else:
            restored += 1
    failed = len(problems) + len(clashes) + len(jobs) - restored
    elapsed = time.perf_counter() - start
    if args.verbose:
        print_layer_paths(model.network)
    print(one_line(f"restored {restored}, failed {failed}, in {elapsed:.1f} s (outputs in {args.output})"))
    return 1 if failed else 0


def resolve(args: argparse.Namespace) -> tuple[ResolvedModel, FaceRestorer | None]:
    """The model, and for ``--task face`` how each input gets its part boxes (or is a whole photo)."""
    if args.task == "face":
        return face_restorer(
            args.weights,
            args.dictionary,
            model=args.model,
            boxes=args.part_boxes,
            landmarks=args.landmarks,
            device=args.device,
            engine=args.engine,
        )
    if any(value is not None for value in (args.dictionary, args.landmarks, args.part_boxes)):
        raise InvalidArgumentError("--dictionary, --landmarks and --part-boxes are for --task face")
    model = resolve_model(
        args.model, task=args.task, scale=args.scale, weights=args.weights, engine=args.engine
    )
    return model, None


def check_output_folder(folder: Path) -> None:
    """Refuse an output folder that can never be one before any image is computed (it is created, if
    missing, by the first write).

    Raises:
        OutputError: If ``folder`` or the nearest existing folder above it is a file, or is not writable.
    """
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"cannot use {folder} as the output folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot use {folder} as the output folder: {existing} is not writable")


def restore_file(
    model: ResolvedModel,
    source: Path,
    target: Path,
    args: argparse.Namespace,
    faces: FaceRestorer | None = None,
) -> None:
    """Read (alpha kept), restore and write one image; the write is atomic."""
    image = read_image(source, keep_alpha=True)
    if faces is not None:
        restored = faces.restore(image, source)
    else:
        options = {"tile": args.tile, "tile_overlap": args.tile_overlap, "device": args.device}
        restored = restore_pixels(model, image, alpha_upsampler=args.alpha_upsampler, **options)
    if args.outscale is not None:
        restored = rescale_output(restored, image.shape[:2], args.outscale)
    write_image(target, restored)


def print_layer_paths(network: object) -> None:
    """``--verbose``: one line per layer of a packed-engine network on stderr, its name and what computed it
    (the paths are chosen at the first image, so this comes after it); nothing for other networks."""
    for name, path in getattr(network, "layer_paths", list)():
        print(one_line(f"layer {name}: {path}"), file=sys.stderr)


def report(problem: str) -> None:
    """One line on stderr that does not break the progress bar, whatever the file names it quotes."""
    tqdm.write(one_line(f"bbcu restore: skipped {problem}"), file=sys.stderr)


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files to restore (in the order given, each once) and a problem line for each input that found none.

    A file is taken as it is (reading it decides whether it is an image); a folder gives the image files
    directly inside it; anything else is a glob pattern (``**`` recurses). A file reached twice (``a.png``
    and its absolute path, a folder and a pattern, a symbolic or hard link) is restored and counted once,
    under the first name it was given.
    """
    files: list[Path] = []
    problems: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            missing = f"{path}: folder holds no image file ({', '.join(IMAGE_EXTENSIONS)})"
        elif path.exists():
            found, missing = [path], ""
        else:
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            missing = f"{text}: no such file or folder, and no file matches it as a pattern"
        if not found:
            problems.append(missing)
        files.extend(found)
    unique: dict[tuple[int, int] | Path, Path] = {}
    for path in files:
        unique.setdefault(_identity(path), path)
    return list(unique.values()), problems


def _identity(path: Path) -> tuple[int, int] | Path:
    """What makes two names one file: its device and inode, or the resolved path if it cannot be read."""
    try:
        status = path.stat()
    except OSError:
        return path.resolve()
    return status.st_dev, status.st_ino


def plan_outputs(sources: list[Path], folder: Path, suffix: str, ext: str) -> tuple[list[Job], list[str]]:
    """Pair each source with ``folder/<stem><suffix>.<ext>``; never overwrite an input or another output."""
    jobs: list[Job] = []
    problems: list[str] = []
    taken: dict[Path, Path] = {}
    inputs = {source.resolve() for source in sources}
    for source in sources:
        target = folder / f"{source.stem}{suffix}.{ext}"
        key = target.resolve()
        if key in inputs:
            problems.append(
                f"{source}: its output {target} would overwrite an input (use --suffix or another -o)"
            )
        elif key in taken:
            problems.append(f"{source}: its output {target} is already the output of {taken[key]}")
        else:
            taken[key] = source
            jobs.append((source, target))
    return jobs, problems
