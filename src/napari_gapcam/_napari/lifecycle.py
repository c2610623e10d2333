"""A run's lifecycle on the UI thread: start its worker, take what it yields, cancel, end.

A mixin of :class:`~napari_gapcam._napari.widget.GapCamWidget` (it uses the widget's controls,
``_model``, ``_shown`` and ``_overlays``). The worker's body is :func:`.run.compute`; a run has
an id, so a cancelled run's late batches are ignored, and its worker drains on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_warning

from .input_planes import Planes, choose_planes
from .model_controls import IN_MEMORY
from .overlay_layers import spatial_shape
from .run import CancelToken, compute
from .shown import Shown
from .status import error_line, no_finite_line
from .tiles_view import TILES

if TYPE_CHECKING:
    from ..models import GapCamModel
    from ..models.spec import ModelSpec

CURRENT, ALL = "current plane", "all planes"


class RunLifecycle:
    """Run, Cancel and the run's yields (see the module docstring)."""

    @property
    def busy(self) -> bool:
        """True while a run (or a Grad-CAM backward pass) is in progress."""
        return self._worker is not None or self._class_worker is not None

    def cancel(self) -> None:
        """Stop the run: planes done stay in the overlay; Run works again at once."""
        if self._worker is None:
            return
        worker = self._worker
        worker.finished.connect(lambda: worker in self._draining and self._draining.remove(worker))
        if worker.is_running:  # else it ended already: its finished signal may be gone
            self._draining.append(worker)
        worker.quit()  # a generator worker stops at its next yield ...
        self._token.set()  # ... and the run's thread before its next layer or plane
        self._run_id += 1  # whatever it still yields is ignored
        self._end_run()
        done = self._shown.progress_note() if self._shown is not None else ""
        self.status.value = f"Cancelled{done}."

    def _on_run_button(self, _value: Any = None) -> None:
        if self._worker is not None:
            self.cancel()
        else:
            self.run()

    def _input_size_for(self, spec: ModelSpec) -> int:
        """The input size a run will use (the model's default is known once it is loaded)."""
        if self.input_size.value:
            return int(self.input_size.value)
        if self._model is not None and spec == self._model_spec:
            return self._model.input_size
        if spec.arch == IN_MEMORY:
            return self.models.memory_model.input_size
        from ..models.loading import default_input_size

        return default_input_size(spec.arch, spec.weights)

    def run(self, _value: Any = None) -> None:
        """Start a run on the chosen layer: its displayed plane, or all planes."""
        if self.busy:
            return
        source = self.image.value
        try:
            if source is None:
                raise ValueError("No image layer: open an image (File ▸ Open) and press Run.")
            spec = self.models.spec()
            if self.mode.value == TILES:
                self._start_tiled(source, spec)
                return
            dims = self._viewer.dims
            planes = choose_planes(
                source,
                dims.point,
                tuple(dims.order),
                self._input_size_for(spec),
                all_planes=self.planes.value == ALL,
            )
        except ValueError as error:
            self._fail(error)
            return
        model, contrast, run_id, shape = self._new_run(spec, source)
        loading = "" if model is not None else f"loading {spec.arch}, "
        self.status.value = f"Running: {loading}forward pass on {source.name!r}{planes.describe()}…"
        worker = create_worker(
            compute,
            model,
            spec,
            planes,
            contrast,
            self.input_size.value,
            True if self.square.value else None,  # unticked: the model's own setting
            self._token,
            _ignore_errors=True,  # napari itself notifies (with the traceback)
        )
        total = len(planes) if len(planes) > 1 else 0

        def on_yield(out: tuple[str, Any]) -> None:
            self._on_yield(out, run_id, spec, source, planes, shape)

        self._launch(worker, run_id, spec, on_yield, total, f"napari-gapcam on {source.name}")

    def _new_run(self, spec: ModelSpec, source: Image) -> tuple[Any, Any, int, tuple[int, ...]]:
        """A new run (whole image or tiles): the last run's lines cleared, a fresh cancel token,
        the class following the top one; gives the model to reuse (None: the worker loads it),
        the contrast limits to read with, the run's id and the source's shape now."""
        self._run_line, self._warning = "", ""
        self._token = CancelToken()
        self._run_id += 1
        self._follow_top = True
        model = self._model if spec == self._model_spec else None
        if spec.arch == IN_MEMORY:
            model = self.models.memory_model
        contrast = None if source.rgb else tuple(source.contrast_limits)
        return model, contrast, self._run_id, spatial_shape(source)

    def _launch(
        self, worker: Any, run_id: int, spec: ModelSpec, on_yield: Any, total: int, title: str
    ) -> None:
        """Start a run's worker with napari's progress bar; Run turns into Cancel."""
        self._progress = progress(total=total)
        self._progress.set_description(title)
        worker.yielded.connect(on_yield)
        worker.errored.connect(
            lambda error: run_id == self._run_id and self._fail(error, False, spec)
        )
        worker.finished.connect(lambda: run_id == self._run_id and self._end_run())
        self._worker = worker
        self.run_button.text = "Cancel"
        worker.start()

    def _end_run(self) -> None:
        self._worker = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.run_button.text = "Run"
        self.run_button.enabled = self._class_worker is None
        self._score_objects()  # the run's last batch is shown: its objects' scores

    def _fail(self, error: BaseException, notify: bool = True, spec: Any = None) -> None:
        """A short status line; the full message goes to the notification (and the log)."""
        self.status.value = error_line(error, spec)
        if notify:
            show_error(f"napari-gapcam: {error}")

    def _on_yield(
        self,
        out: tuple[str, Any],
        run_id: int,
        spec: ModelSpec,
        source: Image,
        planes: Planes,
        shape: tuple[int, ...],
    ) -> None:
        taken = self._run_payload(out, run_id, spec, source)
        if taken is None:
            return
        kind, payload = taken
        if kind == "no finite":
            self._warning = no_finite_line(payload, len(planes))
            show_warning(f"napari-gapcam: {source.name!r}: {self._warning}")
            return
        result, seconds = payload
        first = kind == "result" or self._shown is None or self._shown.planes is not planes
        if first:
            self._shown = Shown(
                source, shape, planes, result, self._model, seconds, total=len(planes)
            )
        else:  # the next batch of the stack
            self._shown.result.extend(result)
            self._shown.seconds = seconds
        if self._progress is not None and kind == "batch":
            self._progress.update(self._shown.done - self._progress.n)
        self._show_result(first)

    def _run_payload(
        self, out: tuple[str, Any], run_id: int, spec: ModelSpec, source: Image
    ) -> tuple[str, Any] | None:
        """A yield of a run (whole image or tiles) that is for the overlays, or None when it
        was dealt with here: a cancelled run's (ignored), an error, the model, or any after
        the source layer was removed (the run is cancelled)."""
        if run_id != self._run_id:  # a cancelled run
            return None
        kind, payload = out
        if kind == "error":
            self._fail(payload, spec=spec)
            return None
        if kind == "model":
            self._took_model(payload, spec)
            return None
        if source not in self._viewer.layers:
            self.status.value = f"Layer {source.name!r} was removed during the run."
            show_warning(f"napari-gapcam: layer {source.name!r} was removed; result dropped.")
            self.cancel()
            return None
        return kind, payload

    def _took_model(self, model: GapCamModel, spec: ModelSpec) -> None:
        if model is not self._model:  # a new model: its suggested box threshold
            with self.threshold.changed.blocked():
                self.threshold.value = model.box_threshold
        self._model, self._model_spec = model, spec
