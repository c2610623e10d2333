"""The output folder's record store (issue 26, items 1, 2 and 6): one SQLite database, runs
that land their files under a lease, a no-op re-run that hashes nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
from pathlib import Path

import imageio.v3 as iio
import pytest

from _cli import image, predictor, records, results
from napari_gapcam.cli import quick
from napari_gapcam.cli.store import FencedError, Store, stage_folder

predict = predictor("32")


def _plate(folder: Path, count: int = 3) -> Path:
    folder.mkdir()
    for i in range(count):
        iio.imwrite(folder / f"img{i}.png", image(i))
    return folder


def _settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago count as settled (the tests run within a second)."""
    monkeypatch.setattr(quick, "SETTLED_NS", -(10**12))


def test_the_store_is_one_sqlite_database_in_wal_mode_and_two_files_per_input(tmp_path, weights):
    folder = _plate(tmp_path / "in")
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    database = out / ".gapcam" / "store.sqlite"
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 3
    # per input: its map and its overlay, nothing else (no JSON record per input)
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == sorted(
        [f"img{i}_{kind}" for i in range(3) for kind in ("cam.tif", "overlay.png")]
        + ["results.jsonl"]
    )
    assert not (out / ".gapcam" / "stage").exists()  # landed, then the staging folder went
    assert [line["file"] for line in results(out)] == sorted(str(p) for p in folder.iterdir())
    assert {r["file"] for r in records(out).values()} == {str(p) for p in folder.iterdir()}


def test_a_no_op_rerun_hashes_nothing_and_does_not_rewrite_results(
    tmp_path, weights, monkeypatch, capsys
):
    """Item 6: the stat keys kept when each input landed decide; results.jsonl is kept as it is
    (its export is current). A touched input is checked in full once, then its keys are new."""
    _settle(monkeypatch)
    folder = _plate(tmp_path / "in")
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    exported = os.stat(out / "results.jsonl")
    hashed: list[int] = []
    real = hashlib.sha256

    def counting(*args, **kwargs):
        hashed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", counting)
    capsys.readouterr()
    assert predict(folder, out, weights) == 0
    assert "0 done, 3 already done" in capsys.readouterr().err
    assert hashed == []
    again = os.stat(out / "results.jsonl")
    assert (again.st_ino, again.st_mtime_ns) == (exported.st_ino, exported.st_mtime_ns)
    os.utime(folder / "img1.png")  # touched: same bytes, a new time
    assert predict(folder, out, weights) == 0
    assert "0 done, 3 already done" in capsys.readouterr().err
    assert len(hashed) >= 1  # img1.png checked in full (its bytes hashed)
    hashed.clear()
    assert predict(folder, out, weights) == 0
    assert hashed == []  # its new keys were kept


def test_results_jsonl_edited_by_hand_is_exported_again(tmp_path, weights):
    folder = _plate(tmp_path / "in")
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    expected = (out / "results.jsonl").read_text()
    (out / "results.jsonl").write_text(expected.splitlines()[0] + "\n")
    assert predict(folder, out, weights) == 0
    assert (out / "results.jsonl").read_text() == expected


def test_an_orphaned_chunk_of_a_killed_client_never_lands(tmp_path, weights, tiny_model):
    """Item 2: a --scheduler client killed mid-run left its chunk running on the cluster; the
    chunk finishes after the next run (another --class) is done. Before the store it wrote the
    maps and records of that next run's inputs; now it writes into its own run's staging
    folder, which no run lands, and the next run deletes it."""
    from napari_gapcam.cli import infer, stream
    from napari_gapcam.cli.inputs import Item
    from napari_gapcam.models.spec import ModelSpec

    folder = _plate(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert predict(folder, out, weights, "--class", "1") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    kept = records(out)
    dead = "0" * 32  # the killed client's run
    options = infer.Options(
        model=ModelSpec(arch="resnet18", weights=str(weights), device="cpu"),
        class_ref="0",
        input_size=32,
        stage=str(stage_folder(out.resolve(), dead)),
    )
    infer._MODELS[options.model] = tiny_model
    items = [Item(str(p), p.stem) for p in sorted(folder.iterdir())]
    outcomes = stream.process_chunk(items, options, str(out))  # the orphan, after the run
    assert [o["status"] for o in outcomes] == ["done", "done"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert records(out) == kept
    with Store(out, write=True) as store:  # its client, had it lived: refused, nothing moves
        with pytest.raises(FencedError, match="no longer holds"):
            store.land(dead, outcomes[0]["record"], Path(outcomes[0]["stage"]))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert (out / ".gapcam" / "stage" / dead).is_dir()
    assert predict(folder, out, weights, "--class", "1") == 0
    assert not (out / ".gapcam" / "stage").exists()  # the next run deleted its files


def test_a_run_that_lost_its_lease_stops_and_keeps_what_landed(tmp_path, weights, monkeypatch):
    """Item 2: another run took the folder's lease mid-run (its lock was taken over): this run's
    next input is refused, the run stops with rc 1 and says why; what it landed stays."""
    from napari_gapcam.cli import store as store_module

    folder = _plate(tmp_path / "in")
    out = tmp_path / "out"
    land, count = store_module.Store.land, [0]

    def land_then_lose(self, token, *args):
        count[0] += 1
        if count[0] == 2:
            self.begin_run("f" * 32, "gapcam predict (another run)")
        return land(self, token, *args)

    monkeypatch.setattr(store_module.Store, "land", land_then_lose)
    assert predict(folder, out, weights, "--chunk-size", "1") == 1
    assert len(records(out)) == 1 and len(results(out)) == 1
    assert len(list(out.glob("*_cam.tif"))) == 1


def test_settled_keys_leave_out_files_changed_a_moment_ago(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    assert quick.stat_key(path) is not None and quick.settled_key(path) is None
    assert quick.stat_key(tmp_path) is None  # a folder (zarr): always the full check


def test_a_store_can_be_read_while_a_run_writes_it(tmp_path):
    """WAL: a reader (a second gapcam looking for work) is not blocked by a writer."""
    with Store(tmp_path, write=True) as writer:
        writer.put({"stem": "a", "file": "/a.png", "settings": {}})
        with writer.transaction():
            writer.put({"stem": "b", "file": "/b.png", "settings": {}})
            with Store(tmp_path) as reader:
                assert reader.files() == {"/a.png": "a"}  # the last committed state
        assert Store(tmp_path).files() == {"/a.png": "a", "/b.png": "b"}


def test_an_options_stage_is_not_a_setting():
    from napari_gapcam.cli.infer import Options

    assert Options().settings() == dataclasses.replace(Options(), stage="/x").settings()
