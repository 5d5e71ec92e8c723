"""Batched inference and the submission files (``pred.json``, ``pred.csv``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from digitexp import fsutil
from digitexp.config import EvalConfig
from digitexp.data.coco import DigitDataset, EpochBatchSampler, collate
from digitexp.data.transforms import prepare_batch
from digitexp.evaluate import Detections, coco_results, predicted_number
from digitexp.progress import Progress


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


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast | nullcontext:
    if dtype is None or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=dtype)


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


def submission_rows(
    detections: Sequence[Detections], image_ids: Sequence[int], cfg: EvalConfig
) -> list[tuple[int, int]]:
    """``(image_id, pred_label)`` for every image, sorted by image_id; -1 when nothing is read."""
    by_id = {d.image_id: d for d in detections}
    rows = []
    for image_id in sorted(image_ids):
        det = by_id.get(image_id) or Detections.empty(image_id)
        rows.append((image_id, predicted_number(det, cfg)))
    return rows


def write_submission(
    detections: Sequence[Detections], image_ids: Sequence[int], out_dir: Path, cfg: EvalConfig
) -> tuple[Path, Path]:
    """Write ``pred.json`` (COCO results) and ``pred.csv`` (``image_id,pred_label``) atomically."""
    json_path = fsutil.write_json(out_dir / "pred.json", coco_results(detections))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "pred_label"])
    writer.writerows(submission_rows(detections, image_ids, cfg))
    csv_path = fsutil.write_text(out_dir / "pred.csv", buf.getvalue())
    return json_path, csv_path
