"""The evaluation loop: run a model over named test sets and score every image by its task's protocol.

One path for every model - learned, bicubic or identity - so a difference between two rows of a table
is a difference between models, never between scoring code. Outputs are rounded to uint8 before
scoring (docs/protocols.md); a set's score is the mean of its per-image scores.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bbcu.archs.registry import model_entry
from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.constants import SETTING_NAMES
from bbcu.core.errors import InvalidArgumentError
from bbcu.data.manifest import check_set
from bbcu.data.published import ROW_LABELS, published_score
from bbcu.data.testsets import load_test_set
from bbcu.formats.image_io import write_image
from bbcu.imaging.pixels import to_uint8
from bbcu.metrics.quality import evaluate_pair
from bbcu.run.tiling import restore_array

_SETTING_PREFIX = {"sr": "x", "denoise": "sigma", "jpeg": "q"}


@dataclass
class SetResult:
    """Scores of one model on one test set at one setting.

    Attributes:
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``.
        dataset: Test set name.
        setting: Scale, sigma or quality.
        per_image: (image name, {"psnr", "ssim"(, "psnrb")}) in file order.
    """

    task: str
    dataset: str
    setting: int
    per_image: list[tuple[str, dict[str, float]]] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        """Metric names, in the order the task reports them."""
        return list(self.per_image[0][1]) if self.per_image else []

    def mean(self) -> dict[str, float]:
        """The set's score: the mean of the per-image scores, per metric."""
        return {m: float(np.mean([scores[m] for _, scores in self.per_image])) for m in self.metrics}

    def summary(self) -> dict[str, object]:
        """The JSON row: dataset, setting (under its task's name), mean metrics, image count."""
        return {
            "task": self.task,
            "dataset": self.dataset,
            SETTING_NAMES[self.task]: self.setting,
            **self.mean(),
            "images": len(self.per_image),
        }


def setting_label(task: str, setting: int) -> str:
    """Short folder-safe label of a setting, e.g. ``x4``, ``sigma25``, ``q10``."""
    return f"{_SETTING_PREFIX[task]}{setting}"


def check_model_task(model: nn.Module, task: str) -> None:
    """Refuse a learned model on another task's protocol; parameter-free baselines suit every task.

    A binary architecture always counts as learned: its packed form (``bbcu.engine.PackedModel``) holds
    its weights as sign bits, not parameters, yet it is as tied to its task as the PyTorch model.

    Raises:
        InvalidArgumentError: If the model's registry task differs from ``task`` and it has learned weights.
    """
    name = getattr(model, "model_name", None)
    if name is None:
        return
    entry = model_entry(name)
    learned = entry.binary or any(True for _ in model.parameters())
    if learned and entry.task != task:
        raise InvalidArgumentError(
            f"model {name} is a {entry.task} model; it cannot be evaluated with --task {task}"
        )


def evaluate_set(
    model: nn.Module,
    task: str,
    dataset: str,
    setting: int,
    *,
    root: str | os.PathLike[str] | None = None,
    tile: int | None = None,
    save_dir: Path | None = None,
    device: str | torch.device = "cpu",
) -> SetResult:
    """Restore every image of one test set and score it.

    Args:
        model: Network with ``scale`` and ``in_channels``; for SR its scale must equal ``setting``.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``.
        dataset: Test set name under the data root.
        setting: Scale (SR), noise sigma (denoise) or JPEG quality.
        root: Data root (default: ``data_root()``).
        tile: Tile size for ``restore_array`` (None: automatic).
        save_dir: If given, outputs are written to ``save_dir/<dataset>/<setting>/<image>.png``.
        device: Where the model runs (training validates on its own device).

    Returns:
        Per-image scores. A folder that differs from the committed manifest of the standard sets
        (``bbcu.data.manifest``) is scored all the same, after a one-line warning.
    """
    scale = int(getattr(model, "scale", 1))
    if task == "sr" and scale != setting:
        raise InvalidArgumentError(f"the model upscales x{scale}, but x{setting} was asked for")
    check_set(dataset, root)  # one warning line when the folder is not the standard set
    pairs = load_test_set(dataset, task, root=root, **{SETTING_NAMES[task]: setting})
    result = SetResult(task, dataset, setting)
    label = setting_label(task, setting)
    for pair in tqdm(pairs, desc=f"{dataset} {label}", unit="img", leave=False):
        output = to_uint8(restore_array(model, pair.lq, tile=tile, device=device))
        if save_dir is not None:
            write_image(save_dir / dataset / label / f"{pair.name}.png", output)
        result.per_image.append((pair.name, evaluate_pair(output, pair.gt, task, scale=scale)))
    return result


def format_table(results: Sequence[SetResult], model_name: str) -> str:
    """Our scores in the paper's layout, one row per dataset, with the published ones beside them.

    ``results`` come from one run, so they share a task; one block per setting.
    """
    lines: list[str] = []
    for setting in dict.fromkeys(r.setting for r in results):
        block = [r for r in results if r.setting == setting]
        task = block[0].task
        label = ROW_LABELS[task].get(model_name, model_name)
        extra = "  PSNR-B" if task == "jpeg" else ""
        lines.append(f"{label} ({model_name}), {task} {setting_label(task, setting)}")
        lines.append(f"{'dataset':<10} {'images':>6}    PSNR    SSIM{extra}  | paper PSNR  SSIM")
        lines.extend(_table_row(result, model_name) for result in block)
        lines.append("")
    return "\n".join(lines)


def _table_row(result: SetResult, model_name: str) -> str:
    mean = result.mean()
    ours = f"{mean['psnr']:6.2f}  {mean['ssim']:.4f}"
    if "psnrb" in mean:
        ours += f"  {mean['psnrb']:6.2f}"
    paper = published_score(model_name, result.task, result.dataset, result.setting)
    theirs = "-"
    if paper is not None:
        theirs = f"{paper[0]:6.2f}  " + ("-" if paper[1] is None else f"{paper[1]:.4f}")
    return f"{result.dataset:<10} {len(result.per_image):>6}  {ours}  |     {theirs}"


def write_csv(path: Path, results: Sequence[SetResult], model_name: str) -> None:
    """Per-image scores of one run (one task) as CSV, written atomically: a crash never leaves half a file."""
    task = results[0].task
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "task", "dataset", SETTING_NAMES[task], "image", *results[0].metrics])
    for result in results:
        for image, scores in result.per_image:
            values = [f"{value:.6f}" for value in scores.values()]
            writer.writerow([model_name, task, result.dataset, result.setting, image, *values])
    atomic_write_bytes(path, buffer.getvalue().encode(), make_parents=True)
