"""Insight: the paired bootstrap against pycocotools, AP per digit and size, Task-2 failure
classes and the confusion matrix on hand-made images, anchor coverage against torchvision's
own anchors, and the report / `analyze` / `anchors` through a real MLflow store."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import textwrap
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch
from conftest import assert_one_clear_line
from mlflow.tracking import MlflowClient
from PIL import Image
from test_metrics_pool import random_case
from torchvision.ops import box_iou

from digitexp import presets
from digitexp.config import EvalConfig, ModelConfig, apply_overrides, seed_config, to_dict
from digitexp.data import ImageRecord, Split, load_split
from digitexp.insight.analysis import analyze
from digitexp.insight.bootstrap import ResampleScorer, compare, resample_counts
from digitexp.insight.confusion import confusion_matrix
from digitexp.insight.coverage import anchor_coverage
from digitexp.insight.failures import FAILURE_CLASSES, failure_counts, read_images
from digitexp.metrics import Detections, coco_results, evaluate
from digitexp.metrics.breakdown import HEIGHT_BINS, ap_breakdown
from digitexp.model import build_model
from digitexp.tracking import TrackingStore, contract

# --------------------------------------------------------------------------- helpers


def detections_of(split: Split, pool) -> dict[int, Detections]:
    out = {}
    for index, record in enumerate(split.images):
        sel = np.flatnonzero(pool.image == index)
        out[record.id] = Detections(
            record.id,
            pool.boxes[sel].astype(np.float32),
            pool.scores[sel].astype(np.float32),
            pool.labels[sel],
        )
    return out


def with_ties(dets: dict[int, Detections], step: float) -> dict[int, Detections]:
    """Scores rounded to multiples of ``step``: many equal scores inside an image."""
    return {
        k: Detections(k, d.boxes, (np.round(d.scores / step) * step).astype(np.float32), d.labels)
        for k, d in dets.items()
    }


def materialized(
    split: Split, dets: dict[int, Detections], counts: np.ndarray
) -> tuple[Split, list[Detections]]:
    """The resample as a split of its own: every copy of an image is a new image, numbered in
    ascending original id."""
    records, boxes, labels, out = [], {}, {}, []
    new = 0
    for i, record in enumerate(sorted(split.images, key=lambda r: r.id)):
        for _ in range(int(counts[i])):
            new += 1
            records.append(ImageRecord(new, f"{new}.png", record.width, record.height))
            boxes[new], labels[new] = split.boxes[record.id], split.labels[record.id]
            d = dets.get(record.id) or Detections.empty(record.id)
            out.append(Detections(new, d.boxes, d.scores, d.labels))
    return Split("resample", Path("."), Path("r.json"), tuple(records), boxes, labels), out


def pycocotools_eval(split: Split, dets: dict[int, Detections], **params):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = split.coco_gt()
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(coco_results(dets.values())), iouType="bbox")
        for key, value in params.items():
            setattr(ev.params, key, value)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


# --------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize(("seed", "tie_step"), [(0, None), (1, 1 / 3), (2, 1 / 2), (3, None)])
def test_a_resample_scores_as_pycocotools_on_it_materialized(
    seed: int, tie_step: float | None
) -> None:
    split, pool = random_case(seed, images=30)
    dets = detections_of(split, pool)
    if tie_step:
        dets = with_ties(dets, tie_step)
    cfg = EvalConfig()
    scorer = ResampleScorer(split, dets, cfg)
    if tie_step:
        assert scorer.mixed.any(), "the case must hold ties of a true and a false positive"
    counts = resample_counts(len(split.images), 4, seed=seed)
    rng = np.random.default_rng(seed)
    skewed = rng.multinomial(len(split.images), rng.dirichlet(np.full(len(split.images), 0.3)))
    counts = np.vstack([counts, skewed, np.ones(len(split.images), np.int64)])
    scores = scorer.scores(counts)
    for b, row in enumerate(counts):
        m_split, m_dets = materialized(split, dets, row)
        reference = evaluate(m_split, m_dets, cfg)
        assert scores.map[b] == pytest.approx(reference["map"], abs=1e-12), b
        assert scores.number_acc[b] == pytest.approx(reference["number_acc"], abs=1e-12), b
        assert scorer.score(row) == (scores.map[b], scores.number_acc[b])


def test_resamples_are_reproducible_under_a_seed() -> None:
    a = resample_counts(50, 20, seed=7)
    assert np.array_equal(a, resample_counts(50, 20, seed=7))
    assert not np.array_equal(a, resample_counts(50, 20, seed=8))
    assert a.shape == (20, 50) and (a.sum(axis=1) == 50).all()
    split, pool = random_case(4, images=50)
    scorer = ResampleScorer(split, detections_of(split, pool), EvalConfig())
    first, second = scorer.scores(a), scorer.scores(resample_counts(50, 20, seed=7))
    assert np.array_equal(first.map, second.map)
    assert np.array_equal(first.number_acc, second.number_acc)


def paired(a: ResampleScorer, b: ResampleScorer, counts: np.ndarray, metric: str):
    """b against a, one seed each, on the resamples ``counts``."""
    ones = np.ones(a.num_images, np.int64)
    index = ("map", "number_acc").index(metric)
    return compare(
        [a.score(ones)[index]],
        [b.score(ones)[index]],
        [getattr(a.scores(counts), metric)],
        [getattr(b.scores(counts), metric)],
    )


def test_identical_predictions_differ_by_exactly_zero() -> None:
    split, pool = random_case(5, images=40)
    dets = detections_of(split, pool)
    a = ResampleScorer(split, dets, EvalConfig())
    b = ResampleScorer(split, dict(dets), EvalConfig())
    counts = resample_counts(40, 200, seed=0)
    for metric in ("map", "number_acc"):
        c = paired(a, b, counts, metric)
        assert (c.delta, c.low, c.high, c.p_positive) == (0.0, 0.0, 0.0, 0.0)
        assert not c.distinguishable


def perfect(split: Split) -> dict[int, Detections]:
    return {
        r.id: Detections(
            r.id,
            split.boxes[r.id],
            np.full(len(split.labels[r.id]), 0.99, np.float32),
            split.labels[r.id],
        )
        for r in split.images
    }


def test_a_planted_large_difference_has_an_interval_without_zero() -> None:
    split, pool = random_case(6, images=40)
    noisy = detections_of(split, pool)
    cfg = EvalConfig(score_thresh=0.3)
    a, b = ResampleScorer(split, noisy, cfg), ResampleScorer(split, perfect(split), cfg)
    counts = resample_counts(40, 300, seed=1)
    for metric in ("map", "number_acc"):
        c = paired(a, b, counts, metric)
        assert c.delta > 0.3 and c.low > 0 and c.distinguishable
        assert c.p_positive == 1.0
        assert c.boot_low == c.low and c.boot_high == c.high  # one seed: the bootstrap alone


def test_several_seeds_add_their_spread_to_the_interval() -> None:
    rng = np.random.default_rng(0)
    resampled_a = [0.40 + 0.01 * rng.standard_normal(500) for _ in range(3)]
    resampled_b = [0.43 + 0.01 * rng.standard_normal(500) for _ in range(2)]
    obs_a, obs_b = [0.40, 0.42, 0.41], [0.43, 0.46]
    c = compare(obs_a, obs_b, resampled_a, resampled_b)
    delta = np.mean(obs_b) - np.mean(obs_a)
    diff = np.mean(resampled_b, axis=0) - np.mean(resampled_a, axis=0)
    se = math.sqrt(np.var(diff, ddof=1) + np.var(obs_a, ddof=1) / 3 + np.var(obs_b, ddof=1) / 2)
    z = NormalDist().inv_cdf(0.975)
    assert c.delta == pytest.approx(delta)
    assert (c.low, c.high) == pytest.approx((delta - z * se, delta + z * se))
    assert c.combined and c.seeds_a == 3 and c.seeds_b == 2
    assert c.high - c.low > c.boot_high - c.boot_low  # the seeds widen it


# --------------------------------------------------------------------------- AP per digit, size


@pytest.mark.parametrize("seed", [0, 1])
def test_ap_per_digit_equals_pycocotools_per_category(seed: int) -> None:
    split, pool = random_case(seed, images=40)
    dets = detections_of(split, pool)
    breakdown = ap_breakdown(split, dets)
    vectorized = ResampleScorer(split, dets, EvalConfig()).ap_per_digit()
    for digit in range(10):
        ev = pycocotools_eval(split, dets, catIds=[digit + 1])
        if ev.stats[0] < 0:  # no ground truth of this digit
            assert breakdown.per_digit[digit] is None and np.isnan(vectorized[digit])
            continue
        assert breakdown.per_digit[digit] == pytest.approx(ev.stats[0], abs=1e-12)
        assert vectorized[digit] == pytest.approx(ev.stats[0], abs=1e-12)
    full = pycocotools_eval(split, dets)
    assert (breakdown.coco_sizes["small"] or -1.0) == pytest.approx(full.stats[3])
    assert (breakdown.coco_sizes["medium"] or -1.0) == pytest.approx(full.stats[4])


def test_height_bins_hold_each_box_once() -> None:
    split, pool = random_case(3, images=40)
    dets = detections_of(split, pool)
    breakdown = ap_breakdown(split, dets)
    heights = np.concatenate([b[:, 3] - b[:, 1] for b in split.boxes.values()])
    assert sum(breakdown.gt_per_height.values()) == len(heights)
    # every box and detection shorter than 64 px: the two lower bins... and with all of them
    # in one bin, that bin's AP is the AP over everything
    tall = {k: Detections(k, d.boxes, d.scores, d.labels) for k, d in perfect(split).items()}
    only = ap_breakdown(split, tall)
    for key, _, _ in HEIGHT_BINS:
        expected = 1.0 if only.gt_per_height[key] else None
        assert only.heights[key] == expected


# --------------------------------------------------------------------------- Task-2 failures


def box(x: float, y: float, w: float = 10, h: float = 10) -> list[float]:
    return [x, y, x + w, y + h]


# (truth boxes, truth digits, read boxes, read digits, read scores, expected class)
HAND_MADE = [
    ([box(0, 0), box(12, 0)], [1, 2], [box(0, 0), box(12, 0)], [1, 2], [0.9, 0.9], "correct"),
    ([box(0, 0)], [3], [box(0, 0)], [3], [0.3], "no_detection"),
    (
        [box(0, 0), box(12, 0)],
        [4, 5],
        [box(0, 0), box(1, 0), box(12, 0)],
        [4, 4, 5],
        [0.9, 0.8, 0.9],
        "read_twice",
    ),
    ([box(0, 0), box(12, 0)], [6, 7], [box(0, 0)], [6], [0.9], "missed_digit"),
    ([box(0, 0)], [8], [box(0, 0), box(25, 15)], [8, 1], [0.9, 0.7], "extra_digit"),
    ([box(0, 0), box(12, 0)], [9, 0], [box(0, 0), box(12, 0)], [9, 6], [0.9, 0.9], "wrong_digit"),
    (  # two stacked digits: the read boxes sort the other way by x_min
        [box(0, 0), box(1, 12)],
        [1, 2],
        [box(1.5, 0, 9, 10), box(0.5, 12, 11, 10)],
        [1, 2],
        [0.9, 0.9],
        "wrong_order",
    ),
]


def hand_made() -> tuple[Split, dict[int, Detections]]:
    records, boxes, labels, dets = [], {}, {}, {}
    for i, (gb, gl, db, dl, ds, _) in enumerate(HAND_MADE, start=1):
        records.append(ImageRecord(i, f"{i}.png", 40, 30))
        boxes[i] = np.array(gb, np.float32)
        labels[i] = np.array(gl, np.int64) + 1  # category id = digit + 1
        dets[i] = Detections(
            i, np.array(db, np.float32), np.array(ds, np.float32), np.array(dl, np.int64) + 1
        )
    return Split("hand", Path("."), Path("h.json"), tuple(records), boxes, labels), dets


def test_each_failure_class_on_a_hand_made_image_each_image_once() -> None:
    split, dets = hand_made()
    readings = read_images(split, dets, EvalConfig(score_thresh=0.5))
    assert [r.failure for r in readings] == [case[-1] for case in HAND_MADE]
    assert set(FAILURE_CLASSES) == {case[-1] for case in HAND_MADE}
    counts = failure_counts(readings)
    assert counts == dict.fromkeys(FAILURE_CLASSES, 1)
    assert [(r.truth, r.read) for r in readings] == [
        (12, 12),
        (3, -1),
        (45, 445),
        (67, 6),
        (8, 81),
        (90, 96),
        (12, 21),
    ]
    # the shares logged as metrics are the same counts
    analysis = analyze(split, dets, EvalConfig(score_thresh=0.5))
    values = analysis.values()
    assert sum(values[f"task2_{c}"] for c in FAILURE_CLASSES) == pytest.approx(1.0)
    assert values["task2_correct"] == pytest.approx(1 / 7)
    # and Task 2 itself agrees on what is correct
    assert evaluate(split, dets, EvalConfig(score_thresh=0.5))["number_acc"] == pytest.approx(1 / 7)


def test_confusion_matrix_of_the_hand_made_images() -> None:
    split, dets = hand_made()
    matrix = confusion_matrix(read_images(split, dets, EvalConfig(score_thresh=0.5)))
    expected = np.zeros((11, 11), np.int64)
    missed = spurious = 10
    for read, true in [(1, 1), (2, 2), (4, 4), (5, 5), (6, 6), (8, 8), (9, 9), (1, 1), (2, 2)]:
        expected[read, true] += 1
    expected[6, 0] += 1  # the 0 read as 6
    expected[missed, 3] += 1  # nothing read on the 3
    expected[missed, 7] += 1  # the 7 missed
    expected[4, spurious] += 1  # the 4 read a second time
    expected[1, spurious] += 1  # a 1 read on background
    assert np.array_equal(matrix, expected)


# --------------------------------------------------------------------------- anchor coverage


def small_split(seed: int) -> Split:
    rng = np.random.default_rng(seed)
    records, boxes, labels = [], {}, {}
    for i in range(1, 9):
        w, h = int(rng.integers(20, 160)), int(rng.integers(15, 100))
        n = int(rng.integers(1, 4))
        x1, y1 = rng.uniform(0, w * 0.7, n), rng.uniform(0, h * 0.6, n)
        x2 = np.minimum(x1 + rng.uniform(2, w * 0.3, n), w)
        y2 = np.minimum(y1 + rng.uniform(3, h * 0.5, n), h)
        records.append(ImageRecord(i, f"{i}.png", w, h))
        boxes[i] = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
        labels[i] = np.ones(n, np.int64)
    return Split("train", Path("."), Path("t.json"), tuple(records), boxes, labels)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(
            arch="tiny_fpn",
            min_size=64,
            max_size=96,
            anchor_sizes=(4, 8, 12, 24, 48),
            aspect_ratios=(0.25, 0.5, 1.0),
        ),
        ModelConfig(
            arch="tiny_fpn",
            min_size=80,
            max_size=160,
            anchor_sizes=(8, 16),
            anchor_layout="every_level",
            aspect_ratios=(1.0, 1.5, 2.0),
        ),
        ModelConfig(arch="resnet18_fpn", min_size=64, max_size=128, rpn_fg_iou_thresh=0.6),
    ],
    ids=["digit_sizes", "every_level", "resnet18"],
)
def test_coverage_equals_brute_force_over_torchvision_anchors(cfg: ModelConfig) -> None:
    split = small_split(0)
    coverage = anchor_coverage(split, cfg)
    model = build_model(cfg).eval()
    best = []
    with torch.no_grad():
        for record in split.images:
            target = {
                "boxes": torch.from_numpy(split.boxes[record.id]),
                "labels": torch.from_numpy(split.labels[record.id]),
            }
            images, targets = model.transform(
                [torch.rand(3, record.height, record.width)], [target]
            )
            features = list(model.backbone(images.tensors).values())
            anchors = model.rpn.anchor_generator(images, features)[0]
            best.append(box_iou(targets[0]["boxes"], anchors).max(dim=1).values.numpy())
    brute = np.concatenate(best)
    assert coverage.boxes == len(brute)
    assert np.abs(coverage.best_iou - brute).max() < 1e-5
    assert coverage.share_fg == pytest.approx(np.mean(brute >= cfg.rpn_fg_iou_thresh))
    assert coverage.share_bg == pytest.approx(np.mean(brute >= cfg.rpn_bg_iou_thresh))
    assert coverage.mean_iou == pytest.approx(brute.mean(), abs=1e-6)
    assert coverage.fg_thresh == cfg.rpn_fg_iou_thresh


# --------------------------------------------------------------------------- through MLflow

PLANTED_SPEC = '''\
"""Does a better detector read more house numbers? (test spec)"""
from digitexp.config import seed_config
from digitexp.spec import Variant

BASE = seed_config()
VARIANTS = [
    Variant("noisy", {}),
    Variant("same", {}),
    Variant("better", {"model.anchor_sizes": (8, 16, 24, 48, 96)}),
]
SEEDS = (0,)
'''


def noisy(split: Split, seed: int = 0) -> dict[int, Detections]:
    rng = np.random.default_rng(seed)
    out = {}
    for r in split.images:
        b = split.boxes[r.id] + rng.normal(0, 3, split.boxes[r.id].shape).astype(np.float32)
        labels = np.where(rng.random(len(b)) < 0.5, split.labels[r.id], rng.integers(1, 11, len(b)))
        keep = rng.random(len(b)) < 0.7
        out[r.id] = Detections(
            r.id, b[keep], rng.uniform(0.5, 1, keep.sum()).astype(np.float32), labels[keep]
        )
    return out


@pytest.fixture
def planted(store_uri: str, synth_root: Path, tmp_path: Path) -> dict:
    """Three variants logged as training runs would be: config.json and predictions/val.json
    of a noisy detector, the same predictions again, and an almost perfect detector."""
    ablations = tmp_path / "ablations"
    ablations.mkdir()
    (ablations / "planted.py").write_text(textwrap.dedent(PLANTED_SPEC))
    base = apply_overrides(seed_config(), {**presets.SMOKE, "data.root": str(synth_root)})
    split = load_split(synth_root, "valid", limit=base.data.valid_limit)
    almost = perfect(split)
    first = split.images[0].id
    d = almost[first]
    almost[first] = Detections(first, d.boxes[:-1], d.scores[:-1], d.labels[:-1])
    predictions = {"noisy": noisy(split), "same": noisy(split), "better": almost}
    store = TrackingStore()
    parent = store.create_run("planted", "planted@test", {contract.TAG_KIND: "invocation"})
    runs = {}
    for variant, dets in predictions.items():
        cfg = (
            base
            if variant != "better"
            else apply_overrides(base, {"model.anchor_sizes": (8, 16, 24, 48, 96)})
        )
        tags = {
            contract.TAG_SPEC: "planted",
            contract.TAG_VARIANT: variant,
            contract.TAG_SEED: "0",
            contract.TAG_PRESET: "smoke",
            contract.TAG_KIND: contract.KIND_TRAIN,
        }
        tracker = store.create_run("planted", f"planted/{variant}/s0", tags, parent.run_id)
        tracker.log_dict(to_dict(cfg), contract.CONFIG_JSON)
        tracker.log_text(json.dumps(coco_results(dets.values())), contract.VAL_PREDICTIONS)
        metrics = evaluate(split, dets, cfg.eval)
        tracker.log_metrics({contract.val_metric(k): v for k, v in metrics.items()}, step=1)
        tracker.log_metrics(
            {
                contract.BEST_VAL_MAP: metrics["map"],
                contract.BEST_EPOCH: 1.0,
                contract.FINAL_TRAIN_LOSS: 1.0,
            }
        )
        store.end_run(tracker.run_id, "FINISHED")
        runs[variant] = tracker.run_id
    store.end_run(parent.run_id, "FINISHED")
    return {
        "ablations": ablations,
        "runs": runs,
        "split": split,
        "predictions": predictions,
        "cfg": base,
    }


def delta_cell(readme: str, variant: str) -> str:
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{variant}` | "))
    return row.split(" | ")[-4]


def test_the_report_shows_intervals_failures_and_coverage(
    planted: dict, tmp_path: Path, cli
) -> None:
    out = tmp_path / "reports"
    result = cli("report", "--out", out, "--ablations", planted["ablations"], "--bootstrap", "300")
    assert result.code == 0, result.err
    readme = (out / "README.md").read_text()
    assert delta_cell(readme, "same") == "+0.0000 [+0.0000, +0.0000] ≈"
    better = delta_cell(readme, "better")
    assert better.startswith("+") and "[" in better and "≈" not in better
    rows = list(csv.DictReader((out / "tables" / "planted_intervals.csv").open()))
    same = [r for r in rows if r["b"] == "same"]
    assert {(r["delta"], r["low"], r["high"]) for r in same} == {("0.0", "0.0", "0.0")}
    assert all(r["distinguishable"] == "False" for r in same)
    better_map = next(r for r in rows if r["b"] == "better" and r["metric"] == "val_map")
    assert float(better_map["low"]) > 0 and better_map["distinguishable"] == "True"
    assert "paired bootstrap over validation images (300 resamples" in readme
    assert better_map["comparison"] == "vs first; best vs runner-up"
    # the error analysis per variant, computed here (the runs logged none) ...
    insight = {
        r["variant"]: r for r in csv.DictReader((out / "tables" / "planted_insight.csv").open())
    }
    expected = analyze(
        planted["split"], planted["predictions"]["noisy"], planted["cfg"].eval
    ).values()
    for key in ("task2_correct", "task2_missed_digit", "ap_height_32_64"):
        assert float(insight["noisy"][key]) == pytest.approx(expected[key], abs=1e-6)
    assert "Which Task-2 errors?" in readme and "the report computed them" in readme
    # ... and anchor coverage, which differs with the anchor sizes
    coverage = anchor_coverage(
        load_split(Path(planted["cfg"].data.root), "train", limit=planted["cfg"].data.train_limit),
        planted["cfg"].model,
    )
    assert float(insight["noisy"]["anchor_mean_best_iou"]) == pytest.approx(
        coverage.mean_iou, abs=1e-6
    )
    assert insight["noisy"]["anchor_share_fg"] == insight["same"]["anchor_share_fg"]
    assert insight["better"]["anchor_mean_best_iou"] != insight["noisy"]["anchor_mean_best_iou"]
    for figure in ("confusion", "worst_images", "task2_failures", "anchor_coverage"):
        with Image.open(out / "figures" / f"planted_{figure}.png") as img:
            assert img.format == "PNG" and img.width >= 400
        assert f"figures/planted_{figure}.png" in readme


def test_analyze_logs_the_analysis_to_the_run(planted: dict, store_uri: str, cli) -> None:
    run_id = planted["runs"]["noisy"]
    result = cli("analyze", run_id)
    assert result.code == 0, result.err
    assert "AP per digit" in result.out and "missed digit" in result.out
    client = MlflowClient(store_uri)
    metrics = client.get_run(run_id).data.metrics
    expected = analyze(planted["split"], planted["predictions"]["noisy"], planted["cfg"].eval)
    logged = {k: v for k, v in metrics.items() if k.startswith(f"{contract.ANALYSIS}/")}
    assert logged == pytest.approx(
        {contract.analysis_metric(k): v for k, v in expected.values().items()}
    )
    assert set(logged) <= set(contract.ANALYSIS_METRICS)
    listed = {a.path for a in client.list_artifacts(run_id, contract.ANALYSIS)}
    assert listed == set(contract.ANALYSIS_ARTIFACTS)
    images = Path(client.download_artifacts(run_id, contract.ANALYSIS_IMAGES))
    rows = list(csv.DictReader(images.open()))
    assert [r["failure"] for r in rows] == [r.failure for r in expected.readings]


def test_analyze_refuses_a_run_that_is_not_a_training_run(
    planted: dict, store_uri: str, cli
) -> None:
    client = MlflowClient(store_uri)
    parent = client.get_run(planted["runs"]["noisy"]).data.tags[contract.PARENT_TAG]
    assert_one_clear_line(cli("analyze", parent), parent, "not a training run")
    assert_one_clear_line(cli("analyze", "nope"), "no run with id 'nope'")


def test_anchors_prints_and_writes_the_coverage(synth_root: Path, tmp_path: Path, cli) -> None:
    from conftest import ABLATIONS

    result = cli(
        "anchors",
        ABLATIONS / "anchors.py",
        "--preset",
        "smoke",
        "--data",
        synth_root,
        "--out",
        tmp_path,
    )
    assert result.code == 0, result.err
    rows = list(csv.DictReader((tmp_path / "anchors_anchor_coverage.csv").open()))
    assert len(rows) == 4 and all(r["variant"] in result.out for r in rows)
    from digitexp.spec import load_spec

    spec = load_spec(ABLATIONS / "anchors.py", preset="smoke", sets={"data.root": str(synth_root)})
    for row in rows:
        cfg = spec.config(row["variant"])
        split = load_split(synth_root, "train", limit=cfg.data.train_limit)
        expected = anchor_coverage(split, cfg.model)
        assert int(row["boxes"]) == expected.boxes
        assert float(row["share_fg"]) == pytest.approx(expected.share_fg, abs=1e-6)
        assert float(row["mean_best_iou"]) == pytest.approx(expected.mean_iou, abs=1e-6)
    with Image.open(tmp_path / "anchors_anchor_coverage.png") as img:
        assert img.format == "PNG"


@pytest.mark.parametrize("count", ["-1", "1000000000000"])
def test_a_bootstrap_count_out_of_range_is_one_clear_line(
    planted: dict, tmp_path: Path, cli, count: str
) -> None:
    result = cli(
        "report", "--out", tmp_path / "r", "--ablations", planted["ablations"], "--bootstrap", count
    )
    assert_one_clear_line(result, f"--bootstrap {count}", "must be in [0, 10000]")
    assert not (tmp_path / "r" / "README.md").exists()
