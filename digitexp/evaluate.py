"""Metrics exactly as DESIGN.md defines them: COCO mAP, digit accuracy, whole-number accuracy.

``evaluate(split, detections, cfg)`` returns ``{"map", "map50", "map75", "digit_acc",
"number_acc"}``; the trainer prefixes them with ``val_`` / ``test_``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import nms

from digitexp.config import CocoBackend, EvalConfig
from digitexp.data.coco import Split
from digitexp.errors import ConfigError

NO_NUMBER = -1


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes xyxy (N, 4) in pixels, scores (N,), labels 1..10 (N,)."""

    image_id: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty(cls, image_id: int) -> Detections:
        return cls(
            image_id,
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
        )


# --------------------------------------------------------------------------- COCO mAP


def coco_results(detections: Iterable[Detections]) -> list[dict[str, Any]]:
    """COCO results: ``{image_id, bbox [x, y, w, h], score, category_id}`` per detection.

    Values are kept at full precision (no rounding), so that a results file re-scored later
    gives exactly the metrics computed in memory.
    """
    out: list[dict[str, Any]] = []
    for det in detections:
        for box, score, label in zip(
            det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            out.append(
                {
                    "image_id": det.image_id,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                    "category_id": int(label),
                }
            )
    return out


def coco_map(
    gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], backend: CocoBackend
) -> dict[str, float]:
    """mAP@[.5:.95], AP50, AP75 (bbox, maxDets 100) through pycocotools or faster-coco-eval."""
    if not results or not gt.get("annotations"):
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        match backend:
            case "pycocotools":
                from pycocotools.coco import COCO
                from pycocotools.cocoeval import COCOeval

                coco_gt = COCO()
                coco_gt.dataset = dict(gt)
                coco_gt.createIndex()
                coco_dt = coco_gt.loadRes(list(results))
                evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
            case "faster_coco_eval":
                try:
                    from faster_coco_eval import COCO as FastCOCO
                    from faster_coco_eval import COCOeval_faster
                except ImportError:
                    raise ConfigError(
                        "eval.coco_backend=faster_coco_eval needs the package: "
                        "pip install 'digitexp[fast]'"
                    ) from None
                coco_gt = FastCOCO(dict(gt))
                coco_dt = coco_gt.loadRes(list(results))
                evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"map": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2])}


# --------------------------------------------------------------------------- Task 2


def read_number(boxes: np.ndarray, labels: np.ndarray) -> int:
    """Digits sorted by box x_min, joined, read as an integer; no box gives -1."""
    if len(labels) == 0:
        return NO_NUMBER
    order = np.argsort(boxes[:, 0], kind="stable")
    digits = "".join(str(int(labels[i]) - 1) for i in order)
    return int(digits)


def predicted_number(det: Detections, cfg: EvalConfig) -> int:
    """Task-2 reading of one image: score > threshold, optional class-agnostic NMS, join."""
    keep = det.scores > cfg.score_thresh
    boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
    if cfg.agnostic_nms and len(scores) > 1:
        idx = nms(torch.from_numpy(boxes), torch.from_numpy(scores), cfg.agnostic_nms_iou)
        idx_np = idx.numpy()
        boxes, labels = boxes[idx_np], labels[idx_np]
    return read_number(boxes, labels)


def number_accuracy(split: Split, detections: Mapping[int, Detections], cfg: EvalConfig) -> float:
    """The report's Task 2: share of images whose whole number is read correctly."""
    if not split.images:
        return 0.0
    correct = 0
    for record in split.images:
        det = detections.get(record.id) or Detections.empty(record.id)
        truth = read_number(split.boxes[record.id], split.labels[record.id])
        correct += int(predicted_number(det, cfg) == truth)
    return correct / len(split.images)


# --------------------------------------------------------------------------- digit accuracy


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def digit_accuracy(split: Split, detections: Mapping[int, Detections], iou: float) -> float:
    """The report's validation accuracy.

    Each prediction is matched to the ground-truth box of highest IoU in its image; it counts
    when that IoU is > ``iou`` and is correct when the labels agree. Predictions on images
    without ground truth count as wrong; the rest are ignored.
    """
    counted = correct = 0
    for record in split.images:
        det = detections.get(record.id)
        if det is None or len(det.labels) == 0:
            continue
        gt_boxes, gt_labels = split.boxes[record.id], split.labels[record.id]
        if len(gt_labels) == 0:
            counted += len(det.labels)
            continue
        ious = box_iou(det.boxes.astype(np.float64), gt_boxes.astype(np.float64))
        best = ious.argmax(axis=1)
        matched = ious[np.arange(len(best)), best] > iou
        counted += int(matched.sum())
        correct += int((det.labels[matched] == gt_labels[best[matched]]).sum())
    return correct / counted if counted else 0.0


# --------------------------------------------------------------------------- all together


def evaluate(
    split: Split, detections: Sequence[Detections] | Mapping[int, Detections], cfg: EvalConfig
) -> dict[str, float]:
    """All metrics of one annotated split."""
    by_id = (
        dict(detections) if isinstance(detections, Mapping) else {d.image_id: d for d in detections}
    )
    metrics = coco_map(split.coco_gt(), coco_results(by_id.values()), cfg.coco_backend)
    metrics["digit_acc"] = digit_accuracy(split, by_id, cfg.digit_iou)
    metrics["number_acc"] = number_accuracy(split, by_id, cfg)
    return metrics
