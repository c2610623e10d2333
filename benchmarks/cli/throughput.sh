#!/usr/bin/env bash
# gapcam predict throughput: 64 RGB 96×96 PNGs, random-init weights; single process vs --workers 2.
# Usage: benchmarks/cli/throughput.sh [python]   (wall time with start-up)
set -euo pipefail
PY=${1:-python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" - "$WORK" <<'PYEOF'
import sys, numpy as np, imageio.v3 as iio, torch, torchvision
work = sys.argv[1]
rng = np.random.default_rng(0)
import os; os.makedirs(f"{work}/in")
for i in range(64):
    iio.imwrite(f"{work}/in/i{i:02d}.png", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
torch.manual_seed(0)
torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), f"{work}/resnet18.pt")
torch.save(torchvision.models.resnet50().state_dict(), f"{work}/resnet50.pt")
PYEOF
for model in "resnet18 64" "resnet50 224"; do
  set -- $model
  for mode in "--threads 2" "--threads 1" "--workers 2"; do
    rm -rf "$WORK/out"
    start=$(date +%s.%N)
    "$PY" -m napari_gapcam.cli predict "$WORK/in" --model "$1" --weights "$WORK/$1.pt" \
      --input-size "$2" --out "$WORK/out" $mode 2>/dev/null
    end=$(date +%s.%N)
    first=$("$PY" -c "import glob, os; print(min(os.stat(p).st_mtime for p in glob.glob('$WORK/out/records/*.json')))")
    "$PY" -c "print(f'$1 @ $2, $mode: {$end - $start:.1f} s for 64 images = {64 / ($end - $start):.1f} images/s '
                  f'(start-up to the first record {$first - $start:.1f} s)')"
  done
done
