"""The napari side: a Qt-free session (the view model) and the dock widget, its thin view.

- :mod:`.session`: the state of a run and its operations (no Qt); :mod:`.jobs` how it runs
  work off the UI thread (:mod:`.qt_jobs`: napari's workers), :mod:`.run` the job bodies and
  their cancel, :mod:`.input_planes` which planes and pyramid level a run reads,
  :mod:`.shown` what the overlays show of a result, :mod:`.status` the session's words.
- On the session, each with its own state: :mod:`.class_view` (the chosen class's overlays,
  box, regions, mask, tiles; :mod:`.class_job` a costly class's maps, with Cancel),
  :mod:`.objects`, :mod:`.decompose`, :mod:`.calibrate`.
- Layers: :mod:`.overlay_layers` (created once per source, updated in place),
  :mod:`.lazy_overlay` (an nD overlay computed plane by plane).
- The view: :mod:`.widget` (wiring), :mod:`.controls` and :mod:`.model_controls` (the
  controls), :mod:`.searchable` combo boxes; :mod:`.names` the model choices' words;
  :mod:`.sample_data`.
"""
