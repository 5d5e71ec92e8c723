"""MLflow tracking: the ONLY module that imports mlflow.

- :class:`Tracker` is what the trainer logs to (one run); :class:`MlflowTracker` writes to an
  MLflow run, :class:`NullTracker` keeps everything in memory for library use and tests.
- :class:`TrackingStore` opens the store (``MLFLOW_TRACKING_URI`` or the embedded
  ``sqlite:///mlruns/mlflow.db``), creates experiments and parent/child runs, ends them with a
  status, and reads runs, metric histories (in bulk) and artifacts back for the report, the
  threshold search and ``predict``.

The names of tags, metrics and artifacts are DESIGN.md's tracking contract.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

from digitexp import fsutil
from digitexp.errors import RunNotFound, TrackingError, first_line

log = logging.getLogger("digitexp.tracking")

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
TAG_PREFIX = "digitexp."
TAG_SPEC = "digitexp.spec"
TAG_VARIANT = "digitexp.variant"
TAG_SEED = "digitexp.seed"
TAG_PRESET = "digitexp.preset"
TAG_GIT = "digitexp.git_commit"
TAG_CONFIG_HASH = "digitexp.config_hash"
TAG_KIND = "digitexp.kind"
TAG_SOURCE_RUN = "digitexp.source_run"
TAG_DATA = "digitexp.data_root"
TAG_ERROR = "digitexp.error"
TAG_SPEC_PATH = "digitexp.spec_path"
TAG_HEARTBEAT = "digitexp.heartbeat"
TAG_OWNER = "digitexp.owner"
TAG_EPOCH = "digitexp.epoch"
PARENT_TAG = "mlflow.parentRunId"
# DESIGN.md's per-epoch metrics (step = epoch, from 1) and summary metrics
EPOCH_METRICS = (
    "train_loss",
    "loss_classifier",
    "loss_box_reg",
    "loss_objectness",
    "loss_rpn_box_reg",
    "lr",
    "val_map",
    "val_map50",
    "val_map75",
    "val_digit_acc",
    "val_number_acc",
    "epoch_seconds",
    "train_images_per_s",
)
SUMMARY_METRICS = ("best_val_map", "best_epoch", "final_train_loss", "test_map", "test_number_acc")
HEARTBEAT_SECONDS = float(os.environ.get("DIGITEXP_HEARTBEAT_S", "30"))
STALE_AFTER_SECONDS = max(120.0, 4 * HEARTBEAT_SECONDS)

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@")


def mask_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ***."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (safe to print and log)."""
    return mask_text(uri)


def _without_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user:password@, user, password)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, None, None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc)), parts.username, parts.password


