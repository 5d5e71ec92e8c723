"""The optimizer and the learning-rate schedule (per iteration: epoch schedule x warm-up)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from digitexp.config import TrainConfig


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of ``train.lr`` at iteration ``it``: epoch schedule times linear warm-up."""

    def factor(it: int) -> float:
        epoch = it // max(1, steps_per_epoch)
        match cfg.scheduler:
            case "step":
                f = cfg.gamma ** (epoch // cfg.step_size)
            case "cosine":
                ratio = cfg.eta_min / cfg.lr
                f = ratio + (1 - ratio) * (1 + math.cos(math.pi * epoch / cfg.t_max)) / 2
            case "none":
                f = 1.0
        if it < cfg.warmup_iters:
            f *= cfg.warmup_factor + (1 - cfg.warmup_factor) * it / cfg.warmup_iters
        return f

    return factor


def effective_lr(cfg: TrainConfig, world_size: int = 1) -> float:
    """The learning rate the optimizer uses: ``lr``, times the world size when scaled."""
    return cfg.lr * world_size if cfg.lr_scaling == "linear" else cfg.lr


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, world_size: int = 1
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    lr = effective_lr(cfg, world_size)
    match cfg.optimizer:
        case "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        case "sgd":
            return torch.optim.SGD(
                params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
