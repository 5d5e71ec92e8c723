"""Which read digit is which true digit: the one matching behind the confusion matrix and the
Task-2 failure classes.

The detections are those the house-number rule reads (:func:`digitexp.metrics.numbers.reading`:
score > ``eval.score_thresh``, the optional class-agnostic NMS). In descending score order
(stable), each detection takes the not yet matched ground-truth box of highest IoU >=
``MATCH_IOU`` whatever the labels (ties: the first box). A detection left without one is a
*duplicate* when it has IoU >= ``MATCH_IOU`` with a box another detection already took (one
digit read twice), else *spurious*; a box no detection took is *missed*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitexp.metrics.digits import box_iou

MATCH_IOU = 0.5
UNMATCHED = -1


@dataclass(frozen=True)
class DigitMatch:
    """One image: for each read detection (in the order given) the ground-truth box it
    matched (``UNMATCHED`` when none), and whether an unmatched one is a duplicate."""

    det_to_gt: np.ndarray  # (D,) int64
    duplicate: np.ndarray  # (D,) bool
    gt_matched: np.ndarray  # (G,) bool

    @property
    def spurious(self) -> np.ndarray:
        return (self.det_to_gt == UNMATCHED) & ~self.duplicate

    @property
    def missed(self) -> np.ndarray:
        return ~self.gt_matched


def match_digits(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray) -> DigitMatch:
    """Greedy class-agnostic matching at IoU >= MATCH_IOU (see the module docstring)."""
    num_det, num_gt = len(det_boxes), len(gt_boxes)
    det_to_gt = np.full(num_det, UNMATCHED, dtype=np.int64)
    duplicate = np.zeros(num_det, dtype=bool)
    taken = np.zeros(num_gt, dtype=bool)
    if num_det and num_gt:
        ious = box_iou(det_boxes.astype(np.float64), gt_boxes.astype(np.float64))
        for d in np.argsort(-det_scores.astype(np.float64), kind="stable"):
            reach = ious[d] >= MATCH_IOU
            free = reach & ~taken
            if free.any():
                g = int(np.argmax(np.where(free, ious[d], -1.0)))
                det_to_gt[d] = g
                taken[g] = True
            elif reach.any():
                duplicate[d] = True
    return DigitMatch(det_to_gt, duplicate, taken)
