"""``gapcam evaluate --true-masks``: mask images (nonzero = the object) for PxAP, named by a folder
or a glob (with ``--recursive`` the folder's subfolders too) and matched to the inputs as the true
boxes are (:mod:`.relative_match`): a mask is for the input whose stem it has, or its stem followed
by a label suffix (``site1_masks.png``, :data:`~.labels.LABEL_SUFFIXES`), in the same subfolder
(``masks/B02/site1_masks.png`` ↔ ``plate/B02/site1.png``), else by that stem alone when one input
alone has it. Mask files are never inputs. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .inputs import InputError, expand
from .labels import label_key
from .relative_match import Keys, ambiguity, input_keys, match_names


def find_masks(argument: str, recursive: bool = False) -> dict[Path, Keys]:
    """Every mask file ``argument`` names → its keys (its subfolder and the stem of the input it
    is for); :class:`InputError` when it names none, or two masks for one input."""
    found = expand([argument], recursive=recursive)
    if found.problems or not found.paths:
        reason = found.problems[0][1] if found.problems else "no image files"
        raise InputError(f"--true-masks {argument}: {reason}")
    masks: dict[Path, Keys] = {}
    seen: dict[str, Path] = {}
    for path in found.paths:
        folder = found.subfolders.get(path, "")
        key = f"{folder}/{label_key(path)}" if folder else label_key(path)
        if key in seen:
            raise InputError(
                f"--true-masks {argument}: {seen[key].name} and {path.name} are both for the "
                f"input {key}: keep one"
            )
        seen[key], masks[path] = path, (key, key)
    return masks


def match_masks(
    inputs: Sequence[Path], masks: dict[Path, Keys], subfolders: Mapping[Path, str] | None = None
) -> dict[Path, Path]:
    """Each input → its mask; :class:`InputError` when an input has none (PxAP needs one per
    image) or a mask's name matches several inputs."""
    keys = input_keys(inputs, subfolders)
    matched = match_names(keys, masks)
    problem = ambiguity(matched, keys)
    if problem is not None:
        raise InputError(f"--true-masks: {problem}")
    missing = [path for path in inputs if path not in matched.found]
    if missing:
        raise InputError(
            f"--true-masks: {len(missing)} input(s) have no mask (e.g. {keys[missing[0]][0]}); "
            "PxAP needs one per image"
        )
    return {path: matched.found[path] for path in inputs}
