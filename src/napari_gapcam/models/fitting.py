"""Fitting a file's tensors to a network: which dict, which key prefix, then one clear error.

Wrappers add a prefix to every key: ``module.`` (DataParallel), ``_orig_mod.``
(``torch.compile``), ``model.`` (a Lightning module's attribute), ``backbone.``, or several at
once. The prefix kept is the one that makes the most keys match the network's own, so no list
of prefixes needs to be known; keys outside it (a loss's buffers, a second head) are dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import NamedTuple

from ..engine._torch import nn
from .checkpoints import Checkpoint, StateDict
from .errors import WeightsError

MAX_PREFIX_PARTS = 3  # e.g. "model.module._orig_mod."
FITS = 0.9  # a dict whose stripped keys cover this share of the network's is taken at once


class Found(NamedTuple):
    """The state dict found in a checkpoint for a network, and how it was found."""

    state_dict: StateDict
    where: str  # "" (the file itself), "state_dict", "model", …
    prefix: str  # the prefix stripped from every key, "" if none

    def describe(self) -> str:
        parts = [f"under {self.where!r}"] if self.where else []
        parts += [f"prefix {self.prefix!r} removed"] if self.prefix else []
        return f" ({', '.join(parts)})" if parts else ""


def strip_prefix(tensors: StateDict, expected: Collection[str]) -> tuple[StateDict, str, int]:
    """The tensors with the key prefix removed that matches the most ``expected`` keys.

    Returns ``(state dict, prefix, matching keys)``; with a prefix, keys outside it are dropped.
    """
    wanted = set(expected)
    scores: dict[str, int] = {"": 0}  # prefix → keys that, without it, the network has
    for key in tensors:
        parts = key.split(".")
        for n in range(min(len(parts) - 1, MAX_PREFIX_PARTS) + 1):
            prefix = "".join(part + "." for part in parts[:n])
            if key[len(prefix) :] in wanted:
                scores[prefix] = scores.get(prefix, 0) + 1
    best = max(sorted(scores, key=len), key=scores.__getitem__)  # ties: the shortest prefix
    score = scores[best]
    if not best or score == 0:
        return tensors, "", scores[""]
    n = len(best)
    stripped = {k[n:]: v for k, v in tensors.items() if k.startswith(best)}
    return with_metadata(stripped, tensors, best), best, score


def with_metadata(new: dict, old: dict, prefix: str = "") -> dict:
    """``new`` with ``old``'s per-module versions (``_metadata``), ``prefix`` removed: layers
    whose layout changed between versions (mnasnet, batch norms) read old files by them."""
    metadata = getattr(old, "_metadata", None)
    if metadata is None:
        return new
    kept = OrderedDict()
    for key, value in metadata.items():
        if key == prefix[:-1]:
            kept[""] = value
        elif key.startswith(prefix):
            kept[key[len(prefix) :]] = value
    new = OrderedDict(new)
    new._metadata = kept  # type: ignore[attr-defined]
    return new


def find_state_dict(checkpoint: Checkpoint, expected: Collection[str]) -> Found:
    """The checkpoint's dict of tensors that fits ``expected`` keys best, its prefix removed."""
    best: tuple[int, Found] | None = None
    for where, tensors in checkpoint.candidates():
        state_dict, prefix, score = strip_prefix(tensors, expected)
        found = Found(state_dict, where, prefix)
        if score >= FITS * len(expected):
            return found
        if best is None or score > best[0]:
            best = (score, found)
    assert best is not None  # a Checkpoint holds at least one dict of tensors
    return best[1]


def num_classes(
    state_dict: StateDict, key: str, label: str, what: str, expected: Collection[str] = ()
) -> int:
    """Rows of the dense layer ``key`` (e.g. ``"fc.weight"``) of a state dict."""
    weight = state_dict.get(key)
    if weight is None or weight.ndim not in (2, 4):
        wanted = f"; it expects keys like {_some(list(expected))}" if expected else ""
        raise WeightsError(
            f"{label} has no dense layer {key!r}: it is not the state dict of {what}. "
            f"The file has keys like {_some(state_dict)}{wanted}."
        )
    return int(weight.shape[0])


def shapes(network: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in network.state_dict().items()}


def fit(
    network: nn.Module,
    state_dict: StateDict,
    arch: str,
    label: str,
    guess: Callable[[StateDict], str | None] | None = None,
) -> None:
    """Load the state dict, turning key or shape mismatches into one clear error.

    ``guess`` names the architecture the state dict does fit, for the hint.
    """
    own, original = network.state_dict(), state_dict
    counter = "num_batches_tracked"  # batch-norm step counters: absent from old files, unused
    counters = {
        k: own[k]
        for k in own
        if k.endswith(counter)
        and k not in state_dict
        and k.replace(counter, "running_mean") in state_dict
    }
    state_dict = with_metadata({**state_dict, **counters}, state_dict)
    expected, given = shapes(network), {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    wrong = [key for key in expected if key in given and expected[key] != given[key]]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            key = wrong[0]
            problems.append(
                f"{len(wrong)} shape mismatches (e.g. {key}: {arch} expects "
                f"{expected[key]}, the file has {given[key]})"
            )
        found = guess(original) if guess is not None else None
        hint = f" It looks like a {found} state dict: choose {found!r}." if found else ""
        keys = (
            f" The file has keys like {_some(state_dict)}; {arch} expects keys like "
            f"{_some(expected)}."
            if missing
            else ""
        )
        raise WeightsError(
            f"The weights {label} do not fit {arch}: {'; '.join(problems)}.{hint}{keys}"
        )
    converted = OrderedDict(
        (k, v.float() if v.is_floating_point() else v) for k, v in state_dict.items()
    )
    # per-module versions (mnasnet needs them): the file's, else the current ones
    metadata = getattr(state_dict, "_metadata", None) or own._metadata
    converted._metadata = metadata  # type: ignore[attr-defined]
    network.load_state_dict(converted)


def _some(mapping: Collection[str], n: int = 4) -> str:
    keys = list(mapping)
    return ", ".join(keys[:n]) + (", …" if len(keys) > n else "")