def git_commit(path: Path | None = None) -> str:
    """The current commit of the repository holding ``path`` (or the cwd), or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


LOCK_RETRY_SECONDS = 60.0


def _is_locked(message: str) -> bool:
    return "database is locked" in message or "database table is locked" in message


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _enable_wal(db: Path) -> None:
    """Write-ahead logging: readers and the writer of a sqlite store stop blocking each other."""
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.debug("could not turn on WAL for %s: %s", db, exc)


def _check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.error
    import urllib.request

    try:
        plain, user, password = _without_credentials(uri)
        request = urllib.request.Request(plain.rstrip("/") + "/health")
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answers (a proxy or an old server without /health): let MLflow talk to it
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"{mask_uri(uri)}: tracking server unreachable ({mask_text(str(reason))})"
        ) from None


def _param_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


# --------------------------------------------------------------------------- trackers


class Tracker(Protocol):
    """What the trainer logs to: one run."""

    @property
    def run_id(self) -> str | None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...

    def log_dict(self, obj: Any, artifact_file: str) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...


@dataclass
class NullTracker:
    """Keeps params, metrics and tags in memory; artifacts are not stored."""

    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int | None, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step, float(value)))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(f"{artifact_path}/{path.name}" if artifact_path else path.name)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.artifacts.append(artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.artifacts.append(artifact_file)


class MlflowTracker:
    """Logs to one MLflow run through the client API (batched metrics)."""

    def __init__(self, store: TrackingStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id

    @property
    def run_id(self) -> str:
        return self._run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._store.call(self._store.client.log_batch, self._run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if items:
            self._store.call(self._store.client.log_batch, self._run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        if items:
            self._store.call(self._store.client.log_batch, self._run_id, tags=items)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file. Into a local artifact folder it is written atomically (a temporary file,
        then a rename), so a process killed mid-copy never leaves a half-written checkpoint."""
        local = self._local_artifact_dir()
        if local is None:
            self._store.call(
                self._store.client.log_artifact, self._run_id, str(path), artifact_path
            )
            return
        dest = local / artifact_path if artifact_path else local
        dest.mkdir(parents=True, exist_ok=True)
        for stale in dest.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-copy
            stale.unlink(missing_ok=True)
        with fsutil.atomic_path(dest / path.name) as tmp:
            shutil.copyfile(path, tmp)

    def _local_artifact_dir(self) -> Path | None:
        if not hasattr(self, "_artifact_dir"):
            uri = self._store.call(self._store.client.get_run, self._run_id).info.artifact_uri
            parts = urlsplit(uri)
            local = parts.scheme in ("", "file") and not parts.netloc
            self._artifact_dir = Path(url2pathname(parts.path)) if local else None
        return self._artifact_dir

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=2), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(artifact_file).name
            local.write_text(text, encoding="utf-8")
            parent = str(Path(artifact_file).parent)
            self.log_artifact(local, None if parent == "." else parent)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunRecord:
    """A run as the report and the search see it."""

    run_id: str
    experiment: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]

    @property
    def parent_id(self) -> str | None:
        return self.tags.get(PARENT_TAG)

    def tag(self, key: str, default: str = "") -> str:
        return self.tags.get(key, default)


History = dict[str, dict[str, list[tuple[int, float]]]]

RunStateName = Literal["finished", "failed", "killed", "running", "stale"]


@dataclass(frozen=True)
class RunState:
    """A run's true state: a RUNNING run whose process is gone is ``stale``."""

    name: RunStateName
    reason: str = ""


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(run: RunRecord, now: float | None = None) -> RunState:
    """FINISHED / FAILED (with the reason) / KILLED / RUNNING, or stale: a RUNNING run whose
    owner process is gone (same host) or whose heartbeat stopped more than
    ``STALE_AFTER_SECONDS`` ago (any host)."""
    now = time.time() if now is None else now
    match run.status:
        case "FINISHED":
            return RunState("finished")
        case "FAILED":
            return RunState("failed", run.tag(TAG_ERROR))
        case "KILLED":
            return RunState("killed", run.tag(TAG_ERROR))
    host, _, pid = run.tag(TAG_OWNER).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
        return RunState("stale", f"process {pid} on {host} is gone")
    beat = run.tag(TAG_HEARTBEAT)
    last = float(beat) if beat else run.start_time / 1000
    if now - last > STALE_AFTER_SECONDS:
        return RunState("stale", f"no heartbeat for {now - last:.0f} s")
    return RunState("running")


