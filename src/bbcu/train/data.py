"""The training set a recipe names: its HR folders (relative to the data root) cut into task patches.

The datasets themselves live in ``bbcu.data.datasets``; this module only maps recipe keys onto them and
turns the most common mistake - a recipe naming DIV2K, which is not shipped - into a clear message.
"""

from __future__ import annotations

from pathlib import Path

from bbcu.core.errors import DataNotFoundError
from bbcu.data.datasets import DenoiseTrainSet, HRSource, JPEGTrainSet, PairedPatchDataset, SRTrainSet
from bbcu.train.schema import HRFolder, TrainConfig


def build_train_set(config: TrainConfig, data_root: Path) -> PairedPatchDataset:
    """The task's patch dataset over ``data.train``, seeded by ``train.seed``.

    Raises:
        DataNotFoundError: A training folder (or its names file) missing under the data root.
    """
    data, seed = config.data, config.train.seed
    sources = [_source(folder, data_root) for folder in data.train]
    if config.task == "sr":
        return SRTrainSet(sources, config.model.scale, lr_patch=data.patch, seed=seed, repeat=data.repeat)
    if config.task == "denoise":
        return DenoiseTrainSet(
            sources, data.patch, data.sigma_range, data.grey, seed=seed, repeat=data.repeat
        )
    return JPEGTrainSet(sources, data.patch, data.quality_range, seed=seed, repeat=data.repeat)


def _source(folder: HRFolder, data_root: Path) -> HRSource:
    path = data_root / folder.dir
    if not path.is_dir():
        raise DataNotFoundError(
            f"data.train: no folder {folder.dir!r} under the data root {data_root}; any folder of HR images "
            "works, e.g. --set 'data.train=[{dir: T91}]'"
        )
    names = data_root / folder.names if folder.names is not None else None
    return HRSource(path, names)
