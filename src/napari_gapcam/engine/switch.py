"""A finished result under another method, with no forward pass: ``result.with_method(name)``.

A result keeps each image's maps and logits. A method whose row is ``head_only`` needs nothing
more (the head, for a gradient), so the switched result shares the maps and logits (nothing is
copied, no forward pass runs) and makes its own maps, as the method does, when asked. A method
that needs the input image (Score-CAM) switches only where the result kept its inputs (a run
under such a method); others are refused, saying why.
"""

from __future__ import annotations

import copy
from typing import Any

from .costly_maps import CostlyMaps
from .words import ParameterError, Term


class SwitchMethods:
    """``with_method`` for a batch of results (:class:`~.result.Result`)."""

    network: Any = None  # the network that made the result (a switch by name needs its head)

    def with_method(self, method: Any, **options: Any) -> Any:
        """This result under ``method``: a name of the methods table (with ``options``, its
        parameters), made on the network that made the result; or a model (the same network
        under another method: ``model.with_method(name)``). Maps, logits, probabilities and
        class names are shared: no forward pass runs."""
        network = self._switched(method, options)
        row = network.method_info
        if not row.head_only and not (row.needs_input and self.inputs is not None):
            raise ParameterError(
                f"{row.label} needs more than a finished result keeps (each image's maps and "
                f"the head): {row.cost}. Run the images again with ",
                Term("method", row.name),
                ".",
            )
        if len(network.class_names) != len(self.class_names):
            raise ValueError(
                f"This result has {len(self.class_names)} classes; that model has "
                f"{len(network.class_names)}: switch with the network that made the result."
            )
        other = copy.copy(self)
        other._parts, other._starts = list(self._parts), list(self._starts)  # grow apart
        other._method = network.method_object.on_host()
        other._costly, other._ranges = CostlyMaps(other._method), {}
        other.inputs = None if self.inputs is None else self.inputs.shared()
        other.network = network
        return other

    def _switched(self, method: Any, options: dict[str, Any]) -> Any:
        if not isinstance(method, str):  # a model
            return method.with_method(method.method, **options) if options else method
        if self.network is None:
            raise ValueError(
                "This result was made without a model (by hand), so a method's name alone "
                "cannot be switched to: pass the model, result.with_method(model.with_method"
                f"({method!r}))."
            )
        return self.network.with_method(method, **options)


class SwitchOne:
    """``with_method`` for one image's view (:class:`~.result.CamResult`)."""

    def with_method(self, method: Any, **options: Any) -> Any:
        """This image under ``method`` (see :meth:`SwitchMethods.with_method`): no forward pass."""
        return type(self).view(self._batch.with_method(method, **options), self._index)
