"""``bbcu demo`` (``make demo``): x4 super-resolution of one example with the shipped BBCU model.

The example is Set5's butterfly when the data folder is there (its official MATLAB-bicubic LR file as
input, the HR image as ground truth), else a generated zone plate with text, downscaled the same way,
so the demo runs on a bare checkout too. It writes the restored image and a side-by-side picture
(input, bicubic, BBCU, ground truth, PSNR in each caption) and says where they are. Until a trained
model is shipped it says so and shows bicubic only: no result is ever faked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bbcu.core.errors import DataNotFoundError
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image, write_image
from bbcu.imaging.imresize import bicubic_downsample, modcrop
from bbcu.metrics.quality import evaluate_pair
from bbcu.report.pictures import comparison_panels, compose_grid
from bbcu.run import zoo
from bbcu.run.images import restore_pixels
from bbcu.run.resolve import resolve_model

SCALE = 4
EXAMPLE = ("Set5", "butterfly")
SYNTHETIC_SIDE = 256
DEFAULT_OUTPUT = Path("demo_output")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu demo``."""
    parser = subparsers.add_parser(
        "demo", help="x4 super-resolution of a built-in example with the shipped model"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"output folder (default ./{DEFAULT_OUTPUT})",
    )
    parser.add_argument("--data-root", help="data folder (default: $BBCU_DATA, else ../shared/data)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Restore the example with bicubic and (when shipped) BBCU, write the images, print where they are."""
    name, lq, gt = load_example(args.data_root)
    print(f"example: {name}, {lq.shape[1]}x{lq.shape[0]} input, x{SCALE}")
    outputs = [("bicubic", restore_pixels(resolve_model("bicubic", scale=SCALE), lq))]
    model_name = zoo.default_model("sr", SCALE)
    if zoo.is_shipped(model_name):
        outputs.append((model_name, restore_pixels(resolve_model(model_name, scale=SCALE), lq)))
    else:
        print(f"no shipped BBCU model yet: showing bicubic only ({model_name} is not in {zoo.models_dir()})")
    shown, restored = outputs[-1]
    restored_path = args.output / f"{name}_{shown}_x{SCALE}.png"
    write_image(restored_path, restored)
    box = (0, 0, lq.shape[1], lq.shape[0])
    comparison_path = args.output / f"{name}_comparison.png"
    write_image(
        comparison_path, compose_grid(comparison_panels(lq, outputs, gt, task="sr", scale=SCALE, box=box))
    )
    for label, image in outputs:
        psnr = evaluate_pair(image, gt, "sr", SCALE)["psnr"]
        print(f"  {label:<12} PSNR {psnr:.2f} dB (Y channel, {SCALE} border pixels cropped)")
    print(f"restored image: {restored_path}")
    print(f"side by side:   {comparison_path}")
    return 0


def load_example(root: str | None) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, LR, HR): Set5's butterfly when the data folder has it, else the generated pattern."""
    try:
        folder = data_root(root) / EXAMPLE[0]
    except DataNotFoundError:
        folder = None
    hr_path = None if folder is None else folder / "HR" / f"{EXAMPLE[1]}.png"
    if hr_path is None or not hr_path.is_file():
        print("no data folder with Set5: using a generated test pattern")
        hr = synthetic_pattern(SYNTHETIC_SIDE)
        return "pattern", bicubic_downsample(hr, SCALE), hr
    hr = modcrop(read_image(hr_path), SCALE)
    official_lr = folder / "LR_bicubic" / f"X{SCALE}" / f"{EXAMPLE[1]}x{SCALE}.png"
    lq = read_image(official_lr) if official_lr.is_file() else bicubic_downsample(hr, SCALE)
    return EXAMPLE[1], lq, hr


def synthetic_pattern(side: int) -> np.ndarray:
    """A colour zone plate (every frequency up to Nyquist) with dark text: the hard cases of upscaling."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64) - side / 2
    phase = np.pi * (x**2 + y**2) / (2 * side)  # rings reach 1/4 cycle per pixel at the edges
    rgb = np.stack([0.5 + 0.5 * np.cos(phase + shift) for shift in (0.0, 2.1, 4.2)], axis=2)
    image = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=side // 8)
    draw.rectangle((side // 8, side * 3 // 8, side * 7 // 8, side * 5 // 8), fill=(250, 250, 240))
    draw.text((side // 2, side // 2), "BBCU 1-bit", fill=(10, 10, 30), font=font, anchor="mm")
    return np.asarray(image)
