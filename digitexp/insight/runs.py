"""A run's error analysis in MLflow: its best checkpoint's validation predictions read back
(or, for a run that never logged them, predicted again), analysed, and logged to the run as
``analysis/*`` metrics and CSV/PNG artifacts (tracking contract)."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from digitexp.common import files
from digitexp.common.plotting import save
from digitexp.config import ExperimentConfig, apply_overrides, from_dict
from digitexp.data import Split, load_split
from digitexp.engine import load_trained_run, require_training_run
from digitexp.errors import TrackingError
from digitexp.insight.analysis import (
    RunAnalysis,
    analyze,
    confusion_frame,
    digit_frame,
    failure_frame,
    images_frame,
    size_frame,
)
from digitexp.insight.failures import worst_images, worst_title
from digitexp.insight.figures import ap_figure, confusion_figure, failures_figure, gallery_figure
from digitexp.metrics import Detections, detections_from_results
from digitexp.tracking import MlflowTracker, RunRecord, Tracker, TrackingStore
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.insight")

WORST_IMAGES = 12
SplitCache = MutableMapping[tuple[str, str, int, bool], Split]


@dataclass(frozen=True)
class RunPredictions:
    """A training run's validation predictions with the config and the split they are on."""

    run: RunRecord
    cfg: ExperimentConfig
    split: Split
    detections: dict[int, Detections]


def valid_split(cfg: ExperimentConfig, cache: SplitCache | None = None) -> Split:
    """The validation split a run with ``cfg`` validated on (its limit applied)."""
    d = cfg.data
    key = (d.root, d.valid_split, d.valid_limit, d.clip_boxes)
    if cache is not None and key in cache:
        return cache[key]
    split = load_split(Path(d.root), d.valid_split, clip_boxes=d.clip_boxes, limit=d.valid_limit)
    if cache is not None:
        cache[key] = split
    return split


def logged_predictions(
    store: TrackingStore,
    run: RunRecord,
    *,
    data_root: str | None = None,
    cache: SplitCache | None = None,
) -> RunPredictions:
    """The run's ``config.json`` and ``predictions/val.json`` read back, on its validation
    split (under ``data_root`` when given). TrackingError when the run has not logged them."""
    with tempfile.TemporaryDirectory(prefix="digitexp-analysis-") as tmp:
        config = store.download_artifact(run.run_id, names.CONFIG_JSON, Path(tmp))
        results = store.download_artifact(run.run_id, names.VAL_PREDICTIONS, Path(tmp))
        try:
            cfg = from_dict(json.loads(config.read_text(encoding="utf-8")))
            detections = detections_from_results(json.loads(results.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise TrackingError(
                f"run {run.run_id}: {names.VAL_PREDICTIONS} or {names.CONFIG_JSON} is not "
                f"readable ({exc})"
            ) from None
    if data_root is not None:
        cfg = apply_overrides(cfg, {"data.root": data_root})
    return RunPredictions(run, cfg, valid_split(cfg, cache), detections)


def write_analysis(
    analysis: RunAnalysis, split: Split, folder: Path, title: str
) -> dict[str, Path]:
    """The analysis' CSV tables and PNG figures under ``folder``, by artifact name."""
    tables = {
        names.ANALYSIS_AP_BY_DIGIT: digit_frame(analysis),
        names.ANALYSIS_AP_BY_SIZE: size_frame(analysis),
        names.ANALYSIS_CONFUSION: confusion_frame(analysis),
        names.ANALYSIS_FAILURES: failure_frame(analysis),
        names.ANALYSIS_IMAGES: images_frame(analysis),
    }
    paths: dict[str, Path] = {}
    for artifact, frame in tables.items():
        paths[artifact] = files.write_text(folder / artifact, frame.to_csv(index=False))
    worst = worst_images(analysis.readings, WORST_IMAGES)
    figures = {
        names.ANALYSIS_AP_FIGURE: ap_figure(analysis, title),
        names.ANALYSIS_CONFUSION_FIGURE: confusion_figure(
            analysis.confusion, f"{title}: digit confusion at IoU 0.5"
        ),
        names.ANALYSIS_FAILURES_FIGURE: failures_figure(
            {"images": analysis.failure_shares()},
            f"{title}: Task-2 reading of {analysis.images} images",
            counts={"images": analysis.failures},
        ),
    }
    if worst:
        figures[names.ANALYSIS_WORST_FIGURE] = gallery_figure(
            worst, split, f"{title}: {worst_title(len(worst))}"
        )
    for artifact, fig in figures.items():
        paths[artifact] = save(fig, folder / artifact)
    return paths


def log_analysis(
    tracker: Tracker, analysis: RunAnalysis, split: Split, title: str, workdir: Path
) -> list[str]:
    """Write the analysis under ``workdir`` and log it to the run: ``analysis/*`` metrics and
    artifacts. Returns the artifact names."""
    paths = write_analysis(analysis, split, workdir, title)
    for path in paths.values():
        tracker.log_artifact(path, names.ANALYSIS)
    tracker.log_metrics({names.analysis_metric(k): v for k, v in analysis.values().items()})
    return list(paths)


def analysis_title(name: str | None, cfg: ExperimentConfig) -> str:
    """``anchors/sizes_4_8/s0, valid split``: what a figure of the analysis is about."""
    split = f"{cfg.data.valid_split} split"
    return f"{name}, {split}" if name else split


def analyze_run(
    store: TrackingStore,
    run_id: str,
    *,
    data_root: str | None = None,
    device: str | None = None,
    log_to_run: bool = True,
) -> tuple[RunPredictions, RunAnalysis]:
    """Analyse a finished training run from its logged validation predictions (predicting
    again with its best checkpoint when it has none) and log the analysis to it."""
    run = store.get_run(run_id)
    require_training_run(run)
    try:
        predictions = logged_predictions(store, run, data_root=data_root)
    except TrackingError as exc:
        if names.VAL_PREDICTIONS not in str(exc):
            raise
        log.info(
            "run %s has no %s: predicting with its best checkpoint", run_id, names.VAL_PREDICTIONS
        )
        overrides = {"data.root": data_root} if data_root else {}
        if device:
            overrides["train.device"] = device
        trained = load_trained_run(store, run_id, overrides=overrides)
        split = valid_split(trained.cfg)
        dets = {d.image_id: d for d in trained.infer(split)}
        predictions = RunPredictions(run, trained.cfg, split, dets)
    analysis = analyze(predictions.split, predictions.detections, predictions.cfg.eval)
    if log_to_run:
        with tempfile.TemporaryDirectory(prefix="digitexp-analysis-") as tmp:
            log_analysis(
                MlflowTracker(store, run_id),
                analysis,
                predictions.split,
                analysis_title(run.name, predictions.cfg),
                Path(tmp),
            )
    return predictions, analysis
