"""The ``gapcam`` command line: many images in, maps and records out; napari and Qt never imported.

- :mod:`.command`: the parser and :func:`main`; :mod:`.messages` exit codes and error lines.
- ``gapcam predict``: :mod:`.preflight` checks everything first, :mod:`.predict` runs the steps;
  :mod:`.inputs` finds the images, :mod:`.pages` reads their pages, :mod:`.infer` turns a chunk
  of inputs into maps, overlays (:mod:`napari_gapcam.engine.overlay`) and records in the output
  folder (:mod:`.outputs`), one run per folder (:mod:`.folder_lock`); :mod:`.distributed` runs
  chunks on dask workers. :mod:`.arguments` holds the options.
- ``--tiles``: :mod:`.pyramid` levels, :mod:`.tile_blocks` (the unit of work), :mod:`.tiled_run`,
  :mod:`.tiled_record`, :mod:`.tiled_outputs`.
- ``--labels`` and ``--scale shared``: :mod:`.labels`, :mod:`.page_objects`.
- ``gapcam evaluate``: :mod:`.evaluate` against :mod:`.true_boxes`.
"""

from __future__ import annotations

from .command import build_parser, main

__all__ = ["build_parser", "main"]
