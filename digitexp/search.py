"""``digitexp search RUN_ID``: Optuna search of the RoI heads' NMS and score thresholds.

The run's best checkpoint runs once over the split (:mod:`digitexp.candidates`); every trial
then applies a threshold pair to the cached candidates and scores the result with the
evaluation module's exact vectorized twin (:mod:`digitexp.fasteval`). The study lives in an
Optuna storage (default ``sqlite:///mlruns/optuna.db``, beside an embedded MLflow store), so
re-running the command resumes it; each invocation is one MLflow run (tag
``digitexp.kind=search``) in the source run's experiment, linked by ``digitexp.source_run``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from digitexp import fsutil
from digitexp.candidates import CandidateCache, ThresholdEngine, build_cache
from digitexp.config import ExperimentConfig, apply_overrides
from digitexp.data.coco import DigitDataset, load_split
from digitexp.errors import ConfigError, DigitexpError, TrackingError, first_line
from digitexp.fasteval import CandidatePool
from digitexp.model import build_model
from digitexp.plotting import pyplot, save
from digitexp.progress import Progress
from digitexp.tracking import (
    TAG_DATA,
    TAG_KIND,
    TAG_SEED,
    TAG_SOURCE_RUN,
    TAG_SPEC,
    TAG_VARIANT,
    RunRecord,
    TrackingStore,
    mask_uri,
)
from digitexp.train import amp_dtype, checkpoint_config, load_checkpoint, resolve_device

log = logging.getLogger("digitexp.search")

Objective = Literal["map", "number_acc", "both"]
SamplerName = Literal["tpe", "grid", "qmc"]
PARAMS = ("box_nms_thresh", "box_score_thresh")
DEFAULT_SPACE = {"box_nms_thresh": (0.1, 0.9, 0.01), "box_score_thresh": (0.0, 0.95, 0.01)}
TAG_SPLIT = "digitexp.split"
TAG_STUDY = "digitexp.study"
TAG_BEST_SET = "digitexp.best_set"
CACHE_ARTIFACT = "candidates/{split}-cap{cap}.npz"
METRICS = ("map", "map50", "map75", "digit_acc", "number_acc")


class SearchError(DigitexpError):
    """A search cannot start: bad run, missing checkpoint, bad space or storage."""


# --------------------------------------------------------------------------- space


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    step: float

    def grid(self) -> list[float]:
        n = round((self.high - self.low) / self.step)
        return [round(self.low + i * self.step, 10) for i in range(n + 1)]


def parse_space(items: Sequence[str] | None) -> dict[str, Range]:
    """``["box_nms_thresh=0.1:0.9", "box_score_thresh=0:0.95:0.05"]`` -> ranges.

    Unset parameters keep their default range; the step defaults to 0.01.
    """
    space = {k: Range(*v) for k, v in DEFAULT_SPACE.items()}
    if items is not None and not items:
        raise ConfigError("--space: give at least one KEY=LOW:HIGH[:STEP]")
    for item in items or ():
        match = re.fullmatch(r"\s*([a-z_]+)\s*=\s*([^:]+):([^:]+)(?::([^:]+))?\s*", item)
        if match is None:
            raise ConfigError(f"--space {item!r}: expected KEY=LOW:HIGH[:STEP]")
        key, low_s, high_s, step_s = match.groups()
        if key not in PARAMS:
            raise ConfigError(f"--space {item!r}: unknown key {key!r} ({', '.join(PARAMS)})")
        try:
            low, high = float(low_s), float(high_s)
            step = float(step_s) if step_s else 0.01
        except ValueError:
            raise ConfigError(f"--space {item!r}: LOW, HIGH and STEP must be numbers") from None
        if not (0.0 <= low <= high <= 1.0):
            raise ConfigError(f"--space {item!r}: need 0 <= LOW <= HIGH <= 1")
        if not (0 < step <= max(high - low, step)) or not math.isfinite(step):
            raise ConfigError(f"--space {item!r}: STEP must be > 0")
        span = (high - low) / step
        if abs(span - round(span)) > 1e-6:
            raise ConfigError(f"--space {item!r}: HIGH - LOW must be a multiple of STEP")
        space[key] = Range(low, high, step)
    return space


# --------------------------------------------------------------------------- source run


@dataclass(frozen=True)
class Source:
    run: RunRecord
    cfg: ExperimentConfig
    state: dict[str, Any]


def load_source(store: TrackingStore, run_id: str, workdir: Path) -> Source:
    """The training run, its best checkpoint (weights_only) and its config."""
    run = store.get_run(run_id)
    if run.tag(TAG_KIND, "train") != "train" or run.parent_id is None:
        raise SearchError(f"run {run_id} is not a training run of `digitexp run`")
    try:
        path = store.download_artifact(run_id, "checkpoints/best.pt", workdir)
    except TrackingError:
        raise SearchError(
            f"run {run_id} ({run.name}) has no checkpoints/best.pt artifact: it did not finish "
            "an epoch"
        ) from None
    state = load_checkpoint(path)
    return Source(run, checkpoint_config(state, path), state)


def _cached_candidates(
    store: TrackingStore, source: Source, split: str, cap: int, data_root: str, workdir: Path
) -> tuple[CandidateCache, str] | None:
    """A candidate cache logged by an earlier search on the same run, split, data and cap."""
    artifact = CACHE_ARTIFACT.format(split=split, cap=cap)
    runs = store.runs(
        [source.run.experiment],
        f"tags.`{TAG_SOURCE_RUN}` = '{source.run.run_id}' and tags.`{TAG_SPLIT}` = '{split}'"
        f" and tags.`{TAG_DATA}` = '{data_root}'",
    )
    for run in runs:
        try:
            path = store.download_artifact(run.run_id, artifact, workdir / run.run_id)
        except TrackingError:
            continue
        return CandidateCache.load(path), run.run_id
    return None


# --------------------------------------------------------------------------- trials


@dataclass
class Evaluator:
    """Scores threshold pairs on the cached candidates of one split."""

    engine: ThresholdEngine
    pool: CandidatePool
    cfg: ExperimentConfig
    seconds: list[float] = field(default_factory=list)

    def __call__(self, score: float, nms: float) -> dict[str, float]:
        start = time.perf_counter()
        mask = self.engine.select(score, nms)
        metrics = self.pool.score(mask, self.cfg.eval)
        metrics["capped_images"] = float(self.engine.capped_images(score))
        metrics["detections"] = float(mask.sum())
        self.seconds.append(time.perf_counter() - start)
        return metrics


def search_config(source: Source, device: str | None, data_root: str | None) -> ExperimentConfig:
    """The source run's config, to rebuild its model here (weights come from best.pt)."""
    overrides: dict[str, Any] = {"model.weights": "none"}
    if device:
        overrides["train.device"] = device
    if data_root:
        overrides["data.root"] = data_root
    return apply_overrides(source.cfg, overrides)


