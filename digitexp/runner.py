"""Run a spec's variants x seeds one after another, each in its own MLflow child run.

Everything that can be checked before training is checked before any run is created:
the spec, every override, the data (validated once per data config), the device and the
availability of pretrained weights. So bad input never leaves a run behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from digitexp import model as model_mod
from digitexp.config import DataConfig, ExperimentConfig, config_hash
from digitexp.errors import DigitexpError, SpecError, TrainingError
from digitexp.spec import Spec, resolve
from digitexp.tracking import (
    TAG_CONFIG_HASH,
    TAG_DATA,
    TAG_ERROR,
    TAG_GIT,
    TAG_KIND,
    TAG_PRESET,
    TAG_SEED,
    TAG_SPEC,
    TAG_VARIANT,
    TrackingStore,
    git_commit,
)
from digitexp.train import DataBundle, RunResult, fit, load_data, resolve_device

log = logging.getLogger("digitexp.runner")


@dataclass(frozen=True)
class RunPlan:
    spec: Spec
    variant: str
    seed: int
    cfg: ExperimentConfig

    @property
    def name(self) -> str:
        return f"{self.spec.name}/{self.variant}/s{self.seed}"


@dataclass(frozen=True)
class RunOutcome:
    plan: RunPlan
    run_id: str
    status: str  # FINISHED | FAILED | KILLED
    result: RunResult | None
    error: str | None
    minutes: float


def plan_runs(
    spec: Spec,
    *,
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    preset: str | None = None,
    sets: Mapping[str, Any] | None = None,
) -> list[RunPlan]:
    """Resolved configs for the selected variants x seeds (all of the spec's by default)."""
    names = list(variants) if variants else list(spec.variants)
    unknown = [v for v in names if v not in spec.variants]
    if unknown:
        raise SpecError(
            f"{spec.path}: unknown variant {unknown[0]!r} (variants: {', '.join(spec.variants)})"
        )
    chosen_seeds = list(seeds) if seeds else list(spec.seeds)
    return [
        RunPlan(spec, v, s, resolve(spec, v, seed=s, preset=preset, sets=sets))
        for v in names
        for s in chosen_seeds
    ]


def preflight(plans: Sequence[RunPlan]) -> dict[DataConfig, DataBundle]:
    """Validate data, device and weights for every plan; the loaded data per data config."""
    bundles: dict[DataConfig, DataBundle] = {}
    for plan in plans:
        resolve_device(plan.cfg.train.device)
        model_mod.check_weights(plan.cfg.model)
        if plan.cfg.data not in bundles:
            bundles[plan.cfg.data] = load_data(plan.cfg.data)
    return bundles


def _tags(plan: RunPlan, preset: str | None, commit: str) -> dict[str, str]:
    return {
        TAG_SPEC: plan.spec.name,
        TAG_VARIANT: plan.variant,
        TAG_SEED: str(plan.seed),
        TAG_PRESET: preset or "none",
        TAG_GIT: commit,
        TAG_CONFIG_HASH: config_hash(plan.cfg),
        TAG_DATA: plan.cfg.data.root,
        TAG_KIND: "train",
    }


def execute(
    plans: Sequence[RunPlan],
    store: TrackingStore,
    *,
    experiment: str,
    preset: str | None = None,
    progress: bool | None = None,
) -> list[RunOutcome]:
    """Train every plan under one parent run. A run whose loss diverges is marked FAILED and
    the others go on; Ctrl-C marks the current run and the parent KILLED and re-raises; any
    other error marks them FAILED and re-raises."""
    if not plans:
        return []
    bundles = preflight(plans)
    spec = plans[0].spec
    commit = git_commit(spec.path.resolve().parent)
    parent = store.create_run(
        experiment,
        f"{spec.name}@{time.strftime('%Y%m%d-%H%M%S')}",
        {
            TAG_SPEC: spec.name,
            TAG_PRESET: preset or "none",
            TAG_GIT: commit,
            TAG_KIND: "invocation",
        },
    )
    parent.log_text(spec.source, "spec.py")
    outcomes: list[RunOutcome] = []
    parent_status = "FINISHED"
    try:
        for plan in plans:
            outcome = _run_one(
                plan, store, experiment, parent.run_id, bundles, preset, commit, progress
            )
            outcomes.append(outcome)
            if outcome.status != "FINISHED":
                parent_status = "FAILED"
    except KeyboardInterrupt:
        store.end_run(parent.run_id, "KILLED")
        raise
    except BaseException:
        store.end_run(parent.run_id, "FAILED")
        raise
    store.end_run(parent.run_id, parent_status)
    return outcomes


def _run_one(
    plan: RunPlan,
    store: TrackingStore,
    experiment: str,
    parent_id: str,
    bundles: Mapping[DataConfig, DataBundle],
    preset: str | None,
    commit: str,
    progress: bool | None,
) -> RunOutcome:
    tracker = store.create_run(experiment, plan.name, _tags(plan, preset, commit), parent_id)
    start = time.perf_counter()
    log.info("run %s (%s)", plan.name, tracker.run_id)

    def outcome(status: str, result: RunResult | None, error: str | None) -> RunOutcome:
        minutes = (time.perf_counter() - start) / 60
        return RunOutcome(plan, tracker.run_id, status, result, error, minutes)

    try:
        tracker.log_text(plan.spec.source, "spec.py")
        with store.system_metrics(tracker.run_id):
            result = fit(plan.cfg, tracker, data=bundles[plan.cfg.data], progress=progress)
    except TrainingError as exc:
        tracker.set_tags({TAG_ERROR: str(exc)[:5000]})
        store.end_run(tracker.run_id, "FAILED")
        log.error("%s failed: %s", plan.name, exc)
        return outcome("FAILED", None, str(exc))
    except KeyboardInterrupt:
        store.end_run(tracker.run_id, "KILLED")
        raise
    except BaseException as exc:
        message = str(exc) if isinstance(exc, DigitexpError) else f"{type(exc).__name__}: {exc}"
        try:
            tracker.set_tags({TAG_ERROR: message[:5000]})
        finally:
            store.end_run(tracker.run_id, "FAILED")
        raise
    store.end_run(tracker.run_id, "FINISHED")
    return outcome("FINISHED", result, None)
