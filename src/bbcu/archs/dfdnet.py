"""DFDNet (Li et al., ECCV 2020, "Blind Face Restoration via Deep Multi-scale Component Dictionaries"):
the face restorer people run beside binary networks, in BasicSR's module layout so its checkpoint loads
by name once the spectral norms are folded (:mod:`bbcu.formats.dfdnet`).

::

    f = VGG19(face)                                   # relu2_2 / relu3_4 / relu4_4 / conv5_4: 256..32 px
    for each scale s and part p (left eye, right eye, nose, mouth):
        r = crop(f_s, box_p // (512 / s)) resized to the atom size (bilinear)
        D = AdaIN(dictionary[s][p], r)                # every atom takes r's per-channel mean and std
        k = argmax softmax(conv2d(r, D))              # the atom most correlated with the crop
        w = nearest-resize(D[k]) to the crop
        g_s[box] = attention_p_s(w - crop) * w + crop # the rest of g_s is f_s
    x = MSDilation(f_conv5_4)                         # four dilated branches (4, 3, 2, 1), fused, + input
    x = SFTUp_i(x, g_s) for s = 32, 64, 128, 256      # blur, conv; * scale(g) + shift(g); bilinear x2, conv
    face = tanh(conv(UpRes(UpRes(LReLU(conv(x))))))

Every 3x3 conv outside VGG except the last three is spectral-normalised in the checkpoints; folded at load
they are plain convs here, so the network is an ordinary inference module. It restores one aligned
512x512 face at a time, on [0, 1] like every bbcu network (the official [-1, 1] scaling is internal), and
needs the four part boxes of that face (``bbcu.run.faces`` makes them from 68 landmarks) and its component
dictionary, which is not part of the weights (``set_dictionary``). With 64 channels it has 113,313,987
parameters, 20,024,384 of them in VGG19; ``channels`` scales every width, VGG's included, for tests.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bbcu.archs.registry import register_model
from bbcu.archs.vgg import VGG19Features
from bbcu.core.errors import InvalidArgumentError

MODEL_NAME = "dfdnet"
FACE_SIZE = 512
"""Side of the aligned face DFDNet restores; part boxes are in its pixels."""
PARTS = ("left_eye", "right_eye", "nose", "mouth")
"""The four components, in the order of every part-box list (left and right as the face is seen)."""
PART_SIZES = (80, 80, 50, 110)
"""Each part's dictionary atom side at 512 pixels; the atoms at feature size s are ``size // (512 / s)``."""
FEATURE_SIZES = (256, 128, 64, 32)
"""Side of the four VGG feature maps the dictionary swap works on."""
VGG_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "conv5_4")
"""The VGG19 layers giving those maps (the last one before its ReLU)."""
FEATURE_WIDTHS = (2, 4, 8, 8)
"""Their channels as multiples of ``channels`` (128, 256, 512, 512 at the official 64)."""
DILATIONS = (4, 3, 2, 1)
ADAIN_EPS = 1e-5
SLOPE = 0.2
SFT_SLOPE = 0.04
"""The SFT up-blocks' first activation: the official code applies LeakyReLU(0.2) twice, i.e. 0.2 * 0.2."""


def atom_shape(channels: int, feature_size: int, part: str) -> tuple[int, int, int]:
    """(channels, side, side) of one dictionary atom of ``part`` at ``feature_size``."""
    scale_index = FEATURE_SIZES.index(feature_size)
    side = PART_SIZES[PARTS.index(part)] // (FACE_SIZE // feature_size)
    return channels * FEATURE_WIDTHS[scale_index], side, side


