"""``fit(cfg, tracker) -> RunResult``: the one training loop every spec shares.

Per epoch: train (AMP on CUDA, optional warm-up and clipping, losses read back every
``train.log_every`` steps only), validate, log the epoch's metrics, save ``last.pt`` and, when
val mAP improved, ``best.pt`` (atomic writes). Early stopping on val mAP keeps the best
checkpoint on disk and loads it once at the end, for the predictions on valid and test.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from digitexp import fsutil
from digitexp.config import DataConfig, ExperimentConfig, TrainConfig, flatten, from_dict, to_dict
from digitexp.data.coco import (
    DigitDataset,
    EpochBatchSampler,
    Split,
    aspect_ratio_groups,
    collate,
    load_split,
)
from digitexp.data.transforms import prepare_batch
from digitexp.distributed import Distributed, DistributedBatches
from digitexp.errors import ConfigError, TrainingError, WeightsError, first_line
from digitexp.evaluate import Detections, coco_results, evaluate
from digitexp.model import build_model, count_parameters
from digitexp.predict import autocast, infer, write_submission
from digitexp.progress import Progress
from digitexp.tracking import NullTracker, Tracker

log = logging.getLogger("digitexp.train")

LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataBundle:
    train: Split
    valid: Split
    test: Split | None


def load_data(cfg: DataConfig) -> DataBundle:
    """Validate and load the three splits (test is optional and may lack annotations)."""
    root = Path(cfg.root)
    train = load_split(root, cfg.train_split, clip_boxes=cfg.clip_boxes, limit=cfg.train_limit)
    valid = load_split(root, cfg.valid_split, clip_boxes=cfg.clip_boxes, limit=cfg.valid_limit)
    test = None
    if (root / cfg.test_split).is_dir():
        test = load_split(
            root,
            cfg.test_split,
            require_annotations=False,
            clip_boxes=cfg.clip_boxes,
            limit=cfg.test_limit,
        )
    else:
        log.info("no %s/ folder in %s: no test predictions", cfg.test_split, root)
    return DataBundle(train, valid, test)


def _datasets(cfg: ExperimentConfig, data: DataBundle, progress: bool | None) -> dict[str, Any]:
    sets: dict[str, DigitDataset] = {
        "train": DigitDataset(data.train, cfg.data, train=True),
        "valid": DigitDataset(data.valid, cfg.data, train=False),
    }
    if data.test is not None:
        sets["test"] = DigitDataset(data.test, cfg.data, train=False)
    if cfg.data.cache_images:
        total = sum(len(d) for d in sets.values())
        with Progress(total, "decode cache", enabled=progress, unit="img") as bar:
            nbytes = sum(d.build_cache(bar.update).nbytes for d in sets.values())
        log.info("decoded %d images once into %.1f MB of RAM", total, nbytes / 2**20)
    return sets


# --------------------------------------------------------------------------- set-up


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
    """bf16 where the GPU supports it, else fp16; None (fp32) on the CPU or with amp off."""
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def loader_workers(setting: int) -> int:
    """``train.workers``; -1 means one per CPU core, at most 8."""
    if setting >= 0:
        return setting
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4)


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


# --------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for device, rng in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(rng, device)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a kill mid-write keeps the old file."""
    fsutil.write_with(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``."""
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that would run code
        first = first_line(exc)
        raise WeightsError(f"{path}: not a loadable checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise WeightsError(f"{path}: not a digitexp checkpoint (no model/config entries)")
    return state


def checkpoint_config(state: dict[str, Any], source: Path) -> ExperimentConfig:
    try:
        return from_dict(state["config"])
    except ConfigError as exc:
        raise WeightsError(f"{source}: checkpoint config does not load ({exc})") from None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RunResult:
    best_val_map: float
    best_epoch: int
    epochs: int
    final_train_loss: float
    val: dict[str, float]
    test: dict[str, float] | None
    seconds: float
    stopped_early: bool
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class _EarlyStop:
    best_map: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's val mAP; True when it is a new best."""
        if value > self.best_map:
            self.best_map, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def should_stop(self, patience: int) -> bool:
        return patience > 0 and self.bad_epochs >= patience


# --------------------------------------------------------------------------- the loop


class _Trainer:
    """State of one run; ``fit`` drives it."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        tracker: Tracker,
        data: DataBundle,
        workdir: Path,
        progress: bool | None,
        ctx: Distributed | None = None,
    ) -> None:
        self.cfg = cfg
        self.tracker = tracker
        self.workdir = workdir
        self.ctx = ctx
        self.is_main = ctx is None or ctx.is_main
        self.progress = progress if self.is_main else False
        t = cfg.train
        seed_everything(t.seed, t.deterministic)
        self.device = resolve_device(t.device)
        if ctx is not None and self.device.type == "cuda":
            self.device = torch.device("cuda", ctx.local_rank)
        self.amp = amp_dtype(t, self.device)
        if not self.is_main:  # only rank 0 predicts the test split
            data = DataBundle(data.train, data.valid, None)
        self.sets = _datasets(cfg, data, self.progress)
        # ``core`` is the model itself (state dicts, evaluation); ``model`` trains (DDP-wrapped
        # when data-parallel)
        self.core = build_model(cfg.model).to(self.device)
        if self.device.type == "cuda":
            speed_up_backbone(self.core, channels_last=t.channels_last, compile=t.compile_backbone)
        self.model: torch.nn.Module = self.core
        if ctx is not None:
            ids = [ctx.local_rank] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.core, device_ids=ids)
        self.optimizer = build_optimizer(self.core, t, ctx.world_size if ctx else 1)
        self.loader, self.sampler = self._train_loader()
        self.steps_per_epoch = len(self.loader)
        if t.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, t.max_steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(t, self.steps_per_epoch)
        )
        fp16 = self.amp == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self.stop = _EarlyStop()
        self.epoch = 0
        self.history: dict[str, list[float]] = {}
        # the best epoch's validation (metrics, detections), kept so it is not recomputed
        self.best_val: tuple[dict[str, float], list[Detections]] | None = None

    def _train_loader(self) -> tuple[DataLoader, EpochBatchSampler | DistributedBatches]:
        t = self.cfg.train
        dataset = self.sets["train"]
        groups = aspect_ratio_groups(dataset) if self.cfg.data.group_by_aspect_ratio else None
        sampler: EpochBatchSampler | DistributedBatches
        if self.ctx is None:
            sampler = EpochBatchSampler(len(dataset), t.batch_size, seed=t.seed, groups=groups)
        else:
            sampler = DistributedBatches(
                len(dataset), t.batch_size, seed=t.seed, ctx=self.ctx, groups=groups
            )
        self.generator = torch.Generator()
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=loader_workers(t.workers),
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            generator=self.generator,
        )
        return loader, sampler

    # ----------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model": self.core.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "early_stop": {
                "best_map": self.stop.best_map,
                "best_epoch": self.stop.best_epoch,
                "bad_epochs": self.stop.bad_epochs,
            },
            "history": self.history,
            "rng": _rng_state(),
            "config": to_dict(self.cfg),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.core.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        es = state["early_stop"]
        self.stop = _EarlyStop(float(es["best_map"]), int(es["best_epoch"]), int(es["bad_epochs"]))
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        _set_rng_state(state["rng"])

    # ----------------------------------------------------------------- epochs

    def _batches(self, epoch: int) -> Iterator[tuple[list[torch.Tensor], list[dict]]]:
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(self.cfg.train.seed * 7919 + epoch)
        for step, batch in enumerate(self.loader):
            if step >= self.steps_per_epoch:
                break
            yield batch

    def train_epoch(self, epoch: int) -> dict[str, float]:
        t = self.cfg.train
        self.model.train()
        sums = torch.zeros(len(LOSS_KEYS) + 1, device=self.device)
        steps = images_seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        desc = f"epoch {epoch}/{t.epochs}"
        with Progress(self.steps_per_epoch, desc, enabled=self.progress, unit="batch") as bar:
            for images, targets in self._batches(epoch):
                loss_vec = self._step(images, targets)
                sums += loss_vec
                steps += 1
                images_seen += len(images)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                if steps % t.log_every == 0:
                    mean = self._check_finite(sums, steps, epoch)
                    rate = images_seen / (time.perf_counter() - start)
                    bar.update(1, loss=f"{mean:.4f}", img_s=f"{rate:.1f}")
                else:
                    bar.update(1)
        if steps == 0:
            raise TrainingError(f"epoch {epoch}: the training split gave no batches")
        mean_total = self._check_finite(sums, steps, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        world = 1
        if self.ctx is not None:  # every rank's losses and images
            world = self.ctx.world_size
            sums = self.ctx.sum(sums)
            images_seen = int(self.ctx.sum(torch.tensor([images_seen])).item())
        means = (sums / (steps * world)).tolist()
        metrics = {"train_loss": mean_total, "lr": lr, "train_images_per_s": images_seen / seconds}
        metrics.update({k: means[i + 1] for i, k in enumerate(LOSS_KEYS)})
        return metrics

    def _step(self, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
        t = self.cfg.train
        batch = prepare_batch(images, self.device, self.cfg.data.pre_normalize)
        targets = [
            {k: v.to(self.device, non_blocking=True) for k, v in tgt.items()} for tgt in targets
        ]
        with autocast(self.device, self.amp):
            losses = self.model(batch, targets)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            if t.grad_clip_norm > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            if t.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip_norm)
            self.optimizer.step()
        parts = [total.detach().float()] + [losses[k].detach().float() for k in LOSS_KEYS]
        return torch.stack(parts)

    def _check_finite(self, sums: torch.Tensor, steps: int, epoch: int) -> float:
        """Read the running loss back (a host sync) and stop on NaN or infinity. With DDP it
        is the mean over ranks, so every rank takes the same decision."""
        world = 1
        if self.ctx is not None:
            world = self.ctx.world_size
            sums = self.ctx.sum(sums)
        total = float(sums[0].item()) / world
        if not math.isfinite(total):
            raise TrainingError(
                f"non-finite loss ({total}) in epoch {epoch} by step {steps}; lower train.lr or "
                "set train.grad_clip_norm; the last good checkpoint is kept"
            )
        return total / steps

    def validate(self, gather: bool = True) -> tuple[dict[str, float], list[Detections]]:
        """Metrics on valid. With DDP each rank predicts its share, rank 0 gathers and scores,
        and every rank receives the metrics (early stopping decides the same everywhere).
        ``gather=False`` predicts the whole split in this process alone (no collectives)."""
        dataset = self.sets["valid"]
        if self.ctx is not None and gather:
            dataset = dataset.shard(self.ctx.rank, self.ctx.world_size)
        dets = infer(
            self.core,
            dataset,
            device=self.device,
            batch_size=self.cfg.train.eval_batch_size,
            workers=loader_workers(self.cfg.train.workers),
            pre_normalize=self.cfg.data.pre_normalize,
            amp_dtype=self.amp,
            progress=self.progress,
            desc="validate",
        )
        if self.ctx is None or not gather:
            return evaluate(self.sets["valid"].split, dets, self.cfg.eval), dets
        parts = self.ctx.gather(dets)
        metrics = None
        if parts is not None:
            dets = [d for part in parts for d in part]
            metrics = evaluate(self.sets["valid"].split, dets, self.cfg.eval)
        return self.ctx.broadcast(metrics), dets

    def save(self, name: str) -> Path:
        path = self.workdir / "checkpoints" / name
        save_checkpoint(path, self.state())
        return path

    def remember(self, metrics: dict[str, float]) -> None:
        """Add an epoch's metrics to the history the checkpoints carry."""
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)


