"""The one training loop every spec shares: :class:`Trainer` holds one run's state,
:func:`fit` drives it epoch by epoch and logs to a :class:`~digitexp.tracking.Tracker`.

Per epoch: train (AMP on CUDA, optional warm-up and clipping, losses read back every
``train.log_every`` steps only), validate, save ``last.pt`` and, when val mAP improved,
``best.pt`` (atomic writes), then log the epoch's metrics. Early stopping on val mAP keeps the
best checkpoint on disk and loads it once at the end, for the predictions on valid and test.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from digitexp.common import files
from digitexp.common.progress import Progress
from digitexp.config import ExperimentConfig, flatten, to_dict
from digitexp.data import (
    DataBundle,
    DigitDataset,
    DistributedBatches,
    EpochBatchSampler,
    aspect_ratio_groups,
    collate,
    load_data,
)
from digitexp.data.transforms import prepare_batch
from digitexp.engine.checkpoints import (
    CHECKPOINT_VERSION,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from digitexp.engine.cpus import CpuAllotment
from digitexp.engine.distributed import Distributed
from digitexp.engine.hooks import RunHook
from digitexp.engine.inference import infer, inference_record
from digitexp.engine.optim import build_optimizer, effective_lr, lr_factor
from digitexp.engine.preemption import Preempted, stop_reason, stop_requested
from digitexp.engine.runtime import (
    amp_dtype,
    autocast,
    loader_workers,
    resolve_device,
    seed_everything,
    speed_up_backbone,
)
from digitexp.errors import TrainingError
from digitexp.metrics import Detections, coco_results, evaluate
from digitexp.model import build_model, count_parameters
from digitexp.submission import write_inference_record, write_submission
from digitexp.tracking import NullTracker, Tracker
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.train")


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
class EarlyStop:
    """Early stopping on val mAP: the best epoch so far and the epochs since."""

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


def build_datasets(
    cfg: ExperimentConfig, data: DataBundle, progress: bool | None = None
) -> dict[str, DigitDataset]:
    """``train``, ``valid`` (and ``test``) datasets; with ``data.cache_images`` every image is
    decoded once into RAM here, before loader workers start."""
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


class Trainer:
    """One run's training state: datasets, model, optimizer, schedule, early stopping.

    :func:`fit` drives it; tools and benchmarks may drive it by hand::

        trainer = Trainer(cfg, load_data(cfg.data), workdir)
        metrics = trainer.train_epoch(1)          # one epoch (or ``steps=`` batches of it)
        val, detections = trainer.validate()

    With ``ctx`` (torchrun) the model is wrapped in DistributedDataParallel and each rank
    trains on its share of every epoch.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        data: DataBundle,
        workdir: Path,
        *,
        tracker: Tracker | None = None,
        progress: bool | None = None,
        ctx: Distributed | None = None,
    ) -> None:
        self.cfg = cfg
        self.tracker: Tracker = tracker if tracker is not None else NullTracker()
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
        # this run's share of the machine's CPUs (train.threads), counted again every epoch
        self.cpus = CpuAllotment(t.threads)
        self.workers = loader_workers(t.workers, self.cpus.apply().threads)
        if not self.is_main:  # only rank 0 predicts the test split
            data = DataBundle(data.train, data.valid, None)
        self.sets = build_datasets(cfg, data, self.progress)
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
        self.stop = EarlyStop()
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
                len(dataset),
                t.batch_size,
                seed=t.seed,
                num_replicas=self.ctx.world_size,
                rank=self.ctx.rank,
                groups=groups,
            )
        self.generator = torch.Generator()
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            generator=self.generator,
        )
        return loader, sampler

    # ----------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds (see :mod:`digitexp.engine.checkpoints`)."""
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
            "rng": rng_state(),
            "config": to_dict(self.cfg),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state: the next epoch is ``state["epoch"] + 1``."""
        self.core.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        es = state["early_stop"]
        self.stop = EarlyStop(float(es["best_map"]), int(es["best_epoch"]), int(es["bad_epochs"]))
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        set_rng_state(state["rng"])

    # ----------------------------------------------------------------- epochs

    def _batches(self, epoch: int, steps: int) -> Iterator[tuple[list[torch.Tensor], list[dict]]]:
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(self.cfg.train.seed * 7919 + epoch)
        for step, batch in enumerate(self.loader):
            if step >= steps:
                break
            yield batch

    def train_epoch(self, epoch: int, steps: int | None = None) -> dict[str, float]:
        """Train one epoch (its batches depend only on the seed and ``epoch``) and return its
        metrics: ``train_loss``, the four loss parts, ``lr`` (at the epoch's last step) and
        ``train_images_per_s``. ``steps`` stops after that many batches (default: the epoch,
        or ``train.max_steps_per_epoch``). Raises TrainingError on a non-finite loss."""
        t = self.cfg.train
        steps = self.steps_per_epoch if steps is None else steps
        self.cpus.apply()
        self.model.train()
        sums = torch.zeros(len(names.LOSS_PARTS) + 1, device=self.device)
        done = images_seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        desc = f"epoch {epoch}/{t.epochs}"
        with Progress(steps, desc, enabled=self.progress, unit="batch") as bar:
            for images, targets in self._batches(epoch, steps):
                sums += self._step(images, targets)
                done += 1
                images_seen += len(images)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                if done % t.log_every == 0:
                    mean = self._check_finite(sums, done, epoch)
                    rate = images_seen / (time.perf_counter() - start)
                    bar.update(1, loss=f"{mean:.4f}", img_s=f"{rate:.1f}")
                else:
                    bar.update(1)
                if self.must_stop(done):  # the partial epoch is redone on resume
                    raise Preempted(self.epoch, f"{stop_reason()} in epoch {epoch}, step {done}")
        if done == 0:
            raise TrainingError(f"epoch {epoch}: the training split gave no batches")
        mean_total = self._check_finite(sums, done, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        world = 1
        if self.ctx is not None:  # every rank's losses and images
            world = self.ctx.world_size
            sums = self.ctx.sum(sums)
            images_seen = int(self.ctx.sum(torch.tensor([images_seen])).item())
        means = (sums / (done * world)).tolist()
        metrics = {
            names.TRAIN_LOSS: mean_total,
            names.LR: lr,
            names.TRAIN_IMAGES_PER_S: images_seen / seconds,
        }
        metrics.update({k: means[i + 1] for i, k in enumerate(names.LOSS_PARTS)})
        return metrics

    def must_stop(self, step: int | None = None) -> bool:
        """True when a stop was requested (:mod:`digitexp.engine.preemption`). Under DDP the
        ranks decide together (one small all-reduce) where they all ask: before each epoch
        (``step`` None) and every ``train.log_every`` steps."""
        if self.ctx is None:
            return stop_requested()
        if step is not None and step % self.cfg.train.log_every:
            return False
        flag = torch.tensor([1.0 if stop_requested() else 0.0])
        return bool(self.ctx.sum(flag).item() > 0)

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
        parts = [total.detach().float()] + [losses[k].detach().float() for k in names.LOSS_PARTS]
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

    def predict(self, split: str, desc: str) -> list[Detections]:
        """The model's detections on one of the datasets (``valid``, ``test``)."""
        return self._infer(self.sets[split], desc)

    def _infer(self, dataset: Any, desc: str) -> list[Detections]:
        return infer(
            self.core,
            dataset,
            device=self.device,
            batch_size=self.cfg.train.eval_batch_size,
            workers=self.workers,
            pre_normalize=self.cfg.data.pre_normalize,
            amp_dtype=self.amp,
            progress=self.progress,
            desc=desc,
        )

    def inference_settings(self) -> dict[str, Any]:
        """What this run's predictions depend on beyond the weights (``inference.json``)."""
        return inference_record(self.cfg.train.eval_batch_size, self.device, self.amp)

    def validate(self, gather: bool = True) -> tuple[dict[str, float], list[Detections]]:
        """Metrics on valid. With DDP each rank predicts its share, rank 0 gathers and scores,
        and every rank receives the metrics (early stopping decides the same everywhere).
        ``gather=False`` predicts the whole split in this process alone (no collectives)."""
        valid = self.sets["valid"]
        if self.ctx is None or not gather:
            dets = self.predict("valid", "validate")
            return evaluate(valid.split, dets, self.cfg.eval), dets
        dets = self._infer(valid.shard(self.ctx.rank, self.ctx.world_size), "validate")
        parts = self.ctx.gather(dets)
        metrics = None
        if parts is not None:
            dets = [d for part in parts for d in part]
            metrics = evaluate(valid.split, dets, self.cfg.eval)
        return self.ctx.broadcast(metrics), dets

    def save(self, name: str) -> Path:
        """Write the state as ``workdir/checkpoints/NAME`` (atomically)."""
        path = self.workdir / names.CHECKPOINTS / name
        save_checkpoint(path, self.state())
        return path

    def remember(self, metrics: dict[str, float]) -> None:
        """Add an epoch's metrics to the history the checkpoints carry."""
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)

    def close(self) -> None:
        """Leave the host's count of live runs (:mod:`digitexp.engine.cpus`); garbage
        collection does it for a trainer never closed."""
        self.cpus.close()


