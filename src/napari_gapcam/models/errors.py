"""The engine's errors: each says what is wrong and the way out."""

from __future__ import annotations

from ..engine.words import Worded


class WeightsError(Worded, RuntimeError):
    """Weights that cannot be found, read or fitted to the architecture."""


class UnsupportedModelError(Worded, ValueError):
    """A network this plugin cannot explain: no spatial maps before its head, or unknown."""
