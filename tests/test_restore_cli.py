"""``bbcu restore`` on real folders: good images written, bad ones reported and skipped, no partial files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.archs import create_model
from bbcu.cli.main import main
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image, write_image
from bbcu.formats.weights import save
from bbcu.imaging.imresize import imresize
from bbcu.run.images import restore

GOOD = ("babyx4.png", "birdx4.png")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Two real images, a truncated PNG, a text file named .png, an empty .png, and a non-image extension."""
    folder = tmp_path / "in"
    folder.mkdir()
    source = data_root() / "Set5" / "LR_bicubic" / "X4"
    for name in GOOD:
        write_image(folder / name, read_image(source / name)[:24, :20])
    (folder / "truncated.png").write_bytes((folder / GOOD[0]).read_bytes()[:300])
    (folder / "text.png").write_text("not an image\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("folders only contribute files with image extensions\n")
    return folder


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["restore", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def skipped_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("bbcu restore: skipped")]


def test_folder_with_bad_files(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, str(inputs), "-o", str(out), "--model", "bicubic", "--scale", "2")
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD)  # nothing partial, no temp files
    for name in GOOD:
        np.testing.assert_array_equal(read_image(out / name), imresize(read_image(inputs / name), 2))
    reported = skipped_lines(stderr)
    assert len(reported) == 3
    for bad in ("truncated.png", "text.png", "empty.png"):
        assert sum(bad in line for line in reported) == 1
    assert "restored 2, failed 3" in stdout


def test_files_globs_suffix_and_extension(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        capsys,
        str(inputs / GOOD[0]),
        str(inputs / "bird*.png"),
        "-o",
        str(out),
        "--model",
        "bicubic",
        "--scale",
        "3",
        "--suffix",
        "_x3",
        "--ext",
        "bmp",
    )
    assert code == 0 and "restored 2, failed 0" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["babyx4_x3.bmp", "birdx4_x3.bmp"]
    assert read_image(out / "babyx4_x3.bmp").shape == (72, 60, 3)


def test_unmatched_pattern_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(
        capsys, str(tmp_path / "nothing*.png"), "-o", str(tmp_path / "out"), "--model", "bicubic"
    )
    assert code == 1 and "restored 0, failed 1" in stdout
    assert len(skipped_lines(stderr)) == 1


def test_rgba_keeps_alpha_and_jpeg_refuses_it_without_a_partial_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb = read_image(data_root() / "Set5" / "LR_bicubic" / "X4" / "headx4.png")[:16, :16]
    alpha = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    write_image(tmp_path / "logo.png", np.dstack([rgb, alpha]))
    code, _, _ = run_cli(
        capsys, str(tmp_path / "logo.png"), "-o", str(tmp_path / "png"), "--model", "bicubic", "--scale", "2"
    )
    assert code == 0
    out = read_image(tmp_path / "png" / "logo.png", keep_alpha=True)
    np.testing.assert_array_equal(out[:, :, 3], imresize(alpha, 2))
    code, _, stderr = run_cli(
        capsys, str(tmp_path / "logo.png"), "-o", str(tmp_path / "jpg"), "--model", "bicubic", "--ext", "jpg"
    )
    assert code == 1 and "no alpha" in stderr
    assert not (tmp_path / "jpg").exists() or list((tmp_path / "jpg").iterdir()) == []


def test_never_overwrites_an_input(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (inputs / GOOD[0]).read_bytes()
    code, _, stderr = run_cli(capsys, str(inputs / GOOD[0]), "-o", str(inputs), "--model", "bicubic")
    assert code == 1 and "would overwrite an input" in stderr
    assert (inputs / GOOD[0]).read_bytes() == before


@pytest.mark.slow
def test_weights_file_matches_the_api(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = create_model("dncnn-bbcu", channels=16, depth=4)
    save(model, tmp_path / "denoiser.safetensors")
    code, _, _ = run_cli(
        capsys,
        str(inputs / GOOD[1]),
        "-o",
        str(tmp_path / "out"),
        "--weights",
        str(tmp_path / "denoiser.safetensors"),
        "--task",
        "denoise",
        "--tile",
        "8",
    )
    assert code == 0
    expected = restore(read_image(inputs / GOOD[1]), model=model)
    np.testing.assert_array_equal(read_image(tmp_path / "out" / GOOD[1]), expected)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-model"], "unknown model"),
        (["--model", "bicubic", "--tile", "0"], "--tile must be positive"),
        (["--model", "bicubic", "--task", "denoise"], "not a denoise model"),
        (["--scale", "4"], "not shipped"),
    ],
)
def test_command_errors_are_one_line_and_touch_nothing(
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("BBCU_MODELS", str(tmp_path / "no-models"))
    code, _, stderr = run_cli(capsys, str(inputs), "-o", str(tmp_path / "out"), *argv)
    assert code == 2
    assert stderr.count("\n") == 1 and message in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("below", ["", "sub"], ids=["is-a-file", "under-a-file"])
def test_an_output_folder_that_cannot_be_is_refused_before_any_work(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], below: str
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder should go\n")
    code, out, err = run_cli(capsys, str(inputs), "-o", str(blocker / below), "--model", "bicubic")
    assert code == 2 and out == ""
    assert (
        err
        == f"bbcu restore: error: cannot use {blocker / below} as the output folder: {blocker} is a file\n"
    )


def test_one_file_named_several_ways_is_restored_and_counted_once(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: a relative name, its absolute path, its folder, a pattern and a link are one file."""
    monkeypatch.chdir(inputs)
    (inputs / "link.png").symlink_to(inputs / "truncated.png")
    names = ["truncated.png", "./truncated.png", str(inputs / "truncated.png"), "link.png", "trunc*.png"]
    code, stdout, stderr = run_cli(
        capsys, *names, str(inputs), "-o", str(tmp_path / "out"), "--model", "bicubic"
    )
    assert code == 1
    reported = skipped_lines(stderr)
    assert len(reported) == 3  # truncated (under its first name), text and empty, once each
    assert sum("truncated.png" in line for line in reported) == 1
    assert "restored 2, failed 3" in stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(GOOD)


def test_file_names_with_control_characters_keep_reports_on_one_line(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: a newline or a terminal escape in a file name is escaped, never printed raw."""
    bad = inputs / "evil\nbbcu restore: skipped forged\x1b[2K.png"
    bad.write_bytes(b"not an image")
    code, stdout, stderr = run_cli(
        capsys, str(bad), str(inputs / GOOD[0]), "-o", str(tmp_path / "out"), "--model", "bicubic"
    )
    assert code == 1 and "restored 1, failed 1" in stdout
    assert "\x1b" not in stderr
    reported = skipped_lines(stderr)
    assert len(reported) == 1 and "evil\\nbbcu restore: skipped forged\\x1b[2K.png" in reported[0]
