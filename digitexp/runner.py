"""Run a spec's variants x seeds one after another, each in its own MLflow child run.

Everything that can be checked before training is checked before any run is created:
the spec, every override, the data (validated once per data config), the device and the
availability of pretrained weights. So bad input never leaves a run behind. A run sets a
heartbeat tag while it trains; ``resume`` continues unfinished runs from their last
checkpoint, in the same MLflow run.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitexp import model as model_mod
from digitexp.config import DataConfig, ExperimentConfig, config_hash, from_dict, to_dict
from digitexp.distributed import Distributed
from digitexp.errors import ConfigError, DigitexpError, SpecError, TrackingError, TrainingError
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
    TAG_SPEC_PATH,
    TAG_VARIANT,
    Heartbeat,
    MlflowTracker,
    NullTracker,
    RunRecord,
    RunStatus,
    TrackingStore,
    git_commit,
    run_state,
)
from digitexp.train import DataBundle, RunResult, fit, load_checkpoint, load_data, resolve_device

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
    resumed_from: int | None = None  # the epoch a resumed run continued after


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


def preflight(configs: Sequence[ExperimentConfig]) -> dict[DataConfig, DataBundle]:
    """Validate data, device and weights for every config; the loaded data per data config."""
    bundles: dict[DataConfig, DataBundle] = {}
    for cfg in configs:
        resolve_device(cfg.train.device)
        model_mod.check_weights(cfg.model)
        if cfg.data not in bundles:
            bundles[cfg.data] = load_data(cfg.data)
    return bundles


def _tags(plan: RunPlan, preset: str | None, commit: str) -> dict[str, str]:
    return {
        TAG_SPEC: plan.spec.name,
        TAG_SPEC_PATH: str(plan.spec.path),
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
    ctx: Distributed | None = None,
) -> list[RunOutcome]:
    """Train every plan under one parent run (on rank 0 of a DDP job, the one that logs).

    A run whose loss diverges is marked FAILED and the others go on; Ctrl-C marks the current
    run and the parent KILLED and re-raises; any other error marks them FAILED and re-raises.
    """
    if not plans:
        return []
    bundles = preflight([p.cfg for p in plans])
    spec = plans[0].spec
    commit = git_commit(spec.path.resolve().parent)
    parent = store.create_run(
        experiment,
        f"{spec.name}@{time.strftime('%Y%m%d-%H%M%S')}",
        {
            TAG_SPEC: spec.name,
            TAG_SPEC_PATH: str(spec.path),
            TAG_PRESET: preset or "none",
            TAG_GIT: commit,
            TAG_KIND: "invocation",
        },
    )
    jobs = [_Job(plan, None) for plan in plans]
    return _under_parent(
        jobs,
        store,
        experiment,
        parent.run_id,
        bundles,
        preset,
        commit,
        progress,
        ctx,
        spec_source=spec.source,
    )


def follow(plans: Sequence[RunPlan], ctx: Distributed) -> None:
    """A DDP rank other than 0: train the same plans in the same order, logging nothing."""
    bundles = preflight([p.cfg for p in plans])
    for plan in plans:
        try:
            fit(plan.cfg, NullTracker(), data=bundles[plan.cfg.data], progress=False, ctx=ctx)
        except TrainingError:
            continue  # rank 0 saw the same (reduced) loss: it marks the run and goes on


@dataclass(frozen=True)
class _Job:
    """A plan to train: new (run is None) or the continuation of an existing run."""

    plan: RunPlan
    run: RunRecord | None


def _under_parent(
    jobs: Sequence[_Job],
    store: TrackingStore,
    experiment: str,
    parent_id: str,
    bundles: Mapping[DataConfig, DataBundle],
    preset: str | None,
    commit: str,
    progress: bool | None,
    ctx: Distributed | None = None,
    spec_source: str | None = None,
) -> list[RunOutcome]:
    """Train the jobs as children of ``parent_id`` and end the parent with their outcome.

    Every exit path ends the parent: FINISHED when all its children finished, FAILED when
    one did not or an error escaped, KILLED on Ctrl-C."""
    outcomes: list[RunOutcome] = []
    status: RunStatus = "FAILED"
    try:
        if spec_source is not None:
            store.call(store.client.log_text, parent_id, spec_source, "spec.py")
        for job in jobs:
            tracker = _open_child(job, store, experiment, parent_id, preset, commit)
            data = bundles[job.plan.cfg.data]
            outcomes.append(_run_one(job, tracker, store, data, progress, ctx))
        parent_experiment = store.get_run(parent_id).experiment
        siblings = [r for r in store.runs([parent_experiment]) if r.parent_id == parent_id]
        status = "FINISHED" if all(r.status == "FINISHED" for r in siblings) else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        store.end_run(parent_id, status)
    return outcomes


def _open_child(
    job: _Job,
    store: TrackingStore,
    experiment: str,
    parent_id: str,
    preset: str | None,
    commit: str,
) -> MlflowTracker:
    """The job's run, new or reopened; a new one gets spec.py and config.json at once (so
    even a run killed while it sets up can be resumed)."""
    if job.run is not None:
        return store.reopen_run(job.run.run_id)
    tracker = store.create_run(
        experiment, job.plan.name, _tags(job.plan, preset, commit), parent_id
    )
    try:
        tracker.log_text(job.plan.spec.source, "spec.py")
        tracker.log_dict(to_dict(job.plan.cfg), "config.json")
    except BaseException:
        store.end_run(tracker.run_id, "FAILED")
        raise
    return tracker


def _run_one(
    job: _Job,
    tracker: MlflowTracker,
    store: TrackingStore,
    data: DataBundle,
    progress: bool | None,
    ctx: Distributed | None = None,
) -> RunOutcome:
    plan = job.plan
    start = time.perf_counter()
    resumed_from: int | None = None

    def outcome(status: str, result: RunResult | None, error: str | None) -> RunOutcome:
        minutes = (time.perf_counter() - start) / 60
        return RunOutcome(plan, tracker.run_id, status, result, error, minutes, resumed_from)

    try:
        with tempfile.TemporaryDirectory(prefix="digitexp-run-") as tmp:
            workdir = Path(tmp)
            state = None
            if job.run is not None:
                state = _restore(store, tracker, job.run, workdir)
                resumed_from = int(state["epoch"]) if state else 0
                log.info("resume %s (%s) after epoch %d", plan.name, tracker.run_id, resumed_from)
            else:
                log.info("run %s (%s)", plan.name, tracker.run_id)
            with Heartbeat(store, tracker.run_id), store.system_metrics(tracker.run_id):
                result = fit(
                    plan.cfg,
                    tracker,
                    data=data,
                    workdir=workdir,
                    progress=progress,
                    resume=state,
                    ctx=ctx,
                )
    except TrainingError as exc:
        try:
            tracker.set_tags({TAG_ERROR: str(exc)[:5000]})
        finally:
            store.end_run(tracker.run_id, "FAILED")
        log.error("%s failed: %s", plan.name, exc)
        return outcome("FAILED", None, str(exc))
    except KeyboardInterrupt:
        try:
            tracker.set_tags({TAG_ERROR: "interrupted (Ctrl-C or SIGTERM)"})
        finally:
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


# --------------------------------------------------------------------------- resume


def _restore(
    store: TrackingStore, tracker: MlflowTracker, run: RunRecord, workdir: Path
) -> dict[str, Any] | None:
    """Download the run's checkpoints into ``workdir``; log the epochs the last checkpoint
    holds but the store lacks (a kill between the two); the checkpoint state, or None when
    the run never finished an epoch."""
    names = store.list_artifacts(run.run_id, "checkpoints")
    for name in ("best.pt", "last.pt"):
        if f"checkpoints/{name}" in names:
            store.copy_artifact(run.run_id, f"checkpoints/{name}", workdir / "checkpoints" / name)
    last = workdir / "checkpoints" / "last.pt"
    if not last.exists():
        return None
    state = load_checkpoint(last)
    if int(state["early_stop"]["best_epoch"]) == int(state["epoch"]):
        # last.pt is also the best epoch; a best.pt uploaded later (the epoch after, killed
        # before its last.pt) must not win over it
        shutil.copyfile(last, workdir / "checkpoints" / "best.pt")
    logged = {
        step
        for step, _ in store.metric_histories([run.run_id], ["train_loss"])[run.run_id].get(
            "train_loss", []
        )
    }
    history: dict[str, list[float]] = state.get("history", {})
    for epoch in range(1, int(state["epoch"]) + 1):
        if epoch not in logged:
            tracker.log_metrics({k: v[epoch - 1] for k, v in history.items()}, step=epoch)
    return state


def _run_config(store: TrackingStore, run: RunRecord, workdir: Path) -> ExperimentConfig:
    """The config a run was started with (its config.json artifact)."""
    try:
        path = store.download_artifact(run.run_id, "config.json", workdir / run.run_id)
    except TrackingError:
        raise TrackingError(
            f"run {run.run_id} ({run.name}) has no config.json: it cannot be resumed"
        ) from None
    import json

    try:
        return from_dict(json.loads(path.read_text()))
    except (ValueError, ConfigError) as exc:
        raise TrackingError(f"run {run.run_id}: config.json does not load ({exc})") from None


def _check_resumable(run: RunRecord, spec: Spec) -> None:
    if run.tag(TAG_KIND, "train") != "train" or run.parent_id is None:
        raise TrackingError(f"run {run.run_id} is not a training run of `digitexp run`")
    if run.tag(TAG_SPEC) != spec.name:
        raise TrackingError(
            f"run {run.run_id} belongs to spec {run.tag(TAG_SPEC)!r}, not {spec.name!r}"
        )
    state = run_state(run)
    if state.name == "finished":
        raise TrackingError(f"run {run.run_id} ({run.name}) already finished: nothing to resume")
    if state.name == "running":
        raise TrackingError(
            f"run {run.run_id} ({run.name}) is still running (owner {run.tag('digitexp.owner')});"
            " stop it first"
        )


def resume(
    spec: Spec,
    store: TrackingStore,
    *,
    experiment: str,
    run_ids: Sequence[str] | None,
    plans: Sequence[RunPlan],
    preset: str | None = None,
    progress: bool | None = None,
) -> list[RunOutcome]:
    """Continue unfinished runs in their MLflow runs.

    With ``run_ids``: those runs. Without: every unfinished run of the spec's latest
    invocation, and the planned variant x seed runs it never started.
    """
    commit = git_commit(spec.path.resolve().parent)
    with tempfile.TemporaryDirectory(prefix="digitexp-resume-") as tmp:
        workdir = Path(tmp)
        if run_ids:
            runs = [store.get_run(rid) for rid in run_ids]
            for run in runs:
                _check_resumable(run, spec)
            groups: dict[str, list[_Job]] = {}
            for run in runs:
                job = _Job(_plan_of(spec, run, _run_config(store, run, workdir)), run)
                groups.setdefault(run.parent_id or "", []).append(job)
        else:
            parent, jobs = _unfinished_invocation(spec, store, experiment, plans, workdir)
            groups = {parent: jobs}
    outcomes: list[RunOutcome] = []
    bundles = preflight([job.plan.cfg for jobs in groups.values() for job in jobs])
    for parent_id, jobs in groups.items():
        store.reopen_run(parent_id)
        outcomes += _under_parent(
            jobs, store, experiment, parent_id, bundles, preset, commit, progress
        )
    return outcomes


def _plan_of(spec: Spec, run: RunRecord, cfg: ExperimentConfig) -> RunPlan:
    return RunPlan(spec, run.tag(TAG_VARIANT), int(run.tag(TAG_SEED, "0")), cfg)


def _unfinished_invocation(
    spec: Spec,
    store: TrackingStore,
    experiment: str,
    plans: Sequence[RunPlan],
    workdir: Path,
) -> tuple[str, list[_Job]]:
    runs = store.runs([experiment])
    parents = [
        r
        for r in runs
        if r.tag(TAG_KIND) == "invocation"
        and r.tag(TAG_SPEC) == spec.name
        and not r.tag("digitexp.queue")  # queue workers resume through the queue
    ]
    if not parents:
        raise TrackingError(
            f"no earlier `run` of {spec.name} in experiment {experiment!r} to resume"
        )
    parent = max(parents, key=lambda r: (r.start_time, r.run_id))
    children = [r for r in runs if r.parent_id == parent.run_id]
    jobs: list[_Job] = []
    planned = {(p.variant, str(p.seed)): p for p in plans}
    for run in sorted(children, key=lambda r: r.start_time):
        if run_state(run).name == "finished":
            continue
        _check_resumable(run, spec)
        try:
            cfg = _run_config(store, run, workdir)
        except TrackingError:  # killed before its config was logged: it never trained
            plan = planned.get((run.tag(TAG_VARIANT), run.tag(TAG_SEED)))
            if plan is None:
                raise
            cfg = plan.cfg
        jobs.append(_Job(_plan_of(spec, run, cfg), run))
    started = {(r.tag(TAG_VARIANT), r.tag(TAG_SEED)) for r in children}
    jobs += [_Job(p, None) for p in plans if (p.variant, str(p.seed)) not in started]
    if not jobs:
        raise TrackingError(
            f"invocation {parent.run_id} of {spec.name} has no unfinished run: nothing to resume"
        )
    return parent.run_id, jobs
