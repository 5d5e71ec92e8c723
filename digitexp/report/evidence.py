"""What a spec's runs show beyond their logged numbers (the numbers only; :mod:`.insight`
renders them): paired-bootstrap comparisons of the variants on their logged validation
predictions, each variant's error analysis (``analysis/*``), its anchor coverage, and the
best variant's images read one by one.

Runs without logged predictions (or whose data is not here) are left out of the comparisons,
and the section says so; the table's ≈ then falls back to the seeds' spread
(:mod:`.statistics`).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace

import numpy as np

from digitexp.common.progress import Progress
from digitexp.config import ExperimentConfig
from digitexp.data import Split
from digitexp.errors import DigitexpError
from digitexp.insight.analysis import analyze
from digitexp.insight.bootstrap import (
    DEFAULT_SEED,
    Comparison,
    ResampleScorer,
    ResampleScores,
    compare,
    resample_counts,
)
from digitexp.insight.confusion import confusion_matrix
from digitexp.insight.coverage import Coverage, variant_coverages
from digitexp.insight.failures import ImageReading, read_images
from digitexp.insight.runs import RunPredictions, logged_predictions
from digitexp.report.selection import RunValues
from digitexp.report.statistics import Delta, Section
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.report")

SplitCache = MutableMapping[tuple[str, str, int, bool], Split]


@dataclass(frozen=True)
class RunEvidence:
    values: RunValues
    predictions: RunPredictions
    image_ids: tuple[int, ...]
    observed: tuple[float, float]  # (mAP, Task-2) on the split itself
    resampled: ResampleScores | None
    analysis: dict[str, float]  # analysis/* keys, without the prefix
    analysis_logged: bool  # False: computed by the report


@dataclass(frozen=True)
class VariantComparison:
    label: str  # "vs first" or "best vs runner-up"
    a: str
    b: str
    map: Comparison
    number_acc: Comparison


@dataclass
class BestVariant:
    variant: str
    run: RunEvidence
    readings: list[ImageReading]
    confusion: np.ndarray


@dataclass
class SpecEvidence:
    resamples: int
    seed: int
    runs: dict[str, list[RunEvidence]] = field(default_factory=dict)
    comparisons: list[VariantComparison] = field(default_factory=list)
    coverage: dict[str, Coverage] = field(default_factory=dict)
    configs: dict[str, ExperimentConfig] = field(default_factory=dict)
    best: BestVariant | None = None
    notes: list[str] = field(default_factory=list)

    def analysis_mean(self, variant: str, key: str) -> float | None:
        xs = [r.analysis[key] for r in self.runs.get(variant, []) if key in r.analysis]
        return statistics.fmean(xs) if xs else None

    @property
    def computed_analysis(self) -> bool:
        return any(not r.analysis_logged for rs in self.runs.values() for r in rs)


def _run_evidence(
    run: RunValues,
    store: TrackingStore,
    cache: SplitCache,
    resamples: int,
    seed: int,
    progress: Progress,
) -> RunEvidence:
    predictions = logged_predictions(store, run.run, cache=cache)
    scorer = ResampleScorer(predictions.split, predictions.detections, predictions.cfg.eval)
    ones = np.ones(scorer.num_images, dtype=np.int64)
    resampled = None
    if resamples:
        counts = resample_counts(scorer.num_images, resamples, seed)
        resampled = scorer.scores(counts, progress)
    logged = {
        k.removeprefix(f"{names.ANALYSIS}/"): v
        for k, v in run.run.metrics.items()
        if k.startswith(f"{names.ANALYSIS}/")
    }
    analysis = (
        logged or analyze(predictions.split, predictions.detections, predictions.cfg.eval).values()
    )
    return RunEvidence(
        values=run,
        predictions=predictions,
        image_ids=tuple(int(i) for i in scorer.image_ids),
        observed=scorer.score(ones),
        resampled=resampled,
        analysis=analysis,
        analysis_logged=bool(logged),
    )


def _compare(label: str, a: list[RunEvidence], b: list[RunEvidence]) -> VariantComparison | None:
    if a[0].image_ids != b[0].image_ids or a[0].resampled is None:
        return None
    return VariantComparison(
        label=label,
        a=a[0].values.variant,
        b=b[0].values.variant,
        map=compare(
            [r.observed[0] for r in a],
            [r.observed[0] for r in b],
            [r.resampled.map for r in a if r.resampled is not None],
            [r.resampled.map for r in b if r.resampled is not None],
        ),
        number_acc=compare(
            [r.observed[1] for r in a],
            [r.observed[1] for r in b],
            [r.resampled.number_acc for r in a if r.resampled is not None],
            [r.resampled.number_acc for r in b if r.resampled is not None],
        ),
    )


def gather_evidence(
    section: Section,
    store: TrackingStore,
    *,
    resamples: int,
    seed: int = DEFAULT_SEED,
    splits: SplitCache | None = None,
) -> SpecEvidence:
    """Everything :mod:`.insight` shows for one spec."""
    cache: SplitCache = {} if splits is None else splits
    evidence = SpecEvidence(resamples=resamples, seed=seed)
    total = len(section.runs) * resamples
    with Progress(total or None, f"bootstrap {section.spec.name}", unit="resample") as bar:
        for run in section.runs:
            try:
                found = _run_evidence(run, store, cache, resamples, seed, bar)
            except (DigitexpError, OSError) as exc:
                evidence.notes.append(f"`{run.run.name}` left out of the intervals: {exc}")
                log.info("report: %s: %s", run.run.name, exc)
                continue
            evidence.runs.setdefault(run.variant, []).append(found)
    variants = [v for v in section.spec.variants if v in evidence.runs]
    for v in variants:  # a variant's seeds must share their images to be averaged
        ids = evidence.runs[v][0].image_ids
        mismatched = {r.values.run.name for r in evidence.runs[v] if r.image_ids != ids}
        if mismatched:
            evidence.notes.append(
                f"`{v}`: seeds validated on different images ({', '.join(sorted(mismatched))})"
            )
            evidence.runs[v] = [r for r in evidence.runs[v] if r.image_ids == ids]
    ranked = sorted(
        variants,
        key=lambda v: statistics.fmean(r.observed[0] for r in evidence.runs[v]),
        reverse=True,
    )
    if resamples:
        _comparisons(section, evidence, variants, ranked)
    if ranked:
        best_run = max(evidence.runs[ranked[0]], key=lambda r: (r.observed[0], r.values.run.run_id))
        p = best_run.predictions
        readings = read_images(p.split, p.detections, p.cfg.eval)
        evidence.best = BestVariant(ranked[0], best_run, readings, confusion_matrix(readings))
    evidence.configs = {v: evidence.runs[v][0].predictions.cfg for v in variants}
    try:
        evidence.coverage = variant_coverages(evidence.configs, "train", cache)
    except (DigitexpError, OSError) as exc:
        evidence.notes.append(f"no anchor coverage: {exc}")
    return evidence


def _comparisons(
    section: Section, evidence: SpecEvidence, variants: list[str], ranked: list[str]
) -> None:
    """Each variant against the spec's first, and the best against the runner-up."""
    first = next(iter(section.spec.variants))
    if first not in evidence.runs and variants:
        evidence.notes.append(f"`{first}` (the first variant) has no logged predictions here")
    for v in variants if first in evidence.runs else []:
        if v == first:
            continue
        found = _compare("vs first", evidence.runs[first], evidence.runs[v])
        if found is None:
            evidence.notes.append(f"`{v}` and `{first}` validated on different images")
        else:
            evidence.comparisons.append(found)
    if len(ranked) < 2:
        return
    pair = (ranked[1], ranked[0])
    same = [i for i, c in enumerate(evidence.comparisons) if (c.a, c.b) == pair]
    if same:  # already there as a comparison with the first variant
        c = evidence.comparisons[same[0]]
        evidence.comparisons[same[0]] = replace(c, label=f"{c.label}; best vs runner-up")
        return
    found = _compare("best vs runner-up", evidence.runs[pair[0]], evidence.runs[pair[1]])
    if found is not None:
        evidence.comparisons.append(found)


def bootstrap_deltas(section: Section, evidence: SpecEvidence) -> None:
    """The table's Δ vs the first variant, with the bootstrap interval where one exists (the
    seeds' spread of :mod:`.statistics` stays where none does)."""
    for c in evidence.comparisons:
        if c.label.startswith("vs first"):
            section.deltas[c.b] = Delta(
                c.map.delta, None, "bootstrap", low=c.map.low, high=c.map.high
            )
