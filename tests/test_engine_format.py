"""The packed file format: bit layout, what export stores, size, and refusal of malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

import bbcu
from bbcu.cli.main import main
from bbcu.core.errors import UserError
from bbcu.engine import kernels
from bbcu.formats import weights
from bbcu.formats.packed import (
    SUPPORTED_ARCHITECTURES,
    export_model,
    load_packed,
    pack_signs,
    unpack_signs,
)
from helpers import randomized

SMALL = {  # few units and odd widths keep these tests quick; the runtime tests cover full sizes
    "bbcu-l": {"scale": 3, "channels": 40, "num_units": 2},
    "bbcu-m": {"scale": 4, "channels": 72, "num_units": 2},
    "dncnn-bbcu": {"channels": 40, "depth": 5},
    "dncnn3-bbcu": {"channels": 72, "depth": 4},
}


def read_file(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="numpy") as handle:
        return handle.metadata(), {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    folder = tmp_path_factory.mktemp("packed")
    result = {}
    for name, kwargs in SMALL.items():
        model = randomized(name, **kwargs)
        result[name] = (model, export_model(model, folder / f"{name}.bbcu"))
    return result


def test_bit_layout_matches_a_bit_by_bit_definition() -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal((3, 130)).astype(np.float32)
    values[0, 5] = 0.0  # sign(0) = +1 -> bit set
    words = pack_signs(values)
    assert words.dtype == np.uint64 and words.shape == (3, 3)
    for row in range(3):
        for c in range(192):
            bit = (int(words[row, c // 64]) >> (c % 64)) & 1
            assert bit == (c < 130 and values[row, c] >= 0)
    assert np.array_equal(unpack_signs(words, 130), np.where(values >= 0, 1.0, -1.0))


def test_weight_bits_match_the_kernels_packing() -> None:
    w = np.random.default_rng(2).standard_normal((5, 72, 3, 3)).astype(np.float32)
    assert np.array_equal(pack_signs(w.transpose(0, 2, 3, 1)), kernels.pack_weights(w))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_export_stores_metadata_and_tensors_of_the_model(name: str, exported: dict) -> None:
    model, path = exported[name]
    metadata, tensors = read_file(path)
    assert metadata["format"] == "bbcu-packed" and metadata["format_version"] == "1"
    assert metadata["architecture"] == name
    assert json.loads(metadata["model_kwargs"]) == SMALL[name]
    assert int(metadata["scale"]) == model.scale and float(metadata["k"]) == model.k
    assert int(metadata["in_channels"]) == model.in_channels == int(metadata["out_channels"])
    state = {key: value.numpy() for key, value in model.state_dict().items()}
    network = load_packed(path)
    for op in network.graph:
        layer = op.get("name")
        if op["op"] == "conv":
            assert np.array_equal(tensors[f"{layer}.weight"], state[f"{layer}.weight"])
        elif op["op"] in ("bbcu_unit", "bbcu_upsample"):
            w = state[f"{layer}.conv.weight"]
            signs = np.where(w >= 0, 1.0, -1.0).transpose(0, 2, 3, 1)
            assert np.array_equal(unpack_signs(tensors[f"{layer}.weight_bits"], w.shape[1]), signs)
            np.testing.assert_allclose(tensors[f"{layer}.alpha"], np.abs(w).mean(axis=(1, 2, 3)), rtol=1e-6)
            assert np.array_equal(tensors[f"{layer}.shift"], state[f"{layer}.shift.bias"].ravel())
            for field in ("gamma", "beta", "zeta"):
                assert np.array_equal(tensors[f"{layer}.{field}"], state[f"{layer}.act.{field}"].ravel())
        if op.get("bias"):
            conv = "" if op["op"] == "conv" else ".conv"
            assert np.array_equal(tensors[f"{layer}.bias"], state[f"{layer}{conv}.bias"])
    convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    in_graph = {op["name"] + ("" if op["op"] == "conv" else ".conv") for op in network.graph if "name" in op}
    assert convs == in_graph  # every convolution of the model, binary or not, is in the file
    assert network.architecture == name and network.graph[0] == {"op": "input_scale"}


def test_graph_of_bbcu_m_x4_reads_as_the_network(exported: dict) -> None:
    kinds = [op["op"] for op in load_packed(exported["bbcu-m"][1]).graph]
    assert kinds == [
        "input_scale", "conv", "leaky_relu", "bbcu_unit", "bbcu_unit", "bbcu_upsample", "bbcu_upsample",
        "bbcu_unit", "leaky_relu", "conv", "add_bilinear_skip", "output_scale",
    ]  # fmt: skip


def test_bbcu_m_x4_file_is_20x_smaller_than_srresnet_x4_weights(tmp_path: Path) -> None:
    weights.save(bbcu.create_model("srresnet", scale=4), tmp_path / "srresnet.safetensors")
    export_model(bbcu.create_model("bbcu-m", scale=4), tmp_path / "bbcu-m.bbcu")
    ratio = (tmp_path / "srresnet.safetensors").stat().st_size / (tmp_path / "bbcu-m.bbcu").stat().st_size
    assert ratio >= 20


@pytest.mark.parametrize(
    ("name", "kwargs"), [("srresnet", {"scale": 2}), ("bbcu-v1", {"scale": 2}), ("dncnn", {})]
)
def test_unsupported_models_are_refused_naming_the_supported_ones(
    name: str, kwargs: dict, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="supports bbcu-l, bbcu-m, dncnn-bbcu, dncnn3-bbcu"):
        export_model(bbcu.create_model(name, **kwargs), tmp_path / "x.bbcu")
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_a_foreign_unit_is_refused(tmp_path: Path) -> None:
    model = bbcu.create_model("dncnn-bbcu", unit="v2", depth=3)
    with pytest.raises(UserError, match=r"model\.2 \(BBCUV2\)"):
        export_model(model, tmp_path / "x.bbcu")
    assert list(tmp_path.iterdir()) == []


def _rewrite(source: Path, target: Path, edit: callable) -> Path:
    metadata, tensors = read_file(source)
    edit(metadata, tensors)
    save_file(tensors, str(target), metadata=metadata)
    return target


def _set_padding_bit(metadata: dict, tensors: dict) -> None:
    tensors["model.2.weight_bits"] = tensors["model.2.weight_bits"] | np.uint64(1 << 63)


def _graph_edit(change: callable) -> callable:
    def edit(metadata: dict, tensors: dict) -> None:
        graph = json.loads(metadata["graph"])
        change(graph)
        metadata["graph"] = json.dumps(graph)

    return edit


MALFORMED = {
    "format": (lambda m, t: m.update(format="bbcu-weights"), "not a packed bbcu model"),
    "version": (lambda m, t: m.update(format_version="9"), "version '9' is not supported"),
    "architecture": (
        lambda m, t: m.update(architecture="srresnet"),
        "architecture 'srresnet' is not supported",
    ),
    "sign convention": (lambda m, t: m.update(sign_convention="sign(0)=0"), "unknown sign_convention"),
    "graph json": (lambda m, t: m.update(graph="[{"), "malformed metadata"),
    "missing key": (lambda m, t: m.pop("k"), "malformed metadata"),
    "missing tensor": (lambda m, t: t.pop("model.3.alpha"), r"missing tensors model\.3\.alpha"),
    "extra tensor": (lambda m, t: t.update(spare=np.zeros(3, np.float32)), "unexpected tensors spare"),
    "dtype": (lambda m, t: t.update({"model.2.shift": t["model.2.shift"].astype(np.float64)}), "float64"),
    "shape": (lambda m, t: t.update({"model.0.weight": t["model.0.weight"][:, :, :2]}), r"model\.0\.weight"),
    "bit shape": (
        lambda m, t: t.update({"model.2.weight_bits": t["model.2.weight_bits"][:-1]}),
        "weight_bits",
    ),
    "padding bits": (_set_padding_bit, "bits set beyond its channel count"),
    "unknown op": (_graph_edit(lambda g: g.insert(2, {"op": "dropout"})), "unknown operation 'dropout'"),
    "bad attribute": (_graph_edit(lambda g: g[1].update(bias="yes")), "bias='yes'"),
    "channel chain": (
        _graph_edit(lambda g: g[-3].update(in_channels=39)),
        "expects 39 channels but receives 40",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_refused_with_one_line(case: str, exported: dict, tmp_path: Path) -> None:
    edit, message = MALFORMED[case]
    path = _rewrite(exported["dncnn-bbcu"][1], tmp_path / "bad.bbcu", edit)
    with pytest.raises(UserError, match=message) as info:
        load_packed(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"not a safetensors file at all", None])
def test_unreadable_files_are_refused(content: bytes | None, exported: dict, tmp_path: Path) -> None:
    path = tmp_path / "broken.bbcu"
    if content is None:  # a real file cut short
        path.write_bytes(exported["dncnn-bbcu"][1].read_bytes()[:-100])
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=r"broken\.bbcu") as info:
        load_packed(path)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such packed model"):
        load_packed(tmp_path / "absent.bbcu")


def test_cli_export_reports_sizes_and_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = randomized("dncnn3-bbcu", **SMALL["dncnn3-bbcu"])
    weights.save(model, tmp_path / "m.safetensors")
    assert main(["export", str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "m.bbcu")]) == 0
    out = capsys.readouterr().out
    size_in, size_out = (tmp_path / "m.safetensors").stat().st_size, (tmp_path / "m.bbcu").stat().st_size
    assert f"{size_in:,} bytes" in out and f"{size_out:,} bytes" in out
    assert f"({size_in / size_out:.1f}x smaller)" in out
    assert load_packed(tmp_path / "m.bbcu").architecture == "dncnn3-bbcu"


def test_cli_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights.save(bbcu.create_model("dncnn", depth=3), tmp_path / "fp.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    for argv in (
        ["export", str(tmp_path / "fp.safetensors")],
        ["export", str(tmp_path / "junk.safetensors")],
        ["export", str(tmp_path / "fp.safetensors"), "-o", str(tmp_path / "no" / "x.bbcu")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("bbcu export: error:") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp.safetensors", "junk.safetensors"]


def test_supported_architectures_are_registered_binary_models() -> None:
    from bbcu.archs import model_entry

    assert all(model_entry(name).binary for name in SUPPORTED_ARCHITECTURES)
