"""DFDNet in a models folder of the user's: found with its dictionary, compared by ``bbcu compare --task
face`` and offered by ``bbcu serve`` when faces can be detected in an upload.

The networks are tests/test_dfdnet.py's width-4 random-weight DFDNets (full 512x512 structure); what they
compute is checked against that module's reference forward pass, written from docs/references.md.
"""

from __future__ import annotations

import base64
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.cli.main import main
from bbcu.formats.image_io import read_image, write_image
from bbcu.imaging.pixels import to_float, to_uint8
from bbcu.report.pictures import comparison_panels, compose_grid
from bbcu.run import zoo
from bbcu.run.faces import FFHQ_TEMPLATE_512, paste_face
from bbcu.serve import catalog as catalog_module
from bbcu.serve import pipeline
from bbcu.serve.app import create_app
from bbcu.serve.catalog import Catalog
from bbcu.serve.limits import RequestError
from bbcu.serve.server import running_in_thread
from test_dfdnet import (
    BOXES,
    WIDTH,
    FakeDetector,
    basicsr_state,
    in_original_layout,
    landmarks_68,
    random_dictionary,
    reference_forward,
    write_dictionary_npy,
    write_dictionary_pth,
    write_landmarks,
)
from test_serve_api import decoded, post

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``DFDNet.pth`` (BasicSR layout) with ``DFDNet_dictionary.pth``, ``release.pth`` (original layout)
    with a ``release_dictionary/`` folder of ``.npy`` parts, and ``lonely.pth`` with no dictionary."""
    models = tmp_path / "models"
    models.mkdir()
    torch.save({"params": basicsr_state(seed=0)}, models / "DFDNet.pth")
    write_dictionary_pth(models / "DFDNet_dictionary.pth", random_dictionary(seed=1))
    torch.save(in_original_layout(basicsr_state(seed=2)), models / "release.pth")
    write_dictionary_npy(models / "release_dictionary", random_dictionary(seed=3))
    torch.save({"params": basicsr_state(seed=4)}, models / "lonely.pth")
    return models


def reference_face(face: np.ndarray, state_seed: int, dictionary_seed: int) -> np.ndarray:
    """What the reference DFDNet makes of an aligned uint8 face with ``BOXES``."""
    x = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        restored = reference_forward(
            basicsr_state(seed=state_seed), random_dictionary(seed=dictionary_seed), x, BOXES
        )
    return to_uint8(restored[0].permute(1, 2, 0).numpy())


def a_face() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (512, 512, 3), dtype=np.uint8)


def test_the_folder_lists_face_models_with_their_dictionaries(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        found = {
            m.name: (m.architecture, m.task, m.scale, m.model_kwargs, m.dictionary)
            for m in zoo.folder_models(folder)
        }
    assert found == {
        "DFDNet": ("dfdnet", "face", 1, {"channels": WIDTH}, folder / "DFDNet_dictionary.pth"),
        "release": ("dfdnet", "face", 1, {"channels": WIDTH}, folder / "release_dictionary"),
    }
    warnings = [r.getMessage() for r in caplog.records]  # the dictionary files themselves are not models
    assert warnings == [
        f"skipping {folder / 'lonely.pth'}: a DFDNet checkpoint without its component dictionary (put "
        "lonely_dictionary.pth or a lonely_dictionary/ folder of .npy files beside it)"
    ]


def test_compare_draws_every_face_model_of_the_folder(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    face = a_face()
    write_image(tmp_path / "face.png", face)
    landmarks = write_landmarks(tmp_path / "face.txt", landmarks_68())
    grid = tmp_path / "grid.png"
    argv = ["compare", str(tmp_path / "face.png"), "--task", "face", "--models-dir", str(folder)]
    crop = ["--crop", "240,280,32,32", "--zoom", "2"]  # the nose box and its surroundings
    assert main([*argv, "--landmarks", str(landmarks), *crop, "-o", str(grid)]) == 0
    assert "(DFDNet on torch, release on torch)" in capsys.readouterr().out
    outputs = [("DFDNet", reference_face(face, 0, 1)), ("release", reference_face(face, 2, 3))]
    panels = comparison_panels(face, outputs, None, task="face", scale=1, box=(240, 280, 32, 32), zoom=2)
    ours, expected = read_image(grid).astype(int), compose_grid(panels, None).astype(int)
    assert ours.shape == expected.shape and np.abs(ours - expected).max() <= 1


@pytest.mark.parametrize("name", ["DFDNet", "release"])
def test_restore_finds_a_face_model_in_bbcu_models_by_name(
    name: str, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``restore --task face --model NAME`` runs ``$BBCU_MODELS/NAME.pth`` with the dictionary beside it
    (a ``.pth`` file or a folder of ``.npy`` parts), as ``compare`` and ``serve`` list it."""
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    face = a_face()
    write_image(tmp_path / "face.png", face)
    boxes = ["--part-boxes", *map(str, BOXES.ravel())]
    argv = ["restore", "--task", "face", "--model", name, *boxes, str(tmp_path / "face.png")]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 0
    ours = read_image(tmp_path / "out" / "face.png").astype(int)
    seeds = {"DFDNet": (0, 1), "release": (2, 3)}[name]
    assert np.abs(ours - reference_face(face, *seeds).astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "DFDNet"], "DFDNet is a face model: it restores aligned faces"),
        (
            ["--task", "face", "--model", "lonely"],
            "lonely.pth: a DFDNet checkpoint without its component dictionary",
        ),
    ],
    ids=["without-task-face", "no-dictionary"],
)
def test_restore_refuses_a_folder_face_model_it_cannot_run_in_one_line(
    argv: list[str], message: str, folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    write_image(tmp_path / "face.png", a_face())
    assert main(["restore", *argv, str(tmp_path / "face.png"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--task face compares models on an aligned 512x512 face: give its --landmarks or --part-boxes"),
        (["--part-boxes", *map(str, BOXES.ravel()), "--models", "lonely"], "found: DFDNet, release"),
        (["--part-boxes", *map(str, BOXES.ravel()), "--gt", "face.png"], "neither --gt"),
    ],
    ids=["no-landmarks", "not-a-face-model", "gt"],
)
def test_compare_face_refusals_are_one_line(
    extra: list[str], message: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_image(tmp_path / "face.png", a_face())
    argv = ["compare", str(tmp_path / "face.png"), "--task", "face", "--models-dir", str(folder), *extra]
    assert main([*argv, "-o", str(tmp_path / "grid.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbcu compare: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "grid.png").exists()


def test_serve_offers_and_runs_a_face_model_when_faces_can_be_detected(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the upload is a whole photo; here it is already an aligned face, found where the template says
    monkeypatch.setattr(catalog_module, "FaceDetector", lambda: FakeDetector(FFHQ_TEMPLATE_512))
    catalog = Catalog.discover(folder)
    faces = {c.name: c for c in catalog.choices if c.task == "face"}
    assert sorted(faces) == ["DFDNet", "release"]
    choice = faces["DFDNet"]
    assert (choice.path, choice.dictionary, choice.engines) == (
        folder / "DFDNet.pth",
        folder / "DFDNet_dictionary.pth",
        ("torch",),
    )
    state = basicsr_state(seed=0)  # trained parameters: every weight and bias, spectral norms folded
    params = sum(v.numel() for k, v in state.items() if k.endswith(("weight", "weight_orig", "bias")))
    assert choice.describe()["params_k"] == round(params / 1e3, 2)
    assert choice.describe()["ops_g_320x180"] is None
    with pytest.raises(RequestError, match="unknown model"):  # a client names entries, never files
        catalog.choose(str(folder / "DFDNet.pth"), "face", 1, "torch")
    with pytest.raises(RequestError, match="cannot run on the packed engine"):
        catalog.choose("DFDNet", "face", 1, "packed")

    face = a_face()
    png = base64.b64decode(pipeline.png_base64(face))
    with running_in_thread(create_app(catalog=catalog)) as url:
        status, answer, _ = post(url, png, model="DFDNet", task="face", scale=1)
        refused = post(url, b"x", model="DFDNet", task="face", scale=1, degrade="true")
    assert status == 200, answer
    assert (answer["input_size"], answer["output_size"], answer["ops_g"]) == ([512, 512], [512, 512], None)
    expected = to_uint8(paste_face(to_float(face), to_float(reference_face(face, 0, 1)), np.eye(2, 3)))
    ours = decoded(answer, "output_png").astype(int)
    assert np.abs(ours - expected).max() <= 1 and (ours == expected).mean() > 0.99
    assert (ours != face).mean() > 0.5  # the face was restored, not passed through
    assert refused[0] == 422 and "no degradation protocol" in refused[1]["error"]


def test_serve_leaves_face_models_out_without_the_faces_extra(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger=catalog_module.__name__):
        catalog = Catalog.discover(folder)
    assert [c.name for c in catalog.choices if c.task == "face"] == []
    said = [r.getMessage() for r in caplog.records if r.name == catalog_module.__name__]
    assert said == [
        "not offering the face model(s) DFDNet, release: the page finds the faces of an upload with dlib "
        "and its face models, which are not installed (pip install 'bbcu[faces]')"
    ]
    with pytest.raises(RequestError, match="unknown model 'DFDNet'"):
        catalog.choose("DFDNet", "face", 1, "torch")
