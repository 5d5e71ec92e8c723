"""``digitexp search RUN_ID``: Optuna search of the RoI heads' NMS and score thresholds.

The run's best checkpoint runs once over the split (:mod:`.candidates`); every trial then
replays the post-processing with a threshold pair (:mod:`.replay`) and scores the result with
the metrics' vectorized form (:class:`digitexp.metrics.CandidatePool`). The study lives in an
Optuna storage (default ``sqlite:///mlruns/optuna.db``, beside an embedded MLflow store), so
re-running the command resumes it; each invocation is one MLflow run (tag
``digitexp.kind=search``) in the source run's experiment, linked by ``digitexp.source_run``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitexp.common import files
from digitexp.config import ExperimentConfig
from digitexp.data import Split, load_split, verify_images
from digitexp.engine import TrainedModel, load_trained_run
from digitexp.errors import ConfigError, TrackingError
from digitexp.metrics import CandidatePool
from digitexp.search.candidates import CandidateCache, build_cache
from digitexp.search.figures import plot_history, plot_pareto
from digitexp.search.replay import PostprocessReplay
from digitexp.search.study import (
    METRICS,
    Choice,
    Objective,
    Range,
    SamplerName,
    SearchError,
    choices,
    default_storage,
    make_sampler,
    open_study,
    optimize,
    parse_space,
    trials_frame,
)
from digitexp.tracking import Tracker, TrackingStore, git_commit, mask_uri, source_tags
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.search")


@dataclass
class Evaluator:
    """Scores threshold pairs on the cached candidates of one split."""

    replay: PostprocessReplay
    pool: CandidatePool
    cfg: ExperimentConfig
    seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pool.prepare(self.cfg.eval)  # the set-up, out of the trials' timings

    def __call__(self, score: float, nms: float) -> dict[str, float]:
        start = time.perf_counter()
        mask = self.replay.select(score, nms)
        metrics = self.pool.score(mask, self.cfg.eval)
        metrics["capped_images"] = float(self.replay.capped_images(score))
        metrics["detections"] = float(mask.sum())
        self.seconds.append(time.perf_counter() - start)
        return metrics


def scored_split(cfg: ExperimentConfig, split: str) -> Split:
    """The split a search scores; the run's own validation split is taken as it was scored in
    training (``data.valid_limit``)."""
    limit = cfg.data.valid_limit if split == cfg.data.valid_split else 0
    return load_split(Path(cfg.data.root), split, clip_boxes=cfg.data.clip_boxes, limit=limit)


def candidates_of(
    trained: TrainedModel, data: Split, cap: int, progress: bool | None = None
) -> CandidateCache:
    """The one inference pass: every image's candidates, up to ``cap`` per image."""
    return build_cache(
        trained.model,
        trained.dataset(data),
        device=trained.device,
        cap=cap,
        batch_size=trained.batch_size,
        pre_normalize=trained.cfg.data.pre_normalize,
        amp_dtype=trained.amp,
        workers=trained.workers,
        progress=progress,
    )


def evaluator(
    cfg: ExperimentConfig, data: Split, cache: CandidateCache, min_nms: float
) -> Evaluator:
    """Threshold pairs -> metrics on ``data`` from ``cache`` (which must cover it)."""
    if sorted(r.id for r in data.images) != cache.image_ids.tolist():
        raise SearchError(
            f"the cached candidates do not cover split {data.name!r} of {cfg.data.root}"
        )
    replay = PostprocessReplay(cache, cfg.model.box_detections_per_img, min_nms=min_nms)
    return Evaluator(replay, CandidatePool(data, cache.image_ids, cache.pool()), cfg)


