"""Task-2 failures: why an image's house number was read wrong, one class per image.

Built on the house-number rule (:mod:`digitexp.metrics.numbers`): the detections it reads
and the number it reads, against the number the ground truth reads, with the digit matching
of :mod:`.matching`. Each image falls in exactly one class, the first that applies:

1. ``correct``: the number read equals the truth (what Task 2 counts as right, even when a
   missed leading zero and an extra digit cancel out);
2. ``no_detection``: nothing is read (no detection passes the rule);
3. ``read_twice``: one digit read twice (two read boxes on one true digit);
4. ``missed_digit``: a true digit no read box covers;
5. ``extra_digit``: a read box on no digit;
6. ``wrong_digit``: every digit found once, but some with the wrong label;
7. ``wrong_order``: every digit found once with the right label, yet read in another order
   (the boxes sort differently by x_min than the truth's).

Count errors come before label errors, and label errors before order: an image is charged
with the coarsest thing that went wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from digitexp.config import EvalConfig
from digitexp.data import Split
from digitexp.insight.matching import UNMATCHED, DigitMatch, match_digits
from digitexp.metrics import Detections
from digitexp.metrics.numbers import NO_NUMBER, read_number, reading

FAILURE_CLASSES = (
    "correct",
    "no_detection",
    "read_twice",
    "missed_digit",
    "extra_digit",
    "wrong_digit",
    "wrong_order",
)
FAILURE_TITLES = {
    "correct": "correct",
    "no_detection": "no detection",
    "read_twice": "one digit read twice",
    "missed_digit": "missed digit",
    "extra_digit": "extra digit",
    "wrong_digit": "wrong digit",
    "wrong_order": "wrong order",
}


@dataclass(frozen=True)
class ImageReading:
    """One validation image read by the house-number rule."""

    image_id: int
    truth: int  # the number the ground truth reads (-1: no digits)
    read: int  # the number read (-1: nothing read)
    failure: str  # one of FAILURE_CLASSES
    detections: Detections  # what the rule read, in reading order
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    match: DigitMatch
    wrong_labels: int  # matched read boxes whose digit differs from the truth's

    @property
    def errors(self) -> int:
        """Digit-level errors: missed, extra and duplicate boxes, wrong labels (and 1 for a
        wrong order); ranks the worst images."""
        if self.failure == "correct":
            return 0
        count = int(self.match.missed.sum()) + int((self.match.det_to_gt == UNMATCHED).sum())
        return count + self.wrong_labels + int(self.failure == "wrong_order")


def classify(read: int, truth: int, match: DigitMatch, wrong_labels: int) -> str:
    """The failure class of one image (the precedence of the module docstring)."""
    if read == truth:
        return "correct"
    if read == NO_NUMBER:
        return "no_detection"
    if match.duplicate.any():
        return "read_twice"
    if match.missed.any():
        return "missed_digit"
    if match.spurious.any():
        return "extra_digit"
    if wrong_labels:
        return "wrong_digit"
    return "wrong_order"


def read_image(
    image_id: int, det: Detections, gt_boxes: np.ndarray, gt_labels: np.ndarray, cfg: EvalConfig
) -> ImageReading:
    read_dets = reading(det, cfg)
    read = read_number(read_dets.boxes, read_dets.labels)
    truth = read_number(gt_boxes, gt_labels)
    match = match_digits(read_dets.boxes, read_dets.scores, gt_boxes)
    hit = match.det_to_gt != UNMATCHED
    wrong = int((read_dets.labels[hit] != gt_labels[match.det_to_gt[hit]]).sum())
    return ImageReading(
        image_id=image_id,
        truth=truth,
        read=read,
        failure=classify(read, truth, match, wrong),
        detections=read_dets,
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        match=match,
        wrong_labels=wrong,
    )


def read_images(
    split: Split, detections: Mapping[int, Detections], cfg: EvalConfig
) -> list[ImageReading]:
    """Every image of ``split`` read and classified, in ascending image id."""
    out = []
    for record in sorted(split.images, key=lambda r: r.id):
        det = detections.get(record.id) or Detections.empty(record.id)
        out.append(read_image(record.id, det, split.boxes[record.id], split.labels[record.id], cfg))
    return out


def failure_counts(readings: Sequence[ImageReading]) -> dict[str, int]:
    """Images per failure class (every class, in FAILURE_CLASSES order)."""
    counts = dict.fromkeys(FAILURE_CLASSES, 0)
    for r in readings:
        counts[r.failure] += 1
    return counts


def worst_images(readings: Sequence[ImageReading], count: int) -> list[ImageReading]:
    """The ``count`` images read wrong with the most digit-level errors (then by image id)."""
    wrong = [r for r in readings if r.failure != "correct"]
    return sorted(wrong, key=lambda r: (-r.errors, r.image_id))[:count]


def worst_title(count: int) -> str:
    """``the 12 worst-read validation images`` (a figure's title)."""
    return (
        "the worst-read validation image"
        if count == 1
        else f"the {count} worst-read validation images"
    )