def check_part_boxes(boxes: object) -> torch.Tensor:
    """The four part boxes as a ``(4, 4)`` int64 tensor of ``x0, y0, x1, y1`` (end exclusive).

    Raises:
        InvalidArgumentError: If there are not four boxes of four integers, a box leaves the 512x512
            face, or it is empty at the coarsest feature scale (32 pixels: 16 face pixels per cell).
    """
    tensor = torch.as_tensor(boxes)
    if tensor.shape != (len(PARTS), 4) or tensor.is_floating_point() or tensor.is_complex():
        raise InvalidArgumentError(
            f"part boxes must be {len(PARTS)} integer boxes x0 y0 x1 y1 ({', '.join(PARTS)}), "
            f"got shape {tuple(tensor.shape)}"
        )
    tensor = tensor.to(torch.int64)
    coarsest = FACE_SIZE // FEATURE_SIZES[-1]
    for part, box in zip(PARTS, tensor.tolist(), strict=True):
        x0, y0, x1, y1 = box
        inside = 0 <= x0 < x1 <= FACE_SIZE and 0 <= y0 < y1 <= FACE_SIZE
        if not inside or x1 // coarsest <= x0 // coarsest or y1 // coarsest <= y0 // coarsest:
            raise InvalidArgumentError(
                f"the {part} box {box} must lie inside the {FACE_SIZE}x{FACE_SIZE} face and span at least "
                f"one {coarsest}-pixel cell boundary each way"
            )
    return tensor


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Adaptive instance normalisation: each ``content`` map takes ``style``'s per-channel mean and std.

    Standard deviations are the unbiased ones, with ``ADAIN_EPS`` added to the variance (as DFDNet).
    """

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2) + ADAIN_EPS).sqrt()[..., None, None]

    content_mean, content_std = stats(content)
    style_mean, style_std = stats(style)
    return (content - content_mean) / content_std * style_std + style_mean


class Blur(nn.Module):
    """Depthwise 3x3 binomial blur ([1, 2, 1] x [1, 2, 1] / 16), zero-padded: a fixed filter, no weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
        kernel = (torch.outer(taps, taps) / 16).expand(x.shape[1], 1, 3, 3)
        return F.conv2d(x, kernel, padding=1, groups=x.shape[1])


def _conv(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)


def _conv_pair(channels: int, dilation: int = 1) -> nn.Sequential:
    """conv, LeakyReLU(0.2), conv: DFDNet's attention block and each dilation branch."""
    return nn.Sequential(
        _conv(channels, channels, dilation), nn.LeakyReLU(SLOPE), _conv(channels, channels, dilation)
    )