def _cached_candidates(
    store: TrackingStore, source: TrainedModel, split: str, cap: int, data_root: str, workdir: Path
) -> tuple[CandidateCache, str] | None:
    """A candidate cache logged by an earlier search on the same run, split, data and cap."""
    artifact = names.candidates_artifact(split, cap)
    for run in store.runs([source.run.experiment]):
        same = (
            run.tag(names.TAG_KIND) == names.KIND_SEARCH
            and run.tag(names.TAG_SOURCE_RUN) == source.run.run_id
            and run.tag(names.TAG_SPLIT) == split
            and run.tag(names.TAG_DATA) == data_root
        )
        if not same:
            continue
        try:
            path = store.download_artifact(run.run_id, artifact, workdir / run.run_id)
        except TrackingError:
            continue
        return CandidateCache.load(path), run.run_id
    return None


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class SearchRequest:
    run_id: str
    trials: int = 200
    objective: Objective = "both"
    sampler: SamplerName = "tpe"
    seed: int | None = None
    space: Mapping[str, Range] = field(default_factory=lambda: parse_space(None))
    storage: str | None = None
    study: str | None = None
    split: str | None = None  # None: the run's own validation split
    cap: int = 300
    device: str | None = None
    batch_size: int | None = None
    data_root: str | None = None

    def overrides(self) -> dict[str, Any]:
        """What the search changes in the run's config to rebuild its model here."""
        out: dict[str, Any] = {}
        if self.device:
            out["train.device"] = self.device
        if self.data_root:
            out["data.root"] = self.data_root
        return out


@dataclass(frozen=True)
class SearchOutcome:
    run_id: str
    experiment: str
    study: str
    storage: str
    trials_total: int
    trials_new: int
    choices: list[Choice]
    defaults: dict[str, float]
    inference_seconds: float
    trial_seconds: float
    reused_cache: str | None


def study_name(req: SearchRequest, split: str, data_root: str) -> str:
    """One study per run, split, objective, and candidate set / space (cap, data, space):
    resuming never mixes trials scored on different candidates or ranges."""
    if req.study:
        return req.study
    space = " ".join(f"{k}={r.low:g}:{r.high:g}:{r.step:g}" for k, r in sorted(req.space.items()))
    digest = hashlib.sha256(f"{req.cap}|{data_root}|{space}".encode()).hexdigest()[:8]
    return f"thresholds-{req.run_id[:12]}-{split}-{req.objective}-{digest}"


def run_search(
    req: SearchRequest, store: TrackingStore, progress: bool | None = None
) -> SearchOutcome:
    """Everything `digitexp search` does; raises DigitexpError on bad input."""
    if req.trials < 1:
        raise ConfigError("--trials must be >= 1")
    if req.cap < 1:
        raise ConfigError("--cap must be >= 1")
    if req.batch_size is not None and req.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    storage = req.storage or default_storage(store.uri)
    with tempfile.TemporaryDirectory(prefix="digitexp-search-") as tmp:
        workdir = Path(tmp)
        source = load_trained_run(
            store, req.run_id, overrides=req.overrides(), batch_size=req.batch_size
        )
        cfg = source.cfg
        split = req.split or cfg.data.valid_split
        data = scored_split(cfg, split)
        verify_images(data, progress=progress)
        data_root = str(Path(cfg.data.root).resolve())
        found = _cached_candidates(store, source, split, req.cap, data_root, workdir)
        cache, reused = found if found else (None, None)
        inference_seconds = 0.0
        if cache is None:
            start = time.perf_counter()
            cache = candidates_of(source, data, req.cap, progress)
            inference_seconds = time.perf_counter() - start
        # the spec's own thresholds are scored too, so the replay covers them as well
        min_nms = min(req.space["box_nms_thresh"].low, cfg.model.box_nms_thresh)
        evaluate = evaluator(cfg, data, cache, min_nms)
        name = study_name(req, split, data_root)
        sampler = make_sampler(req.sampler, req.space, req.seed)
        study = open_study(storage, name, req.objective, sampler)
        study.set_user_attr("source_run", req.run_id)
        study.set_user_attr("split", split)
        before = len(study.trials)
        tracker = store.create_run(
            source.run.experiment,
            f"thresholds · {split} · {req.objective}",
            {
                names.TAG_KIND: names.KIND_SEARCH,
                names.TAG_SOURCE_RUN: req.run_id,
                names.TAG_SPLIT: split,
                names.TAG_DATA: data_root,
                names.TAG_STUDY: name,
                names.TAG_SPEC: source.run.tag(names.TAG_SPEC),
                names.TAG_VARIANT: source.run.tag(names.TAG_VARIANT),
                names.TAG_SEED: source.run.tag(names.TAG_SEED),
                **source_tags("digitexp search", git_commit()),
            },
            parent_id=req.run_id,  # nested under the run it searched
            description=(
                f"Optuna search of the RoI heads' NMS and score thresholds of "
                f"`{source.run.name}` on its {split} split ({req.objective}, {req.sampler}), "
                f"study `{name}`; no retraining."
            ),
        )
        status = "FAILED"
        try:
            model_cfg = cfg.model
            defaults = evaluate(model_cfg.box_score_thresh, model_cfg.box_nms_thresh)
            evaluate.seconds.clear()
            tracker.log_params(
                {
                    "objective": req.objective,
                    "sampler": req.sampler,
                    "seed": req.seed,
                    "space": " ".join(
                        f"{k}={r.low:g}:{r.high:g}:{r.step:g}" for k, r in req.space.items()
                    ),
                    "split": split,
                    "cap": req.cap,
                    "study": name,
                    "storage": mask_uri(storage),
                    "trials_requested": req.trials,
                    "default_box_nms_thresh": model_cfg.box_nms_thresh,
                    "default_box_score_thresh": model_cfg.box_score_thresh,
                }
            )
            if reused is None:
                path = cache.save(workdir / names.candidates_artifact(split, req.cap))
                tracker.log_artifact(path, names.CANDIDATES)
            optimize(study, evaluate, req.space, req.objective, req.trials, progress)
            picked = choices(study, req.objective)
            _log_results(
                tracker, study, req, picked, defaults, workdir, inference_seconds, evaluate
            )
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            store.end_run(tracker.run_id, status)  # type: ignore[arg-type]
    return SearchOutcome(
        run_id=tracker.run_id,
        experiment=source.run.experiment,
        study=name,
        storage=storage,
        trials_total=len(study.trials),
        trials_new=len(study.trials) - before,
        choices=picked,
        defaults=defaults,
        inference_seconds=inference_seconds,
        trial_seconds=float(np.mean(evaluate.seconds)) if evaluate.seconds else 0.0,
        reused_cache=reused,
    )


