"""LayerCAM's ``layers=[…]``: the head after a split that also gives later layers' outputs.

A network split at ``layer`` (:func:`~.layers.split_at`) is traced again with the later layers
kept whole (one call each in the head's graph), and the head's graph returns, beside the
logits, each of their outputs: ``maps → (logits, A^l …)``, on the network's own modules (shared,
not copied). Where a layer's output is then changed in place (``ReLU(inplace=True)``), what
follows reads a copy, so the output kept stays as the layer gave it. The engine gets this as
:class:`~napari_gapcam.engine.methods.layercam_fusion.Taps` (``network.taps(layers)``); it
never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from operator import is_not
from typing import Any

from ..engine._torch import nn
from ..engine.methods.layercam_fusion import Taps
from ..engine.words import ParameterError, Term
from .heads import Split
from .layers import LayerError, _in_place, cut_graphs, split_at


def layer_names(layers: Any) -> tuple[str, ...]:
    """``layers`` as names: a list, or one string (``"layer3,layer4"``); distinct, not empty."""
    if isinstance(layers, str):
        layers = [name.strip() for name in layers.split(",")]
    names = tuple(layers) if isinstance(layers, (list, tuple)) else ()
    named = all(isinstance(name, str) and name for name in names)
    if not names or not named or len(set(names)) < len(names):
        raise ParameterError(
            Term("layers", layers),
            " must name one or more distinct modules of the network (a list, or 'layer3,layer4').",
        )
    return names


def _listed(stages: Sequence[str]) -> str:
    return ", ".join(stages) if stages else "(none listed)"


def check_known(network: nn.Module, names: Sequence[str], arch: str, stages: Sequence[str]) -> None:
    """Refuse names of ``names`` that are no module of ``network``, listing its stages."""
    modules = dict(network.named_modules())
    bad = [name for name in names if name not in modules]
    if bad:
        what = "is not a module" if len(bad) == 1 else "are not modules"
        raise LayerError(
            Term("layers", list(names)),
            f": {', '.join(bad)} {what} of {arch}. Its stages: {_listed(stages)} (or any name "
            "of the network's named_modules()).",
        )


def earliest(network: nn.Module, layers: Any, arch: str, stages: Sequence[str]) -> str:
    """The first of ``layers`` in the network's module order: where it is split for them."""
    names = layer_names(layers)
    check_known(network, names, arch, stages)
    order = {name: i for i, (name, _) in enumerate(network.named_modules())}
    return min(names, key=order.__getitem__)


def split_with_taps(
    network: nn.Module,
    layer: str,
    arch: str,
    classifier: nn.Module | None,
    stages: Sequence[str] = (),
    probe_size: int = 224,
    *,
    leaves: tuple[type, ...] = (),
    functions: tuple = (),
    nhwc: bool = False,
) -> Split:
    """:func:`~.layers.split_at`, its ``tap`` set: the network then fuses LayerCAM's layers."""
    args = (network, layer, arch, classifier, stages, probe_size)
    split = split_at(*args, leaves=leaves, functions=functions, nhwc=nhwc)
    return split._replace(tap=Tapper(network, layer, arch, stages, leaves, functions, nhwc))


class Tapper:
    """``network.taps(layers)`` of a network split at ``layer`` (made once per ``layers``)."""

    def __init__(
        self,
        network: nn.Module,
        layer: str,
        arch: str,
        stages: Sequence[str] = (),
        leaves: tuple[type, ...] = (),
        functions: tuple = (),
        nhwc: bool = False,
    ) -> None:
        self.network, self.layer, self.arch, self.stages = network, layer, arch, tuple(stages)
        self.leaves, self.functions, self.nhwc = leaves, functions, nhwc
        self._made: dict[tuple[str, ...], Taps] = {}

    def __call__(self, layers: Any) -> Taps:
        names = layer_names(layers)
        if names not in self._made:
            self._made[names] = self._taps(names)
        return self._made[names]

    def _refuse(self, names: Sequence[str], bad: Sequence[str], why: str) -> LayerError:
        return LayerError(
            Term("layers", list(names)),
            f": {', '.join(bad)} {why}. The maps are {self.layer}'s output: the layers must be "
            "it or modules that run after it (load the model with ",
            Term("layers", list(names)),
            " and no ",
            Term("layer"),
            f" to split it at the earliest). Stages of {self.arch}: {_listed(self.stages)}.",
        )

    def _taps(self, names: tuple[str, ...]) -> Taps:
        check_known(self.network, names, self.arch, self.stages)
        later = [name for name in names if name != self.layer]
        around = [name for name in later if self.layer.startswith(name + ".")]
        if around:
            raise self._refuse(names, around, "holds the split's layer")
        args = (self.network, self.layer, self.arch, self.stages, self.leaves, self.functions)
        features, head = cut_graphs(*args, nhwc=self.nhwc, keep=later)
        called = [n for n in head.graph.nodes if n.op == "call_module" and n.target in later]
        before = {n.target for n in features.graph.nodes if n.op == "call_module"}
        early = [name for name in later if name in before]
        if early:
            raise self._refuse(names, early, "runs before the split")
        targets = [str(n.target) for n in called]
        twice = [name for name in later if targets.count(name) > 1]
        if twice:
            raise self._refuse(names, twice, "is called more than once")
        hidden = [name for name in later if name not in targets]
        if hidden:
            raise self._refuse(names, hidden, "runs inside a module traced whole")
        modules = dict(self.network.named_modules())
        graph = head.graph
        for node in called:  # what follows reads a copy where it writes in place
            if any(_in_place(user, modules) for user in node.users):
                with graph.inserting_after(node):
                    copy = graph.call_method("clone", (node,))
                node.replace_all_uses_with(copy, delete_user_cb=partial(is_not, copy))
        output = next(n for n in graph.nodes if n.op == "output")
        output.args = ((output.args[0], *called),)
        graph.lint()
        head.recompile()
        own = self.layer in names
        layers = ((self.layer,) if own else ()) + tuple(targets)
        return Taps(head.eval(), layers, own, self.nhwc)