def fit(
    cfg: ExperimentConfig,
    tracker: Tracker | None = None,
    *,
    data: DataBundle | None = None,
    workdir: Path | None = None,
    progress: bool | None = None,
    resume: dict[str, Any] | None = None,
    ctx: Distributed | None = None,
) -> RunResult:
    """Train, validate every epoch, log to ``tracker``, predict valid/test with the best weights.

    ``resume`` is a checkpoint dict (:func:`load_checkpoint`) to continue from. Raises
    TrainingError on a non-finite loss; KeyboardInterrupt passes through. Either way the last
    good checkpoint stays logged.
    """
    tracker = tracker if tracker is not None else NullTracker()
    data = data if data is not None else load_data(cfg.data)
    with _workdir(workdir) as wd:
        return _fit(cfg, tracker, data, wd, progress, resume, ctx)


@contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="digitexp-") as tmp:
        yield Path(tmp)


def _fit(
    cfg: ExperimentConfig,
    tracker: Tracker,
    data: DataBundle,
    workdir: Path,
    progress: bool | None,
    resume: dict[str, Any] | None,
    ctx: Distributed | None = None,
) -> RunResult:
    start = time.perf_counter()
    trainer = _Trainer(cfg, tracker, data, workdir, progress, ctx)
    world = ctx.world_size if ctx else 1
    if resume is None:
        tracker.log_params(flatten(cfg))
        tracker.log_dict(to_dict(cfg), "config.json")
        tracker.set_tags(
            {
                "digitexp.num_parameters": str(count_parameters(trainer.core)),
                "digitexp.world_size": str(world),
                "digitexp.effective_lr": f"{effective_lr(cfg.train, world):g}",
                "digitexp.effective_batch_size": str(cfg.train.batch_size * world),
            }
        )
    else:
        trainer.restore(resume)
        log.info("resuming after epoch %d", trainer.epoch)
    t = cfg.train
    log.info(
        "training %s on %s: %d train / %d valid images, %d steps per epoch, amp=%s",
        cfg.model.arch,
        trainer.device,
        len(trainer.sets["train"]),
        len(trainer.sets["valid"]),
        trainer.steps_per_epoch,
        trainer.amp,
    )
    stopped_early = False
    while trainer.epoch < t.epochs:
        if trainer.stop.should_stop(t.early_stop_patience):
            stopped_early = True
            break
        epoch = trainer.epoch + 1
        epoch_start = time.perf_counter()
        metrics = trainer.train_epoch(epoch)
        val, dets = trainer.validate()
        metrics.update({f"val_{k}": v for k, v in val.items()})
        metrics["epoch_seconds"] = time.perf_counter() - epoch_start
        trainer.epoch = epoch
        improved = trainer.stop.update(val["map"], epoch)
        trainer.remember(metrics)
        # checkpoints first, then the epoch's metrics: a run killed in between resumes from
        # this epoch's checkpoint and logs the metrics it holds, so no step is lost or doubled
        if trainer.is_main:
            # last.pt first: a resume restores from it, and when it is also the best epoch
            # it stands in for a best.pt that did not get written
            tracker.log_artifact(trainer.save("last.pt"), "checkpoints")
            if improved:
                trainer.best_val = (val, dets)
                tracker.log_artifact(trainer.save("best.pt"), "checkpoints")
            tracker.log_metrics(metrics, step=epoch)
            tracker.set_tags({"digitexp.epoch": str(epoch)})
        log.info(
            "epoch %d/%d: loss %.4f, val mAP %.4f, Task-2 %.4f, %.1f s",
            epoch,
            t.epochs,
            metrics["train_loss"],
            val["map"],
            val["number_acc"],
            metrics["epoch_seconds"],
        )
    return _finish(trainer, time.perf_counter() - start, stopped_early)


