"""ESRGAN / Real-ESRGAN checkpoints (RRDBNet) in the three key layouts in circulation -> bbcu networks.

``bbcu.archs.rrdbnet`` names its modules as BasicSR does, so a BasicSR state dict loads as it is; the two
older layouts are renamed onto it first:

============================================  ==========================================
original ESRGAN release / older layout        BasicSR (ours)
============================================  ==========================================
``RRDB_trunk.N.RDBk.convj.*``                 ``body.N.rdbk.convj.*``
``model.1.sub.N.RDBk.convj.0.*``              ``body.N.rdbk.convj.*``
``trunk_conv.*`` / ``model.1.sub.B.*``        ``conv_body.*`` (``B`` = number of blocks)
``upconv1.*`` / ``model.3.*``                 ``conv_up1.*``
``upconv2.*`` / ``model.6.*``                 ``conv_up2.*``
``HRconv.*`` / ``model.8.*``                  ``conv_hr.*``
``conv_first.*`` / ``model.0.*``              ``conv_first.*``
``conv_last.*`` / ``model.10.*``              ``conv_last.*``
============================================  ==========================================

Everything the network needs is read off the tensors: channels from ``conv_first``'s output, growth from
the first dense conv, blocks from the body indices, and the scale from how many times ``conv_first``'s
input exceeds ``conv_last``'s output (1: x4, 4: x2 through a 2x unshuffle, 16: x1 through a 4x one).
The older layout predates the unshuffle and is x4 only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

from bbcu.archs.registry import create_model
from bbcu.archs.rrdbnet import RRDB_MODELS, RRDB_SCALES
from bbcu.core.errors import InvalidArgumentError, InvalidFileError
from bbcu.formats.weights import load_state_dict_strictly

DEFAULT_MODEL = "rrdbnet"
"""Registry name given to a checkpoint converted without a name (the same network as ``esrgan``)."""

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]
_DENSE = r"(?:RDB|rdb)([123])\.conv([1-5])"


def _rules(*pairs: tuple[str, str | Callable[[re.Match[str]], str]]) -> tuple[_Rule, ...]:
    """Compile (pattern, replacement) pairs; a string replacement is a ``re`` template."""
    return tuple(
        (re.compile(pattern), rename if callable(rename) else (lambda m, t=rename: m.expand(t)))
        for pattern, rename in pairs
    )


# Layout name -> a key only that layout has, and its renames onto BasicSR (the first match wins).
LAYOUTS: dict[str, tuple[str, tuple[_Rule, ...]]] = {
    "basicsr": ("body.0.rdb1.conv1.weight", ()),
    "esrgan": (
        "RRDB_trunk.0.RDB1.conv1.weight",
        _rules(
            (rf"RRDB_trunk\.(\d+)\.{_DENSE}\.(weight|bias)", r"body.\1.rdb\2.conv\3.\4"),
            (r"trunk_conv\.(weight|bias)", r"conv_body.\1"),
            (r"upconv([12])\.(weight|bias)", r"conv_up\1.\2"),
            (r"HRconv\.(weight|bias)", r"conv_hr.\1"),
        ),
    ),
    "old": (
        "model.1.sub.0.RDB1.conv1.0.weight",
        _rules(
            (rf"model\.1\.sub\.(\d+)\.{_DENSE}\.0\.(weight|bias)", r"body.\1.rdb\2.conv\3.\4"),
            (r"model\.1\.sub\.\d+\.(weight|bias)", r"conv_body.\1"),
            (r"model\.0\.(weight|bias)", r"conv_first.\1"),
            (r"model\.3\.(weight|bias)", r"conv_up1.\1"),
            (r"model\.6\.(weight|bias)", r"conv_up2.\1"),
            (r"model\.8\.(weight|bias)", r"conv_hr.\1"),
            (r"model\.10\.(weight|bias)", r"conv_last.\1"),
        ),
    ),
}


def detect_layout(state: Mapping[str, torch.Tensor], *, source: str) -> str:
    """``"basicsr"``, ``"esrgan"`` (the original release) or ``"old"``.

    Raises:
        InvalidFileError: If ``state`` is in none of them (a BBCU checkpoint, another network).
    """
    for layout, (marker, _) in LAYOUTS.items():
        if marker in state:
            return layout
    raise InvalidFileError(
        f"{source} is not an ESRGAN/RRDBNet checkpoint (no body.0.rdb1, RRDB_trunk.0.RDB1 or "
        "model.1.sub.0.RDB1 keys); an official BBCU checkpoint needs its model named (--model)"
    )


def to_basicsr_keys(
    state: Mapping[str, torch.Tensor], *, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict under BasicSR names, and each new name's original key (for error messages).

    Raises:
        InvalidFileError: If the layout is unknown or two keys land on one name.
    """
    _, rules = LAYOUTS[detect_layout(state, source=source)]
    renamed = {_renamed(key, rules): key for key in state}
    if len(renamed) != len(state):
        raise InvalidFileError(
            f"{source}: several keys map to the same RRDBNet parameter; not an ESRGAN layout"
        )
    return {new: state[old] for new, old in renamed.items()}, renamed


