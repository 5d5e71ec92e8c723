"""``run SPEC --queue STORAGE_URL``: a spec's variants x seeds as an Optuna work queue.

Any number of workers, on any machines, point at one Optuna RDB storage (PostgreSQL for many
machines) and one MLflow tracking server. The first worker enqueues every variant x seed once
(one WAITING trial per job); each worker claims the next waiting trial (Optuna pops it
atomically), trains that job and logs to ``MLFLOW_TRACKING_URI``. While a job trains, Optuna's
storage heartbeat marks the trial alive; a worker that dies stops beating, another worker
fails its trial as stale and Optuna's retry callback enqueues it again, and whoever claims
the retry resumes the same MLflow run from its last checkpoint. Jobs already finished are
never run again.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from digitexp.config import config_hash
from digitexp.errors import ConfigError, DigitexpError, RunNotFound, first_line
from digitexp.launch.jobs import Job, open_child, open_invocation, run_one
from digitexp.launch.plans import RunOutcome, RunPlan, preflight
from digitexp.launch.story import conclude_invocation
from digitexp.tracking import (
    RunRecord,
    RunStatus,
    TrackingStore,
    git_commit,
    mask_text,
    mask_uri,
    run_state,
)
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.queue")

JOB = "job"
MLFLOW_RUN = "mlflow_run"
ENQUEUED = "enqueued"


class QueueError(DigitexpError):
    """The queue's storage cannot be used."""


class _JobFailed(Exception):
    """A job ended without finishing (its MLflow run says why); the trial fails, no retry."""


def queue_name(plans: Sequence[RunPlan], experiment: str) -> str:
    """One queue per spec, experiment and set of resolved configs (preset and --set included)."""
    digest = hashlib.sha256()
    for plan in plans:
        digest.update(f"{plan.name}:{config_hash(plan.cfg)};".encode())
    return f"digitexp-{plans[0].spec.name}-{experiment}-{digest.hexdigest()[:10]}"