class MSDilationBlock(nn.Module):
    """Four conv pairs at different dilations side by side, fused by one conv, plus the input."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = DILATIONS) -> None:
        super().__init__()
        self.conv_blocks = nn.ModuleList(_conv_pair(channels, d) for d in dilations)
        self.conv_fusion = _conv(channels * len(dilations), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_fusion(torch.cat([block(x) for block in self.conv_blocks], 1)) + x


class SFTUpBlock(nn.Module):
    """Blur and conv, a spatial feature transform (scale and shift computed from the swapped VGG
    features), then bilinear x2 and conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(Blur(), _conv(in_channels, out_channels), nn.LeakyReLU(SFT_SLOPE))
        self.convup = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(out_channels, out_channels),
            nn.LeakyReLU(SLOPE),
        )
        self.scale_block = nn.Sequential(
            _conv(in_channels, out_channels), nn.LeakyReLU(SLOPE), _conv(out_channels, out_channels)
        )
        self.shift_block = nn.Sequential(
            _conv(in_channels, out_channels),
            nn.LeakyReLU(SLOPE),
            _conv(out_channels, out_channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return self.convup(self.conv1(x) * self.scale_block(guide) + self.shift_block(guide))


class UpResBlock(nn.Module):
    """conv, LeakyReLU(0.2), conv, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = _conv_pair(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DFDNet(nn.Module):
    """DFDNet (layout above).

    Attributes:
        channels: Decoder width (64 in the release); VGG's widths are multiples of it.
        scale: Always 1 (the face comes back at 512x512).
        in_channels: Always 3 (RGB).
        k: Always 1: no residual alignment (kept for the common network interface).
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        if channels < 1:
            raise InvalidArgumentError(f"DFDNet needs positive channels, got {channels}")
        self.channels, self.scale, self.in_channels, self.k = channels, 1, 3, 1.0
        self.vgg_extractor = VGG19Features(VGG_LAYERS, width=channels)
        self.attn_blocks = nn.ModuleDict(
            {
                f"{part}_{size}": _conv_pair(channels * width)
                for size, width in zip(FEATURE_SIZES, FEATURE_WIDTHS, strict=True)
                for part in PARTS
            }
        )
        self.multi_scale_dilation = MSDilationBlock(channels * 8)
        self.upsample0 = SFTUpBlock(channels * 8, channels * 8)
        self.upsample1 = SFTUpBlock(channels * 8, channels * 4)
        self.upsample2 = SFTUpBlock(channels * 4, channels * 2)
        self.upsample3 = SFTUpBlock(channels * 2, channels)
        self.upsample4 = nn.Sequential(
            _conv(channels, channels),
            nn.LeakyReLU(SLOPE),
            UpResBlock(channels),
            UpResBlock(channels),
            _conv(channels, 3),
            nn.Tanh(),
        )

    def set_dictionary(self, dictionary: Mapping[int, Mapping[str, torch.Tensor]]) -> None:
        """Attach the component dictionary: ``dictionary[size][part]`` is ``(atoms, C, side, side)``.

        The atoms are buffers outside the state dict (moved by ``.to()``, never saved with the weights),
        because the dictionary is distributed, and chosen, separately from the network.

        Raises:
            InvalidArgumentError: If a scale or part is missing or an entry has the wrong shape.
        """
        for size in FEATURE_SIZES:
            for part in PARTS:
                atoms = dictionary.get(size, {}).get(part)
                expected = atom_shape(self.channels, size, part)
                if atoms is None or atoms.dim() != 4 or tuple(atoms.shape[1:]) != expected or not len(atoms):
                    found = "nothing" if atoms is None else "x".join(map(str, atoms.shape))
                    wanted = "x".join(map(str, expected))
                    raise InvalidArgumentError(
                        f"the dictionary's {part} atoms at {size} px must be N x {wanted} for a "
                        f"{self.channels}-channel DFDNet, found {found}"
                    )
                self.register_buffer(f"atoms_{part}_{size}", atoms.float(), persistent=False)

    @property
    def has_dictionary(self) -> bool:
        """Whether ``set_dictionary`` has been called."""
        return hasattr(self, f"atoms_{PARTS[0]}_{FEATURE_SIZES[0]}")

    def forward(self, face: torch.Tensor, part_boxes: object) -> torch.Tensor:
        """Restore one aligned face ``(1, 3, 512, 512)`` on [0, 1] with its four part boxes (in 512-pixel
        coordinates, ``check_part_boxes``); the result is on [0, 1] too.

        Raises:
            InvalidArgumentError: For another input size, bad boxes, or no dictionary attached.
        """
        if face.dim() != 4 or tuple(face.shape[:2]) != (1, 3) or face.shape[-2:] != (FACE_SIZE, FACE_SIZE):
            raise InvalidArgumentError(
                f"DFDNet restores one aligned {FACE_SIZE}x{FACE_SIZE} RGB face, got shape {tuple(face.shape)}"
            )
        if not self.has_dictionary:
            raise InvalidArgumentError("DFDNet needs its component dictionary (set_dictionary)")
        boxes = check_part_boxes(part_boxes)
        features = self.vgg_extractor(face)
        x = self.multi_scale_dilation(features[VGG_LAYERS[-1]])
        blocks = (self.upsample3, self.upsample2, self.upsample1, self.upsample0)  # fine to coarse, as VGG
        guides = {
            block: self.swap_parts(features[layer], size, boxes)
            for block, layer, size in zip(blocks, VGG_LAYERS, FEATURE_SIZES, strict=True)
        }
        for block in reversed(blocks):
            x = block(x, guides[block])
        return (self.upsample4(x) + 1) / 2

    def swap_parts(self, feature: torch.Tensor, size: int, boxes: torch.Tensor) -> torch.Tensor:
        """``feature`` with each part's box replaced by its dictionary-blended version (later parts win
        where boxes overlap; every part reads the unchanged ``feature``)."""
        updated = feature.clone()
        for part, box in zip(PARTS, boxes, strict=True):
            x0, y0, x1, y1 = (box // (FACE_SIZE // size)).tolist()
            atoms = getattr(self, f"atoms_{part}_{size}")
            attention = self.attn_blocks[f"{part}_{size}"]
            updated[:, :, y0:y1, x0:x1] = swap_part(feature[:, :, y0:y1, x0:x1], atoms, attention)
        return updated


def swap_part(crop: torch.Tensor, atoms: torch.Tensor, attention: nn.Module) -> torch.Tensor:
    """One part at one scale: the best-matching atom, styled like ``crop``, blended in by ``attention``."""
    resized = F.interpolate(crop, size=atoms.shape[-2:], mode="bilinear", align_corners=False)
    styled = adain(atoms, resized)
    scores = F.conv2d(resized, styled).flatten()
    best = int(torch.argmax(torch.softmax(scores, 0)))  # softmax first, as DFDNet: ties resolve alike
    swapped = F.interpolate(styled[best : best + 1], size=crop.shape[-2:], mode="nearest")
    return attention(swapped - crop) * swapped + crop


@register_model(MODEL_NAME, task="face", binary=False, scales=(1,))
def dfdnet(channels: int = 64) -> DFDNet:
    """DFDNet face restoration (an aligned 512x512 face, its part boxes and the component dictionary)."""
    return DFDNet(channels)
