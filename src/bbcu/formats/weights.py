"""Weights files: a model's tensors plus what it takes to rebuild it, in one safetensors file.

safetensors rather than a pickled ``.pth``: loading one can never run code, and its string metadata
records the registry name and keyword arguments, so ``load(path)`` needs nothing but the path. Writes
are atomic (``bbcu.atomic``) so an interrupted save never leaves a half-written file.

A file holds the latent (real-valued, trainable) weights by default. ``save(..., binary_as_bits=True)``
writes the compact shipping form instead: each binary conv whose forward pass is ``alpha * sign(W)``
(weight binarizers ``scaled`` and ``sign``) is stored as its sign bits plus one ``alpha`` per output
channel, about 32x smaller. ``load`` expands it to ``alpha * sign(W)``, a latent weight with exactly the
same signs and scales, so the restored network computes what the trained one did (up to float rounding
of the recomputed mean, ~1e-7) and can even be fine-tuned further.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import nn

import bbcu
from bbcu.archs.registry import create_model, without_initialisation
from bbcu.binary.conv import BinaryConv2d
from bbcu.binary.weights import channel_mean_abs
from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.errors import InvalidArgumentError, InvalidFileError, ModelNotFoundError
from bbcu.formats.container import check_format, read_container

FORMAT = "bbcu-weights"
FORMAT_VERSION = "1"
BINARY_WEIGHTS_KEY = "binary_weights"
BITS = "bits"
_RESERVED_KEYS = ("format", "format_version", "bbcu_version", "model", "model_kwargs", BINARY_WEIGHTS_KEY)
_SIGN_BITS, _ALPHA = ".sign_bits", ".alpha"
_EXPANDABLE_BINARIZERS = ("scaled", "sign")  # forward = alpha * sign(W); IR-Net's "libra" is not
_NAMES_SHOWN = 3


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    extra_metadata: Mapping[str, str] | None = None,
    binary_as_bits: bool = False,
) -> None:
    """Write ``model``'s state dict and its registry name and kwargs to a safetensors file.

    Args:
        model: A model built by ``bbcu.create_model`` (which records ``model_name``/``model_kwargs``).
        path: Destination file; replaced atomically.
        extra_metadata: More string entries for the header, e.g. where converted weights came from.
        binary_as_bits: Store ``alpha * sign(W)`` binary convs as sign bits and per-channel alphas
            (the shipping form) instead of their latent float weights.

    Raises:
        InvalidArgumentError: If the model cannot be described (not built by name, kwargs not JSON).
        ValueError: If ``extra_metadata`` reuses a reserved key.
    """
    clashing = sorted(set(extra_metadata or {}) & set(_RESERVED_KEYS))
    if clashing:
        raise ValueError(f"extra_metadata may not set reserved keys {clashing}")
    if not hasattr(model, "model_name"):
        raise InvalidArgumentError(
            "cannot save a model not built by bbcu.create_model: its name and kwargs are unknown"
        )
    try:
        kwargs_json = json.dumps(model.model_kwargs, sort_keys=True)
    except TypeError as err:
        raise InvalidArgumentError(f"cannot record the arguments of {model.model_name}: {err}") from err
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bbcu_version": bbcu.__version__,
        "model": model.model_name,
        "model_kwargs": kwargs_json,
        **(extra_metadata or {}),
    }
    # Cloning drops any storage shared between entries, which safetensors refuses to serialise.
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in model.state_dict().items()}
    if binary_as_bits:
        tensors = _binary_to_bits(model, tensors)
        metadata[BINARY_WEIGHTS_KEY] = BITS
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of a bbcu weights file, checked to be ours and of a supported version.

    Raises:
        InvalidFileError: If the file is missing, not a safetensors file, or not a bbcu weights file.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidFileError(f"weights file not found: {path}")
    metadata, _ = read_container(path, with_tensors=False)
    check_format(path, metadata, name=FORMAT, version=FORMAT_VERSION, what="bbcu weights file")
    return metadata


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model recorded in a weights file and fill it with the stored tensors.

    Args:
        path: A file written by ``save``.
        device: Where the returned model lives.

    Returns:
        The model in eval mode.

    Raises:
        InvalidFileError: For a missing, corrupt or foreign file, an unknown model, arguments or
            tensors that do not fit each other, or tensors holding NaN or infinity.
    """
    metadata = read_metadata(path)
    try:
        name, kwargs = metadata["model"], json.loads(metadata["model_kwargs"])
    except (KeyError, ValueError, RecursionError) as err:  # RecursionError: nested thousands deep
        raise InvalidFileError(f"{path}: damaged metadata, cannot tell which model it holds ({err})") from err
    # The header's arguments are checked against the stored tensors on a skeleton that allocates
    # nothing, so a file asking for an enormous network is refused before any memory is spent on it.
    with without_initialisation(shapes_only=True):
        skeleton = build_recorded_model(name, kwargs, source=str(path))
    _, state = read_container(Path(path), framework="pt")
    if metadata.get(BINARY_WEIGHTS_KEY) == BITS:
        state = _bits_to_binary(skeleton, state, source=str(path))
    check_state_fits(skeleton, state, source=str(path))
    with without_initialisation():  # every parameter comes from the file
        model = build_recorded_model(name, kwargs, source=str(path))
    model.load_state_dict(state, strict=True)
    try:
        return model.to(torch.device(device)).eval()
    except (RuntimeError, AssertionError) as err:  # a CPU-only torch asserts on "cuda"
        raise InvalidArgumentError(f"cannot place the model on device {device!r}: {err}") from err