# --------------------------------------------------------------------------- the run


def fit(
    cfg: ExperimentConfig,
    tracker: Tracker | None = None,
    *,
    data: DataBundle | None = None,
    workdir: Path | None = None,
    progress: bool | None = None,
    resume: dict[str, Any] | None = None,
    ctx: Distributed | None = None,
    hooks: Sequence[RunHook] = (),
) -> RunResult:
    """Train, validate every epoch, log to ``tracker``, predict valid/test with the best weights.

    ``resume`` is a checkpoint dict (:func:`load_checkpoint`) to continue from; ``hooks`` run
    at the end of every epoch and of the run (:mod:`digitexp.engine.hooks`). Raises
    TrainingError on a non-finite loss and Preempted at the next safe point after a stop
    request (:mod:`digitexp.engine.preemption`); KeyboardInterrupt passes through. Either way
    the last good checkpoint stays logged. Under DDP, rank 0's ``resume`` goes to every rank.
    """
    tracker = tracker if tracker is not None else NullTracker()
    data = data if data is not None else load_data(cfg.data)
    with _workdir(workdir) as wd:
        trainer = Trainer(cfg, data, wd, tracker=tracker, progress=progress, ctx=ctx)
        try:
            return _fit(trainer, resume, hooks)
        finally:
            trainer.close()


@contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="digitexp-") as tmp:
        yield Path(tmp)


def _fit(trainer: Trainer, resume: dict[str, Any] | None, hooks: Sequence[RunHook]) -> RunResult:
    start = time.perf_counter()
    cfg, tracker = trainer.cfg, trainer.tracker
    world = trainer.ctx.world_size if trainer.ctx else 1
    if trainer.ctx is not None:  # rank 0 read the checkpoint: every rank continues from it
        resume = _share_resume(trainer, trainer.ctx, resume)
    if resume is None:
        tracker.log_params(flatten(cfg))
        tracker.log_dict(to_dict(cfg), names.CONFIG_JSON)
        tracker.set_tags(
            {
                names.TAG_NUM_PARAMETERS: str(count_parameters(trainer.core)),
                names.TAG_WORLD_SIZE: str(world),
                names.TAG_EFFECTIVE_LR: f"{effective_lr(cfg.train, world):g}",
                names.TAG_EFFECTIVE_BATCH_SIZE: str(cfg.train.batch_size * world),
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
        if trainer.must_stop():
            raise Preempted(trainer.epoch, f"{stop_reason()} before epoch {trainer.epoch + 1}")
        epoch = trainer.epoch + 1
        epoch_start = time.perf_counter()
        metrics = trainer.train_epoch(epoch)
        val, dets = trainer.validate()
        metrics.update({names.val_metric(k): v for k, v in val.items()})
        metrics[names.EPOCH_SECONDS] = time.perf_counter() - epoch_start
        trainer.epoch = epoch
        improved = trainer.stop.update(val["map"], epoch)
        trainer.remember(metrics)
        # checkpoints first, then the epoch's metrics: a run killed in between resumes from
        # this epoch's checkpoint and logs the metrics it holds, so no step is lost or doubled
        if trainer.is_main:
            # last.pt first: a resume restores from it, and when it is also the best epoch
            # it stands in for a best.pt that did not get written
            tracker.log_artifact(trainer.save("last.pt"), names.CHECKPOINTS)
            if improved:
                trainer.best_val = (val, dets)
                tracker.log_artifact(trainer.save("best.pt"), names.CHECKPOINTS)
            tracker.log_metrics(metrics, step=epoch)
            tracker.set_tags({names.TAG_EPOCH: str(epoch)})
            for hook in hooks:
                hook.epoch_end(trainer, epoch, metrics)
        log.info(
            "epoch %d/%d: loss %.4f, val mAP %.4f, Task-2 %.4f, %.1f s",
            epoch,
            t.epochs,
            metrics[names.TRAIN_LOSS],
            val["map"],
            val["number_acc"],
            metrics[names.EPOCH_SECONDS],
        )
    return _finish(trainer, time.perf_counter() - start, stopped_early, hooks)


def _share_resume(
    trainer: Trainer, ctx: Distributed, resume: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Rank 0's resume state on every rank. The ranks of one torchrun share a machine: rank 0
    writes the state beside its checkpoints and the others load that file."""
    path = None
    if ctx.is_main and resume is not None:
        path = trainer.workdir / names.CHECKPOINTS / "resume.pt"
        save_checkpoint(path, resume)
    shared = ctx.broadcast(None if path is None else str(path))
    if shared is None:
        return resume
    if not ctx.is_main:
        resume = load_checkpoint(Path(shared))
    ctx.barrier()
    if path is not None:
        path.unlink()
    return resume


def _finish(
    trainer: Trainer, seconds: float, stopped_early: bool, hooks: Sequence[RunHook]
) -> RunResult:
    """Load the best weights once; predictions on valid and test; summary metrics.

    With DDP only rank 0 (which holds the checkpoints) does this; the others return the
    epochs' results."""
    cfg, tracker = trainer.cfg, trainer.tracker
    final_loss = trainer.history[names.TRAIN_LOSS][-1]
    result = RunResult(
        best_val_map=trainer.stop.best_map,
        best_epoch=trainer.stop.best_epoch,
        epochs=trainer.epoch,
        final_train_loss=final_loss,
        val={},
        test=None,
        seconds=seconds,
        stopped_early=stopped_early,
        history=trainer.history,
    )
    if not trainer.is_main:
        return result
    best_path = trainer.workdir / names.BEST_CHECKPOINT
    trainer.core.load_state_dict(load_checkpoint(best_path)["model"])
    if trainer.best_val is not None:
        val, val_dets = trainer.best_val
    else:  # resumed: the best epoch's detections are not in memory (rank 0 alone is here)
        val, val_dets = trainer.validate(gather=False)
    preds = trainer.workdir / names.PREDICTIONS
    val_json = files.write_json(trainer.workdir / names.VAL_PREDICTIONS, coco_results(val_dets))
    tracker.log_artifact(val_json, names.PREDICTIONS)
    settings = trainer.inference_settings()
    info = write_inference_record(preds, {**settings, "files": [Path(val_json).name]})
    tracker.log_artifact(info, names.PREDICTIONS)
    test_metrics = None
    if "test" in trainer.sets:
        test_set = trainer.sets["test"]
        test_dets = trainer.predict("test", "test")
        images = test_set.split.images
        for path in write_submission(test_dets, images, preds / "test", cfg.eval, settings):
            tracker.log_artifact(path, names.TEST_PREDICTIONS)
        if test_set.split.has_annotations:
            test_metrics = evaluate(test_set.split, test_dets, cfg.eval)
    summary = {
        names.BEST_VAL_MAP: trainer.stop.best_map,
        names.BEST_EPOCH: float(trainer.stop.best_epoch),
        names.FINAL_TRAIN_LOSS: final_loss,
    }
    summary.update({names.at_best_metric(k): v for k, v in val.items() if k != "map"})
    if test_metrics is not None:
        summary.update({names.test_metric(k): v for k, v in test_metrics.items()})
    tracker.log_metrics(summary)
    result = replace(result, val=val, test=test_metrics)
    for hook in hooks:
        hook.run_end(trainer, result, val_dets)
    return result
