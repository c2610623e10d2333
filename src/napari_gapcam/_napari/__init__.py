"""The napari side: the dock widget, its controls, the overlay layers and the planes it reads.

- :mod:`.widget`: :class:`GapCamWidget`, wiring only; :mod:`.model_controls` turn into a model
  spec, :mod:`.run` the run lifecycle in a worker (with cancel), :mod:`.input_planes` which
  planes and pyramid level a run reads, :mod:`.tiles_view` tiled runs.
- :mod:`.shown` the display policy (what the overlays show, where they sit),
  :mod:`.class_view` the selected class's overlays, :mod:`.overlay_layers` the layers
  themselves, :mod:`.lazy_overlay` an nD overlay computed plane by plane, :mod:`.status` the
  widget's words.
- Features: :mod:`.objects`, :mod:`.regions`, :mod:`.decompose`, :mod:`.calibrate`, with their
  controls in :mod:`.feature_controls`; :mod:`.searchable` combo boxes; :mod:`.sample_data`.
"""
