"""A method picked after a run: the same network under it, no reload; a finished result switched
with no forward pass where the method's row says it needs only the head.

When the *method* box (or the *channels* box: Score-CAM's ``max_channels``) changes and the
loaded model is otherwise the one chosen (the same architecture, weights, device, names), the
session's model becomes ``model.with_method(name, **options)`` (Run then reuses it: no
reload). If the method needs only the head (its row's ``head_only``), the shown result (one
plane or a stack's planes) is switched at once (``result.with_method(model)``) and its overlays
redrawn; any other method says that Run makes its maps. Tiles and runs in progress are left
alone (the next Run uses the method). A model handed over with ``use_model`` switches the same
way, to the handed-over model under the method (its own method: the model as handed over, with
its options).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .compare_job import head_only, switched, with_method
from .names import IN_MEMORY
from .shown import Shown


class MethodSwitch:
    """Follows the widget's *method* box (see the module docstring)."""

    def __init__(self, widget: Any) -> None:
        self.session = widget.session
        self._models = widget.models
        self.session.parts.append(self)  # its events hold it weakly
        widget.method.changed.connect(self.switch)
        widget.models.channels.changed.connect(self.switch)

    def switch(self, _value: Any = None) -> None:
        """The method box changed: switch the loaded model (and a finished result) to it."""
        from ..engine.methods import resolve

        session, model, models = self.session, self.session.model, self._models
        in_memory = models.arch.value == IN_MEMORY
        if model is None or session.spec is None or session.busy:
            return
        if in_memory and not models.is_handed(model):
            return  # another model ran: Run uses the one handed over
        try:
            spec = models.spec()  # in memory: the handed-over model under the method
        except ValueError as error:
            if in_memory:  # a method its head does not allow: say why
                session.fail(error, notify=False)
            return
        loaded = session.spec
        if not in_memory and replace(spec, method=loaded.method, options=loaded.options) != loaded:
            return  # another model chosen: Run loads it
        try:
            row = resolve(spec.method, model.fc is not None, model.head_description)
            if in_memory:
                switched_model = models.memory_model
            elif spec.options == loaded.options:
                switched_model = with_method(model, row.name)
            else:  # other options (Score-CAM's channels): the same network under them
                switched_model = model.with_method(row.name, **dict(spec.options))
        except Exception as error:  # a method the head does not allow: say why
            session.fail(error, notify=False)
            return
        session.model, session.spec = switched_model, spec
        shown = session.shown
        if shown is None or shown.unit == "tiles" or shown.model is not model:
            return
        if not head_only(row):
            session.say(f"{row.label}: {row.cost}; press Run for its maps (no reload).")
            return
        try:
            result = switched(shown.result, switched_model)
        except Exception as error:
            session.fail(error, notify=False)
            return
        session.shown = Shown(
            shown.source,
            shown.source_shape,
            shown.planes,
            result,
            switched_model,
            seconds=shown.seconds,
            scale=shown.scale,
            total=shown.total,
            unit=shown.unit,
        )
        note = f"Switched to {row.label} on the finished result: no forward pass."
        session.warning = f"{session.warning} {note}".strip()  # the run's line says so
        session.events.result.emit(False)  # the lines, the class list, the overlays
