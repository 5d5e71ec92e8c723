"""One job, the unit every launcher hands to the trainer: a plan to train in a new MLflow child
run, or the continuation of an existing run from its last checkpoint.

Launchers (:mod:`.local`, :mod:`.queue`) decide *which* jobs run *where*; this module does the
part they share: the parent's and the child's tags, opening the child run, training it under a
heartbeat, and ending it with an honest status (FINISHED, FAILED with the reason, KILLED).
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

from digitexp.common.signals import deferred_interrupts
from digitexp.config import config_hash, to_dict
from digitexp.data import DataBundle
from digitexp.data.fingerprint import fingerprint
from digitexp.engine import Preempted, RunHook, RunResult, StopRun, fit, load_checkpoint
from digitexp.engine.distributed import Distributed
from digitexp.errors import DigitexpError, TrackingError, TrainingError
from digitexp.figures.hook import RunFigures
from digitexp.insight.hook import AnalysisHook
from digitexp.launch.plans import RunOutcome, RunPlan
from digitexp.launch.story import (
    child_description,
    describe_experiment,
    finished_description,
    invocation_description,
    invocation_name,
    overrides_text,
    shared_params,
)
from digitexp.spec import Spec
from digitexp.tracking import Heartbeat, MlflowTracker, RunRecord, TrackingStore, source_tags
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.launch")


def run_hooks() -> list[RunHook]:
    """The hooks every launched run gets (:mod:`digitexp.engine.hooks`)."""
    return [RunFigures(), AnalysisHook()]


@dataclass(frozen=True)
class Job:
    """A plan to train: new (``run`` is None) or the continuation of an existing run."""

    plan: RunPlan
    run: RunRecord | None = None
    description: str | None = None  # the run's (Markdown); default: what its variant changes


def invocation_tags(spec: Spec, commit: str, **extra: str) -> dict[str, str]:
    """The tags of a parent run (one ``run`` command, or one queue worker)."""
    return {
        names.TAG_SPEC: spec.name,
        names.TAG_SPEC_PATH: str(spec.path),
        names.TAG_PRESET: spec.preset or "none",
        names.TAG_OVERRIDES: overrides_text(spec.sets),
        names.TAG_GIT: commit,
        names.TAG_KIND: names.KIND_INVOCATION,
        **source_tags(str(spec.path), commit),
        **extra,
    }


def open_invocation(
    store: TrackingStore,
    experiment: str,
    plans: Sequence[RunPlan],
    commit: str,
    role: str = "",
    **extra_tags: str,
) -> MlflowTracker:
    """A new parent run for ``plans`` (one ``run`` command, or one queue worker): named and
    described by the spec's question, with the settings its variants share as params and
    ``spec.py``; the experiment's description and view are brought up to date."""
    spec = plans[0].spec
    name = invocation_name(spec, role)
    parent = store.create_run(
        experiment,
        name,
        invocation_tags(spec, commit, **extra_tags),
        description=invocation_description(spec, plans),
    )
    try:
        parent.log_params(shared_params(plans))
        parent.log_text(spec.source, names.SPEC_PY)
        describe_experiment(store, experiment, spec, name, plans)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while it is set up: stopped, not broken
        store.end_run(parent.run_id, "KILLED")
        raise
    except BaseException:
        store.end_run(parent.run_id, "FAILED")
        raise
    return parent


def run_tags(plan: RunPlan, commit: str) -> dict[str, str]:
    """The tags of a child run (one variant x seed)."""
    return {
        names.TAG_SPEC: plan.spec.name,
        names.TAG_SPEC_PATH: str(plan.spec.path),
        names.TAG_VARIANT: plan.variant,
        names.TAG_SEED: str(plan.seed),
        names.TAG_PRESET: plan.spec.preset or "none",
        names.TAG_OVERRIDES: overrides_text(plan.spec.sets),
        names.TAG_GIT: commit,
        names.TAG_CONFIG_HASH: config_hash(plan.cfg),
        names.TAG_DATA: plan.cfg.data.root,
        names.TAG_KIND: names.KIND_TRAIN,
        **source_tags(str(plan.spec.path), commit),
    }


