"""DFDNet checkpoints (BasicSR's and the original release's) and component dictionaries -> bbcu.

``bbcu.archs.dfdnet`` names its modules as BasicSR does, so a BasicSR checkpoint (``params``) loads by
name once its spectral norms are folded; the original release (``latest_net_G.pth``, a bare state dict)
is renamed onto it first:

============================================  ==============================================
original release                              BasicSR (ours)
============================================  ==============================================
``VggExtract.model.features.I.*``             ``vgg_extractor.vgg_net.<VGG19 layer I>.*``
``VggExtract.RGB_mean`` / ``RGB_std``         ``vgg_extractor.mean`` / ``std``
``le_S`` / ``re_S`` / ``no_S`` / ``mo_S``     ``attn_blocks.{left_eye,right_eye,nose,mouth}_S``
``MSDilate.convN.*`` / ``MSDilate.convi.*``   ``multi_scale_dilation.conv_blocks.{N-1}.*`` / ``conv_fusion.*``
``upN.ScaleModel1`` / ``upN.ShiftModel1``     ``upsampleN.scale_block`` / ``shift_block``
``up4.K.Model.*``, other ``upN.*``            ``upsample4.K.body.*``, ``upsampleN.*``
============================================  ==============================================

The original file also holds tensors its forward pass never uses, which are dropped: VGG19's classifier,
the alias of its feature layers (``VggExtract.features``), the unused ``to_rgb`` heads and the fixed blur
kernels. Anything else must match the network exactly (missing, unexpected and mis-shaped keys are named).

Spectral norm (``X.weight_orig``, ``X.weight_u``, ``X.weight_v``) is folded the way PyTorch's
``spectral_norm`` computes the weight in eval mode: ``W = W_orig / (u . (W_orig v))`` with ``W_orig``
viewed as ``(out, -1)``, using the stored vectors (no power iteration). The network's width is read off
``conv1_1``, so a smaller test network converts like the official one.

The dictionary comes as BasicSR's ``.pth`` (``{"256": {"left_eye": N x C x 40 x 40, ...}, ...}``) or as
the release's folder of ``<part>_<size>_center.npy`` files (atoms flattened or not: they are reshaped to
the atom shapes of ``bbcu.archs.dfdnet``). Pickles are read with ``weights_only=True`` and NumPy files with
``allow_pickle=False``: nothing in either runs code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from bbcu.archs.dfdnet import FEATURE_SIZES, FEATURE_WIDTHS, MODEL_NAME, PARTS, DFDNet, atom_shape
from bbcu.archs.registry import create_model, without_initialisation
from bbcu.archs.vgg import VGG19_LAYERS
from bbcu.core.errors import InvalidFileError
from bbcu.formats.convert import read_checkpoint, unwrap_state_dict
from bbcu.formats.esrgan import _renamed, _rules
from bbcu.formats.weights import load_state_dict_strictly

NPY_NAME = "{part}_{size}_center.npy"
"""File name of one part's atoms at one feature size in the original release's dictionary folder."""
_ABBREVIATIONS = {"le": "left_eye", "re": "right_eye", "no": "nose", "mo": "mouth"}
_SN_SUFFIXES = ("_orig", "_u", "_v")

LAYOUTS = {
    "basicsr": "vgg_extractor.vgg_net.conv1_1.weight",
    "original": "VggExtract.model.features.0.weight",
}
"""Layout name -> a key only that layout has."""
ORIGINAL_RULES = _rules(
    (r"VggExtract\.model\.features\.(\d+)\.(weight|bias)", lambda m: _vgg_key(int(m[1]), m[2])),
    (r"VggExtract\.RGB_(mean|std)", r"vgg_extractor.\1"),
    (r"(le|re|no|mo)_(\d+)\.(.+)", lambda m: f"attn_blocks.{_ABBREVIATIONS[m[1]]}_{m[2]}.{m[3]}"),
    (r"MSDilate\.conv(\d)\.(.+)", lambda m: f"multi_scale_dilation.conv_blocks.{int(m[1]) - 1}.{m[2]}"),
    (r"MSDilate\.convi\.(.+)", r"multi_scale_dilation.conv_fusion.\1"),
    (r"up(\d)\.ScaleModel1\.(.+)", r"upsample\1.scale_block.\2"),
    (r"up(\d)\.ShiftModel1\.(.+)", r"upsample\1.shift_block.\2"),
    (r"up4\.(\d)\.Model\.(.+)", r"upsample4.\1.body.\2"),
    (r"up(\d)\.(.+)", r"upsample\1.\2"),
)
ORIGINAL_UNUSED = re.compile(
    r"VggExtract\.model\.classifier\..+|VggExtract\.features\..+|to_rgb\d\..+|up\d\.conv1\.0\.weight(_flip)?"
)
"""Keys of the original file that its forward pass never reads."""


def _vgg_key(index: int, leaf: str) -> str:
    name = VGG19_LAYERS[index] if index < len(VGG19_LAYERS) else f"layer{index}"
    return f"vgg_extractor.vgg_net.{name}.{leaf}"


def fold_spectral_norm(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight PyTorch's ``spectral_norm`` uses in eval mode: ``weight_orig / (u . (W v))``."""
    sigma = torch.dot(u, weight_orig.reshape(weight_orig.shape[0], -1) @ v)
    return weight_orig / sigma


