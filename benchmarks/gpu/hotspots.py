"""Where a training step of ours spends its time: host syncs and the busiest operations.

For the first GPU session to see at once what to fix if the throughput falls short:

- host syncs: ``--sync-steps`` steps of ``Trainer.train_epoch`` under
  ``torch.cuda.set_sync_debug_mode("warn")``; every operation that makes the host wait for
  the GPU is counted by the line of Python that called it (torchvision's RPN and RoI
  sampling have some by design: ``nonzero``, NMS; ours should add none per step);
- operations: ``--profile-steps`` steps under ``torch.profiler`` (CPU and CUDA), the table of
  the operations with the most device time (CPU time on the CPU) in the log.

Last line: a JSON object (syncs per step, the top call sites, the top operations).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.gpu import common
from digitexp.data import load_data
from digitexp.engine import Trainer


def host_syncs(trainer: Trainer, steps: int) -> tuple[float, list[tuple[str, int]]]:
    """Synchronizing operations per step, and the call sites that issue them."""
    if trainer.device.type != "cuda":
        return 0.0, []
    trainer.train_epoch(1, steps=2)  # warm: allocations and cuDNN set-up are not steps
    sites: Counter[str] = Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train_epoch(2, steps=steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            sites[f"{w.filename}:{w.lineno}"] += 1
    return sum(sites.values()) / steps, sites.most_common(15)


def operations(trainer: Trainer, steps: int) -> tuple[str, list[dict[str, object]]]:
    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    trainer.train_epoch(3, steps=2)
    with profile(activities=activities) as prof:
        trainer.train_epoch(4, steps=steps)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    table = averages.table(sort_by=key, row_limit=25)
    rows = sorted(averages, key=lambda e: getattr(e, key, 0) or 0, reverse=True)[:10]
    top = [
        {"op": e.key, "count": e.count, "ms": round((getattr(e, key, 0) or 0) / 1000, 2)}
        for e in rows
    ]
    return table, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--sync-steps", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=10)
    args = parser.parse_args()
    device = common.device_of(args.device)
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        root = common.data_root(args.data, {"train": args.images, "valid": 8, "test": 8}, Path(tmp))
        overrides = {**common.limits(args.images, 8, 8), "train.log_every": 50}
        cfg = common.experiment(args.model, root, device, args.weights, overrides)
        trainer = Trainer(cfg, load_data(cfg.data), Path(tmp) / "run", progress=False)
        per_step, sites = host_syncs(trainer, args.sync_steps)
        table, top = operations(trainer, args.profile_steps)
        trainer.close()
    print(table, flush=True)
    for site, count in sites:
        common.say(f"host sync x{count}: {site}")
    common.emit(
        {
            "device": common.device_name(device),
            "model": args.model,
            "host_syncs_per_step": round(per_step, 1),
            "sync_sites": [{"where": s, "count": c} for s, c in sites],
            "profile_steps": args.profile_steps,
            "top_operations": top,
        }
    )


if __name__ == "__main__":
    main()
