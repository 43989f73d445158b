"""Which network runs: a shipped name, a registry name, a weights or packed file, or a module, resolved
once into a ``ResolvedModel`` (network, label, task, scale, engine) and checked against the task and scale
asked for.

``bbcu.restore``, ``bbcu restore``, ``bbcu compare``, ``bbcu demo`` and the web page all go through
``resolve_model``, so a name means the same network everywhere and every mismatch is refused the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.core.constants import RESTORE_TASKS
from bbcu.core.errors import InvalidArgumentError, MissingExtraError, ModelNotFoundError
from bbcu.formats.convert import convert_checkpoint
from bbcu.formats.dfdnet import convert_dfdnet_checkpoint
from bbcu.formats.weights import load
from bbcu.run import zoo

ENGINES = ("torch", "packed")
"""``torch``: the PyTorch network; ``packed``: the 1-bit XNOR-popcount engine (binary networks)."""
OFFICIAL_SUFFIX = ".pth"
"""An official checkpoint (BBCU, ESRGAN family), converted on the fly by ``bbcu.formats.convert``."""
_WEIGHTS_SUFFIXES = (zoo.WEIGHTS_SUFFIX, zoo.PACKED_SUFFIX, OFFICIAL_SUFFIX)

Network = Callable[[torch.Tensor], torch.Tensor]
"""An ``nn.Module`` or a packed-engine model: called on (N, C, H, W), with ``scale`` and ``in_channels``."""


@dataclass(frozen=True)
class ResolvedModel:
    """A network ready to run, with what the caller needs to know about it.

    Attributes:
        network: The callable network (an ``nn.Module``, or a packed-engine model).
        name: A label for messages and captions: the shipped or registry name, or the weights file stem.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``; None for a foreign module of unknown task.
        scale: Upscaling factor (1 for denoising and JPEG).
        engine: ``"torch"`` or ``"packed"``.
    """

    network: Network
    name: str
    task: str | None
    scale: int
    engine: str


def resolve_model(
    model: str | nn.Module | ResolvedModel | None = None,
    *,
    task: str | None = None,
    scale: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    engine: str = "torch",
) -> ResolvedModel:
    """Find, build and check the network ``restore`` will run (see ``restore`` for the arguments).

    Raises:
        InvalidArgumentError: For an unknown engine or task, a model that needs weights that were not
            given, or one whose task or scale differs from the one asked for.
        ModelNotFoundError: For a model that cannot be found.
        InvalidFileError: For a weights or packed file that cannot be used.
    """
    if engine not in ENGINES:
        raise InvalidArgumentError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if task is not None and task not in RESTORE_TASKS:
        raise InvalidArgumentError(f"unknown task {task!r}; choose one of {', '.join(RESTORE_TASKS)}")
    if isinstance(model, ResolvedModel):
        resolved = model
    elif weights is not None:
        resolved = _from_weights(Path(weights), engine, expected_architecture=model)
    elif isinstance(model, str):
        resolved = _from_name(model, scale, engine)
    elif model is None:
        resolved = _from_name(_default_name(task, scale), scale, engine)
    else:
        resolved = _from_module(model, engine)
    return _checked(resolved, task, scale)


def _from_name(name: str, scale: int | None, engine: str) -> ResolvedModel:
    """A shipped model, a weights path, or a registry model that needs no weights."""
    if zoo.is_shipped(name):
        packed = zoo.packed_path(name) if engine == "packed" else None
        return _from_weights(packed or zoo.shipped_path(name), engine, label=name)
    official = zoo.models_dir() / f"{name}{zoo.OFFICIAL_SUFFIX}"
    if official.is_file():  # an ESRGAN-family or DFDNet checkpoint the user put in $BBCU_MODELS
        entry = zoo.describe_checkpoint(official)
        if entry.task == "face":
            raise _needs_the_face_task(name)
        return _from_weights(official, engine, label=name, expected_architecture=entry.architecture)
    if Path(name).suffix in _WEIGHTS_SUFFIXES or Path(name).is_file():
        return _from_weights(Path(name), engine)
    try:
        entry = model_entry(name)
    except ModelNotFoundError as err:
        raise ModelNotFoundError(
            f"unknown model {name!r}: not a shipped model ({zoo.list_shipped() or 'none shipped yet'}), "
            "not a weights file, and not a registered model"
        ) from err
    network = create_model(name, **({} if scale is None else {"scale": scale}))
    if any(True for _ in network.parameters()):
        raise InvalidArgumentError(
            f"{name} is a registered architecture without trained weights: pass weights (--weights PATH) "
            f"or a shipped model ({', '.join(zoo.list_shipped()) or 'none shipped yet'})"
        )
    return _finish(network, name, entry.task, engine)


def _from_weights(
    path: Path, engine: str, *, label: str | None = None, expected_architecture: object = None
) -> ResolvedModel:
    """A network rebuilt from a weights file, or a packed file run by the packed engine."""
    if expected_architecture is not None and not isinstance(expected_architecture, str):
        raise InvalidArgumentError("give either a module or a weights file, not both")
    packed_file = path.suffix == zoo.PACKED_SUFFIX
    if packed_file and engine != "packed":
        raise InvalidArgumentError(
            f"{path} is a packed model: it runs on the packed engine (--engine packed)"
        )
    if packed_file:
        network = _packed_engine().load(path)
    elif path.suffix == OFFICIAL_SUFFIX:  # converted in memory, read without running pickled code
        network = _convert_official(path, expected_architecture)
    else:
        network = load(path)
    if expected_architecture not in (None, network.model_name):
        raise InvalidArgumentError(f"{path} holds a {network.model_name} model, not {expected_architecture}")
    task = model_entry(network.model_name).task
    if packed_file:
        return ResolvedModel(network, label or path.stem, task, int(network.scale), engine)
    return _finish(network, label or path.stem, task, engine)


def _convert_official(path: Path, name: str | None) -> nn.Module:
    """An official ``.pth``: DFDNet's (a face model named) or one ``convert_checkpoint`` reads."""
    if name is not None and model_entry(name).task == "face":
        return convert_dfdnet_checkpoint(path)
    return convert_checkpoint(path, name)


