"""``gapcam`` under a hostile but realistic user (issue 26): odd files, odd options, set-up errors
said before the model loads (rc 2, naming the file or option), per-input problems in the summary."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _cli import image, predictor, results

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
