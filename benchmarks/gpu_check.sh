#!/usr/bin/env bash
# The GPU check in one command, for a lent GPU machine (Python 3.12 with torch and torchvision,
# no network). benchmarks/results/README.md says how a session uses it.
#
#   1. here, with PyPI:   bash benchmarks/gpu_check.sh prepare [--queue]     (make gpu-wheels)
#      puts into .whl/ (git-ignored) the ~20 MiB of wheels the image lacks:
#      benchmarks/gpu/requirements.txt (MLflow's client, Optuna, pycocotools, ...)
#   2. there, from the repository root, carrying .whl:   bash benchmarks/gpu_check.sh [ARGS]
#      installs the wheels into /tmp/site, then runs python -m benchmarks.gpu.check ARGS:
#      every part (env, throughput, numerics, e2e, ddp, packing, compile) within 9 minutes,
#      one JSON of results and gpu-check.log into $OUT (or /tmp/digitexp-gpu-check).
#
# Exit status: that of benchmarks.gpu.check (0 every part passed, 1 some failed: the JSON
# says which and why); 2 when the wheels are missing or do not install.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  shift
  exec bash benchmarks/gpu/wheels.sh "$@" .whl
fi

if ! ls .whl/*.whl >/dev/null 2>&1; then
  echo "gpu_check.sh: no wheels in .whl/: run 'bash benchmarks/gpu_check.sh prepare' where PyPI" \
    "is reachable, and carry .whl to this machine" >&2
  exit 2
fi
site=${DIGITEXP_SITE:-/tmp/site}
if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$site" .whl/*.whl; then
  echo "gpu_check.sh: the wheels in .whl/ did not install into $site (see above)" >&2
  exit 2
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export OUT="${OUT:-/tmp/digitexp-gpu-check}"
python3 -m benchmarks.gpu.check --out "$OUT" "$@"
