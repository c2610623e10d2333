"""The methods: one small class each on :class:`~.base.Method`, one row each in :data:`METHODS`.

A row says what its method allows; every gate of the engine, the command line and the widget
reads the row, never a method's name:

- ``exact``: the map is the network's own account of the logit (a GAP + dense head: by the GAP
  identity the map's mean plus the bias is the logit);
- ``tiles``: maps of tiles stitch into one map of a whole slide (each cell's value depends on
  that cell's maps and on weights that do not change from tile to tile on a GAP + dense head:
  no per-tile normalisation, score ratio or principal axis);
- ``decomposition``: the map is a weighted sum of channels (``result.contributions``);
- ``class_free``: one map for every class;
- ``needs_dense``: it needs a head that is a global average pooling and one dense layer;
- ``head_only``: its maps need only the kept maps and the head (no image, no forward pass): a
  finished result switches to it at no forward pass (``result.with_method``);
- ``needs_input``: it reruns the network on the image's input (Score-CAM), so a result keeps
  each image's normalised input tensor beside its maps;
- ``cost``: what one map costs beyond the forward pass, in words;
- ``options``: the parameters it takes (``with_method(name, **options)``,
  ``load_model(..., method=name, **options)``); :func:`check_options` refuses any other.

Adding a method is a file holding its class (the formula in its docstring) and one row here.
This module imports no torch: the widget and ``gapcam --help`` read the table at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module

from ..words import ParameterError, Term

AUTO = "auto"  # the exact method where the head allows it, else the first general one


@dataclass(frozen=True)
class MethodInfo:
    """One row of the table: a method's name, its class and what it allows."""

    name: str  # lower case: load_model(method=...), --method, the widget's list
    label: str  # as people write it: "CAM", "Grad-CAM"
    target: str  # "module:Class" in this package
    cost: str
    exact: bool = False
    tiles: bool = False
    decomposition: bool = False
    class_free: bool = False
    needs_dense: bool = False
    head_only: bool = False
    needs_input: bool = False
    options: tuple[str, ...] = ()

    def load(self) -> type:
        """The method's class, a :class:`~.base.Method` (imports torch)."""
        module, _, name = self.target.partition(":")
        return getattr(import_module(f".{module}", __name__), name)

    def describe(self) -> str:
        """``"Grad-CAM: one backward pass through the head"``."""
        return f"{self.label}: {self.cost}"


# fmt: off
METHODS: dict[str, MethodInfo] = {row.name: row for row in (
    MethodInfo("cam", "CAM", "cam:Cam", "none (a weighted sum of the kept maps)", exact=True, tiles=True, decomposition=True, needs_dense=True, head_only=True),
    MethodInfo("gradcam", "Grad-CAM", "gradcam:GradCam", "one backward pass through the head", tiles=True, head_only=True),
    MethodInfo("gradcam++", "Grad-CAM++", "gradcampp:GradCamPP", "one backward pass through the head", head_only=True),
    MethodInfo("xgradcam", "XGrad-CAM", "xgradcam:XGradCam", "one backward pass through the head", tiles=True, head_only=True),
    MethodInfo("hirescam", "HiResCAM", "hirescam:HiResCam", "one backward pass through the head", tiles=True, head_only=True),
    MethodInfo("layercam", "LayerCAM", "layercam:LayerCam", "one backward pass through the head", tiles=True, head_only=True, options=("layers",)),
    MethodInfo("scorecam", "Score-CAM", "scorecam:ScoreCam", "one forward pass per channel, batched; max_channels=N keeps the N most active", needs_input=True, options=("max_channels", "batch_size", "precision")),
    MethodInfo("ablationcam", "Ablation-CAM", "ablationcam:AblationCam", "head passes only, batched (analytic on a GAP + dense head)", head_only=True, options=("batch_size",)),
    MethodInfo("eigencam", "EigenCAM", "eigencam:EigenCam", "one SVD", class_free=True, head_only=True),
)}
# fmt: on


def method_names() -> tuple[str, ...]:
    """``"auto"`` and every method's name, in the table's order."""
    return (AUTO, *METHODS)


def method_info(name: str) -> MethodInfo:
    """The row of ``name``; an unknown name is an error listing the known ones."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}: use one of {', '.join(method_names())}.")
    return METHODS[name]


def resolve(name: str, dense: bool, head: str = "the head") -> MethodInfo:
    """The method a network uses: ``name``, or for ``"auto"`` the first exact method its head
    allows (``dense``: a GAP + dense head), else the first general one."""
    if name == AUTO:
        allowed = [row for row in METHODS.values() if dense or not row.needs_dense]
        return next((row for row in allowed if row.exact), allowed[0])
    row = method_info(name)
    if row.needs_dense and not dense:
        general = next(r.name for r in METHODS.values() if not r.needs_dense)
        raise ParameterError(
            Term("method", name),
            f" needs a head that is a global average pooling and one dense layer; {head} is "
            "not. Use ",
            Term("method", general),
            " (or 'auto', which picks it).",
        )
    return row


def check_options(
    name: str, options: Iterable[str], caller: str = "", own: Iterable[str] = ()
) -> None:
    """Refuse the options (parameter names) that method ``name`` does not take (its row's
    ``options``; ``"auto"`` takes none), naming them, the ones it takes and the methods that
    take them; one no method takes is said not to be one of ``caller``'s ``own`` parameters
    either (a typo)."""
    takes = () if name == AUTO else method_info(name).options
    unknown = [option for option in options if option not in takes]
    if not unknown:
        return
    names = ", ".join(repr(option) for option in unknown)
    if takes:
        said = f" has no option {names}: its options are {', '.join(takes)}."
    else:
        said = f" takes no parameters; got {names}."
    hints: list = []
    for option in unknown:
        rows = [row for row in METHODS.values() if option in row.options]
        for row in rows:
            hints += [f" {option}= is {row.label}'s: ", Term("method", row.name), "."]
        if not rows and caller:
            hints.append(f" {option!r} is no method's option, nor {caller}'s ({', '.join(own)}).")
    raise ParameterError(Term("method", name), said, *hints)


def taken_options(
    name: str, options: Iterable[tuple[str, object]]
) -> tuple[tuple[str, object], ...]:
    """The ``(option, value)`` pairs of ``options`` that method ``name`` takes (its row's
    ``options``; ``"auto"`` takes none), in their order: one setting (Score-CAM's
    ``max_channels``, say) given for several methods reaches those that take it."""
    takes = () if name == AUTO else method_info(name).options
    return tuple((option, value) for option, value in options if option in takes)


def takes(name: str, option: str) -> bool:
    """Whether method ``name`` takes ``option`` (its row's ``options``; ``"auto"`` none)."""
    return bool(taken_options(name, [(option, None)]))
