"""One MLflow tracking store (embedded sqlite or a server): experiments, parent and child
runs, their status, and reading runs, metric histories and artifacts back."""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digitexp.common.signals import deferred_interrupts
from digitexp.errors import RunNotFound, TrackingError, first_line
from digitexp.tracking.backends import (
    check_database,
    check_sqlite_file,
    check_uri,
    create_sqlite_store,
)
from digitexp.tracking.contract import DESCRIPTION, PARENT_TAG, TAG_HEARTBEAT, TAG_OWNER
from digitexp.tracking.histories import History, bulk_metric_histories
from digitexp.tracking.liveness import owner_tag
from digitexp.tracking.records import RunRecord, RunStatus, record_of
from digitexp.tracking.sqlite import (
    LOCK_RETRY_SECONDS,
    checkpoint_wal,
    enable_wal,
    file_lock,
    is_full,
    is_locked,
    is_store_error,
)
from digitexp.tracking.trackers import MlflowTracker, description_text
from digitexp.tracking.ui import VIEW_TAG, runs_url, ui_base_url
from digitexp.tracking.uri import (
    check_server_reachable,
    default_uri,
    mask_text,
    mask_uri,
    sqlite_path,
)

log = logging.getLogger("digitexp.tracking")


def is_duplicate_key(message: str) -> bool:
    """A write lost a race to insert the same row (sqlite, PostgreSQL, MySQL wording)."""
    return any(
        words in message
        for words in (
            "UNIQUE constraint failed",
            "duplicate key",
            "UniqueViolation",
            "Duplicate entry",
        )
    )


