"""The house-number rule (the report's Task 2): one place that reads a number from digits.

Per image: detections with score > ``eval.score_thresh``, optionally a class-agnostic NMS,
sorted by box x_min, the digits (category_id - 1) joined and read as an integer (leading zeros
drop); no detection reads -1. Ground truth is read with the same rule from the annotated boxes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from digitexp.config import EvalConfig
from digitexp.data import Split
from digitexp.data.categories import digit_of
from digitexp.metrics.detections import Detections, agnostic_nms

NO_NUMBER = -1


def read_number(boxes: np.ndarray, labels: np.ndarray) -> int:
    """Digits sorted by box x_min, joined, read as an integer; no box gives -1."""
    if len(labels) == 0:
        return NO_NUMBER
    order = np.argsort(boxes[:, 0], kind="stable")
    digits = "".join(str(digit_of(int(labels[i]))) for i in order)
    return int(digits)


def above_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """score > ``threshold``, compared as the author's code compares: each float32 score
    read as a Python float (a double) against the threshold."""
    return np.asarray(scores).astype(np.float64) > float(threshold)


def reading(det: Detections, cfg: EvalConfig) -> Detections:
    """The detections the rule reads, in reading order: score > threshold, optional
    class-agnostic NMS, sorted by box x_min (stable)."""
    keep = above_threshold(det.scores, cfg.score_thresh)
    boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
    if cfg.agnostic_nms:
        idx = agnostic_nms(Detections(det.image_id, boxes, scores, labels), cfg.agnostic_nms_iou)
        boxes, scores, labels = boxes[idx], scores[idx], labels[idx]
    order = np.argsort(boxes[:, 0], kind="stable")
    return Detections(det.image_id, boxes[order], scores[order], labels[order])


def predicted_number(det: Detections, cfg: EvalConfig) -> int:
    """Task-2 reading of one image: score > threshold, optional class-agnostic NMS, join."""
    read = reading(det, cfg)
    return read_number(read.boxes, read.labels)


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
