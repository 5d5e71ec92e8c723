"""The vectorized pool scorer equals evaluate() (pycocotools and the metric definitions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digitexp.config import EvalConfig
from digitexp.data import ImageRecord, Split
from digitexp.metrics import CandidatePool, Detections, PoolDetections, evaluate


def random_case(seed: int, images: int = 30) -> tuple[Split, PoolDetections]:
    rng = np.random.default_rng(seed)
    records, boxes, labels = [], {}, {}
    det_image, det_boxes, det_scores, det_labels = [], [], [], []
    ids = sorted(rng.choice(np.arange(1, 500), size=images, replace=False).tolist())
    for index, image_id in enumerate(ids):
        w, h = int(rng.integers(40, 200)), int(rng.integers(30, 120))
        records.append(ImageRecord(image_id, f"{image_id}.png", w, h))
        n = int(rng.integers(0, 5))
        xs = np.sort(rng.uniform(0, w - 12, n))
        gt = np.stack(
            [xs, rng.uniform(0, h / 3, n), xs + rng.uniform(5, 12, n), rng.uniform(h / 2, h, n)], 1
        )
        boxes[image_id] = gt.astype(np.float32).reshape(-1, 4)
        labels[image_id] = rng.integers(1, 11, n).astype(np.int64)
        cands = []
        for g, lab in zip(boxes[image_id], labels[image_id], strict=True):
            for _ in range(int(rng.integers(1, 6))):  # near a digit, right or wrong label
                jitter = rng.normal(0, 2.0, 4)
                label = lab if rng.random() < 0.7 else rng.integers(1, 11)
                cands.append((g + jitter, label))
        for _ in range(int(rng.integers(0, 8))):  # background clutter
            x, y = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
            cands.append(
                (
                    np.array([x, y, x + rng.uniform(3, 20), y + rng.uniform(3, 30)]),
                    rng.integers(1, 11),
                )
            )
        if not cands:
            continue
        cb = np.array([c[0] for c in cands], np.float32)
        cb[:, 2:] = np.maximum(cb[:, 2:], cb[:, :2] + 0.5)
        scores = rng.random(len(cands)).astype(np.float32)
        if rng.random() < 0.3:
            scores[: len(scores) // 2] = scores[0]  # ties
        order = np.argsort(-scores, kind="stable")
        det_image += [index] * len(cands)
        det_boxes.append(cb[order])
        det_scores.append(scores[order])
        det_labels += [int(c[1]) for c in np.array(cands, dtype=object)[order]]
    split = Split("valid", Path("."), Path("valid.json"), tuple(records), boxes, labels)
    dets = PoolDetections(
        image=np.array(det_image, np.int64),
        boxes=np.concatenate(det_boxes).astype(np.float64),
        scores=np.concatenate(det_scores).astype(np.float64),
        labels=np.array(det_labels, np.int64),
    )
    return split, dets


def as_detections(split: Split, pool: PoolDetections, mask: np.ndarray) -> list[Detections]:
    out = []
    ids = [r.id for r in split.images]
    for index, image_id in enumerate(ids):
        sel = np.flatnonzero(mask & (pool.image == index))
        out.append(
            Detections(
                image_id,
                pool.boxes[sel].astype(np.float32),
                pool.scores[sel].astype(np.float32),
                pool.labels[sel],
            )
        )
    return out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "cfg",
    [
        EvalConfig(),
        EvalConfig(score_thresh=0.3, agnostic_nms=True),
        EvalConfig(digit_nms_iou=0.3, digit_iou=0.3),
        EvalConfig(digit_nms_iou=1.0),
    ],
)
def test_pool_scores_equal_evaluate(seed: int, cfg: EvalConfig) -> None:
    split, dets = random_case(seed)
    pool = CandidatePool(split, [r.id for r in split.images], dets)
    rng = np.random.default_rng(100 + seed)
    for keep in (1.0, 0.6, 0.2):
        mask = rng.random(pool.n) < keep
        ours = pool.score(mask, cfg)
        reference = evaluate(split, as_detections(split, dets, mask), cfg)
        assert ours.keys() == reference.keys()
        for key in ours:
            assert ours[key] == pytest.approx(reference[key], abs=1e-12, nan_ok=True), (key, keep)


def test_task2_threshold_compares_as_the_author() -> None:
    """A score equal to float32(threshold): the author's code compares the float32 score as a
    double (float32(0.275) > 0.275 holds), evaluate() does so, and so must the pool."""
    split, dets = random_case(5)
    cfg = EvalConfig(score_thresh=0.275)
    scores = dets.scores.copy()
    scores[::3] = float(np.float32(0.275))
    dets = PoolDetections(dets.image, dets.boxes, scores, dets.labels)
    pool = CandidatePool(split, [r.id for r in split.images], dets)
    mask = np.ones(pool.n, dtype=bool)
    assert float(np.float32(0.275)) > 0.275
    assert (
        pool.score(mask, cfg)["number_acc"]
        == evaluate(split, as_detections(split, dets, mask), cfg)["number_acc"]
    )


def test_empty_subset() -> None:
    split, dets = random_case(3)
    pool = CandidatePool(split, [r.id for r in split.images], dets)
    empty = pool.score(np.zeros(pool.n, dtype=bool), EvalConfig())
    assert empty == evaluate(split, [], EvalConfig())


def test_pool_without_any_candidate() -> None:
    """A model that detected nothing (every image empty) is scored, not an IndexError."""
    split, _ = random_case(4)
    none = PoolDetections(
        image=np.zeros(0, np.int64),
        boxes=np.zeros((0, 4)),
        scores=np.zeros(0),
        labels=np.zeros(0, np.int64),
    )
    pool = CandidatePool(split, [r.id for r in split.images], none)
    metrics = pool.score(np.zeros(0, dtype=bool), EvalConfig())
    expected = evaluate(split, [], EvalConfig())
    assert metrics.keys() == expected.keys()
    assert np.isnan(metrics["digit_acc"]) and np.isnan(expected["digit_acc"])
    for key in ("map", "map50", "map75", "number_acc"):
        assert metrics[key] == expected[key]


def reference_digit_accuracy(split: Split, dets: list[Detections]) -> float | None:
    """The validation accuracy as the report author's loop computes it, in torch: per image
    torchvision ``nms`` at 0.5 over all labels, ``box_iou`` against the ground truth, the
    best match per prediction by ``max(dim=1)``, IoU > 0.5 counts; predictions on an image
    without ground truth count as wrong; None when nothing counts (the author logged nothing)."""
    import torch
    from torchvision.ops import box_iou as tv_box_iou
    from torchvision.ops import nms

    total = correct = 0
    by_id = {d.image_id: d for d in dets}
    for record in split.images:
        det = by_id[record.id]
        boxes, scores = torch.from_numpy(det.boxes), torch.from_numpy(det.scores)
        keep = nms(boxes, scores, iou_threshold=0.5)
        boxes, labels = boxes[keep], torch.from_numpy(det.labels)[keep]
        gt_boxes = torch.from_numpy(split.boxes[record.id])
        gt_labels = torch.from_numpy(split.labels[record.id])
        if len(boxes) > 0 and len(gt_boxes) > 0:
            best = tv_box_iou(boxes, gt_boxes).max(dim=1)
            for j in range(len(boxes)):
                if best.values[j] > 0.5:
                    total += 1
                    correct += int(labels[j] == gt_labels[best.indices[j]])
        elif len(boxes) > 0:
            total += len(boxes)
    return correct / total if total else None


@pytest.mark.parametrize("seed", range(6))
def test_digit_accuracy_equals_the_authors_loop(seed: int) -> None:
    """evaluate() and the pool give the author's number on random pools (clusters of
    overlapping candidates with tied scores and mixed labels, images without digits)."""
    split, dets = random_case(seed, images=40)
    pool = CandidatePool(split, [r.id for r in split.images], dets)
    rng = np.random.default_rng(seed)
    for keep in (1.0, 0.5):
        mask = rng.random(pool.n) < keep
        as_dets = as_detections(split, dets, mask)
        expected = reference_digit_accuracy(split, as_dets)
        ours = evaluate(split, as_dets, EvalConfig())["digit_acc"]
        from_pool = pool.score(mask, EvalConfig())["digit_acc"]
        if expected is None:
            assert np.isnan(ours) and np.isnan(from_pool)
        else:
            assert ours == expected
            assert from_pool == expected


def test_digit_nms_ties_keep_the_first_of_equal_scores() -> None:
    """Identical boxes with equal scores and different labels: torchvision's stable sort keeps
    the first listed, whose label then decides; the pool agrees."""
    split, _ = random_case(0, images=1)
    (record,) = split.images
    gt = split.boxes[record.id]
    if len(gt) == 0:
        pytest.skip("this seed drew an image without digits")
    box = gt[0].astype(np.float64)
    right, wrong = int(split.labels[record.id][0]), int(split.labels[record.id][0]) % 10 + 1
    for first, expected in ((right, 1.0), (wrong, 0.0)):
        labels = np.array([first, right if first == wrong else wrong], np.int64)
        dets = PoolDetections(
            image=np.zeros(2, np.int64),
            boxes=np.stack([box, box]),
            scores=np.array([0.75, 0.75]),
            labels=labels,
        )
        pool = CandidatePool(split, [record.id], dets)
        mask = np.ones(2, dtype=bool)
        assert pool.score(mask, EvalConfig())["digit_acc"] == expected
        assert evaluate(split, as_detections(split, dets, mask), EvalConfig())["digit_acc"] == (
            expected
        )
        assert reference_digit_accuracy(split, as_detections(split, dets, mask)) == expected
