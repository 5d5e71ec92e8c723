"""torchrun with one process: the data-parallel path (DDP, NCCL on CUDA, gloo on the CPU)
trains one run of the final spec to the end.

``python -m torch.distributed.run --standalone --nproc_per_node=1 -m digitexp run
ablations/final.py --variant final --seed 0`` into a sqlite store, a few steps on a small part
of the data. Checked: the process group came up (its log line names the backend), the run
FINISHED with ``digitexp.world_size`` 1 and a best checkpoint. Last line: a JSON object.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.gpu import common
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names

EXPERIMENT = "gpu-check-ddp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=400, help="train images")
    parser.add_argument("--valid", type=int, default=100, help="valid and test images")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    device = common.device_of(args.device)
    with tempfile.TemporaryDirectory(prefix="ddp-") as tmp:
        counts = {"train": args.images, "valid": args.valid, "test": args.valid}
        root = common.data_root(args.data, counts, Path(tmp))
        cfg = common.experiment(args.model, root, device, args.weights)
        sets = {
            **common.GPU_PATH,
            **(common.TINY if args.model != "final" else {}),
            "model.weights": cfg.model.weights,
            "train.epochs": 1,
            "train.max_steps_per_epoch": args.steps,
            **common.limits(args.images, args.valid, args.valid),
        }
        uri = f"sqlite:///{Path(tmp) / 'mlruns' / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "DIGITEXP_SYSTEM_METRICS": "0"}
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=1",
            "-m",
            "digitexp",
            *common.final_run_args(device, root, EXPERIMENT, sets),
        ]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd,
            cwd=common.REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            check=False,
        )
        seconds = time.perf_counter() - start
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", flush=True)
        if proc.returncode != 0:
            raise SystemExit(f"torchrun exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        group = re.search(r"torchrun: rank 0 of 1, process group (\S+)", proc.stderr)
        runs = [
            r
            for r in TrackingStore(uri).runs([EXPERIMENT])
            if r.tag(names.TAG_KIND) == names.KIND_TRAIN
        ]
    problems = []
    if group is None:
        problems.append("no process group: the run did not take the DDP path")
    if len(runs) != 1 or runs[0].status != "FINISHED":
        problems.append(f"expected one FINISHED run, found {[r.status for r in runs]}")
    elif runs[0].tag(names.TAG_WORLD_SIZE) != "1":
        problems.append(f"world size tag {runs[0].tag(names.TAG_WORLD_SIZE)!r}")
    want = "nccl" if device.type == "cuda" else "gloo"
    if group is not None and want not in group.group(1):
        problems.append(f"process group {group.group(1)} has no {want}")
    common.emit(
        {
            "device": common.device_name(device),
            "process_group": group.group(1) if group else None,
            "status": runs[0].status if len(runs) == 1 else None,
            "seconds": round(seconds, 1),
            "problems": problems,
            "ok": not problems,
        }
    )
    if problems:
        raise SystemExit("; ".join(problems))


if __name__ == "__main__":
    main()
