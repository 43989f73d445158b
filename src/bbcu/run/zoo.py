"""Shipped models: trained weights that travel with the project, found by a short name.

A shipped model is a pair of files in the models folder::

    models/<name>.safetensors   weights written by ``bbcu.weights.save`` (they record the registry name
                                and keyword arguments, so the name alone rebuilds the network)
    models/<name>.md            its model card: config, iterations, wall time, hardware, data, scores
    models/<name>.bbcu          optional: the packed export, used by ``--engine packed`` when present

The folder is ``$BBCU_MODELS`` when set, else the package's own ``bbcu/models`` (package data, so a
wheel carries them as a checkout does). Names say what the model does and
at which scale, e.g. ``bbcu-l-x4``; ``default_model`` picks the one a task uses when none is named.

A folder of the user's own (``bbcu compare`` / ``bbcu serve --models-dir``, or ``$BBCU_MODELS`` itself)
may also hold official ESRGAN-family checkpoints as their authors publish them (``RRDB_PSNR_x4.pth``,
``RRDB_ESRGAN_x4.pth``, ``RealESRGAN_x4plus.pth``): ``folder_models`` recognises them by their key layout
(read with ``weights_only``, no pickled code runs) and names them by file name; they are converted in
memory when used.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bbcu.archs import model_entry
from bbcu.core.errors import InvalidArgumentError, InvalidFileError, ModelNotFoundError
from bbcu.core.paths import SHIPPED_MODELS_DIR
from bbcu.formats.convert import read_checkpoint, unwrap_state_dict
from bbcu.formats.esrgan import infer_config, to_basicsr_keys
from bbcu.formats.weights import read_metadata

logger = logging.getLogger(__name__)

ENV_VAR = "BBCU_MODELS"
WEIGHTS_SUFFIX = ".safetensors"
OFFICIAL_SUFFIX = ".pth"
PACKED_SUFFIX = ".bbcu"
CARD_SUFFIX = ".md"
DEFAULT_MODELS: dict[tuple[str, int], str] = {
    ("sr", 2): "bbcu-l-x2",
    ("sr", 3): "bbcu-l-x3",
    ("sr", 4): "bbcu-l-x4",
    ("denoise", 1): "dncnn-bbcu-blind",
    ("jpeg", 1): "dncnn3-bbcu-blind",
}
"""The shipped model each (task, scale) uses when the user names none; denoising and JPEG have scale 1."""


@dataclass(frozen=True)
class ShippedModel:
    """What a shipped weights file says about itself, read from its header without loading tensors.

    Attributes:
        name: Shipped name, e.g. ``"bbcu-l-x4"``.
        path: The weights file.
        architecture: Registry name of the network, e.g. ``"bbcu-l"``.
        model_kwargs: Keyword arguments the network was built with.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``.
        scale: Upscaling factor (1 for denoising and JPEG).
    """

    name: str
    path: Path
    architecture: str
    model_kwargs: dict[str, object]
    task: str
    scale: int


def models_dir() -> Path:
    """The folder shipped models are read from: ``$BBCU_MODELS``, else the package's ``bbcu/models``."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else SHIPPED_MODELS_DIR


