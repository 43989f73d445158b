"""The packed file format: bit layout, what export stores, size, a reader without PyTorch, and refusal of
malformed files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

import bbcu
from bbcu.cli.main import main
from bbcu.core.errors import InvalidArgumentError, InvalidFileError, OutputError
from bbcu.engine import kernels
from bbcu.engine.export import export_model
from bbcu.formats import weights
from bbcu.formats.packed import SUPPORTED_ARCHITECTURES, load_packed, pack_signs, unpack_signs
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
    with pytest.raises(InvalidArgumentError, match="supports bbcu-l, bbcu-m, dncnn-bbcu, dncnn3-bbcu"):
        export_model(bbcu.create_model(name, **kwargs), tmp_path / "x.bbcu")
    assert list(tmp_path.iterdir()) == []


def test_export_into_a_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write .*x\.bbcu"):
        export_model(randomized("dncnn-bbcu", depth=3), tmp_path / "absent" / "x.bbcu")


def test_a_model_with_a_foreign_unit_is_refused(tmp_path: Path) -> None:
    model = bbcu.create_model("dncnn-bbcu", unit="v2", depth=3)
    with pytest.raises(InvalidArgumentError, match=r"model\.2 \(BBCUV2\)"):
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


def _rename_op(old: str, new: str) -> callable:
    return _graph_edit(lambda g: next(op for op in g if op.get("name") == old).update(name=new))


def _set_op_attribute(kind: str, **attributes: object) -> callable:
    return _graph_edit(lambda g: next(op for op in g if op["op"] == kind).update(attributes))


# name -> (edit, message); edits apply to the dncnn-bbcu file unless the name starts with "sr ", in which
# case to the bbcu-m x4 one.
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
    "missing version": (lambda m, t: m.pop("bbcu_version"), "malformed metadata"),
    "zero channels": (lambda m, t: m.update(in_channels="0"), "channel counts must be positive"),
    "k not finite": (lambda m, t: m.update(k="nan"), r"k=nan"),
    "scale vs graph": (lambda m, t: m.update(scale="2"), "graph upscales by 1, metadata scale says 2"),
    "kwargs vs k": (
        lambda m, t: m.update(model_kwargs=json.dumps({"depth": 5, "k": 64})),
        "model_kwargs k=64 contradicts the header's k=130.0",
    ),
    "skip width": (
        _graph_edit(lambda g: g.insert(-3, {"op": "subtract_from_skip"})),
        "combines the 3-channel input resized x1 with 40-channel features upscaled x1",
    ),
    "no input scale": (_graph_edit(lambda g: g.pop(0)), "must begin with its only input_scale"),
    "input scale twice": (
        _graph_edit(lambda g: g.insert(2, {"op": "input_scale"})),
        "must begin with its only input_scale",
    ),
    "output scale early": (
        _graph_edit(lambda g: g.insert(-1, g.pop())),
        "must end with its only output_scale",
    ),
    "repeated name": (_rename_op("model.4", "model.2"), "graph op names repeated: model.2"),
    "sr bilinear skip size": (
        _set_op_attribute("add_bilinear_skip", scale=2),
        "combines the 3-channel input resized x2 with 3-channel features upscaled x4",
    ),
    "sr upsampler scale": (
        _set_op_attribute("bbcu_upsample", scale=3),
        "resized x4 with 3-channel features upscaled x6",
    ),
    "sr kwargs vs scale": (
        lambda m, t: m.update(model_kwargs=json.dumps({"scale": 2})),
        "model_kwargs scale=2 contradicts the header's scale=4",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_refused_with_one_line(case: str, exported: dict, tmp_path: Path) -> None:
    edit, message = MALFORMED[case]
    source = exported["bbcu-m" if case.startswith("sr ") else "dncnn-bbcu"][1]
    path = _rewrite(source, tmp_path / "bad.bbcu", edit)
    with pytest.raises(InvalidFileError, match=message) as info:
        load_packed(path)
    assert "\n" not in str(info.value)


def test_the_malformed_cases_start_from_a_valid_file(exported: dict, tmp_path: Path) -> None:
    for source in ("dncnn-bbcu", "bbcu-m"):
        path = _rewrite(exported[source][1], tmp_path / f"{source}.bbcu", lambda m, t: None)
        assert load_packed(path).architecture == source


# Reads a packed file with the format module alone, writes it back with the format's encoder, and says
# which heavy modules that pulled in.
READ_WITHOUT_TORCH = """
import json, sys
from bbcu.formats import packed
network = packed.load_packed(sys.argv[1])
with open(sys.argv[2], "wb") as stream:
    stream.write(packed.encode(network))
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("bbcu.engine"))
print(json.dumps({"ops": [op["op"] for op in network.graph], "heavy": heavy}))
"""


def test_the_format_reads_and_writes_without_torch_or_the_kernels(exported: dict, tmp_path: Path) -> None:
    """A C runtime or another tool gets the whole format (reader, validator, writer) from numpy and
    safetensors: the check runs in a fresh interpreter, where nothing else has imported PyTorch."""
    source, copy = exported["bbcu-m"][1], tmp_path / "copy.bbcu"
    result = subprocess.run(
        [sys.executable, "-c", READ_WITHOUT_TORCH, str(source), str(copy)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["heavy"] == []  # neither torch nor bbcu.engine, whose _bitops are the compiled kernels
    assert report["ops"] == [op["op"] for op in load_packed(source).graph]
    (metadata, tensors), (metadata_copy, tensors_copy) = read_file(source), read_file(copy)
    assert metadata_copy == metadata
    assert tensors_copy.keys() == tensors.keys()
    for name, array in tensors.items():
        assert tensors_copy[name].dtype == array.dtype and np.array_equal(tensors_copy[name], array)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"not a safetensors file at all", None])
def test_unreadable_files_are_refused(content: bytes | None, exported: dict, tmp_path: Path) -> None:
    path = tmp_path / "broken.bbcu"
    if content is None:  # a real file cut short
        path.write_bytes(exported["dncnn-bbcu"][1].read_bytes()[:-100])
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidFileError, match=r"broken\.bbcu") as info:
        load_packed(path)
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidFileError, match="no such packed model"):
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
