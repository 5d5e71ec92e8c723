"""MLflow tracking: the only package that imports mlflow.

- :mod:`.contract`: every tag, metric and artifact name, defined once.
- :mod:`.uri`: the default store, URI checks, password masking.
- :mod:`.store`: :class:`TrackingStore`, one store (embedded sqlite or a server): experiments,
  parent/child runs, their status; runs, metric histories (:mod:`.histories`, in bulk) and
  artifacts read back. :mod:`.sqlite`: the schema lock, WAL and retries of the embedded store.
- :mod:`.trackers`: the :class:`Tracker` protocol the trainer logs to, :class:`MlflowTracker`,
  :class:`NullTracker`.
- :mod:`.liveness`: owner and heartbeat tags, stale detection. :mod:`.provenance`: git commit.
"""

from digitexp.tracking.histories import History
from digitexp.tracking.liveness import Heartbeat, RunState, owner_tag, run_state
from digitexp.tracking.provenance import git_commit
from digitexp.tracking.records import RunRecord, RunStatus
from digitexp.tracking.store import TrackingStore
from digitexp.tracking.trackers import MlflowTracker, NullTracker, Tracker
from digitexp.tracking.uri import DEFAULT_URI, default_uri, mask_text, mask_uri

__all__ = [
    "DEFAULT_URI",
    "Heartbeat",
    "History",
    "MlflowTracker",
    "NullTracker",
    "RunRecord",
    "RunState",
    "RunStatus",
    "Tracker",
    "TrackingStore",
    "default_uri",
    "git_commit",
    "mask_text",
    "mask_uri",
    "owner_tag",
    "run_state",
]
