"""Synthetic localization data with known boxes: one shape per cluttered, non-square image.

Each image holds exactly one object of :data:`CLASS_NAMES` (random size, aspect ratio,
rotation, position and fill) over a textured background with distractors that belong to no
class (scribbles, lumpy blobs, dot clusters, thin bars). The true box is the tight bounding
box of the object's pixels. numpy, scipy and scikit-image only: no torch import.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import points_in_poly

CLASS_NAMES: tuple[str, ...] = ("disk", "rectangle", "triangle", "ring", "cross", "star")

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open, in pixels
Sample = tuple[np.ndarray, int, Box]

SIDE_RANGE = (160, 320)  # each image side, in pixels (inclusive)
SCALE_RANGE = (0.28, 0.6)  # object size as a fraction of the image's short side
MAX_ASPECT = 1.5  # object stretch (long / short axis) before rotation


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), -radii * np.sin(angles)], axis=1)


_TRIANGLE = np.array([[0.0, -1.0], [1.0, 0.8], [-1.0, 0.8]])
_STAR = _star()


def _inside(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Membership of the canonical shape (in the [-1, 1]² square) at points ``(u, v)``."""
    if name == "disk":
        return u**2 + v**2 <= 1.0
    if name == "rectangle":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if name == "ring":
        r2 = u**2 + v**2
        return (r2 <= 1.0) & (r2 >= rng.uniform(0.45, 0.62) ** 2)
    if name == "cross":
        w = rng.uniform(0.26, 0.36)
        au, av = np.abs(u), np.abs(v)
        return ((au <= w) & (av <= 1.0)) | ((av <= w) & (au <= 1.0))
    polygon = _TRIANGLE if name == "triangle" else _STAR
    points = np.stack([u.ravel(), v.ravel()], axis=1)
    return points_in_poly(points, polygon).reshape(u.shape)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to [0, 1] (per call)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    low, high = field.min(), field.max()
    return (field - low) / (high - low + 1e-12)