class TrackingStore:
    """One MLflow tracking store (embedded sqlite or a server)."""

    def __init__(self, uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri or default_uri()
        self._experiments: dict[str, str] = {}
        backend = check_uri(self.uri)
        if backend.kind == "server":
            check_server_reachable(self.uri)
        elif backend.kind == "database":
            check_database(self.uri)
        db = sqlite_path(self.uri)
        if db is None:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.call(self.client.search_experiments, max_results=1)
            return
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"{db.parent}: cannot create the store folder ({exc})") from None
        if not os.access(db.parent, os.W_OK):
            raise TrackingError(
                f"{db.parent}: the store folder is not writable (runs could not be recorded); "
                "fix its permissions or point MLFLOW_TRACKING_URI elsewhere"
            )
        check_sqlite_file(self.uri, db)
        # Several processes may open a new store at once: digitexp's own wait on a file lock
        # while one creates the schema (aside, linked into place when complete, so a foreign
        # MLflow client never races it) and turns on WAL (readers stop blocking the writer).
        with file_lock(db.with_name(db.name + ".lock")):
            self.call(create_sqlite_store, db)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.call(self.client.search_experiments, max_results=1)
            enable_wal(db)

    @property
    def masked_uri(self) -> str:
        return mask_uri(self.uri)

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the MLflow client, turning store failures into one-line TrackingErrors.

        With several processes writing to one sqlite store, a write can find the database
        locked: it is retried with exponential backoff (up to about a minute) rather than lost.
        """
        from mlflow.exceptions import MlflowException

        delay = 0.05
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                text = str(exc)
                locked = is_locked(text)
                if locked and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                if isinstance(exc, TrackingError) or not (
                    locked or isinstance(exc, MlflowException | OSError) or is_store_error(exc)
                ):
                    raise
                message = mask_text(first_line(exc))[:300]
                if is_full(text):
                    message = f"the store cannot be written, its disk looks full ({message})"
                raise TrackingError(f"{self.masked_uri}: {message}") from None

    # ----------------------------------------------------------------- writing

    def _artifact_location(self, name: str) -> str | None:
        db = sqlite_path(self.uri)
        if db is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "experiment"
        return (db.parent.resolve() / "artifacts" / slug).as_uri()

    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        if name in self._experiments:
            return self._experiments[name]
        exp = self.call(self.client.get_experiment_by_name, name)
        if exp is None:
            if not create:
                return None
            try:
                exp_id = self.call(
                    self.client.create_experiment, name, self._artifact_location(name)
                )
            except TrackingError:  # created concurrently by another process
                exp = self.call(self.client.get_experiment_by_name, name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"{self.masked_uri}: experiment {name!r} is deleted; restore it in the "
                    "MLflow UI or pick another with --experiment"
                )
            exp_id = exp.experiment_id
        self._experiments[name] = exp_id
        return exp_id

    def describe_experiment(self, name: str, markdown: str, view: str | None = None) -> None:
        """Set the experiment's description (shown above its runs table) and, with ``view``,
        the view its printed URL selects (:func:`digitexp.tracking.ui.view_state`)."""
        exp_id = self.experiment_id(name)
        self._set_experiment_tag(exp_id, DESCRIPTION, description_text(markdown))
        if view is not None:
            self._set_experiment_tag(exp_id, VIEW_TAG, view)

    def _set_experiment_tag(self, exp_id: str, key: str, value: str) -> None:
        """Set an experiment tag. Workers starting together may insert the same new tag at
        once; the loser's insert fails on the tag's unique key, and setting it again updates
        the row the winner wrote."""
        for attempt in range(3):
            try:
                self.call(self.client.set_experiment_tag, exp_id, key, value)
                return
            except TrackingError as exc:
                if attempt == 2 or not is_duplicate_key(str(exc)):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def experiment_url(self, name: str) -> str | None:
        """The URL that opens the experiment's runs in the MLflow UI (model-training view), or
        None when there is no such experiment."""
        exp_id = self.experiment_id(name, create=False)
        return None if exp_id is None else runs_url(ui_base_url(self.uri), exp_id)

    def create_run(
        self,
        experiment: str,
        name: str,
        tags: Mapping[str, str],
        parent_id: str | None = None,
        description: str | None = None,
    ) -> MlflowTracker:
        """A new RUNNING run (nested under ``parent_id``), its Markdown ``description`` shown
        at the top of its page."""
        exp_id = self.experiment_id(experiment)
        all_tags = dict(tags)
        if parent_id:
            all_tags[PARENT_TAG] = parent_id
        if description:
            all_tags[DESCRIPTION] = description_text(description)
        run = self.call(self.client.create_run, exp_id, tags=all_tags, run_name=name)
        return MlflowTracker(self, run.info.run_id)

    def tracker(self, run_id: str) -> MlflowTracker:
        """Log to an existing run (without changing its status)."""
        return MlflowTracker(self, run_id)

    def end_run(self, run_id: str, status: RunStatus) -> None:
        """Write a run's final status; a Ctrl-C or SIGTERM arriving meanwhile waits until it
        is written (a run is never left RUNNING by a repeated Ctrl-C)."""
        with deferred_interrupts():
            try:
                self.call(self.client.set_terminated, run_id, status)
            except TrackingError as exc:
                db = sqlite_path(self.uri)
                if db is None or not is_full(str(exc)) or not checkpoint_wal(db):
                    raise
                # the write-ahead log could not grow; emptied into the database, it can
                self.call(self.client.set_terminated, run_id, status)

    def reopen_run(self, run_id: str) -> MlflowTracker:
        """Mark an unfinished run RUNNING again (to resume it), owned by this process from now
        on (so it does not look stale while its checkpoints download), and return its
        tracker."""
        self.call(self.client.update_run, run_id, "RUNNING")
        tracker = MlflowTracker(self, run_id)
        tracker.set_tags({TAG_OWNER: owner_tag(), TAG_HEARTBEAT: f"{time.time():.0f}"})
        return tracker

    @contextmanager
    def system_metrics(self, run_id: str) -> Iterator[None]:
        """Sample CPU/GPU/memory into the run while the block runs (when psutil is present)."""
        monitor = None
        if os.environ.get("DIGITEXP_SYSTEM_METRICS", "1") != "0":
            try:
                import psutil  # noqa: F401
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                monitor = SystemMetricsMonitor(run_id, tracking_uri=self.uri)
                monitor.start()
            except Exception as exc:  # system metrics are a nicety: never fail a run for them
                log.debug("system metrics off: %s", exc)
                monitor = None
        try:
            yield
        finally:
            if monitor is not None:
                try:
                    monitor.finish()
                except Exception as exc:
                    log.debug("system metrics monitor did not stop cleanly: %s", exc)

    # ----------------------------------------------------------------- reading

    def experiment_names(self) -> list[str]:
        exps = self.call(self.client.search_experiments)
        return [e.name for e in exps]

    def experiments_with_runs(self) -> dict[str, str]:
        """``{name: id}`` of the experiments that hold at least one run."""
        out = {}
        for exp in self.call(self.client.search_experiments):
            if self.call(self.client.search_runs, [exp.experiment_id], max_results=1):
                out[exp.name] = exp.experiment_id
        return out

    def runs(
        self,
        experiments: Sequence[str] | None = None,
        filter_string: str = "",
        *,
        include_active: bool = True,
    ) -> list[RunRecord]:
        """All runs of the named experiments (all experiments when None), newest first."""
        names = list(experiments) if experiments is not None else self.experiment_names()
        ids: dict[str, str] = {}
        for name in names:
            exp_id = self.experiment_id(name, create=False)
            if exp_id is not None:
                ids[exp_id] = name
        if not ids:
            return []
        out: list[RunRecord] = []
        token = None
        while True:
            page = self.call(
                self.client.search_runs,
                list(ids),
                filter_string,
                max_results=1000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            out.extend(record_of(run, ids[run.info.experiment_id]) for run in page)
            token = page.token
            if not token:
                break
        if not include_active:
            out = [r for r in out if r.status != "RUNNING"]
        return out

    def get_run(self, run_id: str) -> RunRecord:
        from mlflow.exceptions import MlflowException

        def fetch() -> Any:
            try:
                return self.client.get_run(run_id)
            except MlflowException as exc:
                if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise RunNotFound(f"{self.masked_uri}: no run with id {run_id!r}") from None
                raise

        run = self.call(fetch)
        exp = self.call(self.client.get_experiment, run.info.experiment_id)
        return record_of(run, exp.name)

    def metric_histories(self, run_ids: Sequence[str], keys: Iterable[str]) -> History:
        """``{run_id: {key: [(step, value), ...]}}`` in bulk (:mod:`.histories`)."""
        return bulk_metric_histories(self.client, self.call, run_ids, keys)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [a.path for a in self.call(self.client.list_artifacts, run_id, path)]

    def download_artifact(self, run_id: str, path: str, dst: Path) -> Path:
        """Download one artifact file or folder into ``dst``; TrackingError when it is absent."""
        dst.mkdir(parents=True, exist_ok=True)
        parent = str(Path(path).parent)
        names = self.list_artifacts(run_id, None if parent == "." else parent)
        if path not in names:
            raise TrackingError(f"run {run_id}: no artifact {path!r}")
        local = self.call(self.client.download_artifacts, run_id, path, str(dst))
        return Path(local)

    def copy_artifact(self, run_id: str, path: str, dst: Path) -> Path:
        """Like download_artifact, but to an exact file path."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download_artifact(run_id, path, Path(tmp))
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, dst)
        return dst
