"""Model registry: every network of the published tables is built by name.

A factory is a plain function that returns an ``nn.Module``; registering it under a name lets the CLI,
the trainer, the weights files and the tests reach every model the same way (timm-style).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model name.

    Attributes:
        name: Registry name, e.g. ``"bbcu-l"``.
        factory: Callable building the network from keyword arguments.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``; decides the data protocol used with it.
        binary: Whether the network contains binarized convolutions.
    """

    name: str
    factory: ModelFactory
    task: str
    binary: bool


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, task: str, binary: bool) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory`` under ``name``.

    Args:
        name: Unique registry name.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``.
        binary: Whether the model has binary convolutions.

    Returns:
        The decorator, which returns the factory unchanged.
    """
    if task not in {"sr", "denoise", "jpeg"}:
        raise ValueError(f"unknown task {task!r} for model {name!r}")

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, factory, task, binary)
        return factory

    return decorator


def model_entry(name: str) -> ModelEntry:
    """Return the registry entry of ``name`` or raise a ``KeyError`` listing the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model, e.g. ``create_model("bbcu-l", scale=4)``.

    The name and keyword arguments are kept on the module (``model_name``, ``model_kwargs``) so a
    weights file can record exactly how to rebuild it.
    """
    model = model_entry(name).factory(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def list_models(task: str | None = None) -> list[str]:
    """Sorted registry names, optionally only those of one task."""
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.task == task)
