"""Training throughput: digitexp's trainer against the bare loop over the same data, in one
process: the trainer's own overhead.

The demo preset's tiny configuration (batch 8) on a synthetic set: ours is
``digitexp.engine.Trainer.train_epoch``; the bare loop feeds the same batches (same data path,
same settings) to the model and optimizer with no trainer machinery. Each side runs after
warm-up, alternating, and the median over rounds counts (timings on shared machines are
noisy). Last line: a JSON object whose ``ratio`` is ours / bare images/s.

The GPU comparison (ours against a torchvision-reference-style loop, the report's final
config, peak memory, the targets) is the GPU kit's throughput part: ``python -m
benchmarks.gpu.throughput``, run by ``bash benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from digitexp import presets
from digitexp.config import ExperimentConfig, apply_overrides, seed_config
from digitexp.data import DigitDataset, EpochBatchSampler, collate, load_data
from digitexp.data.synth import SynthOptions, generate
from digitexp.data.transforms import prepare_batch
from digitexp.engine import Trainer
from digitexp.engine.optim import build_optimizer
from digitexp.model import build_model


def bare_loop(
    cfg: ExperimentConfig, dataset: DigitDataset, device: torch.device, steps: int, warmup: int
) -> float:
    """images/s of the minimal loop over our data path (same batches, same settings)."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.train)
    sampler = EpochBatchSampler(len(dataset), cfg.train.batch_size, seed=cfg.train.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0, collate_fn=collate)
    model.train()
    seen, start, step = 0, 0.0, 0
    while step < warmup + steps:
        for images, targets in loader:
            if step == warmup:
                start, seen = time.perf_counter(), 0
            if step >= warmup + steps:
                break
            batch = prepare_batch(images, device, cfg.data.pre_normalize)
            losses = sum(model(batch, targets).values())
            optimizer.zero_grad()
            losses.backward()
            optimizer.step()
            seen += len(images)
            step += 1
    return seen / (time.perf_counter() - start)


def ours(trainer: Trainer, steps: int, warmup: int, epoch: int) -> float:
    """images/s of digitexp's training epoch, after a warm-up epoch."""
    trainer.train_epoch(epoch, steps=warmup)
    return trainer.train_epoch(epoch + 1, steps=steps)["train_images_per_s"]


def demo_config(root: Path) -> ExperimentConfig:
    return apply_overrides(
        seed_config(),
        {**presets.DEMO, "data.root": str(root), "train.batch_size": 8, "train.log_every": 50},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--images", type=int, default=600, help="training images")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
        root = Path(tmp) / "data"
        generate(
            root, {"train": args.images, "valid": 8}, seed=3, options=SynthOptions(), progress=False
        )
        cfg = demo_config(root)
        cfg = replace(cfg, train=replace(cfg.train, device=device.type))
        trainer = Trainer(cfg, load_data(cfg.data), Path(tmp) / "run", progress=False)
        cache_mb = trainer.sets["train"].cache.nbytes / 2**20 if trainer.sets["train"].cache else 0
        mine, theirs = [], []
        for r in range(args.rounds):
            mine.append(ours(trainer, args.steps, args.warmup, epoch=2 * r + 1))
            theirs.append(bare_loop(cfg, trainer.sets["train"], device, args.steps, args.warmup))
            print(f"round {r + 1}: ours {mine[-1]:.1f}, bare {theirs[-1]:.1f} images/s", flush=True)
        trainer.close()
    ours_rate, bare_rate = statistics.median(mine), statistics.median(theirs)
    result = {
        "device": device.type,
        "config": "demo (tiny_fpn, batch 8)",
        "ours": round(ours_rate, 2),
        "bare": round(bare_rate, 2),
        "ratio": round(ours_rate / bare_rate, 3),
        "overhead_vs_bare": round(1 - ours_rate / bare_rate, 3),
        "unit": "images/s",
        "cache_mb": round(cache_mb, 1),
        "hw2_train_cache_gb_estimate": round(cache_mb / args.images * 30062 / 1024, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
