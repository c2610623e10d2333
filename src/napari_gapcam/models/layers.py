"""Any layer: a network split at a named module's output (its maps) instead of its last maps.

The network is traced with ``torch.fx``, the named module kept whole (a leaf of the trace);
``features`` is the graph up to and including that module's output, ``head`` the rest with
that output as its input, so ``head(features(x))`` is the network's own forward. Both share the
network's parameters. A layer is a cut only where nothing computed before it is read after it
(a skip connection around it is not): such a layer is refused, saying so.

After a mid layer the head is not a global average pooling and one dense layer: the CAM is not
exact there (``fc`` is None) and ``method="auto"`` gives Grad-CAM. Whether a head *is* GAP +
dense is probed (:func:`~.heads.is_gap_linear`), so ResNet's ``layer4`` keeps the exact CAM.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from ..engine._torch import nn, torch
from ..engine.words import ParameterError, Term
from .heads import Split, as_linear, describe_calls, is_gap_linear

fx = torch.fx
PURE = ("get_attr", "call_function", "call_method")  # copied into the head when read there


class LayerError(ParameterError):
    """A ``layer`` that is no module of the network, or no place to split it."""


def expand_stages(network: nn.Module, patterns: Sequence[str]) -> tuple[str, ...]:
    """Module names of ``network`` matching ``patterns`` in order (``features.*``: each child
    of ``features``; a ``*`` stays within one dotted part)."""
    names = [name for name, _ in network.named_modules() if name]
    found: list[str] = []
    for pattern in patterns:
        parts = pattern.split(".")
        for name in names:
            pieces = name.split(".")
            if len(pieces) == len(parts) and all(map(fnmatchcase, pieces, parts)):
                if name not in found:
                    found.append(name)
    return tuple(found)


def unknown_layer(layer: str, arch: str, stages: Sequence[str]) -> LayerError:
    listed = ", ".join(stages) if stages else "(none listed)"
    return LayerError(
        Term("layer", layer),
        f" is not a module of {arch}. Its stages: {listed} (or any name of the network's "
        "named_modules(); leave it unset for the last maps).",
    )


class _Tracer(fx.Tracer):
    """symbolic tracing that keeps the module ``cut`` (and ``leaves``, and the modules named
    ``keep``) whole."""

    def __init__(
        self, cut: str, leaves: tuple[type, ...], functions: tuple = (), keep: Sequence[str] = ()
    ) -> None:
        super().__init__(autowrap_functions=functions)
        self.cut, self.leaves, self.keep = cut, leaves, frozenset(keep)

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        if name == self.cut or name in self.keep:
            return True
        if self.leaves and isinstance(module, self.leaves):
            return True
        return super().is_leaf_module(module, name)


def _in_place(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` may write into its input (``ReLU(inplace=True)``, ``x.add_``, ``+=``)."""
    if node.op == "call_module":
        return bool(getattr(modules.get(str(node.target)), "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).endswith("__")
    name = getattr(node.target, "__name__", "")
    return bool(node.kwargs.get("inplace")) or (name.startswith("i") and name[1:] in _OPERATORS)


_OPERATORS = ("add", "sub", "mul", "truediv", "floordiv", "and", "or", "xor", "pow", "matmul")


def _not_a_cut(layer: str, arch: str, why: str, stages: Sequence[str]) -> LayerError:
    listed = ", ".join(stages) if stages else "(none listed)"
    return LayerError(Term("layer", layer), f" cannot split {arch}: {why}. Its stages: {listed}.")


def cut_graphs(
    network: nn.Module,
    layer: str,
    arch: str,
    stages: Sequence[str] = (),
    leaves: tuple[type, ...] = (),
    functions: tuple = (),
    nhwc: bool = False,
    keep: Sequence[str] = (),
) -> tuple[fx.GraphModule, fx.GraphModule]:
    """``(features, head)``: image → ``layer``'s output, and that output → the logits.

    ``leaves`` / ``functions``: modules and functions traced whole (timm's no-trace lists);
    ``nhwc``: the layer gives N×h×w×K (Swin), permuted to N×K×h×w for the maps and back;
    ``keep``: more module names traced whole (one call each in the graphs: LayerCAM's taps).
    """
    modules = dict(network.named_modules())
    if layer not in modules or not layer:
        raise unknown_layer(layer, arch, stages)
    network.eval()
    try:
        graph = _Tracer(layer, leaves, functions, keep).trace(network)
    except Exception as error:
        why = f"torch.fx cannot trace it ({type(error).__name__}: {str(error)[:200]})"
        raise _not_a_cut(layer, arch, why, stages) from error
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(calls) != 1:
        why = "it runs inside a module traced whole" if not calls else "it is called twice"
        raise _not_a_cut(layer, arch, why, stages)
    [cut] = calls
    nodes = list(graph.nodes)
    index = nodes.index(cut)

    features = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes[: index + 1]:
        env[node] = features.node_copy(node, env.__getitem__)
    out = env[cut]
    if nhwc:
        out = features.call_method("permute", (out, 0, 3, 1, 2))
    features.output(out)

    head = fx.Graph()
    maps = head.placeholder("maps")
    if any(_in_place(user, modules) for user in cut.users):
        maps = head.call_method("clone", (maps,))  # the caller's maps stay as they are
    if nhwc:
        maps = head.call_method("permute", (maps, 0, 2, 3, 1))
    moved: dict[fx.Node, fx.Node] = {cut: maps}
    before = set(nodes[:index])

    def arg(node: fx.Node) -> fx.Node:
        if node not in moved:
            if node not in before or node.op not in PURE:
                why = f"the network reads {node.name}, computed before {layer}, after it"
                raise _not_a_cut(layer, arch, why, stages)
            moved[node] = head.node_copy(node, arg)  # a constant or a parameter: copied
        return moved[node]

    for node in nodes[index + 1 :]:
        moved[node] = head.node_copy(node, arg)
    return _module(network, features), _module(network, head)


def _module(network: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """A module running ``graph`` on ``network``'s own layers (shared, not copied)."""
    module = fx.GraphModule(network, graph)
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    return module


def split_at(
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
    """``network`` split at ``layer``'s output (:func:`cut_graphs`); ``fc`` is ``classifier``
    where the head is a global average pooling and it (probed on a blank ``probe_size``²
    input's maps), else None (the CAM is then refused)."""
    features, head = cut_graphs(network, layer, arch, stages, leaves, functions, nhwc)
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with torch.no_grad():
        probe = features(torch.zeros(1, 3, probe_size, probe_size, device=device))
    if not isinstance(probe, torch.Tensor) or probe.ndim != 4:
        shape = "×".join(map(str, probe.shape)) if isinstance(probe, torch.Tensor) else "a tuple"
        raise _not_a_cut(layer, arch, f"it gives {shape}, not spatial maps N×K×h×w", stages)
    fc = as_linear(classifier) if classifier is not None else None
    if fc is not None and not is_gap_linear(head, classifier, probe.shape[1]):
        fc = None
    calls = describe_calls(head, probe).split(" → ")
    shown = " → ".join(calls if len(calls) <= 4 else ["…", *calls[-3:]])
    description = f"{arch}'s rest after {layer} ({len(calls)} layers: {shown})"
    return Split(features, head, fc, description)
