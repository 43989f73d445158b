"""Pictures for people: captioned comparison grids of image crops, and the PSNR-versus-OPs chart.

Comparisons zoom with nearest neighbour on purpose: any smoother zoom would add its own blur and hide
the very differences between models the picture is meant to show. Images are NumPy uint8 arrays as
everywhere else in bbcu; drawing uses Pillow's built-in font, so no font file has to be installed, and
the chart uses matplotlib's object API (no pyplot global state, no display needed).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from PIL import Image, ImageDraw, ImageFont

from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.errors import InvalidArgumentError
from bbcu.data.testsets import as_grey, as_rgb
from bbcu.imaging.imresize import modcrop
from bbcu.metrics.quality import evaluate_pair

Box = tuple[int, int, int, int]
"""A crop as (x, y, width, height) in pixels, x to the right and y down from the top-left corner."""

CAPTION_FONT_SIZE = 14
_MARGIN = 6
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)


@dataclass(frozen=True)
class Panel:
    """One image of a grid and the caption printed under it (may hold several lines)."""

    image: np.ndarray
    caption: str


@dataclass(frozen=True)
class ChartPoint:
    """One model on the PSNR-versus-OPs chart.

    Attributes:
        label: Name printed beside the point.
        ops_g: Cost in G OPs (paper's convention, 320x180 input).
        psnr: Score in dB.
        ours: Whether the score was measured here (drawn apart from the published points).
    """

    label: str
    ops_g: float
    psnr: float
    ours: bool


def crop(image: np.ndarray, box: Box, scale: int = 1) -> np.ndarray:
    """The region ``box`` of an image ``scale`` times larger than the one ``box`` was given in.

    Raises:
        InvalidArgumentError: If the box is empty or leaves the image.
    """
    x, y, width, height = (value * scale for value in box)
    if (
        width <= 0
        or height <= 0
        or x < 0
        or y < 0
        or y + height > image.shape[0]
        or x + width > image.shape[1]
    ):
        raise InvalidArgumentError(
            f"crop {','.join(map(str, box))} (x,y,w,h) does not fit inside the "
            f"{image.shape[1] // scale}x{image.shape[0] // scale} image"
        )
    return image[y : y + height, x : x + width]


def zoom_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge ``factor`` times by repeating pixels, so every original pixel stays a sharp square."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def compose_grid(panels: Sequence[Panel], columns: int | None = None) -> np.ndarray:
    """Lay panels out in rows, each centred in an equal cell, captions aligned under the tallest panel.

    Args:
        panels: The panels, in reading order.
        columns: Panels per row; None puts them all on one row.

    Returns:
        An ``HxWx3`` uint8 picture.
    """
    if not panels:
        raise ValueError("a grid needs at least one panel")
    columns = min(columns or len(panels), len(panels))
    rows = math.ceil(len(panels) / columns)
    font = ImageFont.load_default(size=CAPTION_FONT_SIZE)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption_height = max(_text_size(probe, p.caption, font)[1] for p in panels) + 2 * _MARGIN
    cell_width = (
        max(max(p.image.shape[1], _text_size(probe, p.caption, font)[0]) for p in panels) + 2 * _MARGIN
    )
    tallest = max(p.image.shape[0] for p in panels)
    cell_height = tallest + caption_height + _MARGIN
    canvas = Image.new("RGB", (columns * cell_width, rows * cell_height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, panel in enumerate(panels):
        left, top = (index % columns) * cell_width, (index // columns) * cell_height
        image_left = left + (cell_width - panel.image.shape[1]) // 2
        canvas.paste(Image.fromarray(as_rgb(panel.image)), (image_left, top + _MARGIN))
        text_width = _text_size(draw, panel.caption, font)[0]
        text_at = (left + (cell_width - text_width) // 2, top + _MARGIN + tallest + _MARGIN)
        draw.multiline_text(text_at, panel.caption, fill=_TEXT, font=font, align="center")
    return np.asarray(canvas)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> tuple[int, int]:
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def psnr_caption(name: str, psnr: float | None) -> str:
    """``name`` with its PSNR on a second line when a ground truth made one measurable."""
    return name if psnr is None else f"{name}\n{psnr:.2f} dB"


def comparison_panels(
    lq: np.ndarray,
    outputs: Sequence[tuple[str, np.ndarray]],
    gt: np.ndarray | None,
    *,
    task: str,
    scale: int,
    box: Box,
    zoom: int = 1,
) -> list[Panel]:
    """Panels of one region: the input (nearest-enlarged to the output size), each output, the ground truth.

    Each caption carries the PSNR of the whole image under the task's published protocol (so the number
    matches ``bbcu eval``, not just the crop) when ``gt`` is given; the input of a super-resolution has
    no PSNR, since it is smaller than the ground truth.

    Args:
        lq: The degraded input, uint8.
        outputs: (name, restored uint8 image) per model, each ``scale`` times the input's size.
        gt: Ground truth of the outputs' size and layout, or None.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``: which protocol scores the outputs.
        scale: Output size / input size.
        box: The region, in input pixels.
        zoom: Nearest-neighbour enlargement applied to every crop on top of ``scale``.
    """

    def score(image: np.ndarray) -> float | None:
        return None if gt is None else evaluate_pair(image, gt, task, scale)["psnr"]

    panels = [
        Panel(
            zoom_nearest(crop(lq, box), scale * zoom),
            psnr_caption("input", score(lq) if scale == 1 else None),
        )
    ]
    panels += [
        Panel(zoom_nearest(crop(image, box, scale), zoom), psnr_caption(name, score(image)))
        for name, image in outputs
    ]
    if gt is not None:
        panels.append(Panel(zoom_nearest(crop(gt, box, scale), zoom), "ground truth"))
    return panels


def match_layout(gt: np.ndarray, like: np.ndarray, scale: int) -> np.ndarray:
    """A ground truth made comparable with an output: mod-cropped to the scale, grey/colour as the output.

    Raises:
        InvalidArgumentError: If its size does not match the output's.
    """
    gt = modcrop(gt, scale)
    if like.ndim == 2 and gt.ndim == 3:
        gt = as_grey(gt)
    elif like.ndim == 3 and gt.ndim == 2:
        gt = as_rgb(gt)
    if gt.shape != like.shape:
        raise InvalidArgumentError(
            f"the ground truth is {gt.shape[1]}x{gt.shape[0]} "
            f"but the restored image is {like.shape[1]}x{like.shape[0]}"
        )
    return gt


_CHART_SIZE = (8, 5.5)  # inches
_LABEL_GAP_PT = 10  # vertical room one label line needs, in points
_PLOT_HEIGHT_PT = 330  # about the height of the axes inside the figure, in points


def draw_psnr_ops_chart(points: Sequence[ChartPoint], *, title: str, y_label: str) -> Figure:
    """PSNR against cost on a log OPs axis, every point labelled; measured points stand out in colour.

    Points sharing a cost (the published binary baselines all cost what BBCU-L costs) would print their
    labels on top of each other, so labels alternate sides within a column, in PSNR order, and labels on
    one side are pushed apart vertically until each has a line of its own.
    """
    figure = Figure(figsize=_CHART_SIZE, layout="constrained")
    axes = figure.subplots()
    for ours, style in (
        (False, {"color": "tab:blue", "marker": "o"}),
        (True, {"color": "tab:red", "marker": "*"}),
    ):
        chosen = [p for p in points if p.ours == ours]
        if chosen:
            label = "measured here" if ours else "published (Xia et al. 2023)"
            axes.scatter([p.ops_g for p in chosen], [p.psnr for p in chosen], s=60, label=label, **style)
    psnrs = [p.psnr for p in points]
    gap = (max(psnrs) - min(psnrs) or 1.0) * 1.16 * _LABEL_GAP_PT / _PLOT_HEIGHT_PT
    for point, side, label_y in _label_places(points, gap):
        axes.annotate(
            point.label,
            (point.ops_g, point.psnr),
            xytext=(8 * side, label_y),
            textcoords=("offset points", "data"),
            ha="left" if side > 0 else "right",
            va="center",
            fontsize=8,
        )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.margins(x=0.15, y=0.08)
    axes.set_xlabel("OPs (G) for a 320x180 input, log scale: FP MACs + binary MACs / 64")
    axes.set_ylabel(y_label)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best")
    return figure


def _label_places(points: Sequence[ChartPoint], gap: float) -> list[tuple[ChartPoint, int, float]]:
    """Each point with its label's side (+1 right, -1 left) and height (PSNR units).

    Sides alternate within points of (nearly) equal cost, in PSNR order; labels on one side of one column are
    then spread to at least ``gap`` apart, keeping their order and their mean height.
    """
    groups: dict[tuple[float, int], list[ChartPoint]] = {}
    by_cost: dict[float, list[ChartPoint]] = {}
    for point in points:  # one column = costs within about 2 % (our count vs the paper's rounding)
        by_cost.setdefault(round(math.log10(point.ops_g), 2), []).append(point)
    for cost, column in by_cost.items():
        for rank, point in enumerate(sorted(column, key=lambda p: p.psnr)):
            groups.setdefault((cost, 1 if rank % 2 == 0 else -1), []).append(point)
    return [
        (point, side, height)
        for (_, side), group in groups.items()
        for point, height in zip(group, spread([p.psnr for p in group], gap), strict=True)
    ]


def spread(values: Sequence[float], gap: float) -> list[float]:
    """Ascending ``values`` moved apart to at least ``gap`` between neighbours, as little as needed
    upwards and then shifted back so that their mean is unchanged."""
    moved: list[float] = []
    for value in values:
        moved.append(value if not moved else max(value, moved[-1] + gap))
    shift = (sum(moved) - sum(values)) / len(values) if values else 0.0
    return [value - shift for value in moved]


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 150) -> None:
    """Write a figure as PNG, atomically, so an interrupted run leaves no half-written chart."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue(), make_parents=True)


