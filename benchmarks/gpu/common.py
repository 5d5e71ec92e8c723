"""What the parts of the GPU kit share: the device, the synthetic HW2-like set, the configs
they train, and their output (lines of progress, then one JSON object as the last line)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from digitexp import presets
from digitexp.config import ExperimentConfig, apply_overrides, seed_config
from digitexp.data.synth import SynthOptions, generate
from digitexp.engine import Trainer
from digitexp.engine.runtime import resolve_device
from digitexp.errors import WeightsError
from digitexp.model import check_weights

REPO = Path(__file__).resolve().parents[2]

# The HW2 dataset's splits (the report's data: 30,062 train, 3,340 valid, 13,068 test images).
HW2 = MappingProxyType({"train": 30062, "valid": 3340, "test": 13068})

# The trainer's GPU path, as every figure of the kit measures it: the decode-once uint8 cache
# (normalized on the GPU), aspect-ratio batches, channels_last backbone, loader workers from
# the run's CPU allotment, bf16 autocast.
GPU_PATH: Mapping[str, Any] = MappingProxyType(
    {
        "data.cache_images": True,
        "data.group_by_aspect_ratio": True,
        "train.channels_last": True,
        "train.workers": -1,
        "train.amp": True,
    }
)

# CPU dry runs: the smoke preset's tiny detector, so every part runs in seconds.
TINY: Mapping[str, Any] = MappingProxyType(
    {
        k: v
        for k, v in presets.SMOKE.items()
        if not k.startswith("data.") and k not in ("train.workers", "train.epochs")
    }
)

MODELS = ("final", "tiny", "demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every part takes."""
    parser.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    parser.add_argument(
        "--data", type=Path, help="a synthetic data root to use (default: generate one)"
    )
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="final",
        help="final: the report's final config (ResNet-50 FPN, 512/1024, batch 8) on the GPU "
        "path; tiny: the smoke preset's detector on the same path (CPU dry runs); demo: the "
        "demo preset as `make demo` trains it",
    )
    parser.add_argument(
        "--weights",
        choices=("auto", "none"),
        default="auto",
        help="auto: the COCO weights when the torch hub cache has them, else none (from "
        "scratch: BatchNorm, every layer trainable; slower per image than the pretrained setup)",
    )


def device_of(name: str) -> torch.device:
    return resolve_device(name)


def data_root(root: Path | None, counts: Mapping[str, int], work: Path, seed: int = 3) -> Path:
    """``root`` when given (it must hold the splits), else a set generated under ``work``."""
    if root is not None:
        missing = [s for s in counts if not (root / f"{s}.json").is_file()]
        if missing:
            raise SystemExit(f"{root}: no {', '.join(missing)} split (generate it first)")
        return root
    out = work / "data"
    generate(out, dict(counts), seed=seed, options=SynthOptions(), progress=False)
    return out


def limits(train: int = 0, valid: int = 0, test: int = 0) -> dict[str, int]:
    """``data.*_limit`` overrides (0 = the whole split)."""
    return {"data.train_limit": train, "data.valid_limit": valid, "data.test_limit": test}


def experiment(
    model: str,
    root: Path,
    device: torch.device,
    weights: str = "auto",
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """The config a part trains: the final config (or the tiny one) on the GPU path, on
    ``root``, on ``device``, then ``overrides`` (dotted keys)."""
    base = {**(presets.DEMO if model == "demo" else GPU_PATH), "data.root": str(root)}
    base["train.device"] = str(device)
    if model == "tiny":
        base.update(TINY)
    cfg = apply_overrides(seed_config(), {**base, **(overrides or {})})
    return apply_overrides(cfg, {"model.weights": pick_weights(cfg, weights)})


def pick_weights(cfg: ExperimentConfig, setting: str) -> str:
    """``DEFAULT`` when asked for (auto) and the torch hub cache holds them, else ``none``."""
    if setting == "none" or cfg.model.arch == "tiny_fpn":
        return "none"
    try:
        check_weights(apply_overrides(cfg, {"model.weights": "DEFAULT"}).model)
    except WeightsError:
        return "none"
    return "DEFAULT"


def final_run_args(
    device: torch.device, root: Path, experiment: str, sets: Mapping[str, Any]
) -> list[str]:
    """``digitexp run`` arguments for the final spec's one run (seed 0) on ``device`` with
    ``sets`` as ``--set`` overrides (strings quoted as Python literals)."""
    set_args = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sets.items()]
    return [
        *("run", "ablations/final.py", "--variant", "final", "--seed", "0"),
        *("--device", str(device), "--data", str(root), "--experiment", experiment),
        *("--set", *set_args),
    ]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated since the last reset, MiB (None on the CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def batch_images(trainer: Trainer, epoch: int, steps: int) -> int:
    """Images in the first ``steps`` batches of ``epoch`` (a run's batches depend only on its
    seed and the epoch)."""
    trainer.sampler.set_epoch(epoch)
    batches = iter(trainer.sampler)
    return sum(len(next(batches)) for _ in range(min(steps, len(trainer.sampler))))


def steady_rate(trainer: Trainer, epoch: int, warmup: int, steps: int) -> float:
    """Training images/s of ``steps`` steps after ``warmup`` steps, with what every call of
    ``train_epoch`` pays once (the loader's workers starting, the first batch) cancelled
    out: the time of ``warmup + steps`` steps minus that of ``warmup`` steps."""
    start = time.perf_counter()
    trainer.train_epoch(epoch, steps=warmup)  # ends with a device sync
    short = time.perf_counter() - start
    start = time.perf_counter()
    trainer.train_epoch(epoch + 1, steps=warmup + steps)
    long = time.perf_counter() - start
    images = batch_images(trainer, epoch + 1, warmup + steps) - batch_images(trainer, epoch, warmup)
    return images / max(long - short, 1e-9)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def emit(figures: Mapping[str, Any]) -> None:
    """The part's last line: its figures as one JSON object."""
    print(json.dumps(figures), flush=True)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