def build_recorded_model(name: str, kwargs: Mapping[str, object], *, source: str) -> nn.Module:
    """The network a file says it holds; a name or arguments this bbcu refuses make the file at fault.

    Raises:
        InvalidFileError: If ``name`` is not registered or its factory refuses ``kwargs``.
    """
    if not isinstance(kwargs, Mapping):
        raise InvalidFileError(f"{source}: model arguments are {type(kwargs).__name__}, not a mapping")
    try:
        return create_model(name, **kwargs)
    except (ModelNotFoundError, InvalidArgumentError) as err:
        raise InvalidFileError(f"{source}: {err}") from err
    except RuntimeError as err:  # torch's own refusal, e.g. a negative channel count
        raise InvalidFileError(f"{source}: cannot build {name} with {dict(kwargs)}: {err}") from err


def _expandable_binary_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the binary conv weights whose forward pass is ``alpha * sign(W)``."""
    return [
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, BinaryConv2d) and module.weight_binarizer in _EXPANDABLE_BINARIZERS
    ]


def _binary_to_bits(model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each expandable binary weight by its sign bits (``W >= 0``, sign(0) = +1) and alphas."""
    packed = dict(tensors)
    for key in _expandable_binary_keys(model):
        weight = packed.pop(key)
        signs = (weight >= 0).flatten().numpy()
        packed[key + _SIGN_BITS] = torch.from_numpy(np.packbits(signs))
        packed[key + _ALPHA] = channel_mean_abs(weight).flatten()
    return packed


def _bits_to_binary(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str
) -> dict[str, torch.Tensor]:
    """Expand sign bits and alphas back into ``alpha * sign(W)`` weights of the model's shapes."""
    expected = model.state_dict()
    expanded = dict(state)
    for key in _expandable_binary_keys(model):
        bits, alpha = expanded.pop(key + _SIGN_BITS, None), expanded.pop(key + _ALPHA, None)
        if bits is None or alpha is None:
            continue  # reported as a missing key by the strict load
        shape = expected[key].shape
        if bits.dtype != torch.uint8 or bits.numel() != -(-shape.numel() // 8) or alpha.numel() != shape[0]:
            raise InvalidFileError(f"{source}: the packed binary weight {key} does not fit {tuple(shape)}")
        signs = np.unpackbits(bits.numpy())[: shape.numel()].astype(np.float32) * 2 - 1
        expanded[key] = alpha.float().view(-1, 1, 1, 1) * torch.from_numpy(signs).view(shape)
    return expanded


def load_state_dict_strictly(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Load ``state`` into ``model`` after ``check_state_fits`` (same arguments)."""
    check_state_fits(model, state, source=source, labels=labels)
    model.load_state_dict(state, strict=True)


def check_state_fits(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Refuse ``state`` unless its keys and shapes are exactly ``model``'s and its values finite, naming
    the first few culprits.

    Args:
        model: The model to fill (a skeleton on the ``meta`` device does: only shapes are read).
        state: Tensors keyed by the model's parameter names.
        source: Where ``state`` came from, for the message.
        labels: How to show a key of ``state`` to the user (a converter shows the original key).

    Raises:
        InvalidFileError: If keys are missing or unexpected, shapes differ, or a tensor holds NaN or
            infinity (a damaged file: every output would be black).
    """
    expected = model.state_dict()
    label = (labels or {}).get
    problems = [
        _listed("missing", sorted(set(expected) - set(state))),
        _listed("unexpected", sorted(label(key, key) for key in set(state) - set(expected))),
        _listed(
            "shape mismatch",
            [
                f"{label(key, key)} (file {_shape(state[key])}, model {_shape(expected[key])})"
                for key in sorted(set(state) & set(expected))
                if state[key].shape != expected[key].shape
            ],
        ),
    ]
    problems = [p for p in problems if p]
    if problems:
        name = getattr(model, "model_name", "the model")
        raise InvalidFileError(f"{source} does not fit {name}: {'; '.join(problems)}")
    _refuse_non_finite(state, source=source)


def _refuse_non_finite(state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """A NaN or infinite weight turns every output black; it is a damaged file, not a model."""
    damaged = sorted(k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all())
    if damaged:
        raise InvalidFileError(f"{source}: NaN or infinite values in {_listed('tensor(s)', damaged)}")


def _listed(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = f" (+{len(keys) - _NAMES_SHOWN} more)" if len(keys) > _NAMES_SHOWN else ""
    return f"{len(keys)} {what}: {', '.join(keys[:_NAMES_SHOWN])}{more}"


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "scalar"
