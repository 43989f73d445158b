"""What a run records: a CSV of every scalar, TensorBoard events, and a training-curve PNG.

The CSV is in long form (``iteration,metric,value``; metrics such as ``train/loss``, ``train/lr``,
``val/Set5/psnr``) so that new metrics need no new columns and a resumed run can drop the rows a killed
run wrote after its last checkpoint. The PNG (loss and validation PSNR against iterations) is redrawn
at every validation and at the end.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bbcu.core.atomic import atomic_path, atomic_write_bytes
from bbcu.core.errors import MissingExtraError

logger = logging.getLogger(__name__)

CSV_NAME = "log.csv"
CURVES_NAME = "curves.png"
TB_DIR = "tensorboard"


class RunLog:
    """Scalar log of one run (rank 0 only).

    Args:
        run_dir: The run directory.
        tensorboard: ``True`` requires TensorBoard, ``"auto"`` uses it when installed, ``False`` never.
        start_iteration: Iteration the run (re)starts from; rows logged after it by an earlier,
            interrupted process are dropped so the log reads as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, tensorboard: bool | str, start_iteration: int) -> None:
        self.csv_path = run_dir / CSV_NAME
        self.curves_path = run_dir / CURVES_NAME
        _truncate_csv(self.csv_path, start_iteration)
        self._writer = _open_tensorboard(run_dir / TB_DIR, tensorboard, start_iteration)

    def scalars(self, iteration: int, values: dict[str, float]) -> None:
        """Append one value per metric at ``iteration``."""
        new_file = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["iteration", "metric", "value"])
            writer.writerows([iteration, name, f"{value:.8g}"] for name, value in values.items())
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, value, iteration)
            self._writer.flush()

    def plot(self) -> None:
        """Redraw the curve PNG from the CSV (atomically, so a viewer never sees half a file)."""
        series = read_log(self.csv_path)
        figure, (loss_axis, psnr_axis) = plt.subplots(1, 2, figsize=(11, 4))
        if "train/loss" in series:
            loss_axis.plot(*zip(*series["train/loss"], strict=True), lw=1)
            loss_axis.set_yscale("log")
        loss_axis.set(title="training loss (L1)", xlabel="iteration")
        for name, points in series.items():
            if name.startswith("val/") and name.endswith("/psnr"):
                psnr_axis.plot(*zip(*points, strict=True), marker="o", ms=3, label=name.split("/")[1])
        psnr_axis.set(title="validation PSNR (dB)", xlabel="iteration")
        if psnr_axis.has_data():
            psnr_axis.legend()
        figure.tight_layout()
        with atomic_path(self.curves_path) as temp_path:
            figure.savefig(temp_path, dpi=100, format="png")
        plt.close(figure)

    def close(self) -> None:
        """Flush and close TensorBoard files."""
        if self._writer is not None:
            self._writer.close()


def read_log(csv_path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(iteration, value), ...]}`` from a run's CSV (empty when there is none yet)."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    if csv_path.exists():
        with open(csv_path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                series[row["metric"]].append((int(row["iteration"]), float(row["value"])))
    return dict(series)


def _truncate_csv(csv_path: Path, start_iteration: int) -> None:
    """Keep only rows up to ``start_iteration``: a resumed run drops what a killed run logged later."""
    if not csv_path.exists():
        return
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [r for r in rows[1:] if int(r[0]) <= start_iteration]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(kept)
    atomic_write_bytes(csv_path, buffer.getvalue().encode("utf-8"))


def _open_tensorboard(folder: Path, wanted: bool | str, start_iteration: int) -> Any:
    """A ``SummaryWriter`` purging events after ``start_iteration``, or None when TensorBoard is off."""
    if wanted is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        if wanted is True:
            raise MissingExtraError(
                "output.tensorboard is true but the tensorboard package is not installed "
                "(pip install tensorboard, or --set output.tensorboard=false)"
            ) from err
        logger.warning("tensorboard is not installed; logging to CSV and PNG only")
        return None
    return SummaryWriter(str(folder), purge_step=start_iteration + 1 if start_iteration else None)
