"""The GPU path: run only where CUDA is available (skipped elsewhere, e.g. in CI).

Convolutions on a GPU use TF32 by default, so results are compared with the CPU's at the
tolerance of normalised maps (0.02), and with the same device's ``run`` at 1e-3 in plain fp32.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from napari_gapcam import load_model
from napari_gapcam.engine import pipeline
from napari_gapcam.engine.batch import iter_batches
from napari_gapcam.engine.device import send
from napari_gapcam.engine.graphs import GraphedForward
from napari_gapcam.engine.preprocess import to_input_tensor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

RNG = np.random.default_rng(3)
STACK = RNG.integers(0, 256, (10, 96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory):
    """A random-init torchvision resnet18 state dict: the same weights on both devices."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def models(weights):
    return (
        load_model("resnet18", weights=weights, device="cuda"),
        load_model("resnet18", weights=weights, device="cpu"),
    )


def test_copies_on_the_side_stream_overlap_but_never_race():
    """Each tensor goes over on a side stream while the GPU is busy; the compute stream reads
    what was sent, and memory freed at once is not reused before it has been read."""
    busy = torch.randn(4096, 4096, device="cuda")
    seen = []
    for i in range(12):
        host = torch.full((8, 1024, 1024), float(i)).pin_memory()
        busy @ busy  # the compute stream is busy: a copy not waited for would be read too early
        sent = send(host, "cuda")
        seen.append(torch.stack([sent.amin(), sent.amax()]))
        del host, sent  # freed at once: the next copy must not land in memory still being read
    assert [s.tolist() for s in seen] == [[float(i), float(i)] for i in range(12)]


def test_input_on_the_gpu_matches_the_cpu():
    """uint8 resized in float on the GPU vs as uint8 on the host; big images shrink on the host."""
    for image, limit in ((STACK[0], 0.05), (RNG.integers(0, 256, (1000, 1000, 3), np.uint8), 0.05)):
        gpu = to_input_tensor(image, device="cuda").cpu()
        cpu = to_input_tensor(image)
        assert gpu.shape == cpu.shape
        assert (gpu - cpu).abs().mean() < 0.01
        assert (gpu - cpu).abs().max() < limit
    grey = RNG.integers(0, 4096, (300, 200), np.uint16)
    torch.testing.assert_close(
        to_input_tensor(grey, device="cuda").cpu(), to_input_tensor(grey), rtol=1e-4, atol=1e-4
    )