def prepare(
    cfg: ExperimentConfig,
    state: dict[str, Any],
    *,
    split: str,
    cap: int,
    batch_size: int | None,
    min_nms: float,
    progress: bool | None,
    cache: CandidateCache | None = None,
) -> tuple[Evaluator, CandidateCache, float]:
    """The evaluator (and the cache, built with one inference pass unless given). The run's
    own validation split is taken as it was scored in training (``data.valid_limit``)."""
    limit = cfg.data.valid_limit if split == cfg.data.valid_split else 0
    data = load_split(Path(cfg.data.root), split, clip_boxes=cfg.data.clip_boxes, limit=limit)
    seconds = 0.0
    if cache is None:
        dev = resolve_device(cfg.train.device)
        model = build_model(cfg.model)
        model.load_state_dict(state["model"])
        model.to(dev)
        start = time.perf_counter()
        cache = build_cache(
            model,
            DigitDataset(data, cfg.data, train=False),
            device=dev,
            cap=cap,
            batch_size=batch_size or cfg.train.eval_batch_size,
            pre_normalize=cfg.data.pre_normalize,
            amp_dtype=amp_dtype(cfg.train, dev),
            workers=cfg.train.workers,
            progress=progress,
        )
        seconds = time.perf_counter() - start
        del model
    if sorted(r.id for r in data.images) != cache.image_ids.tolist():
        raise SearchError(f"the cached candidates do not cover split {split!r} of {cfg.data.root}")
    engine = ThresholdEngine(cache, cfg.model.box_detections_per_img, min_nms=min_nms)
    pool = CandidatePool(data, cache.image_ids, cache.pool())
    return Evaluator(engine, pool, cfg), cache, seconds


# --------------------------------------------------------------------------- optuna


def make_sampler(name: SamplerName, space: Mapping[str, Range], seed: int | None) -> Any:
    import optuna

    match name:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        case "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        case "grid":
            grid = {k: r.grid() for k, r in space.items()}
            return optuna.samplers.GridSampler(grid, seed=seed)


