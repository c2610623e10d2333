"""A run's inputs as one stream (issue 26, item 6): reading, inference and writing overlap on
three threads, the network only on the calling one; outcomes in input order; nothing left
running when the stream stops early."""

from __future__ import annotations

import threading
from pathlib import Path

import imageio.v3 as iio
import pytest

from _cli import image
from napari_gapcam.cli import infer, stream
from napari_gapcam.cli.inputs import Item
from napari_gapcam.models.spec import ModelSpec


@pytest.fixture
def options(weights, tiny_model, tmp_path):
    options = infer.Options(
        model=ModelSpec(arch="resnet18", weights=str(weights), device="cpu"),
        input_size=32,
        batch_size=2,
        stage=str(tmp_path / "out" / ".gapcam" / "stage" / "run"),
    )
    infer._MODELS[options.model] = tiny_model
    return options


def _items(folder: Path, count: int) -> list[Item]:
    folder.mkdir()
    for i in range(count):
        iio.imwrite(folder / f"img{i}.png", image(i))
    (folder / "broken.png").write_bytes(b"not a png")
    names = [f"img{i}.png" for i in range(count)]
    names.insert(2, "broken.png")
    return [Item(str(folder / name), Path(name).stem) for name in names]


def test_the_network_runs_on_the_calling_thread_and_files_are_written_on_another(
    tmp_path, options, tiny_model, monkeypatch
):
    threads: dict[str, set[str]] = {"network": set(), "png": set(), "read": set()}
    run_each, write_png, open_pages = tiny_model.run_each, infer.write_png, stream.open_pages

    def network(*args, **kwargs):
        threads["network"].add(threading.current_thread().name)
        return run_each(*args, **kwargs)

    def png(*args, **kwargs):
        threads["png"].add(threading.current_thread().name)
        return write_png(*args, **kwargs)

    def read(*args, **kwargs):
        threads["read"].add(threading.current_thread().name)
        return open_pages(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "run_each", network)
    monkeypatch.setattr(infer, "write_png", png)
    monkeypatch.setattr(stream, "open_pages", read)
    items = _items(tmp_path / "in", 7)
    outcomes = list(stream.process_stream(items, options, str(tmp_path / "out")))
    assert [o["file"] for o in outcomes] == [item.path for item in items]  # input order
    assert [o["status"] for o in outcomes].count("failed") == 1
    assert outcomes[2]["status"] == "failed" and "broken.png" in outcomes[2]["file"]
    assert threads["network"] == {threading.current_thread().name}
    assert threads["png"] == {"gapcam-writer_0"}
    assert threads["read"] == {"gapcam-reader"}
    stage = Path(options.stage)
    assert sorted(p.name for p in stage.glob("*_overlay.png")) == [
        f"img{i}_overlay.png" for i in range(7)
    ]


def test_a_stream_stopped_early_leaves_no_thread_behind(tmp_path, options):
    items = _items(tmp_path / "in", 9)
    outcomes = stream.process_stream(items, options, str(tmp_path / "out"))
    first = next(outcomes)
    assert first["status"] == "done"
    outcomes.close()  # as a KeyboardInterrupt (SIGINT, SIGTERM) unwinds the run
    alive = [t.name for t in threading.enumerate() if t.name.startswith("gapcam-")]
    assert alive == []
