"""Official BBCU checkpoints (Zj-BinXia/BBCU) -> bbcu models and weights files; the entry point for
ESRGAN-family checkpoints too, whose layouts live in :mod:`bbcu.formats.esrgan`.

The official SR code is BasicSR: its ``.pth`` is a dict whose ``params`` (or ``params_ema``) entry holds
the state dict. The denoising / JPEG code is KAIR: the ``.pth`` is the state dict itself. Parameter
shapes already agree with ours (``move0.bias`` and the RPReLU shifts are ``1xCx1x1``, ``pr_prelu.weight``
is ``C``, ``binary_conv.weight`` is an ordinary ``OxIx3x3`` kernel); only names differ, as tabulated in
:mod:`bbcu.archs.srresnet` and :mod:`bbcu.archs.dncnn`. The official ``k`` is 130, our default.

A ``.pth`` is a pickle, and unpickling can run arbitrary code, so it is read with ``weights_only=True``:
a file that needs anything beyond tensors and plain containers is refused, never executed.

One behavioural difference remains: the official code binarizes with ``torch.sign`` (``sign(0) = 0``),
this package with ``sign(0) = +1``. Converted networks give identical outputs except where a shifted
activation or a latent weight is exactly zero.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from bbcu.archs.registry import create_model, model_entry
from bbcu.archs.rrdbnet import RRDB_MODELS
from bbcu.core.errors import InvalidArgumentError, InvalidFileError
from bbcu.formats.esrgan import convert_rrdb_state
from bbcu.formats.weights import load_state_dict_strictly, save

BASICSR_PARAM_KEYS = ("params", "params_ema")
_DATA_PARALLEL_PREFIX = "module."

# Leaf names inside one official binary unit (BinaryConv2d / BinaryUpConv2d) -> ours (BBCU units).
_UNIT_LEAVES = {
    "move0.bias": "shift.bias",
    "binary_conv.weight": "conv.weight",
    "binary_conv.bias": "conv.bias",
    "relu.pr_bias0.bias": "act.gamma",
    "relu.pr_prelu.weight": "act.beta",
    "relu.pr_bias1.bias": "act.zeta",
}
# Structural renames, tried in order; the first match wins and its result then gets the leaf renames.
_STRUCTURE_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # BBCU SR body: 16 BinaryBlocks of 2 units each -> 32 units in one Sequential.
    (re.compile(r"body\.(\d+)\.body\.([01])\.(.+)"), lambda m: f"body.{2 * int(m[1]) + int(m[2])}.{m[3]}"),
    # Full-precision sub-pixel conv (BBCU-L, MSRResNet): upconv{i} -> upsampler.{i-1}.conv.
    (re.compile(r"upconv(\d+)\.(weight|bias)"), lambda m: f"upsampler.{int(m[1]) - 1}.conv.{m[2]}"),
    # Binary upsampler unit (BBCU-M): upconv{i}.<unit leaf> -> upsampler.{i-1}.<unit leaf>.
    (re.compile(r"upconv(\d+)\.(.+)"), lambda m: f"upsampler.{int(m[1]) - 1}.{m[2]}"),
)


def official_to_bbcu_key(key: str) -> str:
    """Our state-dict key for an official one, e.g. ``body.3.body.1.move0.bias`` -> ``body.7.shift.bias``.

    Keys that need no renaming (``conv_first.*``, ``model.0.*``, ...) come back unchanged.
    """
    for pattern, rename in _STRUCTURE_RULES:
        if match := pattern.fullmatch(key):
            key = rename(match)
            break
    for official, ours in _UNIT_LEAVES.items():
        if key.endswith(f".{official}"):
            return key[: -len(official)] + ours
    return key


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, object]:
    """Unpickle ``path`` without running any code it may carry.

    Raises:
        InvalidFileError: If the file is missing, is not a PyTorch checkpoint, or needs code to unpickle.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidFileError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: one line only
            warnings.simplefilter("ignore", UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        foreign = _foreign_globals(path)
        if foreign:
            raise InvalidFileError(
                f"refusing {path}: unpickling it would import {', '.join(foreign[:3])}, which could run "
                "code; a checkpoint holds only tensors and plain containers"
            ) from err
        raise InvalidFileError(
            f"{path} is not a PyTorch checkpoint ({_unpickler_complaint(str(err))})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise InvalidFileError(
            f"{path} is not a readable PyTorch checkpoint: {str(err).splitlines()[0]}"
        ) from err
    if not isinstance(checkpoint, dict):
        raise InvalidFileError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    return checkpoint


_SAFE_MODULES = ("torch", "collections", "_codecs")
"""Modules whose names a real checkpoint's pickle mentions (tensor rebuilders, OrderedDict, bytes)."""
_GLOBAL_OPCODES = ("GLOBAL", "STACK_GLOBAL", "INST")
_STRING_OPCODES = ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING")


def _foreign_globals(path: Path) -> list[str]:
    """``module.name`` of each non-checkpoint object the file's pickles would import, read without
    unpickling (``pickletools`` only parses opcodes); empty when the file is no pickle at all.

    This only words the refusal: ``torch.load(weights_only=True)`` already refused to run anything.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
    except (zipfile.BadZipFile, OSError):
        pickles = [path.read_bytes()]
    named: list[str] = []
    for data in pickles:
        named += [g for g in _pickled_globals(data) if g.split(".")[0] not in _SAFE_MODULES]
    return list(dict.fromkeys(named))


def _pickled_globals(data: bytes) -> list[str]:
    """Every global named by the pickles at the start of ``data`` (legacy files hold several)."""
    names: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        strings: list[str] = []
        try:
            for opcode, argument, _ in pickletools.genops(stream):
                if opcode.name in _STRING_OPCODES:
                    strings.append(str(argument))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(".".join(strings[-2:]))
                elif opcode.name in _GLOBAL_OPCODES and isinstance(argument, str):
                    names.append(argument.replace(" ", "."))
        except (ValueError, EOFError, pickle.UnpicklingError):
            break  # not (or no longer) a pickle: raw storage bytes, or no pickle at all
    return names


def _unpickler_complaint(message: str) -> str:
    """The informative sentence of torch's long weights-only error (e.g. ``Unsupported global: ...``)."""
    _, _, after = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (after or message).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else "unreadable"


def unwrap_state_dict(
    checkpoint: Mapping[str, object], param_key: str | None = None, *, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The state dict inside a BasicSR dict (``params``/``params_ema``) or a plain KAIR state dict.

    Args:
        checkpoint: What ``read_checkpoint`` returned.
        param_key: The BasicSR entry to use. By default ``params``, which is what BasicSR's test
            scripts load (``param_key_g`` defaults to ``params``), else ``params_ema``.
        source: Name of the checkpoint for error messages.

    Raises:
        InvalidFileError: If the requested entry is absent or the result is not a mapping of tensors.
    """
    wrapped = [key for key in BASICSR_PARAM_KEYS if key in checkpoint]
    if param_key is not None and param_key not in checkpoint:
        raise InvalidFileError(
            f"{source} has no {param_key!r} entry; it has {sorted(map(str, checkpoint))[:8]}"
        )
    key = param_key or (wrapped[0] if wrapped else None)
    state = checkpoint[key] if key is not None else checkpoint
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        where = f"its {key!r} entry" if key is not None else "it"
        raise InvalidFileError(f"{source}: {where} is not a state dict of tensors")
    return {name.removeprefix(_DATA_PARALLEL_PREFIX): tensor for name, tensor in state.items()}


def infer_scale(state: Mapping[str, torch.Tensor]) -> int:
    """The SR scale an official checkpoint was trained for: x4 has ``upconv2``, x2/x3 read it off ``upconv1``.

    Raises:
        InvalidFileError: If the state dict has no recognisable upsampler.
    """
    if any(key.startswith("upconv2.") for key in state):
        return 4
    for key in ("upconv1.weight", "upconv1.binary_conv.weight"):
        if key in state:
            out_channels, in_channels = state[key].shape[:2]
            return math.isqrt(out_channels // in_channels)
    raise InvalidFileError("cannot tell the scale of this SR checkpoint (no upconv1/upconv2); pass --scale")


def convert_state_dict(
    official: Mapping[str, torch.Tensor], model_name: str, *, scale: int | None = None, source: str
) -> nn.Module:
    """Build ``model_name`` and fill it with an official state dict, using every key exactly once.

    Args:
        official: The unwrapped official state dict.
        model_name: Registry name, e.g. ``"bbcu-l"``.
        scale: SR scale; inferred from the checkpoint when None. Must be None for other tasks.
        source: Name of the checkpoint for error messages.

    Returns:
        The filled model in eval mode.

    Raises:
        ModelNotFoundError: For an unknown model.
        InvalidArgumentError: For ``scale`` on a model without one.
        InvalidFileError: For keys / shapes that do not fit it (the first few are named).
    """
    task = model_entry(model_name).task
    if task != "sr" and scale is not None:
        raise InvalidArgumentError(f"--scale applies to SR models only; {model_name} is a {task} model")
    kwargs = {"scale": scale if scale is not None else infer_scale(official)} if task == "sr" else {}
    model = create_model(model_name, **kwargs)
    renamed = {official_to_bbcu_key(key): key for key in official}
    if len(renamed) != len(official):
        raise InvalidFileError(
            f"{source}: several official keys map to the same parameter; not an official layout"
        )
    ours = {key: official[original] for key, original in renamed.items()}
    load_state_dict_strictly(model, ours, source=source, labels=renamed)
    return model.eval()


def convert_checkpoint(
    path: str | os.PathLike[str],
    model_name: str | None = None,
    *,
    scale: int | None = None,
    param_key: str | None = None,
) -> nn.Module:
    """Read an official ``.pth`` safely and return the equivalent bbcu model.

    BBCU checkpoints go through ``convert_state_dict``; ESRGAN-family ones (``rrdbnet``, ``esrgan``, or no
    name at all, since their layouts say what they are) through ``bbcu.formats.esrgan``. For those, a
    BasicSR file holding both entries gives ``params_ema`` unless ``param_key`` says otherwise, as
    Real-ESRGAN's inference does.
    """
    checkpoint = read_checkpoint(path)
    if model_name is not None and model_name not in RRDB_MODELS:
        state = unwrap_state_dict(checkpoint, param_key, source=str(path))
        return convert_state_dict(state, model_name, scale=scale, source=str(path))
    if param_key is None and "params_ema" in checkpoint:
        param_key = "params_ema"
    state = unwrap_state_dict(checkpoint, param_key, source=str(path))
    return convert_rrdb_state(state, model_name, scale=scale, source=str(path))


def convert_file(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model_name: str | None = None,
    *,
    scale: int | None = None,
    param_key: str | None = None,
) -> nn.Module:
    """Convert an official ``.pth`` into a bbcu weights file (written atomically) and return the model."""
    model = convert_checkpoint(path, model_name, scale=scale, param_key=param_key)
    save(model, output, extra_metadata={"converted_from": Path(path).name})
    return model
