"""DFDNet: structure, spectral-norm folding, the part-dictionary swap, both checkpoint layouts, the
dictionary files, the face geometry and ``bbcu restore --task face``.

No official weights exist on this machine, so correctness is proven by structure: the published parameter
counts; a reference forward pass written here from docs/references.md over BasicSR-named tensors whose
spectral-normalised convs run as PyTorch's own ``spectral_norm`` modules in eval mode, which every layout
and file must reproduce; and hand-computed part boxes and swaps. Networks are built at width 4 (VGG 4..32
channels): the structure and the 512x512 input are the official ones, the arithmetic is small.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

import bbcu
from bbcu.archs import create_model
from bbcu.archs.dfdnet import swap_part
from bbcu.archs.registry import without_initialisation
from bbcu.cli.main import main
from bbcu.core.errors import InvalidArgumentError, InvalidFileError, MissingExtraError
from bbcu.formats.dfdnet import (
    convert_dfdnet_checkpoint,
    convert_dfdnet_state,
    fold_spectral_norm,
    load_dictionary,
)
from bbcu.formats.image_io import read_image, write_image
from bbcu.formats.weights import save
from bbcu.imaging.pixels import to_float, to_uint8
from bbcu.run.faces import (
    FFHQ_TEMPLATE_512,
    FaceDetector,
    FaceRestorer,
    align_face,
    invert_affine,
    part_boxes,
    paste_face,
    read_landmarks,
    restore_face,
    similarity_transform,
    warp_affine,
)

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTH = 4
"""Decoder width of the test networks (64 in the release)."""
ATOMS = 3
PARTS = ("left_eye", "right_eye", "nose", "mouth")
SIZES = (256, 128, 64, 32)
SIDES_AT_256 = {"left_eye": 40, "right_eye": 40, "nose": 25, "mouth": 55}
"""Atom sides at 256 px, halving (integer division) per scale: docs/references.md."""
VGG_BLOCKS = (2, 2, 4, 4, 4)


# --- hand-computed landmarks and boxes ---------------------------------------------------------------


def landmarks_68() -> np.ndarray:
    """68 points whose part boxes are worked out by hand in ``test_part_boxes_from_landmarks``."""
    points = np.full((68, 2), 256.0)
    left_eye = [*range(17, 22), *range(36, 42)]
    points[left_eye, 0] = [80, 120, 100, 100, 100, 100, 100, 100, 100, 100, 105.5]  # mean 100.5, extent 40
    points[left_eye, 1] = [200] * 10 + [202.75]  # mean 200.25, extent 2.75
    right_eye = [*range(22, 27), *range(42, 48)]
    points[right_eye] = points[left_eye] + [200, 0]
    nose = list(range(29, 36))
    points[nose, 0] = [250, 252, 254, 256, 258, 260, 262]  # mean 256, extent 12
    points[nose, 1] = [305, 306, 308, 310, 312, 316, 317.9]  # mean 310.7, extent 12.9
    mouth = list(range(48, 68))
    points[mouth, 0] = [200, 312] + [256] * 18  # mean 256, extent 112
    points[mouth, 1] = [380, 420] * 10  # mean 400, extent 40
    return points


BOXES = np.array(
    [
        [81, 181, 120, 220],  # half 40 / 2 = 20: int(100.5 - 19), int(200.25 - 19), int(120.5), int(220.25)
        [281, 181, 320, 220],  # the same, 200 px to the right
        [241, 295, 272, 326],  # extent 12.9 / 2 < 16: half 16; int(256 - 15), int(295.7), 272, int(326.7)
        [201, 345, 312, 456],  # half 112 / 2 = 56: int(201), int(345), int(312), int(456)
    ]
)


def test_part_boxes_from_landmarks() -> None:
    np.testing.assert_array_equal(part_boxes(landmarks_68()), BOXES)


def write_landmarks(path: Path, points: np.ndarray) -> Path:
    path.write_text("".join(f"{x:.3f} {y:.3f}\n" for x, y in points))
    return path


def test_landmarks_file_round_trip(tmp_path: Path) -> None:
    points = read_landmarks(write_landmarks(tmp_path / "face.png.txt", landmarks_68()))
    np.testing.assert_allclose(points, landmarks_68(), atol=5e-4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "landmarks file not found"),
        ("1 2\n" * 67, "67 landmark lines, expected 68"),
        ("1 2\n" * 67 + "1 x\n", "is not two numbers"),
        ("1 2\n" * 67 + "1 2 3\n", "must be two finite numbers"),
        ("1 2\n" * 67 + "1 nan\n", "must be two finite numbers"),
    ],
    ids=["missing", "67-lines", "not-a-number", "three-numbers", "nan"],
)
def test_bad_landmark_files_are_refused(text: str | None, message: str, tmp_path: Path) -> None:
    path = tmp_path / "lm.txt"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InvalidFileError, match=message):
        read_landmarks(path)


@pytest.mark.parametrize(
    "boxes",
    [BOXES[:3], BOXES + 0.5, [[81, 181, 120, 220]] * 3 + [[400, 400, 513, 450]], [[81, 181, 90, 220]] * 4],
    ids=["three-boxes", "floats", "outside", "empty-at-32px"],
)
def test_bad_part_boxes_are_refused(boxes: object) -> None:
    model = tiny_network()
    with pytest.raises(InvalidArgumentError, match="box"):
        model(torch.zeros(1, 3, 512, 512), boxes)


# --- the network ----------------------------------------------------------------------------------------


def test_parameter_counts_of_the_published_network() -> None:
    with without_initialisation(shapes_only=True):
        model = create_model("dfdnet")
    assert sum(p.numel() for p in model.parameters()) == 113_313_987
    assert sum(p.numel() for p in model.vgg_extractor.parameters()) == 20_024_384  # VGG19 to conv5_4
    assert all(p.is_meta for p in model.parameters())  # counted without allocating 450 MB


def vgg_convs(width: int) -> dict[str, tuple[int, int]]:
    """VGG19's convolutions up to conv5_4: name -> (out, in) channels."""
    shapes, in_channels = {}, 3
    for block, (convs, factor) in enumerate(zip(VGG_BLOCKS, (1, 2, 4, 8, 8), strict=True), start=1):
        for index in range(1, convs + 1):
            shapes[f"conv{block}_{index}"] = (width * factor, in_channels)
            in_channels = width * factor
    return shapes


