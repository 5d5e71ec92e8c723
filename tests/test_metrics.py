"""Metric definitions (docs/architecture.md) on hand-made cases; COCO mAP against pycocotools."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest

from digitexp.config import EvalConfig
from digitexp.data import ImageRecord, Split
from digitexp.metrics import (
    Detections,
    box_iou,
    coco_map,
    coco_results,
    digit_accuracy,
    evaluate,
    number_accuracy,
    predicted_number,
    read_number,
)


def _split(gt: dict[int, list[tuple[list[float], int]]]) -> Split:
    images = tuple(ImageRecord(i, f"{i}.png", 100, 50) for i in gt)
    boxes = {i: np.array([b for b, _ in anns], np.float32).reshape(-1, 4) for i, anns in gt.items()}
    labels = {i: np.array([d + 1 for _, d in anns], np.int64) for i, anns in gt.items()}
    return Split("valid", Path("."), Path("valid.json"), images, boxes, labels)


def _det(image_id: int, rows: list[tuple[list[float], float, int]]) -> Detections:
    return Detections(
        image_id,
        np.array([b for b, _, _ in rows], np.float32).reshape(-1, 4),
        np.array([s for _, s, _ in rows], np.float32),
        np.array([d + 1 for _, _, d in rows], np.int64),
    )


def test_read_number_sorts_by_x_min_and_drops_leading_zeros() -> None:
    boxes = np.array([[50, 0, 60, 10], [10, 0, 20, 10], [30, 0, 40, 10]], np.float32)
    labels = np.array([3 + 1, 0 + 1, 7 + 1])  # digits 3, 0, 7 at x = 50, 10, 30
    assert read_number(boxes, labels) == 73  # "073"
    assert read_number(np.zeros((0, 4), np.float32), np.zeros(0, np.int64)) == -1


def test_task2_keeps_scores_strictly_above_the_threshold() -> None:
    cfg = EvalConfig(score_thresh=0.5)
    det = _det(
        1, [([40, 0, 50, 10], 0.9, 2), ([10, 0, 20, 10], 0.5, 1), ([25, 0, 35, 10], 0.51, 4)]
    )
    assert predicted_number(det, cfg) == 42  # the 0.5 one is dropped
    assert predicted_number(_det(1, [([0, 0, 5, 5], 0.2, 1)]), cfg) == -1


def test_number_accuracy() -> None:
    split = _split(
        {
            1: [([10, 0, 20, 10], 1), ([30, 0, 40, 10], 2)],  # 12
            2: [([10, 0, 20, 10], 0), ([30, 0, 40, 10], 5)],  # "05" -> 5
            3: [],  # no digits -> -1
            4: [([10, 0, 20, 10], 9)],
        }
    )
    dets = {
        1: _det(1, [([31, 0, 40, 10], 0.9, 2), ([11, 0, 20, 10], 0.8, 1)]),  # right, unsorted
        2: _det(2, [([30, 0, 40, 10], 0.9, 5)]),  # reads 5 == int("05"): right
        3: _det(3, [([0, 0, 5, 5], 0.3, 4)]),  # below threshold -> -1: right
        # 4: no detections at all -> -1, wrong
    }
    assert number_accuracy(split, dets, EvalConfig()) == pytest.approx(3 / 4)


def test_agnostic_nms_removes_a_second_label_on_one_digit() -> None:
    det = _det(
        1, [([10, 0, 20, 10], 0.9, 1), ([10, 0, 20, 10.5], 0.7, 7), ([30, 0, 40, 10], 0.8, 2)]
    )
    assert predicted_number(det, EvalConfig()) == 172
    assert predicted_number(det, EvalConfig(agnostic_nms=True)) == 12


def test_digit_accuracy_matching_rules() -> None:
    split = _split({1: [([0, 0, 10, 10], 3), ([20, 0, 30, 10], 4)], 2: []})
    dets = {
        1: _det(
            1,
            [
                ([0, 0, 10, 10], 0.9, 3),  # IoU 1, right label: counts, correct
                ([20, 0, 30, 10], 0.9, 5),  # IoU 1, wrong label: counts, wrong
                ([0, 0, 10, 5], 0.9, 3),  # IoU exactly 0.5: not > 0.5, ignored
                ([20, 0, 30, 4], 0.9, 4),  # IoU 0.4: ignored
            ],
        ),
        2: _det(2, [([0, 0, 10, 10], 0.9, 1)]),  # image without ground truth: wrong
    }
    # no two predictions of image 1 overlap by more than 0.5: the agnostic NMS keeps them all
    assert digit_accuracy(split, dets, iou=0.5, nms_iou=0.5) == pytest.approx(1 / 3)
    assert math.isnan(digit_accuracy(split, {}, iou=0.5, nms_iou=0.5))  # nothing counted


def test_digit_accuracy_runs_an_agnostic_nms_first() -> None:
    """Two labels on one digit: the lower-scoring one goes before matching (IoU 0.95 > 0.5),
    whatever its label; with the NMS off (IoU 1.0) it counts as a wrong prediction."""
    split = _split({1: [([0, 0, 10, 20], 3)]})
    dets = {1: _det(1, [([0, 0, 10, 20], 0.9, 3), ([0, 0, 10, 19], 0.8, 5)])}
    assert digit_accuracy(split, dets, iou=0.5, nms_iou=0.5) == 1.0
    assert digit_accuracy(split, dets, iou=0.5, nms_iou=1.0) == 0.5
    assert evaluate(split, list(dets.values()), EvalConfig())["digit_acc"] == 1.0
    assert evaluate(split, list(dets.values()), EvalConfig(digit_nms_iou=1.0))["digit_acc"] == 0.5


def test_digit_accuracy_is_nan_when_nothing_counts() -> None:
    """Only images with ground truth and predictions that all miss it: undefined, not 0."""
    split = _split({1: [([0, 0, 10, 20], 3)], 2: [([0, 0, 10, 20], 4)]})
    dets = {1: _det(1, [([50, 0, 60, 20], 0.9, 3)])}  # IoU 0 with the digit: not counted
    assert math.isnan(evaluate(split, list(dets.values()), EvalConfig())["digit_acc"])


def test_box_iou() -> None:
    a = np.array([[0, 0, 10, 10]], np.float64)
    b = np.array([[0, 0, 10, 5], [5, 5, 15, 15], [20, 20, 30, 30]], np.float64)
    assert box_iou(a, b)[0].tolist() == pytest.approx([0.5, 25 / 175, 0.0])


def _pycocotools_stats(gt: dict, results: list[dict]) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats[:3]]


def test_coco_map_equals_pycocotools_and_faster_coco_eval() -> None:
    split = _split(
        {
            1: [([10, 5, 20, 25], 1), ([30, 5, 40, 25], 2)],
            2: [([12, 4, 22, 30], 7)],
            3: [([50, 10, 58, 26], 0), ([60, 10, 68, 26], 9)],
        }
    )
    dets = [
        _det(1, [([10, 5, 20, 25], 0.9, 1), ([31, 6, 41, 24], 0.8, 2), ([0, 0, 5, 5], 0.3, 4)]),
        _det(2, [([13, 5, 22, 28], 0.7, 7), ([12, 4, 22, 30], 0.6, 3)]),
        _det(3, [([50, 10, 58, 26], 0.95, 0)]),
    ]
    results = coco_results(dets)
    ours = coco_map(split.coco_gt(), results, "pycocotools")
    expected = _pycocotools_stats(split.coco_gt(), results)
    assert [ours["map"], ours["map50"], ours["map75"]] == pytest.approx(expected)
    fast = coco_map(split.coco_gt(), results, "faster_coco_eval")
    assert [fast["map"], fast["map50"], fast["map75"]] == pytest.approx(expected, abs=1e-6)
    assert 0 < ours["map"] < 1


def test_perfect_and_empty_predictions() -> None:
    gt = {1: [([10, 5, 20, 25], 1), ([30, 5, 40, 25], 2)]}
    split = _split(gt)
    perfect = [_det(1, [(b, 0.9, d) for b, d in gt[1]])]
    metrics = evaluate(split, perfect, EvalConfig())
    assert metrics == pytest.approx(
        {"map": 1.0, "map50": 1.0, "map75": 1.0, "digit_acc": 1.0, "number_acc": 1.0}
    )
    empty = evaluate(split, [], EvalConfig())
    assert math.isnan(empty.pop("digit_acc"))
    assert empty == {"map": 0.0, "map50": 0.0, "map75": 0.0, "number_acc": 0.0}


def test_coco_results_format() -> None:
    (row,) = coco_results([_det(5, [([10, 5, 20, 25], 0.875, 4)])])
    assert row == {"image_id": 5, "bbox": [10.0, 5.0, 10.0, 20.0], "score": 0.875, "category_id": 5}
