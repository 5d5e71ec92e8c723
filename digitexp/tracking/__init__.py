"""MLflow tracking: the only package that imports mlflow.

- :mod:`.contract`: every tag, metric and artifact name, defined once.
- :mod:`.uri`: the default store, URI checks, password masking.
- :mod:`.store`: :class:`TrackingStore`, one store (embedded sqlite or a server): experiments,
  parent/child runs, their status; runs, metric histories (:mod:`.histories`, in bulk) and
  artifacts read back. :mod:`.sqlite`: the schema lock, WAL and retries of the embedded store.
- :mod:`.trackers`: the :class:`Tracker` protocol the trainer logs to, :class:`MlflowTracker`,
  :class:`NullTracker`.
- :mod:`.liveness`: owner and heartbeat tags, stale detection. :mod:`.provenance`: git commit,
  user and source (MLflow's standard tags).
- :mod:`.ui`: the URL that opens an experiment's runs in the MLflow UI, and the view it selects.
- :mod:`.models`: a run's checkpoint as a registered MLflow (pyfunc) model.
"""

from digitexp.tracking.histories import History
from digitexp.tracking.liveness import Heartbeat, RunState, owner_tag, run_state
from digitexp.tracking.provenance import git_commit, source_tags
from digitexp.tracking.records import RunRecord, RunStatus
from digitexp.tracking.store import TrackingStore
from digitexp.tracking.trackers import MlflowTracker, NullTracker, Tracker
from digitexp.tracking.ui import artifact_markdown, local_ui_url, runs_url, ui_base_url
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
    "artifact_markdown",
    "default_uri",
    "git_commit",
    "local_ui_url",
    "mask_text",
    "mask_uri",
    "owner_tag",
    "run_state",
    "runs_url",
    "source_tags",
    "ui_base_url",
]