def vgg_index(name: str) -> int:
    """torchvision's ``features`` index of a VGG19 conv: conv, relu per conv, one pool per block."""
    block, conv = map(int, name[4:].split("_"))
    return sum(2 * n + 1 for n in VGG_BLOCKS[: block - 1]) + 2 * (conv - 1)


def sn_convs(width: int) -> dict[str, tuple[int, int, int]]:
    """Spectral-normalised convs of the BasicSR layout: name -> (out, in, dilation)."""
    convs = {}
    for size, factor in zip(SIZES, (2, 4, 8, 8), strict=True):
        for part in PARTS:
            for j in (0, 2):
                convs[f"attn_blocks.{part}_{size}.{j}"] = (width * factor, width * factor, 1)
    for i, dilation in enumerate((4, 3, 2, 1)):
        for j in (0, 2):
            convs[f"multi_scale_dilation.conv_blocks.{i}.{j}"] = (8 * width, 8 * width, dilation)
    convs["multi_scale_dilation.conv_fusion"] = (8 * width, 32 * width, 1)
    for k, (cin, cout) in enumerate(((8, 8), (8, 4), (4, 2), (2, 1))):
        cin, cout = cin * width, cout * width
        for name, shape in {
            "conv1.1": (cout, cin),
            "convup.1": (cout, cout),
            "scale_block.0": (cout, cin),
            "scale_block.2": (cout, cout),
            "shift_block.0": (cout, cin),
            "shift_block.2": (cout, cout),
        }.items():
            convs[f"upsample{k}.{name}"] = (*shape, 1)
    convs["upsample4.0"] = (width, width, 1)
    return convs


def sn_module(out_channels: int, in_channels: int, dilation: int) -> nn.Module:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
    return spectral_norm(conv)


