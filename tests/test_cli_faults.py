"""``gapcam`` under a hostile but realistic user (issue 26): odd files, odd options, set-up errors
said before the model loads (rc 2, naming the file or option), per-input problems in the summary."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _cli import as_before_the_store, forget, image, predictor, records, results
from napari_gapcam.cli import main

SIZE = "32"
predict = predictor(SIZE)


def test_an_empty_image_is_a_value_error_in_the_engine(tiny_model):
    """Issue 26, item 9: a 0×0 image raised ZeroDivisionError (it used to be a ValueError)."""
    for shape in ((0, 0), (0, 0, 3), (5, 0)):
        with pytest.raises(ValueError, match=r"The image is empty \(shape"):
            tiny_model.run(np.zeros(shape, np.uint8), input_size=32)
    with pytest.raises(ValueError, match="empty"):
        tiny_model.run_batch([np.zeros((0, 0), np.uint8)], input_size=32)


def test_an_empty_tiff_is_a_line_of_the_summary(tmp_path, weights, capsys):
    """A 0×0 TIFF among the inputs: its own line, the others done, rc 1."""
    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "a.png", image(0))
    with pytest.warns(UserWarning):  # tifffile: a zero-size array is a nonconformant TIFF
        tifffile.imwrite(folder / "empty.tif", np.zeros((0, 0), np.uint8))
    assert predict(folder, tmp_path / "out", weights) == 1
    err = capsys.readouterr().err
    assert "skipped " + str(folder / "empty.tif") + ": empty image (0, 0): it has no pixels" in err
    assert "1 done, 0 already done, 1 failed" in err
    assert [r["file"] for r in results(tmp_path / "out")] == [str(folder / "a.png")]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    if not folder.exists():
        folder.mkdir()
        iio.imwrite(folder / "a.png", image(0))
    return folder


def _refused(capsys, code: int, *words: str) -> str:
    """rc 2, the words in the error line, and no model loaded (torch never ran a network)."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error" in err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: the errors below come before it."""
    from napari_gapcam.cli import infer

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(infer, "get_model", load)


@pytest.mark.parametrize("case", ["empty", "under-a-file", "read-only", "full-disk"])
def test_an_out_that_cannot_be_written_is_refused(tmp_path, weights, capsys, monkeypatch, case,
                                                  no_model):  # fmt: skip
    folder = _folder(tmp_path)
    (tmp_path / "file").write_text("x")
    out = {"empty": "", "under-a-file": tmp_path / "file" / "out"}.get(case, tmp_path / "ro" / "o")
    words = {"empty": ["--out is empty"], "under-a-file": [str(tmp_path / "file"), "is a file"],
             "read-only": [str(tmp_path / "ro"), "not writable"],
             "full-disk": ["0 bytes free"]}[case]  # fmt: skip
    (tmp_path / "ro").mkdir()
    if case == "read-only":
        os.chmod(tmp_path / "ro", 0o555)
        if os.access(tmp_path / "ro", os.W_OK):  # root writes anyway: the OS says no instead
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, m, **k: Path(p) != tmp_path / "ro" and
                                real(p, m, **k))  # fmt: skip
    if case == "full-disk":
        from napari_gapcam.cli import setup_checks

        monkeypatch.setattr(setup_checks.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(
            10**9, 10**9, 0))  # fmt: skip
    try:
        _refused(capsys, predict(folder, out, weights), *words)
    finally:
        os.chmod(tmp_path / "ro", 0o755)
    assert not list((tmp_path / "ro").iterdir()) and not Path("results.jsonl").exists()


def test_a_scheduler_address_that_is_none_is_refused(tmp_path, weights, capsys, no_model):
    pytest.importorskip("distributed")
    code = predict(_folder(tmp_path), tmp_path / "out", weights, "--scheduler", "nonsense://x")
    _refused(capsys, code, "--scheduler nonsense://x is not a dask scheduler address",
             "unknown address scheme 'nonsense'")  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("boxes.csv", b"file,y0,x0,y1,x1\na.png,0,0,inf,5\n", "line 2: a box is four finite"),
        ("boxes.csv", b"\x89PNG\r\n\x1a\n\xff", "boxes.csv is not UTF-8 text (byte 0x89"),
        ("boxes.csv", b"file,y0,x0,y1,x1\na.png,0,0\x00,4,5\n", "holds a NUL byte at offset 26"),
        ("boxes.json", b"[" * 100_000 + b"]" * 100_000, "boxes.json: JSON nested too deeply"),
        ("boxes.json", b'{"a.png": {"y0": 0, "x0": 0, "y1": 4, "x1": 4}}',
         "boxes.json a.png: expected [[y0, x0, y1, x1], …] or {\"boxes\""),
        ("boxes.json", b'{"a.png": [[0, 0, 1e999, 4]]}', "a box is four finite numbers"),
        ("coco.json", json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [
            {"image_id": 1, "bbox": [0, 0, 4, 4], "category_id": 1}]}).encode(),
         "coco.json annotation 0: category_id 1 is not among the file's categories (none given)"),
    ],
)  # fmt: skip
def test_a_bad_box_file_is_refused(tmp_path, weights, capsys, name, content, words, no_model):
    (tmp_path / name).write_bytes(content)
    code = main(["evaluate", str(_folder(tmp_path)), "--true-boxes", str(tmp_path / name),
                 "--out", str(tmp_path / "report.json"), "--weights", str(weights),
                 "--model", "resnet18"])  # fmt: skip
    _refused(capsys, code, "--true-boxes", words)
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("value", ["null", '"0.3"', "1e308", "NaN", "true", "-0.1"])
@pytest.mark.parametrize("whole", [False, True])
def test_a_bad_threshold_beside_the_weights_is_refused(tmp_path, tiny_state, capsys, value, whole,
                                                       no_model):  # fmt: skip
    import torch

    checkpoint = tmp_path / "model.pt"
    torch.save(tiny_state, checkpoint)
    sidecar = tmp_path / "model.pt.gapcam.json"
    sidecar.write_text(value if whole else f'{{"box_threshold": {value}}}')
    if whole and value == "NaN":
        sidecar.write_text("[1, 2]")  # a JSON value that is no object
    code = predict(_folder(tmp_path), tmp_path / "out", checkpoint)
    shown = {"NaN": "[1, 2]" if whole else "NaN", "1e308": "1e+308"}.get(value, value)
    what = "not a JSON object" if whole else "box_threshold is"
    _refused(capsys, code, f"--weights {checkpoint}", str(sidecar), what, shown.replace('"', ""))
    assert not (tmp_path / "out").exists()


def test_the_engine_refuses_a_bad_sidecar_too(tmp_path, tiny_state):
    """The loader reads the same check: ``true`` is never τ = 1.0."""
    import torch

    from napari_gapcam import load_model
    from napari_gapcam.models.errors import WeightsError

    torch.save(tiny_state, tmp_path / "m.pt")
    (tmp_path / "m.pt.gapcam.json").write_text('{"box_threshold": true}')
    with pytest.raises(WeightsError, match=r"m\.pt\.gapcam\.json: box_threshold is true"):
        load_model("resnet18", weights=tmp_path / "m.pt", device="cpu")
    (tmp_path / "m.pt.gapcam.json").write_text('{"box_threshold": 0.35}')
    assert load_model("resnet18", weights=tmp_path / "m.pt", device="cpu").box_threshold == 0.35


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("model.txt", b"\x00\x01\x02\x03", "model.txt holds control bytes (0x00 at offset 0)"),
        ("model.txt", b"a\nb\na\n", "model.txt names 1 class(es) more than once ('a')"),
        ("config.json", b'{"label_names": ["a", "a", "b"]}', "config.json names 1 class(es)"),
    ],
)
def test_bad_class_names_beside_the_weights_are_refused(tmp_path, tiny_state, capsys, name,
                                                         content, words, no_model):  # fmt: skip
    import torch

    torch.save(tiny_state, tmp_path / "model.pt")
    (tmp_path / name).write_bytes(content)
    code = predict(_folder(tmp_path), tmp_path / "out", tmp_path / "model.pt")
    _refused(capsys, code, f"--weights {tmp_path / 'model.pt'}", words)
    (tmp_path / name).unlink()
    if name == "config.json":  # a Hugging Face config is read beside weights only
        return
    (tmp_path / "names.txt").write_bytes(content)  # the same file given as --class-names
    code = predict(_folder(tmp_path), tmp_path / "out", tmp_path / "model.pt", "--class-names",
                   tmp_path / "names.txt")  # fmt: skip
    _refused(capsys, code, "--class-names", words.replace(name, "names.txt"))


def test_duplicate_names_inside_a_checkpoint_are_refused(tmp_path, tiny_state, capsys):
    import torch

    torch.save({"state_dict": tiny_state, "class_names": ["a", "b", "a"]}, tmp_path / "m.pt")
    code = predict(_folder(tmp_path), tmp_path / "out", tmp_path / "m.pt")
    _refused(capsys, code, "m.pt names 1 class(es) more than once ('a')")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", [["--tile-size", "64"], []])
def test_an_overlap_as_large_as_a_tile_is_refused(tmp_path, weights, capsys, given):
    pytest.importorskip("ome_zarr")
    code = predict(_folder(tmp_path), tmp_path / "out", weights, "--tiles", *given,
                   "--overlap", "64" if given else "32")  # fmt: skip
    _refused(capsys, code, "--overlap", "is not less than the tile size")
    assert not (tmp_path / "out").exists()


def test_links_and_fifos_in_a_folder_are_lines_of_the_summary(tmp_path, weights, capsys):
    folder = _folder(tmp_path)
    os.symlink(folder / "loop.png", folder / "loop.png")
    os.symlink(tmp_path / "gone.png", folder / "dangling.png")
    os.mkfifo(folder / "pipe.png")
    assert predict(folder, tmp_path / "out", weights) == 1
    err = capsys.readouterr().err
    assert f"skipped {folder / 'loop.png'}: a symbolic link loop" in err
    assert f"skipped {folder / 'dangling.png'}: a broken symbolic link (to {tmp_path}" in err
    assert f"skipped {folder / 'pipe.png'}: a FIFO (named pipe)" in err
    assert "1 done, 0 already done, 3 failed" in err


def test_overwrite_does_not_call_unchanged_inputs_changed(tmp_path, weights, capsys):
    folder = _folder(tmp_path)
    assert predict(folder, tmp_path / "out", weights) == 0
    capsys.readouterr()
    assert predict(folder, tmp_path / "out", weights, "--overwrite") == 0
    err = capsys.readouterr().err
    assert "changed" not in err.replace("unchanged", "")
    assert "--overwrite: computing 1 unchanged input(s) again" in err and "1 done" in err


def _digests(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("target", ["input", "boxes", "other", "report"])
def test_evaluate_replaces_only_its_own_report(tmp_path, weights, capsys, target):
    """Item 3: --out never names an input, the box file, or any file it did not write."""
    folder = _folder(tmp_path)
    (tmp_path / "boxes.csv").write_text("file,y0,x0,y1,x1\na.png,4,4,30,40\n")
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    out = {"input": folder / "a.png", "boxes": tmp_path / "boxes.csv",
           "other": tmp_path / "notes.json", "report": tmp_path / "report.json"}  # fmt: skip
    out = out[target]
    args = ["evaluate", str(folder), "--true-boxes", str(tmp_path / "boxes.csv"), "--weights",
            str(weights), "--model", "resnet18", "--input-size", SIZE,
            "--device", "cpu"]  # fmt: skip
    if target == "report":
        assert main([*args, "--out", str(out)]) == 0
        assert json.loads(out.read_text())["images"] == 1
    before = {**_digests(tmp_path), **_digests(folder)}
    code = main([*args, "--out", str(out)])
    if target == "report":  # its own report: replaced
        assert code == 0 and "wrote" in capsys.readouterr().err
        return
    words = {"input": "is an input", "boxes": "is the --true-boxes file",
             "other": "exists and is not a report of gapcam evaluate"}[target]  # fmt: skip
    _refused(capsys, code, f"--out {out}", words)
    assert {**_digests(tmp_path), **_digests(folder)} == before


@pytest.mark.parametrize("mine", ["cell_overlay.png", "results.jsonl", "cell_cam.tif"])
def test_predict_never_replaces_a_users_file(tmp_path, weights, capsys, mine, no_model):
    """Item 3: a file of the user's where an output goes: rc 2 naming it, before the model."""
    folder = tmp_path / "cells"
    folder.mkdir()
    iio.imwrite(folder / "cell.png", image(1))
    (folder / mine).parent.mkdir(exist_ok=True)
    (folder / mine).write_bytes(b"my own file")
    before = (folder / mine).read_bytes()
    code = predict(folder / "cell.png", folder, weights)
    _refused(capsys, code, str(folder / mine), "gapcam did not write them", "gapcam never replaces")
    assert (folder / mine).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted({"cell.png", mine.split("/")[0]})


