"""The engine: torch and numpy only (no Qt, napari, command line or model families).

- :mod:`.network`: a network split into the maps before the pool and the head, with its
  method, config, forward pass and memory; :mod:`.model`: :class:`GapCamModel`, the network
  with ``run``, ``run_batch`` and ``run_tiled`` on top of the drivers.
- :mod:`.pipeline`: the one forward path (a source of images → batches → maps and logits);
  its drivers :mod:`.batch` (whole images, stacks) and :mod:`.tiles` (a slide's tiles at
  native pixels, planned by :mod:`.tiling`).
- :mod:`.methods`: the methods table (what each allows), their base and one file each.
- :mod:`.protocol`: what every result answers; :mod:`.result` (a batch and its images),
  :mod:`.tiled_result` (a stitched slide); :mod:`.maps` (classes, scaling maps).
- :mod:`.preprocess` (image → input tensor), :mod:`.config` (a model's preprocessing),
  :mod:`.device`, :mod:`.memory` (input size vs free memory), :mod:`.fuse` and :mod:`.graphs`
  (speed).
- :mod:`.localize` (boxes and masks from a map), :mod:`.grid` (grids over images and where
  their cells lie), :mod:`.metrics` (localization metrics), :mod:`.objects` (per-object scores).

torch is imported through :mod:`._torch` (behind the Triton guard of :mod:`._torch_guard`).
"""
