"""What every result shares: naming a class, ranking classes, and scaling raw maps to [0, 1].

A raw map (the method's ``M_c``, at the feature grid) is shown upsampled bilinearly
(``align_corners=False``) to a grid over the image and scaled to [0, 1]:

- ``"each"``: min-max, each map on its own (where the class looks, however unlikely it is);
- ``"shared"``: by one range per class over several images (images of a stack compare);
- ``"relative"``: each map's min-max times ``p_c / p_top``, the class's probability on that
  image over the image's top class's: the top class at full heat, a class the network does not
  see (p ≈ 0) cool instead of stretched to full heat (plain ``p_c`` would leave a 1000-class
  model's uncertain best guess, or a random model's, all but invisible);
- ``"raw"``: no scaling: the method's map itself, upsampled. Classes compare on it: by the GAP
  identity a CAM's mean over the image is the class's logit (less its bias), so its mean over an
  object is that object's share of the logit, per pixel (a per-class min-max is not comparable:
  it stretches every class's map, an absent one's too, to [0, 1]).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

from ._torch import F, torch
from .words import Term, Worded

ClassRef = int | str


class UnknownClassError(Worded, KeyError):
    """A class name the model does not have (the message lists the closest names)."""


SCALES = ("each", "shared", "relative", "raw")  # see the module docstring


def relative(probabilities: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """``p_c / p_top`` of each image (float32, n): ``probabilities`` n×C, ``rows`` n classes."""
    p = np.asarray(probabilities, np.float64)
    return (p[np.arange(len(p)), list(rows)] / p.max(1)).astype(np.float32)


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}: use one of {', '.join(SCALES)}.")


def upsample(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) upsampling of n maps (n×h×w) to ``size`` (float32)."""
    up = F.interpolate(raw[:, None].float(), size=size, mode="bilinear", align_corners=False)
    return up[:, 0]


def normalise_each(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) upsampling of n maps (n×h×w) to ``size``, then min-max
    each to [0, 1].

    A constant map (up to float rounding), or a 1-pixel target, gives zeros, never NaN.
    """
    up = upsample(raw, size)
    low = up.amin(dim=(1, 2), keepdim=True)
    span = up.amax(dim=(1, 2), keepdim=True) - low
    flat = ~(span > 1e-6 * raw.abs().amax(dim=(1, 2), keepdim=True).float())
    span = torch.where(flat, float("inf"), span)  # (x − low) / inf = 0; no mask indexing,
    # which would wait for a GPU
    return up.sub_(low).div_(span)


def normalise_by(raw: torch.Tensor, size: tuple[int, int], ranges: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling of n maps to ``size``, each scaled by its own ``(low, high)`` row of
    ``ranges`` (n×2) and clipped to [0, 1] (zeros where a range is flat)."""
    up = upsample(raw, size)
    low, span = ranges[:, 0, None, None], (ranges[:, 1] - ranges[:, 0])[:, None, None]
    flat = ~(span > 1e-6 * ranges.abs().amax(dim=1)[:, None, None])
    return up.sub_(low).div_(torch.where(flat, float("inf"), span)).clamp_(0, 1)


def upsample_and_normalise(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """:func:`normalise_each` of one h×w map."""
    return normalise_each(raw[None], size)[0]


def class_index(class_names: Sequence[str], c: ClassRef) -> int:
    """Index of a class given by index (int) or by name (exact, else case-insensitive)."""
    count = len(class_names)
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        index = int(c)
        if not 0 <= index < count:
            raise IndexError(
                f"Class index {index} is out of range: the model has {count} classes "
                f"(0…{count - 1})."
            )
        return index
    if isinstance(c, str):
        if c in class_names:
            return list(class_names).index(c)
        lowered = [name.lower() for name in class_names]
        if c.lower() in lowered:
            return lowered.index(c.lower())
        close = difflib.get_close_matches(c, class_names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownClassError(
            f"Unknown class name {c!r}.{hint} ",
            Term("class", note="See result.class_names for all."),
        )
    raise TypeError(f"A class is an index (int) or a name (str), got {type(c).__name__}.")


def top_classes(
    probabilities: np.ndarray, class_names: Sequence[str], k: int
) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes as ``(index, name, probability)``, best first."""
    order = np.argsort(-probabilities, kind="stable")[: max(0, k)]
    return [(int(i), class_names[i], float(probabilities[i])) for i in order]
