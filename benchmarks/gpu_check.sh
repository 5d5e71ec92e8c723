#!/usr/bin/env bash
# The GPU check, for a lent GPU machine (Python 3.12 with torch and torchvision, no network).
#
#   1. here, with PyPI:   bash benchmarks/gpu_check.sh prepare
#      puts into .whl/ the one wheel the GPU image lacks: pycocotools for CPython 3.12
#      (numpy, pillow, opencv, matplotlib and tqdm are in the image already)
#   2. there, from the repository root, carrying .whl:   bash benchmarks/gpu_check.sh
#      runs benchmarks/train_throughput.py (ours vs the torchvision-style loop, final config)
#      and a one-epoch smoke of the seed config; about 6 minutes, under 8.
#
# Logs and JSON lines go to $OUT (or /tmp/digitexp-gpu-check).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-run}" = prepare ]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl pycocotools==2.0.11
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  ls -l .whl
  exit 0
fi

OUT="${OUT:-/tmp/digitexp-gpu-check}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
} | tee "$OUT/device.txt"
timeout 330 python3 benchmarks/train_throughput.py --device cuda 2>&1 | tee "$OUT/throughput.log"
timeout 150 python3 benchmarks/seed_epoch.py --device cuda 2>&1 | tee "$OUT/seed_epoch.log"
echo "gpu check done: $OUT"