def open_child(
    job: Job,
    store: TrackingStore,
    experiment: str,
    parent_id: str,
    commit: str,
    data: DataBundle,
    *,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> MlflowTracker:
    """The job's run, new or reopened; a new one gets spec.py, config.json and its dataset
    input at once (so even a run killed while it sets up can be resumed). ``name`` and ``tags``
    (added to, or replacing, :func:`run_tags`) are for launchers whose runs are not variant x
    seed runs (they describe them with ``job.description``)."""
    if job.run is not None:
        return store.reopen_run(job.run.run_id)
    plan = job.plan
    tracker = store.create_run(
        experiment,
        name or plan.name,
        {**run_tags(plan, commit), **(tags or {})},
        parent_id,
        job.description or child_description(plan),
    )
    try:
        tracker.log_text(plan.spec.source, names.SPEC_PY)
        tracker.log_dict(to_dict(plan.cfg), names.CONFIG_JSON)
        dataset = fingerprint(plan.cfg.data, data)
        tracker.log_dataset(dataset.name, dataset.digest, dataset.root, dataset.sizes)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while it is set up: stopped, not broken
        store.end_run(tracker.run_id, "KILLED")
        raise
    except BaseException:
        store.end_run(tracker.run_id, "FAILED")
        raise
    return tracker


def describe_result(
    store: TrackingStore,
    tracker: MlflowTracker,
    plan: RunPlan,
    result: RunResult,
    body: str | None = None,
) -> None:
    """A finished run's description: its results, then the figures it logged. A store that
    fails here is logged, not raised: the run trained and ends FINISHED."""
    try:
        logged = set(store.list_artifacts(tracker.run_id, names.FIGURES))
        figures = [f for f in (names.CURVES_FIGURE, names.PREDICTIONS_FIGURE) if f in logged]
        tracker.set_description(finished_description(plan, tracker.run_id, result, figures, body))
    except TrackingError as exc:
        log.warning("%s: its description was not updated: %s", plan.name, exc)


def run_one(
    job: Job,
    tracker: MlflowTracker,
    store: TrackingStore,
    data: DataBundle,
    progress: bool | None,
    ctx: Distributed | None = None,
    hooks: Sequence[RunHook] | None = None,
) -> RunOutcome:
    """Train the job in its run and end the run: FINISHED, FAILED on a non-finite loss (the
    outcome says why; other runs go on), KILLED when a hook stopped it on purpose
    (:class:`~digitexp.engine.StopRun`, e.g. a pruned trial: its tags and reason go onto the
    run, the outcome says why), KILLED on Ctrl-C/SIGTERM (re-raised), KILLED and tagged
    preempted on a stop request (Preempted, re-raised: the run resumes from its last epoch),
    FAILED with the reason on any other error (re-raised). ``hooks``: :func:`run_hooks` by
    default."""
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
                state = restore_checkpoints(store, tracker, job.run, workdir)
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
                    hooks=run_hooks() if hooks is None else hooks,
                )
    except TrainingError as exc:
        end_with_error(store, tracker, "FAILED", str(exc))
        log.error("%s failed: %s", plan.name, exc)
        return outcome("FAILED", None, str(exc))
    except StopRun as stop:
        if stop.tags:
            tracker.set_tags(stop.tags)
        end_with_error(store, tracker, "KILLED", stop.reason)
        log.info("%s stopped: %s", plan.name, stop.reason)
        return outcome("KILLED", None, stop.reason)
    except KeyboardInterrupt:
        end_with_error(store, tracker, "KILLED", "interrupted (Ctrl-C or SIGTERM)")
        raise
    except Preempted as exc:
        times = int(job.run.tag(names.TAG_PREEMPTED, "0")) + 1 if job.run is not None else 1
        try:
            tracker.set_tags({names.TAG_PREEMPTED: str(times)})
        finally:
            end_with_error(store, tracker, "KILLED", f"preempted: {exc}")
        log.info("%s stopped: %s", plan.name, exc)
        raise
    except BaseException as exc:
        message = str(exc) if isinstance(exc, DigitexpError) else f"{type(exc).__name__}: {exc}"
        end_with_error(store, tracker, "FAILED", message)
        raise
    try:
        describe_result(store, tracker, plan, result, job.description)
    finally:
        store.end_run(tracker.run_id, "FINISHED")
    return outcome("FINISHED", result, None)


def end_with_error(store: TrackingStore, tracker: MlflowTracker, status: Any, reason: str) -> None:
    """Record why the run stops, then end it with ``status`` (even if the tag cannot be set);
    Ctrl-C and SIGTERM wait until both are written."""
    with deferred_interrupts():
        try:
            tracker.set_tags({names.TAG_ERROR: reason[:5000]})
        finally:
            store.end_run(tracker.run_id, status)


def restore_checkpoints(
    store: TrackingStore, tracker: MlflowTracker, run: RunRecord, workdir: Path
) -> dict[str, Any] | None:
    """Download the run's checkpoints into ``workdir``; log the epochs the last checkpoint
    holds but the store lacks (a kill between the two); the checkpoint state, or None when
    the run never finished an epoch."""
    listed = store.list_artifacts(run.run_id, names.CHECKPOINTS)
    for artifact in (names.BEST_CHECKPOINT, names.LAST_CHECKPOINT):
        if artifact in listed:
            store.copy_artifact(run.run_id, artifact, workdir / artifact)
    last = workdir / names.LAST_CHECKPOINT
    if not last.exists():
        return None
    state = load_checkpoint(last)
    if int(state["early_stop"]["best_epoch"]) == int(state["epoch"]):
        # last.pt is also the best epoch; a best.pt uploaded later (the epoch after, killed
        # before its last.pt) must not win over it
        shutil.copyfile(last, workdir / names.BEST_CHECKPOINT)
    history = store.metric_histories([run.run_id], [names.TRAIN_LOSS])[run.run_id]
    logged = {step for step, _ in history.get(names.TRAIN_LOSS, [])}
    epochs: dict[str, list[float]] = state.get("history", {})
    for epoch in range(1, int(state["epoch"]) + 1):
        if epoch not in logged:
            tracker.log_metrics({k: v[epoch - 1] for k, v in epochs.items()}, step=epoch)
    return state