def basicsr_state(width: int = WIDTH, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under BasicSR's names; the spectral-norm tensors come from PyTorch's own module
    after a few training-mode power iterations, as in a trained checkpoint."""
    torch.manual_seed(seed)
    state: dict[str, torch.Tensor] = {
        "vgg_extractor.mean": torch.tensor([0.48, 0.46, 0.41]).view(1, 3, 1, 1),
        "vgg_extractor.std": torch.tensor([0.23, 0.22, 0.24]).view(1, 3, 1, 1),
    }
    plain = {f"vgg_extractor.vgg_net.{n}": shape for n, shape in vgg_convs(width).items()}
    plain |= {f"upsample4.{r}.body.{j}": (width, width) for r in (2, 3) for j in (0, 2)}
    plain["upsample4.4"] = (3, width)
    for name, (out_ch, in_ch) in plain.items():
        state[f"{name}.weight"] = torch.randn(out_ch, in_ch, 3, 3) * (2 / (9 * in_ch)) ** 0.5
        state[f"{name}.bias"] = torch.randn(out_ch) * 0.05
    for name, (out_ch, in_ch, dilation) in sn_convs(width).items():
        module = sn_module(out_ch, in_ch, dilation)
        with torch.no_grad():
            module.bias.normal_(0, 0.05)
            for _ in range(3):
                module(torch.zeros(1, in_ch, 2, 2))  # power iterations update weight_u / weight_v
        state |= {f"{name}.{key}": value.clone() for key, value in module.state_dict().items()}
    return state


def random_dictionary(
    width: int = WIDTH, atoms: int = ATOMS, seed: int = 1
) -> dict[int, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return {
        size: {
            part: torch.randn(atoms, width * factor, side, side, generator=generator)
            for part, side in ((p, SIDES_AT_256[p] // (256 // size)) for p in PARTS)
        }
        for size, factor in zip(SIZES, (2, 4, 8, 8), strict=True)
    }


def reference_forward(
    state: dict[str, torch.Tensor], dictionary: dict, face: torch.Tensor, boxes: np.ndarray
) -> torch.Tensor:
    """DFDNet as docs/references.md describes it, over BasicSR tensors; spectral norms run as PyTorch's
    ``spectral_norm`` modules in eval mode, blocks and activations as the official code has them."""

    def conv(name: str, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        if f"{name}.weight_orig" in state:
            out_ch, in_ch = state[f"{name}.weight_orig"].shape[:2]
            module = sn_module(out_ch, in_ch, dilation)
            module.load_state_dict(
                {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(f"{name}.")}
            )
            return module.eval()(x)
        return F.conv2d(
            x, state[f"{name}.weight"], state[f"{name}.bias"], padding=dilation, dilation=dilation
        )

    def lrelu(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2)

    def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean((2, 3), keepdim=True), (x.var((2, 3), keepdim=True) + 1e-5).sqrt()

        (cm, cs), (sm, ss) = stats(content), stats(style)
        return (content - cm) / cs * ss + sm

    x = (face - state["vgg_extractor.mean"]) / state["vgg_extractor.std"]
    taken = {"conv2_2": "relu2_2", "conv3_4": "relu3_4", "conv4_4": "relu4_4"}
    features = {}
    for name in vgg_convs(WIDTH):
        x = conv(f"vgg_extractor.vgg_net.{name}", x)
        if name == "conv5_4":
            features["conv5_4"] = x
            break
        x = F.relu(x)
        features[taken.get(name, "")] = x
        if name.endswith(f"_{VGG_BLOCKS[int(name[4]) - 1]}"):
            x = F.max_pool2d(x, 2)
    guides = []
    for layer, size in zip(("relu2_2", "relu3_4", "relu4_4", "conv5_4"), SIZES, strict=True):
        feature = features[layer]
        guide = feature.clone()
        for part, box in zip(PARTS, boxes, strict=True):
            x0, y0, x1, y1 = (int(v // (512 / size)) for v in box)
            crop = feature[:, :, y0:y1, x0:x1]
            atoms = dictionary[size][part]
            resized = F.interpolate(crop, atoms.shape[-2:], mode="bilinear", align_corners=False)
            styled = adain(atoms, resized)
            best = torch.argmax(F.softmax(F.conv2d(resized, styled).view(-1), dim=0))
            swapped = F.interpolate(styled[best : best + 1], crop.shape[-2:])
            prefix = f"attn_blocks.{part}_{size}"
            attention = conv(f"{prefix}.2", lrelu(conv(f"{prefix}.0", swapped - crop)))
            guide[:, :, y0:y1, x0:x1] = attention * swapped + crop
        guides.append(guide)
    trunk = features["conv5_4"]
    branches = [
        conv(
            f"multi_scale_dilation.conv_blocks.{i}.2",
            lrelu(conv(f"multi_scale_dilation.conv_blocks.{i}.0", trunk, d)),
            d,
        )
        for i, d in enumerate((4, 3, 2, 1))
    ]
    x = conv("multi_scale_dilation.conv_fusion", torch.cat(branches, 1)) + trunk
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    for k, guide in enumerate(guides[::-1]):
        p = f"upsample{k}"
        blurred = F.conv2d(x, blur.expand(x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])
        out = lrelu(lrelu(conv(f"{p}.conv1.1", blurred)))  # the official code's two LeakyReLUs
        scale = conv(f"{p}.scale_block.2", lrelu(conv(f"{p}.scale_block.0", guide)))
        shift = torch.sigmoid(conv(f"{p}.shift_block.2", lrelu(conv(f"{p}.shift_block.0", guide))))
        up = F.interpolate(out * scale + shift, scale_factor=2, mode="bilinear", align_corners=False)
        x = lrelu(conv(f"{p}.convup.1", up))
    x = lrelu(conv("upsample4.0", x))
    for r in (2, 3):
        x = x + conv(f"upsample4.{r}.body.2", lrelu(conv(f"upsample4.{r}.body.0", x)))
    return (torch.tanh(conv("upsample4.4", x)) + 1) / 2


def face_tensor(seed: int = 2) -> torch.Tensor:
    return torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(seed))


def tiny_network() -> nn.Module:
    model = create_model("dfdnet", channels=WIDTH).eval()
    model.set_dictionary(random_dictionary())
    return model


def test_spectral_norm_folding_equals_torch_in_eval_mode() -> None:
    torch.manual_seed(0)
    module = sn_module(6, 5, dilation=2)
    with torch.no_grad():
        for _ in range(4):
            module(torch.rand(1, 5, 7, 7))  # training mode: the power iterations move u and v
    state = module.state_dict()
    folded = fold_spectral_norm(state["weight_orig"], state["weight_u"], state["weight_v"])
    x = torch.rand(1, 5, 9, 8)
    with torch.no_grad():
        expected = module.eval()(x)
    ours = F.conv2d(x, folded, state["bias"], padding=2, dilation=2)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(folded, state["weight_orig"])  # the norm really divides


class ConstantAttention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 0.5)


def test_swap_picks_the_atom_the_crop_is_an_affine_copy_of() -> None:
    """crop = a * atom1 + b per channel (a > 0): AdaIN turns atom1 into the crop itself, so it scores the
    highest correlation (Cauchy-Schwarz) although atom0 is larger; with attention 0.5 the blend is
    crop + 0.5 * crop."""
    generator = torch.Generator().manual_seed(3)
    atoms = torch.randn(3, 2, 5, 5, generator=generator)
    atoms[0] *= 10
    crop = atoms[1:2] * torch.tensor([2.0, 0.5]).view(1, 2, 1, 1) + torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)
    blended = swap_part(crop, atoms, ConstantAttention())
    torch.testing.assert_close(blended, 1.5 * crop, rtol=1e-4, atol=1e-4)


def test_swap_touches_only_the_scaled_boxes() -> None:
    """At 256 px the left-eye box (81, 181, 120, 220) becomes rows 90:110, columns 40:60."""
    model = tiny_network()
    feature = torch.randn(1, 2 * WIDTH, 256, 256)
    boxes = torch.tensor([[81, 181, 120, 220]] * 4)  # all four parts on one box: the mouth's swap wins
    updated = model.swap_parts(feature, 256, boxes)
    changed = (updated != feature).any(1)[0]
    assert changed[90:110, 40:60].any()
    changed[90:110, 40:60] = False
    assert not changed.any()


def test_network_computes_the_reference() -> None:
    state, dictionary = basicsr_state(), random_dictionary()
    model = convert_dfdnet_state(state, source="test")
    model.set_dictionary(dictionary)
    face = face_tensor()
    with torch.no_grad():
        ours = model(face, BOXES)
        expected = reference_forward(state, dictionary, face, BOXES)
    assert ours.shape == (1, 3, 512, 512)
    torch.testing.assert_close(ours, expected, rtol=0, atol=2e-5)


@pytest.mark.slow
def test_full_size_network_restores_a_face() -> None:
    """The official width (113 M parameters) at 512x512, default init, one atom per part and scale."""
    torch.manual_seed(0)
    model = create_model("dfdnet").eval()
    model.set_dictionary(random_dictionary(64, atoms=1))
    with torch.no_grad():
        out = model(face_tensor(), BOXES)
    assert out.shape == (1, 3, 512, 512) and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


# --- the two checkpoint layouts and the dictionary files ----------------------------------------------

ABBREVIATIONS = {"left_eye": "le", "right_eye": "re", "nose": "no", "mouth": "mo"}


def in_original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` under the original release's names (the table of docs/references.md), plus the tensors
    that release holds but never uses."""
    renamed = {}
    for key, tensor in state.items():
        if match := re.fullmatch(r"vgg_extractor\.vgg_net\.(conv\d_\d)\.(\w+)", key):
            key = f"VggExtract.model.features.{vgg_index(match[1])}.{match[2]}"
        elif match := re.fullmatch(r"vgg_extractor\.(mean|std)", key):
            key = f"VggExtract.RGB_{match[1]}"
        elif match := re.fullmatch(r"attn_blocks\.([a-z_]+)_(\d+)\.(.+)", key):
            key = f"{ABBREVIATIONS[match[1]]}_{match[2]}.{match[3]}"
        elif match := re.fullmatch(r"multi_scale_dilation\.conv_blocks\.(\d)\.(.+)", key):
            key = f"MSDilate.conv{int(match[1]) + 1}.{match[2]}"
        else:
            key = key.replace("multi_scale_dilation.conv_fusion", "MSDilate.convi")
            key = key.replace("scale_block", "ScaleModel1").replace("shift_block", "ShiftModel1")
            key = key.replace(".body.", ".Model.").replace("upsample", "up")
        renamed[key] = tensor
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]).div(16).expand(8 * WIDTH, 1, 3, 3)
    unused = {
        "VggExtract.model.classifier.0.weight": torch.randn(16, 8),
        "VggExtract.features.0.0.weight": state["vgg_extractor.vgg_net.conv1_1.weight"],
        "to_rgb0.0.weight_orig": torch.randn(3, 8 * WIDTH, 3, 3),
        "up0.conv1.0.weight": blur,
        "up0.conv1.0.weight_flip": blur,
    }
    return renamed | unused


