"""An image with its map on top: turbo blended at 50 %, as uint8 RGB (no napari needed).

For a map at a bounded grid over a big image (see :mod:`napari_gapcam.engine.grid`), the image is
reduced to that grid band by band (a lazy page is never read whole) before blending.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np

OPACITY = 0.5
BAND_VALUES = 2**22  # values of one band of rows read at a time (16 MiB as float32)

# napari's "turbo" (Google's Turbo, 2019) at 256 levels, as uint8 RGB triples (768 bytes)
_TURBO_HEX = (
    "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c32863d358b3e38913f3b973f3e9c"
    "4040a24143a74146ac4249b1424bb5434eba4451bf4454c34456c74559cb455ccf455ed34661d64664da4666dd4669e0"
    "466be3476ee64771e94773eb4776ee4778f0477bf2467df44680f64682f84685fa4687fb458afc458cfd448ffe4391fe"
    "4294ff4196ff4099ff3e9bfe3d9efe3ba0fd3aa3fc38a5fb37a8fa35abf833adf731aff52fb2f42eb4f22cb7f02ab9ee"
    "28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda1ccdd81bd0d51ad2d21ad4d019d5cd18d7ca18d9c818dbc5"
    "18ddc218dec018e0bd19e2bb19e3b91ae4b61ce6b41de7b21fe9af20eaac22ebaa25eca727eea42aefa12cf09e2ff19b"
    "32f29835f39438f4913cf58e3ff68a43f78746f8844af8804ef97d52fa7a55fa7659fb735dfc6f61fc6c65fd6969fd66"
    "6dfe6271fe5f75fe5c79fe597dff5680ff5384ff5188ff4e8bff4b8fff4992ff4796fe4499fe429cfe409ffd3fa1fd3d"
    "a4fc3ca7fc3aa9fb39acfb38affa37b1f936b4f836b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34"
    "cdec34d0ea34d2e935d4e735d7e535d9e436dbe236dde037dfdf37e1dd37e3db38e5d938e7d739e9d539ebd339ecd13a"
    "eecf3aefcd3af1cb3af2c93af4c73af5c53af6c33af7c13af8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35"
    "fdac34fea933fea732fea431fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc8423fb8122"
    "fb7e21fa7b1ff9781ef9751df8721cf76f1af66c19f56918f46617f36315f26014f15d13f05b12ef5811ed5510ec530f"
    "eb500eea4e0de84b0ce7490ce5470be4450ae2430ae14109df3f08dd3d08dc3b07da3907d83706d63506d43305d23105"
    "d02f05ce2d04cc2b04ca2a04c82803c52603c32503c12302be2102bc2002b91e02b71d02b41b01b21a01af1801ac1701"
    "a91601a71401a41301a112019e10019b0f01980e01950d01920b018e0a018b09028808028507028106027e05027a0403"
)


@lru_cache(maxsize=1)
def turbo_lut() -> np.ndarray:
    """napari's ``turbo`` at 256 levels, float32 256×3 in [0, 1] (the widget's colormap)."""
    table = np.frombuffer(bytes.fromhex("".join(_TURBO_HEX)), np.uint8).reshape(256, 3)
    return table.astype(np.float32) / 255


def _bands(image: Any, multiple: int = 1) -> Iterator[np.ndarray]:
    """The image in bands of rows, a multiple of ``multiple`` each (lazy pages are read band
    by band, never whole)."""
    per_row = max(1, int(np.prod(image.shape[1:]))) * multiple
    rows = multiple * max(1, BAND_VALUES // per_row)
    for start in range(0, int(image.shape[0]), rows):
        yield np.asarray(image[start : start + rows])


def display_range(image: Any) -> tuple[float, float]:
    """The values shown as black and white, the way the model sees the image by default.

    Grey: its finite min/max; integer RGB: the dtype's range; float RGB: [0, 1] when it lies
    there, else its min/max; bool: [0, 1].
    """
    rgb = len(image.shape) == 3
    dtype = np.dtype(image.dtype)
    if dtype.kind == "b":
        return 0.0, 1.0
    if rgb and np.issubdtype(dtype, np.integer):
        return 0.0, float(np.iinfo(dtype).max)
    low, high = np.inf, -np.inf
    for band in _bands(image):
        values = band[..., :3] if rgb else band
        finite = values[np.isfinite(values)] if dtype.kind == "f" else values
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    if low > high:
        return 0.0, 0.0
    if rgb and 0.0 <= low and high <= 1.0:
        return 0.0, 1.0
    return low, high


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = np.nan_to_num(values.astype(np.float32), nan=low, posinf=high, neginf=low)
    return np.clip((scaled - low) / (high - low), 0, 1) if high > low else scaled * 0


def display_rgb(image: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image as float32 h×w×3 in [0, 1] (:func:`display_range`), at its own size or
    reduced to ``shape`` (block means band by band, then a bilinear resize)."""
    low, high = display_range(image)
    height, width = (int(s) for s in image.shape[:2])
    shape = (height, width) if shape is None else tuple(int(s) for s in shape)
    factor = max(1, min(height // shape[0], width // shape[1]))
    parts = []
    for band in _bands(image, factor):
        values = _scaled(band[..., :3] if band.ndim == 3 else band[..., None], low, high)
        if factor > 1:
            values = _block_mean(values, factor)
        parts.append(values)
    reduced = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if reduced.shape[:2] != shape:
        from skimage.transform import resize

        reduced = resize(reduced, shape, order=1, anti_aliasing=False).astype(np.float32)
    return reduced if reduced.shape[-1] == 3 else np.repeat(reduced, 3, axis=-1)


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor``×``factor`` blocks (partial edge blocks cut off)."""
    rows, cols = values.shape[0] // factor, values.shape[1] // factor
    if rows == 0:  # a last band shorter than a block: its rows join no full block
        return values[:0, :cols]
    cut = values[: rows * factor, : cols * factor]
    return cut.reshape(rows, factor, cols, factor, -1).mean(axis=(1, 3), dtype=np.float32)


def overlay(image: Any, cam: np.ndarray, opacity: float = OPACITY) -> np.ndarray:
    """uint8 h×w×3: the image blended with ``turbo(cam)`` (``cam`` in [0, 1], h×w: the image's
    size, or a grid over it, to which the image is reduced)."""
    levels = np.clip(np.rint(cam * 255), 0, 255).astype(np.uint8)
    blended = (1 - opacity) * display_rgb(image, cam.shape) + opacity * turbo_lut()[levels]
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