class Heartbeat:
    """Sets the run's heartbeat tag every ``HEARTBEAT_SECONDS`` from a daemon thread."""

    def __init__(self, store: TrackingStore, run_id: str, every: float = HEARTBEAT_SECONDS):
        import threading

        self._store, self._run_id, self._every = store, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="digitexp-heartbeat", daemon=True)

    def _beat(self) -> None:
        self._store.call(
            self._store.client.set_tag, self._run_id, TAG_HEARTBEAT, f"{time.time():.0f}"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat()
            except Exception as exc:  # a missed beat must not kill training
                log.debug("heartbeat failed: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._store.call(self._store.client.set_tag, self._run_id, TAG_OWNER, owner_tag())
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TrackingStore:
    """One MLflow tracking store (embedded sqlite or a server)."""

    def __init__(self, uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri or default_uri()
        self.retries = 0  # "database is locked" retries so far (concurrent writers)
        self._experiments: dict[str, str] = {}
        _check_reachable(self.uri)
        db = _sqlite_path(self.uri)
        if db is None:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.call(self.client.search_experiments, max_results=1)
            return
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"{db.parent}: cannot create the store folder ({exc})") from None
        # Several processes may open a new store at once: one creates the schema (and turns
        # on WAL, so readers do not block the writer) while the others wait.
        with _file_lock(db.with_name(db.name + ".lock")):
            self.client = MlflowClient(tracking_uri=self.uri)
            self.call(self.client.search_experiments, max_results=1)
            _enable_wal(db)

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
                locked = _is_locked(text)
                if locked and time.monotonic() < deadline:
                    self.retries += 1
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                if isinstance(exc, TrackingError) or not (
                    locked or isinstance(exc, MlflowException | OSError)
                ):
                    raise
                message = first_line(exc)
                raise TrackingError(f"{self.masked_uri}: {mask_text(message)[:300]}") from None

    # ----------------------------------------------------------------- writing

    def _artifact_location(self, name: str) -> str | None:
        db = _sqlite_path(self.uri)
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

    def create_run(
        self,
        experiment: str,
        name: str,
        tags: Mapping[str, str],
        parent_id: str | None = None,
    ) -> MlflowTracker:
        exp_id = self.experiment_id(experiment)
        all_tags = dict(tags)
        if parent_id:
            all_tags[PARENT_TAG] = parent_id
        run = self.call(self.client.create_run, exp_id, tags=all_tags, run_name=name)
        return MlflowTracker(self, run.info.run_id)

    def end_run(self, run_id: str, status: RunStatus) -> None:
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
            out.extend(_record(run, ids[run.info.experiment_id]) for run in page)
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
        return _record(run, exp.name)

    def metric_histories(self, run_ids: Sequence[str], keys: Iterable[str]) -> History:
        """``{run_id: {key: [(step, value), ...]}}`` in bulk: one query per key and 100 runs.

        The embedded sqlite store answers one SQL query per key; a tracking server, its bulk
        endpoint; other stores fall back to one call per run and key.
        """
        out: History = {rid: {} for rid in run_ids}
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        sql_bulk = getattr(store, "get_metric_history_bulk", None)
        rest_bulk = getattr(store, "get_metric_history_bulk_interval", None)
        for key in keys:
            for i in range(0, len(run_ids), 100):
                chunk = list(run_ids[i : i + 100])
                if sql_bulk is not None:
                    metrics = self.call(sql_bulk, chunk, key, 10_000_000)
                elif rest_bulk is not None:
                    metrics = self.call(rest_bulk, chunk, key, 10_000, None, None)
                else:  # pragma: no cover - stores without a bulk endpoint
                    metrics = [
                        m
                        for rid in chunk
                        for m in self._with_run_id(
                            rid, self.call(self.client.get_metric_history, rid, key)
                        )
                    ]
                for m in metrics:
                    out[m.run_id].setdefault(key, []).append((int(m.step), float(m.value)))
        for per_run in out.values():
            for key, points in per_run.items():
                per_run[key] = _last_per_step(points)
        return out

    @staticmethod
    def _with_run_id(run_id: str, metrics: Iterable[Any]) -> list[Any]:
        from mlflow.entities.metric import MetricWithRunId

        return [MetricWithRunId(m, run_id) for m in metrics]

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


def _record(run: Any, experiment: str) -> RunRecord:
    """An MLflow Run as a RunRecord."""
    return RunRecord(
        run_id=run.info.run_id,
        experiment=experiment,
        name=run.info.run_name or "",
        status=run.info.status,
        start_time=run.info.start_time or 0,
        end_time=run.info.end_time,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


def _last_per_step(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """One value per step (the last one logged), sorted by step."""
    by_step: dict[int, float] = {}
    for step, value in points:
        by_step[step] = value
    return sorted(by_step.items())