def reuse_lines(picked: Sequence[Choice]) -> str:
    """One ``label: --set ...`` line per distinct choice (choices that picked the same
    thresholds share a line): what tag ``digitexp.best_set`` holds."""
    by_line: dict[str, list[str]] = {}
    for choice in picked:
        by_line.setdefault(choice.set_line(), []).append(choice.label)
    return "\n".join(f"{' and '.join(labels)}: {line}" for line, labels in by_line.items())


def _log_results(
    tracker: Tracker,
    study: Any,
    req: SearchRequest,
    picked: Sequence[Choice],
    defaults: Mapping[str, float],
    workdir: Path,
    inference_seconds: float,
    evaluate: Evaluator,
) -> None:
    metrics = {names.search_metric("default", k): v for k, v in defaults.items() if k in METRICS}
    for choice in picked:
        metrics.update({names.search_metric(choice.key, k): v for k, v in choice.metrics.items()})
        metrics.update({names.search_metric(choice.key, k): v for k, v in choice.params.items()})
    metrics[names.SEARCH_TRIALS] = float(len(study.trials))
    metrics[names.SEARCH_INFERENCE_SECONDS] = inference_seconds
    if evaluate.seconds:
        metrics[names.SEARCH_TRIAL_SECONDS] = float(np.mean(evaluate.seconds))
    tracker.log_metrics(metrics)
    lines = [f"{c.label} (trial {c.number}): {c.set_line()}" for c in picked]
    tracker.set_tags({names.TAG_BEST_SET: reuse_lines(picked)})
    out = workdir / "results"
    tracker.log_artifact(files.write_text(out / "best_thresholds.txt", "\n".join(lines) + "\n"))
    tracker.log_artifact(files.write_csv(out / "trials.csv", trials_frame(study)))
    tracker.log_artifact(plot_history(study, out / "optimization_history.png"))
    tracker.log_artifact(plot_pareto(study, req.objective, defaults, out / "pareto_front.png"))