LAYOUTS = [("basicsr", "params", False), ("basicsr", "params", True), ("original", None, True)]


@pytest.mark.parametrize(
    ("layout", "wrapper", "legacy"), LAYOUTS, ids=["basicsr", "basicsr-legacy", "original"]
)
def test_every_layout_converts_to_the_reference_network(
    layout: str, wrapper: str | None, legacy: bool, tmp_path: Path
) -> None:
    state, dictionary = basicsr_state(), random_dictionary()
    payload = state if layout == "basicsr" else in_original_layout(state)
    path = tmp_path / "DFDNet.pth"
    torch.save(
        payload if wrapper is None else {wrapper: payload}, path, _use_new_zipfile_serialization=not legacy
    )
    model = convert_dfdnet_checkpoint(path)
    assert (model.model_name, model.model_kwargs) == ("dfdnet", {"channels": WIDTH})
    model.set_dictionary(dictionary)
    face = face_tensor()
    with torch.no_grad():
        torch.testing.assert_close(
            model(face, BOXES), reference_forward(state, dictionary, face, BOXES), rtol=0, atol=2e-5
        )


def test_bbcu_convert_writes_a_dfdnet_weights_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``bbcu convert --model dfdnet`` gives a weights file that loads as the same network."""
    state = basicsr_state()
    torch.save({"params": state}, tmp_path / "DFDNet.pth")
    assert (
        main(
            [
                "convert",
                str(tmp_path / "DFDNet.pth"),
                "--model",
                "dfdnet",
                "-o",
                str(tmp_path / "d.safetensors"),
            ]
        )
        == 0
    )
    assert "dfdnet" in capsys.readouterr().out
    loaded, direct = bbcu.load(tmp_path / "d.safetensors"), convert_dfdnet_checkpoint(tmp_path / "DFDNet.pth")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), direct.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def write_dictionary_pth(path: Path, dictionary: dict) -> Path:
    torch.save({str(size): parts for size, parts in dictionary.items()}, path)
    return path


def write_dictionary_npy(folder: Path, dictionary: dict) -> Path:
    """The release's folder: one ``<part>_<size>_center.npy`` per part and scale, atoms flattened."""
    folder.mkdir()
    for size, parts in dictionary.items():
        for part, atoms in parts.items():
            np.save(folder / f"{part}_{size}_center.npy", atoms.reshape(len(atoms), -1).numpy())
    return folder