def _finish(trainer: _Trainer, seconds: float, stopped_early: bool) -> RunResult:
    """Load the best weights once; predictions on valid and test; summary metrics.

    With DDP only rank 0 (which holds the checkpoints) does this; the others return the
    epochs' results."""
    cfg, tracker = trainer.cfg, trainer.tracker
    if not trainer.is_main:
        return RunResult(
            best_val_map=trainer.stop.best_map,
            best_epoch=trainer.stop.best_epoch,
            epochs=trainer.epoch,
            final_train_loss=trainer.history["train_loss"][-1],
            val={},
            test=None,
            seconds=seconds,
            stopped_early=stopped_early,
            history=trainer.history,
        )
    best_path = trainer.workdir / "checkpoints" / "best.pt"
    trainer.core.load_state_dict(load_checkpoint(best_path)["model"])
    if trainer.best_val is not None:
        val, val_dets = trainer.best_val
    else:  # resumed: the best epoch's detections are not in memory (rank 0 alone is here)
        val, val_dets = trainer.validate(gather=False)
    preds = trainer.workdir / "predictions"
    tracker.log_artifact(
        fsutil.write_json(preds / "val.json", coco_results(val_dets)), "predictions"
    )
    test_metrics = None
    if "test" in trainer.sets:
        test_set = trainer.sets["test"]
        test_dets = infer(
            trainer.core,
            test_set,
            device=trainer.device,
            batch_size=cfg.train.eval_batch_size,
            workers=loader_workers(cfg.train.workers),
            pre_normalize=cfg.data.pre_normalize,
            amp_dtype=trainer.amp,
            progress=trainer.progress,
            desc="test",
        )
        ids = [r.id for r in test_set.split.images]
        for path in write_submission(test_dets, ids, preds / "test", cfg.eval):
            tracker.log_artifact(path, "predictions/test")
        if test_set.split.has_annotations:
            test_metrics = evaluate(test_set.split, test_dets, cfg.eval)
    final_loss = trainer.history["train_loss"][-1]
    summary = {
        "best_val_map": trainer.stop.best_map,
        "best_epoch": float(trainer.stop.best_epoch),
        "final_train_loss": final_loss,
    }
    summary.update({f"best_val_{k}": v for k, v in val.items() if k != "map"})
    if test_metrics is not None:
        summary.update({f"test_{k}": v for k, v in test_metrics.items()})
    tracker.log_metrics(summary)
    return RunResult(
        best_val_map=trainer.stop.best_map,
        best_epoch=trainer.stop.best_epoch,
        epochs=trainer.epoch,
        final_train_loss=final_loss,
        val=val,
        test=test_metrics,
        seconds=seconds,
        stopped_early=stopped_early,
        history=trainer.history,
    )
