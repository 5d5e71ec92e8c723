"""Training throughput of digitexp's trainer against plain loops, in one process.

GPU (``--device cuda``, the default when CUDA is there): on a synthetic HW2-like set (SVHN-like
image sizes, 2,000 training images) with the report's final configuration (ResNet-50 FPN,
min/max size 512/1024, batch 8, weights none since nothing is downloaded), it compares

- ours: ``digitexp.engine.Trainer`` with bf16 autocast, channels_last backbone, the
  decode-once uint8 cache normalized on the GPU, pinned memory and non-blocking copies,
  aspect-ratio grouping, loss read back every 50 steps only, loader workers;
- reference: a loop written the way torchvision's detection reference does it: fp32, PIL
  decode + ToTensor + Normalize every epoch in the loader, the default DataLoader, ``.item()``
  of the loss every step.

CPU: the demo preset's tiny configuration; ours against the bare loop at equal settings
(same data path and batches, no trainer machinery), i.e. the trainer's overhead.

Each side runs after warm-up, alternating, and the median over rounds counts (timings on
shared machines are noisy). Last line: a JSON object whose ``ratio`` is ours / reference
images/s (on the CPU: ours / bare).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF

from digitexp import presets
from digitexp.config import ExperimentConfig, apply_overrides, seed_config
from digitexp.data import DigitDataset, EpochBatchSampler, Split, collate, load_data
from digitexp.data.synth import SynthOptions, generate
from digitexp.data.transforms import IMAGENET_MEAN, IMAGENET_STD, prepare_batch
from digitexp.engine import Trainer
from digitexp.engine.optim import build_optimizer
from digitexp.engine.runtime import loader_workers
from digitexp.model import build_model


class TorchvisionStyle(Dataset):
    """PIL decode, ToTensor and Normalize on every access, as the report's pipeline did."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        record = self.split.images[i]
        with Image.open(self.split.path(record)) as img:
            tensor = TF.to_tensor(img.convert("RGB"))
        tensor = TF.normalize(tensor, IMAGENET_MEAN, IMAGENET_STD)
        target = {
            "boxes": torch.from_numpy(self.split.boxes[record.id]),
            "labels": torch.from_numpy(self.split.labels[record.id]),
        }
        return tensor, target


def _tuple_collate(batch: list) -> tuple:
    return tuple(zip(*batch, strict=True))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_loop(
    cfg: ExperimentConfig, split: Split, device: torch.device, steps: int, warmup: int
) -> tuple[float, float]:
    """images/s and peak GPU MB of the torchvision-reference-style loop."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.train)
    loader = DataLoader(
        TorchvisionStyle(split),
        batch_size=cfg.train.batch_size,
        shuffle=True,
        num_workers=loader_workers(cfg.train.workers),
        collate_fn=_tuple_collate,
    )
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seen, start = 0, 0.0
    batches = iter(loader)
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start, seen = time.perf_counter(), 0
        try:
            images, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, targets = next(batches)
        images = [img.to(device) for img in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        losses = sum(model(images, targets).values())
        loss_value = losses.item()  # the reference reads (and checks) the loss every step
        if not math.isfinite(loss_value):
            raise SystemExit(f"loss is {loss_value}")
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        seen += len(images)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return seen / (time.perf_counter() - start), peak


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


def ours(trainer: Trainer, steps: int, warmup: int, epoch: int) -> tuple[float, float]:
    """images/s (and peak GPU MB) of digitexp's training epoch, after a warm-up epoch."""
    device = trainer.device
    trainer.train_epoch(epoch, steps=warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rate = trainer.train_epoch(epoch + 1, steps=steps)["train_images_per_s"]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return rate, peak


def gpu_config(root: Path, workers: int) -> ExperimentConfig:
    cfg = apply_overrides(
        seed_config(),
        {
            "data.root": str(root),
            "data.cache_images": True,
            "data.group_by_aspect_ratio": True,
            "model.weights": "none",
            "train.amp": True,
            "train.channels_last": True,
            "train.workers": workers,
            "train.log_every": 50,
        },
    )
    return cfg


def cpu_config(root: Path) -> ExperimentConfig:
    return apply_overrides(
        seed_config(),
        {**presets.DEMO, "data.root": str(root), "train.batch_size": 8, "train.log_every": 50},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--images", type=int, default=None, help="training images (2000 GPU, 600 CPU)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=-1, help="loader workers on the GPU")
    args = parser.parse_args()
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    images = args.images or (2000 if use_cuda else 600)
    steps = args.steps or (60 if use_cuda else 40)
    warmup = args.warmup or (10 if use_cuda else 5)
    with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
        root = Path(tmp) / "data"
        generate(
            root, {"train": images, "valid": 8}, seed=3, options=SynthOptions(), progress=False
        )
        cfg = gpu_config(root, args.workers) if use_cuda else cpu_config(root)
        cfg = replace(cfg, train=replace(cfg.train, device=device.type))
        data = load_data(cfg.data)
        trainer = Trainer(cfg, data, Path(tmp) / "run", progress=False)
        cache_mb = trainer.sets["train"].cache.nbytes / 2**20 if trainer.sets["train"].cache else 0
        mine, theirs, peaks = [], [], {"ours": 0.0, "reference": 0.0}
        for r in range(args.rounds):
            rate, peak = ours(trainer, steps, warmup, epoch=2 * r + 1)
            mine.append(rate)
            peaks["ours"] = max(peaks["ours"], peak)
            if use_cuda:
                rate, peak = reference_loop(cfg, data.train, device, steps, warmup)
                peaks["reference"] = max(peaks["reference"], peak)
            else:
                rate = bare_loop(cfg, trainer.sets["train"], device, steps, warmup)
            theirs.append(rate)
            other = "reference" if use_cuda else "bare"
            print(
                f"round {r + 1}: ours {mine[-1]:.1f}, {other} {theirs[-1]:.1f} images/s", flush=True
            )
    ours_rate, ref_rate = statistics.median(mine), statistics.median(theirs)
    per_image = cache_mb / images
    result = {
        "device": torch.cuda.get_device_name(device) if use_cuda else "cpu",
        "config": "final (ResNet-50 FPN, 512/1024, batch 8)"
        if use_cuda
        else "demo (tiny_fpn, batch 8)",
        "ours": round(ours_rate, 2),
        "reference" if use_cuda else "bare": round(ref_rate, 2),
        "ratio": round(ours_rate / ref_rate, 3),
        "unit": "images/s",
        "cache_mb": round(cache_mb, 1),
        "hw2_train_cache_gb_estimate": round(per_image * 30062 / 1024, 2),
    }
    if use_cuda:
        result["peak_gpu_mb_ours"] = round(peaks["ours"])
        result["peak_gpu_mb_reference"] = round(peaks["reference"])
    else:
        result["overhead_vs_bare"] = round(1 - ours_rate / ref_rate, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