def list_shipped() -> list[str]:
    """Sorted names of the shipped models (weights files in the models folder); empty if there is none."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.name.removesuffix(WEIGHTS_SUFFIX) for p in folder.glob(f"*{WEIGHTS_SUFFIX}") if p.is_file()
    )


def is_shipped(name: str) -> bool:
    """Whether ``name`` is a shipped model (a weights file of that name exists)."""
    return (models_dir() / f"{name}{WEIGHTS_SUFFIX}").is_file()


def shipped_path(name: str) -> Path:
    """The weights file of shipped model ``name``.

    Raises:
        ModelNotFoundError: If no such model is shipped; the message lists what is.
    """
    path = models_dir() / f"{name}{WEIGHTS_SUFFIX}"
    if not path.is_file():
        raise ModelNotFoundError(f"no shipped model {name!r} in {models_dir()} ({_shipped_summary()})")
    return path


def packed_path(name: str) -> Path | None:
    """The packed export of shipped model ``name`` when one is shipped beside its weights, else None."""
    path = shipped_path(name).with_suffix(PACKED_SUFFIX)
    return path if path.is_file() else None


def model_card(name: str) -> Path | None:
    """The model card of shipped model ``name``, or None when it has none."""
    path = shipped_path(name).with_suffix(CARD_SUFFIX)
    return path if path.is_file() else None


def shipped_info(name: str) -> ShippedModel:
    """Describe shipped model ``name`` from its file header (cheap: no tensor is read).

    Raises:
        ModelNotFoundError: If it is not shipped.
        InvalidFileError: If its header does not name a registered model.
    """
    return describe_weights(shipped_path(name), name=name)


def describe_weights(path: Path, *, name: str | None = None) -> ShippedModel:
    """Describe any bbcu weights file from its header; ``name`` defaults to the file stem.

    Raises:
        InvalidFileError: If the file is not a bbcu weights file or names an unknown model.
    """
    metadata = read_metadata(path)
    architecture = metadata.get("model", "")
    try:
        kwargs = json.loads(metadata.get("model_kwargs", "{}"))
        task = model_entry(architecture).task
    except (ModelNotFoundError, ValueError) as err:
        raise InvalidFileError(f"{path}: cannot tell which model it holds ({err})") from err
    if not isinstance(kwargs, dict):
        raise InvalidFileError(f"{path}: model_kwargs is not a JSON object")
    scale = int(kwargs.get("scale", factory_default(architecture, "scale", 1)))
    return ShippedModel(name or path.stem, path, architecture, kwargs, task, scale)


def folder_models(folder: Path) -> list[ShippedModel]:
    """Every model ``folder`` holds, by file name: bbcu weights files and ESRGAN-family checkpoints.

    A file that is neither (an official BBCU checkpoint, which needs its network named: ``bbcu convert``
    it first; a damaged file) is left out with a warning naming it, so one bad file hides nothing else.

    Raises:
        InvalidArgumentError: If ``folder`` is not a folder.
    """
    if not folder.is_dir():
        raise InvalidArgumentError(f"models folder not found: {folder}")
    models = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (WEIGHTS_SUFFIX, OFFICIAL_SUFFIX) or not path.is_file():
            continue
        try:
            models.append(
                describe_weights(path) if path.suffix == WEIGHTS_SUFFIX else describe_checkpoint(path)
            )
        except InvalidFileError as err:
            logger.warning("skipping %s", err)
    return models


def describe_checkpoint(path: Path) -> ShippedModel:
    """Describe an official ESRGAN-family ``.pth`` from its tensors' names and shapes.

    Raises:
        InvalidFileError: If it is unreadable, needs code to unpickle, or is in no RRDBNet layout.
    """
    state = unwrap_state_dict(read_checkpoint(path), source=str(path))
    kwargs = infer_config(to_basicsr_keys(state, source=str(path))[0], source=str(path))
    architecture = checkpoint_architecture(path)
    return ShippedModel(
        path.stem, path, architecture, kwargs, model_entry(architecture).task, kwargs["scale"]
    )


def checkpoint_architecture(path: Path) -> str:
    """The registry name an ESRGAN-family checkpoint runs under, from its file name.

    The network is the same; the name decides which published scores ``bbcu eval`` prints beside it.
    Only PSNR-oriented weights (ESRGAN's ``RRDB_PSNR_x4``) have them: ``rrdbnet``. Every other file
    (``RRDB_ESRGAN_x4``, Real-ESRGAN's) is GAN-trained: ``esrgan``, no PSNR target.
    """
    return "rrdbnet" if "psnr" in path.stem.lower() else "esrgan"


def factory_default(architecture: str, argument: str, fallback: object) -> object:
    """The default value of one argument of a registered model's factory (e.g. SR models' ``scale=4``)."""
    parameter = inspect.signature(model_entry(architecture).factory).parameters.get(argument)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return fallback
    return parameter.default


def default_model(task: str, scale: int = 1) -> str:
    """Name of the shipped model ``task`` at ``scale`` uses when none is named (it may not be shipped yet).

    Raises:
        ModelNotFoundError: If no default exists for that task and scale.
    """
    try:
        return DEFAULT_MODELS[task, scale]
    except KeyError as err:
        known = ", ".join(f"{t} x{s}" if t == "sr" else t for t, s in DEFAULT_MODELS)
        raise ModelNotFoundError(
            f"no default model for task {task!r} at scale {scale}; defaults exist for {known}"
        ) from err


def _shipped_summary() -> str:
    names = list_shipped()
    return f"shipped: {', '.join(names)}" if names else "no model is shipped yet"
