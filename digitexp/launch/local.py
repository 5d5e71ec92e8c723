"""Launch on this machine: a spec's variants x seeds one after another, each in its own MLflow
child run under one parent run; resume unfinished runs in place.

Everything that can be checked before training is checked before any run is created: the
spec, every override, the data (validated once per data config), the device and the
availability of pretrained weights. So bad input never leaves a run behind. Under torchrun,
rank 0 logs and the other ranks follow (:func:`follow`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from digitexp.config import DataConfig, ExperimentConfig, from_dict
from digitexp.data import DataBundle
from digitexp.engine import fit
from digitexp.engine.distributed import Distributed
from digitexp.errors import ConfigError, TrackingError, TrainingError
from digitexp.launch.jobs import Job, open_child, open_invocation, run_one
from digitexp.launch.plans import RunOutcome, RunPlan, preflight
from digitexp.launch.story import conclude_invocation
from digitexp.spec import Spec
from digitexp.tracking import (
    NullTracker,
    RunRecord,
    RunStatus,
    TrackingStore,
    git_commit,
    run_state,
)
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.launch")


def execute(
    plans: Sequence[RunPlan],
    store: TrackingStore,
    *,
    experiment: str,
    progress: bool | None = None,
    ctx: Distributed | None = None,
) -> list[RunOutcome]:
    """Train every plan under one new parent run (on rank 0 of a DDP job, the one that logs).

    A run whose loss diverges is marked FAILED and the others go on; Ctrl-C marks the current
    run and the parent KILLED and re-raises; any other error marks them FAILED and re-raises.
    """
    if not plans:
        return []
    bundles = preflight([p.cfg for p in plans])
    spec = plans[0].spec
    commit = git_commit(spec.path.resolve().parent)
    parent = open_invocation(store, experiment, plans, commit)
    jobs = [Job(plan) for plan in plans]
    return under_parent(jobs, store, experiment, parent.run_id, bundles, commit, progress, ctx)


def follow(plans: Sequence[RunPlan], ctx: Distributed) -> None:
    """A DDP rank other than 0: train the same plans in the same order, logging nothing."""
    bundles = preflight([p.cfg for p in plans])
    for plan in plans:
        try:
            fit(plan.cfg, NullTracker(), data=bundles[plan.cfg.data], progress=False, ctx=ctx)
        except TrainingError:
            continue  # rank 0 saw the same (reduced) loss: it marks the run and goes on


def under_parent(
    jobs: Sequence[Job],
    store: TrackingStore,
    experiment: str,
    parent_id: str,
    bundles: Mapping[DataConfig, DataBundle],
    commit: str,
    progress: bool | None,
    ctx: Distributed | None = None,
) -> list[RunOutcome]:
    """Train the jobs as children of ``parent_id`` and end the parent with their outcome.

    Every exit path ends the parent: FINISHED when all its children finished, FAILED when
    one did not or an error escaped, KILLED on Ctrl-C."""
    outcomes: list[RunOutcome] = []
    status: RunStatus = "FAILED"
    try:
        for job in jobs:
            data = bundles[job.plan.cfg.data]
            tracker = open_child(job, store, experiment, parent_id, commit, data)
            outcomes.append(run_one(job, tracker, store, data, progress, ctx))
        parent_experiment = store.get_run(parent_id).experiment
        siblings = [r for r in store.runs([parent_experiment]) if r.parent_id == parent_id]
        status = "FINISHED" if all(r.status == "FINISHED" for r in siblings) else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            conclude_invocation(store, parent_id)
        finally:
            store.end_run(parent_id, status)
    return outcomes


# --------------------------------------------------------------------------- resume


def resume(
    spec: Spec,
    store: TrackingStore,
    *,
    experiment: str,
    run_ids: Sequence[str] | None,
    plans: Sequence[RunPlan],
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
                check_resumable(run, spec)
            groups: dict[str, list[Job]] = {}
            for run in runs:
                job = Job(plan_of(spec, run, run_config(store, run, workdir)), run)
                groups.setdefault(run.parent_id or "", []).append(job)
        else:
            parent, jobs = _unfinished_invocation(spec, store, experiment, plans, workdir)
            groups = {parent: jobs}
    outcomes: list[RunOutcome] = []
    bundles = preflight([job.plan.cfg for jobs in groups.values() for job in jobs])
    for parent_id, jobs in groups.items():
        store.reopen_run(parent_id)
        outcomes += under_parent(jobs, store, experiment, parent_id, bundles, commit, progress)
    return outcomes


def run_config(store: TrackingStore, run: RunRecord, workdir: Path) -> ExperimentConfig:
    """The config a run was started with (its config.json artifact)."""
    try:
        path = store.download_artifact(run.run_id, names.CONFIG_JSON, workdir / run.run_id)
    except TrackingError:
        raise TrackingError(
            f"run {run.run_id} ({run.name}) has no {names.CONFIG_JSON}: it cannot be resumed"
        ) from None
    try:
        return from_dict(json.loads(path.read_text()))
    except (ValueError, ConfigError) as exc:
        raise TrackingError(
            f"run {run.run_id}: {names.CONFIG_JSON} does not load ({exc})"
        ) from None


def check_resumable(run: RunRecord, spec: Spec) -> None:
    """TrackingError unless ``run`` is an unfinished, dead training run of ``spec``."""
    if run.tag(names.TAG_KIND, names.KIND_TRAIN) != names.KIND_TRAIN or run.parent_id is None:
        raise TrackingError(f"run {run.run_id} is not a training run of `digitexp run`")
    if run.tag(names.TAG_SPEC) != spec.name:
        raise TrackingError(
            f"run {run.run_id} belongs to spec {run.tag(names.TAG_SPEC)!r}, not {spec.name!r}"
        )
    state = run_state(run)
    if state.name == "finished":
        raise TrackingError(f"run {run.run_id} ({run.name}) already finished: nothing to resume")
    if state.name == "running":
        raise TrackingError(
            f"run {run.run_id} ({run.name}) is still running (owner "
            f"{run.tag(names.TAG_OWNER)}); stop it first"
        )


def plan_of(spec: Spec, run: RunRecord, cfg: ExperimentConfig) -> RunPlan:
    """The plan an existing run was started from."""
    return RunPlan(spec, run.tag(names.TAG_VARIANT), int(run.tag(names.TAG_SEED, "0")), cfg)


def _unfinished_invocation(
    spec: Spec,
    store: TrackingStore,
    experiment: str,
    plans: Sequence[RunPlan],
    workdir: Path,
) -> tuple[str, list[Job]]:
    runs = store.runs([experiment])
    parents = [
        r
        for r in runs
        if r.tag(names.TAG_KIND) == names.KIND_INVOCATION
        and r.tag(names.TAG_SPEC) == spec.name
        and not r.tag(names.TAG_QUEUE)  # queue workers resume through the queue
    ]
    if not parents:
        raise TrackingError(
            f"no earlier `run` of {spec.name} in experiment {experiment!r} to resume"
        )
    parent = max(parents, key=lambda r: (r.start_time, r.run_id))
    children = [r for r in runs if r.parent_id == parent.run_id]
    jobs: list[Job] = []
    planned = {(p.variant, str(p.seed)): p for p in plans}
    for run in sorted(children, key=lambda r: r.start_time):
        if run_state(run).name == "finished":
            continue
        check_resumable(run, spec)
        try:
            cfg = run_config(store, run, workdir)
        except TrackingError:  # killed before its config was logged: it never trained
            plan = planned.get((run.tag(names.TAG_VARIANT), run.tag(names.TAG_SEED)))
            if plan is None:
                raise
            cfg = plan.cfg
        jobs.append(Job(plan_of(spec, run, cfg), run))
    started = {(r.tag(names.TAG_VARIANT), r.tag(names.TAG_SEED)) for r in children}
    jobs += [Job(p) for p in plans if (p.variant, str(p.seed)) not in started]
    if not jobs:
        raise TrackingError(
            f"invocation {parent.run_id} of {spec.name} has no unfinished run: nothing to resume"
        )
    return parent.run_id, jobs