def _from_module(module: nn.Module, engine: str) -> ResolvedModel:
    """A module built by the caller; its task is known when it was built by name."""
    name = getattr(module, "model_name", None) or type(module).__name__
    task = model_entry(name).task if hasattr(module, "model_name") else None
    return _finish(module, name, task, engine)


def _finish(network: nn.Module, name: str, task: str | None, engine: str) -> ResolvedModel:
    """Wrap a torch network, exporting it to the packed engine when that engine is asked for."""
    if engine == "packed":
        network = _packed_engine().pack_model(network)
    return ResolvedModel(network, name, task, int(getattr(network, "scale", 1)), engine)


def _checked(resolved: ResolvedModel, task: str | None, scale: int | None) -> ResolvedModel:
    if resolved.task == "face" and task != "face":
        raise _needs_the_face_task(resolved.name)
    if task is not None and resolved.task not in (None, task):
        raise InvalidArgumentError(f"{resolved.name} is a {resolved.task} model, not a {task} model")
    if scale is not None and resolved.scale != scale:
        raise InvalidArgumentError(f"{resolved.name} restores at scale {resolved.scale}, not {scale}")
    return resolved


def _needs_the_face_task(name: str) -> InvalidArgumentError:
    """A face model needs part boxes and a dictionary besides the image: not a plain restore."""
    return InvalidArgumentError(
        f"{name} is a face model: it restores aligned faces with their part boxes and its dictionary "
        "(bbcu restore --task face)"
    )


def _default_name(task: str | None, scale: int | None) -> str:
    """The shipped default for the task, which must exist: a missing default is explained, not guessed."""
    task = task or "sr"
    scale = scale or (4 if task == "sr" else 1)
    name = zoo.default_model(task, scale)
    if not zoo.is_shipped(name):
        shipped = ", ".join(zoo.list_shipped()) or "none yet"
        raise ModelNotFoundError(
            f"the default {task} model {name} is not shipped in {zoo.models_dir()} (shipped: {shipped}); "
            "name a model (e.g. bicubic) or pass weights"
        )
    return name


def _packed_engine() -> ModuleType:
    """``bbcu.engine.runtime``, or a clear error while the packed runtime is not part of this build."""
    try:
        from bbcu.engine import runtime
    except ImportError as err:
        raise MissingExtraError(
            "the packed engine is not available in this installation (bbcu.engine cannot be imported); "
            "use --engine torch"
        ) from err
    return runtime