@pytest.mark.parametrize("kind", ["pth", "npy"])
def test_dictionary_files_load_the_atoms(kind: str, tmp_path: Path) -> None:
    dictionary = random_dictionary()
    path = (
        write_dictionary_pth(tmp_path / "dict.pth", dictionary)
        if kind == "pth"
        else write_dictionary_npy(tmp_path / "DictionaryCenter512", dictionary)
    )
    loaded = load_dictionary(path)
    assert loaded.keys() == dictionary.keys()
    for size in SIZES:
        for part in PARTS:
            assert torch.equal(loaded[size][part], dictionary[size][part]), (size, part)


def test_dictionary_npy_with_pickled_objects_is_refused_without_running_them(tmp_path: Path) -> None:
    folder = write_dictionary_npy(tmp_path / "dict", random_dictionary())
    np.save(folder / "nose_64_center.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidFileError, match=r"refusing .*nose_64_center\.npy: not a plain NumPy array"):
        load_dictionary(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d[64].pop("mouth"), "no mouth atoms at 64 px"),
        (
            lambda d: d[128].update(nose=torch.zeros(3, 4 * WIDTH, 13, 13)),
            "nose atoms at 128 px are 3x16x13x13",
        ),
        (lambda d: d[32]["left_eye"].__setitem__((0, 0, 0, 0), float("inf")), "not finite"),
    ],
    ids=["missing-part", "wrong-side", "infinite"],
)
def test_bad_dictionaries_give_one_line_errors(edit, message: str, tmp_path: Path) -> None:
    dictionary = random_dictionary()
    edit(dictionary)
    with pytest.raises(InvalidFileError, match=message) as caught:
        load_dictionary(write_dictionary_pth(tmp_path / "dict.pth", dictionary))
    assert "\n" not in str(caught.value)


