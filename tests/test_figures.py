"""A run's figures: which validation images the predictions panel shows, what it draws, and
the stated fallback threshold; the curves figure. Real synthetic data, real PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitexp.config import EvalConfig
from digitexp.data import Split, load_split
from digitexp.figures import curves, predictions
from digitexp.metrics import Detections, predicted_number, read_number
from digitexp.tracking import contract


@pytest.fixture(scope="module")
def valid(synth_root: Path) -> Split:
    return load_split(synth_root, "valid")


def near_truth(split: Split, score: float, wrong_every: int = 0) -> dict[int, Detections]:
    """Detections on the true boxes (every ``wrong_every``-th image with one digit wrong)."""
    out = {}
    for i, record in enumerate(split.images):
        labels = split.labels[record.id].copy()
        if wrong_every and i % wrong_every == 0 and len(labels):
            labels[0] = labels[0] % 10 + 1  # another digit
        boxes = split.boxes[record.id].astype(np.float32)
        scores = np.full(len(labels), score, np.float32)
        out[record.id] = Detections(record.id, boxes, scores, labels.astype(np.int64))
    return out


def test_images_are_chosen_by_outcome_and_spread_over_the_split(valid: Split) -> None:
    cfg = EvalConfig()
    detections = near_truth(valid, 0.9, wrong_every=2)
    every = predictions.examples(valid, detections, cfg)
    for example in every:  # the Task-2 rule, as the metric reads it
        det = detections[example.record.id]
        assert example.read == predicted_number(det, cfg)
        assert example.truth == read_number(
            valid.boxes[example.record.id], valid.labels[example.record.id]
        )
    chosen = predictions.choose(every, 8)
    right = [e for e in chosen if e.correct]
    wrong = [e for e in chosen if not e.correct]
    assert len(right) == len(wrong) == 4
    ids = sorted(r.id for r in valid.images)
    assert [e.record.id for e in chosen] != ids[:8]  # not the first ids
    assert max(e.record.id for e in chosen) > ids[len(ids) // 2]  # from all over the split
    # one kind short: the other fills in
    only_right = predictions.choose([e for e in every if e.correct], 8)
    assert len(only_right) == min(8, sum(e.correct for e in every))


def test_the_task2_threshold_is_drawn_when_detections_pass_it(valid: Split) -> None:
    cfg = EvalConfig()
    detections = near_truth(valid, 0.9)
    chosen = predictions.choose(predictions.examples(valid, detections, cfg), 8)
    shown = predictions.shown_predictions(chosen, valid, detections, cfg)
    assert shown.threshold == cfg.score_thresh and shown.note == ""


def test_a_fallback_threshold_is_stated_when_nothing_passes(valid: Split) -> None:
    cfg = EvalConfig()
    detections = near_truth(valid, 0.2)
    rng = np.random.default_rng(0)
    detections = {  # scores below 0.5, all different
        k: Detections(
            d.image_id, d.boxes, rng.uniform(0.05, 0.3, len(d.scores)).astype(np.float32), d.labels
        )
        for k, d in detections.items()
    }
    chosen = predictions.choose(predictions.examples(valid, detections, cfg), 8)
    shown = predictions.shown_predictions(chosen, valid, detections, cfg)
    scores = np.concatenate([detections[e.record.id].scores for e in chosen])
    digits = sum(len(valid.labels[e.record.id]) for e in chosen)
    assert 0 < shown.threshold < cfg.score_thresh
    assert int((scores > shown.threshold).sum()) == min(digits, len(scores))
    assert "No detection scores above 0.5" in shown.note and f"{shown.threshold:.3g}" in shown.note


def test_the_panel_and_the_curves_are_pngs(valid: Split, tmp_path: Path) -> None:
    cfg = EvalConfig()
    panel = predictions.draw(
        valid, near_truth(valid, 0.9, wrong_every=3), cfg, tmp_path / "p.png", "test panel"
    )
    assert panel is not None
    with Image.open(panel) as img:
        assert img.format == "PNG" and img.width >= 1000
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    # the truth (green) and right (blue) and wrong (red) predictions are all drawn
    for color in (predictions.TRUTH_COLOR, predictions.RIGHT_COLOR, predictions.WRONG_COLOR):
        rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels.astype(int) - rgb).sum(axis=1) < 30).sum() > 50, color
    history = {key: [1.0 / e for e in range(1, 4)] for key in contract.EPOCH_METRICS}
    figure = curves.draw(history, 2, tmp_path / "c.png", "test curves")
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.size == (1000, 640)
