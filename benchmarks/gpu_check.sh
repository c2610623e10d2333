#!/usr/bin/env bash
# The GPU check, for a CUDA machine with torch but no napari or display (e.g. the device
# machine): the GPU tests, a profile of one stack run, the speed benchmark's engine and GPU
# rows, then every test that needs no viewer. Run from the repository root; logs go to $OUT
# (default /tmp/gpu_check).
# Wheels of missing packages (dask, distributed, zarr, torchcam, safetensors, pandas,
# efficientnet-pytorch, timm...) may be put in .whl/.
# Each step has a time limit (GPU_TESTS_S, PROFILE_S, BENCH_S, SUITE_S): by default 560 s in
# all, under the device machine's 600 s a call. BENCH_ARGS="--gpu-only --repeat 5" for the GPU
# rows only.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src
nvidia-smi -L
python3 -c "import sys, torch, torchvision, numpy; print(sys.version.split()[0], torch.__version__, \
torchvision.__version__, numpy.__version__, torch.cuda.get_device_name(), torch.cuda.is_available())"
viewerless="--ignore-glob=tests/test_widget*.py --ignore=tests/test_packaging.py --ignore=tests/test_session.py"
timeout "${GPU_TESTS_S:-120}" python3 -m pytest -q -p no:cacheprovider -rfs --tb=short tests/test_gpu.py \
  tests/test_cam.py::test_gap_identity_on_gpu 2>&1 | tee "$OUT/gpu_tests.log"
timeout "${PROFILE_S:-60}" python3 benchmarks/gpu_profile.py --out "$OUT" 2>&1 | tee "$OUT/profile.log"
# shellcheck disable=SC2086
timeout "${BENCH_S:-180}" python3 benchmarks/speed.py ${BENCH_ARGS:---engine-only --repeat 5} 2>&1 \
  | tee "$OUT/bench.log"
# shellcheck disable=SC2086
parallel=$(python3 -c "import xdist" 2>/dev/null && echo "-n ${WORKERS:-8}")
OMP_NUM_THREADS=2 timeout "${SUITE_S:-200}" python3 -m pytest -q -p no:cacheprovider -rfs --tb=short --durations=10 \
  $parallel $viewerless tests 2>&1 | tee "$OUT/suite.log"
