"""The deployment view of the speed/quality trade-off: Set5 PSNR against milliseconds measured on this
machine (``bbcu plot --latency``), beside the paper's PSNR-versus-OPs chart.

OPs are what the paper counts; milliseconds are what a reader's CPU pays. The points are the networks
one ``bbcu bench`` run timed at the same threads (the packed binary networks, the full and Lite float
networks in fp32, bf16 and int8, MATLAB bicubic), each with its Set5 PSNR: measured where trained
weights were run (the shipped models, weights given to the bench, bicubic), otherwise the published
score, drawn hollow and labelled as published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from bbcu.report.timing import SIMULATED

_CHART_SIZE = (9, 6)  # inches
_FONT = 7  # label size in points
_CHARACTER_WIDTH = 0.6  # a label character's width, in font sizes (generous for the default sans)
_STYLES = {
    "1-bit packed": ("tab:red", "*"),
    "fp32": ("tab:blue", "o"),
    "bf16": ("tab:purple", "D"),
    "int8": ("tab:green", "s"),
}
_OTHER_STYLE = ("tab:grey", "v")


@dataclass(frozen=True)
class LatencyPoint:
    """One network on the latency chart.

    Attributes:
        label: Name printed beside the point.
        precision: How it ran (``1-bit packed``, ``fp32``, ``bf16``, ``int8``, bicubic's own label).
        ms: Median wall milliseconds of one call in the bench run.
        psnr: Set5 PSNR in dB.
        measured: Whether the PSNR was measured here (else it is the published number).
    """

    label: str
    precision: str
    ms: float
    psnr: float
    measured: bool


def latency_points(result: Mapping[str, object], scale: int) -> list[LatencyPoint]:
    """The networks of a ``bbcu bench`` result (its JSON) that ran and have a Set5 score at ``scale``.

    A binary network's float simulation is left out: nobody deploys it, it exists to check the engine.
    """
    points = []
    for row in result.get("networks", []):
        quality, time = row.get("quality"), row.get("time")
        if not quality or not time or row["precision"] == SIMULATED:
            continue
        if quality["dataset"] != f"Set5 x{scale}":
            continue
        label = row["label"] if row["network"] == "bicubic" else f"{row['label']} {row['precision']}"
        label += "" if quality["measured"] else " (published PSNR)"
        points.append(
            LatencyPoint(label, row["precision"], time["wall_ms"], quality["psnr"], quality["measured"])
        )
    return points


def draw_latency_chart(points: Sequence[LatencyPoint], *, title: str) -> Figure:
    """PSNR against wall milliseconds on a log axis; colour and marker say how a network ran, a filled
    marker a PSNR measured here and a hollow one a published PSNR."""
    figure = Figure(figsize=_CHART_SIZE, layout="constrained")
    axes = figure.subplots()
    for precision in dict.fromkeys(p.precision for p in points):
        colour, marker = _STYLES.get(precision, _OTHER_STYLE)
        for measured in (True, False):
            chosen = [p for p in points if p.precision == precision and p.measured == measured]
            if not chosen:
                continue
            axes.scatter(
                [p.ms for p in chosen],
                [p.psnr for p in chosen],
                s=80,
                marker=marker,
                facecolors=colour if measured else "none",
                edgecolors=colour,
                label=f"{precision}, {'PSNR measured here' if measured else 'published PSNR'}",
            )
    axes.set_xscale("log")
    axes.margins(x=0.2, y=0.1)
    axes.autoscale_view()
    anchors = [tuple(axes.transData.transform((p.ms, p.psnr)) * 72 / figure.dpi) for p in points]
    for point, offset in zip(points, label_offsets(anchors, [p.label for p in points]), strict=True):
        axes.annotate(
            point.label,
            (point.ms, point.psnr),
            xytext=(6, offset),
            textcoords="offset points",
            fontsize=_FONT,
        )
    axes.set_xlabel("milliseconds per image on this machine (median wall time, log scale)")
    axes.set_ylabel("Set5 PSNR (dB, Y channel)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return figure


def label_offsets(anchors: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[float]:
    """The vertical offset (points) of each label, written from 6 points right of its marker at
    ``anchors`` (display points): the first of 6, -12, 16, -22, 26, ... at which its box overlaps no
    label placed before it, placing labels from left to right (several precisions of one network share
    its published PSNR, and a neighbouring network may sit just below them)."""
    placed: list[tuple[float, float, float, float]] = []
    offsets = [0.0] * len(labels)
    for index in sorted(range(len(labels)), key=lambda i: anchors[i]):
        x, y = anchors[index]
        width = len(labels[index]) * _FONT * _CHARACTER_WIDTH
        for step in range(40):
            offset = 6 + 10 * (step // 2) if step % 2 == 0 else -(12 + 10 * (step // 2))
            box = (x + 6, y + offset, x + 6 + width, y + offset + _FONT)
            if not any(_overlap(box, other) for other in placed):
                break
        placed.append(box)
        offsets[index] = offset
    return offsets


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
