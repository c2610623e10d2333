"""The text under ``gapcam predict --help`` and ``gapcam evaluate --help``: examples, what is
written, and the exit codes (made from :mod:`.messages`' and :mod:`.signals`' own codes)."""

from __future__ import annotations

import textwrap

from .messages import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .signals import EXIT_TERMINATED


def exit_codes(done: str, failed: str, usage: str, stopped: str) -> str:
    """The exit codes, one a line (wrapped): ``done``, ``failed`` and ``usage`` say what 0, 1
    and 2 mean for the command, ``stopped`` what an interrupted or terminated run leaves."""
    rows = (
        (EXIT_OK, f"done: {done}"),
        (EXIT_FAILED, failed),
        (EXIT_USAGE, usage),
        (EXIT_INTERRUPTED, f"interrupted (Ctrl-C): {stopped}"),
        (EXIT_TERMINATED, "terminated (SIGTERM: kill, SLURM at wall time, docker stop), handled "
                          f"as an interrupt: {stopped}"),
    )  # fmt: skip
    lines = (
        textwrap.fill(words, 92, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
        for code, words in rows
    )
    return "exit codes:\n" + "\n".join(lines) + "\n"


PREDICT_EXAMPLES = """\
examples:
  gapcam predict photos/ --out cams/
  gapcam predict 'plates/*.tif' --model resnet18 --weights phenotypes.pt --class mitotic
  gapcam predict screen.zarr --input-size 448 --workers 4 --out screen-cams/
  gapcam predict plate/ --recursive --out plate-cams/   # plate/B02/site1.tif → B02/site1_cam.tif
  gapcam predict scene.png --weights demo     # the bundled shapes demo model (resnet18)
  gapcam predict photos/ --layer layer3 --out cams-layer3/    # Grad-CAM at an earlier stage
  gapcam predict photos/ --method layercam --layers layer2,layer3,layer4 --out fused/
  gapcam predict slide.ome.tif --tiles --level 1 --background auto --workers 4
  gapcam predict cells/ --labels masks/ --scale shared

outputs, per input <stem> (in --out; <stem>-<hash> when another input has that stem):
  <stem>_cam.tif       float32 map of the chosen class in [0, 1] at the image's H×W, or at
                       most --max-map-pixels cells over a bigger image (placement in the record)
                       (N×H×W for a multi-page TIFF; <stem>_cam.zarr for a zarr input)
  <stem>_overlay.png   the image with the map in turbo at 50 % (first page of a stack)
  <stem>_objects.csv   with --labels: one row per labelled object (label, area, each
                       class's mean raw map, cam_class, cam_share; image for a stack)
  results.jsonl        one JSON line per input: file, per-page top-k, chosen class, box
                       (an export of the folder's record store, .gapcam/store.sqlite)

with --tiles, per input (instead of the map and the overlay):
  <stem>_cam.ome.zarr      OME-Zarr (NGFF 0.4) map pyramid over level 0: Y×X, or C×Y×X
  <stem>_tiles.csv         row, column, y0, x0, size (level-0 px), top-k classes per tile
  <stem>_regions.geojson   regions above --threshold as polygons in level-0 px (QuPath)

A re-run skips the inputs already done with the same settings whose file has not changed,
and finishes the rest. One run at a time per --out (a second one exits 2 naming the first).

""" + exit_codes(
    "every input computed, or already done",
    "some input failed (each reported, the others written), or the run stopped (no dask "
    "worker left, inputs changed meanwhile): what is done is kept",
    "usage or set-up error, or --out in use by another run: nothing written",
    "what is done is kept; run the same command again to finish",
)

EVALUATE_EXAMPLES = """\
examples:
  gapcam evaluate val/ --true-boxes val_boxes.csv --weights demo
  gapcam evaluate 'val/*.png' --true-boxes instances_val.json --model resnet50 --out val.json
  gapcam evaluate cells/ --true-boxes boxes.json --true-masks masks/ --class mitotic
  gapcam evaluate plate/ --recursive --true-boxes boxes.csv   # rows name B02/site1.png

It prints MaxBoxAccV2, MaxBoxAcc and the best threshold per IoU (0.3, 0.5, 0.7), and PxAP
with --true-masks; the JSON holds them with BoxAcc at every threshold. Use the best threshold
as --threshold of gapcam predict.

A box file (or a mask) names an input by its path relative to the folder given (B02/site1.png,
or B02/site1), else by its file name or stem when one input alone has it; a name that several
inputs have (site1.png in B02/ and C03/) is an error (exit 2): none is guessed.

""" + exit_codes(
    "every input evaluated, the report written",
    "some input could not be read (each reported, the others evaluated), or none could",
    "usage or set-up error: nothing written",
    "no report written",
)
