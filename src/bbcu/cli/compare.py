"""``bbcu compare``: one zoomed region of one image as restored by several models, side by side.

Average PSNR hides where models differ; a crop of a hard region (text, fine stripes) shows it. Each
panel is captioned with the model's name and, when the ground truth is given, its whole-image PSNR
under the task's published protocol.

``--task face`` compares the face models of ``--models-dir`` (DFDNet checkpoints with their dictionaries,
``bbcu.run.zoo``) on one aligned 512x512 face with its landmarks or part boxes, as ``bbcu restore --task
face`` restores it; faces have no scoring protocol, so ``--gt`` is refused.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from bbcu.core.constants import RESTORE_TASKS, SR_SCALES
from bbcu.core.errors import InvalidArgumentError
from bbcu.formats.image_io import read_image, write_image
from bbcu.formats.packed import SUPPORTED_ARCHITECTURES
from bbcu.report.pictures import Box, comparison_panels, compose_grid, match_layout
from bbcu.run import zoo
from bbcu.run.faces import face_restorer
from bbcu.run.images import restore_pixels
from bbcu.run.resolve import ENGINES, ResolvedModel, resolve_model

DEFAULT_CROP_SIDE = 48
TARGET_PANEL_SIDE = 256
"""Automatic zoom enlarges crops to about this many pixels, large enough to see single pixels."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="zoomed-crop comparison grid of several models on one image",
        description="Restore IMAGE with each model; draw the same zoomed crop of every result in one grid.",
    )
    parser.add_argument("image", type=Path, help="the degraded input (the low-resolution image for SR)")
    parser.add_argument(
        "--models", default="", help="comma-separated shipped names, bicubic, or weights files (.safetensors)"
    )
    parser.add_argument(
        "--weights", type=Path, action="append", default=[], help="one more weights file (repeatable)"
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="a folder of bbcu weights files and official ESRGAN / Real-ESRGAN .pth checkpoints: --models "
        "may name them by file name; without --models and --weights, all of them at --scale are compared",
    )
    parser.add_argument(
        "--task",
        choices=RESTORE_TASKS,
        help="task of the models, checked (default: the models'); face: the --models-dir face models",
    )
    parser.add_argument("--scale", type=int, choices=SR_SCALES, help="SR factor, checked against the models")
    parser.add_argument("--gt", type=Path, help="ground truth: adds a panel and the PSNR of every model")
    parser.add_argument(
        "--crop", help=f"x,y,w,h in input pixels (default: the centred {DEFAULT_CROP_SIDE}-pixel square)"
    )
    parser.add_argument(
        "--zoom",
        type=int,
        help=f"extra nearest zoom of every crop (default: panels about {TARGET_PANEL_SIDE} px)",
    )
    parser.add_argument("--columns", type=int, help="panels per row (default: all on one row)")
    parser.add_argument("--engine", choices=ENGINES, default="torch")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the grid image (.png)")
    faces = parser.add_argument_group("--task face (IMAGE is an aligned 512x512 face)")
    faces.add_argument("--landmarks", type=Path, help="the face's 68 landmarks (68 lines 'x y')")
    faces.add_argument(
        "--part-boxes",
        type=int,
        nargs=16,
        metavar="N",
        help="instead of landmarks: x0 y0 x1 y1 of the left eye, right eye, nose and mouth",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Restore with every model and write the captioned grid."""
    lq = read_image(args.image)
    if args.task == "face":
        outputs, engines = restore_faces(args, lq)
        task, scale = "face", 1
    elif args.landmarks is not None or args.part_boxes is not None:
        raise InvalidArgumentError("--landmarks and --part-boxes are for --task face")
    else:
        models = resolve_models(args)
        task, scale = models[0].task or args.task or "sr", models[0].scale
        outputs = [(model.name, restore_pixels(model, lq)) for model in models]
        engines = ", ".join(f"{m.name} on {m.engine}" for m in models)
    box = parse_crop(args.crop) if args.crop else centred_box(lq.shape[:2], DEFAULT_CROP_SIDE)
    zoom = args.zoom or max(1, math.ceil(TARGET_PANEL_SIDE / (max(box[2:]) * scale)))
    if zoom < 1 or (args.columns is not None and args.columns < 1):
        raise InvalidArgumentError("--zoom and --columns must be positive")
    gt = None if args.gt is None else match_layout(read_image(args.gt), outputs[0][1], scale)
    panels = comparison_panels(lq, outputs, gt, task=task, scale=scale, box=box, zoom=zoom)
    write_image(args.output, compose_grid(panels, args.columns))
    print(
        f"wrote {args.output}: {len(panels)} panels of crop {','.join(map(str, box))} at zoom {scale * zoom} "
        f"({engines})"
    )
    return 0


def resolve_models(args: argparse.Namespace) -> list[ResolvedModel]:
    """Every model named, all checked to share one task and one scale."""
    names = [name.strip() for name in args.models.split(",") if name.strip()] + [str(w) for w in args.weights]
    folder = {m.name: m for m in zoo.folder_models(args.models_dir)} if args.models_dir else {}
    if not names:
        names = [name for name, m in folder.items() if _fits(m, args.task, args.scale)]
    if not names:
        where = f"; {args.models_dir} has no model for --task/--scale" if args.models_dir else ""
        raise InvalidArgumentError(f"name at least one model with --models or --weights{where}")
    models = [
        _on_engine(_resolve(name, folder.get(name), args.task, args.scale), args.engine) for name in names
    ]
    if len({m.scale for m in models}) > 1 or len({m.task for m in models} - {None}) > 1:
        found = ", ".join(f"{m.name} ({m.task} x{m.scale})" for m in models)
        raise InvalidArgumentError(f"the models do not share one task and scale: {found}")
    return models


def restore_faces(args: argparse.Namespace, face: np.ndarray) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Every face model of ``--models-dir`` (or those ``--models`` names) on the aligned face, and the
    summary of what ran (face models run on torch only).

    Raises:
        InvalidArgumentError: For a missing folder, landmarks or part boxes, a ground truth, weights
            files, or a name that is not one of the folder's face models.
    """
    if args.landmarks is None and args.part_boxes is None:
        raise InvalidArgumentError(
            "--task face compares models on an aligned 512x512 face: give its --landmarks or --part-boxes"
        )
    if args.gt is not None or args.weights:
        raise InvalidArgumentError("--task face takes neither --gt (faces are not scored) nor --weights")
    found = zoo.folder_models(args.models_dir) if args.models_dir else []
    folder = {m.name: m for m in found if m.task == "face"}
    names = [name.strip() for name in args.models.split(",") if name.strip()] or list(folder)
    if not names or any(name not in folder for name in names):
        raise InvalidArgumentError(
            f"--task face compares the face models of --models-dir (DFDNet .pth with its dictionary); "
            f"found: {', '.join(folder) or 'none'}"
        )
    outputs = []
    for name in names:
        model = folder[name]
        _, restorer = face_restorer(
            model.path,
            model.dictionary,
            model=model.architecture,
            boxes=args.part_boxes,
            landmarks=args.landmarks,
        )
        restorer.check([args.image], read_image)
        outputs.append((name, restorer.restore(face, args.image)))
    return outputs, ", ".join(f"{name} on torch" for name in names)


def _fits(model: zoo.ShippedModel, task: str | None, scale: int | None) -> bool:
    """Whether a folder model does the task and scale asked for (unset ones: SR at x4, the default)."""
    return model.task == (task or "sr") and model.scale == (scale or (4 if model.task == "sr" else 1))


def _resolve(
    name: str, in_folder: zoo.ShippedModel | None, task: str | None, scale: int | None
) -> ResolvedModel:
    """A models-folder file by its name (converted when official), else any name ``resolve_model`` takes."""
    if in_folder is None:
        return resolve_model(name, task=task, scale=scale)
    return resolve_model(in_folder.architecture, task=task, scale=scale, weights=in_folder.path)


def _on_engine(model: ResolvedModel, engine: str) -> ResolvedModel:
    """``--engine packed`` moves every network the packed engine runs onto it; the others (bicubic,
    full-precision nets) stay on torch, so one grid can still compare them all."""
    if engine != "packed" or getattr(model.network, "model_name", None) not in SUPPORTED_ARCHITECTURES:
        return model
    return replace(model, network=resolve_model(model.network, engine="packed").network, engine="packed")


def parse_crop(text: str) -> Box:
    """``"10,20,32,32"`` -> ``(10, 20, 32, 32)``; anything else is a user error."""
    try:
        x, y, width, height = (int(value) for value in text.split(","))
    except ValueError:
        raise InvalidArgumentError(f"--crop takes x,y,w,h (four integers), got {text!r}") from None
    return x, y, width, height


def centred_box(shape: tuple[int, int], side: int) -> Box:
    """A square of ``side`` pixels (smaller if the image is) in the middle of an image of ``shape``."""
    height, width = shape
    side = min(side, height, width)
    return (width - side) // 2, (height - side) // 2, side, side
