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
memory when used. A DFDNet checkpoint (BasicSR's or the original release's layout) is a face model there
when its component dictionary sits beside it under the checkpoint's own name::

    DFDNet.pth                 the weights (any file name: recognised by its keys)
    DFDNet_dictionary.pth      its dictionary as BasicSR's .pth (the release's DFDNet_dict_512.pth, renamed)
    DFDNet_dictionary/         or as the release's folder of <part>_<size>_center.npy (DictionaryCenter512)

A checkpoint without either is left out with a warning naming the two it looked for.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from bbcu.archs import model_entry
from bbcu.core.errors import InvalidArgumentError, InvalidFileError, ModelNotFoundError
from bbcu.core.paths import SHIPPED_MODELS_DIR
from bbcu.formats import dfdnet
from bbcu.formats.convert import read_checkpoint, unwrap_state_dict
from bbcu.formats.esrgan import infer_config, to_basicsr_keys
from bbcu.formats.weights import read_metadata

logger = logging.getLogger(__name__)

ENV_VAR = "BBCU_MODELS"
WEIGHTS_SUFFIX = ".safetensors"
OFFICIAL_SUFFIX = ".pth"
DICTIONARY_SUFFIX = "_dictionary"
"""A face model ``<stem>.pth`` finds its dictionary as ``<stem>_dictionary.pth`` or ``<stem>_dictionary/``."""
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
        scale: Upscaling factor (1 for denoising, JPEG and faces).
        dictionary: A face model's component dictionary (a ``.pth`` file or a folder of ``.npy``); None
            for every other model.
    """

    name: str
    path: Path
    architecture: str
    model_kwargs: dict[str, object]
    task: str
    scale: int
    dictionary: Path | None = None


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
    """Every model ``folder`` holds, by file name: bbcu weights files, ESRGAN-family checkpoints, and
    DFDNet checkpoints with their dictionaries (``<stem>_dictionary.pth`` files are those, not models).

    A file that is none of these (an official BBCU checkpoint, which needs its network named: ``bbcu
    convert`` it first; a DFDNet without its dictionary; a damaged file) is left out with a warning naming
    it, so one bad file hides nothing else.

    Raises:
        InvalidArgumentError: If ``folder`` is not a folder.
    """
    if not folder.is_dir():
        raise InvalidArgumentError(f"models folder not found: {folder}")
    models = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (WEIGHTS_SUFFIX, OFFICIAL_SUFFIX) or not path.is_file():
            continue
        if path.stem.endswith(DICTIONARY_SUFFIX):  # a face model's dictionary, found through its model
            continue
        try:
            models.append(
                describe_weights(path) if path.suffix == WEIGHTS_SUFFIX else describe_checkpoint(path)
            )
        except InvalidFileError as err:
            logger.warning("skipping %s", err)
    return models


def describe_checkpoint(path: Path) -> ShippedModel:
    """Describe an official ESRGAN-family or DFDNet ``.pth`` from its tensors' names and shapes.

    Raises:
        InvalidFileError: If it is unreadable, needs code to unpickle, is in no RRDBNet or DFDNet layout,
            or is a DFDNet without its dictionary beside it.
    """
    state = unwrap_state_dict(read_checkpoint(path), source=str(path))
    if any(marker in state for marker in dfdnet.LAYOUTS.values()):
        return describe_face_checkpoint(path, state)
    kwargs = infer_config(to_basicsr_keys(state, source=str(path))[0], source=str(path))
    architecture = checkpoint_architecture(path)
    return ShippedModel(
        path.stem, path, architecture, kwargs, model_entry(architecture).task, kwargs["scale"]
    )


def describe_face_checkpoint(path: Path, state: Mapping[str, torch.Tensor]) -> ShippedModel:
    """A DFDNet checkpoint (its width read off VGG's first conv) with the dictionary found beside it.

    Raises:
        InvalidFileError: If neither ``<stem>_dictionary.pth`` nor ``<stem>_dictionary/`` exists.
    """
    first_conv = state[dfdnet.LAYOUTS[dfdnet.detect_layout(state, source=str(path))]]
    name = f"{path.stem}{DICTIONARY_SUFFIX}"
    places = (path.with_name(f"{name}{OFFICIAL_SUFFIX}"), path.with_name(name))
    dictionary = next((place for place in places if place.exists()), None)
    if dictionary is None:
        raise InvalidFileError(
            f"{path}: a DFDNet checkpoint without its component dictionary (put {places[0].name} or a "
            f"{name}/ folder of .npy files beside it)"
        )
    kwargs = {"channels": int(first_conv.shape[0])}
    return ShippedModel(path.stem, path, dfdnet.MODEL_NAME, kwargs, "face", 1, dictionary)


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