def default_storage(store: TrackingStore) -> str:
    """``sqlite:///mlruns/optuna.db``, or beside the MLflow database when it is elsewhere."""
    if store.uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(store.uri[len('sqlite:///') :]).parent / 'optuna.db'}"
    return "sqlite:///mlruns/optuna.db"


def open_study(storage: str, name: str, objective: Objective, sampler: Any) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    directions = ["maximize", "maximize"] if objective == "both" else ["maximize"]
    db = storage[len("sqlite:///") :] if storage.startswith("sqlite:///") else None
    if db:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except ValueError as exc:
        raise SearchError(f"study {name!r} in {mask_uri(storage)}: {exc}") from None
    except Exception as exc:  # storage errors come as several SQLAlchemy / Optuna types
        first = first_line(exc)
        raise SearchError(
            f"{mask_uri(storage)}: cannot open the Optuna storage ({first})"
        ) from None
    if [d.name.lower() for d in study.directions] != directions:
        raise SearchError(
            f"study {name!r} in {mask_uri(storage)} has {len(study.directions)} objective(s); "
            f"--objective {objective} needs {len(directions)}: pick another --study"
        )
    return study


def _values(metrics: Mapping[str, float], objective: Objective) -> float | tuple[float, float]:
    match objective:
        case "map":
            return metrics["map"]
        case "number_acc":
            return metrics["number_acc"]
        case "both":
            return metrics["map"], metrics["number_acc"]


def optimize(
    study: Any,
    evaluate: Evaluator,
    space: Mapping[str, Range],
    objective: Objective,
    trials: int,
    progress: bool | None,
) -> None:
    def run_trial(trial: Any) -> float | tuple[float, float]:
        params = {
            key: trial.suggest_float(key, r.low, r.high, step=r.step) for key, r in space.items()
        }
        metrics = evaluate(params["box_score_thresh"], params["box_nms_thresh"])
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        return _values(metrics, objective)

    with Progress(trials, "trials", enabled=progress, unit="trial") as bar:

        def tick(study: Any, trial: Any) -> None:
            bar.update(1)

        study.optimize(run_trial, n_trials=trials, callbacks=[tick], gc_after_trial=False)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Choice:
    """One chosen trial: its thresholds and metrics."""

    label: str
    number: int
    params: dict[str, float]
    metrics: dict[str, float]

    def set_line(self) -> str:
        return (
            f"--set model.box_nms_thresh={self.params['box_nms_thresh']:g} "
            f"model.box_score_thresh={self.params['box_score_thresh']:g}"
        )


def trials_frame(study: Any) -> Any:
    import pandas as pd

    rows = []
    for t in study.trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row.update(t.params)
        row.update({k: t.user_attrs.get(k) for k in (*METRICS, "capped_images", "detections")})
        rows.append(row)
    return pd.DataFrame(rows)


