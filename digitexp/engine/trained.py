"""A trained run, loaded for inference: its best checkpoint, its config, and how to run it.

One function, :func:`load_trained_run`, serves ``search``, ``predict`` and the tests: it
downloads ``checkpoints/best.pt`` (``weights_only=True``), rebuilds the model from the config
the checkpoint holds (with overrides such as the device), and settles the inference settings
once: device, AMP dtype, loader workers (``train.workers=-1`` resolved) and batch size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from digitexp.config import ExperimentConfig, apply_overrides, diff
from digitexp.data import DigitDataset, Split
from digitexp.engine.checkpoints import checkpoint_config, load_checkpoint
from digitexp.engine.inference import infer, inference_record
from digitexp.engine.runtime import amp_dtype, loader_workers, resolve_device
from digitexp.errors import ConfigError, TrackingError, WeightsError, first_line
from digitexp.metrics import Detections
from digitexp.model import build_model
from digitexp.tracking import RunRecord, TrackingStore
from digitexp.tracking import contract as names

INFERENCE_MODEL_KEYS = frozenset(
    {
        "model.box_score_thresh",
        "model.box_nms_thresh",
        "model.box_detections_per_img",
        "model.rpn_pre_nms_top_n_test",
        "model.rpn_post_nms_top_n_test",
        "model.rpn_nms_thresh",
        "model.min_size",
        "model.max_size",
    }
)
"""The model settings inference may change: post-processing and the input size, not the
architecture the checkpoint's weights belong to."""


@dataclass
class TrainedModel:
    """A run's best weights on a device, with the settings inference uses."""

    run: RunRecord
    cfg: ExperimentConfig  # the checkpoint's config with the overrides applied
    state: dict[str, Any]  # the checkpoint
    model: torch.nn.Module
    device: torch.device
    amp: torch.dtype | None
    workers: int
    batch_size: int

    def dataset(self, split: Split) -> DigitDataset:
        """``split`` prepared as this run's validation images were (no augmentation)."""
        return DigitDataset(split, self.cfg.data, train=False)

    def inference_settings(self) -> dict[str, Any]:
        """What the detections depend on beyond the weights (``inference.json``)."""
        return inference_record(self.batch_size, self.device, self.amp)

    def infer(self, split: Split, *, progress: bool | None = None) -> list[Detections]:
        """The model's detections on ``split``, boxes in original image pixels."""
        return infer(
            self.model,
            self.dataset(split),
            device=self.device,
            batch_size=self.batch_size,
            workers=self.workers,
            pre_normalize=self.cfg.data.pre_normalize,
            amp_dtype=self.amp,
            progress=progress,
        )


def require_training_run(run: RunRecord) -> None:
    """TrackingError unless ``run`` is a variant x seed run of ``digitexp run`` or a trial of
    ``digitexp tune``."""
    kind = run.tag(names.TAG_KIND, names.KIND_TRAIN)
    if kind not in (names.KIND_TRAIN, names.KIND_TRIAL) or run.parent_id is None:
        raise TrackingError(
            f"run {run.run_id} ({run.name}) is not a training run of `digitexp run` or `tune` "
            "(pick a child run: `python -m digitexp runs` lists them)"
        )


def download_best_checkpoint(store: TrackingStore, run: RunRecord, folder: Path) -> Path:
    """Training run ``run``'s best checkpoint, downloaded into ``folder``; TrackingError for a
    run that is not a training run or never finished an epoch."""
    require_training_run(run)
    try:
        return store.download_artifact(run.run_id, names.BEST_CHECKPOINT, folder)
    except TrackingError:
        raise TrackingError(
            f"run {run.run_id} ({run.name}) has no {names.BEST_CHECKPOINT}: it did not finish "
            "an epoch"
        ) from None


def load_trained_run(
    store: TrackingStore,
    run_id: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
) -> TrainedModel:
    """Load run ``run_id``'s best checkpoint for inference.

    ``overrides`` (dotted keys, as ``--set``) change the config the checkpoint holds, e.g. the
    device or the data root; one that changes the architecture is refused in one line.
    """
    run = store.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="digitexp-weights-") as tmp:
        path = download_best_checkpoint(store, run, Path(tmp))
        try:
            state = load_checkpoint(path)
        except WeightsError as exc:
            detail = str(exc).split(": ", 1)[-1]
            raise WeightsError(f"run {run_id} {names.BEST_CHECKPOINT}: {detail}") from None
    trained_cfg = checkpoint_config(state, f"run {run_id} {names.BEST_CHECKPOINT}")
    try:
        cfg = apply_overrides(trained_cfg, {**(overrides or {}), "model.weights": "none"})
    except ConfigError as exc:
        raise ConfigError(f"--set {exc}") from None
    fixed = [
        k
        for k in diff(trained_cfg, cfg)
        if k.startswith("model.") and k not in INFERENCE_MODEL_KEYS and k != "model.weights"
    ]
    if fixed:
        raise ConfigError(
            f"--set {fixed[0]}: run {run_id}'s checkpoint fixes the architecture; inference "
            f"can change {', '.join(sorted(INFERENCE_MODEL_KEYS))}, the data, the device and "
            "eval.*"
        )
    device = resolve_device(cfg.train.device)
    try:
        model = build_model(cfg.model)
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError, TypeError, ConfigError) as exc:
        raise WeightsError(
            f"run {run_id} {names.BEST_CHECKPOINT}: the weights do not fit the model its "
            f"config describes ({first_line(exc)[:160]})"
        ) from None
    model.to(device).eval()
    return TrainedModel(
        run=run,
        cfg=cfg,
        state=state,
        model=model,
        device=device,
        amp=amp_dtype(cfg.train, device),
        workers=loader_workers(cfg.train.workers),
        batch_size=batch_size or cfg.train.eval_batch_size,
    )
