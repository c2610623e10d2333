"""The engine: torch and numpy only (no Qt, napari, command line or model families).

- :mod:`.model`: :class:`GapCamModel`, a network split into the maps before the pool and the
  head; :mod:`.batch` is its one forward path (``run`` is a batch of one).
- :mod:`.methods`: the base of the methods, with :mod:`.cam` (the CAM formula) and
  :mod:`.gradcam`; :mod:`.result`: one result for N ≥ 1 images, ``result[i]`` one image.
- :mod:`.preprocess` (image → input tensor), :mod:`.config` (a model's preprocessing),
  :mod:`.device`, :mod:`.memory` (input size vs free memory), :mod:`.fuse` and :mod:`.graphs`
  (speed), :mod:`.tiles` (native pixels over big images).
- :mod:`.localize` (boxes and masks from a map), :mod:`.grid` (bounded grids over big images),
  :mod:`.metrics` (localization metrics), :mod:`.objects` (per-object scores).

torch is imported through :mod:`._torch` (behind the Triton guard of :mod:`._torch_guard`).
"""
