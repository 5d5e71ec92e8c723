"""Digit accuracy: the report's "validation accuracy" (see :func:`digit_accuracy`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from digitexp.data import Split
from digitexp.metrics.detections import Detections, agnostic_nms

UNDEFINED = float("nan")
"""Digit accuracy when no prediction counts (the author logged nothing then)."""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, in the boxes' dtype and in the operations of
    ``torchvision.ops.box_iou`` (so float32 boxes give torchvision's float32 values)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    safe = np.where(union > 0, union, 1)
    return np.where(union > 0, inter / safe, 0).astype(inter.dtype, copy=False)


def best_matches(
    boxes: np.ndarray, labels: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction of one image with ground truth: the IoU of its best-matching ground
    truth box (the first on ties) and whether their labels agree. As the author's code:
    ``torchvision.ops.box_iou`` in float32, several predictions may match one box."""
    ious = box_iou(boxes.astype(np.float32), gt_boxes.astype(np.float32))
    best = ious.argmax(axis=1)
    return ious[np.arange(len(best)), best], labels == gt_labels[best]


def counts(best_iou: np.ndarray, iou: float) -> np.ndarray:
    """Which matches count: best IoU > ``iou``, compared in float32 as torch compares a
    float32 tensor with a Python float."""
    return best_iou > np.float32(iou)


def digit_accuracy(
    split: Split, detections: Mapping[int, Detections], iou: float, nms_iou: float
) -> float:
    """The report's validation accuracy, as its author's code computes it.

    Per image, a class-agnostic NMS at ``nms_iou`` (torchvision ``nms``) first; then each kept
    prediction is matched to the ground-truth box of highest IoU in its image (the first on
    ties; IoUs in float32 as ``torchvision.ops.box_iou``); it counts when that IoU is
    > ``iou`` and is correct when the labels agree.
    Predictions on images without ground truth count as wrong; images with ground truth and no
    prediction add nothing. NaN when nothing counts (undefined, never 0).
    """
    counted = correct = 0
    for record in split.images:
        det = detections.get(record.id)
        if det is None or len(det.labels) == 0:
            continue
        keep = agnostic_nms(det, nms_iou)
        gt_boxes, gt_labels = split.boxes[record.id], split.labels[record.id]
        if len(gt_labels) == 0:
            counted += len(keep)
            continue
        best_iou, label_ok = best_matches(det.boxes[keep], det.labels[keep], gt_boxes, gt_labels)
        matched = counts(best_iou, iou)
        counted += int(matched.sum())
        correct += int((matched & label_ok).sum())
    return correct / counted if counted else UNDEFINED
