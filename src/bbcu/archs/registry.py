"""Model registry: every network of the published tables is built by name (timm-style).

A factory is a plain function that returns an ``nn.Module``; registering it under a name lets the CLI,
the trainer, the weights files and the tests reach every model the same way. Look-ups are made by
people (a typed name, a name recorded in a file), so their failures are ``bbcu.core.errors`` types with
one-line messages: an unknown name lists the known ones, refused arguments say which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from bbcu.core.constants import RESTORE_TASKS, SR_SCALES, RestoreTask
from bbcu.core.errors import BbcuError, InvalidArgumentError, ModelNotFoundError

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model name.

    Attributes:
        name: Registry name, e.g. ``"bbcu-l"``.
        factory: Callable building the network from keyword arguments.
        task: Decides the data protocol used with it (``face``: DFDNet's aligned face plus part boxes,
            no scoring protocol).
        binary: Whether the network contains binarized convolutions.
        scales: The upscaling factors it builds at (1 for denoising and JPEG).
    """

    name: str
    factory: ModelFactory
    task: RestoreTask
    binary: bool
    scales: tuple[int, ...]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, task: RestoreTask, binary: bool, scales: tuple[int, ...] | None = None
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory`` under ``name``.

    Args:
        name: Unique registry name.
        task: One of ``bbcu.core.constants.RESTORE_TASKS``.
        binary: Whether the model has binary convolutions.
        scales: The factors it builds at; default ``SR_SCALES`` for SR and ``(1,)`` otherwise.

    Returns:
        The decorator, which returns the factory unchanged.
    """
    if task not in RESTORE_TASKS:
        raise ValueError(f"unknown task {task!r} for model {name!r}")

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        default = SR_SCALES if task == "sr" else (1,)
        _REGISTRY[name] = ModelEntry(name, factory, task, binary, scales or default)
        return factory

    return decorator


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``.

    Raises:
        ModelNotFoundError: If ``name`` is not registered; the message lists the known names.
    """
    try:
        return _REGISTRY[name]
    except KeyError as err:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {known}") from err


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model, e.g. ``create_model("bbcu-l", scale=4)``.

    The name and keyword arguments are kept on the module (``model_name``, ``model_kwargs``) so a
    weights file can record exactly how to rebuild it.

    Raises:
        ModelNotFoundError: If ``name`` is not registered.
        InvalidArgumentError: If the factory refuses the arguments (unknown keyword, impossible value).
    """
    factory = model_entry(name).factory
    try:
        model = factory(**kwargs)
    except BbcuError:
        raise
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(f"cannot build {name} with {kwargs}: {err}") from err
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def list_models(task: str | None = None) -> list[str]:
    """Sorted registry names, optionally only those of one task."""
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.task == task)


class _SkipRandomFill(TorchFunctionMode):
    """Turns the in-place random fills every ``nn.init`` function ends in into no-ops."""

    FILLS = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.FILLS:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def without_initialisation(*, shapes_only: bool = False) -> Iterator[None]:
    """Build networks whose parameters are about to be overwritten (or only measured): no random init.

    Args:
        shapes_only: Also put every tensor on PyTorch's ``meta`` device, so a network of any size costs
            no memory: a file's claims about a network can be checked before anything is allocated.

    Skipping the fills saves the time of drawing millions of random numbers that a loaded state dict
    replaces anyway, and on ``meta`` the seconds PyTorch spends loading its meta kernels for
    ``normal_``.
    """
    with _SkipRandomFill():
        if shapes_only:
            with torch.device("meta"):
                yield
        else:
            yield
