"""``gapcam evaluate --recursive``: a plate's wells walked; true boxes and masks matched by the
path below the folder given, then by a name no other input has; a name that several inputs
have is an error (exit 2), never a guess."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_gapcam.cli import main
from napari_gapcam.cli.relative_match import AmbiguousName
from napari_gapcam.cli.true_boxes import Truth, match
from napari_gapcam.cli.true_masks import find_masks, match_masks
from napari_gapcam.synthetic import make_sample

PLATE = {Path("/p/B02/site1.png"): "B02", Path("/p/C03/site1.png"): "C03"}
TOP = Path("/p/x.png")


def test_boxes_name_inputs_by_relative_path_then_by_a_unique_name():
    table = {
        "B02/site1.png": Truth([(0, 0, 1, 1)]),
        "C03\\site1": Truth([(0, 0, 2, 2)]),  # a Windows path, no suffix
        "val/x.png": Truth([(0, 0, 3, 3)]),  # a folder the inputs do not have: by name
        "D04/y.png": Truth([(0, 0, 4, 4)]),  # its folder disagrees with the only y.png
    }
    inputs = [*PLATE, TOP, Path("/p/A01/y.png")]
    found, unused = match(inputs, table, {**PLATE, Path("/p/A01/y.png"): "A01"})
    assert found == {
        Path("/p/B02/site1.png"): table["B02/site1.png"],
        Path("/p/C03/site1.png"): table["C03\\site1"],
        TOP: table["val/x.png"],
    }
    assert unused == ["D04/y.png"]
    found, _ = match(list(PLATE), {"plate1/B02/site1.png": Truth()}, PLATE)  # a longer path
    assert list(found) == [Path("/p/B02/site1.png")]


@pytest.mark.parametrize("subfolders", [PLATE, None])  # --recursive, or two folders given
def test_a_name_of_several_inputs_is_refused_not_guessed(subfolders):
    with pytest.raises(AmbiguousName, match="site1.png"):
        match(list(PLATE), {"site1.png": Truth()}, subfolders)


def test_masks_are_walked_and_matched_by_their_subfolder(tmp_path):
    for well in ("B02", "C03"):
        (tmp_path / well).mkdir()
        iio.imwrite(tmp_path / well / "site1_masks.png", np.ones((4, 4), np.uint8))
    masks = find_masks(str(tmp_path), recursive=True)
    found = match_masks(list(PLATE), masks, PLATE)
    assert {p.parent.name: m.parent.name for p, m in found.items()} == {"B02": "B02", "C03": "C03"}
    flat = tmp_path / "flat"
    flat.mkdir()
    iio.imwrite(flat / "site1.png", np.ones((4, 4), np.uint8))
    with pytest.raises(Exception, match="none is guessed"):  # one mask, two inputs named site1
        match_masks(list(PLATE), find_masks(str(flat)), PLATE)


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """Two wells, each with a scene named site1.png (different classes); masks inside the plate."""
    root = tmp_path_factory.mktemp("plate")
    rng = np.random.default_rng(7)
    truth = {}
    for well in ("B02", "C03"):
        (root / well).mkdir()
        (root / "masks" / well).mkdir(parents=True)
        image, label, box = make_sample(rng, size=(160, 192))
        iio.imwrite(root / well / "site1.png", image)
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[box[0] : box[2], box[1] : box[3]] = 1
        iio.imwrite(root / "masks" / well / "site1_masks.png", mask)
        truth[well] = (image, label, box, mask)
    return root, truth


def evaluate(*args: object) -> int:
    return main(["evaluate", *map(str, args), "--weights", "demo", "--device", "cpu"])


def test_evaluate_recursive_matches_each_well_s_boxes_and_masks(plate, tmp_path, capsys):
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    root, truth = plate
    rows = [f"{w}/site1.png,{','.join(map(str, t[2]))},{t[1]}" for w, t in truth.items()]
    (tmp_path / "b.csv").write_text("file,y0,x0,y1,x1,class\n" + "\n".join(rows) + "\n")
    out = tmp_path / "r.json"
    assert evaluate(root, "--recursive", "--true-boxes", tmp_path / "b.csv", "--true-masks",
                    root / "masks", "--out", out) == 0  # fmt: skip
    assert "no true boxes" not in capsys.readouterr().err  # the masks are no inputs
    model = napari_gapcam.load_model("resnet18", weights=DEMO_WEIGHTS, device="cpu")
    wells = [truth["B02"], truth["C03"]]
    expected = napari_gapcam.localization_metrics(
        [model.run(image).cam(label) for image, label, _, _ in wells],
        [[box] for _, _, box, _ in wells],
        [mask.astype(bool) for *_, mask in wells],
    )
    report = json.loads(out.read_text())
    assert [Path(f["file"]).parent.name for f in report["files"]] == ["B02", "C03"]
    assert [f["boxes"] for f in report["files"]] == [[list(t[2])] for t in wells]
    assert report["max_box_acc_v2"] == pytest.approx(expected["max_box_acc_v2"])
    assert report["pxap"] == pytest.approx(expected["pxap"])


def test_evaluate_refuses_a_name_of_two_wells_before_the_model(plate, tmp_path, capsys):
    root, truth = plate
    (tmp_path / "b.csv").write_text("file,y0,x0,y1,x1\nsite1.png,0,0,8,8\n")
    out = tmp_path / "r.json"
    assert evaluate(root, "--recursive", "--true-boxes", tmp_path / "b.csv", "--out", out) == 2
    err = capsys.readouterr().err
    assert "--true-boxes" in err and "B02/site1.png" in err and "none is guessed" in err
    assert "Traceback" not in err and not out.exists()
    assert evaluate(root, "--true-boxes", tmp_path / "b.csv", "--out", out) == 2  # no --recursive
    assert "needs --recursive" in capsys.readouterr().err
