"""VGG19's convolutional trunk as a feature extractor, written here so nothing needs torchvision.

Layer names follow the VGG paper and BasicSR (``conv3_4``, ``relu3_4``, ``pool3``), so a BasicSR state
dict (``vgg_net.conv1_1.weight`` ...) loads by name; ``VGG19_LAYERS`` also gives each layer's index in
torchvision's ``vgg19().features``, which is how the original releases of networks built on it name
their keys. Only the convolutions up to the deepest layer asked for are built, so DFDNet's extractor,
which stops at ``conv5_4``, holds exactly VGG19's 16 convolutions (20,024,384 parameters at width 64).

The input is an RGB image on [0, 1]; it is normalised with the ``mean`` and ``std`` buffers, which start
at ImageNet's statistics and are overwritten by whatever a checkpoint holds (DFDNet learned its own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bbcu.core.errors import InvalidArgumentError

CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
"""VGG19: five blocks of 3x3 convolutions, each block ending in a 2x2 max-pool."""
WIDTH_MULTIPLIERS = (1, 2, 4, 8, 8)
"""Each block's channels as multiples of the first block's (64 in VGG19: 64, 128, 256, 512, 512)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for block, convs in enumerate(CONVS_PER_BLOCK, start=1):
        for conv in range(1, convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


VGG19_LAYERS = _layer_names()
"""Every layer of VGG19's ``features`` in order: its position is torchvision's index of that layer."""


class VGG19Features(nn.Module):
    """VGG19 up to the deepest of ``layers``, returning those layers' outputs.

    Args:
        layers: Names from ``VGG19_LAYERS`` whose outputs ``forward`` returns, in this order.
        width: Channels of the first block (64 in VGG19); the others follow ``WIDTH_MULTIPLIERS``.
    """

    def __init__(self, layers: tuple[str, ...], width: int = 64) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown or not layers:
            raise InvalidArgumentError(f"not VGG19 layers: {unknown or 'none given'}")
        if width < 1:
            raise InvalidArgumentError(f"VGG19 width must be positive, got {width}")
        self.layers = tuple(layers)
        self.plan = VGG19_LAYERS[: max(VGG19_LAYERS.index(name) for name in layers) + 1]
        self.vgg_net = nn.ModuleDict()
        in_channels = 3
        for name in self.plan:
            if name.startswith("conv"):
                out_channels = width * WIDTH_MULTIPLIERS[int(name[4]) - 1]
                self.vgg_net[name] = nn.Conv2d(in_channels, out_channels, 3, padding=1)
                in_channels = out_channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The requested layers' outputs for an RGB ``image`` on [0, 1], keyed by layer name."""
        x = (image - self.mean) / self.std
        outputs = {}
        for name in self.plan:
            if name.startswith("conv"):
                x = self.vgg_net[name](x)
            elif name.startswith("relu"):
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2)
            if name in self.layers:
                outputs[name] = x
        return outputs