def draw_k_sweep_chart(
    series: dict[int, list[tuple[float, float, float]]],
    candidates: dict[int, tuple[float, float]],
    *,
    title: str,
) -> Figure:
    """PSNR against the residual-alignment factor k (log axis), one line per channel width.

    Args:
        series: width -> [(k, PSNR, half-range over seeds)], drawn as a line with error bars.
        candidates: width -> (the authors' rule's k, the paper's figure's k); the measured points at
            those k are ringed (rule) and boxed (figure) in the width's colour, so the chart shows which
            candidate sits nearer the top of each curve.
        title: The chart's title.
    """
    figure = Figure(figsize=_CHART_SIZE, layout="constrained")
    axes = figure.subplots()
    for width, points in sorted(series.items()):
        ks, psnrs, spreads = zip(*sorted(points), strict=True)
        line = axes.errorbar(ks, psnrs, yerr=spreads, marker="o", capsize=3, label=f"{width} channels")
        colour = line[0].get_color()
        for index, marker in ((0, "o"), (1, "s")):
            chosen = [(k, p) for k, p, _ in points if k == candidates[width][index]]
            if chosen:
                axes.scatter(
                    *zip(*chosen, strict=True), s=180, marker=marker, facecolors="none", edgecolors=colour
                )
    axes.scatter([], [], s=120, marker="o", facecolors="none", edgecolors="grey", label="rule k = 130 w / 64")
    axes.scatter(
        [], [], s=120, marker="s", facecolors="none", edgecolors="grey", label="figure k = 130 * 64 / w"
    )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.ticklabel_format(axis="y", useOffset=False)
    axes.set_xlabel("residual-alignment factor k (log scale)")
    axes.set_ylabel("PSNR (dB), mean over the scored sets")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best")
    return figure