def detect_layout(state: Mapping[str, torch.Tensor], *, source: str) -> str:
    """``"basicsr"`` or ``"original"``.

    Raises:
        InvalidFileError: If ``state`` is neither (another network, or not a DFDNet generator).
    """
    for layout, marker in LAYOUTS.items():
        if marker in state:
            return layout
    raise InvalidFileError(f"{source} is not a DFDNet checkpoint (no {' or '.join(LAYOUTS.values())} key)")


def to_basicsr_keys(
    state: Mapping[str, torch.Tensor], *, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state under BasicSR's names with spectral norms folded, and each new key's original key.

    Raises:
        InvalidFileError: If the layout is unknown, two keys land on one name, or a spectral norm lacks
            one of its three tensors.
    """
    original = detect_layout(state, source=source) == "original"
    kept = [key for key in state if not (original and ORIGINAL_UNUSED.fullmatch(key))]
    labels = {(_renamed(key, ORIGINAL_RULES) if original else key): key for key in kept}
    if len(labels) != len(kept):
        raise InvalidFileError(
            f"{source}: several keys map to the same DFDNet parameter; not a DFDNet layout"
        )
    renamed = {new: state[old] for new, old in labels.items()}
    for key in [k for k in renamed if k.endswith(".weight_orig")]:
        base = key.removesuffix("_orig")
        parts = [f"{base}{suffix}" for suffix in _SN_SUFFIXES]
        if not all(part in renamed for part in parts):
            raise InvalidFileError(
                f"{source}: the spectral norm of {labels[key]} lacks its weight_u or weight_v vector"
            )
        weight_orig, u, v = (renamed.pop(part) for part in parts)
        if u.shape != (weight_orig.shape[0],) or v.shape != (weight_orig[0].numel(),):
            raise InvalidFileError(
                f"{source}: the spectral-norm vectors of {labels[key]} do not fit its weight"
            )
        renamed[base] = fold_spectral_norm(weight_orig.float(), u.float(), v.float())
        labels[base] = labels[key]
    return renamed, labels


def convert_dfdnet_state(state: Mapping[str, torch.Tensor], *, source: str) -> DFDNet:
    """Build the DFDNet a checkpoint describes and fill it, every used key exactly once.

    Returns:
        The filled network in eval mode, without a dictionary (``load_dictionary``).

    Raises:
        InvalidFileError: If the layout is unknown or keys and shapes do not fit (the first few are named).
    """
    basicsr, labels = to_basicsr_keys(state, source=source)
    first = basicsr.get("vgg_extractor.vgg_net.conv1_1.weight")
    if first is None or first.dim() != 4:
        raise InvalidFileError(f"{source}: DFDNet's first VGG conv (conv1_1) is missing or not a conv weight")
    with without_initialisation():  # every value is about to be overwritten
        model = create_model(MODEL_NAME, channels=int(first.shape[0]))
    load_state_dict_strictly(model, basicsr, source=source, labels=labels)
    return model.eval()


def convert_dfdnet_checkpoint(path: str | os.PathLike[str], *, param_key: str | None = None) -> DFDNet:
    """Read a DFDNet ``.pth`` (BasicSR's ``params`` or the original bare state dict) safely; convert it."""
    state = unwrap_state_dict(read_checkpoint(path), param_key, source=str(path))
    return convert_dfdnet_state(state, source=str(path))


Dictionary = dict[int, dict[str, torch.Tensor]]


def load_dictionary(path: str | os.PathLike[str], *, channels: int | None = None) -> Dictionary:
    """The component dictionary as ``{size: {part: (atoms, C, side, side)}}``, from a ``.pth`` file or a
    folder of ``.npy`` files.

    Args:
        path: BasicSR's dictionary ``.pth``, or the release's ``DictionaryCenter512`` folder.
        channels: The network width it must fit (``DFDNet.channels``); None reads it off the atoms.

    Raises:
        InvalidFileError: If an entry is missing, holds pickled objects, is not finite, or does not have
            the atom shape of its part and scale.
    """
    path = Path(path)
    raw = _read_npy_folder(path) if path.is_dir() else _read_pth_dictionary(path)
    width = channels or _infer_channels(raw[FEATURE_SIZES[0]][PARTS[0]], source=str(path))
    dictionary: Dictionary = {}
    for size in FEATURE_SIZES:
        for part in PARTS:
            atoms = raw[size][part]
            expected = atom_shape(width, size, part)
            per_atom = int(np.prod(expected))
            if atoms.dim() < 2 or not len(atoms) or atoms[0].numel() != per_atom:
                raise InvalidFileError(
                    f"{path}: the {part} atoms at {size} px are {'x'.join(map(str, atoms.shape))}, not "
                    f"N x {'x'.join(map(str, expected))} (a {width}-channel DFDNet dictionary)"
                )
            if not atoms.is_floating_point() or not torch.isfinite(atoms).all():
                raise InvalidFileError(f"{path}: the {part} atoms at {size} px are not finite floats")
            dictionary.setdefault(size, {})[part] = atoms.reshape(len(atoms), *expected).float()
    return dictionary


def _infer_channels(atoms: torch.Tensor, *, source: str) -> int:
    """DFDNet's width from the first part's atoms at the finest scale (2 x width channels)."""
    _, side, _ = atom_shape(1, FEATURE_SIZES[0], PARTS[0])
    per_atom = atoms[0].numel() if atoms.dim() >= 2 and len(atoms) else 0
    channels, remainder = divmod(per_atom, side * side * FEATURE_WIDTHS[0])
    if remainder or not channels:
        raise InvalidFileError(
            f"{source}: the {PARTS[0]} atoms at {FEATURE_SIZES[0]} px ({'x'.join(map(str, atoms.shape))}) "
            f"are not N x C x {side} x {side}"
        )
    return channels


def _read_pth_dictionary(path: Path) -> dict[int, dict[str, torch.Tensor]]:
    checkpoint = read_checkpoint(path)
    raw: dict[int, dict[str, torch.Tensor]] = {}
    for size in FEATURE_SIZES:
        entry = checkpoint.get(str(size), checkpoint.get(size))
        if not isinstance(entry, Mapping):
            raise InvalidFileError(f"{path} is not a DFDNet dictionary (no {size!r} entry of parts)")
        for part in PARTS:
            atoms = entry.get(part)
            if not isinstance(atoms, torch.Tensor):
                raise InvalidFileError(f"{path}: the dictionary has no {part} atoms at {size} px")
            raw.setdefault(size, {})[part] = atoms
    return raw


def _read_npy_folder(folder: Path) -> dict[int, dict[str, torch.Tensor]]:
    raw: dict[int, dict[str, torch.Tensor]] = {}
    for size in FEATURE_SIZES:
        for part in PARTS:
            file = folder / NPY_NAME.format(part=part, size=size)
            try:
                array = np.load(file, allow_pickle=False)
            except FileNotFoundError as err:
                raise InvalidFileError(f"{folder} lacks the dictionary file {file.name}") from err
            except ValueError as err:
                raise InvalidFileError(
                    f"refusing {file}: not a plain NumPy array file (object arrays need pickle, which could "
                    "run code)"
                ) from err
            except OSError as err:
                raise InvalidFileError(f"cannot read {file}: {err}") from err
            if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
                raise InvalidFileError(f"{file}: dictionary atoms must be a float array")
            raw.setdefault(size, {})[part] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return raw