def _renamed(key: str, rules: tuple[_Rule, ...]) -> str:
    for pattern, rename in rules:
        if match := pattern.fullmatch(key):
            return rename(match)
    return key


def infer_config(state: Mapping[str, torch.Tensor], *, source: str) -> dict[str, int]:
    """RRDBNet's arguments (scale, channels, blocks, growth, in_channels) read off a BasicSR-named state.

    Raises:
        InvalidFileError: If a tensor the reading needs is missing or the shapes fit no RRDBNet.
    """
    try:
        first, last = state["conv_first.weight"], state["conv_last.weight"]
        dense = state["body.0.rdb1.conv1.weight"]
    except KeyError as err:
        raise InvalidFileError(f"{source}: RRDBNet tensor {err.args[0]} is missing") from err
    in_channels = last.shape[0]
    ratio, remainder = divmod(first.shape[1], in_channels)
    scales = {(4 // scale) ** 2: scale for scale in RRDB_SCALES}  # channel ratio after the unshuffle
    if remainder or ratio not in scales:
        raise InvalidFileError(
            f"{source}: conv_first takes {first.shape[1]} channels for {in_channels}-channel images, "
            f"which fits no RRDBNet scale ({', '.join(f'x{s}' for s in RRDB_SCALES)})"
        )
    blocks = len({key.split(".")[1] for key in state if key.startswith("body.")})
    return {
        "scale": scales[ratio],
        "channels": first.shape[0],
        "blocks": blocks,
        "growth": dense.shape[0],
        "in_channels": in_channels,
    }


def convert_rrdb_state(
    state: Mapping[str, torch.Tensor], model_name: str | None = None, *, scale: int | None = None, source: str
) -> nn.Module:
    """Build the RRDBNet a checkpoint describes and fill it, every key used exactly once.

    Args:
        state: The unwrapped checkpoint state dict, in any of the three layouts.
        model_name: ``rrdbnet`` or ``esrgan``; None gives ``DEFAULT_MODEL``.
        scale: The scale the caller expects; checked against the checkpoint's, which it cannot change.
        source: Name of the checkpoint for error messages.

    Returns:
        The filled network in eval mode.

    Raises:
        InvalidArgumentError: If ``model_name`` is not an RRDBNet name or ``scale`` disagrees with the file.
        InvalidFileError: If the layout is unknown or keys and shapes do not fit (the first few are named).
    """
    name = model_name or DEFAULT_MODEL
    if name not in RRDB_MODELS:
        raise InvalidArgumentError(f"{name} is not an RRDBNet model ({', '.join(RRDB_MODELS)})")
    basicsr, labels = to_basicsr_keys(state, source=source)
    config = infer_config(basicsr, source=source)
    if scale is not None and scale != config["scale"]:
        raise InvalidArgumentError(f"{source} is an x{config['scale']} RRDBNet, not x{scale}")
    model = create_model(name, **config)
    load_state_dict_strictly(model, basicsr, source=source, labels=labels)
    return model.eval()