def heartbeat_storage(
    url: str, heartbeat: float, *, inherit_intermediate_values: bool = False
) -> Any:
    """An Optuna RDB storage whose running trials beat every ``heartbeat`` seconds; a trial
    silent for 3x that is failed as stale and enqueued again (up to 3 times) with its params
    and user attrs (and, with ``inherit_intermediate_values``, its reported values)."""
    import inspect

    import optuna

    storages = optuna.storages
    # Optuna 4.9 renamed the stale-trial callback; take whichever this Optuna has
    if "heartbeat_stale_trial_callback" in inspect.signature(storages.RDBStorage).parameters:
        callback = storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3, inherit_intermediate_values=inherit_intermediate_values
        )
        retry = {"heartbeat_stale_trial_callback": callback}
    else:  # Optuna < 4.9
        callback = storages.RetryFailedTrialCallback(
            max_retry=3, inherit_intermediate_values=inherit_intermediate_values
        )
        retry = {"failed_trial_callback": callback}
    # a sqlite queue (one machine) waits for its lock instead of failing a heartbeat
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=max(1, round(heartbeat)),
                grace_period=max(2, round(3 * heartbeat)),
                **retry,
            )
        except Exception as exc:  # SQLAlchemy errors for a bad URL or an unreachable server
            first = first_line(exc)
            # workers started together race to create the schema: the losers try again
            if _schema_race(first) and attempt + 1 < SCHEMA_ATTEMPTS:
                time.sleep(0.5 + attempt)
                continue
            raise QueueError(
                f"{mask_uri(url)}: cannot open the Optuna storage ({mask_text(first)})"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


SCHEMA_ATTEMPTS = 5


def _schema_race(message: str) -> bool:
    """A concurrent CREATE TABLE lost to another worker (PostgreSQL and sqlite wordings)."""
    return any(
        words in message
        for words in (
            "duplicate key value",
            "already exists",
            "UniqueViolation",
            "database is locked",
        )
    )


def _enqueue_missing(study: Any, plans: Sequence[RunPlan]) -> int:
    """Enqueue the jobs the study does not hold yet; how many."""
    held = {t.user_attrs.get(JOB) for t in study.get_trials(deepcopy=False)}
    missing = [i for i in range(len(plans)) if i not in held]
    for index in missing:
        study.enqueue_trial({}, user_attrs={JOB: index, "name": plans[index].name})
    study.set_user_attr(ENQUEUED, len(plans))
    return len(missing)


def open_queue(url: str, plans: Sequence[RunPlan], experiment: str, heartbeat: float) -> Any:
    """Create the queue (and enqueue every job once) or join it."""
    import optuna

    # ERROR: Optuna logs a failed trial (Ctrl-C included) as a WARNING with its traceback;
    # the error itself reaches the caller, which says it in one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = heartbeat_storage(url, heartbeat)
    name = queue_name(plans, experiment)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        created = False
    if created:
        log.info("queue %s: enqueued %d job(s)", name, _enqueue_missing(study, plans))
        return study
    deadline = time.monotonic() + 60
    while ENQUEUED not in study.user_attrs:  # the creator is still enqueueing
        if time.monotonic() > deadline:  # ... or died doing it: finish its work
            log.info("queue %s: enqueued %d missing job(s)", name, _enqueue_missing(study, plans))
            break
        time.sleep(0.5)
    log.info("joined queue %s", name)
    return study


@dataclass
class Worker:
    """Claims and trains jobs until the queue is empty."""

    study: Any
    plans: Sequence[RunPlan]
    store: TrackingStore
    experiment: str
    progress: bool | None
    poll: float

    def __post_init__(self) -> None:
        self.outcomes: list[RunOutcome] = []
        self.bundles = preflight([p.cfg for p in self.plans])
        self.commit = git_commit(self.plans[0].spec.path.resolve().parent)
        self.parent_id: str | None = None
        self.current: dict[str, Any] | None = None  # the job being trained (its user attrs)

    def run(self) -> list[RunOutcome]:
        import optuna
        from optuna.trial import TrialState

        status: RunStatus = "FAILED"
        try:
            while True:
                optuna.storages.fail_stale_trials(self.study)
                trials = self.study.get_trials(deepcopy=False)
                if any(t.state == TrialState.WAITING for t in trials):
                    self._one_job()
                    continue
                if not any(t.state == TrialState.RUNNING for t in trials):
                    break  # every job finished, failed for good, or was taken as a duplicate
                time.sleep(self.poll)  # others are training: one of them may die and need a retry
            status = "FINISHED" if all(o.status == "FINISHED" for o in self.outcomes) else "FAILED"
        except KeyboardInterrupt:
            status = "KILLED"
            self._requeue_current()
            raise
        finally:
            if self.parent_id:
                try:
                    conclude_invocation(self.store, self.parent_id)
                finally:
                    self.store.end_run(self.parent_id, status)
        return self.outcomes

    def _one_job(self) -> None:
        """Claim the next waiting trial and train its job."""
        try:
            self.study.optimize(self._objective, n_trials=1, catch=(_JobFailed,))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            last = self.outcomes[-1] if self.outcomes else None
            if self.current is None and last is not None and last.status == "FINISHED":
                # the job finished, but Optuna had already failed this worker's trial as stale
                # (its heartbeat stalled) and could not record the result: nothing is lost
                log.warning(
                    "%s finished, but its queue trial was taken over (%s)", last.plan.name, exc
                )
                return
            raise
        finally:
            self.current = None

    def _requeue_current(self) -> None:
        """Ctrl-C in the middle of a job: put it back, so another worker resumes its run."""
        if self.current is not None:
            try:
                self.study.enqueue_trial({}, user_attrs=self.current)
                log.info("put %s back on the queue", self.current.get("name"))
            except Exception as exc:  # the storage may be what went away
                log.warning("could not put the job back on the queue: %s", first_line(exc))

    def _parent(self) -> str:
        if self.parent_id is None:
            parent = open_invocation(
                self.store,
                self.experiment,
                self.plans,
                self.commit,
                "worker",
                **{names.TAG_QUEUE: self.study.study_name},
            )
            self.parent_id = parent.run_id
        return self.parent_id

    def _objective(self, trial: Any) -> float:
        import optuna
        from optuna.trial import TrialState

        index = trial.user_attrs.get(JOB)
        if index is None:  # the queue was empty after all: Optuna made a fresh trial
            raise optuna.TrialPruned("not a queued job")
        plan = self.plans[index]
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if any(t.user_attrs.get(JOB) == index for t in done):
            raise optuna.TrialPruned(f"{plan.name} already finished")
        previous = self._previous_run(index, trial.user_attrs.get(MLFLOW_RUN))
        if previous is not None and previous.status == "FINISHED":
            # finished in MLflow but never recorded by Optuna (its worker died in between)
            return float(previous.metrics.get(names.BEST_VAL_MAP, 0.0))
        self.current = {JOB: index, "name": plan.name}
        job, tracker = self._claim(plan, previous)
        self.current[MLFLOW_RUN] = tracker.run_id
        try:
            trial.set_user_attr(MLFLOW_RUN, tracker.run_id)
            trial.set_user_attr("worker", self.parent_id)
        except BaseException:
            self.store.end_run(tracker.run_id, "FAILED")
            raise
        outcome = run_one(job, tracker, self.store, self.bundles[plan.cfg.data], self.progress)
        self.outcomes.append(outcome)
        self.current = None
        if outcome.status != "FINISHED" or outcome.result is None:
            raise _JobFailed(outcome.error or outcome.status)
        return outcome.result.best_val_map

    def _previous_run(self, index: int, run_id: str | None) -> RunRecord | None:
        """The MLflow run an earlier attempt of job ``index`` started, if there is one."""
        plan = self.plans[index]
        if not run_id:
            return None
        try:
            run = self.store.get_run(run_id)
        except RunNotFound:
            return None  # another store, or deleted: start afresh
        if run_state(run).name == "running":
            # Optuna gave up on the worker, but the run still beats: its worker may only have
            # stalled, or died so recently that MLflow does not call the run stale yet. Look
            # again later instead of training it twice.
            import optuna

            time.sleep(self.poll)
            self.study.enqueue_trial(
                {}, user_attrs={JOB: index, "name": plan.name, MLFLOW_RUN: run_id}
            )
            raise optuna.TrialPruned(
                f"{plan.name} is still being trained ({run.tag(names.TAG_OWNER)})"
            )
        return run

    def _claim(self, plan: RunPlan, previous: RunRecord | None) -> tuple[Job, Any]:
        """A retried job continues its MLflow run; a new one gets a new run."""
        parent = self._parent()
        if previous is not None:
            log.info("retrying %s: resuming run %s", plan.name, previous.run_id)
            self._close_dead_parent(previous)
            job = Job(plan, previous)
        else:
            job = Job(plan, None)
        data = self.bundles[plan.cfg.data]
        return job, open_child(job, self.store, self.experiment, parent, self.commit, data)

    def _close_dead_parent(self, run: RunRecord) -> None:
        """The dead worker's invocation run: Optuna's heartbeat says its process is gone."""
        if run.parent_id and run.parent_id != self.parent_id:
            parent = self.store.get_run(run.parent_id)
            if parent.status == "RUNNING":
                self.store.end_run(run.parent_id, "KILLED")


def work(
    url: str,
    plans: Sequence[RunPlan],
    store: TrackingStore,
    *,
    experiment: str,
    heartbeat: float = 60.0,
    poll: float = 5.0,
    progress: bool | None = None,
) -> list[RunOutcome]:
    """Join (or create) the queue and train jobs until none is left."""
    if not heartbeat > 0:
        raise ConfigError(f"--heartbeat must be > 0 seconds, got {heartbeat}")
    study = open_queue(url, plans, experiment, heartbeat)
    worker = Worker(study, plans, store, experiment, progress, max(0.2, poll))
    return worker.run()
