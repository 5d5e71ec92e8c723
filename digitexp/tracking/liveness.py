"""Liveness of a RUNNING run: its owner process and heartbeat tags, and its true state.

A run killed with SIGKILL cannot mark itself and stays RUNNING in MLflow; :func:`run_state`
calls it ``stale`` when its owner process is gone (same host) or its heartbeat stopped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Literal

from digitexp.tracking.contract import TAG_ERROR, TAG_HEARTBEAT, TAG_OWNER, TAG_PRUNED
from digitexp.tracking.records import RunRecord, StoreCalls

log = logging.getLogger("digitexp.tracking")

HEARTBEAT_SECONDS = float(os.environ.get("DIGITEXP_HEARTBEAT_S", "30"))
STALE_AFTER_SECONDS = max(120.0, 4 * HEARTBEAT_SECONDS)

RunStateName = Literal["finished", "failed", "killed", "pruned", "running", "stale"]


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
    """FINISHED / FAILED (with the reason) / KILLED / pruned (a tune trial stopped by its
    pruner: KILLED with ``digitexp.pruned``) / RUNNING, or stale: a RUNNING run whose
    owner process is gone (same host) or whose heartbeat stopped more than
    ``STALE_AFTER_SECONDS`` ago (any host)."""
    now = time.time() if now is None else now
    match run.status:
        case "FINISHED":
            return RunState("finished")
        case "FAILED":
            return RunState("failed", run.tag(TAG_ERROR))
        case "KILLED" if run.tag(TAG_PRUNED):
            return RunState("pruned", run.tag(TAG_ERROR))
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

    def __init__(self, store: StoreCalls, run_id: str, every: float = HEARTBEAT_SECONDS):
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
