"""``gapcam predict`` at screen scale holds one output folder's inputs at a time (issue 26,
item 6: the driver's memory flat in the number of inputs): the listing is walked folder by
folder, the inputs to do are kept on disk, and chunks go to a cluster a few at a time."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import pytest

from _cli import image, predictor, records, results
from napari_gapcam.cli import left
from napari_gapcam.cli.inputs import Item
from napari_gapcam.cli.todo import TodoList

predict = predictor("32")
WELLS = {"plate1/A01": 3, "plate1/A02": 2, "plate2/A01": 4}


def _screen(root: Path) -> list[str]:
    names = []
    for k, (well, sites) in enumerate(WELLS.items()):
        for site in range(sites):
            path = root / well / f"s{site}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(path, image(10 * k + site))
            names.append(f"{well}/s{site}")
    return names


def test_a_screen_is_named_and_checked_one_well_at_a_time(tmp_path, weights, monkeypatch, capsys):
    """Before, every input of the run was named at once (one list of them all); now each call
    names one well's inputs, the largest well bounds what the driver holds, and the outputs
    still mirror the tree (plate2's A01 is not plate1's)."""
    stems = _screen(tmp_path / "screen")
    sizes: list[int] = []
    named = left.items

    def spy(paths, *args, **kwargs):
        sizes.append(len(paths))
        return named(paths, *args, **kwargs)

    monkeypatch.setattr(left, "items", spy)
    out = tmp_path / "out"
    assert predict(tmp_path / "screen", out, weights, "--recursive") == 0
    assert max(sizes) == max(WELLS.values())  # one well at a time, never all 9
    assert sorted(s for s in sizes if s) == sorted([*WELLS.values()] * 2)  # before, under lock
    assert sorted(records(out)) == sorted(stems)
    assert (out / "plate2" / "A01" / "s3_cam.tif").is_file()
    sizes.clear()
    capsys.readouterr()
    assert predict(tmp_path / "screen", out, weights, "--recursive") == 0  # a no-op re-run
    assert "0 done, 9 already done" in capsys.readouterr().err
    assert max(sizes) == 4 and sum(sizes) in (9, 18)  # a second pass where ctimes are fresh


def test_overlapping_arguments_list_each_input_once(tmp_path, weights, capsys):
    """A tree given with one of its wells, or a folder with one of its files: each input is
    computed once, under the name the first listing gives it."""
    _screen(tmp_path / "screen")
    out = tmp_path / "out"
    well = tmp_path / "screen" / "plate1" / "A01"
    assert predict([tmp_path / "screen", well], out, weights, "--recursive") == 0
    assert "9 done, 0 already done" in capsys.readouterr().err
    assert len(results(out)) == 9 and "plate1/A01/s0" in records(out)
    other = tmp_path / "other"
    assert predict([well, well / "s1.png"], other, weights) == 0
    assert "3 done, 0 already done" in capsys.readouterr().err
    assert sorted(records(other)) == ["s0", "s1", "s2"]


def test_a_name_another_file_holds_in_the_store_is_not_given_again(tmp_path, weights):
    """Names are made one folder at a time, so the store says which names other files hold
    (compared as a case-insensitive file system does): a later folder's ``x.png`` must not take
    the outputs ``X.png`` of an earlier run wrote."""
    for folder, name in (("a", "X.png"), ("b", "x.png")):
        (tmp_path / folder).mkdir()
        iio.imwrite(tmp_path / folder / name, image(len(folder) + ord(name[0])))
    out = tmp_path / "out"
    assert predict(tmp_path / "a", out, weights) == 0
    assert predict(tmp_path / "b", out, weights) == 0
    stems = records(out)
    assert sorted(stems)[0] == "X" and stems["X"]["file"] == str(tmp_path / "a" / "X.png")
    (other,) = [stem for stem in stems if stem != "X"]
    assert other.startswith("x-") and stems[other]["file"] == str(tmp_path / "b" / "x.png")


def test_the_inputs_to_do_are_kept_on_disk_and_read_back_in_pages(tmp_path, monkeypatch):
    from napari_gapcam.cli import todo as module

    monkeypatch.setattr(module, "PAGE", 2)
    path = tmp_path / "todo.sqlite"
    path.write_bytes(b"a killed run's")
    items = [Item(f"/in/{i}.png", f"w/{i}") for i in range(5)]
    with TodoList(path) as todo:
        todo.extend(iter(items))
        assert len(todo) == 5 and "w/3" in todo and "w/9" not in todo
        assert list(todo) == items and list(todo) == items  # read again: same order
    assert not path.exists()


def test_chunks_go_to_the_cluster_a_few_at_a_time(tmp_path, monkeypatch):
    """Before, every chunk was submitted at once (the driver held every input of a screen in
    its futures); now at most IN_FLIGHT chunks are out, topped up as they come back."""
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    from napari_gapcam.cli import distributed
    from napari_gapcam.cli.infer import Options

    monkeypatch.setattr(distributed, "IN_FLIGHT", 2)
    chunks = [[Item(f"/in/{i}-{j}.png", f"{i}-{j}") for j in range(3)] for i in range(6)]
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        submitted = []
        submit = client.submit

        def counted(*args, **kwargs):
            submitted.append(args[2])
            return submit(*args, **kwargs)

        monkeypatch.setattr(client, "submit", counted)
        outcomes = distributed.run_chunks(
            client, iter(chunks), Options(), str(tmp_path), function=_done
        )
        first = next(outcomes)
        assert len(submitted) == 2  # not 6
        rest = list(outcomes)
    assert sorted(o["file"] for chunk in [first, *rest] for o in chunk) == sorted(
        i.path for chunk in chunks for i in chunk
    )
    assert len(submitted) == 6


def _done(chunk, options, root):
    return [{"file": item.path, "status": "done"} for item in chunk]


def test_two_trees_share_a_well_s_folder_without_a_clash(tmp_path, weights, capsys):
    """Two plates given with --recursive: their wells of the same name go to one folder of
    --out, so their sites of the same name get distinct names there (found by the walk of the
    first tree, its twin in the second by name: no list of folders is kept)."""
    for plate, wells in (("pa", ("B02", "C03")), ("pb", ("B02",))):
        for well in wells:
            (tmp_path / plate / well).mkdir(parents=True)
            iio.imwrite(tmp_path / plate / well / "s1.png", image(len(plate + well)))
    out = tmp_path / "out"
    assert predict([tmp_path / "pa", tmp_path / "pb"], out, weights, "--recursive") == 0
    assert "3 done, 0 already done" in capsys.readouterr().err
    stems = records(out)
    assert "C03/s1" in stems  # alone in its folder: its own name
    b02 = sorted(stem for stem in stems if stem.startswith("B02/"))
    assert len(b02) == 2 and all(stem.startswith("B02/s1-") for stem in b02)
    assert {stems[s]["file"] for s in b02} == {
        str(tmp_path / p / "B02" / "s1.png") for p in ("pa", "pb")
    }
