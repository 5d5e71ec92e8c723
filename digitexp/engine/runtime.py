"""Where and how a run computes: device, mixed precision, loader workers, seeding, the
backbone's memory format. One place for these settings, shared by training and inference."""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from digitexp.config import TrainConfig
from digitexp.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device={name}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU computes it natively (compute capability 8.0 and up: A100, H100,
    ...), else fp16; None (fp32) on the CPU or with amp off."""
    if not cfg.amp or device.type != "cuda":
        return None
    native = torch.version.hip is not None or native_bf16(torch.cuda.get_device_capability(device))
    return torch.bfloat16 if native else torch.float16


def native_bf16(capability: tuple[int, int]) -> bool:
    """Whether a CUDA GPU of this compute capability has bf16 tensor cores. Not
    ``torch.cuda.is_bf16_supported()``: by default it also says yes where bf16 is only
    emulated (a V100 or T4, much slower than fp16), and it asks the current device, not the
    run's."""
    return capability[0] >= 8


def loader_workers(setting: int, cpus: int | None = None) -> int:
    """``train.workers``; -1 means one per CPU of the run's allotment (``cpus``; default the
    process's CPU affinity), at most 8."""
    if setting >= 0:
        return setting
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4
    return max(1, min(8, cpus))


def _to_channels_last(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def speed_up_backbone(model: torch.nn.Module, *, channels_last: bool, compile: bool) -> None:
    """channels_last weights and inputs for the backbone's convolutions (tensor cores prefer
    NHWC), and optionally torch.compile of the backbone."""
    backbone = model.backbone  # type: ignore[attr-defined]
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
        backbone.register_forward_pre_hook(_to_channels_last)
    if compile:
        backbone.forward = torch.compile(backbone.forward, dynamic=True)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # process-wide switches: set them every time, so one run's choice does not leak into
    # the next variant of the same invocation
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = False  # input sizes vary: autotuning would re-run often


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast | nullcontext:
    """Autocast to ``dtype`` on CUDA; a no-op elsewhere or without a dtype."""
    if dtype is None or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=dtype)
