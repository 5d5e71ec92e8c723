"""One array task: train one variant x seed under the submission's parent run, resume it when
Slurm runs the task again, and end the parent when the last task is done.

A task finds its variant x seed in the manifest by its array task id. If the parent already
has a child run for it (the task was requeued, or resubmitted by hand), that run is resumed
from its last checkpoint (:func:`digitexp.launch.jobs.restore_checkpoints` through
:func:`~digitexp.launch.jobs.run_one`); a finished one is left alone. On a preemption warning
(:class:`~digitexp.engine.Preempted`) the run is already marked KILLED and tagged preempted;
the task then asks Slurm to requeue it. Under torchrun (``--gpus-per-task`` > 1) rank 0 does
all of this and the other ranks follow it.

The parent run is ended by whoever finds every task done (:func:`settle_parent`): every
variant x seed has a child run that is FINISHED, FAILED, or KILLED / RUNNING with its Slurm
task gone. Each task asks after ending its own run; MLflow orders the writes, so of two tasks
ending at once at least one sees the other's run ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from digitexp.config import config_hash, parse_sets
from digitexp.engine import Preempted, fit
from digitexp.engine.distributed import Distributed
from digitexp.errors import ConfigError, DigitexpError, TrackingError
from digitexp.launch.jobs import Job, end_with_error, open_child, run_one
from digitexp.launch.plans import RunOutcome, RunPlan, plan_runs, preflight
from digitexp.launch.slurm import scheduler
from digitexp.launch.slurm.manifest import Manifest, TaskEntry
from digitexp.launch.story import conclude_invocation
from digitexp.spec import load_spec
from digitexp.tracking import (
    MlflowTracker,
    NullTracker,
    RunRecord,
    RunStatus,
    TrackingStore,
    git_commit,
    run_state,
)
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.slurm")


@dataclass(frozen=True)
class TaskResult:
    """What one task did: its run's outcome (None on a DDP rank > 0 or when the run had
    already finished), whether it stopped early and whether Slurm requeued it."""

    entry: TaskEntry
    run_id: str | None
    outcome: RunOutcome | None
    preempted: bool = False
    requeued: bool = False


def task_index(task: int | None) -> int:
    """``task``, else this array task's id (SLURM_ARRAY_TASK_ID)."""
    if task is not None:
        return task
    current = scheduler.current_task()
    if current is None:
        raise ConfigError("slurm-task: not in a Slurm array task; give the task id with --task")
    return current[1]


def slurm_id(run: RunRecord) -> str | None:
    """``1234_5``: the Slurm array task that last trained ``run``."""
    job, task = run.tag(names.TAG_SLURM_JOB), run.tag(names.TAG_SLURM_TASK)
    return f"{job}_{task}" if job and task else None


def children(store: TrackingStore, manifest: Manifest) -> dict[int, RunRecord]:
    """The parent's child runs by task id (the latest when a task has several)."""
    by_job = {(t.variant, str(t.seed)): t.task for t in manifest.tasks}
    found: dict[int, RunRecord] = {}
    only = f"tags.`{names.PARENT_TAG}` = '{manifest.parent_run_id}'"
    for run in store.runs([manifest.experiment], only):  # newest first
        if run.parent_id != manifest.parent_run_id:
            continue
        task = by_job.get((run.tag(names.TAG_VARIANT), run.tag(names.TAG_SEED)))
        if task is not None and task not in found:
            found[task] = run
    return found


def load_plan(manifest: Manifest, entry: TaskEntry) -> RunPlan:
    """The task's plan, resolved as at submission (the spec file must not have changed)."""
    spec = load_spec(manifest.spec_path, preset=manifest.preset, sets=parse_sets(manifest.sets))
    (plan,) = plan_runs(spec, variants=[entry.variant], seeds=[entry.seed])
    if config_hash(plan.cfg) != entry.config_hash:
        raise ConfigError(
            f"{manifest.spec_path}: {entry.name} resolves to another config than at "
            f"submission (config hash {config_hash(plan.cfg)}, was {entry.config_hash}); "
            "the spec or a file it reads changed: submit again"
        )
    return plan


def run_task(
    manifest: Manifest, task: int | None = None, *, ctx: Distributed | None = None
) -> TaskResult:
    """Train (or resume) the run of array task ``task`` (default: this Slurm array task) of
    the job ``manifest`` describes. Relative paths (the spec, the data, a sqlite store) are
    read from the working folder: run it in ``manifest.workdir``, as the job script does."""
    entry = manifest.task(task_index(task))
    if ctx is not None and not ctx.is_main:
        return _follow_rank0(manifest, entry, ctx)
    store = TrackingStore(manifest.tracking_uri_for_task())
    me = scheduler.current_task()
    try:
        plan = load_plan(manifest, entry)
        bundle = preflight([plan.cfg])[plan.cfg.data]
        previous = children(store, manifest).get(entry.task)
        if previous is not None:
            _check_not_trained_elsewhere(previous, me)
    except DigitexpError as exc:
        _fail_parent(store, manifest, f"task {entry.task} ({entry.name}) did not start: {exc}")
        _broadcast(ctx, False)
        raise
    if previous is not None and previous.status == "FINISHED":
        log.info("%s already finished in run %s: nothing to do", entry.name, previous.run_id)
        _broadcast(ctx, False)
        settle_parent(store, manifest)
        return TaskResult(entry, previous.run_id, None)
    _broadcast(ctx, True)
    parent = store.get_run(manifest.parent_run_id)
    if parent.status != "RUNNING":  # ended while this task waited to run again
        store.reopen_run(parent.run_id)
    commit = git_commit(plan.spec.path.resolve().parent)
    job = Job(plan, previous)
    tracker = open_child(job, store, manifest.experiment, manifest.parent_run_id, commit, bundle)
    if me is not None:
        tracker.set_tags({names.TAG_SLURM_JOB: me[0], names.TAG_SLURM_TASK: str(me[1])})
    if scheduler.restarts():
        log.info("Slurm restart %d of %s", scheduler.restarts(), entry.name)
    requeued = False
    try:
        outcome = run_one(job, tracker, store, bundle, None, ctx)
    except Preempted as exc:
        requeued = scheduler.requeue_self()
        if not requeued:
            log.info("%s: not requeued; resume it with `run --resume` or sbatch", entry.name)
            return TaskResult(entry, tracker.run_id, None, preempted=True)
        log.info("%s: requeued; it resumes after its last epoch", entry.name)
        if me is not None:  # what `runs` and the MLflow UI show until the task is back
            reason = f"preempted, requeued as {me[0]}_{me[1]}: resumes after epoch {exc.epoch}"
            try:
                tracker.set_tags({names.TAG_ERROR: reason})
            except DigitexpError as error:  # the run is resumable all the same
                log.warning("could not tag %s as requeued: %s", tracker.run_id, error)
        return TaskResult(entry, tracker.run_id, None, preempted=True, requeued=True)
    finally:
        if not requeued:
            settle_parent(store, manifest)
    return TaskResult(entry, tracker.run_id, outcome)


