"""Batched inference: a model over a dataset, boxes back in original image pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from digitexp.common.progress import Progress
from digitexp.data import DigitDataset, EpochBatchSampler, collate
from digitexp.data.transforms import prepare_batch
from digitexp.engine.runtime import autocast
from digitexp.metrics import Detections


def inference_record(
    batch_size: int, device: torch.device, amp_dtype: torch.dtype | None
) -> dict[str, Any]:
    """What detections depend on beyond the weights and the thresholds, for ``inference.json``:
    the batch size (torchvision pads a batch's images to one size), the device and AMP."""
    amp = str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None
    return {"batch_size": batch_size, "device": str(device), "amp": amp}


def eval_loader(dataset: DigitDataset, batch_size: int, workers: int, pin: bool) -> DataLoader:
    """Images in split order, ``batch_size`` at a time."""
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0, shuffle=False)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin,
    )


@torch.inference_mode()
def infer(
    model: torch.nn.Module,
    dataset: DigitDataset,
    *,
    device: torch.device,
    batch_size: int,
    workers: int = 0,
    pre_normalize: bool,
    amp_dtype: torch.dtype | None = None,
    progress: bool | None = None,
    desc: str = "predict",
) -> list[Detections]:
    """Run ``model`` over ``dataset``; boxes come back in original image pixels."""
    was_training = model.training
    model.eval()
    out: list[Detections] = []
    loader = eval_loader(dataset, batch_size, workers, pin=device.type == "cuda")
    with Progress(len(dataset), desc, enabled=progress, unit="img") as bar:
        for images, targets in loader:
            batch = prepare_batch(images, device, pre_normalize)
            with autocast(device, amp_dtype):
                outputs = model(batch)
            for output, target in zip(outputs, targets, strict=True):
                out.append(
                    Detections(
                        image_id=int(target["image_id"]),
                        boxes=output["boxes"].float().cpu().numpy().astype(np.float32),
                        scores=output["scores"].float().cpu().numpy().astype(np.float32),
                        labels=output["labels"].cpu().numpy().astype(np.int64),
                    )
                )
            bar.update(len(images))
    model.train(was_training)
    return out