def _random_color(rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
    """An RGB colour in [0, 1], at least 0.35 (L2) from ``avoid`` when given."""
    for _ in range(50):
        color = rng.uniform(0.0, 1.0, 3)
        if avoid is None or np.linalg.norm(color - avoid) >= 0.35:
            return color
    return 1.0 - avoid


def _background(rng: np.random.Generator, h: int, w: int, clutter: float = 1.0) -> np.ndarray:
    """Greyish mottled low-frequency noise, a gradient and sometimes a faint grating.

    ``clutter`` scales every variation: 0 gives a flat mid-grey.
    """
    c0 = 0.5 + clutter * (rng.uniform(-0.3, 0.3) + rng.uniform(-0.1, 0.1, 3))  # greyish, tinted
    c1 = c0 + clutter * rng.uniform(-0.25, 0.25, 3)
    mix = _smooth_noise(rng, (h // 4 + 1, w // 4 + 1), rng.uniform(1.5, 6.0))
    mix = ndimage.zoom(mix, (h / mix.shape[0], w / mix.shape[1]), order=1)[:h, :w]
    image = c0 + (c1 - c0) * mix[..., None]
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * yy + np.sin(angle) * xx
    image += clutter * rng.uniform(-0.15, 0.15) * ramp[..., None]
    if rng.random() < 0.4:
        period, theta = rng.uniform(6, 30), rng.uniform(0, np.pi)
        phase = (np.cos(theta) * yy + np.sin(theta) * xx) * max(h, w) / period
        amplitude = clutter * rng.uniform(0.03, 0.12) * rng.uniform(-1, 1, 3)
        image += amplitude * np.sin(2 * np.pi * phase)[..., None]
    return image


def _paint(image: np.ndarray, mask: np.ndarray, color: np.ndarray, y: int, x: int) -> None:
    """Paint ``color`` where ``mask`` (placed with its corner at ``(y, x)``) is set, clipped."""
    h, w = image.shape[:2]
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + mask.shape[0], h), min(x + mask.shape[1], w)
    if y1 <= y0 or x1 <= x0:
        return
    sub = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    image[y0:y1, x0:x1][sub] = color


def _disc_or_capsule(
    image: np.ndarray, color: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float
) -> None:
    """Paint the points within ``radius`` of the segment ``a``–``b`` (a disc when a == b)."""
    h, w = image.shape[:2]
    low = np.maximum(np.floor(np.minimum(a, b) - radius), 0).astype(int)
    high = np.minimum(np.ceil(np.maximum(a, b) + radius) + 1, (h, w)).astype(int)
    if np.any(high <= low):
        return
    yy, xx = np.mgrid[low[0] : high[0], low[1] : high[1]]
    d = b - a
    t = np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
    near = (yy - a[0] - t * d[0]) ** 2 + (xx - a[1] - t * d[1]) ** 2 <= radius**2
    image[low[0] : high[0], low[1] : high[1]][near] = color


def _distractor(rng: np.random.Generator, image: np.ndarray, short: int) -> None:
    """Draw one object of no class: a scribble, a lumpy blob, a dot cluster or a thin bar."""
    h, w = image.shape[:2]
    color = _random_color(rng)
    kind = rng.integers(4)
    if kind in (0, 3):  # scribble (random-walk polyline) or one thin straight bar
        segments = 1 if kind == 3 else int(rng.integers(2, 5))
        thickness = rng.uniform(1.0, 2.5) if kind == 0 else rng.uniform(1.0, 2.0)
        point, angle = rng.uniform((0, 0), (h, w)), rng.uniform(0, 2 * np.pi)
        for _ in range(segments):
            angle += rng.uniform(-np.pi / 2, np.pi / 2)  # gentle turns: no closed outlines
            end = point + rng.uniform(0.1, 0.35) * short * np.array([np.sin(angle), np.cos(angle)])
            _disc_or_capsule(image, color, point, end, thickness)
            point = end
    elif kind == 1:  # lumpy blob: thresholded fine noise under a soft round envelope
        size = int(rng.uniform(0.08, 0.2) * short) + 4
        noise = _smooth_noise(rng, (size, size), size / rng.uniform(5, 9))
        r = np.hypot(*np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j])
        mask = noise * (1.2 - r) > 0.35
        y, x = int(rng.integers(-size // 2, h)), int(rng.integers(-size // 2, w))
        _paint(image, mask, color, y, x)
    else:  # a cluster of small dots
        centre = rng.uniform((0, 0), (h, w))
        spread = rng.uniform(0.04, 0.12) * short
        for _ in range(int(rng.integers(4, 12))):
            dot = rng.normal(centre, spread)
            _disc_or_capsule(image, color, dot, dot, rng.uniform(1.5, 4.0))


def _object_mask(rng: np.random.Generator, label: int, short: int) -> np.ndarray:
    """The rasterised object (tight: no empty border rows or columns)."""
    size = rng.uniform(*SCALE_RANGE) * short  # nominal extent before rotation
    aspect = np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT)))
    half = size / 2 * np.array([np.sqrt(aspect), 1 / np.sqrt(aspect)])  # (along u, along v)
    angle = rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    reach = int(np.ceil(np.hypot(*half))) + 1
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1].astype(float)
    yy += rng.uniform(-0.5, 0.5)
    xx += rng.uniform(-0.5, 0.5)
    u = (cos * xx + sin * yy) / half[0]
    v = (-sin * xx + cos * yy) / half[1]
    mask = _inside(CLASS_NAMES[label], u, v, rng)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _object_fill(rng: np.random.Generator, shape: tuple[int, int], color: np.ndarray) -> np.ndarray:
    """Solid, noisy, striped or two-tone gradient fill, H×W×3 in [0, 1]."""
    h, w = shape
    kind = rng.integers(4)
    fill = np.broadcast_to(color, (h, w, 3)).copy()
    if kind == 1:
        fill += rng.uniform(0.1, 0.25) * (_smooth_noise(rng, (h, w), 1.5)[..., None] - 0.5)
    elif kind == 2:
        theta, period = rng.uniform(0, np.pi), rng.uniform(5, 14)
        yy, xx = np.mgrid[0:h, 0:w]
        stripes = (np.cos(theta) * yy + np.sin(theta) * xx) % period < period / 2
        fill[stripes] = np.clip(color + rng.uniform(-0.3, 0.3, 3), 0, 1)
    elif kind == 3:
        ramp = np.linspace(0, 1, w if rng.random() < 0.5 else h)
        ramp = ramp[None, :] if ramp.size == w else ramp[:, None]
        fill += (rng.uniform(-0.3, 0.3, 3) * ramp[..., None]).astype(fill.dtype)
    return fill