def test_dictionary_of_another_width_is_refused(tmp_path: Path) -> None:
    path = write_dictionary_pth(tmp_path / "dict.pth", random_dictionary(width=8))
    with pytest.raises(InvalidFileError, match="a 4-channel DFDNet dictionary"):
        load_dictionary(path, channels=WIDTH)


@pytest.mark.parametrize(
    ("make_state", "message"),
    [
        (lambda: {"conv.weight": torch.zeros(1)}, "is not a DFDNet checkpoint"),
        (
            lambda: {k: v for k, v in in_original_layout(basicsr_state()).items() if k != "mo_64.2.bias"},
            "1 missing: attn_blocks.mouth_64.2.bias",
        ),
        (
            lambda: {**in_original_layout(basicsr_state()), "up9.conv1.1.weight": torch.zeros(1)},
            "unexpected: up9.conv1.1.weight",
        ),
        (
            lambda: {k: v for k, v in basicsr_state().items() if k != "upsample2.convup.1.weight_v"},
            "the spectral norm of upsample2.convup.1.weight_orig lacks",
        ),
        (
            lambda: {**basicsr_state(), "upsample4.4.weight": torch.zeros(3, WIDTH, 5, 5)},
            "shape mismatch: upsample4.4.weight (file 3x4x5x5, model 3x4x3x3)",
        ),
    ],
    ids=["foreign", "missing-key", "unexpected-key", "sn-incomplete", "bad-shape"],
)
def test_bad_checkpoints_give_one_line_errors(make_state, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    torch.save(make_state(), path)
    with pytest.raises(InvalidFileError) as caught:
        convert_dfdnet_checkpoint(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- alignment and paste-back ---------------------------------------------------------------------------

TEMPLATE = np.array([[343.4, 244.3], [293.4, 246.8], [169.0, 244.2], [219.0, 246.8], [256.8, 339.3]])


def similarity(scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def test_similarity_transform_recovers_a_known_one() -> None:
    known = similarity(0.37, 0.6, (41.0, -12.5))
    source = np.c_[TEMPLATE, np.ones(5)] @ known.T
    np.testing.assert_allclose(similarity_transform(TEMPLATE, source), known, atol=1e-9)
    np.testing.assert_allclose(invert_affine(invert_affine(known)), known, atol=1e-9)


def smooth_photo(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width] / 40.0
    return np.stack([np.sin(xs) * 0.4 + 0.5, np.cos(ys) * 0.4 + 0.5, np.sin(xs + ys) * 0.3 + 0.5], -1).astype(
        np.float32
    )


def test_warp_by_an_integer_shift_moves_pixels_exactly() -> None:
    photo = smooth_photo(20, 30)
    moved = warp_affine(photo, similarity(1, 0, (3, 2)), (20, 30))
    np.testing.assert_allclose(moved[2:, 3:], photo[:-2, :-3], atol=1e-6)
    assert (moved[:2] == 0).all() and (moved[:, :3] == 0).all()


@pytest.mark.parametrize(
    ("to_face", "tolerance"),
    [(similarity(1, 0, (-40, -30)), 1e-6), (similarity(1.7, 0.3, (-250, -330)), 1e-3)],
    ids=["shift", "rotate-and-scale"],
)
def test_pasting_back_an_unchanged_face_reproduces_the_photo(to_face: np.ndarray, tolerance: float) -> None:
    """Identity restoration: crop the face, paste the crop back. Inside the mask the photo comes back (up to
    two bilinear resamplings), outside it is untouched, bit for bit."""
    photo = smooth_photo(600, 640)
    face = warp_affine(photo, to_face, (512, 512))
    result = paste_face(photo, face, invert_affine(to_face))
    coverage = warp_affine(np.ones((512, 512, 1), np.float32), invert_affine(to_face), photo.shape[:2])[
        ..., 0
    ]
    np.testing.assert_array_equal(result[coverage == 0], photo[coverage == 0])
    assert np.abs(result - photo).max() < tolerance
    white = paste_face(photo, np.ones_like(face), invert_affine(to_face))  # the mask really pastes
    centre = np.rint(invert_affine(to_face) @ [256, 256, 1]).astype(int)
    np.testing.assert_allclose(white[centre[1], centre[0]], 1, atol=1e-6)
    feathered = (white > photo + 1e-3) & (white < 1 - 1e-3)
    assert feathered.any() and not feathered[coverage == 0].any()  # a soft edge, inside the face


class FakeDetector:
    """dlib's part of the pipeline, replaced: one face at known five points, with known 68 landmarks."""

    def __init__(self, five: np.ndarray) -> None:
        self.five = five

    def five_points(self, photo: np.ndarray) -> list[np.ndarray]:
        return [self.five]

    def landmarks(self, face: np.ndarray) -> np.ndarray:
        assert face.shape == (512, 512, 3)
        return landmarks_68()


def test_whole_photo_pipeline_restores_the_aligned_face_and_pastes_it_back() -> None:
    to_face = similarity(1.7, 0.3, (-250, -330))
    five = np.c_[FFHQ_TEMPLATE_512, np.ones(5)] @ invert_affine(to_face).T  # the template, in the photo
    photo = to_uint8(smooth_photo(600, 640))
    restorer = FaceRestorer(tiny_network())
    restorer.detector = FakeDetector(five)
    result = restorer.restore(photo, Path("photo.png"))
    face, to_photo = align_face(photo, five)
    np.testing.assert_allclose(to_photo, invert_affine(to_face), atol=1e-9)
    restored = restore_face(restorer.network, face, BOXES)
    expected = to_uint8(paste_face(to_float(photo), to_float(restored), to_photo))
    np.testing.assert_array_equal(result, expected)
    assert (result != photo).mean() > 0.1  # the face really changed the photo


def test_dlib_is_only_needed_for_whole_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'bbcu\[faces\]'"):
        FaceDetector()


# --- bbcu restore --task face ----------------------------------------------------------------------------


@pytest.fixture
def official_files(tmp_path: Path) -> dict[str, object]:
    """A random-weight checkpoint (BasicSR layout), its dictionary, a 512x512 face and its landmarks."""
    state, dictionary = basicsr_state(), random_dictionary()
    torch.save({"params": state}, tmp_path / "DFDNet.pth")
    face = np.random.default_rng(4).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    write_image(tmp_path / "face.png", face)
    with torch.no_grad():
        x = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255
        expected = to_uint8(reference_forward(state, dictionary, x, BOXES)[0].permute(1, 2, 0).numpy())
    return {
        "weights": tmp_path / "DFDNet.pth",
        "dictionary": write_dictionary_pth(tmp_path / "dict.pth", dictionary),
        "face": tmp_path / "face.png",
        "landmarks": write_landmarks(tmp_path / "face.png.txt", landmarks_68()),
        "expected": expected.astype(int),
    }


def face_argv(files: dict[str, object], out: Path, *extra: str) -> list[str]:
    return [
        "restore",
        "--task",
        "face",
        "--weights",
        str(files["weights"]),
        "--dictionary",
        str(files["dictionary"]),
        *extra,
        str(files["face"]),
        "-o",
        str(out),
    ]


@pytest.mark.parametrize("how", ["landmarks", "part-boxes", "landmarks-folder"])
def test_restore_face_cli(how: str, official_files: dict[str, object], tmp_path: Path) -> None:
    files = official_files
    extra = {
        "landmarks": ["--landmarks", str(files["landmarks"])],
        "part-boxes": ["--part-boxes", *map(str, BOXES.ravel())],
        "landmarks-folder": ["--landmarks", str(tmp_path)],  # <image file name>.txt, the release's naming
    }[how]
    assert main(face_argv(files, tmp_path / "out", *extra)) == 0
    ours = read_image(tmp_path / "out" / "face.png").astype(int)
    assert ours.shape == (512, 512, 3)
    assert np.abs(ours - files["expected"]).max() <= 1 and (ours == files["expected"]).mean() > 0.99


def test_restore_face_cli_runs_a_converted_weights_file(
    official_files: dict[str, object], tmp_path: Path
) -> None:
    files = official_files
    model = convert_dfdnet_checkpoint(files["weights"])
    save(model, tmp_path / "dfdnet.safetensors")
    argv = face_argv({**files, "weights": tmp_path / "dfdnet.safetensors"}, tmp_path / "out")
    assert main([*argv, "--landmarks", str(files["landmarks"])]) == 0
    ours = read_image(tmp_path / "out" / "face.png").astype(int)
    assert np.abs(ours - files["expected"]).max() <= 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda f, t: ["--landmarks", str(t / "absent.txt")], "landmarks file not found"),
        (
            lambda f, t: ["--landmarks", str(write_landmarks(t / "67.txt", landmarks_68()[:67]))],
            "67 landmark lines, expected 68",
        ),
        (
            lambda f, t: (
                write_image(f["face"], np.zeros((256, 256, 3), np.uint8)),
                ["--part-boxes", *map(str, BOXES.ravel())],
            )[1],
            "is 256x256: with landmarks or part boxes the input must be an aligned 512x512 face",
        ),
        (lambda f, t: ["--part-boxes", *["0"] * 16], "the left_eye box [0, 0, 0, 0] must lie inside"),
        (lambda f, t: [], "restoring faces in whole photos needs dlib"),
    ],
    ids=["missing-landmarks", "67-lines", "wrong-size", "bad-boxes", "photo-without-dlib"],
)
def test_restore_face_cli_bad_inputs(
    setup, message: str, official_files: dict[str, object], tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    argv = face_argv(official_files, tmp_path / "out", *setup(official_files, tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bbcu restore: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_restore_face_needs_the_dictionary(official_files: dict[str, object], tmp_path: Path, capsys) -> None:
    argv = [
        "restore",
        "--task",
        "face",
        "--weights",
        str(official_files["weights"]),
        str(official_files["face"]),
    ]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    assert "component dictionary (--dictionary" in capsys.readouterr().err


def test_face_options_need_the_face_task(official_files: dict[str, object], tmp_path: Path, capsys) -> None:
    argv = ["restore", "--model", "bicubic", "--landmarks", str(official_files["landmarks"])]
    assert main([*argv, str(official_files["face"]), "-o", str(tmp_path / "out")]) == 2
    assert "are for --task face" in capsys.readouterr().err


def test_a_face_model_is_refused_where_an_image_to_image_one_is_expected(
    official_files: dict[str, object], tmp_path: Path, capsys
) -> None:
    weights = tmp_path / "dfdnet.safetensors"
    save(convert_dfdnet_checkpoint(official_files["weights"]), weights)
    assert (
        main(["restore", "--weights", str(weights), str(official_files["face"]), "-o", str(tmp_path / "o")])
        == 2
    )
    assert "dfdnet is a face model: it restores aligned faces" in capsys.readouterr().err
    assert main(["complexity", "dfdnet"]) == 2
    assert "dfdnet is a face model" in capsys.readouterr().err