@pytest.fixture
def no_tf32():
    """Plain fp32 convolutions (cuDNN uses TF32 by default), to compare at 1e-3."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def test_run_batch_on_the_gpu_equals_run(models, no_tf32):
    gpu, cpu = models
    result = gpu.run_batch(STACK, batch_size=2)  # 5 batches, each sent during the one before
    assert len(result) == len(STACK)
    assert not result.features.is_cuda  # kept on the host, compact
    ones = [gpu.run(plane) for plane in STACK]
    for i, one in enumerate(ones):
        np.testing.assert_allclose(result.image_logits[i], one.logits, rtol=1e-3, atol=1e-3)
    for i in (0, 5, 9):
        one = ones[i]
        c = one.topk(1)[0][0]
        np.testing.assert_allclose(result[i].cam(c), one.cam(c), atol=2e-3)
        on_cpu = cpu.run(STACK[i])
        assert np.abs(result[i].cam(c) - on_cpu.cam(c)).max() <= 0.02


def test_batches_never_wait_for_the_gpu(models):
    """A wait per batch drains the GPU while the host launches the next batch (it was 0.55× of
    the bare forward with the CAM weights copied to the host once a batch). In sync debug mode
    any call that waits for the GPU raises (a blocking copy, a mask index); waiting on an
    event, as a finished batch is handed over, is not one of them."""
    gpu, _ = models
    gpu.run_batch(STACK, batch_size=3)  # the first run folds batch norms, measures memory
    torch.cuda.set_sync_debug_mode("error")
    try:
        parts = [part for _, part in iter_batches(gpu, STACK, batch_size=3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [len(p) for p in parts] == [3, 3, 3, 1]
    assert len({id(p._method) for p in parts}) == 1


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_graphed_batches_equal_eager_ones(models, no_tf32, monkeypatch, precision):
    """Full batches replay a CUDA graph, the partial last one runs eagerly; a new batch size
    captures a new graph. Every plane is checked: a replay that overwrote a batch's outputs
    before they were copied to the host would show here."""
    gpu, _ = models
    # in half precision another batch size may pick other kernels: 1 ulp of bf16 is 0.8 %
    tolerance = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 5e-2}[precision]
    monkeypatch.setattr(pipeline, "GRAPH_MIN_BATCHES", 100)
    eager = gpu.run_batch(STACK, batch_size=3, precision=precision)
    monkeypatch.setattr(pipeline, "GRAPH_MIN_BATCHES", 2)
    for size in (3, 4):  # 3 full batches + 1 plane, then 2 full + 2 planes
        graphed = gpu.run_batch(STACK, batch_size=size, precision=precision)
        graph = gpu._graphed[1]
        assert graph.captured and graph._input.shape[0] == size
        np.testing.assert_allclose(
            graphed.image_logits, eager.image_logits, rtol=tolerance, atol=tolerance
        )
        top = eager.top1()
        assert np.abs(graphed.cams(top) - eager.cams(top)).max() <= min(2 * tolerance, 0.02)


def test_graphed_batches_never_wait_for_the_gpu(models, monkeypatch):
    gpu, _ = models
    monkeypatch.setattr(pipeline, "GRAPH_MIN_BATCHES", 1)
    gpu.run_batch(STACK, batch_size=5)  # captures the graph (a capture waits for the GPU)
    torch.cuda.set_sync_debug_mode("error")
    try:
        parts = [part for _, part in iter_batches(gpu, STACK, batch_size=5)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [len(p) for p in parts] == [5, 5]


def test_a_capture_while_another_thread_uses_the_gpu(models, no_tf32, monkeypatch):
    """The widget captures in its worker while the UI thread may make maps on the GPU (a class
    change): the capture is thread-local, so neither disturbs the other."""
    gpu, _ = models
    result = gpu.run_batch(STACK, batch_size=2)
    top = result.top1()
    expected_maps = result.cams(top, shape=(512, 512))  # ≥ 1 MP: made on the GPU
    monkeypatch.setattr(pipeline, "GRAPH_MIN_BATCHES", 100)
    eager = gpu.run_batch(STACK, batch_size=2)
    monkeypatch.setattr(pipeline, "GRAPH_MIN_BATCHES", 1)
    stop, seen, errors = threading.Event(), [], []

    def ui() -> None:
        try:
            while not stop.is_set():
                seen.append(np.abs(result.cams(top, shape=(512, 512)) - expected_maps).max())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=ui)
    thread.start()
    try:
        for size in (2, 3, 4, 2):  # a capture each
            graphed = gpu.run_batch(STACK, batch_size=size)
            assert gpu._graphed[1].captured
            np.testing.assert_allclose(
                graphed.image_logits, eager.image_logits, rtol=1e-3, atol=1e-3
            )
    finally:
        stop.set()
        thread.join()
    assert not errors and seen and max(seen) <= 1e-5


def test_a_forward_that_cannot_be_graphed_runs_eagerly():
    """A pass that waits for the GPU (``.item()``) cannot be captured: one warning, then the
    same results without a graph. A replay's outputs are overwritten by the next one."""
    graphed = GraphedForward(lambda x: (x * x.sum().item(),))
    x = torch.ones(4, 3, device="cuda")
    with pytest.warns(RuntimeWarning, match="could not be captured"):
        (out,) = graphed(x, None)
    assert not graphed.captured and torch.equal(out, x * 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no second try
        (again,) = graphed(x + 1, None)
    assert torch.equal(again, (x + 1) * 24)
    doubled = GraphedForward(lambda x: (x * 2,))
    (first,) = doubled(x, None)
    (second,) = doubled(x + 1, None)
    assert doubled.captured and first is second and torch.equal(first, (x + 1) * 2)


def test_stack_maps_made_on_the_gpu_equal_the_hosts(models):
    gpu, _ = models
    result = gpu.run_batch(STACK, batch_size=4)
    top = result.top1()
    big = result.cams(top, shape=(512, 512))  # ≥ 1 MP of output: made on the GPU
    assert big.dtype == np.float32 and big.shape == (len(STACK), 512, 512)
    for i in (0, 7):
        np.testing.assert_allclose(big[i], result[i].cam(top[i], shape=(512, 512)), atol=1e-4)
    chunked = result._cams_on(gpu.device, range(len(STACK)), top, (512, 512), chunk_bytes=2**21)
    np.testing.assert_allclose(chunked, big, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_the_gpu(models, precision):
    gpu, _ = models
    full = gpu.run_batch(STACK, batch_size=5)
    half = gpu.run_batch(STACK, batch_size=5, precision=precision)
    top = full.top1()
    assert np.abs(half.cams(top) - full.cams(top)).max() <= 0.02


def test_batches_stream_in_order_from_a_lazy_stack(models, chunk_reads):
    import dask.array as da

    gpu, _ = models
    reads = chunk_reads
    lazy = reads.counted(da.from_array(STACK, chunks=(1, 96, 128, 3)))
    starts = []
    for start, part in iter_batches(gpu, lazy, batch_size=3):
        starts.append(start)
        assert max(reads) < start + 3 * 3  # the next batch in flight, one more read ahead
        assert len(part) == min(3, len(STACK) - start)
    assert starts == [0, 3, 6, 9]
    assert sorted(reads) == list(range(len(STACK)))


def test_gpu_grey_stack_with_contrast_limits(models):
    gpu, cpu = models
    stack = RNG.integers(0, 4096, (6, 80, 90), np.uint16)
    got = gpu.run_batch(stack, contrast_limits=(100, 3000))
    expected = cpu.run_batch(stack, contrast_limits=(100, 3000))
    top = expected.top1()
    assert np.abs(got.cams(top) - expected.cams(top)).max() <= 0.02


def test_cli_on_the_gpu(tmp_path, models, weights):
    tifffile = pytest.importorskip("tifffile")
    from napari_gapcam.cli import main

    _, cpu = models
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "stack.tif", STACK[:4], photometric="rgb")
    args = ["predict", tmp_path / "in", "--model", "resnet18", "--weights", weights]
    args += ["--class", "5"]  # not each page's top-1: near ties may differ between devices
    assert main([str(a) for a in [*args, "--out", tmp_path / "out", "--device", "cuda"]]) == 0
    written = tifffile.imread(tmp_path / "out" / "stack_cam.tif")
    assert written.shape == (4, *STACK.shape[1:3])
    for plane, got in zip(STACK[:4], written, strict=True):
        assert np.abs(got - cpu.run(plane).cam(5)).max() <= 0.02