def choices(study: Any, objective: Objective) -> list[Choice]:
    """The best trial per objective (for ``both``: the two ends of the Pareto front)."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        return []

    def pick(key: str, label: str) -> Choice:
        other = "number_acc" if key == "map" else "map"  # ties: the one that is not dominated
        best = max(done, key=lambda t: (t.user_attrs[key], t.user_attrs[other], -t.number))
        return Choice(label, best.number, dict(best.params), _metrics(best))

    match objective:
        case "map":
            return [pick("map", "best val mAP")]
        case "number_acc":
            return [pick("number_acc", "best val Task-2")]
        case "both":
            return [pick("map", "best val mAP"), pick("number_acc", "best val Task-2")]


def _metrics(trial: Any) -> dict[str, float]:
    return {k: float(trial.user_attrs[k]) for k in (*METRICS, "capped_images")}


def pareto_numbers(study: Any, objective: Objective) -> set[int]:
    if objective != "both":
        return set()
    return {t.number for t in study.best_trials}


def plot_pareto(
    study: Any, objective: Objective, defaults: Mapping[str, float], path: Path
) -> Path:
    plt = pyplot()
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    front = pareto_numbers(study, "both")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(
        [t.user_attrs["map"] for t in done],
        [t.user_attrs["number_acc"] for t in done],
        s=10,
        alpha=0.4,
        label="trials",
    )
    pts = sorted(
        (t.user_attrs["map"], t.user_attrs["number_acc"]) for t in done if t.number in front
    )
    if pts:
        ax.plot(*zip(*pts, strict=True), "o-", color="crimson", ms=4, label="Pareto front")
    ax.scatter(
        [defaults["map"]],
        [defaults["number_acc"]],
        marker="*",
        s=150,
        color="k",
        label="spec's thresholds",
    )
    ax.set_xlabel("val mAP")
    ax.set_ylabel("val Task-2 accuracy")
    ax.set_title(f"{study.study_name} ({objective})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_history(study: Any, path: Path) -> Path:
    plt = pyplot()
    done = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in zip(axes, ("map", "number_acc"), ("val mAP", "val Task-2"), strict=True):
        xs = [t.number for t in done]
        ys = [t.user_attrs[key] for t in done]
        ax.scatter(xs, ys, s=8, alpha=0.5, label="trial")
        if ys:
            ax.plot(xs, np.maximum.accumulate(ys), color="crimson", label="best so far")
        ax.set_xlabel("trial")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"optimisation history: {study.study_name}", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


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


@dataclass(frozen=True)
class SearchOutcome:
    run_id: str
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
    storage = req.storage or default_storage(store)
    with tempfile.TemporaryDirectory(prefix="digitexp-search-") as tmp:
        workdir = Path(tmp)
        source = load_source(store, req.run_id, workdir)
        cfg = search_config(source, req.device, req.data_root)
        split = req.split or cfg.data.valid_split
        data_root = str(Path(cfg.data.root).resolve())
        found = _cached_candidates(store, source, split, req.cap, data_root, workdir)
        cache, reused = found if found else (None, None)
        # the spec's own thresholds are scored too, so the engine covers them as well
        min_nms = min(req.space["box_nms_thresh"].low, cfg.model.box_nms_thresh)
        evaluate, cache, inference_seconds = prepare(
            cfg,
            source.state,
            split=split,
            cap=req.cap,
            batch_size=req.batch_size,
            min_nms=min_nms,
            progress=progress,
            cache=cache,
        )
        name = study_name(req, split, data_root)
        sampler = make_sampler(req.sampler, req.space, req.seed)
        study = open_study(storage, name, req.objective, sampler)
        study.set_user_attr("source_run", req.run_id)
        study.set_user_attr("split", split)
        before = len(study.trials)
        tracker = store.create_run(
            source.run.experiment,
            f"search/{source.run.name}",
            {
                TAG_KIND: "search",
                TAG_SOURCE_RUN: req.run_id,
                TAG_SPLIT: split,
                TAG_DATA: data_root,
                TAG_STUDY: name,
                TAG_SPEC: source.run.tag(TAG_SPEC),
                TAG_VARIANT: source.run.tag(TAG_VARIANT),
                TAG_SEED: source.run.tag(TAG_SEED),
            },
        )
        status = "FAILED"
        try:
            model_cfg = evaluate.cfg.model
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
                path = cache.save(
                    workdir
                    / "candidates"
                    / Path(CACHE_ARTIFACT.format(split=split, cap=req.cap)).name
                )
                tracker.log_artifact(path, "candidates")
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


def _log_results(
    tracker: Any,
    study: Any,
    req: SearchRequest,
    picked: Sequence[Choice],
    defaults: Mapping[str, float],
    workdir: Path,
    inference_seconds: float,
    evaluate: Evaluator,
) -> None:
    metrics: dict[str, float] = {f"default_{k}": v for k, v in defaults.items() if k in METRICS}
    for choice in picked:
        prefix = "best_map" if choice.label.endswith("mAP") else "best_number_acc"
        metrics.update({f"{prefix}_{k}": v for k, v in choice.metrics.items()})
        metrics.update({f"{prefix}_{k}": v for k, v in choice.params.items()})
    metrics["trials_total"] = float(len(study.trials))
    metrics["inference_seconds"] = inference_seconds
    if evaluate.seconds:
        metrics["trial_seconds_mean"] = float(np.mean(evaluate.seconds))
    tracker.log_metrics(metrics)
    lines = [f"{c.label} (trial {c.number}): {c.set_line()}" for c in picked]
    tracker.set_tags({TAG_BEST_SET: " | ".join(c.set_line() for c in picked)})
    out = workdir / "results"
    tracker.log_artifact(fsutil.write_text(out / "best_thresholds.txt", "\n".join(lines) + "\n"))
    frame = trials_frame(study)
    tracker.log_artifact(fsutil.write_text(out / "trials.csv", frame.to_csv(index=False)))
    tracker.log_artifact(plot_history(study, out / "optimization_history.png"))
    tracker.log_artifact(plot_pareto(study, req.objective, defaults, out / "pareto_front.png"))
