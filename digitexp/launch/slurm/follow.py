"""``run --launcher slurm --wait``: follow a submitted array until Slurm runs none of its tasks
any more (``squeue``, polled every ``DIGITEXP_SLURM_POLL_S`` seconds, 10 by default), then end
the parent run if no task did, and read every task's outcome back from MLflow."""

from __future__ import annotations

import logging
import os
import time

from digitexp.common.progress import Progress
from digitexp.engine import RunResult
from digitexp.launch.plans import RunOutcome, RunPlan
from digitexp.launch.slurm import scheduler
from digitexp.launch.slurm.manifest import Manifest
from digitexp.launch.slurm.scheduler import SlurmError
from digitexp.launch.slurm.task import children, settle_parent
from digitexp.metrics import METRIC_KEYS
from digitexp.spec import Spec
from digitexp.tracking import RunRecord, TrackingStore
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.slurm")


PATIENCE = 10  # squeue failures in a row before the follower gives up


def poll_seconds() -> float:
    return max(0.2, float(os.environ.get("DIGITEXP_SLURM_POLL_S", "10")))


def follow(
    manifest: Manifest,
    spec: Spec,
    store: TrackingStore,
    *,
    progress: bool | None = None,
) -> list[RunOutcome]:
    """Wait for every task of ``manifest``'s job, logging each change of state; then the
    outcome of each variant x seed as its MLflow run says (in task order)."""
    job = manifest.job_id
    if job is None:
        raise ValueError("follow() needs a submitted manifest")
    seen: dict[str, str] = {}
    total = len(manifest.tasks)
    done = 0
    failures = 0
    with Progress(total, f"Slurm job {job}", enabled=progress, unit="task") as bar:
        while True:
            try:
                states = scheduler.task_states(job)
                failures = 0
            except SlurmError as exc:  # a busy controller times out now and then
                failures += 1
                if failures >= PATIENCE:
                    raise
                log.warning("%s (trying again)", exc)
                time.sleep(poll_seconds())
                continue
            for task, state in sorted(states.items()):
                if seen.get(task) != state:
                    log.info("%s %s", task, state)
                    seen[task] = state
            alive = scheduler.live(states)
            finished = total - len(alive)
            if finished > done:
                bar.update(finished - done, running=sum(s == "RUNNING" for s in alive.values()))
                done = finished
            if not alive:
                break
            time.sleep(poll_seconds())
    settle_parent(store, manifest, final=True)
    return outcomes(manifest, spec, store)


def outcomes(manifest: Manifest, spec: Spec, store: TrackingStore) -> list[RunOutcome]:
    """Each task's outcome as MLflow holds it (a task without a run: FAILED, no run id)."""
    runs = children(store, manifest)
    out = []
    for entry in manifest.tasks:
        plan = RunPlan(spec, entry.variant, entry.seed, spec.config(entry.variant, seed=entry.seed))
        run = runs.get(entry.task)
        if run is None:
            out.append(RunOutcome(plan, "", "FAILED", None, "the task never started its run", 0))
            continue
        minutes = ((run.end_time or run.start_time) - run.start_time) / 60000
        error = run.tag(names.TAG_ERROR) or None if run.status != "FINISHED" else None
        out.append(RunOutcome(plan, run.run_id, run.status, result_of(run), error, minutes))
    return out


def result_of(run: RunRecord) -> RunResult | None:
    """A finished run's results, from its summary metrics."""
    if run.status != "FINISHED" or names.BEST_VAL_MAP not in run.metrics:
        return None
    val = {"map": run.metrics[names.BEST_VAL_MAP]}
    for key in METRIC_KEYS:
        if names.at_best_metric(key) in run.metrics:
            val[key] = run.metrics[names.at_best_metric(key)]
    test_prefix = names.test_metric("")
    test = {k[len(test_prefix) :]: v for k, v in run.metrics.items() if k.startswith(test_prefix)}
    return RunResult(
        best_val_map=run.metrics[names.BEST_VAL_MAP],
        best_epoch=int(run.metrics.get(names.BEST_EPOCH, 0)),
        epochs=int(run.tag(names.TAG_EPOCH, "0") or 0),
        final_train_loss=run.metrics.get(names.FINAL_TRAIN_LOSS, float("nan")),
        val=val,
        test=test or None,
        seconds=((run.end_time or run.start_time) - run.start_time) / 1000,
        stopped_early=False,
    )
