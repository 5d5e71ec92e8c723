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
@pytest.mark.parametrize("cfg", [EvalConfig(), EvalConfig(score_thresh=0.3, agnostic_nms=True)])
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
            assert ours[key] == pytest.approx(reference[key], abs=1e-12), (key, keep)


def test_task2_threshold_compares_in_float32() -> None:
    """A score equal to float32(threshold): evaluate() compares in float32, so must the pool."""
    split, dets = random_case(5)
    cfg = EvalConfig(score_thresh=0.275)
    scores = dets.scores.copy()
    scores[::3] = float(np.float32(0.275))
    dets = PoolDetections(dets.image, dets.boxes, scores, dets.labels)
    pool = CandidatePool(split, [r.id for r in split.images], dets)
    mask = np.ones(pool.n, dtype=bool)
    assert (
        pool.score(mask, cfg)["number_acc"]
        == evaluate(split, as_detections(split, dets, mask), cfg)["number_acc"]
    )


def test_empty_subset() -> None:
    split, dets = random_case(3)
    pool = CandidatePool(split, [r.id for r in split.images], dets)
    empty = pool.score(np.zeros(pool.n, dtype=bool), EvalConfig())
    assert empty == evaluate(split, [], EvalConfig())
