"""Engine on big, lazy and tiny images: lean preprocessing, maps at any grid, the memory guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from _references import to_unit_range
from napari_gapcam.engine import preprocess
from napari_gapcam.engine.grid import bounded_grid, grid_box_to_pixels, grid_placement
from napari_gapcam.engine.memory import InputTooLargeError
from napari_gapcam.engine.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    target_size,
    to_input_tensor,
)
from napari_gapcam.engine.result import CamResult

RNG = np.random.default_rng(7)


def reference_tensor(image: np.ndarray, contrast_limits=None, input_size: int = 224):
    """The straightforward pipeline: full-size float copy in [0, 1], then one antialiased resize."""
    unit = torch.from_numpy(to_unit_range(image, contrast_limits)).permute(2, 0, 1)[None]
    size = target_size(*image.shape[:2], input_size)
    resized = F.interpolate(unit, size=size, mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (resized - mean) / std


def smooth_image(shape, dtype, high):
    """A photo-like image (the camera man, tiled and zoomed) of ``shape`` in ``dtype``."""
    camera = data.camera().astype(np.float32) / 255
    reps = [int(np.ceil(s / 512)) for s in shape[:2]]
    tiled = np.tile(camera, reps)[: shape[0], : shape[1]]
    if len(shape) == 3:
        tiled = np.stack([tiled, tiled[::-1], tiled[:, ::-1]], axis=-1)
    return (tiled * high).astype(dtype)


class RecordingArray:
    """An array-like (as zarr or h5py) that records every read; reading it whole is an error."""

    def __init__(self, array: np.ndarray) -> None:
        self._array, self.reads = array, []
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        out = self._array[key]
        self.reads.append(out.size)
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was read at once")


@pytest.mark.parametrize(
    ("shape", "dtype", "high", "limits"),
    [
        ((4000, 5000), np.uint16, 60000, None),  # reduced by 4 first
        ((4000, 5000), np.uint16, 60000, (5000, 30000)),  # narrow contrast: clipping matters
        ((3000, 4000, 3), np.float32, 3.5, None),  # a partial last block of columns
        ((3001, 4002, 3), np.uint16, 65535, None),
        ((1200, 1700, 3), np.uint8, 255, None),  # the uint8 fast path
        ((300, 451), np.uint8, 255, (10, 200)),
    ],
    ids=["u16", "u16_clip", "rgb_f32", "rgb_u16", "rgb_u8", "u8_clip"],
)
def test_lean_input_equals_the_full_float_pipeline(shape, dtype, high, limits):
    image = smooth_image(shape, dtype, high)
    lean, reference = to_input_tensor(image, limits), reference_tensor(image, limits)
    assert lean.shape == reference.shape
    # normalised units: 0.01 is ~0.2 % of the [0, 1] range (std ≈ 0.225); the worst pixels
    # sit at the tiles' hard seams and in a partial last block of pixels
    difference = (lean - reference).abs()
    assert difference.mean() < 0.005 and difference.max() < 0.15


def test_maps_equal_the_full_float_pipeline(resnet50):
    image = smooth_image((2000, 3000), np.uint16, 60000)
    lean = resnet50.run(image)
    with torch.inference_mode():
        tensor = reference_tensor(image).contiguous(memory_format=torch.channels_last)
        maps = resnet50.features(tensor)
        logits = resnet50.fc(maps[0].mean((1, 2)))
    reference = CamResult(maps[0], logits, resnet50.fc.weight, resnet50.class_names, image.shape)
    for c, _, _ in reference.topk(3):
        grid = (200, 300)
        assert np.abs(lean.cam(c, shape=grid) - reference.cam(c, shape=grid)).max() < 0.02


def test_lazy_input_is_read_in_bands(monkeypatch, resnet50):
    image = smooth_image((1024, 1536), np.uint16, 60000)
    lazy = RecordingArray(image)
    monkeypatch.setattr(preprocess, "BAND_VALUES", 100_000)
    result = resnet50.run(lazy, contrast_limits=(0, 60000))
    assert len(lazy.reads) > 5 and max(lazy.reads) <= 100_000 + 1536 * 64
    assert sum(lazy.reads) == image.size  # each pixel read once (limits given)
    expected = resnet50.run(image, contrast_limits=(0, 60000))
    np.testing.assert_allclose(result.logits, expected.logits, rtol=1e-4, atol=1e-4)
    lazy.reads.clear()
    resnet50.run(lazy)  # no limits: one more pass for the min/max, still band by band
    assert sum(lazy.reads) == 2 * image.size


def test_one_uint8_image_is_resized_from_its_own_memory(monkeypatch):
    """No copy of a big uint8 RGB image on its way to the input (one cost 2.3× its bytes)."""
    image = RNG.integers(0, 256, (1500, 1200, 3), np.uint8)
    joined = []
    cat = torch.cat

    def counting_cat(tensors, *args, **kwargs):
        joined.append(sum(t.numel() for t in tensors))
        return cat(tensors, *args, **kwargs)

    monkeypatch.setattr(torch, "cat", counting_cat)
    tensor = to_input_tensor(image)
    assert tensor.shape == (1, 3, 280, 224)
    assert all(n < image.size for n in joined)


def test_zarr_and_dask_inputs(resnet50):
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    image = smooth_image((700, 900, 3), np.uint8, 255)
    stored = zarr.create_array(store={}, shape=image.shape, chunks=(256, 256, 3), dtype="u1")
    stored[:] = image
    lazy = da.from_array(image, chunks=(128, 128, 3))
    base = resnet50.run(image)
    for other in (resnet50.run(stored), resnet50.run(lazy)):
        assert other.image_shape == (700, 900)
        for c, _, _ in base.topk(2):
            assert np.abs(other.cam(c, shape=(70, 90)) - base.cam(c, shape=(70, 90))).max() < 0.02


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 7), (7, 1), (1, 1, 3), (2, 300), (300, 2, 4)], ids=str
)
def test_tiny_and_thin_images_give_finite_maps(resnet50, shape):
    image = RNG.integers(0, 255, shape, dtype=np.uint8)
    result = resnet50.run(image)
    cam = result.cam(0)
    assert cam.shape == shape[:2] and cam.dtype == np.float32
    assert np.all(np.isfinite(cam)) and cam.min() >= 0.0 and cam.max() <= 1.0
    assert np.all(np.isfinite(result.logits))


def test_extreme_aspect_ratio_keeps_the_input_bounded():
    assert target_size(1, 5000, 224) == (32, 1792)
    assert target_size(300, 600, 224) == (224, 448)
    assert target_size(600, 300, 448, square=True) == (448, 448)


def one_hot_result(cell: tuple[int, int], cells=(7, 10), image_shape=(700, 1000)) -> CamResult:
    """A one-map 'network' whose map is 1 at ``cell`` and 0 elsewhere."""
    features = torch.zeros(1, *cells)
    features[0, cell[0], cell[1]] = 1.0
    return CamResult(features, torch.tensor([0.0]), torch.ones(1, 1), ["peak"], image_shape)


def test_map_at_a_grid_peaks_where_the_full_map_peaks():
    result = one_hot_result((2, 6))
    full = result.cam(0)
    grid = (70, 100)
    small = result.cam(0, shape=grid)
    assert small.shape == grid and small.max() == pytest.approx(1.0)
    (scale_y, scale_x), (ty, tx) = grid_placement(result.image_shape, grid)
    gy, gx = np.unravel_index(np.argmax(small), grid)
    # grid cell centre in image pixels vs the full-size peak and the feature cell's centre
    y, x = gy * scale_y + ty, gx * scale_x + tx
    fy, fx = np.unravel_index(np.argmax(full), full.shape)
    assert abs(y - fy) <= scale_y and abs(x - fx) <= scale_x
    assert abs(y - (2 + 0.5) * 100 + 0.5) <= scale_y and abs(x - (6 + 0.5) * 100 + 0.5) <= scale_x
    # with integer ratios (7 and 5) cell centres land on full-size pixels 7i + 3 and 5j + 2,
    # where both maps interpolate the same point: equal up to the min-max normalisation
    odd = result.cam(0, shape=(100, 200))
    sampled = full[3::7, 2::5]
    np.testing.assert_allclose(odd, sampled / sampled.max(), atol=1e-5)


def test_grid_helpers():
    assert bounded_grid((100, 200), 1_000_000) == (100, 200)
    assert bounded_grid((6000, 6000), 1_000_000) == (1000, 1000)
    h, w = bounded_grid((8192, 4096), 1_000_000)
    assert h * w <= 1_000_000 and abs(h / w - 2) < 0.01
    assert bounded_grid((1, 10**7), 1000) == (1, 1000)
    assert grid_placement((600, 300), (200, 100)) == ((3.0, 3.0), (1.0, 1.0))
    assert grid_box_to_pixels((1, 2, 3, 4), (600, 300), (200, 100)) == (3, 6, 9, 12)


def test_memory_guard_refuses_before_running(resnet50):
    with pytest.raises(InputTooLargeError, match=r"needs about .* smaller input size") as info:
        resnet50.run(np.zeros((64, 64), np.uint8), input_size=60_000)
    assert "60000×60000" in str(info.value)
    assert isinstance(info.value, MemoryError)
    resnet50.check_memory((224, 224))  # an ordinary size passes


def test_out_of_memory_during_the_forward_pass_becomes_the_same_message(resnet50, monkeypatch):
    def out_of_memory(_x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    features = resnet50.features
    monkeypatch.setattr(resnet50, "features", out_of_memory)
    monkeypatch.setattr(resnet50, "_bytes_per_pixel", 268.0)
    with pytest.raises(InputTooLargeError, match="needs about"):
        resnet50.run(np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(resnet50, "features", features)
    assert np.isfinite(resnet50.run(np.zeros((64, 64), np.uint8)).logits).all()


def test_memory_estimate_is_in_the_measured_range(resnet50):
    # measured on this CPU (VmHWM): 208–269 bytes per input pixel at 896²–1792²
    assert 150 < resnet50.bytes_per_input_pixel < 600