def make_sample(
    rng: np.random.Generator, size: tuple[int, int] | None = None, clutter: float = 1.0
) -> tuple[np.ndarray, int, Box]:
    """One image: (uint8 H×W×3 RGB, class index, tight true box ``(y0, x0, y1, x1)`` half-open).

    ``size`` fixes ``(H, W)``; by default each side is drawn from :data:`SIDE_RANGE`.
    ``clutter`` in [0, 1] scales the background variation and the number of distractors
    (1, the default, is the benchmark's distribution; lower values give a training curriculum).
    """
    return make_sample_with_mask(rng, size, clutter)[:3]


def make_sample_with_mask(
    rng: np.random.Generator, size: tuple[int, int] | None = None, clutter: float = 1.0
) -> tuple[np.ndarray, int, Box, np.ndarray]:
    """:func:`make_sample` (the same image for the same ``rng`` state) and the object's true
    mask (bool H×W), for pixel metrics (PxAP)."""
    h, w = size if size is not None else rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, 2)
    h, w = int(h), int(w)
    short = min(h, w)
    label = int(rng.integers(len(CLASS_NAMES)))
    image = _background(rng, h, w, clutter)
    for _ in range(round(clutter * rng.integers(3, 9))):
        _distractor(rng, image, short)

    mask = _object_mask(rng, label, short)
    mh, mw = mask.shape
    y0, x0 = int(rng.integers(0, h - mh + 1)), int(rng.integers(0, w - mw + 1))
    region = image[y0 : y0 + mh, x0 : x0 + mw]
    color = _random_color(rng, avoid=region.reshape(-1, 3).mean(0))
    fill = _object_fill(rng, (mh, mw), color)
    region[mask] = fill[mask]

    true_mask = np.zeros((h, w), bool)
    true_mask[y0 : y0 + mh, x0 : x0 + mw] = mask
    return _finish(rng, image), label, (y0, x0, y0 + mh, x0 + mw), true_mask


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Slight blur and sensor noise, then float [0, 1] → uint8."""
    image = ndimage.gaussian_filter(image.astype(np.float32), (rng.uniform(0.3, 0.8),) * 2 + (0,))
    image += rng.uniform(0.01, 0.06) * rng.standard_normal(image.shape, dtype=np.float32)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def iou(box_a: Box | None, box_b: Box | None) -> float:
    """Intersection over union of two half-open ``(y0, x0, y1, x1)`` boxes (0 if one is None)."""
    if box_a is None or box_b is None:
        return 0.0
    ih = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
    iw = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
    inter = max(ih, 0) * max(iw, 0)
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def make_dataset(n: int, seed: int) -> list[Sample]:
    """``n`` samples from :func:`make_sample`, deterministic for a ``seed``."""
    rng = np.random.default_rng(seed)
    return [make_sample(rng) for _ in range(n)]


def sample_scene(seed: int = 0) -> np.ndarray:
    """One synthetic image (uint8 H×W×3), e.g. as napari sample data."""
    return make_sample(np.random.default_rng(seed))[0]