def test_a_users_output_like_file_is_an_input_and_gapcams_own_are_not(tmp_path, weights, capsys):
    """A file named like an output is an input unless gapcam claimed it (the store); a run
    killed before its record leaves claimed files a rerun replaces; an old folder (records as
    JSON files, no ledger) claims what its records name, and moves into the store."""
    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "a.png", image(0))
    iio.imwrite(folder / "b_overlay.png", image(1))  # the user's image, named like an overlay
    assert predict(folder, folder, weights) == 0
    assert sorted(r["file"] for r in results(folder)) == [
        str(folder / "a.png"),
        str(folder / "b_overlay.png"),
    ]
    forget(folder, "a")  # killed after its outputs, before its record
    capsys.readouterr()
    assert predict(folder, folder, weights) == 0
    assert "1 done, 1 already done" in capsys.readouterr().err
    as_before_the_store(folder)  # written before the store and the ledger existed
    assert predict(folder, folder, weights) == 0
    assert "0 done, 2 already done" in capsys.readouterr().err  # its records moved in
    assert sorted(records(folder)) == ["a", "b_overlay"] and not (folder / "records").exists()
    assert predict(folder, folder, weights, "--overwrite") == 0
    assert "2 done, 0 already done" in capsys.readouterr().err


def test_a_disk_full_at_the_lock_is_a_message(tmp_path, weights, capsys, monkeypatch):
    """The disk fills up between the checks and the lock: rc 2 naming --out, no traceback."""
    import errno

    from napari_gapcam.cli import folder_lock

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder_lock.FolderLock, "acquire", full)
    code = predict(_folder(tmp_path), tmp_path / "out", weights)
    _refused(capsys, code, f"--out {tmp_path / 'out'}: cannot create or lock it", "No space left")