def _broadcast(ctx: Distributed | None, train: bool) -> None:
    """Tell the other ranks whether rank 0 trains (they wait for this before training)."""
    if ctx is not None:
        ctx.broadcast(train)


def _follow_rank0(manifest: Manifest, entry: TaskEntry, ctx: Distributed) -> TaskResult:
    """A DDP rank other than 0: the same plan, logging nothing; the resume state comes from
    rank 0 inside :func:`fit`."""
    plan = load_plan(manifest, entry)
    bundle = preflight([plan.cfg])[plan.cfg.data]
    if ctx.broadcast(None):
        try:
            fit(plan.cfg, NullTracker(), data=bundle, progress=False, ctx=ctx)
        except Preempted:
            return TaskResult(entry, None, None, preempted=True)
    return TaskResult(entry, None, None)


def _check_not_trained_elsewhere(run: RunRecord, me: tuple[str, int] | None) -> None:
    """A live run is only taken over by the same Slurm task (Slurm runs one copy of it)."""
    if run.status != "RUNNING" or run_state(run).name != "running":
        return
    if me is not None and slurm_id(run) == f"{me[0]}_{me[1]}":
        return  # this task's earlier attempt, killed outright and requeued by Slurm
    raise TrackingError(
        f"run {run.run_id} ({run.name}) is being trained by {run.tag(names.TAG_OWNER)}; "
        "stop it first"
    )


def _fail_parent(store: TrackingStore, manifest: Manifest, reason: str) -> None:
    try:
        end_with_error(store, MlflowTracker(store, manifest.parent_run_id), "FAILED", reason)
    except DigitexpError as exc:  # the store itself may be what failed
        log.warning("could not mark the parent run failed: %s", exc)


def settle_parent(store: TrackingStore, manifest: Manifest, *, final: bool = False) -> str | None:
    """End the parent run if every task is done; its status, or None while some task may
    still run. ``final``: Slurm runs none of the array's tasks any more, so a task without a
    run never started (FAILED)."""
    try:
        return _settle(store, manifest, final)
    except DigitexpError as exc:  # Slurm or the store did not answer: the next one tries
        log.warning("could not settle the parent run %s: %s", manifest.parent_run_id, exc)
        return None


def _settle(store: TrackingStore, manifest: Manifest, final: bool) -> str | None:
    me = scheduler.current_task()
    mine = f"{me[0]}_{me[1]}" if me else None
    have_squeue = _has_squeue()  # not where a task is run by hand, outside any cluster
    runs = children(store, manifest)
    statuses: list[str] = []
    missing: list[TaskEntry] = []
    for entry in manifest.tasks:
        run = runs.get(entry.task)
        if run is None:
            if not final:
                return None  # not started yet (or never will: the follower decides)
            missing.append(entry)
            continue
        if run.status in ("FINISHED", "FAILED"):
            statuses.append(run.status)
            continue
        sid = slurm_id(run)
        if sid is not None and sid != mine and have_squeue and scheduler.task_alive(sid):
            return None  # running, or KILLED and requeued: it comes back
        if run.status == "RUNNING":
            if sid is None and run_state(run).name == "running":
                return None  # trained outside Slurm (run --resume), and alive
            if sid == mine:
                return None  # this very task still trains it
            end_with_error(
                store,
                MlflowTracker(store, run.run_id),
                "KILLED",
                f"its Slurm task {sid} ended without ending the run (killed outright: time "
                "limit, memory, node failure?); resume it with `run --resume`",
            )
        statuses.append("KILLED")
    status: RunStatus
    if not missing and all(s == "FINISHED" for s in statuses):
        status = "FINISHED"
    elif missing or "FAILED" in statuses:
        status = "FAILED"
    else:
        status = "KILLED"
    conclude_invocation(store, manifest.parent_run_id)
    parent = store.get_run(manifest.parent_run_id)
    if missing and not parent.tag(names.TAG_ERROR):  # else a task already said why
        tasks = ", ".join(f"{e.task} ({e.name})" for e in missing)
        reason = f"task(s) {tasks} never started a run; see the task logs"
        end_with_error(store, MlflowTracker(store, parent.run_id), status, reason)
    else:
        store.end_run(parent.run_id, status)
    log.info("parent run %s: %s", manifest.parent_run_id, status)
    return status


def _has_squeue() -> bool:
    try:
        scheduler.command("squeue")
    except DigitexpError:
        return False
    return True
